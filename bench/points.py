"""Decoder points: one canonical, parseable id per decoder setting.

A *point* is what turns one bitstream into one reconstruction: the MSH synthesis transform, or the
diffusion decoder with a sampler, a number of steps, an eta and a seed (and, for baselines, JPEG at a
quality or a bring-your-own codec). The id names folders (``work/{dataset}/q{quality}/{point}/``)
and table rows; :func:`format_point` builds it and :func:`parse_point` reads it back, so table
columns never come from ad-hoc string slicing.

Grammar::

    msh
    {sampler}-k{steps}[-eta{eta}]-s{seed}     e.g. ddim-k10-eta0-s0, ddpm-k100-s0
    jpeg-q{quality}
    byo-{name}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bench.utils import BenchError

# Samplers whose update has an eta (stochasticity) parameter; the others carry none in their id.
SAMPLERS_WITH_ETA = frozenset({"ddim"})
SAMPLER_NAMES = frozenset({"ddpm", "ddim", "dpmpp"})

_DIFFUSION = re.compile(r"^(?P<sampler>[a-z]+)-k(?P<steps>[1-9]\d*)(?:-eta(?P<eta>\d+(?:\.\d+)?))?-s(?P<seed>\d+)$")
_JPEG = re.compile(r"^jpeg-q(?P<quality>[1-9]\d?|100)$")
_BYO = re.compile(r"^byo-(?P<name>[A-Za-z0-9_]+)$")


@dataclass(frozen=True)
class Point:
    """A decoder setting. Fields that do not apply to the decoder are None."""

    decoder: str  # "msh", "diffusion", "jpeg" or "byo"
    sampler: str | None = None
    steps: int | None = None
    eta: float | None = None
    seed: int | None = None
    quality: int | None = None  # JPEG quality
    name: str | None = None  # bring-your-own codec name

    @property
    def id(self) -> str:
        """The canonical id (see the module grammar)."""
        return format_point(self)

    def columns(self) -> dict[str, Any]:
        """The table columns this point contributes (decoder, sampler, steps, eta, seed)."""
        return {"point": self.id, "decoder": self.decoder, "sampler": self.sampler, "steps": self.steps,
                "eta": self.eta, "seed": self.seed}


def _format_number(value: float) -> str:
    """Shortest exact decimal form of a small non-negative number (0.0 → '0', 0.5 → '0.5')."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def diffusion_point(sampler: str, steps: int, seed: int, eta: float | None = None) -> Point:
    """A validated diffusion point; eta is kept only for samplers that have one (default 0)."""
    if sampler not in SAMPLER_NAMES:
        raise BenchError(f"unknown sampler {sampler!r}; known samplers: {', '.join(sorted(SAMPLER_NAMES))}")
    if steps < 1:
        raise BenchError(f"sampler steps must be >= 1, got {steps}")
    if seed < 0:
        raise BenchError(f"seed must be >= 0, got {seed}")
    if sampler in SAMPLERS_WITH_ETA:
        eta = 0.0 if eta is None else float(eta)
        if not 0.0 <= eta <= 1.0:
            raise BenchError(f"eta must lie in [0, 1], got {eta}")
    elif eta not in (None, 0.0):
        raise BenchError(f"sampler {sampler!r} has no eta parameter (got eta={eta})")
    else:
        eta = None
    return Point("diffusion", sampler=sampler, steps=int(steps), eta=eta, seed=int(seed))


def format_point(point: Point) -> str:
    """The canonical id of ``point``."""
    if point.decoder == "msh":
        return "msh"
    if point.decoder == "jpeg":
        return f"jpeg-q{point.quality}"
    if point.decoder == "byo":
        return f"byo-{point.name}"
    eta = f"-eta{_format_number(point.eta)}" if point.eta is not None else ""
    return f"{point.sampler}-k{point.steps}{eta}-s{point.seed}"


def parse_point(text: str) -> Point:
    """Parse a point id back into a :class:`Point`; a malformed id is a BenchError naming it."""
    if text == "msh":
        return Point("msh")
    if match := _JPEG.match(text):
        return Point("jpeg", quality=int(match["quality"]))
    if match := _BYO.match(text):
        return Point("byo", name=match["name"])
    if match := _DIFFUSION.match(text):
        eta = float(match["eta"]) if match["eta"] is not None else None
        if (match["sampler"] in SAMPLERS_WITH_ETA) != (eta is not None):
            raise BenchError(f"malformed point id {text!r}: eta is required for, and only for, {sorted(SAMPLERS_WITH_ETA)}")
        point = diffusion_point(match["sampler"], int(match["steps"]), int(match["seed"]), eta)
        if format_point(point) != text:
            raise BenchError(f"point id {text!r} is not canonical; write it as {format_point(point)!r}")
        return point
    raise BenchError(
        f"malformed point id {text!r}; expected 'msh', 'SAMPLER-kSTEPS[-etaETA]-sSEED', 'jpeg-qQ' or 'byo-NAME'"
    )


def grid_points(sampling: dict[str, Any]) -> list[Point]:
    """Every diffusion point of a validated config's ``sampling`` section (grid × steps × eta × seeds).

    A non-zero eta given to a sampler that has none is an error, not silently dropped.
    """
    points = [
        diffusion_point(entry["sampler"], steps, seed, eta)
        for entry in sampling["grid"]
        for steps in entry["steps"]
        for eta in entry.get("eta", [0.0])
        for seed in sampling["seeds"]
    ]
    return list(dict.fromkeys(points))  # samplers without eta collapse eta=0 duplicates
