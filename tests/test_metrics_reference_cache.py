"""The reference-feature cache of the patch FID: a hit equals a fresh computation, any change is a miss."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.metrics.columns import protocol_column
from bench.metrics.evaluate import MetricsOptions, evaluate, match_images

from .conftest import write_png

FID_ONLY = {
    "lpips": False,
    "dists": False,
    "swd": False,
    "niqe": False,
    "fid": True,
    "patch_size": 16,
    "bootstrap": 100,
    "download_weights": False,
    "allow_random_backbones": True,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def _empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture
def pairs(tmp_path: Path):
    reference, reconstructions = tmp_path / "reference", tmp_path / "reconstructions"
    for seed in range(3):
        path = write_png(reference / f"im{seed}.png", 32, 48, seed=seed)
        noisy = np.asarray(Image.open(path)).astype(int) + np.random.default_rng(seed).integers(-20, 20, (32, 48, 3))
        reconstructions.mkdir(exist_ok=True)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(reconstructions / f"im{seed}.png")
    return match_images(reference, reconstructions)


def _fid(pairs, cache: Path | None) -> tuple[float, float]:
    options = dataclasses.replace(MetricsOptions.defaults(), **FID_ONLY)
    summary = evaluate(pairs, options, reference_cache=cache).summary.iloc[0]
    fid, kid = (protocol_column(name, options.fid_protocol, options.patch_size) for name in ("fid", "kid"))
    return float(summary[fid]), float(summary[kid])


def test_a_cache_hit_gives_the_values_of_a_fresh_computation_and_is_really_read(pairs, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fresh = _fid(pairs, None)
    assert _fid(pairs, cache) == fresh  # miss: computed and written
    (written,) = cache.glob("inception-*.pt")
    assert _fid(pairs, cache) == fresh  # hit
    torch.save([torch.zeros_like(b) for b in torch.load(written, weights_only=True)], written)
    assert _fid(pairs, cache) != fresh  # the file is what the hit used


def test_other_references_or_settings_are_a_miss(pairs, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fid(pairs, cache)
    image = np.asarray(Image.open(pairs[0].reference)).copy()
    image[0, 0] ^= 1
    Image.fromarray(image).save(pairs[0].reference)
    _fid(pairs, cache)
    assert len(list(cache.glob("inception-*.pt"))) == 2


def test_an_unreadable_cache_file_is_recomputed(pairs, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fresh = _fid(pairs, cache)
    (written,) = cache.glob("inception-*.pt")
    written.write_bytes(b"not a tensor file")
    assert _fid(pairs, cache) == fresh
    assert torch.load(written, weights_only=True)  # rewritten
