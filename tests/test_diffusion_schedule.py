"""Noise schedules: closed forms, respacing, and the prediction-type conversions."""

from __future__ import annotations

import math

import pytest
import torch

from bench.diffusion.schedule import make_schedule, space_timesteps
from bench.utils import BenchError


def test_cosine_schedule_follows_its_alpha_bar_formula() -> None:
    T, s = 1000, 0.008
    sched = make_schedule("cosine", T, None)
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expected = torch.tensor([f((i + 1) / T) / f(0) for i in range(T)], dtype=torch.float64)
    # beta is clipped at 0.999 only at the very end, where abar is already ~0
    assert torch.allclose(sched.alphas_cumprod[:-1], expected[:-1], rtol=1e-9, atol=1e-12)
    assert sched.betas.max() <= 0.999
    assert torch.equal(sched.timestep_map, torch.arange(T))


def test_linear_schedule_is_scaled_to_the_step_count() -> None:
    sched = make_schedule("linear", 4000, None)
    assert sched.betas[0].item() == pytest.approx(1e-4 / 4)
    assert sched.betas[-1].item() == pytest.approx(0.02 / 4)
    assert bool((sched.betas.diff() > 0).all())


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize(("T", "K"), [(4000, 1000), (1000, 10), (1000, 7), (50, 50)])
def test_respacing_keeps_alphas_cumprod_of_the_kept_steps(kind: str, T: int, K: int) -> None:
    full = make_schedule(kind, T, None)
    spaced = make_schedule(kind, T, K)
    m = spaced.timestep_map
    assert spaced.num_steps == K == len(set(m.tolist()))
    assert m[0].item() == 0 and m[-1].item() == T - 1
    gaps = m.diff()
    assert int(gaps.max() - gaps.min()) <= 1  # evenly spaced up to rounding
    assert torch.allclose(spaced.alphas_cumprod, full.alphas_cumprod[m], rtol=1e-12)


def test_respacing_more_steps_than_trained_is_an_error() -> None:
    with pytest.raises(BenchError, match="cannot respace"):
        space_timesteps(10, 11)
    with pytest.raises(BenchError, match="unknown noise schedule"):
        make_schedule("sigmoid", 10, None)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_each_target_converts_back_to_x0(prediction_type: str) -> None:
    sched = make_schedule("cosine", 1000, None)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 990])
    x_t = sched.q_sample(x0, t, noise)
    target = sched.target(prediction_type, x0, noise, t)
    assert torch.allclose(sched.predict_x0(prediction_type, target, x_t, t), x0, atol=1e-4)


def test_learned_range_spans_posterior_to_beta() -> None:
    sched = make_schedule("cosine", 100, None)
    t = torch.tensor([5, 50])
    lo = sched.learned_range_log_variance(-torch.ones(2, 3, 1, 1), t)
    hi = sched.learned_range_log_variance(torch.ones(2, 3, 1, 1), t)
    assert torch.allclose(lo[:, 0, 0, 0], torch.log(sched.posterior_variance[t]).float())
    assert torch.allclose(hi[:, 0, 0, 0], torch.log(sched.betas[t]).float())
