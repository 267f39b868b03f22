"""One visual language for every figure: a colour per method, metric labels, sizes for a paper.

Colours come from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies) and are keyed by *method*, not by position in a plot, so MSH is the same black and
DDIM the same blue in every figure of every dataset. A sampler's step counts are told apart by shade
within its hue (fewest steps lightest, most darkest, by rank among the step counts of the table), so
every figure drawn from one table gives ``DDIM, 10 steps`` the same colour.
Methods with no assigned colour (a bring-your-own codec, a future sampler) get one from a reserve list
by a stable hash of their name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import matplotlib.colors as mcolors

from bench.metrics.columns import patch_label

# Okabe & Ito (2008), "Color Universal Design".
METHOD_COLORS: dict[str, str] = {
    "msh": "#000000",
    "mbt2018-mean": "#000000",  # the same architecture as MSH, with its reference weights
    "ddim": "#0072B2",
    "ddpm": "#D55E00",
    "dpmpp": "#009E73",
    "hific": "#CC79A7",
    "cdc": "#E69F00",
    "jpeg": "#7F7F7F",
}
RESERVE_COLORS: tuple[str, ...] = ("#56B4E9", "#F0E442", "#8C564B", "#17BECF", "#BCBD22", "#9467BD")

METHOD_MARKERS: dict[str, str] = {
    "msh": "o",
    "mbt2018-mean": "o",
    "ddim": "s",
    "ddpm": "^",
    "dpmpp": "D",
    "hific": "*",
    "cdc": "P",
    "jpeg": "X",
}
DEFAULT_MARKER = "v"

METHOD_NAMES: dict[str, str] = {
    "msh": "MSH",
    "mbt2018-mean": "MSH zoo weights, CompressAI",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "dpmpp": "DPM++",
    "hific": "HiFiC",
    "cdc": "CDC",
    "jpeg": "JPEG",
}


@dataclass(frozen=True)
class KnobStyle:
    """How a decode-time knob's curve looks: its name in legends, the prefix of its point labels, its dashes."""

    name: str
    prefix: str
    linestyle: str


# The issue-11 knobs (bench.points.KNOB_DEFAULTS); the step-count curves of plain samplers are solid.
KNOB_STYLES: dict[str, KnobStyle] = {
    "t0": KnobStyle("start level t0 (from MSH)", "t0=", "--"),
    "guidance": KnobStyle("guidance w", "w=", "-."),
    "n_avg": KnobStyle("mean of N samples", "N=", ":"),
}

# Width of one panel in a two-column paper (one column ≈ 3.5 in), and the text sizes (≥ 7 pt).
PANEL_WIDTH = 3.5
PANEL_HEIGHT = 2.6
RC_PARAMS: dict[str, object] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 9,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # embed TrueType: text stays text in the PDF
    "ps.fonttype": 42,
    "savefig.dpi": 300,
}


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is drawn: its axis label, which direction is better, the column of its backbone."""

    name: str
    label: str
    higher_is_better: bool
    backbone_column: str | None = None
    per_image: bool = True  # has bootstrap CIs (dataset-level metrics such as FID do not)


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("psnr", "PSNR [dB]", True),
        MetricSpec("ms_ssim", "MS-SSIM", True),
        MetricSpec("lpips", "LPIPS", False, "lpips_backbone"),
        MetricSpec("dists", "DISTS", False, "dists_backbone"),
        MetricSpec("fid", "FID", False, "fid_backbone", per_image=False),
        MetricSpec("kid", "KID", False, "fid_backbone", per_image=False),
        MetricSpec("swd", "SWD ×10³", False, per_image=False),
        MetricSpec("niqe", "NIQE", False),
    )
}
RANDOM_BACKBONE_SUFFIX = " (random backbone)"


def metric_spec(name: str) -> MetricSpec:
    """The spec of a metric column; an unknown name is a ValueError listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def axis_label(metric: str, *, random_backbone: bool = False, patches: tuple[str, int] | None = None) -> str:
    """``"LPIPS ↓"``, with " (random backbone)" when the values come from random-init weights; a patch
    metric names its ``patches`` (protocol, size): ``"FID/256 ↓"``, ``"FID (128 px, hific) ↓"``."""
    spec = metric_spec(metric)
    arrow = "↑" if spec.higher_is_better else "↓"
    label = spec.label + (patch_label(*patches) if patches else "")
    return f"{label} {arrow}" + (RANDOM_BACKBONE_SUFFIX if random_backbone else "")


def method_key(
    decoder: str | None, sampler: str | None = None, codec: str | None = None, point: str | None = None
) -> str:
    """The palette key of a table row: ``msh``, the sampler name, ``jpeg``, ``byo-CODEC`` or a codec name.

    A bring-your-own row's codec is its config entry's display label (its name when it has none), so
    entries sharing a label form one method: one colour, one legend entry, one curve over their rates.
    """
    if decoder == "diffusion" and sampler:
        return str(sampler)
    if decoder == "byo" and (codec or point):
        return f"byo-{codec}" if codec else str(point)
    if decoder in ("msh", "jpeg"):
        return str(decoder)
    return str(codec or decoder or point)


def method_color(method: str) -> str:
    """The colour of a method (stable across figures, datasets and runs)."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    digest = int(hashlib.sha256(method.encode()).hexdigest(), 16)
    return RESERVE_COLORS[digest % len(RESERVE_COLORS)]


def method_marker(method: str) -> str:
    """The marker of a method."""
    return METHOD_MARKERS.get(method, DEFAULT_MARKER)


def method_name(method: str) -> str:
    """A method's name for legends (``byo-cdc`` → ``cdc``)."""
    return METHOD_NAMES.get(method, method.removeprefix("byo-"))


def shade(color: str, position: float | None) -> tuple[float, float, float]:
    """``color`` lightened (``position`` 0) or darkened (1) by up to half; 0.5 or None keeps it as is.

    Used to tell a sampler's step counts apart inside its hue: fewest steps lightest, most darkest.
    """
    rgb = mcolors.to_rgb(color)
    if position is None:
        return rgb
    amount = 0.5 - min(max(position, 0.0), 1.0)  # > 0 mixes with white, < 0 with black
    target = (1.0, 1.0, 1.0) if amount > 0 else (0.0, 0.0, 0.0)
    return tuple(c + (t - c) * abs(amount) for c, t in zip(rgb, target, strict=True))  # type: ignore[return-value]
