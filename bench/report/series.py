"""Reading summary tables for the figures: checks, one dataset at a time, and series of points.

A *series* is what a figure draws as one line: the rows of one decoder setting (MSH, a sampler with
its steps and eta, JPEG, a bring-your-own codec, a published codec) over the qualities, sorted by
bpp. The decoder columns come from the table; a table written without them (older or foreign) gets
them from parsing ``point`` with :func:`bench.points.parse_point`, never from string slicing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.metrics.columns import parse_protocol_column, protocol_column
from bench.points import KNOB_DEFAULTS, parse_point
from bench.report.style import (
    KNOB_STYLES,
    METRICS,
    axis_label,
    method_color,
    method_key,
    method_marker,
    method_name,
    shade,
)
from bench.utils import BenchError

REQUIRED_COLUMNS: tuple[str, ...] = ("dataset", "point", "bpp")
FIGURE_PATCH_METRICS: tuple[str, ...] = ("fid", "kid")
"""Patch metrics the figures draw, from the protocol-named columns (see :mod:`bench.metrics.columns`)."""
POINT_COLUMNS: tuple[str, ...] = ("decoder", "sampler", "steps", "eta", *KNOB_DEFAULTS)


@dataclass(frozen=True)
class Series:
    """One line of a figure: a method's setting over the qualities (rows sorted by bpp)."""

    method: str  # palette key (msh, ddim, hific, byo-NAME, ...)
    label: str
    steps: float | None
    eta: float | None
    rows: pd.DataFrame
    published: bool = False
    shade_position: float | None = None  # 0 = the method's fewest steps, 1 = its most (see style.shade)
    knob: str | None = None  # the decode-time knob this curve sweeps (bench.points.KNOB_DEFAULTS), if any

    @property
    def color(self) -> tuple[float, float, float]:
        """The method's colour, shaded by its step-count rank for diffusion settings."""
        return shade(method_color(self.method), self.shade_position)

    @property
    def marker(self) -> str:
        return method_marker(self.method)


def _number(value: object) -> float | None:
    """A finite float, or None for NaN/None/empty."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def with_point_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Add any missing decoder column (decoder, sampler, steps, eta) by parsing the point ids."""
    missing = [column for column in POINT_COLUMNS if column not in table.columns]
    if not missing:
        return table
    parsed = pd.DataFrame([parse_point(str(point)).columns() for point in table["point"]], index=table.index)
    return table.assign(**{column: parsed[column] for column in missing})


def knob_settings(table: pd.DataFrame) -> pd.DataFrame:
    """The knob columns (t0, guidance, n_avg) of every row, their plain values where empty or absent."""
    return pd.DataFrame(
        {
            knob: pd.to_numeric(table[knob], errors="coerce").fillna(default) if knob in table.columns else default
            for knob, default in KNOB_DEFAULTS.items()
        },
        index=table.index,
    )


def is_plain(table: pd.DataFrame) -> pd.Series:
    """True for the rows whose knobs are all at their plain values (every non-diffusion row)."""
    knobs = knob_settings(table)
    return (knobs == pd.Series(KNOB_DEFAULTS)).all(axis=1)


def knob_curves(table: pd.DataFrame) -> list[Series]:
    """One curve per (knob, sampler, steps, eta, seed) that the table sweeps: the rows with that knob
    set and the other knobs plain, plus the plain row itself, ordered by the knob's value. A t0 curve
    starts at the table's MSH row (t0 = 0 *is* the MSH reconstruction). Rows that set several knobs at
    once belong to no curve."""
    diffusion = table[table["decoder"] == "diffusion"]
    knobs = knob_settings(diffusion)
    off_default = knobs != pd.Series(KNOB_DEFAULTS)
    msh = table[table["decoder"] == "msh"]
    curves = []
    for knob in KNOB_DEFAULTS:
        others_plain = ~off_default.drop(columns=knob).any(axis=1)
        rows = diffusion.assign(_value=knobs[knob], _eta=_filled(diffusion["eta"]), _seed=seeds(diffusion))
        for (sampler, steps, eta, _), group in rows[others_plain].groupby(["sampler", "steps", "_eta", "_seed"]):
            if (group["_value"] == KNOB_DEFAULTS[knob]).all():
                continue
            if knob == "t0" and not msh.empty:
                group = pd.concat([msh.assign(_value=0.0), group])
            label = _series_label(str(sampler), _number(steps), _number(eta)) + f": {KNOB_STYLES[knob].name}"
            curves.append(
                Series(
                    str(sampler),
                    label,
                    _number(steps),
                    _number(eta),
                    group.sort_values("_value").drop(columns=["_eta", "_seed"]),
                    knob=knob,
                )
            )
    return curves


def _filled(column: pd.Series) -> pd.Series:
    """A numeric column with NaN as 0 (eta of samplers without one), for grouping."""
    return pd.to_numeric(column, errors="coerce").fillna(0.0)


def load_summary(path: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """The rows of one dataset of a ``summary.csv`` (any dataset when the table holds only one).

    Missing file, missing required columns, several datasets without ``dataset``, or a dataset with no
    rows are BenchErrors that say what to pass.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise BenchError(f"summary table {path} does not exist; run the metrics step first") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BenchError(f"cannot read summary table {path}: {err}") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise BenchError(f"summary table {path} lacks the columns {missing}")
    datasets = sorted(table["dataset"].dropna().astype(str).unique())
    if dataset is None:
        if len(datasets) != 1:
            raise BenchError(f"summary table {path} holds the datasets {datasets}; choose one with --dataset")
        dataset = datasets[0]
    rows = table[table["dataset"].astype(str) == dataset]
    if rows.empty:
        raise BenchError(f"summary table {path} has no rows for dataset {dataset!r}; it holds {datasets}")
    return with_patch_metrics(with_point_columns(rows.reset_index(drop=True)))


def patch_protocol(table: pd.DataFrame) -> tuple[str, int] | None:
    """(protocol, patch size) of a table's FID/KID columns (``fid_hific_p128`` → ``("hific", 128)``);
    None for a table without such columns (published baselines, tables written by hand).

    FIDs of different protocols or patch sizes are on different scales, so a table mixing them is a
    BenchError rather than one curve through incomparable numbers.
    """
    found = {
        parsed[1:]
        for column in table.columns
        if (parsed := parse_protocol_column(str(column))) and parsed[0] in FIGURE_PATCH_METRICS
    }
    if len(found) > 1:
        listing = ", ".join(f"{size} px {protocol}" for protocol, size in sorted(found))
        raise BenchError(f"the table mixes FID/KID on different patches ({listing}); plot one configuration's table")
    return found.pop() if found else None


def with_patch_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """The table with ``fid``/``kid`` columns for the figures, copied from its protocol-named ones."""
    patches = patch_protocol(table)
    if patches is None:
        return table
    named = {metric: protocol_column(metric, *patches) for metric in FIGURE_PATCH_METRICS}
    return table.assign(**{metric: table[column] for metric, column in named.items() if column in table.columns})


def metric_axis_label(table: pd.DataFrame, metric: str) -> str:
    """:func:`bench.report.style.axis_label` of ``metric`` as ``table`` measured it (backbone, FID patches)."""
    patches = patch_protocol(table) if metric in FIGURE_PATCH_METRICS else None
    return axis_label(metric, random_backbone=random_backbone(table, metric), patches=patches)


def random_backbone(table: pd.DataFrame, metric: str) -> bool:
    """True when any row's ``metric`` comes from random-init backbone weights (its provenance column)."""
    column = METRICS[metric].backbone_column
    return column is not None and column in table.columns and bool((table[column] == "random-init").any())


def has_values(table: pd.DataFrame, metric: str) -> bool:
    """True when ``metric`` is a column with at least one finite value."""
    return metric in table.columns and bool(pd.to_numeric(table[metric], errors="coerce").notna().any())


def _series_label(method: str, steps: float | None, eta: float | None) -> str:
    label = method_name(method)
    if steps is not None:
        label += f", {steps:g} steps"
    if eta:
        label += f", η={eta:g}"
    return label


def _sort_key(series: Series) -> tuple:
    order = {"msh": 0, "jpeg": 2}
    group = 3 if series.published else order.get(series.method, 1 if series.steps is not None else 2)
    return (group, series.method, series.steps or 0.0, series.eta or 0.0)


def row_methods(table: pd.DataFrame) -> list[str]:
    """The palette key of every row (:func:`bench.report.style.method_key`)."""
    return [
        method_key(_text(row.get("decoder")), _text(row.get("sampler")), _text(row.get("codec")), str(row["point"]))
        for _, row in table.iterrows()
    ]


def step_positions(table: pd.DataFrame) -> dict[tuple[str, float], float]:
    """``(method, steps)`` → shade position: the rank of ``steps`` among the method's step counts, in [0, 1].

    Computed once from a whole summary table and passed to every figure of it, so one setting has
    one colour everywhere; a method with a single step count keeps its plain colour (0.5).
    """
    positions: dict[tuple[str, float], float] = {}
    steps_of: dict[str, set[float]] = {}
    for method, steps in zip(row_methods(table), table["steps"], strict=True):
        if (number := _number(steps)) is not None:
            steps_of.setdefault(method, set()).add(number)
    for method, values in steps_of.items():
        ordered = sorted(values)
        for rank, steps in enumerate(ordered):
            positions[(method, steps)] = rank / (len(ordered) - 1) if len(ordered) > 1 else 0.5
    return positions


def summary_series(table: pd.DataFrame, positions: dict[tuple[str, float], float] | None = None) -> list[Series]:
    """The series of a summary table: one per (method, steps, eta), MSH first, then samplers, then the rest.

    ``positions`` (default: :func:`step_positions` of ``table``) shades each sampler's step counts.
    """
    positions = step_positions(table) if positions is None else positions
    keyed = table.assign(
        _method=row_methods(table),
        _steps=[_number(value) for value in table["steps"]],
        _eta=[_number(value) for value in table["eta"]],
        _seed=seeds(table),
    )
    several_seeds = keyed["_seed"].nunique() > 1
    series = []
    keys = ["_method", "_steps", "_eta", "_seed"]
    for (method, steps, eta, seed), rows in keyed.groupby(keys, dropna=False, sort=False):
        steps, eta, seed = _number(steps), _number(eta), _number(seed)
        label = _series_label(method, steps, eta) + (f", seed {seed:g}" if several_seeds and seed is not None else "")
        position = positions.get((method, steps)) if steps is not None else None
        rows = rows.drop(columns=keys).sort_values("bpp")
        series.append(Series(method, label, steps, eta, rows, shade_position=position))
    return sorted(series, key=_sort_key)


def seeds(table: pd.DataFrame) -> list[float | None]:
    """The sampling seed of every row (the ``seed`` column, else parsed from the point id; None for MSH)."""
    if "seed" in table.columns:
        return [_number(value) for value in table["seed"]]
    return [_number(parse_point(str(point)).seed) for point in table["point"]]


def published_series(published: pd.DataFrame) -> list[Series]:
    """One series per codec of the published baselines (labelled as published)."""
    return [
        Series(
            str(codec), f"{method_name(str(codec))} (published)", None, None, rows.sort_values("bpp"), published=True
        )
        for codec, rows in published.groupby("codec", sort=True)
    ]


def _text(value: object) -> str | None:
    """A string cell, or None for NaN/None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
