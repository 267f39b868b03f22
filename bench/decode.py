"""``python -m bench decode IN OUT --decoder NAME``: turn bitstreams into reconstructions.

Every decoder reads the same MSH containers, so the MSH weights (``--checkpoint | --pretrained``),
``--device`` and ``--batch-size`` are common arguments; a decoder adds its own options through its
:class:`Decoder` entry. Adding a decoder is one entry in :data:`DECODERS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from bench.codec.commands import add_codec_arguments
from bench.codec.files import bitstream_paths, codec_for_streams, decode_path


@dataclass(frozen=True)
class Decoder:
    """A named decoder: how it extends the ``decode`` parser and how it runs."""

    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    help: str = ""


def _run_msh(args: argparse.Namespace) -> int:
    codec = codec_for_streams(
        bitstream_paths(args.input), checkpoint=args.checkpoint, pretrained=args.pretrained, device=args.device
    )
    written = decode_path(codec, args.input, args.output, batch_size=args.batch_size)
    print(f"wrote {len(written)} MSH reconstruction(s) to {args.output}")
    return 0


DECODERS: dict[str, Decoder] = {
    "msh": Decoder(run=_run_msh, help="the codec's own synthesis transform g_s (MSE-optimised)"),
}


def _cmd_decode(args: argparse.Namespace) -> int:
    return DECODERS[args.decoder].run(args)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``decode`` with every decoder's options."""
    choices = ", ".join(f"{name} ({d.help})" if d.help else name for name, d in DECODERS.items())
    parser = subparsers.add_parser("decode", help="decode MSH bitstream files to PNG reconstructions")
    parser.add_argument("input", help="a .bin file or a folder of them")
    parser.add_argument("output", help="the PNG (or the folder for NAME.png files)")
    parser.add_argument("--decoder", required=True, choices=sorted(DECODERS), help=f"one of: {choices}")
    add_codec_arguments(parser)
    for decoder in DECODERS.values():
        decoder.add_arguments(parser)
    parser.set_defaults(func=_cmd_decode)
