"""Verification cost: how fast render_kernels compares a 1080p candidate with its reference.

Section "ssim_throughput": SSIM / full compare() throughput of the numpy backend against
scikit-image's structural_similarity on the same 1920x1080 RGB float32 pair (best of N runs, MP/s
and ratio), plus cuda/compare.cu compiled for the CPU through host_shim.h when g++ exists (that row
checks the kernel maths at full size; it is not a GPU number).

Run: `python tests/bench/bench_verify.py [--runs N]`. Prints a table and writes
bench/results/verify.json. Further sections are added by appending to SECTIONS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "render_kernels"))

from rk_testimages import sk_ssim, structured  # noqa: E402

import render_kernels as rk  # noqa: E402
from render_kernels import numpy_backend  # noqa: E402
from render_kernels.host_kernels import HostKernels, build_host_library, find_compiler  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "verify.json"
C = 3


def best_of(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def make_pair(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ref = structured(height, width, C, seed=1)
    rng = np.random.default_rng(2)
    cand = np.clip(ref + rng.normal(0, 0.01, ref.shape), 0, 1).astype(np.float32)
    return cand, ref


def ssim_throughput(args: argparse.Namespace) -> dict[str, Any]:
    width, height = args.size
    cand, ref = make_pair(height, width)
    megapixels = height * width / 1e6
    rows: dict[str, dict[str, Any]] = {}

    def sk() -> float:
        return sk_ssim(cand, ref)

    t_sk, ssim_sk = best_of(sk, args.runs)
    rows["skimage structural_similarity"] = {"seconds": t_sk, "ssim": ssim_sk}
    t, v = best_of(lambda: numpy_backend.ssim_mean(cand, ref), args.runs)
    rows["numpy ssim_mean"] = {"seconds": t, "ssim": v}
    t, m = best_of(lambda: rk.compare(cand, ref, backend="numpy"), args.runs)
    rows["numpy compare() (all metrics)"] = {"seconds": t, "ssim": m.ssim}

    if find_compiler() is not None and not args.no_host:
        with tempfile.TemporaryDirectory() as tmp:
            for openmp in (False, True):
                try:
                    host = HostKernels(build_host_library(tmp, openmp=openmp))
                except RuntimeError as exc:
                    print(f"host build (openmp={openmp}) failed: {exc}", file=sys.stderr)
                    continue
                t, (stats, _) = best_of(lambda host=host: host.compute(cand, ref, 3 / 255, 0.1), max(1, args.runs // 2))
                label = "compare.cu on CPU (host_shim" + (", OpenMP)" if openmp else ", serial)")
                rows[label] = {"seconds": t, "ssim": stats.ssim}

    try:  # only on a machine with pycuda and a GPU
        from render_kernels.cuda_backend import CudaBackend

        gpu = CudaBackend()
    except Exception as exc:  # ImportError or driver error: no GPU row
        print(f"(no CUDA row: {type(exc).__name__}: {exc})")
    else:
        gpu.compute(cand, ref, 3 / 255, 0.1)  # warm-up: first launch pays for module load
        t, stats = best_of(lambda: gpu.compute(cand, ref, 3 / 255, 0.1), args.runs)
        rows["CUDA backend (pycuda, incl. transfers)"] = {"seconds": t, "ssim": stats.ssim, "device": gpu.device_name}
        # The pair's copy to the GPU alone: how much of the row above is the PCIe transfer, not the kernels.
        t, _ = best_of(lambda: gpu.upload(cand, ref), args.runs)
        rows["CUDA host-to-device copy of the pair"] = {"seconds": t, "ssim": stats.ssim}
        gpu.close()

    for row in rows.values():
        row["megapixels_per_s"] = megapixels / row["seconds"]
        row["speedup_vs_skimage"] = t_sk / row["seconds"]
        row["abs_delta_ssim_vs_skimage"] = abs(row["ssim"] - ssim_sk)

    print(f"\nSSIM / compare throughput, {width}x{height}x{C} float32, best of {args.runs}")
    print(f"{'implementation':42s} {'seconds':>9s} {'MP/s':>8s} {'x skimage':>10s} {'|dSSIM|':>10s}")
    for name, row in rows.items():
        print(
            f"{name:42s} {row['seconds']:9.4f} {row['megapixels_per_s']:8.1f} "
            f"{row['speedup_vs_skimage']:10.2f} {row['abs_delta_ssim_vs_skimage']:10.2e}"
        )
    return {"image": [height, width, C], "runs": args.runs, "rows": rows}


# --- verification overhead (verification app) ----------------------------------------------

OVERHEAD_FRAMES = 6  # frames of the demo job rendered in full, each with one check's crops


def verification_overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Verification compute as a share of render compute on the demo job (320x180, 32 samples, PNG).

    Renders OVERHEAD_FRAMES frames in full and, for each, one check's crops (crops_choose + crop_manifest,
    as verification.services does) with the scene loaded, and times the comparisons. The share at a
    check rate r is r * (crop renders + comparisons) / full render, plus r * CANARY_SHARE for canaries
    (a canary is one whole render). Steady trust is policy.FLOOR; a new node is checked at rate 1.
    """
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()  # policy reads the check rates from settings and imports dispatch's models
    from marketplace.dispatch.manifests import crop_manifest
    from marketplace.verification import policy
    from marketplace.verification.crops import crop_judge, crops_choose
    from workers.blend import Renderer, make_demo_scene
    from workers.blend.demo_scene import DEMO_DEFAULTS

    width, height = DEMO_DEFAULTS["resolution"]
    job = {
        "samples": DEMO_DEFAULTS["samples"],
        "seed": 0,
        "resolution_x": width,
        "resolution_y": height,
        "device": "CPU",
        "threads": 0,
        "file_format": "PNG",
        "use_denoising": False,
    }
    full_s, crop_s, compare_s, crop_area = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, Renderer(timeout_s=600) as renderer:
        blend = make_demo_scene(Path(tmp) / "scene.blend")
        t0 = time.perf_counter()
        renderer.load(blend, blend.parent)
        load_s = time.perf_counter() - t0
        renderer.render({**job, "frame": 1}, Path(tmp) / "warm.png")  # first render pays kernel set-up
        for frame in range(2, 2 + OVERHEAD_FRAMES):
            manifest = {**job, "frame": frame}
            t0 = time.perf_counter()
            full = renderer.render(manifest, Path(tmp) / "full.png")
            full_s.append(time.perf_counter() - t0)
            candidate = rk.load_image(full["path"])
            seconds = compare = 0.0
            for crop in crops_choose(width=width, height=height):
                t0 = time.perf_counter()
                stats = renderer.render(crop_manifest(manifest, crop), Path(tmp) / "crop.png")
                seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                crop_judge(candidate=candidate, reference=rk.load_image(stats["path"]), crop=crop)
                compare += time.perf_counter() - t0
                crop_area.append(crop.w * crop.h / (width * height))
            crop_s.append(seconds)
            compare_s.append(compare)
    full_mean = float(np.mean(full_s))
    per_check = (float(np.mean(crop_s)) + float(np.mean(compare_s))) / full_mean

    def share(rate: float) -> float:
        return rate * (per_check + policy.CANARY_SHARE)

    result = {
        "frame": [width, height],
        "samples": job["samples"],
        "frames": OVERHEAD_FRAMES,
        "crops_per_check": policy.CROPS_PER_CHECK,
        "mean_crop_area": float(np.mean(crop_area)),
        "full_render_s": full_mean,
        "crop_renders_per_check_s": float(np.mean(crop_s)),
        "compare_per_check_s": float(np.mean(compare_s)),
        "scene_load_s": load_s,
        "check_cost_vs_render": per_check,
        "steady_rate": policy.FLOOR,
        "canary_share": policy.CANARY_SHARE,
        "overhead_steady": share(policy.FLOOR),
        "overhead_new_node": share(1.0),
        # a verifier that has to load the scene for every crop (no scene reuse at all), at steady trust
        "overhead_steady_cold_verifiers": share(policy.FLOOR)
        + policy.FLOOR * policy.CROPS_PER_CHECK * load_s / full_mean,
    }
    print(f"\nVerification overhead, demo job {width}x{height}, {job['samples']} samples, {OVERHEAD_FRAMES} frames")
    print(f"  full render            {full_mean:8.3f} s")
    print(
        f"  one check: {policy.CROPS_PER_CHECK} crops of {np.mean(crop_area):.1%} "
        f"{np.mean(crop_s):8.3f} s render + {np.mean(compare_s):.3f} s compare = {per_check:.1%} of a render"
    )
    print(f"  scene load (cold verifier) {load_s:.3f} s")
    print(
        f"  steady trust (rate {policy.FLOOR:.0%}, canaries {policy.CANARY_SHARE:.0%} of that): "
        f"{result['overhead_steady']:.2%} of render compute (target <= 5 %)"
    )
    print(
        f"  same with every crop on a verifier that loads the scene first: "
        f"{result['overhead_steady_cold_verifiers']:.2%}"
    )
    print(f"  new node (rate 100 %): {result['overhead_new_node']:.1%}")
    return result


# (name, function) pairs run in order by main(); append a section here to extend the benchmark.
SECTIONS: list[tuple[str, Callable[[argparse.Namespace], dict[str, Any]]]] = [
    ("ssim_throughput", ssim_throughput),
    ("verification_overhead", verification_overhead),
]


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="best of N runs per implementation")
    parser.add_argument("--no-host", action="store_true", help="skip the g++-compiled compare.cu rows")
    parser.add_argument("--size", type=_size, default=(1920, 1080), help="WIDTHxHEIGHT of the compared pair")
    parser.add_argument("--only", action="append", choices=[name for name, _ in SECTIONS], help="run these sections")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    for name, section in SECTIONS:
        if args.only is None or name in args.only:
            results[name] = section(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
