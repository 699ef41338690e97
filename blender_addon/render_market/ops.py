"""The panel's buttons. Each operator reads bpy on the main thread, hands the I/O to `tasks`, and writes the
outcome back into the scene's state from `tasks.pump` (main thread again)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import bpy

from . import packing, state, tasks
from .check import CheckError, check_open_file
from .client import ApiError, Client
from .packing import PackError

INSPECTION_TIMEOUT_S = 30 * 60
WATCH_EVERY_S = 2.0
_FRAME_MEMBER = re.compile(r"^frame_(\d+)\.(png|exr)$")


def prefs():
    return bpy.context.preferences.addons[__package__].preferences


def client() -> Client:
    p = prefs()
    return Client(p.server_url, p.token)


def _words(exc: BaseException) -> str | None:
    if isinstance(exc, (ApiError, PackError, CheckError)):
        return str(exc)
    return None


def _scene_by_name(name: str, filepath: str):
    """The scene a task was started for, or None once another file is open (its answer must not land there)."""
    return bpy.data.scenes.get(name) if bpy.data.filepath == filepath else None


def _start(op, scene, key: str, work, *, on_done, busy: str) -> set[str]:
    """Start a background task for the scene; its errors land in the scene's `error` in the server's words.

    `op`: the operator to report to, None when a task starts the next one (the operator is gone by then).
    """
    scene_name, filepath = scene.name, bpy.data.filepath
    rm = scene.render_market

    def done(result: Any) -> None:
        scene = _scene_by_name(scene_name, filepath)
        if scene is not None:
            scene.render_market.busy = ""
            on_done(scene, result)

    def failed(message: str) -> None:
        scene = _scene_by_name(scene_name, filepath)
        if scene is not None:
            scene.render_market.busy = ""
            scene.render_market.error = message
            scene.render_market.status = ""

    def progressed(text: str, data: dict) -> None:
        scene = _scene_by_name(scene_name, filepath)
        if scene is not None:
            scene.render_market.status = text
            if "job" in data:
                state.save(scene, "job", data["job"])

    if not tasks.start(
        f"{key}:{scene_name}", work, on_done=done, on_error=failed, on_progress=progressed, error_words=_words
    ):
        if op is not None:
            op.report({"WARNING"}, f"{busy} is still running")
        return {"CANCELLED"}
    rm.busy, rm.error, rm.status = busy, "", f"{busy}…"
    return {"FINISHED"}


def _fail(op, scene, message: str) -> set[str]:
    scene.render_market.error = message
    scene.render_market.busy = ""
    if op is not None:
        op.report({"ERROR"}, message)
    return {"CANCELLED"}


class _ServerOperator:
    """An operator that talks to the server: without a usable server URL and token it fails in the client's words;
    subclasses implement `run(context, api)`."""

    def execute(self, context):
        try:
            api = client()
        except ApiError as exc:
            return _fail(self, context.scene, str(exc))
        return self.run(context, api)


class RENDER_MARKET_OT_check(bpy.types.Operator):
    """Inspect the open file here, as the server will: engine, camera, sizes, missing files, outside paths"""

    bl_idname = "render_market.check"
    bl_label = "Check"

    def execute(self, context):
        try:
            result = check_open_file()
        except CheckError as exc:
            return _fail(self, context.scene, str(exc))
        rm = context.scene.render_market
        state.save(context.scene, "check", result.as_dict())
        rm.error = ""
        rm.status = (
            "the server would refuse this scene"
            if result.blocking
            else "ready to quote"
            if not result.refusals
            else "ready to quote once packed"
        )
        return {"FINISHED"}


# Quote: pack, upload what the server lacks, assemble, wait for the inspection, quote ----------------------------


def _upload_and_quote(ctx: tasks.Context, api: Client, pack: packing.Pack, *, name: str) -> dict[str, Any]:
    try:
        ctx.progress("asking the server which files it lacks")
        missing = set(api.missing(f.sha256 for f in pack.files))
        sent_files, sent_bytes = [], 0
        todo = [f for f in pack.files if f.sha256 in missing]
        for i, f in enumerate(todo, 1):
            ctx.check_stop()
            if f.sha256 in {s["sha256"] for s in sent_files}:
                continue  # the same bytes under two paths travel once
            ctx.progress(f"uploading {f.path} ({i}/{len(todo)}, {f.size:,} bytes)")
            sent_bytes += api.put_file(f.sha256, f.abspath)
            sent_files.append({"path": f.path, "sha256": f.sha256, "size": f.size})
        upload = {
            "method": pack.method,
            "files": len(pack.files),
            "total_bytes": pack.size,
            "sent_files": sent_files,
            "sent_bytes": sent_bytes,
            "notes": pack.notes,
            "missing": pack.missing,
        }
        ctx.progress("assembling the bundle on the server")
        scene = api.bundle(pack.manifest(), name=name)
        deadline = time.monotonic() + INSPECTION_TIMEOUT_S
        while scene["status"] == "inspecting":
            if time.monotonic() > deadline:
                raise ApiError(f"the server is still inspecting scene {scene['id']}: quote again later")
            ctx.progress(f"the server is inspecting scene {scene['id']}")
            ctx.sleep(1.0)
            scene = api.scene(scene["id"])
        if scene["status"] != "ready":
            raise ApiError(scene.get("refusal") or f"the server refused scene {scene['id']}")
        ctx.progress("asking for a quote")
        job = api.quote(scene=scene["id"], name=name)
        return {"scene": scene, "job": job, "upload": upload}
    finally:
        shutil.rmtree(pack.root, ignore_errors=True)


class RENDER_MARKET_OT_quote(bpy.types.Operator):
    """Pack the saved file with its textures, upload what the server does not have yet, and get a price"""

    bl_idname = "render_market.quote"
    bl_label = "Quote"

    def execute(self, context):
        if not bpy.data.filepath:
            return _fail(self, context.scene, "save the .blend first: Quote packs the file as saved on disk")
        if bpy.data.is_dirty and not bpy.app.background:  # headless Blender never clears the flag
            return _fail(self, context.scene, "save the .blend first: it has changes that Quote would not send")
        try:
            api = client()
        except ApiError as exc:
            return _fail(self, context.scene, str(exc))
        blend = Path(bpy.data.filepath)
        name = context.scene.name if len(bpy.data.scenes) > 1 else blend.stem
        method = prefs().packing
        why_not_bat = packing.bat_available() if method != "BLENDER" else "Blender packing chosen in preferences"
        if method == "BAT" and why_not_bat:
            return _fail(self, context.scene, why_not_bat)
        if why_not_bat:
            return quote_blender_packed(self, context.scene, api, name, note=why_not_bat)
        dest = Path(tempfile.mkdtemp(prefix="render-market-pack-"))

        def work(ctx: tasks.Context):
            ctx.progress("packing with blender-asset-tracer")
            try:
                pack = packing.pack_with_bat(blend, dest)
            except PackError as exc:
                shutil.rmtree(dest, ignore_errors=True)
                if method == "BAT":
                    raise
                return {"fallback": str(exc)}
            return _upload_and_quote(ctx, api, pack, name=name)

        def done(scene, result) -> None:
            if "fallback" in result:  # BAT could not read the file: Blender's own packing, on the main thread
                quote_blender_packed(None, scene, api, name, note=result["fallback"])
                return
            _quoted(scene, result)

        return _start(self, context.scene, "quote", work, on_done=done, busy="Quote")


def quote_blender_packed(op, scene, api: Client, name: str, *, note: str) -> set[str]:
    """The fallback: Blender's own packing (main thread), then the same upload and quote in the background."""
    dest = Path(tempfile.mkdtemp(prefix="render-market-pack-"))
    try:
        with bpy.context.temp_override(scene=scene):
            pack = packing.pack_with_blender(dest)
    except RuntimeError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        return _fail(op, scene, f"Blender could not pack the file: {exc}")
    pack.notes.insert(0, f"{note}: packed with Blender's own pack_all instead")
    return _start(
        op, scene, "quote", lambda ctx: _upload_and_quote(ctx, api, pack, name=name), on_done=_quoted, busy="Quote"
    )


def _quoted(scene, result: dict[str, Any]) -> None:
    rm = scene.render_market
    rm.scene_id, rm.job_id = result["scene"]["id"], result["job"]["id"]
    state.save(scene, "upload", result["upload"])
    state.save(
        scene,
        "quote",
        {
            **(result["job"].get("quote") or {}),
            "expires_at": result["job"].get("quote_expires_at"),
            "warnings": result["scene"].get("warnings") or [],
        },
    )
    state.save(scene, "job", result["job"])
    state.save(scene, "download", {})
    rm.status = f"quoted: job {rm.job_id}, accept it with Submit"


# Submit, watch, cancel ------------------------------------------------------------------------------------------


class RENDER_MARKET_OT_submit(_ServerOperator, bpy.types.Operator):
    """Accept the quote: the total is held in escrow from your wallet and the frames are queued"""

    bl_idname = "render_market.submit"
    bl_label = "Submit"

    @classmethod
    def poll(cls, context):
        return context.scene.render_market.job_id > 0

    def run(self, context, api):
        job_id = context.scene.render_market.job_id

        def done(scene, job) -> None:
            state.save(scene, "job", job)
            scene.render_market.status = f"job {job_id} accepted: {job['state']}"
            start_watch(None, scene, api, job_id)

        return _start(self, context.scene, "submit", lambda ctx: api.accept(job_id), on_done=done, busy="Submit")


def _watch(ctx: tasks.Context, api: Client, job_id: int) -> dict[str, Any]:
    while True:
        job = api.job(job_id)
        p = state.progress(job)
        ctx.progress(f"{p['state']}: {p['frames_done']}/{p['frames_total']} frames done", job=job)
        if job["state"] in state.TERMINAL or job["state"] == "quoted":
            return job
        ctx.sleep(WATCH_EVERY_S)


def start_watch(op, scene, api: Client, job_id: int) -> set[str]:
    def done(scene, job) -> None:
        state.save(scene, "job", job)
        scene.render_market.status = f"job {job_id} {job['state']}"

    return _start(op, scene, "watch", lambda ctx: _watch(ctx, api, job_id), on_done=done, busy="Watching")


class RENDER_MARKET_OT_watch(_ServerOperator, bpy.types.Operator):
    """Follow the job's progress until it ends (frames done, cost so far, nodes, failures)"""

    bl_idname = "render_market.watch"
    bl_label = "Refresh"

    @classmethod
    def poll(cls, context):
        return context.scene.render_market.job_id > 0

    def run(self, context, api):
        return start_watch(self, context.scene, api, context.scene.render_market.job_id)


class RENDER_MARKET_OT_cancel(_ServerOperator, bpy.types.Operator):
    """Cancel the job: frames not rendered yet are refunded"""

    bl_idname = "render_market.cancel"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context):
        return context.scene.render_market.job_id > 0

    def run(self, context, api):
        job_id = context.scene.render_market.job_id

        def done(scene, outcome) -> None:
            state.save(scene, "job", outcome["job"])
            scene.render_market.status = f"job {job_id} cancelled, {state.tokens(outcome['refunded'])} refunded"

        return _start(self, context.scene, "cancel", lambda ctx: api.cancel(job_id), on_done=done, busy="Cancel")


# Download -------------------------------------------------------------------------------------------------------


def frame_targets(scene, numbers: list[int]) -> dict[int, str]:
    """Where Blender itself would write each frame (the output path, with #### or the frame appended)."""
    return {n: scene.render.frame_path(frame=n) for n in numbers}


def extract_frames(archive: Path, *, targets: dict[int, str], fallback_dir: Path) -> list[str]:
    """Unpack the frames zip: frame N to Blender's own output path for N (the server's extension), anything else
    (tiles of an unfinished still) by its bare name into the output folder. Names are never trusted as paths."""
    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = PurePosixPath(info.filename.replace("\\", "/")).name
            match = _FRAME_MEMBER.match(name)
            if match and int(match.group(1)) in targets:
                stem, _ = os.path.splitext(targets[int(match.group(1))])
                dest = Path(f"{stem}.{match.group(2)}")
            else:
                dest = fallback_dir / re.sub(r"[^A-Za-z0-9._-]", "_", name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            written.append(str(dest))
    return written


class RENDER_MARKET_OT_download(_ServerOperator, bpy.types.Operator):
    """Download the finished frames into the scene's output path (Output properties)"""

    bl_idname = "render_market.download"
    bl_label = "Download"

    @classmethod
    def poll(cls, context):
        return context.scene.render_market.job_id > 0

    def run(self, context, api):
        scene = context.scene
        job_id = scene.render_market.job_id
        job = state.load(scene, "job")
        numbers = sorted({f["number"] for f in job.get("frames") or []}) or list(
            range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step))
        )
        targets = frame_targets(scene, numbers)
        folder = Path(bpy.path.abspath(scene.render.filepath))
        folder = folder if scene.render.filepath.endswith(("/", "\\")) else folder.parent

        def work(ctx: tasks.Context):
            with tempfile.TemporaryDirectory(prefix="render-market-download-") as tmp:
                archive = Path(tmp) / "frames.zip"
                size = api.download(job_id, archive, progress=lambda n: ctx.progress(f"downloading: {n:,} bytes"))
                files = extract_frames(archive, targets=targets, fallback_dir=folder)
            return {"bytes": size, "files": files, "folder": str(folder)}

        def done(scene, result) -> None:
            state.save(scene, "download", result)
            scene.render_market.status = f"downloaded {len(result['files'])} file(s) into {result['folder']}"

        return _start(self, context.scene, "download", work, on_done=done, busy="Download")


classes = (
    RENDER_MARKET_OT_check,
    RENDER_MARKET_OT_quote,
    RENDER_MARKET_OT_submit,
    RENDER_MARKET_OT_watch,
    RENDER_MARKET_OT_cancel,
    RENDER_MARKET_OT_download,
)
