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
    st.builds(
        lambda k, s, n: diffusion_point(n, k, s),
        st.integers(1, 5000),
        st.integers(0, 999),
        st.sampled_from(["ddpm", "dpmpp"]),
    ),
    st.builds(
        lambda n, k, s, t0, w, avg: diffusion_point(n, k, s, t0=t0, guidance=w, n_avg=avg),
        st.sampled_from(["ddpm", "dpmpp"]),
        st.integers(1, 5000),
        st.integers(0, 999),
        st.sampled_from([0.0, 0.05, 0.3, 0.5, 1.0]),
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 7.5]),
        st.integers(1, 64),
    ),
)


@given(points)
def test_round_trip(point: Point) -> None:
    assert parse_point(format_point(point)) == point


def test_examples_from_the_design() -> None:
    assert diffusion_point("ddim", 10, 0, 0.0).id == "ddim-k10-eta0-s0"
    assert diffusion_point("ddpm", 100, 0).id == "ddpm-k100-s0"
    assert parse_point("ddpm-k100-s0").columns() == {
        "point": "ddpm-k100-s0",
        "decoder": "diffusion",
        "sampler": "ddpm",
        "steps": 100,
        "eta": None,
        "t0": 1.0,
        "guidance": 1.0,
        "n_avg": 1,
        "seed": 0,
    }


def test_knobs_appear_in_the_id_only_off_their_plain_values() -> None:
    assert diffusion_point("ddpm", 50, 0, t0=0.3).id == "ddpm-k50-t0.3-s0"
    assert diffusion_point("ddim", 5, 1, 0.0, guidance=2.0).id == "ddim-k5-eta0-w2-s1"
    assert diffusion_point("ddpm", 10, 0, n_avg=4).id == "ddpm-k10-n4-s0"
    assert diffusion_point("ddpm", 10, 0, t0=1.0, guidance=1.0, n_avg=1).id == "ddpm-k10-s0"
    point = parse_point("ddim-k5-eta0.5-t0.25-w3-n2-s7")
    assert (point.eta, point.t0, point.guidance, point.n_avg, point.seed) == (0.5, 0.25, 3.0, 2, 7)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ddim-k10-s0",
        "ddpm-k10-eta0-s0",
        "ddim-k0-eta0-s0",
        "euler-k10-s0",
        "ddim-k10-eta0.50-s0",
        "ddim-k010-eta0-s0",
        "jpeg-q0",
        "byo-",
        "msh2",
        "ddpm-k10-t1-s0",
        "ddpm-k10-w1.0-s0",
        "ddpm-k10-n1-s0",
        "ddpm-k10-t1.5-s0",
        "ddpm-k10-n0-s0",
        "ddpm-k10-w2-t0.5-s0",
    ],
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
    with pytest.raises(BenchError, match="'t0'"):
        diffusion_point("ddpm", 10, 0, t0=1.2)
    with pytest.raises(BenchError, match="'t0'"):
        diffusion_point("ddpm", 10, 0, t0=-0.1)
    with pytest.raises(BenchError, match="'n_avg'"):
        diffusion_point("ddpm", 10, 0, n_avg=0)
    with pytest.raises(BenchError, match="'guidance'"):
        diffusion_point("ddpm", 10, 0, guidance=-1.0)


def test_grid_expands_steps_etas_and_seeds() -> None:
    config = validate_config(
        {
            "sampling": {
                "grid": [{"sampler": "ddim", "steps": [5, 10], "eta": [0.0, 1.0]}, {"sampler": "ddpm", "steps": [50]}],
                "seeds": [0, 1],
            }
        }
    )
    ids = [p.id for p in grid_points(config["sampling"])]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2 + 2
    assert "ddim-k10-eta1-s1" in ids and "ddpm-k50-s1" in ids


def test_grid_expands_the_knobs() -> None:
    config = validate_config(
        {"sampling": {"grid": [{"sampler": "ddpm", "steps": [20], "t0": [0.2, 0.5, 1.0], "n_avg": [1, 4]}]}}
    )
    ids = [p.id for p in grid_points(config["sampling"])]
    assert ids == [
        "ddpm-k20-t0.2-s0",
        "ddpm-k20-t0.2-n4-s0",
        "ddpm-k20-t0.5-s0",
        "ddpm-k20-t0.5-n4-s0",
        "ddpm-k20-s0",
        "ddpm-k20-n4-s0",
    ]


@pytest.mark.parametrize(
    "entry, key", [({"t0": [1.5]}, "t0"), ({"n_avg": [0]}, "n_avg"), ({"guidance": [-1]}, "guidance")]
)
def test_schema_rejects_bad_knobs(entry: dict, key: str) -> None:
    with pytest.raises(BenchError, match=key):
        validate_config({"sampling": {"grid": [{"sampler": "ddpm", "steps": [20], **entry}]}})
