"""cuda/compare.cu: CPU-compiled through host_shim.h vs numpy/scipy/skimage, nvcc PTX build, real GPU."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from rk_testimages import SKIMAGE_SSIM_ARGS, structured
from scipy.ndimage import gaussian_filter1d
from skimage.metrics import structural_similarity

from render_kernels import numpy_backend
from render_kernels._common import SSIM_RADIUS, gaussian_weights
from render_kernels.host_kernels import (
    HOST_SHIM,
    KERNEL_SOURCE,
    HostKernels,
    build_host_library,
    find_compiler,
)
from render_kernels.kernel_pipeline import KERNEL_SIGNATURES

TOL, GROSS = 3 / 255, 0.1


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> HostKernels:
    if find_compiler() is None:
        pytest.skip("g++ not available: cannot build the host-shim kernels")
    return HostKernels(build_host_library(tmp_path_factory.mktemp("hostcu")))


def pair(h: int, w: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ref = structured(h, w, c=c, seed=seed)
    rng = np.random.default_rng(seed)
    cand = np.clip(ref + rng.normal(0, 0.02, ref.shape), 0, 1).astype(np.float32)
    cand[h // 3, w // 2] = (ref[h // 3, w // 2] + 0.5) % 1.0  # one gross pixel (error 0.5)
    return cand, ref


@pytest.mark.parametrize("shape", [(11, 11, 3), (45, 67, 3), (64, 33, 1), (29, 80, 4)])
def test_host_compiled_kernels_match_numpy(host, shape):
    cand, ref = pair(*shape, seed=shape[1])
    got, ssim_map = host.compute(cand, ref, TOL, GROSS, want_map=True)
    want = numpy_backend.compute(cand, ref, TOL, GROSS)
    assert got.max_abs == want.max_abs  # same float32 subtraction: bit-identical
    assert got.over_tol == want.over_tol and got.over_gross == want.over_gross
    assert got.over_gross >= 1
    assert got.sum_abs == pytest.approx(want.sum_abs, rel=1e-6)
    assert got.sum_sq == pytest.approx(want.sum_sq, rel=1e-6)
    assert abs(got.ssim - want.ssim) < 1e-5
    # the full map, reflect borders included, against skimage's own map
    sk_mean, sk_map = structural_similarity(cand, ref, **SKIMAGE_SSIM_ARGS, full=True)
    assert ssim_map.shape == shape
    # float32 variances (ours and skimage's) cancel catastrophically at single pixels, so the
    # per-pixel bound is loose; a wrong border rule would be off by ~1e-1 near the edges.
    assert np.abs(ssim_map - sk_map).max() < 1e-3
    assert np.abs(ssim_map - sk_map).mean() < 2e-5
    assert abs(got.ssim - sk_mean) < 1e-5


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 11, 12])
def test_blur_kernels_reflect_like_scipy_even_for_tiny_sizes(host, n):
    # widths below the 5-pixel radius need repeated reflection; scipy defines the expected values
    rng = np.random.default_rng(n)
    img = rng.random((n, n + 3)).astype(np.float32)
    wts = gaussian_weights().astype(np.float32)
    tmp, out = np.empty_like(img).ravel(), np.empty_like(img).ravel()
    host.ops.launch("rk_blur_rows", img.size, img.ravel(), tmp, n + 3, n, wts, SSIM_RADIUS)
    host.ops.launch("rk_blur_cols", img.size, tmp, out, n, n + 3, 1, wts, SSIM_RADIUS)
    want = img.astype(np.float64)
    for axis in (1, 0):
        want = gaussian_filter1d(want, 1.5, axis=axis, mode="reflect", truncate=3.5)
    np.testing.assert_allclose(out.reshape(img.shape), want, atol=1e-6)


def test_kernel_signature_table_matches_the_source():
    src = KERNEL_SOURCE.read_text()
    for name, sig in KERNEL_SIGNATURES.items():
        head = src.split(f"__global__ void {name}(")[1].split(")")[0]
        assert head.count(",") + 1 == len(sig), name


def test_shim_rejects_kernels_that_need_syncthreads(tmp_path):
    cxx = find_compiler()
    if cxx is None:
        pytest.skip("g++ not available")
    src = tmp_path / "bad.cu"
    src.write_text("__global__ void k(float* x) { x[threadIdx.x] = 1; __syncthreads(); }\n")
    proc = subprocess.run(
        [cxx, "-x", "c++", "-include", str(HOST_SHIM), "-fsyntax-only", str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "__syncthreads" in proc.stderr


def _nvcc() -> str | None:
    nvcc = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if shutil.which("/usr/local/bin/nvcc") else None)
    if nvcc is None:
        return None
    ok = subprocess.run([nvcc, "--version"], capture_output=True, check=False).returncode == 0
    return nvcc if ok else None


def test_nvcc_compiles_to_ptx(tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not available (`nvcc --version` failed)")
    out = tmp_path / "compare.ptx"
    proc = subprocess.run(
        [nvcc, "--ptx", str(KERNEL_SOURCE), "-o", str(out)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    ptx = out.read_text()
    for name in KERNEL_SIGNATURES:
        assert f".entry {name}(" in ptx, name


@pytest.mark.gpu
def test_cuda_backend_matches_numpy():
    pytest.importorskip("pycuda", reason="pycuda not installed")
    import pycuda.driver as drv

    try:
        drv.init()
        if drv.Device.count() == 0:
            pytest.skip("no CUDA device")
    except drv.Error as exc:
        pytest.skip(f"CUDA driver unavailable: {exc}")
    from render_kernels.cuda_backend import CudaBackend

    backend = CudaBackend()
    try:
        for shape in [(45, 67, 3), (270, 480, 4), (1080, 1920, 3)]:
            cand, ref = pair(*shape, seed=7)
            got, ssim_map = backend.compute_with_map(cand, ref, TOL, GROSS, want_map=True)
            want = numpy_backend.compute(cand, ref, TOL, GROSS)
            assert got.max_abs == want.max_abs
            assert got.over_tol == want.over_tol and got.over_gross == want.over_gross
            assert got.sum_sq == pytest.approx(want.sum_sq, rel=1e-5)
            assert abs(got.ssim - want.ssim) < 1e-5
            assert ssim_map.shape == shape
    finally:
        backend.close()
