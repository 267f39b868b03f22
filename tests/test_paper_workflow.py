"""The paper config's whole DAG on CPU: ``configs/paper.yaml`` with ``--config``
overrides that shrink only sizes and counts, on the format-exact weight fixtures and the archive
datasets served by a loopback HTTP mirror.

Kept from the paper config: compressai's zoo MSH q1-5 (exported from the fixture's zoo files),
decoders q1-2 with learned sigma (the VB term), epsilon prediction, the 4000-step cosine schedule
respaced to 1000, rho 0.9 (LPIPS VGG on the fixture's VGG16), its three evaluation sets (Kodak from
the mirror, CLIC 2020 professional valid and DIV2K valid from upstream-layout zips), DIV2K train,
DDIM and DDPM, the non-overlapping FID protocol, JPEG, real backbones only. Shrunk: image counts
and the evaluation crop (256 px: the metrics then take seconds, and NIQE refuses images this small
by design, see bench/metrics/niqe.py), the UNet's width and depth, training steps and crops, the
grid's step counts, the JPEG qualities, the SWD descriptors and the bootstrap resamples.

The datasets come through ``BENCH_DATA_MIRROR=http://127.0.0.1:PORT`` laid out as NAME/FILE: the
real download path of every job (a monkeypatch would not reach Snakemake's subprocesses), and the
archives are pinned in a fresh lock file on first download.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from bench import data

from .ci_workflow import REPO, WorkflowRun, snakemake
from .loopback_http import LoopbackServer
from .test_data_archives import upstream_zip
from .weight_files import WeightFiles

pytestmark = pytest.mark.slow

PAPER_CONFIG = REPO / "configs" / "paper.yaml"
EVAL_SETS = ["kodak", "clic2020-professional-valid", "div2k-valid"]
ARCHIVES = {  # dataset -> sizes (height, width) of its generated images; eval sets are resized to 768 then cropped
    "div2k-train": [(256, 320), (320, 256)],
    "div2k-valid": [(300, 400), (400, 300)],
    "clic2020-professional-valid": [(320, 480), (480, 320)],
}
# Only sizes and counts: every kind of part of configs/paper.yaml stays.
OVERRIDES = [
    "datasets={max_images: 2, eval_crop: 256}",
    "decoder={model: {num_channels: 16, num_res_blocks: 1}, train: {steps: 3, batch_size: 2, crop: 64, "
    "checkpoint_every: 2}}",
    "sampling={grid: [{sampler: ddim, steps: [2], eta: [0.0]}, {sampler: ddpm, steps: [2]}], batch_size: 2}",
    # The paper's own FID/256 patches (one per 256 px crop: Inception sees 299 px either way, so
    # fewer, larger patches are cheaper); fewer resamples and SWD descriptors.
    "metrics={bootstrap: 100, swd_patches_per_level: 1024}",
    "baselines={jpeg_qualities: [10]}",
    # One thread per torch job, so two jobs run side by side on the two cores: the paper config's
    # default (every core per job) runs them one after another, and most of a job this small is its
    # single-threaded start (imports, weight files), so one core would idle.
    "torch_threads=1",
]
FIGURES = ["rdp", "tradeoff", "samples", "cost"]
# Columns a row of that kind has no value for, by design (the summary's contract).
# batch_size and threads are the diffusion sampler's batching provenance (its samples differ with them at
# the rounding level); the MSH and JPEG rows carry cpu_numerics and device instead.
NOT_DIFFUSION = {
    "decoder_weights",
    "rho",
    "sampler",
    "steps",
    "eta",
    "t0",
    "guidance",
    "n_avg",
    "seed",
    "batch_size",
    "threads",
}
# The JPEG baseline is Pillow's codec: no decode record (time, memory, MSH weights, torch kernels).
NOT_JPEG = {"decode_s_per_image", "peak_mem_mb", "msh_weights", "cpu_numerics"}
# NIQE refuses images under 37 whole 96x96 blocks (256x256 has 4); kid_std needs a KID subset
# smaller than the patch count (here every subset is all patches).
SMALL_RUN_NAN = {
    "niqe",
    "niqe_ci_lo",
    "niqe_ci_hi",
    "niqe_reference",
    "niqe_reference_ci_lo",
    "niqe_reference_ci_hi",
    "kid_std_nonoverlap_p256",
}


@pytest.fixture(scope="module")
def paper_run(weight_files: WeightFiles, kodak_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> WorkflowRun:
    """The paper DAG, run once by the local executor on two cores against a loopback HTTP mirror."""
    from .loopback_http import serve

    tmp = tmp_path_factory.mktemp("paper")
    server_fixture = serve()
    server: LoopbackServer = next(server_fixture)
    try:
        server.mounts["/kodak"] = kodak_dir
        for seed, (name, sizes) in enumerate(ARCHIVES.items()):
            spec = data.get_dataset(name)
            server.files[f"/{name}/{spec.archive_name}"] = upstream_zip(tmp / "sources", name, sizes, seed=10 * seed)
        env = os.environ | {
            data.MIRROR_ENV: server.url(),
            data.LOCK_FILE_ENV: str(tmp / "datasets.lock.tsv"),
            "TORCH_HOME": str(weight_files.torch_home),
            "BENCH_WEIGHT_HASHES": str(weight_files.hashes),
        }
        run = snakemake(
            tmp / "run", "--cores", "2", "--config", *OVERRIDES, env=env, configfile=PAPER_CONFIG, timeout=3600
        )
    finally:
        next(server_fixture, None)
    print(f"paper DAG: {run.seconds:.0f} s wall")
    return run


def test_paper_dag_runs(paper_run: WorkflowRun) -> None:
    assert paper_run.result.returncode == 0, paper_run.output[-6000:]
    assert "export_msh" in paper_run.output and "train_msh" not in paper_run.output


def test_archives_were_pinned_on_first_download(paper_run: WorkflowRun) -> None:
    lock = paper_run.workdir.parent / "datasets.lock.tsv"
    assert sorted(_lock_names(lock)) == sorted(data.get_dataset(name).archive_name for name in ARCHIVES)


def _lock_names(lock: Path) -> list[str]:
    """The archive names pinned in a lock file (bench.data's TSV: a header, then archive, sha256)."""
    return [line.split("\t")[0] for line in lock.read_text().splitlines()[1:]]


@pytest.mark.parametrize("dataset", EVAL_SETS)
def test_every_column_is_filled(paper_run: WorkflowRun, dataset: str) -> None:
    summary = pd.read_csv(paper_run.workdir / "results" / dataset / "summary.csv")
    points = {(row.codec, row.quality, row.point) for row in summary.itertuples()}
    assert {(c, q, "msh") for c in ["mbt2018-mean"] for q in range(1, 6)} <= points
    diffusion = summary[summary["decoder"] == "diffusion"]
    assert sorted(set(zip(diffusion["quality"], diffusion["point"], strict=True))) == [
        (q, p) for q in (1, 2) for p in ["ddim-k2-eta0-s0", "ddpm-k2-s0"]
    ]
    assert (diffusion["rho"] == 0.9).all()
    assert summary["msh_weights"].dropna().str.startswith("zoo:").all()
    for column in ("lpips_backbone", "dists_backbone", "fid_backbone"):
        assert (summary[column] == "real").all(), column
    for row in summary.to_dict("records"):
        allowed = (
            SMALL_RUN_NAN
            | {
                "diffusion": set() if row["sampler"] == "ddim" else {"eta"},  # only DDIM has an eta
                "msh": NOT_DIFFUSION,
                "jpeg": NOT_DIFFUSION | NOT_JPEG,
            }[row["decoder"]]
        )
        empty = sorted(
            k for k, v in row.items() if k not in allowed and (v is None or (isinstance(v, float) and math.isnan(v)))
        )
        assert not empty, f"{dataset} {row['point']} q{row['quality']}: empty {empty}"


def test_every_figure_is_drawn(paper_run: WorkflowRun) -> None:
    for kind in FIGURES:
        for dataset in EVAL_SETS:
            for suffix in ("pdf", "png"):
                path = paper_run.workdir / "figures" / f"{kind}_{dataset}.{suffix}"
                assert path.stat().st_size > 1000, path
