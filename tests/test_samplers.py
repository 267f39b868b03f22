"""Sampler registry and loop (bench.diffusion.samplers) against an analytic denoiser on Gaussian data.

For data x0 ~ N(mu, s² I) and x_t = a x0 + b eps (a² = abar_t, b² = 1 - abar_t) the Bayes-optimal
predictions are linear in x_t: with z = x_t - a mu and V = a² s² + b²,

    E[eps | x_t] = b z / V,     E[x0 | x_t] = mu + a s² z / V,     E[v | x_t] = a E[eps] - b E[x0].

The test double below is only that formula behind the DiffusionDecoder call signature; the
schedulers and the loop under test are the real ones. Because every sampler step is then affine
in x_t plus independent Gaussian noise, the distribution each sampler produces is Gaussian with a
mean and variance given by a scalar recursion over the respaced schedule (:func:`expected_output`).
That recursion, not a recorded run, is the expectation; its difference from (mu, s) is the
discretisation bias (DDIM and DDPM with the posterior variance shrink the spread at few steps),
and it vanishes as the step count grows. Sampling error is judged with 5 standard errors
(all pixels are independent draws).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from torch import nn

from bench.config import validate_config
from bench.diffusion.model import Condition, DecoderConfig
from bench.diffusion.samplers import SAMPLERS, plan_sampling, rebuild_scheduler, sample
from bench.diffusion.schedule import NoiseSchedule, make_schedule
from bench.sampler_facts import PREDICTION_TYPES, SAMPLER_FACTS
from bench.utils import BenchError

S = 0.3  # data standard deviation
MUS = (0.2, -0.3)  # one mean per image: checks that each image keeps its own conditioning
SEEDS = [0, 1, 2]
LATENT = 2  # y_hat is LATENT x LATENT → images are 32 x 32 (9k pixels per image and seed triple)
Z_SE = 5.0  # standard errors allowed for sampling noise


class AnalyticDecoder(nn.Module):
    """Bayes-optimal predictor for x0 ~ N(mu_i, S² I), mu_i = y_hat[i, 0, 0, 0] (test double).

    With ``learn_sigma`` it appends a constant learned-range value ``var_value`` (1: the variance
    beta_t, -1: the posterior variance) so the DDPM variance path can be checked exactly.
    """

    def __init__(
        self,
        prediction_type: str = "epsilon",
        learn_sigma: bool = False,
        var_value: float = 1.0,
        s: float = S,
        schedule: str = "cosine",
        train_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        self.config = DecoderConfig(
            latent_channels=1,
            prediction_type=prediction_type,
            learn_sigma=learn_sigma,
            schedule=schedule,
            train_timesteps=train_timesteps,
            respacing=None,
        )
        self.s, self.var_value = s, var_value
        self.register_buffer("abar", make_schedule(schedule, train_timesteps, None).alphas_cumprod)
        self.checkpoint_info = {"train": {"p_uncond": 0.1}}  # as if trained with conditioning dropout

    def noise_schedule(self, respacing: int | None) -> NoiseSchedule:
        return make_schedule(self.config.schedule, self.config.train_timesteps, respacing)

    def condition(self, y_hat: torch.Tensor, x_msh: torch.Tensor | None = None) -> Condition:
        return Condition(y_hat=y_hat, x_msh=x_msh, features=None)

    def drop_condition(self, cond: Condition, keep: torch.Tensor) -> Condition:
        """The unconditional branch: zeroed y_hat, i.e. data N(0, S² I)."""
        return Condition(y_hat=cond.y_hat * keep.to(cond.y_hat.dtype).view(-1, 1, 1, 1), x_msh=None, features=None)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        mu = cond.y_hat[:, :1, :1, :1].double()
        a2 = self.abar[t].view(-1, 1, 1, 1)
        a, b = a2.sqrt(), (1 - a2).sqrt()
        z = x_t.double() - a * mu
        var = a2 * self.s**2 + 1 - a2
        eps, x0 = b * z / var, mu + a * self.s**2 * z / var
        out = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - b * x0}[self.config.prediction_type]
        if self.config.learn_sigma:
            out = torch.cat([out, torch.full_like(out, self.var_value)], dim=1)
        return out.float()


def conditioning(model: AnalyticDecoder, mus: tuple[float, ...] = MUS) -> Condition:
    y_hat = torch.tensor(mus, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, LATENT, LATENT).contiguous()
    return model.condition(y_hat)


def expected_output(
    schedule: NoiseSchedule, mu: float, s: float, *, stochastic: str, eta: float = 0.0
) -> tuple[float, float]:
    """Mean and std of a sampler's output for the analytic model (no clipping), by exact recursion.

    Each step maps z = x - a mu to z' = c z + sigma n: the mean part of every sampler here is
    a' x0_hat + sqrt(b'² - sigma_m²) eps_hat (DDIM with noise sigma_m² = eta² · posterior variance;
    DDPM's posterior mean is the eta = 1 case), and the added noise variance is eta² · posterior
    variance (DDIM), the posterior variance ("small") or beta ("large") for DDPM. The chain starts
    at x_T ~ N(0, 1), i.e. z_T has mean -a_T mu.
    """
    abar = schedule.alphas_cumprod.tolist()
    mean, var = -math.sqrt(abar[-1]) * mu, 1.0
    for k in range(len(abar) - 1, -1, -1):
        a2, p2 = abar[k], (abar[k - 1] if k > 0 else 1.0)
        a, b, ap, bp = math.sqrt(a2), math.sqrt(1 - a2), math.sqrt(p2), math.sqrt(1 - p2)
        beta = 1 - a2 / p2
        posterior = (1 - p2) / (1 - a2) * beta
        if stochastic == "ddim":
            mean_noise = added = eta**2 * posterior
        else:
            mean_noise = posterior
            added = 0.0 if k == 0 else {"small": posterior, "large": beta}[stochastic]
        c = (ap * a * s * s + math.sqrt(max(bp * bp - mean_noise, 0.0)) * b) / (a2 * s * s + 1 - a2)
        mean, var = c * mean, c * c * var + added
    return mu + mean, math.sqrt(var)


def check_matches(out: torch.Tensor, mus: tuple[float, ...], expected: list[tuple[float, float]], s: float) -> None:
    """Per image: sample mean/std within Z_SE standard errors of ``expected``, and no further from
    (mu, s) than the derived discretisation bias plus that sampling error."""
    for i, (mu, (mean_exp, std_exp)) in enumerate(zip(mus, expected, strict=True)):
        x = out[i].double().flatten()
        se_mean, se_std = std_exp / math.sqrt(x.numel()), std_exp / math.sqrt(2 * x.numel())
        mean, std = float(x.mean()), float(x.std())
        assert abs(mean - mean_exp) <= Z_SE * se_mean, (i, mean, mean_exp)
        assert abs(std - std_exp) <= Z_SE * se_std, (i, std, std_exp)
        assert abs(mean - mu) <= abs(mean_exp - mu) + Z_SE * se_mean
        assert abs(std - s) <= abs(std_exp - s) + Z_SE * se_std


def run(
    model: AnalyticDecoder,
    sampler: str,
    steps: int,
    *,
    eta: float = 0.0,
    seeds=SEEDS,
    clip: bool = False,
    mus: tuple[float, ...] = MUS,
) -> torch.Tensor:
    return sample(
        model, conditioning(model, mus), sampler=sampler, steps=steps, eta=eta, seeds=seeds, clip=clip, progress=False
    )


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("steps", [5, 10, 50, 200])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_reproduces_gaussian_data(sampler: str, steps: int, prediction_type: str) -> None:
    model = AnalyticDecoder(prediction_type)
    out = run(model, sampler, steps)
    assert out.shape == (len(MUS), len(SEEDS), 3, 16 * LATENT, 16 * LATENT)
    schedule = model.noise_schedule(steps)
    kind = "ddim" if sampler == "ddim" else "small"
    check_matches(out, MUS, [expected_output(schedule, mu, S, stochastic=kind) for mu in MUS], S)


def test_discretisation_bias_vanishes_with_steps() -> None:
    """The derived expectation itself converges to the data distribution (so the tests above say
    that the samplers do, not only that they match a biased formula)."""
    for kind in ("ddim", "small"):
        errors = [
            abs(expected_output(make_schedule("cosine", 1000, k), 0.2, S, stochastic=kind)[1] - S)
            for k in (10, 50, 200, 1000)
        ]
        assert errors == sorted(errors, reverse=True)
        assert errors[-1] < 0.01 * S


@pytest.mark.parametrize("var_value, kind", [(1.0, "large"), (-1.0, "small")])
def test_ddpm_uses_learned_range_variance(var_value: float, kind: str) -> None:
    model = AnalyticDecoder("epsilon", learn_sigma=True, var_value=var_value)
    out = run(model, "ddpm", 20)
    schedule = model.noise_schedule(20)
    check_matches(out, MUS, [expected_output(schedule, mu, S, stochastic=kind) for mu in MUS], S)


def test_ddim_eta_adds_posterior_noise() -> None:
    model = AnalyticDecoder("sample")
    out = run(model, "ddim", 20, eta=1.0)
    schedule = model.noise_schedule(20)
    check_matches(out, MUS, [expected_output(schedule, mu, S, stochastic="ddim", eta=1.0) for mu in MUS], S)


def test_dpmpp_converges_to_data() -> None:
    """DPM-Solver++ integrates the probability-flow ODE, which maps N(0, I) onto the data exactly:
    its error must shrink with steps and be small (second-order solver) at 50."""
    model = AnalyticDecoder("v_prediction")
    std_error = {k: abs(float(run(model, "dpmpp", k, mus=(0.2,))[0].std()) - S) for k in (5, 50)}
    assert std_error[50] < std_error[5]
    out = run(model, "dpmpp", 50, mus=(0.2,))[0].double()
    n = out.numel()
    assert abs(float(out.mean()) - 0.2) <= Z_SE * S / math.sqrt(n)
    assert abs(float(out.std()) - S) <= Z_SE * S / math.sqrt(2 * n) + 0.02 * S


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_prediction_types_agree(sampler: str) -> None:
    """x0- and v-prediction of the same optimal model give the same samples (same seeds), up to
    float32 rounding accumulated over the steps; eps-prediction matches them in distribution above."""
    outs = [run(AnalyticDecoder(p), sampler, 50, seeds=[0]) for p in ("sample", "v_prediction")]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=50 * 8 * torch.finfo(torch.float32).eps)


@pytest.mark.parametrize("sampler, eta", [("ddpm", 0.0), ("ddim", 0.5), ("ddim", 0.0), ("dpmpp", 0.0)])
def test_seeds_are_reproducible_and_independent_of_batch(sampler: str, eta: float) -> None:
    model = AnalyticDecoder("epsilon")
    both = run(model, sampler, 10, eta=eta, seeds=[0, 1])
    again = run(model, sampler, 10, eta=eta, seeds=[0, 1])
    assert torch.equal(both, again)
    # image 1 with seed 1, sampled alone, is bit-identical to its row in the bigger batch
    alone = run(model, sampler, 10, eta=eta, seeds=[1], mus=MUS[1:])
    assert torch.equal(alone[0, 0], both[1, 1])
    assert not torch.allclose(both[0, 0], both[0, 1])  # different seeds, different samples


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_clip_keeps_x0_in_range(sampler: str) -> None:
    """Data far outside [-1, 1] (mu 0.9, s 0.5): clipping keeps every output in range, no clipping does not."""
    model = AnalyticDecoder("sample", s=0.5)
    clipped = run(model, sampler, 10, clip=True, mus=(0.9,), seeds=[0])
    assert clipped.abs().max() <= 1.0
    assert run(model, sampler, 10, clip=False, mus=(0.9,), seeds=[0]).max() > 1.0


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp"])
def test_variance_channels_are_ignored_by_mean_only_samplers(sampler: str) -> None:
    plain = run(AnalyticDecoder("sample"), sampler, 10, seeds=[0])
    learned = run(AnalyticDecoder("sample", learn_sigma=True), sampler, 10, seeds=[0])
    assert torch.equal(plain, learned)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"sampler": "euler"}, "sampler"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": 1001}, "steps"),
        ({"sampler": "ddim", "eta": 1.5}, "eta"),
        ({"sampler": "ddim", "eta": -0.1}, "eta"),
        ({"sampler": "ddpm", "eta": 0.5}, "eta"),
        ({"sampler": "dpmpp", "eta": 0.5}, "eta"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [-1]}, "seeds"),
    ],
)
def test_bad_arguments_name_the_key(kwargs: dict, key: str) -> None:
    model = AnalyticDecoder()
    args = {"sampler": "ddim", "steps": 4, "eta": 0.0, "seeds": [0], "clip": True, **kwargs}
    with pytest.raises(BenchError, match=f"'{key}'"):
        sample(model, conditioning(model), progress=False, **args)


def test_respaced_chain_must_start_at_pure_noise() -> None:
    """A respaced schedule whose last step is not the last training step would start x_T ~ N(0, I)
    at a partly clean level: refused rather than sampled."""
    model = AnalyticDecoder()
    full = model.noise_schedule(None)
    truncated = NoiseSchedule(betas=full.betas[:10], timestep_map=torch.arange(10))
    model.noise_schedule = lambda respacing: full if respacing is None else truncated
    with pytest.raises(BenchError, match="'steps'"):
        plan_sampling(model, sampler="ddim", steps=10, clip=True)


@pytest.mark.parametrize(
    "sampler, cls", [("ddpm", DDPMScheduler), ("ddim", DDIMScheduler), ("dpmpp", DPMSolverMultistepScheduler)]
)
@pytest.mark.parametrize("train_timesteps, steps", [(1000, 8), (4000, 10)])
def test_record_rebuilds_the_scheduler(sampler: str, cls: type, train_timesteps: int, steps: int) -> None:
    """The JSON record rebuilds the scheduler that ran: same timesteps, same float32 tables, same step
    output. (diffusers' from_config alone recomputes abar in float32: on T=4000, DDIM-10's first step
    gets abar = 0 instead of 1.5e-10.)"""
    model = AnalyticDecoder("epsilon", train_timesteps=train_timesteps)
    plan = plan_sampling(model, sampler=sampler, steps=steps, clip=True)
    record = json.loads(json.dumps(plan.record()))
    assert record["sampler"] == sampler and record["steps"] == steps and record["clip_denoised"] is True
    assert record["scheduler"]["_class_name"] == cls.__name__
    ran, rebuilt = plan.scheduler(), rebuild_scheduler(record)
    assert rebuilt.timesteps.tolist() == ran.timesteps.tolist() == record["scheduler_timesteps"]
    tables = ["betas", "alphas", "alphas_cumprod"] + (
        ["alpha_t", "sigma_t", "lambda_t", "sigmas"] if sampler == "dpmpp" else []
    )
    for name in tables:
        assert torch.equal(getattr(rebuilt, name), getattr(ran, name)), name
    t = int(ran.timesteps[0])
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    steps_out = [s.step(eps, t, x, generator=torch.Generator().manual_seed(2)).prev_sample for s in (ran, rebuilt)]
    assert torch.equal(*steps_out) and steps_out[0].isfinite().all()
    assert record["model_timesteps"] == plan.schedule.timestep_map[record["scheduler_timesteps"]].tolist()
    assert record["network_evaluations"] == steps
    if SAMPLER_FACTS[sampler].respaced:  # respaced chains start at the pure-noise end
        assert record["model_timesteps"][0] == model.config.train_timesteps - 1


@pytest.mark.parametrize("sampler", sorted(SAMPLER_FACTS))
def test_config_schema_allows_each_registered_sampler(sampler: str) -> None:
    """The schema file names no sampler: its allowed values come from bench.sampler_facts."""
    grid = [{"sampler": sampler, "steps": [2]}]
    assert validate_config({"sampling": {"grid": grid}})["sampling"]["grid"][0]["sampler"] == sampler


def test_config_schema_refuses_an_unregistered_sampler_naming_the_registered_ones() -> None:
    with pytest.raises(BenchError) as err:
        validate_config({"sampling": {"grid": [{"sampler": "euler", "steps": [2]}]}})
    assert all(name in str(err.value) for name in SAMPLER_FACTS), str(err.value)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample", "x0"])
def test_config_schema_prediction_types_are_the_registered_ones(prediction_type: str) -> None:
    config = {"decoder": {"model": {"prediction_type": prediction_type}}}
    if prediction_type in PREDICTION_TYPES:
        assert validate_config(config)["decoder"]["model"]["prediction_type"] == prediction_type
    else:
        with pytest.raises(BenchError, match="prediction_type"):
            validate_config(config)
