"""Inception features of a dataset's reference patches, computed once and reused by every point.

Every decoder point of a dataset is measured against the same reference images, and the reference
half of the patch FID (InceptionV3 at 299x299 on every patch) was about a third of each metrics job
on a 2-core CPU. The first job writes the features to ``<cache dir>/inception-<key>.pt``; later jobs
read them. The key hashes everything the features depend on (the reference pixels, the Inception
weights, patch size, protocol, batch size, device, torch's thread count and versions), so a hit gives
exactly the tensors a fresh computation would, and any change is a miss, never a stale value. A file
that cannot be read is a miss too (it is recomputed and rewritten).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch import Tensor, nn

from bench.utils import atomic_path, state_dict_hash

logger = logging.getLogger(__name__)


def cache_key(references: Sequence[np.ndarray], extractor: nn.Module, settings: dict[str, object]) -> str:
    """Hash of the reference pixels (in order), the extractor's weights and the feature ``settings``."""
    h = hashlib.sha256()
    for image in references:
        h.update(str(image.shape).encode())
        h.update(np.ascontiguousarray(image).tobytes())
    h.update(state_dict_hash(extractor.state_dict()).encode())
    context = {
        **settings,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_fidelity": torch_fidelity.__version__,
    }
    h.update(repr(sorted(context.items())).encode())
    return h.hexdigest()[:20]


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
