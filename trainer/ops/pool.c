// trainer/ops/pool.c — k x k max pooling with stride and padding (PyTorch's MaxPool2d(k, s, p),
// floor mode): the ResNet stem's 3x3/2 pad 1. Padding counts as -inf, so a window's maximum is
// always a real input. Backward recomputes each window's argmax from x — the first maximum in scan
// order, as PyTorch — and scatters dy there (dx is overwritten; overlapping windows add up).
// The CUDA twin is pool_cuda.cu; declarations in ops.h ("pooling with padding").
#include "trainer/ops/ops.h"
// defines: ops_maxpool_out, ops_cpu_maxpool_forward, ops_cpu_maxpool_backward

#include <string.h>

int ops_maxpool_out(int in, int k, int s, int p) { return in + 2 * p < k ? 0 : (in + 2 * p - k) / s + 1; }

typedef struct { int h, w, k, s, p, oh, ow; } Pool;

// Index (y * w + x) of the window's first maximum, or -1 when the window is all padding.
static inline long window_argmax(const Pool *q, const float *xc, int oy, int ox) {
    long best = -1;
    float mv = 0;
    for (int i = 0; i < q->k; i++) {
        int y = oy * q->s - q->p + i;
        if (y < 0 || y >= q->h) continue;
        for (int j = 0; j < q->k; j++) {
            int x = ox * q->s - q->p + j;
            if (x < 0 || x >= q->w) continue;
            float v = xc[(long)y * q->w + x];
            if (best < 0 || v > mv || v != v) { best = (long)y * q->w + x; mv = v; if (v != v) return best; }
        }
    }
    return best;
}

typedef struct { Pool q; float *y; const float *x; float *dx; const float *dy; } PoolCtx;

static void fwd_range(void *p, long a, long b) {
    PoolCtx *c = p;
    const Pool *q = &c->q;
    for (long bc = a; bc < b; bc++) {
        const float *xc = c->x + bc * q->h * q->w;
        float *yc = c->y + bc * q->oh * q->ow;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                long m = window_argmax(q, xc, oy, ox);
                yc[oy * q->ow + ox] = m < 0 ? 0.0f : xc[m];
            }
    }
}

static void bwd_range(void *p, long a, long b) {
    PoolCtx *c = p;
    const Pool *q = &c->q;
    for (long bc = a; bc < b; bc++) {
        const float *xc = c->x + bc * q->h * q->w, *dyc = c->dy + bc * q->oh * q->ow;
        float *dxc = c->dx + bc * q->h * q->w;
        memset(dxc, 0, sizeof(float) * q->h * q->w);
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                long m = window_argmax(q, xc, oy, ox);
                if (m >= 0) dxc[m] += dyc[oy * q->ow + ox];
            }
    }
}

void ops_cpu_maxpool_forward(int B, int C, int h, int w, int k, int s, int p, float *y, const float *x) {
    PoolCtx c = { { h, w, k, s, p, ops_maxpool_out(h, k, s, p), ops_maxpool_out(w, k, s, p) }, y, x, NULL, NULL };
    ops_parallel_for((long)B * C, 4, fwd_range, &c);
}

void ops_cpu_maxpool_backward(int B, int C, int h, int w, int k, int s, int p, float *dx, const float *dy,
                              const float *x) {
    PoolCtx c = { { h, w, k, s, p, ops_maxpool_out(h, k, s, p), ops_maxpool_out(w, k, s, p) }, NULL, x, dx, dy };
    ops_parallel_for((long)B * C, 4, bwd_range, &c);
}
