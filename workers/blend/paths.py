"""Policy for a scene's external file references. Pure Python: no bpy, usable anywhere.

A scene may only read files inside its own bundle (the upload: a .blend or an unpacked zip).
Blender writes relative paths as `//sub/file.png`, meaning "relative to the directory of the .blend"
(for data linked from a library: relative to that library's .blend). Everything else is an offence:
absolute paths, `..` escapes, paths relative to the process' working directory, Windows drive/UNC
paths, and symlinks that lead out of the bundle. A GPU owner's files must never end up in a frame.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Kinds of external reference the bpy side reports (see _bpy_scene.collect_external_refs).
KINDS = (
    "image",
    "movie_clip",
    "sound",
    "font",
    "cache_file",
    "volume",
    "point_cache",
    "fluid_cache",
    "geometry_bake",
    "ocean_cache",
    "mesh_cache",
    "library",
    "osl_script",
    "ies",
    "sequencer",
    "geometry_import",
    "other",
)
# Every file or directory path property of Blender's RNA (bpy.types; subtypes FILE_PATH, DIR_PATH and
# FILE_NAME) and what judges it:
#   bpath   listed by Blender's own walk (bpy.data.file_path_map), see _bpy_scene.collect_external_refs
#   walked  missed by that walk, listed by _bpy_scene.walked_refs
#   nodes   node inputs (import nodes, their group inputs): _bpy_scene.node_findings; a path fed by
#           another node or a group input is computed at evaluation time and refused outright
#   output  written, never read, by a render (the render server sets its own output path)
#   ui      preferences, editors, assets, runtime read-only views: not data a .blend can bring along
# tests/workers/test_blend_external_kinds.py fails when a Blender upgrade adds one missing here.
PATH_PROPERTIES = {
    "CacheFile.filepath": "bpath",
    "CacheFileLayer.filepath": "bpath",
    "Camera.custom_filepath": "bpath",
    "FluidDomainSettings.cache_directory": "bpath",
    "Image.filepath": "bpath",
    "Image.filepath_raw": "bpath",
    "ImagePackedFile.filepath": "bpath",
    "ImageStrip.directory": "bpath",
    "Library.filepath": "bpath",
    "MeshCacheModifier.filepath": "bpath",
    "MovieClip.filepath": "bpath",
    "MovieStrip.filepath": "bpath",
    "MultiresModifier.filepath": "bpath",  # the mesh's external corner data: listed under the Mesh
    "NodeSocketStringFilePath.default_value": "nodes",
    "OceanModifier.filepath": "bpath",
    "ShaderNodeScript.filepath": "bpath",
    "ShaderNodeTexIES.filepath": "bpath",
    "Sound.filepath": "bpath",
    "StripElement.filename": "bpath",  # an image strip's files: directory + filename
    "VectorFont.filepath": "bpath",
    "Volume.filepath": "bpath",
    "NodesModifier.bake_directory": "walked",
    "NodesModifierBake.directory": "walked",
    "PointCache.filepath": "walked",
    "PointCacheItem.filepath": "walked",
    "MovieClipProxy.directory": "walked",
    "StripProxy.directory": "walked",
    "StripProxy.filepath": "walked",
    "SequenceEditor.proxy_dir": "walked",
    "NodeTreeInterfaceSocketStringFilePath.default_value": "nodes",
    "RenderSettings.filepath": "output",
    "CompositorNodeOutputFile.directory": "output",
    "CompositorNodeOutputFile.file_name": "output",
    "DynamicPaintSurface.image_output_path": "output",  # written by the paint bake operator only
    "BakeSettings.filepath": "output",  # texture baking operator only
    "CollectionExport.filepath": "output",  # exporters, run by an operator only
    "BlendData.filepath": "ui",  # the open file itself
    "BlendImportContextLibrary.filepath": "ui",
    "LibraryWeakReference.filepath": "ui",  # where an appended asset came from: never read
    "LibraryWeakReference.id_name": "ui",
    "VolumeGrids.frame_filepath": "ui",  # read-only view of Volume.filepath
    "PathCompare.path": "ui",
    "Theme.filepath": "ui",
}
UI_STRUCT_PREFIXES = (
    "Preferences",
    "FileSelect",
    "FileAssetSelect",
    "FileBrowser",
    "Operator",
    "Addon",
    "Asset",
    "UserAsset",
    "UserExtensionRepo",
    "Script",
    "Studio",
    "SpaceFile",
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEQUENCE_TOKENS = ("#", "<UDIM>", "<UVTILE>")


@dataclass(frozen=True)
class PathRef:
    """One file path a datablock may read. `base_dir`: what `//` means for it (None: the .blend's dir)."""

    kind: str
    datablock: str
    raw_path: str
    packed: bool = False
    base_dir: str | None = None
    # Inside the rendering Blender's own bundled asset libraries (see _bpy_scene.bundled_asset_path).
    bundled: bool = False

    @classmethod
    def from_obj(cls, obj: PathRef | Mapping[str, Any]) -> PathRef:
        if isinstance(obj, PathRef):
            return obj
        return cls(
            kind=str(obj.get("kind", "other")),
            datablock=str(obj.get("datablock", "")),
            raw_path=str(obj.get("raw_path", obj.get("path", ""))),
            packed=bool(obj.get("packed", False)),
            base_dir=obj.get("base_dir"),
            bundled=bool(obj.get("bundled", False)),
        )


@dataclass(frozen=True)
class Offence:
    kind: str
    datablock: str
    raw_path: str
    reason: str
    resolved: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.kind} {self.datablock!r}: {self.raw_path!r} ({self.reason})"


@dataclass(frozen=True)
class Resolution:
    """Where a raw Blender path points. `reason` is set (and inside_bundle False) for offences."""

    resolved: str | None
    relative: str | None
    inside_bundle: bool
    exists: bool
    reason: str | None = None


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def _exists(path: str) -> bool:
    # Sequences and UDIM sets name many files: the directory holding them is what must exist.
    if any(tok in os.path.basename(path) for tok in _SEQUENCE_TOKENS):
        return os.path.isdir(os.path.dirname(path))
    return os.path.exists(path)


def _resolve_one(raw: str, *, root: str, real_root: str, base: str) -> Resolution:
    if "\x00" in raw:
        return Resolution(None, None, False, False, "invalid path (NUL byte)")
    if raw.startswith(("\\\\", "//?/", "//./")) or (raw.startswith("//") and raw[2:3] in ("\\",)):
        return Resolution(None, None, False, False, "UNC/network path")
    if _DRIVE.match(raw) or _DRIVE.match(raw[2:] if raw.startswith("//") else ""):
        return Resolution(None, None, False, False, "Windows drive path")
    if not raw.startswith("//"):
        if raw.startswith("/"):
            return Resolution(raw, None, False, False, "absolute path")
        # Blender resolves these against the process' working directory, not the .blend.
        return Resolution(None, None, False, False, "relative path not anchored to the .blend (must start with //)")
    rel = raw[2:]
    if rel.startswith("/"):
        return Resolution(None, None, False, False, "absolute path after //")
    joined = os.path.join(base, rel)
    lexical = os.path.normpath(joined)
    if not _inside(lexical, root):
        return Resolution(lexical, None, False, False, "escapes the bundle (..)")
    real = os.path.realpath(joined)
    if not _inside(real, real_root):
        return Resolution(real, None, False, False, "symlink leads outside the bundle")
    return Resolution(lexical, os.path.relpath(lexical, root), True, _exists(real))


def resolve_path(
    raw: str,
    *,
    bundle_root: Path | str,
    blend_dir: Path | str | None = None,
    base_dir: Path | str | None = None,
) -> Resolution:
    """Resolve a raw Blender path the way Blender would and judge it against the bundle.

    Paths outside the bundle are never probed (`exists` False): a report must not reveal which files
    exist on the machine that inspected it.

    A path with backslashes is judged both as written (Linux: part of a file name) and with them as
    separators (how a Windows machine would read it); it must be inside the bundle either way.
    """
    root = os.path.normpath(os.path.abspath(bundle_root))
    real_root = os.path.realpath(root)
    base = os.path.normpath(os.path.abspath(base_dir or blend_dir or root))
    if not _inside(base, root) or not _inside(os.path.realpath(base), real_root):
        return Resolution(None, None, False, False, "the referencing .blend is outside the bundle")
    first = _resolve_one(raw, root=root, real_root=real_root, base=base)
    if "\\" in raw and first.reason is None:
        second = _resolve_one(raw.replace("\\", "/"), root=root, real_root=real_root, base=base)
        if second.reason is not None:
            return second
    return first


def is_reference(ref: PathRef) -> bool:
    """Empty paths and Blender's built-in font name refer to no file."""
    raw = ref.raw_path.strip()
    return bool(raw) and not (ref.kind == "font" and raw == "<builtin>")


def check_external_paths(
    refs: Iterable[PathRef | Mapping[str, Any]],
    *,
    bundle_root: Path | str,
    blend_dir: Path | str | None = None,
) -> list[Offence]:
    """Every reference that would read a file outside `bundle_root`, with datablock name and raw path.

    `blend_dir` is the directory of the main .blend (default: bundle_root); a ref's own `base_dir`
    (data linked from a library) takes precedence. Packed data is read from the .blend itself and is
    never an offence.
    """
    offences: list[Offence] = []
    for obj in refs:
        ref = PathRef.from_obj(obj)
        if ref.packed or ref.bundled or not is_reference(ref):
            continue
        res = resolve_path(ref.raw_path, bundle_root=bundle_root, blend_dir=blend_dir, base_dir=ref.base_dir)
        if res.reason is not None:
            offences.append(Offence(ref.kind, ref.datablock, ref.raw_path, res.reason, res.resolved))
    return offences


def describe_refs(
    refs: Iterable[PathRef | Mapping[str, Any]],
    *,
    bundle_root: Path | str,
    blend_dir: Path | str | None = None,
) -> list[dict[str, Any]]:
    """JSON-able rows for a report: kind, datablock, raw path, bundle-relative path, inside_bundle, exists."""
    rows = []
    for obj in refs:
        ref = PathRef.from_obj(obj)
        if not is_reference(ref):
            continue
        if ref.packed or ref.bundled:
            # Read from the .blend itself, or from the rendering Blender's own bundled assets.
            rows.append(
                {
                    "kind": ref.kind,
                    "datablock": ref.datablock,
                    "raw_path": ref.raw_path,
                    "packed": ref.packed,
                    "bundled": ref.bundled,
                    "resolved": None,
                    "inside_bundle": True,
                    "exists": True,
                    "reason": None,
                }
            )
            continue
        res = resolve_path(ref.raw_path, bundle_root=bundle_root, blend_dir=blend_dir, base_dir=ref.base_dir)
        rows.append(
            {
                "kind": ref.kind,
                "datablock": ref.datablock,
                "raw_path": ref.raw_path,
                "packed": False,
                "resolved": res.relative,
                "inside_bundle": res.inside_bundle,
                "exists": res.exists,
                "reason": res.reason,
            }
        )
    return rows
