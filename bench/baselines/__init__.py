"""Baselines: published rate-distortion(-perception) points as data, JPEG, and bring-your-own codecs.

Published points live in CSV files beside this module, one file per codec, one row per
(dataset, operating point), in the same tidy columns as our ``summary.csv`` (``bpp``, ``psnr``,
``ms_ssim``, ``lpips``, ``dists``, ``fid``, ``kid``, ``swd``, ``niqe``; empty = not published) plus
where each number comes from (``source_repo``, ``source_path``, ``source_commit``, ``source_note``)
and how it was measured (``protocol``). A number that cannot be read from the cited file is not in
the table: nothing is estimated from a figure.

- ``hific.csv``: HiFiC (Mentzer et al. 2020), the authors' own metrics behind the paper's Figs 4,
  A10 and A11 (``tensorflow/compression``, ``models/hific/data.csv``): three models per dataset,
  labelled ``hific-lo/-mi/-hi`` by ascending bpp (the file has no model column).
- ``mbt2018_mean.csv``: CompressAI's published results for the zoo's ``mbt2018_mean`` (MSE), i.e.
  the MSH codec with its reference weights, qualities 1-8.

Dataset names. ``dataset`` holds our registry name (:data:`bench.data.DATASETS`) only where the
source's set is the same set of images; otherwise it keeps the source's own name, which matches none
of ours, so a published point is never drawn beside a different image set. ``source_dataset`` always
keeps the source's name. Mapping: HiFiC ``kodak`` → ``kodak``; HiFiC ``div2k`` (the DIV2K validation
set, 100 images) → ``div2k-valid``; HiFiC ``clic2020`` (the CLIC 2020 test set, professional + mobile,
428 images) stays ``clic2020``; CompressAI ``clic2020-professional`` (split not stated in the source)
stays ``clic2020-professional``. The protocols still differ from ours (full-resolution images, where
our CLIC/DIV2K preparation resizes to 768×768); ``protocol`` says how.

CDC (Yang & Mandt 2023, "Lossy image compression with conditional diffusion models") is not in the
table: its repository publishes no numeric results (it prints an estimated, not a coded, bpp) and its
paper gives curves only. CDC is supported instead by re-evaluating its reconstructions through
bring-your-own (:mod:`bench.baselines.byo`): decode with the CDC code, then point a ``byo-cdc`` entry
at the PNG folder and a bpp table; the suite measures it exactly like its own decoders.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.utils import BenchError

DATA_DIR = Path(__file__).resolve().parent

METRIC_COLUMNS: tuple[str, ...] = ("bpp", "psnr", "ms_ssim", "lpips", "dists", "fid", "kid", "swd", "niqe")
SOURCE_COLUMNS: tuple[str, ...] = ("protocol", "source_repo", "source_path", "source_commit", "source_note")
COLUMNS: tuple[str, ...] = (
    "dataset",
    "source_dataset",
    "codec",
    "point",
    "quality",
    *METRIC_COLUMNS,
    *SOURCE_COLUMNS,
)


def published_files() -> list[Path]:
    """The CSV files of published points shipped with the package, sorted by name."""
    return sorted(DATA_DIR.glob("*.csv"))


def read_published(path: str | Path) -> pd.DataFrame:
    """Read and check one published-points CSV: every column present, a source for every row, bpp > 0."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BenchError(f"cannot read published baselines {path}: {err}") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise BenchError(f"published baselines {path} lack the columns {missing}; expected {list(COLUMNS)}")
    unsourced = frame[frame[["source_repo", "source_path", "source_commit"]].isna().any(axis=1)]
    if len(unsourced):
        raise BenchError(
            f"published baselines {path}: rows {list(unsourced.index)} cite no source; every number needs one"
        )
    bpp = pd.to_numeric(frame["bpp"], errors="coerce")
    if not (bpp > 0).all():
        raise BenchError(f"published baselines {path}: every row needs a positive bpp")
    try:
        frame[list(METRIC_COLUMNS)] = frame[list(METRIC_COLUMNS)].apply(pd.to_numeric, errors="raise")
    except ValueError as err:
        raise BenchError(f"published baselines {path}: a metric cell is not a number ({err})") from None
    return frame[list(COLUMNS)]


def load_published(dataset: str | None = None) -> pd.DataFrame:
    """All published points (of one ``dataset`` when given; an empty frame when none exist for it)."""
    frames = [read_published(path) for path in published_files()]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    if dataset is not None:
        table = table[table["dataset"] == dataset].reset_index(drop=True)
    return table
