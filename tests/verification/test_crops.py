"""Crop selection and the crop decision, without a database."""

import numpy as np
import pytest

from marketplace.dispatch.manifests import crop_format, crop_manifest
from marketplace.verification import policy
from marketplace.verification.crops import MIN_SIDE, Crop, UnusableReference, crop_judge, crops_choose, noisy_key
from render_kernels._common import SSIM_WIN


def test_the_smallest_crop_is_the_comparison_window():
    assert MIN_SIDE == SSIM_WIN


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (320, 180), (64, 48), (11, 11), (13, 400)])
def test_crops_lie_inside_the_frame_and_are_big_enough(width, height):
    for _ in range(300):
        crops = crops_choose(width=width, height=height)
        assert len(crops) == policy.CROPS_PER_CHECK
        for c in crops:
            assert c.x >= 0 and c.y >= 0 and c.x + c.w <= width and c.y + c.h <= height
            assert c.w >= MIN_SIDE and c.h >= MIN_SIDE


def test_a_crop_has_about_the_policy_share_of_a_large_frame():
    areas = [c.w * c.h / (1920 * 1080) for _ in range(200) for c in crops_choose(width=1920, height=1080)]
    assert max(areas) == pytest.approx(policy.CROP_FRACTION, rel=0.01)
    assert policy.CROP_FRACTION * 0.6 < np.mean(areas) <= policy.CROP_FRACTION  # clipped at the edges


def test_every_pixel_edges_included_is_checked_at_least_as_often_as_uniform_placement():
    width, height, trials = 64, 48, 64000  # per-pixel noise ~2.4 %: the 15 % margin is > 6 sigma
    hits = np.zeros((height, width))
    for _ in range(trials // policy.CROPS_PER_CHECK):
        for c in crops_choose(width=width, height=height):
            hits[c.y : c.y + c.h, c.x : c.x + c.w] += 1
    rate = hits / trials
    w, h = (max(MIN_SIDE, round(size * policy.CROP_FRACTION**0.5)) for size in (width, height))
    floor = (w / (width + w - 1)) * (h / (height + h - 1))
    assert rate.min() > 0.85 * floor  # sampling noise margin
    assert rate[0, 0] > 0.85 * floor and rate[-1, -1] > 0.85 * floor


def test_crops_are_unpredictable():
    draws = {tuple(crops_choose(width=1920, height=1080)) for _ in range(50)}
    assert len(draws) == 50


def test_a_frame_smaller_than_the_window_is_refused():
    with pytest.raises(ValueError, match="smaller than"):
        crops_choose(width=10, height=100)


@pytest.mark.parametrize(
    ("output", "denoise", "expected"),
    [
        ("PNG", False, "PNG"),
        ("OPEN_EXR", False, "OPEN_EXR"),
        ("PNG", True, "OPEN_EXR"),
        ("OPEN_EXR", True, "OPEN_EXR"),
    ],
)
def test_the_crop_is_rendered_in_the_format_of_what_it_is_compared_with(output, denoise, expected):
    assert crop_format(output_format=output, use_denoising=denoise) == expected
    manifest = crop_manifest(
        {"file_format": output, "use_denoising": denoise, "seed": 3, "samples": 16}, Crop(1, 2, 30, 20)
    )
    assert manifest == {
        "file_format": expected,
        "use_denoising": False,
        "seed": 3,
        "samples": 16,
        "border": [1, 2, 30, 20],
    }


def test_the_noisy_pass_lives_next_to_the_frame():
    assert noisy_key("results/job1/frame2/lease3.png") == "results/job1/frame2/lease3.noisy.exr"
    assert noisy_key("results/a.b/lease3") == "results/a.b/lease3.noisy.exr"


def image(seed=0, shape=(48, 64, 4)):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_an_identical_region_passes():
    frame = image()
    crop = Crop(10, 5, 20, 16)
    result = crop_judge(candidate=frame, reference=crop.cut(frame).copy(), crop=crop)
    assert result.passed and result.metrics["max_abs_error"] == 0 and result.summary == "matches"


def test_a_few_wrong_pixels_fail_the_crop():
    frame = image()
    crop = Crop(10, 5, 20, 16)
    reference = crop.cut(frame).copy()
    tampered = frame.copy()
    tampered[8:10, 15:17, :3] += 0.2
    result = crop_judge(candidate=tampered, reference=reference, crop=crop)
    assert not result.passed and "pixels differ" in result.summary


def test_a_candidate_with_nan_or_too_few_channels_fails():
    frame = image()
    crop = Crop(0, 0, 20, 16)
    reference = crop.cut(frame).copy()
    broken = frame.copy()
    broken[3, 3, 0] = np.nan
    assert "NaN" in crop_judge(candidate=broken, reference=reference, crop=crop).summary
    grey = frame[..., :1]
    assert "channels" in crop_judge(candidate=grey, reference=reference, crop=crop).summary


def test_a_candidate_without_alpha_is_compared_on_rgb():
    frame = image()
    crop = Crop(0, 0, 20, 16)
    assert crop_judge(candidate=frame[..., :3], reference=crop.cut(frame).copy(), crop=crop).passed


@pytest.mark.parametrize("reference", [image(shape=(16, 21, 4)), np.full((16, 20, 4), np.nan, np.float32)])
def test_an_unusable_reference_says_nothing_about_the_candidate(reference):
    with pytest.raises(UnusableReference):
        crop_judge(candidate=image(), reference=reference, crop=Crop(0, 0, 20, 16))
