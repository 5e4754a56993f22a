// trainer/ops/pool_cuda.cu — CUDA twin of pool.c (k x k max pool with stride and padding). One
// thread per output element forward; backward one thread per INPUT element, which gathers dy of
// every window whose argmax it is, so overlapping windows need no atomics and the sums are
// deterministic. Runs on ops_cuda_stream(); errors are recorded like every CUDA op (gpu_check.h).
extern "C" {
#include "trainer/ops/ops.h"
#include "trainer/ops/ops_cuda.h"
}
#include "trainer/gpu/gpu_check.h"   // defines: cudaCheck

#include <cuda_runtime.h>

struct PoolShape { int h, w, k, s, p, oh, ow; };

// Flat index (y * w + x) of the first maximum of output window (oy, ox), or -1 when all padding.
__device__ static int window_argmax(const PoolShape q, const float *xc, int oy, int ox) {
    int best = -1;
    float mv = 0.0f;
    for (int i = 0; i < q.k; i++) {
        int y = oy * q.s - q.p + i;
        if (y < 0 || y >= q.h) continue;
        for (int j = 0; j < q.k; j++) {
            int x = ox * q.s - q.p + j;
            if (x < 0 || x >= q.w) continue;
            float v = xc[y * q.w + x];
            if (best < 0 || v > mv || v != v) { best = y * q.w + x; mv = v; if (v != v) return best; }
        }
    }
    return best;
}

__global__ static void maxpool_fwd(PoolShape q, long n, float *y, const float *x) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long bc = i / ((long)q.oh * q.ow);
    int o = (int)(i % ((long)q.oh * q.ow)), oy = o / q.ow, ox = o % q.ow;
    const float *xc = x + bc * q.h * q.w;
    int m = window_argmax(q, xc, oy, ox);
    y[i] = m < 0 ? 0.0f : xc[m];
}

__global__ static void maxpool_bwd(PoolShape q, long n, float *dx, const float *dy, const float *x) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long bc = i / ((long)q.h * q.w);
    int idx = (int)(i % ((long)q.h * q.w)), y = idx / q.w, xx = idx % q.w;
    const float *xc = x + bc * q.h * q.w, *dyc = dy + bc * q.oh * q.ow;
    // output windows covering (y, xx): oy*s - p <= y <= oy*s - p + k - 1
    int oy0 = (y + q.p - q.k + q.s) / q.s, oy1 = (y + q.p) / q.s;
    int ox0 = (xx + q.p - q.k + q.s) / q.s, ox1 = (xx + q.p) / q.s;
    if (y + q.p - q.k + 1 < 0) oy0 = 0;
    if (xx + q.p - q.k + 1 < 0) ox0 = 0;
    float g = 0.0f;
    for (int oy = oy0; oy <= oy1 && oy < q.oh; oy++)
        for (int ox = ox0; ox <= ox1 && ox < q.ow; ox++)
            if (window_argmax(q, xc, oy, ox) == idx) g += dyc[oy * q.ow + ox];
    dx[i] = g;
}

static PoolShape shape(int h, int w, int k, int s, int p) {
    PoolShape q = { h, w, k, s, p, ops_maxpool_out(h, k, s, p), ops_maxpool_out(w, k, s, p) };
    return q;
}

extern "C" void ops_cuda_maxpool_forward(int B, int C, int h, int w, int k, int s, int p, float *y, const float *x) {
    PoolShape q = shape(h, w, k, s, p);
    long n = (long)B * C * q.oh * q.ow;
    if (n <= 0) return;
    maxpool_fwd<<<(unsigned)((n + 255) / 256), 256, 0, (cudaStream_t)ops_cuda_stream()>>>(q, n, y, x);
    cudaCheck(cudaGetLastError());
}

extern "C" void ops_cuda_maxpool_backward(int B, int C, int h, int w, int k, int s, int p, float *dx, const float *dy,
                                          const float *x) {
    PoolShape q = shape(h, w, k, s, p);
    long n = (long)B * C * h * w;
    if (n <= 0) return;
    maxpool_bwd<<<(unsigned)((n + 255) / 256), 256, 0, (cudaStream_t)ops_cuda_stream()>>>(q, n, dx, dy, x);
    cudaCheck(cudaGetLastError());
}
