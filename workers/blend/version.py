"""Which Blender saved a .blend: read from the file header, without bpy and without decompressing more than it.

Headers (Blender's `BLO_readfile` / `blendfile.py`):
- up to 4.x, 12 bytes: ``BLENDER`` + pointer size (``_`` 4 bytes, ``-`` 8) + endianness (``v``/``V``) + three digits
  ``major * 100 + minor`` (``BLENDER-v405`` is 4.5);
- from 5.0, 17 bytes: ``BLENDER`` + header size ``17`` + ``-`` + format ``01`` + endianness + four digits
  (``BLENDER17-01v0500`` is 5.0).
Blender 3.0+ may compress the file with zstd, older ones with gzip: only the first bytes of the stream are
decompressed, so a hostile file costs nothing to ask.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

MAGIC = b"BLENDER"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
HEADER_BYTES = 17
_LEGACY = re.compile(rb"BLENDER[_-][vV](\d{3})")
_LARGE = re.compile(rb"BLENDER17-01[vV](\d{4})")


class UnknownBlendVersion(ValueError):
    """The file has no Blender header we can read."""


def _header(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        if head.startswith(MAGIC):
            return head
        f.seek(0)
        try:
            if head.startswith(ZSTD_MAGIC):
                import zstandard

                return zstandard.ZstdDecompressor().stream_reader(f).read(HEADER_BYTES)
            if head.startswith(GZIP_MAGIC):
                return gzip.GzipFile(fileobj=f).read(HEADER_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnknownBlendVersion(f"the compressed .blend cannot be read ({exc})") from exc
        except Exception as exc:  # zstandard.ZstdError does not derive from OSError
            raise UnknownBlendVersion(f"the compressed .blend cannot be read ({exc})") from exc
    raise UnknownBlendVersion("not a Blender file (no BLENDER header, not zstd or gzip compressed)")


def saved_version(path: Path) -> tuple[int, int]:
    """(major, minor) of the Blender that saved `path`."""
    head = _header(Path(path))
    found = _LARGE.match(head) or _LEGACY.match(head)
    if not found:
        raise UnknownBlendVersion(f"unrecognised .blend header {head[:HEADER_BYTES]!r}")
    number = int(found.group(1))
    return number // 100, number % 100
