"""The samplers and prediction types a config may name, as torch-free facts: the one list of names.

The diffusion decoder's registry (:data:`bench.diffusion.samplers.SAMPLERS`) pairs each entry here
with its diffusers scheduler; the point ids (:mod:`bench.points`), the config schema's allowed values
(:func:`bench.config.load_schema`) and the ``decode --sampler`` choices read the names from here, so
a new sampler is one entry below plus its scheduler builder, and nothing needs torch to know it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplerFacts:
    """What is known of a sampler before any model is loaded.

    ``respaced``: it runs on the decoder's schedule respaced to the step count (True) or on the full
    training schedule, choosing its timesteps itself (False); ``takes_eta``: whether ``eta`` means
    anything to it (only then does a point id carry ``-eta``); ``reads_variance``: whether it consumes
    the learned-variance channels of a ``learn_sigma`` model.
    """

    name: str
    description: str
    respaced: bool
    takes_eta: bool
    reads_variance: bool


SAMPLER_FACTS: dict[str, SamplerFacts] = {
    facts.name: facts
    for facts in (
        SamplerFacts(
            name="ddpm",
            description="ancestral DDPM on the schedule respaced to K steps (learned-range variance when learned)",
            respaced=True,
            takes_eta=False,
            reads_variance=True,
        ),
        SamplerFacts(
            name="ddim",
            description="DDIM on the schedule respaced to K steps; eta 0 = deterministic, 1 = DDPM-like noise",
            respaced=True,
            takes_eta=True,
            reads_variance=False,
        ),
        SamplerFacts(
            name="dpmpp",
            description="DPM-Solver++ (2nd-order multistep, deterministic) on the full training schedule "
            "(beyond the paper)",
            respaced=False,
            takes_eta=False,
            reads_variance=False,
        ),
    )
}
SAMPLER_NAMES = frozenset(SAMPLER_FACTS)
SAMPLERS_WITH_ETA = frozenset(name for name, facts in SAMPLER_FACTS.items() if facts.takes_eta)

PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction", "sample")
"""What the decoder's UNet may predict, in diffusers' words (its schedulers' ``prediction_type``)."""
