"""Verified fetching: mirrors, downloads, the archive lock file.

Files of a per-file dataset are checked against its committed manifest: a file is accepted when its
bytes match the upstream ``file_sha256`` *or* its decoded RGB pixels match ``pixel_sha256`` (so a
lossless re-encoding in a mirror verifies as well as the original download). Archive datasets (CLIC,
DIV2K) have no checksum we could know offline: the archive's sha256 is pinned into
``datasets.lock.tsv`` on first download and verified on every later one (commit that file).

A mirror (``BENCH_DATA_MIRROR`` or the config key ``data_mirror``), laid out as ``NAME/FILE``, is
used instead of the upstream source when it holds the file: a local folder, or an ``http(s)://``
base URL (a lab-internal mirror). Every download goes through :func:`bench.download.download`. A
dataset's attribution file is copied to ``NAME/ATTRIBUTION.md`` beside its images on every fetch.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
import zipfile
from pathlib import Path

from tqdm import tqdm

from bench.data.registry import DatasetSpec, ManifestEntry, attribution_file, get_dataset, read_manifest
from bench.download import Check, NotFound, download, is_url
from bench.images import load_rgb
from bench.utils import BenchError, atomic_path, sha256_file

log = logging.getLogger(__name__)

LOCK_FILE_ENV = "BENCH_DATASETS_LOCK"
MIRROR_ENV = "BENCH_DATA_MIRROR"
DEFAULT_LOCK_FILE = Path(__file__).resolve().parents[2] / "datasets.lock.tsv"


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
