"""The timed renders behind a quote's time estimate (`pricing` reads them back from report["calibration"]).

The scenes app's inspection runs `calibration_measure` on a fresh, sandboxed Renderer; `tests/bench/bench_quote.py`
runs the same function, so the figure it reports is the product's. Protocol, all on CPU at the middle frame with
the scene's samples, denoising and camera:

1. load the scene (timed) and render a warm-up at the small size: an agent pays both once per job (its first
   render also builds the kernels and the BVH), so their sum minus a warm small render is `load_seconds`;
2. render the main size (`size`, about a quarter of each side) and the small size (half of that each side),
   `repeats` times each, alternating, and keep the fastest of each: the machine is shared, and other work
   only ever slows a render down;
3. the straight line through the two points: its intercept is the per-frame `overhead_seconds`, and
   (seconds - overhead) / pixel-samples is the time per unit;
4. when the two sizes differ by less than `min_signal_seconds` or a fifth of the small render (a tiny render on a
   busy machine, or one mostly per-frame overhead: the difference is mostly noise, and the quote multiplies it by
   the full frame's pixels), double both sizes, up to the frame's own size (where the estimate is the measured
   render itself, whatever the split), and measure again, unless a render already takes `max_grow_seconds`;
5. when even then the larger size is not the slower one, the pixels' cost is below the noise: the whole render
   time is per-frame overhead (`overhead_seconds` = the main render's seconds, no time per unit).

Measured on the demo scene (320x180, 32 samples, 2-core CPU): a single cold render at 25 % size predicted the
full frames 80 % too slow (its time is mostly first-render set-up); this protocol predicts them within a few %.
Steps 4 and 5 came with pricing by compute (bench_quote's scene variants at 160x90): 40x32 renders of 0.1-0.2 s
on a loaded machine put estimates off by -48 % (64 lights) to +965 % (subdivision, where the small render came
out slower than the large one and the whole render was priced as per-pixel work).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from marketplace.scenes.conf import MIN_SIDE


class TimedRenderer(Protocol):
    """What this needs of `workers.blend.renderer.Renderer`."""

    def load(self, blend_path: Path, bundle_root: Path) -> dict[str, Any]: ...

    def render(self, manifest: Mapping[str, Any], out_path: Path) -> dict[str, Any]: ...


def calibration_frame(report: Mapping[str, Any]) -> int:
    """The frame in the middle of the scene's range (on its step): the most typical one."""
    start, end, step = report["frame_start"], report["frame_end"], max(int(report.get("frame_step") or 1), 1)
    return start + (end - start) // 2 // step * step


def calibration_measure(
    renderer: TimedRenderer,
    *,
    blend: Path,
    root: Path,
    report: Mapping[str, Any],
    size: tuple[int, int],
    out_dir: Path,
    repeats: int = 2,
    min_signal_seconds: float = 0.25,
    min_signal_fraction: float = 0.2,
    max_grow_seconds: float = 10.0,
) -> dict[str, Any]:
    """Load `blend` into `renderer` and time it as described above; returns report["calibration"]."""
    frame = calibration_frame(report)
    width, height = (max(MIN_SIDE, side) for side in size)
    small_w, small_h = max(MIN_SIDE, width // 2), max(MIN_SIDE, height // 2)

    def render(w: int, h: int) -> float:
        manifest = {
            "frame": frame,
            "samples": report["samples"],
            "seed": report.get("seed") or 0,
            "resolution_x": w,
            "resolution_y": h,
            "device": "CPU",
            "file_format": "PNG",
            "use_denoising": bool(report.get("use_denoising")),
            "camera": report.get("active_camera"),
        }
        return renderer.render(manifest, out_dir / "calibration.png")["total_seconds"]

    started = time.perf_counter()
    renderer.load(blend, root)
    first = time.perf_counter() - started + render(small_w, small_h)
    full_w, full_h = (max(MIN_SIDE, int(report.get(k) or 0)) for k in ("effective_width", "effective_height"))
    full_w, full_h = max(full_w, width), max(full_h, height)
    warm_small = None  # the first round's small render, warm: the warm-up's same render less this is the load
    while True:
        main, small = [], []
        for _ in range(repeats):
            main.append(render(width, height))
            small.append(render(small_w, small_h))
        seconds, small_seconds = min(main), min(small)
        warm_small = small_seconds if warm_small is None else warm_small
        at_full = width >= full_w and height >= full_h
        # Enough signal: the sizes differ by more than min_signal_seconds and by a fifth of the small render (a
        # render mostly overhead varies by more than a few tenths of a second on a shared machine).
        signal = seconds - small_seconds >= max(min_signal_seconds, min_signal_fraction * small_seconds)
        if signal or at_full or seconds >= max_grow_seconds:
            break
        small_w, small_h = width, height
        width, height = min(full_w, width * 2), min(full_h, height * 2)
    calibration = {
        "seconds": round(seconds, 4),
        "width": width,
        "height": height,
        "samples": report["samples"],
        "frame": frame,
        "device": "CPU",
        "load_seconds": round(max(first - warm_small, 0.0), 4),
        "small": {"width": small_w, "height": small_h, "seconds": round(small_seconds, 4)},
    }
    units, small_units = width * height, small_w * small_h
    if units > small_units and seconds > small_seconds:
        per_pixel = (seconds - small_seconds) / (units - small_units)
        calibration["overhead_seconds"] = round(min(max(seconds - units * per_pixel, 0.0), seconds), 4)
    elif units > small_units:  # more pixels took no longer: all of it is per-frame work
        calibration["overhead_seconds"] = round(seconds, 4)
    # Otherwise (a scene too small to halve) the two points say nothing: pricing falls back.
    return calibration
