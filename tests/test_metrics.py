"""Metrics building blocks: PSNR/MS-SSIM, LPIPS/DISTS wrappers, backbone weights, bootstrap CIs."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.models import alexnet

from bench.images import shape_batches
from bench.metrics import weights
from bench.metrics.aggregate import bootstrap_ci, summarize
from bench.metrics.fidelity import MS_SSIM_MIN_SIDE, ms_ssim, psnr
from bench.metrics.perceptual import DISTS, LPIPS
from bench.metrics.weights import BACKBONES, RandomBackboneWarning, ResolvedBackbone, resolve_backbones
from bench.utils import BenchError, write_tables
from tests.weight_files import register_hashes


def _random_backbone(name: str) -> ResolvedBackbone:
    return ResolvedBackbone(BACKBONES[name], None)


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def _add_noise(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noisy = images.to(torch.float32) + sigma * torch.randn(images.shape, generator=generator)
    return noisy.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$TORCH_HOME pointing at an empty folder: no weights, and nothing the tests write leaks out."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


# --- PSNR / MS-SSIM --------------------------------------------------------------------------------


def test_psnr_matches_numpy_formula() -> None:
    reference = _images((3, 3, 20, 30), seed=0)
    reconstruction = _add_noise(reference, 12.0, seed=1)
    ref, rec = reference.numpy().astype(np.float64), reconstruction.numpy().astype(np.float64)
    expected = [20 * np.log10(255.0) - 10 * np.log10(np.mean((a - b) ** 2)) for a, b in zip(ref, rec, strict=True)]
    np.testing.assert_allclose(psnr(reference, reconstruction).numpy(), expected, rtol=1e-12)


def test_psnr_of_identical_images_is_inf_and_stays_inf_in_the_mean() -> None:
    reference = _images((2, 3, 8, 8), seed=0)
    reconstruction = reference.clone()
    reconstruction[1, 0, 0, 0] ^= 1  # one pixel differs in the second image
    values = psnr(reference, reconstruction)
    assert math.isinf(values[0]) and values[0] > 0
    assert math.isfinite(values[1])
    summary = summarize(pd.DataFrame({"psnr": values.numpy()}), ["psnr"], resamples=200, seed=0)
    assert summary["psnr"] == math.inf
    assert summary["psnr_ci_hi"] == math.inf and not math.isnan(summary["psnr_ci_lo"])


def test_ms_ssim_is_one_for_identical_and_nan_for_small_images() -> None:
    side = MS_SSIM_MIN_SIDE
    reference = _images((1, 3, side, side + 7), seed=0)
    assert ms_ssim(reference, reference).item() == pytest.approx(1.0, abs=1e-5)
    assert ms_ssim(reference, _add_noise(reference, 20.0, seed=1)).item() < 0.99
    small = reference[..., : side - 1, :]
    with pytest.warns(RuntimeWarning, match="MS-SSIM"):
        assert math.isnan(ms_ssim(small, small).item())


# --- LPIPS / DISTS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "backbone"), [(LPIPS, "alexnet"), (DISTS, "vgg16")])
def test_perceptual_distance_is_zero_for_identical_images(metric: type, backbone: str) -> None:
    network = metric(_random_backbone(backbone), seed=0)
    assert network.provenance == "random-init"
    reference = _images((2, 3, 64, 80), seed=0)
    same = network(reference, reference)
    assert same.shape == (2,)
    torch.testing.assert_close(same, torch.zeros(2), atol=1e-5, rtol=0)
    light = network(reference, _add_noise(reference, 8.0, seed=1))
    heavy = network(reference, _add_noise(reference, 60.0, seed=1))
    assert torch.all(light > 1e-4) and torch.all(heavy > light)


# The network class, its backbone, and the module that runs once per features call (hooked to count).
MEMOISED_NETWORKS = {
    "lpips": (LPIPS, "alexnet", lambda network: network.net.net.trunk),
    "dists": (DISTS, "vgg16", lambda network: network.net.stage1),
}


@pytest.mark.parametrize("budget", [None, 0])
@pytest.mark.parametrize("name", sorted(MEMOISED_NETWORKS))
def test_reference_features_are_reused_and_give_the_fresh_values(name: str, budget: int | None) -> None:
    cls, backbone, trunk = MEMOISED_NETWORKS[name]
    reference = _images((2, 3, 64, 80), seed=0)
    reconstructions = [_add_noise(reference, sigma, seed=1) for sigma in (8.0, 30.0, 60.0)]
    fresh = [cls(_random_backbone(backbone), seed=0)(reference, r) for r in reconstructions]
    network = cls(_random_backbone(backbone), seed=0)
    if budget is not None:
        network.reference.memo.budget_bytes = budget
    calls = []
    trunk(network).register_forward_hook(lambda module, inputs, output: calls.append(inputs[0]))
    reused = [network(reference, r) for r in reconstructions]
    for got, want in zip(reused, fresh, strict=True):
        assert torch.equal(got, want)
    # The trunk runs on the reference once when its features fit the budget, on every call otherwise.
    assert len(calls) == (4 if budget is None else 6)
    other = _images((2, 3, 64, 80), seed=9)
    assert not torch.equal(network(other, reconstructions[0]), reused[0])


def test_random_init_is_seeded() -> None:
    first, second, other = (LPIPS(_random_backbone("alexnet"), seed=s) for s in (5, 5, 6))
    x, y = _images((1, 3, 64, 64), seed=0), _images((1, 3, 64, 64), seed=1)
    assert first(x, y).item() == second(x, y).item() != other(x, y).item()


def test_shape_batches_group_orientations_and_cap_the_size() -> None:
    shapes = [(48, 64, 3), (64, 48, 3), (48, 64, 3), (48, 64, 3)]
    assert list(shape_batches(shapes, 2)) == [[0, 2], [3], [1]]


# --- backbone weights --------------------------------------------------------------------------------


def test_backbone_file_names_are_the_upstream_ones() -> None:
    # The names ../shared/README.md and users put in $TORCH_HOME/hub/checkpoints.
    assert BACKBONES["alexnet"].filename == "alexnet-owt-7be5be79.pth"
    assert BACKBONES["vgg16"].filename == "vgg16-397923af.pth"
    assert BACKBONES["inception"].filename == "weights-inception-2015-12-05-6726825d.pth"
    assert BACKBONES["vgg16"].sha256_prefix == "397923af"


def test_missing_weights_give_one_error_listing_every_file(empty_torch_home: Path) -> None:
    with pytest.raises(BenchError) as caught:
        resolve_backbones(["alexnet", "vgg16", "inception"], allow_random=False, download=False)
    message = str(caught.value)
    for backbone in BACKBONES.values():
        assert backbone.filename in message
    assert str(empty_torch_home) in message and "--allow-random-backbones" in message


def _served_backbone(http_server, monkeypatch: pytest.MonkeyPatch, body: bytes, named_for: bytes) -> weights.Backbone:
    """An AlexNet stand-in served by the loopback server, its file named (torch.hub style) by the
    sha256 prefix of ``named_for``; BACKBONES["alexnet"] points at it."""
    prefix = hashlib.sha256(named_for).hexdigest()[:8]
    path = f"/models/alexnet-test-{prefix}.pth"
    http_server.files[path] = body
    backbone = weights.Backbone("alexnet", http_server.url(path), "LPIPS")
    monkeypatch.setitem(weights.BACKBONES, "alexnet", backbone)
    return backbone


def test_a_backbone_downloads_through_the_one_helper_resuming_a_cut_transfer(
    empty_torch_home: Path, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = os.urandom(3 << 20)
    backbone = _served_backbone(http_server, monkeypatch, body, named_for=body)
    http_server.fault(f"/models/{backbone.filename}", "drop")
    resolved = resolve_backbones(["alexnet"], allow_random=False, download=True)
    assert resolved["alexnet"].path == empty_torch_home / backbone.filename
    assert resolved["alexnet"].path.read_bytes() == body
    assert [r.range for r in http_server.requests][-1] is not None  # the second request resumed
    assert list(empty_torch_home.iterdir()) == [resolved["alexnet"].path]  # no .part left


def test_a_backbone_download_failing_its_hash_stops_the_run_and_leaves_nothing(
    empty_torch_home: Path, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = _served_backbone(http_server, monkeypatch, b"not the weights", named_for=b"the weights")
    with pytest.raises(
        BenchError, match=rf"checksum mismatch for {re.escape(backbone.url)} \(the download was deleted\)"
    ):
        resolve_backbones(["alexnet"], allow_random=True, download=True)
    assert not empty_torch_home.exists() or list(empty_torch_home.iterdir()) == []


def test_an_unreachable_backbone_counts_as_missing(
    empty_torch_home: Path, http_server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backbone = _served_backbone(http_server, monkeypatch, b"weights", named_for=b"weights")
    http_server.fault(f"/models/{backbone.filename}", "404")
    with (
        caplog.at_level(logging.INFO, logger=weights.__name__),
        pytest.raises(BenchError, match=f"{backbone.filename} \\(for LPIPS, from .*\\) is not in"),
    ):
        resolve_backbones(["alexnet"], allow_random=False, download=True)
    assert f"could not download {backbone.url} (HTTP 404" in caplog.text
    http_server.fault(f"/models/{backbone.filename}", "404")
    with pytest.warns(RandomBackboneWarning, match="RANDOM-INIT"):
        assert resolve_backbones(["alexnet"], allow_random=True, download=True)["alexnet"].path is None


def test_random_init_when_allowed_warns_and_is_labelled(empty_torch_home: Path) -> None:
    with pytest.warns(RandomBackboneWarning, match="RANDOM-INIT"):
        resolved = resolve_backbones(["alexnet"], allow_random=True, download=False)
    assert resolved["alexnet"].provenance == "random-init"


def test_offline_download_fails_fast_not_hangs(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An unreachable host (nothing listens on port 9 of localhost) stands in for "no internet".
    unreachable = weights.Backbone("alexnet", "http://127.0.0.1:9/alexnet-owt-7be5be79.pth", "LPIPS")
    monkeypatch.setitem(weights.BACKBONES, "alexnet", unreachable)
    with pytest.raises(BenchError, match="alexnet-owt-7be5be79.pth"):
        resolve_backbones(["alexnet"], allow_random=False, download=True, timeout=5.0)
    assert list(empty_torch_home.glob("*")) == []  # no partial download left behind


def test_local_weights_file_is_used_without_network(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_torch_home.mkdir(parents=True)
    torch.manual_seed(0)
    features = {f"features.{k}": v for k, v in alexnet(weights=None).features.state_dict().items()}
    torch.save(features, empty_torch_home / BACKBONES["alexnet"].filename)
    # random weights under the upstream name: "real" only once registered as a deliberate re-save
    register_hashes(
        monkeypatch, empty_torch_home.parent / "hashes.txt", empty_torch_home / BACKBONES["alexnet"].filename
    )
    resolved = resolve_backbones(["alexnet"], allow_random=False, download=False)["alexnet"]
    assert resolved.provenance == "real"
    network = LPIPS(resolved)
    assert network.provenance == "real"
    torch.testing.assert_close(network.net.net.trunk.slice1[0].weight, features["features.0.weight"])


def test_foreign_weights_file_is_a_clear_error(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_torch_home.mkdir(parents=True)
    path, listing = empty_torch_home / BACKBONES["vgg16"].filename, empty_torch_home.parent / "hashes.txt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match=f"{path} has sha256 .* not the upstream file's"):
        resolve_backbones(["vgg16"], allow_random=False, download=False)
    register_hashes(monkeypatch, listing, path)  # registered, its bytes are still checked when loaded
    resolved = resolve_backbones(["vgg16"], allow_random=False, download=False)["vgg16"]
    with pytest.raises(BenchError, match="cannot read weights file"):
        DISTS(resolved)
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    register_hashes(monkeypatch, listing, path)
    with pytest.raises(BenchError, match="does not match the vgg16 network"):
        DISTS(resolved)


# --- aggregation ---------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(0).normal(30.0, 2.0, size=24)
    low, high = bootstrap_ci(values, resamples=1000, seed=0)
    assert low < values.mean() < high
    # The half-width is close to the normal-theory 1.96·s/√n (independent check of the scale).
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.25)
    assert bootstrap_ci(values, resamples=1000, seed=0) == (low, high)


def test_nan_values_make_a_nan_summary_not_a_subset_mean() -> None:
    summary = summarize(pd.DataFrame({"m": [1.0, np.nan, 3.0]}), ["m"], resamples=100, seed=0)
    assert all(math.isnan(summary[key]) for key in ("m", "m_ci_lo", "m_ci_hi"))


def test_write_tables_writes_all_or_nothing(tmp_path: Path) -> None:
    good = pd.DataFrame({"a": [1.0, math.inf]})
    write_tables({tmp_path / "one.csv": good, tmp_path / "two.csv": good})
    assert (tmp_path / "one.csv").read_text().splitlines() == ["a", "1.0", "inf"]

    class Broken(pd.DataFrame):
        def to_csv(self, *args: object, **kwargs: object) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_tables({tmp_path / "three.csv": good, tmp_path / "four.csv": Broken({"a": [1]})})
    assert sorted(os.listdir(tmp_path)) == ["one.csv", "two.csv"]
