"""Train the conditional diffusion decoder on random crops (``python -m bench train-decoder``).

Each step draws a batch of crops and takes one AdamW step on :func:`bench.diffusion.losses.diffusion_loss`
(the paper's improved-diffusion loss with the frozen MSH codec; the steps of a batch are listed there).
AdamW, gradient clipping, EMA weights (what :func:`bench.diffusion.model.load_decoder` returns),
bf16 autocast and channels_last on CUDA only. Kill-safe like ``train-msh``: every
``checkpoint_every`` steps, and at once on SIGTERM, the whole state (weights, EMA, optimiser, step,
torch and sampling RNG states) goes to ``OUT.partial``; a rerun with the same settings resumes from
it and ends with the same weights as an uninterrupted run. ``OUT`` is written once, at the end, with the EMA weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.codec import MSHCodec, load_codec
from bench.config import load_config, with_overrides
from bench.data import list_images
from bench.diffusion.losses import TrainBatch, diffusion_loss, perceptual_loss, prepare_batch
from bench.diffusion.model import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    DecoderConfig,
    DiffusionDecoder,
)
from bench.diffusion.schedule import NoiseSchedule
from bench.training import (
    RESUMABLE_CHANGES,
    crop_stream,
    load_partial,
    partial_path,
    refuse_changed_settings,
    run_steps,
    settings_changes,
)
from bench.utils import (
    BenchError,
    atomic_torch_save,
    check_writable,
    code_version,
    rng_state,
    seed_everything,
    set_rng_state,
    state_dict_hash,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderTrainConfig:
    """Everything that determines a trained decoder besides its architecture: ``decoder.train`` + seed."""

    quality: int
    steps: int
    batch_size: int
    crop: int
    lr: float
    lr_schedule: str
    weight_decay: float
    ema: float
    loss: str
    rho: float
    min_snr_gamma: float | None
    p_uncond: float
    grad_clip: float | None
    checkpoint_every: int
    seed: int
    allow_random_backbones: bool

    @classmethod
    def from_config(cls, config: dict[str, Any], quality: int) -> DecoderTrainConfig:
        """Settings from a validated config (flags enter it through :func:`bench.config.with_overrides`)."""
        values = {
            **config["decoder"]["train"],
            "seed": config["seed"],
            "allow_random_backbones": config["allow_random_backbones"],
        }
        if values["crop"] % 16:
            raise BenchError(f"decoder crop {values['crop']} must be a multiple of 16 (the codec's latent stride)")
        return cls(quality=quality, **values)


# ----------------------------------------------------------------------------- training state


class EMA:
    """Exponential moving average of a model's floating-point state (buffers copied as they are).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (diffusers'
    ``EMAModel`` habit), so a short CPU run is not dominated by its random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards the model's current weights."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[name].lerp_(value.detach(), 1.0 - decay)
            else:
                self.shadow[name].copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Shadow weights (on the CPU) and update count."""
        return {"shadow": {k: v.detach().cpu() for k, v in self.shadow.items()}, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (onto the shadow tensors' devices)."""
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
        self.updates = int(state["updates"])


def save_decoder(path: str | os.PathLike, config: DecoderConfig, weights: dict[str, Tensor], **fields: Any) -> None:
    """Write a decoder checkpoint atomically: format tag, config dict, EMA weights, metadata ``fields``,
    and the EMA weights' ``state_dict_hash``, which :func:`~bench.diffusion.model.load_decoder` checks."""
    ema = {k: v.detach().cpu() for k, v in weights.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config.to_dict(),
        "code_version": code_version(),
        **fields,
        "weights_hash": state_dict_hash(ema),
        "ema": ema,
    }
    atomic_torch_save(payload, path)


@dataclass
class TrainRun:
    """The mutable state of one training run (``bench.gpu_check`` times its steps too)."""

    model: DiffusionDecoder
    ema: EMA
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0


def _metadata(cfg: DecoderTrainConfig, codec: MSHCodec, msh_checkpoint: Path, rho: float) -> dict[str, Any]:
    """What every checkpoint records about how it was trained (the effective rho included)."""
    return {
        "train": dataclasses.asdict(cfg),
        "rho_effective": rho,
        "msh": {"checkpoint": str(msh_checkpoint), "quality": codec.quality, "weights_hash": codec.weights_hash},
    }


def _save_partial(path: Path, run: TrainRun, meta: dict[str, Any]) -> None:
    save_decoder(
        path,
        run.model.config,
        run.ema.shadow,
        **meta,
        step=run.step,
        model=run.model.state_dict(),
        ema_state=run.ema.state_dict(),
        optimizer=run.optimizer.state_dict(),
        rng=rng_state(run.generator),
    )


def _resume(path: Path, run: TrainRun, meta: dict[str, Any]) -> None:
    """Restore a run from a partial checkpoint written with the same settings (the MSH checkpoint's
    path may change; its weights hash may not)."""
    keys = ("train", "msh", "config", "model", "ema_state", "optimizer", "rng", "step")
    state = load_partial(path, keys, weights_only=False)
    changes = [
        *settings_changes(state["train"], meta["train"], "train.", ignore=_resumable_changes(meta["train"])),
        *settings_changes(state["config"], run.model.config.to_dict(), "config.", ignore=()),
        *settings_changes(state["msh"], meta["msh"], "msh.", ignore={"checkpoint"}),
    ]
    refuse_changed_settings(path, changes)
    run.model.load_state_dict(state["model"])
    run.ema.load_state_dict(state["ema_state"])
    run.optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"], run.generator)
    run.step = int(state["step"])


def _resumable_changes(train: dict[str, Any]) -> frozenset[str]:
    """The ``decoder.train`` settings a resume may change: not ``steps`` under the cosine schedule,
    whose rate at every remaining step depends on it."""
    return RESUMABLE_CHANGES if train["lr_schedule"] == "constant" else RESUMABLE_CHANGES - {"steps"}


def learning_rate(cfg: DecoderTrainConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based): a function of the step alone, so a resumed
    run takes the same rates as an uninterrupted one without any scheduler state in the checkpoint."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))


def train_step(
    run: TrainRun,
    schedule: NoiseSchedule,
    batch: TrainBatch,
    cfg: DecoderTrainConfig,
    lpips_net: nn.Module | None,
    rho: float,
) -> dict[str, float]:
    """One optimiser step with the NaN guard, gradient clipping and the EMA update (public: ``bench.gpu_check``
    times exactly the step that training takes)."""
    run.model.train()
    run.optimizer.zero_grad(set_to_none=True)
    loss, stats = diffusion_loss(run.model, schedule, batch, cfg, run.generator, lpips_net, rho)
    if not torch.isfinite(loss):
        parts = ", ".join(f"{k}={v:.4g}" for k, v in stats.items())
        raise BenchError(
            f"decoder training diverged at step {run.step + 1}: loss is not finite ({parts}); the last good state "
            "is the .partial checkpoint beside --out (if any). Lower decoder.train.lr or set grad_clip"
        )
    loss.backward()
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, run.step)
    run.optimizer.step()
    run.ema.update(run.model)
    run.step += 1
    return stats


def new_run(config: DecoderConfig, cfg: DecoderTrainConfig, codec: MSHCodec) -> TrainRun:
    """A fresh run on the codec's device: the decoder (latent decoder from ``g_s``; channels-last on
    CUDA), its EMA, AdamW and the sampling generator; the codec frozen. ``bench.gpu_check`` times its steps."""
    model = DiffusionDecoder(config)
    model.init_from_codec(codec.net.g_s.state_dict())
    model.to(codec.device)
    if codec.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    codec.net.eval().requires_grad_(False)
    return TrainRun(
        model=model,
        ema=EMA(model, cfg.ema),
        optimizer=torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        generator=torch.Generator().manual_seed(cfg.seed + 1),
    )


def train_decoder(
    config: DecoderConfig,
    cfg: DecoderTrainConfig,
    codec: MSHCodec,
    msh_checkpoint: str | os.PathLike,
    images: Sequence[Path],
    out: str | os.PathLike,
) -> Path:
    """Train (or resume training) a decoder for ``codec`` on random crops of ``images``; save to ``out``.

    The codec is frozen (eval mode, no gradients) and defines the device.
    """
    out, device = Path(out), codec.device
    seed_everything(cfg.seed)
    lpips_net, rho = perceptual_loss(cfg.rho, cfg.allow_random_backbones)
    if lpips_net is not None:
        lpips_net.to(device)
    run = new_run(config, cfg, codec)
    model = run.model
    meta = _metadata(cfg, codec, Path(msh_checkpoint), rho)
    partial = partial_path(out)
    check_writable(out)
    if partial.is_file():
        _resume(partial, run, meta)
        log.info("resuming %s from step %d", partial, run.step)
    schedule = model.noise_schedule()
    batches = crop_stream(images, cfg.crop, cfg.batch_size, cfg.seed, skip=run.step)
    run_steps(
        step=run.step,
        total=cfg.steps,
        desc=f"train-decoder q{cfg.quality}",
        train_step=lambda: train_step(
            run, schedule, prepare_batch(codec, next(batches).to(device)), cfg, lpips_net, rho
        ),
        save_partial=lambda _: _save_partial(partial, run, meta),
        partial=partial,
        checkpoint_every=cfg.checkpoint_every,
        postfix=lambda stats: {k: f"{v:.4f}" for k, v in stats.items()},
    )
    save_decoder(out, config, run.ema.shadow, **meta, step=run.step)
    partial.unlink(missing_ok=True)
    return out


# ----------------------------------------------------------------------------- CLI


def train_from_config(
    config_path: str | os.PathLike,
    quality: int,
    msh_checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    steps: int | None = None,
    device: str | None = None,
    seed: int | None = None,
) -> Path:
    """``train-decoder``: read the config, load the frozen MSH codec, train, write ``out``."""
    config = with_overrides(load_config(config_path), {"decoder.train.steps": steps, "seed": seed, "device": device})
    cfg = DecoderTrainConfig.from_config(config, quality)
    codec = load_codec(quality, checkpoint=msh_checkpoint, device=config["device"])
    model_config = DecoderConfig.from_section(config["decoder"]["model"], codec.net.M, codec.net.N)
    return train_decoder(model_config, cfg, codec, msh_checkpoint, list_images(data), out)
