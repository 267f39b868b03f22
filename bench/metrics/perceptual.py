"""Full-reference perceptual metrics: LPIPS (AlexNet, v0.1) and DISTS, as small typed modules.

Each wrapper takes batches of equal-shape ``uint8``-valued tensors ``(B, 3, H, W)`` and returns one
distance per image (lower is closer; identical images give 0). The networks are the reference
implementations from the ``lpips`` and ``DISTS_pytorch`` packages; only their trunks are built here from
the weights :mod:`bench.metrics.weights` resolved, because both packages' constructors would otherwise
ask torchvision to download ImageNet weights on their own. The packages' own calibration weights
(LPIPS's linear heads, DISTS's alpha/beta) are always the real ones shipped inside the wheels.

Images are measured at full resolution, without the resize to 256 px that DISTS's demo script offers.

DISTS keeps the VGG16 features of the reference batches it has seen (up to a memory budget): a job
that measures several points against the same references (``bench metrics --points``) then runs
VGG16 on the reconstructions only, which halves DISTS's cost. The features are those of the same
batch, so the distances are bit-identical to a fresh computation.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from pathlib import Path

import lpips
import torch
from DISTS_pytorch import DISTS_pt
from torch import Tensor, nn
from torchvision.models import vgg

from bench.metrics.weights import Provenance, ResolvedBackbone, load_into, load_state, seeded_random_init
from bench.utils import BenchError


def _features_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The convolutional trunk of a torchvision classifier state dict, keyed by layer index."""
    return {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}


def _build_trunk(features: nn.Module, trunk: ResolvedBackbone, seed: int) -> None:
    """Load the resolved torchvision weights into ``features``, or seed it randomly when there are none."""
    if trunk.path is None:
        seeded_random_init(features, seed)
    else:
        load_into(features, _features_state(load_state(trunk)), trunk)


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk (Zhang et al. 2018), inputs scaled from 8 bits to [-1, 1]."""

    def __init__(self, trunk: ResolvedBackbone, seed: int = 0) -> None:
        super().__init__()
        with warnings.catch_warnings():
            # lpips asks torchvision for an untrained AlexNet through the deprecated `pretrained=` argument.
            warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
            self.net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
        # lpips splits torchvision's `features` into slices that keep the layer indices as child names.
        features = nn.Sequential(
            OrderedDict((name, layer) for part in self.net.net.children() for name, layer in part.named_children())
        )
        _build_trunk(features, trunk, seed)
        self.provenance: Provenance = trunk.provenance
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        """Per-image LPIPS distance, shape ``(B,)``."""
        x = reference.to(torch.float32) / 127.5 - 1.0
        y = reconstruction.to(torch.float32) / 127.5 - 1.0
        return self.net(x, y).reshape(-1)


# What the reference features of one metrics job may hold: 24 Kodak crops of 256² need 0.8 GB,
# whole 768x512 Kodak images would need 4.7 GB and are then partly recomputed.
REFERENCE_FEATURES_BUDGET_BYTES = 2 << 30


def batch_key(batch: Tensor) -> bytes:
    """A digest of a batch's shape and pixels: equal batches (the same references) get equal keys."""
    digest = hashlib.sha256(str(tuple(batch.shape)).encode())
    digest.update(batch.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()


class _DISTSNetwork(DISTS_pt.DISTS):
    """Upstream DISTS (its forward pass and L2 pooling) around a VGG16 trunk given as an argument.

    Upstream's constructor downloads VGG16 through torchvision and reads alpha/beta from
    ``sys.prefix``; this one rebuilds the same five stages from ``features`` and takes alpha/beta.
    """

    # VGG16 `features` layers in each stage; the max-pool that opens stages 2-5 becomes L2 pooling.
    STAGES: tuple[tuple[int, int], ...] = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))
    POOL_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)

    def __init__(self, features: nn.Sequential, alpha: Tensor, beta: Tensor) -> None:
        nn.Module.__init__(self)
        for number, (start, stop) in enumerate(self.STAGES, start=1):
            stage = nn.Sequential()
            if start > 0:
                stage.add_module(str(start - 1), DISTS_pt.L2pooling(channels=self.POOL_CHANNELS[number - 2]))
            for index in range(start, stop):
                stage.add_module(str(index), features[index])
            setattr(self, f"stage{number}", stage)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
        self.chns = [3, 64, 128, 256, 512, 512]
        self.alpha = nn.Parameter(alpha.clone())
        self.beta = nn.Parameter(beta.clone())
        self.reference_features: dict[bytes, list[Tensor]] = {}
        self.reference_budget_bytes = REFERENCE_FEATURES_BUDGET_BYTES
        self._reference_key: bytes | None = None

    def forward_with_reference_key(self, x: Tensor, y: Tensor, key: bytes) -> Tensor:
        """Upstream's ``forward(x, y)``, with the features of ``x`` looked up under ``key``."""
        self._reference_key = key
        try:
            return self(x, y)
        finally:
            self._reference_key = None

    def forward_once(self, x: Tensor) -> list[Tensor]:
        """Upstream's features; the first call of a keyed forward (the reference) is served from and
        kept in ``reference_features`` while they fit ``reference_budget_bytes``."""
        key, self._reference_key = self._reference_key, None
        if key is None:
            return super().forward_once(x)
        if key in self.reference_features:
            return self.reference_features[key]
        features = super().forward_once(x)
        size = sum(f.numel() * f.element_size() for f in features)
        held = sum(f.numel() * f.element_size() for fs in self.reference_features.values() for f in fs)
        if held + size <= self.reference_budget_bytes:
            self.reference_features[key] = features
        return features


def dists_calibration_path() -> Path:
    """The alpha/beta weights file that ships inside the DISTS_pytorch wheel."""
    return Path(DISTS_pt.__file__).with_name("weights.pt")


class DISTS(nn.Module):
    """DISTS (Ding et al. 2020) with the VGG16 trunk, inputs scaled from 8 bits to [0, 1]."""

    def __init__(self, trunk: ResolvedBackbone, seed: int = 0) -> None:
        super().__init__()
        features = vgg.make_layers(vgg.cfgs["D"])
        _build_trunk(features, trunk, seed)
        calibration_file = dists_calibration_path()
        if not calibration_file.is_file():
            raise BenchError(f"DISTS calibration weights missing at {calibration_file}; reinstall DISTS-pytorch")
        calibration = torch.load(calibration_file, map_location="cpu", weights_only=True)
        self.net = _DISTSNetwork(features, calibration["alpha"], calibration["beta"])
        self.provenance: Provenance = trunk.provenance
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        """Per-image DISTS distance, shape ``(B,)``."""
        x = reference.to(torch.float32) / 255.0
        y = reconstruction.to(torch.float32) / 255.0
        return self.net.forward_with_reference_key(x, y, batch_key(reference)).reshape(-1)
