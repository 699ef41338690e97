"""Images for humans: difference heatmaps, thumbnails and watermarked previews (uint8 outputs)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .image_io import as_image_array, image_from_bytes, png8_open, to_uint

# A coarse sampling of matplotlib's "inferno" (perceptually uniform, black -> purple -> orange ->
# pale yellow), so zero error is black and brightness grows monotonically with error.
_INFERNO = np.array(
    [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ],
    dtype=np.float32,
)


def _colormap(t: np.ndarray) -> np.ndarray:
    """t in [0, 1] -> uint8 RGB by piecewise-linear interpolation of _INFERNO."""
    x = np.clip(t, 0.0, 1.0) * (len(_INFERNO) - 1)
    i = np.minimum(x.astype(np.int32), len(_INFERNO) - 2)
    f = (x - i)[..., None]
    rgb = _INFERNO[i] * (1.0 - f) + _INFERNO[i + 1] * f
    out: np.ndarray = np.rint(rgb).astype(np.uint8)
    return out


def diff_heatmap(candidate: np.ndarray | str | Path, reference: np.ndarray | str | Path) -> np.ndarray:
    """uint8 HxWx3 map of the per-pixel max-over-channels absolute error.

    Log amplification ``t = log2(1 + 255 * err) / 8`` makes a 1/255 difference clearly visible
    (t = 0.125, dark purple on black) while a full-range error (1.0) still maps to the top colour.
    """
    a, b = as_image_array(candidate), as_image_array(reference)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: candidate {a.shape} vs reference {b.shape}")
    err = np.abs(a - b).max(axis=2)
    t = np.log2(1.0 + 255.0 * np.nan_to_num(err, nan=1.0, posinf=1.0)) / 8.0
    return _colormap(t)


def _to_pil(img: np.ndarray | str | Path) -> Image.Image:
    arr = as_image_array(img)
    data = to_uint(arr, 8)
    if data.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"cannot display an image with {data.shape[2]} channels")
    # Pillow infers L / LA / RGB / RGBA from the uint8 array shape
    return Image.fromarray(data[:, :, 0] if data.shape[2] == 1 else data)


def _as_hwc(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def thumbnail(img: np.ndarray | str | Path, max_side: int) -> np.ndarray:
    """uint8 HxWxC downscaled (Lanczos, aspect kept, never upscaled) so the longer side <= max_side."""
    if max_side < 1:
        raise ValueError("max_side must be >= 1")
    im = _to_pil(img)
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _as_hwc(im).copy()


def thumbnail_png(img: np.ndarray | str | Path, *, max_side: int = 256) -> bytes:
    """`thumbnail` encoded as an 8-bit PNG (a page's preview)."""
    return _preview_png(thumbnail(img, max_side))


def _preview_png(data: np.ndarray) -> bytes:
    # zlib level 1: a 256-pixel preview of a noisy render encodes in ~3.5 ms instead of ~15 at Pillow's default
    # level 6, for ~15 % more bytes (made at every report, issue 17).
    buf = io.BytesIO()
    Image.fromarray(data[:, :, 0] if data.shape[2] == 1 else data).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class ResultSummary:
    """What the market checks of an uploaded result and shows of it."""

    colour_std: float  # standard deviation of its first three channels' values, on the [0, 1] scale
    thumbnail: bytes  # `thumbnail_png` of it (b"" when none was asked for)


def result_summary(
    data: bytes, *, size: tuple[int, int] | None = None, max_pixels: int | None = None, thumbnail_side: int = 0
) -> ResultSummary:
    """`image_from_bytes(data)[..., :3].std()` and `thumbnail_png` (when `thumbnail_side`), refused as
    `image_from_bytes` refuses. An 8-bit PNG, what most renders upload, is summarised from Pillow's 8-bit decode:
    the deviation from its histogram, the thumbnail by Pillow from the same pixels, so the same figures without a
    float copy of the frame (a 1920x1080 report's check: 62 ms of CPU against 123-128, bench_agent_api)."""
    im = png8_open(data, size=size, max_pixels=max_pixels)
    if im is None:
        image = image_from_bytes(data, size=size, max_pixels=max_pixels)
        thumb = thumbnail_png(image, max_side=thumbnail_side) if thumbnail_side else b""
        return ResultSummary(float(image[..., :3].std()), thumb)
    with im:
        std = _histogram_std(im)
        if not thumbnail_side:
            return ResultSummary(std, b"")
        im.thumbnail((thumbnail_side, thumbnail_side), Image.Resampling.LANCZOS)
        return ResultSummary(std, _preview_png(_as_hwc(im)))


def _histogram_std(im: Image.Image) -> float:
    """The standard deviation of an 8-bit image's first three bands, pooled, from their histograms."""
    bands = np.asarray(im.histogram(), np.float64).reshape(-1, 256)[:3].sum(axis=0)
    values = np.arange(256, dtype=np.float64) / 255.0
    count = bands.sum()
    mean = (bands * values).sum() / count
    return float(math.sqrt((bands * (values - mean) ** 2).sum() / count))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # FreeType build of Pillow's default font
    except (TypeError, ValueError, OSError, ImportError):
        return ImageFont.load_default()  # bitmap fallback when Pillow lacks FreeType


def watermark(img: np.ndarray | str | Path, text: str, *, opacity: float = 0.3, angle: float = 30.0) -> np.ndarray:
    """Tile ``text`` diagonally across the image, semi-transparent; returns uint8 HxWx3 (HxWx4 if the
    input has alpha). White text with a dark outline so it shows on both light and dark renders."""
    if not text:
        raise ValueError("watermark text must not be empty")
    base = _to_pil(img)
    has_alpha = base.mode in ("LA", "RGBA")
    base = base.convert("RGBA")
    w, h = base.size
    font = _font(max(10, min(w, h) // 16))
    # draw on a square canvas covering the image at any rotation, then rotate and crop the centre
    side = math.ceil(math.hypot(w, h)) + 2
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = (int(v) for v in draw.textbbox((0, 0), text, font=font))
    step_x, step_y = (x1 - x0) + max(8, (y1 - y0)), 2 * (y1 - y0) + 8
    alpha = round(255 * min(max(opacity, 0.0), 1.0))
    for row, y in enumerate(range(0, side, step_y)):
        offset = (row % 2) * step_x // 2  # brick pattern so columns don't line up
        for x in range(-step_x + offset, side, step_x):
            try:
                draw.text(
                    (x, y),
                    text,
                    font=font,
                    fill=(255, 255, 255, alpha),
                    stroke_width=1,
                    stroke_fill=(0, 0, 0, alpha),
                )
            except (TypeError, ValueError):  # bitmap font without stroke support
                draw.text((x, y), text, font=font, fill=(255, 255, 255, alpha))
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC)
    left, top = (side - w) // 2, (side - h) // 2
    out = Image.alpha_composite(base, layer.crop((left, top, left + w, top + h)))
    return np.asarray(out if has_alpha else out.convert("RGB")).copy()
