"""Decode performance: ``python -m bench perf`` times every decoder point and the speed-ups of the UNet call.

What one run measures, for each configured image size (``perf.sizes``) and batch size
(``perf.batch_sizes``), on the device the decode runs on:

- **MSH** (``msh``): the synthesis transform ``g_s`` from ``y_hat`` to the image.
- **Every diffusion point of the sampling grid** (``bench.points.grid_points``): the production
  decode path ``bench.diffusion.pipeline.decode_batch`` (MSH image when the decoder reads it,
  conditioning, the sampler loop with its progress bar, the final scaling), from ``y_hat`` to the
  image. Entropy decoding is the same for every point; it is its own column (``entropy_decode_s``).
- **One bare UNet forward** at the same size on the rows one network call of that point carries
  (``unet_s``, per image row): the batch, doubled under guidance (conditional and unconditional rows
  in one call) and times N under sample averaging, so that the *overhead ratio*
  ``s_per_image / (nfe × unet_s)`` says how much of a decode is not the network (conditioning,
  scheduler updates, noise, progress bar, Python), not how well the network batches.

Timing is wall-clock (``time.perf_counter``, CUDA synchronised), warm-up calls excluded, ``perf.repetitions``
repetitions; a row holds the median and the min/max over them. All times are per image (a batch
call's time ÷ batch). Inputs are a real image crop (Kodak from the mirror, else a generated one)
encoded and entropy-decoded by the MSH codec, repeated ``batch`` times.

**Truncated chains.** A 768×512 DDPM-50 on a CPU takes minutes per repetition. With
``perf.max_steps_timed = k`` a point with more network evaluations is timed as a *complete* decode
of the same sampler with ``k`` steps (the network and the scheduler update cost the same at every
timestep); its time per step is ``(chain − setup) / k`` with ``setup`` (MSH image + conditioning)
timed in the same repetitions, and the full decode time is ``setup + nfe × s_per_step``: such rows
say ``extrapolated = True`` and ``timed_steps = k``. The chain's other fixed costs (building the
scheduler, 2-3 ms on a CPU; the initial noise) are scaled with the steps, so extrapolation
overestimates by that much times ``nfe / k``.

**Peak memory per measurement.** CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``.
CPU: the RSS high-water mark (``VmHWM``) after resetting it through ``/proc/self/clear_refs`` (Linux),
i.e. the peak resident size of the whole process (weights and libraries included) during that
measurement; measurements run from the smallest size and batch up, because memory the allocator kept
from an earlier, larger one would count too. Where the reset is impossible the column falls back to
``ru_maxrss`` (process lifetime) and ``peak_mem_kind`` says so.

**FLOP/s.** The UNet's FLOPs are counted once per size (``torch.utils.flop_counter.FlopCounterMode``:
convolutions, matmuls, attention); ``achieved_tflops`` is ``nfe × flops × images / time`` over the
whole decode, ``peak_fraction`` divides it by the device's dense bf16 tensor-core peak
(:data:`PEAK_BF16_FLOPS`; NaN on CPUs and unknown GPUs, with a note). The decode runs in float32
unless a row's ablation says otherwise, so the fraction is against a peak it does not aim at.

**Speed-up comparison** (``perf.compare``): at each size and batch 1, one network call
``model(x_t, t, cond)`` (the unit every sampler step repeats) under each switch of :data:`VARIANTS`
against the plain call (the model as loaded), measured in the same run: ``speedup`` = plain time ÷
switch time and ``max_abs_diff`` = largest output difference from the plain call (0 = bit-identical).
The point rows run what ``decode`` runs, switches it made its default included
(``bench.diffusion.pipeline.inference_layout``: channels-last on the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from bench.codec import DecodedLatent, MSHCodec, decode_latent, encode, load_codec, synthesize_batch
from bench.config import config_hash, load_config
from bench.data import list_images, load_rgb, mirror_root
from bench.diffusion.latent_decoder import NUM_STAGES
from bench.diffusion.model import Condition, DiffusionDecoder, load_decoder
from bench.points import Knobs, Point, grid_points
from bench.utils import (
    BenchError,
    code_version,
    device_description,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    write_tables,
)


LATENT_UPSAMPLING = 2**NUM_STAGES  # y_hat is at 1/16 of the (padded) image size
INPUT_DATASET = "kodak"  # the image perf crops its inputs from, when the mirror holds it

# Dense (no sparsity) bf16 tensor-core peak of NVIDIA's datasheets, FLOP/s, matched in this order as
# a case-insensitive substring of torch.cuda.get_device_name (more specific names first:
# "NVIDIA H100 80GB HBM3" is the SXM part, "NVIDIA A100-SXM4-80GB" and "NVIDIA A100 80GB PCIe" share one peak).
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200 NVL", 835e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),
)


@dataclass(frozen=True)
class PerfSettings:
    """The config's ``perf`` section (see bench/schema.yaml for each key's meaning)."""

    sizes: tuple[tuple[int, int], ...]  # (height, width)
    batch_sizes: tuple[int, ...]
    repetitions: int
    warmup: int
    max_steps_timed: int | None
    compare: bool
    compare_threads: tuple[int, ...]
    compile: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PerfSettings:
        """From a validated config; sizes and batches sorted ascending (see the module doc on memory)."""
        section = config["perf"]
        return cls(
            sizes=tuple(sorted({(int(h), int(w)) for h, w in section["sizes"]}, key=lambda s: (s[0] * s[1], s))),
            batch_sizes=tuple(sorted(set(section["batch_sizes"]))),
            repetitions=int(section["repetitions"]),
            warmup=int(section["warmup"]),
            max_steps_timed=section["max_steps_timed"],
            compare=bool(section["compare"]),
            compare_threads=tuple(section["compare_threads"]),
            compile=bool(section["compile"]),
        )


# ---------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on the CPU), so a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: Sequence[Callable[[], object]], *, warmup: int, repetitions: int, device: torch.device
) -> list[list[float]]:
    """Seconds of each call of each of ``fns``, called in turn in every repetition after ``warmup`` untimed
    rounds; ``result[i][r]`` is ``fns[i]`` in repetition ``r``. Interleaving pairs measurements taken
    close in time, so a ratio of two of them survives a machine whose load drifts."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repetitions):
        for fn, seconds in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return times


def time_calls(fn: Callable[[], object], *, warmup: int, repetitions: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repetitions`` calls of ``fn`` after ``warmup`` untimed calls."""
    return time_interleaved([fn], warmup=warmup, repetitions=repetitions, device=device)[0]


# ---------------------------------------------------------------------------------------------- FLOPs


def peak_bf16_flops(device: torch.device) -> float:
    """The device's dense bf16 peak FLOP/s from :data:`PEAK_BF16_FLOPS`; NaN for CPUs and unknown GPUs."""
    if device.type != "cuda":
        return math.nan
    name = torch.cuda.get_device_name(device).lower()
    return next((flops for pattern, flops in PEAK_BF16_FLOPS if pattern.lower() in name), math.nan)


def peak_note(device: torch.device) -> str | None:
    """Why ``peak_fraction`` is NaN on ``device`` (None when the peak is known)."""
    if device.type != "cuda":
        return "no bf16 peak: not a GPU"
    if math.isnan(peak_bf16_flops(device)):
        return f"no bf16 peak: {torch.cuda.get_device_name(device)} is not in bench.perf.PEAK_BF16_FLOPS"
    return None


@dataclass(frozen=True)
class UNetInputs:
    """What one bare UNet forward takes: input channels, timestep embedding, conditioning maps."""

    x: torch.Tensor
    emb: torch.Tensor
    features: dict[int, torch.Tensor]


def unet_inputs(model: DiffusionDecoder, cond: Condition, t: torch.Tensor, generator: torch.Generator) -> UNetInputs:
    """Inputs of a bare UNet forward for the batch of ``cond`` at model times ``t``: the latent
    decoder's maps (time-conditioned or not) and random input channels, all computed up front."""
    unet = model.unet
    with torch.inference_mode():
        emb = unet.embed(t)
        maps = model.latent_decoder(cond.y_hat, emb if model.config.time_conditioned_latent_decoder else None)
        features = {level: maps[level] for level in unet.inject_levels}
        height, width = (LATENT_UPSAMPLING * n for n in cond.y_hat.shape[-2:])
        shape = (cond.y_hat.shape[0], unet.input_conv.in_channels, height, width)
        x = torch.randn(shape, generator=generator, device=generator.device).to(cond.y_hat.device)
    return UNetInputs(x, emb, features)


def unet_flops(model: DiffusionDecoder, inputs: UNetInputs) -> int:
    """FLOPs of one UNet forward on ``inputs`` (convolutions, matmuls and attention, as torch counts them)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.unet(inputs.x, inputs.emb, inputs.features)
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------- inputs


def synthetic_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic [1, 3, H, W] image in [0, 1]: colour gradients plus mild noise (texture for the codec)."""
    generator = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xx = torch.linspace(0, 1, width)[None, :].expand(height, width)
    base = torch.stack([xx, yy, (xx + yy) / 2])
    noise = 0.08 * torch.randn(3, height, width, generator=generator)
    return (base + noise).clamp(0, 1).unsqueeze(0)


def _centre_crop(pixels: np.ndarray, height: int, width: int) -> torch.Tensor:
    """The central ``height``×``width`` part of an HWC uint8 array as a [1, 3, H, W] tensor in [0, 1]."""
    top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    crop = pixels[top : top + height, left : left + width].copy()  # C-contiguous and writable
    return torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).float().div(255.0)


def input_image(height: int, width: int, *, image: str | Path | None = None,
                mirror: str | Path | None = None) -> tuple[torch.Tensor, str]:  # fmt: skip
    """A [1, 3, H, W] image in [0, 1] and where it came from: the centre crop of ``image`` (a BenchError
    when it is smaller), else of the first large-enough Kodak image of the mirror, else :func:`synthetic_image`."""
    if image is not None:
        pixels = load_rgb(image)
        if pixels.shape[0] < height or pixels.shape[1] < width:
            raise BenchError(f"--image {image} is {pixels.shape[1]}x{pixels.shape[0]}, smaller than the perf size "
                             f"{width}x{height}; give a larger image or smaller perf.sizes")  # fmt: skip
        return _centre_crop(pixels, height, width), f"{Path(image).name} centre crop"
    root = mirror_root(mirror)
    folder = root / INPUT_DATASET if root is not None else None
    if folder is not None and folder.is_dir():
        for path in list_images(folder):
            pixels = load_rgb(path)
            if pixels.shape[0] >= height and pixels.shape[1] >= width:
                return _centre_crop(pixels, height, width), f"{INPUT_DATASET}/{path.name} centre crop"
    return synthetic_image(height, width), "synthetic"


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class Context:
    """What every measurement of a run shares: the models, the settings, the device, clipping."""

    codec: MSHCodec
    model: DiffusionDecoder
    settings: PerfSettings
    device: torch.device
    clip: bool  # the config's sampling.clip_denoised

    def timed(self, fn: Callable[[], object], warmup: int | None = None) -> list[float]:
        """:func:`time_calls` with the run's warm-up and repetitions."""
        return time_calls(fn, warmup=self.settings.warmup if warmup is None else warmup,
                          repetitions=self.settings.repetitions, device=self.device)  # fmt: skip

    def timed_together(self, *fns: Callable[[], object]) -> list[list[float]]:
        """:func:`time_interleaved` with the run's warm-up and repetitions."""
        return time_interleaved(fns, warmup=self.settings.warmup, repetitions=self.settings.repetitions,
                                device=self.device)  # fmt: skip


@dataclass(frozen=True)
class SizeInputs:
    """One size's inputs: the decoded latent, where its image came from, and per-size costs."""

    height: int
    width: int
    latent: DecodedLatent
    source: str
    entropy_decode_s: float  # median seconds to entropy-decode the container
    unet_flops: int  # one UNet forward on one image of this size

    @property
    def columns(self) -> dict[str, Any]:
        return {"size": f"{self.width}x{self.height}", "height": self.height, "width": self.width,
                "input": self.source, "entropy_decode_s": self.entropy_decode_s}  # fmt: skip


def prepare_size(ctx: Context, height: int, width: int, image: str | Path | None, mirror: str | Path | None) -> SizeInputs:
    """Encode the input crop, time its entropy decoding and count the UNet's FLOPs at this size."""
    if height % 64 or width % 64:
        raise BenchError(f"perf size {width}x{height}: height and width must be multiples of 64 (no padding)")
    x, source = input_image(height, width, image=image, mirror=mirror)
    blob = encode(ctx.codec, x)[0]
    times = ctx.timed(lambda: decode_latent(ctx.codec, blob))
    latent = decode_latent(ctx.codec, blob)
    cond = _conditioning(ctx, [latent])
    t = torch.zeros(1, dtype=torch.long, device=ctx.device)
    inputs = unet_inputs(ctx.model, cond, t, torch.Generator().manual_seed(0))
    return SizeInputs(height, width, latent, source, statistics.median(times), unet_flops(ctx.model, inputs))


def _conditioning(ctx: Context, latents: Sequence[DecodedLatent], knobs: Knobs | None = None) -> Condition | None:
    """The decode's per-batch setup for ``knobs`` (default: the plain sampler, whose conditioning is
    never None): ``bench.diffusion.pipeline.batch_setup``, the part of ``decode_batch`` before its steps."""
    from bench.diffusion.pipeline import batch_setup  # imports diffusers only when used

    with torch.inference_mode():
        return batch_setup(ctx.model, ctx.codec, latents, knobs or Knobs()).cond


def _spread(per_image: Sequence[float]) -> dict[str, float]:
    return {"s_per_image": statistics.median(per_image), "s_per_image_min": min(per_image),
            "s_per_image_max": max(per_image)}  # fmt: skip


def _flop_columns(ctx: Context, size: SizeInputs, nfe: int, s_per_image: float) -> dict[str, Any]:
    peak = peak_bf16_flops(ctx.device)
    achieved = nfe * size.unet_flops / s_per_image if nfe else math.nan
    return {
        "unet_gflop_per_image": size.unet_flops / 1e9,
        "achieved_tflops": achieved / 1e12,
        "peak_bf16_tflops": peak / 1e12,
        "peak_fraction": achieved / peak,
    }


def measure_msh(ctx: Context, size: SizeInputs, batch: int) -> dict[str, Any]:
    """The MSH row: ``g_s`` on ``batch`` copies of the latent."""
    latents = [size.latent] * batch
    kind = reset_peak_memory(ctx.device)
    times = ctx.timed(lambda: synthesize_batch(ctx.codec, latents, padded=True))
    per_image = [t / batch for t in times]
    row = {**Point("msh").columns(), "batch": batch, "nfe": 0, "timed_steps": 0, "extrapolated": False,
           **_spread(per_image), "setup_s": statistics.median(per_image)}  # fmt: skip
    return row | {"peak_mem_mb": peak_memory_mb(ctx.device, kind), "peak_mem_kind": kind}


def unet_forward(ctx: Context, size: SizeInputs, batch: int) -> Callable[[], torch.Tensor]:
    """One bare UNet forward on ``batch`` images of this size at model time T/2 (the overhead ratio's unit)."""
    cond = _conditioning(ctx, [size.latent] * batch)
    t = torch.full((batch,), ctx.model.config.train_timesteps // 2, dtype=torch.long, device=ctx.device)
    inputs = unet_inputs(ctx.model, cond, t, torch.Generator().manual_seed(0))

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return ctx.model.unet(inputs.x, inputs.emb, inputs.features)

    return forward


def measure_point(ctx: Context, size: SizeInputs, point: Point, batch: int) -> dict[str, Any]:
    """A diffusion point's row: the production decode of ``batch`` copies of the latent (truncated
    and extrapolated when its NFE exceeds ``max_steps_timed``, see the module doc), with its setup
    and a bare UNet forward timed in the same repetitions."""
    from bench.diffusion.pipeline import decode_batch  # imports diffusers only when used
    from bench.diffusion.samplers import SamplingPlan, plan_sampling

    knobs = point.knobs

    def plan(steps: int) -> SamplingPlan:
        return plan_sampling(ctx.model, sampler=point.sampler, steps=steps, eta=point.eta or 0.0, clip=ctx.clip,
                             knobs=knobs)  # fmt: skip

    def steps_run(plan: SamplingPlan) -> int:
        """Scheduler steps a decode runs: the chain from the start level t0 down."""
        return plan.record()["steps_run"]

    full_plan = plan(point.steps)
    nfe, full_steps = full_plan.record()["network_evaluations"], steps_run(full_plan)
    limit = ctx.settings.max_steps_timed
    timed_plan = plan(limit) if limit is not None and full_steps > limit else full_plan
    timed_nfe = steps_run(timed_plan)
    latents = [size.latent] * batch
    # the rows of one network call: guidance and averaging batch 2x and N x the images
    rows = batch * knobs.evaluations_per_step * knobs.n_avg
    kind = reset_peak_memory(ctx.device)
    setups, chains, unets = ctx.timed_together(
        lambda: _conditioning(ctx, latents, knobs),
        lambda: decode_batch(ctx.model, ctx.codec, latents, timed_plan, [point.seed]),
        unet_forward(ctx, size, rows),
    )
    memory = peak_memory_mb(ctx.device, kind)
    # a step with guidance or averaging is several network evaluations; "per step" is the scheduler step
    per_step = [max(chain - setup, 0.0) / max(timed_nfe, 1) / batch for chain, setup in zip(chains, setups, strict=True)]
    per_image = [setup / batch + full_steps * step for setup, step in zip(setups, per_step, strict=True)]
    overhead = [full / (nfe * unet / rows) if nfe else math.nan for full, unet in zip(per_image, unets, strict=True)]
    spread = _spread(per_image)
    return {
        **point.columns(), "batch": batch, "nfe": nfe, "timed_steps": timed_nfe, "extrapolated": timed_nfe < full_steps,
        **spread, "s_per_step": statistics.median(per_step), "s_per_step_min": min(per_step),
        "s_per_step_max": max(per_step), "setup_s": statistics.median(setups) / batch,
        "unet_s": statistics.median(unets) / rows, "overhead_ratio": statistics.median(overhead),
        **_flop_columns(ctx, size, nfe, spread["s_per_image"]), "peak_mem_mb": memory, "peak_mem_kind": kind,
    }  # fmt: skip


def flag_best_batch(rows: pd.DataFrame) -> pd.DataFrame:
    """``images_per_s`` of every row and ``best_batch`` True on the fastest batch of each (size, point)."""
    rows = rows.assign(images_per_s=1.0 / rows["s_per_image"])
    best = rows.groupby(["size", "point"], sort=False)["images_per_s"].transform("max")
    return rows.assign(best_batch=rows["images_per_s"] == best)


# ---------------------------------------------------------------------------------------------- speed-ups


@dataclass(frozen=True)
class StepInputs:
    """One network call of a sampler step: ``model(x_t, t, cond)``."""

    x_t: torch.Tensor
    t: torch.Tensor
    cond: Condition


Call = Callable[[], torch.Tensor]


def _in_mode(mode: Callable[[], contextlib.AbstractContextManager], model: Callable, inputs: StepInputs) -> Call:
    def call() -> torch.Tensor:
        with mode():
            return model(inputs.x_t, inputs.t, inputs.cond)

    return call


@contextlib.contextmanager
def _plain(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
    """The model as loaded: inference mode, float32, contiguous tensors, cached conditioning maps."""
    yield _in_mode(torch.inference_mode, model, inputs)


@contextlib.contextmanager
def _no_grad(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
    """``torch.no_grad`` instead of ``torch.inference_mode`` (version counters and views tracked)."""
    yield _in_mode(torch.no_grad, model, inputs)


@contextlib.contextmanager
def _channels_last(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
    """Channels-last (NHWC) weights, as ``inference_layout`` sets them on the CPU: the convolutions then
    produce channels-last activations from the first layer on, whatever the inputs' layout."""
    model.to(memory_format=torch.channels_last)
    try:
        yield _in_mode(torch.inference_mode, model, inputs)
    finally:
        model.to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def _bf16_autocast(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
    """bf16 autocast (tensor cores), output cast back to float32."""
    device_type = inputs.x_t.device.type

    def call() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16):
            return model(inputs.x_t, inputs.t, inputs.cond).float()

    yield call


@contextlib.contextmanager
def _compiled(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
    """The UNet compiled as ``decode --compile`` does (compilation happens in the warm-up calls, not timed)."""
    from bench.diffusion.pipeline import compile_unet  # imports diffusers only when used

    eager = model.unet
    compile_unet(model)
    try:
        yield _in_mode(torch.inference_mode, model, inputs)
    finally:
        model.unet = eager


@contextlib.contextmanager
def _condition_per_step(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
    """The latent decoder's maps recomputed at every call instead of once per image."""
    yield _in_mode(torch.inference_mode, model, dataclasses.replace(inputs, cond=dataclasses.replace(inputs.cond, features=None)))


def _threads(count: int) -> Callable[[DiffusionDecoder, StepInputs], contextlib.AbstractContextManager[Call]]:
    @contextlib.contextmanager
    def variant(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
        previous = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield _in_mode(torch.inference_mode, model, inputs)
        finally:
            torch.set_num_threads(previous)

    return variant


@dataclass(frozen=True)
class Variant:
    """A switch compared against the plain network call; ``unavailable`` says why it cannot run here."""

    name: str
    make: Callable[[DiffusionDecoder, StepInputs], contextlib.AbstractContextManager[Call]]
    unavailable: Callable[[torch.device, DiffusionDecoder], str | None] = lambda device, model: None


VARIANTS: tuple[Variant, ...] = (
    Variant("plain", _plain),
    Variant("no_grad", _no_grad),
    Variant("channels_last", _channels_last),
    Variant("bf16_autocast", _bf16_autocast, lambda device, model: None if device.type == "cuda" else "CUDA only"),
    Variant("condition_per_step", _condition_per_step,
            lambda device, model: "the latent decoder is time-conditioned: its maps are recomputed every step anyway"
            if model.config.time_conditioned_latent_decoder else None),
    Variant("compile", _compiled),
)  # fmt: skip


def comparison_variants(settings: PerfSettings) -> list[Variant]:
    """The switches a run compares: :data:`VARIANTS` (compile only when asked) and the thread counts."""
    variants = [v for v in VARIANTS if v.name != "compile" or settings.compile]
    return variants + [Variant(f"threads={n}", _threads(n)) for n in settings.compare_threads]


def step_inputs(ctx: Context, size: SizeInputs, batch: int = 1) -> StepInputs:
    """A mid-chain network call on ``batch`` copies of the image: noise at model time T/2 and its conditioning."""
    cond = _conditioning(ctx, [size.latent] * batch)
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(batch, 3, size.height, size.width, generator=generator).to(ctx.device)
    t = torch.full((batch,), ctx.model.config.train_timesteps // 2, dtype=torch.long, device=ctx.device)
    return StepInputs(x_t, t, cond)


def time_variant(ctx: Context, variant: Variant, inputs: StepInputs, reference: torch.Tensor) -> dict[str, Any]:
    """Time one switch's network call: warm-up (compilation included) apart, then the repetitions."""
    kind = reset_peak_memory(ctx.device)
    with variant.make(ctx.model, inputs) as call:
        threads = torch.get_num_threads()
        start = time.perf_counter()
        for _ in range(max(ctx.settings.warmup, 1)):
            output = call()
        synchronize(ctx.device)
        warmup_s = time.perf_counter() - start
        times = ctx.timed(call, warmup=0)
    return {
        "s_per_step": statistics.median(times), "s_per_step_min": min(times), "s_per_step_max": max(times),
        "max_abs_diff": float((output.float() - reference).abs().max()), "warmup_s": warmup_s,
        "peak_mem_mb": peak_memory_mb(ctx.device, kind), "peak_mem_kind": kind, "threads": threads,
    }  # fmt: skip


def compare_variants(ctx: Context, size: SizeInputs, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    """One row per switch (the first is ``plain``): time per network call, speed-up over the plain
    call, output difference. A switch that cannot run here, or whose compilation fails, is a row
    with a note rather than a lost table.

    The plain call is the model as loaded (contiguous weights), so a switch that the decode path has
    made its default (``bench.diffusion.pipeline.inference_layout``) shows its before/after here too.
    """
    ctx.model.to(memory_format=torch.contiguous_format)
    inputs = step_inputs(ctx, size)
    with _plain(ctx.model, inputs) as call:
        reference = call()
    rows, plain_s = [], math.nan
    for variant in variants:
        row: dict[str, Any] = {"decoder": "diffusion", "ablation": variant.name, "batch": 1}
        if (reason := variant.unavailable(ctx.device, ctx.model)) is not None:
            rows.append(row | {"note": f"skipped: {reason}"})
            continue
        try:
            measured = time_variant(ctx, variant, inputs, reference)
        except torch._dynamo.exc.TorchDynamoException as err:  # torch.compile: no compiler, unsupported op…
            rows.append(row | {"note": f"failed: {type(err).__name__}: {str(err).strip().splitlines()[0]}"})
            continue
        plain_s = measured["s_per_step"] if variant.name == "plain" else plain_s
        rows.append(row | measured | {"speedup": plain_s / measured["s_per_step"]})
    return rows


# ---------------------------------------------------------------------------------------------- the table

COLUMNS: tuple[str, ...] = (
    "size", "height", "width", "point", "decoder", "sampler", "steps", "eta", "seed", "ablation", "batch", "nfe",
    "timed_steps", "extrapolated", "s_per_image", "s_per_image_min", "s_per_image_max", "s_per_step",
    "s_per_step_min", "s_per_step_max", "setup_s", "unet_s", "overhead_ratio", "images_per_s", "best_batch",
    "speedup", "max_abs_diff", "warmup_s", "peak_mem_mb", "peak_mem_kind", "unet_gflop_per_image",
    "achieved_tflops", "peak_bf16_tflops", "peak_fraction", "entropy_decode_s", "repetitions", "warmup", "threads",
    "input", "device", "torch", "code_version", "config_hash", "msh_weights", "decoder_weights", "note",
)  # fmt: skip


def measure_all(ctx: Context, points: Sequence[Point], *, image: str | Path | None = None,
                mirror: str | Path | None = None) -> pd.DataFrame:  # fmt: skip
    """Every row of the perf table: MSH and ``points`` at every size and batch, then the speed-up comparison."""
    settings = ctx.settings
    sizes = [prepare_size(ctx, h, w, image, mirror) for h, w in settings.sizes]
    rows: list[dict[str, Any]] = []
    total = len(sizes) * len(settings.batch_sizes) * (len(points) + 1)
    with tqdm(total=total, desc="perf", unit="point") as bar:
        for size in sizes:
            for batch in settings.batch_sizes:
                rows.append(size.columns | measure_msh(ctx, size, batch))
                bar.update()
                for point in points:
                    bar.set_postfix_str(f"{size.columns['size']} b{batch} {point.id}")
                    rows.append(size.columns | measure_point(ctx, size, point, batch))
                    bar.update()
    table = flag_best_batch(pd.DataFrame(rows)).assign(threads=torch.get_num_threads(), note=peak_note(ctx.device))
    if settings.compare:
        variants = comparison_variants(settings)
        compared = [size.columns | row for size in sizes for row in compare_variants(ctx, size, variants)]
        table = pd.concat([table, pd.DataFrame(compared)], ignore_index=True)
    return table


def run_perf(
    config_path: str | Path,
    *,
    quality: int,
    msh_checkpoint: str | Path,
    decoder_checkpoint: str | Path,
    device: str | None = None,
    image: str | Path | None = None,
    mirror: str | Path | None = None,
    compile_model: bool | None = None,
) -> pd.DataFrame:
    """The perf table of a config's decoder points for the MSH codec at ``quality`` and its decoder.

    ``device`` defaults to the config's; ``image`` (cropped to each size) to the mirror's Kodak, else
    a generated image; ``compile_model`` overrides ``perf.compile``.
    """
    from bench.diffusion.pipeline import check_decoder_matches_codec, inference_layout  # imports diffusers when used

    config = load_config(config_path)
    settings = PerfSettings.from_config(config)
    if compile_model is not None:
        settings = dataclasses.replace(settings, compile=compile_model)
    torch_device = resolve_device(device or config["device"])
    codec = load_codec(quality, checkpoint=msh_checkpoint, device=torch_device)
    model = inference_layout(load_decoder(decoder_checkpoint, device=torch_device))  # as `decode` runs it
    check_decoder_matches_codec(model, codec, decoder_checkpoint)
    ctx = Context(codec, model, settings, torch_device, clip=bool(config["sampling"]["clip_denoised"]))
    table = measure_all(ctx, grid_points(config["sampling"]), image=image, mirror=mirror or config["data_mirror"])
    table = table.assign(
        repetitions=settings.repetitions, warmup=settings.warmup, device=device_description(torch_device),
        torch=torch.__version__, code_version=code_version(), config_hash=config_hash(config),
        msh_weights=codec.weights_hash, decoder_weights=model.checkpoint_info["weights_hash"],
    )  # fmt: skip
    return table.reindex(columns=[c for c in COLUMNS if c in table.columns] + [c for c in table.columns if c not in COLUMNS])


def _cmd_perf(args: argparse.Namespace) -> int:
    table = run_perf(
        args.config, quality=args.quality, msh_checkpoint=args.checkpoint, decoder_checkpoint=args.decoder_checkpoint,
        device=args.device, image=args.image, mirror=args.mirror, compile_model=args.compile,
    )  # fmt: skip
    write_tables({args.out: table})
    print(f"{len(table)} rows -> {args.out}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``perf``."""
    parser = subparsers.add_parser("perf", help="decode time, memory and FLOP/s of MSH and every sampler point")
    parser.add_argument("--config", required=True, help="config file (its perf and sampling sections)")
    parser.add_argument("--quality", type=int, required=True, help="MSH quality of the checkpoints")
    parser.add_argument("--checkpoint", required=True, help="MSH checkpoint (models/msh/qQ.pt)")
    parser.add_argument("--decoder-checkpoint", required=True, help="diffusion decoder checkpoint (models/decoder/qQ.pt)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the config's device")
    parser.add_argument("--image", help="image cropped to each size (default: Kodak from the mirror, else generated)")
    parser.add_argument("--mirror", help="dataset mirror holding kodak/ (default: $BENCH_DATA_MIRROR or data_mirror)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compare torch.compile of the UNet too (default: the config's perf.compile)")
    parser.add_argument("--out", required=True, metavar="CSV", help="results/perf.csv")
    parser.set_defaults(func=_cmd_perf)
