"""The conditional diffusion decoder: configuration, conditioning, network and checkpoint files.

``DiffusionDecoder`` predicts, from a noisy image ``x_t`` (in [-1, 1]), a model-time index ``t`` and
the conditioning computed once per image from the codec's ``y_hat``, the quantity named by
``prediction_type`` (diffusers' names: ``epsilon``, ``v_prediction``, ``sample``), plus, with
``learn_sigma``, the learned-range variance interpolation values of improved DDPM.

Conditioning (:class:`Condition`) is everything derived from the bits: ``y_hat`` itself, the MSH
reconstruction ``x_msh`` (for ``msh_input`` / ``residual_over_msh``) and, when the latent decoder is
not time-conditioned, its multi-scale maps (cached, so sampling runs the latent decoder once).
The *unconditional* branch (``p_uncond`` dropout in training, classifier-free guidance at
sampling) zeroes all of it: ``y_hat = 0`` and ``x_msh = 0`` (mid-grey in [-1, 1]).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.diffusion.latent_decoder import NUM_STAGES, LatentDecoder
from bench.diffusion.schedule import NoiseSchedule, make_schedule
from bench.diffusion.unet import UNet
from bench.sampler_facts import PREDICTION_TYPES
from bench.utils import BenchError, state_dict_hash

CHECKPOINT_FORMAT = "rdp-bench-diffusion-decoder"
CHECKPOINT_VERSION = 2  # 2: the EMA weights' state_dict_hash is stored and checked on load
_DEFAULT_RESPACING = "config"


@dataclass(frozen=True)
class DecoderConfig:
    """Architecture and diffusion settings of a decoder: the schema's ``decoder.model`` keys plus the
    codec's latent width ``latent_channels`` (M) and, for a g_s-initialised latent decoder, the
    codec's synthesis width ``gs_channels`` (N). Stored as a dict inside every checkpoint."""

    latent_channels: int
    num_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 3, 3)
    num_res_blocks: int = 3
    num_heads: int = 4
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    time_conditioned_latent_decoder: bool = False
    init_latent_decoder_from_gs: bool = False
    gs_channels: int | None = None
    msh_input: bool = False
    prediction_type: str = "epsilon"
    residual_over_msh: bool = False
    msh_prior_std: float | None = None
    learn_sigma: bool = True
    schedule: str = "cosine"
    train_timesteps: int = 4000
    respacing: int | None = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        if self.prediction_type not in PREDICTION_TYPES:
            raise BenchError(f"unknown prediction_type {self.prediction_type!r}; known: {', '.join(PREDICTION_TYPES)}")
        if self.residual_over_msh and self.prediction_type != "sample":
            raise BenchError("residual_over_msh needs prediction_type 'sample' (the residual is added to x0)")
        if self.msh_prior_std is not None and not (self.residual_over_msh and self.msh_prior_std > 0):
            raise BenchError("msh_prior_std needs residual_over_msh and a value > 0 (the residual's prior std)")
        if self.init_latent_decoder_from_gs and self.gs_channels is None:
            raise BenchError("init_latent_decoder_from_gs needs gs_channels (the codec's N)")
        if len(self.channel_mult) > 7:
            raise BenchError("at most 7 UNet levels: images are padded to multiples of 64")

    @property
    def needs_msh(self) -> bool:
        """Whether the model reads the MSH reconstruction (as input channels or as the x0 base)."""
        return self.msh_input or self.residual_over_msh

    @property
    def out_channels(self) -> int:
        """3 (the prediction) or 6 (prediction + learned-range variance values)."""
        return 6 if self.learn_sigma else 3

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for checkpoints and JSON."""
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise BenchError(f"unknown decoder config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_section(
        cls, model_section: dict[str, Any], latent_channels: int, gs_channels: int | None
    ) -> DecoderConfig:
        """Build from a validated config's ``decoder.model`` section and the codec's widths."""
        gs = gs_channels if model_section.get("init_latent_decoder_from_gs") else None
        return cls.from_dict({**model_section, "latent_channels": latent_channels, "gs_channels": gs})


@dataclass
class Condition:
    """Per-image conditioning, computed once and reused at every sampling step."""

    y_hat: torch.Tensor  # [B, M, H/16, W/16] padded-size latent
    x_msh: torch.Tensor | None  # [B, 3, H, W] MSH reconstruction at padded size, in [-1, 1]
    features: dict[int, torch.Tensor] | None  # cached latent-decoder maps (not time-conditioned only)

    def select(self, index: torch.Tensor) -> Condition:
        """The conditioning of the batch entries ``index`` (e.g. to pair images with several seeds)."""
        return Condition(
            y_hat=self.y_hat[index],
            x_msh=None if self.x_msh is None else self.x_msh[index],
            features=None if self.features is None else {k: v[index] for k, v in self.features.items()},
        )


class DiffusionDecoder(nn.Module):
    """Latent decoder + UNet; see the module docstring for the conditioning and output semantics."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        levels = len(config.channel_mult)
        inject = [lvl for lvl in range(NUM_STAGES) if lvl < levels]
        self.unet = UNet(
            in_channels=6 if config.msh_input else 3,
            out_channels=config.out_channels,
            num_channels=config.num_channels,
            channel_mult=config.channel_mult,
            num_res_blocks=config.num_res_blocks,
            num_heads=config.num_heads,
            dropout=config.dropout,
            use_scale_shift_norm=config.use_scale_shift_norm,
            inject_levels=inject,
        )
        # Maps for scales the UNet does not reach are trunk intermediates only; give them the
        # deepest level's width.
        widths = self.unet.level_input_channels
        level_channels = [widths[min(lvl, levels - 1)] for lvl in range(NUM_STAGES)]
        self.latent_decoder = LatentDecoder(
            config.latent_channels,
            level_channels,
            emb_channels=self.unet.emb_channels if config.time_conditioned_latent_decoder else None,
            gs_channels=config.gs_channels if config.init_latent_decoder_from_gs else None,
        )
        self._inject = tuple(inject)
        # abar of the training schedule, for the Gaussian-prior skip of ``msh_prior_std`` (not saved:
        # it follows from the config)
        abar = make_schedule(config.schedule, config.train_timesteps, None).alphas_cumprod.float()
        self.register_buffer("_abar", abar, persistent=False)
        self.checkpoint_info: dict[str, Any] = {}  # filled by load_decoder

    @property
    def downsampling(self) -> int:
        """H and W must be multiples of this (the codec's padding to 64 always satisfies it)."""
        return self.unet.downsampling

    def init_from_codec(self, gs_state: dict[str, torch.Tensor]) -> None:
        """Copy the codec's ``g_s`` into the latent decoder when the config asks for it (no-op otherwise)."""
        if self.config.init_latent_decoder_from_gs:
            self.latent_decoder.load_gs(gs_state)

    def _features(self, y_hat: torch.Tensor, emb: torch.Tensor | None) -> dict[int, torch.Tensor]:
        maps = self.latent_decoder(y_hat, emb)
        return {lvl: maps[lvl] for lvl in self._inject}

    def condition(self, y_hat: torch.Tensor, x_msh: torch.Tensor | None = None) -> Condition:
        """Conditioning for a batch; caches the latent-decoder maps when they do not depend on t."""
        if self.config.needs_msh and x_msh is None:
            raise BenchError("this decoder reads the MSH reconstruction (msh_input/residual_over_msh): pass x_msh")
        if y_hat.shape[1] != self.config.latent_channels:
            raise BenchError(
                f"latent has {y_hat.shape[1]} channels but the decoder was trained for {self.config.latent_channels}"
            )
        features = None if self.config.time_conditioned_latent_decoder else self._features(y_hat, None)
        return Condition(y_hat=y_hat, x_msh=x_msh if self.config.needs_msh else None, features=features)

    def uncondition(self, cond: Condition) -> Condition:
        """The zeroed conditioning (classifier-free guidance branch; same as ``p_uncond`` dropout)."""
        keep = torch.zeros(cond.y_hat.shape[0], dtype=torch.bool, device=cond.y_hat.device)
        return self.drop_condition(cond, keep)

    def drop_condition(self, cond: Condition, keep: torch.Tensor) -> Condition:
        """Zero ``y_hat`` and ``x_msh`` of the batch entries where ``keep`` [B] is False and recompute
        the cached maps (the latent decoder of a zero latent is not zero: it has biases)."""
        mask = keep.to(cond.y_hat.dtype)[:, None, None, None]
        y_hat = cond.y_hat * mask
        x_msh = None if cond.x_msh is None else cond.x_msh * mask.to(cond.x_msh.dtype)
        features = None if cond.features is None else self._features(y_hat, None)
        return Condition(y_hat=y_hat, x_msh=x_msh, features=features)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        """Prediction [B, 3 or 6, H, W] for ``x_t`` at ORIGINAL-time indices ``t`` [B].

        With ``residual_over_msh`` the first three channels are ``x_msh + UNet output`` (so a
        ``sample`` prediction is x0 itself and a fresh model predicts exactly the MSH output).
        """
        self.unet.check_size(x_t)
        emb = self.unet.embed(t)
        features = cond.features
        if features is None:
            features = self._features(cond.y_hat, emb if self.config.time_conditioned_latent_decoder else None)
        x_in = torch.cat([x_t, cond.x_msh.to(x_t.dtype)], dim=1) if self.config.msh_input else x_t
        out = self.unet(x_in, emb, features)
        if self.config.residual_over_msh:
            out = torch.cat([out[:, :3] + self.x0_base(x_t, t, cond.x_msh).to(out.dtype), out[:, 3:]], dim=1)
        return out

    def x0_base(self, x_t: torch.Tensor, t: torch.Tensor, x_msh: torch.Tensor) -> torch.Tensor:
        """What the residual UNet output is added to: the MSH reconstruction, or with ``msh_prior_std``
        (s) the Bayes posterior mean of x0 given x_t under the prior x0 ~ N(x_msh, s² I),

            x_msh + k (x_t - a x_msh),   k = a s² / (a² s² + 1 - a²),   a² = abar_t,

        which is x_msh at pure noise and x_t itself at t = 0 (k → 1). A zero-initialised UNet is then
        already the optimal denoiser of a Gaussian residual at every noise level, and training learns
        only what is not Gaussian: without the skip, a CPU-budget model never learns to pass a nearly
        clean x_t through (measured: input 49.9 dB → x0 estimate 32.2 dB at t = 0), and multi-step
        sampling drifts away from the bits.
        """
        x_msh = x_msh.to(x_t.dtype)
        if self.config.msh_prior_std is None:
            return x_msh
        a2 = self._abar[t].to(x_t.dtype).view(-1, 1, 1, 1)
        s2 = self.config.msh_prior_std**2
        a = a2.sqrt()
        k = a * s2 / (a2 * s2 + 1.0 - a2)
        return x_msh + k * (x_t - a * x_msh)

    def noise_schedule(self, respacing: int | None | str = _DEFAULT_RESPACING) -> NoiseSchedule:
        """The model's schedule, respaced to ``respacing`` steps (default: the config's respacing;
        ``None``: the full training schedule)."""
        steps = self.config.respacing if respacing == _DEFAULT_RESPACING else respacing
        return make_schedule(self.config.schedule, self.config.train_timesteps, steps)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a decoder checkpoint file; BenchError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"decoder checkpoint not found: {path} (train one with `python -m bench train-decoder`)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many types for truncated/corrupt files
        raise BenchError(f"cannot read decoder checkpoint {path}: {err.__class__.__name__}: {err}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise BenchError(f"{path} is not an rdp-bench diffusion decoder checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise BenchError(
            f"{path} has checkpoint version {ckpt.get('version')}, this code reads {CHECKPOINT_VERSION}; "
            "retrain it with `python -m bench train-decoder`"
        )
    return ckpt


def check_weights(path: str | Path, ckpt: dict[str, Any]) -> str:
    """The EMA weights' ``state_dict_hash``, after checking it against the one stored at save time.

    The same hash ties a bitstream to its MSH weights; here it catches a checkpoint whose tensor
    bytes changed on disk (torch.load does not check them), which would otherwise decode silently.
    """
    actual = state_dict_hash(ckpt["ema"])
    if actual != ckpt.get("weights_hash"):
        raise BenchError(
            f"decoder checkpoint {path} is corrupt: its weights hash to {actual}, but it was saved with weights "
            f"{ckpt.get('weights_hash')}; copy it again or retrain it with `python -m bench train-decoder`"
        )
    return actual


def load_decoder(path: str | Path, device: str | torch.device = "cpu") -> DiffusionDecoder:
    """The EMA weights of a decoder checkpoint, in eval mode on ``device``.

    The returned module has ``checkpoint_info`` (step, effective rho, weights hash, MSH identity…)
    so that tables can record which decoder produced a row.
    """
    ckpt = read_checkpoint(path)
    weights_hash = check_weights(path, ckpt)
    model = DiffusionDecoder(DecoderConfig.from_dict(ckpt["config"]))
    try:
        model.load_state_dict(ckpt["ema"])
    except RuntimeError as err:
        raise BenchError(f"decoder checkpoint {path} does not match its own config: {err}") from None
    info_keys = ("step", "rho_effective", "msh", "train", "code_version")
    model.checkpoint_info = {k: ckpt[k] for k in info_keys if k in ckpt}
    model.checkpoint_info["weights_hash"] = weights_hash
    return model.to(device).eval()
