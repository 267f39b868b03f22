"""Decode MSH bitstreams with the conditional diffusion decoder (``decode --decoder diffusion``).

The bitstream is entropy-decoded exactly as the MSH decoder does it (``bench.codec.decode_latent``),
so both decoders read the same ``y_hat``; the sampler, not the bitrate, picks the point. Per batch
of same-size images the conditioning (latent-decoder maps, MSH reconstruction when the decoder
reads it) is computed once and every seed is sampled in the same network calls.

Outputs, all written atomically, PNGs first and the record last:

- a file ``IN.bin`` → ``OUT.png`` and its record ``OUT.json`` beside it;
- a folder ``IN/`` → ``OUT/{image}.png`` and one ``OUT/decode_config.json`` for the folder.

With several seeds, ``OUT`` must contain ``{seed}`` and is formatted once per seed, e.g.
``work/kodak/q1/ddpm-k100-s{seed}`` writes one point folder per seed. The record holds the full
diffusers scheduler config, sampler, steps, eta, seed, clipping, the decoder and MSH checkpoints
(file sha256 and weights hashes), the bitstreams' sha256, device and code version, and the batching
(batch size, which images shared a batch, CPU threads and instruction set, :func:`batching_record`):
enough to redo the decode bit for bit on the same device.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from tqdm import tqdm

from bench.codec import (
    DecodedLatent,
    MSHCodec,
    bitstream_paths,
    codec_for_streams,
    decode_latent,
    synthesize_batch,
    unpad,
    write_png,
)
from bench.codec.files import read_stream
from bench.diffusion.model import Condition, DiffusionDecoder, load_decoder
from bench.diffusion.samplers import SamplingPlan, check_seeds, plan_sampling, sample_with_plan
from bench.images import shape_batches
from bench.points import Knobs
from bench.utils import BenchError, atomic_path, code_version, device_description, progress_options, sha256_file

FOLDER_RECORD = "decode_config.json"
SEED_FIELD = "{seed}"


@dataclass(frozen=True)
class DecodeJob:
    """What to decode: bitstreams in, one output location per seed, and whether it is a folder."""

    streams: list[Path]
    outputs: dict[int, Path]  # seed -> PNG file or folder
    folder: bool

    @property
    def seeds(self) -> list[int]:
        """The seeds, in the order given."""
        return list(self.outputs)

    def png(self, seed: int, stream: Path) -> Path:
        """The PNG written for ``stream`` with ``seed``."""
        out = self.outputs[seed]
        return out / f"{stream.stem}.png" if self.folder else out

    def record_path(self, seed: int) -> Path:
        """Where the JSON record of ``seed``'s outputs goes."""
        out = self.outputs[seed]
        return out / FOLDER_RECORD if self.folder else out.with_suffix(".json")


def seed_outputs(dst: str | os.PathLike, seeds: Sequence[int]) -> dict[int, Path]:
    """The output of each seed: ``dst`` with ``{seed}`` filled in."""
    return {seed: Path(str(dst).replace(SEED_FIELD, str(seed))) for seed in seeds}


def plan_job(src: str | os.PathLike, dst: str | os.PathLike, seeds: Sequence[int]) -> DecodeJob:
    """Resolve inputs and per-seed outputs; several seeds need ``{seed}`` in ``dst``."""
    seeds = check_seeds(seeds)
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"'seeds' repeat a seed: {seeds}")
    dst = str(dst)
    if len(seeds) > 1 and SEED_FIELD not in dst:
        raise BenchError(
            f"several seeds {seeds} need '{SEED_FIELD}' in the output path (e.g. out/ddpm-k100-s{{seed}}), got {dst}"
        )
    outputs = seed_outputs(dst, seeds)
    folder = Path(src).is_dir()
    if not folder and any(out.is_dir() for out in outputs.values()):
        raise BenchError(f"input {src} is one bitstream, so the output must be a PNG file path, not a folder ({dst})")
    return DecodeJob(streams=bitstream_paths(src), outputs=outputs, folder=folder)


def check_decoder_matches_codec(model: DiffusionDecoder, codec: MSHCodec, checkpoint: str | os.PathLike) -> None:
    """The decoder must have been trained on the latents of the codec that wrote the bitstreams; a
    checkpoint that does not record that codec's weights hash cannot show it and is refused."""
    trained_on = model.checkpoint_info.get("msh", {}).get("weights_hash")
    if trained_on is None:
        raise BenchError(
            f"decoder {checkpoint} records no MSH weights hash, so it cannot be matched to the bitstreams' codec "
            f"(weights {codec.weights_hash}); use a checkpoint written by `python -m bench train-decoder`"
        )
    if trained_on != codec.weights_hash:
        raise BenchError(
            f"decoder {checkpoint} was trained on MSH weights {trained_on}, but the bitstreams come from MSH weights "
            f"{codec.weights_hash} (quality {codec.quality}); use the decoder checkpoint of that codec"
        )


def inference_layout(model: DiffusionDecoder) -> DiffusionDecoder:
    """``model``, in place, in the memory layout that samples fastest on its device.

    CPU: channels-last weights (oneDNN's native convolution layout; the activations follow them):
    never slower than the contiguous model in the perf table's ablation row ``channels_last`` (its
    measured ratios are in the README, Performance), outputs within 1e-4 of the contiguous model's
    (``tests/test_perf.py``), i.e. about 0.1 % of 8-bit pixel values one level apart. CUDA: left as
    loaded (not measured yet).
    """
    if next(model.parameters()).device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


def compile_unet(model: DiffusionDecoder) -> DiffusionDecoder:
    """``model``, in place, with its UNet wrapped by ``torch.compile`` (the latent decoder runs once
    per image and is left eager). Compilation happens on the first call of each input shape: tens of
    seconds on a CPU, so it pays only over many steps (``python -m bench perf``, ablation ``compile``)."""
    model.unet = torch.compile(model.unet)
    return model


@dataclass(frozen=True)
class BatchSetup:
    """What a decode computes once per batch, before any sampler step."""

    msh: torch.Tensor | None  # [B, 3, Hp, Wp] MSH reconstruction in [0, 1], when the decode reads it
    x_msh: torch.Tensor | None  # the same in [-1, 1] (None at t0 = 0): the decoder's input / x0 base, the t0 start
    cond: Condition | None  # the decoder's conditioning; None at t0 = 0, where no step runs


def batch_setup(model: DiffusionDecoder, codec: MSHCodec, latents: Sequence[DecodedLatent], knobs: Knobs) -> BatchSetup:
    """The per-batch setup of :func:`decode_batch` (``python -m bench perf`` times it as ``setup_s``):
    the MSH reconstruction when the decoder reads it or a start level t0 < 1 noises it, then
    ``model.condition`` unless t0 = 0. Call it under ``torch.inference_mode``."""
    msh = None
    if model.config.needs_msh or knobs.t0 < 1.0:
        msh = torch.cat(synthesize_batch(codec, list(latents), padded=True))
    if knobs.t0 == 0.0:
        return BatchSetup(msh, None, None)
    x_msh = None if msh is None else msh * 2.0 - 1.0
    y_hat = torch.cat([latent.y_hat for latent in latents]).to(codec.device)
    return BatchSetup(msh, x_msh, model.condition(y_hat, x_msh))


def decode_batch(
    model: DiffusionDecoder, codec: MSHCodec, latents: Sequence[DecodedLatent], plan: SamplingPlan, seeds: Sequence[int]
) -> torch.Tensor:
    """Sample same-size latents for every seed: ``[B, S, 3, Hp, Wp]`` in [0, 1] at padded size.

    At start level t0 = 0 no step runs and the MSH reconstruction is returned as the MSH decoder
    makes it (same tensor, so the same PNG bytes).
    """
    with torch.inference_mode():
        setup = batch_setup(model, codec, latents, plan.knobs)
        if setup.cond is None:
            return setup.msh[:, None].expand(-1, len(seeds), -1, -1, -1)
        x0 = sample_with_plan(plan, model, setup.cond, seeds, x_start=setup.x_msh)
    return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)


def _record(
    sampling: dict[str, Any],
    model: DiffusionDecoder,
    decoder_checkpoint: Path,
    codec: MSHCodec,
    msh_source: str,
    streams: dict[Path, str],
) -> dict[str, Any]:
    """What a decode records beside its outputs, the same for every seed (the seed goes in front)."""
    info = model.checkpoint_info
    return {
        "sampling": sampling,
        "decoder_checkpoint": {
            "path": str(decoder_checkpoint),
            "sha256": sha256_file(decoder_checkpoint),
            **{k: info[k] for k in ("weights_hash", "step", "rho_effective", "msh", "code_version") if k in info},
            "config": model.config.to_dict(),
        },
        "msh": {"source": msh_source, "quality": codec.quality, "weights_hash": codec.weights_hash},
        "bitstreams": {path.name: digest for path, digest in streams.items()},
        "device": device_description(codec.device),
        "code_version": code_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }


def batching_record(streams: Sequence[Path], batches: Sequence[Sequence[int]], batch_size: int) -> dict[str, Any]:
    """What a sample depends on besides its seed and the files: the batch it was computed in and the
    CPU threads. A seed's sample differs at the rounding level (a few pixels by one 8-bit level)
    with the images batched beside it and with the thread count, so "the same decode bit for bit"
    needs these too."""
    return {
        "batch_size": batch_size,
        "batches": [[streams[i].name for i in indices] for indices in batches],
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


@dataclass(frozen=True)
class DiffusionDecode:
    """What a diffusion decode wrote, and the fields of its decode record (the same for every seed)."""

    written: list[Path]
    nfe: int  # network evaluations per image and reconstruction
    decoder_weights: str
    rho: float | None
    batch_size: int
    threads: int


def decode_diffusion(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    decoder_checkpoint: str | os.PathLike,
    msh_checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    sampler: str,
    steps: int,
    eta: float = 0.0,
    seeds: Sequence[int] = (0,),
    clip: bool = True,
    device: str = "auto",
    batch_size: int = 4,
    knobs: Knobs = Knobs(),
    compile_model: bool = False,
) -> DiffusionDecode:
    """Decode a ``.bin`` file (or a folder of them) with the diffusion decoder: the PNGs written and
    the record fields.

    Every argument and every container is checked before the first output is written.
    ``compile_model`` compiles the UNet (:func:`compile_unet`); the record says so.
    """
    if batch_size < 1:
        raise BenchError(f"'batch_size' must be >= 1, got {batch_size}")
    job = plan_job(src, dst, seeds)
    codec = codec_for_streams(job.streams, checkpoint=msh_checkpoint, pretrained=pretrained, device=device)
    decoder_checkpoint = Path(decoder_checkpoint)
    model = inference_layout(load_decoder(decoder_checkpoint, device=codec.device))
    check_decoder_matches_codec(model, codec, decoder_checkpoint)
    if compile_model:
        compile_unet(model)
    plan = plan_sampling(model, sampler=sampler, steps=steps, eta=eta, clip=clip, knobs=knobs)
    # entropy-decode (and so verify) every container before the first write
    latents = [decode_latent(codec, read_stream(path), source=str(path)) for path in job.streams]

    written: list[Path] = []
    with tqdm(total=len(latents), desc=f"diffusion {sampler}-{steps}", unit="img", **progress_options()) as bar:
        batches = list(shape_batches([tuple(latent.y_hat.shape) for latent in latents], batch_size))
        for indices in batches:
            images = decode_batch(model, codec, [latents[i] for i in indices], plan, job.seeds)
            for row, i in enumerate(indices):
                for col, seed in enumerate(job.seeds):
                    target = job.png(seed, job.streams[i])
                    written.append(write_png(unpad(images[row, col : col + 1], latents[i].padding), target))
            bar.update(len(indices))

    digests = {path: sha256_file(path) for path in job.streams}
    msh_source = "pretrained" if pretrained else str(msh_checkpoint)
    batching = batching_record(job.streams, batches, batch_size)
    sampling = plan.record()
    record = _record(sampling, model, decoder_checkpoint, codec, msh_source, digests)
    for seed in job.seeds:
        _write_json(
            job.record_path(seed),
            {"decoder": "diffusion", "seed": seed} | record | {"compiled": compile_model, "batching": batching},
        )
    return DiffusionDecode(
        written=written,
        nfe=sampling["network_evaluations"],
        decoder_weights=model.checkpoint_info["weights_hash"],
        rho=model.checkpoint_info.get("rho_effective"),
        batch_size=batching["batch_size"],
        threads=batching["threads"],
    )
