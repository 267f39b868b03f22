"""``python -m bench decode IN OUT --decoder NAME``: turn bitstreams into reconstructions.

Every decoder reads the same MSH containers, so the MSH weights (``--checkpoint | --pretrained``),
``--device`` and ``--batch-size`` are common arguments; a decoder adds its own options through its
:class:`Decoder` entry. Adding a decoder is one entry in :data:`DECODERS`. With ``--record`` the run
writes its :class:`~bench.decode_record.DecodeRecord` (what the results tables read).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.codec.checkpoints import load_checkpoint, weights_label, zoo_origin
from bench.codec.files import bitstream_paths, codec_for_streams, decode_path, read_header
from bench.commands.codec import add_codec_arguments
from bench.decode_record import DecodeRecord
from bench.points import KNOB_DEFAULTS, Knobs, parse_point
from bench.sampler_facts import SAMPLER_NAMES
from bench.utils import (
    BenchError,
    cpu_numerics,
    device_description,
    output_lock,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
)


@dataclass(frozen=True)
class Decoder:
    """A named decoder: how it extends the ``decode`` parser, how it runs (returning its own fields of
    the decode record), and what it writes (the outputs a run locks)."""

    run: Callable[[argparse.Namespace], dict[str, Any]]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    help: str = ""
    outputs: Callable[[argparse.Namespace], list[Path]] = lambda args: [Path(args.output)]
    resolve: Callable[[argparse.Namespace], None] = lambda args: None  # fills and checks its own flags first


def _run_msh(args: argparse.Namespace) -> dict[str, Any]:
    codec = codec_for_streams(
        bitstream_paths(args.input), checkpoint=args.checkpoint, pretrained=args.pretrained, device=args.device
    )
    written = decode_path(codec, args.input, args.output, batch_size=args.batch_size)
    print(f"wrote {len(written)} MSH reconstruction(s) to {args.output}")
    return {}


def _add_diffusion_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--decoder diffusion")
    group.add_argument("--decoder-checkpoint", help="diffusion decoder checkpoint (from train-decoder)")
    group.add_argument(
        "--point",
        metavar="ID",
        help="a diffusion point id (bench/points.py), e.g. ddim-k10-eta0-s0 or ddpm-k50-t0.4-s1: "
        "sets --sampler, --steps, --eta, --t0, --guidance, --n-avg and --seed (the workflow's form)",
    )
    group.add_argument("--sampler", choices=sorted(SAMPLER_NAMES), help="a sampler of bench.sampler_facts")
    group.add_argument("--steps", type=int, help="sampling steps K (network evaluations per sample)")
    group.add_argument("--eta", type=float, help="DDIM eta in [0, 1] (default 0: deterministic)")
    group.add_argument(
        "--seed",
        "--seeds",
        dest="seeds",
        type=int,
        nargs="+",
        help="one sample per seed (default 0); several seeds need {seed} in OUTPUT",
    )
    group.add_argument(
        "--t0",
        type=float,
        help="start level in [0, 1]: noise the MSH output to t0 and sample from there (default 1: "
        "the full chain; 0: the MSH output itself)",
    )
    group.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale w >= 0 (default 1: the conditional model; others "
        "cost two evaluations per step)",
    )
    group.add_argument(
        "--n-avg", type=int, help="average N independent samples per seed into one reconstruction (default 1)"
    )
    group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the UNet (default off: compiling costs tens of seconds per input "
        "shape; `python -m bench perf` says whether it pays on your device)",
    )
    group.add_argument(
        "--clip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="clamp the x0 estimate to [-1, 1] at every step (default: on, as the paper)",
    )


# The sampler settings a point id holds, and their defaults when neither the id nor a flag sets them.
POINT_SETTINGS: dict[str, Any] = {"sampler": None, "steps": None, "eta": 0.0, **KNOB_DEFAULTS, "seeds": [0]}


def _resolve_diffusion(args: argparse.Namespace) -> None:
    """Fill the sampler settings from ``--point`` (then no setting flag may be given) or the defaults,
    and require what has none."""
    given = [name for name in POINT_SETTINGS if getattr(args, name) is not None]
    if args.point is not None:
        if given:
            flags = ", ".join(f"--{'seed' if name == 'seeds' else name.replace('_', '-')}" for name in given)
            raise BenchError(f"--point {args.point} sets the sampler settings; drop {flags}")
        point = parse_point(args.point)
        if point.decoder != "diffusion":
            raise BenchError(f"--point {args.point} is not a diffusion point (e.g. ddim-k10-eta0-s0)")
        settings = {
            "sampler": point.sampler,
            "steps": point.steps,
            "eta": point.eta,
            "t0": point.t0,
            "guidance": point.guidance,
            "n_avg": point.n_avg,
            "seeds": [point.seed],
        }
        for name, value in settings.items():
            setattr(args, name, value)
    for name, default in POINT_SETTINGS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    for flag in ("decoder_checkpoint", "sampler", "steps"):
        if getattr(args, flag) is None:
            raise BenchError(f"--decoder diffusion needs --{flag.replace('_', '-')} (or --point for the sampler)")


def _run_diffusion(args: argparse.Namespace) -> dict[str, Any]:
    from bench.diffusion import decode_diffusion  # imports diffusers only when used

    result = decode_diffusion(
        args.input,
        args.output,
        decoder_checkpoint=args.decoder_checkpoint,
        msh_checkpoint=args.checkpoint,
        pretrained=args.pretrained,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        seeds=args.seeds,
        clip=args.clip,
        device=args.device,
        batch_size=args.batch_size,
        knobs=Knobs(t0=args.t0, guidance=args.guidance, n_avg=args.n_avg),
        compile_model=args.compile,
    )
    print(f"wrote {len(result.written)} diffusion reconstruction(s) to {args.output}")
    return {
        "nfe": result.nfe,
        "decoder_weights": result.decoder_weights,
        "rho": result.rho,
        "batch_size": result.batch_size,
        "threads": result.threads,
    }


def _diffusion_outputs(args: argparse.Namespace) -> list[Path]:
    from bench.diffusion import seed_outputs

    return list(seed_outputs(args.output, args.seeds).values())


DECODERS: dict[str, Decoder] = {
    "msh": Decoder(run=_run_msh, help="the codec's own synthesis transform g_s (MSE-optimised)"),
    "diffusion": Decoder(
        run=_run_diffusion,
        add_arguments=_add_diffusion_arguments,
        help="the conditional diffusion decoder, sampled at --point (or --sampler/--steps/--eta/--seed ...)",
        outputs=_diffusion_outputs,
        resolve=_resolve_diffusion,
    ),
}


def decode_record(args: argparse.Namespace, seconds: float, memory_kind: str, fields: dict[str, Any]) -> DecodeRecord:
    """The run's record: wall time per image (model loading included), peak memory since the command
    started (``memory_kind`` from :func:`reset_peak_memory`), the MSH weights of the bitstreams (the
    hash in their headers, with the zoo file it came from), and the decoder's own ``fields``."""
    streams = bitstream_paths(args.input)
    header = read_header(streams[0])
    meta = zoo_origin(header.quality) if args.pretrained else load_checkpoint(args.checkpoint)[1]
    device = resolve_device(args.device)
    return DecodeRecord(
        decoder=args.decoder,
        n_images=len(streams),
        seconds=seconds,
        decode_s_per_image=seconds / len(streams),
        peak_mem_mb=peak_memory_mb(device, memory_kind),
        msh_weights=weights_label(header.weights_hash, meta),
        device=device_description(device),
        cpu_numerics=cpu_numerics(),
        **fields,
    )


def _cmd_decode(args: argparse.Namespace) -> int:
    """Run the decoder holding the lock of every output (in sorted order, so two decodes with
    overlapping outputs cannot each hold a part): a second decode into a held output stops at once."""
    start = time.perf_counter()
    memory_kind = reset_peak_memory(resolve_device(args.device))
    decoder = DECODERS[args.decoder]
    decoder.resolve(args)
    with contextlib.ExitStack() as locks:
        for output in sorted(set(decoder.outputs(args))):
            locks.enter_context(output_lock(output, "decode"))
        fields = decoder.run(args)
        if args.record:
            decode_record(args, time.perf_counter() - start, memory_kind, fields).write(args.record)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``decode`` with every decoder's options."""
    choices = ", ".join(f"{name} ({d.help})" if d.help else name for name, d in DECODERS.items())
    parser = subparsers.add_parser("decode", help="decode MSH bitstream files to PNG reconstructions")
    parser.add_argument("input", help="a .bin file or a folder of them")
    parser.add_argument("output", help="the PNG (or the folder for NAME.png files)")
    parser.add_argument("--decoder", required=True, choices=sorted(DECODERS), help=f"one of: {choices}")
    parser.add_argument(
        "--record", metavar="JSON", help="write the decode's wall time per image, peak memory and MSH weights hash here"
    )
    add_codec_arguments(parser)
    for decoder in DECODERS.values():
        decoder.add_arguments(parser)
    parser.set_defaults(func=_cmd_decode)
