"""The perf config section and the constants every perf module shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PerfSettings:
    """The config's ``perf`` section (see bench/schema.yaml for each key's meaning)."""

    sizes: tuple[tuple[int, int], ...]  # (height, width)
    batch_sizes: tuple[int, ...]
    repetitions: int
    warmup: int
    max_steps_timed: int | None
    compare: bool
    compare_threads: tuple[int, ...]
    compile: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PerfSettings:
        """From a validated config; sizes and batches sorted ascending (see the module doc on memory)."""
        section = config["perf"]
        return cls(
            sizes=tuple(sorted({(int(h), int(w)) for h, w in section["sizes"]}, key=lambda s: (s[0] * s[1], s))),
            batch_sizes=tuple(sorted(set(section["batch_sizes"]))),
            repetitions=int(section["repetitions"]),
            warmup=int(section["warmup"]),
            max_steps_timed=section["max_steps_timed"],
            compare=bool(section["compare"]),
            compare_threads=tuple(section["compare_threads"]),
            compile=bool(section["compile"]),
        )
