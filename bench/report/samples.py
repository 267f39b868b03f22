"""The visual comparison: the same crop of one image from the original and from several decoders.

By default (what the paper shows) the crop comes from the lowest quality that has diffusion points,
and the decoders are MSH, the DDIM setting with the fewest steps and the DDPM setting with the most
(seed and eta as low as the table has). Reconstructions are read from the workflow's layout,
``WORK/{dataset}/q{quality}/{point}/{image}.png``. The first panel shows the whole original with the
crop outlined, so a reader knows where the crop is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bench.data import load_rgb
from bench.points import parse_point
from bench.report.figures import PANEL_WIDTH, Plot, style
from bench.report.series import seeds, with_point_columns
from bench.report.style import method_name
from bench.utils import BenchError

MAX_COLUMNS = 6


@dataclass(frozen=True)
class Crop:
    """A square crop: top-left corner (``left``, ``top``) and side ``size`` in pixels."""

    left: int
    top: int
    size: int

    def check(self, height: int, width: int, what: str) -> None:
        """BenchError unless the crop lies inside a ``height``×``width`` image."""
        if self.size < 1 or self.left < 0 or self.top < 0:
            raise BenchError(f"crop {self} must have a positive size and a non-negative corner")
        if self.left + self.size > width or self.top + self.size > height:
            raise BenchError(
                f"crop {self.size}px at (left={self.left}, top={self.top}) does not fit inside {what} "
                f"({width}x{height}); choose a corner with left <= {width - self.size} and top <= {height - self.size}"
            )

    def apply(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.top + self.size, self.left : self.left + self.size]


def point_label(point: str) -> str:
    """``ddim-k10-eta0-s0`` → ``DDIM, 10 steps``; ``msh`` → ``MSH``."""
    parsed = parse_point(point)
    if parsed.decoder == "diffusion":
        label = f"{method_name(str(parsed.sampler))}, {parsed.steps} steps"
        return label + (f", η={parsed.eta:g}" if parsed.eta else "")
    if parsed.decoder == "jpeg":
        return f"JPEG q{parsed.quality}"
    return method_name(parsed.id)


def default_selection(summary: pd.DataFrame, quality: int | None = None) -> tuple[int, list[str]]:
    """MSH, the fewest-step DDIM and the most-step DDPM point at ``quality``.

    ``quality`` defaults to the lowest quality with diffusion points.
    """
    summary = with_point_columns(summary)
    diffusion = summary[summary["decoder"] == "diffusion"]
    if diffusion.empty:
        raise BenchError("the summary has no diffusion decoder rows; pass --quality and --points explicitly")
    if quality is None:
        quality = int(diffusion["quality"].min())
    rows = summary[summary["quality"] == quality].assign(
        _eta=lambda t: pd.to_numeric(t["eta"], errors="coerce").fillna(0.0),
        _seed=lambda t: [0.0 if seed is None else seed for seed in seeds(t)],
    )
    points = list(rows.loc[rows["decoder"] == "msh", "point"][:1])
    for sampler, fewest in (("ddim", True), ("ddpm", False)):
        candidates = rows[rows["sampler"] == sampler].sort_values(
            ["steps", "_eta", "_seed"], ascending=[fewest, True, True]
        )
        points += list(candidates["point"][:1])
    if not points:
        raise BenchError(f"the summary has no MSH, DDIM or DDPM rows at quality {quality}; pass --points")
    return quality, points


def plot_samples(
    reference_dir: str | Path,
    work_dir: str | Path,
    dataset: str,
    quality: int,
    points: Sequence[str],
    image: str,
    crop: Crop,
    *,
    bpp: float | None = None,
) -> Plot:
    """The crop of ``image`` from the original and from each point's reconstruction at ``quality``."""
    if not points:
        raise BenchError("no decoder points to show; pass --points or a summary with MSH/diffusion rows")
    reference_path = Path(reference_dir) / f"{image}.png"
    if not reference_path.is_file():
        raise BenchError(f"reference image {reference_path} does not exist; check --reference and --image")
    original = load_rgb(reference_path)
    crop.check(*original.shape[:2], what=str(reference_path))
    panels = [("Original", crop.apply(original))]
    for point in points:
        path = Path(work_dir) / dataset / f"q{quality}" / point / f"{image}.png"
        if not path.is_file():
            raise BenchError(f"reconstruction {path} does not exist; decode point {point!r} at quality {quality} first")
        decoded = load_rgb(path)
        if decoded.shape != original.shape:
            raise BenchError(
                f"{path} is {decoded.shape[1]}x{decoded.shape[0]}, the original {original.shape[1]}x{original.shape[0]}"
            )
        panels.append((point_label(point), crop.apply(decoded)))

    n = len(panels) + 1
    columns = min(n, MAX_COLUMNS)
    rows = math.ceil(n / columns)
    width = 2 * PANEL_WIDTH
    cell = width / columns
    with style():
        figure = Figure(figsize=(width, rows * cell * 1.18), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        axes[0].imshow(original, interpolation="antialiased")
        axes[0].add_patch(
            Rectangle(
                (crop.left - 0.5, crop.top - 0.5), crop.size, crop.size, fill=False, edgecolor="#E69F00", linewidth=1.2
            )
        )
        axes[0].set_title(image)
        for ax, (title, pixels) in zip(axes[1:], panels, strict=False):
            ax.imshow(pixels, interpolation="nearest")
            ax.set_title(title)
        for ax in axes:
            ax.set_axis_off()
        rate = f", {bpp:.3f} bpp" if bpp is not None and math.isfinite(bpp) else ""
        where = f"{crop.size}×{crop.size} crop at ({crop.left}, {crop.top})"
        figure.suptitle(f"{dataset}, quality {quality}{rate}: {where}")
    return Plot(figure)
