"""Datasets: a registry of the evaluation and training sets, verified fetching, mirrors, loaders.

Every dataset has a real source (per-file URLs or an archive URL). Files are checked against a
manifest committed in ``bench/manifests/NAME.tsv``: a file is accepted when its bytes match the
upstream ``file_sha256`` *or* its decoded RGB pixels match ``pixel_sha256`` (so a lossless
re-encoding in a mirror verifies as well as the original download). Archive datasets (CLIC, DIV2K)
have no checksum we could know offline: the archive's sha256 is pinned into ``datasets.lock.tsv``
on first download and verified on every later one (commit that file).

A mirror (``BENCH_DATA_MIRROR`` or the config key ``data_mirror``), laid out as ``NAME/FILE``, is
used instead of the upstream source when it holds the file: a local folder, or an ``http(s)://``
base URL (a lab-internal mirror). Every download goes through :func:`bench.download.download`.
A dataset may ship an attribution file (``bench/manifests/NAME_ATTRIBUTION.md``), copied to
``NAME/ATTRIBUTION.md`` beside its images on every fetch. Images are read by
:func:`bench.images.load_rgb` (re-exported here); apart from it and its helpers this module
imports no other part of the suite.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.download import Check, NotFound, download, is_url
from bench.images import load_rgb
from bench.utils import BenchError, atomic_path, sha256_file

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MANIFEST_DIR = Path(__file__).with_name("manifests")
LOCK_FILE_ENV = "BENCH_DATASETS_LOCK"
MIRROR_ENV = "BENCH_DATA_MIRROR"
DEFAULT_LOCK_FILE = Path(__file__).resolve().parents[1] / "datasets.lock.tsv"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where it comes from, how it is checked and how evaluation prepares it.

    ``url_template`` (per-file download, ``{name}`` is a manifest file name) and ``archive_url``
    (one zip holding the images) are exclusive; a dataset with neither exists only in mirrors.
    ``eval_resize`` is the evaluation preprocessing: ``None`` keeps images as they are; an integer
    S resizes the shorter side to S (bicubic, antialiased) and centre-crops S×S.
    """

    name: str
    role: str  # "eval" or "train"
    description: str
    url_template: str | None = None
    archive_url: str | None = None
    has_manifest: bool = False
    eval_resize: int | None = None
    licence: str = ""

    @property
    def archive_name(self) -> str:
        """File name of the archive (as served upstream and as expected in a mirror)."""
        if self.archive_url is None:
            raise BenchError(f"dataset {self.name!r} has no archive")
        return self.archive_url.rsplit("/", 1)[-1]


_CLIC = "https://data.vision.ee.ethz.ch/cvl/clic"
_DIV2K = "http://data.vision.ee.ethz.ch/cvl/DIV2K"
# wikiphotos' files are byte-identical to GitHub Zelex/images, folder wikipedia-photos/, at this
# commit (pinned, never a branch, so the committed manifest stays the check).
WIKIPHOTOS_COMMIT = "0b8a89db599a384124fb991b85d40cfd63c73d58"
_WIKIPHOTOS = f"https://raw.githubusercontent.com/Zelex/images/{WIKIPHOTOS_COMMIT}/wikipedia-photos"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "kodak",
            "eval",
            "Kodak Lossless True Color suite: 24 RGB images, 768x512 and 512x768, evaluated as they are.",
            url_template="https://r0k.us/graphics/kodak/kodak/{name}",
            has_manifest=True,
            licence="released by Kodak for unrestricted usage",
        ),
        DatasetSpec(
            "clic2020-professional-valid",
            "eval",
            "CLIC 2020 professional validation set (41 PNGs), shorter side resized to 768, centre crop.",
            archive_url=f"{_CLIC}/professional_valid_2020.zip",
            eval_resize=768,
            licence="Unsplash licence",
        ),
        DatasetSpec(
            "clic2020-professional-test",
            "eval",
            "CLIC 2020 professional test set (250 PNGs), shorter side resized to 768, centre crop.",
            archive_url=f"{_CLIC}/test/CLIC2020Professional_test.zip",
            eval_resize=768,
            licence="Unsplash licence",
        ),
        DatasetSpec(
            "div2k-valid",
            "eval",
            "DIV2K validation HR (100 PNGs, 2K), shorter side resized to 768, centre crop.",
            archive_url=f"{_DIV2K}/DIV2K_valid_HR.zip",
            eval_resize=768,
            licence="academic research only",
        ),
        DatasetSpec(
            "div2k-train",
            "train",
            "DIV2K training HR (800 PNGs, 2K): the GPU training set.",
            archive_url=f"{_DIV2K}/DIV2K_train_HR.zip",
            licence="academic research only",
        ),
        DatasetSpec(
            "clic2020-professional-train",
            "train",
            "CLIC 2020 professional training set (585 PNGs).",
            archive_url=f"{_CLIC}/professional_train_2020.zip",
            licence="Unsplash licence",
        ),
        DatasetSpec(
            "wikiphotos",
            "train",
            "49 downsampled Wikimedia Commons photographs (~1.5 Mpixel) for CPU-scale training, "
            "from GitHub Zelex/images at a pinned commit (attribution: ATTRIBUTION.md beside them).",
            url_template=f"{_WIKIPHOTOS}/{{name}}",
            has_manifest=True,
            licence="Creative Commons, per file (see ATTRIBUTION.md)",
        ),
    )
}


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a committed manifest."""

    name: str
    width: int
    height: int
    pixel_sha256: str
    file_sha256: str | None


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset ``name``, or a BenchError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise BenchError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def read_manifest(name: str) -> list[ManifestEntry]:
    """The committed manifest of a dataset, sorted by file name."""
    path = MANIFEST_DIR / f"{name}.tsv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    entries = [
        ManifestEntry(r["name"], int(r["width"]), int(r["height"]), r["pixel_sha256"], r.get("file_sha256") or None)
        for r in rows
    ]
    return sorted(entries, key=lambda e: e.name)


def pixel_sha256(path: Path) -> str:
    """sha256 of the decoded image as RGB uint8, row-major HxWx3 (same for any lossless re-encoding)."""
    return hashlib.sha256(load_rgb(path).tobytes()).hexdigest()


def manifest_problem(path: Path, entry: ManifestEntry) -> str | None:
    """None when ``path``'s bytes match the upstream file hash or its pixels match the manifest, else why not."""
    if entry.file_sha256 is not None and sha256_file(path) == entry.file_sha256:
        return None
    try:
        if pixel_sha256(path) == entry.pixel_sha256:
            return None
    except BenchError:
        return f"it is not a readable image (expected {entry.name} of the manifest)"
    return (
        f"neither its bytes (expected sha256 {entry.file_sha256}) nor its RGB pixels (expected "
        f"{entry.pixel_sha256}) match the manifest; it is corrupt or a different image"
    )


def verify_file(path: Path, entry: ManifestEntry) -> None:
    """Accept ``path`` if its bytes match the upstream file hash or its pixels match the manifest.

    Raises a BenchError naming the file, both expectations and what to do.
    """
    problem = manifest_problem(path, entry)
    if problem is not None:
        raise BenchError(
            f"checksum mismatch for {path}: {problem}: delete it and run `python -m bench datasets fetch` again"
        )


def mirror_location(mirror: str | os.PathLike | None = None) -> Path | str | None:
    """The mirror: ``BENCH_DATA_MIRROR``, else the config value; an http(s) base URL stays a string, a
    folder is a Path."""
    value = os.environ.get(MIRROR_ENV) or mirror
    if not value:
        return None
    return str(value).rstrip("/") if is_url(value) else Path(value)


def mirror_root(mirror: str | os.PathLike | None = None) -> Path | None:
    """The mirror folder, or None when no mirror is set or the mirror is an HTTP server."""
    location = mirror_location(mirror)
    return location if isinstance(location, Path) else None


def _no_network_fix(where: str) -> str:
    """The way out when upstream cannot be reached: a mirror, or a rerun (which resumes)."""
    return (
        f"with no internet, put {where} in a mirror (a folder or an http(s) URL laid out as NAME/FILE) "
        f"and set {MIRROR_ENV}; a rerun resumes a partial download"
    )


def _copy_checked(source: Path, dest: Path, check: Check) -> None:
    """Copy a mirror file into ``dest`` atomically, only when it passes ``check``."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
        problem = check(tmp)
        if problem is not None:
            raise BenchError(
                f"checksum mismatch for {source} in the mirror: {problem}; replace it there "
                f"(or unset {MIRROR_ENV} to download it)"
            )


def _materialise(where: str, url: str | None, dest: Path, mirror: Path | str | None, check: Check) -> None:
    """Put the checked file ``where`` (NAME/FILE) at ``dest``: from the mirror when it has it, else from ``url``."""
    if isinstance(mirror, Path) and (mirror / where).is_file():
        _copy_checked(mirror / where, dest, check)
        return
    if isinstance(mirror, str):
        mirror_fix = f"check that the mirror {mirror} serves {where}, or unset {MIRROR_ENV} to use upstream"
        try:
            download(f"{mirror}/{where}", dest, check=check, fix=mirror_fix)
            return
        except NotFound:
            if url is None:
                raise
            log.warning("the mirror %s has no %s; downloading it from %s", mirror, where, url)
    if url is None:
        raise BenchError(
            f"{where} is only available from a mirror and none holds it; set {MIRROR_ENV} to a folder "
            f"or an http(s) URL serving {where}"
        )
    download(url, dest, check=check, fix=_no_network_fix(where))


def _fetch_manifest_dataset(spec: DatasetSpec, target: Path, mirror: Path | str | None) -> list[Path]:
    """Fetch each manifest file, skipping files already valid; every file is verified before use."""
    paths = []
    for entry in tqdm(read_manifest(spec.name), desc=f"fetch {spec.name}", unit="img"):
        dest = target / entry.name
        if dest.exists():
            if manifest_problem(dest, entry) is None:
                paths.append(dest)
                continue
            log.warning("%s is invalid; fetching it again", dest)
            dest.unlink()
        url = spec.url_template.format(name=entry.name) if spec.url_template else None
        _materialise(f"{spec.name}/{entry.name}", url, dest, mirror, lambda path, e=entry: manifest_problem(path, e))
        paths.append(dest)
    return paths


def lock_file() -> Path:
    """Where archive checksums are pinned (``BENCH_DATASETS_LOCK`` or ``datasets.lock.tsv`` in the checkout)."""
    return Path(os.environ.get(LOCK_FILE_ENV, DEFAULT_LOCK_FILE))


def read_lock() -> dict[str, str]:
    """Pinned archive checksums: archive file name → sha256."""
    path = lock_file()
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {r["archive"]: r["sha256"] for r in csv.DictReader(f, delimiter="\t")}


def _pin_archive(archive: str, digest: str) -> None:
    """Record a first-seen archive checksum in the lock file (atomically) and say so loudly."""
    pins = read_lock() | {archive: digest}
    with atomic_path(lock_file()) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["archive", "sha256"])
        writer.writerows(sorted(pins.items()))
    log.warning("pinned sha256 %s for %s in %s on first download: commit that file", digest, archive, lock_file())


def _archive_check(archive: str) -> Check:
    """The check of archive ``archive``: against its pinned sha256, pinning it when none is known yet."""

    def check(path: Path) -> str | None:
        digest = sha256_file(path)
        pinned = read_lock().get(archive)
        if pinned is None:
            _pin_archive(archive, digest)
        elif pinned != digest:
            return (
                f"sha256 {digest}, but {lock_file()} pins {pinned}; fetch again (or, if upstream really "
                f"changed the archive, remove its line from the lock file)"
            )
        return None

    return check


def _fetch_archive_dataset(spec: DatasetSpec, target: Path, mirror: Path | str | None) -> list[Path]:
    """Fetch (or reuse) the dataset's archive, verify it against the lock, extract its PNGs."""
    archive = target.parent / "_archives" / spec.archive_name
    check = _archive_check(spec.archive_name)
    if archive.exists():
        problem = check(archive)
        if problem is not None:
            archive.unlink()
            raise BenchError(f"checksum mismatch for {archive} (deleted it): {problem}")
    else:
        _materialise(f"{spec.name}/{spec.archive_name}", spec.archive_url, archive, mirror, check)
    paths = []
    with zipfile.ZipFile(archive) as zf:
        members = sorted(m for m in zf.namelist() if _is_image_member(m))
        for member in tqdm(members, desc=f"extract {spec.name}", unit="img"):
            dest = target / Path(member).name
            if not dest.exists():
                with atomic_path(dest) as tmp:
                    tmp.write_bytes(zf.read(member))
            paths.append(dest)
    return paths


def _is_image_member(member: str) -> bool:
    """A PNG of an archive, not macOS's resource-fork junk (``__MACOSX/``, ``._NAME``)."""
    path = Path(member)
    return path.suffix.lower() == ".png" and not path.name.startswith(".") and "__MACOSX" not in path.parts


def attribution_file(name: str) -> Path | None:
    """The attribution list shipped with dataset ``name`` (``manifests/NAME_ATTRIBUTION.md``), if any."""
    path = MANIFEST_DIR / f"{name}_ATTRIBUTION.md"
    return path if path.is_file() else None


def fetch(name: str, root: str | os.PathLike, mirror: str | os.PathLike | None = None) -> list[Path]:
    """Make ``root/NAME/`` hold the verified images of dataset ``name``; return their paths, sorted.

    Files already present and valid are kept, so a rerun after an interruption resumes. The
    dataset's attribution file, when it has one, is written beside the images as ATTRIBUTION.md.
    """
    spec = get_dataset(name)
    target = Path(root) / name
    target.mkdir(parents=True, exist_ok=True)
    where = mirror_location(mirror)
    if spec.has_manifest:
        paths = _fetch_manifest_dataset(spec, target, where)
    else:
        paths = _fetch_archive_dataset(spec, target, where)
    attribution = attribution_file(name)
    if attribution is not None:
        with atomic_path(target / "ATTRIBUTION.md") as tmp:
            shutil.copyfile(attribution, tmp)
    return sorted(paths)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The PNG images of a folder, sorted by name; an empty or missing folder is a BenchError.

    The message suggests fetching only when the folder is named after a registered dataset (a
    user's own folder gets no dataset hint).
    """
    folder = Path(folder)
    if not folder.is_dir():
        fault = f"folder {folder} does not exist" if not folder.exists() else f"{folder} is a file, not a folder"
    elif not (paths := sorted(folder.glob("*.png"))):
        fault = f"no PNG images (*.png) in {folder}"
    else:
        return paths
    if folder.name in DATASETS:
        fault += f"; run `python -m bench datasets fetch {folder.name} --root {folder.parent}` first"
    raise BenchError(fault)


def resize_short_side_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bicubic, antialiased), then centre-crop size×size."""
    w, h = image.size
    scale = size / min(w, h)
    resized = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    return centre_crop(resized, size)


def centre_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size×size square of an image at least that large in both sides."""
    w, h = image.size
    if min(w, h) < size:
        raise BenchError(f"cannot centre-crop a {w}x{h} image to {size}x{size}")
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def prepare_eval(
    name: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    max_images: int | None = None,
    crop: int | None = None,
    mirror: str | os.PathLike | None = None,
) -> list[Path]:
    """Fetch dataset ``name`` and write its evaluation images to ``out`` as RGB PNGs.

    Applies the dataset's own preprocessing (``eval_resize``), then keeps the first ``max_images``
    (by name) and centre-crops to ``crop`` when given (small CI runs).
    """
    spec = get_dataset(name)
    paths = fetch(name, root, mirror)[: max_images or None]
    written = []
    for path in paths:
        image = Image.fromarray(load_rgb(path))
        if spec.eval_resize is not None:
            image = resize_short_side_crop(image, spec.eval_resize)
        if crop is not None:
            image = centre_crop(image, crop)
        dest = Path(out) / f"{path.stem}.png"
        with atomic_path(dest) as tmp:
            image.save(tmp, format="PNG")
        written.append(dest)
    return written


class RandomCrops:
    """An endless, deterministic stream of random ``crop``×``crop`` RGB crops in [0, 1] (CHW float).

    Images are decoded once and kept in memory (training sets here are small); the crop positions
    and image choices come from a generator seeded with ``seed``, so the same seed gives the same
    stream. Images smaller than the crop are rejected up front with their names.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], crop: int, seed: int = 0) -> None:
        if not paths:
            raise BenchError("no training images given")
        self.images = [load_rgb(p) for p in paths]
        small = [str(p) for p, im in zip(paths, self.images, strict=True) if min(im.shape[:2]) < crop]
        if small:
            raise BenchError(f"training images smaller than the {crop}px crop: {', '.join(small)}")
        self.crop = crop
        self.seed = seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        import torch  # here, not at module level: the Snakefile imports this module (DATASETS) at parse time

        rng = np.random.default_rng(self.seed)
        while True:
            image = self.images[rng.integers(len(self.images))]
            top = rng.integers(image.shape[0] - self.crop + 1)
            left = rng.integers(image.shape[1] - self.crop + 1)
            patch = image[top : top + self.crop, left : left + self.crop]
            yield torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float().div(255.0)


def crop_batches(dataset: RandomCrops, batch_size: int) -> Iterator[torch.Tensor]:
    """Group a crop stream into ``[batch_size, 3, crop, crop]`` tensors."""
    import torch

    stream = iter(dataset)
    while True:
        yield torch.stack([next(stream) for _ in range(batch_size)])
