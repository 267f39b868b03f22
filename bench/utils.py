"""Small helpers every part shares: atomic writes, devices, seeds, hashes and provenance.

Every file the suite produces goes through :func:`atomic_path` so that a crash or a bad input
never leaves a half-written result where a later step (or a reader) would take it for a real one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import random
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


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


def set_torch_threads(threads: int | None) -> int:
    """Fix torch's CPU threads (intra-op, and inter-op while that is still allowed) and return the
    intra-op count in effect. ``None`` leaves torch's default: ``$OMP_NUM_THREADS``, else every core.

    Training and decoding results depend on the thread count at the rounding level (float sums split
    over threads), and training amplifies that into other models: the CLI calls this before any
    torch work (``python -m bench --threads N``) so a step's numbers follow its arguments, not its
    environment (Snakemake's OMP_NUM_THREADS, a shell's, a Slurm job's).
    """
    if threads is not None:
        if threads < 1:
            raise BenchError(f"'--threads' must be >= 1, got {threads}")
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # torch allows this once, before any inter-op work
            torch.set_num_interop_threads(threads)
    return torch.get_num_threads()


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
