"""The decode-time knobs of bench.diffusion.samplers (start level t0, guidance w, sample averaging N) against
the analytic Gaussian denoiser of tests/test_samplers.py.

For data x0 ~ N(mu, s² I) every optimal prediction (eps, x0, v) is affine in mu at fixed x_t, so
guidance ``u + w (c - u)`` with the unconditional branch's mu = 0 is exactly the optimal model of
data N(w mu, s² I): a guided run must equal a plain run on means scaled by w. Averaging N
independent samples divides the variance by N; the expected spread of one sample comes from the
exact recursion ``expected_output``.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from bench.diffusion.samplers import AVERAGING_STRIDE, plan_sampling, sample
from bench.points import Knobs
from bench.utils import BenchError
from tests.test_samplers import MUS, SEEDS, Z_SE, AnalyticDecoder, S, conditioning, expected_output

LATENT = 2


def run(
    model: AnalyticDecoder,
    sampler: str,
    steps: int,
    *,
    mus: tuple[float, ...] = MUS,
    seeds=SEEDS,
    x_start: torch.Tensor | None = None,
    **knobs: float,
) -> torch.Tensor:
    return sample(
        model,
        conditioning(model, mus),
        sampler=sampler,
        steps=steps,
        seeds=seeds,
        clip=False,
        knobs=Knobs(**knobs),
        x_start=x_start,
        progress=False,
    )


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp"])
def test_guidance_one_and_zero_are_the_conditional_and_unconditional_models(sampler: str) -> None:
    """w = 1 and w = 0 take one-branch shortcuts; each must be the two-branch ``u + w (c - u)`` at that
    w (taken 1e-6 away, so the general path runs; the shortcuts' outputs differ from the other branch's
    by |mu| >= 0.2), and w = 0 is the model on zeroed conditioning."""
    model = AnalyticDecoder("sample")
    for w in (1.0, 0.0):
        torch.testing.assert_close(
            run(model, sampler, 10, guidance=w), run(model, sampler, 10, guidance=w + 1e-6), rtol=0, atol=1e-4
        )
    assert torch.equal(run(model, sampler, 10, guidance=0.0), run(model, sampler, 10, mus=(0.0,) * len(MUS)))


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_guidance_scales_the_data_mean(sampler: str, prediction_type: str) -> None:
    """w = 2.5 on N(mu, s²) data is the optimal model of N(2.5 mu, s²): same seeds, same samples up to
    float32 rounding (amplified by 1/sqrt(abar) where eps is turned into x0 near pure noise); the
    means differ by 1.5 |mu| >= 0.3, far above the tolerance."""
    model = AnalyticDecoder(prediction_type)
    guided = run(model, sampler, 10, guidance=2.5)
    scaled = run(model, sampler, 10, mus=tuple(2.5 * mu for mu in MUS))
    torch.testing.assert_close(guided, scaled, rtol=0, atol=2e-3)


def test_sample_averaging_divides_the_variance_by_n() -> None:
    model = AnalyticDecoder("epsilon")
    steps = 10
    mean_exp, std_exp = expected_output(model.noise_schedule(steps), MUS[0], S, stochastic="small")
    for n_avg in (1, 4, 16):
        out = run(model, "ddpm", steps, mus=MUS[:1], seeds=[0], n_avg=n_avg)[0, 0].double().flatten()
        std_n = std_exp / math.sqrt(n_avg)
        assert abs(float(out.mean()) - mean_exp) <= Z_SE * std_n / math.sqrt(out.numel())
        assert abs(float(out.std()) - std_n) <= Z_SE * std_n / math.sqrt(2 * out.numel()), n_avg


def test_the_first_averaged_sample_is_the_plain_sample() -> None:
    """Seed s's plain sample is the first of its N averaged ones (so curves over N are nested) and the
    others are the plain samples of seeds s + j·AVERAGING_STRIDE, which no small seed reaches."""
    model = AnalyticDecoder("epsilon")
    plain = run(model, "ddpm", 5, seeds=SEEDS)
    second = run(model, "ddpm", 5, seeds=[seed + AVERAGING_STRIDE for seed in SEEDS])
    torch.testing.assert_close(run(model, "ddpm", 5, seeds=SEEDS, n_avg=2), (plain + second) / 2, rtol=0, atol=1e-6)
    assert not torch.allclose(plain, second, atol=0.1)  # the two samples of a seed differ


def test_start_level_zero_returns_the_start_image_and_one_ignores_it() -> None:
    model = AnalyticDecoder("sample")
    x_start = torch.rand(len(MUS), 3, 16 * LATENT, 16 * LATENT) * 2 - 1
    zero = run(model, "ddpm", 10, x_start=x_start, t0=0.0)
    assert torch.equal(zero, x_start[:, None].expand(-1, len(SEEDS), -1, -1, -1))
    assert torch.equal(run(model, "ddpm", 10, x_start=x_start, t0=1.0), run(model, "ddpm", 10))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp"])
def test_distance_from_the_start_image_grows_with_t0(sampler: str) -> None:
    """From an image 0.8 away from the data mean, a longer partial chain moves further toward the data."""
    model = AnalyticDecoder("sample")
    x_start = torch.full((len(MUS), 3, 16 * LATENT, 16 * LATENT), 0.8) + torch.tensor(MUS).view(-1, 1, 1, 1)
    distances = [
        float((run(model, sampler, 20, x_start=x_start, t0=t0) - x_start[:, None]).abs().mean())
        for t0 in (0.0, 0.1, 0.3, 0.6, 1.0)
    ]
    assert distances == sorted(distances) and distances[0] == 0.0, distances
    assert distances[-1] > 0.7  # the full chain ignores the start image: |N(-0.8, s²)| on average


def test_record_counts_network_evaluations_of_every_knob() -> None:
    model = AnalyticDecoder("sample")
    steps = 10
    model_times = plan_sampling(model, sampler="ddpm", steps=steps, clip=True).record()["model_timesteps"]
    kept = sum(t <= 0.5 * (model.config.train_timesteps - 1) for t in model_times)
    cases = {
        Knobs(): steps,
        Knobs(t0=0.5): kept,
        Knobs(t0=0.0): 0,
        Knobs(guidance=2.0): 2 * steps,
        Knobs(guidance=0.0): steps,
        Knobs(n_avg=3): 3 * steps,
        Knobs(t0=0.5, guidance=3.0, n_avg=2): kept * 4,
    }
    for knobs, nfe in cases.items():
        record = plan_sampling(model, sampler="ddpm", steps=steps, clip=True, knobs=knobs).record()
        assert record["network_evaluations"] == nfe, knobs
        assert (record["t0"], record["guidance"], record["n_avg"]) == (knobs.t0, knobs.guidance, knobs.n_avg)


def test_bad_knobs_name_the_key() -> None:
    model = AnalyticDecoder("sample")
    for kwargs, key in (
        ({"t0": 1.5}, "t0"),
        ({"t0": -0.2}, "t0"),
        ({"n_avg": 0}, "n_avg"),
        ({"guidance": -1.0}, "guidance"),
    ):
        with pytest.raises(BenchError, match=f"'{key}'"):
            run(model, "ddpm", 4, **kwargs)
    with pytest.raises(BenchError, match="'t0'"):
        run(model, "ddpm", 4, t0=0.5)  # no MSH reconstruction to start from


def test_guidance_needs_a_decoder_trained_with_conditioning_dropout() -> None:
    model = AnalyticDecoder("sample")
    model.checkpoint_info = {"train": {"p_uncond": 0.0}}
    with pytest.raises(BenchError, match="'guidance'.*p_uncond"):
        plan_sampling(model, sampler="ddim", steps=4, clip=True, knobs=Knobs(guidance=2.0))
    plan_sampling(model, sampler="ddim", steps=4, clip=True, knobs=Knobs(guidance=1.0))


@pytest.mark.parametrize("steps", [10, 20])
def test_dpmpp_start_level_below_its_last_timestep_is_refused(steps: int) -> None:
    """DPM-Solver++'s K timesteps end at about T/K (then a jump to sigma 0): a t0 below that has no
    step to start from (it raised IndexError); the message names the smallest t0 that works, and it does."""
    model = AnalyticDecoder("sample")
    with pytest.raises(BenchError, match=r"'t0'=0.01 is below the last timestep .* use t0 >= ([\d.]+)") as info:
        plan_sampling(model, sampler="dpmpp", steps=steps, clip=True, knobs=Knobs(t0=0.01))
    smallest = float(re.search(r"t0 >= ([\d.]+)", str(info.value)).group(1))
    x_start = torch.zeros(len(MUS), 3, 16 * LATENT, 16 * LATENT)
    out = run(model, "dpmpp", steps, x_start=x_start, t0=smallest)
    record = plan_sampling(model, sampler="dpmpp", steps=steps, clip=True, knobs=Knobs(t0=smallest)).record()
    assert record["steps_run"] == 1 and out.isfinite().all()
