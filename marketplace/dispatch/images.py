"""Decoding agent uploads and making thumbnails, via render_kernels (PNG 8/16-bit and EXR).

Every decode reads the header first (PNG IHDR, EXR dataWindow): an image that is not the expected size, or
over the pixel cap, is refused before a single pixel is decoded.
"""

import io
import tempfile

import numpy as np
from PIL import Image

from marketplace.dispatch import conf
from render_kernels import ImageError, load_image, load_image_bytes, thumbnail
from render_kernels.image_io import EXR_MAGIC, PNG_SIGNATURE, image_header_size

PNG_MAGIC = PNG_SIGNATURE
__all__ = ["EXR_MAGIC", "PNG_MAGIC", "ImageError", "WrongSize", "image_from_bytes", "image_size_check", "thumbnail_png"]


class WrongSize(ImageError):
    """The header says the image is not the expected size, or is over the pixel cap: nothing was decoded."""


def image_size_check(data: bytes, *, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) from the header of PNG or EXR bytes; ImageError when it is not `size` (width, height)
    or over the market's pixel cap. Reads only the header."""
    width, height = image_header_size(data[: 1 << 20])
    if size is not None and (width, height) != tuple(size):
        raise WrongSize(f"image is {width}x{height}, leased {size[0]}x{size[1]}")
    if width * height > conf.MAX_IMAGE_PIXELS:
        raise WrongSize(f"image is {width}x{height}, over the limit of {conf.MAX_IMAGE_PIXELS} pixels")
    return width, height


def image_from_bytes(data: bytes, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Float32 HxWxC from PNG or EXR bytes; anything else (JPEG, GIF, junk) raises ImageError, and so does an
    image whose header is not `size` (width, height) or over the pixel cap, before it is decoded."""
    if not data.startswith((PNG_MAGIC, EXR_MAGIC)):
        raise ImageError("only PNG and OpenEXR results are accepted")
    image_size_check(data, size=size)
    if data.startswith(PNG_MAGIC):
        return load_image_bytes(data, max_pixels=conf.MAX_IMAGE_PIXELS)
    with tempfile.NamedTemporaryFile(suffix=".exr") as f:  # OpenEXR reads files
        f.write(data)
        f.flush()
        return load_image(f.name, max_pixels=conf.MAX_IMAGE_PIXELS)


def thumbnail_png(image: np.ndarray, *, max_side: int = 256) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(thumbnail(image, max_side)).save(buf, format="PNG")
    return buf.getvalue()
