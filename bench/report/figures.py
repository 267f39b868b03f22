"""The rate-distortion-perception and distortion-perception figures, and saving them (PDF + PNG).

- :func:`plot_rdp`: one panel per metric (PSNR, LPIPS, FID, SWD, NIQE by default) against bpp; a
  line per decoder setting over the qualities, published baselines as hollow markers.
- :func:`plot_tradeoff`: at each bitrate where diffusion points exist, PSNR against each realism
  measure; the settings of one sampler form a curve ordered by NFE (marker size grows with NFE, the
  NFE is written beside each point), MSH is the reference marker with a dotted line at its PSNR.
  Each decode-time knob swept at fixed sampler settings (start level t0, guidance w, mean of N
  samples) is a dashed/dash-dotted/dotted curve through its plain point, its values written beside
  the points; the rate figure leaves those rows out (they all sit at the same bitrate).

Both return a :class:`Plot`: the matplotlib Figure (never shown, never registered with pyplot) and
the panels that were skipped with the reason, which the figure also prints under its legend. Panels
whose metric has no value are skipped, not drawn empty; axes of metrics computed with random-init
backbone weights say "(random backbone)", and published numbers are not drawn on such axes (they
were measured with the real network, so they are not comparable).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.metrics.columns import patch_label
from bench.points import KNOB_DEFAULTS
from bench.report.series import (
    FIGURE_PATCH_METRICS,
    Series,
    has_values,
    is_plain,
    knob_curves,
    metric_axis_label,
    patch_protocol,
    published_series,
    random_backbone,
    seeds,
    step_positions,
    summary_series,
    with_patch_metrics,
    with_point_columns,
)
from bench.report.style import (
    KNOB_STYLES,
    PANEL_HEIGHT,
    PANEL_WIDTH,
    RC_PARAMS,
    axis_label,
    method_color,
    method_name,
    metric_spec,
    shade,
)
from bench.utils import BenchError, atomic_path

RDP_METRICS: tuple[str, ...] = ("psnr", "lpips", "fid", "swd", "niqe")
PERCEPTION_METRICS: tuple[str, ...] = ("fid", "lpips", "swd", "niqe")
# Published numbers drawn only where their scale is ours: HiFiC's NIQE is on another scale
# (see bench/baselines/hific.csv, column protocol).
PUBLISHED_METRICS: frozenset[str] = frozenset({"psnr", "ms_ssim", "lpips", "dists", "fid", "kid"})
NFE_SIZE = (14.0, 16.0)  # marker area = a + b * log2(NFE), in points²
TRADEOFF_PANEL_HEIGHT = 2.3
LINE_HEIGHT = 0.16  # inches per legend or note line at 7 pt
LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}

# fontTools logs every glyph subset at INFO while matplotlib embeds fonts in a PDF.
logging.getLogger("fontTools").setLevel(logging.WARNING)


@dataclass
class Plot:
    """A finished figure and the panels left out of it (metric or panel name → reason)."""

    figure: Figure
    skipped: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The suite's matplotlib style (font sizes, grid, embedded fonts) for building and saving figures."""
    with matplotlib.rc_context(RC_PARAMS):
        yield


def save_figure(figure: Figure, out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (a vector PDF) and a 300-dpi PNG beside it, both atomically; returns both paths.

    Both files are rendered to temporary names first and renamed only when both succeeded, so an
    error leaves neither a partial file nor a PDF without its PNG. PDF metadata carries no date, so
    the same figure gives the same bytes.
    """
    out = Path(out)
    if out.suffix != ".pdf":
        raise BenchError(f"figure output must be a .pdf path (a .png is written beside it), got {out}")
    png = out.with_suffix(".png")
    with style(), atomic_path(out) as tmp_pdf, atomic_path(png) as tmp_png:
        figure.savefig(tmp_pdf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
        figure.savefig(tmp_png, format="png")
    return out, png


@dataclass
class Grid:
    """A two-column grid of panels, an axes for the legend and one for the notes (possibly the same)."""

    figure: Figure
    panels: list[Axes]
    legend: Axes
    notes: Axes
    wide_legend: bool  # the legend spans the full width (entries in three columns)


def _text_lines(n_entries: int, notes: Sequence[str], columns: int, chars_per_line: int) -> float:
    """How many text lines a legend (title, entries in ``columns``) and its wrapped notes take."""
    entries = 1 + math.ceil(n_entries / columns) if n_entries else 0
    return entries + sum(math.ceil(len(note) / chars_per_line) for note in notes) + 0.5


def _grid(n_panels: int, n_entries: int, notes: Sequence[str], panel_height: float = PANEL_HEIGHT) -> Grid:
    """``n_panels`` panels, two per row (one beside the legend when alone), and places for legend and notes.

    With an odd number of panels the free cell takes the legend and the notes when both fit, else the
    legend alone with the notes in a slim full-width row below; with an even number both go in a
    full-width row, the legend's entries in three columns. Rows are as tall as their lines need.
    """
    if n_panels == 1:
        figure = Figure(figsize=(PANEL_WIDTH * 1.8, panel_height), layout="constrained")
        spec = figure.add_gridspec(1, 2, width_ratios=[PANEL_WIDTH, PANEL_WIDTH * 0.8])
        side = figure.add_subplot(spec[0, 1])
        return Grid(figure, [figure.add_subplot(spec[0, 0])], side, side, False)
    rows = math.ceil(n_panels / 2)
    free_cell = n_panels % 2 == 1
    legend_in_cell = free_cell and _text_lines(n_entries, [], 1, 52) * LINE_HEIGHT <= panel_height
    notes_in_cell = legend_in_cell and _text_lines(n_entries, notes, 1, 52) * LINE_HEIGHT <= panel_height
    if notes_in_cell:
        extra = 0.0
    elif legend_in_cell:
        extra = _text_lines(0, notes, 1, 110) * LINE_HEIGHT
    else:
        extra = _text_lines(n_entries, notes, 3, 110) * LINE_HEIGHT
    heights = [panel_height] * rows + ([extra] if extra else [])
    figure = Figure(figsize=(PANEL_WIDTH * 2, sum(heights) + 0.1), layout="constrained")
    spec = figure.add_gridspec(len(heights), 2, height_ratios=heights)
    panels = [figure.add_subplot(spec[i // 2, i % 2]) for i in range(n_panels)]
    bottom = figure.add_subplot(spec[rows, :]) if extra else None
    cell = figure.add_subplot(spec[rows - 1, 1]) if legend_in_cell else None
    legend = cell if cell is not None else bottom
    notes_axes = cell if notes_in_cell else bottom
    return Grid(figure, panels, legend, notes_axes, wide_legend=cell is None)  # type: ignore[arg-type]


def _finish_legend(grid: Grid, handles: Sequence[Line2D], title: str | None, notes: Sequence[str]) -> None:
    """Fill the legend axes (legend at the top) and the notes axes (skipped panels, caveats, at the bottom)."""
    for ax in {grid.legend, grid.notes}:
        ax.axis("off")
    grid.legend.legend(
        handles=list(handles),
        loc="upper center" if grid.wide_legend else "upper left",
        ncols=3 if grid.wide_legend else 1,
        frameon=False,
        title=title,
        alignment="left",
        handlelength=2.2,
        borderaxespad=0.0,
    )
    if notes:
        grid.notes.text(
            0.0,
            0.0,
            "\n".join(f"• {note}" for note in notes),
            transform=grid.notes.transAxes,
            ha="left",
            va="bottom",
            fontsize=7,
            color="0.3",
            wrap=True,
        )


def _errors(rows: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Asymmetric error bars from ``<metric>_ci_lo/_ci_hi`` (None when the table has no interval)."""
    low, high = f"{metric}_ci_lo", f"{metric}_ci_hi"
    if low not in rows.columns or high not in rows.columns:
        return None
    values = rows[metric].to_numpy(float)
    bars = np.vstack([values - rows[low].to_numpy(float), rows[high].to_numpy(float) - values])
    bars = np.where(np.isfinite(bars), np.clip(bars, 0.0, None), 0.0)
    return bars if bars.any() else None


def _handle(series: Series, *, line: bool = True) -> Line2D:
    """A legend entry that looks like the series' line and marker."""
    linestyle = ":" if series.published else (KNOB_STYLES[series.knob].linestyle if series.knob else "-")
    return Line2D(
        [],
        [],
        color=series.color,
        marker=series.marker,
        linestyle=linestyle if line else "",
        markerfacecolor="none" if series.published else series.color,
        label=series.label,
        markersize=7 if series.marker == "*" else None,
    )


def _draw_rate_series(ax: Axes, series: Series, metric: str) -> None:
    rows = series.rows[np.isfinite(pd.to_numeric(series.rows[metric], errors="coerce").to_numpy(float))]
    if rows.empty:
        return
    x, y = rows["bpp"].to_numpy(float), rows[metric].to_numpy(float)
    if series.published:
        ax.plot(
            x,
            y,
            linestyle=":",
            linewidth=0.8,
            color=series.color,
            marker=series.marker,
            markerfacecolor="none",
            markersize=7 if series.marker == "*" else None,
            zorder=3,
        )
        return
    ax.errorbar(
        x,
        y,
        yerr=_errors(rows, metric),
        color=series.color,
        marker=series.marker,
        capsize=1.5,
        elinewidth=0.6,
        zorder=4,
    )


def _rate_window(summary: pd.DataFrame) -> tuple[float, float]:
    """The bpp range of our own rows with a margin: published points outside it are not drawn."""
    bpp = pd.to_numeric(summary["bpp"], errors="coerce").dropna()
    low, high = float(bpp.min()), float(bpp.max())
    margin = max(0.08 * (high - low), 0.02)
    return low - margin, high + margin


def _published_notes(
    theirs: Sequence[Series], drawn: Sequence[str], summary: pd.DataFrame, window: tuple[float, float]
) -> list[str]:
    """Why published numbers that exist are not on the figure (random backbone, other scale, other rates)."""
    notes = []
    for metric in drawn:
        if not any(has_values(series.rows, metric) for series in theirs):
            continue
        label = metric_spec(metric).label
        if metric not in PUBLISHED_METRICS:
            notes.append(f"published {label} not drawn: another scale (see bench/baselines)")
        elif random_backbone(summary, metric):
            notes.append(f"published {label} not drawn: ours uses a random backbone")
        elif (patches := _other_patches(summary, metric)) is not None:
            notes.append(f"published {label}/256 not drawn: ours is {label}{patch_label(*patches)}")
    if theirs:
        notes.append("published: as reported, on full-resolution images")
    outside = sorted({s.label for s in theirs if not s.rows["bpp"].between(*window).all()})
    if outside:
        notes.append(f"{', '.join(outside)}: only points in our rate range")
    return notes


def _other_patches(summary: pd.DataFrame, metric: str) -> tuple[str, int] | None:
    """Our (protocol, patch size) when ``metric`` is a patch metric measured otherwise than the published
    FID/256 (HiFiC's grids of 256 px patches); None when it is comparable."""
    patches = patch_protocol(summary) if metric in FIGURE_PATCH_METRICS else None
    return patches if patches is not None and patches != ("hific", 256) else None


def plot_rdp(
    summary: pd.DataFrame,
    published: pd.DataFrame | None = None,
    *,
    metrics: Sequence[str] = RDP_METRICS,
    dataset: str | None = None,
) -> Plot:
    """Rate against each metric for one dataset's summary rows (and its published baselines)."""
    for metric in metrics:
        metric_spec(metric)
    summary = with_patch_metrics(with_point_columns(summary))
    knob_rows = ~is_plain(summary)
    summary = summary[~knob_rows]
    ours = summary_series(summary)
    skipped = {m: "no values in the summary" for m in metrics if not has_values(summary, m)}
    drawn = [m for m in metrics if m not in skipped]
    if not drawn:
        raise BenchError(f"none of the metrics {list(metrics)} has a value in the summary; nothing to plot")
    window = _rate_window(summary)
    theirs = published_series(published) if published is not None and not published.empty else []
    notes = [f"{metric_spec(m).label} not shown: {why}" for m, why in skipped.items()]
    notes += _published_notes(theirs, drawn, summary, window)
    if knob_rows.any():
        notes.append(f"{int(knob_rows.sum())} decode-time knob settings (t0, w, N) are in the trade-off figure")
    theirs = [replace(s, rows=s.rows[s.rows["bpp"].between(*window)]) for s in theirs]
    comparable = {
        m
        for m in drawn
        if m in PUBLISHED_METRICS and not random_backbone(summary, m) and _other_patches(summary, m) is None
    }
    handles = [_handle(s) for s in ours]
    handles += [_handle(s) for s in theirs if any(has_values(s.rows, m) for m in comparable)]
    with style():
        grid = _grid(len(drawn), len(handles), notes)
        for ax, metric in zip(grid.panels, drawn, strict=True):
            for series in ours + (theirs if metric in comparable else []):
                _draw_rate_series(ax, series, metric)
            if metric == "niqe" and has_values(summary, "niqe_reference"):
                reference = float(pd.to_numeric(summary["niqe_reference"], errors="coerce").mean())
                ax.axhline(reference, color="0.5", linestyle="--", linewidth=0.8, zorder=1)
                ax.annotate(
                    "originals",
                    (1.0, reference),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    fontsize=7,
                    color="0.4",
                )
            ax.set_xlabel("Rate [bpp]")
            ax.set_ylabel(metric_axis_label(summary, metric))
        _finish_legend(grid, handles, dataset, notes)
    return Plot(grid.figure, skipped)


def _nfe(rows: pd.DataFrame) -> np.ndarray:
    """Network evaluations per image: the ``nfe`` column, else the step count."""
    column = "nfe" if "nfe" in rows.columns and rows["nfe"].notna().all() else "steps"
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(float)


def _quality_bpp(rows: pd.DataFrame) -> float:
    """The bitrate of one quality (every decoder reads the same bits; MSH's row when present)."""
    msh = rows[rows["decoder"] == "msh"]
    return float((msh if not msh.empty else rows)["bpp"].mean())


def draw_tradeoff_panel(
    ax: Axes, rows: pd.DataFrame, metric: str, distortion: str, positions: dict[tuple[str, float], float]
) -> None:
    """``distortion`` against ``metric`` for the MSH row and each sampler curve of one quality."""
    for series in summary_series(rows[rows["decoder"] == "msh"]):
        points = series.rows.dropna(subset=[metric, distortion])
        if points.empty:
            continue
        ax.errorbar(
            points[metric],
            points[distortion],
            xerr=_errors(points, metric),
            yerr=_errors(points, distortion),
            color=series.color,
            marker=series.marker,
            markersize=7,
            linestyle="",
            zorder=5,
        )
        ax.axhline(float(points[distortion].mean()), color=series.color, linestyle=":", linewidth=0.7, zorder=1)
    diffusion = rows[rows["decoder"] == "diffusion"]
    for curve in _sampler_curves(diffusion[is_plain(diffusion)]):
        points = curve.rows.dropna(subset=[metric, distortion])
        points = points.iloc[np.argsort(_nfe(points), kind="stable")]
        _draw_curve(ax, curve, points, metric, distortion, positions, [f"{n:g}" for n in _nfe(points)])
    for curve in knob_curves(rows):
        points = curve.rows.dropna(subset=[metric, distortion])
        style = KNOB_STYLES[curve.knob]
        plain = KNOB_DEFAULTS[curve.knob]  # the plain point carries its step curve's NFE label already
        labels = [
            "" if decoder == "msh" or value == plain else f"{style.prefix}{value:g} ({n:g})"
            for decoder, value, n in zip(points["decoder"], points["_value"], _nfe(points), strict=True)
        ]
        _draw_curve(ax, curve, points, metric, distortion, positions, labels)


def _draw_curve(
    ax: Axes,
    curve: Series,
    points: pd.DataFrame,
    metric: str,
    distortion: str,
    positions: dict[tuple[str, float], float],
    labels: Sequence[str],
) -> None:
    """One curve of the trade-off plane in the given point order: a line (dashed for a knob), markers
    sized by NFE and shaded by step count, and a label beside each point (empty: none)."""
    if points.empty:
        return
    x, y, nfe = points[metric].to_numpy(float), points[distortion].to_numpy(float), _nfe(points)
    linestyle = KNOB_STYLES[curve.knob].linestyle if curve.knob else "-"
    ax.errorbar(
        x,
        y,
        xerr=_errors(points, metric),
        yerr=_errors(points, distortion),
        color=curve.color,
        linewidth=0.9,
        linestyle=linestyle,
        marker="",
        zorder=3,
    )
    diffusion = (points["decoder"] == "diffusion").to_numpy()
    sizes = NFE_SIZE[0] + NFE_SIZE[1] * np.log2(np.maximum(nfe, 1.0))
    colors = [shade(method_color(curve.method), positions.get((curve.method, steps))) for steps in points["steps"]]
    ax.scatter(
        x[diffusion],
        y[diffusion],
        s=sizes[diffusion],
        c=[c for c, d in zip(colors, diffusion, strict=True) if d],
        marker=curve.marker,
        edgecolors="white",
        linewidths=0.4,
        zorder=4,
    )
    for xi, yi, label, size in zip(x, y, labels, sizes, strict=True):
        if not label:
            continue
        offset = math.sqrt(size) / 2 + 2  # clear of the marker, whatever its size
        ax.annotate(
            label,
            (xi, yi),
            xytext=(offset, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
            color="0.25",
            zorder=6,
            bbox=LABEL_BOX,
        )


def tradeoff_handles(rows: pd.DataFrame) -> list[Line2D]:
    """Legend entries of a plane drawn by :func:`draw_tradeoff_panel` from ``rows`` (MSH and
    diffusion): the MSH marker, each plain sampler's step curve, each knob sweep."""
    diffusion = rows[rows["decoder"] == "diffusion"]
    handles = [_handle(s, line=False) for s in summary_series(rows[rows["decoder"] == "msh"])]
    handles += [_handle(curve) for curve in _sampler_curves(diffusion[is_plain(diffusion)])]
    return handles + [_handle(curve) for curve in knob_curves(rows)]


def _sampler_curves(diffusion: pd.DataFrame) -> list[Series]:
    """One curve per sampler, eta (and seed): its settings over the step counts (a knob swept at fixed bits)."""
    curves = []
    key = diffusion.assign(
        _eta=pd.to_numeric(diffusion["eta"], errors="coerce").fillna(0.0),
        _seed=[-1.0 if s is None else s for s in seeds(diffusion)],
    )
    several_seeds = key["_seed"].nunique() > 1
    for (sampler, eta, seed), rows in key.groupby(["sampler", "_eta", "_seed"], sort=True):
        label = method_name(str(sampler)) + (f", η={eta:g}" if eta else "")
        label += f", seed {seed:g}" if several_seeds else ""
        curves.append(Series(str(sampler), label, None, float(eta), rows.drop(columns=["_eta", "_seed"])))
    return curves


NFE_NOTE = (
    "marker size and the number beside each point (in brackets on knob curves): network evaluations (NFE) per image"
)


def per_bitrate_panels(
    rows: pd.DataFrame,
    qualities: Sequence[float | None],
    metrics: Sequence[str],
    notes: Sequence[str],
    dataset: str | None,
    draw: Callable[[Axes, pd.DataFrame, str], None],
) -> Figure:
    """One panel per (bitrate, metric) in the trade-off layout, titled with the bitrate, with the
    trade-off legend: `draw(ax, rows_at_that_bitrate, metric)` fills a panel and labels its axes.
    The trade-off and cost figures differ only in what they put on the axes."""
    handles = tradeoff_handles(rows)
    with style():
        grid = _grid(len(qualities) * len(metrics), len(handles), list(notes), panel_height=TRADEOFF_PANEL_HEIGHT)
        panels = iter(grid.panels)
        for quality in qualities:
            at_rate = rows if quality is None else rows[rows["quality"] == quality]
            title = f"{_quality_bpp(at_rate):.3f} bpp" + (f" (quality {quality:g})" if quality is not None else "")
            for metric in metrics:
                ax = next(panels)
                draw(ax, at_rate, metric)
                ax.set_title(title, loc="left")
        _finish_legend(grid, handles, dataset, list(notes))
    return grid.figure


def plot_tradeoff(
    summary: pd.DataFrame,
    *,
    perception: Sequence[str] = PERCEPTION_METRICS,
    distortion: str = "psnr",
    dataset: str | None = None,
) -> Plot:
    """The distortion-realism plane at each bitrate where the summary has diffusion points."""
    for metric in (*perception, distortion):
        metric_spec(metric)
    summary = with_patch_metrics(with_point_columns(summary))
    if not has_values(summary, distortion):
        raise BenchError(f"the summary has no {distortion} values; the trade-off figure needs them on its y axis")
    diffusion = summary[summary["decoder"] == "diffusion"]
    if diffusion.empty:
        raise BenchError("the summary has no diffusion decoder rows; the trade-off figure compares samplers")
    qualities = sorted(diffusion["quality"].dropna().unique()) if "quality" in summary.columns else [None]
    in_plane = summary[summary["decoder"].isin(["msh", "diffusion"])]
    skipped = {m: "no values in the summary" for m in perception if not has_values(in_plane, m)}
    # Metrics from real networks or weight-free ones first; random-backbone ones last.
    drawn = sorted((m for m in perception if m not in skipped), key=lambda m: random_backbone(summary, m))
    if not drawn:
        raise BenchError(f"none of the realism metrics {list(perception)} has a value in the summary")
    notes = [f"{metric_spec(m).label} not shown: {why}" for m, why in skipped.items()]
    notes.append(NFE_NOTE)
    positions = step_positions(summary)

    def draw(ax: Axes, rows: pd.DataFrame, metric: str) -> None:
        draw_tradeoff_panel(ax, rows, metric, distortion, positions)
        ax.set_xlabel(metric_axis_label(summary, metric))
        ax.set_ylabel(axis_label(distortion))

    figure = per_bitrate_panels(in_plane, qualities, drawn, notes, dataset, draw)
    return Plot(figure, skipped)
