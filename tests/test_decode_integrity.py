"""``decode --decoder diffusion`` refuses what it cannot trust: a decoder checkpoint whose tensor bytes
changed on disk, one that does not say which MSH codec it was trained on, and an output another
decode is writing (tiny models from tests/test_samplers_decode.py, CPU, seconds)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.diffusion.model import DiffusionDecoder
from bench.diffusion.train import save_decoder
from bench.utils import BenchError, lock_path, output_lock
from tests.test_samplers_decode import CONFIGS, decode, tiny_config, tiny_setup

ARGS = ("--sampler", "ddim", "--steps", "2")


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    return tiny_setup(tmp_path)


def flip_tensor_bytes(path: Path) -> None:
    """XOR a few bytes in the middle of the largest tensor storage of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for k in range(4):
        data[start + k] ^= 0x40
    path.write_bytes(bytes(data))


def test_corrupt_decoder_tensor_data_is_refused(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """torch.load reads flipped storage bytes without complaint; the stored weights hash catches them."""
    flip_tensor_bytes(setup["residual"])
    assert torch.load(setup["residual"], weights_only=False)["format"]  # still a readable checkpoint
    out = setup["tmp"] / "out"
    assert decode(setup, setup["bits"], str(out), *ARGS) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is corrupt" in err and str(setup["residual"]) in err
    assert not out.exists()


def test_decoder_without_msh_hash_is_refused(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(**CONFIGS["residual"])
    save_decoder(setup["residual"], config, DiffusionDecoder(config).state_dict(), step=0, train={"p_uncond": 0.1})
    out = setup["tmp"] / "out"
    assert decode(setup, setup["bits"], str(out), *ARGS) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "records no MSH weights hash" in err and str(setup["residual"]) in err
    assert not out.exists()


HOLD = (
    "import sys, time; from bench.utils import output_lock\n"
    "with output_lock(sys.argv[1], 'decode'):\n    print('held', flush=True); time.sleep(600)"
)


@pytest.fixture
def holder(setup: dict[str, Path]) -> Iterator[subprocess.Popen]:
    """Another process holding the lock of ``out-s1`` (the second seed's folder)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(setup["tmp"] / "out-s1")],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_an_output_another_decode_holds_is_refused(
    setup: dict[str, Path], holder: subprocess.Popen, capsys: pytest.CaptureFixture[str]
) -> None:
    out = setup["tmp"] / "out-s{seed}"
    assert decode(setup, setup["bits"], str(out), *ARGS, "--seeds", "0", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"out-s1 is being written by another decode (PID {holder.pid} " in err
    assert not (setup["tmp"] / "out-s0").exists() and not (setup["tmp"] / "out-s1").exists()
    assert not lock_path(setup["tmp"] / "out-s0").exists()  # the lock it did take is given back


def test_a_dead_holders_lock_is_taken_over_and_removed(
    setup: dict[str, Path], holder: subprocess.Popen, caplog: pytest.LogCaptureFixture
) -> None:
    holder.send_signal(signal.SIGKILL)  # dies without removing its lock file
    holder.wait()
    assert lock_path(setup["tmp"] / "out-s1").exists()
    out = setup["tmp"] / "out-s1"
    with caplog.at_level(logging.WARNING):  # as the decode_diffusion rule runs it
        assert decode(setup, setup["bits"], str(out), *ARGS, "--seed", "1", "--record", str(out / "decode.json")) == 0
    assert f"stale lock {lock_path(out)} of decode PID {holder.pid}" in caplog.text
    assert not lock_path(out).exists()
    assert sorted(p.name for p in out.iterdir()) == ["decode.json", "decode_config.json", "img0.png", "img1.png"]


@pytest.mark.parametrize("alive", [True, False])
def test_without_flock_the_recorded_pid_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alive: bool) -> None:
    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if not alive:
        proc.kill()
        proc.wait()
    target = tmp_path / "out"
    lock_path(target).write_text(f"{proc.pid} {socket.gethostname()}\n")
    try:
        if alive:
            with (
                pytest.raises(BenchError, match=f"PID {proc.pid} on {socket.gethostname()}"),
                output_lock(target, "decode"),
            ):
                pass
        else:
            with output_lock(target, "decode"):
                assert lock_path(target).read_text() == f"{os.getpid()} {socket.gethostname()}\n"
            assert not lock_path(target).exists()
    finally:
        proc.kill()
        proc.wait()
