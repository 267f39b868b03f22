"""Quality against decode cost (``figures/cost_{dataset}``): how much perception each second of decoding buys.

One panel per (bitrate with diffusion points, quality measure): the measure (LPIPS, FID, the weight-free
SWD, PSNR by default) against the decode time per image on a log axis. MSH is the reference marker with
a dotted line at its value; each sampler is a curve over its step counts (marker size and the number
beside it: NFE). The panels are drawn by the trade-off figure's panel function, so both figures read
alike, with the decode time on the x axis instead of a realism measure.

Times are the ``decode_s_per_image`` column of ``results/{dataset}/summary.csv``: the decode step's
wall time per image, model loading included, measured while the workflow ran (whatever else ran
beside it). ``results/perf.csv`` (``python -m bench perf``) holds controlled timings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.report.build import write_figure
from bench.report.figures import NFE_NOTE, Plot, draw_tradeoff_panel, per_bitrate_panels
from bench.report.series import (
    has_values,
    metric_axis_label,
    step_positions,
    with_patch_metrics,
    with_point_columns,
)
from bench.report.style import metric_spec
from bench.utils import BenchError

COST_METRICS: tuple[str, ...] = ("lpips", "fid", "swd", "psnr")
TIME_COLUMN = "decode_s_per_image"
TIME_LABEL = "Decode time [s / image]"
TIME_NOTE = "decode time: wall time of the decode step per image, model loading included (controlled: results/perf.csv)"


def _seconds_axis(ax: Axes) -> None:
    """A log axis of seconds labelled 0.1, 0.2, 0.5, 1, 2, 5 … (no crowded minor labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(TIME_LABEL)


def plot_cost(summary: pd.DataFrame, *, metrics: Sequence[str] = COST_METRICS, dataset: str | None = None) -> Plot:
    """Each quality measure against the decode time per image, at each bitrate with diffusion points."""
    for metric in metrics:
        metric_spec(metric)
    summary = with_patch_metrics(with_point_columns(summary))
    timed = summary[summary["decoder"].isin(["msh", "diffusion"])]
    if not has_values(timed, TIME_COLUMN):
        raise BenchError(f"the summary has no {TIME_COLUMN} values; decode with --record (the workflow does) first")
    timed = timed[pd.to_numeric(timed[TIME_COLUMN], errors="coerce") > 0]
    diffusion = timed[timed["decoder"] == "diffusion"]
    if diffusion.empty:
        raise BenchError("the summary has no timed diffusion decoder rows; the cost figure compares samplers")
    skipped = {m: "no values in the summary" for m in metrics if not has_values(timed, m)}
    drawn = [m for m in metrics if m not in skipped]
    if not drawn:
        raise BenchError(f"none of the metrics {list(metrics)} has a value in the summary")
    qualities = sorted(diffusion["quality"].dropna().unique()) if "quality" in timed.columns else [None]
    notes = [f"{metric_spec(m).label} not shown: {why}" for m, why in skipped.items()]
    notes += [NFE_NOTE, TIME_NOTE]
    positions = step_positions(summary)

    def draw(ax: Axes, rows: pd.DataFrame, metric: str) -> None:
        draw_tradeoff_panel(ax, rows, TIME_COLUMN, metric, positions)
        _seconds_axis(ax)
        ax.set_ylabel(metric_axis_label(summary, metric))

    figure = per_bitrate_panels(timed, qualities, drawn, notes, dataset, draw)
    return Plot(figure, skipped)


def write_cost_figure(
    summary: str | Path, out: str | Path, *, dataset: str | None = None, metrics: Sequence[str] = COST_METRICS
) -> Plot:
    """``figures/cost_{dataset}.pdf`` (+ PNG): quality against decode seconds per image."""
    return write_figure(summary, out, dataset, lambda table, name: plot_cost(table, metrics=metrics, dataset=name))
