"""Bring your own codec: check a folder of foreign reconstructions before the metrics measure it.

A foreign codec (CDC, HiFiC run locally, a codec of the user's) enters the benchmark as files, not
code: a folder of decoded PNGs named like the reference images, and its rate as either

- a folder of bitstreams, one file per image whose stem is the image's (``kodim01.bin``,
  ``kodim01.tfci`` ...; any single suffix): bpp = file bytes × 8 / (H × W), every byte counted; or
- a CSV table with columns ``image,bpp`` (for codecs whose files are not at hand, e.g. a paper's
  per-image rates), one row per reference image.

:func:`check_byo` verifies all of it at once (names match, PNGs decode, 8-bit RGB of the reference's
size, one rate per image) and returns the per-image bpp table, so a bad folder fails here with one
message instead of halfway through a metrics run.

In the workflow such a codec is a config entry (``baselines.byo`` in ``bench/schema.yaml``): one
folder of reconstructions of one dataset, the point ``byo-NAME``. :func:`byo_points` reads the
entries, :func:`entry_labels` gives the table labels of an entry's rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.images import load_rgb, open_image, png_bit_depth
from bench.metrics.rates import file_bpp, read_bpp_table
from bench.points import Point, format_point
from bench.utils import BenchError, short_list

log = logging.getLogger(__name__)


def image_size(path: Path, *, require_rgb: bool = False) -> tuple[int, int]:
    """``(width, height)`` of a PNG after decoding it fully (an unreadable file is an error naming it).

    A reference must pass the metrics' reader (:func:`bench.images.load_rgb`, which refuses e.g.
    transparent images); with ``require_rgb`` (reconstructions) only 8-bit RGB passes.
    """
    with open_image(path) as image:
        fmt, mode, size = image.format, image.mode, image.size
    if fmt != "PNG":
        raise BenchError(f"{path} is a {fmt} file, not a PNG; save reconstructions as PNG")
    if not require_rgb:
        height, width = load_rgb(path).shape[:2]
        return width, height
    if mode != "RGB" or png_bit_depth(path) != 8:
        raise BenchError(
            f"{path} is a {'16-bit RGB' if mode == 'RGB' else mode} image; save reconstructions as 8-bit RGB PNGs"
        )
    return size


def bitstream_files(folder: str | Path, names: Sequence[str]) -> dict[str, Path]:
    """The bitstream file of each image name: the one non-hidden file in ``folder`` with that stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchError(f"bitstream folder {folder} does not exist")
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            by_stem.setdefault(path.stem, []).append(path)
    missing = [name for name in names if name not in by_stem]
    if missing:
        raise BenchError(f"no bitstream in {folder} for {short_list(missing)}; name each file after its image")
    ambiguous = [name for name in names if len(by_stem[name]) > 1]
    if ambiguous:
        raise BenchError(
            f"several files share an image's stem in {folder}: {short_list(ambiguous)}; keep one per image"
        )
    empty = [name for name in names if by_stem[name][0].stat().st_size == 0]
    if empty:
        raise BenchError(f"empty bitstreams in {folder}: {short_list(empty)}")
    return {name: by_stem[name][0] for name in names}


def check_byo(
    reference: str | Path,
    reconstructions: str | Path,
    *,
    bitstreams: str | Path | None = None,
    bpp_table: str | Path | None = None,
) -> pd.DataFrame:
    """Validate a bring-your-own folder; returns one row per image: image, width, height, bytes, bpp.

    Exactly one of ``bitstreams`` (bytes counted from files; ``bytes`` column filled) and
    ``bpp_table`` (``bytes`` left empty) gives the rate.
    """
    if (bitstreams is None) == (bpp_table is None):
        raise BenchError("give the rate either as a bitstream folder or as a bpp table (exactly one of the two)")
    from bench.metrics.evaluate import match_images  # torch: not at import (the Snakefile imports this module)

    pairs = match_images(reference, reconstructions)
    sizes = {}
    wrong = []
    for pair in pairs:
        sizes[pair.stem] = image_size(pair.reference)
        got = image_size(pair.reconstruction, require_rgb=True)
        if got != sizes[pair.stem]:
            wrong.append(f"{pair.stem} ({got[0]}x{got[1]}, reference {sizes[pair.stem][0]}x{sizes[pair.stem][1]})")
    if wrong:
        raise BenchError(
            f"reconstructions in {reconstructions} differ in size from their references: {short_list(wrong)}"
        )
    names = [pair.stem for pair in pairs]
    if bitstreams is not None:
        files = bitstream_files(bitstreams, names)
        nbytes = {name: path.stat().st_size for name, path in files.items()}
        bpp = {name: file_bpp(files[name], sizes[name][1], sizes[name][0]) for name in names}
    else:
        nbytes = dict.fromkeys(names, math.nan)
        bpp = read_bpp_table(bpp_table, names)
    return pd.DataFrame(
        {
            "image": names,
            "width": [sizes[n][0] for n in names],
            "height": [sizes[n][1] for n in names],
            "bytes": [nbytes[n] for n in names],
            "bpp": [bpp[n] for n in names],
        }
    )


def byo_points(config: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """A validated config's ``baselines.byo`` entries by dataset, then by point id (``byo-NAME``).

    One name may serve several datasets, but not twice one dataset: both entries would write the same
    files and table rows, so that is a :class:`BenchError` naming the key and the entries.
    """
    by_dataset: dict[str, dict[str, dict[str, Any]]] = {}
    first_index: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(config["baselines"]["byo"]):
        dataset, point = entry["dataset"], format_point(Point("byo", name=entry["name"]))
        if (dataset, point) in first_index:
            raise BenchError(
                f"config key 'baselines.byo' names {entry['name']!r} twice for dataset {dataset!r} "
                f"(entries {first_index[dataset, point]} and {index}); give each entry of a dataset its own name"
            )
        first_index[dataset, point] = index
        by_dataset.setdefault(dataset, {})[point] = entry
    return by_dataset


def entry_labels(entry: Mapping[str, Any]) -> dict[str, str]:
    """The codec and quality labels of an entry's table rows: ``codec`` is its display ``label`` (its
    ``name`` when it has none), ``quality`` its ``quality`` (left out when null)."""
    labels = {"codec": str(entry.get("label") or entry["name"])}
    if entry.get("quality") is not None:
        labels["quality"] = str(entry["quality"])
    return labels
