// trainer/ops/ops_cpu.c — the CPU op table: float32 NCHW, OpenBLAS sgemm for the convolutions
// (im2col/col2im over chunks of samples so that small feature maps still make wide GEMMs), and the
// ops' own loops split over the thread pool in parallel.c. Reductions are per channel / per block in
// a fixed order, so results do not depend on the thread count.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/ops/ops.h"
#include "trainer/ops/conv3x3_direct.h"
#include "trainer/ops/conv_cut.h"
#include "trainer/ops/conv_dnnl.h"
#include "trainer/ops/cpu_mobile.h"
// defines: ops_cpu, ops_conv2d_desc, ops_conv2d_desc_grouped

// ----------------------------------------------------------------------------------------------
// memory

static void *cpu_alloc(size_t bytes) { return calloc(bytes ? bytes : 1, 1); }
static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { if (bytes) memmove(dst, src, bytes); }
static void cpu_zero(void *p, size_t bytes) { if (bytes) memset(p, 0, bytes); }

static void cpu_set_threads(int n) {
    if (n < 1) n = 1;
    openblas_set_num_threads(n);
    ops_parallel_set_threads(n);
    conv_dnnl_set_threads(n);
}

int ops_conv2d_desc(ConvDesc *d, int cin, int cout, int h, int w, int k, int stride, int pad, int dil) {
    *d = (ConvDesc){.cin = cin, .cout = cout, .h = h, .w = w, .kh = k, .kw = k,
                    .stride = stride, .pad = pad, .dil = dil, .groups = 1, .padh = pad, .padw = pad};
    if (cin < 1 || cout < 1 || k < 1 || stride < 1 || dil < 1 || pad < 0) return -1;
    d->oh = (h + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    d->ow = (w + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    return (d->oh >= 1 && d->ow >= 1 && h + 2 * pad >= dil * (k - 1) + 1) ? 0 : -1;
}

int ops_conv2d_desc_grouped(ConvDesc *d, int cin, int cout, int h, int w, int k, int stride, int pad, int dil,
                            int groups) {
    int rc = ops_conv2d_desc(d, cin, cout, h, w, k, stride, pad, dil);
    if (groups < 1 || cin % groups || cout % groups) return -1;
    d->groups = groups;
    return rc;
}

// ----------------------------------------------------------------------------------------------
// conv2d: im2col over a chunk of `nb` samples -> col (K = cin*kh*kw rows, N = nb*oh*ow columns, the
// column index is sample-major), then y_chunk (cout, N) = W (cout, K) x col.

#define CONV_TARGET_COLS 1024          // aim for at least this many GEMM columns per chunk
#define CONV_MAX_COL_FLOATS (8u << 20) // cap on the im2col buffer (32 MiB)

static int direct_data(const ConvDesc *d);
enum { PASS_FW, PASS_DATA, PASS_WEIGHTS };
static int dnnl_pass(const ConvDesc *d, int pass);

static int conv_chunk(const ConvDesc *d, int B) {
    long ohw = (long)d->oh * d->ow, K = (long)d->cin * d->kh * d->kw;
    long nb = (CONV_TARGET_COLS + ohw - 1) / ohw;
    while (nb > 1 && K * nb * ohw > (long)CONV_MAX_COL_FLOATS) nb--;
    if (nb > B) nb = B;
    return nb < 1 ? 1 : (int)nb;
}

// A cut convolution (conv_cut.h) takes oneDNN for a pass when the full one would, or when it would itself.
static int cut_dnnl_pass(const ConvDesc *d, const ConvDesc *r, int pass) {
    return dnnl_pass(d, pass) || dnnl_pass(r, pass);
}
static int any_dnnl_pass(const ConvDesc *d) {
    return dnnl_pass(d, PASS_FW) || dnnl_pass(d, PASS_DATA) || dnnl_pass(d, PASS_WEIGHTS);
}
// floats of a cut convolution's compact weights, in 64-byte steps (the rest of the workspace stays aligned)
static size_t cut_weight_floats(const ConvDesc *r) {
    return ((size_t)r->cout * r->cin * r->kh * r->kw + 15) & ~(size_t)15;
}
static size_t conv2d_workspace_on(const ConvDesc *d, int max_batch, int dnnl);

static size_t cpu_conv2d_workspace(const ConvDesc *d, int max_batch) {
    if (d->groups > 1) {   // depthwise needs none; other groups run one (sample, group) at a time
        if (d->groups == d->cin && d->cout == d->cin) return 0;
        ConvDesc g = cpu_group_desc(d);
        return cpu_conv2d_workspace(&g, 1);
    }
    ConvDesc r; int ky0, kx0;
    if (conv_cut_desc(d, &r, &ky0, &kx0)) {   // the compact weights and their gradient, then the cut conv's
        int dnnl = cut_dnnl_pass(d, &r, PASS_FW) || cut_dnnl_pass(d, &r, PASS_DATA) ||
                   cut_dnnl_pass(d, &r, PASS_WEIGHTS);
        return 2 * cut_weight_floats(&r) + conv2d_workspace_on(&r, max_batch, dnnl);
    }
    return conv2d_workspace_on(d, max_batch, any_dnnl_pass(d));
}

// The workspace of d's own paths (im2col, direct kernel), and of oneDNN's when dnnl is set.
static size_t conv2d_workspace_on(const ConvDesc *d, int max_batch, int dnnl) {
    int nb = conv_chunk(d, max_batch);
    size_t n = (size_t)nb * d->oh * d->ow, K = (size_t)d->cin * d->kh * d->kw;
    size_t ws = K * n + (nb > 1 ? (size_t)d->cout * n : 0);
    if (conv3x3_direct_ok(d)) {
        size_t dw = conv3x3_direct_workspace(d, max_batch);
        if (dw > ws) ws = dw;
    }
    if (dnnl) {
        size_t dn = conv_dnnl_workspace(d, max_batch);
        if (dn > ws) ws = dn;
    }
    return ws;
}

typedef struct { const ConvDesc *d; int nb; float *col; const float *x; float *dx; } Im2colCtx;

static void im2col_rows(void *vctx, long r0, long r1) {
    Im2colCtx *c = vctx; const ConvDesc *d = c->d;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w, N = c->nb * ohw;
    for (long r = r0; r < r1; r++) {
        int kx = r % d->kw, ky = (r / d->kw) % d->kh, ci = r / (d->kw * d->kh);
        float *dst = c->col + r * N;
        for (int s = 0; s < c->nb; s++) {
            const float *src = c->x + ((long)s * d->cin + ci) * hw;
            for (int oy = 0; oy < d->oh; oy++) {
                int iy = oy * d->stride - d->padh + ky * d->dil;
                float *o = dst + s * ohw + (long)oy * d->ow;
                if (iy < 0 || iy >= d->h) { memset(o, 0, sizeof(float) * d->ow); continue; }
                const float *row = src + (long)iy * d->w;
                int ix0 = -d->padw + kx * d->dil;
                if (d->stride == 1) {
                    int lo = ix0 < 0 ? -ix0 : 0;                    // first ox with ix >= 0
                    int hi = d->w - ix0; if (hi > d->ow) hi = d->ow; // ox < hi has ix < w
                    if (hi < lo) hi = lo;
                    for (int ox = 0; ox < lo; ox++) o[ox] = 0;
                    if (hi > lo) memcpy(o + lo, row + ix0 + lo, sizeof(float) * (hi - lo));
                    for (int ox = hi; ox < d->ow; ox++) o[ox] = 0;
                } else {
                    for (int ox = 0; ox < d->ow; ox++) {
                        int ix = ix0 + ox * d->stride;
                        o[ox] = (ix >= 0 && ix < d->w) ? row[ix] : 0.f;
                    }
                }
            }
        }
    }
}

// col2im: each input channel's rows write only that channel, so channels run in parallel.
static void col2im_channels(void *vctx, long c0, long c1) {
    Im2colCtx *c = vctx; const ConvDesc *d = c->d;
    long ohw = (long)d->oh * d->ow, hw = (long)d->h * d->w, N = c->nb * ohw;
    for (long ci = c0; ci < c1; ci++)
        for (int ky = 0; ky < d->kh; ky++)
            for (int kx = 0; kx < d->kw; kx++) {
                const float *srow = c->col + ((ci * d->kh + ky) * d->kw + kx) * N;
                for (int s = 0; s < c->nb; s++) {
                    float *dst = c->dx + ((long)s * d->cin + ci) * hw;
                    for (int oy = 0; oy < d->oh; oy++) {
                        int iy = oy * d->stride - d->padh + ky * d->dil;
                        if (iy < 0 || iy >= d->h) continue;
                        const float *o = srow + s * ohw + (long)oy * d->ow;
                        float *row = dst + (long)iy * d->w;
                        int ix0 = -d->padw + kx * d->dil;
                        if (d->stride == 1) {                     // contiguous: a vectorizable add
                            int lo = ix0 < 0 ? -ix0 : 0, hi = d->w - ix0;
                            if (hi > d->ow) hi = d->ow;
                            float *r = row + ix0;
                            for (int ox = lo; ox < hi; ox++) r[ox] += o[ox];
                            continue;
                        }
                        for (int ox = 0; ox < d->ow; ox++) {
                            int ix = ix0 + ox * d->stride;
                            if (ix >= 0 && ix < d->w) row[ix] += o[ox];
                        }
                    }
                }
            }
}

// Moves between the chunk layout (cout, nb*ohw) and NCHW (nb, cout, ohw); optionally adds bias.
typedef struct { int nb, C; long hw; float *nchw; float *chunk; const float *bias; int to_nchw; } ShuffleCtx;

static void shuffle_channels(void *vctx, long c0, long c1) {
    ShuffleCtx *s = vctx;
    for (long c = c0; c < c1; c++)
        for (int n = 0; n < s->nb; n++) {
            float *a = s->nchw + ((long)n * s->C + c) * s->hw, *b = s->chunk + (c * s->nb + n) * s->hw;
            if (!s->to_nchw) { memcpy(b, a, sizeof(float) * s->hw); continue; }
            if (s->bias) { float bv = s->bias[c]; for (long i = 0; i < s->hw; i++) a[i] = b[i] + bv; }
            else memcpy(a, b, sizeof(float) * s->hw);
        }
}

typedef struct { int C; long hw; float *y; const float *bias; } BiasCtx;
static void bias_planes(void *vctx, long p0, long p1) {
    BiasCtx *b = vctx;
    for (long p = p0; p < p1; p++) {
        float bv = b->bias[p % b->C], *y = b->y + p * b->hw;
        for (long i = 0; i < b->hw; i++) y[i] += bv;
    }
}

// The forward pass on oneDNN (when dnnl is set and it takes the call), the direct kernel or im2col + sgemm.
static void conv2d_forward_on(const ConvDesc *d, int dnnl, int B, float *y, const float *x, const float *w,
                              const float *b, float *ws) {
    if (dnnl && conv_dnnl_forward(d, B, y, x, w, b, ws) == 0) return;
    if (direct_data(d)) { conv3x3_direct_forward(d, B, y, x, w, b, ws); return; }
    int nb = conv_chunk(d, B);
    long ohw = (long)d->oh * d->ow, K = (long)d->cin * d->kh * d->kw, hw = (long)d->h * d->w;
    int direct = d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
    for (int n0 = 0; n0 < B; n0 += nb) {
        int cur = B - n0 < nb ? B - n0 : nb;
        long N = cur * ohw;
        const float *col = x + (long)n0 * d->cin * hw;
        if (!(direct && cur == 1)) {
            Im2colCtx c = {d, cur, ws, col, NULL};
            ops_parallel_for(K, 1, im2col_rows, &c);
            col = ws;
        }
        float *ydst = y + (long)n0 * d->cout * ohw;
        float *out = cur == 1 ? ydst : ws + K * N;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d->cout, N, K, 1.f, w, K, col, N, 0.f, out, N);
        if (cur > 1) {
            ShuffleCtx s = {cur, d->cout, ohw, ydst, out, b, 1};
            ops_parallel_for(d->cout, 1, shuffle_channels, &s);
        } else if (b) {
            BiasCtx bc = {d->cout, ohw, ydst, b};
            ops_parallel_for(d->cout, 1, bias_planes, &bc);
        }
    }
}

static void cpu_conv2d_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w,
                               const float *b, float *ws) {
    if (d->groups > 1) { cpu_grouped_conv_forward(d, B, y, x, w, b, ws, cpu_conv2d_forward); return; }
    ConvDesc r; int ky0, kx0;
    if (conv_cut_desc(d, &r, &ky0, &kx0)) {   // only the taps that read the image, on compact weights
        size_t wf = cut_weight_floats(&r);
        conv_cut_gather(d, &r, ky0, kx0, ws, w);
        conv2d_forward_on(&r, cut_dnnl_pass(d, &r, PASS_FW), B, y, x, ws, b, ws + 2 * wf);
        return;
    }
    conv2d_forward_on(d, dnnl_pass(d, PASS_FW), B, y, x, w, b, ws);
}

static void row_sums_acc(float *db, const float *a, int rows, long cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0; const float *p = a + r * cols;
        for (long i = 0; i < cols; i++) s += p[i];
        db[r] += (float)s;
    }
}

// Which convolutions take the direct kernels (see conv3x3_direct.c). Measured per layer shape
// (1 thread, batch 16): direct wins at >= 32 px wide or <= 64 channels for forward and input gradient,
// and at >= 32 px or <= 32 channels for the weight gradient; im2col + sgemm wins at 16 px x 128 channels.
static int direct_data(const ConvDesc *d) {
    return conv3x3_direct_ok(d) && (d->w >= 32 || (d->cin <= 64 && d->cout <= 64));
}
static int direct_weights(const ConvDesc *d) {
    return conv3x3_direct_ok(d) && (d->w >= 32 || (d->cin <= 32 && d->cout <= 32));
}

// Which passes take oneDNN (conv_dnnl.c). Measured in place (unet w16 batch 16, resnet18 batch 128,
// 1 thread, steps alternating between choices in one process, thread CPU time per op): oneDNN wins
// 1.5-2.5x on 3x3 layers with >= 64 input channels, and from 32 input channels when the layer does not
// widen (forward only up to 32 px: UNet's 64 px 32->16 layer is faster on the direct kernel); the input
// gradient (a conv from cout to cin channels) wins when both sides have >= 64; 1x1 layers win from 64
// input channels (ResNet's shortcuts, ~1.2x). UNet's top levels (1-32 channels at 32-64 px), the first
// layers and its 1x1 head stay on the direct kernel / im2col + sgemm (ties or losses for oneDNN).
static int dnnl_pass(const ConvDesc *d, int pass) {
    int ok = conv_dnnl_ok(d);
    if (ok == 2) return 1;
    if (!ok) return 0;
    if (d->kh == 1 && d->kw == 1) return d->cin >= 64;
    if (d->kh != 3 || d->kw != 3) return 0;
    int wide = d->cin >= 64 || (d->cin >= 32 && d->cout <= d->cin);
    switch (pass) {
    case PASS_FW: return wide && d->oh <= 32;
    case PASS_DATA: return d->cin >= 64 && d->cout >= 64;
    default: return wide;
    }
}



// im2col backward; dw == NULL skips the weight gradient (and db), dx == NULL the input gradient.
static void conv2d_backward_im2col(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy,
                                   const float *x, const float *w, float *ws, int accumulate) {
    int nb = conv_chunk(d, B);
    long ohw = (long)d->oh * d->ow, K = (long)d->cin * d->kh * d->kw, hw = (long)d->h * d->w;
    int direct = d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
    if (dx && !accumulate) memset(dx, 0, sizeof(float) * B * d->cin * hw);
    for (int n0 = 0; n0 < B; n0 += nb) {
        int cur = B - n0 < nb ? B - n0 : nb;
        long N = cur * ohw;
        const float *g = dy + (long)n0 * d->cout * ohw;
        if (cur > 1) {
            ShuffleCtx s = {cur, d->cout, ohw, (float *)g, ws + K * N, NULL, 0};
            ops_parallel_for(d->cout, 1, shuffle_channels, &s);
            g = ws + K * N;
        }
        if (dw) {
            const float *xs = x + (long)n0 * d->cin * hw;
            const float *col = xs;
            if (!(direct && cur == 1)) {
                Im2colCtx c = {d, cur, ws, xs, NULL};
                ops_parallel_for(K, 1, im2col_rows, &c);
                col = ws;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d->cout, K, N, 1.f, g, N, col, N, 1.f, dw, K);
            if (db) row_sums_acc(db, g, d->cout, N);
        }
        if (!dx) continue;
        float *dxs = dx + (long)n0 * d->cin * hw;
        if (direct && cur == 1) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, d->cout, 1.f, w, K, g, N, 1.f, dxs, N);
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, d->cout, 1.f, w, K, g, N, 0.f, ws, N);
        Im2colCtx c = {d, cur, ws, NULL, dxs};
        ops_parallel_for(d->cin, 1, col2im_channels, &c);
    }
}

// The backward passes, each on oneDNN (when dnnl_w / dnnl_d is set and it takes the call), the direct
// kernels or im2col + sgemm.
static void conv2d_backward_on(const ConvDesc *d, int dnnl_w, int dnnl_d, int B, float *dx, float *dw, float *db,
                               const float *dy, const float *x, const float *w, float *ws, int accumulate) {
    if (dw && dnnl_w && conv_dnnl_backward_weights(d, B, dw, db, dy, x, ws) == 0) dw = NULL;
    if (dx && dnnl_d && conv_dnnl_backward_data(d, B, dx, dy, w, ws, accumulate) == 0) dx = NULL;
    if (!dw && !dx) return;
    int dd = dx && direct_data(d), dwk = dw && direct_weights(d);
    if (!dd && !dwk) { conv2d_backward_im2col(d, B, dx, dw, db, dy, x, w, ws, accumulate); return; }
    if (dwk) conv3x3_direct_backward_weights(d, B, dw, db, dy, x, ws);
    else if (dw) conv2d_backward_im2col(d, B, NULL, dw, db, dy, x, w, ws, 0);
    if (dd) conv3x3_direct_backward_data(d, B, dx, dy, w, ws, accumulate);
    else if (dx) conv2d_backward_im2col(d, B, dx, NULL, NULL, dy, x, w, ws, accumulate);
}

// The cut convolution's backward: the weight gradient into a zeroed compact buffer, added back at the
// kept taps (the dropped ones' gradient is zero); the input gradient from the compact weights.
static void conv2d_backward_cut(const ConvDesc *d, const ConvDesc *r, int ky0, int kx0, int B, float *dx, float *dw,
                                float *db, const float *dy, const float *x, const float *w, float *ws, int accumulate) {
    size_t wf = cut_weight_floats(r);
    float *wc = ws, *dwc = dw ? ws + wf : NULL;
    if (dx) conv_cut_gather(d, r, ky0, kx0, wc, w);
    if (dwc) memset(dwc, 0, sizeof(float) * wf);
    conv2d_backward_on(r, cut_dnnl_pass(d, r, PASS_WEIGHTS), cut_dnnl_pass(d, r, PASS_DATA), B, dx, dwc, db, dy, x,
                       wc, ws + 2 * wf, accumulate);
    if (dwc) conv_cut_add_back(d, r, ky0, kx0, dw, dwc);
}

static void cpu_conv2d_backward(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, float *ws, int accumulate) {
    if (d->groups > 1) {
        cpu_grouped_conv_backward(d, B, dx, dw, db, dy, x, w, ws, accumulate, cpu_conv2d_backward);
        return;
    }
    ConvDesc r; int ky0, kx0;
    if (conv_cut_desc(d, &r, &ky0, &kx0)) {
        conv2d_backward_cut(d, &r, ky0, kx0, B, dx, dw, db, dy, x, w, ws, accumulate);
        return;
    }
    conv2d_backward_on(d, dnnl_pass(d, PASS_WEIGHTS), dnnl_pass(d, PASS_DATA), B, dx, dw, db, dy, x, w, ws,
                       accumulate);
}

// ----------------------------------------------------------------------------------------------
// transposed conv 2x2 stride 2: per sample Y (cout*4, hw) = W^T (cout*4, cin) x X (cin, hw), then
// Y[co*4 + ky*2 + kx][i*w + j] lands at y[co][2i+ky][2j+kx].

static size_t cpu_convt2x2_workspace(int cin, int cout, int h, int w) { return (size_t)cout * 4 * h * w; }

typedef struct { int cout, h, w; float *y; float *cols; const float *b; int to_image; } ConvtCtx;

static void convt_shuffle(void *vctx, long c0, long c1) {
    ConvtCtx *c = vctx; long hw = (long)c->h * c->w; int W2 = 2 * c->w;
    for (long co = c0; co < c1; co++) {
        float bv = (c->to_image && c->b) ? c->b[co] : 0.f;
        float *img = c->y + co * 4 * hw;
        for (int k = 0; k < 4; k++) {
            int ky = k >> 1, kx = k & 1;
            float *col = c->cols + (co * 4 + k) * hw;
            for (int i = 0; i < c->h; i++) {
                float *row = img + (long)(2 * i + ky) * W2 + kx;
                float *cr = col + (long)i * c->w;
                if (c->to_image) for (int j = 0; j < c->w; j++) row[2 * j] = cr[j] + bv;
                else for (int j = 0; j < c->w; j++) cr[j] = row[2 * j];
            }
        }
    }
}

static void cpu_convt2x2_forward(int B, int cin, int cout, int h, int w, float *y, const float *x,
                                 const float *wt, const float *b, float *ws) {
    long hw = (long)h * w;
    for (int n = 0; n < B; n++) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cout * 4, hw, cin, 1.f, wt, cout * 4,
                    x + n * cin * hw, hw, 0.f, ws, hw);
        ConvtCtx c = {cout, h, w, y + n * cout * 4 * hw, ws, b, 1};
        ops_parallel_for(cout, 1, convt_shuffle, &c);
    }
}

static void cpu_convt2x2_backward(int B, int cin, int cout, int h, int w, float *dx, float *dw, float *db,
                                  const float *dy, const float *x, const float *wt, float *ws) {
    long hw = (long)h * w;
    for (int n = 0; n < B; n++) {
        const float *g = dy + n * cout * 4 * hw;
        ConvtCtx c = {cout, h, w, (float *)g, ws, NULL, 0};
        ops_parallel_for(cout, 1, convt_shuffle, &c);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cin, cout * 4, hw, 1.f, x + n * cin * hw, hw,
                    ws, hw, 1.f, dw, cout * 4);
        if (db)
            for (int co = 0; co < cout; co++) {
                double s = 0; const float *p = g + co * 4 * hw;
                for (long i = 0; i < 4 * hw; i++) s += p[i];
                db[co] += (float)s;
            }
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cin, hw, cout * 4, 1.f, wt, cout * 4,
                        ws, hw, 0.f, dx + n * cin * hw, hw);
    }
}

// ----------------------------------------------------------------------------------------------
// batch norm (+ optional ReLU). Statistics in double, one channel per task.

typedef struct {
    int B, C; long HW;
    float *y; const float *x, *dy, *yout; const float *gamma, *beta;
    const float *mean, *invstd;
    double *s1, *s2; int relu;
    double *lanes;   // 2 * LANES per channel: the per-lane sums of bn_sums / bn_grad_sums
} BnCtx;

// Sums over one plane in 8 float lanes (so the compiler vectorizes), added per lane into double
// accumulators s[LANES], ss[LANES] (lane-wise, so the adds vectorize too: the 4x4..16x16 planes of the
// mobile nets are too short for a serial per-plane combine), summed across lanes per channel (lane_total).
#define LANES 8
static void plane_sums(const float *p, long n, double *s, double *ss) {
    float a[LANES] = {0}, b[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) { float v = p[i + l]; a[l] += v; b[l] += v * v; }
    for (; i < n; i++) { s[0] += p[i]; ss[0] += (double)p[i] * p[i]; }
    for (int l = 0; l < LANES; l++) { s[l] += a[l]; ss[l] += b[l]; }
}

static double lane_total(const double *s) {   // the lanes' sum in a fixed order
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// The BN loops walk sample by sample over the task's channels [c0, c1), a contiguous run of memory (one
// channel across the batch is a plane every C*HW floats: a page, or a TLB entry, per small plane); each
// channel's sums still add its planes in sample order.
static void bn_sums(void *vctx, long c0, long c1) {
    BnCtx *b = vctx;
    double *L = b->lanes;
    memset(L + c0 * 2 * LANES, 0, sizeof(double) * 2 * LANES * (c1 - c0));
    for (int n = 0; n < b->B; n++)
        for (long c = c0; c < c1; c++)
            plane_sums(b->x + ((long)n * b->C + c) * b->HW, b->HW, L + c * 2 * LANES, L + c * 2 * LANES + LANES);
    for (long c = c0; c < c1; c++) {
        b->s1[c] = lane_total(L + c * 2 * LANES); b->s2[c] = lane_total(L + c * 2 * LANES + LANES);
    }
}

static void bn_apply(void *vctx, long c0, long c1) {
    BnCtx *b = vctx;
    for (int n = 0; n < b->B; n++)
        for (long c = c0; c < c1; c++) {
            float sc = b->gamma[c] * b->invstd[c], sh = b->beta[c] - b->mean[c] * sc;
            const float *p = b->x + ((long)n * b->C + c) * b->HW;
            float *q = b->y + ((long)n * b->C + c) * b->HW;
            if (b->relu == 2)
                for (long i = 0; i < b->HW; i++) { float v = p[i] * sc + sh; v = v > 0.f ? v : 0.f; q[i] = v < 6.f ? v : 6.f; }
            else if (b->relu) for (long i = 0; i < b->HW; i++) { float v = p[i] * sc + sh; q[i] = v > 0.f ? v : 0.f; }
            else for (long i = 0; i < b->HW; i++) q[i] = p[i] * sc + sh;
        }
}

static void cpu_batchnorm_forward(int B, int C, int HW, float *y, float *save_mean, float *save_invstd,
                                  const float *x, const float *gamma, const float *beta, float *running_mean,
                                  float *running_var, float *num_batches, int training, int relu,
                                  const BnSync *sync) {
    BnCtx ctx = {.B = B, .C = C, .HW = HW, .y = y, .x = x, .gamma = gamma, .beta = beta,
                 .mean = save_mean, .invstd = save_invstd, .relu = relu};
    if (training) {
        double *buf = malloc(sizeof(double) * (2 * C + 1 + 2 * LANES * (size_t)C));
        ctx.s1 = buf; ctx.s2 = buf + C; ctx.lanes = buf + 2 * C + 1;
        ops_parallel_for(C, 1, bn_sums, &ctx);
        buf[2 * C] = (double)B * HW;
        if (sync && sync->fn) sync->fn(sync->ctx, buf, 2 * C + 1);
        double N = buf[2 * C];
        for (int c = 0; c < C; c++) {
            double mean = ctx.s1[c] / N, var = ctx.s2[c] / N - mean * mean;
            if (var < 0) var = 0;
            save_mean[c] = (float)mean;
            save_invstd[c] = (float)(1.0 / sqrt(var + OPS_BN_EPS));
            double unbiased = N > 1 ? var * N / (N - 1) : var;
            running_mean[c] = (float)((1 - OPS_BN_MOMENTUM) * running_mean[c] + OPS_BN_MOMENTUM * mean);
            running_var[c] = (float)((1 - OPS_BN_MOMENTUM) * running_var[c] + OPS_BN_MOMENTUM * unbiased);
        }
        if (num_batches) *num_batches += 1.f;
        free(buf);
    } else {
        for (int c = 0; c < C; c++) {
            save_mean[c] = running_mean[c];
            save_invstd[c] = (float)(1.0 / sqrt((double)running_var[c] + OPS_BN_EPS));
        }
    }
    ops_parallel_for(C, 1, bn_apply, &ctx);
}

// sum(dy') and sum(dy' * (x - mean)) over one plane, dy' = dy masked by y > 0 when relu, added per lane
// into s[LANES], sx[LANES] as plane_sums does.
static void plane_grad_sums(const float *g, const float *p, const float *yo, long n, float m, int relu,
                            double *s, double *sx) {
    float a[LANES] = {0}, b[LANES] = {0}, hi = relu == 2 ? 6.f : INFINITY;   // ReLU6 passes 0 < y < 6
    long i = 0;
    if (relu)
        for (; i + LANES <= n; i += LANES)
            for (int l = 0; l < LANES; l++) {
                float gi = g[i + l] * (float)(yo[i + l] > 0.f && yo[i + l] < hi);
                a[l] += gi; b[l] += gi * (p[i + l] - m);
            }
    else
        for (; i + LANES <= n; i += LANES)
            for (int l = 0; l < LANES; l++) { float gi = g[i + l]; a[l] += gi; b[l] += gi * (p[i + l] - m); }
    for (; i < n; i++) {
        float gi = (relu && !(yo[i] > 0.f && yo[i] < hi)) ? 0.f : g[i];
        s[0] += gi; sx[0] += (double)gi * (p[i] - m);
    }
    for (int l = 0; l < LANES; l++) { s[l] += a[l]; sx[l] += b[l]; }
}

static void bn_grad_sums(void *vctx, long c0, long c1) {
    BnCtx *b = vctx;
    double *L = b->lanes;
    memset(L + c0 * 2 * LANES, 0, sizeof(double) * 2 * LANES * (c1 - c0));
    for (int n = 0; n < b->B; n++)
        for (long c = c0; c < c1; c++) {
            long o = ((long)n * b->C + c) * b->HW;
            plane_grad_sums(b->dy + o, b->x + o, b->yout + o, b->HW, b->mean[c], b->relu, L + c * 2 * LANES,
                            L + c * 2 * LANES + LANES);
        }
    for (long c = c0; c < c1; c++) {
        b->s1[c] = lane_total(L + c * 2 * LANES); b->s2[c] = lane_total(L + c * 2 * LANES + LANES) * b->invstd[c];
    }
}

// dx = gamma*invstd * (dy' - mean(dy') - xhat * mean(dy' xhat)) written as a*dy' + c*x + e
static void bn_grad_apply(void *vctx, long c0, long c1) {
    BnCtx *b = vctx;   // here s1/s2 hold the (global) means of dy' and dy' * xhat
    for (int n = 0; n < b->B; n++)
        for (long c = c0; c < c1; c++) {
            double is = b->invstd[c], k = b->gamma[c] * is, mdy = b->s1[c], mdyx = b->s2[c];
            float a = (float)k, cx = (float)(-k * is * mdyx), e = (float)(-k * mdy + k * is * mdyx * b->mean[c]);
            long o = ((long)n * b->C + c) * b->HW;
            const float *g = b->dy + o, *p = b->x + o, *yo = b->yout + o;
            float *q = b->y + o;
            float hi = b->relu == 2 ? 6.f : INFINITY;
            if (b->relu) for (long i = 0; i < b->HW; i++) q[i] = a * (g[i] * (float)(yo[i] > 0.f && yo[i] < hi)) + cx * p[i] + e;
            else for (long i = 0; i < b->HW; i++) q[i] = a * g[i] + cx * p[i] + e;
        }
}

static void cpu_batchnorm_apply(int B, int C, int HW, float *y, const float *x, const float *mean,
                                const float *invstd, const float *gamma, const float *beta, int relu) {
    BnCtx ctx = {.B = B, .C = C, .HW = HW, .y = y, .x = x, .gamma = gamma, .beta = beta, .mean = mean,
                 .invstd = invstd, .relu = relu};
    ops_parallel_for(C, 1, bn_apply, &ctx);
}

static void cpu_batchnorm_backward(int B, int C, int HW, float *dx, float *dgamma, float *dbeta,
                                   const float *dy, const float *x, const float *y, const float *save_mean,
                                   const float *save_invstd, const float *gamma, int relu, const BnSync *sync) {
    double *buf = malloc(sizeof(double) * (2 * C + 1 + 2 * LANES * (size_t)C));
    BnCtx ctx = {.B = B, .C = C, .HW = HW, .y = dx, .x = x, .dy = dy, .yout = y, .gamma = gamma,
                 .mean = save_mean, .invstd = save_invstd, .s1 = buf, .s2 = buf + C, .relu = relu,
                 .lanes = buf + 2 * C + 1};
    ops_parallel_for(C, 1, bn_grad_sums, &ctx);
    for (int c = 0; c < C; c++) { dbeta[c] += (float)buf[c]; dgamma[c] += (float)buf[C + c]; }
    buf[2 * C] = (double)B * HW;
    if (sync && sync->fn) sync->fn(sync->ctx, buf, 2 * C + 1);
    for (int i = 0; i < 2 * C; i++) buf[i] /= buf[2 * C];
    if (dx) ops_parallel_for(C, 1, bn_grad_apply, &ctx);
    free(buf);
}

// ----------------------------------------------------------------------------------------------
// elementwise

#define EW_GRAIN 16384
typedef struct { float *y; const float *a, *b; } EwCtx;

static void relu_fw(void *v, long i0, long i1) {
    EwCtx *c = v; for (long i = i0; i < i1; i++) c->y[i] = c->a[i] > 0.f ? c->a[i] : 0.f;
}
static void relu_bw(void *v, long i0, long i1) {
    EwCtx *c = v; for (long i = i0; i < i1; i++) { float g = c->a[i]; c->y[i] = c->b[i] > 0.f ? g : 0.f; }
}
static void add_fw(void *v, long i0, long i1) {
    EwCtx *c = v; for (long i = i0; i < i1; i++) c->y[i] = c->a[i] + c->b[i];
}
static void cpu_relu_forward(size_t n, float *y, const float *x) {
    EwCtx c = {y, x, NULL}; ops_parallel_for((long)n, EW_GRAIN, relu_fw, &c);
}
static void cpu_relu_backward(size_t n, float *dx, const float *dy, const float *y) {
    EwCtx c = {dx, dy, y}; ops_parallel_for((long)n, EW_GRAIN, relu_bw, &c);
}
static void cpu_add(size_t n, float *y, const float *a, const float *b) {
    EwCtx c = {y, a, b}; ops_parallel_for((long)n, EW_GRAIN, add_fw, &c);
}
static void cpu_accumulate(size_t n, float *y, const float *x) {
    EwCtx c = {y, y, x}; ops_parallel_for((long)n, EW_GRAIN, add_fw, &c);
}

// ----------------------------------------------------------------------------------------------
// pooling

typedef struct { int h, w, oh, ow; long HW; float *y; const float *x, *dy; } PoolCtx;

static void maxpool_fw(void *v, long p0, long p1) {
    PoolCtx *c = v;
    for (long p = p0; p < p1; p++) {
        const float *x = c->x + p * c->h * c->w; float *y = c->y + p * c->oh * c->ow;
        for (int i = 0; i < c->oh; i++)
            for (int j = 0; j < c->ow; j++) {
                const float *r0 = x + (2 * i) * c->w + 2 * j, *r1 = r0 + c->w;
                float m = r0[0];
                if (r0[1] > m || isnan(r0[1])) m = r0[1];
                if (r1[0] > m || isnan(r1[0])) m = r1[0];
                if (r1[1] > m || isnan(r1[1])) m = r1[1];
                y[i * c->ow + j] = m;
            }
    }
}

static void maxpool_bw(void *v, long p0, long p1) {
    PoolCtx *c = v;
    for (long p = p0; p < p1; p++) {
        const float *x = c->x + p * c->h * c->w, *dy = c->dy + p * c->oh * c->ow;
        float *dx = c->y + p * c->h * c->w;
        memset(dx, 0, sizeof(float) * c->h * c->w);
        for (int i = 0; i < c->oh; i++)
            for (int j = 0; j < c->ow; j++) {
                long base = (2 * i) * c->w + 2 * j, at = base;
                long cand[3] = {base + 1, base + c->w, base + c->w + 1};
                float m = x[base];
                for (int k = 0; k < 3; k++)
                    if (x[cand[k]] > m || isnan(x[cand[k]])) { m = x[cand[k]]; at = cand[k]; }
                dx[at] += dy[i * c->ow + j];
            }
    }
}

static void cpu_maxpool2x2_forward(int B, int C, int h, int w, float *y, const float *x) {
    PoolCtx c = {h, w, h / 2, w / 2, 0, y, x, NULL};
    ops_parallel_for((long)B * C, 4, maxpool_fw, &c);
}
static void cpu_maxpool2x2_backward(int B, int C, int h, int w, float *dx, const float *dy, const float *x) {
    PoolCtx c = {h, w, h / 2, w / 2, 0, dx, x, dy};
    ops_parallel_for((long)B * C, 4, maxpool_bw, &c);
}

static void avg_fw(void *v, long p0, long p1) {
    PoolCtx *c = v;
    for (long p = p0; p < p1; p++) {
        double s = 0; const float *x = c->x + p * c->HW;
        for (long i = 0; i < c->HW; i++) s += x[i];
        c->y[p] = (float)(s / c->HW);
    }
}
static void avg_bw(void *v, long p0, long p1) {
    PoolCtx *c = v;
    for (long p = p0; p < p1; p++) {
        float g = c->dy[p] / (float)c->HW; float *dx = c->y + p * c->HW;
        for (long i = 0; i < c->HW; i++) dx[i] = g;
    }
}
static void cpu_avgpool_forward(int B, int C, int HW, float *y, const float *x) {
    PoolCtx c = {.HW = HW, .y = y, .x = x}; ops_parallel_for((long)B * C, 16, avg_fw, &c);
}
static void cpu_avgpool_backward(int B, int C, int HW, float *dx, const float *dy) {
    PoolCtx c = {.HW = HW, .y = dx, .dy = dy}; ops_parallel_for((long)B * C, 16, avg_bw, &c);
}

// ----------------------------------------------------------------------------------------------
// bilinear resize, align_corners=False: src = (dst + 0.5) * in/out - 0.5, clamped below at 0.

typedef struct { int i0, i1; float l0, l1; } Lerp;

static void lerp_table(Lerp *t, int in, int out) {
    float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        float src = (o + 0.5f) * scale - 0.5f;
        if (src < 0) src = 0;
        int i0 = (int)src; if (i0 > in - 1) i0 = in - 1;
        int i1 = i0 + (i0 < in - 1);
        float l1 = src - i0;
        t[o] = (Lerp){i0, i1, 1.f - l1, l1};
    }
}

typedef struct { int h, w, oh, ow; const Lerp *ty, *tx; float *out; const float *in; } UpCtx;

static void up_fw(void *v, long p0, long p1) {
    UpCtx *c = v;
    for (long p = p0; p < p1; p++) {
        const float *x = c->in + p * c->h * c->w; float *y = c->out + p * c->oh * c->ow;
        for (int i = 0; i < c->oh; i++) {
            Lerp a = c->ty[i]; const float *r0 = x + a.i0 * c->w, *r1 = x + a.i1 * c->w;
            for (int j = 0; j < c->ow; j++) {
                Lerp b = c->tx[j];
                y[i * c->ow + j] = a.l0 * (b.l0 * r0[b.i0] + b.l1 * r0[b.i1]) + a.l1 * (b.l0 * r1[b.i0] + b.l1 * r1[b.i1]);
            }
        }
    }
}
static void up_bw(void *v, long p0, long p1) {
    UpCtx *c = v;   // out = dx (h, w), in = dy (oh, ow)
    for (long p = p0; p < p1; p++) {
        const float *dy = c->in + p * c->oh * c->ow; float *dx = c->out + p * c->h * c->w;
        memset(dx, 0, sizeof(float) * c->h * c->w);
        for (int i = 0; i < c->oh; i++) {
            Lerp a = c->ty[i]; float *r0 = dx + a.i0 * c->w, *r1 = dx + a.i1 * c->w;
            for (int j = 0; j < c->ow; j++) {
                Lerp b = c->tx[j]; float g = dy[i * c->ow + j];
                r0[b.i0] += a.l0 * b.l0 * g; r0[b.i1] += a.l0 * b.l1 * g;
                r1[b.i0] += a.l1 * b.l0 * g; r1[b.i1] += a.l1 * b.l1 * g;
            }
        }
    }
}

static void upsample(int B, int C, int h, int w, int oh, int ow, float *out, const float *in, ParallelFn fn) {
    Lerp *ty = malloc(sizeof(Lerp) * (oh + ow)), *tx = ty + oh;
    lerp_table(ty, h, oh); lerp_table(tx, w, ow);
    UpCtx c = {h, w, oh, ow, ty, tx, out, in};
    ops_parallel_for((long)B * C, 4, fn, &c);
    free(ty);
}
static void cpu_upsample_bilinear_forward(int B, int C, int h, int w, int oh, int ow, float *y, const float *x) {
    upsample(B, C, h, w, oh, ow, y, x, up_fw);
}
static void cpu_upsample_bilinear_backward(int B, int C, int h, int w, int oh, int ow, float *dx, const float *dy) {
    upsample(B, C, h, w, oh, ow, dx, dy, up_bw);
}

// ----------------------------------------------------------------------------------------------
// concat

typedef struct { int ca, cb; long HW; float *y, *a, *b; int fwd; } CatCtx;
static void cat_samples(void *v, long n0, long n1) {
    CatCtx *c = v; size_t sa = sizeof(float) * c->ca * c->HW, sb = sizeof(float) * c->cb * c->HW;
    for (long n = n0; n < n1; n++) {
        float *y = c->y + n * (c->ca + c->cb) * c->HW;
        float *a = c->a ? c->a + n * c->ca * c->HW : NULL, *b = c->b ? c->b + n * c->cb * c->HW : NULL;
        if (c->fwd) { memcpy(y, a, sa); memcpy(y + c->ca * c->HW, b, sb); }
        else { if (a) memcpy(a, y, sa); if (b) memcpy(b, y + c->ca * c->HW, sb); }
    }
}
static void cpu_concat_forward(int B, int ca, int cb, int HW, float *y, const float *a, const float *b) {
    CatCtx c = {ca, cb, HW, y, (float *)a, (float *)b, 1}; ops_parallel_for(B, 1, cat_samples, &c);
}
static void cpu_concat_backward(int B, int ca, int cb, int HW, float *da, float *db, const float *dy) {
    CatCtx c = {ca, cb, HW, (float *)dy, da, db, 0}; ops_parallel_for(B, 1, cat_samples, &c);
}

// ----------------------------------------------------------------------------------------------
// linear

static void cpu_linear_forward(int B, int in, int out, float *y, const float *x, const float *w, const float *b) {
    for (int n = 0; n < B; n++)
        for (int o = 0; o < out; o++) y[(long)n * out + o] = b ? b[o] : 0.f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.f, x, in, w, in, 1.f, y, out);
}

static void cpu_linear_backward(int B, int in, int out, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, B, 1.f, dy, out, x, in, 1.f, dw, in);
    if (db)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int n = 0; n < B; n++) s += dy[(long)n * out + o];
            db[o] += (float)s;
        }
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in, out, 1.f, dy, out, w, in, 0.f, dx, in);
}

// ----------------------------------------------------------------------------------------------
// softmax cross-entropy; positions are summed in fixed blocks so the loss is thread-count independent.

#define XENT_BLOCK 1024
typedef struct {
    int C; long HW, P; float *dl; const float *lg; const int32_t *lab; int ignore; float gs; double *part;
} XentCtx;

static void xent_blocks(void *v, long k0, long k1) {
    XentCtx *c = v;
    for (long k = k0; k < k1; k++) {
        double acc = 0;
        for (long q = k * XENT_BLOCK; q < (k + 1) * XENT_BLOCK; q++) {
            if (q >= c->P) break;
            long n = q / c->HW, i = q % c->HW;
            const float *l = c->lg + n * c->C * c->HW + i;
            float *d = c->dl + n * c->C * c->HW + i;
            int y = c->lab[q];
            if (y == c->ignore) { for (int j = 0; j < c->C; j++) d[j * c->HW] = 0.f; continue; }
            float m = l[0];
            for (int j = 1; j < c->C; j++) if (l[j * c->HW] > m) m = l[j * c->HW];
            double s = 0;
            for (int j = 0; j < c->C; j++) { float e = expf(l[j * c->HW] - m); d[j * c->HW] = e; s += e; }
            acc += log(s) - (double)(l[y * c->HW] - m);
            float scale = (float)(c->gs / s);
            for (int j = 0; j < c->C; j++) d[j * c->HW] *= scale;
            d[y * c->HW] -= c->gs;
        }
        c->part[k] = acc;
    }
}

static double cpu_softmax_xent(int B, int C, int HW, float *dlogits, const float *logits, const int32_t *labels,
                               int ignore, float grad_scale, long *counted) {
    long P = (long)B * HW, cnt = 0;
    for (long q = 0; q < P; q++) {
        if (labels[q] == ignore) continue;
        if (labels[q] < 0 || labels[q] >= C) { if (counted) *counted = -1 - q; return NAN; }
        cnt++;
    }
    if (counted) *counted = cnt;
    long nblk = (P + XENT_BLOCK - 1) / XENT_BLOCK;
    double *part = malloc(sizeof(double) * nblk);
    XentCtx c = {C, HW, P, dlogits, logits, labels, ignore, cnt ? grad_scale / (float)cnt : 0.f, part};
    ops_parallel_for(nblk, 1, xent_blocks, &c);
    double total = 0;
    for (long k = 0; k < nblk; k++) total += part[k];
    free(part);
    return cnt ? total / cnt : 0.0;
}

// ----------------------------------------------------------------------------------------------

static const Ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_copy, .download = cpu_copy, .copy = cpu_copy,
    .zero = cpu_zero, .set_threads = cpu_set_threads,
    .conv2d_workspace = cpu_conv2d_workspace, .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .convt2x2_workspace = cpu_convt2x2_workspace, .convt2x2_forward = cpu_convt2x2_forward,
    .convt2x2_backward = cpu_convt2x2_backward,
    .batchnorm_forward = cpu_batchnorm_forward, .batchnorm_backward = cpu_batchnorm_backward,
    .relu_forward = cpu_relu_forward, .relu_backward = cpu_relu_backward, .add = cpu_add,
    .accumulate = cpu_accumulate,
    .maxpool2x2_forward = cpu_maxpool2x2_forward, .maxpool2x2_backward = cpu_maxpool2x2_backward,
    .avgpool_forward = cpu_avgpool_forward, .avgpool_backward = cpu_avgpool_backward,
    .upsample_bilinear_forward = cpu_upsample_bilinear_forward,
    .upsample_bilinear_backward = cpu_upsample_bilinear_backward,
    .concat_forward = cpu_concat_forward, .concat_backward = cpu_concat_backward,
    .linear_forward = cpu_linear_forward, .linear_backward = cpu_linear_backward,
    .softmax_xent = cpu_softmax_xent,
    .relu6_forward = cpu_relu6_forward, .relu6_backward = cpu_relu6_backward,
    .batchnorm_apply = cpu_batchnorm_apply, .channel_copy = cpu_channel_copy,
    .channel_shuffle = cpu_channel_shuffle, .swap_dims01 = cpu_swap_dims01,
    .avgpool2x2_forward = cpu_avgpool2x2_forward, .avgpool2x2_backward = cpu_avgpool2x2_backward,
    .dropout_forward = cpu_dropout_forward, .dropout_backward = cpu_dropout_backward,
};

const Ops *ops_cpu(void) { return &cpu_ops; }
