"""The calibration protocol against a renderer with known timings (real bpy timings: tests/bench/bench_quote.py)."""

from pathlib import Path

import pytest

from marketplace.jobs import pricing
from marketplace.scenes.calibration import calibration_frame, calibration_measure

REPORT = {
    "frame_start": 1,
    "frame_end": 24,
    "frame_step": 1,
    "samples": 32,
    "seed": 0,
    "use_denoising": False,
    "active_camera": "Camera",
    "effective_width": 320,
    "effective_height": 180,
}


class LinearRenderer:
    """A render takes overhead + pixels x per_pixel (+ setup on the first one, + `slow_by` extra on chosen calls)."""

    def __init__(self, *, overhead: float, per_pixel: float, setup: float, slow_by: dict[int, float] | None = None):
        self.overhead, self.per_pixel, self.setup = overhead, per_pixel, setup
        self.slow_by = slow_by or {}
        self.manifests: list[dict] = []
        self.loaded: tuple | None = None

    def load(self, blend_path: Path, bundle_root: Path) -> dict:
        self.loaded = (blend_path, bundle_root)
        return {}

    def render(self, manifest: dict, out_path: Path) -> dict:
        self.manifests.append(dict(manifest))
        n = len(self.manifests)
        seconds = self.overhead + manifest["resolution_x"] * manifest["resolution_y"] * self.per_pixel
        seconds += (self.setup if n == 1 else 0.0) + self.slow_by.get(n, 0.0)
        return {"total_seconds": seconds}


def measure(renderer, size=(80, 45), min_signal_seconds=0.0, min_signal_fraction=0.0, **report) -> dict:
    """The two-size protocol; these tests keep the first sizes (no minimum signal), growing is tested below."""
    return calibration_measure(
        renderer,
        blend=Path("/b/demo.blend"),
        root=Path("/b"),
        report={**REPORT, **report},
        size=size,
        out_dir=Path("/tmp"),
        min_signal_seconds=min_signal_seconds,
        min_signal_fraction=min_signal_fraction,
    )


def test_two_sizes_recover_the_overhead_and_the_time_per_pixel_sample():
    renderer = LinearRenderer(overhead=0.01, per_pixel=2e-5, setup=0.3)
    cal = measure(renderer)
    assert renderer.loaded == (Path("/b/demo.blend"), Path("/b"))
    assert (cal["width"], cal["height"], cal["samples"], cal["device"]) == (80, 45, 32, "CPU")
    assert cal["small"]["width"] == 40 and cal["small"]["height"] == 22
    assert cal["seconds"] == pytest.approx(0.01 + 3600 * 2e-5, abs=1e-4)
    assert cal["overhead_seconds"] == pytest.approx(0.01, abs=2e-4)
    assert cal["load_seconds"] == pytest.approx(0.3, abs=0.05)  # the first render's set-up (+ the load call)
    # The quote for the full 320x180 frame is then exact: 0.01 + 57 600 x 2e-5 = 1.162 s.
    full = pricing.calibration_from_report({"calibration": cal}).frame_seconds(320 * 180 * 32)
    assert full == pytest.approx(1.162, rel=0.01)


def test_it_renders_the_scene_as_agents_will():
    renderer = LinearRenderer(overhead=0.01, per_pixel=2e-5, setup=0.0)
    measure(renderer, use_denoising=True, samples=64, seed=7)
    assert len(renderer.manifests) == 5  # warm-up, then twice each size
    for manifest in renderer.manifests:
        assert manifest["frame"] == 12 and manifest["samples"] == 64 and manifest["seed"] == 7
        assert manifest["device"] == "CPU" and manifest["use_denoising"] is True
        assert manifest["camera"] == "Camera"


def test_the_fastest_of_the_repeats_counts():
    # Renders 2 (main) and 5 (small) are slowed by something else on the machine.
    renderer = LinearRenderer(overhead=0.01, per_pixel=2e-5, setup=0.0, slow_by={2: 1.0, 5: 1.0})
    cal = measure(renderer)
    assert cal["seconds"] == pytest.approx(0.082, abs=1e-4)
    assert cal["overhead_seconds"] == pytest.approx(0.01, abs=2e-4)


def test_points_that_say_nothing_leave_the_overhead_to_pricing():
    # A scene too small to halve: both sizes are the renderer's minimum.
    cal = measure(LinearRenderer(overhead=0.01, per_pixel=2e-5, setup=0.0), size=(4, 4))
    assert "overhead_seconds" not in cal
    assert pricing.calibration_from_report({"calibration": cal}) is not None


@pytest.mark.parametrize(
    ("start", "end", "step", "frame"), [(1, 24, 1, 12), (1, 1, 1, 1), (10, 20, 4, 14), (0, 100, 7, 49)]
)
def test_it_calibrates_on_a_frame_in_the_middle_of_the_range(start, end, step, frame):
    assert calibration_frame({"frame_start": start, "frame_end": end, "frame_step": step}) == frame


def test_sizes_grow_until_the_difference_is_more_than_noise():
    # 80x45 vs 40x22 differ by 0.054 s; 160x90 vs 80x45 by 0.216 s; 320x180 (the frame) vs 160x90 by 0.864 s.
    renderer = LinearRenderer(overhead=0.01, per_pixel=2e-5, setup=0.3)
    cal = measure(renderer, min_signal_seconds=0.25)
    assert (cal["width"], cal["height"]) == (320, 180) and (cal["small"]["width"], cal["small"]["height"]) == (160, 90)
    assert cal["overhead_seconds"] == pytest.approx(0.01, abs=2e-4)
    assert cal["load_seconds"] == pytest.approx(0.3, abs=0.05)
    assert len(renderer.manifests) == 1 + 3 * 4  # warm-up, then three rounds of two sizes twice


def test_sizes_stop_growing_once_a_render_takes_long_enough():
    renderer = LinearRenderer(overhead=12.0, per_pixel=1e-6, setup=0.0)
    cal = measure(renderer, min_signal_seconds=0.25, min_signal_fraction=0.2)
    assert (cal["width"], cal["height"]) == (80, 45) and len(renderer.manifests) == 5


def test_when_more_pixels_take_no_longer_the_whole_render_is_per_frame_overhead():
    # The small renders were slowed (noise) past the large ones: per-pixel cost is below what can be measured.
    renderer = LinearRenderer(overhead=12.0, per_pixel=1e-7, setup=0.0, slow_by={3: 0.5, 5: 0.5})
    cal = measure(renderer, min_signal_seconds=0.25, min_signal_fraction=0.2)
    assert cal["overhead_seconds"] == cal["seconds"]
    assert pricing.calibration_from_report({"calibration": cal}).seconds_per_unit == 0.0


def test_a_render_mostly_overhead_grows_to_the_frame_where_the_estimate_is_the_render_itself():
    # 4 s of overhead, and a difference between sizes well under a fifth of it: measured at the full 320x180 frame.
    renderer = LinearRenderer(overhead=4.0, per_pixel=1e-5, setup=0.0)
    cal = measure(renderer, min_signal_seconds=0.25, min_signal_fraction=0.2)
    assert (cal["width"], cal["height"]) == (320, 180)
    full = pricing.calibration_from_report({"calibration": cal}).frame_seconds(320 * 180 * 32)
    assert full == pytest.approx(4.0 + 57_600 * 1e-5, rel=0.01)
