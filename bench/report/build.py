"""Table in, figure files out: the three figures the workflow builds, one function each."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bench.baselines import load_published
from bench.report.figures import PERCEPTION_METRICS, RDP_METRICS, Plot, plot_rdp, plot_tradeoff, save_figure
from bench.report.samples import Crop, default_selection, plot_samples
from bench.report.series import load_summary
from bench.utils import BenchError

log = logging.getLogger(__name__)


def write_figure(
    summary: str | Path, out: str | Path, dataset: str | None, plot: Callable[[pd.DataFrame, str], Plot]
) -> Plot:
    """Load the summary (of ``dataset``, or its only one), draw ``plot(table, dataset_name)``, write the
    PDF and PNG, and log every panel the plot skipped."""
    table = load_summary(summary, dataset)
    drawn = plot(table, str(table["dataset"].iloc[0]))
    save_figure(drawn.figure, out)
    for panel, why in drawn.skipped.items():
        log.warning("%s: panel %s skipped (%s)", out, panel, why)
    return drawn


def write_rdp_figure(
    summary: str | Path,
    out: str | Path,
    *,
    dataset: str | None = None,
    metrics: Sequence[str] = RDP_METRICS,
    published: bool = True,
) -> Plot:
    """``figures/rdp_{dataset}.pdf`` (+ PNG): rate against each metric, published baselines included."""
    return write_figure(
        summary,
        out,
        dataset,
        lambda table, name: plot_rdp(table, load_published(name) if published else None, metrics=metrics, dataset=name),
    )


def write_tradeoff_figure(
    summary: str | Path,
    out: str | Path,
    *,
    dataset: str | None = None,
    perception: Sequence[str] = PERCEPTION_METRICS,
    distortion: str = "psnr",
) -> Plot:
    """``figures/tradeoff_{dataset}.pdf`` (+ PNG): the distortion-realism plane at each bitrate."""
    return write_figure(
        summary,
        out,
        dataset,
        lambda table, name: plot_tradeoff(table, perception=perception, distortion=distortion, dataset=name),
    )


def write_samples_figure(
    summary: str | Path,
    out: str | Path,
    *,
    reference: str | Path,
    work: str | Path,
    image: str,
    crop: Crop,
    dataset: str | None = None,
    quality: int | None = None,
    points: Sequence[str] | None = None,
) -> Plot:
    """``figures/samples_{dataset}.pdf`` (+ PNG): one crop from the original and several decoders.

    ``quality`` and ``points`` default to the paper's choice (:func:`default_selection`).
    """
    table = load_summary(summary, dataset)
    name = str(table["dataset"].iloc[0])
    if not points:
        quality, points = default_selection(table, quality)
    elif quality is None:
        raise BenchError("--points needs --quality (the folder q{quality} they were decoded at)")
    at_quality = table[(table["quality"] == quality) & (table["decoder"] == "msh")]
    bpp = float(at_quality["bpp"].mean()) if not at_quality.empty else None
    plot = plot_samples(reference, work, name, int(quality), points, image, crop, bpp=bpp)
    save_figure(plot.figure, out)
    return plot
