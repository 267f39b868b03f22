"""Conditional diffusion decoder: noise schedules, latent decoder, UNet, training, the samplers and
the decode pipeline.

This is the part's face: code outside ``bench/diffusion`` imports from ``bench.diffusion`` only
(``.ci/check_layers.py`` fails on an import of a module inside it). Each name loads its module on
first use, as diffusers' own ``__init__`` does, so ``from bench.diffusion import load_decoder``
costs the model's imports and not the samplers' diffusers (about 1.5 s), and a caller that imports a
name inside a function pays for it only there.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module of bench.diffusion that defines it
_FACE: dict[str, str] = {
    "NUM_STAGES": "latent_decoder",
    "Condition": "model",
    "DecoderConfig": "model",
    "DiffusionDecoder": "model",
    "load_decoder": "model",
    "batch_setup": "pipeline",
    "check_decoder_matches_codec": "pipeline",
    "compile_unet": "pipeline",
    "decode_batch": "pipeline",
    "decode_diffusion": "pipeline",
    "inference_layout": "pipeline",
    "seed_outputs": "pipeline",
    "SamplingPlan": "samplers",
    "plan_sampling": "samplers",
    "DecoderTrainConfig": "train",
    "new_run": "train",
    "perceptual_loss": "losses",
    "prepare_batch": "losses",
    "train_from_config": "train",
    "train_step": "train",
    "vgg_weights_path": "losses",
}
__all__ = sorted(_FACE)


def __getattr__(name: str) -> Any:
    """Load ``name`` from its module on first use (PEP 562) and keep it here."""
    if name not in _FACE:
        raise AttributeError(f"module 'bench.diffusion' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bench.diffusion.{_FACE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
