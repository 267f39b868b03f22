# Names, paths and wildcard constraints shared by every rule file.
import os

from bench.baselines.byo import byo_points
from bench.config import config_hash
from bench.data import DATASETS
from bench.points import grid_points
from bench.weight_files import zoo_availability

import yaml
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

# The validated config (defaults filled) as a file, so every `python -m bench` step reads exactly
# the configuration this run validated; named by its hash, so configs never overwrite each other.
CONFIG_FILE = f"work/configs/{config_hash(config)}.yaml"
if not os.path.exists(CONFIG_FILE):
    os.makedirs(os.path.dirname(CONFIG_FILE), exist_ok=True)
    with open(CONFIG_FILE + ".tmp", "w") as _f:
        yaml.safe_dump(config, _f, sort_keys=True)
    os.replace(CONFIG_FILE + ".tmp", CONFIG_FILE)

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
    return int(any(os.path.exists(path) for path in ("/dev/nvidiactl", "/dev/kfd")))


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
    return config_hash({"seed": config["seed"], "train": TRAIN_DATASET, "numerics": config["portable_numerics"],
                        **{key: config[key] for key in keys}})


MSH_SETTINGS = settings_hash("msh")
DECODER_SETTINGS = settings_hash("msh", "decoder")


def msh_checkpoint(wildcards):
    """The MSH weights of a quality: the models/ file (trained, exported from the zoo, or given)."""
    return f"{config['msh']['checkpoint_dir']}/q{wildcards.quality}.pt"


def point_columns_regex(points):
    return "|".join(p.replace(".", r"\.") for p in points) or "^$"


wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),
    quality=r"[1-8]",
    point=point_columns_regex(["msh", *DIFFUSION_POINTS, *JPEG_POINTS, *BYO_POINTS]),
    diffusion_point=point_columns_regex(DIFFUSION_POINTS),
    jpeg_point=point_columns_regex(JPEG_POINTS),
    byo_point=point_columns_regex(BYO_POINTS),
    group=r"q[1-8]|jpeg|byo",
    kind="|".join(FIGURES),
