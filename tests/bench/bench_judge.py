"""What judging a check's crops costs the platform's worker: the candidate frame read, checked and decoded once
per crop (each crop's task on its own) against once per check (`verification.services._candidate_image`).

A 1920x1080 render-like PNG (gradients and Cycles-like noise, ~4 MB, as bench_agent_api's) is frozen in local
storage with CROPS_PER_CHECK reference crops of it, and `services._judge` judges every crop, as the platform's
`platform_crop` tasks do: BENCH_CHECKS checks (default 20) with the decoded candidate dropped before each crop
("per crop", the code before it was kept) and before each check only ("per check"). CPU is this process's
(time.process_time), per check: median and spread. No database: the check and its lease are unsaved rows.
Run: `python tests/bench/bench_judge.py`; writes bench/results/judge.json.
"""

import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("STORAGE_URL", f"file://{tempfile.mkdtemp(prefix='bench-judge-')}")
CHECKS = int(os.environ.get("BENCH_CHECKS", "20"))
WIDTH, HEIGHT = 1920, 1080


def main() -> None:
    django.setup()
    from PIL import Image

    from marketplace import blobs
    from marketplace.dispatch.models import FrameLease
    from marketplace.verification import policy, services
    from marketplace.verification.crops import crops_choose
    from marketplace.verification.models import FrameCheck
    from render_kernels import image_from_bytes
    from tests.bench.bench_agent_api import render_like_png

    data = render_like_png(WIDTH, HEIGHT)
    key, _ = blobs.blob_freeze(data=data, ext="png")
    pixels = image_from_bytes(data, size=(WIDTH, HEIGHT))
    crops = crops_choose(width=WIDTH, height=HEIGHT)
    references = {}
    for crop in crops:
        region = (pixels[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w] * 255).round().astype("uint8")
        buf = io.BytesIO()
        Image.fromarray(region).save(buf, format="PNG")
        references[crop], _ = blobs.blob_freeze(data=buf.getvalue(), ext="png")
    manifest = {"resolution_x": WIDTH, "resolution_y": HEIGHT, "file_format": "PNG", "device": "CPU"}
    check = FrameCheck(render_lease=FrameLease(manifest=manifest, result_key=key))

    def judge_check(drop_each_crop: bool) -> float:
        services._candidates.clear()
        start = time.process_time()
        for crop in crops:
            if drop_each_crop:
                services._candidates.clear()
            assert services._judge(check, crop, references[crop], verifier_device="CPU").passed
        return time.process_time() - start

    judge_check(False)  # warm-up: imports, first allocations
    times: dict[str, list[float]] = {"per crop": [], "per check": []}
    for _ in range(CHECKS):  # in turn, so that the machine's drift biases neither
        times["per crop"].append(judge_check(True))
        times["per check"].append(judge_check(False))
    row = {
        name: {
            "median_ms": round(statistics.median(t) * 1000, 1),
            "min_ms": round(min(t) * 1000, 1),
            "max_ms": round(max(t) * 1000, 1),
        }
        for name, t in times.items()
    }
    ratio = row["per crop"]["median_ms"] / row["per check"]["median_ms"]
    print(f"{CHECKS} checks of {policy.CROPS_PER_CHECK} crops of a {WIDTH}x{HEIGHT} PNG ({len(data) / 1e6:.1f} MB)")
    print(f"{'candidate decoded':<18} {'median ms':>10} {'min':>8} {'max':>8}   (CPU per check)")
    for name, figures in row.items():
        print(f"{name:<18} {figures['median_ms']:>10} {figures['min_ms']:>8} {figures['max_ms']:>8}")
    print(f"per crop / per check: {ratio:.2f}")
    path = ROOT / "bench" / "results" / "judge.json"
    path.write_text(
        json.dumps(
            {
                "bench": "judge",
                "machine": f"{platform.machine()} cores={os.cpu_count()}",
                "checks": CHECKS,
                "crops_per_check": policy.CROPS_PER_CHECK,
                "frame": f"{WIDTH}x{HEIGHT} PNG",
                "frame_bytes": len(data),
                "cpu_ms_per_check": row,
                "ratio": round(ratio, 2),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
