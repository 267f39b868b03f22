# Metrics per decoder point, the dataset tables, and the figures.
import shlex

from bench.baselines.byo import entry_labels


def point_folder(dataset, group, point):
    """A point's reconstructions: work/{dataset}/{group}/{point}, or a byo entry's own folder (read in place)."""
    if group == "byo":
        return byo_entry(dataset, point)["reconstructions"]
    return f"work/{dataset}/{group}/{point}"


def rate_of(wildcards):
    """Where a point's rate comes from: the shared MSH bits of its quality, its own JPEG files, or a byo
    point's bpp table as byo_check wrote it."""
    if wildcards.group == "jpeg":
        return f"work/{wildcards.dataset}/jpeg/bits/{wildcards.point}"
    if wildcards.group == "byo":
        return f"work/{wildcards.dataset}/byo/bpp/{wildcards.point}.csv"
    return f"work/{wildcards.dataset}/{wildcards.group}/bits"


def codec_labels(wildcards):
    """The opaque labels the metrics step writes into every row of this point."""
    if wildcards.group == "jpeg":
        labels = {"codec": "jpeg", "quality": parse_point(wildcards.point).quality}
    elif wildcards.group == "byo":
        labels = entry_labels(byo_entry(wildcards.dataset, wildcards.point))
    else:
        labels = {"codec": "mbt2018-mean", "quality": wildcards.group[1:]}
    labels = {"dataset": wildcards.dataset, **labels, "point": wildcards.point}
    return " ".join(f"--label {shlex.quote(f'{key}={value}')}" for key, value in labels.items())


rule metrics:
    """Measure one decoder point's reconstructions against the evaluation images. The reference patches'
    Inception features are computed by the dataset's first metrics job and read by the others from
    reference-cache/ (keyed by pixels, weights and settings: never stale)."""
    input:
        reference=f"{DATA}/eval/{{dataset}}",
        reconstructions=lambda wc: point_folder(wc.dataset, wc.group, wc.point),
        rate=rate_of,
    output:
        per_image="work/{dataset}/metrics/{group}/{point}.csv",
        summary="work/{dataset}/metrics/{group}/{point}_summary.csv",
    threads: TORCH_THREADS
    log:
        "logs/metrics/{dataset}/{group}/{point}.log",
    benchmark:
        "benchmarks/metrics/{dataset}/{group}/{point}.tsv"
    params:
        labels=codec_labels,
        rate=lambda wc: "--bpp-table" if wc.group == "byo" else "--bitstreams",
    shell:
        "{PY} -m bench {NUMERICS_ARG} --threads {threads} metrics --config {CONFIG_FILE} --reference {input.reference} "
        "--reconstructions {input.reconstructions:q} {params.rate} {input.rate:q} --out {output.per_image} "
        "--summary {output.summary} {params.labels} --reference-cache work/{wildcards.dataset}/metrics/reference-cache "
        "> {log} 2>&1"


def evaluated_points(dataset):
    """(group, point) of every decoder point of a dataset, in table order: MSH, diffusion, JPEG, then
    the dataset's bring-your-own entries."""
    pairs = [(f"q{q}", "msh") for q in MSH_QUALITIES]
    pairs += [(f"q{q}", p) for q in DECODER_QUALITIES for p in DIFFUSION_POINTS]
    pairs += [("jpeg", p) for p in JPEG_POINTS]
    pairs += [("byo", p) for p in BYO.get(dataset, {})]
    return pairs


rule tables:
    """Gather every point's metrics (and decode records) into the dataset's two tables."""
    input:
        summaries=lambda wc: [f"work/{wc.dataset}/metrics/{g}/{p}_summary.csv" for g, p in evaluated_points(wc.dataset)],
        per_image=lambda wc: [f"work/{wc.dataset}/metrics/{g}/{p}.csv" for g, p in evaluated_points(wc.dataset)],
        reconstructions=lambda wc: [point_folder(wc.dataset, g, p) for g, p in evaluated_points(wc.dataset)],
    output:
        per_image="results/{dataset}/per_image.csv",
        summary="results/{dataset}/summary.csv",
    log:
        "logs/tables/{dataset}.log",
    shell:
        "{PY} -m bench tables --summaries {input.summaries} --per-image {input.per_image} "
        "--reconstructions {input.reconstructions:q} --out-per-image {output.per_image} "
        "--out-summary {output.summary} > {log} 2>&1"


rule figure_rdp:
    """Rate vs distortion and vs each perception measure, with the published baselines."""
    input:
        "results/{dataset}/summary.csv",
    output:
        pdf=report("figures/rdp_{dataset}.pdf", category="figures"),
        png="figures/rdp_{dataset}.png",
    log:
        "logs/figures/rdp_{dataset}.log",
    shell:
        "{PY} -m bench report rdp --summary {input} --dataset {wildcards.dataset} --out {output.pdf} > {log} 2>&1"


rule figure_tradeoff:
    """The distortion-perception plane at each bitrate: one point per sampler x steps."""
    input:
        "results/{dataset}/summary.csv",
    output:
        pdf=report("figures/tradeoff_{dataset}.pdf", category="figures"),
        png="figures/tradeoff_{dataset}.png",
    log:
        "logs/figures/tradeoff_{dataset}.log",
    shell:
        "{PY} -m bench report tradeoff --summary {input} --dataset {wildcards.dataset} --out {output.pdf} > {log} 2>&1"


rule figure_samples:
    """The same crop from the original, MSH and the diffusion samplers at the lowest rate."""
    input:
        summary="results/{dataset}/summary.csv",
        reference=f"{DATA}/eval/{{dataset}}",
    output:
        pdf=report("figures/samples_{dataset}.pdf", category="figures"),
        png="figures/samples_{dataset}.png",
    log:
        "logs/figures/samples_{dataset}.log",
    params:
        image=lambda wc: f"--image {config['report']['sample_image']}" if config["report"]["sample_image"] else "",
        crop=" ".join(str(v) for v in config["report"]["sample_crop"]),
    shell:
        "{PY} -m bench report samples --summary {input.summary} --dataset {wildcards.dataset} "
        "--reference {input.reference} --work work {params.image} --crop {params.crop} --out {output.pdf} > {log} 2>&1"
