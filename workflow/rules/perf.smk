# Decode performance (results/perf.csv: its own target, not part of `all`; the cost figure is `figure`).

PERF_QUALITY = min(DECODER_QUALITIES) if DECODER_QUALITIES else None

if PERF_QUALITY is not None:

    rule perf:
        """Time MSH and every diffusion point at the perf sizes and batches (`snakemake results/perf.csv`).
        It takes every core, so no other job runs beside it and skews the timings."""
        input:
            msh=f"{config['msh']['checkpoint_dir']}/q{PERF_QUALITY}.pt",
            decoder=f"{config['decoder']['checkpoint_dir']}/q{PERF_QUALITY}.pt",
            config=ancient(CONFIG_SNAPSHOT),
        output:
            "results/perf.csv",
        log:
            "logs/perf.log",
        benchmark:
            "benchmarks/perf.tsv"
        conda:
            CONDA_ENV
        threads: LOCAL_CORES
        resources:
            gpu=GPU_PER_JOB,
        params:
            numerics=NUMERICS_ARG,
            quality=PERF_QUALITY,
            device=config["device"],
            mirror=MIRROR_ARG,
        shell:
            "python -m bench {params.numerics} --threads {threads} perf --config {input.config} --quality {params.quality} "
            "--checkpoint {input.msh} --decoder-checkpoint {input.decoder} --device {params.device} {params.mirror} "
            "--out {output} > {log} 2>&1"
