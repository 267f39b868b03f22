"""``python -m bench metrics``: measure a folder of reconstructions, write the per-image and summary CSVs."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.config import config_hash, load_config, validate_config
from bench.metrics.evaluate import MetricsOptions, PointTables, run_metrics_points
from bench.utils import BenchError

# The keys of one ``--points`` entry: PointTables' fields (paths as strings, the labels as an object);
# those without a default are required.
POINT_KEYS: dict[str, type] = {f.name: dict if f.name == "labels" else str for f in dataclasses.fields(PointTables)}
REQUIRED_POINT_KEYS = tuple(
    f.name
    for f in dataclasses.fields(PointTables)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
SINGLE_POINT_FLAGS = ("reconstructions", "out", "summary", "bitstreams", "bpp_table", "label")


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


def parse_points(text: str) -> list[PointTables]:
    """``--points`` JSON (a list of objects with :data:`POINT_KEYS`; ``reconstructions`` and ``out``
    required, at most one of ``bitstreams`` and ``bpp_table``) → the points, or one clear error."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as err:
        raise BenchError(f"--points is not valid JSON ({err}); give a list of objects") from None
    if not isinstance(entries, list) or not entries:
        raise BenchError("--points must be a non-empty JSON list of objects")
    return [_point(number, entry) for number, entry in enumerate(entries, start=1)]


def _point(number: int, entry: Any) -> PointTables:
    """One ``--points`` entry, checked key by key."""
    where = f"--points entry {number}"
    if not isinstance(entry, dict):
        raise BenchError(f"{where} must be an object, got {entry!r}")
    unknown = sorted(set(entry) - set(POINT_KEYS))
    if unknown:
        raise BenchError(f"{where} has unknown keys {unknown}; known: {sorted(POINT_KEYS)}")
    for key in REQUIRED_POINT_KEYS:
        if key not in entry:
            raise BenchError(f"{where} lacks {key!r}")
    for key, value in entry.items():
        if not isinstance(value, POINT_KEYS[key]):
            raise BenchError(f"{where}: {key!r} must be a {POINT_KEYS[key].__name__}, got {value!r}")
    if "bitstreams" in entry and "bpp_table" in entry:
        raise BenchError(f"{where} gives both 'bitstreams' and 'bpp_table'; give the rate one way")
    labels = {str(key): str(value) for key, value in entry.get("labels", {}).items()}
    paths = {key: Path(value) for key, value in entry.items() if key != "labels"}
    return PointTables(**paths, labels=labels)


def points_from_args(args: argparse.Namespace) -> list[PointTables]:
    """The points to measure: the ``--points`` list, or the one point of the single-point flags."""
    if args.points is not None:
        given = [f"--{flag.replace('_', '-')}" for flag in SINGLE_POINT_FLAGS if getattr(args, flag) is not None]
        if given:
            raise BenchError(f"--points names every point's folders and tables; drop {', '.join(given)}")
        return parse_points(args.points)
    if args.reconstructions is None or args.out is None:
        raise BenchError("give --reconstructions DIR and --out CSV (or --points with every point)")
    optional = {
        key: Path(getattr(args, key))
        for key in ("summary", "bitstreams", "bpp_table")
        if getattr(args, key) is not None
    }
    return [PointTables(Path(args.reconstructions), Path(args.out), labels=parse_labels(args.label), **optional)]


def _cmd_metrics(args: argparse.Namespace) -> int:
    options, digest = options_from_args(args)
    run_metrics_points(
        args.reference,
        points_from_args(args),
        options=options,
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
    parser.add_argument("--reconstructions", metavar="DIR", help="folder of decoded PNGs, same names")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--bitstreams", metavar="DIR", help="folder of STEM.bin files; adds the bpp column")
    rate.add_argument(
        "--bpp-table",
        metavar="CSV",
        help="CSV with columns image,bpp (e.g. from `byo-check --out`), one row per image; adds the bpp column",
    )
    parser.add_argument("--out", metavar="CSV", help="per-image table")
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
        "--points",
        metavar="JSON",
        help="several points in one run (the workflow's form: backbones load once): a JSON list of objects "
        "with reconstructions, out and optionally summary, bitstreams or bpp_table, labels (an object); "
        "replaces --reconstructions, --out, --summary, --bitstreams, --bpp-table and --label",
    )
    parser.add_argument(
        "--reference-cache",
        metavar="DIR",
        help="folder that keeps the reference patches' Inception features between runs over the same references "
        "(computed once per dataset instead of once per point; keyed by pixels, weights and settings)",
    )
    parser.set_defaults(func=_cmd_metrics)
