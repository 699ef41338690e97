"""Scene bundles sent file by file (content-addressed, as Flamenco's Shaman does): the manifest and the zip.

A client lists the bundle's files as (path, SHA-256) pairs, asks which digests the server lacks, uploads
only those, then asks the server to assemble the bundle. The assembled zip is an ordinary upload from
then on: `services.scene_upload` puts it through the same checks as a zip sent whole.
No database and no storage here: the services pass the bytes in.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from marketplace.scenes import conf
from marketplace.scenes.validation import SceneRejected

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# A fixed timestamp (the zip format's earliest) makes the same files always assemble into the same bytes,
# hence the same SHA-256 and one stored copy.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BundleEntry:
    path: str
    sha256: str


def check_digest(value: object) -> str:
    digest = str(value).strip().lower()
    if not SHA256_HEX.match(digest):
        raise SceneRejected(f"{str(value)[:80]!r} is not a SHA-256 digest (64 hex digits)")
    return digest


def check_digests(values: Iterable[object]) -> list[str]:
    digests = list(dict.fromkeys(check_digest(v) for v in values))
    if len(digests) > conf.ZIP_MAX_FILES:
        raise SceneRejected(f"{len(digests)} files, more than the limit of {conf.ZIP_MAX_FILES} per scene")
    return digests


def check_manifest(files: Iterable[Mapping[str, Any]]) -> list[BundleEntry]:
    """The bundle's entries (path, digest), each path once. Paths are judged again as zip members later."""
    entries: list[BundleEntry] = []
    seen: set[str] = set()
    for row in files:
        path = str(row.get("path", ""))
        if not path or path.endswith("/"):
            raise SceneRejected(f"bundle entry {path!r} is not a file path")
        if path in seen:
            raise SceneRejected(f"bundle entry {path!r} is listed twice")
        seen.add(path)
        entries.append(BundleEntry(path=path, sha256=check_digest(row.get("sha256", ""))))
    if not entries:
        raise SceneRejected("the bundle lists no files")
    if len(entries) > conf.ZIP_MAX_FILES:
        raise SceneRejected(f"the bundle holds {len(entries)} files, more than the limit of {conf.ZIP_MAX_FILES}")
    return entries


def write_zip(entries: list[BundleEntry], *, dest: Path, open_blob: Callable[[str], IO[bytes]]) -> Path:
    """Write the bundle as a stored (uncompressed) zip, members in path order, with a fixed timestamp.

    Stored, not deflated: the files are already on the server, and a .blend of zeros must not look like a
    zip bomb just because the server chose to compress it.
    """
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for entry in sorted(entries, key=lambda e: e.path):
            info = zipfile.ZipInfo(entry.path, date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            with open_blob(entry.sha256) as src, zf.open(info, "w", force_zip64=True) as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    return dest
