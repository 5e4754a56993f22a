// tests/trainer/test_cuda_twins.c — every op of the CUDA table against its CPU twin (ops_cpu) on the
// same seeded inputs: outputs compared as |cuda - cpu| <= atol + rtol*|cpu| with a per-op tolerance
// table, the worst element printed for every output. Semantics are compared too, because both
// backends get the same pre-filled buffers: parameter gradients start at 0.5 (must accumulate),
// overwritten outputs start at 99 (must be overwritten), accumulate=1 inputs keep their contents.
// Without a GPU each twin still builds its inputs and runs the CPU side, then calls skip() with the
// reason (counted as skipped, not passed). What always runs: the comparator catches a perturbed
// element, and every case is run on the CPU with 1 and with 2 threads and compared with the same
// table (so the case plumbing - uploads, fills, downloads, NULL gradients - is exercised here).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/ops/ops.h"
#include "trainer/ops/ops_cuda.h"
#include "trainer/optim/optim.h"
#include "trainer/models/model.h"

// ----------------------------------------------------------------------------------------------
// tolerance table: |got - ref| <= atol + rtol * |ref|

typedef struct { const char *op; double atol, rtol; } Tol;
static const Tol TOLS[] = {
    {"conv", 1e-4, 1e-3},        // different summation orders over cin*k*k (and the batch for dw)
    {"convt", 1e-4, 1e-3},
    {"bn", 1e-4, 1e-3},          // statistics in double on both sides; float apply
    {"elementwise", 0, 0},       // exact
    {"maxpool", 0, 0},           // exact, same argmax rule
    {"avgpool", 1e-6, 1e-6},
    {"resize", 1e-6, 1e-5},      // backward: float atomics on the GPU
    {"concat", 0, 0},
    {"linear", 1e-5, 1e-4},
    {"xent", 1e-6, 1e-5},
    {"bf16", 3e-2, 3e-2},        // inputs rounded to 8 mantissa bits, fp32 accumulation
    {"fp16", 5e-3, 5e-3},        // inputs rounded to 11 mantissa bits
    {"move", 0, 0},              // channel copy / shuffle / swap: exact
    {"dropout", 1e-7, 1e-6},     // same mask (counter hash), one multiply
};

static Tol tol_of(const char *op) {
    for (size_t i = 0; i < sizeof TOLS / sizeof TOLS[0]; i++)
        if (strcmp(TOLS[i].op, op) == 0) return TOLS[i];
    fail_msg("no tolerance for op class '%s'", op);
    return TOLS[0];
}

static int quiet;   // the CPU self-check prints only mismatches

// Compares n values, printing the worst element (always, unless quiet); returns the number of violations.
static long twin_compare(const char *what, const float *got, const float *ref, size_t n, Tol t) {
    long bad = 0; double worst = -1, worst_err = 0; size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]), lim = t.atol + t.rtol * fabs((double)ref[i]);
        int ok = e <= lim || (isnan(got[i]) && isnan(ref[i]));
        if (!ok && bad < 3) printf("#   %s[%zu]: got %.9g want %.9g (|diff| %.3g > %.3g)\n", what, i, got[i], ref[i], e, lim);
        bad += !ok;
        double r = isnan(e) ? INFINITY : (lim > 0 ? e / lim : (e > 0 ? INFINITY : 0));
        if (r > worst) { worst = r; worst_err = e; at = i; }
    }
    if (n && (!quiet || bad)) printf("# %-34s worst |diff| %.3g at [%zu] (ref %.7g got %.7g; atol %g rtol %g)%s\n", what, worst_err, at,
                  ref[at], got[at], t.atol, t.rtol, bad ? " MISMATCH" : "");
    if (bad) printf("# %s: %ld of %zu elements out of tolerance\n", what, bad, n);
    return bad;
}

// ----------------------------------------------------------------------------------------------
// cases: arguments are host arrays built from a seed, put into each backend's memory

enum { IN, OUT, ACC, LAB };   // OUT starts at 99 (must be overwritten), ACC at its input values (accumulated)
typedef struct { const char *name; int kind; size_t n; float scale, shift; } Arg;

typedef struct Case Case;
typedef void (*RunFn)(const Ops *o, void **d, const Case *c, double *ret, long *cnt);
struct Case {
    const char *name, *tol;
    Arg a[12]; int na;
    int p[8];              // shape integers (meaning per run function)
    ConvDesc d;
    RunFn run;
    GpuPrecision prec;     // compute type on the CUDA side
    int has_ret;           // compare the returned loss and count too
};

#define MAXARG 12
typedef struct { float *v[MAXARG]; double ret; long cnt; } Result;

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t name_hash(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

// The input of argument k: uniform in [shift - scale, shift + scale), labels in [0, p[1]) with every
// 7th one the ignore label p[2] (when p[2] >= 0) and p[3] > 0 planting one bad label at p[3]-1.
static void *make_input(const Case *c, int k) {
    const Arg *a = &c->a[k];
    uint64_t seed = name_hash(c->name) * 31 + (uint64_t)k;
    if (a->kind == LAB) {
        int32_t *l = malloc(sizeof(int32_t) * a->n);
        for (size_t i = 0; i < a->n; i++) {
            l[i] = (int32_t)(mix(seed + i) % (uint64_t)c->p[1]);
            if (c->p[2] >= 0 && i % 7 == 3) l[i] = c->p[2];
        }
        if (c->p[3] > 0) l[c->p[3] - 1] = c->p[1] + 3;
        return l;
    }
    float *v = malloc(sizeof(float) * a->n);
    for (size_t i = 0; i < a->n; i++) {
        if (a->kind == OUT) { v[i] = 99.f; continue; }
        double u = (double)(mix(seed + i) >> 11) * 0x1p-53 * 2.0 - 1.0;
        v[i] = (float)(a->shift + a->scale * u);
    }
    return v;
}

static void run_case(const Ops *o, const Case *c, Result *r) {
    void *d[MAXARG] = {0};
    memset(r, 0, sizeof *r);
    for (int k = 0; k < c->na; k++) {
        size_t bytes = 4 * c->a[k].n;
        void *h = make_input(c, k);
        d[k] = o->alloc(bytes);
        assert_non_null(d[k]);
        o->upload(d[k], h, bytes);
        free(h);
    }
    c->run(o, d, c, &r->ret, &r->cnt);
    for (int k = 0; k < c->na; k++) {
        if (c->a[k].kind == OUT || c->a[k].kind == ACC) {
            r->v[k] = malloc(sizeof(float) * c->a[k].n);
            o->download(r->v[k], d[k], 4 * c->a[k].n);
        }
        o->free(d[k]);
    }
}

static void free_result(Result *r) { for (int k = 0; k < MAXARG; k++) free(r->v[k]); }

// Compares every output of two results; returns the number of violations.
static long compare_results(const Case *c, const Result *got, const Result *ref, const char *tolname) {
    Tol t = tol_of(tolname);
    long bad = 0;
    char what[96];
    for (int k = 0; k < c->na; k++) {
        if (!got->v[k]) continue;
        snprintf(what, sizeof what, "%s %s", c->name, c->a[k].name);
        bad += twin_compare(what, got->v[k], ref->v[k], c->a[k].n, t);
    }
    if (c->has_ret) {
        float g = (float)got->ret, f = (float)ref->ret;
        snprintf(what, sizeof what, "%s loss", c->name);
        bad += twin_compare(what, &g, &f, 1, t);
        if (got->cnt != ref->cnt) { printf("# %s counted: got %ld want %ld\n", c->name, got->cnt, ref->cnt); bad++; }
    }
    return bad;
}

// ----------------------------------------------------------------------------------------------
// run functions: d[] holds the arguments in the order of the case's Arg list

static int twice_hook(void *ctx, double *buf, size_t n) {   // a 2-rank world whose ranks hold the same batch
    (void)ctx;
    for (size_t i = 0; i < n; i++) buf[i] *= 2;
    return 0;
}

// conv: x, w, b|-, y, dy, dx, dw, db   p[0]=B p[1]=bias p[2]=accumulate dx
static void run_conv(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    int B = c->p[0], bias = c->p[1];
    size_t ws_n = o->conv2d_workspace(&c->d, B);
    float *ws = o->alloc(4 * (ws_n ? ws_n : 1));
    float *x = d[0], *w = d[1], *b = d[2], *y = d[3], *dy = d[4], *dx = d[5], *dw = d[6], *db = d[7];
    o->conv2d_forward(&c->d, B, y, x, w, bias ? b : NULL, ws);
    o->conv2d_backward(&c->d, B, dx, dw, bias ? db : NULL, dy, x, w, ws, c->p[2]);
    o->free(ws);
}

// convt: x, w, b, y, dy, dx, dw, db   p[0]=B p[1]=cin p[2]=cout p[3]=h p[4]=w
static void run_convt(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    int B = c->p[0], ci = c->p[1], co = c->p[2], h = c->p[3], w = c->p[4];
    size_t ws_n = o->convt2x2_workspace(ci, co, h, w);
    float *ws = o->alloc(4 * (ws_n ? ws_n : 1));
    o->convt2x2_forward(B, ci, co, h, w, d[3], d[0], d[1], d[2], ws);
    o->convt2x2_backward(B, ci, co, h, w, d[5], d[6], d[7], d[4], d[0], d[1], ws);
    o->free(ws);
}

// bn: x, gamma, beta, rmean, rvar, nbt, y, smean, sinvstd, dy, dx, dgamma|dbeta packed
//     p[0]=B p[1]=C p[2]=HW p[3]=training p[4]=relu p[5]=sync
static void run_bn(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    int B = c->p[0], C = c->p[1], HW = c->p[2];
    BnSync sync = {c->p[5] ? twice_hook : NULL, NULL};
    float *dg = d[11], *dbeta = (float *)d[11] + C;
    o->batchnorm_forward(B, C, HW, d[6], d[7], d[8], d[0], d[1], d[2], d[3], d[4], d[5], c->p[3], c->p[4], &sync);
    if (c->p[3])
        o->batchnorm_backward(B, C, HW, d[10], dg, dbeta, d[9], d[0], d[6], d[7], d[8], d[1], c->p[4], &sync);
}

// elementwise: x, a, b, y_relu, dx_relu, y_add, acc   p[0]=n
static void run_elementwise(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    size_t n = (size_t)c->p[0];
    o->relu_forward(n, d[3], d[0]);
    o->relu_backward(n, d[4], d[1], d[3]);
    o->add(n, d[5], d[1], d[2]);
    o->accumulate(n, d[6], d[2]);
}

// maxpool: x, y, dy, dx   p[0]=B p[1]=C p[2]=h p[3]=w
static void run_maxpool(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    o->maxpool2x2_forward(c->p[0], c->p[1], c->p[2], c->p[3], d[1], d[0]);
    o->maxpool2x2_backward(c->p[0], c->p[1], c->p[2], c->p[3], d[3], d[2], d[0]);
}

// avgpool: x, y, dy, dx   p[0]=B p[1]=C p[2]=HW
static void run_avgpool(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    o->avgpool_forward(c->p[0], c->p[1], c->p[2], d[1], d[0]);
    o->avgpool_backward(c->p[0], c->p[1], c->p[2], d[3], d[2]);
}

// resize: x, y, dy, dx   p[0]=B p[1]=C p[2]=h p[3]=w p[4]=oh p[5]=ow
static void run_resize(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    const int *p = c->p;
    o->upsample_bilinear_forward(p[0], p[1], p[2], p[3], p[4], p[5], d[1], d[0]);
    o->upsample_bilinear_backward(p[0], p[1], p[2], p[3], p[4], p[5], d[3], d[2]);
}

// concat: a, b, y, dy, da, db   p[0]=B p[1]=ca p[2]=cb p[3]=HW p[4]=skip da
static void run_concat(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    const int *p = c->p;
    o->concat_forward(p[0], p[1], p[2], p[3], d[2], d[0], d[1]);
    o->concat_backward(p[0], p[1], p[2], p[3], p[4] ? NULL : d[4], d[5], d[3]);
}

// linear: x, w, b, y, dy, dx, dw, db   p[0]=B p[1]=in p[2]=out p[3]=bias
static void run_linear(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    const int *p = c->p;
    o->linear_forward(p[0], p[1], p[2], d[3], d[0], d[1], p[3] ? d[2] : NULL);
    o->linear_backward(p[0], p[1], p[2], d[5], d[6], p[3] ? d[7] : NULL, d[4], d[0], d[1]);
}

// xent: logits, labels, dlogits   p[0]=B p[1]=C p[2]=ignore (-1: none) p[3]=bad label at p[3]-1 p[4]=HW
static void run_xent(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    *ret = o->softmax_xent(c->p[0], c->p[1], c->p[4], d[2], d[0], d[1], c->p[2] >= 0 ? c->p[2] : -12345, 2.f, cnt);
}

// relu6 + dropout: x, dy, relu6 y, relu6 dx, dropout y, dropout dx   p[0]=n
static void run_mobile_elementwise(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    size_t n = (size_t)c->p[0];
    o->relu6_forward(n, d[2], d[0]);
    o->relu6_backward(n, d[3], d[1], d[2]);
    o->dropout_forward(n, 0.25f, 77, d[4], d[0]);
    o->dropout_backward(n, 0.25f, 77, d[5], d[1]);
}

// channel moves: x (B,C,HW), slice (B,k,HW), acc (B,C,HW), shuffled, swapped   p: B C HW k off G
static void run_moves(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    const int *p = c->p;
    o->channel_copy(p[0], p[2], p[3], d[1], p[3], 0, d[0], p[1], p[4], 0);
    o->channel_copy(p[0], p[2], p[3], d[2], p[1], p[4], d[1], p[3], 0, 1);
    o->channel_shuffle(p[0], p[1], p[5], p[2], d[3], d[0]);
    o->swap_dims01(p[0], p[1], p[2], d[4], d[0]);
}

// avgpool 2x2: x, y, dy, dx   p[0]=B p[1]=C p[2]=h p[3]=w
static void run_avgpool2(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    o->avgpool2x2_forward(c->p[0], c->p[1], c->p[2], c->p[3], d[1], d[0]);
    o->avgpool2x2_backward(c->p[0], c->p[1], c->p[2], c->p[3], d[3], d[2]);
}

// batchnorm_apply: x, mean, invstd, gamma, beta, y   p[0]=B p[1]=C p[2]=HW p[3]=relu
static void run_bn_apply(const Ops *o, void **d, const Case *c, double *ret, long *cnt) {
    (void)ret; (void)cnt;
    o->batchnorm_apply(c->p[0], c->p[1], c->p[2], d[5], d[0], d[1], d[2], d[3], d[4], c->p[3]);
}

// ----------------------------------------------------------------------------------------------
// the case list

static Case conv_case_g(const char *name, const char *tol, int B, int cin, int cout, int h, int w, int k, int s, int pad,
                        int dil, int bias, int acc, GpuPrecision prec, int groups) {
    Case c = {.name = name, .tol = tol, .run = run_conv, .prec = prec, .p = {B, bias, acc}};
    assert_int_equal(ops_conv2d_desc_grouped(&c.d, cin, cout, h, w, k, s, pad, dil, groups), 0);
    size_t xn = (size_t)B * cin * h * w, yn = (size_t)B * cout * c.d.oh * c.d.ow, wn = (size_t)cout * (cin / groups) * k * k;
    Arg a[] = {{"x", IN, xn, 1, 0}, {"w", IN, wn, 0.3f, 0}, {"b", IN, cout, 0.5f, 0}, {"y", OUT, yn, 0, 0},
               {"dy", IN, yn, 1, 0}, {"dx", acc ? ACC : OUT, xn, 1, 0}, {"dw", ACC, wn, 0.5f, 0.5f},
               {"db", bias ? ACC : IN, cout, 0.5f, 0.5f}};
    memcpy(c.a, a, sizeof a); c.na = 8;
    return c;
}
static Case conv_case(const char *name, const char *tol, int B, int cin, int cout, int h, int w, int k, int s, int pad,
                      int dil, int bias, int acc, GpuPrecision prec) {
    return conv_case_g(name, tol, B, cin, cout, h, w, k, s, pad, dil, bias, acc, prec, 1);
}

static Case bn_case(const char *name, int B, int C, int HW, int training, int relu, int sync) {
    Case c = {.name = name, .tol = "bn", .run = run_bn, .p = {B, C, HW, training, relu, sync}};
    size_t n = (size_t)B * C * HW;
    int upd = training ? ACC : IN;   // eval neither updates running stats nor runs backward
    Arg a[] = {{"x", IN, n, 2, 0.7f}, {"gamma", IN, C, 0.5f, 1}, {"beta", IN, C, 0.5f, 0}, {"running_mean", upd, C, 0.2f, 0},
               {"running_var", upd, C, 0.3f, 1}, {"num_batches", upd, 1, 0, 3}, {"y", OUT, n, 0, 0},
               {"save_mean", OUT, C, 0, 0}, {"save_invstd", OUT, C, 0, 0}, {"dy", IN, n, 1, 0},
               {"dx", training ? OUT : IN, n, 0, 0}, {"dgamma|dbeta", upd, 2 * (size_t)C, 0.5f, 0.5f}};
    memcpy(c.a, a, sizeof a); c.na = 12;
    return c;
}

static Case *build_cases(int *count) {
    static Case cs[56];
    int n = 0;
    cs[n++] = conv_case("conv3x3 s1 p1 bias", "conv", 2, 3, 8, 9, 9, 3, 1, 1, 1, 1, 0, GPU_FP32);
    cs[n++] = conv_case("conv3x3 s2 p1 acc-dx", "conv", 3, 5, 6, 11, 10, 3, 2, 1, 1, 0, 1, GPU_FP32);
    cs[n++] = conv_case("conv1x1", "conv", 2, 16, 8, 6, 5, 1, 1, 0, 1, 0, 0, GPU_FP32);
    cs[n++] = conv_case("conv1x1 s2 (downsample)", "conv", 2, 8, 16, 8, 8, 1, 2, 0, 1, 0, 0, GPU_FP32);
    cs[n++] = conv_case("conv3x3 dil2 p2", "conv", 2, 4, 4, 12, 12, 3, 1, 2, 2, 1, 0, GPU_FP32);
    cs[n++] = conv_case("conv7x7 s2 p3 stem", "conv", 2, 3, 8, 16, 16, 7, 2, 3, 1, 0, 0, GPU_FP32);
    cs[n++] = conv_case("conv3x3 wide batch", "conv", 8, 32, 32, 8, 8, 3, 1, 1, 1, 0, 0, GPU_FP32);
    // dilated past the map (ASPP rate 12 on 8x8; rows only): ops_cpu cuts the kernel to the taps that
    // read the image (conv_cut.h), cuDNN computes it whole: the same numbers
    cs[n++] = conv_case("conv3x3 dil12 8x8 (cut 1x1)", "conv", 2, 64, 16, 8, 8, 3, 1, 12, 12, 1, 0, GPU_FP32);
    cs[n++] = conv_case("conv3x3 dil6 4x12 (cut 1x3)", "conv", 2, 8, 8, 4, 12, 3, 1, 6, 6, 0, 1, GPU_FP32);
    for (int prec = 0; prec < 2; prec++) {
        int B = 2, ci = 6, co = 4, h = 5, w = 7;
        size_t xn = (size_t)B * ci * h * w, yn = (size_t)B * co * 4 * h * w, wn = (size_t)ci * co * 4;
        Case c = {.name = prec ? "convt2x2 bf16" : "convt2x2", .tol = prec ? "bf16" : "convt", .run = run_convt,
                  .prec = prec ? GPU_BF16 : GPU_FP32, .p = {B, ci, co, h, w}};
        Arg a[] = {{"x", IN, xn, 1, 0}, {"w", IN, wn, 0.4f, 0}, {"b", IN, co, 0.5f, 0}, {"y", OUT, yn, 0, 0},
                   {"dy", IN, yn, 1, 0}, {"dx", OUT, xn, 0, 0}, {"dw", ACC, wn, 0.5f, 0.5f}, {"db", ACC, co, 0.5f, 0.5f}};
        memcpy(c.a, a, sizeof a); c.na = 8;
        cs[n++] = c;
    }
    cs[n++] = bn_case("batchnorm train", 4, 6, 25, 1, 0, 0);
    cs[n++] = bn_case("batchnorm train relu", 3, 5, 49, 1, 1, 0);
    cs[n++] = bn_case("batchnorm train 1x1 (HW=1)", 8, 7, 1, 1, 1, 0);
    cs[n++] = bn_case("batchnorm eval", 2, 6, 16, 0, 1, 0);
    cs[n++] = bn_case("batchnorm sync hook", 3, 4, 20, 1, 1, 1);
    cs[n++] = bn_case("batchnorm 64x64 (split reduction)", 4, 3, 4096, 1, 1, 1);
    {
        int N = 100003;
        Case c = {.name = "relu/add/accumulate", .tol = "elementwise", .run = run_elementwise, .p = {N}};
        Arg a[] = {{"x", IN, N, 1, 0}, {"a", IN, N, 1, 0}, {"b", IN, N, 1, 0}, {"relu y", OUT, N, 0, 0},
                   {"relu dx", OUT, N, 0, 0}, {"add y", OUT, N, 0, 0}, {"accumulate y", ACC, N, 1, 0}};
        memcpy(c.a, a, sizeof a); c.na = 7;
        cs[n++] = c;
    }
    {
        int B = 2, C = 3, h = 7, w = 9;   // odd sizes: the last row/column is dropped (floor)
        size_t xn = (size_t)B * C * h * w, yn = (size_t)B * C * (h / 2) * (w / 2);
        Case c = {.name = "maxpool2x2 odd", .tol = "maxpool", .run = run_maxpool, .p = {B, C, h, w}};
        Arg a[] = {{"x", IN, xn, 1, 0}, {"y", OUT, yn, 0, 0}, {"dy", IN, yn, 1, 0}, {"dx", OUT, xn, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 4;
        cs[n++] = c;
    }
    {
        int B = 3, C = 5, HW = 16;
        Case c = {.name = "avgpool", .tol = "avgpool", .run = run_avgpool, .p = {B, C, HW}};
        Arg a[] = {{"x", IN, (size_t)B * C * HW, 1, 0}, {"y", OUT, (size_t)B * C, 0, 0}, {"dy", IN, (size_t)B * C, 1, 0},
                   {"dx", OUT, (size_t)B * C * HW, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 4;
        cs[n++] = c;
    }
    const int rs[2][6] = {{2, 3, 5, 7, 13, 11}, {2, 2, 8, 8, 3, 5}};
    const char *rnames[2] = {"bilinear up 5x7->13x11", "bilinear down 8x8->3x5"};
    for (int i = 0; i < 2; i++) {
        const int *p = rs[i];
        size_t xn = (size_t)p[0] * p[1] * p[2] * p[3], yn = (size_t)p[0] * p[1] * p[4] * p[5];
        Case c = {.name = rnames[i], .tol = "resize", .run = run_resize, .p = {p[0], p[1], p[2], p[3], p[4], p[5]}};
        Arg a[] = {{"x", IN, xn, 1, 0}, {"y", OUT, yn, 0, 0}, {"dy", IN, yn, 1, 0}, {"dx", OUT, xn, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 4;
        cs[n++] = c;
    }
    for (int skip_da = 0; skip_da < 2; skip_da++) {
        int B = 3, ca = 4, cb = 2, HW = 10;
        size_t an = (size_t)B * ca * HW, bn = (size_t)B * cb * HW, yn = an + bn;
        Case c = {.name = skip_da ? "concat (da NULL)" : "concat", .tol = "concat", .run = run_concat, .p = {B, ca, cb, HW, skip_da}};
        Arg a[] = {{"a", IN, an, 1, 0}, {"b", IN, bn, 1, 0}, {"y", OUT, yn, 0, 0}, {"dy", IN, yn, 1, 0},
                   {"da", skip_da ? IN : OUT, an, 0, 0}, {"db", OUT, bn, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 6;
        cs[n++] = c;
    }
    for (int prec = 0; prec < 3; prec++)
        for (int bias = 0; bias < 2; bias++) {
            if (prec && !bias) continue;
            int B = 5, in = 37, out = 10;
            static const char *names[3][2] = {{"linear", "linear bias"}, {"", "linear bias bf16"}, {"", "linear bias fp16"}};
            Case c = {.name = names[prec][bias], .tol = prec == 1 ? "bf16" : prec == 2 ? "fp16" : "linear",
                      .run = run_linear, .prec = (GpuPrecision)prec, .p = {B, in, out, bias}};
            Arg a[] = {{"x", IN, (size_t)B * in, 1, 0}, {"w", IN, (size_t)out * in, 0.3f, 0}, {"b", IN, out, 0.5f, 0},
                       {"y", OUT, (size_t)B * out, 0, 0}, {"dy", IN, (size_t)B * out, 1, 0}, {"dx", OUT, (size_t)B * in, 0, 0},
                       {"dw", ACC, (size_t)out * in, 0.5f, 0.5f}, {"db", bias ? ACC : IN, out, 0.5f, 0.5f}};
            memcpy(c.a, a, sizeof a); c.na = 8;
            cs[n++] = c;
        }
    // softmax cross-entropy: classification, segmentation with ignored pixels, a bad label
    const int xs[3][5] = {{16, 10, -1, 0, 1}, {2, 5, 255, 0, 300}, {4, 3, 255, 6, 9}};
    const char *xnames[3] = {"xent classification", "xent segmentation ignore", "xent bad label"};
    for (int i = 0; i < 3; i++) {
        const int *p = xs[i];
        size_t ln = (size_t)p[0] * p[1] * p[4], pn = (size_t)p[0] * p[4];
        Case c = {.name = xnames[i], .tol = "xent", .run = run_xent, .has_ret = 1, .p = {p[0], p[1], p[2], p[3], p[4]}};
        Arg a[] = {{"logits", IN, ln, 4, 0}, {"labels", LAB, pn, 0, 0}, {"dlogits", i == 2 ? IN : OUT, ln, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 3;
        cs[n++] = c;
    }
    // reduced precision convolutions (CUDA side only; the CPU twin stays fp32)
    cs[n++] = conv_case("conv3x3 bf16", "bf16", 2, 8, 8, 8, 8, 3, 1, 1, 1, 1, 0, GPU_BF16);
    cs[n++] = conv_case("conv3x3 fp16", "fp16", 2, 8, 8, 8, 8, 3, 1, 1, 1, 1, 0, GPU_FP16);
    // the mobile and dense nets' ops: cuDNN grouped convolution and own kernels against cpu_mobile.c
    cs[n++] = conv_case_g("depthwise3x3 s1 bias", "conv", 2, 16, 16, 9, 9, 3, 1, 1, 1, 1, 0, GPU_FP32, 16);
    cs[n++] = conv_case_g("depthwise3x3 s2 acc-dx", "conv", 3, 8, 8, 10, 11, 3, 2, 1, 1, 0, 1, GPU_FP32, 8);
    cs[n++] = conv_case_g("depthwise3x3 dil2", "conv", 2, 6, 6, 12, 12, 3, 1, 2, 2, 0, 0, GPU_FP32, 6);
    cs[n++] = conv_case_g("grouped3x3 g2", "conv", 2, 8, 6, 7, 7, 3, 1, 1, 1, 1, 0, GPU_FP32, 2);
    cs[n++] = bn_case("batchnorm train relu6", 3, 5, 49, 1, 2, 0);
    cs[n++] = bn_case("batchnorm eval relu6", 2, 6, 16, 0, 2, 0);
    {
        int N = 50021;
        Case c = {.name = "relu6/dropout", .tol = "dropout", .run = run_mobile_elementwise, .p = {N}};
        Arg a[] = {{"x", IN, N, 8, 2}, {"dy", IN, N, 1, 0}, {"relu6 y", OUT, N, 0, 0}, {"relu6 dx", OUT, N, 0, 0},
                   {"dropout y", OUT, N, 0, 0}, {"dropout dx", OUT, N, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 6;
        cs[n++] = c;
    }
    {
        int B = 3, C = 12, HW = 10, k = 5, off = 4, G = 3;
        size_t xn = (size_t)B * C * HW, sn = (size_t)B * k * HW;
        Case c = {.name = "channel copy/shuffle/swap", .tol = "move", .run = run_moves, .p = {B, C, HW, k, off, G}};
        Arg a[] = {{"x", IN, xn, 1, 0}, {"slice", OUT, sn, 0, 0}, {"accumulated", ACC, xn, 1, 0}, {"shuffled", OUT, xn, 0, 0},
                   {"swapped", OUT, xn, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 5;
        cs[n++] = c;
    }
    {
        int B = 2, C = 3, h = 7, w = 9;
        size_t xn = (size_t)B * C * h * w, yn = (size_t)B * C * (h / 2) * (w / 2);
        Case c = {.name = "avgpool2x2 odd", .tol = "avgpool", .run = run_avgpool2, .p = {B, C, h, w}};
        Arg a[] = {{"x", IN, xn, 1, 0}, {"y", OUT, yn, 0, 0}, {"dy", IN, yn, 1, 0}, {"dx", OUT, xn, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 4;
        cs[n++] = c;
    }
    {
        int B = 2, C = 5, HW = 30;
        size_t xn = (size_t)B * C * HW;
        Case c = {.name = "batchnorm apply relu6", .tol = "bn", .run = run_bn_apply, .p = {B, C, HW, 2}};
        Arg a[] = {{"x", IN, xn, 3, 0}, {"mean", IN, C, 0.5f, 0}, {"invstd", IN, C, 0.5f, 2}, {"gamma", IN, C, 0.5f, 2},
                   {"beta", IN, C, 1, 1}, {"y", OUT, xn, 0, 0}};
        memcpy(c.a, a, sizeof a); c.na = 6;
        cs[n++] = c;
    }
    *count = n;
    return cs;
}

// ----------------------------------------------------------------------------------------------
// the tests

static char no_gpu[512];
static const Ops *gpu;

static void test_comparator_catches_a_mismatch(void **state) {
    (void)state;
    float ref[5] = {1, -2, 3, 1e-7f, 0}, got[5];
    memcpy(got, ref, sizeof got);
    Tol t = {"t", 1e-5, 1e-3};
    assert_int_equal(twin_compare("identical", got, ref, 5, t), 0);
    got[2] = 3.002f;   // 2e-3 > 1e-5 + 3e-3? no: within rtol
    assert_int_equal(twin_compare("within rtol", got, ref, 5, t), 0);
    got[2] = 3.01f;
    assert_int_equal(twin_compare("beyond rtol", got, ref, 5, t), 1);
    got[2] = 3; got[4] = NAN;
    assert_int_equal(twin_compare("nan", got, ref, 5, t), 1);
    got[4] = 0; got[3] = 2e-5f;
    assert_int_equal(twin_compare("beyond atol", got, ref, 5, t), 1);
    Tol exact = tol_of("elementwise");
    got[3] = 1e-7f; got[0] = nextafterf(1.f, 2.f);
    assert_int_equal(twin_compare("exact", got, ref, 5, exact), 1);
}

// Every case on the CPU with 1 and 2 threads: the plumbing of the harness (fills, NULL gradients,
// accumulation) runs here, and the CPU twin's results do not depend on its thread count.
static void test_cases_on_cpu_thread_counts(void **state) {
    (void)state;
    int n;
    Case *cs = build_cases(&n);
    const Ops *cpu = ops_cpu();
    long bad = 0;
    quiet = 1;
    for (int i = 0; i < n; i++) {
        Result a, b;
        cpu->set_threads(1);
        run_case(cpu, &cs[i], &a);
        cpu->set_threads(2);
        run_case(cpu, &cs[i], &b);
        bad += compare_results(&cs[i], &b, &a, cs[i].tol);
        // outputs were overwritten and are finite; accumulated ones changed
        for (int k = 0; k < cs[i].na; k++) {
            if (!a.v[k]) continue;
            float *init = make_input(&cs[i], k);
            size_t same = 0;
            for (size_t e = 0; e < cs[i].a[k].n; e++) {
                if (cs[i].a[k].kind == OUT && a.v[k][e] == 99.f) { printf("# %s %s[%zu] not written\n", cs[i].name, cs[i].a[k].name, e); bad++; break; }
                if (!isfinite(a.v[k][e]) && !(cs[i].has_ret && isnan(a.ret))) { printf("# %s %s[%zu] not finite\n", cs[i].name, cs[i].a[k].name, e); bad++; break; }
                same += a.v[k][e] == init[e];
            }
            if (cs[i].a[k].kind == ACC && cs[i].a[k].n > 1 && same == cs[i].a[k].n) {
                printf("# %s %s: accumulated gradient unchanged\n", cs[i].name, cs[i].a[k].name); bad++;
            }
            free(init);
        }
        if (cs[i].has_ret && cs[i].p[3] > 0) {   // the bad-label case: NAN and the index
            if (!isnan(a.ret) || a.cnt != -cs[i].p[3]) { printf("# %s: want NAN and counted %d\n", cs[i].name, -cs[i].p[3]); bad++; }
        }
        free_result(&a); free_result(&b);
    }
    cpu->set_threads(1);
    quiet = 0;
    printf("# %d cases, CPU with 1 and 2 threads: %ld problems\n", n, bad);
    assert_int_equal(bad, 0);
}

static void test_twin(void **state) {
    const Case *c = *state;
    Result ref, got;
    run_case(ops_cpu(), c, &ref);   // the CPU side runs everywhere
    if (!gpu) {
        free_result(&ref);
        printf("# %s: no GPU: %s\n", c->name, no_gpu);
        skip();
    }
    char err[256];
    assert_int_equal(ops_cuda_set_precision(c->prec, err, sizeof err), 0);
    run_case(gpu, c, &got);
    ops_cuda_set_precision(GPU_FP32, err, sizeof err);
    const char *e = ops_cuda_error();
    if (e) fail_msg("CUDA backend failed: %s", e);
    long bad = compare_results(c, &got, &ref, c->tol);
    free_result(&ref); free_result(&got);
    assert_int_equal(bad, 0);
}

// Every optimizer kind, 3 steps with momentum and weight decay: optim_step (CPU) vs ops_cuda_optim_step.
static void test_optim_twins(void **state) {
    (void)state;
    enum { N = 4099, STEPS = 3 };
    const OptKind kinds[] = {OPT_SGD, OPT_SGD_NESTEROV, OPT_SGDW, OPT_ADAM, OPT_ADAMW, OPT_ADAGRAD, OPT_ADADELTA};
    float *p0 = malloc(sizeof(float) * N), *g = malloc(sizeof(float) * N * STEPS);
    for (int i = 0; i < N; i++) p0[i] = (float)((double)(mix(7 + i) >> 11) * 0x1p-53 - 0.5);
    for (int i = 0; i < N * STEPS; i++) g[i] = (float)((double)(mix(99 + i) >> 11) * 0x1p-53 - 0.5);
    long bad = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char err[128];
        Optimizer *cpu_o, *gpu_o;
        assert_int_equal(optim_create(kinds[k], N, 0.9f, 0.01f, &cpu_o, err, sizeof err), 0);
        float *pc = malloc(sizeof(float) * N);
        memcpy(pc, p0, sizeof(float) * N);
        for (int s = 0; s < STEPS; s++) optim_step(cpu_o, pc, g + (size_t)s * N, 0.05f);
        if (gpu) {
            assert_int_equal(optim_create(kinds[k], N, 0.9f, 0.01f, &gpu_o, err, sizeof err), 0);
            float *dp = gpu->alloc(sizeof(float) * N), *dg = gpu->alloc(sizeof(float) * N * STEPS);
            float *dstate = gpu->alloc(sizeof(float) * N * gpu_o->nslots), *pg = malloc(sizeof(float) * N);
            gpu->upload(dp, p0, sizeof(float) * N);
            gpu->upload(dg, g, sizeof(float) * N * STEPS);
            for (int s = 0; s < STEPS; s++) ops_cuda_optim_step(gpu_o, dstate, dp, dg + (size_t)s * N, 0.05f);
            gpu->download(pg, dp, sizeof(float) * N);
            char what[64];
            snprintf(what, sizeof what, "optimizer %s params", optim_name(kinds[k]));
            bad += twin_compare(what, pg, pc, N, (Tol){"optim", 1e-6, 1e-5});
            bad += gpu_o->steps != cpu_o->steps;
            gpu->free(dp); gpu->free(dg); gpu->free(dstate);
            optim_free(gpu_o); free(pg);
        }
        optim_free(cpu_o); free(pc);
    }
    free(p0); free(g);
    if (!gpu) { printf("# no GPU: %s\n", no_gpu); skip(); }
    assert_null(ops_cuda_error());
    assert_int_equal(bad, 0);
}

// The arena: allocations are zero-filled, a chunk whose allocations are all freed is reused.
static void test_arena(void **state) {
    (void)state;
    if (!gpu) { printf("# no GPU: %s\n", no_gpu); skip(); }
    OpsCudaStats st0, st1;
    float ones[300];
    for (int i = 0; i < 300; i++) ones[i] = 1.f;
    float *a = gpu->alloc(sizeof ones), *b = gpu->alloc(8);
    assert_non_null(a); assert_non_null(b);
    assert_true((uintptr_t)a % 256 == 0 && (uintptr_t)b % 256 == 0);
    gpu->upload(a, ones, sizeof ones);
    ops_cuda_stats(&st0);
    gpu->free(a); gpu->free(b);
    float *c = gpu->alloc(sizeof ones), got[300];
    ops_cuda_stats(&st1);
    assert_true(st1.arena_bytes == st0.arena_bytes);   // no new chunk
    assert_ptr_equal(c, a);   // every earlier test freed what it allocated: the first chunk was rewound
    gpu->download(got, c, sizeof got);
    for (int i = 0; i < 300; i++) assert_true(got[i] == 0.f);
    gpu->free(c);
    void *big = gpu->alloc((size_t)200 << 20);         // larger than a chunk: its own chunk
    assert_non_null(big);
    gpu->free(big);
    assert_null(ops_cuda_error());
}

// Whole models: the same initial weights on both backends, K SGD steps (momentum 0.9) on the same
// batches; the losses of every step and the final parameters are compared. Without a GPU the CPU run
// still happens (so the test's wiring is exercised) and the test skips.
typedef struct { const char *name; ModelConfig cfg; int steps; double atol, rtol; } ModelTwin;

static int model_steps(const ModelTwin *t, const Ops *o, float *losses, float **params_out, char *err, size_t n) {
    Model *m;
    if (model_create_on(&t->cfg, o, &m, err, n)) return -1;
    model_init(m, 42);
    size_t np = model_num_params(m);
    Optimizer *opt;
    if (optim_create(OPT_SGD, np, 0.9f, 0.f, &opt, err, n)) { model_free(m); return -1; }
    float *state = o == ops_cpu() ? NULL : o->alloc(sizeof(float) * np);
    int B = t->cfg.max_batch, seg = model_is_segmentation(m);
    size_t xn = (size_t)B * t->cfg.in_channels * t->cfg.height * t->cfg.width;
    size_t ln = (size_t)B * (seg ? (size_t)t->cfg.height * t->cfg.width : 1);
    float *x = malloc(sizeof(float) * xn);
    int32_t *lab = malloc(sizeof(int32_t) * ln);
    for (int s = 0; s < t->steps; s++) {
        // the same batch every step: the loss falls smoothly, so small backend differences stay small
        for (size_t i = 0; i < xn; i++) x[i] = (float)((double)(mix(1000 + i) >> 11) * 0x1p-53 * 2 - 1);
        for (size_t i = 0; i < ln; i++) lab[i] = (int32_t)(mix(777 + i) % (uint64_t)t->cfg.classes);
        model_zero_grad(m);
        if (!model_forward(m, x, B, 1)) { snprintf(err, n, "forward failed"); break; }
        losses[s] = model_loss(m, lab, 1.f, NULL);
        model_backward(m);
        if (state) ops_cuda_optim_step(opt, state, model_params(m), model_grads(m), 0.01f);
        else optim_step(opt, model_params(m), model_grads(m), 0.01f);
    }
    *params_out = malloc(sizeof(float) * np);
    o->download(*params_out, model_params(m), sizeof(float) * np);
    if (state) o->free(state);
    free(x); free(lab); optim_free(opt); model_free(m);
    return (int)np;
}

static void test_model_twin(void **state) {
    const ModelTwin *t = *state;
    float lc[8], lg[8], *pc = NULL, *pg = NULL;
    char err[256];
    int np = model_steps(t, ops_cpu(), lc, &pc, err, sizeof err);
    if (np < 0) fail_msg("%s on the CPU: %s", t->name, err);
    printf("# %s: CPU losses %.5f .. %.5f over %d steps\n", t->name, lc[0], lc[t->steps - 1], t->steps);
    assert_true(isfinite(lc[t->steps - 1]) && lc[t->steps - 1] < lc[0]);   // it trains
    if (!gpu) { free(pc); printf("# %s: no GPU: %s\n", t->name, no_gpu); skip(); }
    int ng = model_steps(t, gpu, lg, &pg, err, sizeof err);
    if (ng < 0) fail_msg("%s on the GPU: %s", t->name, err);
    if (ops_cuda_error()) fail_msg("CUDA backend failed: %s", ops_cuda_error());
    assert_int_equal(ng, np);
    char what[96];
    Tol tol = {"model", t->atol, t->rtol};
    long bad = 0;
    snprintf(what, sizeof what, "%s losses", t->name);
    bad += twin_compare(what, lg, lc, (size_t)t->steps, tol);
    snprintf(what, sizeof what, "%s params after %d steps", t->name, t->steps);
    bad += twin_compare(what, pg, pc, (size_t)np, tol);
    free(pc); free(pg);
    assert_int_equal(bad, 0);
}

static ModelTwin MODEL_TWINS[] = {
    {"model cnn 28x28", {.name = "cnn", .in_channels = 1, .classes = 10, .height = 28, .width = 28, .batch_norm = 1, .max_batch = 8}, 4, 1e-4, 1e-3},
    {"model resnet18 32x32", {.name = "resnet18", .in_channels = 3, .classes = 10, .height = 32, .width = 32, .batch_norm = 1, .max_batch = 4}, 3, 1e-4, 2e-3},
    {"model unet w8 32x32", {.name = "unet", .in_channels = 1, .classes = 4, .height = 32, .width = 32, .base_width = 8, .batch_norm = 1, .max_batch = 2}, 3, 1e-4, 2e-3},
    // the five-CNN comparison's models (grouped convolution, ReLU6, channel moves, DenseNet's channel-major blocks)
    {"model mobilenet_v2 32x32", {.name = "mobilenet_v2", .in_channels = 3, .classes = 10, .height = 32, .width = 32, .batch_norm = 1, .max_batch = 2}, 3, 1e-4, 2e-3},
    {"model shufflenet_v2 32x32", {.name = "shufflenet_v2", .in_channels = 3, .classes = 10, .height = 32, .width = 32, .batch_norm = 1, .max_batch = 2}, 3, 1e-4, 2e-3},
    {"model densenet121 32x32", {.name = "densenet121", .in_channels = 3, .classes = 10, .height = 32, .width = 32, .batch_norm = 1, .max_batch = 2}, 3, 1e-4, 2e-3},
};

static void test_model_null_ops(void **state) {
    (void)state;
    ModelConfig cfg = MODEL_TWINS[0].cfg;
    Model *m = (Model *)1;
    char err[256];
    assert_int_equal(model_create_on(&cfg, NULL, &m, err, sizeof err), -1);   // ops_cuda() before ops_cuda_init
    assert_null(m);
    assert_non_null(strstr(err, "no op table"));
}

static void test_unscale_check(void **state) {
    (void)state;
    if (!gpu) { printf("# no GPU: %s\n", no_gpu); skip(); }
    float h[1000];
    for (int i = 0; i < 1000; i++) h[i] = (float)i;
    float *d = gpu->alloc(sizeof h);
    gpu->upload(d, h, sizeof h);
    assert_int_equal(ops_cuda_unscale_check(d, 1000, 0.5f), 0);
    gpu->download(h, d, sizeof h);
    for (int i = 0; i < 1000; i++) assert_true(h[i] == 0.5f * i);
    h[777] = INFINITY;
    gpu->upload(d, h, sizeof h);
    assert_int_equal(ops_cuda_unscale_check(d, 1000, 0.5f), 1);
    h[777] = NAN;
    gpu->upload(d, h, sizeof h);
    assert_int_equal(ops_cuda_unscale_check(d, 1000, 1.f), 1);
    gpu->free(d);
}

static int setup(void **state) {
    (void)state;
    char err[512];
    if (ops_cuda_init(0, err, sizeof err) == 0) gpu = ops_cuda();
    else snprintf(no_gpu, sizeof no_gpu, "%s", err);
    return 0;
}
static int teardown(void **state) { (void)state; ops_cuda_shutdown(); return 0; }

int main(void) {
    int n;
    Case *cs = build_cases(&n);
    struct CMUnitTest tests[96];
    int k = 0;
    tests[k++] = (struct CMUnitTest){"comparator catches a mismatch", test_comparator_catches_a_mismatch, NULL, NULL, NULL};
    tests[k++] = (struct CMUnitTest){"every case on the CPU, 1 vs 2 threads", test_cases_on_cpu_thread_counts, NULL, NULL, NULL};
    for (int i = 0; i < n && k < 88; i++) {
        static char names[88][96];
        snprintf(names[i], sizeof names[i], "twin %s", cs[i].name);
        tests[k++] = (struct CMUnitTest){names[i], test_twin, NULL, NULL, &cs[i]};
    }
    tests[k++] = (struct CMUnitTest){"twin optimizers (all kinds, 3 steps)", test_optim_twins, NULL, NULL, NULL};
    for (size_t i = 0; i < sizeof MODEL_TWINS / sizeof MODEL_TWINS[0]; i++)
        tests[k++] = (struct CMUnitTest){MODEL_TWINS[i].name, test_model_twin, NULL, NULL, &MODEL_TWINS[i]};
    tests[k++] = (struct CMUnitTest){"model_create_on refuses a NULL op table", test_model_null_ops, NULL, NULL, NULL};
    tests[k++] = (struct CMUnitTest){"fp16 unscale and inf/nan check", test_unscale_check, NULL, NULL, NULL};
    tests[k++] = (struct CMUnitTest){"device arena: zero fill and reuse", test_arena, NULL, NULL, NULL};
    return _cmocka_run_group_tests("cuda_twins", tests, (size_t)k, setup, teardown);
}
