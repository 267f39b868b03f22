"""Work on a dataset's reference images, done once and reused by every point measured against them.

Two stores: :class:`ReferenceMemo` keeps results in memory for the later points of one metrics job
(through :class:`ReferenceFeatures`, LPIPS's and DISTS's trunk features of the references; SWD's
sorted reference projections), and the files below keep the reference patches' Inception features
across jobs.

Every decoder point of a dataset is measured against the same reference images, and the reference
half of the patch FID (InceptionV3 at 299x299 on every patch) was about a third of each metrics job
on a 2-core CPU. The first job writes the features to ``<cache dir>/inception-<key>.pt``; later jobs
read them. The key hashes everything the features depend on (the reference pixels, the Inception
weights, patch size, protocol, batch size, device, torch's thread count and versions), so a hit gives
exactly the tensors a fresh computation would, and any change is a miss, never a stale value. A file
that cannot be read is a miss too (it is recomputed and rewritten).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch import Tensor, nn

from bench.utils import atomic_path, state_dict_hash

logger = logging.getLogger(__name__)


def pixels_digest(images: Sequence[np.ndarray] | Tensor, *context: object) -> bytes:
    """A digest of the shapes and pixels of ``images`` (in order) and of ``context`` (the settings a
    result depends on): equal inputs get equal digests, any other pixel or setting another one."""
    digest = hashlib.sha256(repr(context).encode())
    arrays = [images.detach().cpu().contiguous().numpy()] if isinstance(images, Tensor) else images
    for image in arrays:
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.digest()


# What each memo of one metrics job may hold: DISTS's VGG16 features of 24 Kodak crops of 256² need
# 0.8 GB (of whole 768x512 Kodak images 4.7 GB: those are partly recomputed), SWD's sorted projections
# 0.17 GB at 4096 neighbourhoods a level on 256² crops, 0.8 GB at 16384 on whole Kodak images.
MEMO_BUDGET_BYTES = 1 << 30


class ReferenceMemo:
    """Tensors computed from reference images, kept under a digest of their inputs while they fit
    ``budget_bytes`` (beyond it they are recomputed on every call, never evicted half-way).

    A hit returns the very tensors the first computation made, so a value computed through the memo
    equals a fresh one bit for bit.
    """

    def __init__(self, budget_bytes: int = MEMO_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._held: dict[bytes, Sequence[Tensor]] = {}

    @property
    def held_bytes(self) -> int:
        return sum(_nbytes(tensors) for tensors in self._held.values())

    def get(self, key: bytes, compute: Callable[[], Sequence[Tensor]]) -> Sequence[Tensor]:
        """The tensors kept under ``key``, else ``compute()``'s (kept when they fit the budget)."""
        if key in self._held:
            return self._held[key]
        tensors = compute()
        if self.held_bytes + _nbytes(tensors) <= self.budget_bytes:
            self._held[key] = tensors
        return tensors


def _nbytes(tensors: Sequence[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class ReferenceFeatures:
    """A two-input network's features of its reference input, served from a :class:`ReferenceMemo`.

    Upstream LPIPS and DISTS compute ``features(reference)``, then ``features(reconstruction)``, inside
    one forward pass. Within :meth:`keyed`, the first features call is the reference's and is looked up
    under a digest of the reference pixels; every other call computes.
    """

    def __init__(self, budget_bytes: int = MEMO_BUDGET_BYTES) -> None:
        self.memo = ReferenceMemo(budget_bytes)
        self._key: bytes | None = None

    @contextlib.contextmanager
    def keyed(self, reference: Tensor) -> Iterator[None]:
        """Mark the next features call as that of ``reference``."""
        self._key = pixels_digest(reference)
        try:
            yield
        finally:
            self._key = None

    def __call__(self, features: Callable[[Tensor], Sequence[Tensor]], x: Tensor) -> Sequence[Tensor]:
        """``features(x)``, from the memo when this is the keyed reference call."""
        key, self._key = self._key, None
        if key is None:
            return features(x)
        return self.memo.get(key, lambda: features(x))


def cache_key(references: Sequence[np.ndarray], extractor: nn.Module, settings: dict[str, object]) -> str:
    """Hash of the reference pixels (in order), the extractor's weights and the feature ``settings``."""
    context = {
        **settings,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_fidelity": torch_fidelity.__version__,
    }
    return pixels_digest(references, state_dict_hash(extractor.state_dict()), sorted(context.items())).hex()[:20]


def cache_path(folder: str | os.PathLike, key: str) -> Path:
    return Path(folder) / f"inception-{key}.pt"


def load_reference_features(path: Path) -> list[Tensor] | None:
    """The cached per-batch feature tensors, or ``None`` when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        batches = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unreadable cache file is a miss: it is rebuilt)
        logger.warning("ignoring the unreadable reference feature cache %s (%s); recomputing", path, err)
        return None
    if not isinstance(batches, list) or not all(isinstance(b, Tensor) for b in batches):
        logger.warning("ignoring the reference feature cache %s (not a list of tensors); recomputing", path)
        return None
    return batches


def save_reference_features(path: Path, batches: list[Tensor]) -> None:
    """Write the per-batch features atomically (a concurrent job writing the same key is harmless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save([b.contiguous() for b in batches], tmp)
