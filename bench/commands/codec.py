"""CLI of the MSH codec: ``python -m bench encode`` and ``python -m bench train-msh``.

(``decode`` lives in :mod:`bench.commands.decode`, which dispatches to every decoder.)
"""

from __future__ import annotations

import argparse
from statistics import mean

from bench.codec.checkpoints import ZOO_LAMBDAS, load_pretrained, save_checkpoint, zoo_origin
from bench.codec.files import encode_path
from bench.codec.msh import load_codec
from bench.codec.train import MSHTrainConfig, train_msh
from bench.config import load_config, validate_config, with_overrides
from bench.data import list_images


def add_codec_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint P | --pretrained``, ``--device`` and ``--batch-size``: which MSH weights, where, how many."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="MSH checkpoint (from train-msh, or a compressai zoo file)")
    source.add_argument(
        "--pretrained",
        action="store_true",
        help="compressai's pretrained mbt2018-mean weights from $TORCH_HOME/hub/checkpoints",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    parser.add_argument("--batch-size", type=int, default=4, help="images per g_a/g_s batch (default: 4)")


def _cmd_encode(args: argparse.Namespace) -> int:
    codec = load_codec(args.quality, checkpoint=args.checkpoint, pretrained=args.pretrained, device=args.device)
    results = encode_path(codec, args.input, args.output, batch_size=args.batch_size)
    for name, result in results.items():
        print(f"{name}\t{result.bpp:.4f} bpp\t{result.nbytes} bytes\t{result.width}x{result.height}")
    if len(results) > 1:
        print(f"mean\t{mean(r.bpp for r in results.values()):.4f} bpp\t{len(results)} images")
    return 0


# train-msh flags that stand for msh.train keys (argparse dest = key).
_TRAIN_FLAGS = ("lmbda", "N", "M", "steps", "batch_size", "crop", "lr", "aux_lr", "grad_clip", "checkpoint_every")


def _cmd_train(args: argparse.Namespace) -> int:
    config = with_overrides(
        load_config(args.config) if args.config else validate_config({}),
        {"seed": args.seed, "device": args.device, **{f"msh.train.{k}": getattr(args, k) for k in _TRAIN_FLAGS}},
    )
    cfg = MSHTrainConfig.from_config(config, args.quality)
    out = train_msh(cfg, list_images(args.data), args.out, device=config["device"])
    print(f"wrote {out} (mbt2018-mean q{cfg.quality}, lambda {cfg.lmbda}, {cfg.steps} steps)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    net = load_pretrained(args.quality)
    net.update(force=True)
    save_checkpoint(
        args.out,
        net,
        quality=args.quality,
        lmbda=ZOO_LAMBDAS[args.quality],
        source="compressai-zoo",
        **zoo_origin(args.quality),
    )
    print(f"wrote {args.out} (compressai zoo mbt2018-mean q{args.quality})")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``encode``, ``train-msh`` and ``export-msh``."""
    enc = subparsers.add_parser("encode", help="compress a PNG (or a folder of PNGs) into MSH bitstream files")
    enc.add_argument("input", help="a PNG image or a folder of PNGs")
    enc.add_argument("output", help="the .bin file (or the folder for IMAGE.bin files)")
    enc.add_argument("--quality", type=int, required=True, help="mbt2018-mean quality 1..8")
    add_codec_arguments(enc)
    enc.set_defaults(func=_cmd_encode)

    train = subparsers.add_parser(
        "train-msh",
        help="train an mbt2018-mean model on random crops (resumes after a kill)",
        description="Flags override the msh.train section of --config (or the schema defaults) and are "
        "checked by the same schema.",
    )
    train.add_argument("--quality", type=int, required=True, help="quality 1..8 (sets the default lambda, N, M)")
    train.add_argument("--data", required=True, help="folder of training PNGs")
    train.add_argument("--out", required=True, help="checkpoint to write (OUT.partial holds the resumable state)")
    train.add_argument("--config", help="config YAML whose msh.train section gives the defaults")
    train.add_argument("--lmbda", type=float, help="rate-distortion lambda (default: compressai zoo value)")
    train.add_argument("--N", type=int, help="channels of the transforms (default: zoo size)")
    train.add_argument("--M", type=int, help="channels of the latent y (default: zoo size)")
    train.add_argument("--steps", type=int, help="total training steps")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--crop", type=int, help="square crop size (a multiple of 64)")
    train.add_argument("--lr", type=float, help="Adam learning rate of the network")
    train.add_argument("--aux-lr", type=float, help="Adam learning rate of the bottleneck quantiles")
    train.add_argument("--grad-clip", type=float, help="max gradient norm of the network parameters")
    train.add_argument("--checkpoint-every", type=int, help="steps between resumable checkpoints")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the config's device")
    train.set_defaults(func=_cmd_train)

    export = subparsers.add_parser(
        "export-msh",
        help="save compressai's pretrained mbt2018-mean weights ($TORCH_HOME, else download) as a suite checkpoint",
        description="The workflow's zoo source: every later step then reads one checkpoint file per quality.",
    )
    export.add_argument("--quality", type=int, required=True, help="quality 1..8")
    export.add_argument("--out", required=True, help="checkpoint to write")
    export.set_defaults(func=_cmd_export)
