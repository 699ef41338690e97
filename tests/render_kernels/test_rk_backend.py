"""Backend selection: auto -> CUDA when possible, otherwise numpy with exactly one warning."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest
from rk_testimages import structured

import render_kernels as rk
from render_kernels import metrics
from render_kernels.host_kernels import HostKernels, build_host_library, find_compiler


@pytest.fixture
def no_cuda(monkeypatch):
    """Make `import pycuda` fail even where it is installed, and forget earlier probes."""
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.delitem(sys.modules, "render_kernels.cuda_backend", raising=False)
    monkeypatch.delenv(metrics.BACKEND_ENV, raising=False)
    metrics._reset_backend_cache()
    yield
    metrics._reset_backend_cache()


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    ref = structured(32, 40, seed=41)
    return np.clip(ref + 0.01, 0, 1), ref


def test_auto_falls_back_to_numpy_with_one_warning(no_cuda, images, caplog):
    with caplog.at_level(logging.WARNING, logger="render_kernels"):
        first = rk.compare(*images)
        second = rk.compare(*images)
    assert first.backend == second.backend == "numpy"
    warnings = [r for r in caplog.records if r.name == "render_kernels"]
    assert len(warnings) == 1 and "numpy" in warnings[0].getMessage()
    assert first == second


def test_env_var_selects_numpy_without_probing_cuda(no_cuda, images, caplog, monkeypatch):
    monkeypatch.setenv(metrics.BACKEND_ENV, "numpy")
    with caplog.at_level(logging.WARNING, logger="render_kernels"):
        assert rk.compare(*images).backend == "numpy"
    assert not caplog.records
    assert metrics._cuda_state == {}  # CUDA was never tried


def test_explicit_cuda_without_pycuda_raises(no_cuda, images):
    with pytest.raises(RuntimeError, match="CUDA backend unavailable"):
        rk.compare(*images, backend="cuda")


def test_unknown_backend_is_rejected(images):
    with pytest.raises(ValueError, match="unknown backend"):
        rk.compare(*images, backend="opencl")


def test_cuda_failure_mid_run_falls_back_in_auto_mode(no_cuda, images, caplog, monkeypatch):
    def broken(*_args):
        raise MemoryError("out of device memory")

    monkeypatch.setattr(metrics, "_cuda_compute", lambda: broken)
    with caplog.at_level(logging.WARNING, logger="render_kernels"):
        m = rk.compare(*images)
    assert m.backend == "numpy" and m.ssim == rk.compare(*images, backend="numpy").ssim
    assert any("out of device memory" in r.getMessage() for r in caplog.records)
    with pytest.raises(MemoryError):
        rk.compare(*images, backend="cuda")  # explicit choice: no silent fallback


# --- the pycuda glue, exercised without a GPU ------------------------------------------------------
# A stand-in `pycuda` package whose "device" is host memory and whose kernels are compare.cu built
# with host_shim.h: checks cuda_backend.py's context handling, argument packing and launch geometry.


class _FakeArray:
    def __init__(self, data: np.ndarray) -> None:
        self.data = np.ascontiguousarray(data)
        self.gpudata = self.data.ctypes.data  # pycuda passes DeviceAllocation; int() of it is the pointer

    def get(self) -> np.ndarray:
        return self.data.copy()


class _FakeContext:
    stack: list[_FakeContext] = []

    def push(self) -> None:
        _FakeContext.stack.append(self)

    def pop(self) -> None:
        _FakeContext.stack.pop()

    def detach(self) -> None:
        self.detached = True


def _fake_pycuda(host) -> dict[str, types.ModuleType]:
    drv = types.ModuleType("pycuda.driver")
    drv.init = lambda: None

    class Device:
        @staticmethod
        def count() -> int:
            return 1

        def __init__(self, ordinal: int) -> None:
            self.ordinal = ordinal

        def name(self) -> str:
            return "host memory posing as a GPU"

        def make_context(self) -> _FakeContext:
            ctx = _FakeContext()
            ctx.push()
            return ctx

    class Context:
        @staticmethod
        def pop() -> None:
            _FakeContext.stack.pop()

    drv.Device, drv.Context = Device, Context

    class Function:
        def __init__(self, name: str) -> None:
            self.name, self.launches = name, []

        def prepare(self, sig: str) -> None:
            self.sig = sig

        def prepared_call(self, grid, block, *args) -> None:
            assert _FakeContext.stack, "kernel launched without a current context"
            assert len(args) == len(self.sig) and all(
                isinstance(a, int) for a, c in zip(args, self.sig, strict=True) if c == "P"
            )
            getattr(host._lib, "host_" + self.name)(grid[0], block[0], *args)

    class SourceModule:
        def __init__(self, source: str, no_extern_c: bool = False, options=None) -> None:
            assert no_extern_c and "rk_ssim_map" in source

        def get_function(self, name: str) -> Function:
            return Function(name)

    compiler = types.ModuleType("pycuda.compiler")
    compiler.SourceModule = SourceModule
    gpuarray = types.ModuleType("pycuda.gpuarray")
    gpuarray.GPUArray = _FakeArray
    gpuarray.to_gpu = _FakeArray
    gpuarray.empty = lambda n, dtype: _FakeArray(np.empty(n, dtype))
    pkg = types.ModuleType("pycuda")
    pkg.driver, pkg.compiler, pkg.gpuarray = drv, compiler, gpuarray
    return {"pycuda": pkg, "pycuda.driver": drv, "pycuda.compiler": compiler, "pycuda.gpuarray": gpuarray}


def test_cuda_backend_glue_with_a_fake_pycuda(tmp_path, monkeypatch, images):
    if find_compiler() is None:
        pytest.skip("g++ not available")
    host = HostKernels(build_host_library(tmp_path))
    for name, module in _fake_pycuda(host).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "render_kernels.cuda_backend", raising=False)
    monkeypatch.delenv(metrics.BACKEND_ENV, raising=False)
    metrics._reset_backend_cache()
    try:
        m = rk.compare(*images)  # auto picks the (fake) CUDA backend
        want = rk.compare(*images, backend="numpy")
    finally:
        metrics._reset_backend_cache()
    assert m.backend == "cuda" and _FakeContext.stack == []  # context popped after the call
    assert m.over_tol_pixels == want.over_tol_pixels and m.max_abs_error == want.max_abs_error
    assert abs(m.ssim - want.ssim) < 1e-5 and m.psnr == pytest.approx(want.psnr, rel=1e-6)
