"""The dataset tables: gather every decoder point's metrics and decode record into two tidy CSVs.

Each point of a dataset has a per-image CSV and a one-row summary CSV from ``python -m bench
metrics`` (labelled with dataset, codec, quality and point), and its reconstruction folder holds the
``decode.json`` record the decoder wrote (timing, memory, network evaluations, weights hashes).
This step joins them into ``results/{dataset}/per_image.csv`` (one row per point × image) and
``results/{dataset}/summary.csv`` (one row per point). The decoder columns (decoder, sampler, steps,
eta, the knobs t0, guidance and n_avg, seed) come from parsing the point id with :func:`bench.points.parse_point`, never from slicing.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.points import parse_point
from bench.utils import BenchError, write_tables

RECORD_NAME = "decode.json"  # written by `decode --record`: timing, memory, MSH weights hash
DIFFUSION_RECORD_NAME = "decode_config.json"  # written by the diffusion decoder: sampler and checkpoint
RECORD_FIELDS = ("nfe", "decode_s_per_image", "peak_mem_mb", "msh_weights", "decoder_weights", "rho", "batch_size", "threads", "cpu_numerics")
POINT_FIELDS = ("decoder", "sampler", "steps", "eta", "t0", "guidance", "n_avg", "seed")
LEADING = ("dataset", "codec", "quality", "point", *POINT_FIELDS, "n_seeds", "nfe")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON record, {} when absent (a decoder that writes none, e.g. JPEG)."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BenchError(f"{path} is not valid JSON ({err}); delete the folder and decode again") from None


def read_record(reconstructions: str | os.PathLike) -> dict[str, Any]:
    """The table fields of a reconstruction folder's records (see :data:`RECORD_FIELDS`).

    ``nfe`` is the number of network evaluations per image (the diffusion record's count of
    scheduler steps); timing, memory and the MSH weights hash come from ``decode.json``.
    """
    folder = Path(reconstructions)
    fields = _read_json(folder / RECORD_NAME)
    diffusion = _read_json(folder / DIFFUSION_RECORD_NAME)
    if diffusion:
        checkpoint = diffusion.get("decoder_checkpoint", {})
        fields |= {
            "nfe": diffusion.get("sampling", {}).get("network_evaluations"),
            "decoder_weights": checkpoint.get("weights_hash"),
            "rho": checkpoint.get("rho_effective"),
            # a sample differs at the rounding level with its batch and the CPU threads: provenance
            "batch_size": diffusion.get("batching", {}).get("batch_size"),
            "threads": diffusion.get("batching", {}).get("threads"),
        }
    return fields


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
    for summary_path, image_path, folder in zip(summaries, per_images, reconstructions):
        summary = _read_csv(summary_path)
        if len(summary) != 1 or "point" not in summary.columns:
            raise BenchError(f"{summary_path} must hold one labelled row (with a 'point' column)")
        row = summary.iloc[0].to_dict()
        extra = _point_columns(row["point"])
        record = read_record(folder)
        extra |= {key: record.get(key) for key in RECORD_FIELDS}
        if extra["nfe"] is None and extra["decoder"] in ("msh", "jpeg"):
            extra["nfe"] = 0  # no network evaluations beyond the codec's own transform (a byo codec's: unknown)
        summary_rows.append(row | extra)
        images = _read_csv(image_path)
        image_frames.append(images.assign(**{k: extra[k] for k in POINT_FIELDS}))
    return _ordered(pd.concat(image_frames, ignore_index=True)), _ordered(pd.DataFrame(summary_rows))


def _cmd_tables(args: argparse.Namespace) -> int:
    per_image, summary = collect(args.summaries, args.per_image, args.reconstructions)
    write_tables({args.out_per_image: per_image, args.out_summary: summary})
    print(f"{len(summary)} points, {len(per_image)} image rows -> {args.out_summary}, {args.out_per_image}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``tables``."""
    parser = subparsers.add_parser("tables", help="gather per-point metrics and decode records into dataset tables")
    parser.add_argument("--summaries", nargs="+", required=True, metavar="CSV", help="one summary CSV per point")
    parser.add_argument("--per-image", nargs="+", required=True, metavar="CSV", help="the per-image CSVs, same order")
    parser.add_argument("--reconstructions", nargs="+", required=True, metavar="DIR",
                        help=f"the reconstruction folders (holding {RECORD_NAME}), same order")
    parser.add_argument("--out-per-image", required=True, metavar="CSV")
    parser.add_argument("--out-summary", required=True, metavar="CSV")
    parser.set_defaults(func=_cmd_tables)
