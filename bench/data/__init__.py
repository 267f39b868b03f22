"""Datasets: the registry of evaluation and training sets, verified fetching with mirrors, and the
evaluation images.

One module per step: :mod:`~bench.data.registry` (what each dataset is, where it comes from, its
manifest), :mod:`~bench.data.fetching` (mirrors, downloads, checksums, the archive lock file) and
:mod:`~bench.data.prepare` (the evaluation PNGs). Images are read by :func:`bench.images.load_rgb`
(re-exported here). Everything here is torch-free: the Snakefile imports it at parse time.
"""

from bench.data.fetching import (
    LOCK_FILE_ENV,
    MIRROR_ENV,
    fetch,
    lock_file,
    manifest_problem,
    mirror_location,
    mirror_root,
    pixel_sha256,
    read_lock,
    verify_file,
)
from bench.data.prepare import centre_crop, list_images, prepare_eval, resize_short_side_crop
from bench.data.registry import (
    DATASETS,
    WIKIPHOTOS_COMMIT,
    DatasetSpec,
    ManifestEntry,
    attribution_file,
    get_dataset,
    read_manifest,
)
from bench.images import load_rgb

__all__ = [
    "DATASETS",
    "LOCK_FILE_ENV",
    "MIRROR_ENV",
    "WIKIPHOTOS_COMMIT",
    "DatasetSpec",
    "ManifestEntry",
    "attribution_file",
    "centre_crop",
    "fetch",
    "get_dataset",
    "list_images",
    "load_rgb",
    "lock_file",
    "manifest_problem",
    "mirror_location",
    "mirror_root",
    "pixel_sha256",
    "prepare_eval",
    "read_lock",
    "read_manifest",
    "resize_short_side_crop",
    "verify_file",
]
