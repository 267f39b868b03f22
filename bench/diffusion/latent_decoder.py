"""The latent decoder: turns the codec's ``y_hat`` (H/16) into one conditioning map per scale.

Four stride-2 stages take ``y_hat`` from H/16 to H/8, H/4, H/2 and H; the map after stage ``k``
is injected into the UNet level of the same resolution (multi-scale injection, as the paper's
"extra decoder"). Two trunks are available:

- **plain** (the paper's): each stage is residual block → 3×3 stride-2 transposed conv → ReLU,
  whose output already has the channel count of the UNet level it feeds.
- **g_s-initialised** (``init_latent_decoder_from_gs``): each stage is residual block → the
  codec synthesis transform's own transposed conv → its inverse GDN (none after the last one),
  i.e. the trunk *is* a copy of the codec's ``g_s`` (mbt2018-mean layout) with a residual block
  before every upsampling. The residual blocks start as the identity (zero-initialised last
  conv), so at initialisation the trunk's full-resolution activation is exactly the MSH
  reconstruction and its coarser activations are ``g_s``'s own features; a 1×1 "tap" per scale
  maps them to the UNet level's channel count. Training then fine-tunes the copy freely.

With ``emb_channels`` set the residual blocks also take the timestep embedding (the paper's
"conditioned decoder"); the maps then depend on ``t`` and cannot be cached across sampling steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from compressai.layers import GDN
from torch import nn

from bench.diffusion.unet import zero_init

NUM_STAGES = 4  # y_hat is at H/16: four ×2 upsamplings reach full resolution


class LatentResBlock(nn.Module):
    """x + conv(ReLU(conv(x) [+ Linear(emb)])): the residual block of a latent-decoder stage."""

    def __init__(self, channels: int, emb_channels: int | None, zero_last: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, channels)) if emb_channels else None
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        if zero_last:
            zero_init(self.conv2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(x)
        if self.emb is not None:
            h = h + self.emb(emb).to(h.dtype)[:, :, None, None]
        return x + self.conv2(self.act(h))


def gs_stages(latent_channels: int, gs_channels: int) -> list[nn.Sequential]:
    """The mbt2018-mean synthesis transform ``g_s`` laid out as four upsampling stages.

    Stage ``k`` is ``deconv`` (5×5, stride 2) followed by an inverse GDN, except the last, which
    outputs the 3-channel image. Parameter names match compressai's ``g_s`` Sequential through
    :func:`gs_state_dict_to_stages`.
    """
    widths = [latent_channels, gs_channels, gs_channels, gs_channels, 3]
    stages = []
    for k in range(NUM_STAGES):
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(widths[k], widths[k + 1], 5, stride=2, padding=2, output_padding=1)
        ]
        if k < NUM_STAGES - 1:
            layers.append(GDN(widths[k + 1], inverse=True))
        stages.append(nn.Sequential(*layers))
    return stages


def gs_state_dict_to_stages(gs_state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Split compressai's ``g_s`` state dict (Sequential indices 0..6) into the four stages' dicts."""
    per_stage: list[dict[str, torch.Tensor]] = [{} for _ in range(NUM_STAGES)]
    for name, value in gs_state.items():
        index, rest = name.split(".", 1)
        stage, offset = divmod(int(index), 2)
        per_stage[stage][f"{offset}.{rest}"] = value
    return per_stage


class LatentDecoder(nn.Module):
    """``y_hat`` [B, M, H/16, W/16] → ``maps[k]`` at H/2**k for k = 3, 2, 1, 0 (dict by UNet level).

    ``level_channels[l]`` is the channel count the map for UNet level ``l`` (resolution H/2**l,
    l = 0..3) must have. ``gs_channels`` selects the g_s-initialised trunk (see the module doc).
    """

    def __init__(
        self,
        latent_channels: int,
        level_channels: Sequence[int],
        emb_channels: int | None = None,
        gs_channels: int | None = None,
    ) -> None:
        super().__init__()
        if len(level_channels) != NUM_STAGES:
            raise ValueError(f"need the channel counts of {NUM_STAGES} levels (H..H/8), got {list(level_channels)}")
        self.from_gs = gs_channels is not None
        out_channels = list(reversed(level_channels))  # stage k feeds level 3 - k
        if self.from_gs:
            trunk_stages = gs_stages(latent_channels, gs_channels)
            trunk_in = [latent_channels, gs_channels, gs_channels, gs_channels]
            trunk_out = [gs_channels, gs_channels, gs_channels, 3]
            self.taps = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(trunk_out, out_channels, strict=True))
        else:
            trunk_in = [latent_channels, *out_channels[:-1]]
            trunk_stages = [
                nn.Sequential(nn.ConvTranspose2d(c, o, 3, stride=2, padding=1, output_padding=1), nn.ReLU())
                for c, o in zip(trunk_in, out_channels, strict=True)
            ]
            self.taps = None
        self.blocks = nn.ModuleList(LatentResBlock(c, emb_channels, zero_last=self.from_gs) for c in trunk_in)
        self.stages = nn.ModuleList(trunk_stages)
        self.time_conditioned = emb_channels is not None

    def load_gs(self, gs_state: dict[str, torch.Tensor]) -> None:
        """Copy the codec's ``g_s`` weights into the trunk (g_s-initialised layout only)."""
        if not self.from_gs:
            raise ValueError("this latent decoder was not built with a g_s trunk")
        for stage, state in zip(self.stages, gs_state_dict_to_stages(gs_state), strict=True):
            stage.load_state_dict(state, strict=True)

    def trunk(self, y_hat: torch.Tensor, emb: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The trunk's activation after each stage, from H/8 to H (for g_s-initialised trunks the last
        one is, at initialisation, the codec's reconstruction in [0, 1])."""
        h, outs = y_hat, []
        for block, stage in zip(self.blocks, self.stages, strict=True):
            h = stage(block(h, emb))
            outs.append(h)
        return outs

    def forward(self, y_hat: torch.Tensor, emb: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """Conditioning maps keyed by UNet level (0 = full resolution … 3 = H/8)."""
        acts = self.trunk(y_hat, emb)
        if self.taps is not None:
            acts = [tap(a) for tap, a in zip(self.taps, acts, strict=True)]
        return {NUM_STAGES - 1 - k: a for k, a in enumerate(acts)}
