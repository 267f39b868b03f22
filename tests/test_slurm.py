"""The workflow on a real Slurm cluster: a single-node cluster on this machine, Snakemake's Slurm
executor, and the profile profiles/slurm-local.

The fixture ``slurm_cluster`` starts munged, slurmctld and slurmd (tests/local_slurm.py) and stops them by
PID at the end. The CI DAG then runs through the cluster: every job must be in Slurm's own records
(squeue keeps finished jobs, with the comment the executor gives them, which names the rule) as a
completed job of this working directory, one per job of the local executor's run, and the summary
table must agree with the local executor's within the regression tolerances. A second run gives a
rule a corrupt checkpoint: the cluster job fails, and the workflow stops naming the rule and its log
without writing a table. Both are marked ``slurm`` and ``slow``; a third test, seconds long and with
no cluster, dry-runs profiles/slurm and profiles/slurm-local and checks which rules ask for a GPU.

Where Slurm cannot be started (packages missing, /etc/slurm/slurm.conf owned by a real Slurm) the
tests skip with the reason; under CI (``CI=true``, where .ci/run installs the packages) they fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.ci_workflow import REPO, WorkflowRun, compare, job_counts, snakemake
from tests.local_slurm import LocalSlurm, SlurmUnavailable

PROFILE = ["--profile", str(REPO / "profiles" / "slurm-local"), "--workflow-profile", "none"]
# What the Slurm executor logs for every submission.
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: ")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[LocalSlurm]:
    """A running single-node cluster (skips, or fails under CI, when it cannot start).

    Session-scoped, and named before ``ci_local_run`` by the tests, so that it is set up first: a
    machine without Slurm skips at once instead of running the local DAG for nothing.
    """
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    request.addfinalizer(cluster.stop)
    start = time.monotonic()
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the Slurm tests, but the local cluster did not start: {exc}")
        pytest.skip(f"cannot start a local Slurm cluster: {exc}")
    print(f"local Slurm cluster idle {time.monotonic() - start:.1f} s after start")
    yield cluster


def slurm_jobs(cluster: LocalSlurm) -> dict[str, dict[str, str]]:
    """Every job slurmctld still lists, finished ones included: id -> state, comment, work dir."""
    result = cluster.run("squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%Z")
    assert result.returncode == 0, result.stderr
    jobs = {}
    for line in result.stdout.splitlines():
        job_id, state, comment, workdir = line.strip().split("|", 3)
        jobs[job_id] = {"state": state, "comment": comment, "workdir": workdir}
    return jobs


def rule_of(comment: str) -> str:
    """The rule name in the comment the executor gives a job: rule_<name>[_wildcards_<values>]."""
    assert comment.startswith("rule_"), comment
    return comment.removeprefix("rule_").split("_wildcards_", 1)[0]


def run_on_cluster(cluster: LocalSlurm, workdir: Path, *targets: str) -> WorkflowRun:
    return snakemake(workdir, *PROFILE, *targets, env=cluster.env)


def dry_run_resources(output: str) -> dict[str, dict[str, str]]:
    """Rule -> the resources a dry run lists for its jobs (the last job of a rule wins)."""
    resources = {}
    for rule, listed in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", output, flags=re.MULTILINE):
        resources[rule] = dict(item.split("=", 1) for item in listed.split(", "))
    return resources


@pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason="snakemake-executor-plugin-slurm is not installed (pip install -e '.[cluster]')",
)
def test_profiles_ask_for_gpus_only_for_gpu_rules(tmp_path: Path) -> None:
    plain = snakemake(tmp_path, "-n", "--workflow-profile", "none", "--config", "device=cuda")
    assert plain.result.returncode == 0, plain.output[-3000:]
    declared = dry_run_resources(plain.output)
    gpu_rules = {rule for rule, res in declared.items() if res.get("gpu") == "1"}
    assert gpu_rules >= {"train_msh", "train_decoder", "decode_diffusion"}, declared

    # On the CPU no job holds the `gpu` resource, so profiles/default's gpu=1 does not make the
    # training and decoding jobs wait for each other on a many-core machine.
    cpu = snakemake(tmp_path, "-n", "--config", "device=cpu")
    assert cpu.result.returncode == 0, cpu.output[-3000:]
    assert all(res.get("gpu", "0") == "0" for res in dry_run_resources(cpu.output).values())

    cluster = snakemake(tmp_path, "-n", "--profile", str(REPO / "profiles" / "slurm"), "--workflow-profile", "none")
    assert cluster.result.returncode == 0, cluster.output[-3000:]
    for rule, res in dry_run_resources(cluster.output).items():
        if rule == "all":
            continue
        assert res.get("gpu", "0") == ("1" if rule in gpu_rules else "0"), (rule, res)
        assert res["slurm_partition"] == ("gpu" if rule in gpu_rules else "cpu"), (rule, res)
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0, (rule, res)

    local = snakemake(tmp_path, "-n", *PROFILE)
    assert local.result.returncode == 0, local.output[-3000:]
    for rule, res in dry_run_resources(local.output).items():
        assert res.get("gpu", "0") == "0" and res["slurm_partition"] == "local", (rule, res)


@pytest.mark.slurm
@pytest.mark.slow
def test_ci_workflow_runs_as_slurm_jobs(slurm_cluster: LocalSlurm, ci_local_run: WorkflowRun, tmp_path: Path) -> None:
    assert ci_local_run.result.returncode == 0, ci_local_run.result.stderr[-6000:]
    run = run_on_cluster(slurm_cluster, tmp_path)
    print(f"CI DAG: local executor {ci_local_run.seconds:.0f} s, Slurm {run.seconds:.0f} s")
    assert run.result.returncode == 0, run.output[-6000:]

    submitted = SUBMITTED.findall(run.output)
    records = slurm_jobs(slurm_cluster)
    assert set(submitted) <= set(records), f"jobs Slurm does not know: {set(submitted) - set(records)}"
    for job_id in submitted:
        assert records[job_id]["state"] == "COMPLETED", (job_id, records[job_id])
        assert Path(records[job_id]["workdir"]) == tmp_path, (job_id, records[job_id])
    # One Slurm job per job of the local run, but `all` (it runs no command) and the config snapshot
    # (a localrule: the main process writes it).
    ran = Counter(rule_of(records[job_id]["comment"]) for job_id in submitted)
    expected = job_counts(ci_local_run.output)
    expected.pop("all")
    assert expected.pop("config_snapshot") == 1 and (tmp_path / "work" / "config.yaml").is_file()
    assert ran == expected

    problems = compare(pd.read_csv(run.summary), pd.read_csv(ci_local_run.summary))
    assert not problems, "the Slurm run's summary differs from the local executor's:\n" + "\n".join(problems)


@pytest.mark.slurm
@pytest.mark.slow
def test_failing_cluster_job_stops_the_workflow(
    slurm_cluster: LocalSlurm, ci_local_run: WorkflowRun, tmp_path: Path
) -> None:
    assert ci_local_run.result.returncode == 0, ci_local_run.result.stderr[-6000:]
    # The local run's data, models and work, less one diffusion point's reconstructions, with the
    # decoder checkpoint corrupted (its time kept, so that only the removed point is out of date): the
    # table needs one decode job, which fails, and nothing else is running to wait for.
    for folder in ("data", "models", "work"):
        shutil.copytree(ci_local_run.workdir / folder, tmp_path / folder)
    shutil.rmtree(tmp_path / "work" / "kodak" / "q1" / "ddim-k2-eta0-s0")
    decoder = tmp_path / "models" / "decoder" / "q1.pt"
    trained = decoder.stat()
    decoder.write_bytes(b"not a torch checkpoint")
    os.utime(decoder, ns=(trained.st_atime_ns, trained.st_mtime_ns))

    run = run_on_cluster(slurm_cluster, tmp_path, "results/kodak/summary.csv")

    assert run.result.returncode != 0, run.output[-6000:]
    assert job_counts(run.output) == {"decode_diffusion": 1, "metrics_diffusion": 1, "tables": 1}
    failure = re.search(
        r"Error in rule decode_diffusion:.*?\n\s+log: (logs/decode/kodak/q1/ddim-k2-eta0-s0\.log)",
        run.output,
        flags=re.DOTALL,
    )
    assert failure, run.output[-6000:]
    log = tmp_path / failure.group(1)
    assert "cannot read decoder checkpoint models/decoder/q1.pt" in log.read_text(), log.read_text()
    assert not (tmp_path / "results" / "kodak" / "summary.csv").exists()
    assert not list((tmp_path / "results").rglob("*.csv*"))
    # The failure happened in a Slurm job.
    records = slurm_jobs(slurm_cluster)
    failed = [records[job_id] for job_id in SUBMITTED.findall(run.output) if records[job_id]["state"] == "FAILED"]
    assert failed and all(rule_of(job["comment"]) == "decode_diffusion" for job in failed), failed
