"""Pack the saved .blend and everything it reads into a folder, as a bundle's files with their SHA-256.

Two ways, same result (a folder whose .blend reads only files inside it):
- blender-asset-tracer (BAT, what Flamenco packs with): copies the .blend and its dependencies, keeps
  // relative paths, and rewrites paths outside the project (absolute ones, `..` escapes) to
  `_outside_project/...` inside the bundle. It reads the file on disk, so it runs off the main thread.
- Blender's own (the fallback when BAT cannot read the file): `bpy.utils.blend_paths` lists the external
  files, `bpy.ops.file.pack_all` packs them into a copy of the .blend, and the artist's session gets its
  files back unpacked. Main thread only (bpy).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

BAT_PACK_INFO = "pack-info.txt"  # BAT's note for humans; not part of a scene


class PackError(Exception):
    pass


@dataclass(frozen=True)
class PackedFile:
    path: str  # posix, inside the bundle
    abspath: Path
    sha256: str
    size: int


@dataclass
class Pack:
    root: Path
    blend: str  # the main .blend's path inside the bundle
    method: str  # "bat" or "blender"
    files: list[PackedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> list[dict[str, str]]:
        return [{"path": f.path, "sha256": f.sha256} for f in self.files]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hash_folder(root: Path, *, skip: tuple[str, ...] = ()) -> list[PackedFile]:
    files = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            abspath = Path(dirpath) / name
            rel = abspath.relative_to(root).as_posix()
            if rel in skip or abspath.is_symlink():
                continue
            files.append(PackedFile(rel, abspath, sha256_file(abspath), abspath.stat().st_size))
    return sorted(files, key=lambda f: f.path)


def bat_available() -> str | None:
    """None when BAT can be imported, else why not."""
    try:
        import blender_asset_tracer.pack  # noqa: F401
    except ImportError as exc:
        return f"blender-asset-tracer is not installed ({exc})"
    return None


def pack_with_bat(blend: Path, dest: Path) -> Pack:
    """BAT's packer, the project being the .blend's folder. Raises PackError when BAT cannot read the file."""
    from blender_asset_tracer import pack as bat_pack

    blend = Path(blend).resolve()
    try:
        with bat_pack.Packer(blend, blend.parent, dest) as packer:
            packer.strategise()
            packer.execute()
            missing = sorted(str(p) for p in packer.missing_files)
    except Exception as exc:  # BAT raises its own errors for files it cannot parse (e.g. a newer file format)
        raise PackError(f"blender-asset-tracer cannot read {blend.name}: {type(exc).__name__}: {exc}") from exc
    files = hash_folder(dest, skip=(BAT_PACK_INFO,))
    notes = [
        f"brought in from outside the project folder: {f.path}" for f in files if f.path.startswith("_outside_project/")
    ]
    return Pack(root=dest, blend=blend.name, method="bat", files=files, notes=notes, missing=missing)


def pack_with_blender(dest: Path) -> Pack:
    """Blender's own packing of the open (saved) file into `dest` (main thread). The session is left as it was:
    what this packs for the copy is unpacked again, pointing at the original files."""
    import bpy

    blend = Path(bpy.data.filepath)
    paths = bpy.utils.blend_paths(absolute=True, packed=False, local=True)
    missing = sorted({p for p in paths if p and not _sequence_or_exists(p)})
    before = {id(b) for b in _packable() if b.packed_file is not None}
    if paths:
        bpy.ops.file.pack_all()
    packed_now = [b for b in _packable() if b.packed_file is not None and id(b) not in before]
    try:
        dest.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(dest / blend.name), copy=True, check_existing=False)
    finally:
        for block in packed_now:
            block.unpack(method="REMOVE")  # back to reading the original file, as before packing
    notes = [f"packed into the .blend: {b.name}" for b in packed_now]
    return Pack(root=dest, blend=blend.name, method="blender", files=hash_folder(dest), notes=notes, missing=missing)


def _packable():
    import bpy

    for collection in (bpy.data.images, bpy.data.sounds, bpy.data.fonts, bpy.data.volumes, bpy.data.movieclips):
        for block in collection:
            if hasattr(block, "packed_file") and hasattr(block, "unpack"):
                yield block


def _sequence_or_exists(path: str) -> bool:
    if any(tok in os.path.basename(path) for tok in ("#", "<UDIM>", "<UVTILE>")):
        return os.path.isdir(os.path.dirname(path))
    return os.path.exists(path)
