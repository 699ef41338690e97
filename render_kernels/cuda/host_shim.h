// Minimal CUDA-on-CPU shim so compare.cu's kernel maths can be unit tested without a GPU:
//
//   g++ -x c++ -include host_shim.h -O2 -shared -fPIC compare.cu -o libcompare_host.so
//
// Kernels become plain functions; blockIdx/threadIdx/blockDim/gridDim are thread-local globals set
// by launch(), which runs every (block, thread) pair in a loop (blocks in parallel under -fopenmp,
// which is safe only because the kernels share nothing between threads).
// Deliberately NOT provided: __shared__, __syncthreads, atomics. A kernel that starts using them
// fails to compile here instead of silently computing something different from the GPU.
#pragma once

#include <math.h>
#include <stddef.h>

#define RK_HOST_SHIM 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;

// Serial (or per-block OpenMP) emulation of kernel<<<grid, block>>>(args...).
template <typename... Params, typename... Args>
void launch(dim3 grid, dim3 block, void (*kernel)(Params...), Args... args) {
    const long long nblocks = (long long)grid.x * grid.y * grid.z;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (long long b = 0; b < nblocks; ++b) {
        gridDim = grid;
        blockDim = block;
        blockIdx.x = (unsigned)(b % grid.x);
        blockIdx.y = (unsigned)((b / grid.x) % grid.y);
        blockIdx.z = (unsigned)(b / ((long long)grid.x * grid.y));
        for (unsigned tz = 0; tz < block.z; ++tz)
            for (unsigned ty = 0; ty < block.y; ++ty)
                for (unsigned tx = 0; tx < block.x; ++tx) {
                    threadIdx.x = tx;
                    threadIdx.y = ty;
                    threadIdx.z = tz;
                    kernel(args...);
                }
    }
}
