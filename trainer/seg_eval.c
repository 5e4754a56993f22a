// trainer/seg_eval.c — segmentation evaluation at each image's own resolution (see evaluate.h).
#include "trainer/evaluate.h"
// defines: seg_infer, seg_eval_images, seg_eval_ws_free

#include "trainer/ops/ops.h"         // defines: ops_cpu (bilinear resize of host logits)

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(float **p, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    float *q = realloc(*p, sizeof(float) * n);
    if (!q) return -1;
    *p = q; *cap = n;
    return 0;
}

void seg_eval_ws_free(SegEvalWs *ws) {
    free(ws->x); free(ws->batch); free(ws->acc); free(ws->small); free(ws->cnt);
    if (ws->whole) model_free(ws->whole);
    memset(ws, 0, sizeof *ws);
}

// The model the whole-image forward runs on: one of the image's own size (params and BN buffers
// copied from m), kept while the next images have that size too. A model that refuses that size
// (unet: sides multiple of 8; deeplabv3plus: at least 32) gets the size padded up to a multiple of 32.
static Model *whole_model(Model *m, SegEvalWs *ws, int h, int w, int *mh, int *mw) {
    if (ws->whole && ws->whole_h == h && ws->whole_w == w) {
        *mh = model_config(ws->whole)->height; *mw = model_config(ws->whole)->width;
        return ws->whole;
    }
    if (ws->whole) model_free(ws->whole);
    ws->whole = NULL;
    ModelConfig cfg = *model_config(m);
    cfg.max_batch = 1;
    cfg.height = h; cfg.width = w;
    char err[512];
    const Ops *o = model_ops(m);
    Model *wm = NULL;
    if (model_create_on(&cfg, o, &wm, err, sizeof err)) {
        cfg.height = (h < 32 ? 32 : h + 31) / 32 * 32;
        cfg.width = (w < 32 ? 32 : w + 31) / 32 * 32;
        if (model_create_on(&cfg, o, &wm, err, sizeof err)) return NULL;
    }
    size_t np = model_num_params(m), nb = model_num_buffers(m), big = np > nb ? np : nb;
    float *tmp = malloc(sizeof(float) * (big ? big : 1));
    if (!tmp) { model_free(wm); return NULL; }
    o->download(tmp, model_params(m), sizeof(float) * np);
    o->upload(model_params(wm), tmp, sizeof(float) * np);
    if (nb) {
        o->download(tmp, model_buffers(m), sizeof(float) * nb);
        o->upload(model_buffers(wm), tmp, sizeof(float) * nb);
    }
    free(tmp);
    ws->whole = wm; ws->whole_h = h; ws->whole_w = w;
    *mh = cfg.height; *mw = cfg.width;
    return wm;
}

// Whole-image inference at the image's own resolution (mmseg's whole mode without a test resize):
// one forward of the full image; logits of a padded input are cut back to the image.
static int infer_whole(Model *m, const SegEvalConfig *c, const Sample *s, float *logits, SegEvalWs *ws) {
    int K = c->classes, H = s->h, W = s->w, mh, mw;
    Model *wm = whole_model(m, ws, H, W, &mh, &mw);
    if (!wm) return -1;
    size_t hw = (size_t)H * W;
    if (grow(&ws->x, &ws->cap_x, (size_t)s->c * hw)) return -1;
    pipeline_normalize(c->norm, s->img, s->c, H, W, ws->x);
    const float *in = ws->x;
    if (mh != H || mw != W) {
        size_t in_n = (size_t)s->c * mh * mw;
        if (grow(&ws->batch, &ws->cap_b, in_n)) return -1;
        memset(ws->batch, 0, sizeof(float) * in_n);
        for (int k = 0; k < s->c; k++)
            for (int y = 0; y < H; y++)
                memcpy(ws->batch + ((size_t)k * mh + y) * mw, ws->x + ((size_t)k * H + y) * W, sizeof(float) * W);
        in = ws->batch;
    }
    const float *out = model_forward(wm, in, 1, 0);
    for (int k = 0; k < K; k++)
        for (int y = 0; y < H; y++)
            memcpy(logits + ((size_t)k * H + y) * W, out + ((size_t)k * mh + y) * mw, sizeof(float) * W);
    return 0;
}

static int infer_slide(Model *m, const SegEvalConfig *c, const Sample *s, float *logits, SegEvalWs *ws) {
    int H = s->h, W = s->w, C = s->c, K = c->classes, ch = c->crop_h, cw = c->crop_w;
    int sh = c->stride_h, sw = c->stride_w, B = c->max_batch > 0 ? c->max_batch : 1;
    size_t hw = (size_t)H * W, win = (size_t)C * ch * cw;
    if (grow(&ws->x, &ws->cap_x, (size_t)C * hw) || grow(&ws->batch, &ws->cap_b, win * B)) return -1;
    if (hw > ws->cap_acc) {
        int *q = realloc(ws->cnt, sizeof(int) * hw);
        if (!q) return -1;
        ws->cnt = q;
        ws->cap_acc = hw;
    }
    pipeline_normalize(c->norm, s->img, C, H, W, ws->x);
    memset(logits, 0, sizeof(float) * K * hw);
    memset(ws->cnt, 0, sizeof(int) * hw);
    int gh = (H - ch + sh - 1 > 0 ? H - ch + sh - 1 : 0) / sh + 1;
    int gw = (W - cw + sw - 1 > 0 ? W - cw + sw - 1 : 0) / sw + 1;
    int nwin = gh * gw, box[4 * 64];
    if (B > 64) B = 64;
    for (int first = 0; first < nwin; first += B) {
        int nb = nwin - first < B ? nwin - first : B;
        memset(ws->batch, 0, sizeof(float) * win * nb);
        for (int j = 0; j < nb; j++) {
            int gi = (first + j) / gw, gj = (first + j) % gw;
            int y1 = gi * sh, x1 = gj * sw;
            int y2 = y1 + ch < H ? y1 + ch : H, x2 = x1 + cw < W ? x1 + cw : W;
            y1 = y2 - ch > 0 ? y2 - ch : 0;
            x1 = x2 - cw > 0 ? x2 - cw : 0;
            int *b = box + 4 * j;
            b[0] = y1; b[1] = x1; b[2] = y2; b[3] = x2;
            for (int k = 0; k < C; k++)
                for (int y = y1; y < y2; y++)
                    memcpy(ws->batch + j * win + ((size_t)k * ch + (y - y1)) * cw, ws->x + ((size_t)k * H + y) * W + x1,
                           sizeof(float) * (x2 - x1));
        }
        const float *out = model_forward(m, ws->batch, nb, 0);
        for (int j = 0; j < nb; j++) {
            const int *b = box + 4 * j;
            const float *o = out + (size_t)j * K * ch * cw;
            for (int k = 0; k < K; k++)
                for (int y = b[0]; y < b[2]; y++) {
                    float *dst = logits + (size_t)k * hw + (size_t)y * W;
                    const float *src = o + ((size_t)k * ch + (y - b[0])) * cw;
                    for (int x = b[1]; x < b[3]; x++) dst[x] += src[x - b[1]];
                }
            for (int y = b[0]; y < b[2]; y++)
                for (int x = b[1]; x < b[3]; x++) ws->cnt[(size_t)y * W + x]++;
        }
    }
    for (int k = 0; k < K; k++)
        for (size_t p = 0; p < hw; p++) logits[(size_t)k * hw + p] /= (float)ws->cnt[p];
    return 0;
}

int seg_infer(Model *m, const SegEvalConfig *c, const Sample *s, float *logits, SegEvalWs *ws) {
    return c->slide ? infer_slide(m, c, s, logits, ws) : infer_whole(m, c, s, logits, ws);
}

// The next image decodes on its own thread while the model runs on this one.
typedef struct { Dataset *ds; long i; Sample s; int rc; char err[1024]; } Fetch;
static void *fetch_main(void *p) {
    Fetch *f = p;
    f->rc = dataset_get_sample(f->ds, f->i, &f->s, f->err, sizeof f->err);
    return NULL;
}

int seg_eval_images(Model *m, Dataset *ds, const SegEvalConfig *c, int rank, int world, long limit, ConfMat *cm,
                    double sums[2], char *err, size_t errlen) {
    long n = limit > 0 && limit < ds->n ? limit : ds->n;
    Fetch f[2];
    memset(f, 0, sizeof f);
    SegEvalWs ws = { 0 };
    float *logits = NULL;
    int32_t *pred = NULL, *truth = NULL;
    size_t cap = 0;
    int rc = 0, K = c->classes, cur = 0, pending = 0;
    pthread_t th;
    if (rank < n) {   // the first image on this thread, the rest one ahead on a helper thread
        f[0].ds = ds; f[0].i = rank;
        fetch_main(&f[0]);
    }
    for (long i = rank; i < n && rc == 0; i += world, cur ^= 1) {
        if (pending) { pthread_join(th, NULL); pending = 0; }
        Fetch *now = &f[cur], *next = &f[cur ^ 1];
        if (now->rc) { snprintf(err, errlen, "%s", now->err); rc = -1; break; }
        if (i + world < n) {
            next->ds = ds; next->i = i + world;
            if (pthread_create(&th, NULL, fetch_main, next) == 0) pending = 1;
            else fetch_main(next);
        }
        const Sample *s = &now->s;
        size_t hw = (size_t)s->h * s->w;
        if (hw > cap) {
            free(logits); free(pred); free(truth);
            logits = malloc(sizeof(float) * K * hw);
            pred = malloc(sizeof(int32_t) * hw);
            truth = malloc(sizeof(int32_t) * hw);
            cap = hw;
            if (!logits || !pred || !truth) { snprintf(err, errlen, "out of memory for a %dx%d image", s->w, s->h); rc = -1; break; }
        }
        if (seg_infer(m, c, s, logits, &ws)) { snprintf(err, errlen, "out of memory in evaluation"); rc = -1; break; }
        metrics_argmax(logits, 1, K, hw, pred);
        for (size_t p = 0; p < hw; p++) {
            int t = s->lab[p];
            truth[p] = t == DATA_IGNORE_LABEL || t >= K ? -1 : t;   // -1: not counted by the confusion matrix
            if (truth[p] < 0) continue;
            double mx = -INFINITY, se = 0;
            for (int k = 0; k < K; k++) mx = fmax(mx, logits[(size_t)k * hw + p]);
            for (int k = 0; k < K; k++) se += exp(logits[(size_t)k * hw + p] - mx);
            sums[0] += mx + log(se) - logits[(size_t)t * hw + p];
            sums[1] += 1;
        }
        confmat_add(cm, truth, pred, hw);
    }
    if (pending) pthread_join(th, NULL);
    free(logits); free(pred); free(truth);
    sample_free(&f[0].s); sample_free(&f[1].s);
    seg_eval_ws_free(&ws);
    return rc;
}

int seg_setup(const TrainConfig *c, const Dataset *ds, Pipeline *p, SegEvalConfig *e, int *in_h, int *in_w,
              char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    memset(e, 0, sizeof *e);
    *in_h = ds->height; *in_w = ds->width;
    if (c->crop_h <= 0) {
        if (ds->height <= 0) {
            snprintf(err, errlen, "--dataset %s has images of different sizes: give --crop S (the model's input, e.g. "
                     "--crop 512 --scale 2048x512)", c->dataset);
            return -1;
        }
        if (c->scale_w || c->photometric || strcmp(c->eval_mode ? c->eval_mode : "whole", "slide") == 0) {
            snprintf(err, errlen, "--scale, --photometric and --eval-mode slide belong to the crop pipeline: give --crop S");
            return -1;
        }
        return 0;
    }
    if (!ds->segmentation) {
        snprintf(err, errlen, "--crop: --dataset %s is not a segmentation set", c->dataset);
        return -1;
    }
    p->scale_w = c->scale_w; p->scale_h = c->scale_h;
    p->ratio_min = c->ratio_min; p->ratio_max = c->ratio_max;
    p->crop_h = c->crop_h; p->crop_w = c->crop_w;
    p->cat_max_ratio = c->cat_max_ratio;
    p->flip = 1;
    p->photometric = c->photometric;
    for (int k = 0; k < 3; k++) {
        p->mean[k] = c->have_norm & 1 ? (float)c->mean[k] : 0.0f;
        p->std[k] = c->have_norm & 2 ? (float)c->std[k] : 255.0f;
    }
    e->slide = c->eval_mode && strcmp(c->eval_mode, "slide") == 0;
    e->crop_h = c->crop_h; e->crop_w = c->crop_w;
    if (c->eval_crop && (c->eval_crop != c->crop_h || c->eval_crop != c->crop_w)) {
        snprintf(err, errlen, "--eval-crop %d: the windows are the model's input, --crop %dx%d (leave --eval-crop out "
                 "or make it equal)", c->eval_crop, c->crop_h, c->crop_w);
        return -1;
    }
    e->stride_h = c->eval_stride > 0 ? c->eval_stride : (c->crop_h * 2 / 3 > 0 ? c->crop_h * 2 / 3 : 1);
    e->stride_w = c->eval_stride > 0 ? c->eval_stride : (c->crop_w * 2 / 3 > 0 ? c->crop_w * 2 / 3 : 1);
    e->classes = ds->classes;
    e->max_batch = c->batch;
    e->norm = p;
    *in_h = c->crop_h; *in_w = c->crop_w;
    return 0;
}
