"""Figures from tables: rate-distortion-perception curves, the distortion-realism plane, sample crops.

The report reads CSV tables (``results/{dataset}/summary.csv`` and the published baselines of
:mod:`bench.baselines`) and reconstructed PNGs; it never loads a model. Every figure is a vector PDF
with a 300-dpi PNG beside it, written atomically, with one colour per method across all figures
(:mod:`bench.report.style`) and panels sized for a two-column paper (3.5 in wide, text ≥ 7 pt).
"""

from bench.report.build import write_rdp_figure, write_samples_figure, write_tradeoff_figure
from bench.report.figures import Plot, plot_rdp, plot_tradeoff, save_figure
from bench.report.samples import Crop, default_selection, plot_samples
from bench.report.series import load_summary, summary_series
from bench.report.style import axis_label, method_color, method_key

__all__ = [
    "Crop",
    "Plot",
    "axis_label",
    "default_selection",
    "load_summary",
    "method_color",
    "method_key",
    "plot_rdp",
    "plot_samples",
    "plot_tradeoff",
    "save_figure",
    "summary_series",
    "write_rdp_figure",
    "write_samples_figure",
    "write_tradeoff_figure",
]
