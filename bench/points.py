"""Decoder points: one canonical, parseable id per decoder setting.

A *point* is what turns one bitstream into one reconstruction: the MSH synthesis transform, or the
diffusion decoder with a sampler, a number of steps, an eta, the decode-time knobs (start level t0,
guidance scale w, number of averaged samples N) and a seed (and, for baselines, JPEG at a quality or
a bring-your-own codec). The id names folders (``work/{dataset}/q{quality}/{point}/``)
and table rows; :func:`format_point` builds it and :func:`parse_point` reads it back, so table
columns never come from ad-hoc string slicing.

Grammar::

    msh
    {sampler}-k{steps}[-eta{eta}][-t{t0}][-w{w}][-n{N}]-s{seed}
                                   e.g. ddim-k10-eta0-s0, ddpm-k100-s0, ddpm-k50-t0.3-s0, ddim-k5-eta0-w2-s0

A knob at its plain value (t0 = 1: the full chain, w = 1: the conditional model, N = 1: one sample)
is left out of the id, so the paper's points keep their short names.
    jpeg-q{quality}
    byo-{name}
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from bench.sampler_facts import SAMPLER_NAMES, SAMPLERS_WITH_ETA
from bench.utils import BenchError

_NUMBER = r"\d+(?:\.\d+)?"
_DIFFUSION = re.compile(
    rf"^(?P<sampler>[a-z]+)-k(?P<steps>[1-9]\d*)(?:-eta(?P<eta>{_NUMBER}))?(?:-t(?P<t0>{_NUMBER}))?"
    rf"(?:-w(?P<guidance>{_NUMBER}))?(?:-n(?P<n_avg>[1-9]\d*))?-s(?P<seed>\d+)$"
)
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
    t0: float | None = None  # start level of partial diffusion from the MSH output (1 = full chain)
    guidance: float | None = None  # classifier-free guidance scale w (1 = the conditional model)
    n_avg: int | None = None  # samples averaged into one reconstruction (1 = none)

    @property
    def id(self) -> str:
        """The canonical id (see the module grammar)."""
        return format_point(self)

    @property
    def knobs(self) -> Knobs:
        """A diffusion point's decode-time knobs."""
        return Knobs(t0=self.t0, guidance=self.guidance, n_avg=self.n_avg)

    def columns(self) -> dict[str, Any]:
        """The table columns this point contributes (decoder, sampler, steps, eta, knobs, seed)."""
        return {
            "point": self.id,
            "decoder": self.decoder,
            "sampler": self.sampler,
            "steps": self.steps,
            "eta": self.eta,
            "t0": self.t0,
            "guidance": self.guidance,
            "n_avg": self.n_avg,
            "seed": self.seed,
        }


def _format_number(value: float) -> str:
    """Shortest exact decimal form of a small non-negative number (0.0 → '0', 0.5 → '0.5')."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def check_knobs(t0: float, guidance: float, n_avg: int) -> tuple[float, float, int]:
    """The decode-time knobs as (float, float, int), or a BenchError naming the bad key."""
    if isinstance(t0, bool) or not isinstance(t0, int | float) or not 0.0 <= t0 <= 1.0:
        raise BenchError(f"'t0' (start level of partial diffusion) must lie in [0, 1], got {t0!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not guidance >= 0.0:
        raise BenchError(f"'guidance' (classifier-free guidance scale w) must be >= 0, got {guidance!r}")
    if isinstance(n_avg, bool) or not isinstance(n_avg, int) or n_avg < 1:
        raise BenchError(f"'n_avg' (number of averaged samples N) must be an integer >= 1, got {n_avg!r}")
    return float(t0), float(guidance), int(n_avg)


@dataclass(frozen=True)
class Knobs:
    """The decode-time knobs of a point: start level t0, guidance scale w, N averaged samples (see
    bench/diffusion/samplers.py); its defaults, the one place they are written, are the plain sampler:
    the full-chain, conditional, one-sample decode."""

    t0: float = 1.0
    guidance: float = 1.0
    n_avg: int = 1

    def __post_init__(self) -> None:
        check_knobs(self.t0, self.guidance, self.n_avg)

    @property
    def evaluations_per_step(self) -> int:
        """Network evaluations per step and sample: two for guidance other than 0 or 1."""
        return 1 if self.guidance in (0.0, 1.0) else 2


# The knobs at their plain values, by name (a point id leaves these out).
KNOB_DEFAULTS: dict[str, float | int] = asdict(Knobs())


def diffusion_point(
    sampler: str,
    steps: int,
    seed: int,
    eta: float | None = None,
    *,
    t0: float = Knobs.t0,
    guidance: float = Knobs.guidance,
    n_avg: int = Knobs.n_avg,
) -> Point:
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
    t0, guidance, n_avg = check_knobs(t0, guidance, n_avg)
    return Point(
        "diffusion", sampler=sampler, steps=int(steps), eta=eta, seed=int(seed), t0=t0, guidance=guidance, n_avg=n_avg
    )


def format_point(point: Point) -> str:
    """The canonical id of ``point``."""
    if point.decoder == "msh":
        return "msh"
    if point.decoder == "jpeg":
        return f"jpeg-q{point.quality}"
    if point.decoder == "byo":
        return f"byo-{point.name}"
    eta = f"-eta{_format_number(point.eta)}" if point.eta is not None else ""
    t0 = f"-t{_format_number(point.t0)}" if point.t0 not in (None, KNOB_DEFAULTS["t0"]) else ""
    guidance = f"-w{_format_number(point.guidance)}" if point.guidance not in (None, KNOB_DEFAULTS["guidance"]) else ""
    n_avg = f"-n{point.n_avg}" if point.n_avg not in (None, KNOB_DEFAULTS["n_avg"]) else ""
    return f"{point.sampler}-k{point.steps}{eta}{t0}{guidance}{n_avg}-s{point.seed}"


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
            raise BenchError(
                f"malformed point id {text!r}: eta is required for, and only for, {sorted(SAMPLERS_WITH_ETA)}"
            )
        knobs = {
            key: type(default)(match[key]) if match[key] is not None else default
            for key, default in KNOB_DEFAULTS.items()
        }
        point = diffusion_point(match["sampler"], int(match["steps"]), int(match["seed"]), eta, **knobs)
        if format_point(point) != text:
            raise BenchError(f"point id {text!r} is not canonical; write it as {format_point(point)!r}")
        return point
    raise BenchError(
        f"malformed point id {text!r}; expected 'msh', 'SAMPLER-kSTEPS[-etaETA][-tT0][-wW][-nN]-sSEED', 'jpeg-qQ' "
        "or 'byo-NAME'"
    )


def grid_points(sampling: dict[str, Any]) -> list[Point]:
    """Every diffusion point of a validated config's ``sampling`` section (grid × steps × eta × t0 ×
    guidance × n_avg × seeds).

    A non-zero eta given to a sampler that has none is an error, not silently dropped.
    """
    points = [
        diffusion_point(entry["sampler"], steps, seed, eta, t0=t0, guidance=guidance, n_avg=n_avg)
        for entry in sampling["grid"]
        for steps in entry["steps"]
        for eta in entry.get("eta", [0.0])
        for t0 in entry.get("t0", [1.0])
        for guidance in entry.get("guidance", [1.0])
        for n_avg in entry.get("n_avg", [1])
        for seed in sampling["seeds"]
    ]
    return list(dict.fromkeys(points))  # samplers without eta collapse eta=0 duplicates
