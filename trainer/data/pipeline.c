// trainer/data/pipeline.c — the segmentation training pipeline (see pipeline.h).
#include "trainer/data/pipeline.h"
// defines: pipeline_*, resize_bilinear_u8, resize_nearest_u8

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rnext(uint64_t *s) { *s = data_splitmix64(*s); return *s; }
static double runiform(uint64_t *s) { return (double)(rnext(s) >> 11) * (1.0 / 9007199254740992.0); }
static int rint_below(uint64_t *s, int n) { return n <= 1 ? 0 : (int)(rnext(s) % (uint64_t)n); }   // [0, n)

static uint8_t clip_u8(double v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrint(v); }

// ---------------------------------------------------------------------------------------------
// resizes

// Source coordinate of destination index d (half-pixel centres), as OpenCV's INTER_LINEAR: below 0
// and past the last pixel the edge pixel is taken.
static void linear_coord(int d, int in, int out, int *i0, int *i1, float *f) {
    double s = (d + 0.5) * in / out - 0.5;
    int i = (int)floor(s);
    double fr = s - i;
    if (i < 0) { i = 0; fr = 0; }
    if (i >= in - 1) { i = in - 1; fr = 0; }
    *i0 = i;
    *i1 = i + 1 < in ? i + 1 : in - 1;
    *f = (float)fr;
}

void resize_bilinear_u8(const uint8_t *src, int c, int h, int w, uint8_t *dst, int oh, int ow) {
    int *x0 = malloc(sizeof(int) * 2 * ow);
    float *fx = malloc(sizeof(float) * ow);
    if (!x0 || !fx) { free(x0); free(fx); memset(dst, 0, (size_t)c * oh * ow); return; }
    for (int x = 0; x < ow; x++) linear_coord(x, w, ow, &x0[2 * x], &x0[2 * x + 1], &fx[x]);
    for (int y = 0; y < oh; y++) {
        int y0, y1;
        float fy;
        linear_coord(y, h, oh, &y0, &y1, &fy);
        for (int ch = 0; ch < c; ch++) {
            const uint8_t *r0 = src + ((size_t)ch * h + y0) * w, *r1 = src + ((size_t)ch * h + y1) * w;
            uint8_t *o = dst + ((size_t)ch * oh + y) * ow;
            for (int x = 0; x < ow; x++) {
                int a = x0[2 * x], b = x0[2 * x + 1];
                float top = r0[a] + (r0[b] - r0[a]) * fx[x], bot = r1[a] + (r1[b] - r1[a]) * fx[x];
                o[x] = clip_u8(top + (bot - top) * fy);
            }
        }
    }
    free(x0); free(fx);
}

void resize_nearest_u8(const uint8_t *src, int h, int w, uint8_t *dst, int oh, int ow) {
    for (int y = 0; y < oh; y++) {
        int sy = (int)floor((double)y * h / oh);
        if (sy > h - 1) sy = h - 1;
        for (int x = 0; x < ow; x++) {
            int sx = (int)floor((double)x * w / ow);
            if (sx > w - 1) sx = w - 1;
            dst[(size_t)y * ow + x] = src[(size_t)sy * w + sx];
        }
    }
}

void pipeline_keep_ratio_size(int h, int w, double scale_w, double scale_h, int *oh, int *ow) {
    double lmax = scale_w > scale_h ? scale_w : scale_h, smax = scale_w > scale_h ? scale_h : scale_w;
    double lim = h > w ? h : w, sim = h > w ? w : h;
    double sf = lmax / lim < smax / sim ? lmax / lim : smax / sim;
    *ow = (int)(w * sf + 0.5);
    *oh = (int)(h * sf + 0.5);
    if (*ow < 1) *ow = 1;
    if (*oh < 1) *oh = 1;
}

// ---------------------------------------------------------------------------------------------
// crop

static void random_bbox(const Pipeline *p, int h, int w, uint64_t *rng, int *y0, int *x0) {
    int mh = h - p->crop_h > 0 ? h - p->crop_h : 0, mw = w - p->crop_w > 0 ? w - p->crop_w : 0;
    *y0 = rint_below(rng, mh + 1);
    *x0 = rint_below(rng, mw + 1);
}

// mmseg RandomCrop: redraw (up to 10 times) while one class covers cat_max_ratio or more of the
// crop's labelled pixels, or the crop holds fewer than two classes.
void pipeline_pick_crop(const Pipeline *p, const uint8_t *lab, int h, int w, uint64_t *rng, int *y0, int *x0) {
    random_bbox(p, h, w, rng, y0, x0);
    if (p->cat_max_ratio >= 1) return;
    int ch = p->crop_h < h ? p->crop_h : h, cw = p->crop_w < w ? p->crop_w : w;
    for (int t = 0; t < 10; t++) {
        long cnt[255] = { 0 }, sum = 0, mx = 0;
        int kinds = 0;
        for (int y = *y0; y < *y0 + ch; y++)
            for (int x = *x0; x < *x0 + cw; x++) {
                uint8_t v = lab[(size_t)y * w + x];
                if (v == DATA_IGNORE_LABEL) continue;
                if (cnt[v]++ == 0) kinds++;
                sum++;
            }
        for (int k = 0; k < 255; k++) if (cnt[k] > mx) mx = cnt[k];
        if (kinds > 1 && (double)mx / (double)sum < p->cat_max_ratio) return;
        random_bbox(p, h, w, rng, y0, x0);
    }
}

// ---------------------------------------------------------------------------------------------
// photometric distortion (mmseg PhotoMetricDistortion with its defaults), on HWC-free CHW RGB bytes

static void rgb_to_hsv(double r, double g, double b, double *h, double *s, double *v) {
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn;
    *v = mx;
    *s = mx > 0 ? d / mx * 255.0 : 0;
    double hh = 0;
    if (d > 0) {
        if (mx == r) hh = 60.0 * (g - b) / d;
        else if (mx == g) hh = 120.0 + 60.0 * (b - r) / d;
        else hh = 240.0 + 60.0 * (r - g) / d;
        if (hh < 0) hh += 360;
    }
    *h = hh / 2;   // OpenCV's 8-bit hue: 0..180
}

static void hsv_to_rgb(double h, double s, double v, double *r, double *g, double *b) {
    double hh = fmod(h * 2, 360.0) / 60.0, ss = s / 255.0;
    int i = (int)floor(hh);
    double f = hh - i, p = v * (1 - ss), q = v * (1 - ss * f), t = v * (1 - ss * (1 - f));
    switch (i % 6) {
    case 0: *r = v; *g = t; *b = p; break;
    case 1: *r = q; *g = v; *b = p; break;
    case 2: *r = p; *g = v; *b = t; break;
    case 3: *r = p; *g = q; *b = v; break;
    case 4: *r = t; *g = p; *b = v; break;
    default: *r = v; *g = p; *b = q; break;
    }
}

static void photometric(uint8_t *img, int c, size_t hw, uint64_t *rng) {
    if (rint_below(rng, 2)) {   // brightness
        double delta = -32 + 64 * runiform(rng);
        for (size_t i = 0; i < (size_t)c * hw; i++) img[i] = clip_u8(img[i] + delta);
    }
    int contrast_first = rint_below(rng, 2);
    double alpha = 0;
    if (contrast_first && rint_below(rng, 2)) {
        alpha = 0.5 + runiform(rng);
        for (size_t i = 0; i < (size_t)c * hw; i++) img[i] = clip_u8(img[i] * alpha);
    }
    if (c == 3) {
        double sat = rint_below(rng, 2) ? 0.5 + runiform(rng) : 1;
        int hue = rint_below(rng, 2) ? rint_below(rng, 37) - 18 : 0;
        if (sat != 1 || hue != 0)
            for (size_t i = 0; i < hw; i++) {
                double h, s, v, r, g, b;
                rgb_to_hsv(img[i], img[hw + i], img[2 * hw + i], &h, &s, &v);
                s = clip_u8(s * sat);
                h = fmod(round(h) + hue + 180, 180);
                hsv_to_rgb(h, s, v, &r, &g, &b);
                img[i] = clip_u8(r); img[hw + i] = clip_u8(g); img[2 * hw + i] = clip_u8(b);
            }
    }
    if (!contrast_first && rint_below(rng, 2)) {
        alpha = 0.5 + runiform(rng);
        for (size_t i = 0; i < (size_t)c * hw; i++) img[i] = clip_u8(img[i] * alpha);
    }
}

// ---------------------------------------------------------------------------------------------

void pipeline_scratch_free(PipeScratch *ws) { sample_free(&ws->a); sample_free(&ws->b); }

void pipeline_normalize(const Pipeline *p, const uint8_t *img, int c, int h, int w, float *x) {
    size_t hw = (size_t)h * w;
    for (int ch = 0; ch < c; ch++) {
        float m = p->mean[ch < 3 ? ch : 2], inv = 1.0f / p->std[ch < 3 ? ch : 2];
        for (size_t i = 0; i < hw; i++) x[ch * hw + i] = (img[ch * hw + i] - m) * inv;
    }
}

int pipeline_train(const Pipeline *p, const Sample *in, uint64_t key, float *x, int32_t *y, PipeScratch *ws) {
    uint64_t rng = key;
    const Sample *cur = in;
    int c = in->c, h = in->h, w = in->w;
    if (p->scale_w > 0 && p->scale_h > 0) {   // RandomResize
        double r = p->ratio_min + (p->ratio_max - p->ratio_min) * runiform(&rng);
        int oh, ow;
        // mmcv's RandomResize truncates the scaled target: int(2048 * r), int(512 * r)
        pipeline_keep_ratio_size(h, w, (int)(p->scale_w * r), (int)(p->scale_h * r), &oh, &ow);
        if (sample_reserve(&ws->a, c, oh, ow)) return -1;
        resize_bilinear_u8(in->img, c, h, w, ws->a.img, oh, ow);
        resize_nearest_u8(in->lab, h, w, ws->a.lab, oh, ow);
        cur = &ws->a; h = oh; w = ow;
    }
    int y0, x0;
    pipeline_pick_crop(p, cur->lab, h, w, &rng, &y0, &x0);
    int ch = p->crop_h < h ? p->crop_h : h, cw = p->crop_w < w ? p->crop_w : w;
    int flip = p->flip && rint_below(&rng, 2);
    if (sample_reserve(&ws->b, c, ch, cw)) return -1;
    for (int yy = 0; yy < ch; yy++)
        for (int xx = 0; xx < cw; xx++) {
            int sx = x0 + (flip ? cw - 1 - xx : xx);
            size_t src = (size_t)(y0 + yy) * w + sx, dst = (size_t)yy * cw + xx;
            for (int k = 0; k < c; k++) ws->b.img[(size_t)k * ch * cw + dst] = cur->img[(size_t)k * h * w + src];
            ws->b.lab[dst] = cur->lab[src];
        }
    if (p->photometric) photometric(ws->b.img, c, (size_t)ch * cw, &rng);
    size_t out_hw = (size_t)p->crop_h * p->crop_w;
    for (int k = 0; k < c; k++) {
        float m = p->mean[k < 3 ? k : 2], inv = 1.0f / p->std[k < 3 ? k : 2];
        float *xo = x + k * out_hw;
        for (int yy = 0; yy < p->crop_h; yy++)
            for (int xx = 0; xx < p->crop_w; xx++)
                xo[(size_t)yy * p->crop_w + xx] =
                    yy < ch && xx < cw ? (ws->b.img[(size_t)k * ch * cw + (size_t)yy * cw + xx] - m) * inv : 0.0f;
    }
    for (int yy = 0; yy < p->crop_h; yy++)
        for (int xx = 0; xx < p->crop_w; xx++)
            y[(size_t)yy * p->crop_w + xx] = yy < ch && xx < cw ? ws->b.lab[(size_t)yy * cw + xx] : DATA_IGNORE_LABEL;
    return 0;
}
