# What a run starts from: the config snapshot every step reads, the evaluation images (verified,
# preprocessed) and the training images.


rule config_snapshot:
    """The validated config (defaults filled, `msh.source: auto` resolved) as the file every `python -m
    bench` step reads, and a copy named by its hash (the tables' config_hash column). Its consumers
    take it as an ancient input: a config edit rewrites it but reruns a step only through that step's
    own params (a training reruns when its settings_hash changes, see common.smk)."""
    output:
        current=CONFIG_SNAPSHOT,
        archived=f"work/configs/{CONFIG_HASH}.yaml",
    log:
        "logs/config_snapshot.log",
    benchmark:
        "benchmarks/config_snapshot.tsv"
    localrule: True
    params:
        digest=CONFIG_HASH,
    run:
        write_config(config, output.current, output.archived)


rule prepare_dataset:
    """Fetch (or copy from the mirror) and verify a dataset, then write its evaluation images."""
    output:
        directory(f"{DATA}/eval/{{dataset}}"),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        CONDA_ENV
    params:
        root=f"{DATA}/raw",
        mirror=MIRROR_ARG,
        max_images=f"--max-images {config['datasets']['max_images']}" if config["datasets"]["max_images"] else "",
        crop=f"--crop {config['datasets']['eval_crop']}" if config["datasets"]["eval_crop"] else "",
    shell:
        "python -m bench datasets prepare {wildcards.dataset} --root {params.root} --out {output} "
        "{params.mirror} {params.max_images} {params.crop} > {log} 2>&1"


rule fetch_training_set:
    """Fetch (or copy from the mirror) and verify the training set."""
    output:
        directory(f"{DATA}/train/{TRAIN_DATASET}"),
    log:
        f"logs/fetch_training_set/{TRAIN_DATASET}.log",
    benchmark:
        f"benchmarks/fetch_training_set/{TRAIN_DATASET}.tsv"
    conda:
        CONDA_ENV
    params:
        dataset=TRAIN_DATASET,
        root=lambda wildcards, output: os.path.dirname(output[0]),
        mirror=MIRROR_ARG,
    shell:
        "python -m bench datasets fetch {params.dataset} --root {params.root} {params.mirror} > {log} 2>&1"
