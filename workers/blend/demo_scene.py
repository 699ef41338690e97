"""A small animated Cycles scene built with bpy alone (no downloaded assets).

Used as the marketplace's demo upload, the agent's benchmark and the tests' reference scene.
Run in the sandbox: `python -m workers.blend.demo_scene '<json options>'`; the parent API is
`make_demo_scene()` / `make_benchmark_scene()`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from workers.blend.sandbox import Limits, child_main, run_bpy_module

DEMO_DEFAULTS: dict[str, Any] = {
    "frames": 24,
    "resolution": (320, 180),
    "samples": 32,
    "engine": "CYCLES",
    "camera": True,
    "use_denoising": False,
    "use_adaptive_sampling": False,
    "resolution_percentage": 100,
    "frame_start": 1,
    "frame_end": None,  # None: frame_start + frames - 1
    "fps": 24,
    "seed": 0,
    "file_format": "PNG",
    "compress": True,
}
# The benchmark workload is pinned here, independent of the demo defaults, so scores stay comparable.
BENCHMARK_SETTINGS: dict[str, Any] = {"frames": 24, "resolution": (320, 180), "samples": 32, "seed": 0}
BENCHMARK_FRAME = 12


def _material(bpy: Any, name: str) -> tuple[Any, Any, Any]:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    tree = mat.node_tree
    for node in list(tree.nodes):
        tree.nodes.remove(node)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    return mat, tree, out


def _noise_material(bpy: Any, name: str, scale: float, colors: tuple[tuple[float, ...], tuple[float, ...]]) -> Any:
    mat, tree, out = _material(bpy, name)
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale
    noise.inputs["Detail"].default_value = 6.0
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (*colors[0], 1.0)
    ramp.color_ramp.elements[1].color = (*colors[1], 1.0)
    bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = 0.6
    tree.links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    tree.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    tree.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return mat


def _glossy_material(bpy: Any, name: str) -> Any:
    mat, tree, out = _material(bpy, name)
    idname = "ShaderNodeBsdfGlossy" if hasattr(bpy.types, "ShaderNodeBsdfGlossy") else "ShaderNodeBsdfAnisotropic"
    glossy = tree.nodes.new(idname)
    glossy.inputs["Color"].default_value = (0.8, 0.85, 0.9, 1.0)
    glossy.inputs["Roughness"].default_value = 0.15
    tree.links.new(glossy.outputs[0], out.inputs["Surface"])
    return mat


def _emission_material(bpy: Any, name: str) -> Any:
    mat, tree, out = _material(bpy, name)
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (1.0, 0.45, 0.1, 1.0)
    emit.inputs["Strength"].default_value = 4.0
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat


def _assign(obj: Any, mat: Any) -> None:
    obj.data.materials.clear()
    obj.data.materials.append(mat)


def build_scene(opts: dict[str, Any]) -> dict[str, Any]:
    """Build the scene into the current (empty) bpy session. bpy-side only."""
    import bpy
    from mathutils import Vector

    o = {**DEMO_DEFAULTS, **opts}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    frame_start = int(o["frame_start"])
    frame_end = int(o["frame_end"]) if o["frame_end"] is not None else frame_start + int(o["frames"]) - 1
    scene.frame_start, scene.frame_end, scene.frame_step = frame_start, frame_end, 1
    scene.frame_set(frame_start)
    scene.render.fps = int(o["fps"])
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.samples = int(o["samples"])
    cyc.use_denoising = bool(o["use_denoising"])
    cyc.use_adaptive_sampling = bool(o["use_adaptive_sampling"])
    cyc.seed = int(o["seed"])
    cyc.use_animated_seed = False
    cyc.max_bounces = 6
    scene.render.resolution_x, scene.render.resolution_y = (int(v) for v in o["resolution"])
    scene.render.resolution_percentage = int(o["resolution_percentage"])
    img = scene.render.image_settings
    img.file_format = o["file_format"]
    if o["file_format"] == "PNG":
        img.color_mode, img.color_depth = "RGBA", "8"

    world = bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    if bg is not None:
        bg.inputs["Color"].default_value = (0.05, 0.07, 0.12, 1.0)
        bg.inputs["Strength"].default_value = 1.0

    bpy.ops.mesh.primitive_plane_add(size=20.0, location=(0, 0, 0))
    ground = bpy.context.active_object
    ground.name = "Ground"
    _assign(ground, _noise_material(bpy, "GroundNoise", 3.0, ((0.15, 0.15, 0.13), (0.45, 0.42, 0.38))))

    bpy.ops.mesh.primitive_cube_add(size=1.4, location=(-2.0, 1.2, 0.7))
    cube = bpy.context.active_object
    cube.name = "NoiseCube"
    _assign(cube, _noise_material(bpy, "CubeNoise", 8.0, ((0.05, 0.2, 0.6), (0.9, 0.8, 0.2))))

    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, location=(1.2, -1.8, 0.8), segments=48, ring_count=24)
    sphere = bpy.context.active_object
    sphere.name = "GlossySphere"
    bpy.ops.object.shade_smooth()
    _assign(sphere, _glossy_material(bpy, "Glossy"))

    bpy.ops.mesh.primitive_torus_add(major_radius=0.7, minor_radius=0.2, location=(2.3, 1.2, 0.9))
    torus = bpy.context.active_object
    torus.name = "EmissiveTorus"
    torus.rotation_euler = (math.radians(70), 0.0, 0.0)
    _assign(torus, _emission_material(bpy, "Emission"))

    # Keyframed motion over the frame range: slide, bounce, spin.
    for frame, t in ((frame_start, 0.0), ((frame_start + frame_end) // 2, 0.5), (frame_end, 1.0)):
        cube.location.x = -2.4 + 2.4 * t
        cube.rotation_euler.z = math.pi * t
        cube.keyframe_insert("location", frame=frame)
        cube.keyframe_insert("rotation_euler", frame=frame)
        sphere.location.z = 0.8 + 1.2 * math.sin(math.pi * t)
        sphere.keyframe_insert("location", frame=frame)
        torus.rotation_euler.z = 2 * math.pi * t
        torus.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_set(frame_start)

    bpy.ops.object.light_add(type="SUN", location=(4.0, -3.0, 6.0))
    sun = bpy.context.active_object
    sun.name = "Sun"
    sun.data.energy = 3.0
    sun.data.angle = math.radians(5.0)
    sun.rotation_euler = (math.radians(40), math.radians(15), math.radians(30))

    if o["camera"]:
        bpy.ops.object.camera_add(location=(7.0, -7.0, 4.5))
        cam = bpy.context.active_object
        cam.name = "Camera"
        cam.data.name = "Camera"
        cam.data.lens = 40.0
        direction = Vector((0.2, 0.0, 0.6)) - cam.location
        cam.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
        scene.camera = cam
    # Set last: some scene setup resets engine-dependent settings.
    scene.render.engine = o["engine"]
    return {"frame_start": frame_start, "frame_end": frame_end, "engine": scene.render.engine}


def _child(argv: list[str]) -> dict[str, Any]:
    import os

    import bpy

    opts = json.loads(argv[0]) if argv else {}
    compress = bool(opts.get("compress", True))
    info = build_scene(opts)
    out = os.path.join(os.getcwd(), "scene.blend")
    bpy.ops.wm.save_as_mainfile(filepath=out, compress=compress)
    return {**info, "path": out}


def make_demo_scene(
    out_path: Path,
    *,
    frames: int = 24,
    resolution: tuple[int, int] = (320, 180),
    samples: int = 32,
    **variant: Any,
) -> Path:
    """Write the demo scene to `out_path` (bpy runs in a sandboxed subprocess).

    `variant` overrides any key of DEMO_DEFAULTS: engine, camera, use_denoising, use_adaptive_sampling,
    resolution_percentage, frame_start, frame_end, fps, seed, file_format, compress.
    """
    unknown = set(variant) - set(DEMO_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown demo scene options: {sorted(unknown)}")
    opts = {**variant, "frames": frames, "resolution": list(resolution), "samples": samples}
    out_path = Path(out_path)
    job = run_bpy_module(
        "demo_scene", [json.dumps(opts)], limits=Limits(timeout_s=120, memory_mb=4096), keep_job_dir=True
    )
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(job.job_dir / "scene.blend", out_path)  # type: ignore[operator]
    finally:
        shutil.rmtree(job.job_dir, ignore_errors=True)  # type: ignore[arg-type]
    return out_path


def make_benchmark_scene(out_path: Path) -> Path:
    """The agent's benchmark scene: the demo generator with pinned settings (BENCHMARK_SETTINGS)."""
    s = BENCHMARK_SETTINGS
    return make_demo_scene(
        out_path, frames=s["frames"], resolution=tuple(s["resolution"]), samples=s["samples"], seed=s["seed"]
    )


if __name__ == "__main__":
    child_main(_child)
