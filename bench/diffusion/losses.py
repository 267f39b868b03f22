"""The diffusion decoder's training loss: one batch of crops, as the paper's improved-diffusion code does it.

1. a batch of random crops (multiples of 16) in [0, 1]; the frozen codec gives ``y_hat`` exactly as
   decoding that crop's bitstream would (``training_latent``: padding to 64, hard rounding around
   the hyperprior means) and the MSH reconstruction ``g_s(y_hat)`` (:func:`prepare_batch`);
2. conditioning dropout: for a ``p_uncond`` fraction of the batch ``y_hat`` and ``x_msh`` are zeroed
   (the number of dropped samples is ``p·B`` stochastically rounded, so small batches still drop);
3. ``t`` uniform over the steps of the model's schedule, ``x_t = q_sample(x0, t, eps)``: the full
   ``T`` steps, or with ``respacing`` K the K kept steps (improved-diffusion trains a
   ``SpacedDiffusion`` on them when given ``--timestep_respacing``, as the paper's command is), the
   network always being given the original-time index of the step;
4. loss on the crop's pixels (padding excluded) = L1 or L2 between the output and its target,
   weighted per sample by min-SNR (see :func:`min_snr_weight`), + the variational-bound term with a
   stop-gradient on the mean when sigma is learned (improved DDPM's hybrid loss, λ = 0.001 on the
   full bound, i.e. ``N/1000`` on the per-step term of an N-step schedule) + ``rho`` × LPIPS(VGG)
   between the crop and the clamped x0 prediction (:func:`diffusion_loss`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from bench.codec import MSHCodec, pad, training_latent, unpad
from bench.diffusion.model import Condition, DiffusionDecoder
from bench.diffusion.schedule import NoiseSchedule
from bench.utils import BenchError
from bench.weight_files import hash_problem

log = logging.getLogger(__name__)

VGG_WEIGHTS = "vgg16-397923af.pth"  # torchvision's VGG16 ImageNet weights, LPIPS(VGG)'s backbone
LAMBDA_VB = 1e-3  # improved DDPM's weight of the full variational bound in the hybrid loss


def vgg_weights_path() -> Path:
    """Where torchvision (and so lpips) looks for the VGG16 weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_WEIGHTS


def perceptual_loss(rho: float, allow_random_backbones: bool) -> tuple[nn.Module | None, float]:
    """LPIPS(VGG) for the ``rho`` term and the rho actually used.

    The VGG weights must already be in ``$TORCH_HOME`` (nothing is downloaded here) and be upstream's
    (sha256 checked, :func:`bench.weight_files.hash_problem`). Without them a config that forbids
    random backbones (the paper's) stops with one BenchError naming the file; the others train with
    rho = 0 and say so loudly. The effective rho goes into the checkpoint.
    """
    if rho == 0:
        return None, 0.0
    path = vgg_weights_path()
    where = f"{path.parent} (TORCH_HOME={os.environ.get('TORCH_HOME', '<unset>')})"
    problem = hash_problem(path) if path.is_file() else f"{VGG_WEIGHTS} is not in {where}"
    if problem is not None:
        if not allow_random_backbones:
            raise BenchError(
                f"rho = {rho} needs the upstream LPIPS(VGG) weights: {problem}; copy the upstream file "
                "there or set decoder.train.rho: 0"
            )
        log.warning(
            "!!! %s: training WITHOUT the LPIPS term (effective rho = 0 instead of %s); "
            "the checkpoint records rho_effective = 0 !!!",
            problem,
            rho,
        )
        return None, 0.0
    import lpips  # heavy import, only when the term is used

    net = lpips.LPIPS(net="vgg", verbose=False).eval()  # torchvision finds the weights in the cache
    net.requires_grad_(False)
    return net, rho


def min_snr_weight(snr: Tensor, prediction_type: str, gamma: float, loss: str) -> Tensor:
    """Per-sample loss weight from the signal-to-noise ratio (Hang et al. 2023, min-SNR-γ).

    Written as an x0-space weight ``w`` converted to each target's space. At fixed x_t an eps error is
    an x0 error times sqrt(SNR) and a v error an x0 error times sqrt(SNR + 1), so a squared (``l2``)
    loss converts with SNR and SNR + 1, an absolute (``l1``) loss with their square roots
    (``p`` = 1 for L2, 1/2 for L1):
    - epsilon: w = min(SNR, γ) → weight min(SNR, γ) / SNR^p;
    - v_prediction: w = clamp(SNR, 1, γ) → weight clamp(SNR, 1, γ) / (SNR + 1)^p;
    - sample: w = clamp(SNR, 1, γ).
    For the x0 and v targets the x0-space weight is also floored at 1 ("truncated SNR", Salimans &
    Ho 2022): plain min(SNR, γ) vanishes near t = T, exactly where a decoder must learn its
    one-shot x0 from the bits. For eps a floor would make the weight 1/SNR^p, unbounded at t = T.
    """
    p = {"l2": 1.0, "l1": 0.5}[loss]
    if prediction_type == "epsilon":
        return snr.clamp(max=gamma) / snr**p
    w = snr.clamp(min=1.0, max=gamma)
    return w / (snr + 1) ** p if prediction_type == "v_prediction" else w


def uncond_keep_mask(batch: int, p_uncond: float, generator: torch.Generator) -> Tensor:
    """Bool [batch]: False for the samples whose conditioning is dropped.

    ``floor(p·B + u)`` samples (u uniform), chosen uniformly: the expected fraction is exactly
    ``p_uncond`` at any batch size (a batch of 4 at p = 0.1 still drops a sample 40 % of the time).
    """
    count = math.floor(p_uncond * batch + torch.rand((), generator=generator).item())
    keep = torch.ones(batch, dtype=torch.bool)
    keep[torch.randperm(batch, generator=generator)[:count]] = False
    return keep


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """log p(x) of 8-bit pixels (scaled to [-1, 1]) under a Gaussian discretised to their bins (nats)."""

    def cdf(v: Tensor) -> Tensor:  # the tanh approximation of the standard normal CDF used by DDPM
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))

    centred, inv_std = x - means, torch.exp(-log_scales)
    cdf_plus, cdf_min = cdf(inv_std * (centred + 1 / 255)), cdf(inv_std * (centred - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def vb_term(schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor, x0_pred: Tensor, var_values: Tensor) -> Tensor:
    """Per-pixel variational-bound term in bits: KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)), or the
    discretised decoder NLL at t = 0. ``x0_pred`` should be detached (only the variance learns here)."""
    true_mean = schedule.posterior_mean(x0, x_t, t)
    true_logvar = schedule.coefficient("posterior_log_variance_clipped", t, x0.ndim)
    model_mean = schedule.posterior_mean(x0_pred, x_t, t)
    model_logvar = schedule.learned_range_log_variance(var_values, t)
    kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar)
    return torch.where((t == 0)[:, None, None, None], nll, kl) / math.log(2.0)


def _per_sample_mean(x: Tensor, padding: tuple[int, int, int, int]) -> Tensor:
    """Mean over the crop's own pixels (the codec's padding removed) of a per-pixel map, per sample."""
    return unpad(x, padding).flatten(1).mean(1)


@dataclass
class TrainBatch:
    """One batch ready for the diffusion loss: target image, conditioning, and the codec padding."""

    x0: Tensor  # [B, 3, Hp, Wp] padded crop in [-1, 1]
    y_hat: Tensor  # [B, M, Hp/16, Wp/16]
    x_msh: Tensor  # [B, 3, Hp, Wp] MSH reconstruction in [-1, 1]
    padding: tuple[int, int, int, int]


@torch.no_grad()
def prepare_batch(codec: MSHCodec, crops: Tensor) -> TrainBatch:
    """Run the frozen codec on crops in [0, 1]: ``y_hat`` as decoding yields it and ``g_s(y_hat)``."""
    y_hat = training_latent(codec, crops)
    x_msh = codec.net.g_s(y_hat).clamp(0, 1)
    padded, padding = pad(crops)
    return TrainBatch(x0=padded * 2 - 1, y_hat=y_hat, x_msh=x_msh * 2 - 1, padding=padding)


class LossSettings(Protocol):
    """The training settings the loss of a batch reads (``bench.diffusion.train.DecoderTrainConfig``)."""

    loss: str  # "l1" or "l2"
    min_snr_gamma: float | None
    p_uncond: float


def diffusion_loss(
    model: DiffusionDecoder,
    schedule: NoiseSchedule,
    batch: TrainBatch,
    cfg: LossSettings,
    generator: torch.Generator,
    lpips_net: nn.Module | None = None,
    rho: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """The training loss of one batch (see the module docstring) and its parts for logging."""
    mcfg, device, b = model.config, batch.x0.device, batch.x0.shape[0]
    keep = uncond_keep_mask(b, cfg.p_uncond, generator).to(device)
    t = torch.randint(0, schedule.num_steps, (b,), generator=generator).to(device)
    noise = torch.randn(batch.x0.shape, generator=generator).to(device)
    cond = model.drop_condition(Condition(batch.y_hat, batch.x_msh if mcfg.needs_msh else None, None), keep)
    x_t = schedule.q_sample(batch.x0, t, noise)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(x_t, schedule.to_model_time(t), cond)
    out = out.float()
    pred, var_values = out[:, :3], out[:, 3:]
    target = schedule.target(mcfg.prediction_type, batch.x0, noise, t)
    err = (pred - target).abs() if cfg.loss == "l1" else (pred - target) ** 2
    per_sample = _per_sample_mean(err, batch.padding)
    if cfg.min_snr_gamma is not None:
        per_sample = per_sample * min_snr_weight(schedule.snr(t), mcfg.prediction_type, cfg.min_snr_gamma, cfg.loss)
    loss = per_sample.mean()
    stats = {"mse" if cfg.loss == "l2" else "mae": loss.item()}
    x0_pred = schedule.predict_x0(mcfg.prediction_type, pred, x_t, t)
    if mcfg.learn_sigma:
        vb = _per_sample_mean(vb_term(schedule, batch.x0, x_t, t, x0_pred.detach(), var_values), batch.padding)
        vb = vb.mean() * (LAMBDA_VB * schedule.num_steps)
        loss = loss + vb
        stats["vb"] = vb.item()
    if lpips_net is not None and rho > 0:
        lp = lpips_net(unpad(batch.x0, batch.padding), unpad(x0_pred.clamp(-1, 1), batch.padding)).mean()
        loss = loss + rho * lp
        stats["lpips"] = lp.item()
    stats["loss"] = loss.item()
    return loss, stats
