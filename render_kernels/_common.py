"""Constants and the raw statistics record shared by every backend.

Every backend (numpy, CUDA, host-compiled CUDA) returns the same :class:`RawStats`; turning them into
user-facing :class:`render_kernels.Metrics` happens once, in ``metrics.py``, so the backends cannot
drift apart in how e.g. PSNR is derived.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# SSIM parameters of Wang et al. 2004 as implemented by skimage.metrics.structural_similarity with
# gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # = 5, same rounding as scipy.ndimage
SSIM_WIN = 2 * SSIM_RADIUS + 1  # = 11; skimage crops (SSIM_WIN - 1) // 2 pixels of border
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 1.0
SSIM_C1 = (SSIM_K1 * DATA_RANGE) ** 2
SSIM_C2 = (SSIM_K2 * DATA_RANGE) ** 2


@functools.cache
def gaussian_weights() -> np.ndarray:
    """The 11 taps of scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5), as float64 (read-only)."""
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    w: np.ndarray = np.exp(-0.5 / SSIM_SIGMA**2 * x * x)
    w /= w.sum()
    w.setflags(write=False)
    return w


@dataclass(frozen=True)
class RawStats:
    """Sums and counts over an HxWxC pair; backends only have to agree on these numbers."""

    max_abs: float  # max over all samples of |a - b|
    sum_abs: float  # sum over all samples of |a - b|
    sum_sq: float  # sum over all samples of (a - b)^2
    over_tol: int  # pixels whose max-over-channels |a - b| > pixel_tol
    over_gross: int  # pixels whose max-over-channels |a - b| > gross_tol
    ssim: float  # mean SSIM over the cropped map and all channels
