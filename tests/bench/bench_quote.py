"""Quote fidelity: the quote's estimated render time against the real CPU render time of every frame.

Builds the demo scene at its defaults (320x180, 32 samples, 24 frames), inspects it, calibrates it the
way the market does (reduced-size renders of one frame: 25 % size for the time per pixel-sample, 12.5 %
for the per-frame overhead), quotes it with `marketplace.jobs.pricing` with no idle nodes (the "one CPU
node" estimate), then renders all frames on the CPU with one long-lived Renderer and compares.

Run: `python tests/bench/bench_quote.py [--frames N]`. Prints the result and writes bench/results/quote.json.
Target: the estimate within +-15 % of the measured time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from marketplace.jobs import pricing  # noqa: E402
from workers.blend import inspect_scene, make_demo_scene  # noqa: E402
from workers.blend.renderer import Renderer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "quote.json"
TARGET = 0.15
CALIBRATION_SCALES = (0.25, 0.125)  # the larger one is the calibration render; the smaller gives the overhead
REPEATS = 3  # best of: a render can be slowed by anything else on the machine; the fastest is the scene


def manifest(report: dict, *, frame: int, width: int, height: int) -> dict:
    return {"frame": frame, "samples": report["samples"], "seed": 0, "resolution_x": width, "resolution_y": height,
            "device": "CPU", "file_format": "PNG", "use_denoising": bool(report.get("use_denoising")),
            "camera": report.get("active_camera")}


def calibrate(renderer: Renderer, report: dict, out: Path) -> dict:
    """Two reduced-size renders of the middle frame: a straight line through them gives the seconds per
    pixel-sample and the per-frame overhead (the calibration the scenes app stores in report["calibration"])."""
    frame = (report["frame_start"] + report["frame_end"]) // 2
    width, height = report["effective_width"], report["effective_height"]
    renderer.render(manifest(report, frame=frame, width=width // 4, height=height // 4), out / "warm.png")
    points = []
    for scale in CALIBRATION_SCALES:
        w, h = max(4, round(width * scale)), max(4, round(height * scale))
        seconds = min(renderer.render(manifest(report, frame=frame, width=w, height=h), out / "cal.png")
                      ["total_seconds"] for _ in range(REPEATS))
        points.append((w * h * report["samples"], seconds, w, h))
    (u1, t1, w1, h1), (u2, t2, _, _) = points
    per_unit = max(t1 - t2, 0.0) / (u1 - u2)
    overhead = max(t1 - u1 * per_unit, 0.0)
    return {"seconds": t1, "width": w1, "height": h1, "samples": report["samples"], "frame": frame, "device": "CPU",
            "overhead_seconds": round(overhead, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    load_before = os.getloadavg()  # other processes on the machine skew both the calibration and the renders
    with tempfile.TemporaryDirectory(prefix="bench-quote-") as tmp:
        tmp_path = Path(tmp)
        blend = make_demo_scene(tmp_path / "demo.blend", frames=args.frames)
        report = inspect_scene(blend, bundle_root=tmp_path)
        with Renderer(timeout_s=600) as renderer:
            t0 = time.perf_counter()
            renderer.load(blend, tmp_path)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            report["calibration"] = calibrate(renderer, report, tmp_path)
            calibration_s = time.perf_counter() - t0
            cal = pricing.calibration_from_report(report)
            frames = list(range(report["frame_start"], report["frame_end"] + 1, report.get("frame_step", 1)))
            quote = pricing.quote_for(frames=len(frames), width=report["effective_width"],
                                      height=report["effective_height"], samples=report["samples"],
                                      calibration=cal, idle_scores=[])
            # A fresh child, as an agent has when a job's first frame arrives: it pays kernel/BVH set-up once.
            renderer.close()
            renderer.load(blend, tmp_path)
            per_frame = []
            t0 = time.perf_counter()
            for number in frames:
                stats = renderer.render(manifest(report, frame=number, width=report["effective_width"],
                                                 height=report["effective_height"]), tmp_path / "frame.png")
                per_frame.append(stats["total_seconds"])
            actual_s = time.perf_counter() - t0
    error = quote.estimated_seconds / actual_s - 1.0
    load_after = os.getloadavg()
    result = {
        "scene": {k: report.get(k) for k in ("frame_start", "frame_end", "effective_width", "effective_height",
                                             "samples", "use_denoising")},
        "calibration": report["calibration"],
        "seconds_per_megasample": round(cal.seconds_per_unit * 1e6, 4),
        "quote": quote.as_json(),
        "actual_seconds": round(actual_s, 3),
        "actual_frame_seconds": {"first": per_frame[0], "min": min(per_frame), "max": max(per_frame),
                                 "mean": round(sum(per_frame) / len(per_frame), 4), "each": per_frame},
        "estimated_seconds": quote.estimated_seconds,
        "error": round(error, 4),
        "within_target": abs(error) <= TARGET,
        "target": TARGET,
        "load_seconds": round(load_s, 3),
        "calibration_seconds": round(calibration_s, 3),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after]},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"calibration: {report['calibration']}  ({calibration_s:.1f} s)")
    print(f"quote: {len(frames)} frames, {quote.price_per_frame} micro-tokens/frame, estimated "
          f"{quote.estimated_seconds:.1f} s ({quote.seconds_per_frame:.2f} s/frame)")
    print(f"actual: {actual_s:.1f} s (frame mean {result['actual_frame_seconds']['mean']:.2f} s, first "
          f"{per_frame[0]:.2f} s)")
    print(f"quote error: {error:+.1%} (target +-{TARGET:.0%}) -> {'OK' if result['within_target'] else 'MISSED'}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
