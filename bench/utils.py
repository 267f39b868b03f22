"""Small helpers every part shares: atomic writes, devices, seeds, hashes and provenance.

Every file the suite produces goes through :func:`atomic_path` so that a crash or a bad input
never leaves a half-written result where a later step (or a reader) would take it for a real one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import io
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the functions that use it: the Snakefile parse and every
    import torch  # CLI call import this module, and importing torch costs seconds


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
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        t = t.reshape(1) if t.dim() == 0 else t  # a 0-dim tensor (BatchNorm's step count) has no byte view
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error, not a silent CPU run."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("device 'cuda' was requested but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """torch's global CPU (and CUDA) RNG state, plus ``generator``'s: what a resumable run saves."""
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if generator is not None:
        state["generator"] = generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` saved, so a resumed run draws the same numbers."""
    import torch

    torch.set_rng_state(state["torch"])
    if generator is not None:
        generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so runs repeat."""
    import torch

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
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


LOG_PROGRESS_INTERVAL_S = 30.0
"""How often a progress bar writes a line into a job's log file (on a terminal it redraws as usual)."""


class _LogLines(io.TextIOBase):
    """Where tqdm writes when stderr is a file: each redraw (``\\r`` + bar) becomes one line of its own,
    so a Snakemake job log reads as a list of timestamped states instead of one line of carriage returns."""

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            if part.strip():
                sys.stderr.write(part.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def progress_options() -> dict[str, Any]:
    """tqdm keyword arguments for a long step's bar: the usual bar on a terminal; in a log file one
    line (count, rate, elapsed and ETA, postfix) every :data:`LOG_PROGRESS_INTERVAL_S` seconds."""
    if sys.stderr.isatty():
        return {"file": sys.stderr}
    return {"file": _LogLines(), "mininterval": LOG_PROGRESS_INTERVAL_S, "ascii": True, "ncols": 100}
