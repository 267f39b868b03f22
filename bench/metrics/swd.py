"""Dataset-level realism without downloaded weights: Laplacian-pyramid sliced Wasserstein distance.

SWD compares the *distribution* of small image neighbourhoods of a reference set with that of a
reconstruction set, band by band, as in Karras et al. 2018 ("Progressive Growing of GANs", section
"multi-scale statistical similarity"; public code ``metrics/sliced_wasserstein.py`` of
``tkarras/progressive_growing_of_gans``). This is an independent torch version of that procedure:

1. **Pyramid.** Each image (float, 0..255) gets a Laplacian pyramid built with the 5-tap binomial
   kernel ``[1, 4, 6, 4, 1] / 16`` (separable, the kernel of ``cv2.pyrDown``), mirror borders and
   decimation by 2. Level 0 is the finest band-pass band; the last level is the Gaussian low-pass
   residual. The number of levels is :func:`swd_level_count` of the shortest image side in either set
   (sides ``s, s/2, ...`` down to 16 px: 6 levels for Kodak's 512 px side), the same for every image.
   Sizes need not be powers of two: decimation keeps ``ceil(n / 2)`` samples and the upsampled
   prediction is cropped back to the finer level's size.
2. **Descriptors.** At every level, ``patches_per_level`` 7×7×3 neighbourhoods are drawn per set, the
   budget split evenly over that set's images, centres uniform over positions where the whole
   neighbourhood lies inside the level, with replacement (as in the reference code). The reference and
   the reconstruction set draw from two independent streams of the same seed, so a set compared with
   itself gives a small positive floor (two different subsamples of the same images), not zero.
3. **Normalisation.** Each set's descriptors are normalised per level and per colour channel with that
   set's own mean and standard deviation over all its neighbourhoods and pixels (the reference code's
   ``finalize_descriptors``). A consequence worth knowing: a global per-channel gain or offset of a
   whole reconstruction set is normalised away; SWD measures the *shape* of the patch distribution
   per band, PSNR-type measures carry the rest.
4. **Sliced Wasserstein.** ``n_repeats`` times, ``n_directions`` random unit vectors in the 147-d
   descriptor space (seeded) project both sets; sorted projections are compared point by point (equal
   counts, so this is the exact 1-D Wasserstein-1 distance per direction) and the mean absolute
   difference is averaged over directions and repeats.

Results are reported ×1e3 as in the paper: ``swd_level{k}`` per level (0 = finest) and ``swd`` their
mean. Lower is closer to the reference distribution; values are comparable only between runs with the
same patch budget, level count and seed, since the sampling floor falls roughly as
``1 / sqrt(patches_per_level)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from bench.metrics.reference_cache import ReferenceMemo, pixels_digest
from bench.utils import BenchError, progress_options, resolve_device

PATCH_SIZE = 7
"""Side of the square neighbourhoods (7×7×3 descriptors, as in the paper)."""

MIN_LEVEL_SIDE = 16
"""The coarsest pyramid level still reported has at least this many pixels on its shorter side."""

DEFAULT_PATCHES_PER_LEVEL = 1 << 14
"""Neighbourhoods per level and per set when none is given (≈680 per Kodak image at each level)."""

_DIM = PATCH_SIZE * PATCH_SIZE * 3
"""Length of a descriptor (7×7 pixels × 3 colour channels)."""

_BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def swd_level_count(min_side: int) -> int:
    """Number of pyramid levels (hence ``swd_level{k}`` keys) reported for a shortest side of ``min_side`` px.

    Counts the sides ``min_side, min_side // 2, ...`` that are at least :data:`MIN_LEVEL_SIDE`,
    exactly as the reference code counts resolutions: 512 → 6, 256 → 5, 16 → 1, 15 → 0.
    """
    levels = 0
    side = int(min_side)
    while side >= MIN_LEVEL_SIDE:
        levels += 1
        side //= 2
    return levels


def swd(
    reference: Sequence[np.ndarray],
    reconstruction: Sequence[np.ndarray],
    *,
    patches_per_level: int | None = None,
    n_directions: int = 512,
    n_repeats: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    memo: ReferenceMemo | None = None,
) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance (×1e3) between two sets of uint8 RGB images.

    Args:
        reference: HxWx3 uint8 images; sizes and orientations may differ.
        reconstruction: HxWx3 uint8 images; may hold a different number of images than ``reference``.
        patches_per_level: neighbourhoods drawn per level from *each* set (same budget on both sides);
            ``None`` means :data:`DEFAULT_PATCHES_PER_LEVEL`.
        n_directions: random projection directions per repeat.
        n_repeats: independent sets of directions; the distance is averaged over them.
        seed: fixes patch positions and directions, so equal inputs give equal values.
        device: where the pyramids, projections and sorts run (``"auto"`` picks CUDA when present).
        memo: keeps the reference set's sorted projections for later calls with the same reference
            images and settings (the points of one metrics job), which halves the cost of those calls;
            the values are those of a call without it, bit for bit.

    Returns:
        ``{"swd": mean over levels, "swd_level0": finest level, "swd_level1": ..., ...}``; the number
        of levels is :func:`swd_level_count` of the shortest side over both sets.
    """
    ref = _checked_images(reference, "reference")
    rec = _checked_images(reconstruction, "reconstruction")
    budget = DEFAULT_PATCHES_PER_LEVEL if patches_per_level is None else patches_per_level
    for name, value in (("patches_per_level", budget), ("n_directions", n_directions), ("n_repeats", n_repeats)):
        if value < 1:
            raise BenchError(f"SWD {name} must be at least 1, got {value}")
    min_side = min(min(image.shape[:2]) for image in ref + rec)
    levels = swd_level_count(min_side)
    if levels == 0:
        raise BenchError(
            f"SWD needs images at least {MIN_LEVEL_SIDE} px on their shorter side; the smallest given has {min_side} px"
        )
    dev = resolve_device(device) if isinstance(device, str) else device

    generator = torch.Generator().manual_seed(seed)
    directions = [_random_directions(n_repeats, _DIM, n_directions, generator).to(dev) for _ in range(levels)]

    def reference_side() -> list[Tensor]:
        descriptors = _descriptors(ref, levels, budget, np.random.default_rng([seed, 0]), dev, "reference")
        return [_sorted_projections(a, d) for a, d in zip(descriptors, directions, strict=True)]

    if memo is None:
        ref_sorted = reference_side()
    else:
        key = pixels_digest(ref, "swd", levels, budget, n_directions, n_repeats, seed, str(dev))
        ref_sorted = memo.get(key, reference_side)
    rec_desc = _descriptors(rec, levels, budget, np.random.default_rng([seed, 1]), dev, "reconstruction")
    per_level = [
        1e3 * _mean_distance(a, _sorted_projections(b, d))
        for a, b, d in zip(ref_sorted, rec_desc, directions, strict=True)
    ]
    result = {"swd": float(np.mean(per_level))}
    result.update({f"swd_level{k}": value for k, value in enumerate(per_level)})
    return result


def laplacian_pyramid(image: Tensor, levels: int) -> list[Tensor]:
    """Laplacian pyramid of ``image`` (B×C×H×W float): ``levels - 1`` band-pass bands, then the low-pass residual.

    Band ``k`` is ``G_k - up(G_{k+1})`` where ``G`` is the Gaussian pyramid; summing the upsampled
    bands back reconstructs the input exactly (up to float rounding).
    """
    pyramid = [image]
    for _ in range(levels - 1):
        coarse = _pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - _pyr_up(coarse, pyramid[-1].shape[-2:])
        pyramid.append(coarse)
    return pyramid


def _checked_images(images: Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    """The images as a list, after checking each is an HxWx3 uint8 array; the set must not be empty."""
    images = list(images)
    if not images:
        raise BenchError(f"SWD got an empty {name} set")
    for index, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            kind = type(image).__name__
            if isinstance(image, np.ndarray):
                kind = f"{image.dtype} array of shape {image.shape}"
            raise BenchError(f"SWD {name} image {index} must be an HxWx3 uint8 array, got a {kind}")
    return images


def _binomial_kernel(channels: int, gain: float, like: Tensor) -> Tensor:
    """The 5×5 binomial kernel (times ``gain``) as a depthwise conv weight of shape C×1×5×5."""
    taps = torch.tensor(_BINOMIAL_5, dtype=like.dtype, device=like.device)
    kernel = torch.outer(taps, taps) / taps.sum() ** 2 * gain
    return kernel.expand(channels, 1, 5, 5)


def _pyr_down(x: Tensor) -> Tensor:
    """Blur with the binomial kernel (mirror borders) and keep every second row and column (``ceil(n/2)``)."""
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(padded, _binomial_kernel(x.shape[1], 1.0, x), stride=2, groups=x.shape[1])


def _pyr_up(x: Tensor, size: torch.Size) -> Tensor:
    """Zero-insert to twice the size, blur with 4× the kernel (mirror borders), crop to ``size`` (H, W)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    padded = F.pad(up, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(padded, _binomial_kernel(c, 4.0, x), groups=c)[..., : size[0], : size[1]]


def _split_budget(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts differing by at most one (the first ones get the remainder)."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def _descriptors(
    images: list[np.ndarray], levels: int, budget: int, rng: np.random.Generator, device: torch.device, label: str
) -> list[Tensor]:
    """Per level, ``budget`` normalised neighbourhood descriptors (N×147) drawn from ``images``."""
    half = PATCH_SIZE // 2
    offsets = torch.arange(-half, half + 1, device=device)
    per_level: list[list[Tensor]] = [[] for _ in range(levels)]
    counts = _split_budget(budget, len(images))
    for image, count in zip(
        tqdm(images, desc=f"SWD {label}", leave=False, **progress_options(nested=True)), counts, strict=True
    ):
        tensor = torch.tensor(image, dtype=torch.float32, device=device).permute(2, 0, 1).unsqueeze(0)
        for level, band in enumerate(laplacian_pyramid(tensor, levels)):
            band = band[0]
            height, width = band.shape[-2:]
            rows = torch.from_numpy(rng.integers(half, height - half, size=count)).to(device)
            cols = torch.from_numpy(rng.integers(half, width - half, size=count)).to(device)
            rows = (rows[:, None] + offsets)[:, :, None]
            cols = (cols[:, None] + offsets)[:, None, :]
            per_level[level].append(band[:, rows, cols].permute(1, 0, 2, 3))
    return [_normalise(torch.cat(chunks)) for chunks in per_level]


def _normalise(descriptors: Tensor) -> Tensor:
    """Standardise each colour channel over all neighbourhoods and pixels of one set, then flatten to N×147.

    A constant channel (zero spread, e.g. a flat grey reconstruction) becomes zeros instead of NaN.
    """
    mean = descriptors.mean(dim=(0, 2, 3), keepdim=True)
    std = descriptors.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return ((descriptors - mean) / std.clamp_min(torch.finfo(std.dtype).eps)).flatten(1)


def _random_directions(repeats: int, dim: int, count: int, generator: torch.Generator) -> Tensor:
    """``repeats`` sets of ``count`` unit vectors in ``dim`` dimensions (R×dim×count), drawn on the CPU."""
    directions = torch.randn(repeats, dim, count, generator=generator)
    return directions / directions.norm(dim=1, keepdim=True)


def _sorted_projections(descriptors: Tensor, directions: Tensor) -> Tensor:
    """The projections of ``descriptors`` (N×D) on each repeat's directions (R×D×K), each row sorted: R×K×N.

    Sorted projections of two sets of equal size, compared point by point, give the exact 1-D
    Wasserstein-1 distance per direction.
    """
    # NumPy's sort is single-threaded but releases the GIL: two repeats sort side by side on 2 cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return torch.stack(list(pool.map(_sorted_rows, (repeat.T @ descriptors.T for repeat in directions))))


def _mean_distance(sorted_a: Tensor, sorted_b: Tensor) -> float:
    """Mean over repeats and directions of the point-by-point distance of two sorted projections (R×K×N)."""
    return float(torch.stack([(a - b).abs().mean() for a, b in zip(sorted_a, sorted_b, strict=True)]).mean())


def _sorted_rows(x: Tensor) -> Tensor:
    """``x`` with each row sorted ascending.

    On the CPU NumPy's vectorised sort is about three times faster than ``torch.sort`` for these
    (directions × patches) float32 matrices, and sorting dominates SWD's cost; on a GPU torch sorts.
    """
    if x.device.type == "cpu":
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return torch.sort(x, dim=1).values
