"""From per-image values to summary rows: means with bootstrap confidence intervals, tidy CSVs.

The summary of a metric is the plain mean over images in a column named after the metric, with the
95% percentile-bootstrap interval of that mean beside it in ``<metric>_ci_lo`` / ``<metric>_ci_hi``.
The resampling is seeded and every metric uses the same resampled image sets, so the intervals of
different metrics (and of different configurations evaluated on the same images) are paired.

Non-finite values are kept, not dropped: a metric that is NaN for any image (e.g. MS-SSIM of an image
too small for five scales) has a NaN summary, because a mean over a silent subset of the images would
not be comparable with other rows; a +inf PSNR (a lossless image) makes the mean +inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

CI_LEVEL = 0.95


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (NaN when any value is NaN)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0 or np.isnan(data).any():
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - CI_LEVEL) / 2.0
    # Order statistics (no interpolation), so resampled means of +inf never turn into inf - inf = NaN.
    low, high = np.quantile(means, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def summarize(per_image: pd.DataFrame, metrics: Sequence[str], *, resamples: int, seed: int) -> dict[str, float]:
    """``{m: mean, m_ci_lo: ..., m_ci_hi: ...}`` for each metric column of ``per_image``."""
    summary: dict[str, float] = {}
    for metric in metrics:
        values = per_image[metric].to_numpy(dtype=np.float64)
        summary[metric] = float(np.mean(values)) if values.size else math.nan
        summary[f"{metric}_ci_lo"], summary[f"{metric}_ci_hi"] = bootstrap_ci(values, resamples=resamples, seed=seed)
    return summary
