"""The sampling loop: one batched network call per step, for every image, seed and averaged sample.

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

import math
from collections.abc import Callable, Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm import tqdm

from bench.diffusion.latent_decoder import NUM_STAGES
from bench.diffusion.samplers.plan import ConditionLike, DecoderLike, SamplingPlan, check_seeds, plan_sampling
from bench.diffusion.schedule import NoiseSchedule
from bench.points import Knobs
from bench.utils import BenchError, progress_options

IMAGE_CHANNELS = 3
LATENT_UPSAMPLING = 2**NUM_STAGES  # the latent decoder takes y_hat (H/16) to full resolution
AVERAGING_STRIDE = 1_000_003  # seed offset between the averaged samples of one seed (a prime, far from small seeds)


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
