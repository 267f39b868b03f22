"""End to end: the CI configuration's whole DAG runs under Snakemake and matches the golden table.

``snakemake --configfile configs/ci.yaml --cores 2`` runs every rule (data from the mirror, MSH and
decoder training, encode, the decode grid, JPEG, metrics, tables, figures) in a temporary folder.
Its ``results/kodak/summary.csv`` is compared with ``results/reference/ci_summary.csv`` column by
column within the tolerances below, and a readable diff is printed on failure. Set
``GENERATE_REFERENCE=1`` to rewrite the reference from this run (then review and commit it).

Tolerances: the run is seeded and CPU-deterministic on one machine; they absorb float differences
between x86 CPUs (a few ULPs that training amplifies), not behaviour changes. A changed number
beyond them fails CI.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "ci_summary.csv"
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
    "fid": (0.0, 0.2),
    "nfe": (0.0, 0.0),
}
FIGURES = ["rdp_kodak", "tradeoff_kodak", "samples_kodak"]


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else shutil.which("snakemake") or "snakemake",
           "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(REPO / "configs" / "ci.yaml"), *args]
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # two jobs in parallel on two cores
    return subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)


def _close(actual: float, expected: float, atol: float, rtol: float) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return math.isclose(actual, expected, abs_tol=atol, rel_tol=rtol)


def compare(actual: pd.DataFrame, expected: pd.DataFrame) -> list[str]:
    """Readable differences between two summary tables (empty when they agree)."""
    problems = []
    a, e = actual.set_index(KEYS), expected.set_index(KEYS)
    for key in sorted(set(e.index) - set(a.index), key=str):
        problems.append(f"missing row {key}")
    for key in sorted(set(a.index) - set(e.index), key=str):
        problems.append(f"unexpected row {key}")
    for key in sorted(set(a.index) & set(e.index), key=str):
        for column, (atol, rtol) in TOLERANCES.items():
            if column not in e.columns:
                continue
            got, want = float(a.loc[key, column]), float(e.loc[key, column])
            if not _close(got, want, atol, rtol):
                problems.append(f"{'/'.join(map(str, key))} {column}: got {got:.6g}, reference {want:.6g} "
                                f"(tolerance abs {atol}, rel {rtol})")
    return problems


@pytest.mark.slow
def test_ci_workflow_matches_reference(tmp_path: Path) -> None:
    result = _snakemake(tmp_path, "--cores", "2")
    assert result.returncode == 0, result.stderr[-6000:]
    for name in FIGURES:
        assert (tmp_path / "figures" / f"{name}.pdf").stat().st_size > 0
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
    summary = pd.read_csv(tmp_path / "results" / "kodak" / "summary.csv")
    assert {"msh", "ddim-k2-eta0-s0", "ddpm-k4-s0"} <= set(summary["point"])
    if os.environ.get("GENERATE_REFERENCE") == "1":
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        summary.to_csv(REFERENCE, index=False)
        pytest.skip(f"reference regenerated at {REFERENCE}: review and commit it")
    problems = compare(summary, pd.read_csv(REFERENCE))
    assert not problems, "summary differs from results/reference/ci_summary.csv:\n" + "\n".join(problems)
    # Everything is up to date now: a second run has nothing to do.
    rerun = _snakemake(tmp_path, "--cores", "2", "-n")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def test_compare_reports_changed_numbers() -> None:
    base = pd.DataFrame([{"dataset": "kodak", "codec": "mbt2018-mean", "quality": 1, "point": "msh",
                          "bpp": 0.2, "psnr": 25.0, "nfe": 0}])
    assert compare(base, base) == []
    changed = base.assign(psnr=25.5)
    assert compare(changed, base) == [
        "kodak/mbt2018-mean/1/msh psnr: got 25.5, reference 25 (tolerance abs 0.3, rel 0.0)"
    ]
    assert compare(base.iloc[0:0], base) == ["missing row ('kodak', 'mbt2018-mean', 1, 'msh')"]
