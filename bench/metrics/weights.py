"""Where the metric backbones' weights come from: ``$TORCH_HOME``, a download, or (opt-in) seeded random init.

LPIPS needs torchvision's AlexNet, DISTS torchvision's VGG16 and FID/KID torch-fidelity's InceptionV3
(the TF-FID network). All three are looked up under their upstream file names in
``$TORCH_HOME/hub/checkpoints`` (the folder ``torch.hub`` itself uses), so a file put there by hand,
by an earlier download or by a shared cache is found without a network. The small calibration weights
that ship inside the pip packages (LPIPS's linear layers, DISTS's alpha/beta) are read from the
installed package and need no resolution.

Resolution order for each backbone: the local file (used only when its sha256 is upstream's, see
:mod:`bench.weight_files`) → a download from the upstream URL (bounded by a
timeout, so an offline machine fails in milliseconds instead of hanging) → seeded random-init weights,
only when the caller allows it. Random-init metrics still exercise every line of the plumbing, but
their values mean nothing perceptually; they are labelled ``random-init`` in every table. When random
init is not allowed, one :class:`BenchError` lists every missing or foreign file and the folder to put
it in.

The libraries are never asked to fetch anything themselves: the wrappers in
:mod:`bench.metrics.perceptual` and :mod:`bench.metrics.distribution` build the networks empty and
load the file resolved here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from bench.download import ChecksumMismatch, download, sha256_is
from bench.utils import BenchError
from bench.weight_files import hash_problem, name_hash

logger = logging.getLogger(__name__)

Provenance = Literal["real", "random-init"]


class RandomBackboneWarning(UserWarning):
    """A metric runs with random-init weights: its numbers test plumbing, not perception."""


@dataclass(frozen=True)
class Backbone:
    """A pretrained network a metric depends on, named by its upstream URL."""

    name: str
    url: str
    used_by: str

    @property
    def filename(self) -> str:
        """The upstream file name, which is also the name looked up in ``$TORCH_HOME``."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str | None:
        """The hash prefix embedded in the file name, checked after a download."""
        return name_hash(self.filename)


def _registry() -> dict[str, Backbone]:
    """The backbones by name, with URLs read from the installed libraries (one source of truth)."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    return {
        "alexnet": Backbone("alexnet", AlexNet_Weights.IMAGENET1K_V1.url, "LPIPS"),
        "vgg16": Backbone("vgg16", VGG16_Weights.IMAGENET1K_V1.url, "DISTS"),
        "inception": Backbone("inception", URL_INCEPTION_V3, "FID/KID"),
    }


BACKBONES: dict[str, Backbone] = _registry()


@dataclass(frozen=True)
class ResolvedBackbone:
    """A backbone and the weights file it will load; ``path=None`` means seeded random init."""

    backbone: Backbone
    path: Path | None

    @property
    def provenance(self) -> Provenance:
        """``real`` when a weights file backs it, ``random-init`` otherwise (a table column)."""
        return "real" if self.path is not None else "random-init"


def checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where ``torch.hub`` caches (and we look for) weights files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_backbone(backbone: Backbone, dest_dir: Path, timeout: float = 30.0) -> Path:
    """Download ``backbone`` into ``dest_dir`` through :func:`bench.download.download` (resumable,
    checked against the hash prefix in its name before it gets its name).

    Raises :class:`~bench.download.ChecksumMismatch` when the bytes do not match, and BenchError
    (one line naming the URL) when the network or the server fails.
    """
    dest = dest_dir / backbone.filename
    logger.info("downloading %s weights for %s from %s", backbone.name, backbone.used_by, backbone.url)
    check = sha256_is(backbone.sha256_prefix) if backbone.sha256_prefix is not None else None
    fix = f"put {backbone.filename} into {dest_dir} by hand"
    download(backbone.url, dest, fix=fix, check=check, timeout=timeout)
    return dest


def resolve_backbones(
    names: Iterable[str],
    *,
    allow_random: bool,
    download: bool = True,
    timeout: float = 30.0,
) -> dict[str, ResolvedBackbone]:
    """Resolve every named backbone to a weights file, or to random init when ``allow_random``.

    A cached file counts only when its sha256 is upstream's (the hash in its name) or registered in
    ``$BENCH_WEIGHT_HASHES`` (:func:`bench.weight_files.hash_problem`): a file of the right name but
    other bytes is never labelled ``real``. All backbones are resolved before anything fails, so one
    error lists every missing or foreign file.
    """
    folder = checkpoint_dir()
    resolved: dict[str, ResolvedBackbone] = {}
    unusable: dict[str, tuple[Backbone, str]] = {}  # name -> (backbone, why it cannot be used)
    for name in names:
        if name not in BACKBONES:
            raise BenchError(f"unknown metric backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
        backbone = BACKBONES[name]
        path = folder / backbone.filename
        if not path.is_file() and download:
            try:
                path = download_backbone(backbone, folder, timeout)
            except ChecksumMismatch:
                raise
            except BenchError as err:  # offline or unreachable: treated as missing (listed below)
                logger.info("%s", err)
        if not path.is_file():
            reason = f"{backbone.filename} (for {backbone.used_by}, from {backbone.url}) is not in {folder}"
            unusable[name] = (backbone, reason)
        elif (problem := hash_problem(path)) is not None:
            unusable[name] = (backbone, f"{problem} (for {backbone.used_by})")
        else:
            resolved[name] = ResolvedBackbone(backbone, path)
    if unusable and not allow_random:
        listing = "; ".join(reason for _, reason in unusable.values())
        raise BenchError(
            f"metric backbone weights unusable: {listing}. Put the upstream files in {folder} (set TORCH_HOME "
            "to choose the folder), or pass --allow-random-backbones / set allow_random_backbones: true to run "
            "with random weights (values then mean nothing perceptually)"
        )
    for name, (backbone, reason) in unusable.items():
        warnings.warn(
            f"{backbone.used_by} runs with a RANDOM-INIT {backbone.name} backbone ({reason}); its values test "
            "the plumbing only and are labelled 'random-init'",
            RandomBackboneWarning,
            stacklevel=2,
        )
        resolved[name] = ResolvedBackbone(backbone, None)
    return resolved


def load_state(resolved: ResolvedBackbone) -> dict[str, torch.Tensor]:
    """Read the resolved weights file on CPU; a file torch cannot read is a :class:`BenchError`."""
    if resolved.path is None:
        raise ValueError(f"{resolved.backbone.name} resolved to random init; there is no file to load")
    try:
        state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise BenchError(
            f"cannot read weights file {resolved.path}: {err}; delete it and let it download again, "
            f"or replace it with {resolved.backbone.url}"
        ) from None
    if not isinstance(state, dict):
        raise BenchError(f"weights file {resolved.path} does not hold a state dict")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], resolved: ResolvedBackbone) -> None:
    """``module.load_state_dict(state)`` (strict), turning a mismatch into a :class:`BenchError`."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first_line = str(err).splitlines()[0]
        raise BenchError(
            f"weights file {resolved.path} does not match the {resolved.backbone.name} network ({first_line}); "
            f"replace it with {resolved.backbone.url}"
        ) from None


def seeded_random_init(module: nn.Module, seed: int) -> None:
    """Re-initialise every conv and linear layer of ``module`` from a private seeded generator.

    He-normal weights (fan-in, ReLU gain) and zero biases keep activations at unit scale through deep
    stacks, so features of a random network still separate different images; batch-norm layers keep
    their identity init. The global RNG is untouched, so results do not depend on what ran before.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
                if layer.bias is not None:
                    layer.bias.zero_()
