"""The dataset tables: gather every decoder point's metrics and decode record into two tidy CSVs.

Each point of a dataset has a per-image CSV and a one-row summary CSV from ``python -m bench
metrics`` (labelled with dataset, codec, quality and point), and its reconstruction folder holds the
:class:`~bench.decode_record.DecodeRecord` the decode wrote (timing, memory, network evaluations,
weights hashes).
This step joins them into ``results/{dataset}/per_image.csv`` (one row per point × image) and
``results/{dataset}/summary.csv`` (one row per point). The decoder columns (decoder, sampler, steps,
eta, the knobs t0, guidance and n_avg, seed) come from parsing the point id with
:func:`bench.points.parse_point`, never from slicing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.decode_record import DecodeRecord
from bench.points import parse_point
from bench.utils import BenchError

RECORD_FIELDS = (
    "nfe",
    "decode_s_per_image",
    "peak_mem_mb",
    "msh_weights",
    "decoder_weights",
    "rho",
    "batch_size",
    "threads",
    "cpu_numerics",
)  # the decode record's fields that are table columns
POINT_FIELDS = ("decoder", "sampler", "steps", "eta", "t0", "guidance", "n_avg", "seed")
LEADING = ("dataset", "codec", "quality", "point", *POINT_FIELDS, "n_seeds", "nfe")


def _read_csv(path: str | os.PathLike) -> pd.DataFrame:
    if not Path(path).is_file():
        raise BenchError(f"metrics table {path} does not exist; run `python -m bench metrics` for that point first")
    return pd.read_csv(path)


def _point_columns(point_id: str) -> dict[str, Any]:
    """decoder, sampler, steps, eta, knobs and seed of a point (one sample per point: n_seeds = 1)."""
    columns = parse_point(point_id).columns()
    columns.pop("point")
    return {**columns, "n_seeds": 1}


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """The identifying columns first, in a fixed order; the rest as they came."""
    first = [c for c in LEADING if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def collect(
    summaries: Sequence[str | os.PathLike],
    per_images: Sequence[str | os.PathLike],
    reconstructions: Sequence[str | os.PathLike],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join the points' tables and records; the three sequences are aligned point by point."""
    if not len(summaries) == len(per_images) == len(reconstructions):
        raise BenchError("tables needs as many --summaries as --per-image and --reconstructions paths")
    summary_rows, image_frames = [], []
    for summary_path, image_path, folder in zip(summaries, per_images, reconstructions, strict=True):
        summary = _read_csv(summary_path)
        if len(summary) != 1 or "point" not in summary.columns:
            raise BenchError(f"{summary_path} must hold one labelled row (with a 'point' column)")
        row = summary.iloc[0].to_dict()
        extra = _point_columns(row["point"])
        record = DecodeRecord.read(folder)
        extra |= {key: None if record is None else getattr(record, key) for key in RECORD_FIELDS}
        if extra["nfe"] is None and extra["decoder"] in ("msh", "jpeg"):
            extra["nfe"] = 0  # no network evaluations beyond the codec's own transform (a byo codec's: unknown)
        summary_rows.append(row | extra)
        images = _read_csv(image_path)
        image_frames.append(images.assign(**{k: extra[k] for k in POINT_FIELDS}))
    return _ordered(pd.concat(image_frames, ignore_index=True)), _ordered(pd.DataFrame(summary_rows))
