#!/usr/bin/env bash
# GPU checks of render_kernels' CUDA backend on a machine with an NVIDIA GPU, nvcc and no network:
# builds pycuda from its sdist when it is not importable, runs the render_kernels tests (the gpu-marked
# one included) and bench_verify's throughput section at 1080p and 2160p, twice each.
#
#   bash scripts/gpu_check.sh WHEEL_DIR OUT_DIR
#
# WHEEL_DIR holds pycuda-*.tar.gz and the wheels of its pure-Python needs (pytools, platformdirs, mako,
# siphash24); OUT_DIR receives the logs and bench JSON. Needs python3 with numpy, pytest, pillow and
# scikit-image (the bench's reference SSIM).
set -uo pipefail
wheels=$(realpath "$1")
out=$(realpath "$2")
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv | tee "$out/gpu.txt"
nvcc --version | tail -1 | tee -a "$out/gpu.txt"
python3 --version | tee -a "$out/gpu.txt"

if ! python3 -c "import pycuda.driver" 2>/dev/null; then
    site=/tmp/gpu-check-site
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl || exit 1
    src=/tmp/gpu-check-pycuda started=$SECONDS
    rm -rf "$src" && mkdir -p "$src" && tar xzf "$wheels"/pycuda-*.tar.gz -C "$src" --strip-components=1
    cuda_root=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    driver_dirs=$(ldconfig -p | awk '/libcuda\.so/ {print $NF}' | xargs -r -n1 dirname | sort -u | paste -sd,)
    (
        cd "$src" &&
            python3 configure.py --cuda-root="$cuda_root" --no-cuda-enable-curand \
                --cudadrv-lib-dir="${driver_dirs:+$driver_dirs,}$cuda_root/lib64,$cuda_root/lib64/stubs" &&
            python3 setup.py build_ext -j "$(nproc)" --inplace
    ) >"$out/pycuda_build.log" 2>&1
    echo "pycuda build: exit $?, $((SECONDS - started)) s" | tee -a "$out/pycuda_build.log"
    export PYTHONPATH="$src:$site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import pycuda.driver as d; d.init(); print('pycuda', d.get_version(), d.Device(0).name())" || exit 1

cd "$repo" || exit 1
python3 -m pytest -o addopts="" -p no:cacheprovider --noconftest -q -rs tests/render_kernels 2>&1 |
    tee "$out/pytest_render_kernels.log" | tail -15
for size in 1920x1080 3840x2160; do
    for run in 1 2; do
        python3 tests/bench/bench_verify.py --only ssim_throughput --runs 10 --no-host --size "$size" \
            --out "$out/verify_gpu_${size}_run${run}.json" 2>&1 | tail -9
    done
done

# Where the GPU's time goes: each launch synchronised and timed, best of 5, for a 2160p pair.
python3 - <<'PY' 2>&1 | tee "$out/kernel_profile.txt"
import sys, time, collections
import pycuda.driver as drv
sys.path.insert(0, "tests/bench")
from bench_verify import make_pair  # the bench's pair, at 2160p
from render_kernels.cuda_backend import CudaBackend

backend = CudaBackend()
ops, spent = backend._ops, collections.defaultdict(list)
launch = ops.launch
def timed(name, n, *args):
    t0 = time.perf_counter(); launch(name, n, *args); drv.Context.synchronize()
    spent[name].append(time.perf_counter() - t0)
ops.launch = timed
cand, ref = make_pair(2160, 3840)
whole = []
for _ in range(6):
    t0 = time.perf_counter(); backend.compute(cand, ref, 3 / 255, 0.1); whole.append(time.perf_counter() - t0)
print(f"2160p compare, launches synchronised: best {min(whole[1:]) * 1e3:.2f} ms (first {whole[0] * 1e3:.1f} ms)")
for name, times in spent.items():
    print(f"  {name:18s} best {min(times[1:]) * 1e3:8.3f} ms")
backend.close()
PY
