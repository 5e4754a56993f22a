// trainer/models/vgg16.c — VGG-16 with BatchNorm, CIFAR variant (../shared/bench/models_ref.py VGG16):
// 13 conv3x3 (with bias) - BN - ReLU layers in 5 stages of 64, 128, 256, 512, 512 channels, a 2x2 max
// pool after each stage (32x32 -> 1x1), then one linear layer 512 -> classes. state_dict names
// features.<i>.* count the Sequential's modules (conv i, BN i+1, ReLU i+2, pool). 14,728,266
// parameters for 3 input channels and 10 classes. Inputs 32..63 pixels a side (the 5 pools leave 1x1).
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_arch_vgg16

#define VGG_LAYERS 13
static const int vgg_cfg[] = {64, 64, -1, 128, 128, -1, 256, 256, 256, -1, 512, 512, 512, -1, 512, 512, 512, -1};

typedef struct {
    ConvBn c[VGG_LAYERS];
    int pool_after[VGG_LAYERS];   // 1: a max pool follows this conv
    float *pool[5];               // pool outputs
    int ph[5], pw[5];             // input size of each pool
    ClassifierHead fc;            // the linear layer on the last pool's (512, 1, 1)
} Vgg;

static int vgg_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    if (cfg->height >> 5 != 1 || cfg->width >> 5 != 1) {
        snprintf(err, errlen, "model vgg16: input %dx%d: the CIFAR VGG-16 takes 32..63 pixels a side (5 poolings "
                 "to 1x1 before its 512-input classifier); for 28x28 data use --pad-to 32", cfg->height, cfg->width);
        return -1;
    }
    Vgg *v = model_net_alloc(m, sizeof *v, err, errlen);
    if (!v) return -1;
    int c = cfg->in_channels, h = cfg->height, w = cfg->width, idx = 0, l = 0, p = 0;
    for (size_t i = 0; i < sizeof vgg_cfg / sizeof vgg_cfg[0]; i++) {
        char cn[32], bn[32];
        if (vgg_cfg[i] < 0) {
            v->pool_after[l - 1] = 1;
            v->ph[p] = h; v->pw[p] = w;
            h /= 2; w /= 2;
            v->pool[p++] = model_act(m, (size_t)c * h * w);
            idx++;
            continue;
        }
        snprintf(cn, sizeof cn, "features.%d", idx); snprintf(bn, sizeof bn, "features.%d", idx + 1);
        if (convbn_make_ex(m, &v->c[l], cn, bn, c, vgg_cfg[i], h, w, 3, 1, 1, 1, 1, 1, 1, NULL)) goto fail;
        c = vgg_cfg[i]; idx += 3; l++;
    }
    if (classifier_head_make(m, &v->fc, "classifier", 512, 0)) goto fail;
    return 0;
fail:
    return model_build_failed(m, "", err, errlen);
}

static void vgg_forward(Model *m, int B, int training) {
    Vgg *v = m->net;
    const float *x = m->input;
    for (int l = 0, p = 0; l < VGG_LAYERS; l++) {
        convbn_fw(m, &v->c[l], B, x, training);
        x = v->c[l].z;
        if (v->pool_after[l]) {
            m->ops->maxpool2x2_forward(B, v->c[l].conv.d.cout, v->ph[p], v->pw[p], v->pool[p], x);
            x = v->pool[p++];
        }
    }
    classifier_head_fw(m, &v->fc, B, x);
}

static void vgg_backward(Model *m, int B) {
    Vgg *v = m->net;
    float *a = m->gbuf[0], *b = m->gbuf[1];
    classifier_head_bw(m, &v->fc, B, a, NULL);   // a = d(pool 4)
    int p = 4;
    for (int l = VGG_LAYERS - 1; l >= 0; l--) {
        if (v->pool_after[l]) {   // a = d(pool p) -> b = d(conv l's output)
            m->ops->maxpool2x2_backward(B, v->c[l].conv.d.cout, v->ph[p], v->pw[p], b, a, v->c[l].z);
            p--;
            float *t = a; a = b; b = t;
        }
        const float *x = l == 0 ? m->input : (v->pool_after[l - 1] ? v->pool[p] : v->c[l - 1].z);
        convbn_bw(m, &v->c[l], B, l ? a : NULL, a, b, x, 0);   // a = d(x)
    }
}

const ModelArch model_arch_vgg16 = {"vgg16", vgg_build, vgg_forward, vgg_backward};
