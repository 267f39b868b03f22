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
from types import FrameType

from bench.utils import (
    TERMINATED_EXIT,
    BenchError,
    Terminated,
    on_sigterm,
    os_error_in,
    os_error_message,
    set_torch_threads,
    use_portable_numerics,
)

# Each subcommand's module: a run imports only that one (torch, torch-fidelity and matplotlib cost seconds
# per call, and every Snakemake job is one call); ``--help`` and unknown commands import them all.
COMMAND_MODULE: dict[str, str] = {
    "datasets": "bench.data", "encode": "bench.codec.commands", "train-msh": "bench.codec.commands",
    "export-msh": "bench.codec.commands", "decode": "bench.decode", "metrics": "bench.metrics.cli",
    "train-decoder": "bench.diffusion.train", "jpeg": "bench.baselines.jpeg", "byo-check": "bench.baselines.byo",
    "tables": "bench.results", "report": "bench.report", "perf": "bench.perf", "gpu-check": "bench.gpu_check",
}  # fmt: skip
# Modules that contribute subcommands, in the order they appear in ``--help`` (derived: one list to keep).
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMAND_MODULE.values()))


def _global_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every command takes before its name (``python -m bench --threads 1 encode ...``)."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads of this step (default: $OMP_NUM_THREADS, else every core); "
                             "results depend on it at the rounding level, so the workflow passes its rule's threads")
    parser.add_argument("--portable-numerics", action="store_true",
                        help="CPU kernels whose results do not depend on the x86 CPU model (config key "
                             "portable_numerics; about 30 %% slower)")
    return parser


def _requested_command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument after the global options), if any; with
    ``--portable-numerics`` its environment is set here, before the command's module imports torch."""
    options, rest = _global_options(argparse.ArgumentParser(add_help=False)).parse_known_args(argv)
    if options.portable_numerics:
        use_portable_numerics()
    return next((arg for arg in rest if not arg.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command``'s module's subcommands, or with every part's when ``command`` is
    ``None`` or unknown (so ``--help`` lists them all and a typo gets argparse's full choice list)."""
    parser = _global_options(argparse.ArgumentParser(
        prog="python -m bench",
        description="rdp-bench: rate-distortion-perception benchmark of learned image codecs with diffusion decoders.",
    ))
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = (COMMAND_MODULE[command],) if command in COMMAND_MODULE else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside a training loop (which saves first, see ``deferred_sigterm``): stop at once."""
    raise Terminated("interrupted by SIGTERM (no half-written file is left); rerun the same command")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run one subcommand; user errors print one line and exit 2.

    Besides the project's :class:`BenchError`, an OSError from the environment (a read-only or full
    disk, a missing permission), also one chained behind another library's error, is one line
    naming the path and the fix. SIGTERM prints one line and exits 143 (128 + SIGTERM).
    """
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_requested_command(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        set_torch_threads(args.threads)
        with on_sigterm(_terminate):
            return int(args.func(args) or 0)
    except Terminated as err:
        print(f"error: {err}", file=sys.stderr)
        return TERMINATED_EXIT
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        cause = os_error_in(err)
        if cause is None:
            raise
        logging.getLogger(__name__).debug("the error in full", exc_info=err)
        print(f"error: {os_error_message(cause)}", file=sys.stderr)
        return 2
