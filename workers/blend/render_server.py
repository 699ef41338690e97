"""Long-lived render child: keeps one scene loaded across frames.

Protocol: one JSON request per line on stdin; one JSON answer per line on the file descriptor given by
`--fd` (never stdout, where Blender prints). Requests: {"id", "cmd": "load"|"render"|"ping"|"quit", ...}.
Answers: {"id", "ok": true, "result": ...} or the error payload of `sandbox.error_payload`.
First line sent: {"id": 0, "ok": true, "result": {"event": "ready", ...}}.

`python -m workers.blend.render_server --list-devices` is a one-shot job (result file) for `list_devices()`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from typing import Any

from workers.blend.paths import check_external_paths
from workers.blend.sandbox import (
    BlendFileError,
    DeviceError,
    RenderRefused,
    child_main,
    enter_child_sandbox,
    error_payload,
)

log = logging.getLogger("workers.blend.render_server")

GPU_TYPES = ("CUDA", "OPTIX", "HIP", "ONEAPI")


def _cycles_prefs() -> Any:
    import bpy

    return bpy.context.preferences.addons["cycles"].preferences


def list_devices_bpy() -> list[dict[str, Any]]:
    """Every Cycles device this Blender sees (CPU first), without changing what a render uses."""
    import bpy

    prefs = _cycles_prefs()
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    types = [t[0] for t in prefs.get_device_types(bpy.context) if t[0] != "NONE"]
    for dtype in types:
        try:
            devices = prefs.get_devices_for_type(dtype)
        except Exception as exc:  # a broken driver must not hide the other device types
            log.warning("event=device_listing_failed", extra={"device_type": dtype, "error": str(exc)})
            continue
        for d in devices:
            if (d.type, d.id) not in seen:
                seen.add((d.type, d.id))
                rows.append({"type": d.type, "name": d.name, "id": d.id, "use": bool(d.use)})
    prefs.refresh_devices()
    for d in prefs.devices:
        if (d.type, d.id) not in seen:
            seen.add((d.type, d.id))
            rows.append({"type": d.type, "name": d.name, "id": d.id, "use": bool(d.use)})
    rows.sort(key=lambda r: (r["type"] != "CPU", r["type"], r["id"]))
    return rows


def setup_device(scene: Any, device: str, device_ids: list[str] | None) -> list[str]:
    """Point Cycles at the requested device type; returns the names of the devices used."""
    prefs = _cycles_prefs()
    if device == "CPU":
        scene.cycles.device = "CPU"
        return ["CPU"]
    try:
        prefs.compute_device_type = device
    except TypeError as exc:
        raise DeviceError(f"device type {device} is not supported by this Blender build ({exc})")
    prefs.get_devices_for_type(device)
    candidates = [d for d in prefs.devices if d.type == device]
    if device_ids:
        candidates = [d for d in candidates if d.id in device_ids]
    if not candidates:
        found = sorted({f"{d.type}:{d.name}" for d in prefs.devices})
        raise DeviceError(f"no {device} device available (Blender sees: {', '.join(found) or 'nothing'})")
    chosen = {d.id for d in candidates}
    for d in prefs.devices:
        # GPU only: mixing in the CPU would make results depend on the work split.
        d.use = d.type == device and d.id in chosen
    scene.cycles.device = "GPU"
    return [d.name for d in candidates]


class RenderServer:
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.loaded: str | None = None
        self.loads = 0
        self.renders = 0
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ load

    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        import bpy

        from workers.blend import _bpy_scene as bs

        blend_path, bundle_root = req["blend_path"], req["bundle_root"]
        self.loaded = None
        t0 = time.monotonic()
        bs.open_blend(blend_path)
        self.loads += 1
        # Re-check every external path here, whatever the marketplace said about this file.
        refs, dynamic = bs.collect_external_refs()
        offences = [
            o.as_dict()
            for o in check_external_paths(refs, bundle_root=bundle_root, blend_dir=os.path.dirname(blend_path))
        ]
        offences += dynamic
        if offences:
            bs.reset_empty()
            listing = "; ".join(f"{o['kind']} {o['datablock']!r}: {o['raw_path']!r} ({o['reason']})" for o in offences)
            raise RenderRefused(
                f"scene reads files outside its bundle, refusing to render: {listing}",
                data={"offences": offences},
            )
        scene = bpy.context.scene
        if scene.render.engine != "CYCLES":
            engine = scene.render.engine
            bs.reset_empty()
            raise BlendFileError(f"render engine {engine} is not supported (CYCLES only)")
        muted, osl = self._neutralize(bs)
        facts = bs.scene_facts(scene)
        self.loaded = blend_path
        self.info = {
            "blend_path": blend_path,
            "scene": scene.name,
            "frame_start": facts["frame_start"],
            "frame_end": facts["frame_end"],
            "cameras": facts["cameras"],
            "active_camera": facts["active_camera"],
            "resolution": [facts["resolution_x"], facts["resolution_y"], facts["resolution_percentage"]],
            "muted_python_drivers": muted,
            "osl_disabled": osl,
            "loads": self.loads,
            "seconds": round(time.monotonic() - t0, 4),
        }
        return self.info

    def _neutralize(self, bs: Any) -> tuple[list[str], bool]:
        """Switch off what could read files or run code during a render: OSL, Python drivers, outputs."""
        import bpy

        osl = False
        for scene in bpy.data.scenes:
            if scene.cycles.shading_system:
                osl = True
                scene.cycles.shading_system = False  # SVM only: OSL scripts can read arbitrary files
        muted = []
        for d in bs.scripted_drivers():
            if not d["simple"]:
                d["_fcurve"].mute = True  # never evaluated anyway with scripts off; muted for certainty
                muted.append(f"{d['datablock']}.{d['data_path']}[{d['index']}]")
        return muted, osl

    # ---------------------------------------------------------------- render

    def render(self, req: dict[str, Any]) -> dict[str, Any]:
        import bpy

        if self.loaded is None:
            raise BlendFileError("no scene loaded")
        m = req["manifest"]
        budget = req.get("cpu_budget_s")
        if budget:
            # The CPU limit is per render, not per process lifetime: re-arm it below the hard cap.
            used = resource.getrusage(resource.RUSAGE_SELF)
            _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
            want = int(used.ru_utime + used.ru_stime + budget)
            resource.setrlimit(resource.RLIMIT_CPU, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
        scene = bpy.context.scene
        t0 = time.monotonic()
        devices = setup_device(scene, m["device"], m.get("device_ids"))
        self._pin_settings(scene, m)
        scene.frame_set(int(m["frame"]))
        if m.get("camera"):
            cam = scene.objects.get(m["camera"])
            if cam is None or cam.type != "CAMERA":
                raise BlendFileError(f"camera {m['camera']!r} is not a camera of scene {scene.name!r}")
            for marker in scene.timeline_markers:
                marker.camera = None  # markers would switch the camera back during the render
            scene.camera = cam
        if scene.camera is None:
            raise BlendFileError("the scene has no active camera")
        self.renders += 1
        ext = "png" if m["file_format"] == "PNG" else "exr"
        out = os.path.join(self.out_dir, f"render_{self.renders:06d}.{ext}")
        scene.render.filepath = out
        t_render = time.monotonic()
        result = bpy.ops.render.render(write_still=True)
        render_s = time.monotonic() - t_render
        if "FINISHED" not in result or not os.path.exists(out):
            raise RuntimeError(f"render failed ({sorted(result)}); see the render log")
        noisy = None
        if m["use_denoising"]:
            noisy = self._write_noisy(scene, out)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        width, height = m["resolution_x"], m["resolution_y"]
        if m.get("border"):
            width, height = m["border"][2], m["border"][3]
        return {
            "file": out,
            "noisy_file": noisy,
            "seconds": round(time.monotonic() - t0, 4),
            "render_seconds": round(render_s, 4),
            "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "device": m["device"],
            "devices": devices,
            "blender_version": bpy.app.version_string,
            "frame": int(m["frame"]),
            "samples": int(scene.cycles.samples),
            "seed": int(scene.cycles.seed),
            "width": width,
            "height": height,
            "camera": scene.camera.name,
            "renders": self.renders,
            "loads": self.loads,
        }

    def _pin_settings(self, scene: Any, m: dict[str, Any]) -> None:
        """Everything that decides the pixels comes from the manifest; anything random or global is off."""
        import bpy

        r = scene.render
        cyc = scene.cycles
        cyc.samples = int(m["samples"])
        cyc.seed = int(m["seed"])
        cyc.use_animated_seed = False
        cyc.use_adaptive_sampling = False
        cyc.time_limit = 0.0
        cyc.use_denoising = bool(m["use_denoising"])
        cyc.use_sample_subset = False
        cyc.sample_offset = 0
        cyc.use_layer_samples = "IGNORE"
        # Path guiding learns from the whole image across threads: crops and thread counts would differ.
        cyc.use_guiding = False
        cyc.shading_system = False
        r.resolution_x, r.resolution_y = int(m["resolution_x"]), int(m["resolution_y"])
        r.resolution_percentage = 100
        if m["threads"]:
            r.threads_mode, r.threads = "FIXED", int(m["threads"])
        else:
            r.threads_mode = "AUTO"
        border = m.get("border")
        if border:
            x, y, w, h = (int(v) for v in border)
            width, height = r.resolution_x, r.resolution_y
            # Manifest y counts from the top; Blender's border from the bottom, normalised. Blender
            # truncates border * size to whole pixels, so aim a quarter pixel inside each edge.
            r.use_border = True
            r.use_crop_to_border = True
            r.border_min_x = (x + 0.25) / width
            r.border_max_x = (x + w + 0.25) / width
            r.border_min_y = (height - y - h + 0.25) / height
            r.border_max_y = (height - y + 0.25) / height
        else:
            r.use_border = False
        # Only the raw render of one view layer: compositor (File Output nodes write anywhere), sequencer,
        # stereo views and burnt-in stamps are not part of a frame.
        r.use_compositing = False
        r.use_sequencer = False
        r.use_multiview = False
        r.use_persistent_data = False
        r.use_single_layer = False
        r.use_file_extension = False
        r.dither_intensity = 0.0
        for prop in r.bl_rna.properties:
            # Metadata would leak the host name and local file paths, and differs run to run anyway.
            if prop.identifier.startswith("use_stamp") and not prop.is_readonly:
                setattr(r, prop.identifier, False)
        active = bpy.context.view_layer
        for vl in scene.view_layers:
            vl.use = vl == active
        active.cycles.use_denoising = True
        active.cycles.denoising_store_passes = bool(m["use_denoising"])
        img = r.image_settings
        _set_multilayer(img, False)
        if m["file_format"] == "PNG":
            img.file_format = "PNG"
            img.color_mode = "RGBA"
            img.color_depth = "8"
        else:
            img.file_format = "OPEN_EXR"
            img.color_mode = "RGBA"
            img.color_depth = "32"
            img.exr_codec = "ZIP"

    def _write_noisy(self, scene: Any, out: str) -> str:
        """Save the pre-denoise "Noisy Image" pass as a float RGBA EXR: crops re-render without denoising."""
        import bpy

        img = scene.render.image_settings
        multilayer = out.rsplit(".", 1)[0] + ".passes.exr"
        _set_multilayer(img, True)
        img.color_depth = "32"
        img.exr_codec = "ZIP"
        try:
            bpy.data.images["Render Result"].save_render(multilayer, scene=scene)
        finally:
            _set_multilayer(img, False)
        noisy = out.rsplit(".", 1)[0] + ".noisy.exr"
        extract_pass(multilayer, "Noisy Image", noisy)
        os.unlink(multilayer)
        return noisy


def _set_multilayer(img: Any, multilayer: bool) -> None:
    """Blender 5.0 chose multilayer EXR with `media_type`; 4.x with its own file format."""
    if hasattr(img, "media_type"):
        img.media_type = "MULTI_LAYER_IMAGE" if multilayer else "IMAGE"
    elif multilayer:
        img.file_format = "OPEN_EXR_MULTILAYER"
    elif img.file_format == "OPEN_EXR_MULTILAYER":
        img.file_format = "OPEN_EXR"


def _oiio() -> Any:
    """Blender's bundled OpenImageIO (its site-packages is not on sys.path by default)."""
    import bpy

    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = os.path.join(bpy.utils.system_resource("PYTHON"), "lib", ver, "site-packages")
    if site not in sys.path:
        sys.path.append(site)
    import OpenImageIO

    return OpenImageIO


def extract_pass(multilayer: str, pass_name: str, out: str) -> None:
    oiio = _oiio()
    inp = oiio.ImageInput.open(multilayer)
    if inp is None:
        raise RuntimeError(f"cannot read {multilayer}: {oiio.geterror()}")
    try:
        sub = 0
        while inp.seek_subimage(sub, 0):
            spec = inp.spec()
            if any(f".{pass_name}." in c for c in spec.channelnames):
                pixels = inp.read_image(sub, 0, 0, spec.nchannels, oiio.FLOAT)
                break
            sub += 1
        else:
            raise RuntimeError(f"render result has no {pass_name!r} pass")
    finally:
        inp.close()
    spec = oiio.ImageSpec(spec.width, spec.height, spec.nchannels, oiio.FLOAT)
    spec.channelnames = ("R", "G", "B", "A")[: spec.nchannels]
    spec.attribute("compression", "zip")
    output = oiio.ImageOutput.create(out)
    if output is None or not output.open(out, spec):
        raise RuntimeError(f"cannot write {out}: {oiio.geterror()}")
    output.write_image(pixels)
    output.close()


def serve(fd: int) -> None:
    answers = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def send(payload: dict[str, Any]) -> None:
        answers.write(json.dumps(payload) + "\n")
        answers.flush()

    try:
        enter_child_sandbox()  # SandboxUnavailable when isolation is required and cannot be applied
        import bpy

        bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    except BaseException as exc:  # no sandbox, or bpy cannot even load under the memory limit
        send({"id": 0, **error_payload(exc)})
        os._exit(1)
    out_dir = os.path.join(os.getcwd(), "out")
    os.makedirs(out_dir, exist_ok=True)
    server = RenderServer(out_dir)
    send(
        {
            "id": 0,
            "ok": True,
            "result": {"event": "ready", "pid": os.getpid(), "blender_version": bpy.app.version_string},
        }
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        req: dict[str, Any] = {}
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "load":
                result: Any = server.load(req)
            elif cmd == "render":
                result = server.render(req)
            elif cmd == "ping":
                result = {"loads": server.loads, "renders": server.renders, "loaded": server.loaded}
            elif cmd == "quit":
                send({"id": req.get("id"), "ok": True, "result": None})
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
            payload = {"ok": True, "result": result}
        except BaseException as exc:  # every failure is answered; the server lives on
            log.exception("event=command_failed", extra={"cmd": req.get("cmd")})
            payload = error_payload(exc)
        send({"id": req.get("id"), **payload})
    answers.close()
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int)
    parser.add_argument("--list-devices", action="store_true")
    args, _ = parser.parse_known_args()
    if args.list_devices:
        sys.argv = sys.argv[:1]
        child_main(lambda _argv: list_devices_bpy())
    elif args.fd is not None:
        serve(args.fd)
    else:
        parser.error("--fd or --list-devices required")


if __name__ == "__main__":
    main()
