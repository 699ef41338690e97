"""compare(): image-difference metrics of a candidate render against a reference render."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import numpy_backend
from ._common import DATA_RANGE, SSIM_WIN, RawStats
from .decision import DEFAULT, Tolerances
from .image_io import as_image_array

log = logging.getLogger("render_kernels")

Region = tuple[int, int, int, int]
ImageLike = np.ndarray | str | Path
BACKEND_ENV = "RENDER_KERNELS_BACKEND"


@dataclass(frozen=True)
class Metrics:
    """Differences between two images (over ``region`` if one was given).

    max_abs_error / mean_abs_error: over all samples (pixels x channels), in [0, 1] units.
    frac_over_tol: fraction of pixels whose max-over-channels abs error exceeds ``pixel_tol``.
    psnr: dB with data range 1.0; ``inf`` when the images are identical.
    ssim: mean SSIM over channels, exactly skimage.metrics.structural_similarity(gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1).
    gross_pixels: pixels whose max-over-channels abs error exceeds ``gross_tol``.
    """

    max_abs_error: float
    mean_abs_error: float
    frac_over_tol: float
    psnr: float
    ssim: float
    pixels: int
    shape: tuple[int, int, int]
    pixel_tol: float
    gross_tol: float
    over_tol_pixels: int
    gross_pixels: int
    backend: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``psnr`` is None when infinite (identical images)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        if math.isinf(self.psnr):
            d["psnr"] = None
        return d


def _region_tuple(region: Region | None) -> Region | None:
    if region is None:
        return None
    if len(region) != 4:
        raise ValueError(f"region must be (x, y, w, h), got {region!r}")
    x, y, w, h = (int(v) for v in region)
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ValueError(f"region (x, y, w, h) needs x, y >= 0 and w, h > 0, got {region!r}")
    return x, y, w, h


def crop_pair(
    candidate: ImageLike, reference: ImageLike, region: Region | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load/convert both images and apply ``region`` = (x, y, w, h) in pixels, y counted from the TOP row.

    * Same-size images: the region is cut out of both.
    * Candidate already w x h (e.g. a Blender border render with "crop to render region") and the
      reference larger: the region is cut out of the reference only.
    Blender's own border coordinates count y from the BOTTOM; see :func:`region_from_blender_border`.
    Raises ValueError on size/channel mismatch or a region outside the image.
    """
    a, b = as_image_array(candidate), as_image_array(reference)
    reg = _region_tuple(region)
    if reg is not None:
        x, y, w, h = reg
        crop_candidate = a.shape[:2] == b.shape[:2]
        if not crop_candidate and a.shape[:2] != (h, w):
            raise ValueError(
                f"size mismatch: candidate {a.shape[1]}x{a.shape[0]} is neither the reference size "
                f"{b.shape[1]}x{b.shape[0]} nor the region size {w}x{h}"
            )
        if x + w > b.shape[1] or y + h > b.shape[0]:
            raise ValueError(f"region {reg} exceeds the {b.shape[1]}x{b.shape[0]} image")
        b = b[y : y + h, x : x + w]
        if crop_candidate:
            a = a[y : y + h, x : x + w]
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"size mismatch: candidate {a.shape[1]}x{a.shape[0]} vs reference {b.shape[1]}x{b.shape[0]}")
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"channel mismatch: candidate has {a.shape[2]}, reference {b.shape[2]}")
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def region_from_blender_border(
    min_x: float, min_y: float, max_x: float, max_y: float, width: int, height: int
) -> Region:
    """Blender's render border (fractions, y from the BOTTOM) -> (x, y, w, h) pixels, y from the TOP.

    Uses Blender's rounding of border fractions to pixels (int(fraction * size) for both edges)."""
    x0, x1 = int(min_x * width), int(max_x * width)
    y0, y1 = int(min_y * height), int(max_y * height)
    return x0, height - y1, x1 - x0, y1 - y0


# --- backend selection -------------------------------------------------------------------------

_Compute = Callable[[np.ndarray, np.ndarray, float, float], RawStats]
_lock = threading.Lock()
_cuda_state: dict[str, Any] = {}  # pid -> cached backend or failure; re-probed after fork
_warned: set[str] = set()  # non-empty once the fallback warning was logged in this process


def _reset_backend_cache() -> None:
    """Forget the probed CUDA backend and the warn-once flag (tests)."""
    with _lock:
        _cuda_state.clear()
        _warned.clear()


def _warn_once(msg: str) -> None:
    with _lock:
        if _warned:
            return
        _warned.add(msg)
    log.warning(msg)


def _cuda_compute() -> _Compute:
    """The CUDA backend's compute function; raises if pycuda/driver/device are unavailable."""
    with _lock:
        entry = _cuda_state.get("entry")
        if entry is None or entry[0] != os.getpid():  # a CUDA context does not survive fork()
            try:
                from . import cuda_backend

                entry = (os.getpid(), cuda_backend.CudaBackend().compute, None)
            except Exception as exc:  # ImportError, pycuda LogicError/RuntimeError, nvcc failure
                entry = (os.getpid(), None, exc)
            _cuda_state["entry"] = entry
    _, fn, err = entry
    if fn is None:
        raise RuntimeError(f"CUDA backend unavailable: {type(err).__name__}: {err}") from err
    return fn


def _resolve(backend: str) -> tuple[str, _Compute]:
    if backend == "numpy":
        return "numpy", numpy_backend.compute
    if backend == "cuda":
        return "cuda", _cuda_compute()
    if backend != "auto":
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'numpy' or 'cuda'")
    if os.environ.get(BACKEND_ENV, "").strip().lower() == "numpy":
        return "numpy", numpy_backend.compute
    try:
        return "cuda", _cuda_compute()
    except RuntimeError as exc:
        _warn_once(f"render_kernels: using numpy backend ({exc})")
        return "numpy", numpy_backend.compute


def compare(
    candidate: ImageLike,
    reference: ImageLike,
    region: Region | None = None,
    *,
    backend: str = "auto",
    pixel_tol: float | None = None,
    tolerances: Tolerances = DEFAULT,
) -> Metrics:
    """Metrics of ``candidate`` against ``reference``.

    Inputs are float32 HxWxC arrays in [0, 1] (uint8/uint16 arrays are scaled) or image paths (PNG
    8/16-bit, EXR). ``region`` = (x, y, w, h) in pixels with y from the TOP row; it is applied to both
    images, or only to the reference when the candidate already has the region's size (border render).
    ``pixel_tol`` (default ``tolerances.pixel_tol`` = 3/255) and ``tolerances.gross_tol`` set the two
    pixel counts. ``backend``: "auto" (CUDA if available and $RENDER_KERNELS_BACKEND != "numpy", else
    numpy with one warning per process), "numpy" or "cuda".
    Raises ValueError for mismatched/too small/non-finite images, FileNotFoundError for missing files.
    """
    a, b = crop_pair(candidate, reference, region)
    h, w, c = a.shape
    if h < SSIM_WIN or w < SSIM_WIN:
        raise ValueError(f"compared area {w}x{h} is smaller than the {SSIM_WIN}x{SSIM_WIN} SSIM window")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("image contains NaN or infinite values")
    tol = tolerances.pixel_tol if pixel_tol is None else float(pixel_tol)
    gross = tolerances.gross_tol
    name, fn = _resolve(backend)
    try:
        raw = fn(a, b, tol, gross)
    except Exception as exc:
        if name != "cuda" or backend != "auto":
            raise
        # a driver fault mid-run (e.g. out of memory) should not fail the verification itself
        _warn_once(f"render_kernels: CUDA backend failed ({type(exc).__name__}: {exc}); using numpy")
        name, raw = "numpy", numpy_backend.compute(a, b, tol, gross)
    n = a.size
    ssim = raw.ssim
    if raw.max_abs == 0.0:
        # SSIM(x, x) = 1 exactly; sgemm tiling can leave ~1e-8 of rounding on top of it
        ssim = 1.0
    mse = raw.sum_sq / n
    psnr = math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse)
    return Metrics(
        max_abs_error=raw.max_abs,
        mean_abs_error=raw.sum_abs / n,
        frac_over_tol=raw.over_tol / (h * w),
        psnr=psnr,
        ssim=ssim,
        pixels=h * w,
        shape=(h, w, c),
        pixel_tol=tol,
        gross_tol=gross,
        over_tol_pixels=raw.over_tol,
        gross_pixels=raw.over_gross,
        backend=name,
    )
