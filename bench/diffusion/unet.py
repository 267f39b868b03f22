"""The denoising UNet, in the style of improved-diffusion (Nichol & Dhariwal 2021), with multi-scale
conditioning: a feature map can be concatenated into the encoder path at the start of every level.

Layout for ``channel_mult = (m_0, ..., m_{L-1})`` and ``C = num_channels``:

- input conv to ``C`` channels; level ``l`` runs at ``H / 2**l`` with ``num_res_blocks`` ResBlocks of
  ``m_l * C`` channels, followed by a stride-2 conv (except at the last level);
- at the start of level ``l`` (before its first ResBlock) an optional conditioning map with as
  many channels as the activation already has (``level_input_channels[l]``) is concatenated;
- the middle block is ResBlock → attention → ResBlock; the decoder mirrors the encoder with
  ``num_res_blocks + 1`` ResBlocks per level fed by the encoder's skip activations;
- self-attention only at the two lowest-resolution levels (the paper's rates 16 and 8 for five
  levels) and in the middle block; the output conv is zero-initialised.

The input must be divisible by ``2**(L-1)``; images are padded to multiples of 64 like the codec.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.utils import BenchError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of (possibly fractional) timesteps, as in improved-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (improved-diffusion), or the largest divisor of ``channels`` below that."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (so a residual branch starts as the identity) and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class TimestepBlock(nn.Module):
    """A module whose ``forward`` takes the timestep embedding as a second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class EmbedSequential(nn.Sequential):
    """A sequential container that hands the timestep embedding to the children that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class ResBlock(TimestepBlock):
    """GroupNorm–SiLU–conv twice with the timestep embedding added (or applied as scale-shift of the
    second norm); a 1×1 conv on the skip path when the channel count changes. The last conv is
    zero-initialised so a fresh block is the identity on its skip path."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all spatial positions, with a zero-initialised output projection."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise BenchError(f"attention over {channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        # [3, B, heads, HW, C/heads], contiguous: torch's fused CPU kernel needs it (else an HW×HW matrix)
        q, k, v = qkv.permute(1, 0, 2, 4, 3).contiguous()
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """improved-diffusion UNet with a timestep embedding and per-level conditioning injection.

    ``inject_levels`` lists the levels that receive a conditioning map at their start; the map
    for level ``l`` must have ``level_input_channels[l]`` channels and the level's resolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        num_heads: int,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        inject_levels: Sequence[int] = (),
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        self.num_levels = levels
        self.inject_levels = tuple(sorted(inject_levels))
        self.emb_channels = 4 * num_channels
        self.num_channels = num_channels
        self.time_embed = nn.Sequential(
            nn.Linear(num_channels, self.emb_channels), nn.SiLU(), nn.Linear(self.emb_channels, self.emb_channels)
        )
        attention_levels = {levels - 2, levels - 1}

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, self.emb_channels, cout, dropout, use_scale_shift_norm)

        self.input_conv = nn.Conv2d(in_channels, num_channels, 3, padding=1)
        self.level_input_channels: list[int] = []
        self.down = nn.ModuleList()  # one EmbedSequential per encoder block, level by level
        self.down_level: list[int] = []  # level of each entry of self.down
        skip_channels = [num_channels]
        ch = num_channels
        for level, mult in enumerate(channel_mult):
            self.level_input_channels.append(ch)
            for i in range(num_res_blocks):
                cin = 2 * ch if (i == 0 and level in self.inject_levels) else ch
                layers: list[nn.Module] = [res(cin, mult * num_channels)]
                ch = mult * num_channels
                if level in attention_levels:
                    layers.append(AttentionBlock(ch, num_heads))
                self.down.append(EmbedSequential(*layers))
                self.down_level.append(level)
                skip_channels.append(ch)
            if level < levels - 1:
                self.down.append(EmbedSequential(Downsample(ch)))
                self.down_level.append(level)
                skip_channels.append(ch)

        self.middle = EmbedSequential(res(ch, ch), AttentionBlock(ch, num_heads), res(ch, ch))

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * num_channels)]
                ch = mult * num_channels
                if level in attention_levels:
                    layers.append(AttentionBlock(ch, num_heads))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.up.append(EmbedSequential(*layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, out_channels, 3, padding=1)))

    @property
    def downsampling(self) -> int:
        """Factor by which H and W must be divisible."""
        return 2 ** (self.num_levels - 1)

    def check_size(self, x: torch.Tensor) -> None:
        """BenchError unless ``x``'s height and width are divisible by :attr:`downsampling`."""
        if x.shape[-2] % self.downsampling or x.shape[-1] % self.downsampling:
            raise BenchError(
                f"UNet input {tuple(x.shape[-2:])} must be divisible by {self.downsampling}; pad it like the codec does"
            )

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """Timestep embedding [B, 4·num_channels] for model-time indices ``t``."""
        return self.time_embed(timestep_embedding(t, self.num_channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
        """Run the UNet on ``x`` [B, in, H, W] with embedding ``emb``; ``features[l]`` is concatenated
        at the start of level ``l`` for every ``l`` in ``inject_levels``."""
        self.check_size(x)
        if set(features) != set(self.inject_levels):
            raise ValueError(f"expected conditioning maps for levels {self.inject_levels}, got {sorted(features)}")
        h = self.input_conv(x)
        skips = [h]
        current_level = -1
        for block, level in zip(self.down, self.down_level, strict=True):
            if level != current_level:
                current_level = level
                if level in features:
                    h = torch.cat([h, features[level].to(h.dtype)], dim=1)
            h = block(h, emb)
            skips.append(h)
        h = self.middle(h, emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
