# Metrics per decoder point, the dataset tables, and the figures (their helpers: common.smk).


# Each metrics job measures several points in one process, so the backbones load once per job, not
# once per point (a job's start, its imports and weight files, costs more than measuring a small
# point); the points of a job are those that become measurable together. The reference patches'
# Inception features are computed once per dataset and kept in reference-cache/ (keyed by pixels,
# weights and settings: never stale).
METRICS_SHELL = (
    "python -m bench {params.numerics} --threads {threads} metrics --config {input.config} "
    "--reference {input.reference} --points {params.points:q} "
    "--reference-cache work/{wildcards.dataset}/metrics/reference-cache > {log} 2>&1"
)


rule metrics_baselines:
    """Measure a dataset's points that need no diffusion decoder: MSH at every quality, and JPEG."""
    input:
        **metrics_inputs("{dataset}", BASELINE_POINTS),
        reference=f"{DATA}/eval/{{dataset}}",
        config=ancient(CONFIG_SNAPSHOT),
    output:
        **metrics_outputs(BASELINE_POINTS),
    log:
        "logs/metrics/{dataset}/baselines.log",
    benchmark:
        "benchmarks/metrics/{dataset}/baselines.tsv"
    conda:
        CONDA_ENV
    threads: TORCH_THREADS
    params:
        points=lambda wc: metrics_points(wc.dataset, BASELINE_POINTS),
        numerics=NUMERICS_ARG,
    shell:
        METRICS_SHELL


rule metrics_diffusion:
    """Measure a dataset's diffusion points: the sampling grid of every decoder quality."""
    input:
        **metrics_inputs("{dataset}", DIFFUSION_GRID),
        reference=f"{DATA}/eval/{{dataset}}",
        config=ancient(CONFIG_SNAPSHOT),
    output:
        **metrics_outputs(DIFFUSION_GRID),
    log:
        "logs/metrics/{dataset}/diffusion.log",
    benchmark:
        "benchmarks/metrics/{dataset}/diffusion.tsv"
    conda:
        CONDA_ENV
    threads: TORCH_THREADS
    params:
        points=lambda wc: metrics_points(wc.dataset, DIFFUSION_GRID),
        numerics=NUMERICS_ARG,
    shell:
        METRICS_SHELL


rule metrics_byo:
    """Measure one bring-your-own point (its folder read in place, its rate from byo_check) like the suite's."""
    input:
        reference=f"{DATA}/eval/{{dataset}}",
        reconstructions=lambda wc: point_folder(wc.dataset, "byo", wc.byo_point),
        rate="work/{dataset}/byo/bpp/{byo_point}.csv",
        config=ancient(CONFIG_SNAPSHOT),
    output:
        per_image=metrics_table("{dataset}", "byo", "{byo_point}"),
        summary=metrics_table("{dataset}", "byo", "{byo_point}", "_summary"),
    log:
        "logs/metrics/{dataset}/byo/{byo_point}.log",
    benchmark:
        "benchmarks/metrics/{dataset}/byo/{byo_point}.tsv"
    conda:
        CONDA_ENV
    threads: TORCH_THREADS
    params:
        points=lambda wc: metrics_points(wc.dataset, [f"byo/{wc.byo_point}"]),
        numerics=NUMERICS_ARG,
    shell:
        METRICS_SHELL


rule tables:
    """Gather every point's metrics (and decode records) into the dataset's two tables."""
    input:
        summaries=lambda wc: metrics_tables(wc.dataset, "_summary"),
        per_image=lambda wc: metrics_tables(wc.dataset, ""),
        reconstructions=lambda wc: [point_folder(wc.dataset, g, p) for g, p in evaluated_points(wc.dataset)],
    output:
        per_image="results/{dataset}/per_image.csv",
        summary="results/{dataset}/summary.csv",
    log:
        "logs/tables/{dataset}.log",
    benchmark:
        "benchmarks/tables/{dataset}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m bench tables --summaries {input.summaries} --per-image {input.per_image} "
        "--reconstructions {input.reconstructions:q} --out-per-image {output.per_image} "
        "--out-summary {output.summary} > {log} 2>&1"


rule figure:
    """One figure of a dataset: `rdp` rate against distortion and each realism measure, with the published
    baselines; `tradeoff` the distortion-realism plane at each bitrate; `samples` the same crop from the
    original, MSH and the diffusion samplers at the lowest rate; `cost` quality against decode seconds."""
    input:
        unpack(figure_inputs),
    output:
        pdf=report("figures/{kind}_{dataset}.pdf", category="figures"),
        png="figures/{kind}_{dataset}.png",
    log:
        "logs/figures/{kind}_{dataset}.log",
    benchmark:
        "benchmarks/figures/{kind}_{dataset}.tsv"
    conda:
        CONDA_ENV
    params:
        args=figure_args,
    shell:
        "python -m bench report {wildcards.kind} --summary {input.summary} --dataset {wildcards.dataset} {params.args} "
        "--out {output.pdf} > {log} 2>&1"
