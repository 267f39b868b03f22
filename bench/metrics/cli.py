"""``python -m bench metrics``: measure a folder of reconstructions, write the per-image and summary CSVs."""

from __future__ import annotations

import argparse
import dataclasses

from bench.config import config_hash, load_config, validate_config
from bench.metrics.evaluate import MetricsOptions, run_metrics
from bench.utils import BenchError


def parse_labels(items: list[str] | None) -> dict[str, str]:
    """``["dataset=kodak", "quality=1"]`` → ``{"dataset": "kodak", "quality": "1"}`` (keys unique)."""
    labels: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--label expects KEY=VALUE, got {item!r}")
        if key in labels:
            raise BenchError(f"--label {key} given twice")
        labels[key] = value
    return labels


def options_from_args(args: argparse.Namespace) -> tuple[MetricsOptions, str]:
    """The run's options (config file, then flags) and the config hash ('' without a config file)."""
    config = load_config(args.config) if args.config else validate_config({})
    options = MetricsOptions.from_config(config)
    overrides = {name: False for name in ("lpips", "dists", "fid", "swd", "niqe") if getattr(args, f"no_{name}")}
    if args.allow_random_backbones:
        overrides["allow_random_backbones"] = True
    if args.no_download:
        overrides["download_weights"] = False
    if args.device is not None:
        overrides["device"] = args.device
    return dataclasses.replace(options, **overrides), config_hash(config) if args.config else ""


def _cmd_metrics(args: argparse.Namespace) -> int:
    options, digest = options_from_args(args)
    run_metrics(
        args.reference,
        args.reconstructions,
        out=args.out,
        summary_path=args.summary,
        bitstreams_dir=args.bitstreams,
        bpp_table=args.bpp_table,
        options=options,
        labels=parse_labels(args.label),
        config_hash=digest,
        reference_cache=args.reference_cache,
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``metrics``."""
    parser = subparsers.add_parser(
        "metrics",
        help="measure reconstructions against references (PSNR, MS-SSIM, LPIPS, DISTS, NIQE, FID/KID, SWD)",
        description=(
            "Match the PNGs of two folders by name, measure every pair and write a per-image CSV and a "
            "one-row summary CSV (means with bootstrap 95% CIs, patch FID/KID, provenance columns). "
            "Options default to the config's `metrics` section; flags override them."
        ),
    )
    parser.add_argument("--reference", required=True, metavar="DIR", help="folder of original PNGs")
    parser.add_argument("--reconstructions", required=True, metavar="DIR", help="folder of decoded PNGs, same names")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--bitstreams", metavar="DIR", help="folder of STEM.bin files; adds the bpp column")
    rate.add_argument(
        "--bpp-table",
        metavar="CSV",
        help="CSV with columns image,bpp (e.g. from `byo-check --out`), one row per image; adds the bpp column",
    )
    parser.add_argument("--out", required=True, metavar="CSV", help="per-image table")
    parser.add_argument("--summary", metavar="CSV", help="summary table (default: OUT with a _summary suffix)")
    parser.add_argument("--config", metavar="YAML", help="config file (its metrics section; hash recorded)")
    parser.add_argument(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="extra column for both tables, e.g. --label dataset=kodak --label point=msh (repeatable)",
    )
    for name, what in (("lpips", "LPIPS"), ("dists", "DISTS"), ("fid", "FID/KID"), ("swd", "SWD"), ("niqe", "NIQE")):
        parser.add_argument(f"--no-{name}", action="store_true", help=f"skip {what}")
    parser.add_argument(
        "--allow-random-backbones",
        action="store_true",
        help="run LPIPS/DISTS/FID with seeded random weights when their files are missing (labelled random-init)",
    )
    parser.add_argument("--no-download", action="store_true", help="never download backbone weights")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the config's device")
    parser.add_argument(
        "--reference-cache",
        metavar="DIR",
        help="folder that keeps the reference patches' Inception features between runs over the same references "
        "(computed once per dataset instead of once per point; keyed by pixels, weights and settings)",
    )
    parser.set_defaults(func=_cmd_metrics)
