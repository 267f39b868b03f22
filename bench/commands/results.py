"""``python -m bench tables``: join a dataset's points into its per-image and summary tables."""

from __future__ import annotations

import argparse

from bench.decode_record import RECORD_NAME
from bench.results import collect
from bench.utils import write_tables


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
    parser.add_argument(
        "--reconstructions",
        nargs="+",
        required=True,
        metavar="DIR",
        help=f"the reconstruction folders (holding {RECORD_NAME}), same order",
    )
    parser.add_argument("--out-per-image", required=True, metavar="CSV")
    parser.add_argument("--out-summary", required=True, metavar="CSV")
    parser.set_defaults(func=_cmd_tables)
