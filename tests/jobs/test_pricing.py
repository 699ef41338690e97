import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.jobs import conf, pricing
from tests.jobs.conftest import CALIBRATION


def test_price_is_the_rate_per_megasample_rounded_up_to_a_whole_micro_token():
    assert pricing.price_per_frame(1_000_000, rate=10_000, minimum=0) == 10_000
    assert pricing.price_per_frame(1_000_001, rate=10_000, minimum=0) == 10_001  # 10 000.01 rounds up
    assert pricing.price_per_frame(1, rate=10_000, minimum=0) == 1


def test_a_tiny_frame_costs_the_minimum():
    assert pricing.price_per_frame(10, rate=10_000, minimum=5_000) == 5_000


def test_a_1080p_128_sample_frame_is_priced_exactly_with_the_default_rate():
    units = pricing.work_units(width=1920, height=1080, samples=128)
    assert units == 265_420_800
    assert pricing.price_per_frame(units) == -(-units * conf.MARKET_RATE_MICRO_PER_MEGASAMPLE // 1_000_000)


@given(st.integers(0, 8192 * 8192 * 4096), st.integers(0, 10**9))
def test_price_is_an_integer_and_never_decreases_with_more_work(units, extra):
    a, b = pricing.price_per_frame(units), pricing.price_per_frame(units + extra)
    assert type(a) is int and type(b) is int
    assert conf.MIN_PRICE_PER_FRAME <= a <= b


def test_the_calibration_gives_seconds_per_unit_after_the_overhead():
    cal = pricing.calibration_from_report({"calibration": CALIBRATION})
    assert cal.units == 20 * 15 * 8
    assert cal.seconds_per_unit == pytest.approx(1.7 / 2400)
    assert pricing.frame_seconds(4800, cal) == pytest.approx(0.3 + 3.4)


@pytest.mark.parametrize("calibration", [None, {}, {"seconds": 1}, {"seconds": 0, "width": 1, "height": 1,
                                                                      "samples": 1}, {"seconds": "x"}])
def test_a_missing_or_broken_calibration_is_ignored(calibration):
    assert pricing.calibration_from_report({"calibration": calibration}) is None


def test_without_idle_nodes_the_estimate_is_one_cpu_node_frame_after_frame():
    cal = pricing.calibration_from_report({"calibration": CALIBRATION})
    seconds, idle, note = pricing.job_seconds(frames=10, units=2400, calibration=cal, idle_scores=[])
    assert seconds == pytest.approx(20.0) and idle == 0
    assert "no idle capacity right now" in note


def test_idle_nodes_share_the_frames_by_their_benchmark_speed():
    cal = pricing.calibration_from_report({"calibration": {**CALIBRATION, "overhead_seconds": 0}})
    # Two nodes at 1000 units/s: each frame of 2000 units takes 2 s, two at a time.
    seconds, idle, note = pricing.job_seconds(frames=10, units=2000, calibration=cal, idle_scores=[1000, 1000, 0])
    assert seconds == pytest.approx(10.0) and idle == 2
    assert "2 nodes idle" in note
    one, _, _ = pricing.job_seconds(frames=1, units=2000, calibration=cal, idle_scores=[1000] * 50)
    assert one == pytest.approx(2.0)  # a frame is not split across nodes


def test_a_scene_heavier_than_the_benchmark_takes_longer_on_the_same_nodes():
    light = pricing.calibration_from_report({"calibration": {**CALIBRATION, "bench_score": 1000}})
    heavy = pricing.calibration_from_report({"calibration": {**CALIBRATION, "seconds": 3.7, "bench_score": 1000}})
    t_light, _, _ = pricing.job_seconds(frames=4, units=2400, calibration=light, idle_scores=[5000])
    t_heavy, _, _ = pricing.job_seconds(frames=4, units=2400, calibration=heavy, idle_scores=[5000])
    assert t_heavy > t_light


def test_a_quote_totals_the_frames():
    quote = pricing.quote_for(frames=7, width=100, height=50, samples=64, calibration=None, idle_scores=[])
    assert quote.work_units_per_frame == 320_000
    assert quote.total == 7 * quote.price_per_frame
    assert quote.calibrated is False and quote.as_json()["frames"] == 7
