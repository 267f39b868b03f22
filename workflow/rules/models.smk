# Models: the MSH codec per quality (trained, exported from compressai's zoo, or given; `auto` was
# resolved to zoo or train in common.smk) and the diffusion decoder per quality (trained on the frozen MSH).

if config["msh"]["source"] == "train":

    rule train_msh:
        """Train mbt2018-mean at one quality (resumes from OUT.partial after a kill)."""
        input:
            data=rules.fetch_training_set.output[0],
            config=ancient(CONFIG_SNAPSHOT),
        output:
            f"{config['msh']['checkpoint_dir']}/q{{quality}}.pt",
        log:
            "logs/train_msh/q{quality}.log",
        benchmark:
            "benchmarks/train_msh/q{quality}.tsv"
        priority: msh_priority
        conda:
            CONDA_ENV
        threads: TORCH_THREADS
        resources:
            gpu=GPU_PER_JOB,
        params:
            settings=MSH_SETTINGS,
            numerics=NUMERICS_ARG,
        shell:
            "python -m bench {params.numerics} --threads {threads} train-msh --config {input.config} "
            "--quality {wildcards.quality} --data {input.data} --out {output} > {log} 2>&1"

elif config["msh"]["source"] == "zoo":

    rule export_msh:
        """Copy compressai's pretrained mbt2018-mean weights ($TORCH_HOME) into a suite checkpoint."""
        output:
            f"{config['msh']['checkpoint_dir']}/q{{quality}}.pt",
        log:
            "logs/export_msh/q{quality}.log",
        benchmark:
            "benchmarks/export_msh/q{quality}.tsv"
        conda:
            CONDA_ENV
        params:
            settings=MSH_SETTINGS,
        shell:
            "python -m bench export-msh --quality {wildcards.quality} --out {output} > {log} 2>&1"


rule train_decoder:
    """Train the conditional diffusion decoder for one MSH quality (resumes after a kill)."""
    input:
        data=rules.fetch_training_set.output[0],
        msh=msh_checkpoint,
        config=ancient(CONFIG_SNAPSHOT),
    output:
        f"{config['decoder']['checkpoint_dir']}/q{{quality}}.pt",
    log:
        "logs/train_decoder/q{quality}.log",
    benchmark:
        "benchmarks/train_decoder/q{quality}.tsv"
    priority: 1
    conda:
        CONDA_ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU_PER_JOB,
    params:
        settings=DECODER_SETTINGS,
        numerics=NUMERICS_ARG,
    shell:
        "python -m bench {params.numerics} --threads {threads} train-decoder --config {input.config} "
        "--quality {wildcards.quality} --msh-checkpoint {input.msh} --data {input.data} --out {output} > {log} 2>&1"
