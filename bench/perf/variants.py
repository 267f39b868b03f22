"""The speed-up comparison: one UNet call under each switch against the plain call."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bench.diffusion import Condition, DiffusionDecoder
from bench.perf.measure import Context, SizeInputs, conditioning
from bench.perf.settings import PerfSettings
from bench.perf.timing import synchronize
from bench.utils import (
    peak_memory_mb,
    reset_peak_memory,
)


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
    from bench.diffusion import compile_unet  # imports diffusers only when used

    eager = model.unet
    compile_unet(model)
    try:
        yield _in_mode(torch.inference_mode, model, inputs)
    finally:
        model.unet = eager


@contextlib.contextmanager
def _condition_per_step(model: DiffusionDecoder, inputs: StepInputs) -> Iterator[Call]:
    """The latent decoder's maps recomputed at every call instead of once per image."""
    yield _in_mode(
        torch.inference_mode, model, dataclasses.replace(inputs, cond=dataclasses.replace(inputs.cond, features=None))
    )


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
    Variant(
        "condition_per_step",
        _condition_per_step,
        lambda device, model: (
            "the latent decoder is time-conditioned: its maps are recomputed every step anyway"
            if model.config.time_conditioned_latent_decoder
            else None
        ),
    ),
    Variant("compile", _compiled),
)


def comparison_variants(settings: PerfSettings) -> list[Variant]:
    """The switches a run compares: :data:`VARIANTS` (compile only when asked) and the thread counts."""
    variants = [v for v in VARIANTS if v.name != "compile" or settings.compile]
    return variants + [Variant(f"threads={n}", _threads(n)) for n in settings.compare_threads]


def step_inputs(ctx: Context, size: SizeInputs, batch: int = 1) -> StepInputs:
    """A mid-chain network call on ``batch`` copies of the image: noise at model time T/2 and its conditioning."""
    cond = conditioning(ctx, [size.latent] * batch)
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
        "s_per_step": statistics.median(times),
        "s_per_step_min": min(times),
        "s_per_step_max": max(times),
        "max_abs_diff": float((output.float() - reference).abs().max()),
        "warmup_s": warmup_s,
        "peak_mem_mb": peak_memory_mb(ctx.device, kind),
        "peak_mem_kind": kind,
        "threads": threads,
    }


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
