"""Decoding agent uploads and making thumbnails, via render_kernels (PNG 8/16-bit and EXR)."""
import io
import tempfile

import numpy as np
from PIL import Image

from render_kernels import ImageError, load_image, load_image_bytes, thumbnail

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXR_MAGIC = b"\x76\x2f\x31\x01"


def image_from_bytes(data: bytes) -> np.ndarray:
    """Float32 HxWxC from PNG or EXR bytes; anything else (JPEG, GIF, junk) raises ImageError."""
    if data.startswith(PNG_MAGIC):
        return load_image_bytes(data)
    if not data.startswith(EXR_MAGIC):
        raise ImageError("only PNG and OpenEXR results are accepted")
    with tempfile.NamedTemporaryFile(suffix=".exr") as f:  # OpenEXR reads files
        f.write(data)
        f.flush()
        return load_image(f.name)


def thumbnail_png(image: np.ndarray, *, max_side: int = 256) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(thumbnail(image, max_side)).save(buf, format="PNG")
    return buf.getvalue()
