"""Device detection, plain-words diagnosis, and the benchmark, on top of the sandboxed bpy layer."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _pycuda_status() -> str:
    try:
        import pycuda.driver as cuda

        cuda.init()
        return f"ok, {cuda.Device.count()} device(s)"
    except ImportError:
        return "not installed (pip install -r requirements-gpu.txt to compare images on the GPU)"
    except Exception as exc:
        return f"installed but unusable: {exc}"


def diagnose() -> dict[str, Any]:
    """Devices Cycles sees, and why a GPU would not be used."""
    from workers.blend import list_devices

    listing = list_devices()
    devices = listing["devices"] if isinstance(listing, dict) else listing
    version = listing.get("blender_version", "") if isinstance(listing, dict) else ""
    if not version:
        import importlib.metadata

        version = importlib.metadata.version("bpy")
    gpu = [d for d in devices if d.get("type") not in ("CPU", None)]
    explanations = []
    if not gpu:
        if not (shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0") or os.path.exists("/dev/kfd")):
            explanations.append("no GPU driver found (no /dev/nvidia0 or /dev/kfd): rendering on the CPU")
        else:
            explanations.append(
                "a GPU driver is present but Cycles lists no GPU device: the driver may be too "
                "old for this Blender, or the GPU is not supported by CUDA/OptiX/HIP"
            )
    for d in gpu:
        if not d.get("use", True):
            explanations.append(f"{d['name']} ({d['type']}) is seen but not enabled")
    report = {
        "blender_version": version,
        "devices": [dict(d) for d in devices],
        "explanations": explanations,
        "pycuda": _pycuda_status(),
    }
    report["chosen"] = resolve_device("auto", report=report)
    return report


def resolve_device(choice: str, *, report: dict[str, Any] | None = None) -> str:
    choice = (choice or "auto").upper()
    if choice == "CPU":
        return "CPU"
    report = report or diagnose()
    types = {d["type"] for d in report["devices"]}
    if choice != "AUTO":
        if choice not in types:
            raise RuntimeError(f"device {choice} requested but Cycles sees only {sorted(types) or ['CPU']}")
        return choice
    return next((t for t in ("OPTIX", "CUDA", "HIP", "ONEAPI") if t in types), "CPU")


def benchmark(*, device: str = "auto", threads: int = 0) -> dict[str, float]:
    """Render the bundled benchmark scene; pixel-samples per second on the chosen device."""
    from workers.blend import BENCHMARK_FRAME, BENCHMARK_SETTINGS, make_benchmark_scene
    from workers.blend.renderer import Renderer

    chosen = resolve_device(device)
    width, height = BENCHMARK_SETTINGS["resolution"]
    samples = BENCHMARK_SETTINGS["samples"]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        scene = Path(tmp) / "bench.blend"
        make_benchmark_scene(scene)
        manifest = {
            "frame": BENCHMARK_FRAME,
            "samples": samples,
            "seed": BENCHMARK_SETTINGS["seed"],
            "resolution_x": width,
            "resolution_y": height,
            "file_format": "PNG",
            "use_denoising": False,
            "device": chosen,
            "threads": threads,
        }
        # The scene is the one generated above, not a stranger's: it may run without the sandbox.
        with Renderer(timeout_s=600, gpu=chosen != "CPU", allow_unsandboxed=True) as renderer:
            renderer.load(scene, Path(tmp))
            renderer.render(manifest, Path(tmp) / "warm.png")  # first render pays kernel/BVH set-up
            stats = renderer.render(manifest, Path(tmp) / "bench.png")
    return {chosen: width * height * samples / max(stats["seconds"], 1e-6)}


def scene_defaults(scene: Path) -> dict[str, Any]:
    from workers.blend.inspect_scene import inspect_scene

    return inspect_scene(scene.resolve(), bundle_root=scene.resolve().parent)
