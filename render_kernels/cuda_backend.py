"""CUDA backend: compiles cuda/compare.cu with pycuda and runs the shared kernel pipeline on the GPU.

pycuda is imported only when this module is imported (lazily, from metrics._cuda_compute), so the
package works without it. The context is created once per process and pushed/popped around each
call, which keeps it usable from any thread (calls are serialised by a lock).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pycuda.driver as drv  # an ImportError here is the "CUDA not available" signal
from pycuda import gpuarray
from pycuda.compiler import SourceModule

from ._common import RawStats
from .host_kernels import KERNEL_SOURCE
from .kernel_pipeline import BLOCK_SIZE, KERNEL_SIGNATURES, grid_for, run_pipeline


class _GpuOps:
    def __init__(self, funcs: dict[str, Any]) -> None:
        self._funcs = funcs

    def to_device(self, arr: np.ndarray) -> gpuarray.GPUArray:
        return gpuarray.to_gpu(np.ascontiguousarray(arr))

    def empty(self, n: int, dtype: Any) -> gpuarray.GPUArray:
        return gpuarray.empty(n, dtype)

    def to_host(self, buf: gpuarray.GPUArray) -> np.ndarray:
        host: np.ndarray = buf.get()
        return host

    def launch(self, name: str, n_threads: int, *args: Any) -> None:
        sig = KERNEL_SIGNATURES[name]
        conv = [int(arg.gpudata) if code == "P" else arg for code, arg in zip(sig, args, strict=True)]
        self._funcs[name].prepared_call((grid_for(n_threads), 1), (BLOCK_SIZE, 1, 1), *conv)


class CudaBackend:
    """One CUDA context + compiled module; ``compute`` matches numpy_backend.compute."""

    def __init__(self, device: int = 0) -> None:
        drv.init()
        if drv.Device.count() <= device:
            raise RuntimeError("no CUDA device")
        self.device_name: str = drv.Device(device).name()
        self._ctx = drv.Device(device).make_context()  # created current; popped below
        try:
            module = SourceModule(KERNEL_SOURCE.read_text(), no_extern_c=True, options=["-O3"])
            funcs = {}
            for name, sig in KERNEL_SIGNATURES.items():
                fn = module.get_function(name)
                fn.prepare(sig)
                funcs[name] = fn
            self._module = module  # keep the module (and its functions) alive
            self._ops = _GpuOps(funcs)
        finally:
            self._ctx.pop()
        self._lock = threading.Lock()
        atexit.register(self.close)

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            try:
                ctx.detach()
            except Exception:  # interpreter shutdown or driver already gone: nothing to recover
                pass

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """This backend's context made current for one call, serialised across threads."""
        if self._ctx is None:
            raise RuntimeError("CUDA backend closed")
        with self._lock:
            self._ctx.push()
            try:
                yield
            finally:
                drv.Context.pop()

    def upload(self, *arrays: np.ndarray) -> None:
        """Copy arrays to the GPU and free them: the transfer share of ``compute`` (benchmarks)."""
        with self._current():
            for arr in arrays:
                self._ops.to_device(arr).gpudata.free()
            drv.Context.synchronize()

    def compute(self, a: np.ndarray, b: np.ndarray, pixel_tol: float, gross_tol: float) -> RawStats:
        return self.compute_with_map(a, b, pixel_tol, gross_tol)[0]

    def compute_with_map(
        self, a: np.ndarray, b: np.ndarray, pixel_tol: float, gross_tol: float, *, want_map: bool = False
    ) -> tuple[RawStats, np.ndarray | None]:
        with self._current():
            # device buffers are locals of run_pipeline: freed before the context is popped
            return run_pipeline(self._ops, a, b, pixel_tol, gross_tol, want_map=want_map)
