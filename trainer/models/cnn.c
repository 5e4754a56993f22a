// trainer/models/cnn.c — a small classifier for 28x28 (any size >= 4):
//   features: conv3x3(32)-BN-ReLU-maxpool2, conv3x3(64)-BN-ReLU-maxpool2, conv3x3(128)-BN-ReLU,
//   flatten, fc(128*(H/4)*(W/4) -> classes). Flatten, not global average pooling: in PyTorch the same
//   net with GAP reached only 0.75 Fashion-MNIST test accuracy after one epoch (adam 1e-3, batch 64).
// state_dict names are those of the equivalent nn.Sequential (tools/fixtures/gen_fixtures.py, class Cnn):
// with BN features.{0,4,8} are convs and features.{1,5,9} BNs; without BN features.{0,3,6} are convs.
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_arch_cnn

typedef struct {
    ConvBn c[3];
    float *pool[2];      // after the first two blocks
    int fc_w, fc_b;
    int h[3], w[3];      // input size of each conv block
} Cnn;

static int cnn_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    if (cfg->height < 4 || cfg->width < 4) {
        snprintf(err, errlen, "model cnn: input %dx%d is too small (needs at least 4x4)", cfg->height, cfg->width);
        return -1;
    }
    Cnn *n = calloc(1, sizeof *n);
    if (!n) { snprintf(err, errlen, "model cnn: out of memory"); return -1; }
    m->net = n;
    const int ch[4] = {cfg->in_channels, 32, 64, 128};
    int bn = cfg->batch_norm != 0, h = cfg->height, w = cfg->width;
    for (int i = 0; i < 3; i++) {
        char cn[32], bnn[32];
        snprintf(cn, sizeof cn, "features.%d", bn ? 4 * i : 3 * i);
        snprintf(bnn, sizeof bnn, "features.%d", 4 * i + 1);
        n->h[i] = h; n->w[i] = w;
        if (convbn_make(m, &n->c[i], cn, bnn, ch[i], ch[i + 1], h, w, 3, 1, 1, 1, NULL)) goto oom;
        if (i < 2) { h /= 2; w /= 2; n->pool[i] = model_act(m, (size_t)ch[i + 1] * h * w); }
    }
    int flat = 128 * h * w;
    n->fc_w = model_add_param(m, "fc.weight", TENSOR_WEIGHT, 2, (int[]){cfg->classes, flat}, flat);
    n->fc_b = model_add_param(m, "fc.bias", TENSOR_BIAS, 1, (int[]){cfg->classes}, flat);
    m->logits = model_act(m, cfg->classes);
    m->logits_per_sample = cfg->classes;
    m->seg = 0;
    if (m->failed) goto oom;
    return 0;
oom:
    snprintf(err, errlen, "model cnn: out of memory (max_batch=%d)", cfg->max_batch);
    return -1;
}

static void cnn_forward(Model *m, int B, int training) {
    Cnn *n = m->net;
    const float *x = m->input;
    for (int i = 0; i < 3; i++) {
        convbn_fw(m, &n->c[i], B, x, training);
        if (i < 2) {
            m->ops->maxpool2x2_forward(B, n->c[i].conv.d.cout, n->h[i], n->w[i], n->pool[i], n->c[i].z);
            x = n->pool[i];
        }
    }
    m->ops->linear_forward(B, 128 * n->h[2] * n->w[2], m->cfg.classes, m->logits, n->c[2].z, P(m, n->fc_w),
                           P(m, n->fc_b));
}

static void cnn_backward(Model *m, int B) {
    Cnn *n = m->net;
    float *a = m->gbuf[0], *b = m->gbuf[1];
    m->ops->linear_backward(B, 128 * n->h[2] * n->w[2], m->cfg.classes, a, G(m, n->fc_w), G(m, n->fc_b),
                            m->dlogits, n->c[2].z, P(m, n->fc_w));   // a = dz of block 2 (flattened)
    model_grads_done(m, n->fc_w);
    for (int i = 2; i >= 0; i--) {
        const float *x = i ? n->pool[i - 1] : m->input;
        convbn_bw(m, &n->c[i], B, i ? a : NULL, a, b, x, 0);      // a = d(pool[i-1])
        if (i) {
            m->ops->maxpool2x2_backward(B, n->c[i - 1].conv.d.cout, n->h[i - 1], n->w[i - 1], b, a, n->c[i - 1].z);
            float *t = a; a = b; b = t;                           // a = dz of block i-1
        }
    }
}

const ModelArch model_arch_cnn = {"cnn", cnn_build, cnn_forward, cnn_backward};
