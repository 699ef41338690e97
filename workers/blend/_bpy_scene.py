"""bpy-side helpers shared by the inspection and render children. Imported only inside sandboxed children.

Everything here *reads* the loaded file: nothing from the file is executed. Files are opened with
auto-exec off and `use_scripts=False`, so registered text blocks never run, Python drivers are not
evaluated and no handlers get registered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import bpy

from workers.blend.sandbox import BlendFileError

log = logging.getLogger(__name__)

GEOMETRY_IMPORT_NODES = (
    "GeometryNodeImportCSV",
    "GeometryNodeImportOBJ",
    "GeometryNodeImportPLY",
    "GeometryNodeImportSTL",
    "GeometryNodeImportText",
    "GeometryNodeImportVDB",
)
_ID_KIND = {
    "IMAGE": "image",
    "MOVIECLIP": "movie_clip",
    "SOUND": "sound",
    "FONT": "font",
    "CACHEFILE": "cache_file",
    "VOLUME": "volume",
    "LIBRARY": "library",
    "SCENE": "sequencer",
    "OBJECT": "object_cache",
    "CAMERA": "osl_script",  # a custom (OSL) camera's external script
}
# Modifiers whose file path Blender's own walk lists under their object: the kind to report it as.
# modifier type -> (kind of path, the modifier's path or "")
_MODIFIER_PATHS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "FLUID": ("fluid_cache", lambda m: m.domain_settings.cache_directory if m.fluid_type == "DOMAIN" else ""),
    "OCEAN": ("ocean_cache", lambda m: m.filepath),
    "MESH_CACHE": ("mesh_cache", lambda m: m.filepath),
}


def open_blend(path: str) -> None:
    """Open a .blend with every way of running its code switched off."""
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    try:
        # load_ui=False: the file's screens/workspaces are irrelevant; use_scripts=False: never autorun.
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)
    except RuntimeError as exc:
        # Name the file, not where it is stored.
        msg = str(exc).strip().replace("\n", " ").replace(path, os.path.basename(path))
        if "format is not supported" in msg:
            raise BlendFileError(f"not a Blender file: {msg}")
        raise BlendFileError(f"corrupt or truncated .blend: {msg}")
    if os.path.realpath(bpy.data.filepath) != os.path.realpath(path):
        raise BlendFileError("corrupt or truncated .blend: Blender did not load the file")


def reset_empty() -> None:
    """Drop the loaded scene (after a refusal, nothing of it may stay around to be rendered)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)


def id_label(idb: Any) -> str:
    return str(getattr(idb, "name_full", None) or idb.name)


def library_abspath(lib: Any) -> str:
    """Absolute path of a library file; nested libraries are relative to their parent library."""
    parent = getattr(lib, "parent", None)
    return os.path.normpath(str(bpy.path.abspath(lib.filepath, library=parent)))


BUNDLED_PREFIX = "<blender>/"


def bundled_asset_path(absolute: str) -> str | None:
    """`<blender>/assets/brushes/x.blend` when `absolute` is inside this Blender's own bundled asset
    libraries (the essentials brushes and node assets Blender 4.3+ files link), else None. Such a path is
    the rendering runtime's own copy, whatever the artist's install was: never an offence, and never shown
    with the host's install path."""
    assets = os.path.realpath(os.path.join(bpy.utils.system_resource("DATAFILES"), "assets"))
    real = os.path.realpath(absolute)
    if os.path.commonpath([real, assets]) != assets:
        return None
    return BUNDLED_PREFIX + os.path.relpath(real, os.path.dirname(assets))


def library_is_bundled(lib: Any) -> bool:
    return bundled_asset_path(library_abspath(lib)) is not None


def _is_packed(idb: Any) -> bool:
    if getattr(idb, "packed_file", None) is not None:
        return True
    files = getattr(idb, "packed_files", None)
    return files is not None and len(files) > 0


def iter_node_trees() -> Iterator[tuple[str, Any]]:
    """(owner label, node tree) for every node tree: embedded ones and groups, each once."""
    seen: set[int] = set()
    owners: list[tuple[str, Any]] = []
    for coll, label in (
        (bpy.data.materials, "Material"),
        (bpy.data.worlds, "World"),
        (bpy.data.lights, "Light"),
        (bpy.data.textures, "Texture"),
        (bpy.data.linestyles, "LineStyle"),
    ):
        for idb in coll:
            tree = getattr(idb, "node_tree", None)
            if tree is not None:
                owners.append((f"{label} {id_label(idb)!r}", tree))
    for scene in bpy.data.scenes:
        tree = getattr(scene, "compositing_node_group", None)
        if tree is not None:
            owners.append((f"Scene {id_label(scene)!r} compositor", tree))
    owners.extend((f"NodeGroup {id_label(g)!r}", g) for g in bpy.data.node_groups)
    for label, tree in owners:
        key = tree.as_pointer()
        if key not in seen:
            seen.add(key)
            yield label, tree


def node_findings() -> dict[str, list[dict[str, Any]]]:
    """OSL script nodes, IES nodes, geometry-nodes file imports and compositor File Output nodes."""
    osl, ies, imports, file_outputs = [], [], [], []
    for owner, tree in iter_node_trees():
        for node in tree.nodes:
            where = f"{owner} / node {node.name!r}"
            idname = node.bl_idname
            if idname == "ShaderNodeScript":
                script = node.script.name if node.mode == "INTERNAL" and node.script else None
                osl.append(
                    {
                        "where": where,
                        "mode": node.mode,
                        "script": script,
                        "filepath": node.filepath if node.mode == "EXTERNAL" else None,
                        "tree_owner": owner,
                        "base_dir": _tree_base_dir(tree),
                    }
                )
            elif idname == "ShaderNodeTexIES":
                ies.append(
                    {
                        "where": where,
                        "mode": node.mode,
                        "filepath": node.filepath if node.mode == "EXTERNAL" else None,
                        "base_dir": _tree_base_dir(tree),
                    }
                )
            elif idname in GEOMETRY_IMPORT_NODES:
                sock = node.inputs.get("Path") or (node.inputs[0] if len(node.inputs) else None)
                linked = bool(sock is not None and sock.is_linked)
                value = "" if sock is None or linked else str(getattr(sock, "default_value", ""))
                imports.append(
                    {
                        "where": where,
                        "node_type": idname,
                        "path": value,
                        "computed": linked,
                        "base_dir": _tree_base_dir(tree),
                    }
                )
            elif idname in ("CompositorNodeOutputFile",):
                file_outputs.append(
                    {
                        "where": where,
                        "base_path": str(getattr(node, "base_path", "") or getattr(node, "directory", "")),
                    }
                )
    return {"osl": osl, "ies": ies, "geometry_imports": imports, "file_outputs": file_outputs}


def _tree_base_dir(tree: Any) -> str | None:
    lib = getattr(tree, "library", None) or getattr(getattr(tree, "original", None), "library", None)
    return os.path.dirname(library_abspath(lib)) if lib is not None else None


def _id_base_dir(idb: Any) -> str | None:
    """What `//` means for a datablock's paths: its library's directory when linked (None: the .blend's)."""
    lib = getattr(idb, "library", None)
    return os.path.dirname(library_abspath(lib)) if lib is not None else None


def _point_caches(cache: Any) -> Iterator[Any]:
    """A point cache and the other caches of its stack (each may have its own external directory)."""
    items = getattr(cache, "point_caches", None)
    yield from (items if items is not None and len(items) else [cache])


def walked_refs() -> list[dict[str, Any]]:
    """Paths Blender reads that its own walk (file_path_map) does not list: Geometry Nodes bake
    directories, external point caches, proxies (the "walked" rows of paths.PATH_PROPERTIES).
    PathRef-shaped dicts, like collect_external_refs."""
    refs: list[dict[str, Any]] = []

    def add(kind: str, idb: Any, where: str, raw: str, base_dir: str | None) -> None:
        if raw:
            refs.append(
                {
                    "kind": kind,
                    "datablock": where,
                    "id_type": idb.id_type,
                    "raw_path": raw,
                    "packed": False,
                    "base_dir": base_dir,
                }
            )

    blend_stem = os.path.splitext(os.path.basename(bpy.data.filepath))[0]

    def caches(idb: Any, where: str, cache: Any) -> None:
        # Blender resolves an external cache against the main .blend, not the object's library.
        for item in _point_caches(cache):
            if item.use_external:
                add("point_cache", idb, where, item.filepath, None)
            # Cache files are `<dir>/<name>_<frame>_<index>.bphys` with the name used verbatim: Blender's
            # UI strips separators from it, a hand-edited .blend need not.
            if (item.use_external or item.use_disk_cache) and ("/" in item.name or "\\" in item.name):
                folder = item.filepath if item.use_external else f"//blendcache_{blend_stem}"
                add("point_cache", idb, f"{where} / cache name", f"{folder.rstrip('/')}/{item.name}", None)

    for ob in bpy.data.objects:
        label = id_label(ob)
        base = _id_base_dir(ob)
        for mod in ob.modifiers:
            where = f"{label} / modifier {mod.name!r}"
            if mod.type == "NODES":
                # Blender reads a bake from the modifier's directory unless the bake has its own path;
                # both are checked whenever set, whatever the bake target says today.
                add("geometry_bake", ob, where, mod.bake_directory, base)
                for bake in mod.bakes:
                    if bake.use_custom_path:
                        add("geometry_bake", ob, f"{where} / bake {bake.bake_id}", bake.directory, base)
            elif mod.type == "DYNAMIC_PAINT" and mod.canvas_settings is not None:
                for surface in mod.canvas_settings.canvas_surfaces:
                    caches(ob, f"{where} / surface {surface.name!r}", surface.point_cache)
            elif getattr(mod, "point_cache", None) is not None:  # cloth, soft body
                caches(ob, where, mod.point_cache)
        for psys in ob.particle_systems:
            caches(ob, f"{label} / particles {psys.name!r}", psys.point_cache)
    for scene in bpy.data.scenes:
        label = id_label(scene)
        world = scene.rigidbody_world
        if world is not None and world.point_cache is not None:
            caches(scene, f"{label} / rigid body world", world.point_cache)
        seq = scene.sequence_editor
        if seq is None:
            continue
        if seq.proxy_storage == "PROJECT":
            add("sequencer", scene, f"{label} / sequencer proxies", seq.proxy_dir, _id_base_dir(scene))
        for strip in getattr(seq, "strips_all", []):
            proxy = getattr(strip, "proxy", None)
            if not getattr(strip, "use_proxy", False) or proxy is None:
                continue
            where = f"{label} / strip {strip.name!r} proxy"
            if proxy.use_proxy_custom_directory:
                add("sequencer", scene, where, proxy.directory, _id_base_dir(scene))
            if proxy.use_proxy_custom_file:
                add("sequencer", scene, where, proxy.filepath, _id_base_dir(scene))
    for clip in bpy.data.movieclips:
        if clip.use_proxy and clip.use_proxy_custom_directory:
            add("movie_clip", clip, f"{id_label(clip)} proxy", clip.proxy.directory, _id_base_dir(clip))
    return refs


def _object_path_kinds() -> dict[tuple[str, str], str]:
    """(object label, raw path) -> kind, for the modifier paths Blender's walk lists under the object."""
    kinds = {}
    for ob in bpy.data.objects:
        for mod in ob.modifiers:
            known = _MODIFIER_PATHS.get(mod.type)
            if known is not None:
                raw = known[1](mod)
                if raw:
                    kinds[(id_label(ob), raw)] = known[0]
    return kinds


def collect_external_refs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every file path Blender itself would read (its bpath walk), classified; plus dynamic offences.

    Returns (refs, dynamic): refs are PathRef-shaped dicts; dynamic lists inputs whose path cannot be
    known before evaluation (geometry-nodes import nodes fed by other nodes), which are refused.
    """
    nodes = node_findings()
    by_path_kind: dict[str, str] = {}
    for row in nodes["osl"]:
        if row["filepath"]:
            by_path_kind[row["filepath"]] = "osl_script"
    for row in nodes["ies"]:
        if row["filepath"]:
            by_path_kind[row["filepath"]] = "ies"
    for row in nodes["geometry_imports"]:
        if row["path"]:
            by_path_kind[row["path"]] = "geometry_import"

    refs: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    object_kinds = _object_path_kinds()
    path_map = bpy.data.file_path_map(include_libraries=True)
    for idb, paths in path_map.items():
        lib = getattr(idb, "library", None)
        base_dir = os.path.dirname(library_abspath(lib)) if lib is not None else None
        if idb.id_type == "LIBRARY":
            parent = getattr(idb, "parent", None)
            base_dir = os.path.dirname(library_abspath(parent)) if parent is not None else None
        own_lib = os.path.normpath(bpy.path.abspath(lib.filepath, library=lib.parent)) if lib is not None else None
        for raw in sorted(paths):
            if lib is not None and os.path.normpath(bpy.path.abspath(raw, library=lib.parent)) == own_lib:
                continue  # "this ID comes from that library": listed once, as the Library datablock's own ref
            kind = by_path_kind.get(raw) or object_kinds.get((id_label(idb), raw)) or _ID_KIND.get(idb.id_type, "other")
            key = (id_label(idb), raw)
            if key in seen:
                continue
            seen.add(key)
            bundled = bundled_asset_path(
                bpy.path.abspath(raw, library=lib.parent if lib else None)
                if idb.id_type != "LIBRARY"
                else library_abspath(idb)
            )
            refs.append(
                {
                    "kind": kind,
                    "datablock": id_label(idb),
                    "id_type": idb.id_type,
                    "raw_path": bundled or raw,
                    "packed": _is_packed(idb),
                    "base_dir": None if bundled else base_dir,
                    "bundled": bundled is not None,
                }
            )
    # Belt and braces: node paths Blender's walk might not list in some version.
    for row in nodes["osl"] + nodes["ies"]:
        raw = row["filepath"]
        if raw and not any(r["raw_path"] == raw for r in refs):
            refs.append(
                {
                    "kind": by_path_kind[raw],
                    "datablock": row["where"],
                    "id_type": "NODETREE",
                    "raw_path": raw,
                    "packed": False,
                    "base_dir": row["base_dir"],
                }
            )
    for row in nodes["geometry_imports"]:
        if row["path"] and not any(r["raw_path"] == row["path"] for r in refs):
            refs.append(
                {
                    "kind": "geometry_import",
                    "datablock": row["where"],
                    "id_type": "NODETREE",
                    "raw_path": row["path"],
                    "packed": False,
                    "base_dir": row["base_dir"],
                }
            )
    refs.extend(walked_refs())
    dynamic = [
        {
            "kind": "geometry_import",
            "datablock": row["where"],
            "raw_path": "<computed>",
            "reason": "geometry-nodes file import with a path computed at evaluation time",
            "resolved": None,
        }
        for row in nodes["geometry_imports"]
        if row["computed"]
    ]
    return refs, dynamic


def iter_animated_ids() -> Iterator[Any]:
    seen: set[int] = set()
    for idb in list(bpy.data.user_map().keys()):
        if idb.as_pointer() not in seen:
            seen.add(idb.as_pointer())
            yield idb
    # Embedded node trees are not in the user map but carry their own drivers.
    for _owner, tree in iter_node_trees():
        if tree.as_pointer() not in seen:
            seen.add(tree.as_pointer())
            yield tree


def scripted_drivers() -> list[dict[str, Any]]:
    """All SCRIPTED drivers, with `simple` telling whether Blender evaluates them without Python."""
    out = []
    for idb in iter_animated_ids():
        anim = getattr(idb, "animation_data", None)
        if anim is None:
            continue
        for fc in anim.drivers:
            drv = fc.driver
            if drv.type != "SCRIPTED":
                continue
            out.append(
                {
                    "datablock": id_label(idb),
                    "id_type": getattr(idb, "id_type", "NODETREE"),
                    "data_path": fc.data_path,
                    "index": fc.array_index,
                    "expression": drv.expression,
                    "simple": bool(drv.is_simple_expression),
                    "muted": bool(fc.mute),
                    "_fcurve": fc,
                }
            )
    return out


def text_blocks() -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "use_module": bool(t.use_module),
            "lines": len(t.lines),
            "is_in_memory": bool(t.is_in_memory),
            "filepath": t.filepath or None,
        }
        for t in bpy.data.texts
    ]


def scene_facts(scene: Any) -> dict[str, Any]:
    r = scene.render
    img = r.image_settings
    engine = r.engine
    cyc = scene.cycles
    if engine == "CYCLES":
        samples = int(cyc.samples)
        use_denoising = bool(cyc.use_denoising)
        use_adaptive = bool(cyc.use_adaptive_sampling)
    else:
        eevee = getattr(scene, "eevee", None)
        samples = int(getattr(eevee, "taa_render_samples", 0) or 0)
        use_denoising = False
        use_adaptive = False
    pct = int(r.resolution_percentage)
    start, end, step = int(scene.frame_start), int(scene.frame_end), max(1, int(scene.frame_step))
    cameras = sorted(o.name for o in scene.objects if o.type == "CAMERA")
    output: dict[str, Any] = {
        "file_format": img.file_format,
        "color_depth": img.color_depth,
        "color_mode": img.color_mode,
        "media_type": getattr(img, "media_type", None),
    }
    if img.file_format.startswith("OPEN_EXR"):
        output["exr_codec"] = img.exr_codec
    marker_cams = sorted({m.camera.name for m in scene.timeline_markers if m.camera is not None})
    comp_tree = getattr(scene, "compositing_node_group", None)
    seq = scene.sequence_editor
    strips = getattr(seq, "strips_all", None) if seq is not None else None
    return {
        "scene": scene.name,
        "engine": engine,
        "frame_start": start,
        "frame_end": end,
        "frame_step": step,
        "frame_count": len(range(start, end + 1, step)),
        "fps": round(r.fps / (r.fps_base or 1.0), 6),
        "resolution_x": int(r.resolution_x),
        "resolution_y": int(r.resolution_y),
        "resolution_percentage": pct,
        # Blender's own integer arithmetic (render pipeline: size * xsch / 100).
        "effective_width": int(r.resolution_x) * pct // 100,
        "effective_height": int(r.resolution_y) * pct // 100,
        "samples": samples,
        "use_denoising": use_denoising,
        "use_adaptive_sampling": use_adaptive,
        "seed": int(cyc.seed) if engine == "CYCLES" else None,
        "use_animated_seed": bool(cyc.use_animated_seed) if engine == "CYCLES" else None,
        "device": cyc.device if engine == "CYCLES" else None,
        "film_transparent": bool(r.film_transparent),
        "use_motion_blur": bool(r.use_motion_blur),
        "cameras": cameras,
        "active_camera": scene.camera.name if scene.camera is not None else None,
        "marker_cameras": marker_cams,
        "view_layers": [vl.name for vl in scene.view_layers if vl.use],
        "output_format": output,
        "uses_osl": bool(cyc.shading_system) if engine == "CYCLES" else False,
        "uses_compositing": bool(r.use_compositing and comp_tree is not None and len(comp_tree.nodes) > 0),
        "uses_sequencer": bool(r.use_sequencer and strips is not None and len(strips) > 0),
    }
