"""Render verification kernels: compare a candidate render with a reference and decide pass/fail.

Public API::

    m = compare(candidate, reference, region=(x, y, w, h))   # y from the TOP row
    v = verdict(m)                                           # Verdict(passed, reasons)

Only numpy and Pillow are required; the CUDA backend (pycuda) is imported lazily when available.
"""

from __future__ import annotations

from .decision import DEFAULT, Tolerances, Verdict, verdict
from .image_io import ImageError, WrongSize, image_from_bytes, image_size_check, load_image, load_image_bytes, save_png
from .metrics import Metrics, compare, crop_pair, region_from_blender_border
from .visual import ResultSummary, diff_heatmap, result_summary, thumbnail, thumbnail_png, watermark

__all__ = [
    "DEFAULT",
    "ImageError",
    "Metrics",
    "ResultSummary",
    "Tolerances",
    "Verdict",
    "WrongSize",
    "compare",
    "crop_pair",
    "diff_heatmap",
    "image_from_bytes",
    "image_size_check",
    "load_image",
    "load_image_bytes",
    "region_from_blender_border",
    "result_summary",
    "save_png",
    "thumbnail",
    "thumbnail_png",
    "verdict",
    "watermark",
]
