"""Full-reference perceptual metrics: LPIPS (AlexNet, v0.1) and DISTS, as small typed modules.

Each wrapper takes batches of equal-shape ``uint8``-valued tensors ``(B, 3, H, W)`` and returns one
distance per image (lower is closer; identical images give 0). The networks are the reference
implementations from the ``lpips`` and ``DISTS_pytorch`` packages; only their trunks are built here from
the weights :mod:`bench.metrics.weights` resolved, because both packages' constructors would otherwise
ask torchvision to download ImageNet weights on their own. The packages' own calibration weights
(LPIPS's linear heads, DISTS's alpha/beta) are always the real ones shipped inside the wheels.

Images are measured at full resolution, without the resize to 256 px that DISTS's demo script offers.

Both keep the trunk's features of the reference batches they have seen (up to a memory budget, see
:class:`bench.metrics.reference_cache.ReferenceFeatures`): a job that measures several points against
the same references (``bench metrics --points``) then runs the trunk on the reconstructions only,
which halves each network's cost. The features are those of the same batch, so the distances are
bit-identical to a fresh computation.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import lpips
import torch
from DISTS_pytorch import DISTS_pt
from torch import Tensor, nn
from torchvision.models import vgg

from bench.metrics.reference_cache import ReferenceFeatures
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
        self.reference = ReferenceFeatures()
        self.net.net = _MemoisedTrunk(self.net.net, self.reference)
        self.provenance: Provenance = trunk.provenance
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        """Per-image LPIPS distance, shape ``(B,)``."""
        x = reference.to(torch.float32) / 127.5 - 1.0
        y = reconstruction.to(torch.float32) / 127.5 - 1.0
        with self.reference.keyed(reference):
            return self.net(x, y).reshape(-1)


class _MemoisedTrunk(nn.Module):
    """LPIPS's AlexNet trunk, its reference features served by ``reference`` (upstream's forward
    calls the trunk on the reference first, then on the reconstruction)."""

    def __init__(self, trunk: nn.Module, reference: ReferenceFeatures) -> None:
        super().__init__()
        self.trunk = trunk
        self.reference = reference

    def forward(self, x: Tensor) -> Sequence[Tensor]:
        return self.reference(self.trunk, x)


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
        self.reference = ReferenceFeatures()

    def forward_once(self, x: Tensor) -> Sequence[Tensor]:
        """Upstream's features; within ``reference.keyed`` the reference's come from its memo."""
        return self.reference(super().forward_once, x)


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
        self.reference = self.net.reference
        self.provenance: Provenance = trunk.provenance
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        """Per-image DISTS distance, shape ``(B,)``."""
        x = reference.to(torch.float32) / 255.0
        y = reconstruction.to(torch.float32) / 255.0
        with self.reference.keyed(reference):
            return self.net(x, y).reshape(-1)
