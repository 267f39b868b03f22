"""The Snakefile loads, validates and dry-runs with every shipped config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else shutil.which("snakemake") or "snakemake", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_dry_run(config: Path, tmp_path: Path) -> None:
    result = _snakemake("-n", "--configfile", str(config), "--directory", str(tmp_path), "--snakefile",
                        str(REPO / "Snakefile"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prepare_dataset" in result.stdout


def test_bad_config_is_rejected_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"sampling": {"grid": [{"sampler": "euler", "steps": [10]}]}}))
    result = _snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), "--snakefile",
                        str(REPO / "Snakefile"))
    assert result.returncode != 0
    assert "euler" in result.stdout + result.stderr
