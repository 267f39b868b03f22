"""End to end: the CI configuration's whole DAG runs under Snakemake and matches the golden table.

``snakemake --configfile configs/ci.yaml --cores 2`` runs every rule (data from the mirror, MSH and
decoder training, encode, the decode grid, JPEG, metrics, tables, figures) in a temporary folder
(the session fixture ``ci_local_run``, which tests/test_slurm.py shares). Its
``results/kodak/summary.csv`` is compared with the reference of this CPU's vendor,
``results/reference/ci_summary.csv`` (Intel) or ``ci_summary_amd.csv`` (AMD), column by column within
the tolerances of tests/ci_workflow.py, and a readable diff is printed on failure. Set
``GENERATE_REFERENCE=1`` to rewrite this vendor's reference from this run (then review and commit it).

Tolerances: the run is seeded and CPU-deterministic on one machine; they absorb float differences
between CPU models (a few ULPs that training amplifies), not behaviour changes. A changed number
beyond them fails CI. One reference per vendor: with the portable kernels an Intel Xeon and an AMD
EPYC still train the CI's MSH to other weights (q1 0.161 against 0.156 bpp), far beyond any
tolerance that would still catch a changed number (README, Tests and CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.ci_workflow import WorkflowRun, compare, snakemake

REPO = Path(__file__).resolve().parents[1]
REFERENCES = {"GenuineIntel": "ci_summary.csv", "AuthenticAMD": "ci_summary_amd.csv"}


def cpu_vendor() -> str:
    """The x86 vendor string of this machine's CPU (``vendor_id`` in /proc/cpuinfo), or ``unknown``."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "unknown")


def reference_path(vendor: str) -> Path:
    """The golden table made on a CPU of ``vendor``; an unknown vendor fails, naming the fix."""
    if vendor not in REFERENCES:
        pytest.fail(f"no golden table for CPU vendor {vendor!r}: run GENERATE_REFERENCE=1 and add it to REFERENCES")
    return REPO / "results" / "reference" / REFERENCES[vendor]


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
    reference = reference_path(cpu_vendor())
    if os.environ.get("GENERATE_REFERENCE") == "1":
        reference.parent.mkdir(parents=True, exist_ok=True)
        summary.to_csv(reference, index=False)
        pytest.skip(f"reference regenerated at {reference}: review and commit it")
    problems = compare(summary, pd.read_csv(reference))
    assert not problems, f"summary differs from {reference.relative_to(REPO)}:\n" + "\n".join(problems)
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


def test_each_vendor_has_its_reference_and_an_unknown_one_is_named() -> None:
    for vendor in REFERENCES:
        assert reference_path(vendor).is_file(), vendor
    with pytest.raises(pytest.fail.Exception, match="no golden table for CPU vendor 'HygonGenuine'"):
        reference_path("HygonGenuine")
