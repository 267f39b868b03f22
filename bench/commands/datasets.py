"""``python -m bench datasets list|fetch|prepare``: the registered datasets, fetched and verified."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.data import DATASETS, MIRROR_ENV, fetch, prepare_eval


def _cmd_list(args: argparse.Namespace) -> int:
    for spec in DATASETS.values():
        source = spec.url_template or spec.archive_url or "mirror only"
        print(f"{spec.name:30s} {spec.role:5s} {spec.description}\n{'':36s} source: {source}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    paths = fetch(args.name, args.root, args.mirror)
    print(f"{len(paths)} verified images in {Path(args.root) / args.name}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    paths = prepare_eval(args.name, args.root, args.out, max_images=args.max_images, crop=args.crop, mirror=args.mirror)
    print(f"{len(paths)} evaluation images in {args.out}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``datasets list|fetch|prepare``."""
    parser = subparsers.add_parser("datasets", help="list, fetch and prepare datasets")
    sub = parser.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="the registered datasets and their sources").set_defaults(func=_cmd_list)

    fetch_parser = sub.add_parser("fetch", help="download (or copy from a mirror) and verify a dataset")
    fetch_parser.add_argument("name", help="dataset name (see `datasets list`)")
    fetch_parser.add_argument("--root", default="data", help="folder that receives NAME/ (default: data)")
    fetch_parser.add_argument(
        "--mirror", default=None, help=f"mirror folder or http(s) URL laid out as NAME/FILE (env {MIRROR_ENV} wins)"
    )
    fetch_parser.set_defaults(func=_cmd_fetch)

    prep = sub.add_parser("prepare", help="fetch a dataset and write its evaluation images")
    prep.add_argument("name", help="dataset name")
    prep.add_argument("--out", required=True, help="folder for the evaluation PNGs")
    prep.add_argument("--root", default="data", help="download folder (default: data)")
    prep.add_argument("--mirror", default=None, help=f"mirror folder or http(s) URL (env {MIRROR_ENV} wins)")
    prep.add_argument("--max-images", type=int, default=None, help="keep the first N images by name")
    prep.add_argument("--crop", type=int, default=None, help="centre-crop each image to this square size")
    prep.set_defaults(func=_cmd_prepare)
