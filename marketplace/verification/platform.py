"""The platform verifier: renders crops (and canary answers) itself, with the agent's sandboxed renderer.

Used when no node of another provider is idle (a one-provider market, a demo on one machine), to break a
tie when a node's crop disagrees with the candidate, and to render canary answers. The scene comes from
storage, is checked against its SHA-256 and unpacked like an agent would; one sandboxed Blender per worker
process keeps the last scene loaded, so consecutive crops of a job pay the scene load once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from marketplace import blobs
from marketplace.scenes.series import market_python
from marketplace.verification import conf

log = logging.getLogger(__name__)
_lock = threading.Lock()
_renderer = None  # workers.blend.Renderer, created on first use
_loaded = ""  # "<series>:<scene sha256>" loaded in it
_last_render = 0.0  # time.monotonic() of its last use


def scene_bundle(*, sha256: str, kind: str, storage_key: str, blend_path: str) -> tuple[Path, Path]:
    """(blend file, bundle root) of a stored scene, downloaded and unpacked once per worker machine.

    Worker processes render crops of the same scene at the same time: a file lock per scene keeps one from
    unpacking the bundle while another is loading it.
    """
    locks = conf.WORK_DIR / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{sha256}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _scene_bundle_locked(sha256=sha256, kind=kind, storage_key=storage_key, blend_path=blend_path)


def _scene_bundle_locked(*, sha256: str, kind: str, storage_key: str, blend_path: str) -> tuple[Path, Path]:
    from workers.bundle import bundle_key, bundle_ready

    root = conf.WORK_DIR / "scenes" / bundle_key(sha256=sha256, kind=kind, blend_path=blend_path)
    archive = conf.WORK_DIR / "downloads" / f"{sha256}.{kind}"
    if not (root / ".complete").exists() and not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=archive.parent, delete=False) as tmp, blobs.blob_open(storage_key) as f:
            while chunk := f.read(blobs.CHUNK):
                digest.update(chunk)
                tmp.write(chunk)
        if digest.hexdigest() != sha256:
            Path(tmp.name).unlink()
            raise ValueError(f"stored scene {storage_key} does not match its SHA-256")
        Path(tmp.name).replace(archive)
    return bundle_ready(archive=archive, kind=kind, blend_path=blend_path, root=root), root


def stored_scene(scene: Any) -> dict[str, str]:
    """What `render` needs of a `scenes.Scene`: where it is stored and what it is."""
    return {
        "sha256": scene.sha256,
        "kind": scene.kind,
        "storage_key": scene.storage_key,
        "blend_path": scene.blend_path,
    }


def render(*, scene: dict[str, str], manifest: dict[str, Any]) -> bytes:
    """Render `manifest` of `scene` (sha256, kind, storage_key, blend_path) on this machine's CPU."""
    with _lock, tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        # The job's Blender series renders its crops: another series would not reproduce its pixels.
        renderer, ready = _ready(scene=scene, series=manifest.get("blender_series") or "")
        t_render = time.monotonic()
        ext = "exr" if manifest.get("file_format") == "OPEN_EXR" else "png"
        out = Path(tmp) / f"out.{ext}"
        try:
            # Never a GPU: the platform's answer must not depend on which worker machine rendered it.
            renderer.render({**manifest, "device": "CPU", "device_ids": None, "threads": 0}, out)
        except Exception:
            renderer.close()  # a fresh Blender next time, whatever state this one was left in
            raise
        # Where the verifier's time goes (bench_farm reads it): a cold one started Blender or loaded the scene.
        log.info(
            "event=platform_render",
            extra={**ready, "render_s": round(time.monotonic() - t_render, 3)},
        )
        return out.read_bytes()


def prewarm(*, scene: dict[str, str], series: str) -> bool:
    """Load `scene` ahead of its first crop (a job was accepted), unless this process's Blender is busy with
    another scene: one it used in the last PLATFORM_PREWARM_KEEP_S seconds stays. True when it loaded."""
    with _lock:
        other = _loaded and _loaded != f"{series}:{scene['sha256']}"
        if other and time.monotonic() - _last_render < conf.PLATFORM_PREWARM_KEEP_S:
            return False
        _, ready = _ready(scene=scene, series=series)
        if ready["scene_loaded"]:
            log.info("event=platform_prewarm", extra=ready)
        return bool(ready["scene_loaded"])


def _ready(*, scene: dict[str, str], series: str) -> tuple[Any, dict[str, Any]]:
    """This process's Blender for `series` with `scene` loaded (started and loaded when it was not), and what
    that took. Called with `_lock` held."""
    from workers.blend import Renderer

    global _renderer, _loaded, _last_render  # noqa: PLW0603 - one sandboxed Blender per worker process
    t0 = time.monotonic()
    blend, root = scene_bundle(**scene)
    t_load = time.monotonic()
    python = market_python(series)
    wanted = f"{series}:{scene['sha256']}"
    if _renderer is not None and _renderer.python != python:
        _renderer.close()
        _renderer = None
    if _renderer is None:
        _renderer = Renderer(timeout_s=conf.PLATFORM_RENDER_TIMEOUT_S, python=python)
    starts, cold = _renderer.starts, _loaded != wanted or not _renderer.alive
    if cold:
        _loaded = ""
        try:
            _renderer.load(blend, root)
        except Exception:
            _renderer.close()
            raise
        _loaded = wanted
    _last_render = time.monotonic()
    ready = {
        "scene": scene["sha256"][:12],
        "blender_started": _renderer.starts > starts,
        "scene_loaded": cold,
        "scene_s": round(t_load - t0, 3),
        "load_s": round(_last_render - t_load, 3),
    }
    return _renderer, ready


def close() -> None:
    """Stop this process's Blender (tests, worker shutdown)."""
    with _lock:
        if _renderer is not None:
            _renderer.close()
