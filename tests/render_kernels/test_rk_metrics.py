"""compare(): SSIM against scikit-image, error statistics, regions and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rk_testimages import box_blur3, sk_ssim, structured
from skimage.metrics import peak_signal_noise_ratio

import render_kernels as rk
from render_kernels import numpy_backend


def noisy(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 1).astype(np.float32)


# odd sizes on purpose: bands/tiles of 32 never divide them, 11 is the smallest legal window
@pytest.mark.parametrize("shape", [(11, 11, 3), (37, 53, 3), (64, 97, 1), (120, 77, 4), (33, 200, 2)])
def test_ssim_matches_skimage_on_random_images(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape, dtype=np.float32)
    b = noisy(a, 0.1)
    ours = rk.compare(a, b, backend="numpy").ssim
    assert abs(ours - sk_ssim(a, b)) < 1e-5


@pytest.mark.parametrize(
    "perturb",
    [
        lambda x: noisy(x, 0.01),
        lambda x: noisy(x, 0.05, seed=3),
        box_blur3,
        lambda x: np.roll(x, 1, axis=1),
        lambda x: (x * 0.5).astype(np.float32),
    ],
    ids=["noise1", "noise5", "blur", "shift", "dark"],
)
def test_ssim_matches_skimage_on_structured_images(perturb):
    ref = structured(96, 143, seed=4)
    cand = perturb(ref)
    ours = rk.compare(cand, ref, backend="numpy").ssim
    theirs = sk_ssim(cand, ref)
    assert abs(ours - theirs) < 1e-5
    assert ours < 0.9999  # the perturbation must actually register


def test_ssim_on_region_matches_skimage_on_the_crop():
    ref = structured(120, 160, seed=5)
    cand = noisy(ref, 0.02)
    x, y, w, h = 13, 27, 61, 45
    m = rk.compare(cand, ref, region=(x, y, w, h), backend="numpy")
    crop = (slice(y, y + h), slice(x, x + w))
    assert m.shape == (h, w, 3) and m.pixels == h * w
    assert abs(m.ssim - sk_ssim(cand[crop], ref[crop])) < 1e-5


def test_error_statistics_match_direct_numpy():
    ref = structured(70, 90, seed=6)
    cand = noisy(ref, 0.01, seed=7)
    m = rk.compare(cand, ref, backend="numpy")
    d = np.abs(cand.astype(np.float64) - ref)
    per_pixel = np.abs(cand - ref).max(axis=2)
    assert m.max_abs_error == pytest.approx(d.max(), rel=1e-6)
    assert m.mean_abs_error == pytest.approx(d.mean(), rel=1e-5)
    assert m.over_tol_pixels == int((per_pixel > np.float32(3 / 255)).sum())
    assert m.frac_over_tol == pytest.approx(m.over_tol_pixels / (70 * 90))
    assert m.gross_pixels == int((per_pixel > np.float32(0.1)).sum())
    assert m.psnr == pytest.approx(peak_signal_noise_ratio(ref, cand, data_range=1.0), abs=1e-3)


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    img = structured(40, 50, seed=8)
    m = rk.compare(img, img.copy(), backend="numpy")
    assert math.isinf(m.psnr) and m.psnr > 0
    assert m.ssim == pytest.approx(1.0, abs=1e-9)
    assert m.max_abs_error == 0.0 and m.mean_abs_error == 0.0 and m.frac_over_tol == 0.0
    assert m.to_dict()["psnr"] is None


def test_ssim_on_full_hd_width_strip_matches_skimage():
    # a full-width strip exercises the many-tile path used on real frames (cheap: 24 rows)
    ref = structured(24, 1920, seed=9)
    cand = noisy(ref, 0.02)
    assert abs(numpy_backend.ssim_mean(cand, ref) - sk_ssim(cand, ref)) < 1e-5


def test_region_y_counts_from_the_top():
    ref = structured(60, 80, seed=10)
    cand = ref.copy()
    cand[:20] = 0.0  # only the TOP 20 rows differ
    top = rk.compare(cand, ref, region=(0, 0, 80, 20), backend="numpy")
    bottom = rk.compare(cand, ref, region=(0, 40, 80, 20), backend="numpy")
    assert top.frac_over_tol > 0.5
    assert bottom.max_abs_error == 0.0


def test_crop_sized_candidate_is_compared_with_the_reference_region():
    ref = structured(64, 96, seed=11)
    x, y, w, h = 30, 10, 40, 32
    border_render = ref[y : y + h, x : x + w].copy()
    m = rk.compare(border_render, ref, region=(x, y, w, h), backend="numpy")
    assert m.max_abs_error == 0.0 and m.shape == (h, w, 3)
    wrong = rk.compare(border_render, ref, region=(x + 3, y, w, h), backend="numpy")
    assert wrong.max_abs_error > 0.05


def test_blender_border_conversion_flips_y():
    # a border covering the top-left quarter of a 200x100 frame: Blender y 0.5..1.0 (from bottom)
    assert rk.region_from_blender_border(0.0, 0.5, 0.5, 1.0, 200, 100) == (0, 0, 100, 50)
    assert rk.region_from_blender_border(0.25, 0.0, 0.75, 0.2, 200, 100) == (50, 80, 100, 20)


@pytest.mark.parametrize(
    "cand_shape, ref_shape, region, message",
    [
        ((20, 30, 3), (20, 31, 3), None, "size mismatch"),
        ((20, 30, 3), (20, 30, 4), None, "channel mismatch"),
        ((20, 30, 3), (20, 30, 3), (25, 0, 10, 10), "exceeds"),
        ((12, 12, 3), (40, 40, 3), (0, 0, 13, 12), "size mismatch"),
        ((8, 30, 3), (8, 30, 3), None, "smaller than"),
        ((20, 30, 3), (20, 30, 3), (0, 0, 0, 5), "w, h > 0"),
    ],
)
def test_bad_inputs_raise_value_error(cand_shape, ref_shape, region, message):
    with pytest.raises(ValueError, match=message):
        rk.compare(np.zeros(cand_shape, np.float32), np.zeros(ref_shape, np.float32), region, backend="numpy")


def test_non_finite_input_is_rejected():
    a = np.zeros((16, 16, 3), np.float32)
    b = a.copy()
    b[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rk.compare(a, b, backend="numpy")


def test_integer_arrays_and_paths_are_accepted(tmp_path):
    ref = structured(24, 32, seed=12)
    path = tmp_path / "ref.png"
    rk.save_png(path, ref)
    as_u8 = np.rint(ref * 255).astype(np.uint8)
    m = rk.compare(as_u8, path, backend="numpy")
    assert m.max_abs_error == 0.0
