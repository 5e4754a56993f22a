// trainer/models/unet.c — UNet(cin, ncls, w, depth=3) of ../shared/bench/torch_peer.py: per level two
// conv3x3-BN-ReLU, max pool 2; a mid pair at w<<3; decoder: ConvTranspose2d(2, stride 2), concat with the
// skip ([up, skip] channel order), two conv3x3-BN-ReLU; 1x1 head with bias. 482,619 parameters for
// cin=1, 11 classes, w=16 (121,123 for w=8). Input sides must be multiples of 8.
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_arch_unet

#define UNET_DEPTH 3

typedef struct {
    ConvBn down[UNET_DEPTH][2], mid[2], dec[UNET_DEPTH][2];
    int up_w[UNET_DEPTH], up_b[UNET_DEPTH];   // ConvTranspose2d (cin, cout, 2, 2) + bias
    int up_cin[UNET_DEPTH];
    float *pool[UNET_DEPTH];   // max pool of each level's output (the skip is down[d][1].z)
    float *up[UNET_DEPTH], *cat[UNET_DEPTH];
    float *dskip[UNET_DEPTH];  // gradient of each skip coming from the decoder
    Conv head;
    int H, W, w;
} UNet;

static int unet_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    int w = cfg->base_width > 0 ? cfg->base_width : 16;
    if (cfg->height % 8 || cfg->width % 8) {
        snprintf(err, errlen, "model unet: input %dx%d: height and width must be multiples of 8 (3 poolings)",
                 cfg->height, cfg->width);
        return -1;
    }
    UNet *u = model_net_alloc(m, sizeof *u, err, errlen);
    if (!u) return -1;
    u->H = cfg->height; u->W = cfg->width; u->w = w;
    char cn[64], bn[64];
    int c = cfg->in_channels;
    for (int d = 0; d < UNET_DEPTH; d++) {
        int h = u->H >> d, wd = u->W >> d, o = w << d;
        for (int j = 0; j < 2; j++) {
            snprintf(cn, sizeof cn, "down.%d.%d.0", d, j); snprintf(bn, sizeof bn, "down.%d.%d.1", d, j);
            if (convbn_make(m, &u->down[d][j], cn, bn, j ? o : c, o, h, wd, 3, 1, 1, 1, NULL)) goto fail;
        }
        u->pool[d] = model_act(m, (size_t)o * (h / 2) * (wd / 2));
        c = o;
    }
    for (int j = 0; j < 2; j++) {
        int o = w << UNET_DEPTH;
        snprintf(cn, sizeof cn, "mid.%d.0", j); snprintf(bn, sizeof bn, "mid.%d.1", j);
        if (convbn_make(m, &u->mid[j], cn, bn, j ? o : c, o, u->H >> UNET_DEPTH, u->W >> UNET_DEPTH, 3, 1, 1, 1,
                        NULL)) goto fail;
    }
    c = w << UNET_DEPTH;
    for (int i = 0; i < UNET_DEPTH; i++) {      // registered in execution order: up.i then dec.i
        int d = UNET_DEPTH - 1 - i, o = w << d, h = u->H >> d, wd = u->W >> d;
        snprintf(cn, sizeof cn, "up.%d.weight", i);
        u->up_w[i] = model_add_param(m, cn, TENSOR_WEIGHT, 4, (int[]){c, o, 2, 2}, o * 4);
        snprintf(cn, sizeof cn, "up.%d.bias", i);
        u->up_b[i] = model_add_param(m, cn, TENSOR_BIAS, 1, (int[]){o}, o * 4);
        u->up_cin[i] = c;
        model_need_ws(m, m->ops->convt2x2_workspace(c, o, h / 2, wd / 2));
        u->up[i] = model_act(m, (size_t)o * h * wd);
        u->cat[i] = model_act(m, (size_t)2 * o * h * wd);
        u->dskip[i] = model_act(m, (size_t)o * h * wd);
        for (int j = 0; j < 2; j++) {
            snprintf(cn, sizeof cn, "dec.%d.%d.0", i, j); snprintf(bn, sizeof bn, "dec.%d.%d.1", i, j);
            if (convbn_make(m, &u->dec[i][j], cn, bn, j ? o : 2 * o, o, h, wd, 3, 1, 1, 1, NULL)) goto fail;
        }
        c = o;
    }
    if (conv_make(m, &u->head, "head", c, cfg->classes, u->H, u->W, 1, 1, 0, 1) || model_logits_make(m, 1)) goto fail;
    return 0;
fail:
    return model_build_failed(m, "", err, errlen);
}

static void unet_forward(Model *m, int B, int training) {
    UNet *u = m->net;
    const float *x = m->input;
    for (int d = 0; d < UNET_DEPTH; d++) {
        convbn_fw(m, &u->down[d][0], B, x, training);
        convbn_fw(m, &u->down[d][1], B, u->down[d][0].z, training);
        m->ops->maxpool2x2_forward(B, u->w << d, u->H >> d, u->W >> d, u->pool[d], u->down[d][1].z);
        x = u->pool[d];
    }
    convbn_fw(m, &u->mid[0], B, x, training);
    convbn_fw(m, &u->mid[1], B, u->mid[0].z, training);
    x = u->mid[1].z;
    for (int i = 0; i < UNET_DEPTH; i++) {
        int d = UNET_DEPTH - 1 - i, o = u->w << d, h = u->H >> d, wd = u->W >> d;
        m->ops->convt2x2_forward(B, u->up_cin[i], o, h / 2, wd / 2, u->up[i], x, P(m, u->up_w[i]),
                                 P(m, u->up_b[i]), m->ws);
        m->ops->concat_forward(B, o, o, h * wd, u->cat[i], u->up[i], u->down[d][1].z);
        convbn_fw(m, &u->dec[i][0], B, u->cat[i], training);
        convbn_fw(m, &u->dec[i][1], B, u->dec[i][0].z, training);
        x = u->dec[i][1].z;
    }
    conv_fw(m, &u->head, B, m->logits, x);
}

static void unet_backward(Model *m, int B) {
    UNet *u = m->net;
    float *a = m->gbuf[0], *b = m->gbuf[1];
    conv_bw(m, &u->head, B, a, m->dlogits, u->dec[UNET_DEPTH - 1][1].z, 0);
    for (int i = UNET_DEPTH - 1; i >= 0; i--) {
        int d = UNET_DEPTH - 1 - i, o = u->w << d, h = u->H >> d, wd = u->W >> d;
        convbn_bw(m, &u->dec[i][1], B, a, a, b, u->dec[i][0].z, 0);
        convbn_bw(m, &u->dec[i][0], B, a, a, b, u->cat[i], 0);             // a = d(cat)
        m->ops->concat_backward(B, o, o, h * wd, b, u->dskip[i], a);        // b = d(up)
        const float *x = i ? u->dec[i - 1][1].z : u->mid[1].z;
        m->ops->convt2x2_backward(B, u->up_cin[i], o, h / 2, wd / 2, a, G(m, u->up_w[i]), G(m, u->up_b[i]), b, x,
                                  P(m, u->up_w[i]), m->ws);                 // a = d(x)
        model_grads_done(m, u->up_w[i]);
    }
    convbn_bw(m, &u->mid[1], B, a, a, b, u->mid[0].z, 0);
    convbn_bw(m, &u->mid[0], B, a, a, b, u->pool[UNET_DEPTH - 1], 0);      // a = d(pool[2])
    for (int d = UNET_DEPTH - 1; d >= 0; d--) {
        int o = u->w << d, h = u->H >> d, wd = u->W >> d;
        const float *skip = u->down[d][1].z;
        m->ops->maxpool2x2_backward(B, o, h, wd, b, a, skip);
        m->ops->accumulate((size_t)B * o * h * wd, b, u->dskip[UNET_DEPTH - 1 - d]);   // b = d(skip)
        float *t = a; a = b; b = t;
        convbn_bw(m, &u->down[d][1], B, a, a, b, u->down[d][0].z, 0);
        convbn_bw(m, &u->down[d][0], B, d ? a : NULL, a, b, d ? u->pool[d - 1] : m->input, 0);
    }
}

const ModelArch model_arch_unet = {"unet", unet_build, unet_forward, unet_backward};
