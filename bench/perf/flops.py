"""The UNet's FLOPs (counted once per size) and the devices' dense bf16 peaks (the MFU's denominator)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.diffusion import NUM_STAGES, Condition, DiffusionDecoder

LATENT_UPSAMPLING = 2**NUM_STAGES  # y_hat is at 1/16 of the (padded) image size

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
