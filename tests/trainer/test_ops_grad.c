// tests/trainer/test_ops_grad.c — every CPU op's forward and backward against central finite
// differences in double precision.
// How: this file keeps a naive double-precision reference of each op's FORWARD (plain loops written
// from the definitions, no shared code with ops_cpu.c). For a loss L = sum(r * y) with random r:
//   1. the float op's forward must match the double reference forward;
//   2. the gradient of L w.r.t. every input / parameter is taken by central differences of the double
//      reference (h = 1e-5, truncation + rounding error ~1e-9), and the float op's backward (called
//      with dy = r) must match it within float32 accuracy (atol 1e-4, rtol 1e-3).
// No double backward is written at all, so the backward is checked against calculus, not against a
// second copy of itself. Large tensors check a strided subset of at most ~400 elements per tensor.
// Backward semantics are checked too: parameter gradients accumulate (pre-filled with 0.5), input
// gradients are overwritten (pre-filled with 99) unless accumulate=1 is passed.
// The pool runs with 2 threads (main), so the split loops are exercised.
#include "test_ops_common.h"
#include "trainer/ops/ops.h"
#include "trainer/ops/conv3x3_direct.h"
#include "trainer/ops/conv_cut.h"
#include "trainer/ops/conv_dnnl.h"

#define FD_H 1e-5
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-3
#define FW_ATOL 1e-5
#define FW_RTOL 1e-4

static const Ops *O;

static uint64_t rng = 88172645463325252ull;
static float frand(void) {   // uniform [-1, 1)
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1p-53 * 2.0 - 1.0);
}
static float *rand_f(size_t n, float scale, float shift) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = scale * frand() + shift;
    return p;
}
static float *fill_f(size_t n, float v) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}
static double *to_d(const float *p, size_t n) {
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}
static void sub_const(float *p, size_t n, float v) { for (size_t i = 0; i < n; i++) p[i] -= v; }

// ----------------------------------------------------------------------------------------------
// the double references and the finite-difference harness

typedef struct RefOp {
    void (*fn)(struct RefOp *o);     // out = f(in[0..])
    double *in[4]; size_t nin[4];
    double *out; size_t nout;
    ConvDesc d; int B, C, H, W, OH, OW, relu, ca, cb, ignore, K;
    const int32_t *labels;
} RefOp;

static double ref_loss(RefOp *o, const double *r) {
    o->fn(o);
    double s = 0;
    for (size_t i = 0; i < o->nout; i++) s += r[i] * o->out[i];
    return s;
}

// Checks got (the float op's gradient of L w.r.t. in[k]) against central differences of the reference.
static long fd_check(const char *what, RefOp *o, int k, const float *got, const double *r) {
    size_t n = o->nin[k], step = n > 400 ? n / 400 + 1 : 1, m = 0;
    float *g = malloc(sizeof(float) * n); double *want = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i += step) {
        double save = o->in[k][i];
        o->in[k][i] = save + FD_H; double lp = ref_loss(o, r);
        o->in[k][i] = save - FD_H; double lm = ref_loss(o, r);
        o->in[k][i] = save;
        want[m] = (lp - lm) / (2 * FD_H); g[m] = got[i]; m++;
    }
    long bad = check_close(what, g, want, m, GRAD_ATOL, GRAD_RTOL);
    free(g); free(want);
    return bad;
}

static long fw_check(const char *what, RefOp *o, const float *got) {
    o->fn(o);
    return check_close(what, got, o->out, o->nout, FW_ATOL, FW_RTOL);
}

static void ref_conv(RefOp *o) {   // grouped: output channel co sees input channels of its group only
    const ConvDesc *d = &o->d; const double *x = o->in[0], *w = o->in[1], *b = o->in[2];
    int G = d->groups > 1 ? d->groups : 1, cig = d->cin / G, cog = d->cout / G;
    for (int n = 0; n < o->B; n++)
        for (int co = 0; co < d->cout; co++)
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    double s = b ? b[co] : 0;
                    for (int cg = 0; cg < cig; cg++)
                        for (int ky = 0; ky < d->kh; ky++)
                            for (int kx = 0; kx < d->kw; kx++) {
                                int iy = oy * d->stride - d->pad + ky * d->dil, ix = ox * d->stride - d->pad + kx * d->dil;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) continue;
                                int ci = co / cog * cig + cg;
                                s += x[((n * d->cin + ci) * d->h + iy) * d->w + ix] * w[((co * cig + cg) * d->kh + ky) * d->kw + kx];
                            }
                    o->out[((n * d->cout + co) * d->oh + oy) * d->ow + ox] = s;
                }
}

// transposed conv by its definition: every input pixel scatters a weighted 2x2 stamp.
static void ref_convt(RefOp *o) {
    const double *x = o->in[0], *w = o->in[1], *b = o->in[2];
    int cin = o->C, cout = o->K, h = o->H, wd = o->W;
    for (int n = 0; n < o->B; n++)
        for (int co = 0; co < cout; co++)
            for (int i = 0; i < 2 * h * 2 * wd; i++) o->out[(n * cout + co) * 4 * h * wd + i] = b[co];
    for (int n = 0; n < o->B; n++)
        for (int ci = 0; ci < cin; ci++)
            for (int i = 0; i < h; i++)
                for (int j = 0; j < wd; j++)
                    for (int co = 0; co < cout; co++)
                        for (int ky = 0; ky < 2; ky++)
                            for (int kx = 0; kx < 2; kx++)
                                o->out[((n * cout + co) * 2 * h + 2 * i + ky) * 2 * wd + 2 * j + kx] +=
                                    x[((n * cin + ci) * h + i) * wd + j] * w[((ci * cout + co) * 2 + ky) * 2 + kx];
}

static void ref_bn(RefOp *o) {   // training statistics (biased variance), eps 1e-5, optional ReLU
    const double *x = o->in[0], *g = o->in[1], *be = o->in[2];
    int HW = o->H * o->W; double N = (double)o->B * HW;
    for (int c = 0; c < o->C; c++) {
        double mean = 0, var = 0;
        for (int n = 0; n < o->B; n++) for (int i = 0; i < HW; i++) mean += x[(n * o->C + c) * HW + i];
        mean /= N;
        for (int n = 0; n < o->B; n++) for (int i = 0; i < HW; i++) { double t = x[(n * o->C + c) * HW + i] - mean; var += t * t; }
        var /= N;
        for (int n = 0; n < o->B; n++)
            for (int i = 0; i < HW; i++) {
                size_t k = (size_t)(n * o->C + c) * HW + i;
                double v = g[c] * (x[k] - mean) / sqrt(var + 1e-5) + be[c];
                if (o->relu && v < 0) v = 0;
                if (o->relu == 2 && v > 6) v = 6;
                o->out[k] = v;
            }
    }
}

static void ref_relu6(RefOp *o) { for (size_t i = 0; i < o->nout; i++) o->out[i] = fmin(fmax(o->in[0][i], 0), 6); }
static void ref_relu(RefOp *o) { for (size_t i = 0; i < o->nout; i++) o->out[i] = o->in[0][i] > 0 ? o->in[0][i] : 0; }
static void ref_add(RefOp *o) { for (size_t i = 0; i < o->nout; i++) o->out[i] = o->in[0][i] + o->in[1][i]; }

static void ref_maxpool(RefOp *o) {
    int oh = o->H / 2, ow = o->W / 2;
    for (int p = 0; p < o->B * o->C; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double m = -INFINITY;
                for (int a = 0; a < 2; a++) for (int b = 0; b < 2; b++) {
                    double v = o->in[0][(p * o->H + 2 * i + a) * o->W + 2 * j + b];
                    if (v > m) m = v;
                }
                o->out[(p * oh + i) * ow + j] = m;
            }
}

static void ref_avgpool(RefOp *o) {
    int HW = o->H * o->W;
    for (int p = 0; p < o->B * o->C; p++) {
        double s = 0;
        for (int i = 0; i < HW; i++) s += o->in[0][p * HW + i];
        o->out[p] = s / HW;
    }
}

// bilinear, align_corners=False, from PyTorch's documented source-index rule
static void src_index(int o, int in, int out, int *i0, int *i1, double *l1) {
    double s = ((double)o + 0.5) * ((double)in / out) - 0.5;
    if (s < 0) s = 0;
    *i0 = (int)floor(s); if (*i0 > in - 1) *i0 = in - 1;
    *i1 = *i0 < in - 1 ? *i0 + 1 : *i0;
    *l1 = s - *i0;
}
static void ref_bilinear(RefOp *o) {
    for (int p = 0; p < o->B * o->C; p++)
        for (int i = 0; i < o->OH; i++)
            for (int j = 0; j < o->OW; j++) {
                int y0, y1, x0, x1; double ly, lx;
                src_index(i, o->H, o->OH, &y0, &y1, &ly); src_index(j, o->W, o->OW, &x0, &x1, &lx);
                const double *x = o->in[0] + (size_t)p * o->H * o->W;
                o->out[(p * o->OH + i) * o->OW + j] =
                    (1 - ly) * ((1 - lx) * x[y0 * o->W + x0] + lx * x[y0 * o->W + x1]) +
                    ly * ((1 - lx) * x[y1 * o->W + x0] + lx * x[y1 * o->W + x1]);
            }
}

static void ref_concat(RefOp *o) {
    int HW = o->H * o->W;
    for (int n = 0; n < o->B; n++) {
        for (int i = 0; i < o->ca * HW; i++) o->out[(n * (o->ca + o->cb)) * HW + i] = o->in[0][n * o->ca * HW + i];
        for (int i = 0; i < o->cb * HW; i++) o->out[(n * (o->ca + o->cb) + o->ca) * HW + i] = o->in[1][n * o->cb * HW + i];
    }
}

static void ref_linear(RefOp *o) {   // in[0] x (B, C), in[1] w (K, C), in[2] b (K)
    for (int n = 0; n < o->B; n++)
        for (int k = 0; k < o->K; k++) {
            double s = o->in[2][k];
            for (int c = 0; c < o->C; c++) s += o->in[0][n * o->C + c] * o->in[1][k * o->C + c];
            o->out[n * o->K + k] = s;
        }
}

static void ref_xent(RefOp *o) {   // in[0] logits (B, C, HW); out[0] = mean loss over counted
    int HW = o->H * o->W; double tot = 0; long cnt = 0;
    for (int n = 0; n < o->B; n++)
        for (int i = 0; i < HW; i++) {
            int y = o->labels[n * HW + i];
            if (y == o->ignore) continue;
            double m = -INFINITY, s = 0;
            for (int c = 0; c < o->C; c++) m = fmax(m, o->in[0][(n * o->C + c) * HW + i]);
            for (int c = 0; c < o->C; c++) s += exp(o->in[0][(n * o->C + c) * HW + i] - m);
            tot += log(s) + m - o->in[0][(n * o->C + y) * HW + i];
            cnt++;
        }
    o->out[0] = cnt ? tot / cnt : 0;
}

// ----------------------------------------------------------------------------------------------
// tests

static void conv_case_g(int B, int cin, int cout, int h, int w, int k, int stride, int pad, int dil, int bias,
                        int accumulate, int groups) {
    ConvDesc d;
    assert_int_equal(ops_conv2d_desc_grouped(&d, cin, cout, h, w, k, stride, pad, dil, groups), 0);
    size_t nx = (size_t)B * cin * h * w, nw = (size_t)cout * (cin / groups) * k * k, ny = (size_t)B * cout * d.oh * d.ow;
    float *x = rand_f(nx, 1, 0), *wt = rand_f(nw, 0.5f, 0), *b = bias ? rand_f(cout, 0.5f, 0) : NULL;
    float *y = fill_f(ny, 99), *r = rand_f(ny, 1, 0);
    float *ws = fill_f(O->conv2d_workspace(&d, B) + 1, 77);
    O->conv2d_forward(&d, B, y, x, wt, b, ws);
    RefOp o = {.fn = ref_conv, .in = {to_d(x, nx), to_d(wt, nw), bias ? to_d(b, cout) : NULL},
               .nin = {nx, nw, (size_t)cout}, .out = malloc(sizeof(double) * ny), .nout = ny, .d = d, .B = B};
    char what[128];
    snprintf(what, sizeof what, "conv B%d %d->%d %dx%d k%d s%d p%d d%d g%d fwd", B, cin, cout, h, w, k, stride, pad, dil, groups);
    assert_int_equal(fw_check(what, &o, y), 0);
    float *dx = fill_f(nx, accumulate ? 0.25f : 99), *dw = fill_f(nw, 0.5f), *db = bias ? fill_f(cout, 0.5f) : NULL;
    O->conv2d_backward(&d, B, dx, dw, db, r, x, wt, ws, accumulate);
    sub_const(dw, nw, 0.5f); if (db) sub_const(db, cout, 0.5f);
    if (accumulate) sub_const(dx, nx, 0.25f);
    double *rd = to_d(r, ny);
    snprintf(what, sizeof what, "conv k%d s%d p%d d%d dx", k, stride, pad, dil);
    assert_int_equal(fd_check(what, &o, 0, dx, rd), 0);
    snprintf(what, sizeof what, "conv k%d s%d p%d d%d dw", k, stride, pad, dil);
    assert_int_equal(fd_check(what, &o, 1, dw, rd), 0);
    if (bias) assert_int_equal(fd_check("conv db", &o, 2, db, rd), 0);
    // dx = NULL (first layer) still gives the same weight gradient
    float *dw2 = fill_f(nw, 0.f);
    O->conv2d_backward(&d, B, NULL, dw2, NULL, r, x, wt, ws, 0);
    for (size_t i = 0; i < nw; i++) assert_float_equal(dw2[i], dw[i], 1e-5 + 1e-5 * fabsf(dw[i]));
    free(dw2);
    free(x); free(wt); free(b); free(y); free(r); free(ws); free(dx); free(dw); free(db); free(rd);
    for (int i = 0; i < 3; i++) free(o.in[i]);
    free(o.out);
}
static void conv_case(int B, int cin, int cout, int h, int w, int k, int stride, int pad, int dil, int bias,
                      int accumulate) {
    conv_case_g(B, cin, cout, h, w, k, stride, pad, dil, bias, accumulate, 1);
}

// depthwise (groups = channels: MobileNetV2, ShuffleNetV2) with strides, dilation, padding, bias and
// accumulate=1; grouped with several channels per group and a channel multiplier (im2col per group)
static void test_conv_depthwise(void **s) {
    (void)s;
    conv_case_g(2, 5, 5, 7, 6, 3, 1, 1, 1, 1, 0, 5);
    conv_case_g(3, 4, 4, 9, 8, 3, 2, 1, 1, 0, 0, 4);
    conv_case_g(2, 3, 3, 8, 9, 3, 1, 2, 2, 0, 1, 3);
    conv_case_g(2, 2, 2, 6, 5, 5, 2, 2, 1, 1, 0, 2);
    conv_case_g(1, 3, 3, 4, 4, 1, 1, 0, 1, 0, 0, 3);
    conv_case_g(2, 3, 3, 6, 7, 3, 1, 0, 1, 1, 1, 3);    // 3x3 without padding, stride 1 and 2 (padded-plane kernels)
    conv_case_g(2, 4, 4, 7, 8, 3, 2, 0, 1, 0, 0, 4);
    conv_case_g(2, 2, 2, 70, 3, 3, 1, 1, 1, 0, 0, 2);   // taller than the padded-plane buffer: the general loops
    conv_case_g(2, 3, 3, 5, 16, 3, 1, 1, 1, 1, 1, 3);   // 3x3 same, accumulate, 16 wide and 4x4: the gather dx and
    conv_case_g(3, 4, 4, 4, 4, 3, 1, 1, 1, 0, 0, 4);    // flattened-row dw kernels (lanes and their tails)
}
static void test_conv_grouped(void **s) {
    (void)s;
    conv_case_g(2, 6, 4, 5, 6, 3, 1, 1, 1, 1, 0, 2);
    conv_case_g(2, 4, 8, 6, 6, 3, 2, 1, 1, 0, 1, 4);    // 1 input channel, 2 outputs per group
    conv_case_g(3, 6, 9, 4, 5, 1, 1, 0, 1, 0, 0, 3);
}

static void test_conv_3x3_same(void **s) { (void)s; conv_case(2, 3, 4, 6, 5, 3, 1, 1, 1, 1, 0); }
static void test_conv_stride2(void **s) { (void)s; conv_case(3, 2, 3, 7, 8, 3, 2, 1, 1, 0, 0); }
static void test_conv_dilation2(void **s) { (void)s; conv_case(2, 2, 3, 7, 7, 3, 1, 2, 2, 1, 0); }
static void test_conv_1x1(void **s) { (void)s; conv_case(4, 5, 3, 3, 4, 1, 1, 0, 1, 1, 0); }
static void test_conv_1x1_stride2(void **s) { (void)s; conv_case(3, 4, 6, 6, 5, 1, 2, 0, 1, 0, 0); }
static void test_conv_accumulate_dx(void **s) { (void)s; conv_case(2, 3, 2, 5, 5, 3, 1, 1, 1, 0, 1); }
// 34x32 outputs per sample: one sample per GEMM (the unchunked path), plus the direct 1x1 path
static void test_conv_large_map(void **s) { (void)s; conv_case(2, 2, 3, 34, 32, 3, 1, 1, 1, 1, 0); conv_case(2, 3, 2, 33, 32, 1, 1, 0, 1, 1, 1); }

// Widths that are multiples of 16 take the direct AVX-512 kernel where the CPU has it (forward and dx);
// channel counts that are not multiples of its 8-channel block, x blocks of 16 and 32, and accumulate=1.
static void test_conv_direct_shapes(void **s) {
    (void)s;
    conv_case(2, 3, 5, 4, 16, 3, 1, 1, 1, 1, 0);
    conv_case(3, 9, 8, 3, 32, 3, 1, 1, 1, 0, 1);
    conv_case(1, 2, 17, 2, 48, 3, 1, 1, 1, 1, 0);
}

// The direct kernel and the im2col path agree on the same inputs (when the CPU has the direct kernel).
static void test_conv_direct_matches_im2col(void **s) {
    (void)s;
    ConvDesc d;
    assert_int_equal(ops_conv2d_desc(&d, 12, 20, 8, 32, 3, 1, 1, 1), 0);
    conv3x3_direct_enable(1);
    if (!conv3x3_direct_ok(&d)) { printf("# no AVX-512F here: direct kernel not used\n"); return; }
    int B = 3; size_t nx = (size_t)B * 12 * 8 * 32, nw = 20 * 12 * 9, ny = (size_t)B * 20 * 8 * 32;
    float *x = rand_f(nx, 1, 0), *w = rand_f(nw, 0.3f, 0), *b = rand_f(20, 0.3f, 0), *dy = rand_f(ny, 1, 0);
    float *ws = fill_f(O->conv2d_workspace(&d, B), 0), *y[2], *dx[2], *dw[2];
    for (int k = 0; k < 2; k++) {
        conv3x3_direct_enable(k == 0);
        y[k] = fill_f(ny, 0); dx[k] = fill_f(nx, 0.5f); dw[k] = fill_f(nw, 0);
        O->conv2d_forward(&d, B, y[k], x, w, b, ws);
        O->conv2d_backward(&d, B, dx[k], dw[k], NULL, dy, x, w, ws, 1);
    }
    conv3x3_direct_enable(1);
    double *ry = to_d(y[1], ny), *rdx = to_d(dx[1], nx);
    assert_int_equal(check_close("direct y vs im2col", y[0], ry, ny, 1e-5, 1e-5), 0);
    assert_int_equal(check_close("direct dx vs im2col", dx[0], rdx, nx, 1e-5, 1e-5), 0);
    free(ry); free(rdx);
    for (int k = 0; k < 2; k++) { free(y[k]); free(dx[k]); free(dw[k]); }
    free(x); free(w); free(b); free(dy); free(ws);
}

// oneDNN (conv_dnnl.c, when built in) forced for every pass: the same finite-difference checks, on
// strides, dilation, 1x1, bias, accumulate=1 and channel counts that are not multiples of its 16-blocks.
static void test_conv_dnnl_shapes(void **s) {
    (void)s;
    ConvDesc d;
    assert_int_equal(ops_conv2d_desc(&d, 3, 4, 6, 5, 3, 1, 1, 1), 0);
    conv_dnnl_enable(2);
    if (!conv_dnnl_ok(&d)) { printf("# built without oneDNN: nothing to check\n"); conv_dnnl_enable(1); return; }
    conv_case(2, 3, 4, 6, 5, 3, 1, 1, 1, 1, 0);
    conv_case(3, 20, 24, 7, 8, 3, 2, 1, 1, 0, 0);
    conv_case(2, 2, 3, 7, 7, 3, 1, 2, 2, 1, 0);
    conv_case(4, 5, 3, 3, 4, 1, 1, 0, 1, 1, 0);
    conv_case(3, 4, 6, 6, 5, 1, 2, 0, 1, 0, 0);
    conv_case(2, 17, 18, 5, 5, 3, 1, 1, 1, 0, 1);
    conv_case(2, 17, 18, 5, 5, 1, 1, 0, 1, 1, 1);   // 1x1 stride 1 in plain NCHW, bias, dx accumulated (sum reorder)
    conv_dnnl_enable(1);
}

// ops_cpu's own choice (oneDNN for the wide layers) against oneDNN switched off, on a ResNet-like shape
// with dx accumulated and a bias; then a smaller batch than the workspace was sized for.
static void test_conv_dnnl_matches_own_paths(void **s) {
    (void)s;
    ConvDesc d;
    assert_int_equal(ops_conv2d_desc(&d, 64, 80, 8, 8, 3, 1, 1, 1), 0);
    conv_dnnl_enable(1);
    if (!conv_dnnl_ok(&d)) { printf("# built without oneDNN: nothing to compare\n"); return; }
    int B = 3; size_t nx = (size_t)B * 64 * 64, nw = 80 * 64 * 9, ny = (size_t)B * 80 * 64;
    float *x = rand_f(nx, 1, 0), *w = rand_f(nw, 0.1f, 0), *b = rand_f(80, 0.3f, 0), *dy = rand_f(ny, 1, 0);
    float *ws = fill_f(O->conv2d_workspace(&d, B), 0), *y[2], *dx[2], *dw[2], *db[2];
    for (int bs = B; bs >= 1; bs -= 2)
        for (int k = 0; k < 2; k++) {
            conv_dnnl_enable(k == 0);
            y[k] = fill_f(ny, 0); dx[k] = fill_f(nx, 0.5f); dw[k] = fill_f(nw, 0.25f); db[k] = fill_f(80, 1);
            O->conv2d_forward(&d, bs, y[k], x, w, b, ws);
            O->conv2d_backward(&d, bs, dx[k], dw[k], db[k], dy, x, w, ws, 1);
            if (k == 0) continue;
            double *ry = to_d(y[1], ny), *rdx = to_d(dx[1], nx), *rdw = to_d(dw[1], nw), *rdb = to_d(db[1], 80);
            assert_int_equal(check_close("oneDNN y vs own", y[0], ry, ny, 1e-4, 1e-4), 0);
            assert_int_equal(check_close("oneDNN dx vs own", dx[0], rdx, nx, 1e-4, 1e-4), 0);
            assert_int_equal(check_close("oneDNN dw vs own", dw[0], rdw, nw, 1e-4, 1e-4), 0);
            assert_int_equal(check_close("oneDNN db vs own", db[0], rdb, 80, 1e-4, 1e-4), 0);
            free(ry); free(rdx); free(rdw); free(rdb);
            for (int j = 0; j < 2; j++) { free(y[j]); free(dx[j]); free(dw[j]); free(db[j]); }
        }
    conv_dnnl_enable(1);
    free(x); free(w); free(b); free(dy); free(ws);
}

// ----------------------------------------------------------------------------------------------
// dilated convolutions cut to their live taps (conv_cut.h): which taps are cut, the gradients against
// finite differences of the full convolution's reference, and the cut against the full op itself

// What conv_cut_desc makes of k x k kernels at dilation dil on h x w maps: rows and columns cut
// separately, map sizes below, equal to and above the dilation, padding moved (or negative: a crop).
static void test_conv_cut_desc(void **s) {
    (void)s;
    struct { int h, w, k, pad, dil, cut, kh, kw, padh, padw, pad_r; } c[] = {
        {8, 8, 3, 12, 12, 1, 1, 1, 0, 0, 0},      // ASPP rate 12 on 8x8: 1x1, dilation dropped
        {8, 8, 3, 18, 18, 1, 1, 1, 0, 0, 0},      // rate 18
        {8, 8, 3, 6, 6, 0, 0, 0, 0, 0, 0},        // rate 6: every tap reads the image
        {8, 8, 3, 8, 8, 1, 1, 1, 0, 0, 0},        // map = dilation: the outer taps' windows end at -1 / start at 8
        {9, 9, 3, 8, 8, 0, 0, 0, 0, 0, 0},        // map = dilation + 1: row 0 / row 8 read
        {4, 16, 3, 6, 6, 1, 1, 3, 0, 6, -1},      // rows only (pad -1: the sides differ)
        {16, 4, 3, 6, 6, 1, 3, 1, 6, 0, -1},      // columns only
        {2, 2, 5, 2, 1, 1, 3, 3, 1, 1, 1},        // 5x5 on 2x2: the middle 3x3, padding 1 all round
        {2, 7, 5, 4, 2, 1, 1, 5, 0, 4, -1},       // 5x5 dilation 2 on 2 rows: one row
        {10, 10, 3, 5, 8, 1, 1, 1, -3, -3, -1},   // padding short of the dilation: a crop (negative padding)
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ConvDesc d, r; int ky0 = -1, kx0 = -1;
        assert_int_equal(ops_conv2d_desc(&d, 2, 3, c[i].h, c[i].w, c[i].k, 1, c[i].pad, c[i].dil), 0);
        assert_int_equal(conv_cut_desc(&d, &r, &ky0, &kx0), c[i].cut);
        if (!c[i].cut) continue;
        assert_int_equal(r.kh, c[i].kh); assert_int_equal(r.kw, c[i].kw);
        assert_int_equal(r.padh, c[i].padh); assert_int_equal(r.padw, c[i].padw); assert_int_equal(r.pad, c[i].pad_r);
        assert_int_equal(r.oh, d.oh); assert_int_equal(r.ow, d.ow);
        assert_int_equal(ky0, (c[i].k - c[i].kh) / 2); assert_int_equal(kx0, (c[i].k - c[i].kw) / 2);
        assert_int_equal(r.dil, r.kh == 1 && r.kw == 1 ? 1 : c[i].dil);
    }
    // strided, grouped, or no live tap in a dimension: left whole
    ConvDesc d, r; int ky0, kx0;
    assert_int_equal(ops_conv2d_desc(&d, 2, 3, 4, 4, 3, 2, 6, 6), 0);
    assert_int_equal(conv_cut_desc(&d, &r, &ky0, &kx0), 0);
    assert_int_equal(ops_conv2d_desc_grouped(&d, 2, 2, 4, 4, 3, 1, 6, 6, 2), 0);
    assert_int_equal(conv_cut_desc(&d, &r, &ky0, &kx0), 0);
    assert_int_equal(ops_conv2d_desc(&d, 2, 3, 1, 1, 2, 1, 2, 3), 0);   // both taps read padding only
    assert_int_equal(conv_cut_desc(&d, &r, &ky0, &kx0), 0);
}

// Finite differences of the full convolution's reference against the cut op, on oneDNN and on the own
// paths (im2col + sgemm, the direct kernel where the cut leaves a 3x3 pad-1 kernel).
static void test_conv_cut_grad(void **s) {
    (void)s;
    for (int dn = 0; dn < 2; dn++) {
        conv_dnnl_enable(dn ? 2 : 0);
        conv_case(2, 3, 4, 8, 8, 3, 1, 12, 12, 1, 0);   // 1x1
        conv_case(2, 3, 4, 5, 5, 3, 1, 5, 5, 0, 1);     // map = dilation, dx accumulated
        conv_case(2, 3, 4, 4, 9, 3, 1, 5, 5, 1, 0);     // rows cut (4 < 5), columns kept (9 > 5)
        conv_case(2, 3, 4, 9, 3, 3, 1, 4, 4, 0, 0);     // columns cut, rows kept
        conv_case(2, 2, 3, 2, 2, 5, 1, 2, 1, 1, 0);     // 5x5 -> 3x3 pad 1
        conv_case(2, 2, 3, 2, 7, 5, 1, 4, 2, 1, 1);     // 5x5 dilation 2 -> 1x5
        conv_case(2, 2, 3, 10, 10, 3, 1, 5, 8, 1, 0);   // a crop: negative padding (own paths only)
    }
    conv_dnnl_enable(1);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

// The cut op against the full op (cut switched off) on the same inputs: y, dx, dw, db within float
// rounding (the sums run in another order: the full op adds the dropped taps' zero products too).
static void cut_matches_full(int B, int cin, int cout, int h, int w, int k, int pad, int dil, int accumulate) {
    ConvDesc d, r; int ky0, kx0;
    assert_int_equal(ops_conv2d_desc(&d, cin, cout, h, w, k, 1, pad, dil), 0);
    assert_int_equal(conv_cut_desc(&d, &r, &ky0, &kx0), 1);
    size_t nx = (size_t)B * cin * h * w, nw = (size_t)cout * cin * k * k, ny = (size_t)B * cout * d.oh * d.ow;
    conv_cut_enable(0);
    size_t nws = O->conv2d_workspace(&d, B);
    conv_cut_enable(1);
    if (O->conv2d_workspace(&d, B) > nws) nws = O->conv2d_workspace(&d, B);
    float *x = rand_f(nx, 1, 0), *wt = rand_f(nw, 0.1f, 0), *b = rand_f(cout, 0.3f, 0), *dy = rand_f(ny, 1, 0);
    float *ws = fill_f(nws, 0), *y[2], *dx[2], *dw[2], *db[2];
    for (int cut = 0; cut < 2; cut++) {
        conv_cut_enable(cut);
        y[cut] = fill_f(ny, 99); dx[cut] = fill_f(nx, 0.5f); dw[cut] = fill_f(nw, 0.25f); db[cut] = fill_f(cout, 1);
        O->conv2d_forward(&d, B, y[cut], x, wt, b, ws);
        O->conv2d_backward(&d, B, dx[cut], dw[cut], db[cut], dy, x, wt, ws, accumulate);
    }
    conv_cut_enable(1);
    printf("# cut %dx%d k%d p%d d%d -> %dx%d: max |cut - full| y %g dx %g dw %g db %g\n", h, w, k, pad, dil, r.kh, r.kw,
           max_abs_diff(y[1], y[0], ny), max_abs_diff(dx[1], dx[0], nx), max_abs_diff(dw[1], dw[0], nw),
           max_abs_diff(db[1], db[0], cout));
    double *ry = to_d(y[0], ny), *rdx = to_d(dx[0], nx), *rdw = to_d(dw[0], nw), *rdb = to_d(db[0], cout);
    char what[96];
    snprintf(what, sizeof what, "cut %dx%d k%d p%d d%d y vs full", h, w, k, pad, dil);
    assert_int_equal(check_close(what, y[1], ry, ny, 1e-5, 1e-5), 0);
    snprintf(what, sizeof what, "cut %dx%d k%d p%d d%d dx vs full", h, w, k, pad, dil);
    assert_int_equal(check_close(what, dx[1], rdx, nx, 1e-5, 1e-5), 0);
    snprintf(what, sizeof what, "cut %dx%d k%d p%d d%d dw vs full", h, w, k, pad, dil);
    assert_int_equal(check_close(what, dw[1], rdw, nw, 1e-5, 1e-5), 0);
    assert_int_equal(check_close("cut db vs full", db[1], rdb, cout, 1e-5, 1e-5), 0);
    for (size_t i = 0; i < nw; i++)   // the dropped taps' gradient is exactly what the full op adds: zero
        if ((long)(i % ((size_t)k * k)) / k < ky0 || (long)(i % ((size_t)k * k)) / k >= ky0 + r.kh ||
            (long)(i % k) < kx0 || (long)(i % k) >= kx0 + r.kw)
            assert_true(dw[1][i] == 0.25f && dw[0][i] == 0.25f);
    free(ry); free(rdx); free(rdw); free(rdb);
    for (int j = 0; j < 2; j++) { free(y[j]); free(dx[j]); free(dw[j]); free(db[j]); }
    free(x); free(wt); free(b); free(dy); free(ws);
}

// ASPP-like shapes (oneDNN's choice for >= 64 channels) and small ones (im2col + sgemm), square and not.
static void test_conv_cut_matches_full(void **s) {
    (void)s;
    conv_dnnl_enable(1);
    cut_matches_full(2, 64, 48, 8, 8, 3, 12, 12, 0);    // rate 12 on 8x8
    cut_matches_full(3, 64, 48, 8, 8, 3, 18, 18, 1);    // rate 18, dx accumulated
    cut_matches_full(2, 64, 32, 6, 8, 3, 7, 7, 0);      // below the dilation in both
    cut_matches_full(2, 64, 32, 7, 7, 3, 7, 7, 0);      // equal to it
    cut_matches_full(2, 64, 32, 4, 12, 3, 6, 6, 1);     // rows cut, columns above the dilation
    cut_matches_full(2, 64, 32, 12, 4, 3, 6, 6, 0);     // columns cut
    cut_matches_full(2, 5, 7, 5, 9, 3, 6, 6, 0);        // few channels: im2col + sgemm
    cut_matches_full(2, 5, 7, 10, 10, 3, 5, 8, 1);      // a crop
}

static void test_convt2x2(void **s) {
    (void)s;
    int B = 2, cin = 3, cout = 4, h = 3, w = 5;
    size_t nx = (size_t)B * cin * h * w, nw = (size_t)cin * cout * 4, ny = (size_t)B * cout * 4 * h * w;
    float *x = rand_f(nx, 1, 0), *wt = rand_f(nw, 0.5f, 0), *b = rand_f(cout, 0.5f, 0), *y = fill_f(ny, 99);
    float *r = rand_f(ny, 1, 0), *ws = fill_f(O->convt2x2_workspace(cin, cout, h, w), 7);
    O->convt2x2_forward(B, cin, cout, h, w, y, x, wt, b, ws);
    RefOp o = {.fn = ref_convt, .in = {to_d(x, nx), to_d(wt, nw), to_d(b, cout)}, .nin = {nx, nw, (size_t)cout},
               .out = malloc(sizeof(double) * ny), .nout = ny, .B = B, .C = cin, .K = cout, .H = h, .W = w};
    assert_int_equal(fw_check("convt fwd", &o, y), 0);
    float *dx = fill_f(nx, 99), *dw = fill_f(nw, 0.5f), *db = fill_f(cout, 0.5f);
    O->convt2x2_backward(B, cin, cout, h, w, dx, dw, db, r, x, wt, ws);
    sub_const(dw, nw, 0.5f); sub_const(db, cout, 0.5f);
    double *rd = to_d(r, ny);
    assert_int_equal(fd_check("convt dx", &o, 0, dx, rd), 0);
    assert_int_equal(fd_check("convt dw", &o, 1, dw, rd), 0);
    assert_int_equal(fd_check("convt db", &o, 2, db, rd), 0);
    free(x); free(wt); free(b); free(y); free(r); free(ws); free(dx); free(dw); free(db); free(rd);
    for (int i = 0; i < 3; i++) free(o.in[i]);
    free(o.out);
}

static void bn_case(int relu) {
    int B = 3, C = 4, H = 3, W = 5; size_t n = (size_t)B * C * H * W;
    float *x = rand_f(n, 2, 0.7f), *g = rand_f(C, 0.3f, relu == 2 ? 4.f : 1.f), *be = rand_f(C, 0.3f, 0), *y = fill_f(n, 99);
    float *rm = fill_f(C, 0.f), *rv = fill_f(C, 1.f), nb = 0, mean[4], invstd[4];
    float *r = rand_f(n, 1, 0);
    O->batchnorm_forward(B, C, H * W, y, mean, invstd, x, g, be, rm, rv, &nb, 1, relu, NULL);
    RefOp o = {.fn = ref_bn, .in = {to_d(x, n), to_d(g, C), to_d(be, C)}, .nin = {n, (size_t)C, (size_t)C},
               .out = malloc(sizeof(double) * n), .nout = n, .B = B, .C = C, .H = H, .W = W, .relu = relu};
    assert_int_equal(fw_check(relu == 2 ? "bn+relu6 fwd" : relu ? "bn+relu fwd" : "bn fwd", &o, y), 0);
    // batchnorm_apply with the saved statistics reproduces the training output
    float *y2 = fill_f(n, 99);
    O->batchnorm_apply(B, C, H * W, y2, x, mean, invstd, g, be, relu);
    for (size_t i = 0; i < n; i++) assert_float_equal(y2[i], y[i], 1e-6);
    free(y2);
    assert_float_equal(nb, 1.f, 0);
    float *dx = fill_f(n, 99), *dg = fill_f(C, 0.5f), *db = fill_f(C, 0.5f);
    O->batchnorm_backward(B, C, H * W, dx, dg, db, r, x, y, mean, invstd, g, relu, NULL);
    sub_const(dg, C, 0.5f); sub_const(db, C, 0.5f);
    double *rd = to_d(r, n);
    assert_int_equal(fd_check("bn dx", &o, 0, dx, rd), 0);
    assert_int_equal(fd_check("bn dgamma", &o, 1, dg, rd), 0);
    assert_int_equal(fd_check("bn dbeta", &o, 2, db, rd), 0);
    free(x); free(g); free(be); free(y); free(rm); free(rv); free(r); free(dx); free(dg); free(db); free(rd);
    for (int i = 0; i < 3; i++) free(o.in[i]);
    free(o.out);
}
static void test_batchnorm(void **s) { (void)s; bn_case(0); }
static void test_batchnorm_relu6(void **s) { (void)s; bn_case(2); }
static void test_batchnorm_relu(void **s) { (void)s; bn_case(1); }

// Sync BN with an allreduce that doubles every sum = two ranks holding the same data: the output and dx
// must equal local BN, and the running variance must use the global count 2N in its unbiased factor.
static int fake_two_ranks(void *ctx, double *buf, size_t n) {
    (*(int *)ctx)++;
    for (size_t i = 0; i < n; i++) buf[i] *= 2;
    return 0;
}
static void test_batchnorm_sync_hook(void **s) {
    (void)s;
    int B = 2, C = 3, HW = 4, calls = 0; size_t n = (size_t)B * C * HW;
    float *x = rand_f(n, 1, 0.3f), *g = rand_f(C, 0.2f, 1), *be = rand_f(C, 0.2f, 0), *r = rand_f(n, 1, 0);
    float y1[24], y2[24], m1[3], m2[3], i1[3], i2[3], rm1[3] = {0}, rm2[3] = {0}, rv1[3] = {1, 1, 1}, rv2[3] = {1, 1, 1};
    float dx1[24], dx2[24], dg1[3] = {0}, dg2[3] = {0}, db1[3] = {0}, db2[3] = {0};
    BnSync sync = {fake_two_ranks, &calls};
    O->batchnorm_forward(B, C, HW, y1, m1, i1, x, g, be, rm1, rv1, NULL, 1, 1, NULL);
    O->batchnorm_forward(B, C, HW, y2, m2, i2, x, g, be, rm2, rv2, NULL, 1, 1, &sync);
    assert_int_equal(calls, 1);
    for (size_t i = 0; i < n; i++) assert_float_equal(y1[i], y2[i], 1e-5);
    for (int c = 0; c < C; c++) {
        double N = B * HW, var = 1.0 / ((double)i1[c] * i1[c]) - 1e-5;
        assert_float_equal(rv1[c], 0.9 + 0.1 * var * N / (N - 1), 1e-4);
        assert_float_equal(rv2[c], 0.9 + 0.1 * var * 2 * N / (2 * N - 1), 1e-4);
    }
    O->batchnorm_backward(B, C, HW, dx1, dg1, db1, r, x, y1, m1, i1, g, 1, NULL);
    O->batchnorm_backward(B, C, HW, dx2, dg2, db2, r, x, y2, m2, i2, g, 1, &sync);
    assert_int_equal(calls, 2);
    for (size_t i = 0; i < n; i++) assert_float_equal(dx1[i], dx2[i], 1e-5);
    for (int c = 0; c < C; c++) { assert_float_equal(dg1[c], dg2[c], 1e-6); assert_float_equal(db1[c], db2[c], 1e-6); }
    free(x); free(g); free(be); free(r);
}

static void test_batchnorm_eval(void **s) {
    (void)s;
    int B = 2, C = 3, HW = 5; size_t n = (size_t)B * C * HW;
    float *x = rand_f(n, 1, 0), y[30], mean[3], invstd[3], g[3] = {1.5f, 0.5f, 1}, be[3] = {0.1f, -0.2f, 0};
    float rm[3] = {0.2f, -0.1f, 0.f}, rv[3] = {2.f, 0.5f, 1.f}, nb = 3;
    O->batchnorm_forward(B, C, HW, y, mean, invstd, x, g, be, rm, rv, &nb, 0, 0, NULL);
    assert_float_equal(nb, 3, 0);                     // eval leaves the buffers alone
    assert_float_equal(rm[0], 0.2f, 0);
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i / HW) % C;
        assert_float_equal(y[i], g[c] * (x[i] - rm[c]) / sqrt(rv[c] + 1e-5) + be[c], 1e-5);
    }
    free(x);
}

static void test_relu_add(void **s) {
    (void)s;
    size_t n = 40000;   // above the parallel grain
    float *x = rand_f(n, 1, 0), *a = rand_f(n, 1, 0), *y = fill_f(n, 9), *r = rand_f(n, 1, 0), *dx = fill_f(n, 9);
    O->relu_forward(n, y, x);
    RefOp o = {.fn = ref_relu, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * n), .nout = n};
    assert_int_equal(fw_check("relu fwd", &o, y), 0);
    O->relu_backward(n, dx, r, y);
    double *rd = to_d(r, n);
    assert_int_equal(fd_check("relu dx", &o, 0, dx, rd), 0);
    RefOp p = {.fn = ref_add, .in = {to_d(x, n), to_d(a, n)}, .nin = {n, n}, .out = malloc(sizeof(double) * n), .nout = n};
    O->add(n, y, x, a);
    assert_int_equal(fw_check("add fwd", &p, y), 0);
    // the gradient of a + b is dy for both: accumulate(dx, dy) is how models route it
    memcpy(dx, r, sizeof(float) * n);
    assert_int_equal(fd_check("add d(a)", &p, 0, dx, rd), 0);
    float *acc = fill_f(n, 0.5f);
    O->accumulate(n, acc, r);
    sub_const(acc, n, 0.5f);
    assert_int_equal(fd_check("add d(b) via accumulate", &p, 1, acc, rd), 0);
    free(x); free(a); free(y); free(r); free(dx); free(rd); free(acc);
    free(o.in[0]); free(o.out); free(p.in[0]); free(p.in[1]); free(p.out);
}

static void test_maxpool(void **s) {
    (void)s;
    int B = 2, C = 3, H = 7, W = 6; size_t n = (size_t)B * C * H * W, m = (size_t)B * C * (H / 2) * (W / 2);
    float *x = rand_f(n, 1, 0), *y = fill_f(m, 9), *r = rand_f(m, 1, 0), *dx = fill_f(n, 9);
    O->maxpool2x2_forward(B, C, H, W, y, x);
    RefOp o = {.fn = ref_maxpool, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * m), .nout = m,
               .B = B, .C = C, .H = H, .W = W};
    assert_int_equal(fw_check("maxpool fwd", &o, y), 0);
    O->maxpool2x2_backward(B, C, H, W, dx, r, x);
    double *rd = to_d(r, m);
    assert_int_equal(fd_check("maxpool dx", &o, 0, dx, rd), 0);
    free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
}

static void test_avgpool(void **s) {
    (void)s;
    int B = 3, C = 4, H = 5, W = 3; size_t n = (size_t)B * C * H * W, m = (size_t)B * C;
    float *x = rand_f(n, 1, 0), *y = fill_f(m, 9), *r = rand_f(m, 1, 0), *dx = fill_f(n, 9);
    O->avgpool_forward(B, C, H * W, y, x);
    RefOp o = {.fn = ref_avgpool, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * m), .nout = m,
               .B = B, .C = C, .H = H, .W = W};
    assert_int_equal(fw_check("avgpool fwd", &o, y), 0);
    O->avgpool_backward(B, C, H * W, dx, r);
    double *rd = to_d(r, m);
    assert_int_equal(fd_check("avgpool dx", &o, 0, dx, rd), 0);
    free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
}

static void bilinear_case(int h, int w, int oh, int ow) {
    int B = 2, C = 2; size_t n = (size_t)B * C * h * w, m = (size_t)B * C * oh * ow;
    float *x = rand_f(n, 1, 0), *y = fill_f(m, 9), *r = rand_f(m, 1, 0), *dx = fill_f(n, 9);
    O->upsample_bilinear_forward(B, C, h, w, oh, ow, y, x);
    RefOp o = {.fn = ref_bilinear, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * m), .nout = m,
               .B = B, .C = C, .H = h, .W = w, .OH = oh, .OW = ow};
    char what[64];
    snprintf(what, sizeof what, "bilinear %dx%d->%dx%d fwd", h, w, oh, ow);
    assert_int_equal(fw_check(what, &o, y), 0);
    O->upsample_bilinear_backward(B, C, h, w, oh, ow, dx, r);
    double *rd = to_d(r, m);
    snprintf(what, sizeof what, "bilinear %dx%d->%dx%d dx", h, w, oh, ow);
    assert_int_equal(fd_check(what, &o, 0, dx, rd), 0);
    free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
}
static void test_bilinear(void **s) { (void)s; bilinear_case(4, 5, 9, 13); bilinear_case(8, 6, 3, 4); bilinear_case(3, 3, 3, 3); }

static void test_concat(void **s) {
    (void)s;
    int B = 3, ca = 2, cb = 3, H = 2, W = 3, HW = H * W; size_t na = (size_t)B * ca * HW, nb = (size_t)B * cb * HW, m = na + nb;
    float *a = rand_f(na, 1, 0), *b = rand_f(nb, 1, 0), *y = fill_f(m, 9), *r = rand_f(m, 1, 0);
    float *da = fill_f(na, 9), *db = fill_f(nb, 9);
    O->concat_forward(B, ca, cb, HW, y, a, b);
    RefOp o = {.fn = ref_concat, .in = {to_d(a, na), to_d(b, nb)}, .nin = {na, nb}, .out = malloc(sizeof(double) * m),
               .nout = m, .B = B, .ca = ca, .cb = cb, .H = H, .W = W};
    assert_int_equal(fw_check("concat fwd", &o, y), 0);
    O->concat_backward(B, ca, cb, HW, da, db, r);
    double *rd = to_d(r, m);
    assert_int_equal(fd_check("concat da", &o, 0, da, rd), 0);
    assert_int_equal(fd_check("concat db", &o, 1, db, rd), 0);
    free(a); free(b); free(y); free(r); free(da); free(db); free(rd); free(o.in[0]); free(o.in[1]); free(o.out);
}

static void test_linear(void **s) {
    (void)s;
    int B = 5, I = 7, K = 4; size_t nx = (size_t)B * I, nw = (size_t)K * I, ny = (size_t)B * K;
    float *x = rand_f(nx, 1, 0), *w = rand_f(nw, 0.5f, 0), *b = rand_f(K, 0.5f, 0), *y = fill_f(ny, 9), *r = rand_f(ny, 1, 0);
    O->linear_forward(B, I, K, y, x, w, b);
    RefOp o = {.fn = ref_linear, .in = {to_d(x, nx), to_d(w, nw), to_d(b, K)}, .nin = {nx, nw, (size_t)K},
               .out = malloc(sizeof(double) * ny), .nout = ny, .B = B, .C = I, .K = K};
    assert_int_equal(fw_check("linear fwd", &o, y), 0);
    float *dx = fill_f(nx, 9), *dw = fill_f(nw, 0.5f), *db = fill_f(K, 0.5f);
    O->linear_backward(B, I, K, dx, dw, db, r, x, w);
    sub_const(dw, nw, 0.5f); sub_const(db, K, 0.5f);
    double *rd = to_d(r, ny);
    assert_int_equal(fd_check("linear dx", &o, 0, dx, rd), 0);
    assert_int_equal(fd_check("linear dw", &o, 1, dw, rd), 0);
    assert_int_equal(fd_check("linear db", &o, 2, db, rd), 0);
    free(x); free(w); free(b); free(y); free(r); free(dx); free(dw); free(db); free(rd);
    for (int i = 0; i < 3; i++) free(o.in[i]);
    free(o.out);
}

static void test_softmax_xent(void **s) {
    (void)s;
    int B = 3, C = 5, H = 2, W = 3, HW = H * W; size_t n = (size_t)B * C * HW;
    float *lg = rand_f(n, 3, 0), *dl = fill_f(n, 9);
    int32_t lab[18];
    for (int i = 0; i < B * HW; i++) lab[i] = (i % 4 == 1) ? 255 : (i * 7) % C;
    long cnt = 0;
    float scale = 0.75f;
    double loss = O->softmax_xent(B, C, HW, dl, lg, lab, 255, scale, &cnt);
    assert_int_equal(cnt, 13);
    RefOp o = {.fn = ref_xent, .in = {to_d(lg, n)}, .nin = {n}, .out = malloc(sizeof(double)), .nout = 1,
               .B = B, .C = C, .H = H, .W = W, .ignore = 255, .labels = lab};
    o.fn(&o);
    assert_float_equal(loss, o.out[0], 1e-6 * fabs(o.out[0]) + 1e-7);
    double r = scale;   // dL/d(loss) = grad_scale
    assert_int_equal(fd_check("xent dlogits", &o, 0, dl, &r), 0);
    for (int i = 0; i < B * HW; i++)        // ignored pixels get exactly zero gradient
        if (lab[i] == 255) for (int c = 0; c < C; c++) assert_float_equal(dl[(i / HW * C + c) * HW + i % HW], 0.f, 0);
    // a label outside [0, C) that is not the ignore label is reported, not silently used
    lab[4] = 7;
    loss = O->softmax_xent(B, C, HW, dl, lg, lab, 255, 1.f, &cnt);
    assert_true(isnan(loss));
    assert_int_equal(cnt, -1 - 4);
    free(lg); free(dl); free(o.in[0]); free(o.out);
}

// ---- the mobile/dense-net ops

static void test_relu6(void **s) {
    (void)s;
    size_t n = 40000;
    float *x = rand_f(n, 8, 1), *y = fill_f(n, 9), *r = rand_f(n, 1, 0), *dx = fill_f(n, 9);
    O->relu6_forward(n, y, x);
    RefOp o = {.fn = ref_relu6, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * n), .nout = n};
    assert_int_equal(fw_check("relu6 fwd", &o, y), 0);
    O->relu6_backward(n, dx, r, y);
    double *rd = to_d(r, n);
    assert_int_equal(fd_check("relu6 dx", &o, 0, dx, rd), 0);
    free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
}

// out (B, C, HW): channel c of sample n = in[0] at (n, c) after a permutation given by ref fns below
static void ref_slice(RefOp *o) {   // channels [ca, ca+cb) of x (B, C, HW), C = o->C
    int HW = o->H * o->W;
    for (int n = 0; n < o->B; n++)
        for (int k = 0; k < o->cb; k++)
            for (int i = 0; i < HW; i++) o->out[(n * o->cb + k) * HW + i] = o->in[0][(n * o->C + o->ca + k) * HW + i];
}
static void ref_shuffle(RefOp *o) {   // groups K
    int HW = o->H * o->W, M = o->C / o->K;
    for (int n = 0; n < o->B; n++)
        for (int j = 0; j < M; j++)
            for (int g = 0; g < o->K; g++)
                for (int i = 0; i < HW; i++)
                    o->out[((n * o->C) + j * o->K + g) * HW + i] = o->in[0][((n * o->C) + g * M + j) * HW + i];
}
static void ref_swap(RefOp *o) {   // x (B, C, HW) -> (C, B, HW)
    int HW = o->H * o->W;
    for (int n = 0; n < o->B; n++)
        for (int c = 0; c < o->C; c++)
            for (int i = 0; i < HW; i++) o->out[(c * o->B + n) * HW + i] = o->in[0][(n * o->C + c) * HW + i];
}
static void ref_avgpool2(RefOp *o) {
    int oh = o->H / 2, ow = o->W / 2;
    for (int p = 0; p < o->B * o->C; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                const double *x = o->in[0] + ((size_t)p * o->H + 2 * i) * o->W + 2 * j;
                o->out[(p * oh + i) * ow + j] = 0.25 * (x[0] + x[1] + x[o->W] + x[o->W + 1]);
            }
}

// channel_copy: slicing (split) forward = copy out; its gradient = copy back in with accumulate
static void test_channel_copy(void **s) {
    (void)s;
    int B = 3, C = 7, H = 2, W = 5, HW = H * W, off = 2, k = 4;
    size_t nx = (size_t)B * C * HW, ny = (size_t)B * k * HW;
    float *x = rand_f(nx, 1, 0), *y = fill_f(ny, 9), *r = rand_f(ny, 1, 0), *dx = fill_f(nx, 0.5f);
    O->channel_copy(B, HW, k, y, k, 0, x, C, off, 0);
    RefOp o = {.fn = ref_slice, .in = {to_d(x, nx)}, .nin = {nx}, .out = malloc(sizeof(double) * ny), .nout = ny,
               .B = B, .C = C, .H = H, .W = W, .ca = off, .cb = k};
    assert_int_equal(fw_check("channel slice fwd", &o, y), 0);
    O->channel_copy(B, HW, k, dx, C, off, r, k, 0, 1);   // gradient routed back, accumulated onto 0.5
    sub_const(dx, nx, 0.5f);
    double *rd = to_d(r, ny);
    assert_int_equal(fd_check("channel slice dx (accumulated)", &o, 0, dx, rd), 0);
    // concat of two slices equals the old concat op
    float *a = rand_f((size_t)B * 3 * HW, 1, 0), *b = rand_f((size_t)B * 4 * HW, 1, 0);
    float *c1 = fill_f(nx, 1), *c2 = fill_f(nx, 2);
    O->concat_forward(B, 3, 4, HW, c1, a, b);
    O->channel_copy(B, HW, 3, c2, C, 0, a, 3, 0, 0);
    O->channel_copy(B, HW, 4, c2, C, 3, b, 4, 0, 0);
    assert_memory_equal(c1, c2, sizeof(float) * nx);
    free(a); free(b); free(c1); free(c2);
    free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
}

static void test_channel_shuffle_and_swap(void **s) {
    (void)s;
    int B = 2, C = 6, H = 3, W = 2, HW = H * W;
    size_t n = (size_t)B * C * HW;
    for (int G = 2; G <= 3; G++) {
        float *x = rand_f(n, 1, 0), *y = fill_f(n, 9), *r = rand_f(n, 1, 0), *dx = fill_f(n, 9);
        O->channel_shuffle(B, C, G, HW, y, x);
        RefOp o = {.fn = ref_shuffle, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * n), .nout = n,
                   .B = B, .C = C, .H = H, .W = W, .K = G};
        assert_int_equal(fw_check("shuffle fwd", &o, y), 0);
        O->channel_shuffle(B, C, C / G, HW, dx, r);   // the gradient: the inverse shuffle
        double *rd = to_d(r, n);
        assert_int_equal(fd_check("shuffle dx", &o, 0, dx, rd), 0);
        free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
    }
    float *x = rand_f(n, 1, 0), *y = fill_f(n, 9), *r = rand_f(n, 1, 0), *dx = fill_f(n, 9);
    O->swap_dims01(B, C, HW, y, x);
    RefOp o = {.fn = ref_swap, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * n), .nout = n,
               .B = B, .C = C, .H = H, .W = W};
    assert_int_equal(fw_check("swap (B,C)->(C,B) fwd", &o, y), 0);
    O->swap_dims01(C, B, HW, dx, r);
    double *rd = to_d(r, n);
    assert_int_equal(fd_check("swap dx", &o, 0, dx, rd), 0);
    free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
}

static void test_avgpool2x2(void **s) {
    (void)s;
    int B = 2, C = 3, H = 7, W = 6; size_t n = (size_t)B * C * H * W, m = (size_t)B * C * (H / 2) * (W / 2);
    float *x = rand_f(n, 1, 0), *y = fill_f(m, 9), *r = rand_f(m, 1, 0), *dx = fill_f(n, 9);
    O->avgpool2x2_forward(B, C, H, W, y, x);
    RefOp o = {.fn = ref_avgpool2, .in = {to_d(x, n)}, .nin = {n}, .out = malloc(sizeof(double) * m), .nout = m,
               .B = B, .C = C, .H = H, .W = W};
    assert_int_equal(fw_check("avgpool2x2 fwd", &o, y), 0);
    O->avgpool2x2_backward(B, C, H, W, dx, r);
    double *rd = to_d(r, m);
    assert_int_equal(fd_check("avgpool2x2 dx", &o, 0, dx, rd), 0);
    free(x); free(y); free(r); free(dx); free(rd); free(o.in[0]); free(o.out);
}

// dropout: the kept fraction is 1-p, kept values scaled by 1/(1-p), the gradient uses the same mask
static void test_dropout(void **s) {
    (void)s;
    size_t n = 100000;
    float p = 0.3f, *x = rand_f(n, 1, 2), *y = fill_f(n, 9), *dy = rand_f(n, 1, 0), *dx = fill_f(n, 9);
    O->dropout_forward(n, p, 42, y, x);
    O->dropout_backward(n, p, 42, dx, dy);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        int k = ops_dropout_keep(42, i, p);
        kept += k;
        assert_float_equal(y[i], k ? x[i] / (1 - p) : 0.f, 1e-6);
        assert_float_equal(dx[i], k ? dy[i] / (1 - p) : 0.f, 1e-6);
    }
    double frac = (double)kept / n;   // binomial: sd = sqrt(0.21 / 1e5) = 0.0014
    printf("# dropout p=0.3: kept %.4f\n", frac);
    assert_true(fabs(frac - 0.7) < 0.01);
    O->dropout_forward(n, p, 43, dx, x);   // another seed, another mask
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += (dx[i] == 0.f) == (y[i] == 0.f);
    assert_true(same < n * 0.7);
    free(x); free(y); free(dy); free(dx);
}

static void test_conv_desc_rejects_empty_output(void **s) {
    (void)s;
    ConvDesc d;
    assert_int_equal(ops_conv2d_desc(&d, 3, 4, 32, 32, 3, 1, 1, 1), 0);
    assert_int_equal(d.oh, 32);
    assert_int_equal(ops_conv2d_desc(&d, 3, 4, 2, 2, 5, 1, 0, 1), -1);
    assert_int_equal(ops_conv2d_desc(&d, 3, 4, 7, 7, 3, 2, 1, 1), 0);
    assert_int_equal(d.oh, 4);
    assert_int_equal(d.groups, 1);
    assert_int_equal(ops_conv2d_desc_grouped(&d, 6, 4, 7, 7, 3, 1, 1, 1, 4), -1);   // 4 does not divide 6
    assert_int_equal(ops_conv2d_desc_grouped(&d, 8, 8, 7, 7, 3, 2, 1, 1, 8), 0);
    assert_int_equal(d.groups, 8);
}

int main(void) {
    O = ops_cpu();
    O->set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_3x3_same), cmocka_unit_test(test_conv_stride2),
        cmocka_unit_test(test_conv_dilation2), cmocka_unit_test(test_conv_1x1),
        cmocka_unit_test(test_conv_1x1_stride2), cmocka_unit_test(test_conv_accumulate_dx),
        cmocka_unit_test(test_conv_large_map), cmocka_unit_test(test_conv_direct_shapes),
        cmocka_unit_test(test_conv_direct_matches_im2col), cmocka_unit_test(test_conv_dnnl_shapes),
        cmocka_unit_test(test_conv_dnnl_matches_own_paths), cmocka_unit_test(test_conv_cut_desc),
        cmocka_unit_test(test_conv_cut_grad), cmocka_unit_test(test_conv_cut_matches_full),
        cmocka_unit_test(test_convt2x2),
        cmocka_unit_test(test_batchnorm), cmocka_unit_test(test_batchnorm_relu),
        cmocka_unit_test(test_batchnorm_sync_hook), cmocka_unit_test(test_batchnorm_eval),
        cmocka_unit_test(test_relu_add), cmocka_unit_test(test_maxpool), cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_bilinear), cmocka_unit_test(test_concat), cmocka_unit_test(test_linear),
        cmocka_unit_test(test_softmax_xent), cmocka_unit_test(test_conv_desc_rejects_empty_output),
        cmocka_unit_test(test_conv_depthwise), cmocka_unit_test(test_conv_grouped),
        cmocka_unit_test(test_batchnorm_relu6), cmocka_unit_test(test_relu6), cmocka_unit_test(test_channel_copy),
        cmocka_unit_test(test_channel_shuffle_and_swap), cmocka_unit_test(test_avgpool2x2),
        cmocka_unit_test(test_dropout),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    O->set_threads(1);
    return rc;
}
