"""Pixel-fidelity metrics on the 8-bit images a user actually gets: PSNR and MS-SSIM.

Both take batches of equal-shape ``uint8``-valued tensors ``(B, 3, H, W)`` (any device) and return one
value per image, computed as CompressAI's ``eval_model`` does on the PNGs it writes:

- PSNR = 10·log10(255² / MSE) with the MSE over all pixels and all three RGB channels. Identical images
  have MSE 0 and PSNR **+inf**; the tables keep that value (the CSV holds ``inf``), and a mean over images
  that include one is +inf too, so a lossless point never hides behind a large finite cap.
- MS-SSIM from ``pytorch_msssim`` with ``data_range=1`` on the images scaled to [0, 1], the standard five
  scales and weights. Five scales need the shorter side to exceed 160 px (four 2× downsamplings of an
  11-tap window); for smaller images the value is NaN with a warning rather than a number from a different,
  fewer-scale metric that would silently sit in the same column.
"""

from __future__ import annotations

import warnings

import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from torch import Tensor

MS_SSIM_WINDOW = 11
MS_SSIM_SCALES = 5
# pytorch_msssim asserts min(H, W) > (win_size - 1) * 2**(scales - 1).
MS_SSIM_MIN_SIDE = (MS_SSIM_WINDOW - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1


def psnr(reference: Tensor, reconstruction: Tensor) -> Tensor:
    """Per-image RGB PSNR in dB (float64), +inf for identical images."""
    diff = reference.to(torch.float64) - reconstruction.to(torch.float64)
    mse = diff.square().mean(dim=(1, 2, 3))
    return (10.0 * torch.log10(255.0**2 / mse)).cpu()


def ms_ssim(reference: Tensor, reconstruction: Tensor) -> Tensor:
    """Per-image 5-scale MS-SSIM (float64); NaN with a warning when the shorter side is ≤ 160 px."""
    height, width = reference.shape[-2:]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        warnings.warn(
            f"MS-SSIM needs images with the shorter side >= {MS_SSIM_MIN_SIDE} px; {width}x{height} images get NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return torch.full((reference.shape[0],), float("nan"), dtype=torch.float64)
    values = _ms_ssim(
        reference.to(torch.float32) / 255.0,
        reconstruction.to(torch.float32) / 255.0,
        data_range=1.0,
        size_average=False,
        win_size=MS_SSIM_WINDOW,
    )
    return values.to(torch.float64).cpu()
