"""FID/KID on patches: the patch protocols, the Inception plumbing (random backbone), warnings."""

from __future__ import annotations

import math

import pytest
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

from bench.metrics.columns import parse_protocol_column, patch_label, protocol_column
from bench.metrics.distribution import (
    InceptionFeatures,
    PatchFID,
    extract_patches,
    frechet_distance,
    kernel_distance,
    patch_count,
)
from bench.metrics.weights import BACKBONES, ResolvedBackbone
from bench.utils import BenchError


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    """torch-fidelity's InceptionV3 with seeded random weights (built once: it is the slow part)."""
    return InceptionFeatures(ResolvedBackbone(BACKBONES["inception"], None), seed=0)


def _noisy(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noisy = images.to(torch.float32) + sigma * torch.randn(images.shape, generator=generator)
    return noisy.round().clamp(0, 255).to(torch.uint8)


def _smooth_images(count: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Smooth random images (upsampled coarse noise), closer to photos than white noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((count, 3, height // 8, width // 8), generator=generator)
    fine = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (fine * 255).round().to(torch.uint8)


@pytest.mark.parametrize(("height", "width"), [(512, 768), (768, 512)])
def test_kodak_patch_counts(height: int, width: int) -> None:
    # Kodak, 256 px: the first grid is 3 x 2 = 6 patches; the grid shifted by 128 leaves 640 x 384 px,
    # which holds 2 x 1 = 2 more.
    assert patch_count(height, width, 256, "nonoverlap") == 6
    assert patch_count(height, width, 256, "hific") == 6 + 2


@pytest.mark.parametrize("protocol", ["nonoverlap", "hific"])
@pytest.mark.parametrize(("height", "width", "size"), [(96, 64, 32), (70, 41, 16), (20, 20, 32)])
def test_patches_are_the_grid_cells(protocol: str, height: int, width: int, size: int) -> None:
    # Pixel values encode their coordinates, so each patch reveals where it was cut from.
    rows = torch.arange(height).view(1, 1, height, 1).expand(1, 1, height, width)
    cols = torch.arange(width).view(1, 1, 1, width).expand(1, 1, height, width)
    image = torch.cat([rows, cols], dim=1)
    patches = extract_patches(image, size, protocol)
    origins = sorted((int(p[0, 0, 0]), int(p[1, 0, 0])) for p in patches)
    offsets = [0] if protocol == "nonoverlap" else [0, size // 2]
    expected = sorted(
        (o + i * size, o + j * size)
        for o in offsets
        for i in range((height - o) // size)
        for j in range((width - o) // size)
    )
    assert origins == expected
    assert patch_count(height, width, size, protocol) == len(expected)
    for patch in patches:  # each patch is a whole, contiguous block
        top, left = int(patch[0, 0, 0]), int(patch[1, 0, 0])
        assert torch.equal(patch, image[0, :, top : top + size, left : left + size])


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(BenchError, match="hific"):
        patch_count(64, 64, 32, "fid256")


@pytest.mark.parametrize(("n_1", "n_2", "dim"), [(40, 30, 16), (6, 9, 16), (200, 150, 64)])
def test_fid_closed_form_matches_torch_fidelity(n_1: int, n_2: int, dim: int) -> None:
    generator = torch.Generator().manual_seed(n_1)
    x = torch.randn((n_1, dim), generator=generator, dtype=torch.float64)
    y = 1.3 * torch.randn((n_2, dim), generator=generator, dtype=torch.float64) + 0.2
    stats = [fid_features_to_statistics(f) for f in (x, y)]
    expected = fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID]
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_fid_is_zero_against_itself_and_grows_with_noise(inception: InceptionFeatures) -> None:
    clean = _smooth_images(1, 32, 96, seed=0)  # 1 x 3 = 3 patches of 32 px
    features = {
        sigma: inception(extract_patches(images, 32, "nonoverlap"))
        for sigma, images in ((0, clean), (8, _noisy(clean, 8, seed=1)), (40, _noisy(clean, 40, seed=1)))
    }
    assert inception.provenance == "random-init"
    assert features[0].shape == (3, 2048) and torch.isfinite(features[0]).all()
    scale = features[0].var(dim=0).sum().item()  # trace of the covariance: FID's natural scale
    itself = frechet_distance(features[0], features[0])
    light, heavy = frechet_distance(features[0], features[8]), frechet_distance(features[0], features[40])
    assert abs(itself) < 1e-9 * scale
    assert 1e-3 * scale < light < heavy
    kid_light = kernel_distance(features[0], features[8], subset_size=3, seed=0)[0]
    kid_heavy = kernel_distance(features[0], features[40], subset_size=3, seed=0)[0]
    assert kid_light < kid_heavy


def test_patch_fid_accumulates_and_warns_on_few_patches(inception: InceptionFeatures) -> None:
    fid = PatchFID(inception, patch_size=32, protocol="hific", batch_size=4, kid_subset_size=1000, seed=0)
    images = _smooth_images(2, 48, 40, seed=3)  # per image: 1 x 1 + shifted 1 x 0 = 1 patch
    assert fid.update(images, _noisy(images, 20, seed=0)) == 2
    result = fid.compute()
    assert result["n_patches"] == 2 and result["kid_subset_size"] == 2
    assert math.isfinite(result["fid_hific_p32"]) and math.isfinite(result["kid_hific_p32"])
    assert "2048 feature dims" in result["fid_warning"] and "kid_subset_size 1000 > 2" in result["fid_warning"]


def test_too_few_patches_give_nan_and_a_warning_not_a_crash(inception: InceptionFeatures) -> None:
    fid = PatchFID(inception, patch_size=64, protocol="hific", batch_size=4)
    images = _smooth_images(1, 48, 80, seed=0)  # shorter than one patch: nothing to cut
    assert fid.update(images, images) == 0
    result = fid.compute()
    assert math.isnan(result["fid_hific_p64"]) and math.isnan(result["kid_hific_p64"])
    assert result["n_patches"] == 0 and "at least 2" in result["fid_warning"]


@pytest.mark.parametrize(("protocol", "size"), [("hific", 256), ("hific", 128), ("nonoverlap", 256)])
def test_columns_name_protocol_and_patch_size(inception: InceptionFeatures, protocol: str, size: int) -> None:
    """No column may pass a 128 px or single-grid FID off as the literature's FID/256 (hific, 256 px)."""
    fid = PatchFID(inception, patch_size=size, protocol=protocol, batch_size=4)
    names = {name for name in fid.compute() if parse_protocol_column(name)}
    assert names == {f"{metric}_{protocol}_p{size}" for metric in ("fid", "kid", "kid_std")}
    assert "fid" not in fid.compute() and protocol_column("fid", "hific", 256) == "fid_hific_p256"
    assert parse_protocol_column("kid_std_nonoverlap_p64") == ("kid_std", "nonoverlap", 64)
    assert parse_protocol_column("fid") is None and parse_protocol_column("fid_other_p64") is None
    assert patch_label("hific", 256) == "/256" and patch_label("hific", 128) == " (128 px, hific)"


def test_kid_std_is_reported_only_when_subsets_differ(inception: InceptionFeatures) -> None:
    """With the subset size at the patch count every subset is the same set: its std (0) measures nothing."""
    images = _smooth_images(2, 32, 128, seed=5)  # 4 patches of 32 px per image, 8 in all
    noisy = _noisy(images, 20, seed=1)
    results = {}
    for subset in (None, 8, 4):  # None: min(1000, 8) = 8, every patch
        fid = PatchFID(inception, patch_size=32, protocol="nonoverlap", batch_size=8, kid_subset_size=subset)
        fid.update(images, noisy)
        results[subset] = fid.compute()
    assert math.isnan(results[None]["kid_std_nonoverlap_p32"]) and math.isnan(results[8]["kid_std_nonoverlap_p32"])
    assert results[4]["kid_subset_size"] == 4 and results[4]["kid_std_nonoverlap_p32"] > 0
    assert all(math.isfinite(result["kid_nonoverlap_p32"]) for result in results.values())
