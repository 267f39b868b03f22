"""``python -m bench jpeg`` (the JPEG baseline) and ``python -m bench byo-check`` (a bring-your-own codec's folder)."""

from __future__ import annotations

import argparse
import logging

from bench.baselines.byo import check_byo
from bench.baselines.jpeg import compress_folder, compress_folder_matched
from bench.metrics.rates import BPP_COLUMNS
from bench.utils import atomic_path

log = logging.getLogger(__name__)


def _cmd_jpeg(args: argparse.Namespace) -> int:
    if args.match_bpp_from is not None:
        table = compress_folder_matched(args.reference, args.match_bpp_from, args.bitstreams, args.out)
    else:
        table = compress_folder(args.reference, args.quality, args.bitstreams, args.out)
    if args.table:
        with atomic_path(args.table) as tmp:
            table.to_csv(tmp, index=False)
    log.info("JPEG: %d images, mean %.4f bpp", len(table), table["bpp"].mean())
    return 0


def _add_jpeg(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "jpeg",
        help="the JPEG baseline (Pillow): bitstreams and decoded PNGs at one quality or at matched bitrates",
        description="Encode every reference PNG with JPEG (4:2:0, optimised Huffman tables), write the JPEG "
        "bytes as BITS/{image}.bin and the decoded image as OUT/{image}.png.",
    )
    parser.add_argument("--reference", required=True, metavar="DIR", help="folder of reference PNGs")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--quality", type=int, metavar="Q", help="one JPEG quality (1-100) for every image")
    how.add_argument(
        "--match-bpp-from",
        metavar="BITSDIR",
        help="per image, the quality whose size is closest to the image's bitstream in this folder",
    )
    parser.add_argument("--bitstreams", required=True, metavar="DIR", help="where the JPEG files go ({image}.bin)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the decoded PNGs go")
    parser.add_argument("--table", metavar="CSV", help="per-image table: quality, bytes, bpp (and target bpp)")
    parser.set_defaults(func=_cmd_jpeg)


def _cmd_byo_check(args: argparse.Namespace) -> int:
    table = check_byo(args.reference, args.reconstructions, bitstreams=args.bitstreams, bpp_table=args.bpp_table)
    if args.out:
        with atomic_path(args.out) as tmp:
            table[list(BPP_COLUMNS)].to_csv(tmp, index=False)
    log.info("%s: %d images OK, mean %.4f bpp", args.reconstructions, len(table), table["bpp"].mean())
    return 0


def _add_byo_check(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "byo-check",
        help="check a bring-your-own codec's reconstructions and rates before measuring them",
        description="Check that a folder of foreign reconstructions matches the reference images (names, "
        "8-bit RGB PNGs of the same size) and that every image has a rate (a bitstream file or a bpp table row).",
    )
    parser.add_argument("--reference", required=True, metavar="DIR", help="folder of reference PNGs")
    parser.add_argument("--reconstructions", required=True, metavar="DIR", help="folder of decoded PNGs, same names")
    rate = parser.add_mutually_exclusive_group(required=True)
    rate.add_argument("--bitstreams", metavar="DIR", help="one file per image, named after it (any suffix)")
    rate.add_argument("--bpp-table", metavar="CSV", help="CSV with columns image,bpp")
    parser.add_argument("--out", metavar="CSV", help="write the per-image image,bpp table here")
    parser.set_defaults(func=_cmd_byo_check)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``jpeg`` and ``byo-check``."""
    _add_jpeg(subparsers)
    _add_byo_check(subparsers)
