"""The CLI boundary: bad flag values get the schema's one line, environment errors
(read-only or full disk, a folder where a file goes) one line naming the path and the fix, and
SIGTERM of a training saves its state, says the step and exits 143; the rerun resumes."""

from __future__ import annotations

import errno
import io
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

import pytest
import torch
from compressai.models import MeanScaleHyperprior

import bench.codec.train as train_module
import bench.utils
from bench.cli import main
from bench.codec.checkpoints import save_checkpoint
from bench.codec.train import partial_path
from bench.utils import TERMINATED_EXIT, BenchError, atomic_path, atomic_torch_save
from tests.conftest import REPO, write_png
from tests.test_codec_train import train_args


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    for i in range(2):
        write_png(tmp_path / "train" / f"p{i}.png", 72, 80, seed=i)
    return tmp_path / "train"


@pytest.fixture()
def msh_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "q1.pt"
    save_checkpoint(path, MeanScaleHyperprior(8, 8), quality=1)
    return path


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    """The command's stderr, which must be exactly one ``error: ...`` line; returns its message."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0].removeprefix("error: ")


# ----------------------------------------------------------------------------- flags and the schema


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--steps", "-5", "config key 'msh.train.steps': -5 is less than the minimum of 1"),
        ("--crop", "50", "config key 'msh.train.crop': 50 is less than the minimum of 64"),
        ("--crop", "96", "config key 'msh.train.crop': 96 is not a multiple of 64"),
        ("--checkpoint-every", "0", "config key 'msh.train.checkpoint_every': 0 is less than the minimum of 1"),
        ("--batch-size", "0", "config key 'msh.train.batch_size': 0 is less than the minimum of 1"),
        ("--lr", "-1", "config key 'msh.train.lr': -1.0 is less than or equal to the minimum of 0"),
        ("--seed", "-1", "config key 'seed': -1 is less than the minimum of 0"),
    ],
)
def test_train_msh_flags_are_checked_by_the_schema(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str, message: str
) -> None:
    """These used to write an untrained checkpoint (-5 steps) or die with a traceback."""
    out = tmp_path / "q1.pt"
    assert main(train_args(data_dir, out, **{flag: value})) == 2
    assert one_error_line(capsys) == message
    assert not out.exists() and not partial_path(out).exists()


def test_train_decoder_steps_flag_is_checked_by_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "decoder.pt"
    args = [
        "train-decoder",
        "--config",
        str(REPO / "configs" / "ci.yaml"),
        "--quality",
        "1",
        "--msh-checkpoint",
        str(tmp_path / "msh.pt"),
        "--data",
        str(tmp_path),
        "--out",
        str(out),
        "--steps",
        "-1",
    ]
    assert main(args) == 2
    assert one_error_line(capsys) == "config key 'decoder.train.steps': -1 is less than the minimum of 1"
    assert not out.exists()


def test_bad_config_key_prints_one_line_not_the_schema(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("msh:\n  train:\n    steps: -5\n")
    assert main(train_args(data_dir, tmp_path / "q1.pt", **{"--config": str(config), "--steps": "3"})) == 2
    assert one_error_line(capsys) == "config key 'msh.train.steps': -5 is less than the minimum of 1"
    assert "Failed validating" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- write errors


def read_only_mkstemp(*args, **kwargs):
    """What ``tempfile.mkstemp`` raises in a folder of a read-only file system (as root, chmod would not)."""
    name = f"{kwargs.get('prefix', 'tmp')}XXXXXXXX{kwargs.get('suffix', '')}"
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(kwargs.get("dir", "."), name))


def read_only_message(dest: Path) -> str:
    return f"cannot write {dest}: Read-only file system; write elsewhere or remount it writable"


def test_every_command_says_which_output_is_read_only(
    data_dir: Path,
    msh_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """encode, decode, decode --record, metrics, train-msh: OSError 30 tracebacks before."""
    image, bits, png = data_dir / "p0.png", tmp_path / "p0.bin", tmp_path / "p0.png"
    codec = ["--checkpoint", str(msh_checkpoint), "--device", "cpu"]
    assert main(["encode", str(image), str(bits), "--quality", "1", *codec]) == 0
    assert main(["decode", str(bits), str(png), "--decoder", "msh", *codec]) == 0
    capsys.readouterr()
    ro = tmp_path / "ro"
    cases = {
        ro / "p0.bin": ["encode", str(image), str(ro / "p0.bin"), "--quality", "1", *codec],
        ro / "p0.png": ["decode", str(bits), str(ro / "p0.png"), "--decoder", "msh", *codec],
        ro / "rec.json": ["decode", str(bits), str(png), "--decoder", "msh", *codec, "--record", str(ro / "rec.json")],
        ro / "m.csv": [
            "metrics",
            "--reference",
            str(data_dir),
            "--reconstructions",
            str(data_dir),
            "--out",
            str(ro / "m.csv"),
            "--summary",
            str(ro / "m.csv"),
            "--no-lpips",
            "--no-dists",
            "--no-fid",
            "--no-swd",
            "--no-niqe",
        ],
        ro / "q1.pt": train_args(data_dir, ro / "q1.pt"),
    }
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        return (read_only_mkstemp if Path(kwargs["dir"]) == ro else real_mkstemp)(*args, **kwargs)

    ro.mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    for dest, args in cases.items():
        assert main(args) == 2, args[0]
        assert one_error_line(capsys) == read_only_message(dest)
    assert not any(ro.iterdir())


class FullDisk(io.RawIOBase):
    """A file whose every write fails as on a full disk."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_during_a_checkpoint_write_is_one_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save to a full disk raised "unexpected pos" chained to ENOSPC; no temporary file is left."""
    monkeypatch.setattr(bench.utils, "open", lambda *args, **kwargs: FullDisk(), raising=False)
    out = tmp_path / "models" / "q1.pt"
    assert main(train_args(data_dir, out)) == 2
    assert one_error_line(capsys) == (
        f"cannot write {partial_path(out)}: No space left on device; free space on that disk (or write elsewhere) "
        "and rerun"
    )
    assert not any(out.parent.iterdir())


def test_atomic_path_names_the_destination_of_a_failed_write(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    with (
        pytest.raises(BenchError, match=re.escape(f"cannot write {dest}: No space left on device")),
        atomic_path(dest) as tmp,
    ):
        tmp.write_bytes(b"x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(FileNotFoundError), atomic_path(dest):  # an input's error is not blamed on the output
        (tmp_path / "missing-input.png").read_bytes()
    with pytest.raises(urllib.error.URLError), atomic_path(dest):  # nor a failed download (callers fall back)
        raise urllib.error.URLError("offline")
    with pytest.raises(OSError, match="cannot write"), atomic_path(dest):  # still an OSError for those fallbacks
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    assert list(tmp_path.iterdir()) == []


def test_a_folder_where_a_file_goes_is_one_line(tmp_path: Path) -> None:
    """``decode x.bin EXISTING_DIR`` raised IsADirectoryError from os.replace."""
    (tmp_path / "existing").mkdir()
    with pytest.raises(BenchError, match=re.escape(f"cannot write {tmp_path / 'existing'}: it is a folder")):
        atomic_torch_save({}, tmp_path / "existing")


def test_an_os_error_behind_another_error_is_one_line(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An OSError that reaches the CLI outside atomic_path (here chained behind a RuntimeError)."""
    from bench.commands import codec as commands

    def failing(*args, **kwargs):
        try:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x.png"))
        except OSError:
            # implicitly chained: its context is the OSError, as torch's is
            raise RuntimeError("a library's own wrapper")  # noqa: B904

    monkeypatch.setattr(commands, "load_codec", failing)
    assert main(["encode", "a.png", "a.bin", "--quality", "1", "--pretrained"]) == 2
    assert one_error_line(capsys) == (
        f"{tmp_path / 'x.png'}: Permission denied; make it writable (readable, for an input) or choose another path"
    )


# ----------------------------------------------------------------------------- SIGTERM


def sigterm_in_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Send this process SIGTERM as train-msh's training step ``step`` (1-based) begins."""
    real, calls = train_module._train_step, itertools.count(1)

    def step_after_sigterm(*args, **kwargs):
        if next(calls) == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_step", step_after_sigterm)


def test_sigterm_of_train_msh_saves_the_step_and_the_rerun_finishes_the_same(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed by SIGTERM in step 3 (checkpoints every 2): step 3 is saved, not step 2."""
    straight = tmp_path / "straight.pt"
    assert main(train_args(data_dir, straight, **{"--steps": "5"})) == 0
    out = tmp_path / "q1.pt"
    sigterm_in_step(monkeypatch, 3)
    capsys.readouterr()
    assert main(train_args(data_dir, out, **{"--steps": "5"})) == TERMINATED_EXIT
    assert one_error_line(capsys) == (
        f"interrupted by SIGTERM at step 3 (state saved in {partial_path(out)}); resume with the same command"
    )
    assert not out.exists() and torch.load(partial_path(out), weights_only=True)["step"] == 3
    monkeypatch.undo()
    assert main(train_args(data_dir, out, **{"--steps": "5"})) == 0
    a, b = torch.load(straight, weights_only=True)["state_dict"], torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_sigterm_of_a_real_train_msh_process(data_dir: Path, tmp_path: Path) -> None:
    """``python -m bench train-msh`` as Snakemake or Slurm runs it, SIGTERM once it reports a step;
    the same command then resumes from the saved step and ends with the uninterrupted weights."""
    out, straight = tmp_path / "q1.pt", tmp_path / "straight.pt"
    flags = {"--steps": "40", "--checkpoint-every": "1000"}  # the only partial is the SIGTERM one
    # the same threads as this process, which resumes and reruns it (training numerics depend on them)
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "BENCH_PROGRESS_INTERVAL_S": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *train_args(data_dir, out, **flags)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    seen, deadline = b"", time.monotonic() + 300
    while not re.search(rb"\| *[1-9]\d*/40", seen) and time.monotonic() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096)
    proc.send_signal(signal.SIGTERM)
    err = (seen + proc.stderr.read()).decode()
    assert proc.wait(timeout=60) == TERMINATED_EXIT, err[-2000:]
    message = re.search(
        r"error: interrupted by SIGTERM at step (\d+) \(state saved in .+\); resume with the same command", err
    )
    assert message and "Traceback" not in err, err[-2000:]
    assert torch.load(partial_path(out), weights_only=True)["step"] == int(message.group(1)) >= 1
    assert not out.exists()

    assert main(train_args(data_dir, out, **flags)) == 0
    assert main(train_args(data_dir, straight, **flags)) == 0
    a, b = torch.load(straight, weights_only=True), torch.load(out, weights_only=True)
    assert b["step"] == 40 and not partial_path(out).exists()
    assert all(torch.equal(a["state_dict"][name], b["state_dict"][name]) for name in a["state_dict"])
