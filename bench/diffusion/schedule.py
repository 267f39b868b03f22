"""Noise schedules of the diffusion decoder and their closed forms (improved-diffusion conventions).

A :class:`NoiseSchedule` holds the betas the model is trained or sampled on and, for a respaced
schedule, the map from each kept step to the original ("model-time") index the network was trained
with. Training uses the config's ``respacing`` (all ``T`` steps when null: the identity map);
samplers build a respaced one (improved-diffusion's ``space_timesteps(T, [K])``) and feed
``timestep_map[i]`` to the network, so the network always sees original-time indices.

The per-timestep coefficients (``q_sample``, the posterior ``q(x_{t-1} | x_t, x_0)``, SNR) live
here too, because both the training loss and the samplers' tests need exactly the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.utils import BenchError

SCHEDULE_KINDS: tuple[str, ...] = ("linear", "cosine")


def linear_betas(train_timesteps: int) -> torch.Tensor:
    """improved-diffusion's scaled linear schedule: beta from 1e-4 to 0.02, scaled by 1000 / T."""
    scale = 1000.0 / train_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, train_timesteps, dtype=torch.float64)


def cosine_betas(train_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: abar(t) = cos²((t/T + s)/(1 + s)·π/2), beta ≤ max_beta."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / train_timesteps) / alpha_bar(i / train_timesteps), max_beta)
        for i in range(train_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def space_timesteps(train_timesteps: int, count: int) -> list[int]:
    """``count`` evenly spaced original indices in ``[0, T)``, first and last included.

    Same rounding as improved-diffusion's ``space_timesteps(T, [count])`` (Python's ``round``), so
    a respaced schedule here is the one the paper's code samples on.
    """
    if not 1 <= count <= train_timesteps:
        raise BenchError(f"cannot respace {train_timesteps} training steps to {count} steps (need 1 <= K <= T)")
    stride = (train_timesteps - 1) / (count - 1) if count > 1 else 1.0
    return sorted({round(i * stride) for i in range(count)})


@dataclass(frozen=True)
class NoiseSchedule:
    """The betas a model runs on and the model-time index of each of its steps.

    ``betas[i]`` is the variance added at step ``i`` of *this* schedule; ``timestep_map[i]`` is the
    original training-time index the network must be given at that step (identity when not respaced).
    """

    betas: torch.Tensor  # float64 [N]
    timestep_map: torch.Tensor  # long [N]

    def __post_init__(self) -> None:
        if self.betas.ndim != 1 or self.betas.shape != self.timestep_map.shape:
            raise ValueError("betas and timestep_map must be 1-D tensors of the same length")
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError("every beta must lie in (0, 1)")

    @property
    def num_steps(self) -> int:
        """Number of steps N of this schedule."""
        return int(self.betas.shape[0])

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """abar_t = prod_{s<=t} (1 - beta_s), float64 [N]."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        """abar_{t-1}, with abar_{-1} = 1, float64 [N]."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])

    @property
    def posterior_variance(self) -> torch.Tensor:
        """Variance of q(x_{t-1} | x_t, x_0): beta_t (1 - abar_{t-1}) / (1 - abar_t), float64 [N]."""
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_log_variance_clipped(self) -> torch.Tensor:
        """log posterior variance with the t=0 entry (0) replaced by the t=1 value, as improved-diffusion."""
        var = self.posterior_variance
        return torch.log(torch.cat([var[1:2], var[1:]]))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) at step indices ``t`` (float32, on t's device)."""
        abar = self.alphas_cumprod
        return _gather(abar / (1.0 - abar), t)

    def coefficient(self, name: str, t: torch.Tensor, ndim: int = 4) -> torch.Tensor:
        """A per-step float64 table (a property name above, or ``sqrt_abar``, ``sqrt_one_minus_abar``,
        ``posterior_coef_x0``, ``posterior_coef_xt``) gathered at ``t`` and shaped [B, 1, ...] for broadcasting."""
        abar, abar_prev = self.alphas_cumprod, self.alphas_cumprod_prev
        tables = {
            "sqrt_abar": lambda: abar.sqrt(),
            "sqrt_one_minus_abar": lambda: (1.0 - abar).sqrt(),
            "betas": lambda: self.betas,
            "posterior_coef_x0": lambda: self.betas * abar_prev.sqrt() / (1.0 - abar),
            "posterior_coef_xt": lambda: (1.0 - abar_prev) * (1.0 - self.betas).sqrt() / (1.0 - abar),
            "posterior_variance": lambda: self.posterior_variance,
            "posterior_log_variance_clipped": lambda: self.posterior_log_variance_clipped,
            "log_betas": lambda: torch.log(self.betas),
        }
        if name not in tables:
            raise KeyError(f"unknown schedule coefficient {name!r}; known: {sorted(tables)}")
        return _gather(tables[name](), t).reshape(-1, *([1] * (ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        return (
            self.coefficient("sqrt_abar", t, x0.ndim) * x0 + self.coefficient("sqrt_one_minus_abar", t, x0.ndim) * noise
        )

    def target(self, prediction_type: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What a network of ``prediction_type`` (diffusers' names) should output for
        ``x_t = q_sample(x0, t, noise)``."""
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "sample":
            return x0
        if prediction_type == "v_prediction":
            return (
                self.coefficient("sqrt_abar", t, x0.ndim) * noise
                - self.coefficient("sqrt_one_minus_abar", t, x0.ndim) * x0
            )
        raise ValueError(f"unknown prediction type {prediction_type!r}")

    def predict_x0(
        self, prediction_type: str, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """The x0 estimate implied by a ``prediction_type`` output at ``x_t`` (not clipped)."""
        if prediction_type == "sample":
            return output
        a = self.coefficient("sqrt_abar", t, x_t.ndim)
        s = self.coefficient("sqrt_one_minus_abar", t, x_t.ndim)
        if prediction_type == "epsilon":
            return (x_t - s * output) / a
        if prediction_type == "v_prediction":
            return a * x_t - s * output
        raise ValueError(f"unknown prediction type {prediction_type!r}")

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x0)."""
        return (
            self.coefficient("posterior_coef_x0", t, x0.ndim) * x0
            + self.coefficient("posterior_coef_xt", t, x0.ndim) * x_t
        )

    def learned_range_log_variance(self, values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """improved DDPM's learned-range variance: log var = f·log(beta_t) + (1-f)·log(beta~_t), f = (v+1)/2."""
        frac = (values + 1) / 2
        max_log = self.coefficient("log_betas", t, values.ndim)
        min_log = self.coefficient("posterior_log_variance_clipped", t, values.ndim)
        return frac * max_log + (1 - frac) * min_log

    def to_model_time(self, t: torch.Tensor) -> torch.Tensor:
        """Original-time indices the network is given for step indices ``t`` of this schedule."""
        return self.timestep_map.to(t.device)[t]


def _gather(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``table[t]`` computed in float64 on the CPU, returned as float32 on ``t``'s device."""
    return table[t.detach().cpu().long()].to(device=t.device, dtype=torch.float32)


def make_schedule(kind: str, train_timesteps: int, respacing: int | None) -> NoiseSchedule:
    """The ``kind`` schedule with ``train_timesteps`` steps, respaced to ``respacing`` steps (None: not respaced).

    Respacing keeps the alphas_cumprod of the chosen original steps and recomputes
    beta_i = 1 - abar_i / abar_{i-1}, as improved-diffusion's ``SpacedDiffusion`` does.
    """
    if kind not in SCHEDULE_KINDS:
        raise BenchError(f"unknown noise schedule {kind!r}; known: {', '.join(SCHEDULE_KINDS)}")
    betas = linear_betas(train_timesteps) if kind == "linear" else cosine_betas(train_timesteps)
    if respacing is None or respacing == train_timesteps:
        return NoiseSchedule(betas=betas, timestep_map=torch.arange(train_timesteps, dtype=torch.long))
    kept = space_timesteps(train_timesteps, respacing)
    abar = torch.cumprod(1.0 - betas, dim=0)[kept]
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return NoiseSchedule(betas=1.0 - abar / abar_prev, timestep_map=torch.tensor(kept, dtype=torch.long))
