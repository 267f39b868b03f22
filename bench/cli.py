"""Command-line interface: ``python -m bench <command> ...`` (argparse subcommands, compressai style).

Each part of the suite registers its own subcommands through an ``add_commands(subparsers)``
function; a subcommand stores its handler as ``func`` and the handler returns an exit code.
Snakemake rules call exactly one of these commands each.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bench.utils import BenchError, set_torch_threads

# Modules that contribute subcommands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = ("bench.data", "bench.codec.commands", "bench.decode", "bench.metrics.cli", "bench.diffusion.train",
                                   "bench.baselines.jpeg", "bench.baselines.byo", "bench.tables", "bench.report",
                                   "bench.perf")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every part's subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="rdp-bench: rate-distortion-perception benchmark of learned image codecs with diffusion decoders.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads of this step (default: $OMP_NUM_THREADS, else every core); "
                             "results depend on it at the rounding level, so the workflow passes its rule's threads")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run one subcommand; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        set_torch_threads(args.threads)
        return int(args.func(args) or 0)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
