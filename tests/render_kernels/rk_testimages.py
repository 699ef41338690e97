"""Synthetic render-like test images for the render_kernels tests (not a test module)."""

from __future__ import annotations

import numpy as np

# The definition render_kernels' SSIM must reproduce (scikit-image's Gaussian SSIM, float images in [0, 1]).
SKIMAGE_SSIM_ARGS = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1.0,
    "channel_axis": -1,
}


def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM by scikit-image itself, the reference the tests and the bench compare with."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, **SKIMAGE_SSIM_ARGS))


def structured(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """float32 HxWxC in [0, 1]: smooth gradients, soft shading, hard-edged shapes and fine texture,
    roughly what a product render looks like (flat areas + edges + detail)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yn, xn = yy / max(h - 1, 1), xx / max(w - 1, 1)
    img = np.empty((h, w, c), np.float32)
    for ch in range(c):
        fx, fy, ph = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6.28)
        base = 0.35 + 0.25 * xn * (ch + 1) / c + 0.15 * yn
        shading = 0.1 * np.sin(fx * 6.28 * xn + ph) * np.cos(fy * 6.28 * yn)
        texture = 0.04 * np.sin(xx * 0.9 + ch) * np.sin(yy * 1.3)
        img[..., ch] = base + shading + texture
    for _ in range(6):  # hard-edged discs and boxes
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.2) * min(h, w)
        colour = rng.uniform(0.05, 0.95, c).astype(np.float32)
        if rng.random() < 0.5:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        else:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < 0.7 * r)
        img[mask] = colour
    return np.clip(img, 0.0, 1.0)


def quantize(img: np.ndarray, dither_levels: float = 0.0, seed: int = 0) -> np.ndarray:
    """8-bit round trip with optional uniform dither of +-dither_levels/255 before rounding."""
    rng = np.random.default_rng(seed)
    noisy = img + rng.uniform(-dither_levels, dither_levels, img.shape).astype(np.float32) / 255.0
    return (np.rint(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def box_blur3(img: np.ndarray) -> np.ndarray:
    """3x3 box blur with edge replication (cheat: a blurred/denoised frame)."""
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    out = sum(p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return out.astype(np.float32)
