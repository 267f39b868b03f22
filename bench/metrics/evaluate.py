"""Measure a folder of reconstructions against a folder of references: the two metric tables.

Images are matched by file stem (``kodim01.png`` ↔ ``kodim01.png``). The rate, when asked for, comes
from bitstreams ``BITS/<stem>.bin`` (``bpp = bytes × 8 / (H × W)``) or from an ``image,bpp`` table (a
foreign codec's rates, see :mod:`bench.metrics.rates`). Every image is measured as the 8-bit PNG a
user gets, at full resolution, in batches of equal shape (portrait and landscape images can share a
folder), on CUDA when present.

Two tidy tables come out:

- per image: the labels the caller passes (dataset, codec, point, ... — opaque here), ``image``,
  ``height``, ``width``, ``bpp``, ``psnr``, ``ms_ssim``, ``lpips``, ``dists``, ``niqe`` (of the
  reconstruction) and ``niqe_reference`` (of the original; both NaN, with one warning per table, for
  images below NIQE's size limit, see :data:`bench.metrics.niqe.MIN_BLOCKS`), then provenance columns;
- summary (one row): the labels, ``n_images``, each per-image metric's mean with its bootstrap 95% CI
  (``<m>``, ``<m>_ci_lo``, ``<m>_ci_hi``), the dataset-level FID/KID on patches (columns named by
  protocol and patch size, e.g. ``fid_hific_p256``, see :mod:`bench.metrics.distribution`) and SWD, then
  provenance: ``*_backbone`` (``real`` / ``random-init``), ``niqe_model``, ``fid_protocol``, ``patch_size``,
  ``bootstrap``, ``seed``, ``code_version``, ``config_hash``, ``device``.

Only enabled metrics get columns. Both image sets are held in memory for the run (SWD compares the
whole sets), about 2.4 MB per Kodak pair. This module knows no codec and no decoder: a foreign codec's
PNGs are measured exactly like ours.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from bench.config import validate_config
from bench.images import load_rgb, shape_batches
from bench.metrics.aggregate import summarize
from bench.metrics.columns import parse_protocol_column
from bench.metrics.distribution import InceptionFeatures, PatchFID
from bench.metrics.fidelity import ms_ssim, psnr
from bench.metrics.niqe import niqe, pristine_model, size_limit, too_small
from bench.metrics.perceptual import DISTS, LPIPS
from bench.metrics.rates import file_bpp, read_bpp_table
from bench.metrics.reference_cache import (
    ReferenceMemo,
    cache_key,
    cache_path,
    load_reference_features,
    save_reference_features,
)
from bench.metrics.swd import DEFAULT_PATCHES_PER_LEVEL as SWD_DEFAULT_PATCHES
from bench.metrics.swd import swd
from bench.metrics.weights import resolve_backbones
from bench.utils import (
    BenchError,
    code_version,
    device_description,
    progress_options,
    resolve_device,
    short_list,
    write_tables,
)

logger = logging.getLogger(__name__)

# Network metric -> the backbone it needs (see bench.metrics.weights).
BACKBONE_OF: dict[str, str] = {"lpips": "alexnet", "dists": "vgg16", "fid": "inception"}

_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {
    "image",
    "height",
    "width",
    "bpp",
    "n_images",
    "psnr",
    "ms_ssim",
    "lpips",
    "dists",
    "niqe",
    "niqe_reference",
    "fid",
    "kid",
    "kid_std",
    "n_patches",
    "kid_subset_size",
    "fid_warning",
    "fid_protocol",
    "patch_size",
    "bootstrap",
    "seed",
    "code_version",
    "config_hash",
    "device",
    "niqe_model",
}


@dataclass(frozen=True)
class MetricsOptions:
    """What to measure and how: the config's ``metrics`` section plus the run-wide keys it depends on.

    Defaults live in ``bench/schema.yaml``; build one with :meth:`from_config` (or :meth:`defaults`)
    and override single fields with :func:`dataclasses.replace`.
    """

    lpips: bool
    dists: bool
    fid: bool
    swd: bool
    swd_patches_per_level: int | None
    niqe: bool
    niqe_model: str
    fid_protocol: str
    patch_size: int
    kid_subset_size: int | None
    bootstrap: int
    batch_size: int
    download_weights: bool
    data_mirror: str | None
    allow_random_backbones: bool
    seed: int
    device: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MetricsOptions:
        """Options from a validated config (``bench.config.load_config``)."""
        return cls(
            **config["metrics"],
            data_mirror=config["data_mirror"],
            allow_random_backbones=config["allow_random_backbones"],
            seed=config["seed"],
            device=config["device"],
        )

    @classmethod
    def defaults(cls) -> MetricsOptions:
        """The schema's defaults."""
        return cls.from_config(validate_config({}))


@dataclass(frozen=True)
class ImagePair:
    """One reference image, its reconstruction and (optionally) its rate: the bitstream that produced
    it, or its bpp as a table gave it (never both)."""

    stem: str
    reference: Path
    reconstruction: Path
    bitstream: Path | None = None
    bpp: float | None = None


@dataclass(frozen=True)
class MetricsTables:
    """The per-image table and the one-row summary table."""

    per_image: pd.DataFrame
    summary: pd.DataFrame


def _pngs_by_stem(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise BenchError(f"{role} folder {folder} does not exist")
    paths = {path.stem: path for path in sorted(folder.glob("*.png"))}
    if not paths:
        raise BenchError(f"no PNG images in the {role} folder {folder}")
    return paths


def match_images(
    reference_dir: str | os.PathLike,
    reconstructions_dir: str | os.PathLike,
    bitstreams_dir: str | os.PathLike | None = None,
    bpp_table: str | os.PathLike | None = None,
) -> list[ImagePair]:
    """Pair the PNGs of two folders by stem; any image without its partner is one error listing all.

    The rate comes from at most one of ``bitstreams_dir`` (``<stem>.bin`` files) and ``bpp_table``
    (an ``image,bpp`` CSV naming exactly the reference images).
    """
    if bitstreams_dir is not None and bpp_table is not None:
        raise BenchError("give the rate as bitstreams or as a bpp table, not both")
    references = _pngs_by_stem(Path(reference_dir), "reference")
    reconstructions = _pngs_by_stem(Path(reconstructions_dir), "reconstruction")
    missing = sorted(references.keys() - reconstructions.keys())
    extra = sorted(reconstructions.keys() - references.keys())
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing reconstructions for {short_list(missing)}")
        if extra:
            problems.append(f"reconstructions without a reference: {short_list(extra)}")
        raise BenchError(
            f"{reconstructions_dir} does not match the references in {reference_dir}: {'; '.join(problems)}"
        )
    bitstreams: dict[str, Path | None] = dict.fromkeys(references)
    if bitstreams_dir is not None:
        bitstreams = {stem: Path(bitstreams_dir) / f"{stem}.bin" for stem in references}
        absent = sorted(stem for stem, path in bitstreams.items() if not path.is_file())
        if absent:
            raise BenchError(f"bitstreams missing in {bitstreams_dir}: {short_list([f'{s}.bin' for s in absent])}")
    rates: dict[str, float | None] = dict.fromkeys(references)
    if bpp_table is not None:
        rates = read_bpp_table(bpp_table, sorted(references))
    return [
        ImagePair(stem, references[stem], reconstructions[stem], bitstreams[stem], rates[stem])
        for stem in sorted(references)
    ]


def _load_pair(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    reference, reconstruction = load_rgb(pair.reference), load_rgb(pair.reconstruction)
    if reference.shape != reconstruction.shape:
        raise BenchError(
            f"image {pair.stem}: reconstruction {pair.reconstruction} is "
            f"{reconstruction.shape[1]}x{reconstruction.shape[0]} but the reference {pair.reference} is "
            f"{reference.shape[1]}x{reference.shape[0]}"
        )
    return reference, reconstruction


def _to_batch(images: Sequence[np.ndarray], device: torch.device) -> Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device)


def check_labels(labels: Mapping[str, str]) -> None:
    """Label keys must be identifiers that do not shadow a column this module writes."""
    for key in labels:
        if not _LABEL_KEY.match(key):
            raise BenchError(f"label key {key!r} must be an identifier (letters, digits, underscores)")
        if (
            key in _RESERVED
            or parse_protocol_column(key)
            or key.startswith("swd")
            or key.endswith(("_ci_lo", "_ci_hi", "_backbone"))
        ):
            raise BenchError(f"label key {key!r} would overwrite a metrics column; rename it")


@dataclass
class Meters:
    """The measuring instruments of a run, built once and moved to the device: one process measuring
    several points (``run_metrics_points``) loads each backbone once, not once per point."""

    networks: dict[str, Callable[[Tensor, Tensor], Tensor]]
    backbones: dict[str, str]  # "<metric>_backbone" -> real / random-init
    inception: InceptionFeatures | None
    niqe: Callable[[np.ndarray], float] | None
    provenance: dict[str, str]  # summary columns saying which instruments measured (niqe_model)
    swd_memo: ReferenceMemo = field(default_factory=ReferenceMemo)  # the references' sorted projections

    @classmethod
    def build(cls, options: MetricsOptions, device: torch.device) -> Meters:
        enabled = [name for name in BACKBONE_OF if getattr(options, name)]
        resolved = resolve_backbones(
            [BACKBONE_OF[name] for name in enabled],
            allow_random=options.allow_random_backbones,
            download=options.download_weights,
        )
        networks: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
        if options.lpips:
            networks["lpips"] = LPIPS(resolved["alexnet"], seed=options.seed).to(device)
        if options.dists:
            networks["dists"] = DISTS(resolved["vgg16"], seed=options.seed).to(device)
        inception = InceptionFeatures(resolved["inception"], seed=options.seed).to(device) if options.fid else None
        backbones = {f"{name}_backbone": resolved[BACKBONE_OF[name]].provenance for name in enabled}
        niqe_meter = _niqe_meter(options) if options.niqe else None
        provenance = {"niqe_model": options.niqe_model} if options.niqe else {}
        return cls(networks, backbones, inception, niqe_meter, provenance)

    def patch_fid(self, options: MetricsOptions) -> PatchFID | None:
        """A fresh FID/KID accumulator for one point's patches (on the shared Inception network)."""
        if self.inception is None:
            return None
        return PatchFID(
            self.inception,
            patch_size=options.patch_size,
            protocol=options.fid_protocol,
            batch_size=options.batch_size,
            kid_subset_size=options.kid_subset_size,
            seed=options.seed,
        )

    @property
    def image_backbones(self) -> dict[str, str]:
        """The backbone columns of the per-image table (FID's belongs to the summary only)."""
        return {key: value for key, value in self.backbones.items() if key != "fid_backbone"}


def _niqe_meter(options: MetricsOptions) -> Callable[[np.ndarray], float]:
    """NIQE with the configured pristine model, resolved at the first image that needs it: a table of
    images too small for NIQE needs no model file."""
    where = {"download": options.download_weights, "mirror": options.data_mirror}
    load = functools.cache(functools.partial(pristine_model, options.niqe_model, **where))
    return lambda image: niqe(image, model=load())


class Stopwatch:
    """Seconds spent per named part of a run, summed over calls: the log's per-metric timing line."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def summary(self) -> str:
        """``name 1.2 s, ...``, slowest first."""
        return ", ".join(f"{name} {sec:.1f} s" for name, sec in sorted(self.seconds.items(), key=lambda kv: -kv[1]))


def _measure(
    loaded: Sequence[tuple[np.ndarray, np.ndarray]],
    rows: Sequence[dict[str, Any]],
    meters: Meters,
    patch_fid: PatchFID | None,
    batch_size: int,
    device: torch.device,
    reference_features: Sequence[Tensor] | None = None,
    clock: Stopwatch | None = None,
) -> None:
    """Fill the per-image metric columns of ``rows`` and feed ``patch_fid``, batch by batch (NIQE
    first: it is cheap, and a missing pristine model then stops the run before the networks run;
    the reference patches' features of each batch are taken from ``reference_features`` when
    given), timing each metric on ``clock``."""
    clock = clock or Stopwatch()
    if meters.niqe is not None:
        with clock("niqe"):
            _measure_niqe(loaded, rows, meters.niqe)
    with tqdm(total=len(loaded), desc="metrics", unit="image", **progress_options()) as progress:
        for number, indices in enumerate(shape_batches([reference.shape for reference, _ in loaded], batch_size)):
            reference = _to_batch([loaded[i][0] for i in indices], device)
            reconstruction = _to_batch([loaded[i][1] for i in indices], device)
            values = {}
            for name, function in {"psnr": psnr, "ms_ssim": ms_ssim, **meters.networks}.items():
                with clock(name):
                    values[name] = function(reference, reconstruction).cpu()
            if patch_fid is not None:
                cached = None if reference_features is None else reference_features[number]
                with clock("fid features"):
                    patch_fid.update(reference, reconstruction, cached)
            for position, index in enumerate(indices):
                rows[index].update({name: float(value[position]) for name, value in values.items()})
            progress.update(len(indices))


def _measure_niqe(
    loaded: Sequence[tuple[np.ndarray, np.ndarray]],
    rows: Sequence[dict[str, Any]],
    meter: Callable[[np.ndarray], float],
) -> None:
    """Fill ``niqe`` and ``niqe_reference``: NaN for images too small for a stable NIQE, with one
    warning for the whole table (not one per image)."""
    small = [index for index, (reference, _) in enumerate(loaded) if too_small(*reference.shape[:2])]
    if small:
        height, width = loaded[small[0]][0].shape[:2]
        warnings.warn(
            f"{size_limit()}: {len(small)} of {len(loaded)} images (e.g. {rows[small[0]]['image']}, "
            f"{width}x{height}) are smaller, their niqe and niqe_reference are NaN",
            stacklevel=3,
        )
    for index, (reference, reconstruction) in enumerate(loaded):
        fits = index not in small
        rows[index]["niqe"] = meter(reconstruction) if fits else math.nan
        rows[index]["niqe_reference"] = meter(reference) if fits else math.nan


def evaluate(
    pairs: Sequence[ImagePair],
    options: MetricsOptions,
    *,
    labels: Mapping[str, str] | None = None,
    config_hash: str = "",
    reference_cache: str | os.PathLike | None = None,
    meters: Meters | None = None,
) -> MetricsTables:
    """Measure every pair and return both tables (nothing is written but the reference feature cache:
    with ``reference_cache``, a folder, the reference patches' Inception features are read from there
    when an earlier run over the same references left them, else computed and left there).

    ``meters``: instruments built by an earlier call with the same ``options`` (built here otherwise).
    """
    labels = dict(labels or {})
    check_labels(labels)
    if not pairs:
        raise BenchError("no image pairs to measure")
    device = resolve_device(options.device)
    started, clock = time.perf_counter(), Stopwatch()
    with clock("reading"):
        loaded = [
            _load_pair(pair)
            for pair in tqdm(pairs, desc="reading images", unit="image", leave=False, **progress_options(nested=True))
        ]
    if meters is None:
        with clock("backbones"):
            meters = Meters.build(options, device)
    patch_fid = meters.patch_fid(options)
    rows: list[dict[str, Any]] = []
    for pair, (reference, _) in zip(pairs, loaded, strict=True):
        height, width = reference.shape[:2]
        rows.append({"image": pair.stem, "height": height, "width": width})
        if pair.bitstream is not None:
            rows[-1]["bpp"] = file_bpp(pair.bitstream, height, width)
        elif pair.bpp is not None:
            rows[-1]["bpp"] = pair.bpp
    cached, cache_file = None, None
    if patch_fid is not None and reference_cache is not None:
        settings = {
            "patch_size": options.patch_size,
            "protocol": options.fid_protocol,
            "batch_size": options.batch_size,
            "device": str(device),
            "stems": [pair.stem for pair in pairs],
        }
        cache_file = cache_path(reference_cache, cache_key([r for r, _ in loaded], patch_fid.extractor, settings))
        cached = load_reference_features(cache_file)
        batches = sum(1 for _ in shape_batches([r.shape for r, _ in loaded], options.batch_size))
        cached = cached if cached is not None and len(cached) == batches else None
        logger.info("reference Inception features: %s %s", "read from" if cached else "computing for", cache_file)
    _measure(loaded, rows, meters, patch_fid, options.batch_size, device, cached, clock)
    if patch_fid is not None and cache_file is not None and cached is None:
        save_reference_features(cache_file, patch_fid.reference_batches)

    dataset_level: dict[str, Any] = {}
    if patch_fid is not None:
        with clock("fid/kid"):
            dataset_level.update(patch_fid.compute())
        dataset_level.update(fid_protocol=options.fid_protocol, patch_size=options.patch_size)
    if options.swd:
        references, reconstructions = zip(*loaded, strict=True)
        patches = options.swd_patches_per_level or SWD_DEFAULT_PATCHES
        with clock("swd"):
            dataset_level.update(
                swd(
                    references,
                    reconstructions,
                    patches_per_level=patches,
                    seed=options.seed,
                    device=device,
                    memo=meters.swd_memo,
                )
            )
        dataset_level["swd_patches_per_level"] = patches
    elapsed = time.perf_counter() - started
    logger.info("measured %d images in %.1f s (%.2f s/image) on %s", len(pairs), elapsed, elapsed / len(pairs), device)

    provenance = {"code_version": code_version(), "config_hash": config_hash, "device": device_description(device)}
    per_image = pd.DataFrame([{**labels, **row, **meters.image_backbones, **provenance} for row in rows])
    measured = [c for c in ("bpp", "psnr", "ms_ssim", "lpips", "dists", "niqe", "niqe_reference") if c in per_image]
    with clock("bootstrap"):
        means = summarize(per_image, measured, resamples=options.bootstrap, seed=options.seed)
    logger.info("time per part: %s", clock.summary())
    summary = {
        **labels,
        "n_images": len(pairs),
        **means,
        **dataset_level,
        **meters.backbones,
        **meters.provenance,
        "bootstrap": options.bootstrap,
        "seed": options.seed,
        **provenance,
    }
    return MetricsTables(per_image=per_image, summary=pd.DataFrame([summary]))


def default_summary_path(out: str | os.PathLike) -> Path:
    """``per_image.csv`` → ``per_image_summary.csv``: where the summary goes when no path is given."""
    out = Path(out)
    return out.with_name(f"{out.stem}_summary{out.suffix or '.csv'}")


@dataclass(frozen=True)
class PointTables:
    """One decoder point to measure: its reconstructions, its rate (bitstreams or a bpp table, at most
    one), where its per-image and summary tables go, and the labels written into both."""

    reconstructions: Path
    out: Path
    summary: Path | None = None
    bitstreams: Path | None = None
    bpp_table: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def summary_path(self) -> Path:
        """Where the summary goes (default: ``out`` with a ``_summary`` suffix)."""
        return self.summary if self.summary is not None else default_summary_path(self.out)


def run_metrics(
    reference_dir: str | os.PathLike,
    reconstructions_dir: str | os.PathLike,
    *,
    out: str | os.PathLike,
    summary_path: str | os.PathLike | None = None,
    bitstreams_dir: str | os.PathLike | None = None,
    bpp_table: str | os.PathLike | None = None,
    options: MetricsOptions,
    labels: Mapping[str, str] | None = None,
    config_hash: str = "",
    reference_cache: str | os.PathLike | None = None,
) -> MetricsTables:
    """Match, measure and write both CSVs together (neither appears if anything fails)."""
    point = PointTables(
        Path(reconstructions_dir),
        Path(out),
        None if summary_path is None else Path(summary_path),
        None if bitstreams_dir is None else Path(bitstreams_dir),
        None if bpp_table is None else Path(bpp_table),
        dict(labels or {}),
    )
    return run_metrics_points(
        reference_dir, [point], options=options, config_hash=config_hash, reference_cache=reference_cache
    )[0]


def run_metrics_points(
    reference_dir: str | os.PathLike,
    points: Sequence[PointTables],
    *,
    options: MetricsOptions,
    config_hash: str = "",
    reference_cache: str | os.PathLike | None = None,
) -> list[MetricsTables]:
    """Measure several points against the same references in one process, writing each point's two
    CSVs together as soon as it is measured.

    Every point is matched against the references before any is measured, so a missing image stops
    the run before minutes of work; the backbones are loaded once for all points. A point's numbers
    are those of a run of that point alone (every instrument is seeded per point).
    """
    if not points:
        raise BenchError("no points to measure")
    matched = [match_images(reference_dir, p.reconstructions, p.bitstreams, p.bpp_table) for p in points]
    for point in points:
        check_labels(point.labels)
    started = time.perf_counter()
    meters = Meters.build(options, resolve_device(options.device))
    logger.info("backbones loaded in %.1f s", time.perf_counter() - started)
    results = []
    for number, (point, pairs) in enumerate(zip(points, matched, strict=True), start=1):
        logger.info("point %d of %d: %s", number, len(points), point.reconstructions)
        tables = evaluate(
            pairs, options, labels=point.labels, config_hash=config_hash, reference_cache=reference_cache, meters=meters
        )
        write_tables({point.out: tables.per_image, point.summary_path: tables.summary})
        results.append(tables)
    return results
