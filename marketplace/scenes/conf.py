"""Settings of the scenes app, read lazily with defaults (so tests can override them and settings.py needs no edit).

from marketplace.scenes import conf
conf.MAX_UPLOAD_BYTES   # settings.SCENE_MAX_UPLOAD_BYTES, or the default below
"""

from typing import Any

from django.conf import settings

from workers.contract import LIMITS

# The agent contract's smallest image side: smaller scenes are refused, and no job or calibration renders smaller.
MIN_SIDE = LIMITS.side[0]

DEFAULTS: dict[str, Any] = {
    "MAX_UPLOAD_BYTES": 512 * 1024 * 1024,
    "ZIP_MAX_FILES": 2000,
    # Everything a zip may expand to, judged from its central directory and enforced again while extracting.
    "ZIP_MAX_UNCOMPRESSED_BYTES": 4 * 1024 * 1024 * 1024,
    # Textures and .blend files compress a few times at most; a zip bomb compresses a thousand times.
    "ZIP_MAX_RATIO": 100,
    # Entries smaller than this may have any ratio (a tiny text file of spaces is harmless).
    "ZIP_RATIO_MIN_BYTES": 1024 * 1024,
    # The web request's scan of a zstd .blend stops after this much decompressed data or time, whichever comes
    # first (a 400 KB zstd bomb expands to many GiB); the sandboxed inspection task judges the rest.
    "ZSTD_SCAN_BYTES": 1024 * 1024 * 1024,
    "ZSTD_SCAN_SECONDS": 2.0,
    "MAX_SIDE": 8192,
    "MAX_FRAMES": 10_000,
    "INSPECT_TIMEOUT_S": 120,
    "INSPECT_MEMORY_MB": 2048,
    "CALIBRATION_TIMEOUT_S": 300,
    "CALIBRATION_MEMORY_MB": 4096,
    "CALIBRATION_SCALE_PERCENT": 25,
    "CALIBRATION_MIN_SIDE": 32,
    # Where the market's extra Blender series live (`<dir>/runtimes/<series>/`, see workers.runtimes); the
    # series of the bpy installed with the market needs none. settings.py reads BLENDER_RUNTIMES_DIR.
    "RUNTIMES_CACHE_DIR": "var/blender",
}


def __getattr__(name: str) -> Any:
    if name not in DEFAULTS:
        raise AttributeError(f"no scenes setting {name!r}")
    return getattr(settings, f"SCENE_{name}", DEFAULTS[name])
