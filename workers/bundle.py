"""Scene bundles on the agent: a .blend or a .zip with its textures, cached by SHA-256 and unpacked safely.

The marketplace already refused bad zips, but the agent trusts nothing it downloads: every member path is
checked again while extracting, with a byte budget against zip bombs.

A bundle directory is keyed by the bytes *and* how they are unpacked (`bundle_key`): the same .blend
uploaded twice under two names is two bundles, each holding its own file name.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath


class BundleError(Exception):
    pass


def _member_target(root: Path, info: zipfile.ZipInfo) -> Path:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BundleError(f"zip member {name!r} is a symlink")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]) or ".." in pure.parts:
        raise BundleError(f"zip member {name!r} escapes the bundle")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise BundleError(f"zip member {name!r} escapes the bundle")
    return target


def safe_extract(archive: Path, dest: Path, *, max_bytes: int = 8 << 30, max_files: int = 2000) -> None:
    """Extract a zip into dest, refusing traversal, absolute paths, symlinks and more than max_bytes/max_files."""
    budget = max_bytes
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > max_files:
            raise BundleError(f"zip holds {len(members)} files, more than {max_files}")
        for info in members:
            target = _member_target(dest, info)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    budget -= len(chunk)  # counts real bytes out, whatever the header claims
                    if budget < 0:
                        raise BundleError(f"zip expands to more than {max_bytes} bytes")
                    out.write(chunk)


def bundle_key(*, sha256: str, kind: str, blend_path: str) -> str:
    """Directory name of a bundle in the agent's cache: the content hash plus what decides its layout.

    A .blend is copied under its own file name, so the name is part of the key; a zip unpacks the same
    whatever .blend inside it is rendered, so its key is the kind and hash alone.
    """
    if not (len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)):
        raise BundleError(f"not a SHA-256 hex digest: {sha256[:80]!r}")
    if kind == "zip":
        return f"{sha256}-zip"
    name = _blend_name(blend_path)
    return f"{sha256}-blend-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _blend_name(blend_path: str) -> str:
    return PurePosixPath(blend_path).name or "scene.blend"


def bundle_ready(*, archive: Path, kind: str, blend_path: str, root: Path) -> Path:
    """Unpack (once) a downloaded scene into root; return the .blend path inside it."""
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        if kind == "zip":
            safe_extract(archive, root)
        else:
            shutil.copyfile(archive, root / _blend_name(blend_path))
        marker.touch()
    blend = (root / blend_path).resolve() if kind == "zip" else root / _blend_name(blend_path)
    if not blend.is_relative_to(root.resolve()) or not blend.exists():
        raise BundleError(f"the bundle has no {blend_path!r}")
    return blend
