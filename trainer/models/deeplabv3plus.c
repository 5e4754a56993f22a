// trainer/models/deeplabv3plus.c — DeepLabv3+ of ../shared/bench/models_ref.py (--backbone 18|50|101):
// a torchvision ResNet (names under backbone.: conv1 7x7/2, bn1, 3x3/2 max pool pad 1, layer1..4 of
// BasicBlocks or Bottlenecks; layer4 keeps stride 1 and dilates by 2, output stride 16), ASPP (1x1,
// 3x3 at rates 6/12/18, image pooling: global average, 1x1, BN, ReLU, bilinear back to the map;
// concat, 1x1 projection), decoder on layer1's features (1x1 to 48 channels, concat with the ASPP
// output upsampled to layer1's size, two 3x3 conv-BN-ReLU), 1x1 head with bias, bilinear upsampling
// (align_corners=False) to the input size. 16,607,667 / 40,351,667 / 59,343,795 parameters for 3 -> 19.
// Registration (= forward) order: backbone, aspp.branches.0..3, aspp.pool, aspp.project, low_proj,
// decoder.0, decoder.1, head; backward runs it in reverse (the grads-ready prefix grows).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "trainer/models/model_internal.h"
// defines: model_arch_deeplabv3plus

#define DL_MAX_BLOCKS 33
#define DL_ASPP 256

typedef struct {
    ConvBn c1, c2, c3, ds;
    int has_ds, bottleneck;
    const float *in;
    float *out;
} DlBlock;

typedef struct {
    ConvBn stem;
    float *pool;                 // after the 3x3/2 max pool
    int sh, sw, ph, pw;          // stem output and pool output sizes
    DlBlock blk[DL_MAX_BLOCKS];
    int nblk, n_layer1;          // blocks, and how many belong to layer1 (its last output is `low`)
    int low_c, high_c, lh, lw, hh, hw;
    ConvBn br[4], pool_conv, project, low_proj, dec[2];
    Conv head;
    float *gp;                   // (B, high_c) global average of the high features
    float *pool_up;              // (B, 256, hh, hw) the pooled branch broadcast back
    float *cat5;                 // (B, 1280, hh, hw)
    float *up1;                  // (B, 256, lh, lw)
    float *cat2;                 // (B, 304, lh, lw)
    float *head_out;             // (B, K, lh, lw)
    float *dlow, *dhigh;         // gradients of layer1's output (decoder path) and of layer4's output
} DeepLab;

static void maxpool_fw(Model *m, int B, int C, int h, int w, float *y, const float *x) {
#ifdef SEGX_HAVE_CUDA
    if (strcmp(m->ops->name, "cuda") == 0) { ops_cuda_maxpool_forward(B, C, h, w, 3, 2, 1, y, x); return; }
#endif
    ops_cpu_maxpool_forward(B, C, h, w, 3, 2, 1, y, x);
}
static void maxpool_bw(Model *m, int B, int C, int h, int w, float *dx, const float *dy, const float *x) {
#ifdef SEGX_HAVE_CUDA
    if (strcmp(m->ops->name, "cuda") == 0) { ops_cuda_maxpool_backward(B, C, h, w, 3, 2, 1, dx, dy, x); return; }
#endif
    ops_cpu_maxpool_backward(B, C, h, w, 3, 2, 1, dx, dy, x);
}

static int dl_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    int depth = cfg->backbone ? cfg->backbone : 50;
    static const int reps18[4] = {2, 2, 2, 2}, reps50[4] = {3, 4, 6, 3}, reps101[4] = {3, 4, 23, 3};
    const int *reps = depth == 18 ? reps18 : depth == 50 ? reps50 : depth == 101 ? reps101 : NULL;
    if (!reps) { snprintf(err, errlen, "model deeplabv3plus: --backbone %d: want 18, 50 or 101", depth); return -1; }
    if (cfg->height < 32 || cfg->width < 32) {
        snprintf(err, errlen, "model deeplabv3plus: input %dx%d is too small (output stride 16; at least 32x32)",
                 cfg->height, cfg->width);
        return -1;
    }
    DeepLab *d = calloc(1, sizeof *d);
    if (!d) { snprintf(err, errlen, "model deeplabv3plus: out of memory"); return -1; }
    m->net = d;
    int bottleneck = depth != 18, exp = bottleneck ? 4 : 1;
    if (convbn_make(m, &d->stem, "backbone.conv1", "backbone.bn1", cfg->in_channels, 64, cfg->height, cfg->width, 7, 2, 3, 1,
                    NULL)) goto oom;
    d->sh = d->stem.conv.d.oh; d->sw = d->stem.conv.d.ow;
    d->ph = ops_maxpool_out(d->sh, 3, 2, 1); d->pw = ops_maxpool_out(d->sw, 3, 2, 1);
    d->pool = model_act(m, (size_t)64 * d->ph * d->pw);
    int h = d->ph, w = d->pw, inpl = 64, dil = 1;
    const float *in = d->pool;
    char p[96], q[96];
    for (int L = 0; L < 4; L++) {
        int planes = 64 << L, stride = L == 0 ? 1 : 2, prev = dil;
        if (L == 3) { dil *= stride; stride = 1; }   // replace_stride_with_dilation for layer4
        for (int i = 0; i < reps[L]; i++) {
            DlBlock *k = &d->blk[d->nblk++];
            int s = i == 0 ? stride : 1, bd = i == 0 ? prev : dil;
            k->bottleneck = bottleneck; k->in = in;
            k->has_ds = i == 0 && (stride != 1 || inpl != planes * exp);
            int oh, ow;
            #define NAME(part) (snprintf(p, sizeof p, "backbone.layer%d.%d.conv" part, L + 1, i), \
                                snprintf(q, sizeof q, "backbone.layer%d.%d.bn" part, L + 1, i))
            if (!bottleneck) {
                NAME("1");
                if (convbn_make_ex(m, &k->c1, p, q, inpl, planes, h, w, 3, s, bd, bd, 1, 1, 0, NULL)) goto oom;
                oh = k->c1.conv.d.oh; ow = k->c1.conv.d.ow;
                k->out = model_act(m, (size_t)planes * oh * ow);
                NAME("2");
                if (convbn_make_ex(m, &k->c2, p, q, planes, planes, oh, ow, 3, 1, bd, bd, 1, 0, 0, k->out)) goto oom;
            } else {
                NAME("1");
                if (convbn_make(m, &k->c1, p, q, inpl, planes, h, w, 1, 1, 0, 1, NULL)) goto oom;
                NAME("2");
                if (convbn_make_ex(m, &k->c2, p, q, planes, planes, h, w, 3, s, bd, bd, 1, 1, 0, NULL)) goto oom;
                oh = k->c2.conv.d.oh; ow = k->c2.conv.d.ow;
                k->out = model_act(m, (size_t)planes * exp * oh * ow);
                NAME("3");
                if (convbn_make(m, &k->c3, p, q, planes, planes * exp, oh, ow, 1, 1, 0, 0, k->out)) goto oom;
            }
            #undef NAME
            if (k->has_ds) {
                snprintf(p, sizeof p, "backbone.layer%d.%d.downsample.0", L + 1, i);
                snprintf(q, sizeof q, "backbone.layer%d.%d.downsample.1", L + 1, i);
                if (convbn_make(m, &k->ds, p, q, inpl, planes * exp, h, w, 1, s, 0, 0, k->out)) goto oom;
            }
            inpl = planes * exp; h = oh; w = ow; in = k->out;
        }
        if (L == 0) { d->n_layer1 = d->nblk; d->low_c = inpl; d->lh = h; d->lw = w; }
    }
    d->high_c = inpl; d->hh = h; d->hw = w;
    size_t hhw = (size_t)h * w, lhw = (size_t)d->lh * d->lw;
    static const int rates[3] = {6, 12, 18};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "aspp.branches.%d.0", i); snprintf(q, sizeof q, "aspp.branches.%d.1", i);
        int r = i ? rates[i - 1] : 0;
        if (convbn_make_ex(m, &d->br[i], p, q, inpl, DL_ASPP, h, w, i ? 3 : 1, 1, r, i ? r : 1, 1, 1, 0, NULL)) goto oom;
    }
    if (convbn_make(m, &d->pool_conv, "aspp.pool.0", "aspp.pool.1", inpl, DL_ASPP, 1, 1, 1, 1, 0, 1, NULL)) goto oom;
    d->gp = model_act(m, inpl);
    d->pool_up = model_act(m, DL_ASPP * hhw);
    d->cat5 = model_act(m, 5 * DL_ASPP * hhw);
    if (convbn_make(m, &d->project, "aspp.project.0", "aspp.project.1", 5 * DL_ASPP, DL_ASPP, h, w, 1, 1, 0, 1, NULL)) goto oom;
    d->up1 = model_act(m, DL_ASPP * lhw);
    if (convbn_make(m, &d->low_proj, "low_proj.0", "low_proj.1", d->low_c, 48, d->lh, d->lw, 1, 1, 0, 1, NULL)) goto oom;
    d->cat2 = model_act(m, (DL_ASPP + 48) * lhw);
    if (convbn_make(m, &d->dec[0], "decoder.0.0", "decoder.0.1", DL_ASPP + 48, DL_ASPP, d->lh, d->lw, 3, 1, 1, 1, NULL) ||
        convbn_make(m, &d->dec[1], "decoder.1.0", "decoder.1.1", DL_ASPP, DL_ASPP, d->lh, d->lw, 3, 1, 1, 1, NULL) ||
        conv_make(m, &d->head, "head", DL_ASPP, cfg->classes, d->lh, d->lw, 1, 1, 0, 1)) goto oom;
    d->head_out = model_act(m, (size_t)cfg->classes * lhw);
    d->dlow = model_act(m, (size_t)d->low_c * lhw);
    d->dhigh = model_act(m, (size_t)inpl * hhw);
    m->logits = model_act(m, (size_t)cfg->classes * cfg->height * cfg->width);
    m->logits_per_sample = (size_t)cfg->classes * cfg->height * cfg->width;
    m->seg = 1;
    if (m->failed) goto oom;
    return 0;
oom:
    snprintf(err, errlen, "model deeplabv3plus: out of memory (max_batch=%d, %dx%d)", cfg->max_batch, cfg->height, cfg->width);
    return -1;
}

static size_t blk_out_floats(const DlBlock *k) { return convbn_out_floats(k->bottleneck ? &k->c3 : &k->c2); }

static void dl_forward(Model *m, int B, int training) {
    DeepLab *d = m->net;
    const Ops *o = m->ops;
    convbn_fw(m, &d->stem, B, m->input, training);
    maxpool_fw(m, B, 64, d->sh, d->sw, d->pool, d->stem.z);
    for (int i = 0; i < d->nblk; i++) {
        DlBlock *k = &d->blk[i];
        size_t n = (size_t)B * blk_out_floats(k);
        convbn_fw(m, &k->c1, B, k->in, training);
        convbn_fw(m, &k->c2, B, k->c1.z, training);
        if (k->bottleneck) convbn_fw(m, &k->c3, B, k->c2.z, training);
        const float *sc = k->in;
        if (k->has_ds) {
            k->ds.z = m->gbuf[0];
            convbn_fw(m, &k->ds, B, k->in, training);
            sc = m->gbuf[0];
        }
        o->add(n, k->out, k->out, sc);
        o->relu_forward(n, k->out, k->out);
    }
    const float *high = d->blk[d->nblk - 1].out, *low = d->blk[d->n_layer1 - 1].out;
    int hhw = d->hh * d->hw, lhw = d->lh * d->lw, C5 = 5 * DL_ASPP, K = m->cfg.classes;
    for (int i = 0; i < 4; i++) {
        convbn_fw(m, &d->br[i], B, high, training);
        o->channel_copy(B, hhw, DL_ASPP, d->cat5, C5, i * DL_ASPP, d->br[i].z, DL_ASPP, 0, 0);
    }
    o->avgpool_forward(B, d->high_c, hhw, d->gp, high);
    convbn_fw(m, &d->pool_conv, B, d->gp, training);
    o->upsample_bilinear_forward(B, DL_ASPP, 1, 1, d->hh, d->hw, d->pool_up, d->pool_conv.z);
    o->channel_copy(B, hhw, DL_ASPP, d->cat5, C5, 4 * DL_ASPP, d->pool_up, DL_ASPP, 0, 0);
    convbn_fw(m, &d->project, B, d->cat5, training);
    o->upsample_bilinear_forward(B, DL_ASPP, d->hh, d->hw, d->lh, d->lw, d->up1, d->project.z);
    convbn_fw(m, &d->low_proj, B, low, training);
    o->channel_copy(B, lhw, DL_ASPP, d->cat2, DL_ASPP + 48, 0, d->up1, DL_ASPP, 0, 0);
    o->channel_copy(B, lhw, 48, d->cat2, DL_ASPP + 48, DL_ASPP, d->low_proj.z, 48, 0, 0);
    convbn_fw(m, &d->dec[0], B, d->cat2, training);
    convbn_fw(m, &d->dec[1], B, d->dec[0].z, training);
    conv_fw(m, &d->head, B, d->head_out, d->dec[1].z);
    o->upsample_bilinear_forward(B, K, d->lh, d->lw, m->cfg.height, m->cfg.width, m->logits, d->head_out);
}

static void dl_backward(Model *m, int B) {
    DeepLab *d = m->net;
    const Ops *o = m->ops;
    float *g0 = m->gbuf[0], *g1 = m->gbuf[1], *g2 = m->gbuf[2];
    const float *high = d->blk[d->nblk - 1].out, *low = d->blk[d->n_layer1 - 1].out;
    int hhw = d->hh * d->hw, lhw = d->lh * d->lw, C5 = 5 * DL_ASPP, K = m->cfg.classes;
    // head and decoder
    o->upsample_bilinear_backward(B, K, d->lh, d->lw, m->cfg.height, m->cfg.width, g0, m->dlogits);
    conv_bw(m, &d->head, B, g1, g0, d->dec[1].z, 0);
    convbn_bw(m, &d->dec[1], B, g1, g1, g0, d->dec[0].z, 0);
    convbn_bw(m, &d->dec[0], B, g1, g1, g0, d->cat2, 0);                         // g1 = d(cat2)
    o->channel_copy(B, lhw, DL_ASPP, g0, DL_ASPP, 0, g1, DL_ASPP + 48, 0, 0);     // g0 = d(up1)
    o->channel_copy(B, lhw, 48, g2, 48, 0, g1, DL_ASPP + 48, DL_ASPP, 0);        // g2 = d(low_proj.z)
    convbn_bw(m, &d->low_proj, B, d->dlow, g2, g1, low, 0);
    o->upsample_bilinear_backward(B, DL_ASPP, d->hh, d->hw, d->lh, d->lw, g2, g0); // g2 = d(project.z)
    // ASPP
    convbn_bw(m, &d->project, B, g1, g2, g0, d->cat5, 0);                        // g1 = d(cat5)
    o->channel_copy(B, hhw, DL_ASPP, g0, DL_ASPP, 0, g1, C5, 4 * DL_ASPP, 0);     // d(pool_up)
    o->upsample_bilinear_backward(B, DL_ASPP, 1, 1, d->hh, d->hw, g2, g0);       // g2 = d(pool_conv.z)
    convbn_bw(m, &d->pool_conv, B, g0, g2, d->dhigh, d->gp, 0);                   // g0 = d(gp)
    o->avgpool_backward(B, d->high_c, hhw, d->dhigh, g0);
    for (int i = 3; i >= 0; i--) {
        o->channel_copy(B, hhw, DL_ASPP, g0, DL_ASPP, 0, g1, C5, i * DL_ASPP, 0);
        convbn_bw(m, &d->br[i], B, d->dhigh, g0, g2, high, 1);
    }
    // backbone: a = d(block out)
    float *a = g0, *b = g1, *c = g2;
    o->copy(a, d->dhigh, sizeof(float) * B * d->high_c * hhw);
    for (int i = d->nblk - 1; i >= 0; i--) {
        DlBlock *k = &d->blk[i];
        size_t n = (size_t)B * blk_out_floats(k);
        if (i == d->n_layer1 - 1) o->accumulate(n, a, d->dlow);                 // layer1's output feeds the decoder too
        o->relu_backward(n, a, a, k->out);
        if (k->has_ds) convbn_bw(m, &k->ds, B, c, a, b, k->in, 0);
        else o->copy(c, a, sizeof(float) * n);
        if (k->bottleneck) {
            convbn_bw(m, &k->c3, B, a, a, b, k->c2.z, 0);
            convbn_bw(m, &k->c2, B, a, a, b, k->c1.z, 0);
        } else {
            convbn_bw(m, &k->c2, B, a, a, b, k->c1.z, 0);
        }
        convbn_bw(m, &k->c1, B, c, a, b, k->in, 1);
        float *t = a; a = c; c = t;
    }
    maxpool_bw(m, B, 64, d->sh, d->sw, b, a, d->stem.z);                         // b = d(stem.z)
    convbn_bw(m, &d->stem, B, NULL, b, a, m->input, 0);
}

const ModelArch model_arch_deeplabv3plus = {"deeplabv3plus", dl_build, dl_forward, dl_backward};
