import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.jobs import conf, pricing
from tests.jobs.conftest import CALIBRATION


def calibration(**fields) -> pricing.Calibration:
    return pricing.calibration_from_report({"calibration": {**CALIBRATION, **fields}})


def test_price_is_the_rate_per_megasample_rounded_up_to_a_whole_micro_token():
    assert pricing.price_per_frame(1_000_000, rate=10_000, minimum=0) == 10_000
    assert pricing.price_per_frame(1_000_001, rate=10_000, minimum=0) == 10_001  # 10 000.01 rounds up
    assert pricing.price_per_frame(1, rate=10_000, minimum=0) == 1


def test_a_tiny_frame_costs_the_minimum():
    assert pricing.price_per_frame(10, rate=10_000, minimum=5_000) == 5_000


def test_the_rate_and_minimum_come_from_settings(settings):
    settings.JOBS_MARKET_RATE_MICRO_PER_MEGASAMPLE = 3
    settings.JOBS_MIN_PRICE_PER_FRAME = 7
    assert pricing.price_per_frame(10_000_000) == 30
    assert pricing.price_per_frame(1) == 7


def test_a_1080p_128_sample_frame_is_priced_exactly_with_the_default_rate():
    units = pricing.work_units(width=1920, height=1080, samples=128)
    assert units == 265_420_800
    assert pricing.price_per_frame(units) == 2_654_208  # 265.4208 megasamples x 10 000 micro-tokens


@given(st.integers(0, 8192 * 8192 * 4096), st.integers(0, 10**9))
def test_price_is_an_integer_and_never_decreases_with_more_work(units, extra):
    a, b = pricing.price_per_frame(units), pricing.price_per_frame(units + extra)
    assert type(a) is int and type(b) is int
    assert conf.MIN_PRICE_PER_FRAME <= a <= b


@given(st.integers(4, 8192), st.integers(4, 8192), st.integers(1, 4096), st.integers(1, 64))
def test_more_pixels_or_samples_never_cost_less(width, height, samples, more):
    price = pricing.price_per_frame(pricing.work_units(width=width, height=height, samples=samples))
    assert price <= pricing.price_per_frame(pricing.work_units(width=width + more, height=height, samples=samples))
    assert price <= pricing.price_per_frame(pricing.work_units(width=width, height=height, samples=samples + more))


def test_the_calibration_gives_seconds_per_unit_after_the_overhead():
    cal = calibration()
    assert cal.units == 20 * 15 * 8
    assert cal.seconds_per_unit == pytest.approx(1.7 / 2400)
    assert cal.frame_seconds(4800) == pytest.approx(0.3 + 3.4)
    assert cal.load_seconds == 0.5


def test_without_a_measured_overhead_it_assumes_the_setting_but_at_most_half_the_render():
    slow = calibration(overhead_seconds=None, seconds=2.0)
    assert slow.overhead_seconds == pytest.approx(conf.FRAME_OVERHEAD_SECONDS)
    quick = calibration(overhead_seconds=None, seconds=0.2)
    assert quick.overhead_seconds == pytest.approx(0.1)
    assert quick.seconds_per_unit == pytest.approx(0.1 / 2400)


def test_an_overhead_longer_than_the_render_is_clamped():
    assert calibration(overhead_seconds=5.0).seconds_per_unit == 0.0


@pytest.mark.parametrize("broken", [None, {}, {"seconds": 1}, {"seconds": 0, "width": 1, "height": 1, "samples": 1},
                                    {"seconds": "x", "width": 1, "height": 1, "samples": 1}])
def test_a_missing_or_broken_calibration_is_ignored(broken):
    assert pricing.calibration_from_report({"calibration": broken}) is None


def test_without_idle_nodes_the_estimate_is_one_cpu_node_frame_after_frame():
    seconds, idle, note = pricing.job_seconds(frames=10, units=2400, calibration=calibration(), idle_scores=[])
    assert seconds == pytest.approx(0.5 + 10 * 2.0) and idle == 0  # the scene loads once, then 10 frames of 2 s
    assert "no idle capacity right now" in note


def test_a_node_as_fast_as_the_calibration_machine_takes_as_long():
    cal = calibration(bench_score=1000)
    alone, _, _ = pricing.job_seconds(frames=6, units=2400, calibration=cal, idle_scores=[])
    helped, idle, _ = pricing.job_seconds(frames=6, units=2400, calibration=cal, idle_scores=[1000])
    assert helped == pytest.approx(alone) and idle == 1


def test_node_speed_is_relative_to_the_calibration_machine_and_overhead_does_not_scale():
    cal = calibration(bench_score=1000)
    # Four times the calibration machine's score: the 1.7 s of per-unit work takes 0.425 s, the 0.3 s does not shrink.
    seconds, _, _ = pricing.job_seconds(frames=1, units=2400, calibration=cal, idle_scores=[4000])
    assert seconds == pytest.approx(0.5 + 0.3 + 1.7 / 4)


def test_without_its_own_score_the_calibration_machine_is_the_reference_cpu(settings):
    settings.JOBS_CALIBRATION_BENCH_SCORE = 2000.0
    seconds, _, _ = pricing.job_seconds(frames=1, units=2400, calibration=calibration(), idle_scores=[4000])
    assert seconds == pytest.approx(0.5 + 0.3 + 1.7 / 2)


def test_frames_go_to_whichever_node_is_free_first():
    cal = calibration(bench_score=1000, overhead_seconds=0.0, load_seconds=0.0, seconds=2.0)
    # 2400 units: 2 s on the 1000 node, 1 s on the 2000 node. Greedy: the fast node renders 2 of 3 frames.
    seconds, idle, note = pricing.job_seconds(frames=3, units=2400, calibration=cal, idle_scores=[1000, 2000, 0])
    assert seconds == pytest.approx(2.0) and idle == 2
    assert "2 nodes idle" in note
    one, _, _ = pricing.job_seconds(frames=1, units=2400, calibration=cal, idle_scores=[1000] * 50)
    assert one == pytest.approx(2.0)  # a frame is not split across nodes


def test_more_idle_nodes_never_make_the_estimate_longer():
    cal = calibration(bench_score=1000)
    times = [pricing.job_seconds(frames=40, units=2400, calibration=cal, idle_scores=[1000] * n)[0]
             for n in range(1, 12)]
    assert times == sorted(times, reverse=True) and times[-1] < times[0]


def test_an_uncalibrated_scene_is_timed_like_the_benchmark_scene(settings):
    settings.JOBS_CALIBRATION_BENCH_SCORE = 1_000_000.0
    settings.JOBS_FRAME_OVERHEAD_SECONDS = 0.25
    quote = pricing.quote_for(frames=2, width=100, height=100, samples=100, calibration=None, idle_scores=[])
    assert quote.calibrated is False
    assert quote.seconds_per_frame == pytest.approx(1.25) and quote.estimated_seconds == pytest.approx(2.5)


def test_a_quote_totals_the_frames():
    quote = pricing.quote_for(frames=7, width=100, height=50, samples=64, calibration=calibration(), idle_scores=[])
    assert quote.work_units_per_frame == 320_000
    assert quote.total == 7 * quote.price_per_frame and type(quote.total) is int
    assert quote.load_seconds == 0.5 and quote.calibrated is True
    assert quote.as_json()["frames"] == 7
