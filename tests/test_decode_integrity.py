"""``decode --decoder diffusion`` refuses what it cannot trust: a decoder checkpoint whose tensor bytes
changed on disk, one that does not say which MSH codec it was trained on, and an output another
decode is writing (tiny models from tests/test_samplers_decode.py, CPU, seconds)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from bench.diffusion.model import DecoderConfig, DiffusionDecoder
from bench.diffusion.train import save_decoder
from tests.test_samplers_decode import CONFIGS, decode, setup  # noqa: F401 (setup is a fixture)

ARGS = ("--sampler", "ddim", "--steps", "2")


def flip_tensor_bytes(path: Path) -> None:
    """XOR a few bytes in the middle of the largest tensor storage of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")  # fmt: skip
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
    config = DecoderConfig(latent_channels=24, num_channels=8, channel_mult=(1, 1, 1, 2), num_res_blocks=1,
                           num_heads=1, train_timesteps=100, respacing=None, **CONFIGS["residual"])  # fmt: skip
    save_decoder(setup["residual"], config, DiffusionDecoder(config).state_dict(), step=0, train={"p_uncond": 0.1})
    out = setup["tmp"] / "out"
    assert decode(setup, setup["bits"], str(out), *ARGS) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "records no MSH weights hash" in err and str(setup["residual"]) in err
    assert not out.exists()
