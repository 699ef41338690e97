"""Drive the Blender add-on headless: `python tests/addon/_blender.py plan.json out.json` (bpy as a module).

Installs the built legacy zip with Blender's own add-on installer into BLENDER_USER_RESOURCES (the test's temp
dir), enables it, then runs the plan's steps, pressing the panel's buttons through bpy.ops. Timers never fire in
headless Blender, so each step pumps the add-on's background tasks by hand (`tasks.wait`) until they finish.
After each step it records the scene's add-on state (what the panel shows) into out.json.
"""

import importlib
import json
import os
import sys
import time
from pathlib import Path

import bpy


def png(path: Path, rgb: tuple[float, float, float], side: int = 256) -> None:
    """A noisy texture (noise does not compress: a few hundred KB, like a real one)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    image = bpy.data.images.new(path.stem, side, side)
    noise = np.random.default_rng(len(path.name)).random((side * side, 4), dtype=np.float32)
    image.pixels.foreach_set((noise * 0.5 + np.array([*rgb, 1.0], dtype=np.float32) * 0.5).ravel())
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def make_textured(step: dict) -> dict:
    """The demo scene with three image textures: //textures/ (a sibling folder), an absolute path, and a
    `//../` escape; saved into the project folder without remapping (the paths stay as written)."""
    project, outside = Path(step["project"]), Path(step["outside"])
    bpy.ops.wm.open_mainfile(filepath=step["source"], load_ui=False)
    png(project / "textures" / "wood.png", (0.8, 0.4, 0.1))
    png(outside / "sticker.png", (0.1, 0.2, 0.9))
    png(project.parent / "library" / "metal.png", (0.5, 0.5, 0.5))
    raw = {
        "wood.png": "//textures/wood.png",
        "sticker.png": str(outside / "sticker.png"),
        "metal.png": "//../library/metal.png",
    }
    material = bpy.data.materials.new("Textured")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    for i, (name, path) in enumerate(raw.items()):
        node = nodes.new("ShaderNodeTexImage")
        node.image = bpy.data.images.load(str(project / "textures" / "wood.png"))  # replaced below
        node.image.name = name
        node.image.filepath = path
        if i == 0:
            links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    mesh = next(o for o in bpy.context.scene.objects if o.type == "MESH")
    mesh.data.materials.clear()
    mesh.data.materials.append(material)
    bpy.context.scene.render.filepath = "//render/shot_"
    bpy.ops.wm.save_as_mainfile(filepath=str(project / "scene.blend"), relative_remap=False)
    return {"images": {i.name: i.filepath for i in bpy.data.images}}


# The add-on's module: bl_ext.user_default.render_market when installed as an extension.
ADDON = {"module": "render_market"}


class Layout:
    """Stands in for bpy's UILayout (headless Blender draws no panels): records what the panel would show."""

    def __init__(self, lines: list) -> None:
        self.lines = lines

    def _nested(self, *args, **kwargs) -> "Layout":
        return Layout(self.lines)

    column = row = box = _nested

    def label(self, *, text: str = "", icon: str = "") -> None:
        self.lines.append(text)

    def prop(self, data, name: str, **kwargs) -> None:
        self.lines.append(f"[{data.bl_rna.properties[name].name}]")

    def operator(self, idname: str, **kwargs) -> None:
        self.lines.append(f"<{idname}>")


def draw_panel() -> list[str]:
    ui = importlib.import_module(f"{ADDON['module']}.ui")
    lines: list[str] = []
    panel = type("Panel", (), {"layout": Layout(lines)})()
    ui.RENDER_MARKET_PT_panel.draw(panel, bpy.context)
    return lines


def run_step(step: dict, tasks) -> dict:
    do = step["do"]
    if do == "make_textured":
        return make_textured(step)
    if do == "open":
        bpy.ops.wm.open_mainfile(filepath=step["path"], load_ui=False)
    elif do == "prefs":
        prefs = bpy.context.preferences.addons[ADDON["module"]].preferences
        for key in ("server_url", "token", "packing"):
            if key in step:
                setattr(prefs, key, step[key])
    elif do == "bat_cannot_read":  # as when blender-asset-tracer meets a file format it does not know
        packing = importlib.import_module(f"{ADDON['module']}.packing")

        def refuse(blend, dest):
            raise packing.PackError(f"blender-asset-tracer cannot read {Path(blend).name}: unknown file format")

        packing.pack_with_bat = refuse
    elif do == "extract":
        ops = importlib.import_module(f"{ADDON['module']}.ops")
        targets = {int(k): v for k, v in step["targets"].items()}
        return {"written": ops.extract_frames(Path(step["zip"]), targets=targets, fallback_dir=Path(step["folder"]))}
    elif do == "draw_panel":
        return {"panel": draw_panel()}
    elif do == "wait_idle":
        while tasks._tasks:
            tasks.wait(next(iter(tasks._tasks)), timeout=step.get("timeout", 600))
    elif do == "save":
        bpy.ops.wm.save_mainfile()
    elif do == "remove_camera_and_save":
        for camera in [o for o in bpy.data.objects if o.type == "CAMERA"]:
            bpy.data.objects.remove(camera)
        bpy.ops.wm.save_mainfile()
    elif do == "edit_and_save":
        mesh = next(o for o in bpy.context.scene.objects if o.type == "MESH")
        mesh.location.z += 0.25
        bpy.ops.wm.save_mainfile()
    elif do == "press":
        began = time.monotonic()
        try:
            result = getattr(bpy.ops.render_market, step["button"])()
        except RuntimeError as exc:  # an operator's ERROR report: the panel shows it as the scene's error
            return {"result": ["CANCELLED"], "raised": str(exc)}
        returned_in_s = time.monotonic() - began
        if not step.get("wait", True):  # look at the panel while the work goes on in the background
            return {"result": sorted(result), "returned_in_s": returned_in_s, "running": sorted(tasks._tasks)}
        # Until everything it started has finished (Submit goes on to watch the job), unless told to leave the
        # follow-ups running in the background, as they would in Blender while the artist works on.
        started = set(tasks._tasks)
        while pending := [k for k in tasks._tasks if step.get("until_idle", True) or k in started]:
            tasks.wait(pending[0], timeout=step.get("timeout", 300))
        return {"result": sorted(result), "returned_in_s": returned_in_s}
    else:
        raise SystemExit(f"unknown step {do}")
    return {}


def snapshot() -> dict:
    rm = bpy.context.scene.render_market
    out = {k: getattr(rm, k) for k in ("scene_id", "job_id", "busy", "status", "error")}
    for name in ("check", "upload", "quote", "job", "download"):
        raw = getattr(rm, f"{name}_json")
        out[name] = json.loads(raw) if raw else {}
    out["images"] = {i.name: [i.filepath, i.packed_file is not None] for i in bpy.data.images}
    return out


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    out_path = Path(sys.argv[2])
    import addon_utils  # Blender's own module: importable once bpy is

    assert os.environ.get("BLENDER_USER_RESOURCES"), "install into the test's own directory"
    if plan.get("install") == "extension":  # Blender 4.2+: the extension zip, its wheel installed by Blender
        bpy.ops.extensions.package_install_files(
            filepath=plan["addon_zip"], repo="user_default", enable_on_install=True
        )
        ADDON["module"] = "bl_ext.user_default.render_market"
    else:
        bpy.ops.preferences.addon_install(filepath=plan["addon_zip"], overwrite=True)
        errors = []
        addon_utils.enable(ADDON["module"], default_set=True, handle_error=errors.append)
        if errors:
            raise SystemExit(f"the add-on did not enable: {errors}")
    if ADDON["module"] not in bpy.context.preferences.addons:
        raise SystemExit(f"{ADDON['module']} is not enabled")
    tasks = importlib.import_module(f"{ADDON['module']}.tasks")

    results = []
    for step in plan["steps"]:
        record = {"step": step, **run_step(step, tasks)}
        if step["do"] not in ("prefs", "bat_cannot_read"):
            record["state"] = snapshot()
        results.append(record)
        out_path.write_text(json.dumps(results, indent=1))  # partial results survive a crash
    tasks.stop_all()


if __name__ == "__main__":
    main()
