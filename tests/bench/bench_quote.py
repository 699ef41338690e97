"""Quote fidelity: the quote's estimated render time against the real CPU render time of every frame.

Builds the demo scene at its defaults (320x180, 32 samples, 24 frames), inspects it, calibrates it as the
scenes app's inspection does (`marketplace.scenes.inspection.calibrate`, which runs
`marketplace.jobs.calibration.calibration_measure`), quotes it with `marketplace.jobs.pricing` with no idle
nodes ("one CPU node"), then renders all frames on the CPU in one fresh Renderer (scene loaded once, as an
agent does) and compares.

Run: `python tests/bench/bench_quote.py [--frames N] [--resolution W H] [--samples S] [--out FILE]`. Prints a table
and writes bench/results/quote.json (the defaults are the demo scene's).
Target: the product's estimate within +-15 % of the measured time (exit status 1 when missed).
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
from marketplace.scenes.inspection import calibrate  # noqa: E402
from workers.blend import inspect_scene, make_demo_scene  # noqa: E402
from workers.blend.renderer import Renderer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "quote.json"
TARGET = 0.15


def quote_of(report: dict, calibration: dict, frames: int) -> pricing.Quote:
    return pricing.quote_for(frames=frames, width=report["effective_width"], height=report["effective_height"],
                             samples=report["samples"], idle_scores=[],
                             calibration=pricing.calibration_from_report({"calibration": calibration}))


def render_all(blend: Path, root: Path, report: dict, frames: list[int]) -> tuple[float, list[float]]:
    """Wall seconds from starting Blender to the last frame written, and each frame's render seconds."""
    each = []
    started = time.perf_counter()
    with Renderer(timeout_s=600) as renderer:
        renderer.load(blend, root)
        for number in frames:
            manifest = {"frame": number, "samples": report["samples"], "seed": report.get("seed") or 0,
                        "resolution_x": report["effective_width"], "resolution_y": report["effective_height"],
                        "device": "CPU", "file_format": "PNG", "use_denoising": bool(report.get("use_denoising")),
                        "camera": report.get("active_camera")}
            each.append(renderer.render(manifest, root.parent / "frame.png")["total_seconds"])
        return time.perf_counter() - started, each


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--resolution", type=int, nargs=2, default=(320, 180), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()  # other processes on the machine slow down both calibration and renders
    with tempfile.TemporaryDirectory(prefix="bench-quote-") as tmp:
        work = Path(tmp)
        root = work / "bundle"
        root.mkdir()
        blend = make_demo_scene(root / "demo.blend", frames=args.frames, resolution=tuple(args.resolution),
                                samples=args.samples)
        report = inspect_scene(blend, bundle_root=root)
        frames = list(range(report["frame_start"], report["frame_end"] + 1, report.get("frame_step") or 1))
        calibrations = {}
        t0 = time.perf_counter()
        calibrations["scenes inspection"] = calibrate(blend, root=root, report=report, work=work)
        cost = {"scenes inspection": time.perf_counter() - t0}
        actual_s, each = render_all(blend, root, report, frames)
    load_after = os.getloadavg()

    rows = {}
    for name, calibration in calibrations.items():
        quote = quote_of(report, calibration, len(frames))
        error = quote.estimated_seconds / actual_s - 1.0
        rows[name] = {"calibration": calibration, "calibration_wall_seconds": round(cost[name], 3),
                      "quote": quote.as_json(), "estimated_seconds": quote.estimated_seconds,
                      "error": round(error, 4), "within_target": abs(error) <= TARGET}
    product = rows["scenes inspection"]
    result = {
        "scene": {k: report.get(k) for k in ("frame_start", "frame_end", "effective_width", "effective_height",
                                             "samples", "use_denoising")},
        "actual_seconds": round(actual_s, 3),
        "actual_frame_seconds": {"first": each[0], "min": min(each), "max": max(each),
                                 "mean": round(sum(each) / len(each), 4), "each": each},
        "estimates": rows,
        "error": product["error"],
        "within_target": product["within_target"],
        "target": TARGET,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"demo scene: {len(frames)} frames, {report['effective_width']}x{report['effective_height']} px, "
          f"{report['samples']} samples; actual {actual_s:.2f} s (frames {min(each):.2f}-{max(each):.2f} s, "
          f"first {each[0]:.2f} s)")
    print(f"{'calibration':<20} {'cal. s':>7} {'overhead':>9} {'load':>6} {'s/frame':>8} {'estimate':>9} "
          f"{'error':>7}")
    for name, row in rows.items():
        cal, quote = row["calibration"], row["quote"]
        overhead = cal.get("overhead_seconds")
        print(f"{name:<20} {cal['seconds']:>7.3f} {'-' if overhead is None else f'{overhead:.3f}':>9} "
              f"{cal.get('load_seconds', 0):>6.2f} {quote['seconds_per_frame']:>8.3f} "
              f"{row['estimated_seconds']:>8.2f}s {row['error']:>+7.1%}")
    print(f"quote error (scenes inspection): {product['error']:+.1%} (target +-{TARGET:.0%}) -> "
          f"{'OK' if product['within_target'] else 'MISSED'}; load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"wrote {args.out}")
    return 0 if product["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
