# Names, paths and wildcard constraints shared by every rule file.
import json
import os

from bench.baselines.byo import byo_points, entry_labels
from bench.config import config_hash, write_config
from bench.data import DATASETS
from bench.utils import gpu_device_present
from bench.points import grid_points, parse_point
from bench.weight_files import zoo_availability

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

DATA = config["data_root"]
MIRROR = os.environ.get("BENCH_DATA_MIRROR") or config["data_mirror"]
MIRROR_ARG = f"--mirror {MIRROR}" if MIRROR else ""
EVAL_DATASETS = config["datasets"]["eval"]
TRAIN_DATASET = config["datasets"]["train"]
MSH_QUALITIES = config["msh"]["qualities"]
DECODER_QUALITIES = config["decoder"]["qualities"]
DIFFUSION_POINTS = [p.id for p in grid_points(config["sampling"])]
JPEG_POINTS = [f"jpeg-q{q}" for q in config["baselines"]["jpeg_qualities"]]
BYO = byo_points(config)  # dataset -> byo-NAME -> its baselines.byo entry (names unique per dataset)
BYO_POINTS = sorted({point for points in BYO.values() for point in points})
FIGURES = ["rdp", "tradeoff", "samples", "cost"]  # `python -m bench report KIND`

missing = sorted(set(DECODER_QUALITIES) - set(MSH_QUALITIES))
if missing:
    raise ValueError(f"config key 'decoder.qualities' has {missing}, which 'msh.qualities' lacks")

# msh.source auto: compressai's zoo weights when every configured quality's file is in $TORCH_HOME
# (hash checked) or downloadable (one short probe), else training here. Resolved now, before the
# config is hashed and written, so the DAG (export_msh or train_msh), every step and every table
# row agree on the source actually used.
if config["msh"]["source"] == "auto":
    ZOO_UNAVAILABLE = zoo_availability(MSH_QUALITIES)
    config["msh"]["source"] = "train" if ZOO_UNAVAILABLE else "zoo"
    if ZOO_UNAVAILABLE:
        logger.warning(
            f"!!! msh.source auto: compressai's zoo weights are unavailable ({ZOO_UNAVAILABLE}); TRAINING a small "
            "MSH here instead: its rate-distortion is far from the published mbt2018-mean (see the README) !!!"
        )

# The validated config (defaults filled) as the file every `python -m bench` step reads: written by the
# config_snapshot rule (data.smk), not while the workflow is parsed, so a dry run or `--lint` writes
# nothing. A fixed path, taken as an ancient input, so that a config edit does not change any step's
# inputs; each run's config is also kept under its hash (the tables' config_hash).
CONFIG_SNAPSHOT = "work/config.yaml"
CONFIG_HASH = config_hash(config)
# Every rule names the project's environment file (relative to this folder), so that `snakemake
# --software-deployment-method conda` builds it for the steps; without that option they run in the
# current environment (Snakemake only hashes the file). A named environment would make Snakemake
# call `conda env export` on every run, which fails where conda is not installed.
CONDA_ENV = "../../environment.yml"

# Snakemake sets OMP_NUM_THREADS to a job's `threads` (1 unless declared), which would run every
# torch step single-threaded. The torch-heavy rules (training, decoding, metrics) take every local
# core instead, so a CPU run never oversubscribes the cores (two 2-thread torch processes on two
# cores slow each other down 5-10x); on a cluster the profile's cpus_per_task decides.
# `torch_threads` in the config fixes the number instead (the CI config: 1, so its numbers do not
# depend on the machine's or the executor's core count). Rules pass their threads as `python -m bench --threads`,
# so a step uses them whatever OMP_NUM_THREADS its environment has.


def local_cores():
    """The cores this Snakemake process may use. A cluster executor's main process has none (asking
    `workflow.cores` raises there): it submits with the profile's cpus_per_task, and each job's own
    Snakemake runs with `--cores all` inside its allocation, where the rule's threads are resolved
    again, to the cores Slurm gave it."""
    try:
        cores = workflow.cores
    except WorkflowError:
        return 1
    return cores if isinstance(cores, int) and cores > 0 else 1


LOCAL_CORES = local_cores()


def gpu_per_job():
    """The `gpu` resource of a training or diffusion-decoding job on this machine: 1 when it will run
    on a GPU, so that `profiles/default`'s `gpu=1` runs one at a time on a one-GPU workstation; 0 when
    it will run on the CPU (`device: cpu`, or `auto` on a machine with no GPU device file), so that
    those jobs run side by side on the cores instead of one after another. Checked from device files,
    not torch, so that parsing the workflow stays fast. `profiles/slurm` sets gpu=1 for these rules
    itself: the main process of a cluster run has no say on the compute nodes' devices."""
    if config["device"] != "auto":
        return int(config["device"] == "cuda")
    return int(gpu_device_present())


GPU_PER_JOB = gpu_per_job()
TORCH_THREADS = config["torch_threads"] or LOCAL_CORES
# `portable_numerics` (the CI config): every torch step runs CPU kernels whose results do not depend
# on the x86 CPU model, so the golden table holds on any machine (see bench/schema.yaml).
NUMERICS_ARG = "--portable-numerics" if config["portable_numerics"] else ""


def msh_priority(wildcards):
    """1 for an MSH quality a decoder trains on, else 0: the decoder's training is the run's longest
    chain, so its codec trains first and the other qualities train beside the decoder."""
    return 1 if int(wildcards.quality) in DECODER_QUALITIES else 0


MSH_SOURCE = "--pretrained" if config["msh"]["source"] == "zoo" else None


def settings_hash(*keys):
    """Hash of what a model's training reads (the seed, the training set, the named sections): as a
    rule's params, a change to it reruns that training (Snakemake's params trigger), while edits
    elsewhere (sampling, metrics, the evaluation sets) leave the trained models in place."""
    return config_hash(
        {
            "seed": config["seed"],
            "train": TRAIN_DATASET,
            "numerics": config["portable_numerics"],
            **{key: config[key] for key in keys},
        }
    )


MSH_SETTINGS = settings_hash("msh")
DECODER_SETTINGS = settings_hash("msh", "decoder")


def msh_checkpoint(wildcards):
    """The MSH weights of a quality: the models/ file (trained, exported from the zoo, or given)."""
    return f"{config['msh']['checkpoint_dir']}/q{wildcards.quality}.pt"


def point_columns_regex(points):
    return "|".join(p.replace(".", r"\.") for p in points) or "^$"


# ----------------------------------------------------------------------------- bring-your-own points


def byo_entry(dataset, point):
    """The baselines.byo entry of a dataset's point byo-NAME (an unknown pair is an error naming both)."""
    try:
        return BYO[dataset][point]
    except KeyError:
        raise ValueError(
            f"config key 'baselines.byo' has no entry named {point.removeprefix('byo-')!r} for dataset "
            f"{dataset!r}; it has {sorted(BYO.get(dataset, {}))}"
        ) from None


def byo_rate(entry):
    """(flag, path) of an entry's rate for `byo-check`: its bitstream folder or its bpp table."""
    if entry.get("bitstreams"):
        return "--bitstreams", entry["bitstreams"]
    return "--bpp-table", entry["bpp_table"]


# ----------------------------------------------------------------------------- metrics, tables, figures


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
        entries.append(
            {"reconstructions": point_folder(dataset, g, p), **rate_of(dataset, g, p), **tables, "labels": labels}
        )
    return json.dumps(entries)


def metrics_outputs(points):
    """A metrics job's per-image and summary tables (patterns keeping the {dataset} wildcard)."""
    pairs = [gp.split("/") for gp in points]
    return {
        "per_image": [metrics_table("{dataset}", g, p) for g, p in pairs],
        "summaries": [metrics_table("{dataset}", g, p, "_summary") for g, p in pairs],
    }


def figure_inputs(wildcards):
    """A figure's summary table; for `samples` also the evaluation images and every reconstruction
    folder it may draw (`report samples` picks its quality and points from the table)."""
    inputs = {"summary": f"results/{wildcards.dataset}/summary.csv"}
    if wildcards.kind == "samples":
        inputs["reference"] = f"{DATA}/eval/{wildcards.dataset}"
        inputs["reconstructions"] = [
            point_folder(wildcards.dataset, g, p) for g, p in evaluated_points(wildcards.dataset) if g.startswith("q")
        ]
    return inputs


def figure_args(wildcards, input):
    """A figure kind's own options (only `samples` has any: the originals, the work folder, the crop)."""
    if wildcards.kind != "samples":
        return ""
    image = f"--image {config['report']['sample_image']}" if config["report"]["sample_image"] else ""
    crop = " ".join(str(v) for v in config["report"]["sample_crop"])
    return f"--reference {input.reference} --work work {image} --crop {crop}"


wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),
    quality=r"[1-8]",
    point=point_columns_regex(["msh", *DIFFUSION_POINTS, *JPEG_POINTS, *BYO_POINTS]),
    diffusion_point=point_columns_regex(DIFFUSION_POINTS),
    jpeg_point=point_columns_regex(JPEG_POINTS),
    byo_point=point_columns_regex(BYO_POINTS),
    group=r"q[1-8]|jpeg|byo",
    kind="|".join(FIGURES),
