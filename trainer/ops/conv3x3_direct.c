// trainer/ops/conv3x3_direct.c — direct 3x3 / stride 1 / pad 1 convolution for AVX-512 CPUs, used by
// ops_cpu.c for the forward pass and for the input gradient (a 3x3 conv of dy with the flipped,
// transposed filter). Why: at 16-64 channels and large maps (UNet's top levels) im2col + sgemm spends
// most of its time copying (im2col, OpenBLAS packing, col2im), not multiplying. Here the padded input is
// read straight into registers: 8 output channels x 16 or 32 pixels of one row accumulate over
// (input channel, tap). Selected at run time (cpuid); other shapes and CPUs take the im2col path.
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/ops/conv3x3_direct.h"
// defines: conv3x3_direct_enable, conv3x3_direct_ok, conv3x3_direct_workspace, conv3x3_direct_forward, conv3x3_direct_backward_data

#define CB 8                       // output channels per register block
#define PAD_MAX_FLOATS (4u << 20)  // cap on the padded-input chunk (16 MiB)
#define AROW(w) ((long)(w) + 32)                      // aligned padded row: data at column 16
#define APLANE(h, w) ((long)((h) + 2) * AROW(w))

static int enabled = -1;   // -1: not decided yet (cpuid and SEGX_CONV_DIRECT=0 to switch off)

void conv3x3_direct_enable(int on) {
    __builtin_cpu_init();
    enabled = on && __builtin_cpu_supports("avx512f");
}

int conv3x3_direct_ok(const ConvDesc *d) {
    if (enabled < 0) { const char *e = getenv("SEGX_CONV_DIRECT"); conv3x3_direct_enable(!(e && strcmp(e, "0") == 0)); }
    return enabled && d->groups <= 1 && d->kh == 3 && d->kw == 3 && d->stride == 1 && d->pad == 1 && d->dil == 1 &&
           d->w % 16 == 0 && d->w >= 16;
}

static long plane(int h, int w) { return (long)(h + 2) * (w + 2); }
static int round8(int c) { return (c + CB - 1) / CB * CB; }

static int chunk(int C, int h, int w, int B) {
    long nb = PAD_MAX_FLOATS / ((long)C * plane(h, w));
    if (nb < 1) nb = 1;
    return nb > B ? B : (int)nb;
}

size_t conv3x3_direct_workspace(const ConvDesc *d, int max_batch) {
    int cmax = d->cin > d->cout ? d->cin : d->cout;
    size_t wt = (size_t)9 * round8(d->cin) * round8(d->cout);
    size_t padded = (size_t)chunk(cmax, d->h, d->w, max_batch) * cmax * plane(d->h, d->w);
    size_t aligned = (size_t)d->cin * APLANE(d->h, d->w);   // the weight gradient's layout, >= 1 sample
    return wt + (padded > aligned ? padded : aligned) + 16;
}

// ----------------------------------------------------------------------------------------------
// padding: xp (nb, C, h+2, w+2) with a zero border

typedef struct { int C, h, w; const float *x; float *xp; } PadCtx;
static void pad_planes(void *v, long p0, long p1) {
    PadCtx *c = v; int W2 = c->w + 2;
    for (long p = p0; p < p1; p++) {
        const float *s = c->x + p * c->h * c->w;
        float *o = c->xp + p * plane(c->h, c->w);
        memset(o, 0, sizeof(float) * W2);
        for (int y = 0; y < c->h; y++) {
            float *r = o + (long)(y + 1) * W2;
            r[0] = 0.f; memcpy(r + 1, s + (long)y * c->w, sizeof(float) * c->w); r[c->w + 1] = 0.f;
        }
        memset(o + (long)(c->h + 1) * W2, 0, sizeof(float) * W2);
    }
}

// ----------------------------------------------------------------------------------------------
// the kernel: out (nb, Co, h, w) (+)= sum over ci, taps of wt[ci][tap][co] * xp[ci][y+ky][x+kx]

typedef struct {
    int Ci, Co, Co8, h, w, accumulate;
    const float *xp, *wt, *bias;
    float *out;
} KCtx;

#define DEFINE_ROWS(NAME, XB)                                                                           \
__attribute__((target("avx512f"))) static void NAME(void *v, long t0, long t1) {                        \
    const KCtx *k = v;                                                                                  \
    int ncb = k->Co8 / CB, W2 = k->w + 2, nxb = k->w / (16 * XB);                                       \
    long P = plane(k->h, k->w), HW = (long)k->h * k->w;                                                 \
    for (long t = t0; t < t1; t++) {                                                                    \
        int y = (int)(t % k->h), cb = (int)(t / k->h % ncb), n = (int)(t / ((long)k->h * ncb));         \
        const float *xs = k->xp + (long)n * k->Ci * P;                                                  \
        int co0 = cb * CB;                                                                              \
        for (int xb = 0; xb < nxb; xb++) {                                                              \
            int x0 = xb * 16 * XB;                                                                      \
            __m512 acc[CB][XB];                                                                         \
            for (int c = 0; c < CB; c++)                                                                \
                for (int b = 0; b < XB; b++) {                                                          \
                    int co = co0 + c;                                                                   \
                    float *o = k->out + ((long)n * k->Co + co) * HW + (long)y * k->w + x0 + 16 * b;     \
                    if (co >= k->Co) acc[c][b] = _mm512_setzero_ps();                                   \
                    else if (k->accumulate) acc[c][b] = _mm512_loadu_ps(o);                             \
                    else acc[c][b] = _mm512_set1_ps(k->bias ? k->bias[co] : 0.f);                       \
                }                                                                                       \
            for (int ci = 0; ci < k->Ci; ci++) {                                                        \
                const float *xr = xs + (long)ci * P + (long)y * W2 + x0;                                \
                const float *wr = k->wt + (long)ci * 9 * k->Co8 + co0;                                  \
                for (int ky = 0; ky < 3; ky++)                                                          \
                    for (int kx = 0; kx < 3; kx++) {                                                    \
                        __m512 xv[XB];                                                                  \
                        for (int b = 0; b < XB; b++) xv[b] = _mm512_loadu_ps(xr + ky * W2 + kx + 16 * b); \
                        const float *wk = wr + (ky * 3 + kx) * k->Co8;                                  \
                        for (int c = 0; c < CB; c++) {                                                  \
                            __m512 wv = _mm512_set1_ps(wk[c]);                                          \
                            for (int b = 0; b < XB; b++) acc[c][b] = _mm512_fmadd_ps(wv, xv[b], acc[c][b]); \
                        }                                                                               \
                    }                                                                                   \
            }                                                                                           \
            for (int c = 0; c < CB && co0 + c < k->Co; c++)                                             \
                for (int b = 0; b < XB; b++)                                                            \
                    _mm512_storeu_ps(k->out + ((long)n * k->Co + co0 + c) * HW + (long)y * k->w + x0 + 16 * b, \
                                     acc[c][b]);                                                        \
        }                                                                                               \
    }                                                                                                   \
}
DEFINE_ROWS(rows_x32, 2)
DEFINE_ROWS(rows_x16, 1)

// Runs the kernel over B samples in chunks: pad x (B, Ci, h, w), then every (sample, channel block, row).
static void run(int B, int Ci, int Co, int h, int w, float *out, const float *x, const float *wt, const float *bias,
                int accumulate, float *xp) {
    int nb = chunk(Ci > Co ? Ci : Co, h, w, B), Co8 = round8(Co);
    long HWin = (long)h * w;
    for (int n0 = 0; n0 < B; n0 += nb) {
        int cur = B - n0 < nb ? B - n0 : nb;
        PadCtx pc = {Ci, h, w, x + (long)n0 * Ci * HWin, xp};
        ops_parallel_for((long)cur * Ci, 1, pad_planes, &pc);
        KCtx k = {Ci, Co, Co8, h, w, accumulate, xp, wt, bias, out + (long)n0 * Co * HWin};
        ops_parallel_for((long)cur * (Co8 / CB) * h, 1, w % 32 == 0 ? rows_x32 : rows_x16, &k);
    }
}

void conv3x3_direct_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b,
                            float *ws) {
    int Ci = d->cin, Co = d->cout, Co8 = round8(Co);
    float *wt = ws, *xp = ws + (size_t)9 * round8(Ci) * Co8;
    memset(wt, 0, sizeof(float) * 9 * Ci * Co8);
    for (int co = 0; co < Co; co++)             // wt[ci][tap][co] = w[co][ci][tap]
        for (int ci = 0; ci < Ci; ci++)
            for (int t = 0; t < 9; t++) wt[((long)ci * 9 + t) * Co8 + co] = w[((long)co * Ci + ci) * 9 + t];
    run(B, Ci, Co, d->h, d->w, y, x, wt, b, 0, xp);
}

// ----------------------------------------------------------------------------------------------
// weight gradient: dw[co][ci][tap] += sum over (n, y, x) of dy[n][co][y][x] * xpad[n][ci][y+ky][x+kx].
// The input is padded into 64-byte aligned rows (data at column 16, row stride w + 32), so each 16-pixel
// step loads one aligned vector per row and makes the kx = 0 and kx = 2 shifts with valignd instead of
// three unaligned (cache-line splitting) loads. One task = one input channel x WC output channels.

#define WC 2                       // 18 accumulators + 2 dy + 9 row vectors

typedef struct { int C, h, w; const float *x; float *xp; } APadCtx;
static void apad_planes(void *v, long p0, long p1) {
    APadCtx *c = v; long S = AROW(c->w);
    for (long p = p0; p < p1; p++) {
        const float *s = c->x + p * c->h * c->w;
        float *o = c->xp + p * APLANE(c->h, c->w);
        memset(o, 0, sizeof(float) * S);
        for (int y = 0; y < c->h; y++) {
            float *r = o + (y + 1) * S;
            memset(r, 0, sizeof(float) * 16);
            memcpy(r + 16, s + (long)y * c->w, sizeof(float) * c->w);
            memset(r + 16 + c->w, 0, sizeof(float) * 16);
        }
        memset(o + (c->h + 1) * S, 0, sizeof(float) * S);
    }
}

typedef struct { int Ci, Co, h, w; const float *xp, *dy; float *dw; } WCtx;

__attribute__((target("avx512f"))) static void dw_tasks(void *v, long t0, long t1) {
    const WCtx *k = v;
    long S = AROW(k->w), P = APLANE(k->h, k->w), HW = (long)k->h * k->w;
    for (long t = t0; t < t1; t++) {
        int ci = (int)(t % k->Ci), co0 = (int)(t / k->Ci) * WC;
        int nv = k->Co - co0 < WC ? k->Co - co0 : WC;
        __m512 acc[WC][9];
        for (int c = 0; c < WC; c++) for (int j = 0; j < 9; j++) acc[c][j] = _mm512_setzero_ps();
        const float *xs = k->xp + (long)ci * P, *g0 = k->dy + (long)co0 * HW;
        for (int y = 0; y < k->h; y++) {
            const float *R[3] = {xs + y * S, xs + (y + 1) * S, xs + (y + 2) * S};
            __m512 prev[3], cur[3];
            for (int r = 0; r < 3; r++) { prev[r] = _mm512_load_ps(R[r]); cur[r] = _mm512_load_ps(R[r] + 16); }
            for (int x0 = 0; x0 < k->w; x0 += 16) {
                __m512 g[WC];
                for (int c = 0; c < WC; c++)
                    g[c] = c < nv ? _mm512_loadu_ps(g0 + c * HW + (long)y * k->w + x0) : _mm512_setzero_ps();
                for (int r = 0; r < 3; r++) {
                    __m512 next = _mm512_load_ps(R[r] + 32 + x0);
                    __m512 xv[3] = {
                        _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(cur[r]), _mm512_castps_si512(prev[r]), 15)),
                        cur[r],
                        _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(next), _mm512_castps_si512(cur[r]), 1))};
                    for (int kx = 0; kx < 3; kx++)
                        for (int c = 0; c < WC; c++) acc[c][r * 3 + kx] = _mm512_fmadd_ps(g[c], xv[kx], acc[c][r * 3 + kx]);
                    prev[r] = cur[r]; cur[r] = next;
                }
            }
        }
        for (int c = 0; c < nv; c++)
            for (int j = 0; j < 9; j++) k->dw[((long)(co0 + c) * k->Ci + ci) * 9 + j] += _mm512_reduce_add_ps(acc[c][j]);
    }
}

void conv3x3_direct_backward_weights(const ConvDesc *d, int B, float *dw, float *db, const float *dy, const float *x,
                                     float *ws) {
    int Ci = d->cin, Co = d->cout;
    long HW = (long)d->h * d->w;
    float *xp = ws + (size_t)9 * round8(Ci) * round8(Co);   // the padded chunk area of the workspace
    xp = (float *)(((uintptr_t)xp + 63) & ~(uintptr_t)63);
    long nb = (long)(chunk(Ci > Co ? Ci : Co, d->h, d->w, B)) * plane(d->h, d->w) / APLANE(d->h, d->w);
    if (nb < 1) nb = 1;
    for (int n0 = 0; n0 < B; n0 += (int)nb) {
        int cur = B - n0 < nb ? B - n0 : (int)nb;
        APadCtx pc = {Ci, d->h, d->w, x + (long)n0 * Ci * HW, xp};
        ops_parallel_for((long)cur * Ci, 1, apad_planes, &pc);
        // one sample at a time, so all tasks share that sample's planes in cache
        for (int n = 0; n < cur; n++) {
            WCtx k = {Ci, Co, d->h, d->w, xp + (long)n * Ci * APLANE(d->h, d->w), dy + (long)(n0 + n) * Co * HW, dw};
            ops_parallel_for((long)Ci * ((Co + WC - 1) / WC), 1, dw_tasks, &k);
        }
    }
    if (db)
        for (int co = 0; co < Co; co++) {
            double s = 0;
            for (int n = 0; n < B; n++) {
                const float *g = dy + ((long)n * Co + co) * HW;
                for (long i = 0; i < HW; i++) s += g[i];
            }
            db[co] += (float)s;
        }
}

void conv3x3_direct_backward_data(const ConvDesc *d, int B, float *dx, const float *dy, const float *w, float *ws,
                                  int accumulate) {
    int Ci = d->cin, Co = d->cout, Ci8 = round8(Ci);
    float *wt = ws, *dyp = ws + (size_t)9 * round8(Co) * Ci8;
    memset(wt, 0, sizeof(float) * 9 * Co * Ci8);
    for (int co = 0; co < Co; co++)             // wt[co][tap'][ci] = w[co][ci][8 - tap'] (flipped)
        for (int ci = 0; ci < Ci; ci++)
            for (int t = 0; t < 9; t++) wt[((long)co * 9 + t) * Ci8 + ci] = w[((long)co * Ci + ci) * 9 + 8 - t];
    run(B, Co, Ci, d->h, d->w, dx, dy, wt, NULL, accumulate, dyp);
}
