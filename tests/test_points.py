"""Point ids: format and parse are inverse, malformed ids are rejected with a clear error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.config import validate_config
from bench.points import Point, diffusion_point, format_point, grid_points, parse_point
from bench.utils import BenchError

etas = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0])
points = st.one_of(
    st.just(Point("msh")),
    st.builds(lambda q: Point("jpeg", quality=q), st.integers(1, 100)),
    st.builds(lambda n: Point("byo", name=n), st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True)),
    st.builds(lambda k, s, e: diffusion_point("ddim", k, s, e), st.integers(1, 5000), st.integers(0, 999), etas),
    st.builds(lambda k, s, n: diffusion_point(n, k, s), st.integers(1, 5000), st.integers(0, 999),
              st.sampled_from(["ddpm", "dpmpp"])),
)


@given(points)
def test_round_trip(point: Point) -> None:
    assert parse_point(format_point(point)) == point


def test_examples_from_the_design() -> None:
    assert diffusion_point("ddim", 10, 0, 0.0).id == "ddim-k10-eta0-s0"
    assert diffusion_point("ddpm", 100, 0).id == "ddpm-k100-s0"
    assert parse_point("ddpm-k100-s0").columns() == {
        "point": "ddpm-k100-s0", "decoder": "diffusion", "sampler": "ddpm", "steps": 100, "eta": None, "seed": 0,
    }


@pytest.mark.parametrize(
    "text",
    ["", "ddim-k10-s0", "ddpm-k10-eta0-s0", "ddim-k0-eta0-s0", "euler-k10-s0", "ddim-k10-eta0.50-s0",
     "ddim-k010-eta0-s0", "jpeg-q0", "byo-", "msh2"],
)
def test_malformed_ids_are_rejected(text: str) -> None:
    with pytest.raises(BenchError):
        parse_point(text)


def test_bad_values() -> None:
    with pytest.raises(BenchError, match="eta"):
        diffusion_point("ddim", 10, 0, 1.5)
    with pytest.raises(BenchError, match="no eta"):
        diffusion_point("ddpm", 10, 0, 0.5)
    with pytest.raises(BenchError, match="unknown sampler"):
        diffusion_point("heun", 10, 0)


def test_grid_expands_steps_etas_and_seeds() -> None:
    config = validate_config({"sampling": {"grid": [{"sampler": "ddim", "steps": [5, 10], "eta": [0.0, 1.0]},
                                                    {"sampler": "ddpm", "steps": [50]}], "seeds": [0, 1]}})
    ids = [p.id for p in grid_points(config["sampling"])]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2 + 2
    assert "ddim-k10-eta1-s1" in ids and "ddpm-k50-s1" in ids
