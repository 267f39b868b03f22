"""The one image reader (:func:`bench.images.load_rgb`): every mode becomes the right 8-bit RGB or one error.

Expected pixels are computed here from the samples written (never from Pillow's conversions): a
16-bit sample v becomes round(v / 257), gray is replicated, a palette index becomes its colour.
16-bit colour PNGs are written by :func:`png16` below (Pillow cannot write them).
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.images import load_rgb, to_8bit
from bench.utils import BenchError


def png16(path: Path, samples: np.ndarray) -> Path:
    """Write ``uint16`` ``H×W×C`` (C = 1..4: gray, gray+alpha, RGB, RGBA) as a 16-bit PNG (filter 0)."""
    height, width, channels = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + samples[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def rounded(v: np.ndarray) -> np.ndarray:
    """round(v / 257) computed in floating point, the rule's definition."""
    return np.rint(v.astype(np.float64) / 257).astype(np.uint8)


MODES = ["RGB", "L", "1", "P", "I;16", "RGB16", "RGBA16", "LA16", "RGBA", "LA", "PA-png"]


def write(path: Path, mode: str, rng: np.random.Generator, h: int, w: int, opaque: bool) -> np.ndarray:
    """Write an image of ``mode`` to ``path``; return the RGB uint8 pixels the rule says it is."""
    alpha8 = np.full((h, w, 1), 255, np.uint8) if opaque else rng.integers(0, 255, (h, w, 1), dtype=np.uint8)
    alpha16 = alpha8.astype(np.uint16) * 257
    if mode == "RGB":
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(path)
        return rgb
    if mode in ("L", "LA"):
        gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
        pixels = gray if mode == "L" else np.concatenate([gray[..., None], alpha8], axis=2)
        Image.fromarray(pixels, mode=mode).save(path)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "1":
        bits = rng.integers(0, 2, (h, w)).astype(bool)
        Image.fromarray(bits).save(path)
        return np.repeat(bits[..., None].astype(np.uint8) * 255, 3, axis=2)
    if mode in ("P", "PA-png"):
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        index = rng.integers(0, 256, (h, w), dtype=np.uint8)
        image = Image.fromarray(index, mode="P")
        image.putpalette(palette.tobytes())
        if mode == "PA-png":  # a tRNS chunk: alpha per palette entry
            entry_alpha = np.full(256, 255, np.uint8) if opaque else rng.integers(0, 255, 256, dtype=np.uint8)
            image.save(path, transparency=entry_alpha.tobytes())
        else:
            image.save(path)
        return palette[index]
    if mode == "RGBA":
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([rgb, alpha8], axis=2), mode="RGBA").save(path)
        return rgb
    samples = rng.integers(0, 65536, (h, w, 3 if mode.startswith("RGB") else 1), dtype=np.uint16)
    if mode == "I;16":
        Image.fromarray(samples[..., 0]).save(path)
    else:
        png16(path, np.concatenate([samples, alpha16], axis=2) if mode in ("RGBA16", "LA16") else samples)
    return np.repeat(rounded(samples), 3 // samples.shape[2], axis=2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(MODES), h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_every_mode_reads_as_the_rule_says(
    tmp_path_factory: pytest.TempPathFactory, mode: str, h: int, w: int, seed: int
) -> None:
    path = tmp_path_factory.mktemp("img") / "x.png"
    expected = write(path, mode, np.random.default_rng(seed), h, w, opaque=True)
    got = load_rgb(path)
    assert got.dtype == np.uint8 and got.shape == (h, w, 3)
    np.testing.assert_array_equal(got, expected)


def test_16bit_gray_is_not_clipped_to_white(tmp_path: Path) -> None:
    """The reported bug: Pillow's convert("RGB") clips I;16, so almost every pixel became 255."""
    ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    got = load_rgb(tmp_path / "ramp.png")
    np.testing.assert_array_equal(got[..., 0], rounded(ramp))
    assert (got == 255).mean() < 0.01


def test_to_8bit_is_round_v_over_257_for_every_value() -> None:
    v = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(to_8bit(v), rounded(v))
    assert to_8bit(np.array([0, 128, 129, 65535], np.uint16)).tolist() == [0, 0, 1, 255]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA-png", "RGBA16", "LA16"])
def test_transparent_pixels_are_refused_naming_the_file(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "see-through.png"
    write(path, mode, np.random.default_rng(0), 5, 7, opaque=False)
    with pytest.raises(BenchError, match=r"see-through\.png has \d+ transparent or translucent pixels.*flatten"):
        load_rgb(path)


@pytest.mark.parametrize(
    "mode, fault",
    [
        ("CMYK", "CMYK image; convert it to RGB with its colour profile"),
        ("I", "32-bit integer image"),
        ("F", "32-bit float image"),
        ("LAB", "CIELAB"),
        ("YCbCr", "YCbCr"),
    ],
)
def test_modes_without_a_right_conversion_are_refused(tmp_path: Path, mode: str, fault: str) -> None:
    path = tmp_path / "odd.tiff"
    Image.new(mode, (4, 3)).save(path)
    with pytest.raises(BenchError, match=rf"odd\.tiff is an? {fault}"):
        load_rgb(path)


def test_a_conversion_is_logged_once_per_file_and_rgb_never(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    write(tmp_path / "gray.png", "L", rng, 4, 4, opaque=True)
    write(tmp_path / "rgb.png", "RGB", rng, 4, 4, opaque=True)
    with caplog.at_level(logging.WARNING, logger="bench.images"):
        for _ in range(3):
            load_rgb(tmp_path / "gray.png")
            load_rgb(tmp_path / "rgb.png")
    assert [r.getMessage() for r in caplog.records] == [f"{tmp_path / 'gray.png'} is 8-bit grayscale: gray replicated"]


@pytest.mark.parametrize(
    "content, fault",
    [(b"hello, not an image", "not an image file Pillow can decode"), (None, "no such file"), ("cut", "truncated")],
)
def test_unreadable_files_name_the_file_and_the_fault_not_a_dataset(
    tmp_path: Path, content: object, fault: str
) -> None:
    path = tmp_path / "mine.png"
    if content == "cut":
        write(tmp_path / "whole.png", "RGB", np.random.default_rng(0), 64, 64, opaque=True)
        path.write_bytes((tmp_path / "whole.png").read_bytes()[:-300])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(BenchError, match=rf"mine\.png cannot be read as an image: .*{fault}") as err:
        load_rgb(path)
    assert "fetch" not in str(err.value) and len(str(err.value).splitlines()) == 1
