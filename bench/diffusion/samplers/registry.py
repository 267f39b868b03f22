"""The sampler registry: each sampler of :mod:`bench.sampler_facts` as a configured diffusers scheduler.

Every sampler is a diffusers scheduler (the implementation we use, not re-implement) built from the
decoder's own :class:`~bench.diffusion.schedule.NoiseSchedule` through ``trained_betas``, so the
betas the network was trained on are the betas it is sampled with. A new sampler is one entry of
:data:`bench.sampler_facts.SAMPLER_FACTS` and its builder in :data:`_IMPLEMENTATIONS`.

Choices made on purpose (the JSON written beside every output records them):

- **Respacing.** ``ddpm`` and ``ddim`` run on the decoder's schedule respaced to K steps
  (improved-diffusion's ``SpacedDiffusion``, which the paper's code samples with): the scheduler
  is built on those K betas and visits all K of its steps, so the posterior variance, the
  learned-range interpolation and DDIM's "previous step" are those of the respaced chain. (Letting
  diffusers' DDIM pick K timesteps of the full schedule would step to ``t - T//K``, which is not the
  next visited step under ``linspace`` spacing.) The respacing itself is evenly spaced with both
  ends kept (``space_timesteps``), i.e. diffusers' ``linspace``; ``timestep_spacing="linspace"`` is
  set explicitly, and with K of K steps every spacing visits every step.
  ``dpmpp`` is a continuous-time solver: it runs on the full training schedule and picks its own K
  timesteps (``linspace``, the diffusers default for DPM-Solver), ending with a jump to sigma 0.
- **Model time.** The scheduler's timesteps index its schedule; the network is given
  ``schedule.timestep_map[t]``, the original training-time index.
- **Clipping** (``clip``, config ``sampling.clip_denoised``, paper: on). The x0 estimate is clamped
  to [-1, 1] at every step: ``clip_sample`` for DDPM/DDIM (DDIM also re-derives eps from the clipped
  x0, as improved-diffusion's ``ddim_sample`` does), and for DPM-Solver++ its dynamic thresholding
  with ``sample_max_value=1``, which is exactly clamping to [-1, 1].
- **Variance.** DDPM uses the model's learned-range variance when it learned sigma, else the
  posterior variance (``fixed_small``): with few respaced steps ``fixed_large`` adds noise the
  last, nearly clean step cannot remove. Other samplers read only the mean channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin

from bench.diffusion.schedule import NoiseSchedule
from bench.sampler_facts import SAMPLER_FACTS, SAMPLERS_WITH_ETA, SamplerFacts
from bench.utils import BenchError


@dataclass(frozen=True)
class SchedulerOptions:
    """Model facts and user choices every scheduler builder needs."""

    schedule: NoiseSchedule
    prediction_type: str
    learn_sigma: bool
    clip: bool


@dataclass(frozen=True)
class SamplerSpec:
    """One registered sampler: its torch-free :class:`~bench.sampler_facts.SamplerFacts` and its code.

    ``build`` makes the configured diffusers scheduler; ``step_kwargs(eta, generators)`` gives the
    extra arguments of its ``step``.
    """

    facts: SamplerFacts
    build: Callable[[SchedulerOptions], SchedulerMixin]
    step_kwargs: Callable[[float, list[torch.Generator]], dict[str, Any]]

    @property
    def name(self) -> str:
        """The registry name (``ddim``), as in point ids and configs."""
        return self.facts.name


def _common_kwargs(opts: SchedulerOptions) -> dict[str, Any]:
    """Constructor arguments shared by every scheduler: the model's betas and prediction type."""
    return {
        "num_train_timesteps": opts.schedule.num_steps,
        "trained_betas": opts.schedule.betas.tolist(),
        "prediction_type": opts.prediction_type,
        "timestep_spacing": "linspace",
    }


def _exact_tables(scheduler: SchedulerMixin, betas: torch.Tensor, alphas_cumprod: torch.Tensor) -> SchedulerMixin:
    """Give ``scheduler`` float64 ``betas`` and ``alphas_cumprod``, each rounded to float32 once.

    diffusers stores ``trained_betas`` in float32 and multiplies them up again. The last beta of a
    respaced cosine schedule is 1 - 2e-8 (K=5 of 1000), which float32 rounds to 1: abar becomes 0
    and the eps-to-x0 conversion divides by zero (NaN). Rounding abar itself keeps it at 2.4e-9.
    ``step``, ``add_noise`` and ``set_timesteps`` read only these tables (and DPM-Solver the alpha,
    sigma and log-SNR tables its ``__init__`` caches, derived here from the same abar). The record
    keeps both float64 tables, so :func:`rebuild_scheduler` gets these exact numbers back.
    """
    scheduler.betas = betas.float()
    scheduler.alphas = (1.0 - betas).float()
    scheduler.alphas_cumprod = alphas_cumprod.float()
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        scheduler.alpha_t = alphas_cumprod.sqrt().float()
        scheduler.sigma_t = (1.0 - alphas_cumprod).sqrt().float()
        scheduler.lambda_t = (0.5 * torch.log(alphas_cumprod / (1.0 - alphas_cumprod))).float()
        scheduler.sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt().float()
    return scheduler


def _build_ddpm(opts: SchedulerOptions) -> SchedulerMixin:
    scheduler = DDPMScheduler(
        **_common_kwargs(opts),
        variance_type="learned_range" if opts.learn_sigma else "fixed_small",
        clip_sample=opts.clip,
        clip_sample_range=1.0,
    )
    return _exact_tables(scheduler, opts.schedule.betas, opts.schedule.alphas_cumprod)


def _build_ddim(opts: SchedulerOptions) -> SchedulerMixin:
    scheduler = DDIMScheduler(
        **_common_kwargs(opts),
        clip_sample=opts.clip,
        clip_sample_range=1.0,
        set_alpha_to_one=True,  # the last step lands on x0 (abar = 1), as improved-diffusion's DDIM
    )
    return _exact_tables(scheduler, opts.schedule.betas, opts.schedule.alphas_cumprod)


def _build_dpmpp(opts: SchedulerOptions) -> SchedulerMixin:
    scheduler = DPMSolverMultistepScheduler(
        **_common_kwargs(opts),
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        # diffusers' recommendation for cosine schedules (whose last betas are capped at 0.999):
        # skip the first timesteps whose log-SNR is below -5.1, where x0 = (x - sigma eps)/alpha blows up.
        lambda_min_clipped=-5.1,
        thresholding=opts.clip,
        dynamic_thresholding_ratio=0.995,
        sample_max_value=1.0,  # threshold s clamped to [1, 1]: plain clamping of x0 to [-1, 1]
    )
    return _exact_tables(scheduler, opts.schedule.betas, opts.schedule.alphas_cumprod)


# Each sampler name of bench.sampler_facts → (its scheduler builder, the extra arguments of its step).
_IMPLEMENTATIONS: dict[str, tuple[Callable[[SchedulerOptions], SchedulerMixin], Callable[..., dict[str, Any]]]] = {
    "ddpm": (_build_ddpm, lambda eta, gens: {"generator": gens}),
    "ddim": (_build_ddim, lambda eta, gens: {"eta": eta, "generator": gens, "use_clipped_model_output": True}),
    "dpmpp": (_build_dpmpp, lambda eta, gens: {"generator": gens}),
}
# A name of SAMPLER_FACTS without an implementation fails here, at import, not in a decode job.
SAMPLERS: dict[str, SamplerSpec] = {
    name: SamplerSpec(facts, *_IMPLEMENTATIONS[name]) for name, facts in SAMPLER_FACTS.items()
}


def get_sampler(name: str) -> SamplerSpec:
    """The registered sampler ``name``, or a BenchError listing the known ones."""
    if name not in SAMPLERS:
        raise BenchError(f"unknown sampler {name!r} (key 'sampler'); known: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name]


def check_sampler_args(sampler: str, steps: int, eta: float) -> SamplerSpec:
    """Validate a (sampler, steps, eta) triple before any work; BenchError names the bad key."""
    spec = get_sampler(sampler)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BenchError(f"'steps' must be an integer >= 1, got {steps!r}")
    if not 0.0 <= float(eta) <= 1.0:
        raise BenchError(f"'eta' must lie in [0, 1], got {eta!r}")
    if eta != 0 and not spec.facts.takes_eta:
        takers = ", ".join(sorted(SAMPLERS_WITH_ETA))
        raise BenchError(f"'eta'={eta} is not a parameter of sampler {sampler!r} (only {takers} take eta); drop it")
    return spec


def rebuild_scheduler(sampling: dict[str, Any]) -> SchedulerMixin:
    """The scheduler a decode ran, with its timesteps set, from the ``sampling`` section of its record.

    diffusers' ``from_config`` of the recorded config alone does not give it back: it recomputes
    alphas_cumprod in float32 from the betas (DDIM-10 on a 4000-step cosine schedule then has abar = 0
    at its first step). The recorded float64 ``trained_betas`` and ``alphas_cumprod`` are set on top.
    """
    config = sampling["scheduler"]
    cls = getattr(diffusers, config["_class_name"], None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise BenchError(
            f"the record names scheduler {config['_class_name']!r}, unknown to diffusers {diffusers.__version__}"
        )
    scheduler = _exact_tables(
        cls.from_config(config),
        torch.tensor(config["trained_betas"], dtype=torch.float64),
        torch.tensor(sampling["alphas_cumprod"], dtype=torch.float64),
    )
    scheduler.set_timesteps(sampling["steps"])
    return scheduler
