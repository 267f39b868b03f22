# Datasets: evaluation images (verified, preprocessed) and the training images.


rule prepare_dataset:
    """Fetch (or copy from the mirror) and verify a dataset, then write its evaluation images."""
    output:
        directory(f"{DATA}/eval/{{dataset}}"),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    params:
        max_images=f"--max-images {config['datasets']['max_images']}" if config["datasets"]["max_images"] else "",
        crop=f"--crop {config['datasets']['eval_crop']}" if config["datasets"]["eval_crop"] else "",
    shell:
        "{PY} -m bench datasets prepare {wildcards.dataset} --root {DATA}/raw --out {output} "
        "{MIRROR_ARG} {params.max_images} {params.crop} > {log} 2>&1"


rule fetch_training_set:
    """Fetch (or copy from the mirror) and verify the training set."""
    output:
        directory(f"{DATA}/train/{TRAIN_DATASET}"),
    log:
        f"logs/fetch_training_set/{TRAIN_DATASET}.log",
    benchmark:
        f"benchmarks/fetch_training_set/{TRAIN_DATASET}.tsv"
    shell:
        "{PY} -m bench datasets fetch {TRAIN_DATASET} --root {DATA}/train {MIRROR_ARG} > {log} 2>&1"
