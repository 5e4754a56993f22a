// trainer/ops/conv_cut.c — which kernel taps of a stride-1 convolution read the image, and the compact
// copies of the weights and weight gradients of the ones that do (contract: conv_cut.h).
#include <stdlib.h>
#include <string.h>
#include "trainer/ops/conv_cut.h"
// defines: conv_cut_enable, conv_cut_desc, conv_cut_gather, conv_cut_add_back

static int enabled = -1;   // -1: not decided yet (SEGX_CONV_CUT=0 switches off)

void conv_cut_enable(int on) { enabled = on; }

// The live taps [*a, *b] of one dimension: tap t reads input rows t*dil - pad + [0, o), live when one of
// them lies in [0, n). The live taps are consecutive (the window slides with t). 0 when none is live.
static int live_taps(int n, int o, int k, int dil, int pad, int *a, int *b) {
    *a = -1; *b = -1;
    for (int t = 0; t < k; t++) {
        int first = t * dil - pad, last = first + o - 1;
        if (last < 0 || first > n - 1) continue;
        if (*a < 0) *a = t;
        *b = t;
    }
    return *a >= 0;
}

// padding after the last row (column) that a stride-1 convolution's output size implies
static int pad_end(int n, int o, int k, int dil, int pad) { return o - 1 + (k - 1) * dil + 1 - n - pad; }

int conv_cut_desc(const ConvDesc *d, ConvDesc *r, int *ky0, int *kx0) {
    if (enabled < 0) {
        const char *e = getenv("SEGX_CONV_CUT");
        enabled = !(e && strcmp(e, "0") == 0);
    }
    if (!enabled || d->stride != 1 || d->groups > 1) return 0;
    int y0, y1, x0, x1;
    if (!live_taps(d->h, d->oh, d->kh, d->dil, d->padh, &y0, &y1) ||
        !live_taps(d->w, d->ow, d->kw, d->dil, d->padw, &x0, &x1)) return 0;
    if (y1 - y0 + 1 == d->kh && x1 - x0 + 1 == d->kw) return 0;
    *r = *d;
    r->kh = y1 - y0 + 1; r->kw = x1 - x0 + 1;
    r->padh = d->padh - y0 * d->dil; r->padw = d->padw - x0 * d->dil;
    int bottom = pad_end(r->h, r->oh, r->kh, r->dil, r->padh), right = pad_end(r->w, r->ow, r->kw, r->dil, r->padw);
    r->pad = r->padh >= 0 && r->padh == r->padw && bottom == r->padh && right == r->padh ? r->padh : -1;
    if (r->kh == 1 && r->kw == 1) r->dil = 1;   // a single tap has no spacing; 1x1 kernels are the fast ones
    *ky0 = y0; *kx0 = x0;
    return 1;
}

void conv_cut_gather(const ConvDesc *d, const ConvDesc *r, int ky0, int kx0, float *wc, const float *w) {
    long planes = (long)d->cout * d->cin;
    for (long p = 0; p < planes; p++)
        for (int ky = 0; ky < r->kh; ky++)
            memcpy(wc + (p * r->kh + ky) * r->kw, w + (p * d->kh + ky0 + ky) * d->kw + kx0, sizeof(float) * r->kw);
}

void conv_cut_add_back(const ConvDesc *d, const ConvDesc *r, int ky0, int kx0, float *dw, const float *dwc) {
    long planes = (long)d->cout * d->cin;
    for (long p = 0; p < planes; p++)
        for (int ky = 0; ky < r->kh; ky++) {
            float *o = dw + (p * d->kh + ky0 + ky) * d->kw + kx0;
            const float *s = dwc + (p * r->kh + ky) * r->kw;
            for (int kx = 0; kx < r->kw; kx++) o[kx] += s[kx];
        }
}
