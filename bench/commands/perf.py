"""``python -m bench perf``: decode time, memory and FLOP/s of MSH and every sampler point."""

from __future__ import annotations

import argparse

from bench.perf import run_perf
from bench.utils import write_tables


def _cmd_perf(args: argparse.Namespace) -> int:
    table = run_perf(
        args.config,
        quality=args.quality,
        msh_checkpoint=args.checkpoint,
        decoder_checkpoint=args.decoder_checkpoint,
        device=args.device,
        image=args.image,
        mirror=args.mirror,
        compile_model=args.compile,
    )
    write_tables({args.out: table})
    print(f"{len(table)} rows -> {args.out}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``perf``."""
    parser = subparsers.add_parser("perf", help="decode time, memory and FLOP/s of MSH and every sampler point")
    parser.add_argument("--config", required=True, help="config file (its perf and sampling sections)")
    parser.add_argument("--quality", type=int, required=True, help="MSH quality of the checkpoints")
    parser.add_argument("--checkpoint", required=True, help="MSH checkpoint (models/msh/qQ.pt)")
    parser.add_argument(
        "--decoder-checkpoint", required=True, help="diffusion decoder checkpoint (models/decoder/qQ.pt)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the config's device")
    parser.add_argument("--image", help="image cropped to each size (default: Kodak from the mirror, else generated)")
    parser.add_argument("--mirror", help="dataset mirror holding kodak/ (default: $BENCH_DATA_MIRROR or data_mirror)")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compare torch.compile of the UNet too (default: the config's perf.compile)",
    )
    parser.add_argument("--out", required=True, metavar="CSV", help="results/perf.csv")
    parser.set_defaults(func=_cmd_perf)
