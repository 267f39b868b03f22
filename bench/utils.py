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
import io
import logging
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the functions that use it: the Snakefile parse and every
    import pandas as pd  # CLI call import this module, and importing torch (or pandas) costs seconds
    import torch

log = logging.getLogger(__name__)


class BenchError(RuntimeError):
    """An error caused by the user's input or environment; the CLI prints it without a traceback."""


class WriteError(BenchError, OSError):
    """An output could not be written (read-only or full disk, no permission, a folder in the way).

    One line for the CLI like every BenchError, and still an OSError, so code that falls back when
    a write fails (a download into a read-only weights cache) keeps doing so.
    """


class Terminated(BenchError):
    """SIGTERM stopped a command; the CLI prints the message and exits with :data:`TERMINATED_EXIT`."""


TERMINATED_EXIT = 128 + signal.SIGTERM  # 143: what a shell, Slurm and Snakemake report for a SIGTERM kill

# errno -> what the user can do about it (the second half of an OSError's one-line message).
_OS_ERROR_FIXES = {
    errno.ENOSPC: "free space on that disk (or write elsewhere) and rerun",
    errno.EDQUOT: "free space within your disk quota (or write elsewhere) and rerun",
    errno.EROFS: "write elsewhere or remount it writable",
    errno.EACCES: "make it writable (readable, for an input) or choose another path",
    errno.EPERM: "make it writable (readable, for an input) or choose another path",
    errno.EISDIR: "give a file path, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
}


def os_error_message(err: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for an OSError: the path (``path``, else the error's own), what happened, the fix."""
    where = path or err.filename or "a file"
    fix = _OS_ERROR_FIXES.get(err.errno or 0)
    return f"{where}: {err.strerror or err}" + (f"; {fix}" if fix else "")


def os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: itself, or one it was raised from or while handling.

    torch.save to a full disk, for one, raises a RuntimeError ("unexpected pos") whose context is
    the ENOSPC OSError of the file write. A context suppressed with ``from None`` does not count.
    """
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return None


def interrupted_message(step: int, partial: Path) -> str:
    """What a training loop stopped by SIGTERM says, after saving its state at ``step`` to ``partial``."""
    return f"interrupted by SIGTERM at step {step} (state saved in {partial}); resume with the same command"


@contextlib.contextmanager
def on_sigterm(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Call ``handler(signum, frame)`` on SIGTERM within the block, then restore the previous handler.

    Outside the main thread, where Python cannot install signal handlers, SIGTERM keeps its effect.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_sigterm() -> Iterator[Callable[[], bool]]:
    """Within the block SIGTERM only sets a flag; yields the function that says whether it came.

    A training loop polls it between steps, so it can save a consistent state (never one torn in
    the middle of an optimiser step) and stop with :class:`Terminated`.
    """
    received: list[int] = []
    with on_sigterm(lambda signum, frame: received.append(signum)):
        yield lambda: bool(received)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_DEFAULT_MODE = 0o666 & ~_umask()


def _about_dest(err: OSError, dest: Path) -> bool:
    """Whether ``err`` is a write error (see :data:`_OS_ERROR_FIXES`; a network error is not) about
    ``dest``: no file named, ``dest``, its temporary file or a folder above it."""
    if err.errno not in _OS_ERROR_FIXES:
        return False
    if err.filename is None:
        return True
    named = Path(os.fsdecode(err.filename))
    temporary = named.parent == dest.parent and named.name.startswith(f".{dest.name}.")
    return named == dest or temporary or named in dest.parents


@contextlib.contextmanager
def _write_errors(dest: Path) -> Iterator[None]:
    """Turn an error that comes from writing ``dest`` (read-only or full disk, no permission) into
    a one-line :class:`WriteError` naming ``dest`` and the fix; any other error passes unchanged."""
    try:
        yield
    except Exception as err:
        cause = os_error_in(err)
        if isinstance(err, BenchError) or cause is None or not _about_dest(cause, dest):
            raise
        raise WriteError(f"cannot write {os_error_message(cause, dest)}") from err


def _temporary_beside(dest: Path) -> Path:
    """A new empty temporary file in ``dest``'s folder (created), named after ``dest``."""
    if dest.is_dir():
        raise WriteError(f"cannot write {dest}: it is a folder; {_OS_ERROR_FIXES[errno.EISDIR]}")
    with _write_errors(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    return Path(name)


def check_writable(dest: str | os.PathLike) -> None:
    """Fail now, with :func:`atomic_path`'s message, if ``dest`` could not be written later.

    For outputs written after a long computation (a training run's checkpoints).
    """
    _temporary_beside(Path(dest)).unlink()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary file lives in the destination folder (same filesystem, so the rename is atomic)
    and keeps the destination's suffix, so writers that infer a format from it (PIL, pandas,
    matplotlib) work unchanged. On any exception the temporary file is removed; one that comes from
    writing there (a read-only or full disk, no permission, ``dest`` a folder) becomes a one-line
    :class:`WriteError` naming ``dest`` and the fix.
    """
    dest = Path(dest)
    tmp = _temporary_beside(dest)
    try:
        with _write_errors(dest):
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


def atomic_torch_save(payload: Any, dest: str | os.PathLike) -> None:
    """``torch.save(payload)`` to ``dest`` atomically, through a Python file object.

    Given a path, torch writes with its own C++ stream and a full disk surfaces as a bare
    "unexpected pos" RuntimeError; through a file object the ENOSPC OSError is kept as its context.
    """
    import torch

    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def short_list(names: Sequence[str], limit: int = 10) -> str:
    """``a, b, c and 7 more``: a list of names short enough for a one-line error message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_tables(tables: dict[str | os.PathLike, pd.DataFrame]) -> None:
    """Write several CSVs so that either all of them appear or none does.

    Each table goes to a temporary file beside its destination; the renames happen only after every
    table has been written, so a failure never leaves one new table next to a stale other.
    """
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(dest)) for dest in tables]
        for temporary, frame in zip(temporaries, tables.values(), strict=True):
            frame.to_csv(temporary, index=False)


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
        # reshape(-1): a channels-last 1x1 kernel (CUDA training) counts as contiguous but keeps a last stride > 1
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


# The device files a GPU driver creates (NVIDIA's control device, AMD ROCm's kernel fusion driver).
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd")


def gpu_device_present() -> bool:
    """Whether this machine has a GPU device file: what the workflow asks about, without importing torch."""
    return any(os.path.exists(path) for path in GPU_DEVICE_FILES)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error, not a silent CPU run."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("device 'cuda' was requested but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


# The environment that pins torch's CPU kernels to one code path on every x86-64 CPU: ATen's
# non-vectorised kernels, oneDNN's SSE4.1 kernels (oneDNN itself is then switched off, see
# pin_portable_kernels), MKL's conditional numerical reproducibility.
PORTABLE_NUMERICS_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "DNNL_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE",
}


def use_portable_numerics() -> None:
    """Set :data:`PORTABLE_NUMERICS_ENV` for this process (``python -m bench --portable-numerics``).

    The libraries read these variables when torch loads, so this must run before the first torch
    import; in a process that already imported torch it only warns.
    """
    if "torch" in sys.modules and cpu_numerics() != "portable":
        log.warning("--portable-numerics has no effect here: torch was imported before it was set")
    os.environ.update(PORTABLE_NUMERICS_ENV)


def pin_portable_kernels() -> None:
    """In a portable-numerics process, send convolutions to ATen's own kernels (im2col and MKL's
    reproducible GEMM) instead of oneDNN's and NNPACK's; elsewhere do nothing (and import no torch).

    oneDNN chooses its loop blocking by the CPU's cache sizes even with its ISA capped at SSE4.1, so
    the same SSE4.1 kernels sum in another order on another CPU model: a 20-step MSH training gave
    other weights on an AVX-512 Xeon than on the machine the golden table was made on, and with
    oneDNN off its weights no longer depend on ``DNNL_MAX_CPU_ISA`` at all (the cost: README, Tests and CI).
    The CLI calls this before any torch work.
    """
    if not _portable_environment():
        return
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)


def _portable_environment() -> bool:
    return all(os.environ.get(name) == value for name, value in PORTABLE_NUMERICS_ENV.items())


def cpu_numerics() -> str:
    """Which CPU kernels this process runs, for the tables' provenance.

    ``portable``: :data:`PORTABLE_NUMERICS_ENV` is set and, once torch is loaded, convolutions are
    off oneDNN (:func:`pin_portable_kernels`), as in every ``python -m bench`` command of a portable
    run. ``mixed``: the variables are set but oneDNN still runs (a library caller that skipped
    :func:`pin_portable_kernels`): results then depend on the CPU model. ``native``: the CPU's own
    vector kernels (results depend on the CPU model at the rounding level).
    """
    if not _portable_environment():
        return "native"
    torch = sys.modules.get("torch")
    return "mixed" if torch is not None and torch.backends.mkldnn.enabled else "portable"


def set_torch_threads(threads: int | None) -> None:
    """Fix torch's CPU threads (intra-op, and inter-op while that is still allowed); ``None`` leaves
    torch's default: ``$OMP_NUM_THREADS``, else every core (and does not import torch).

    Training and decoding results depend on the thread count at the rounding level (float sums split
    over threads), and training amplifies that into other models: the CLI calls this before any
    torch work (``python -m bench --threads N``) so a step's numbers follow its arguments, not its
    environment (Snakemake's OMP_NUM_THREADS, a shell's, a Slurm job's).
    """
    if threads is None:
        return
    if threads < 1:
        raise BenchError(f"'--threads' must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # torch allows this once, before any inter-op work
        torch.set_num_interop_threads(threads)


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


MIB = 2**20
CLEAR_REFS = Path("/proc/self/clear_refs")
PROC_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> str:
    """Start a new peak-memory window; returns how :func:`peak_memory_mb` will measure it (CUDA's
    allocator peak, Linux's resettable peak RSS, else the process's lifetime peak RSS)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:
        CLEAR_REFS.write_text("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        return "rss_process_lifetime"
    return "rss_peak"


def peak_memory_mb(device: torch.device, kind: str) -> float:
    """Peak memory in MiB since :func:`reset_peak_memory` returned ``kind``."""
    import torch

    if kind == "cuda_max_allocated":
        return torch.cuda.max_memory_allocated(device) / MIB
    if kind == "rss_peak":
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


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
PROGRESS_INTERVAL_ENV = "BENCH_PROGRESS_INTERVAL_S"
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


def progress_options(nested: bool = False) -> dict[str, Any]:
    """tqdm keyword arguments for a long step's bar: the usual bar on a terminal; in a log file one
    line (count, rate, elapsed and ETA, postfix) every :data:`LOG_PROGRESS_INTERVAL_S` seconds, or
    every ``$BENCH_PROGRESS_INTERVAL_S`` seconds when that is set (0: every update).

    A ``nested`` bar (one inside another bar's step, e.g. a sampler's steps inside a decode's
    images) shows on a terminal only: in a log file the outer bar's lines say enough, and the cursor
    moves tqdm writes for a nested bar are control characters there."""
    if sys.stderr.isatty():
        return {"file": sys.stderr}
    if nested:
        return {"disable": True}
    interval = float(os.environ.get(PROGRESS_INTERVAL_ENV) or LOG_PROGRESS_INTERVAL_S)
    return {"file": _LogLines(), "mininterval": interval, "ascii": True, "ncols": 100}
