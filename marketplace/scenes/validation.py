"""Checks on an uploaded file BEFORE anything is stored: size, .blend container, zip layout and zip bombs.

Nothing here opens the scene with Blender; `policy.py` judges the inspection report afterwards. A zip is
judged from its central directory only (no extraction): `workers.bundle.safe_extract` enforces the same
limits again on the real bytes when the scene is unpacked for inspection or rendering.
"""

from __future__ import annotations

import hashlib
import re
import stat
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from marketplace.errors import Refused
from marketplace.scenes import conf
from workers.blend import BlendFileError, check_blend_file

ZIP_MAGIC = b"PK\x03\x04"
# What a .blend starts with: plain, zstd (Blender >= 3.0) or gzip (older Blender).
BLEND_MAGICS = (b"BLENDER", b"\x28\xb5\x2f\xfd", b"\x1f\x8b")
MAIN_BLEND = "main.blend"
_DRIVE = re.compile(r"^[A-Za-z]:")
# Folders archivers add on their own; never part of a scene.
_JUNK_TOP = ("__MACOSX",)
UNSUPPORTED = "upload a .blend or a .zip holding one .blend with its textures and caches"


class SceneRejected(Refused):
    """The upload cannot become a scene; the message says why, in words an artist can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StagedUpload:
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class CheckedUpload:
    kind: str  # Scene.Kind value: "blend" or "zip"
    blend_path: str  # the .blend inside the bundle (posix, relative)


def mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def size_check(size: int) -> None:
    if size > conf.MAX_UPLOAD_BYTES:
        raise SceneRejected(f"the file is {mib(size)}, over the upload limit of {mib(conf.MAX_UPLOAD_BYTES)}")


def stage_upload(chunks: Iterable[bytes], *, dest: Path, allow_empty: bool = False) -> StagedUpload:
    """Copy an upload into `dest` while hashing it; stop as soon as it passes the size limit.

    `allow_empty`: for one file of a bundle (an empty text file is a file); a scene is never empty.
    """
    digest = hashlib.sha256()
    size = 0
    with open(dest, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            size_check(size)
            digest.update(chunk)
            out.write(chunk)
    if size == 0 and not allow_empty:
        raise SceneRejected(f"the file is empty: {UNSUPPORTED}")
    return StagedUpload(path=dest, sha256=digest.hexdigest(), size=size)


def check_upload(path: Path, *, filename: str) -> CheckedUpload:
    """Which kind of scene the file is, and where its .blend is; SceneRejected when it is neither."""
    size_check(path.stat().st_size)
    with open(path, "rb") as f:
        head = f.read(8)
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if head.startswith(ZIP_MAGIC) or suffix == ".zip":
        return CheckedUpload(kind="zip", blend_path=check_zip(path))
    if suffix == ".blend" or head.startswith(BLEND_MAGICS):
        try:
            if check_blend_file(path) == "zstd":
                _check_zstd_blend(path)
        except BlendFileError as exc:
            raise SceneRejected(exc.message) from exc
        return CheckedUpload(kind="blend", blend_path=safe_blend_name(filename))
    raise SceneRejected(f"{filename or 'the file'} is not a Blender file: {UNSUPPORTED}")


def _check_zstd_blend(path: Path) -> None:
    """check_blend_file trusts a zstd .blend it cannot see the end of: decompress it (streaming) to be sure.

    Bounded for the web request: the scan stops after conf.ZSTD_SCAN_BYTES of output or conf.ZSTD_SCAN_SECONDS,
    whichever comes first, and then accepts; the inspection (sandboxed, with memory and time limits) judges the
    rest of such a file."""
    import zstandard  # a dependency of bpy

    tail = b""
    total = 0
    limit = conf.ZSTD_SCAN_BYTES
    deadline = time.monotonic() + conf.ZSTD_SCAN_SECONDS
    bounded = False
    try:
        with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as z:
            while chunk := z.read(1 << 20):
                total += len(chunk)
                tail = (tail + chunk[-64:])[-64:]
                if total >= limit or time.monotonic() > deadline:
                    bounded = True
                    break
    except zstandard.ZstdError as exc:
        raise BlendFileError(f"corrupt or truncated .blend: zstd stream broken ({exc})") from exc
    if not bounded and b"ENDB" not in tail:
        raise BlendFileError("corrupt or truncated .blend: the end-of-file block is missing")


def safe_blend_name(filename: str) -> str:
    """The uploaded name without any directory part (browsers may send one), always ending in .blend."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._ -]", "_", name).strip(" .") or "scene"
    return name if name.lower().endswith(".blend") else f"{name}.blend"


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why one zip entry may not be unpacked, or None."""
    name = info.filename
    if "\x00" in name:
        return "has a NUL byte in its name"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    normal = name.replace("\\", "/")
    if normal.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(normal):
        return "names a drive (C:)"
    if ".." in PurePosixPath(normal).parts:
        return "escapes the bundle (..)"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def file_folder_clashes(names: list[str]) -> list[str]:
    """Paths that one entry makes a file and another a folder: they cannot both be unpacked."""
    files: set[str] = set()
    folders: set[str] = set()
    for name in names:
        normal = name.replace("\\", "/")
        parts = PurePosixPath(normal).parts
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if normal.endswith("/"):
            folders.add("/".join(parts))
        else:
            files.add("/".join(parts))
    return sorted(files & folders)


def check_zip(path: Path) -> str:
    """Judge a zip from its central directory; return the path of its .blend inside the bundle."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            blend_path = _check_members(members)
            with zf.open(blend_path) as f:
                head = f.read(16)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise SceneRejected(f"corrupt .zip ({exc}): {UNSUPPORTED}") from exc
    if not head.startswith(BLEND_MAGICS):
        raise SceneRejected(f"{blend_path} in the zip is not a Blender file")
    return blend_path


def _check_members(members: list[zipfile.ZipInfo]) -> str:
    if len(members) > conf.ZIP_MAX_FILES:
        raise SceneRejected(f"the zip holds {len(members)} entries, more than the limit of {conf.ZIP_MAX_FILES}")
    bad = [f"{m.filename!r} {problem}" for m in members if (problem := member_problem(m))]
    if bad:
        raise SceneRejected("the zip has entries that cannot be unpacked safely: " + "; ".join(bad[:20]))
    clashes = file_folder_clashes([m.filename for m in members])
    if clashes:
        raise SceneRejected("the zip has paths that are both a file and a folder: " + ", ".join(clashes[:20]))
    total = sum(m.file_size for m in members)
    if total > conf.ZIP_MAX_UNCOMPRESSED_BYTES:
        limit = mib(conf.ZIP_MAX_UNCOMPRESSED_BYTES)
        raise SceneRejected(f"the zip expands to {mib(total)}, over the limit of {limit}")
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size >= conf.ZIP_RATIO_MIN_BYTES and ratio > conf.ZIP_MAX_RATIO:
            raise SceneRejected(
                f"zip entry {m.filename!r} expands {ratio:.0f} times (limit {conf.ZIP_MAX_RATIO}): "
                "this looks like a zip bomb"
            )
    return _main_blend([m.filename.replace("\\", "/") for m in members if not m.is_dir()])


def _main_blend(names: list[str]) -> str:
    """The one .blend at the top level (a single folder holding everything counts as the top level)."""
    names = [n for n in names if PurePosixPath(n).parts and PurePosixPath(n).parts[0] not in _JUNK_TOP]
    tops = {PurePosixPath(n).parts[0] for n in names}
    prefix = PurePosixPath(next(iter(tops))) if len(tops) == 1 and all("/" in n for n in names) else None
    top_blends = sorted(
        n
        for n in names
        if n.lower().endswith(".blend")
        and len(PurePosixPath(n).relative_to(prefix).parts if prefix else PurePosixPath(n).parts) == 1
    )
    if len(top_blends) == 1:
        return top_blends[0]
    mains = [n for n in top_blends if PurePosixPath(n).name == MAIN_BLEND]
    if len(mains) == 1:
        return mains[0]
    if not top_blends:
        raise SceneRejected(f"the zip has no .blend at its top level: {UNSUPPORTED}")
    raise SceneRejected(
        f"the zip has several .blend files at its top level ({', '.join(top_blends)}): "
        f"keep one, or name the one to render {MAIN_BLEND}"
    )
