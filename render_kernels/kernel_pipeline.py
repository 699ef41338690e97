"""The launch sequence for the kernels in cuda/compare.cu, shared by the GPU and CPU-shim runners.

Keeping one orchestration for both means the host-compiled tests exercise exactly the buffer sizes,
argument order and reductions the pycuda backend uses; only memory allocation and the launch call
differ (see :class:`KernelOps`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ._common import SSIM_C1, SSIM_C2, SSIM_RADIUS, RawStats, gaussian_weights

# Argument formats in struct/pycuda notation: P pointer, i int32, q int64, f float32.
# Must match the kernel parameter lists in compare.cu.
KERNEL_SIGNATURES: dict[str, str] = {
    "rk_diff_colstats": "PPiiiffPPPPP",
    "rk_ssim_products": "PPqiP",
    "rk_blur_rows": "PPiqPi",
    "rk_blur_cols": "PPiiiPi",
    "rk_ssim_map": "PqiffP",
    "rk_colsum_crop": "PiiiiP",
}
BLOCK_SIZE = 256


class KernelOps(Protocol):
    """Memory + launch primitives of one execution target (GPU via pycuda, or CPU via ctypes)."""

    def to_device(self, arr: np.ndarray) -> Any: ...

    def empty(self, n: int, dtype: Any) -> Any: ...

    def to_host(self, buf: Any) -> np.ndarray: ...

    def launch(self, name: str, n_threads: int, *args: Any) -> None: ...


def grid_for(n_threads: int, block: int = BLOCK_SIZE) -> int:
    return max(1, (n_threads + block - 1) // block)


def run_pipeline(
    ops: KernelOps,
    a: np.ndarray,
    b: np.ndarray,
    pixel_tol: float,
    gross_tol: float,
    *,
    want_map: bool = False,
) -> tuple[RawStats, np.ndarray | None]:
    """Raw statistics (and optionally the full HxWxC SSIM map) for two float32 HxWxC arrays."""
    h, w, c = a.shape
    npix = h * w
    nplanes = 4 * c
    da = ops.to_device(np.ascontiguousarray(a, np.float32))
    db = ops.to_device(np.ascontiguousarray(b, np.float32))

    col_max, col_abs, col_sq = ops.empty(w, np.float32), ops.empty(w, np.float64), ops.empty(w, np.float64)
    col_over, col_gross = ops.empty(w, np.int32), ops.empty(w, np.int32)
    ops.launch(
        "rk_diff_colstats",
        w,
        *(da, db, h, w, c, pixel_tol, gross_tol),
        *(col_max, col_abs, col_sq, col_over, col_gross),
    )

    maps, tmp = ops.empty(nplanes * npix, np.float32), ops.empty(nplanes * npix, np.float32)
    wts = ops.to_device(gaussian_weights().astype(np.float32))
    ops.launch("rk_ssim_products", npix * c, da, db, npix, c, maps)
    ops.launch("rk_blur_rows", nplanes * npix, maps, tmp, w, nplanes * h, wts, SSIM_RADIUS)
    ops.launch("rk_blur_cols", nplanes * npix, tmp, maps, h, w, nplanes, wts, SSIM_RADIUS)
    # the SSIM map reuses the first C planes of tmp (the row-pass scratch is dead by now)
    ops.launch("rk_ssim_map", npix * c, maps, npix, c, SSIM_C1, SSIM_C2, tmp)
    colsum = ops.empty(w, np.float64)
    ops.launch("rk_colsum_crop", w, tmp, h, w, c, SSIM_RADIUS, colsum)

    ho, wo = h - 2 * SSIM_RADIUS, w - 2 * SSIM_RADIUS
    stats = RawStats(
        max_abs=float(ops.to_host(col_max).max()),
        sum_abs=float(ops.to_host(col_abs).sum()),
        sum_sq=float(ops.to_host(col_sq).sum()),
        over_tol=int(ops.to_host(col_over).sum()),
        over_gross=int(ops.to_host(col_gross).sum()),
        ssim=float(ops.to_host(colsum).sum()) / (ho * wo * c),
    )
    ssim_map = None
    if want_map:
        ssim_map = ops.to_host(tmp)[: c * npix].reshape(c, h, w).transpose(1, 2, 0).copy()
    return stats, ssim_map
