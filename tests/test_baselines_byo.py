"""Bring-your-own folders: accepted when complete and consistent, rejected with a message naming the fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.baselines.byo import check_byo
from bench.cli import main
from bench.utils import BenchError
from tests.conftest import write_png

SIZES = {"a": (40, 56), "b": (56, 40)}  # name -> (height, width)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Reference PNGs, matching reconstructions and one bitstream file per image (mixed suffixes)."""
    reference, recon, bits = tmp_path / "ref", tmp_path / "recon", tmp_path / "bits"
    for seed, (name, (h, w)) in enumerate(SIZES.items()):
        write_png(reference / f"{name}.png", h, w, seed=seed)
        write_png(recon / f"{name}.png", h, w, seed=seed + 10)
    bits.mkdir()
    (bits / "a.bin").write_bytes(b"\x01" * 100)
    (bits / "b.tfci").write_bytes(b"\x02" * 37)
    return reference, recon, bits


def test_bitstream_folder_gives_bpp_from_file_sizes(folders: tuple[Path, Path, Path]) -> None:
    reference, recon, bits = folders
    table = check_byo(reference, recon, bitstreams=bits)
    assert list(table["image"]) == ["a", "b"]
    assert table.set_index("image")["bpp"].to_dict() == pytest.approx({"a": 800 / (40 * 56), "b": 296 / (56 * 40)})


def test_bpp_table_is_read_and_matched_by_name(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, _ = folders
    (tmp_path / "bpp.csv").write_text("image,bpp\nb.png,0.25\na,0.5\n")
    table = check_byo(reference, recon, bpp_table=tmp_path / "bpp.csv")
    assert table.set_index("image")["bpp"].to_dict() == {"a": 0.5, "b": 0.25}
    assert table["bytes"].isna().all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image,bpp\na,0.5\n", "missing b"),
        ("image,bpp\na,0.5\nb,0.1\nc,0.2\n", "unknown c"),
        ("image,bpp\na,0.5\nb,-1\n", "no positive finite bpp for b"),
        ("image,bpp\na,0.5\nb,inf\n", "no positive finite bpp for b"),
        ("image,bpp\na,0.5\na.png,0.5\nb,1\n", "more than once: a"),
        ("name,rate\na,0.5\nb,1\n", "must start with the columns image,bpp"),
    ],
)
def test_bad_bpp_tables(folders: tuple[Path, Path, Path], tmp_path: Path, content: str, message: str) -> None:
    reference, recon, _ = folders
    (tmp_path / "bpp.csv").write_text(content)
    with pytest.raises(BenchError, match=message):
        check_byo(reference, recon, bpp_table=tmp_path / "bpp.csv")


def test_missing_extra_resized_or_grey_reconstructions_are_named(folders: tuple[Path, Path, Path]) -> None:
    reference, recon, bits = folders
    (recon / "b.png").unlink()
    with pytest.raises(BenchError, match="missing reconstructions for b"):
        check_byo(reference, recon, bitstreams=bits)
    write_png(recon / "b.png", 40, 56)  # transposed size
    with pytest.raises(BenchError, match="b \\(56x40, reference 40x56\\)"):
        check_byo(reference, recon, bitstreams=bits)
    Image.fromarray(np.zeros((56, 40), np.uint8)).save(recon / "b.png")  # right size, greyscale
    with pytest.raises(BenchError, match="is a L image; save reconstructions as 8-bit RGB PNGs"):
        check_byo(reference, recon, bitstreams=bits)
    (recon / "b.png").write_bytes((reference / "b.png").read_bytes()[:60])  # truncated
    with pytest.raises(BenchError, match="not a readable PNG"):
        check_byo(reference, recon, bitstreams=bits)


def test_bitstream_problems_are_named(folders: tuple[Path, Path, Path]) -> None:
    reference, recon, bits = folders
    (bits / "b.bin").write_bytes(b"x")
    with pytest.raises(BenchError, match="several files share an image's stem .*: b"):
        check_byo(reference, recon, bitstreams=bits)
    (bits / "b.bin").unlink()
    (bits / "b.tfci").write_bytes(b"")
    with pytest.raises(BenchError, match="empty bitstreams .*: b"):
        check_byo(reference, recon, bitstreams=bits)
    (bits / "b.tfci").unlink()
    with pytest.raises(BenchError, match="no bitstream in .* for b"):
        check_byo(reference, recon, bitstreams=bits)


def test_exactly_one_rate_source(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, bits = folders
    with pytest.raises(BenchError, match="exactly one"):
        check_byo(reference, recon)
    with pytest.raises(BenchError, match="exactly one"):
        check_byo(reference, recon, bitstreams=bits, bpp_table=tmp_path / "x.csv")


def test_cli_checks_and_writes_the_bpp_table(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    reference, recon, bits = folders
    out = tmp_path / "bpp_out.csv"
    base = ["byo-check", "--reference", str(reference), "--reconstructions", str(recon)]
    assert main([*base, "--bitstreams", str(bits), "--out", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["image", "bpp"]
    assert main([*base, "--bitstreams", str(tmp_path / "nowhere")]) == 2
