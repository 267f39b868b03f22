"""End to end: the CI configuration's whole DAG runs under Snakemake and matches the golden table.

``snakemake --configfile configs/ci.yaml --cores 2`` runs every rule (data from the mirror, MSH and
decoder training, encode, the decode grid, JPEG, metrics, tables, figures) in a temporary folder
(the session fixture ``ci_local_run``, which tests/test_slurm.py shares). Its
``results/kodak/summary.csv`` is compared with ``results/reference/ci_summary.csv`` column by
column within the tolerances of tests/ci_workflow.py, and a readable diff is printed on failure. Set
``GENERATE_REFERENCE=1`` to rewrite the reference from this run (then review and commit it).

Tolerances: the run is seeded and CPU-deterministic on one machine; they absorb float differences
between x86 CPUs (a few ULPs that training amplifies), not behaviour changes. A changed number
beyond them fails CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.ci_workflow import WorkflowRun, compare, snakemake

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "ci_summary.csv"
FIGURES = ["rdp_kodak", "tradeoff_kodak", "samples_kodak"]


@pytest.mark.slow
def test_ci_workflow_matches_reference(ci_local_run: WorkflowRun) -> None:
    workdir = ci_local_run.workdir
    assert ci_local_run.result.returncode == 0, ci_local_run.result.stderr[-6000:]
    for name in FIGURES:
        assert (workdir / "figures" / f"{name}.pdf").stat().st_size > 0
        assert (workdir / "figures" / f"{name}.png").stat().st_size > 0
    summary = pd.read_csv(ci_local_run.summary)
    assert {"msh", "ddim-k2-eta0-s0", "ddpm-k4-s0"} <= set(summary["point"])
    if os.environ.get("GENERATE_REFERENCE") == "1":
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        summary.to_csv(REFERENCE, index=False)
        pytest.skip(f"reference regenerated at {REFERENCE}: review and commit it")
    problems = compare(summary, pd.read_csv(REFERENCE))
    assert not problems, "summary differs from results/reference/ci_summary.csv:\n" + "\n".join(problems)
    # Everything is up to date now: a second run has nothing to do.
    rerun = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in rerun.output


def test_compare_reports_changed_numbers() -> None:
    base = pd.DataFrame(
        [
            {
                "dataset": "kodak",
                "codec": "mbt2018-mean",
                "quality": 1,
                "point": "msh",
                "bpp": 0.2,
                "psnr": 25.0,
                "nfe": 0,
            }
        ]
    )
    assert compare(base, base) == []
    changed = base.assign(psnr=25.5)
    assert compare(changed, base) == [
        "kodak/mbt2018-mean/1/msh psnr: got 25.5, reference 25 (tolerance abs 0.3, rel 0.0)"
    ]
    assert compare(base.iloc[0:0], base) == ["missing row ('kodak', 'mbt2018-mean', 1, 'msh')"]


def test_compare_reports_a_changed_setting() -> None:
    """A run decoded under other threads or another batch size is not comparable: compare says which."""
    base = pd.DataFrame(
        [
            {
                "dataset": "kodak",
                "codec": "mbt2018-mean",
                "quality": 1,
                "point": "ddim-k2-eta0-s0",
                "psnr": 15.0,
                "batch_size": 2,
                "threads": 1,
            }
        ]
    )
    assert compare(base, base) == []
    assert compare(base.assign(threads=2), base) == [
        "kodak/mbt2018-mean/1/ddim-k2-eta0-s0 threads: run under 2, reference under 1 (the numbers depend on it)"
    ]
