"""Stitching the tile images of a tiled still into the whole frame. Images in, image bytes out; no database.

Tiles arrive as the agents rendered them: PNG (8-bit RGBA from our renderer; any depth render_kernels reads) or
OpenEXR (32-bit float RGBA). The whole frame is written in the job's format at the tiles' own depth, so it holds
exactly the pixels of the tiles: PNG samples are whole numbers of 1/255 (or 1/65535), which survive the float
round trip through render_kernels exactly, and EXR is written as 32-bit float, which holds half floats too.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenEXR

from marketplace.jobs.tiles import Rect
from render_kernels import ImageError, image_from_bytes, image_size_check, save_png, thumbnail_png
from render_kernels.image_io import EXR_MAGIC, PNG_SIGNATURE, to_uint

# EXR channel names by channel count, as Blender writes a single-layer image.
EXR_CHANNELS = {1: "Y", 2: "YA", 3: "RGB", 4: "RGBA"}


class AssemblyError(Exception):
    """A tile that cannot be part of the whole: unreadable, of the wrong size, format, depth or channels."""


@dataclass(frozen=True)
class Stitched:
    data: bytes  # the whole frame, encoded
    extension: str  # "png" or "exr"
    thumbnail: bytes  # PNG


def _depth(data: bytes, *, exr: bool) -> int:
    """Bits per sample the tile is stored with (32 for EXR: written as float whatever it was)."""
    if exr:
        if not data.startswith(EXR_MAGIC):
            raise AssemblyError("not an OpenEXR image, and the job renders OpenEXR")
        return 32
    if not data.startswith(PNG_SIGNATURE):
        raise AssemblyError("not a PNG image, and the job renders PNG")
    return 16 if data[24:25] == b"\x10" else 8  # IHDR: signature, length, type, width, height, then bit depth


def _encoded(canvas: np.ndarray, *, exr: bool) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame"
        if exr:
            channels = {
                name: np.ascontiguousarray(canvas[:, :, i]) for i, name in enumerate(EXR_CHANNELS[canvas.shape[2]])
            }
            header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
            with OpenEXR.File(header, channels) as out:
                out.write(str(path))
        else:
            save_png(path, canvas)  # uint8 or uint16: written at that depth
        return path.read_bytes()


def stitch(*, width: int, height: int, output_format: str, tiles: Iterable[tuple[Rect, bytes]]) -> Stitched:
    """The width x height frame made of `tiles` ((x, y, w, h) with y from the top, and the tile's image bytes),
    which must cover it exactly once. Tiles are decoded one at a time. Raises AssemblyError."""
    exr = output_format == "OPEN_EXR"
    canvas: np.ndarray | None = None
    covered = np.zeros((height, width), dtype=bool)
    depth = 0
    for (x, y, w, h), data in tiles:
        where = f"the tile at x={x}, y={y}"
        try:
            tile_depth = _depth(data, exr=exr)
            size = image_size_check(data)  # from the header, before any pixel is decoded
        except (AssemblyError, ImageError) as exc:
            raise AssemblyError(f"{where}: {exc}") from exc
        if size != (w, h):
            raise AssemblyError(f"{where} is {size[0]}x{size[1]} px, not {w}x{h}")
        try:
            image = image_from_bytes(data, size=(w, h))
        except ImageError as exc:
            raise AssemblyError(f"{where}: {exc}") from exc
        if x < 0 or y < 0 or x + w > width or y + h > height or covered[y : y + h, x : x + w].any():
            raise AssemblyError(f"{where} ({w}x{h}) overlaps another tile or leaves the {width}x{height} frame")
        covered[y : y + h, x : x + w] = True
        if canvas is None:
            depth = tile_depth
            canvas = np.zeros((height, width, image.shape[2]), {8: np.uint8, 16: np.uint16, 32: np.float32}[depth])
        elif (tile_depth, image.shape[2]) != (depth, canvas.shape[2]):
            raise AssemblyError(
                f"{where} has {image.shape[2]} channels of {tile_depth} bits, the first tile "
                f"{canvas.shape[2]} of {depth}"
            )
        canvas[y : y + h, x : x + w] = image if exr else to_uint(image, depth)
    if canvas is None or not covered.all():
        raise AssemblyError(f"the tiles do not cover the {width}x{height} frame")
    return Stitched(data=_encoded(canvas, exr=exr), extension="exr" if exr else "png", thumbnail=thumbnail_png(canvas))
