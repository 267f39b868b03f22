"""``python -m bench train-decoder``: train the conditional diffusion decoder for one MSH quality."""

from __future__ import annotations

import argparse

from bench.diffusion import train_from_config


def _cmd_train(args: argparse.Namespace) -> int:
    out = train_from_config(
        args.config,
        args.quality,
        args.msh_checkpoint,
        args.data,
        args.out,
        steps=args.steps,
        device=args.device,
        seed=args.seed,
    )
    print(f"decoder written to {out}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train-decoder``."""
    p = subparsers.add_parser("train-decoder", help="train the conditional diffusion decoder for one MSH quality")
    p.add_argument("--config", required=True, help="YAML config (its decoder section and seed are used)")
    p.add_argument("--quality", type=int, required=True, help="MSH quality the decoder is trained for")
    p.add_argument("--msh-checkpoint", required=True, help="frozen MSH codec weights (from train-msh)")
    p.add_argument("--data", required=True, help="folder of training PNGs (random crops are taken)")
    p.add_argument("--out", required=True, help="decoder checkpoint to write (OUT.partial while training)")
    p.add_argument("--steps", type=int, help="override decoder.train.steps")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the config's device")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.set_defaults(func=_cmd_train)
