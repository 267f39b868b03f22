# Metrics per decoder point, the dataset tables, and the figures.
import json

from bench.baselines.byo import entry_labels
from bench.points import parse_point


def point_folder(dataset, group, point):
    """A point's reconstructions: work/{dataset}/{group}/{point}, or a byo entry's own folder (read in place)."""
    if group == "byo":
        return byo_entry(dataset, point)["reconstructions"]
    return f"work/{dataset}/{group}/{point}"


def rate_of(dataset, group, point):
    """Where a point's rate comes from, as its metrics entry names it: the shared MSH bits of its quality,
    its own JPEG files, or a byo point's bpp table as byo_check wrote it."""
    if group == "jpeg":
        return {"bitstreams": f"work/{dataset}/jpeg/bits/{point}"}
    if group == "byo":
        return {"bpp_table": f"work/{dataset}/byo/bpp/{point}.csv"}
    return {"bitstreams": f"work/{dataset}/{group}/bits"}


def codec_labels(dataset, group, point):
    """The opaque labels the metrics step writes into every row of this point."""
    if group == "jpeg":
        labels = {"codec": "jpeg", "quality": parse_point(point).quality}
    elif group == "byo":
        labels = entry_labels(byo_entry(dataset, point))
    else:
        labels = {"codec": "mbt2018-mean", "quality": group[1:]}
    return {"dataset": dataset, **labels, "point": point}


# The suite's points as GROUP/POINT, the same for every dataset: those needing no diffusion decoder
# (MSH of every quality, JPEG), and the diffusion grid of every decoder quality.
BASELINE_POINTS = [f"q{q}/msh" for q in MSH_QUALITIES] + [f"jpeg/{p}" for p in JPEG_POINTS]
DIFFUSION_GRID = [f"q{q}/{p}" for q in DECODER_QUALITIES for p in DIFFUSION_POINTS]


def evaluated_points(dataset):
    """(group, point) of every decoder point of a dataset, in table order: MSH, diffusion, JPEG, then
    the dataset's bring-your-own entries."""
    pairs = [(f"q{q}", "msh") for q in MSH_QUALITIES]
    pairs += [(f"q{q}", p) for q in DECODER_QUALITIES for p in DIFFUSION_POINTS]
    pairs += [("jpeg", p) for p in JPEG_POINTS]
    pairs += [("byo", p) for p in BYO.get(dataset, {})]
    return pairs


def metrics_table(dataset, group, point, kind=""):
    """A point's metrics table: kind "" the per-image one, "_summary" the summary (a pattern when
    ``dataset`` is "{dataset}")."""
    return f"work/{dataset}/metrics/{group}/{point}{kind}.csv"


def metrics_tables(dataset, kind):
    """Every point's metrics table of a dataset (see metrics_table)."""
    return [metrics_table(dataset, g, p, kind) for g, p in evaluated_points(dataset)]


def metrics_inputs(dataset, points):
    """The reconstruction folders and the rate inputs (bits, JPEG files) of GROUP/POINTs (patterns
    when ``dataset`` is "{dataset}")."""
    pairs = [gp.split("/") for gp in points]
    return {
        "reconstructions": [point_folder(dataset, g, p) for g, p in pairs],
        "rates": [next(iter(rate_of(dataset, g, p).values())) for g, p in pairs],
    }


def metrics_points(dataset, points):
    """GROUP/POINTs of a dataset as `metrics --points` takes them (JSON, in this order)."""
    entries = []
    for g, p in (gp.split("/") for gp in points):
        labels = {key: str(value) for key, value in codec_labels(dataset, g, p).items()}
        tables = {"out": metrics_table(dataset, g, p), "summary": metrics_table(dataset, g, p, "_summary")}
        entries.append({"reconstructions": point_folder(dataset, g, p), **rate_of(dataset, g, p), **tables,
                        "labels": labels})
    return json.dumps(entries)


def metrics_outputs(points):
    """A metrics job's per-image and summary tables (patterns keeping the {dataset} wildcard)."""
    pairs = [gp.split("/") for gp in points]
    return {
        "per_image": [metrics_table("{dataset}", g, p) for g, p in pairs],
        "summaries": [metrics_table("{dataset}", g, p, "_summary") for g, p in pairs],
    }


# Each metrics job measures several points in one process, so the backbones load once per job, not
# once per point (a job's start, its imports and weight files, costs more than measuring a small
# point); the points of a job are those that become measurable together. The reference patches'
# Inception features are computed once per dataset and kept in reference-cache/ (keyed by pixels,
# weights and settings: never stale).
METRICS_SHELL = (
    "{PY} -m bench {NUMERICS_ARG} --threads {threads} metrics --config {CONFIG_FILE} --reference {input.reference} "
    "--points {params.points:q} --reference-cache work/{wildcards.dataset}/metrics/reference-cache > {log} 2>&1"
)


rule metrics_baselines:
    """Measure a dataset's points that need no diffusion decoder: MSH at every quality, and JPEG."""
    input:
        reference=f"{DATA}/eval/{{dataset}}",
        **metrics_inputs("{dataset}", BASELINE_POINTS),
    output:
        **metrics_outputs(BASELINE_POINTS),
    threads: TORCH_THREADS
    log:
        "logs/metrics/{dataset}/baselines.log",
    benchmark:
        "benchmarks/metrics/{dataset}/baselines.tsv"
    params:
        points=lambda wc: metrics_points(wc.dataset, BASELINE_POINTS),
    shell:
        METRICS_SHELL


rule metrics_diffusion:
    """Measure a dataset's diffusion points: the sampling grid of every decoder quality."""
    input:
        reference=f"{DATA}/eval/{{dataset}}",
        **metrics_inputs("{dataset}", DIFFUSION_GRID),
    output:
        **metrics_outputs(DIFFUSION_GRID),
    threads: TORCH_THREADS
    log:
        "logs/metrics/{dataset}/diffusion.log",
    benchmark:
        "benchmarks/metrics/{dataset}/diffusion.tsv"
    params:
        points=lambda wc: metrics_points(wc.dataset, DIFFUSION_GRID),
    shell:
        METRICS_SHELL


rule metrics_byo:
    """Measure one bring-your-own point (its folder read in place, its rate from byo_check) like the suite's."""
    input:
        reference=f"{DATA}/eval/{{dataset}}",
        reconstructions=lambda wc: point_folder(wc.dataset, "byo", wc.byo_point),
        rate="work/{dataset}/byo/bpp/{byo_point}.csv",
    output:
        per_image=metrics_table("{dataset}", "byo", "{byo_point}"),
        summary=metrics_table("{dataset}", "byo", "{byo_point}", "_summary"),
    threads: TORCH_THREADS
    log:
        "logs/metrics/{dataset}/byo/{byo_point}.log",
    benchmark:
        "benchmarks/metrics/{dataset}/byo/{byo_point}.tsv"
    params:
        points=lambda wc: metrics_points(wc.dataset, [f"byo/{wc.byo_point}"]),
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
    shell:
        "{PY} -m bench tables --summaries {input.summaries} --per-image {input.per_image} "
        "--reconstructions {input.reconstructions:q} --out-per-image {output.per_image} "
        "--out-summary {output.summary} > {log} 2>&1"


def figure_inputs(wildcards):
    """A figure's summary table; for `samples` also the evaluation images and every reconstruction
    folder it may draw (`report samples` picks its quality and points from the table)."""
    inputs = {"summary": f"results/{wildcards.dataset}/summary.csv"}
    if wildcards.kind == "samples":
        inputs["reference"] = f"{DATA}/eval/{wildcards.dataset}"
        inputs["reconstructions"] = [point_folder(wildcards.dataset, g, p)
                                     for g, p in evaluated_points(wildcards.dataset) if g.startswith("q")]
    return inputs


def figure_args(wildcards, input):
    """A figure kind's own options (only `samples` has any: the originals, the work folder, the crop)."""
    if wildcards.kind != "samples":
        return ""
    image = f"--image {config['report']['sample_image']}" if config["report"]["sample_image"] else ""
    crop = " ".join(str(v) for v in config["report"]["sample_crop"])
    return f"--reference {input.reference} --work work {image} --crop {crop}"


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
    params:
        args=figure_args,
    shell:
        "{PY} -m bench report {wildcards.kind} --summary {input.summary} --dataset {wildcards.dataset} {params.args} "
        "--out {output.pdf} > {log} 2>&1"
