"""Small helpers every part shares: atomic writes, devices, seeds, hashes and provenance.

Every file the suite produces goes through :func:`atomic_path` so that a crash or a bad input
never leaves a half-written result where a later step (or a reader) would take it for a real one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import logging
import os
import random
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


class BenchError(RuntimeError):
    """An error caused by the user's input or environment; the CLI prints it without a traceback."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_DEFAULT_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary file lives in the destination folder (same filesystem, so the rename is atomic)
    and keeps the destination's suffix, so writers that infer a format from it (PIL, pandas,
    matplotlib) work unchanged. On any exception the temporary file is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(_DEFAULT_MODE)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` beside it, never inside a folder output (Snakemake
    owns that folder, and readers of its files must not meet the lock)."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


_NO_FLOCK = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})


def _flock(fd: int) -> bool | None:
    """Take an exclusive flock on ``fd`` without waiting: True, False when another process holds it,
    None when the filesystem has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in _NO_FLOCK:
            return None
        raise
    return True


def _holder(fd: int) -> tuple[int, str] | None:
    """(PID, host) written in a lock file, or None when it holds none."""
    fields = os.pread(fd, 512, 0).decode(errors="replace").split()
    return (int(fields[0]), fields[1]) if len(fields) == 2 and fields[0].isdigit() else None


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing holder may have removed it meanwhile)."""
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold ``target``'s lock file (:func:`lock_path`) while the block writes ``target``.

    The lock is an ``flock`` on a file holding the holder's ``PID HOST``. The kernel drops it when its
    process dies, however it dies, so a lock file left behind is stale: it is taken over with a
    warning. A held lock is a BenchError naming ``target``, the holder and the lock file. Where the
    filesystem has no flock the recorded PID decides (held: alive on this host, or on another host).
    The lock file is removed when the block ends.
    """
    lock = lock_path(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, _DEFAULT_MODE)
        taken = _flock(fd)
        holder = _holder(fd)
        if taken is None:
            taken = holder is None or (holder[1] == socket.gethostname() and not _pid_alive(holder[0]))
        if not taken:
            os.close(fd)
            pid, host = holder or ("?", "?")
            raise BenchError(
                f"{target} is being written by another {command} (PID {pid} on {host}); wait for it to finish "
                f"or write elsewhere (if that process is gone, delete {lock})"
            )
        if _is_file_at(fd, lock):
            break
        os.close(fd)
    if holder is not None:
        log.warning("took over the stale lock %s of %s PID %s on %s, which is gone", lock, command, *holder)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def short_list(names: Sequence[str], limit: int = 10) -> str:
    """``a, b, c and 7 more``: a list of names short enough for a one-line error message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_dict_hash(state: dict[str, torch.Tensor]) -> str:
    """Short, order-independent hash of a model's weights (names, shapes, dtypes and values).

    Used to tie a bitstream or a table row to the exact weights that produced it.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("device 'cuda' was requested but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """torch's global CPU (and CUDA) RNG state, plus ``generator``'s: what a resumable run saves."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if generator is not None:
        state["generator"] = generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` saved, so a resumed run draws the same numbers."""
    torch.set_rng_state(state["torch"])
    if generator is not None:
        generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so runs repeat."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@functools.cache
def code_version() -> str:
    """``git describe`` of the checkout the code runs from (with ``-dirty``), or the package version."""
    from bench import __version__

    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


def device_description(device: torch.device) -> str:
    """Human-readable device name for provenance columns (e.g. ``cuda:NVIDIA H100`` or ``cpu``)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"
