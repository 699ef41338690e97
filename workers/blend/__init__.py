"""Blender (bpy) layer: inspect uploads, render frames, build demo/benchmark scenes.

Nothing here imports bpy in the caller's process: every bpy job runs in a sandboxed subprocess
(`sandbox.py`). Attributes are loaded lazily so that `python -m workers.blend.<module>` children do not
import their own module twice, and so that importing this package stays cheap for the marketplace.

Public API:
    inspect_scene(blend_path, *, bundle_root, timeout_s=60, memory_mb=2048) -> dict
    Renderer(...)  (context manager: load(blend_path, bundle_root), render(manifest, out_path) -> dict)
    list_devices() -> list[dict]
    make_demo_scene(out_path, *, frames=24, resolution=(320, 180), samples=32, **variant) -> Path
    make_benchmark_scene(out_path) -> Path
    check_external_paths(refs, *, bundle_root) -> list[Offence]
    check_blend_file(path) -> str
    read_image(path, *, raw=False) -> numpy array (H, W, C), EXR included (bpy's bundled OpenImageIO)
    errors: BlendError > BlendFileError > RenderRefused; BlendError > SandboxError, DeviceError
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "inspect_scene": "workers.blend.inspect_scene",
    "check_blend_file": "workers.blend.inspect_scene",
    "Renderer": "workers.blend.renderer",
    "list_devices": "workers.blend.renderer",
    "make_demo_scene": "workers.blend.demo_scene",
    "make_benchmark_scene": "workers.blend.demo_scene",
    "BENCHMARK_SETTINGS": "workers.blend.demo_scene",
    "BENCHMARK_FRAME": "workers.blend.demo_scene",
    "check_external_paths": "workers.blend.paths",
    "describe_refs": "workers.blend.paths",
    "resolve_path": "workers.blend.paths",
    "Offence": "workers.blend.paths",
    "PathRef": "workers.blend.paths",
    "BlendError": "workers.blend.sandbox",
    "BlendFileError": "workers.blend.sandbox",
    "RenderRefused": "workers.blend.sandbox",
    "SandboxError": "workers.blend.sandbox",
    "DeviceError": "workers.blend.sandbox",
    "read_image": "workers.blend.images",
    "noisy_path_for": "workers.blend.renderer",
    "Limits": "workers.blend.sandbox",
}

__all__ = [
    "BENCHMARK_FRAME",
    "BENCHMARK_SETTINGS",
    "BlendError",
    "BlendFileError",
    "DeviceError",
    "Limits",
    "Offence",
    "PathRef",
    "RenderRefused",
    "Renderer",
    "SandboxError",
    "check_blend_file",
    "check_external_paths",
    "describe_refs",
    "inspect_scene",
    "list_devices",
    "make_benchmark_scene",
    "make_demo_scene",
    "noisy_path_for",
    "read_image",
    "resolve_path",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # Importing the submodule `inspect_scene` binds the *module* to this package's attribute of the
    # same name; rebind the public function over it.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
