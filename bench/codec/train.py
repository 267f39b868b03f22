"""Train an mbt2018-mean model on random crops (``python -m bench train-msh``), compressai's recipe.

compressai ``examples/train.py``: RateDistortionLoss (λ·255²·MSE + bpp), Adam on the network
parameters and a second Adam on the entropy bottleneck's quantiles driven by the aux loss
(``net_aux_optimizer``), gradient clipping, and ``update(force=True)`` before the model is saved
so its entropy-coder tables match the final weights.

Kill-safe (:mod:`bench.training`): the state saved to ``OUT.partial`` is the weights, both
optimisers, the torch RNG and the step.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from compressai.losses import RateDistortionLoss
from compressai.models import MeanScaleHyperprior
from compressai.optimizers import net_aux_optimizer
from torch import Tensor

from bench.codec.checkpoints import ZOO_LAMBDAS, build_model, check_quality, save_checkpoint, zoo_size
from bench.training import (
    crop_stream,
    load_partial,
    partial_path,
    refuse_changed_settings,
    run_steps,
    settings_changes,
)
from bench.utils import check_writable, resolve_device, rng_state, seed_everything, set_rng_state


@dataclass(frozen=True)
class MSHTrainConfig:
    """Everything that determines a trained MSH model (the ``msh.train`` config section + seed)."""

    quality: int
    lmbda: float
    N: int
    M: int
    steps: int
    batch_size: int
    crop: int
    lr: float
    aux_lr: float
    grad_clip: float | None
    checkpoint_every: int
    seed: int

    @classmethod
    def from_config(cls, config: dict[str, Any], quality: int) -> MSHTrainConfig:
        """Settings from a validated config's ``msh.train`` and ``seed`` (flags enter the config
        through :func:`bench.config.with_overrides`). A null λ or N/M means the zoo's value for ``quality``.
        """
        values = {**config["msh"]["train"], "seed": config["seed"]}
        zoo_n, zoo_m = zoo_size(quality)
        values["lmbda"] = values["lmbda"] or ZOO_LAMBDAS[quality]
        values["N"] = values["N"] or zoo_n
        values["M"] = values["M"] or zoo_m
        return cls(quality=check_quality(quality), **values)


def _save(
    path: Path, net: MeanScaleHyperprior, optimizers: dict[str, torch.optim.Optimizer], cfg: MSHTrainConfig, step: int
) -> None:
    save_checkpoint(
        path,
        net,
        quality=cfg.quality,
        lmbda=cfg.lmbda,
        step=step,
        config=dataclasses.asdict(cfg),
        optimizer=optimizers["net"].state_dict(),
        aux_optimizer=optimizers["aux"].state_dict(),
        rng=rng_state(),
    )


def _resume(
    path: Path, cfg: MSHTrainConfig, net: MeanScaleHyperprior, optimizers: dict[str, torch.optim.Optimizer]
) -> int:
    """Restore weights, optimisers and RNG from a partial checkpoint; return its step."""
    keys = ("config", "state_dict", "optimizer", "aux_optimizer", "rng", "step")
    state = load_partial(path, keys, weights_only=True)
    refuse_changed_settings(path, sorted(settings_changes(state["config"], dataclasses.asdict(cfg))))
    net.load_state_dict(state["state_dict"])
    optimizers["net"].load_state_dict(state["optimizer"])
    optimizers["aux"].load_state_dict(state["aux_optimizer"])
    set_rng_state(state["rng"])
    return int(state["step"])


def _train_step(
    net: MeanScaleHyperprior,
    criterion: RateDistortionLoss,
    optimizers: dict[str, torch.optim.Optimizer],
    x: Tensor,
    grad_clip: float | None,
) -> dict[str, float]:
    """One compressai training step: RD loss on the network, aux loss on the bottleneck quantiles."""
    net.train()
    optimizers["net"].zero_grad()
    optimizers["aux"].zero_grad()
    losses = criterion(net(x), x)
    losses["loss"].backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizers["net"].step()
    aux_loss = net.aux_loss()
    aux_loss.backward()
    optimizers["aux"].step()
    return {
        "loss": losses["loss"].item(),
        "bpp": losses["bpp_loss"].item(),
        "mse": losses["mse_loss"].item(),
        "aux": aux_loss.item(),
    }


def train_msh(cfg: MSHTrainConfig, images: Sequence[Path], out: str | os.PathLike, *, device: str = "auto") -> Path:
    """Train (or resume training) an MSH model on random crops of ``images`` and save it to ``out``."""
    out = Path(out)
    device_ = resolve_device(device)
    seed_everything(cfg.seed)
    net = build_model(cfg.quality, cfg.N, cfg.M).to(device_)
    optimizers = net_aux_optimizer(
        net, {"net": {"type": "Adam", "lr": cfg.lr}, "aux": {"type": "Adam", "lr": cfg.aux_lr}}
    )
    criterion = RateDistortionLoss(lmbda=cfg.lmbda)
    partial = partial_path(out)
    check_writable(out)
    step = _resume(partial, cfg, net, optimizers) if partial.is_file() else 0
    batches = crop_stream(images, cfg.crop, cfg.batch_size, cfg.seed, skip=step)
    step = run_steps(
        step=step,
        total=cfg.steps,
        desc=f"train-msh q{cfg.quality}",
        train_step=lambda: _train_step(net, criterion, optimizers, next(batches).to(device_), cfg.grad_clip),
        save_partial=lambda at: _save(partial, net, optimizers, cfg, at),
        partial=partial,
        checkpoint_every=cfg.checkpoint_every,
        postfix=lambda stats: {
            "loss": f"{stats['loss']:.4f}",
            "bpp": f"{stats['bpp']:.3f}",
            "mse": f"{stats['mse']:.5f}",
        },
    )
    net.update(force=True)
    _save(out, net, optimizers, cfg, step)
    partial.unlink(missing_ok=True)
    return out
