"""Build, load and save compressai ``mbt2018_mean`` models (mean-scale hyperprior, Minnen et al. 2018).

Three sources, one model class: compressai's pretrained zoo weights (read from
``$TORCH_HOME/hub/checkpoints`` under their upstream file names, downloaded there when missing and
the network allows), a checkpoint file (ours from ``train-msh``, a zoo file, or a compressai
``examples/train.py`` checkpoint), or a fresh random-init model to train.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from compressai.models import MeanScaleHyperprior
from compressai.zoo import image as zoo
from compressai.zoo.pretrained import load_pretrained as rename_zoo_keys

from bench.download import download, sha256_is
from bench.utils import BenchError, atomic_torch_save, code_version
from bench.weight_files import file_sha256, hash_problem

ARCH = "mbt2018-mean"
QUALITIES = range(1, 9)
# Rate-distortion lambdas (MSE) of compressai's zoo models per quality; the defaults for training.
ZOO_LAMBDAS: dict[int, float] = {
    1: 0.0018,
    2: 0.0035,
    3: 0.0067,
    4: 0.0130,
    5: 0.0250,
    6: 0.0483,
    7: 0.0932,
    8: 0.1800,
}


def check_quality(quality: int) -> int:
    """Return ``quality`` if compressai's zoo defines it (1..8), else raise a BenchError."""
    if quality not in QUALITIES:
        raise BenchError(f"quality {quality} is out of range: mbt2018-mean has qualities 1..8")
    return quality


def zoo_size(quality: int) -> tuple[int, int]:
    """(N, M) channel counts of the zoo model at ``quality``: (128, 192) for 1..4, (192, 320) above."""
    return zoo.cfgs[ARCH][check_quality(quality)]


def build_model(quality: int, N: int | None = None, M: int | None = None) -> MeanScaleHyperprior:
    """A fresh, random-init model; N and M default to the zoo's sizes for ``quality``."""
    zoo_n, zoo_m = zoo_size(quality)
    return MeanScaleHyperprior(N or zoo_n, M or zoo_m)


def zoo_weights_url(quality: int) -> str:
    """compressai's download URL of the MSE-optimised zoo weights at ``quality``."""
    return zoo.model_urls[ARCH]["mse"][check_quality(quality)]


def zoo_weights_path(quality: int) -> Path:
    """Where torch.hub (and so compressai's zoo) caches those weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(zoo_weights_url(quality)).name


def load_pretrained(quality: int) -> MeanScaleHyperprior:
    """compressai's pretrained ``mbt2018_mean(quality, metric="mse")``, from the torch.hub cache.

    The cache is checked first; when the file is missing it is downloaded (with a timeout, and
    checked against the sha256 prefix in its name, torch.hub's convention), and when that fails a
    single BenchError names the URL, the file, the folder, TORCH_HOME and the way out.
    A cached file must carry the sha256 its name promises (or one registered in
    ``$BENCH_WEIGHT_HASHES``, see :mod:`bench.weight_files`): other bytes are refused, never
    passed off as compressai's model.
    """
    path = zoo_weights_path(quality)
    if not path.is_file():
        prefix = re.search(r"-([a-f0-9]+)\.", path.name)
        download(
            zoo_weights_url(quality),
            path,
            check=sha256_is(prefix.group(1)) if prefix else None,
            fix=f"compressai zoo weights {path.name} are not in {path.parent} "
            f"(TORCH_HOME={os.environ.get('TORCH_HOME', '<unset>')}): copy the file there, or train a model "
            f"with `python -m bench train-msh` and pass --checkpoint",
        )
    problem = hash_problem(path)
    if problem is not None:
        raise BenchError(f"compressai zoo weights refused: {problem}")
    return zoo.mbt2018_mean(quality, metric="mse", pretrained=True, progress=False)


def zoo_origin(quality: int) -> dict[str, str]:
    """The zoo file a pretrained model was read from and its sha256 (checkpoint fields of ``export-msh``)."""
    path = zoo_weights_path(quality)
    return {"zoo_file": path.name, "zoo_sha256": file_sha256(path)}


def weights_label(weights_hash: str, meta: dict[str, Any]) -> str:
    """The ``msh_weights`` provenance value: the weights hash, prefixed by the zoo file when it came from one.

    A trained-here (or given) checkpoint is its weights hash alone; a zoo export reads
    ``zoo:FILE:sha256=HEX16:HASH``, so a table row names the published file it measured.
    """
    if "zoo_file" not in meta:
        return weights_hash
    return f"zoo:{meta['zoo_file']}:sha256={meta['zoo_sha256'][:16]}:{weights_hash}"


def load_checkpoint(path: str | os.PathLike, quality: int | None = None) -> tuple[MeanScaleHyperprior, dict[str, Any]]:
    """Load a model from a checkpoint file; return it with the file's metadata (empty for raw weights).

    Accepts our ``train-msh`` checkpoints, compressai zoo files and compressai training checkpoints
    (a dict with ``state_dict``). A file that records a different architecture or quality than the
    one asked for is a BenchError.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"MSH checkpoint not found: {path} (train one with `python -m bench train-msh`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise BenchError(f"{path} is not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict):
        raise BenchError(f"{path} holds a {type(payload).__name__}, not a state dict or checkpoint dict")
    meta = {k: v for k, v in payload.items() if k != "state_dict"} if "state_dict" in payload else {}
    arch = meta.get("arch", ARCH)
    if arch != ARCH:
        raise BenchError(f"{path} holds a {arch!r} model; rdp-bench's MSH codec is {ARCH!r}")
    if quality is not None and meta.get("quality", quality) != quality:
        raise BenchError(f"{path} is a quality-{meta['quality']} model, but quality {quality} was asked for")
    state = rename_zoo_keys(payload.get("state_dict", payload))
    try:
        net = MeanScaleHyperprior.from_state_dict(state)
    except (KeyError, RuntimeError) as err:
        raise BenchError(f"{path} is not an {ARCH} state dict ({type(err).__name__}: {err})") from None
    return net, meta


def save_checkpoint(path: str | os.PathLike, net: MeanScaleHyperprior, **fields: Any) -> None:
    """Write ``net`` and ``fields`` (quality, lmbda, step, optimiser and RNG states ...) atomically.

    The file is a dict with ``state_dict``, ``arch``, ``N``, ``M`` and ``code_version`` beside the
    given fields, readable by :func:`load_checkpoint` with ``weights_only=True``.
    """
    payload = {
        "arch": ARCH,
        "N": net.N,
        "M": net.M,
        "code_version": code_version(),
        **fields,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    atomic_torch_save(payload, path)
