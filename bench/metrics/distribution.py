"""Dataset-level realism: FID and KID between patches of the reference and reconstructed images.

A dataset such as Kodak has far too few images for an image-level FID, so both sets are cut into
square patches (``patch_size``, 256 px in the literature) and every patch counts as a sample. The
protocol is written once, here, by name:

- ``nonoverlap``: one non-overlapping grid from the top-left corner (what the paper's code does);
- ``hific``: that grid plus a second one shifted by ``patch_size // 2`` in both axes (HiFiC's FID/256,
  Mentzer et al. 2020; NeuralCompression's ``update_patch_fid``).

The summary columns carry the protocol and patch size in their names, ``fid_hific_p256``,
``kid_hific_p256``, ``kid_std_hific_p256`` (:func:`bench.metrics.columns.protocol_column`): only
HiFiC's grids at 256 px are the literature's FID/256, and a value on 128 px patches is on another scale.

Patches that would cross the image border are dropped. For a 768×512 Kodak image and 256 px patches the
first grid holds 3×2 = 6 patches and the shifted grid 2×1 = 2, so Kodak (24 images, either orientation)
gives 144 patches under ``nonoverlap`` and 192 under ``hific``.

Features are the 2048-d pool features of torch-fidelity's InceptionV3 (the TF-FID network, inputs
resized to 299 inside it). KID is torch-fidelity's function; FID is the same formula in an exact
closed form that stays fast and real-valued with few patches (see :func:`frechet_distance`). With fewer
patches than feature dimensions the covariance is rank-deficient and FID is biased upward (by an amount
that depends on the patch count), so the summary carries a ``fid_warning``; with fewer than two patches
both metrics are NaN and the warning says why, instead of the run crashing.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from bench.metrics.columns import PATCH_METRICS, PROTOCOLS, protocol_column
from bench.metrics.weights import Provenance, ResolvedBackbone, seeded_random_init
from bench.utils import BenchError

INCEPTION_FEATURE = "2048"
FEATURE_DIM = 2048
KID_MAX_SUBSET_SIZE = 1000  # torch-fidelity's default subset size
KID_SUBSETS = 100  # torch-fidelity's default number of subsets


def grid_offsets(protocol: str, patch_size: int) -> tuple[int, ...]:
    """Top-left offsets (same in both axes) of the patch grids a protocol uses."""
    if protocol == "nonoverlap":
        return (0,)
    if protocol == "hific":
        return (0, patch_size // 2)
    raise BenchError(f"unknown FID patch protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def patch_origins(height: int, width: int, patch_size: int, protocol: str) -> list[tuple[int, int]]:
    """``(top, left)`` of every whole patch of the protocol's grids inside a ``height``×``width`` image."""
    return [
        (top, left)
        for offset in grid_offsets(protocol, patch_size)
        for top in range(offset, height - patch_size + 1, patch_size)
        for left in range(offset, width - patch_size + 1, patch_size)
    ]


def patch_count(height: int, width: int, patch_size: int, protocol: str) -> int:
    """Number of patches one image contributes (documented per dataset in the README)."""
    return len(patch_origins(height, width, patch_size, protocol))


def extract_patches(images: Tensor, patch_size: int, protocol: str) -> Tensor:
    """Cut a batch ``(B, C, H, W)`` into the protocol's patches, ``(B·N, C, patch_size, patch_size)``."""
    origins = patch_origins(images.shape[-2], images.shape[-1], patch_size, protocol)
    if not origins:
        return images.new_empty((0, images.shape[1], patch_size, patch_size))
    patches = [images[:, :, top : top + patch_size, left : left + patch_size] for top, left in origins]
    return torch.stack(patches, dim=1).flatten(0, 1)


def _empty_state_file() -> io.BytesIO:
    """An in-memory, empty state-dict file (torch-fidelity's constructor insists on loading one)."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    buffer.seek(0)
    return buffer


class _RandomInitInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 graph with seeded random weights: no file, no download.

    The mock-backbone idea of NeuralCompression's tests, but with the real architecture, so FID/KID
    plumbing (resize to 299, feature shapes, statistics) runs offline exactly as with real weights.
    """

    def __init__(self, seed: int) -> None:
        super().__init__("inception-v3-compat", [INCEPTION_FEATURE], feature_extractor_weights_path=_empty_state_file())
        seeded_random_init(self, seed)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Accept the constructor's empty state; the weights are seeded right after construction."""
        return super().load_state_dict(state_dict, strict=False, assign=assign)


class InceptionFeatures(nn.Module):
    """2048-d pool features of torch-fidelity's InceptionV3 for ``uint8`` image batches of any size."""

    def __init__(self, weights: ResolvedBackbone, seed: int = 0) -> None:
        super().__init__()
        if weights.path is None:
            self.net: FeatureExtractorInceptionV3 = _RandomInitInceptionV3(seed)
        else:
            try:
                self.net = FeatureExtractorInceptionV3(
                    "inception-v3-compat", [INCEPTION_FEATURE], feature_extractor_weights_path=str(weights.path)
                )
            except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
                raise BenchError(
                    f"cannot load InceptionV3 weights from {weights.path} ({str(err).splitlines()[0]}); "
                    f"replace the file with {weights.backbone.url}"
                ) from None
        self.provenance: Provenance = weights.provenance

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Features ``(B, 2048)`` in float32 for ``uint8``-valued images ``(B, 3, H, W)``."""
        return self.net(images.to(torch.uint8))[0]


def frechet_distance(features_1: Tensor, features_2: Tensor) -> float:
    """FID ``‖μ₁-μ₂‖² + tr Σ₁ + tr Σ₂ - 2 tr (Σ₁Σ₂)^½`` between two feature sets, in closed form.

    With centred features ``A`` (n₁×d) and ``B`` (n₂×d), ``Σ₁ = AᵀA/(n₁-1)`` and the non-zero eigenvalues of
    ``Σ₁Σ₂`` are the squared singular values of ``ABᵀ``/√((n₁-1)(n₂-1)), so ``tr (Σ₁Σ₂)^½`` is that matrix's
    nuclear norm. Replacing ``A`` and ``B`` by the R factors of their QR decompositions keeps those singular
    values and bounds the matrix at d×d. The value equals torch-fidelity's ``eigvals(Σ₁Σ₂)`` formula (a
    test checks it), but is exact for rank-deficient covariances (no complex roots of tiny negative
    eigenvalues) and costs milliseconds for a few hundred patches instead of a 2048×2048 non-symmetric
    eigendecomposition.
    """
    x = features_1.detach().cpu().to(torch.float64)
    y = features_2.detach().cpu().to(torch.float64)
    centred_x, centred_y = x - x.mean(dim=0), y - y.mean(dim=0)
    dof_x, dof_y = x.shape[0] - 1, y.shape[0] - 1
    r_x = torch.linalg.qr(centred_x, mode="r").R
    r_y = torch.linalg.qr(centred_y, mode="r").R
    tr_sqrt = torch.linalg.svdvals(r_x @ r_y.T).sum() / math.sqrt(dof_x * dof_y)
    mean_term = (x.mean(dim=0) - y.mean(dim=0)).square().sum()
    traces = centred_x.square().sum() / dof_x + centred_y.square().sum() / dof_y
    return float(mean_term + traces - 2.0 * tr_sqrt)


def kernel_distance(features_1: Tensor, features_2: Tensor, subset_size: int, seed: int) -> tuple[float, float]:
    """KID mean and standard deviation over torch-fidelity's 100 random subsets (cubic polynomial kernel)."""
    result = kid_features_to_metric(
        features_1.cpu(),
        features_2.cpu(),
        kid_subsets=KID_SUBSETS,
        kid_subset_size=subset_size,
        rng_seed=seed,
        verbose=False,
    )
    return float(result[KEY_METRIC_KID_MEAN]), float(result[KEY_METRIC_KID_STD])


class PatchFID:
    """Accumulates Inception features of reference and reconstruction patches; reports FID and KID.

    ``update`` takes equal-shape batches as they stream by (so memory holds features, not images) and
    ``compute`` returns the summary columns ``fid``, ``kid`` and ``kid_std`` (named by
    :func:`protocol_column`), ``n_patches``, ``kid_subset_size`` and ``fid_warning`` (empty when the
    numbers are trustworthy). KID averages 100 random subsets of ``min(kid_subset_size or 1000,
    n_patches)`` patches; when that is every patch (Kodak's 192), all subsets are the same set, their
    spread measures nothing and ``kid_std`` is NaN.
    """

    def __init__(
        self,
        extractor: InceptionFeatures,
        *,
        patch_size: int,
        protocol: str,
        batch_size: int,
        kid_subset_size: int | None = None,
        seed: int = 0,
    ) -> None:
        grid_offsets(protocol, patch_size)  # reject an unknown protocol before any work
        self.extractor = extractor
        self.patch_size = patch_size
        self.protocol = protocol
        self.batch_size = batch_size
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self._reference: list[Tensor] = []
        self._reconstruction: list[Tensor] = []

    def _features(self, images: Tensor) -> Tensor:
        patches = extract_patches(images, self.patch_size, self.protocol)
        chunks = [self.extractor(chunk).cpu() for chunk in patches.split(self.batch_size)]
        return torch.cat(chunks) if chunks else torch.empty((0, FEATURE_DIM))

    def update(self, reference: Tensor, reconstruction: Tensor, reference_features: Tensor | None = None) -> int:
        """Add the patches of one batch of image pairs; returns how many patches each side gained.

        ``reference_features``, when given, are this batch's reference features from an earlier run over
        the same references (see :attr:`reference_batches`): the reference patches are then not recomputed.
        """
        self._reference.append(self._features(reference) if reference_features is None else reference_features)
        self._reconstruction.append(self._features(reconstruction))
        return self._reference[-1].shape[0]

    @property
    def reference_batches(self) -> list[Tensor]:
        """The reference features added so far, one tensor per :meth:`update` call."""
        return list(self._reference)

    def compute(self) -> dict[str, float | int | str]:
        """FID/KID of everything added so far, with the patch count and a reliability warning."""
        reference = torch.cat(self._reference) if self._reference else torch.empty((0, FEATURE_DIM))
        reconstruction = torch.cat(self._reconstruction) if self._reconstruction else torch.empty((0, FEATURE_DIM))
        n = reference.shape[0]
        values = dict.fromkeys(PATCH_METRICS, math.nan)
        result: dict[str, float | int | str] = {"n_patches": n, "kid_subset_size": 0, "fid_warning": ""}
        if n < 2:
            result["fid_warning"] = (
                f"only {n} patch(es) of {self.patch_size} px: FID/KID need at least 2 (use larger images, "
                "more images or a smaller metrics.patch_size)"
            )
            return self._named(values) | result
        subset = min(self.kid_subset_size or KID_MAX_SUBSET_SIZE, n)
        values["fid"] = frechet_distance(reference, reconstruction)
        values["kid"], kid_std = kernel_distance(reference, reconstruction, subset, self.seed)
        values["kid_std"] = kid_std if subset < n else math.nan  # identical subsets: no spread to report
        result["kid_subset_size"] = subset
        notes = []
        if n < FEATURE_DIM:
            notes.append(
                f"{n} patches < {FEATURE_DIM} feature dims: FID is biased upward and comparable only between "
                "tables with the same patch count"
            )
        if self.kid_subset_size is not None and self.kid_subset_size > n:
            notes.append(f"kid_subset_size {self.kid_subset_size} > {n} patches, used {n}")
        result["fid_warning"] = "; ".join(notes)
        return self._named(values) | result

    def _named(self, values: dict[str, float]) -> dict[str, float]:
        """``{"fid": v, ...}`` under the protocol-named column names."""
        return {protocol_column(name, self.protocol, self.patch_size): value for name, value in values.items()}
