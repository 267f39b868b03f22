"""Running the CI configuration's DAG under Snakemake and comparing summary tables.

Shared by tests/test_workflow.py (local executor vs the committed reference) and
tests/test_slurm.py (Slurm vs the local executor). The tolerances absorb float differences between
x86 CPUs (a few ULPs that training amplifies), not behaviour changes.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO / "configs" / "ci.yaml"
KEYS = ["dataset", "codec", "quality", "point"]
# column -> (absolute tolerance, relative tolerance)
TOLERANCES: dict[str, tuple[float, float]] = {
    "bpp": (0.002, 0.02),
    "psnr": (0.3, 0.0),
    "ms_ssim": (0.01, 0.0),
    "lpips": (0.01, 0.05),
    "dists": (0.01, 0.05),
    "niqe": (0.3, 0.05),
    "swd": (2.0, 0.1),
    "fid_hific_p64": (0.0, 0.2),  # configs/ci.yaml: hific grids of 64 px patches (bench.metrics.columns)
    "nfe": (0.0, 0.0),
}

# Settings the numbers depend on beyond the config (a decode's batch, CPU threads and CPU kernels): they must be
# equal where both tables record them, or the numbers are not comparable.
PROVENANCE = ("batch_size", "threads", "cpu_numerics")


@dataclass(frozen=True)
class WorkflowRun:
    """One Snakemake run: its working directory, its process result and its wall time."""

    workdir: Path
    result: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def output(self) -> str:
        """Snakemake's stdout and stderr together (its log goes to stderr)."""
        return self.result.stdout + self.result.stderr

    @property
    def summary(self) -> Path:
        return self.workdir / "results" / "kodak" / "summary.csv"


def snakemake(
    workdir: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 3600, configfile: Path = CI_CONFIG
) -> WorkflowRun:
    """Run the repository's Snakefile with ``configfile`` (the CI config) in ``workdir``; ``env``
    replaces os.environ.

    Jobs run with one thread each (two jobs in parallel on two cores).
    """
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [
        str(exe) if exe.exists() else shutil.which("snakemake") or "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    run_env = dict(env if env is not None else os.environ) | {"OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env, check=False)
    return WorkflowRun(workdir, result, time.monotonic() - start)


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from the "Job stats:" table Snakemake prints before running (no ``total``)."""
    lines = output.split("Job stats:", 1)[1].splitlines()[3:]
    counts = {}
    for line in lines:
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    return counts


def _close(actual: float, expected: float, atol: float, rtol: float) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return math.isclose(actual, expected, abs_tol=atol, rel_tol=rtol)


def _same(actual: object, expected: object) -> bool:
    """Equal settings, or both unrecorded (NaN)."""
    return bool(pd.isna(actual) and pd.isna(expected)) or actual == expected


def compare(actual: pd.DataFrame, expected: pd.DataFrame) -> list[str]:
    """Readable differences between two summary tables (empty when they agree)."""
    problems = []
    a, e = actual.set_index(KEYS), expected.set_index(KEYS)
    for key in sorted(set(e.index) - set(a.index), key=str):
        problems.append(f"missing row {key}")
    for key in sorted(set(a.index) - set(e.index), key=str):
        problems.append(f"unexpected row {key}")
    for key in sorted(set(a.index) & set(e.index), key=str):
        for column in PROVENANCE:
            if column in e.columns and column in a.columns and not _same(a.loc[key, column], e.loc[key, column]):
                problems.append(
                    f"{'/'.join(map(str, key))} {column}: run under {a.loc[key, column]}, "
                    f"reference under {e.loc[key, column]} (the numbers depend on it)"
                )
        for column, (atol, rtol) in TOLERANCES.items():
            if column not in e.columns:
                continue
            got, want = float(a.loc[key, column]), float(e.loc[key, column])
            if not _close(got, want, atol, rtol):
                problems.append(
                    f"{'/'.join(map(str, key))} {column}: got {got:.6g}, reference {want:.6g} "
                    f"(tolerance abs {atol}, rel {rtol})"
                )
    return problems
