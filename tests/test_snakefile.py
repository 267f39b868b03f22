"""The Snakefile loads, validates and dry-runs with every shipped config."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bench.config import load_config, validate_config
from bench.utils import BenchError
from bench.weight_files import ZOO_FILES
from tests.conftest import write_png

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else shutil.which("snakemake") or "snakemake", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_dry_run(config: Path, tmp_path: Path) -> None:
    result = _snakemake(
        "-n", "--configfile", str(config), "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prepare_dataset" in result.stdout
    # A dry run writes no file of the run: the config snapshot is the config_snapshot rule's output.
    assert [path.name for path in tmp_path.iterdir()] in ([], [".snakemake"])


def _snapshot(*args: str) -> subprocess.CompletedProcess[str]:
    """Run only the config_snapshot rule (``work/config.yaml``): what every step of that run reads."""
    return _snakemake("work/config.yaml", "--cores", "1", *args)


def test_bad_config_is_rejected_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"sampling": {"grid": [{"sampler": "euler", "steps": [10]}]}}))
    result = _snakemake(
        "-n", "--configfile", str(bad), "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile")
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    with pytest.raises(BenchError) as cli:  # the CLI's message, word for word, and not the schema dump
        validate_config(yaml.safe_load(bad.read_text()))
    assert "euler" in str(cli.value) and str(cli.value) in output.splitlines()
    assert "Failed validating" not in output


def test_empty_config_file_is_rejected_as_by_the_cli(tmp_path: Path) -> None:
    """Snakemake refuses an empty --configfile; so does ``load_config`` (the CLI's --config)."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = _snakemake(
        "-n", "--configfile", str(empty), "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile")
    )
    assert result.returncode != 0 and "keys at top level" in result.stdout + result.stderr
    with pytest.raises(BenchError, match="got an empty file"):
        load_config(empty)


def _byo_config(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    """The CI config with bring-your-own entries added."""
    config = yaml.safe_load((REPO / "configs" / "ci.yaml").read_text())
    config["baselines"]["byo"] = entries
    path = tmp_path / "byo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _dag_edges(dot: str) -> set[tuple[str, str]]:
    """``(from, to)`` job labels (rule name, then its wildcards, one per line) of a ``--dag`` graph."""
    nodes = re.finditer(r'(?P<id>\d+)\[label = "(?P<label>[^"]*)"', dot)
    labels = {node["id"]: node["label"].replace("\\n", " ") for node in nodes}
    return {(labels[a], labels[b]) for a, b in re.findall(r"(\d+) -> (\d+)", dot)}


def _metrics_points(dry_run: str) -> list[list[dict]]:
    """The ``--points`` JSON of every ``metrics`` command a ``-n -p`` dry run prints."""
    commands = [shlex.split(line) for line in dry_run.splitlines() if " metrics --config " in line]
    return [json.loads(words[words.index("--points") + 1]) for words in commands]


def test_byo_entries_are_checked_measured_in_place_and_tabled(tmp_path: Path) -> None:
    mine = tmp_path / "my codec"  # a space: paths from the config are quoted in the commands
    write_png(mine / "recon" / "kodim01.png", 32, 32)
    (mine / "bits").mkdir()
    (mine / "bits" / "kodim01.tfci").write_bytes(b"\x00" * 64)
    (mine / "bpp.csv").write_text("image,bpp\nkodim01,0.5\n")
    config = _byo_config(
        tmp_path,
        [
            {
                "name": "mine",
                "dataset": "kodak",
                "reconstructions": str(mine / "recon"),
                "bpp_table": str(mine / "bpp.csv"),
                "label": "My codec",
                "quality": 2,
            },
            {
                "name": "bits",
                "dataset": "kodak",
                "reconstructions": str(mine / "recon"),
                "bitstreams": str(mine / "bits"),
            },
            {
                "name": "mine",
                "dataset": "div2k-valid",
                "reconstructions": str(mine / "recon"),
                "bitstreams": str(mine / "bits"),
            },  # div2k-valid is not evaluated by this config: no job
        ],
    )
    args = ["--configfile", str(config), "--directory", str(tmp_path / "run"), "--snakefile", str(REPO / "Snakefile")]
    dag = _snakemake("--dag", *args)
    assert dag.returncode == 0, dag.stdout + dag.stderr
    edges = _dag_edges(dag.stdout)
    for name in ("mine", "bits"):  # a DAG label shows only the wildcards its job adds to its inputs' jobs
        assert (f"byo_check byo_point: byo-{name}", "metrics_byo") in edges
    assert ("metrics_byo", "tables") in edges
    assert not any("div2k" in a or "div2k" in b for a, b in edges)

    dry = _snakemake("-n", "-p", *args)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    recon = shlex.quote(str(mine / "recon"))
    assert (
        f"byo-check --reference data/eval/kodak --reconstructions {recon} --bpp-table "
        f"{shlex.quote(str(mine / 'bpp.csv'))} --out work/kodak/byo/bpp/byo-mine.csv"
    ) in dry.stdout
    assert f"--bitstreams {shlex.quote(str(mine / 'bits'))} --out work/kodak/byo/bpp/byo-bits.csv" in dry.stdout
    measured = {point["labels"]["point"]: point for points in _metrics_points(dry.stdout) for point in points}
    assert measured["byo-mine"] == {
        "reconstructions": str(mine / "recon"),
        "bpp_table": "work/kodak/byo/bpp/byo-mine.csv",
        "out": "work/kodak/metrics/byo/byo-mine.csv",
        "summary": "work/kodak/metrics/byo/byo-mine_summary.csv",
        "labels": {"dataset": "kodak", "codec": "My codec", "quality": "2", "point": "byo-mine"},
    }
    # The rate was checked by byo_check; no quality given: none labelled.
    assert measured["byo-bits"]["bpp_table"] == "work/kodak/byo/bpp/byo-bits.csv"
    assert measured["byo-bits"]["labels"] == {"dataset": "kodak", "codec": "bits", "point": "byo-bits"}
    assert f" {recon} {recon} --out-per-image" in dry.stdout  # tables: the byo folders, last


def test_a_byo_name_twice_for_one_dataset_is_rejected_naming_the_key(tmp_path: Path) -> None:
    entry = {"name": "mine", "dataset": "kodak", "reconstructions": "recon", "bpp_table": "bpp.csv"}
    config = _byo_config(tmp_path, [entry, {**entry, "bpp_table": "other.csv"}])
    result = _snakemake(
        "-n", "--configfile", str(config), "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile")
    )
    assert result.returncode != 0
    assert "'baselines.byo' names 'mine' twice for dataset 'kodak'" in result.stdout + result.stderr


def _dry_run_rules(config: Path, workdir: Path) -> tuple[dict[str, int], str]:
    """Jobs per rule of a dry run (its "Job stats" table), and the whole output."""
    result = _snakemake(
        "-n", "--configfile", str(config), "--directory", str(workdir), "--snakefile", str(REPO / "Snakefile")
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    stats = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}, output


def test_msh_source_auto_uses_the_zoo_files_when_present(
    real_weights,
    tmp_path: Path,  # noqa: ANN001 (tests.weight_files.WeightFiles)
) -> None:
    """The default config's auto with the zoo files in $TORCH_HOME: exported (the job reads the
    zoo-format file), not trained; the CI config keeps `source: train` (its regression does not
    depend on what $TORCH_HOME holds)."""
    jobs, output = _dry_run_rules(REPO / "configs" / "default.yaml", tmp_path / "default")
    assert "train_msh" not in jobs and jobs["export_msh"] == 3 and "TRAINING a small MSH" not in output
    result = _snakemake(
        "models/msh/q1.pt",
        "--cores",
        "1",
        "--configfile",
        str(REPO / "configs" / "default.yaml"),
        "--directory",
        str(tmp_path / "default"),
        "--snakefile",
        str(REPO / "Snakefile"),
    )
    assert result.returncode == 0, result.stdout + result.stderr  # the job itself reads the zoo-format file
    saved = torch.load(tmp_path / "default" / "models" / "msh" / "q1.pt", map_location="cpu", weights_only=True)
    assert saved["source"] == "compressai-zoo" and saved["zoo_file"] == ZOO_FILES[1] and saved["M"] == 192
    jobs, _ = _dry_run_rules(REPO / "configs" / "ci.yaml", tmp_path / "ci")
    assert jobs["train_msh"] == 1 and "export_msh" not in jobs


def test_msh_source_auto_trains_with_one_warning_without_zoo_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    jobs, output = _dry_run_rules(REPO / "configs" / "default.yaml", tmp_path / "default")
    assert jobs["train_msh"] == 3 and "export_msh" not in jobs
    assert output.count("TRAINING a small MSH") == 1 and "mbt2018-mean-1-e522738d.pth.tar" in output


def test_nested_config_overrides_are_typed(tmp_path: Path) -> None:
    """configs/paper.yaml's documented guidance override: Snakemake hands nested values over as strings."""
    result = _snapshot(
        "--configfile",
        str(REPO / "configs" / "paper.yaml"),
        "--directory",
        str(tmp_path),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--config",
        "decoder={train: {p_uncond: 0.1}}",
        "sampling={grid: [{sampler: ddim, steps: [10], guidance: [2.0]}]}",
        "msh={source: train}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = _run_config(tmp_path)
    assert config["decoder"]["train"]["p_uncond"] == 0.1 and config["decoder"]["train"]["steps"] == 1500000
    assert config["sampling"]["grid"][0]["steps"] == [10] and config["sampling"]["grid"][0]["guidance"] == [2.0]


def _run_config(workdir: Path) -> dict[str, object]:
    """The validated config a Snakemake run in ``workdir`` handed its steps (its ``work/config.yaml``
    snapshot, and the one copy named by its hash, which holds the same)."""
    (archived,) = (workdir / "work" / "configs").glob("*.yaml")
    current = yaml.safe_load((workdir / "work" / "config.yaml").read_text())
    assert yaml.safe_load(archived.read_text()) == current
    return current


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_a_configfile_is_the_whole_config_wherever_snakemake_runs(config: Path, tmp_path: Path) -> None:
    """``--configfile X`` runs X with the schema's defaults, exactly what ``python -m bench --config X``
    reads, also from a folder holding ``configs/default.yaml`` (the checkout, where users run).

    Snakemake merges a Snakefile's ``configfile:`` under the command line's: the CI config run in
    the checkout silently took the default config's decoder init and prior (so its trained decoder,
    and the golden table's diffusion rows, differed from the same command run anywhere else).
    """
    checkout_like = tmp_path / "checkout"
    shutil.copytree(REPO / "configs", checkout_like / "configs")
    elsewhere = tmp_path / "elsewhere"
    for workdir in (checkout_like, elsewhere):
        result = _snapshot(
            "--configfile", str(config), "--directory", str(workdir), "--snakefile", str(REPO / "Snakefile")
        )
        assert result.returncode == 0, result.stdout + result.stderr
    expected = load_config(config)
    expected["msh"]["source"] = _run_config(elsewhere)["msh"]["source"]  # `auto` is resolved at parse time
    assert _run_config(checkout_like) == expected
    assert _run_config(elsewhere) == expected


def test_without_a_configfile_the_default_config_runs_from_any_folder(tmp_path: Path) -> None:
    """No ``--configfile``: the checkout's ``configs/default.yaml``, found beside the Snakefile, not in
    the working directory (``--directory`` elsewhere works); ``--config`` overrides still apply."""
    result = _snapshot("--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile"), "--config", "seed=7")
    assert result.returncode == 0, result.stdout + result.stderr
    expected = load_config(REPO / "configs" / "default.yaml") | {"seed": 7}
    expected["msh"]["source"] = _run_config(tmp_path)["msh"]["source"]
    assert _run_config(tmp_path) == expected
