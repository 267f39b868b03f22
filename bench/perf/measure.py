"""The rows of the perf table: MSH and every decoder point at one size and batch."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.codec import DecodedLatent, MSHCodec, decode_latent, encode, synthesize_batch
from bench.diffusion import Condition, DiffusionDecoder
from bench.perf.flops import peak_bf16_flops, unet_flops, unet_inputs
from bench.perf.inputs import input_image
from bench.perf.settings import PerfSettings
from bench.perf.timing import time_calls, time_interleaved
from bench.points import Knobs, Point
from bench.utils import (
    BenchError,
    peak_memory_mb,
    reset_peak_memory,
)


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
        return time_calls(
            fn,
            warmup=self.settings.warmup if warmup is None else warmup,
            repetitions=self.settings.repetitions,
            device=self.device,
        )

    def timed_together(self, *fns: Callable[[], object]) -> list[list[float]]:
        """:func:`time_interleaved` with the run's warm-up and repetitions."""
        return time_interleaved(
            fns, warmup=self.settings.warmup, repetitions=self.settings.repetitions, device=self.device
        )


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
        return {
            "size": f"{self.width}x{self.height}",
            "height": self.height,
            "width": self.width,
            "input": self.source,
            "entropy_decode_s": self.entropy_decode_s,
        }


def prepare_size(
    ctx: Context, height: int, width: int, image: str | Path | None, mirror: str | Path | None
) -> SizeInputs:
    """Encode the input crop, time its entropy decoding and count the UNet's FLOPs at this size."""
    if height % 64 or width % 64:
        raise BenchError(f"perf size {width}x{height}: height and width must be multiples of 64 (no padding)")
    x, source = input_image(height, width, image=image, mirror=mirror)
    blob = encode(ctx.codec, x)[0]
    times = ctx.timed(lambda: decode_latent(ctx.codec, blob))
    latent = decode_latent(ctx.codec, blob)
    cond = conditioning(ctx, [latent])
    t = torch.zeros(1, dtype=torch.long, device=ctx.device)
    inputs = unet_inputs(ctx.model, cond, t, torch.Generator().manual_seed(0))
    return SizeInputs(height, width, latent, source, statistics.median(times), unet_flops(ctx.model, inputs))


def conditioning(ctx: Context, latents: Sequence[DecodedLatent], knobs: Knobs | None = None) -> Condition | None:
    """The decode's per-batch setup for ``knobs`` (default: the plain sampler, whose conditioning is
    never None): ``bench.diffusion.pipeline.batch_setup``, the part of ``decode_batch`` before its steps."""
    from bench.diffusion import batch_setup  # imports diffusers only when used

    with torch.inference_mode():
        return batch_setup(ctx.model, ctx.codec, latents, knobs or Knobs()).cond


def _spread(per_image: Sequence[float]) -> dict[str, float]:
    return {
        "s_per_image": statistics.median(per_image),
        "s_per_image_min": min(per_image),
        "s_per_image_max": max(per_image),
    }


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
    row = {
        **Point("msh").columns(),
        "batch": batch,
        "nfe": 0,
        "timed_steps": 0,
        "extrapolated": False,
        **_spread(per_image),
        "setup_s": statistics.median(per_image),
    }
    return row | {"peak_mem_mb": peak_memory_mb(ctx.device, kind), "peak_mem_kind": kind}


def unet_forward(ctx: Context, size: SizeInputs, batch: int) -> Callable[[], torch.Tensor]:
    """One bare UNet forward on ``batch`` images of this size at model time T/2 (the overhead ratio's unit)."""
    cond = conditioning(ctx, [size.latent] * batch)
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
    from bench.diffusion import (
        SamplingPlan,
        decode_batch,  # imports diffusers only when used
        plan_sampling,
    )

    knobs = point.knobs

    def plan(steps: int) -> SamplingPlan:
        return plan_sampling(
            ctx.model, sampler=point.sampler, steps=steps, eta=point.eta or 0.0, clip=ctx.clip, knobs=knobs
        )

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
        lambda: conditioning(ctx, latents, knobs),
        lambda: decode_batch(ctx.model, ctx.codec, latents, timed_plan, [point.seed]),
        unet_forward(ctx, size, rows),
    )
    memory = peak_memory_mb(ctx.device, kind)
    # a step with guidance or averaging is several network evaluations; "per step" is the scheduler step
    per_step = [
        max(chain - setup, 0.0) / max(timed_nfe, 1) / batch for chain, setup in zip(chains, setups, strict=True)
    ]
    per_image = [setup / batch + full_steps * step for setup, step in zip(setups, per_step, strict=True)]
    overhead = [full / (nfe * unet / rows) if nfe else math.nan for full, unet in zip(per_image, unets, strict=True)]
    spread = _spread(per_image)
    return {
        **point.columns(),
        "batch": batch,
        "nfe": nfe,
        "timed_steps": timed_nfe,
        "extrapolated": timed_nfe < full_steps,
        **spread,
        "s_per_step": statistics.median(per_step),
        "s_per_step_min": min(per_step),
        "s_per_step_max": max(per_step),
        "setup_s": statistics.median(setups) / batch,
        "unet_s": statistics.median(unets) / rows,
        "overhead_ratio": statistics.median(overhead),
        **_flop_columns(ctx, size, nfe, spread["s_per_image"]),
        "peak_mem_mb": memory,
        "peak_mem_kind": kind,
    }


def flag_best_batch(rows: pd.DataFrame) -> pd.DataFrame:
    """``images_per_s`` of every row and ``best_batch`` True on the fastest batch of each (size, point)."""
    rows = rows.assign(images_per_s=1.0 / rows["s_per_image"])
    best = rows.groupby(["size", "point"], sort=False)["images_per_s"].transform("max")
    return rows.assign(best_batch=rows["images_per_s"] == best)
