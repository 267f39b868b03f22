"""The classical baseline that always runs: JPEG through Pillow (libjpeg), at fixed or matched bitrates.

Encoder settings (one place, recorded here because they move the curve): Pillow's quality scale
1-100, 4:2:0 chroma subsampling, optimised Huffman tables, baseline (not progressive) coding. The
JPEG file *is* the bitstream: it is written as ``BITS/{image}.bin`` (the JFIF bytes unchanged, named
like every bitstream of the suite, so ``python -m bench metrics --bitstreams`` counts it the same way:
bpp = file bytes × 8 / (H × W), headers included). The decoded image is what libjpeg returns for
those bytes, saved as ``OUT/{image}.png``.

Two ways to pick the quality:

- fixed: one quality for every image (point id ``jpeg-q{Q}``, :mod:`bench.points`), a classical RD
  curve over several calls;
- matched (``--match-bpp-from BITSDIR``): per image, the quality whose file size is closest to
  that image's bitstream in ``BITSDIR`` (e.g. the MSH bitstreams of one quality), so JPEG is
  compared at the same bits image by image. The search is a bisection on quality for the adjacent
  pair q, q+1 whose sizes bracket the target, then the closer of the two (ties: the smaller file):
  within one quality step of the target. JPEG size is only nearly monotone in quality (a step up can
  shrink a file by a few bytes), so another quality elsewhere may hit the target as closely; the
  bracket is what is guaranteed. Targets below quality 1's size or above quality 100's get those
  ends. The chosen quality of each image is in the returned table (``--table``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from bench.baselines.byo import bitstream_files
from bench.data import list_images, load_rgb
from bench.points import Point, format_point
from bench.utils import BenchError, atomic_path, atomic_write_bytes

log = logging.getLogger(__name__)

MIN_QUALITY, MAX_QUALITY = 1, 100
ENCODER_OPTIONS: dict[str, object] = {"subsampling": "4:2:0", "optimize": True, "progressive": False}
TABLE_COLUMNS: tuple[str, ...] = ("image", "point", "jpeg_quality", "bytes", "bpp", "target_bpp")


def check_quality(quality: int) -> int:
    """``quality`` if it is on Pillow's 1-100 scale, else a BenchError."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not MIN_QUALITY <= quality <= MAX_QUALITY:
        raise BenchError(f"JPEG quality must be an integer in {MIN_QUALITY}..{MAX_QUALITY}, got {quality!r}")
    return quality


def encode(image: Image.Image, quality: int) -> bytes:
    """The JPEG file of an RGB image at ``quality`` (see the module's encoder settings)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=check_quality(quality), **ENCODER_OPTIONS)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    """The RGB image libjpeg decodes from a JPEG file's bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def match_quality(image: Image.Image, target_bytes: int) -> tuple[int, bytes]:
    """The quality (and its file) whose JPEG size is closest to ``target_bytes`` (module docstring)."""
    files: dict[int, bytes] = {}

    def size(quality: int) -> int:
        if quality not in files:
            files[quality] = encode(image, quality)
        return len(files[quality])

    low, high = MIN_QUALITY, MAX_QUALITY
    if size(low) >= target_bytes:
        return low, files[low]
    if size(high) <= target_bytes:
        return high, files[high]
    while high - low > 1:  # invariant: size(low) <= target < size(high)
        middle = (low + high) // 2
        if size(middle) <= target_bytes:
            low = middle
        else:
            high = middle
    best = low if target_bytes - size(low) <= size(high) - target_bytes else high
    return best, files[best]


def _compress(
    reference: Path, bitstreams: Path, out: Path, choose: Callable[[str, Image.Image], tuple[int, bytes, float]]
) -> pd.DataFrame:
    """Encode every reference PNG with the quality ``choose`` picks; write bitstream and decoded PNG."""
    rows = []
    for path in tqdm(list_images(reference), desc=f"jpeg {out.name}", unit="img"):
        image = Image.fromarray(load_rgb(path))
        quality, data, target_bpp = choose(path.stem, image)
        atomic_write_bytes(bitstreams / f"{path.stem}.bin", data)
        with atomic_path(out / f"{path.stem}.png") as tmp:
            decode(data).save(tmp, format="PNG")
        rows.append(
            {
                "image": path.stem,
                "point": format_point(Point("jpeg", quality=quality)),
                "jpeg_quality": quality,
                "bytes": len(data),
                "bpp": len(data) * 8 / (image.width * image.height),
                "target_bpp": target_bpp,
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def compress_folder(reference: str | Path, quality: int, bitstreams: str | Path, out: str | Path) -> pd.DataFrame:
    """JPEG every reference PNG at one ``quality``; returns the per-image table (:data:`TABLE_COLUMNS`)."""
    check_quality(quality)
    return _compress(
        Path(reference),
        Path(bitstreams),
        Path(out),
        lambda _name, image: (quality, encode(image, quality), float("nan")),
    )


def compress_folder_matched(
    reference: str | Path, match_bits: str | Path, bitstreams: str | Path, out: str | Path
) -> pd.DataFrame:
    """JPEG every reference PNG at the quality whose size best matches its bitstream in ``match_bits``."""
    names = [path.stem for path in list_images(reference)]
    targets = {name: path.stat().st_size for name, path in bitstream_files(match_bits, names).items()}

    def choose(name: str, image: Image.Image) -> tuple[int, bytes, float]:
        quality, data = match_quality(image, targets[name])
        return quality, data, targets[name] * 8 / (image.width * image.height)

    return _compress(Path(reference), Path(bitstreams), Path(out), choose)
