import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.jobs import conf, pricing
from tests.jobs.conftest import CALIBRATION


def calibration(**fields) -> pricing.Calibration:
    return pricing.calibration_from_report({"calibration": {**CALIBRATION, **fields}})


# Pricing changed on purpose (issue 11): the price is now the frame's calibrated reference compute x the rate per
# reference-hour, no longer pixel-samples x a rate per megasample; the tests below replace the megasample ones.
def test_price_is_the_rate_per_reference_hour_rounded_up_to_a_whole_micro_token():
    assert pricing.price_per_frame(3_600_000, rate=6_000_000, minimum=0) == 6_000_000  # one reference-hour
    assert pricing.price_per_frame(1_000, rate=6_000_000, minimum=0) == 1_667  # one second: 1 666.67 rounds up
    assert pricing.price_per_frame(1, rate=6_000_000, minimum=0) == 2


def test_a_tiny_frame_costs_the_minimum():
    assert pricing.price_per_frame(10, rate=6_000_000, minimum=5_000) == 5_000


def test_the_rate_and_minimum_come_from_settings(settings):
    settings.JOBS_MARKET_RATE_MICRO_PER_REFERENCE_HOUR = 3_600
    settings.JOBS_MIN_PRICE_PER_FRAME = 7
    assert pricing.price_per_frame(10_000) == 10
    assert pricing.price_per_frame(1) == 7


def test_priority_multiplies_the_rate(settings):
    settings.JOBS_PRIORITY_PREMIUM_BPS = 40
    assert pricing.priority_multiplier_bps(0) == 10_000 and pricing.priority_multiplier_bps(100) == 14_000
    base = pricing.price_per_frame(3_600_000, rate=1_000_000, minimum=0)
    assert pricing.price_per_frame(3_600_000, rate=1_000_000, minimum=0, priority=100) == base * 14 // 10
    assert pricing.price_per_frame(3_600_000, rate=1_000_000, minimum=0, priority=25) == 1_100_000


def test_a_calibrated_1080p_frame_is_priced_exactly_with_the_default_rate():
    # 2400 calibration units took 1.7 s after a 0.3 s overhead: a 1080p 16-sample frame is 0.3 + 33 177 600 x
    # 1.7 / 2400 = 23 501.1 s of the calibration machine, which is the reference machine by default.
    quote = pricing.quote_for(frames=1, width=1920, height=1080, samples=16, calibration=calibration(), idle_scores=[])
    assert quote.reference_ms_per_frame == 23_501_100
    assert quote.price_per_frame == 39_168_500  # 23 501.1 s x 6 000 000 / 3600 s
    assert type(quote.price_per_frame) is int and type(quote.total) is int


@given(st.integers(0, 10**12), st.integers(0, 10**9), st.integers(0, 100))
def test_price_is_an_integer_and_never_decreases_with_more_compute_or_priority(ms, extra, priority):
    a, b = pricing.price_per_frame(ms, priority=priority), pricing.price_per_frame(ms + extra, priority=priority)
    c = pricing.price_per_frame(ms + extra, priority=min(priority + 1, 100))
    assert type(a) is int and type(b) is int and type(c) is int
    assert conf.MIN_PRICE_PER_FRAME <= a <= b <= c


@given(st.integers(4, 8192), st.integers(4, 8192), st.integers(1, 4096), st.integers(1, 64))
def test_more_pixels_or_samples_never_cost_less(width, height, samples, more):
    cal = calibration()

    def price(w: int, h: int, s: int) -> int:
        return pricing.price_per_frame(cal.reference_ms(pricing.work_units(width=w, height=h, samples=s)))

    assert price(width, height, samples) <= price(width + more, height, samples)
    assert price(width, height, samples) <= price(width, height, samples + more)


def test_same_pixels_and_samples_but_5x_the_render_time_cost_5x():
    # Two calibrations of the same size: the heavy scene took 5x as long (glass, volumes...). Overhead 0.
    light = calibration(seconds=1.0, overhead_seconds=0.0)
    heavy = calibration(seconds=5.0, overhead_seconds=0.0)
    a = pricing.quote_for(frames=3, width=1920, height=1080, samples=16, calibration=light, idle_scores=[])
    b = pricing.quote_for(frames=3, width=1920, height=1080, samples=16, calibration=heavy, idle_scores=[])
    assert a.work_units_per_frame == b.work_units_per_frame
    assert b.price_per_frame / a.price_per_frame == pytest.approx(5.0, rel=0.2)


def test_the_quote_says_what_compute_it_priced_and_why():
    quote = pricing.quote_for(frames=2, width=100, height=50, samples=64, calibration=calibration(), idle_scores=[])
    assert quote.pricing_basis == "calibrated compute"
    assert quote.reference_seconds_per_frame == pytest.approx(0.3 + 320_000 * 1.7 / 2400, abs=1e-3)
    assert "reference-seconds per frame" in quote.pricing_note and "calibration" in quote.pricing_note
    fallback = pricing.quote_for(frames=2, width=100, height=50, samples=64, calibration=None, idle_scores=[])
    assert fallback.pricing_basis.startswith("pixel-samples")
    assert "no calibration" in fallback.pricing_note
    rush = pricing.quote_for(
        frames=2, width=100, height=50, samples=64, calibration=calibration(), idle_scores=[], priority=50
    )
    assert rush.priority_multiplier_bps == 12_000 and "priority 50" in rush.pricing_note
    assert rush.price_per_frame == pytest.approx(quote.price_per_frame * 1.2, abs=1)


def test_a_faster_calibration_machine_means_more_reference_compute(settings):
    settings.JOBS_REFERENCE_BENCH_SCORE = 1000.0
    slow = calibration(bench_score=1000.0, overhead_seconds=0.0)
    fast = calibration(bench_score=2000.0, overhead_seconds=0.0)
    # The same 2 s measured on a machine twice the reference's speed is 4 s of the reference machine.
    assert fast.reference_ms(2400) == 2 * slow.reference_ms(2400) == 4000


def test_the_budget_is_the_factor_times_the_calibrated_time_on_that_node(settings):
    settings.JOBS_SLOWER_THAN_CALIBRATED_FACTOR = 3.0
    settings.JOBS_SLOWER_THAN_CALIBRATED_MIN_SECONDS = 1.0
    settings.JOBS_REFERENCE_BENCH_SCORE = 1000.0
    quote = pricing.quote_for(
        frames=1, width=20, height=15, samples=8, calibration=calibration(bench_score=1000.0), idle_scores=[]
    ).as_json()
    # 2 s on the reference machine (0.3 overhead + 1.7 per-unit), load 0.5 s once.
    assert pricing.calibrated_budget_seconds(quote, units=2400, bench_score=1000.0) == pytest.approx(3 * 2.0 + 0.5)
    # A node twice as fast does the per-unit part in half the time; the overhead does not shrink.
    assert pricing.calibrated_budget_seconds(quote, units=2400, bench_score=2000.0) == pytest.approx(
        3 * (0.3 + 0.85) + 0.5
    )
    # A quote made before compute pricing has nothing to hold a frame to.
    assert pricing.calibrated_budget_seconds({"price_per_frame": 5}, units=2400, bench_score=1000.0) is None
    settings.JOBS_SLOWER_THAN_CALIBRATED_MIN_SECONDS = 60.0
    assert pricing.calibrated_budget_seconds(quote, units=2400, bench_score=1000.0) == 60.0


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


@pytest.mark.parametrize(
    "broken",
    [
        None,
        {},
        {"seconds": 1},
        {"seconds": 0, "width": 1, "height": 1, "samples": 1},
        {"seconds": "x", "width": 1, "height": 1, "samples": 1},
    ],
)
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
    times = [
        pricing.job_seconds(frames=40, units=2400, calibration=cal, idle_scores=[1000] * n)[0] for n in range(1, 12)
    ]
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
