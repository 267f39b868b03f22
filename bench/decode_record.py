"""The decode record: what ``python -m bench decode --record JSON`` writes beside a point's
reconstructions and ``python -m bench tables`` reads back into the results tables.

One typed record for every decoder: the fields all decoders share (timing, memory, the MSH weights
of the bitstreams, device), and those only a diffusion decode has (network evaluations, the decoder's
weights and training rho, the batching and threads its samples depend on), ``None`` for the others.
The diffusion decoder's full provenance (scheduler, timesteps, checkpoint, bitstream hashes) stays in
its own ``decode_config.json``; this record holds what the tables show. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.utils import BenchError, atomic_path

RECORD_NAME = "decode.json"  # the workflow writes it into each point's reconstruction folder
# What a diffusion decode must record (a record without them predates the fields: decode again).
DIFFUSION_FIELDS = ("nfe", "decoder_weights", "batch_size", "threads")


@dataclass(frozen=True)
class DecodeRecord:
    """One decode run of one point."""

    decoder: str  # a ``bench.commands.decode.DECODERS`` name
    n_images: int
    seconds: float  # wall time of the whole command, model loading included
    decode_s_per_image: float
    peak_mem_mb: float | None  # since the command started (CUDA: allocator peak; CPU: resident set)
    msh_weights: str  # the bitstreams' MSH weights hash, with the zoo file they came from
    device: str
    cpu_numerics: str
    nfe: int | None = None  # network evaluations per image and reconstruction
    decoder_weights: str | None = None  # the diffusion decoder's EMA weights hash
    rho: float | None = None  # the LPIPS weight the decoder was trained with
    batch_size: int | None = None  # a sample differs at the rounding level with its batch ...
    threads: int | None = None  # ... and with the CPU threads: provenance

    def write(self, path: str | os.PathLike) -> None:
        """Write the record as JSON, atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: str | os.PathLike) -> DecodeRecord | None:
        """The record in a reconstruction folder; ``None`` when it has none (JPEG, a bring-your-own
        codec). A record this code cannot read in full is one error naming the file and the fix."""
        path = Path(folder) / RECORD_NAME
        if not path.exists():
            return None
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise BenchError(f"{path} is not valid JSON ({err}); delete the folder and decode again") from None
        names = [field.name for field in dataclasses.fields(cls)]
        required = [field.name for field in dataclasses.fields(cls) if field.default is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if data.get("decoder") == "diffusion":
            missing += [name for name in DIFFUSION_FIELDS if data.get(name) is None]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            problem = ", ".join([*(f"no {name}" for name in missing), *(f"unknown field {name}" for name in unknown)])
            raise BenchError(
                f"{path} is not a decode record this code reads ({problem}); delete the folder and decode again"
            )
        return cls(**data)
