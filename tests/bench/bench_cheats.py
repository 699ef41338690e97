"""Detection and false-rejection rates of the crop checks against honest and dishonest render agents.

Every agent of tests/verification/cheats.py renders the demo scene (128x96 by default, 16 samples, a
second camera for the camera cheat) with real bpy; each trial draws fresh random crops and runs the marketplace's
decision path (crops_choose -> verifier border render -> crop_judge). Prints a markdown table (pasted into
docs/verification.md) and writes bench/results/cheats.json.

Run: `python tests/bench/bench_cheats.py [--trials N]`.
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

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()  # policy reads the check rates from settings and imports dispatch's models

from marketplace.verification import policy  # noqa: E402
from tests.verification.cheats import AGENTS, JOB, Lab, make_scene  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "cheats.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="trials (fresh random crops) per agent")
    # Big enough that crops have their policy size (at 64x48 the 11x11 minimum makes them larger).
    parser.add_argument("--size", default="128x96", help="frame WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    t0 = time.perf_counter()
    lab = Lab(make_scene(Path(tempfile.mkdtemp(prefix="bench-cheats-"))), width=width, height=height)
    rows = []
    try:
        for agent in AGENTS:
            trials = [lab.trial(agent, i) for i in range(args.trials)]
            crops = [r for t in trials for _, r in t.crops]
            detected = sum(t.detected for t in trials)
            rows.append(
                {
                    "agent": agent.name,
                    "honest": agent.honest,
                    "trials": args.trials,
                    "detected": 0 if agent.honest else detected,
                    "false_rejections": detected if agent.honest else 0,
                    "crops": len(crops),
                    "crops_failed": sum(not r.passed for r in crops),
                    "worst_ssim": min(r.metrics["ssim"] for r in crops),
                    "max_abs_error": max(r.metrics["max_abs_error"] for r in crops),
                }
            )
    finally:
        lab.close()
    seconds = time.perf_counter() - t0
    print(
        f"\nCrop checks: {policy.CROPS_PER_CHECK} crops of {policy.CROP_FRACTION:.0%} per check, "
        f"{width}x{height}, {JOB['samples']} samples, {args.trials} trials per agent\n"
    )
    print("| agent | trials | detected | false rejections | crops failing (of all drawn) | worst crop SSIM |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['agent']} | {r['trials']} | {'—' if r['honest'] else r['detected']} | "
            f"{r['false_rejections'] if r['honest'] else '—'} | {r['crops_failed']}/{r['crops']} "
            f"({r['crops_failed'] / r['crops']:.0%}) | {r['worst_ssim']:.4f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(seconds, 1),
                "policy": {"crops_per_check": policy.CROPS_PER_CHECK, "crop_fraction": policy.CROP_FRACTION},
                "job": lab.job,
                "renders": lab.renders,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\n{lab.renders['verifier']} crop renders, {seconds:.0f} s; wrote {RESULTS.relative_to(ROOT)}")
    missed = [r["agent"] for r in rows if not r["honest"] and r["detected"] < r["trials"]]
    rejected = [r["agent"] for r in rows if r["honest"] and r["false_rejections"]]
    return 1 if missed or rejected else 0


if __name__ == "__main__":
    sys.exit(main())
