"""Command-line interface: ``python -m bench <command> ...`` (argparse subcommands, compressai style).

Every command handler lives in :mod:`bench.commands`, one module per part of the suite, each with an
``add_commands(subparsers)`` function; a subcommand stores its handler as ``func``, the handler parses
its arguments into one library call and returns an exit code.
Snakemake rules call exactly one of these commands each.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType

from bench.commands import COMMAND_MODULE, COMMAND_MODULES, build_parser, requested_command
from bench.utils import (
    TERMINATED_EXIT,
    BenchError,
    Terminated,
    on_sigterm,
    os_error_in,
    os_error_message,
    pin_portable_kernels,
    set_torch_threads,
)

__all__ = ["COMMAND_MODULE", "COMMAND_MODULES", "build_parser", "main"]


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
    args = build_parser(requested_command(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        set_torch_threads(args.threads)
        pin_portable_kernels()
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
