"""The sampling plan: a sampler, its step count, eta and knobs checked against one decoder, before any image.

:func:`plan_sampling` validates the arguments and fixes the scheduler's schedule (respaced or full,
:mod:`bench.diffusion.samplers.registry`); the :class:`SamplingPlan` builds a fresh scheduler for
every run, finds the first step of a start level t0, and describes itself as JSON for the record
written beside every output.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from diffusers import SchedulerMixin

from bench.diffusion.samplers.registry import SamplerSpec, SchedulerOptions, check_sampler_args
from bench.diffusion.schedule import NoiseSchedule
from bench.points import Knobs
from bench.utils import BenchError


class ConditionLike(Protocol):
    """What the samplers need from a conditioning (``bench.diffusion.model.Condition``)."""

    y_hat: torch.Tensor  # [B, M, H/16, W/16]

    def select(self, index: torch.Tensor) -> ConditionLike: ...


class DecoderLike(Protocol):
    """What the samplers need from a diffusion decoder (``bench.diffusion.model.DiffusionDecoder``)."""

    config: Any  # .prediction_type: str (checked by DecoderConfig), .learn_sigma: bool
    checkpoint_info: dict[str, Any]  # .train.p_uncond: the conditioning dropout it was trained with

    def noise_schedule(self, respacing: int | None) -> NoiseSchedule: ...

    def drop_condition(self, cond: ConditionLike, keep: torch.Tensor) -> ConditionLike: ...

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: ConditionLike) -> torch.Tensor: ...


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
        return self.spec.facts.reads_variance and self.options.learn_sigma

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
            "eta": self.eta if self.spec.facts.takes_eta else None,
            "clip_denoised": self.options.clip,
            "prediction_type": self.options.prediction_type,
            "learn_sigma": self.options.learn_sigma,
            "respaced": self.spec.facts.respaced,
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
    full = model.noise_schedule(respacing=None)
    if steps > full.num_steps:
        raise BenchError(f"'steps'={steps} exceeds the decoder's {full.num_steps} training timesteps")
    schedule = model.noise_schedule(respacing=steps) if spec.facts.respaced else full
    if int(schedule.timestep_map[-1]) != full.num_steps - 1:
        # The chain starts from x_T ~ N(0, I): its first step must be the pure-noise end.
        raise BenchError(
            f"'steps'={steps}: the respaced schedule ends at training step {int(schedule.timestep_map[-1])}, "
            f"not at the pure-noise step {full.num_steps - 1}; use more steps"
        )
    options = SchedulerOptions(
        schedule=schedule,
        prediction_type=model.config.prediction_type,
        learn_sigma=bool(model.config.learn_sigma),
        clip=bool(clip),
    )
    plan = SamplingPlan(
        spec=spec, steps=steps, eta=float(eta), options=options, train_timesteps=full.num_steps, knobs=knobs
    )
    # fail now, not mid-decode, if the scheduler cannot place K distinct timesteps or start at t0
    plan.start_index(plan.scheduler().timesteps.long())
    return plan
