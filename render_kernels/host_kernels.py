"""Run compare.cu on the CPU: compile it with g++ and host_shim.h, load it with ctypes.

Used by the tests (kernel maths checked against numpy without a GPU) and by the benchmark. Builds go
into a caller-supplied directory (pytest's tmp_path); binaries are never written into the package.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ._common import RawStats
from .kernel_pipeline import BLOCK_SIZE, KERNEL_SIGNATURES, grid_for, run_pipeline

CUDA_DIR = Path(__file__).resolve().parent / "cuda"
KERNEL_SOURCE = CUDA_DIR / "compare.cu"
HOST_SHIM = CUDA_DIR / "host_shim.h"

_CTYPES = {"P": ctypes.c_void_p, "i": ctypes.c_int32, "q": ctypes.c_int64, "f": ctypes.c_float}


def find_compiler() -> str | None:
    """Path of g++ (or None): the shim relies on GNU C++17 (thread_local, variadic templates)."""
    return shutil.which("g++")


def build_host_library(out_dir: str | Path, *, openmp: bool = False, compiler: str | None = None) -> Path:
    """Compile compare.cu for the CPU into ``out_dir``; returns the .so path. Raises on failure."""
    cxx = compiler or find_compiler()
    if cxx is None:
        raise RuntimeError("g++ not found; cannot build the host-shim kernels")
    out = Path(out_dir) / ("libcompare_host_omp.so" if openmp else "libcompare_host.so")
    cmd = [cxx, "-x", "c++", "-std=gnu++17", "-include", str(HOST_SHIM), "-O2", "-shared", "-fPIC"]
    if openmp:
        cmd.append("-fopenmp")
    cmd += [str(KERNEL_SOURCE), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"host build failed ({' '.join(cmd)}):\n{proc.stderr}")
    return out


class _HostOps:
    """KernelOps over plain numpy buffers; 'device' memory is host memory."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib

    def to_device(self, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr)

    def empty(self, n: int, dtype: Any) -> np.ndarray:
        return np.empty(n, dtype)

    def to_host(self, buf: np.ndarray) -> np.ndarray:
        return buf

    def launch(self, name: str, n_threads: int, *args: Any) -> None:
        sig = KERNEL_SIGNATURES[name]
        if len(sig) != len(args):
            raise TypeError(f"{name}: expected {len(sig)} arguments, got {len(args)}")
        conv = [arg.ctypes.data if code == "P" else arg for code, arg in zip(sig, args, strict=True)]
        getattr(self._lib, "host_" + name)(grid_for(n_threads), BLOCK_SIZE, *conv)


class HostKernels:
    """compare.cu compiled for the CPU; same pipeline as the CUDA backend."""

    def __init__(self, library: str | Path) -> None:
        self._lib = ctypes.CDLL(str(library))
        for name, sig in KERNEL_SIGNATURES.items():
            fn = getattr(self._lib, "host_" + name)
            fn.argtypes = [ctypes.c_uint, ctypes.c_uint] + [_CTYPES[code] for code in sig]
            fn.restype = None
        self.ops = _HostOps(self._lib)

    def compute(
        self, a: np.ndarray, b: np.ndarray, pixel_tol: float, gross_tol: float, *, want_map: bool = False
    ) -> tuple[RawStats, np.ndarray | None]:
        return run_pipeline(self.ops, a, b, pixel_tol, gross_tol, want_map=want_map)
