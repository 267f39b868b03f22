"""Per-image rates: bits per pixel from a file's size, or from an ``image,bpp`` table.

The metrics step (``python -m bench metrics --bitstreams|--bpp-table``) and the bring-your-own check
(``python -m bench byo-check``) read rates through these two functions, so a bitstream's bpp and a
table's bpp mean the same thing everywhere: every byte of the file × 8 over the image's pixels, or
the number the table gives for that image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.utils import BenchError, short_list

BPP_COLUMNS: tuple[str, ...] = ("image", "bpp")


def file_bpp(path: str | os.PathLike, height: int, width: int) -> float:
    """Bits per pixel of one image's bitstream file: all its bytes × 8 / (H × W)."""
    return Path(path).stat().st_size * 8 / (height * width)


def read_bpp_table(path: str | os.PathLike, names: Sequence[str]) -> dict[str, float]:
    """Per-image bpp from a CSV with columns ``image,bpp``: exactly the given names, finite and > 0.

    ``image`` may carry a suffix (``kodim01.png`` and ``kodim01`` both name the image ``kodim01``).
    A missing, extra or repeated image, or a bpp that is not a positive finite number, is a
    :class:`BenchError` naming the table and the images.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"image": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BenchError(f"cannot read the bpp table {path}: {err}") from None
    if list(table.columns[:2]) != list(BPP_COLUMNS):
        raise BenchError(f"bpp table {path} must start with the columns image,bpp (it has {list(table.columns)})")
    table["image"] = table["image"].map(lambda name: Path(name).stem)
    duplicated = sorted(set(table.loc[table["image"].duplicated(), "image"]))
    if duplicated:
        raise BenchError(f"bpp table {path} lists images more than once: {short_list(duplicated)}")
    missing = sorted(set(names) - set(table["image"]))
    extra = sorted(set(table["image"]) - set(names))
    if missing or extra:
        raise BenchError(
            f"bpp table {path} does not match the reference images: "
            f"missing {short_list(missing) or 'none'}; unknown {short_list(extra) or 'none'}"
        )
    bpp = pd.to_numeric(table["bpp"], errors="coerce")
    bad = sorted(table.loc[~(bpp > 0) | ~bpp.map(math.isfinite), "image"])
    if bad:
        raise BenchError(f"bpp table {path} has no positive finite bpp for {short_list(bad)}")
    return dict(zip(table["image"], bpp.astype(float), strict=True))
