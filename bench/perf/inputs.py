"""The image perf times on: a real crop (Kodak from the mirror) or a generated one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data import list_images, load_rgb, mirror_root
from bench.utils import (
    BenchError,
)

INPUT_DATASET = "kodak"  # the image perf crops its inputs from, when the mirror holds it


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


def input_image(
    height: int, width: int, *, image: str | Path | None = None, mirror: str | Path | None = None
) -> tuple[torch.Tensor, str]:
    """A [1, 3, H, W] image in [0, 1] and where it came from: the centre crop of ``image`` (a BenchError
    when it is smaller), else of the first large-enough Kodak image of the mirror, else :func:`synthetic_image`."""
    if image is not None:
        pixels = load_rgb(image)
        if pixels.shape[0] < height or pixels.shape[1] < width:
            raise BenchError(
                f"--image {image} is {pixels.shape[1]}x{pixels.shape[0]}, smaller than the perf size "
                f"{width}x{height}; give a larger image or smaller perf.sizes"
            )
        return _centre_crop(pixels, height, width), f"{Path(image).name} centre crop"
    root = mirror_root(mirror)
    folder = root / INPUT_DATASET if root is not None else None
    if folder is not None and folder.is_dir():
        for path in list_images(folder):
            pixels = load_rgb(path)
            if pixels.shape[0] >= height and pixels.shape[1] >= width:
                return _centre_crop(pixels, height, width), f"{INPUT_DATASET}/{path.name} centre crop"
    return synthetic_image(height, width), "synthetic"
