# Decode performance (results/perf.csv: its own target, not part of `all`; the cost figure is `figure`).

PERF_QUALITY = min(DECODER_QUALITIES) if DECODER_QUALITIES else None

if PERF_QUALITY is not None:

    rule perf:
        """Time MSH and every diffusion point at the perf sizes and batches (`snakemake results/perf.csv`).
        It takes every core, so no other job runs beside it and skews the timings."""
        input:
            msh=f"{config['msh']['checkpoint_dir']}/q{PERF_QUALITY}.pt",
            decoder=f"{config['decoder']['checkpoint_dir']}/q{PERF_QUALITY}.pt",
        output:
            "results/perf.csv",
        log:
            "logs/perf.log",
        benchmark:
            "benchmarks/perf.tsv"
        threads: LOCAL_CORES
        resources:
            gpu=GPU_PER_JOB,
        shell:
            "{PY} -m bench {NUMERICS_ARG} --threads {threads} perf --config {CONFIG_FILE} --quality {PERF_QUALITY} --checkpoint {input.msh} "
            "--decoder-checkpoint {input.decoder} --device {config[device]} {MIRROR_ARG} --out {output} > {log} 2>&1"
