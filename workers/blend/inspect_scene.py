"""Inspect an uploaded .blend: read facts in a sandboxed bpy child, never execute anything from it.

Parent API: `inspect_scene(blend_path, bundle_root=...)` (the marketplace calls it from a Celery task).
Child: `python -m workers.blend.inspect_scene <blend_path>` opens the file with scripts off and reports.
"""

from __future__ import annotations

import gzip
import logging
import os
import sys
import types
import zlib
from pathlib import Path
from typing import Any

from workers.blend.paths import check_external_paths, describe_refs
from workers.blend.sandbox import BlendFileError, Limits, child_main, run_bpy_module

log = logging.getLogger("workers.blend.inspect_scene")  # by name: it runs as __main__ in its child

BLEND_MAGIC = b"BLENDER"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
# Blender writes zstd .blend files in the "seekable" format: a skippable frame with a seek table ends
# the file, closed by this footer magic. A truncated file has lost it.
ZSTD_SEEKABLE_FOOTER = b"\xb1\xea\x92\x8f"
GZIP_SCAN_LIMIT = 4 << 30
# Advisory thresholds for the `warnings` list; the marketplace decides what to accept.
WARN_MAX_SIDE = 16384
WARN_MAX_FRAMES = 10000


def check_blend_file(path: Path) -> str:
    """Cheap pre-check of the container: returns "uncompressed", "zstd" or "gzip".

    Raises BlendFileError("not a Blender file" / "corrupt or truncated .blend").
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 64))
            tail = f.read(64)
    except FileNotFoundError:
        raise BlendFileError(f"not a Blender file: {path.name} does not exist")
    except IsADirectoryError:
        raise BlendFileError(f"not a Blender file: {path.name} is a directory")
    if head.startswith(BLEND_MAGIC):
        if size < 64 or b"ENDB" not in tail:
            raise BlendFileError("corrupt or truncated .blend: the end-of-file block is missing")
        return "uncompressed"
    if head.startswith(ZSTD_MAGIC):
        if not tail.endswith(ZSTD_SEEKABLE_FOOTER):
            # Not written by Blender (or cut short): Blender itself will judge it.
            log.info("event=zstd_without_seek_table: Blender itself will judge it", extra={"file": path.name})
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        _check_gzip(path)
        return "gzip"
    if BLEND_MAGIC.startswith(head[: len(BLEND_MAGIC)]) and head:
        raise BlendFileError("corrupt or truncated .blend: the file ends inside its header")
    raise BlendFileError("not a Blender file (no BLENDER header, not zstd or gzip compressed)")


def _check_gzip(path: Path) -> None:
    """Blender < 3.0 compressed with gzip: stream through it (constant memory) to find a truncation."""
    total = 0
    first = b""
    last = b""
    try:
        with gzip.open(path, "rb") as f:
            while total < GZIP_SCAN_LIMIT:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                if not first:
                    first = chunk[:16]
                total += len(chunk)
                last = (last + chunk)[-64:]
    except (EOFError, OSError, zlib.error) as exc:
        raise BlendFileError(f"corrupt or truncated .blend: gzip stream broken ({exc})")
    if not first.startswith(BLEND_MAGIC):
        raise BlendFileError("not a Blender file (gzip data without a BLENDER header)")
    if total < GZIP_SCAN_LIMIT and b"ENDB" not in last:
        raise BlendFileError("corrupt or truncated .blend: the end-of-file block is missing")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def check_blend_location(blend_path: Path, bundle_root: Path) -> tuple[Path, Path]:
    """Absolute (blend, root); the .blend itself must be a file inside its bundle, symlinks included."""
    root = Path(os.path.abspath(bundle_root))
    blend = Path(os.path.abspath(blend_path))
    if not root.is_dir():
        raise BlendFileError(f"bundle root {root} is not a directory")
    if not _inside(blend, root) or not _inside(Path(os.path.realpath(blend)), Path(os.path.realpath(root))):
        raise BlendFileError("the .blend is not inside its bundle")
    return blend, root


def _warnings(report: dict[str, Any]) -> list[str]:
    w = []
    if report["engine"] != "CYCLES":
        w.append(f"engine {report['engine']} is not supported for rendering (CYCLES only)")
    if not report["cameras"]:
        w.append("the scene has no camera")
    elif report["active_camera"] is None:
        w.append("the scene has no active camera")
    if max(report["effective_width"], report["effective_height"]) > WARN_MAX_SIDE:
        w.append(f"effective resolution {report['effective_width']}x{report['effective_height']} is huge")
    if report["frame_count"] > WARN_MAX_FRAMES:
        w.append(f"{report['frame_count']} frames in the range")
    if report["frame_count"] == 0:
        w.append("empty frame range")
    if report["use_denoising"]:
        w.append("denoising is on: crops are verified against the noisy (pre-denoise) pass")
    if report["use_adaptive_sampling"]:
        w.append("adaptive sampling is on: it is switched off for rendering (determinism)")
    for t in report["text_blocks"]:
        if t["use_module"]:
            w.append(f"text block {t['name']!r} is registered to run on load; it was not run and never will be")
    if report["python_drivers"]:
        w.append(f"{len(report['python_drivers'])} Python driver(s); they are muted for rendering")
    if report["uses_osl"] or report["has_osl_script_nodes"]:
        w.append("OSL script nodes/shading: OSL is switched off for rendering")
    if report["outside_paths"]:
        w.append(f"{len(report['outside_paths'])} file reference(s) outside the upload; rendering is refused")
    if report["missing_files"]:
        w.append(f"{len(report['missing_files'])} referenced file(s) missing from the upload")
    if report["has_linked_libraries"]:
        w.append("the scene links other .blend libraries")
    if report["uses_compositing"]:
        w.append("compositing is ignored: frames are the raw render")
    if report["uses_sequencer"]:
        w.append("the video sequencer is ignored")
    if len(report["view_layers"]) > 1:
        w.append("several view layers: only the active one is rendered")
    return w


def inspect_scene(
    blend_path: Path, *, bundle_root: Path, timeout_s: float = 60, memory_mb: int = 2048, python: Path | None = None
) -> dict[str, Any]:
    """Report the facts of an uploaded scene (JSON-able); see the module docs for the keys.

    Raises BlendFileError for files that are not (complete) .blend files, SandboxError when the bpy child
    hits its time/memory limit or crashes.
    """
    blend, root = check_blend_location(Path(blend_path), Path(bundle_root))
    compression = check_blend_file(blend)
    job = run_bpy_module(
        "inspect_scene",
        [str(blend)],
        limits=Limits(timeout_s=timeout_s, memory_mb=memory_mb, python=python),
        read_paths=[root],
    )
    report = finish_report(job.result, bundle_root=root, blend_dir=blend.parent)
    report["compression"] = compression
    report["inspection"] = {"seconds": round(job.seconds, 3), "peak_rss_mb": round(job.peak_rss_mb, 1)}
    return report


def finish_report(report: dict[str, Any], *, bundle_root: Path, blend_dir: Path) -> dict[str, Any]:
    """Judge the child's raw references against the bundle (also used by the Blender add-on's Check)."""
    root = bundle_root
    refs = report.pop("refs")
    dynamic = report.pop("dynamic_offences")
    report["external_files"] = describe_refs(refs, bundle_root=root, blend_dir=blend_dir)
    report["missing_files"] = [
        row for row in report["external_files"] if row["inside_bundle"] and not row["exists"] and not row["packed"]
    ]
    report["outside_paths"] = [
        o.as_dict() for o in check_external_paths(refs, bundle_root=root, blend_dir=blend_dir)
    ] + dynamic
    report["warnings"] = _warnings(report)
    return report


def _child(argv: list[str]) -> dict[str, Any]:
    from workers.blend import _bpy_scene as bs

    bs.open_blend(argv[0])
    return loaded_report()


def loaded_report() -> dict[str, Any]:
    """The facts of the file loaded in this Blender (the child's, or the artist's own in the add-on)."""
    import bpy

    from workers.blend import _bpy_scene as bs

    scene = bpy.context.scene
    facts = bs.scene_facts(scene)
    refs, dynamic = bs.collect_external_refs()
    nodes = bs.node_findings()
    drivers = bs.scripted_drivers()
    texts = bs.text_blocks()
    version = tuple(bpy.data.version)
    return {
        "blender_version_saved": f"{version[0]}.{version[1]}",
        "blender_file_subversion": version[2],
        "blender_version": bpy.app.version_string,
        "saved_with_newer_blender": version > tuple(bpy.app.version_file),
        **facts,
        "scenes": [s.name for s in bpy.data.scenes],
        "text_blocks": texts,
        "registered_text_blocks": [t["name"] for t in texts if t["use_module"]],
        "has_osl_script_nodes": bool(nodes["osl"]),
        "osl_script_nodes": [
            {"where": n["where"], "mode": n["mode"], "script": n["script"], "filepath": n["filepath"]}
            for n in nodes["osl"]
        ],
        "python_drivers": [
            {k: d[k] for k in ("datablock", "id_type", "data_path", "index", "expression")}
            for d in drivers
            if not d["simple"]
        ],
        "scripted_drivers_simple": sum(1 for d in drivers if d["simple"]),
        "geometry_import_nodes": [
            {k: n[k] for k in ("where", "node_type", "path", "computed")} for n in nodes["geometry_imports"]
        ],
        "file_output_nodes": [n["where"] for n in nodes["file_outputs"]],
        # Blender's own bundled asset libraries (essentials brushes, node assets) are not the artist's.
        "libraries": [
            {"name": lib.name, "raw_path": lib.filepath, "packed": lib.packed_file is not None}
            for lib in bpy.data.libraries
            if not bs.library_is_bundled(lib)
        ],
        "bundled_libraries": sorted(lib.name for lib in bpy.data.libraries if bs.library_is_bundled(lib)),
        "has_linked_libraries": any(not bs.library_is_bundled(lib) for lib in bpy.data.libraries),
        "refs": refs,
        "dynamic_offences": dynamic,
    }


class _CallableModule(types.ModuleType):
    """`workers.blend.inspect_scene` is both this module and the public function: make either callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return inspect_scene(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    child_main(_child)
