"""The diffusion decoder's samplers: diffusers schedulers driven by one batched loop.

Three steps, one module each: :mod:`~bench.diffusion.samplers.registry` (each sampler name of
:mod:`bench.sampler_facts` as a diffusers scheduler built on the decoder's own betas, and the
choices that fix it: respacing, model time, clipping, variance), :mod:`~bench.diffusion.samplers.plan`
(a sampler, steps, eta and knobs checked against one decoder, described as JSON for the record) and
:mod:`~bench.diffusion.samplers.loop` (seeds, the start level t0, guidance and averaging around the
scheduler's steps). A new sampler is one entry of :data:`bench.sampler_facts.SAMPLER_FACTS` and its
builder in the registry.
"""

from bench.diffusion.samplers.loop import AVERAGING_STRIDE, sample, sample_with_plan
from bench.diffusion.samplers.plan import SamplingPlan, check_seeds, plan_sampling
from bench.diffusion.samplers.registry import SAMPLERS, rebuild_scheduler

__all__ = [
    "AVERAGING_STRIDE",
    "SAMPLERS",
    "SamplingPlan",
    "check_seeds",
    "plan_sampling",
    "rebuild_scheduler",
    "sample",
    "sample_with_plan",
]
