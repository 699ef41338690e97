// Image comparison kernels for render_kernels (error statistics + SSIM, skimage definition).
//
// Compiled two ways from this same file:
//   * on the GPU by pycuda (SourceModule(..., no_extern_c=True)), see render_kernels/cuda_backend.py;
//   * on the CPU with `g++ -x c++ -include host_shim.h -O2 -shared -fPIC` so the maths is tested
//     without a GPU (render_kernels/host_kernels.py). host_shim.h runs every thread of a grid in a
//     plain loop, so these kernels must not use shared memory, __syncthreads or atomics: every
//     reduction is written as "one thread owns one column and loops over rows", and the host sums
//     the per-column partials.
//
// Layouts: inputs are interleaved HxWxC float32 (numpy order). SSIM works on planar maps:
// plane p = map * C + channel, each plane H*W floats, map in {mu_x, mu_y, mu(x^2+y^2), mu(xy)}.
// Only x^2 + y^2 is needed (vx + vy), so 4 maps per channel instead of skimage's 5.
// All launches are 1-D; thread indices are 64-bit so 8K frames with 12 planes cannot overflow.

extern "C" {

// scipy.ndimage 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a), valid for any i.
__device__ inline int rk_reflect(long long i, int n) {
    long long period = 2LL * n;
    long long m = i % period;
    if (m < 0) m += period;
    return (int)(m < n ? m : period - 1 - m);
}

__device__ inline long long rk_thread_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

// One thread per column: max/sum/sum^2 of |a-b| over all samples of the column, and the number
// of pixels whose max-over-channels error exceeds tol and gross.
__global__ void rk_diff_colstats(const float* a, const float* b, int h, int w, int c, float tol,
                                 float gross, float* col_max, double* col_sum_abs,
                                 double* col_sum_sq, int* col_over, int* col_gross) {
    long long j = rk_thread_index();
    if (j >= w) return;
    float cmax = 0.0f;
    double s_abs = 0.0, s_sq = 0.0;
    int over = 0, big = 0;
    for (int i = 0; i < h; ++i) {
        long long base = ((long long)i * w + j) * c;
        float m = 0.0f;
        for (int ch = 0; ch < c; ++ch) {
            float d = fabsf(a[base + ch] - b[base + ch]);
            s_abs += d;
            s_sq += (double)d * (double)d;
            m = fmaxf(m, d);
        }
        cmax = fmaxf(cmax, m);
        over += m > tol ? 1 : 0;
        big += m > gross ? 1 : 0;
    }
    col_max[j] = cmax;
    col_sum_abs[j] = s_abs;
    col_sum_sq[j] = s_sq;
    col_over[j] = over;
    col_gross[j] = big;
}

// One thread per input sample: scatter x, y, x^2+y^2, x*y into 4*C planar maps.
__global__ void rk_ssim_products(const float* a, const float* b, long long npix, int c, float* maps) {
    long long idx = rk_thread_index();
    if (idx >= npix * c) return;
    long long pix = idx / c;
    int ch = (int)(idx - pix * c);
    float x = a[idx], y = b[idx];
    maps[(0LL * c + ch) * npix + pix] = x;
    maps[(1LL * c + ch) * npix + pix] = y;
    maps[(2LL * c + ch) * npix + pix] = x * x + y * y;
    maps[(3LL * c + ch) * npix + pix] = x * y;
}

// Horizontal pass of the separable Gaussian over nrows rows of width w (all planes stacked).
__global__ void rk_blur_rows(const float* in, float* out, int w, long long nrows, const float* wts,
                             int radius) {
    long long idx = rk_thread_index();
    if (idx >= nrows * w) return;
    long long row = idx / w;
    int j = (int)(idx - row * w);
    const float* src = in + row * w;
    double acc = 0.0;  // like scipy.ndimage: accumulate in double, store float
    for (int k = -radius; k <= radius; ++k) acc += (double)wts[k + radius] * src[rk_reflect(j + k, w)];
    out[idx] = (float)acc;
}

// Vertical pass over nplanes planes of h x w (consecutive threads read consecutive columns).
__global__ void rk_blur_cols(const float* in, float* out, int h, int w, int nplanes, const float* wts,
                             int radius) {
    long long idx = rk_thread_index();
    long long plane_size = (long long)h * w;
    if (idx >= plane_size * nplanes) return;
    long long p = idx / plane_size;
    long long rem = idx - p * plane_size;
    int i = (int)(rem / w);
    int j = (int)(rem - (long long)i * w);
    const float* src = in + p * plane_size + j;
    double acc = 0.0;
    for (int k = -radius; k <= radius; ++k)
        acc += (double)wts[k + radius] * src[(long long)rk_reflect(i + k, h) * w];
    out[idx] = (float)acc;
}

// SSIM map (planar, C planes) from the blurred maps; same algebra as skimage with vx+vy fused.
__global__ void rk_ssim_map(const float* mu, long long npix, int c, float c1, float c2, float* s) {
    long long idx = rk_thread_index();
    if (idx >= npix * c) return;
    long long ch = idx / npix;
    long long pix = idx - ch * npix;
    float ux = mu[(0 * c + ch) * npix + pix];
    float uy = mu[(1 * c + ch) * npix + pix];
    float usq = mu[(2 * c + ch) * npix + pix];
    float uxy = mu[(3 * c + ch) * npix + pix];
    float p = ux * uy;
    float q = ux * ux + uy * uy;
    float a1 = 2.0f * p + c1;
    float a2 = 2.0f * (uxy - p) + c2;
    float b1 = q + c1;
    float b2 = (usq - q) + c2;
    s[idx] = (a1 * a2) / (b1 * b2);
}

// One thread per column: sum of the SSIM map over the rows/planes kept by skimage's border crop.
__global__ void rk_colsum_crop(const float* s, int h, int w, int nplanes, int pad, double* colsum) {
    long long j = rk_thread_index();
    if (j >= w) return;
    double acc = 0.0;
    if (j >= pad && j < w - pad) {
        for (int p = 0; p < nplanes; ++p) {
            const float* plane = s + (long long)p * h * w;
            for (int i = pad; i < h - pad; ++i) acc += plane[(long long)i * w + j];
        }
    }
    colsum[j] = acc;
}

}  // extern "C"

#ifdef RK_HOST_SHIM
// CPU entry points for ctypes: run the whole grid through host_shim.h's launch() loop.
// Argument lists mirror the kernels above (and KERNEL_SIGNATURES in kernel_pipeline.py).
extern "C" {
void host_rk_diff_colstats(unsigned grid, unsigned block, const float* a, const float* b, int h, int w,
                           int c, float tol, float gross, float* col_max, double* col_sum_abs,
                           double* col_sum_sq, int* col_over, int* col_gross) {
    launch(dim3(grid), dim3(block), rk_diff_colstats, a, b, h, w, c, tol, gross, col_max, col_sum_abs,
           col_sum_sq, col_over, col_gross);
}
void host_rk_ssim_products(unsigned grid, unsigned block, const float* a, const float* b, long long npix,
                           int c, float* maps) {
    launch(dim3(grid), dim3(block), rk_ssim_products, a, b, npix, c, maps);
}
void host_rk_blur_rows(unsigned grid, unsigned block, const float* in, float* out, int w, long long nrows,
                       const float* wts, int radius) {
    launch(dim3(grid), dim3(block), rk_blur_rows, in, out, w, nrows, wts, radius);
}
void host_rk_blur_cols(unsigned grid, unsigned block, const float* in, float* out, int h, int w, int nplanes,
                       const float* wts, int radius) {
    launch(dim3(grid), dim3(block), rk_blur_cols, in, out, h, w, nplanes, wts, radius);
}
void host_rk_ssim_map(unsigned grid, unsigned block, const float* mu, long long npix, int c, float c1,
                      float c2, float* s) {
    launch(dim3(grid), dim3(block), rk_ssim_map, mu, npix, c, c1, c2, s);
}
void host_rk_colsum_crop(unsigned grid, unsigned block, const float* s, int h, int w, int nplanes, int pad,
                         double* colsum) {
    launch(dim3(grid), dim3(block), rk_colsum_crop, s, h, w, nplanes, pad, colsum);
}
}  // extern "C"
#endif
