"""Bad inputs of ``encode`` and ``decode``: one line naming the file, exit 2, nothing written.

Tiny random-init models (those of tests/test_samplers_decode.py); headers are forged at the byte
offsets of the documented version-1 layout (bench/codec/bitstream.py) with the CRC recomputed, as a
deliberate edit would be.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.codec.bitstream import MAX_SIDE, unpack
from bench.data import list_images
from bench.utils import BenchError
from tests.conftest import write_png
from tests.test_samplers_decode import CONFIGS, tiny_decoder, tiny_msh

SIZE = (64, 96)  # (H, W) of the encoded test image: z latent 1 x 2


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    """A tiny MSH checkpoint, a residual diffusion decoder for it and one encoded image."""
    msh = tmp_path / "msh.pt"
    codec = tiny_msh(msh)
    tiny_decoder(tmp_path / "decoder.pt", codec, **CONFIGS["residual"])
    write_png(tmp_path / "img" / "a.png", *SIZE)
    assert main(["encode", str(tmp_path / "img" / "a.png"), str(tmp_path / "a.bin"), *msh_args(msh)]) == 0
    return {"msh": msh, "decoder": tmp_path / "decoder.pt", "bin": tmp_path / "a.bin", "tmp": tmp_path}


def msh_args(msh: Path) -> list[str]:
    return ["--quality", "1", "--checkpoint", str(msh)]


def forge_size(blob: bytes, height: int, width: int) -> bytes:
    """``blob`` with another height and width (offsets 19 and 23) and a CRC that matches again."""
    body = blob[9:19] + struct.pack(">II", height, width) + blob[27:]
    return blob[:5] + struct.pack(">I", zlib.crc32(body)) + body


def decode_args(setup: dict[str, Path], decoder: str) -> list[str]:
    if decoder == "msh":
        return ["--decoder", "msh", "--checkpoint", str(setup["msh"])]
    return [
        "--decoder",
        "diffusion",
        "--checkpoint",
        str(setup["msh"]),
        "--decoder-checkpoint",
        str(setup["decoder"]),
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--device",
        "cpu",
    ]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("decoder", ["msh", "diffusion"])
@pytest.mark.parametrize("size", [(200, 96), (64, 32), (64, 200), (MAX_SIDE, MAX_SIDE), (2**31, 96)])
@pytest.mark.parametrize("as_folder", [False, True])
def test_a_forged_image_size_is_refused_by_both_decoders(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], decoder: str, size: tuple[int, int], as_folder: bool
) -> None:
    """Before the fix the header's size was trusted: a 200-high header gave a 96x200 PNG."""
    bits = setup["tmp"] / "bits"
    bits.mkdir()
    (bits / "good.bin").write_bytes(setup["bin"].read_bytes())
    (bits / "forged.bin").write_bytes(forge_size(setup["bin"].read_bytes(), *size))
    out = setup["tmp"] / "out"
    src, dst = (bits, out) if as_folder else (bits / "forged.bin", out / "forged.png")
    assert main(["decode", str(src), str(dst), *decode_args(setup, decoder)]) == 2
    line = one_error_line(capsys)
    assert str(bits / "forged.bin") in line
    assert re.search("is inconsistent: its header says width|each side must be 1..16384", line), line
    assert not out.exists() or not any(out.iterdir())


def test_a_size_change_within_the_padded_latent_is_not_detectable(setup: dict[str, Path]) -> None:
    """The documented limit: 64 -> 40 rows keeps the 64-row padded latent, so the strings still fit."""
    forged = setup["tmp"] / "f.bin"
    forged.write_bytes(forge_size(setup["bin"].read_bytes(), 40, SIZE[1]))
    assert main(["decode", str(forged), str(setup["tmp"] / "f.png"), *decode_args(setup, "msh")]) == 0
    assert Image.open(setup["tmp"] / "f.png").size == (SIZE[1], 40)


def test_folder_with_bad_images_writes_nothing_and_names_every_bad_file(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the fix the encode stopped at the first bad file, after writing the images before it."""
    folder = setup["tmp"] / "mixed"
    for name in ("a", "b", "d"):
        write_png(folder / f"{name}.png", 32, 32)
    (folder / "c.png").write_bytes(b"garbage")
    rgba = np.zeros((8, 8, 4), np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(folder / "e.png")  # fully transparent
    out = setup["tmp"] / "bits"
    assert main(["encode", str(folder), str(out), *msh_args(setup["msh"]), "--batch-size", "1"]) == 2
    line = one_error_line(capsys)
    assert "2 of 5 images cannot be encoded, nothing was written" in line
    assert f"{folder / 'c.png'} cannot be read as an image: not an image file Pillow can decode" in line
    assert f"{folder / 'e.png'} has 64 transparent or translucent pixels" in line
    assert "fetch" not in line
    assert not out.exists() or not any(out.iterdir())


def test_an_image_too_large_for_the_header_is_refused_before_encoding(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (MAX_SIDE + 1, 1)).save(setup["tmp"] / "wide.png")
    assert main(["encode", str(setup["tmp"] / "wide.png"), str(setup["tmp"] / "w.bin"), *msh_args(setup["msh"])]) == 2
    line = one_error_line(capsys)
    assert "wide.png is too large to encode (height 1, width 16385: each side must be 1..16384 pixels)" in line
    assert not (setup["tmp"] / "w.bin").exists()


def test_a_16bit_gray_png_encodes_as_its_8bit_rgb_equivalent(
    setup: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The reported bug: the encoder saw a white image. Same container as the round(v/257) RGB image."""
    rng = np.random.default_rng(0)
    gray16 = (np.linspace(0, 65535, SIZE[0] * SIZE[1]).reshape(SIZE) + rng.normal(0, 500, SIZE)).clip(0, 65535)
    gray16 = gray16.astype(np.uint16)
    Image.fromarray(gray16).save(setup["tmp"] / "g16.png")
    gray8 = np.rint(gray16 / 257).astype(np.uint8)
    Image.fromarray(np.repeat(gray8[..., None], 3, axis=2)).save(setup["tmp"] / "g8.png")
    with caplog.at_level(logging.WARNING, logger="bench.images"):
        for name in ("g16", "g8"):
            png, out = setup["tmp"] / f"{name}.png", setup["tmp"] / f"{name}.bin"
            assert main(["encode", str(png), str(out), *msh_args(setup["msh"])]) == 0
    assert (setup["tmp"] / "g16.bin").read_bytes() == (setup["tmp"] / "g8.bin").read_bytes()
    assert [r.getMessage() for r in caplog.records] == [
        f"{setup['tmp'] / 'g16.png'} is 16-bit grayscale: scaled to 8 bits (round(v/257)), gray replicated"
    ]


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_batch_size_zero_is_one_line_not_a_traceback(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Before the fix: ValueError: range() arg 3 must not be zero."""
    if command == "encode":
        args = ["encode", str(setup["tmp"] / "img"), str(setup["tmp"] / "bits"), *msh_args(setup["msh"])]
    else:
        (setup["tmp"] / "bits").mkdir()
        (setup["tmp"] / "bits" / "a.bin").write_bytes(setup["bin"].read_bytes())
        args = ["decode", str(setup["tmp"] / "bits"), str(setup["tmp"] / "rec"), *decode_args(setup, "msh")]
    assert main([*args, "--batch-size", "0"]) == 2
    assert one_error_line(capsys) == "error: 'batch_size' must be >= 1, got 0"


def test_an_unreadable_input_names_the_file_and_the_fault(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the fix a user's own file was told to 'fetch the dataset again'."""
    cut = setup["tmp"] / "cut.png"
    cut.write_bytes((setup["tmp"] / "img" / "a.png").read_bytes()[:-200])
    assert main(["encode", str(cut), str(setup["tmp"] / "c.bin"), *msh_args(setup["msh"])]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {cut} cannot be read as an image: ") and "truncated" in line
    assert "fetch" not in line


def test_only_a_dataset_folder_gets_the_fetch_hint(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as err:
        list_images(tmp_path / "my-photos")
    assert str(err.value) == f"folder {tmp_path / 'my-photos'} does not exist"
    (tmp_path / "kodak").mkdir()
    with pytest.raises(
        BenchError,
        match=r"no PNG images \(\*\.png\) in .*kodak; run `python -m bench datasets "
        r"fetch kodak --root ",
    ):
        list_images(tmp_path / "kodak")


def test_forged_header_beyond_the_cap_is_refused_by_the_parser(setup: dict[str, Path]) -> None:
    """No model needed: a 2**31 height is refused before any allocation (it once took 17 GB)."""
    with pytest.raises(BenchError, match=r"x\.bin has an invalid header: height 2147483648, width 96: each side"):
        unpack(forge_size(setup["bin"].read_bytes(), 2**31, SIZE[1]), source="x.bin")
