"""The one image reader of the suite: any image file to RGB ``uint8`` ``H×W×3``, by an explicit rule per mode.

Every image the suite measures or encodes (dataset files, encode inputs, training images, metric
references and reconstructions, baseline inputs) is read by :func:`load_rgb`, so a file means the
same pixels everywhere. What each Pillow mode becomes:

============================  ===================================================================
8-bit RGB                     kept as it is (no message)
L (8-bit gray), 1 (bilevel)   gray replicated to R = G = B (``1`` as 0 / 255)
P (palette)                   its palette colours (exact)
16-bit (I;16, 16-bit PNGs)    scaled to 8 bits as ``round(v / 257)`` (65535 → 255), gray replicated;
                              refused with a transparent colour (tRNS)
RGBA, LA, PA, tRNS key        alpha dropped when every pixel is opaque; refused otherwise, since
                              the colour under a transparent pixel is not part of the picture
CMYK, YCbCr, LAB, HSV, I, F   refused: no conversion is right without information the file lacks
                              (a colour profile, the value range of 32-bit or float samples)
============================  ===================================================================

A converted file is logged once per file (a warning naming it and the conversion); a refused or
unreadable file is a :class:`BenchError` naming the file and the fault. Pillow itself reads 16-bit
colour PNGs as their high byte (``v // 256``, not what the table says) and ``I;16`` through
``convert("RGB")`` as white; :func:`load_rgb` does neither. 16-bit colour PNGs are decoded with
torchvision's libpng binding (imported only for them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
import zlib
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.utils import BenchError

log = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_REFUSED = {
    "CMYK": "a CMYK image; convert it to RGB with its colour profile (e.g. ImageMagick `-colorspace sRGB`)",
    "YCbCr": "a YCbCr image; convert it to RGB first",
    "LAB": "a CIELAB image; convert it to RGB first",
    "HSV": "an HSV image; convert it to RGB first",
    "I": "a 32-bit integer image, whose value range is unknown; save it as 8- or 16-bit",
    "F": "a 32-bit float image, whose value range is unknown; save it as 8- or 16-bit",
}
_16BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N")
_KINDS = {
    "RGB": "RGB",
    "RGBA": "RGBA",
    "L": "8-bit grayscale",
    "LA": "grayscale+alpha",
    "1": "1-bit black/white",
    "P": "palette",
    "PA": "palette+alpha",
}  # the 8-bit modes load_rgb converts
_CONVERSIONS = {
    "L": "8-bit grayscale: gray replicated",
    "1": "1-bit black/white: 0/255 replicated",
    "P": "palette: its colours looked up",
}
_noted: set[str] = set()  # files whose conversion was logged already (once per file and process)


def _problem(err: Exception) -> str:
    """What is wrong with an unreadable file, in words (Pillow's own text repeats the path)."""
    if isinstance(err, UnidentifiedImageError):
        return "not an image file Pillow can decode"
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return str(err) or type(err).__name__


_UNREADABLE = (OSError, SyntaxError, ValueError, zlib.error, struct.error, Image.DecompressionBombError)


@contextlib.contextmanager
def open_image(path: str | os.PathLike) -> Iterator[Image.Image]:
    """A fully decoded Pillow image; any fault (missing, not an image, truncated, corrupt) is a
    :class:`BenchError` ``PATH cannot be read as an image: FAULT``."""
    try:
        image = Image.open(path)
    except _UNREADABLE as err:
        raise BenchError(f"{path} cannot be read as an image: {_problem(err)}") from None
    with image:
        try:
            image.load()
        except _UNREADABLE as err:
            raise BenchError(f"{path} cannot be read as an image: {_problem(err)}") from None
        yield image


def png_bit_depth(path: str | os.PathLike) -> int | None:
    """The bit depth per sample in a PNG's IHDR (the first chunk, by the PNG spec), None if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24]


def _png16(path: str | os.PathLike) -> np.ndarray:
    """A 16-bit PNG's samples as ``uint16`` ``H×W×C`` (libpng through torchvision, all 16 bits).

    torchvision 0.29 (pinned in pyproject.toml) marks its image codecs deprecated; the warning is
    silenced here, and a torchvision without ``decode_png`` fails this reader's tests loudly.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_png

        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        try:
            return decode_png(data, mode=ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy()
        except RuntimeError as err:
            raise BenchError(f"{path} cannot be read as an image: {err}") from None


def to_8bit(samples: np.ndarray) -> np.ndarray:
    """16-bit samples scaled to 8 bits, ``round(v / 257)`` (exact ties cannot occur: 257 is odd)."""
    return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _drop_alpha(path: str | os.PathLike, samples: np.ndarray, full: int) -> np.ndarray:
    """``samples`` without their last (alpha) channel, refused unless every pixel is opaque."""
    alpha = samples[..., -1]
    translucent = int(np.count_nonzero(alpha != full))
    if translucent:
        raise BenchError(
            f"{path} has {translucent} transparent or translucent pixels; the benchmark measures opaque RGB "
            "images: flatten it onto a background first (e.g. ImageMagick `-flatten`)"
        )
    return samples[..., :-1]


def _rgb(samples: np.ndarray) -> np.ndarray:
    """``H×W`` or ``H×W×1`` gray replicated to ``H×W×3``; ``H×W×3`` unchanged."""
    if samples.ndim == 2:
        samples = samples[..., None]
    return np.ascontiguousarray(np.broadcast_to(samples, (*samples.shape[:2], 3)) if samples.shape[2] == 1 else samples)


def _decode(path: str | os.PathLike, image: Image.Image) -> tuple[np.ndarray, str | None]:
    """The RGB ``uint8`` pixels of a loaded image and what was converted (None: nothing)."""
    mode = image.mode
    png16 = image.format == "PNG" and png_bit_depth(path) == 16
    if png16 or mode in _16BIT_GRAY:
        if "transparency" in image.info:
            raise BenchError(f"{path} is a 16-bit image with a transparent colour; save it without transparency")
        if mode in _16BIT_GRAY or mode == "I":  # Pillow < 11 opens 16-bit gray PNGs as I
            return _rgb(
                to_8bit(np.asarray(image))
            ), "16-bit grayscale: scaled to 8 bits (round(v/257)), gray replicated"
        samples = _png16(path)  # Pillow keeps only the high byte of 16-bit colour PNGs
        kind = {1: "grayscale", 2: "grayscale+alpha", 3: "RGB", 4: "RGBA"}[samples.shape[2]]
        note = f"16-bit {kind}: scaled to 8 bits (round(v/257))"
        if samples.shape[2] in (2, 4):
            samples, note = _drop_alpha(path, samples, 65535), f"{note}, every pixel opaque: alpha dropped"
        return _rgb(to_8bit(samples)), note
    if mode in _REFUSED:
        raise BenchError(f"{path} is {_REFUSED[mode]}")
    if mode not in _KINDS:
        raise BenchError(f"{path} is a {mode} image, a mode rdp-bench does not convert; save it as 8-bit RGB")
    if "transparency" in image.info or mode in ("RGBA", "LA", "PA"):
        rgba = _drop_alpha(path, np.asarray(image.convert("RGBA")), 255)
        return rgba, f"{_KINDS[mode]} with transparency but every pixel opaque: alpha dropped"
    return np.asarray(image.convert("RGB")), _CONVERSIONS.get(mode)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB ``uint8`` ``H×W×3`` by the module's rule per mode.

    A conversion is logged once per file; an unreadable or refused file is a :class:`BenchError`
    naming it and the fault.
    """
    with open_image(path) as image:
        pixels, conversion = _decode(path, image)
    if conversion is not None and str(path) not in _noted:
        _noted.add(str(path))
        log.warning("%s is %s", path, conversion)
    return pixels


def shape_batches(shapes: Sequence[Hashable], batch_size: int | None = None) -> Iterator[list[int]]:
    """Indices of ``shapes`` grouped by equal shape (groups in first-seen order), each group cut into
    batches of at most ``batch_size`` (``None``: whole groups): how every step batches images or
    latents, since only equal shapes stack into one tensor."""
    groups: dict[Hashable, list[int]] = {}
    for index, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(index)
    for indices in groups.values():
        size = batch_size or len(indices)
        for start in range(0, len(indices), size):
            yield indices[start : start + size]
