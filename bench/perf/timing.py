"""Wall-clock timing of a call: warm-up, repetitions, interleaving, CUDA synchronisation."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on the CPU), so a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: Sequence[Callable[[], object]], *, warmup: int, repetitions: int, device: torch.device
) -> list[list[float]]:
    """Seconds of each call of each of ``fns``, called in turn in every repetition after ``warmup`` untimed
    rounds; ``result[i][r]`` is ``fns[i]`` in repetition ``r``. Interleaving pairs measurements taken
    close in time, so a ratio of two of them survives a machine whose load drifts."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repetitions):
        for fn, seconds in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return times


def time_calls(fn: Callable[[], object], *, warmup: int, repetitions: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repetitions`` calls of ``fn`` after ``warmup`` untimed calls."""
    return time_interleaved([fn], warmup=warmup, repetitions=repetitions, device=device)[0]
