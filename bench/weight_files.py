"""Pretrained weights files in the torch.hub cache: where they live and whether a cached one is upstream's.

Every pretrained file the suite reads (torchvision's AlexNet and VGG16, torch-fidelity's InceptionV3,
compressai's ``mbt2018-mean`` zoo) is published under a name that carries the first hex digits of the
file's sha256 (torch.hub's convention: ``alexnet-owt-7be5be79.pth`` has a sha256 starting
``7be5be79``). A file found in ``$TORCH_HOME/hub/checkpoints`` is taken for the upstream one (and
its results labelled ``real``) only when its bytes carry that hash: a file of the right name but
other bytes (a truncated copy, a re-saved or fine-tuned network) is not silently called real.

The one seam for files that are legitimately different (a lab that re-saved the weights with a
newer torch, or the random-init stand-ins the tests write): ``$BENCH_WEIGHT_HASHES`` names a file
in ``sha256sum`` format (``<sha256>  <file name>`` per line, ``#`` comments allowed). A file whose
full sha256 is listed there under its name is accepted as well.

Nothing here imports torch, so the Snakefile can decide at parse time whether compressai's zoo
weights are at hand (``msh.source: auto``) by file presence and hash alone.
"""

from __future__ import annotations

import functools
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from bench.utils import BenchError, sha256_file

HASHES_ENV = "BENCH_WEIGHT_HASHES"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.")  # torch.hub's HASH_REGEX, at least 8 hex digits
_SHA256 = re.compile(r"[0-9a-f]{64}")

# compressai's MSE-optimised mbt2018-mean zoo files (compressai.zoo.image.model_urls, checked by a
# test), here so that the workflow's parse need not import compressai (and torch) to find them.
ZOO_ROOT_URL = "https://compressai.s3.amazonaws.com/models/v1"
ZOO_FILES: dict[int, str] = {
    1: "mbt2018-mean-1-e522738d.pth.tar",
    2: "mbt2018-mean-2-e54a039d.pth.tar",
    3: "mbt2018-mean-3-723404a8.pth.tar",
    4: "mbt2018-mean-4-6dba02a3.pth.tar",
    5: "mbt2018-mean-5-d504e8eb.pth.tar",
    6: "mbt2018-mean-6-a19628ab.pth.tar",
    7: "mbt2018-mean-7-d5d441d1.pth.tar",
    8: "mbt2018-mean-8-8089ae3e.pth.tar",
}
ZOO_PROBE_TIMEOUT_S = 3.0
RECORD_SETTLE_S = 2.0  # a file younger than this gets no hash record (see _record_sha256)


def hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` without importing torch: ``$TORCH_HOME`` or the XDG cache."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def name_hash(filename: str) -> str | None:
    """The sha256 prefix an upstream file name carries (``None`` for a name without one)."""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def registered_hashes() -> dict[str, frozenset[str]]:
    """Full sha256 hashes registered per file name in the ``$BENCH_WEIGHT_HASHES`` file (empty if unset)."""
    listing = os.environ.get(HASHES_ENV)
    if not listing:
        return {}
    try:
        lines = Path(listing).read_text().splitlines()
    except OSError as err:
        message = f"{HASHES_ENV}={listing} cannot be read ({err.strerror}); fix or unset it"
        raise BenchError(message) from None
    hashes: dict[str, set[str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = Path(name.strip().lstrip("*")).name  # sha256sum writes " *name" in binary mode, maybe a path
        if not _SHA256.fullmatch(digest.lower()) or not name:
            raise BenchError(
                f"{HASHES_ENV} file {listing} line {number} is not '<sha256>  <file name>' "
                "(write it with `sha256sum FILE`)"
            )
        hashes.setdefault(name, set()).add(digest.lower())
    return {name: frozenset(digests) for name, digests in hashes.items()}


def hash_record_path(path: Path) -> Path:
    """The record of ``path``'s verified sha256 beside it: ``.NAME.sha256``."""
    return path.with_name(f".{path.name}.sha256")


def _recorded_sha256(path: Path, stamp: str) -> str | None:
    """The sha256 recorded beside ``path`` for exactly this ``stamp``, else None (no, stale or torn record)."""
    try:
        digest, _, recorded = hash_record_path(path).read_text().strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        return None
    return digest if recorded == stamp and _SHA256.fullmatch(digest) else None


def _record_sha256(path: Path, stamp: str, digest: str, mtime_ns: int) -> None:
    """Write the record (temp file + rename, so concurrent jobs never read half of one); a read-only
    weights folder (a lab's shared cache) just goes without it. A file modified in the last
    ``RECORD_SETTLE_S`` gets none: file times are coarse (a few ms), so a second write of the same
    size within one tick would keep the stamp (git's "racy" index entries, same remedy)."""
    if time.time_ns() - mtime_ns < RECORD_SETTLE_S * 1e9:
        return
    record = hash_record_path(path)
    tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{digest} {stamp}\n")
        os.replace(tmp, record)
    except OSError:
        tmp.unlink(missing_ok=True)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """sha256 of a file, hashed once per process and recorded beside it for the next processes.

    Size, mtime and inode are what identify the file's bytes without reading them (a copy, an edit
    or a replacement by rename changes at least one): the record's stamp and the cache key.
    """
    stamp = f"{size} {mtime_ns} {inode}"
    recorded = _recorded_sha256(Path(path), stamp)
    if recorded is not None:
        return recorded
    digest = sha256_file(path)
    _record_sha256(Path(path), stamp, digest, mtime_ns)
    return digest


def file_sha256(path: Path) -> str:
    """Hex sha256 of ``path``, read once while the file is unchanged (size, mtime, inode).

    A weights file is hashed on every metrics, encode and decode job (VGG16, AlexNet and Inception
    are 890 MB: about 3 s of CPU a job); the hash is recorded in ``.NAME.sha256`` beside it with the
    file's stamp, so only the first job after the file changes reads it.
    """
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def hash_problem(path: Path) -> str | None:
    """``None`` when the file at ``path`` is upstream's (or registered), else why it is not.

    Accepted: a sha256 that starts with the hash in the file's name, or one listed for that name
    in ``$BENCH_WEIGHT_HASHES``. A name without a hash and without a registration cannot be checked
    and is accepted.
    """
    expected = name_hash(path.name)
    registered = registered_hashes().get(path.name, frozenset())
    if expected is None and not registered:
        return None
    digest = file_sha256(path)
    if (expected is not None and digest.startswith(expected)) or digest in registered:
        return None
    wanted = " or ".join([*([f"{expected}..."] if expected else []), *sorted(registered)])
    return (
        f"{path} has sha256 {digest[:16]}..., not the upstream file's ({wanted}); replace it with the "
        f"upstream file, or list its sha256 in the file named by ${HASHES_ENV} if it is a deliberate re-save"
    )


def zoo_path(quality: int) -> Path:
    """Where compressai's zoo file of ``quality`` is cached: ``$TORCH_HOME/hub/checkpoints/NAME``."""
    return hub_checkpoints() / ZOO_FILES[quality]


def _reachable(url: str, timeout: float) -> bool:
    """True when a HEAD request for ``url`` answers 2xx within ``timeout`` seconds (False offline)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def zoo_availability(qualities: Iterable[int], timeout: float = ZOO_PROBE_TIMEOUT_S) -> str | None:
    """``None`` when compressai's zoo weights of every quality are cached (hash checked) or downloadable;
    else the reason they are not, for the warning of ``msh.source: auto``.

    A cached file with foreign bytes makes the zoo unavailable (it would be refused when loaded);
    a missing one is probed with one short HEAD request, so an offline machine decides in seconds.
    """
    for quality in qualities:
        path = zoo_path(quality)
        if path.is_file():
            problem = hash_problem(path)
            if problem:
                return problem
        elif not _reachable(f"{ZOO_ROOT_URL}/{ZOO_FILES[quality]}", timeout):
            return f"{path.name} is not in {path.parent} and {ZOO_ROOT_URL} cannot be reached"
    return None
