# Models: the MSH codec per quality (trained, exported from compressai's zoo, or given; `auto` was
# resolved to zoo or train in common.smk) and the diffusion decoder per quality (trained on the frozen MSH).

if config["msh"]["source"] == "train":

    rule train_msh:
        """Train mbt2018-mean at one quality (resumes from OUT.partial after a kill)."""
        input:
            data=rules.fetch_training_set.output[0],
        output:
            f"{config['msh']['checkpoint_dir']}/q{{quality}}.pt",
        threads: TORCH_THREADS
        priority: msh_priority
        log:
            "logs/train_msh/q{quality}.log",
        benchmark:
            "benchmarks/train_msh/q{quality}.tsv"
        params:
            settings=MSH_SETTINGS,
        resources:
            gpu=GPU_PER_JOB,
        shell:
            "{PY} -m bench {NUMERICS_ARG} --threads {threads} train-msh --config {CONFIG_FILE} --quality {wildcards.quality} --data {input.data} "
            "--out {output} > {log} 2>&1"

elif config["msh"]["source"] == "zoo":

    rule export_msh:
        """Copy compressai's pretrained mbt2018-mean weights ($TORCH_HOME) into a suite checkpoint."""
        output:
            f"{config['msh']['checkpoint_dir']}/q{{quality}}.pt",
        log:
            "logs/export_msh/q{quality}.log",
        benchmark:
            "benchmarks/export_msh/q{quality}.tsv"
        params:
            settings=MSH_SETTINGS,
        shell:
            "{PY} -m bench export-msh --quality {wildcards.quality} --out {output} > {log} 2>&1"


rule train_decoder:
    """Train the conditional diffusion decoder for one MSH quality (resumes after a kill)."""
    input:
        data=rules.fetch_training_set.output[0],
        msh=msh_checkpoint,
    output:
        f"{config['decoder']['checkpoint_dir']}/q{{quality}}.pt",
    threads: TORCH_THREADS
    priority: 1
    log:
        "logs/train_decoder/q{quality}.log",
    benchmark:
        "benchmarks/train_decoder/q{quality}.tsv"
    params:
        settings=DECODER_SETTINGS,
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{PY} -m bench {NUMERICS_ARG} --threads {threads} train-decoder --config {CONFIG_FILE} --quality {wildcards.quality} "
        "--msh-checkpoint {input.msh} --data {input.data} --out {output} > {log} 2>&1"
