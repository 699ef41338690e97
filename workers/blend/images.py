"""Read rendered frames (PNG, EXR) into numpy without importing bpy.

Uses the OpenImageIO Python module that ships inside the bpy wheel (not on sys.path by default), so
float EXR output can be compared exactly. Arrays are float32, shape (height, width, channels), row 0 at
the top of the image; 8-bit PNG values are scaled to [0, 1] (`raw=True` keeps the integers).
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


@cache
def oiio() -> Any:
    """The OpenImageIO module bundled with bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bpy is not installed: its bundled OpenImageIO reads EXR files")
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for site in sorted(bpy_dir.glob(f"*/python/lib/{ver}/site-packages")):
        if str(site) not in sys.path:
            sys.path.append(str(site))
    import OpenImageIO

    return OpenImageIO


def read_image(path: Path, *, raw: bool = False, subimage: int = 0) -> npt.NDArray[Any]:
    """Pixels of an image file as (H, W, C). `raw`: integer formats keep their stored type."""
    lib = oiio()
    inp = lib.ImageInput.open(str(path))
    if inp is None:
        raise OSError(f"cannot read image {path}: {lib.geterror()}")
    try:
        if not inp.seek_subimage(subimage, 0):
            raise OSError(f"{path} has no subimage {subimage}")
        spec = inp.spec()
        fmt = lib.UNKNOWN if raw else lib.FLOAT
        pixels = inp.read_image(subimage, 0, 0, spec.nchannels, fmt)
    finally:
        inp.close()
    if pixels is None:
        raise OSError(f"cannot decode image {path}: {lib.geterror()}")
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr
