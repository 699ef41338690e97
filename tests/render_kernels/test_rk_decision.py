"""verdict(): honest differences pass, every cheat fails."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rk_testimages import box_blur3, quantize, structured

import render_kernels as rk
from render_kernels.decision import DEFAULT, Tolerances


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return structured(180, 240, seed=21)


def check(cand: np.ndarray, ref: np.ndarray) -> tuple[rk.Metrics, rk.Verdict]:
    m = rk.compare(cand, ref, backend="numpy")
    return m, rk.verdict(m)


def test_bit_identical_render_passes(reference):
    m, v = check(reference.copy(), reference)
    assert v.passed and v.reasons == []
    assert m.max_abs_error == 0.0 and m.ssim == 1.0


def test_honest_8bit_dither_of_two_levels_passes(reference):
    # two renders quantised to 8 bit with independent dither patterns (crop vs full frame)
    ref8 = quantize(reference, dither_levels=1.0, seed=1)
    cand8 = quantize(reference, dither_levels=1.0, seed=2)
    m, v = check(cand8, ref8)
    assert 1.5 / 255 < m.max_abs_error <= 2 / 255 + 1e-6  # really a +-2-level difference
    assert v.passed, v.reasons
    assert m.ssim < 0.995  # why min_ssim is not 0.995: dither alone gets below it


def test_a_handful_of_firefly_pixels_passes_but_many_fail(reference):
    rng = np.random.default_rng(5)
    ys, xs = rng.integers(0, 180, 60), rng.integers(0, 240, 60)
    few = reference.copy()
    few[ys[:5], xs[:5]] = 1.0
    assert check(few, reference)[1].passed
    many = reference.copy()
    many[ys, xs] = 1.0
    m, v = check(many, reference)
    assert not v.passed
    assert any("0.100" in r for r in v.reasons)  # the gross-pixel rule, not the fraction rule
    assert m.frac_over_tol < DEFAULT.max_frac_over_tol


def tampered_patch(ref: np.ndarray, delta: float) -> np.ndarray:
    out = ref.copy()
    out[60:96, 90:126] = np.clip(out[60:96, 90:126] + delta, 0, 1)  # 36x36 = 3.0 % of 180x240
    return out


CHEATS = {
    "patch_3pct_pasted": lambda r: tampered_patch(r, 0.4),
    "patch_3pct_subtle": lambda r: tampered_patch(r, 6 / 255),  # under gross_tol: fraction rule
    "noise_38db": lambda r: np.clip(r + np.random.default_rng(3).normal(0, 0.0126, r.shape), 0, 1),
    "blur": box_blur3,
    "half_brightness": lambda r: r * 0.5,
    "blank": np.zeros_like,
    "shifted_1px": lambda r: np.roll(r, 1, axis=1),
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheats_fail(reference, name):
    cand = CHEATS[name](reference).astype(np.float32)
    m, v = check(cand, reference)
    assert not v.passed, (name, m)
    assert v.reasons
    if name == "noise_38db":
        assert 37.0 < m.psnr < 39.0


def test_low_ssim_alone_fails():
    m = rk.Metrics(0.01, 0.001, 0.0, 45.0, 0.97, 100, (10, 10, 3), 3 / 255, 0.1, 0, 0, "numpy")
    v = rk.verdict(m)
    assert not v.passed and v.reasons == ["SSIM 0.9700 below 0.98"]


def test_nan_metrics_fail():
    m = rk.Metrics(float("nan"), 0.0, float("nan"), 45.0, float("nan"), 100, (10, 10, 3), 3 / 255, 0.1, 0, 0, "x")
    assert not rk.verdict(m).passed


def test_tolerances_are_frozen_and_tunable(reference):
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.min_ssim = 0.5  # type: ignore[misc]
    strict = dataclasses.replace(DEFAULT, pixel_tol=1 / 255)
    cand = quantize(reference, 1.0, seed=2)
    ref = quantize(reference, 1.0, seed=1)
    m = rk.compare(cand, ref, backend="numpy", tolerances=strict)
    assert m.pixel_tol == pytest.approx(1 / 255)
    assert not rk.verdict(m, tolerances=strict).passed  # +-2 levels now counts as different
    with pytest.raises(ValueError, match="pixel_tol"):
        rk.verdict(m)  # counts were taken at 1/255, DEFAULT expects 3/255


def test_default_is_a_tolerances_instance():
    assert isinstance(DEFAULT, Tolerances)
    assert DEFAULT.pixel_tol == pytest.approx(3 / 255) and DEFAULT.max_frac_over_tol == 0.002
