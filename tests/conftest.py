"""Shared test fixtures: the offline mirror beside the checkout, small synthetic images, and the
CI configuration's DAG run once per session with the local executor.

The mirror is ``$BENCH_DATA_MIRROR`` when set, else ``../shared/data`` beside the repository
root (what CI and our machines have). Tests that need a dataset the mirror lacks skip with a reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.ci_workflow import WorkflowRun, snakemake
from tests.loopback_http import LoopbackServer, serve
from tests.weight_files import real_weights, weight_files  # noqa: F401 (fixtures: format-exact weights)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def mirror_dir() -> Path:
    """The dataset mirror the tests use."""
    return Path(os.environ.get("BENCH_DATA_MIRROR") or SHARED / "data")


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The dataset mirror folder (skips when it is absent)."""
    path = mirror_dir()
    if not path.is_dir():
        pytest.skip(f"no dataset mirror at {path} (set BENCH_DATA_MIRROR)")
    return path


def mirror_folder(mirror: Path, name: str, probe: str, what: str) -> Path:
    """The mirror's ``name`` folder, skipping the test when its ``probe`` file is absent."""
    path = mirror / name
    if not (path / probe).exists():
        pytest.skip(f"{what} is not in the mirror {mirror}")
    return path


@pytest.fixture(scope="session")
def kodak_dir(mirror: Path) -> Path:
    """The mirror's Kodak folder (skips when absent)."""
    return mirror_folder(mirror, "kodak", "kodim01.png", "Kodak")


@pytest.fixture(autouse=True)
def _mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the suite at the test mirror and a lock file that tests cannot leak into the checkout."""
    monkeypatch.setenv("BENCH_DATA_MIRROR", str(mirror_dir()))


@pytest.fixture(scope="session")
def ci_local_run(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> WorkflowRun:
    """The CI configuration's whole DAG run by the local executor on two cores, once per session.

    tests/test_workflow.py checks it against the committed reference; tests/test_slurm.py compares
    the Slurm run with it and reuses its trained models. Minutes of CPU: only slow tests use it.
    """
    workdir = tmp_path_factory.mktemp("ci-local")
    return snakemake(workdir, "--cores", "2", env=os.environ | {"BENCH_DATA_MIRROR": str(mirror)})


def write_png(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """Write a smooth random RGB PNG (a sum of a gradient and noise) and return its path."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx[..., None] * 255 / max(width - 1, 1) + yy[..., None] * 127 / max(height - 1, 1)) % 256
    image = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A real HTTP server on 127.0.0.1 (files, mounted folders, Range, faults) for the download tests."""
    yield from serve()
