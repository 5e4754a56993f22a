// trainer/ops/cpu_mobile.c — ops_cpu's kernels for the mobile and dense nets (see cpu_mobile.h).
// Depthwise convolution has its own loops: a 3x3 filter per channel is ~9 multiply-adds per output,
// too little work for im2col + GEMM or oneDNN's reorders to pay off. Work is split over planes or
// channels (parallel.c); every reduction runs in a fixed order, independent of the thread count.
#include "trainer/ops/cpu_mobile.h"
// defines: cpu_grouped_conv_forward, cpu_grouped_conv_backward, cpu_relu6_*, cpu_channel_*, ...

#include <string.h>

// ----------------------------------------------------------------------------------------------
// depthwise convolution: plane p = n*C + c of x convolved with filter c

// output columns ox whose input column ox*s - pad + kx*dil lies in [0, w): [*lo, *hi)
static void valid_cols(const ConvDesc *d, int kx, int *lo, int *hi) {
    int off = kx * d->dil - d->pad;                      // ix = ox*s + off
    int a = off >= 0 ? 0 : (-off + d->stride - 1) / d->stride;
    int b = d->w - 1 - off < 0 ? 0 : (d->w - 1 - off) / d->stride + 1;
    if (b > d->ow) b = d->ow;
    *lo = a; *hi = b > a ? b : a;
}

typedef struct { const ConvDesc *d; float *y; const float *x, *w, *b; float *dw, *db; const float *dy; int acc, B; } DwCtx;

static void dw_fw(void *v, long p0, long p1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    int C = d->cout, K = d->kh * d->kw, s = d->stride;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w;
    for (long p = p0; p < p1; p++) {
        int ch = (int)(p % C);
        const float *x = c->x + p * hw, *wt = c->w + (long)ch * K;
        float *y = c->y + p * ohw, bv = c->b ? c->b[ch] : 0.f;
        for (long i = 0; i < ohw; i++) y[i] = bv;
        for (int ky = 0; ky < d->kh; ky++)
            for (int kx = 0; kx < d->kw; kx++) {
                float wv = wt[ky * d->kw + kx];
                int lo, hi; valid_cols(d, kx, &lo, &hi);
                int off = kx * d->dil - d->pad;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * s - d->pad + ky * d->dil;
                    if (iy < 0 || iy >= d->h) continue;
                    const float *xr = x + (long)iy * d->w + off;
                    float *yr = y + (long)oy * d->ow;
                    if (s == 1) for (int ox = lo; ox < hi; ox++) yr[ox] += wv * xr[ox];
                    else for (int ox = lo; ox < hi; ox++) yr[ox] += wv * xr[ox * s];
                }
            }
    }
}

// dx (plane p): scatter of dy through the filter
static void dw_bw_data(void *v, long p0, long p1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    int C = d->cout, K = d->kh * d->kw, s = d->stride;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w;
    for (long p = p0; p < p1; p++) {
        int ch = (int)(p % C);
        const float *dy = c->dy + p * ohw, *wt = c->w + (long)ch * K;
        float *dx = c->y + p * hw;
        if (!c->acc) memset(dx, 0, sizeof(float) * hw);
        for (int ky = 0; ky < d->kh; ky++)
            for (int kx = 0; kx < d->kw; kx++) {
                float wv = wt[ky * d->kw + kx];
                int lo, hi; valid_cols(d, kx, &lo, &hi);
                int off = kx * d->dil - d->pad;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * s - d->pad + ky * d->dil;
                    if (iy < 0 || iy >= d->h) continue;
                    float *xr = dx + (long)iy * d->w + off;
                    const float *gr = dy + (long)oy * d->ow;
                    if (s == 1) for (int ox = lo; ox < hi; ox++) xr[ox] += wv * gr[ox];
                    else for (int ox = lo; ox < hi; ox++) xr[ox * s] += wv * gr[ox];
                }
            }
    }
}

// dw, db (channel ch): sums over the batch, in double per (row, tap)
static void dw_bw_weights(void *v, long c0, long c1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    int C = d->cout, K = d->kh * d->kw, s = d->stride;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w;
    for (long ch = c0; ch < c1; ch++) {
        double acc[64] = {0}, bacc = 0;   // K <= 64 (checked by the caller)
        for (int n = 0; n < c->B; n++) {
            long p = (long)n * C + ch;
            const float *x = c->x + p * hw, *dy = c->dy + p * ohw;
            if (c->db) for (long i = 0; i < ohw; i++) bacc += dy[i];
            for (int ky = 0; ky < d->kh; ky++)
                for (int kx = 0; kx < d->kw; kx++) {
                    int lo, hi; valid_cols(d, kx, &lo, &hi);
                    int off = kx * d->dil - d->pad;
                    float sum = 0;
                    for (int oy = 0; oy < d->oh; oy++) {
                        int iy = oy * s - d->pad + ky * d->dil;
                        if (iy < 0 || iy >= d->h) continue;
                        const float *xr = x + (long)iy * d->w + off, *gr = dy + (long)oy * d->ow;
                        if (s == 1) for (int ox = lo; ox < hi; ox++) sum += gr[ox] * xr[ox];
                        else for (int ox = lo; ox < hi; ox++) sum += gr[ox] * xr[ox * s];
                    }
                    acc[ky * d->kw + kx] += sum;
                }
        }
        for (int k = 0; k < K; k++) c->dw[ch * K + k] += (float)acc[k];
        if (c->db) c->db[ch] += (float)bacc;
    }
}

// The common case (3x3, dilation 1, planes up to 64x64) on a zero-padded copy of each plane: no bounds
// checks in the inner loops, which matter on the 4x4..32x32 planes of the CIFAR nets.
#define DW_PMAX 66
#define DW_SLACK 8     // zeros past a padded plane: dwf_bw_weights' flattened dot products read up to 2 floats past it
#define LANES 8        // float lanes of the vectorized sums
// the hot kernels also built for AVX2 (chosen at load time); no FMA, so results are the same on either
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DW_SIMD __attribute__((target_clones("avx2", "default")))
#else
#define DW_SIMD
#endif
static int dw_fast(const ConvDesc *d) {
    return d->kh == 3 && d->kw == 3 && d->dil == 1 && d->pad <= 1 && d->h + 2 <= DW_PMAX && d->w + 2 <= DW_PMAX &&
           (d->stride == 1 || d->stride == 2);
}

// xp (h+2, w+2) = x with a zero border of 1 (offset by 1 - pad so that pad 0 also works)
static void pad_plane(float *xp, const float *x, const ConvDesc *d) {
    int W = d->w + 2, o = 1 - d->pad;
    memset(xp, 0, sizeof(float) * (d->h + 2) * W);
    for (int i = 0; i < d->h; i++) memcpy(xp + (long)(i + 1) * W + 1, x + (long)i * d->w, sizeof(float) * d->w);
    (void)o;
}

DW_SIMD static void dwf_fw(void *v, long p0, long p1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    int C = d->cout, s = d->stride, W = d->w + 2, o = 1 - d->pad;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w;
    float xp[DW_PMAX * DW_PMAX];
    for (long p = p0; p < p1; p++) {
        int ch = (int)(p % C);
        const float *wt = c->w + (long)ch * 9;
        pad_plane(xp, c->x + p * hw, d);
        float *y = c->y + p * ohw, bv = c->b ? c->b[ch] : 0.f;
        for (int oy = 0; oy < d->oh; oy++) {
            const float *r0 = xp + (long)(oy * s + o) * W + o, *r1 = r0 + W, *r2 = r1 + W;
            float *yr = y + (long)oy * d->ow;
            if (s == 1)
                for (int ox = 0; ox < d->ow; ox++)
                    yr[ox] = bv + wt[0] * r0[ox] + wt[1] * r0[ox + 1] + wt[2] * r0[ox + 2] + wt[3] * r1[ox] + wt[4] * r1[ox + 1] +
                             wt[5] * r1[ox + 2] + wt[6] * r2[ox] + wt[7] * r2[ox + 1] + wt[8] * r2[ox + 2];
            else
                for (int ox = 0; ox < d->ow; ox++) {
                    int q = 2 * ox;
                    yr[ox] = bv + wt[0] * r0[q] + wt[1] * r0[q + 1] + wt[2] * r0[q + 2] + wt[3] * r1[q] + wt[4] * r1[q + 1] +
                             wt[5] * r1[q + 2] + wt[6] * r2[q] + wt[7] * r2[q + 1] + wt[8] * r2[q + 2];
                }
        }
    }
}

static void dwf_bw_data_scatter(void *v, long p0, long p1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    int C = d->cout, s = d->stride, W = d->w + 2, o = 1 - d->pad;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w;
    float gp[DW_PMAX * DW_PMAX];
    for (long p = p0; p < p1; p++) {
        int ch = (int)(p % C);
        const float *wt = c->w + (long)ch * 9, *dy = c->dy + p * ohw;
        memset(gp, 0, sizeof(float) * (d->h + 2) * W);
        for (int oy = 0; oy < d->oh; oy++) {
            float *r0 = gp + (long)(oy * s + o) * W + o, *r1 = r0 + W, *r2 = r1 + W;
            const float *g = dy + (long)oy * d->ow;
            for (int ox = 0; ox < d->ow; ox++) {
                float gv = g[ox]; int q = ox * s;
                r0[q] += wt[0] * gv; r0[q + 1] += wt[1] * gv; r0[q + 2] += wt[2] * gv;
                r1[q] += wt[3] * gv; r1[q + 1] += wt[4] * gv; r1[q + 2] += wt[5] * gv;
                r2[q] += wt[6] * gv; r2[q + 1] += wt[7] * gv; r2[q + 2] += wt[8] * gv;
            }
        }
        float *dx = c->y + p * hw;
        for (int i = 0; i < d->h; i++) {
            const float *src = gp + (long)(i + 1) * W + 1;
            float *dst = dx + (long)i * d->w;
            if (c->acc) for (int j = 0; j < d->w; j++) dst[j] += src[j];
            else memcpy(dst, src, sizeof(float) * d->w);
        }
    }
}

static void dwf_bw_weights_s2(void *v, long c0, long c1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    int C = d->cout, s = d->stride, W = d->w + 2, o = 1 - d->pad;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w;
    float xp[DW_PMAX * DW_PMAX];
    for (long ch = c0; ch < c1; ch++) {
        double acc[9] = {0}, bacc = 0;
        for (int n = 0; n < c->B; n++) {
            long p = (long)n * C + ch;
            pad_plane(xp, c->x + p * hw, d);
            const float *dy = c->dy + p * ohw;
            float a[9] = {0}, bs = 0;
            for (int oy = 0; oy < d->oh; oy++) {
                const float *r0 = xp + (long)(oy * s + o) * W + o, *r1 = r0 + W, *r2 = r1 + W, *g = dy + (long)oy * d->ow;
                for (int ox = 0; ox < d->ow; ox++) {
                    float gv = g[ox]; int q = ox * s;
                    bs += gv;
                    a[0] += gv * r0[q]; a[1] += gv * r0[q + 1]; a[2] += gv * r0[q + 2];
                    a[3] += gv * r1[q]; a[4] += gv * r1[q + 1]; a[5] += gv * r1[q + 2];
                    a[6] += gv * r2[q]; a[7] += gv * r2[q + 1]; a[8] += gv * r2[q + 2];
                }
            }
            for (int k = 0; k < 9; k++) acc[k] += a[k];
            bacc += bs;
        }
        for (int k = 0; k < 9; k++) c->dw[ch * 9 + k] += (float)acc[k];
        if (c->db) c->db[ch] += (float)bacc;
    }
}

// Stride 1, pad 1 ("same"): dy zero-padded by 1 into gp (h+2, W = w+2), so that
// dx[iy][ix] = sum_{a,b} w[8 - 3a - b] * gp[(iy + a) * W + ix + b], a gather like the forward pass whose
// inner loop runs along a row without the scatter's dependences (so it vectorizes).
static void pad_dy(float *gp, const float *dy, const ConvDesc *d) {
    int W = d->w + 2;
    memset(gp, 0, sizeof(float) * ((d->oh + 2) * W + DW_SLACK));
    for (int i = 0; i < d->oh; i++) memcpy(gp + (long)(i + 1) * W + 1, dy + (long)i * d->ow, sizeof(float) * d->ow);
}

DW_SIMD static void dwf_bw_data(void *v, long p0, long p1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    if (d->stride != 1 || d->pad != 1) { dwf_bw_data_scatter(v, p0, p1); return; }
    int C = d->cout, W = d->w + 2;
    long hw = (long)d->h * d->w, ohw = (long)d->oh * d->ow;
    float gp[DW_PMAX * DW_PMAX + DW_SLACK];
    for (long p = p0; p < p1; p++) {
        const float *wt = c->w + (p % C) * 9;
        float f[9];
        for (int k = 0; k < 9; k++) f[k] = wt[8 - k];
        pad_dy(gp, c->dy + p * ohw, d);
        float *dx = c->y + p * hw;
        for (int iy = 0; iy < d->h; iy++) {
            const float *r0 = gp + (long)iy * W, *r1 = r0 + W, *r2 = r1 + W;
            float *xr = dx + (long)iy * d->w;
            for (int ix = 0; ix < d->w; ix++) {
                float t = f[0] * r0[ix] + f[1] * r0[ix + 1] + f[2] * r0[ix + 2] + f[3] * r1[ix] + f[4] * r1[ix + 1] +
                          f[5] * r1[ix + 2] + f[6] * r2[ix] + f[7] * r2[ix + 1] + f[8] * r2[ix + 2];
                xr[ix] = c->acc ? xr[ix] + t : t;
            }
        }
    }
}

// sum_{j < n} a[j] * b[j] in LANES float lanes (vectorizes), the lanes summed in a fixed order
static float dot_lanes(const float *a, const float *b, long n) {
    float l[LANES] = {0};
    long j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) l[k] += a[j + k] * b[j + k];
    for (; j < n; j++) l[0] += a[j] * b[j];
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

// Stride 1, pad 1: on the padded planes xp (x) and gp (dy, its two extra columns per row zero), the tap
// (ky, kx) is one dot product along the flattened rows: dw[ky][kx] = sum_j gp[W + 1 + j] * xp[j + ky*W + kx]
// over j < oh * W (the junk columns multiply zeros). Per sample in float lanes, over the batch in double.
DW_SIMD static void dwf_bw_weights(void *v, long c0, long c1) {
    DwCtx *c = v; const ConvDesc *d = c->d;
    if (d->stride != 1 || d->pad != 1) { dwf_bw_weights_s2(v, c0, c1); return; }
    int C = d->cout, W = d->w + 2;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w, n = (long)d->oh * W;
    float xp[DW_PMAX * DW_PMAX + DW_SLACK], gp[DW_PMAX * DW_PMAX + DW_SLACK];
    memset(xp, 0, sizeof xp);
    for (long ch = c0; ch < c1; ch++) {
        double acc[9] = {0}, bacc = 0;
        for (int b = 0; b < c->B; b++) {
            long p = (long)b * C + ch;
            pad_plane(xp, c->x + p * hw, d);
            pad_dy(gp, c->dy + p * ohw, d);
            const float *g = gp + W + 1;
            for (int k = 0; k < 9; k++) acc[k] += dot_lanes(g, xp + (k / 3) * W + k % 3, n);
            if (c->db) {
                float l[LANES] = {0};
                for (long j = 0; j + LANES <= ohw; j += LANES)
                    for (int q = 0; q < LANES; q++) l[q] += c->dy[p * ohw + j + q];
                for (long j = ohw - ohw % LANES; j < ohw; j++) l[0] += c->dy[p * ohw + j];
                bacc += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
            }
        }
        for (int k = 0; k < 9; k++) c->dw[ch * 9 + k] += (float)acc[k];
        if (c->db) c->db[ch] += (float)bacc;
    }
}

static int is_depthwise(const ConvDesc *d) {
    return d->groups == d->cin && d->cout == d->cin && d->kh * d->kw <= 64;
}

ConvDesc cpu_group_desc(const ConvDesc *d) {
    ConvDesc g = *d;
    g.cin = d->cin / d->groups; g.cout = d->cout / d->groups; g.groups = 1;
    return g;
}

void cpu_grouped_conv_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b,
                              float *ws, CpuConvFw conv1) {
    if (is_depthwise(d)) {
        DwCtx c = {.d = d, .y = y, .x = x, .w = w, .b = b};
        ops_parallel_for((long)B * d->cout, 1, dw_fast(d) ? dwf_fw : dw_fw, &c);
        return;
    }
    ConvDesc g = cpu_group_desc(d);
    long xs = (long)g.cin * d->h * d->w, ys = (long)g.cout * d->oh * d->ow, wsz = (long)g.cout * g.cin * d->kh * d->kw;
    for (int n = 0; n < B; n++)
        for (int k = 0; k < d->groups; k++) {
            long gi = (long)n * d->groups + k;
            conv1(&g, 1, y + gi * ys, x + gi * xs, w + k * wsz, b ? b + (long)k * g.cout : NULL, ws);
        }
}

void cpu_grouped_conv_backward(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy,
                               const float *x, const float *w, float *ws, int accumulate, CpuConvBw conv1) {
    if (is_depthwise(d)) {
        DwCtx c = {.d = d, .x = x, .w = w, .dy = dy, .dw = dw, .db = db, .B = B, .y = dx, .acc = accumulate};
        if (dw) ops_parallel_for(d->cout, 1, dw_fast(d) ? dwf_bw_weights : dw_bw_weights, &c);
        if (dx) ops_parallel_for((long)B * d->cout, 1, dw_fast(d) ? dwf_bw_data : dw_bw_data, &c);
        return;
    }
    ConvDesc g = cpu_group_desc(d);
    long xs = (long)g.cin * d->h * d->w, ys = (long)g.cout * d->oh * d->ow, wsz = (long)g.cout * g.cin * d->kh * d->kw;
    for (int n = 0; n < B; n++)
        for (int k = 0; k < d->groups; k++) {
            long gi = (long)n * d->groups + k;
            conv1(&g, 1, dx ? dx + gi * xs : NULL, dw + k * wsz, db ? db + (long)k * g.cout : NULL, dy + gi * ys,
                  x + gi * xs, w + k * wsz, ws, accumulate);
        }
}

// ----------------------------------------------------------------------------------------------
// elementwise

#define EW_GRAIN 16384
typedef struct { float *y; const float *a, *b; float p; uint64_t seed; } Ew;

static void relu6_fw(void *v, long i0, long i1) {
    Ew *c = v;
    for (long i = i0; i < i1; i++) { float t = c->a[i] > 0.f ? c->a[i] : 0.f; c->y[i] = t < 6.f ? t : 6.f; }
}
static void relu6_bw(void *v, long i0, long i1) {
    Ew *c = v;
    for (long i = i0; i < i1; i++) { float g = c->a[i], yv = c->b[i]; c->y[i] = (yv > 0.f && yv < 6.f) ? g : 0.f; }
}
void cpu_relu6_forward(size_t n, float *y, const float *x) { Ew c = {y, x, NULL, 0, 0}; ops_parallel_for((long)n, EW_GRAIN, relu6_fw, &c); }
void cpu_relu6_backward(size_t n, float *dx, const float *dy, const float *y) {
    Ew c = {dx, dy, y, 0, 0}; ops_parallel_for((long)n, EW_GRAIN, relu6_bw, &c);
}

static void dropout_run(void *v, long i0, long i1) {
    Ew *c = v; float scale = 1.f / (1.f - c->p);
    for (long i = i0; i < i1; i++) c->y[i] = ops_dropout_keep(c->seed, (uint64_t)i, c->p) ? c->a[i] * scale : 0.f;
}
void cpu_dropout_forward(size_t n, float p, uint64_t seed, float *y, const float *x) {
    if (p <= 0.f) { if (y != x) memmove(y, x, sizeof(float) * n); return; }
    Ew c = {y, x, NULL, p, seed}; ops_parallel_for((long)n, EW_GRAIN, dropout_run, &c);
}
void cpu_dropout_backward(size_t n, float p, uint64_t seed, float *dx, const float *dy) { cpu_dropout_forward(n, p, seed, dx, dy); }

// ----------------------------------------------------------------------------------------------
// channel moves: every plane is a contiguous run of HW floats

typedef struct { int B, HW, n, dC, doff, sC, soff, acc, G, M; float *dst; const float *src; } Mv;

static void copy_planes(void *v, long q0, long q1) {   // q = sample * n + channel
    Mv *m = v;
    for (long q = q0; q < q1; q++) {
        long s = q / m->n, k = q % m->n;
        float *d = m->dst + (s * m->dC + m->doff + k) * m->HW;
        const float *x = m->src + (s * m->sC + m->soff + k) * m->HW;
        if (m->acc) for (int i = 0; i < m->HW; i++) d[i] += x[i];
        else memcpy(d, x, sizeof(float) * m->HW);
    }
}
void cpu_channel_copy(int B, int HW, int n, float *dst, int dC, int doff, const float *src, int sC, int soff,
                      int accumulate) {
    Mv m = {.B = B, .HW = HW, .n = n, .dC = dC, .doff = doff, .sC = sC, .soff = soff, .acc = accumulate, .dst = dst, .src = src};
    if (n > 0) ops_parallel_for((long)B * n, 4, copy_planes, &m);
}

static void shuffle_planes(void *v, long q0, long q1) {   // output plane q = s*C + (j*G + g) <- input s*C + (g*M + j)
    Mv *m = v; long C = (long)m->G * m->M;
    for (long q = q0; q < q1; q++) {
        long s = q / C, o = q % C, j = o / m->G, g = o % m->G;
        memcpy(m->dst + q * m->HW, m->src + (s * C + g * m->M + j) * m->HW, sizeof(float) * m->HW);
    }
}
void cpu_channel_shuffle(int B, int C, int groups, int HW, float *y, const float *x) {
    Mv m = {.HW = HW, .G = groups, .M = C / groups, .dst = y, .src = x};
    ops_parallel_for((long)B * C, 4, shuffle_planes, &m);
}

static void swap_planes(void *v, long q0, long q1) {   // output plane q = b*A + a <- input a*B + b
    Mv m = *(Mv *)v;
    for (long q = q0; q < q1; q++) {
        long b = q / m.G, a = q % m.G;
        memcpy(m.dst + q * m.HW, m.src + (a * m.M + b) * m.HW, sizeof(float) * m.HW);
    }
}
void cpu_swap_dims01(int A, int B, int HW, float *y, const float *x) {
    Mv m = {.HW = HW, .G = A, .M = B, .dst = y, .src = x};
    ops_parallel_for((long)A * B, HW >= 64 ? 4 : 256, swap_planes, &m);
}

// ----------------------------------------------------------------------------------------------
// average pool 2x2

typedef struct { int h, w; float *y; const float *x; } Ap;
static void ap_fw(void *v, long p0, long p1) {
    Ap *c = v; int oh = c->h / 2, ow = c->w / 2;
    for (long p = p0; p < p1; p++) {
        const float *x = c->x + p * c->h * c->w; float *y = c->y + p * oh * ow;
        for (int i = 0; i < oh; i++) {
            const float *r0 = x + 2 * i * c->w, *r1 = r0 + c->w;
            for (int j = 0; j < ow; j++) y[i * ow + j] = 0.25f * ((r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]));
        }
    }
}
static void ap_bw(void *v, long p0, long p1) {   // y = dx (h, w), x = dy
    Ap *c = v; int oh = c->h / 2, ow = c->w / 2;
    for (long p = p0; p < p1; p++) {
        const float *g = c->x + p * oh * ow; float *dx = c->y + p * c->h * c->w;
        memset(dx, 0, sizeof(float) * c->h * c->w);
        for (int i = 0; i < oh; i++) {
            float *r0 = dx + 2 * i * c->w, *r1 = r0 + c->w;
            for (int j = 0; j < ow; j++) {
                float q = 0.25f * g[i * ow + j];
                r0[2 * j] = q; r0[2 * j + 1] = q; r1[2 * j] = q; r1[2 * j + 1] = q;
            }
        }
    }
}
void cpu_avgpool2x2_forward(int B, int C, int h, int w, float *y, const float *x) {
    Ap c = {h, w, y, x}; ops_parallel_for((long)B * C, 4, ap_fw, &c);
}
void cpu_avgpool2x2_backward(int B, int C, int h, int w, float *dx, const float *dy) {
    Ap c = {h, w, dx, dy}; ops_parallel_for((long)B * C, 4, ap_bw, &c);
}
