"""Every ``python -m bench`` command handler, one module per part of the suite.

Each module has ``add_commands(subparsers)``; each handler parses its arguments into one call of
its part's library and prints one line. They sit on top of the import graph (no library module
imports them), and ``bench.cli`` imports only the module of the command it runs (this package's
own ``__init__`` imports none of them).
"""

from __future__ import annotations

import argparse
import importlib

from bench.utils import use_portable_numerics

# Each subcommand's module: a run imports only that one (torch, torch-fidelity and matplotlib cost seconds
# per call, and every Snakemake job is one call); ``--help`` and unknown commands import them all.
COMMAND_MODULE: dict[str, str] = {
    "datasets": "bench.commands.datasets",
    "encode": "bench.commands.codec",
    "train-msh": "bench.commands.codec",
    "export-msh": "bench.commands.codec",
    "decode": "bench.commands.decode",
    "train-decoder": "bench.commands.diffusion",
    "metrics": "bench.commands.metrics",
    "jpeg": "bench.commands.baselines",
    "byo-check": "bench.commands.baselines",
    "tables": "bench.commands.results",
    "report": "bench.commands.report",
    "perf": "bench.commands.perf",
    "gpu-check": "bench.commands.gpu_check",
}
# Modules that contribute subcommands, in the order they appear in ``--help`` (derived: one list to keep).
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMAND_MODULE.values()))


def _global_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every command takes before its name (``python -m bench --threads 1 encode ...``)."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads of this step (default: $OMP_NUM_THREADS, else every core); "
        "results depend on it at the rounding level, so the workflow passes its rule's threads",
    )
    parser.add_argument(
        "--portable-numerics",
        action="store_true",
        help="CPU kernels whose results do not depend on the x86 CPU model (config key "
        "portable_numerics; about 30 %% slower)",
    )
    return parser


def requested_command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument after the global options), if any; with
    ``--portable-numerics`` its environment is set here, before the command's module imports torch."""
    options, rest = _global_options(argparse.ArgumentParser(add_help=False)).parse_known_args(argv)
    if options.portable_numerics:
        use_portable_numerics()
    return next((arg for arg in rest if not arg.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command``'s module's subcommands, or with every part's when ``command`` is
    ``None`` or unknown (so ``--help`` lists them all and a typo gets argparse's full choice list)."""
    parser = _global_options(
        argparse.ArgumentParser(
            prog="python -m bench",
            description="rdp-bench: rate-distortion-perception benchmark of learned image codecs with "
            "diffusion decoders.",
        )
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = (COMMAND_MODULE[command],) if command in COMMAND_MODULE else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).add_commands(subparsers)
    return parser
