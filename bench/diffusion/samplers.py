"""Sampler registry of the diffusion decoder: diffusers schedulers driven by one batched loop.

Every sampler is a diffusers scheduler (the implementation we use, not re-implement) built from the
decoder's own :class:`~bench.diffusion.schedule.NoiseSchedule` through ``trained_betas``, so the
betas the network was trained on are the betas it is sampled with. A new sampler is one entry of
:data:`SAMPLERS`.

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
- **Seeds.** Every (image, seed) sample draws its initial noise and every later noise from its own
  ``torch.Generator`` seeded with its seed, so the same seed on the same device gives the same
  noise whatever else is in the batch (bit-identical output for a batch-invariant network).

Decode-time knobs at the same bits (:class:`bench.points.Knobs`, beyond the paper):

- **Start level t0** (partial diffusion). The MSH reconstruction is noised to the first step of the
  chain at or below model time t0·(T-1), ``sqrt(abar) x_msh + sqrt(1 - abar) eps``, and the sampler
  runs only the steps from there to 0: the cost scales with t0. t0 = 0 runs no step and returns the
  MSH reconstruction itself; t0 = 1 is the ordinary chain from pure noise.
- **Classifier-free guidance w.** ``eps = eps_u + w (eps_c - eps_u)`` with the unconditional branch
  of ``model.drop_condition`` (the zeroed conditioning of ``p_uncond`` training). Every prediction
  type (eps, v, x0) is an affine function of eps for a given x_t, so the same combination is applied
  to the model output whatever it predicts. Both branches run as one batch of 2B; the learned
  variance channels are the conditional branch's. w = 1 (conditional) and w = 0 (unconditional)
  cost one evaluation per step.
- **Sample averaging N.** N samples per seed in the same batch (sample j of seed s draws from seed
  ``s + j·AVERAGING_STRIDE``, so j = 0 is the plain sample of seed s), averaged in float before any
  quantisation: the mean approaches the posterior mean, i.e. the distortion end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import diffusers
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from tqdm import tqdm

from bench.diffusion.latent_decoder import NUM_STAGES
from bench.diffusion.schedule import NoiseSchedule
from bench.points import Knobs
from bench.utils import BenchError, progress_options

# The decoder's ``prediction_type`` names → diffusers' names (the same words today; the map is the
# single place that would change if either side renamed one).
PREDICTION_TYPES: dict[str, str] = {"epsilon": "epsilon", "v_prediction": "v_prediction", "sample": "sample"}

IMAGE_CHANNELS = 3
LATENT_UPSAMPLING = 2**NUM_STAGES  # the latent decoder takes y_hat (H/16) to full resolution
AVERAGING_STRIDE = 1_000_003  # seed offset between the averaged samples of one seed (a prime, far from small seeds)


class ConditionLike(Protocol):
    """What the samplers need from a conditioning (``bench.diffusion.model.Condition``)."""

    y_hat: torch.Tensor  # [B, M, H/16, W/16]

    def select(self, index: torch.Tensor) -> ConditionLike: ...


class DecoderLike(Protocol):
    """What the samplers need from a diffusion decoder (``bench.diffusion.model.DiffusionDecoder``)."""

    config: Any  # .prediction_type: str, .learn_sigma: bool
    checkpoint_info: dict[str, Any]  # .train.p_uncond: the conditioning dropout it was trained with

    def noise_schedule(self, respacing: int | None) -> NoiseSchedule: ...

    def drop_condition(self, cond: ConditionLike, keep: torch.Tensor) -> ConditionLike: ...

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: ConditionLike) -> torch.Tensor: ...


@dataclass(frozen=True)
class SchedulerOptions:
    """Model facts and user choices every scheduler builder needs."""

    schedule: NoiseSchedule
    prediction_type: str
    learn_sigma: bool
    clip: bool


@dataclass(frozen=True)
class SamplerSpec:
    """One registered sampler.

    ``build`` makes the configured diffusers scheduler; ``respaced`` says whether it runs on the
    decoder's schedule respaced to the step count (True) or on the full training schedule, choosing
    its timesteps itself (False); ``takes_eta`` whether ``eta`` means anything to it;
    ``reads_variance`` whether it consumes the learned-variance channels of a ``learn_sigma`` model;
    ``step_kwargs(eta, generators)`` the extra arguments of its ``step``.
    """

    name: str
    description: str
    build: Callable[[SchedulerOptions], SchedulerMixin]
    respaced: bool
    takes_eta: bool
    reads_variance: bool
    step_kwargs: Callable[[float, list[torch.Generator]], dict[str, Any]]


def _common_kwargs(opts: SchedulerOptions) -> dict[str, Any]:
    """Constructor arguments shared by every scheduler: the model's betas and prediction type."""
    return {
        "num_train_timesteps": opts.schedule.num_steps,
        "trained_betas": opts.schedule.betas.tolist(),
        "prediction_type": PREDICTION_TYPES[opts.prediction_type],
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


SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(
        name="ddpm",
        description="ancestral DDPM on the schedule respaced to K steps (learned-range variance when learned)",
        build=_build_ddpm,
        respaced=True,
        takes_eta=False,
        reads_variance=True,
        step_kwargs=lambda eta, gens: {"generator": gens},
    ),
    "ddim": SamplerSpec(
        name="ddim",
        description="DDIM on the schedule respaced to K steps; eta 0 = deterministic, 1 = DDPM-like noise",
        build=_build_ddim,
        respaced=True,
        takes_eta=True,
        reads_variance=False,
        step_kwargs=lambda eta, gens: {"eta": eta, "generator": gens, "use_clipped_model_output": True},
    ),
    "dpmpp": SamplerSpec(
        name="dpmpp",
        description="DPM-Solver++ (2nd-order multistep, deterministic) on the full training schedule "
        "(beyond the paper)",
        build=_build_dpmpp,
        respaced=False,
        takes_eta=False,
        reads_variance=False,
        step_kwargs=lambda eta, gens: {"generator": gens},
    ),
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
    if eta != 0 and not spec.takes_eta:
        takers = ", ".join(n for n, s in SAMPLERS.items() if s.takes_eta)
        raise BenchError(f"'eta'={eta} is not a parameter of sampler {sampler!r} (only {takers} take eta); drop it")
    return spec


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Seeds as a list of non-negative ints (at least one), or a BenchError naming 'seeds'."""
    seeds = list(seeds)
    if not seeds:
        raise BenchError("'seeds' must hold at least one seed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise BenchError(f"'seeds' must be non-negative integers, got {seed!r}")
    return seeds


def check_guidance(model: DecoderLike, knobs: Knobs) -> None:
    """Guidance other than 1 needs a decoder whose training dropped the conditioning (``p_uncond`` > 0)."""
    if knobs.guidance == 1.0:
        return
    p_uncond = model.checkpoint_info.get("train", {}).get("p_uncond")
    if not p_uncond:
        raise BenchError(
            f"'guidance'={knobs.guidance:g} needs a decoder trained with conditioning dropout, but this checkpoint "
            f"has decoder.train.p_uncond={p_uncond}; use guidance 1 or retrain with p_uncond > 0 (e.g. 0.1)"
        )


@dataclass(frozen=True)
class SamplingPlan:
    """Everything that fixes a sampler run except the images and seeds; cheap to build.

    A plan builds a fresh scheduler for every run (multistep solvers keep state) and describes
    itself as JSON (:meth:`record`) so an output can be reproduced from its sidecar file.
    """

    spec: SamplerSpec
    steps: int
    eta: float
    options: SchedulerOptions
    train_timesteps: int  # T of the training schedule: t0 is a fraction of it
    knobs: Knobs = Knobs()

    @property
    def schedule(self) -> NoiseSchedule:
        """The schedule the scheduler runs on (its timesteps index it)."""
        return self.options.schedule

    @property
    def reads_variance(self) -> bool:
        """Whether the scheduler is given the learned-variance channels of the model output."""
        return self.spec.reads_variance and self.options.learn_sigma

    def scheduler(self) -> SchedulerMixin:
        """A new scheduler with its K timesteps set (on the CPU: ``step`` gets Python ints)."""
        scheduler = self.spec.build(self.options)
        scheduler.set_timesteps(self.steps)
        timesteps = scheduler.timesteps
        if timesteps.unique().numel() != timesteps.numel():
            raise BenchError(
                f"'steps'={self.steps} is too many for sampler {self.spec.name!r} on a "
                f"{self.schedule.num_steps}-step schedule (timesteps repeat); use fewer steps"
            )
        return scheduler

    def start_index(self, timesteps: torch.Tensor) -> int:
        """Index into the scheduler's ``timesteps`` of the first step run: the first at or below model
        time t0·(T-1). ``len(timesteps)`` (no step) for t0 = 0; 0 for t0 = 1 (the chain starts at T-1).

        DPM-Solver++'s timesteps stop short of 0 (its last step jumps to sigma 0): a t0 below its last
        timestep has no step to start from and is a BenchError naming the smallest t0 that has one.
        """
        if self.knobs.t0 == 0.0:
            return len(timesteps)
        model_times = self.schedule.to_model_time(timesteps)
        below = torch.nonzero(model_times <= self.knobs.t0 * (self.train_timesteps - 1))
        if len(below) == 0:
            last, top = int(model_times[-1]), self.train_timesteps - 1
            smallest = math.ceil(last / top * 1e4) / 1e4
            raise BenchError(
                f"'t0'={self.knobs.t0:g} is below the last timestep of sampler {self.spec.name!r} at {self.steps} "
                f"steps (model time {last} of {top}), so no step could start there; use t0 >= {smallest:g}, more "
                "steps, or t0 = 0 for the MSH reconstruction itself"
            )
        return int(below[0])

    def record(self) -> dict[str, Any]:
        """JSON-ready description: sampler, steps, eta, knobs, clipping, full scheduler config, timesteps."""
        scheduler = self.scheduler()
        timesteps = scheduler.timesteps.long()
        start = self.start_index(timesteps)
        model_timesteps = self.schedule.to_model_time(timesteps).tolist()
        return {
            "sampler": self.spec.name,
            "steps": self.steps,
            "eta": self.eta if self.spec.takes_eta else None,
            "clip_denoised": self.options.clip,
            "prediction_type": self.options.prediction_type,
            "learn_sigma": self.options.learn_sigma,
            "respaced": self.spec.respaced,
            "scheduler": json.loads(scheduler.to_json_string()),
            # with the config's trained_betas, what rebuild_scheduler needs (from_config alone recomputes it in float32)
            "alphas_cumprod": self.schedule.alphas_cumprod.tolist(),
            "scheduler_timesteps": timesteps.tolist(),
            "model_timesteps": model_timesteps,
            "t0": self.knobs.t0,
            "start_model_timestep": model_timesteps[start] if start < len(model_timesteps) else None,
            "steps_run": len(model_timesteps) - start,
            "guidance": self.knobs.guidance,
            "n_avg": self.knobs.n_avg,
            # per image and reconstruction: every step run, times the guidance branches, times N samples
            "network_evaluations": (len(model_timesteps) - start) * self.knobs.evaluations_per_step * self.knobs.n_avg,
        }


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


def plan_sampling(
    model: DecoderLike, *, sampler: str, steps: int, eta: float = 0.0, clip: bool, knobs: Knobs = Knobs()
) -> SamplingPlan:
    """Validate the arguments and fix the scheduler for ``model``.

    ``ddpm``/``ddim`` run on ``model.noise_schedule(respacing=steps)``; ``dpmpp`` on the full
    training schedule (``respacing=None``). ``steps`` larger than the training schedule is an error,
    and so is a guidance scale other than 1 for a decoder trained without conditioning dropout.
    """
    spec = check_sampler_args(sampler, steps, eta)
    check_guidance(model, knobs)
    prediction_type = model.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise BenchError(
            f"decoder prediction_type {prediction_type!r} has no sampler mapping; known: {sorted(PREDICTION_TYPES)}"
        )
    full = model.noise_schedule(respacing=None)
    if steps > full.num_steps:
        raise BenchError(f"'steps'={steps} exceeds the decoder's {full.num_steps} training timesteps")
    schedule = model.noise_schedule(respacing=steps) if spec.respaced else full
    if int(schedule.timestep_map[-1]) != full.num_steps - 1:
        # The chain starts from x_T ~ N(0, I): its first step must be the pure-noise end.
        raise BenchError(
            f"'steps'={steps}: the respaced schedule ends at training step {int(schedule.timestep_map[-1])}, "
            f"not at the pure-noise step {full.num_steps - 1}; use more steps"
        )
    options = SchedulerOptions(
        schedule=schedule, prediction_type=prediction_type, learn_sigma=bool(model.config.learn_sigma), clip=bool(clip)
    )
    plan = SamplingPlan(
        spec=spec, steps=steps, eta=float(eta), options=options, train_timesteps=full.num_steps, knobs=knobs
    )
    # fail now, not mid-decode, if the scheduler cannot place K distinct timesteps or start at t0
    plan.start_index(plan.scheduler().timesteps.long())
    return plan


def image_size(cond: ConditionLike) -> tuple[int, int]:
    """Padded (H, W) of the images a conditioning describes: the latent decoder's output size."""
    h, w = cond.y_hat.shape[-2:]
    return LATENT_UPSAMPLING * h, LATENT_UPSAMPLING * w


def seed_generators(seeds: Sequence[int], num_images: int, device: torch.device) -> list[torch.Generator]:
    """One generator per (image, seed) sample, image-major, each seeded with its own seed."""
    return [torch.Generator(device=device).manual_seed(seed) for _ in range(num_images) for seed in seeds]


def averaged_seeds(seeds: Sequence[int], n_avg: int) -> list[int]:
    """The seeds of the samples drawn for ``seeds`` when ``n_avg`` are averaged, seed-major."""
    return [seed + j * AVERAGING_STRIDE for seed in seeds for j in range(n_avg)]


def denoise_loop(
    plan: SamplingPlan,
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    generators: list[torch.Generator],
    *,
    start: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Run ``plan``'s scheduler from ``x`` (at its timestep number ``start``) down to x0.

    ``denoise(x_t, model_t)`` is one batched network call given original-time indices ``model_t``
    ([N] long); its output is handed to ``scheduler.step`` (mean channels only, unless the sampler
    reads the learned variance).
    """
    scheduler = plan.scheduler()
    if hasattr(scheduler, "set_begin_index"):  # multistep solvers count their steps from here
        scheduler.set_begin_index(start)
    step_kwargs = plan.spec.step_kwargs(plan.eta, generators)
    channels = x.shape[1]
    model_times = plan.schedule.to_model_time(scheduler.timesteps.long())
    for t, model_t in tqdm(
        list(zip(scheduler.timesteps.tolist(), model_times.tolist(), strict=True))[start:],
        desc=f"{plan.spec.name}-{plan.steps}",
        unit="step",
        leave=False,
        **(progress_options(nested=True) if progress else {"disable": True}),
    ):
        out = denoise(x, torch.full((x.shape[0],), model_t, dtype=torch.long, device=x.device))
        if not plan.reads_variance:
            out = out[:, :channels]
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x


def guided_denoiser(
    model: DecoderLike, cond: ConditionLike, guidance: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``denoise(x_t, t)`` for guidance ``w``: the conditional model (1), the unconditional one (0), or
    ``u + w (c - u)`` on the mean channels from one batched call on both branches."""
    rows = cond.y_hat.shape[0]
    if guidance == 1.0:
        return lambda x_t, t: model(x_t, t, cond)
    if guidance == 0.0:
        unconditional = model.drop_condition(cond, torch.zeros(rows, dtype=torch.bool, device=cond.y_hat.device))
        return lambda x_t, t: model(x_t, t, unconditional)
    doubled = cond.select(torch.arange(rows, device=cond.y_hat.device).repeat(2))
    keep = torch.arange(2 * rows, device=cond.y_hat.device) < rows  # first half conditional
    both = model.drop_condition(doubled, keep)

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        conditional, unconditional = model(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)
        mean = unconditional[:, :IMAGE_CHANNELS] + guidance * (
            conditional[:, :IMAGE_CHANNELS] - unconditional[:, :IMAGE_CHANNELS]
        )
        return torch.cat([mean, conditional[:, IMAGE_CHANNELS:]], dim=1)

    return denoise


def sample_with_plan(
    plan: SamplingPlan,
    model: DecoderLike,
    cond: ConditionLike,
    seeds: Sequence[int],
    *,
    x_start: torch.Tensor | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Sample every image of ``cond`` once per seed: returns ``[B, S, 3, H, W]`` x0 in [-1, 1] scale.

    ``cond`` is the decoder's conditioning for B images (``model.condition``, computed once by the
    caller); it is repeated per seed (and per averaged sample) and reused at every step, so each step
    is one network call on B·S·N samples (2× that with guidance). ``x_start`` ([B, 3, H, W], [-1, 1])
    is the MSH reconstruction a start level t0 < 1 noises; it is required then. Values are clamped
    only by the scheduler (``clip``); callers quantise to 8 bits.
    """
    seeds = check_seeds(seeds)
    knobs = plan.knobs
    num_images = cond.y_hat.shape[0]
    device = cond.y_hat.device
    draws = averaged_seeds(seeds, knobs.n_avg)
    generators = seed_generators(draws, num_images, device)
    # image-major rows: image i's samples are rows i*D .. i*D+D-1, matching ``generators``
    rows = torch.arange(num_images, device=device).repeat_interleave(len(draws))
    shape = (num_images * len(draws), IMAGE_CHANNELS, *image_size(cond))
    if knobs.t0 < 1.0 and x_start is None:
        raise BenchError(f"'t0'={knobs.t0:g} starts from the MSH reconstruction, which the caller did not pass")
    with torch.inference_mode():
        x = randn_tensor(shape, generator=generators, device=device, dtype=torch.float32)
        timesteps = plan.scheduler().timesteps.long()  # a scratch scheduler: the loop builds its own
        start = plan.start_index(timesteps)
        if knobs.t0 < 1.0:
            x = noised(plan.schedule, x_start[rows], x, timesteps[start:])
        denoise = guided_denoiser(model, cond.select(rows), knobs.guidance)
        x = denoise_loop(plan, denoise, x, generators, start=start, progress=progress)
        x = x.reshape(num_images, len(seeds), knobs.n_avg, *shape[1:]).mean(dim=2)
    return x


def noised(schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, remaining: torch.Tensor) -> torch.Tensor:
    """``x0`` noised to the level of the first of the ``remaining`` chain steps (``x0`` itself when none remain)."""
    if len(remaining) == 0:
        return x0.clone()
    abar = schedule.alphas_cumprod[remaining[0]].item()
    return math.sqrt(abar) * x0 + math.sqrt(1.0 - abar) * noise


def sample(
    model: DecoderLike,
    cond: ConditionLike,
    *,
    sampler: str,
    steps: int,
    eta: float = 0.0,
    seeds: Sequence[int],
    clip: bool,
    knobs: Knobs = Knobs(),
    x_start: torch.Tensor | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Decode B images with ``sampler`` at ``steps`` steps for every seed: ``[B, S, 3, H, W]``.

    Same seed, same device → bit-identical samples whatever the batch holds (for a network whose
    per-sample output does not depend on the batch). Unknown sampler, ``steps < 1``, ``eta`` outside
    [0, 1] or ``eta`` for a sampler without one, bad knobs, or no seeds → BenchError naming the key.
    """
    plan = plan_sampling(model, sampler=sampler, steps=steps, eta=eta, clip=clip, knobs=knobs)
    return sample_with_plan(plan, model, cond, seeds, x_start=x_start, progress=progress)
