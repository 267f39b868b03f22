"""The JPEG baseline: real files as bitstreams, bpp from their size, quality matched to a target size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.baselines import jpeg
from bench.cli import main
from bench.utils import BenchError
from tests.conftest import write_png

SIZES = [(48, 64), (64, 40)]  # (height, width): landscape and portrait


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    folder = tmp_path / "ref"
    for i, (h, w) in enumerate(SIZES):
        write_png(folder / f"img{i}.png", h, w, seed=i)
    return folder


def _image(seed: int = 0, size: tuple[int, int] = (48, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    base = np.stack([np.sin(xx / 5.0), np.cos(yy / 7.0), np.sin((xx + yy) / 9.0)], axis=-1) * 80 + 128
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def test_fixed_quality_writes_real_jpeg_files_and_counts_their_bytes(reference: Path, tmp_path: Path) -> None:
    table = jpeg.compress_folder(reference, 40, tmp_path / "bits", tmp_path / "out")
    assert list(table["image"]) == ["img0", "img1"]
    assert set(table["point"]) == {"jpeg-q40"}
    for (h, w), row in zip(SIZES, table.itertuples(), strict=True):
        data = (tmp_path / "bits" / f"{row.image}.bin").read_bytes()
        assert data[:2] == b"\xff\xd8"  # a JPEG SOI marker: the file is a real JPEG
        assert row.bytes == len(data)
        assert row.bpp == pytest.approx(len(data) * 8 / (h * w))
        decoded = np.asarray(Image.open(tmp_path / "out" / f"{row.image}.png"))
        assert decoded.shape == (h, w, 3)
        assert np.array_equal(decoded, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert not list((tmp_path / "bits").glob(".*")) and not list((tmp_path / "out").glob(".*"))  # no temp files


def test_lower_quality_gives_fewer_bytes() -> None:
    image = _image()
    sizes = [len(jpeg.encode(image, q)) for q in (5, 25, 50, 75, 95)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


@settings(max_examples=20, deadline=None)
@given(fraction=st.floats(0.0, 1.0), seed=st.integers(0, 3))
def test_matched_quality_is_within_one_step_of_the_target(fraction: float, seed: int) -> None:
    """The target lies between the sizes of the chosen quality and a neighbour, and the choice is the closer.

    JPEG size is only nearly monotone in quality (a step can shrink the file by a byte), so the
    guarantee is about the bracketing pair, not about every other quality.
    """
    image = _image(seed, (32, 48))
    size = {q: len(jpeg.encode(image, q)) for q in range(1, 101)}
    target = int(size[1] + fraction * (size[100] - size[1]))
    quality, data = jpeg.match_quality(image, target)
    assert len(data) == size[quality]
    brackets = [
        q
        for q in (quality - 1, quality + 1)
        if q in size and min(size[q], size[quality]) <= target <= max(size[q], size[quality])
    ]
    assert brackets, f"target {target} not next to quality {quality} ({size[quality]} bytes)"
    assert any(abs(size[quality] - target) <= abs(size[q] - target) for q in brackets)


def test_targets_outside_the_jpeg_range_get_its_ends() -> None:
    image = _image()
    assert jpeg.match_quality(image, 1)[0] == 1
    assert jpeg.match_quality(image, 10**9)[0] == 100


def test_matched_mode_follows_each_images_bitstream_size(reference: Path, tmp_path: Path) -> None:
    # Targets: the size of this very JPEG at two different qualities, so a match is exact.
    targets = tmp_path / "msh_bits"
    targets.mkdir()
    want = {"img0": 30, "img1": 70}
    for name, quality in want.items():
        image = Image.open(reference / f"{name}.png").convert("RGB")
        (targets / f"{name}.bin").write_bytes(jpeg.encode(image, quality))
    table = jpeg.compress_folder_matched(reference, targets, tmp_path / "bits", tmp_path / "out")
    sizes = {name: (targets / f"{name}.bin").stat().st_size for name in want}
    for row in table.itertuples():
        assert row.bytes == sizes[row.image]
        assert row.bpp == pytest.approx(row.target_bpp)
        assert row.point == f"jpeg-q{row.jpeg_quality}"


@pytest.mark.parametrize("quality", [0, 101, 7.5, True])
def test_bad_quality_is_a_clear_error(quality: object) -> None:
    with pytest.raises(BenchError, match="JPEG quality must be an integer in 1..100"):
        jpeg.encode(_image(), quality)  # type: ignore[arg-type]


def test_bad_inputs_are_clear_errors(reference: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no PNG images"):
        jpeg.compress_folder(tmp_path / "empty", 50, tmp_path / "bits", tmp_path / "out")
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "img0.bin").write_bytes(b"x" * 100)
    with pytest.raises(BenchError, match="no bitstream in .* for img1"):
        jpeg.compress_folder_matched(reference, tmp_path / "targets", tmp_path / "bits", tmp_path / "out")
    assert not (tmp_path / "bits").exists()  # checked before anything was written
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(BenchError, match="cannot be read as an image"):
        jpeg.compress_folder(broken, 50, tmp_path / "bits2", tmp_path / "out2")


def test_cli_writes_bitstreams_pngs_and_table(reference: Path, tmp_path: Path) -> None:
    args = [
        "jpeg",
        "--reference",
        str(reference),
        "--quality",
        "20",
        "--bitstreams",
        str(tmp_path / "b"),
        "--out",
        str(tmp_path / "o"),
        "--table",
        str(tmp_path / "t.csv"),
    ]
    assert main(args) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.columns) == list(jpeg.TABLE_COLUMNS)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["img0.png", "img1.png"]
    assert main(["jpeg", "--reference", str(reference), "--quality", "0", "--bitstreams", "b", "--out", "o"]) == 2
