// trainer/models/shufflenet_v2.c — ShuffleNetV2 1.0x, CIFAR variant (../shared/bench/models_ref.py
// ShuffleNetV2, torchvision's units): conv3x3(24)-BN-ReLU at stride 1 (no max pool), stages of 4, 8, 4
// units with 116, 232, 464 channels, conv1x1(1024)-BN-ReLU, global average pool, fc. A stride-2 unit
// concatenates branch1 (depthwise 3x3/2 - BN - 1x1 - BN - ReLU) and branch2 (1x1 - BN - ReLU -
// depthwise 3x3/2 - BN - 1x1 - BN - ReLU) of its input; a stride-1 unit splits its input in halves,
// keeps the first and runs branch2 on the second; both end with a channel shuffle of 2 groups.
// 1,263,854 parameters for 3 -> 10. state_dict: conv1.{0,1}, stage<s>.<u>.branch{1,2}.<i>, conv5.{0,1}, fc.
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_arch_shufflenet_v2

#define SN_UNITS 16
static const int sn_stages[3] = {116, 232, 464}, sn_repeats[3] = {4, 8, 4};

typedef struct {
    ConvBn b1dw, b1c, b2a, b2dw, b2c;   // branch1 only when stride 2
    int stride, cin, cout, half, hw_in, hw;
    const float *in;
    float *x2;     // stride 1: the second half of the input (branch2's input), contiguous
    float *out;    // after the shuffle
} Unit;

typedef struct {
    ConvBn stem, last;
    Unit u[SN_UNITS];
    ClassifierHead fc;   // global average pool, fc
} ShuffleNet;

static int sn_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    ShuffleNet *n = model_net_alloc(m, sizeof *n, err, errlen);
    if (!n) return -1;
    int h = cfg->height, w = cfg->width, c = 24, k = 0;
    if (convbn_make(m, &n->stem, "conv1.0", "conv1.1", cfg->in_channels, 24, h, w, 3, 1, 1, 1, NULL)) goto fail;
    const float *in = n->stem.z;
    for (int s = 0; s < 3; s++)
        for (int r = 0; r < sn_repeats[s]; r++, k++) {
            Unit *u = &n->u[k];
            int o = sn_stages[s], b = o / 2, st = r == 0 ? 2 : 1, bi = st > 1 ? c : b;
            char p[64], q[64];
            u->stride = st; u->cin = c; u->cout = o; u->half = b; u->in = in; u->hw_in = h * w;
            if (st > 1) {
                snprintf(p, sizeof p, "stage%d.%d.branch1.0", s + 2, r); snprintf(q, sizeof q, "stage%d.%d.branch1.1", s + 2, r);
                if (convbn_make_ex(m, &u->b1dw, p, q, c, c, h, w, 3, 2, 1, 1, c, 0, 0, NULL)) goto fail;
                int oh = u->b1dw.conv.d.oh, ow = u->b1dw.conv.d.ow;
                snprintf(p, sizeof p, "stage%d.%d.branch1.2", s + 2, r); snprintf(q, sizeof q, "stage%d.%d.branch1.3", s + 2, r);
                if (convbn_make(m, &u->b1c, p, q, c, b, oh, ow, 1, 1, 0, 1, NULL)) goto fail;
            } else {
                u->x2 = model_act(m, (size_t)b * h * w);
            }
            snprintf(p, sizeof p, "stage%d.%d.branch2.0", s + 2, r); snprintf(q, sizeof q, "stage%d.%d.branch2.1", s + 2, r);
            if (convbn_make(m, &u->b2a, p, q, bi, b, h, w, 1, 1, 0, 1, NULL)) goto fail;
            snprintf(p, sizeof p, "stage%d.%d.branch2.3", s + 2, r); snprintf(q, sizeof q, "stage%d.%d.branch2.4", s + 2, r);
            if (convbn_make_ex(m, &u->b2dw, p, q, b, b, h, w, 3, st, 1, 1, b, 0, 0, NULL)) goto fail;
            h = u->b2dw.conv.d.oh; w = u->b2dw.conv.d.ow;
            snprintf(p, sizeof p, "stage%d.%d.branch2.5", s + 2, r); snprintf(q, sizeof q, "stage%d.%d.branch2.6", s + 2, r);
            if (convbn_make(m, &u->b2c, p, q, b, b, h, w, 1, 1, 0, 1, NULL)) goto fail;
            u->hw = h * w;
            u->out = model_act(m, (size_t)o * h * w);
            model_act(m, (size_t)o * u->hw_in);   // sizes the scratch buffers for the concat at the input size
            in = u->out; c = o;
        }
    if (convbn_make(m, &n->last, "conv5.0", "conv5.1", c, 1024, h, w, 1, 1, 0, 1, NULL)) goto fail;
    if (classifier_head_make(m, &n->fc, "fc", 1024, h * w)) goto fail;
    return 0;
fail:
    return model_build_failed(m, " (3 stride-2 stages)", err, errlen);
}

static void sn_forward(Model *m, int B, int training) {
    ShuffleNet *n = m->net;
    const Ops *o = m->ops;
    float *cat = m->gbuf[2];   // scratch: the concat before the shuffle
    convbn_fw(m, &n->stem, B, m->input, training);
    for (int k = 0; k < SN_UNITS; k++) {
        Unit *u = &n->u[k];
        int b = u->half, C = u->cout;
        if (u->stride > 1) {
            convbn_fw(m, &u->b1dw, B, u->in, training);
            convbn_fw(m, &u->b1c, B, u->b1dw.z, training);
            convbn_fw(m, &u->b2a, B, u->in, training);
            o->channel_copy(B, u->hw, b, cat, C, 0, u->b1c.z, b, 0, 0);
        } else {
            o->channel_copy(B, u->hw, b, u->x2, b, 0, u->in, C, b, 0);   // split
            convbn_fw(m, &u->b2a, B, u->x2, training);
            o->channel_copy(B, u->hw, b, cat, C, 0, u->in, C, 0, 0);     // the first half passes through
        }
        convbn_fw(m, &u->b2dw, B, u->b2a.z, training);
        convbn_fw(m, &u->b2c, B, u->b2dw.z, training);
        o->channel_copy(B, u->hw, b, cat, C, b, u->b2c.z, b, 0, 0);
        o->channel_shuffle(B, C, 2, u->hw, u->out, cat);
    }
    convbn_fw(m, &n->last, B, n->u[SN_UNITS - 1].out, training);
    classifier_head_fw(m, &n->fc, B, n->last.z);
}

static void sn_backward(Model *m, int B) {
    ShuffleNet *n = m->net;
    const Ops *o = m->ops;
    float *a = m->gbuf[0], *g1 = m->gbuf[1], *g2 = m->gbuf[2];
    classifier_head_bw(m, &n->fc, B, a, g1);
    convbn_bw(m, &n->last, B, a, a, g1, n->u[SN_UNITS - 1].out, 0);     // a = d(last unit's out)
    for (int k = SN_UNITS - 1; k >= 0; k--) {
        Unit *u = &n->u[k];
        int b = u->half, C = u->cout;
        o->channel_shuffle(B, C, C / 2, u->hw, g1, a);                      // g1 = d(cat)
        if (u->stride == 1) {
            o->channel_copy(B, u->hw, b, g2, b, 0, g1, C, b, 0);            // g2 = d(branch2 out)
            convbn_bw(m, &u->b2c, B, g2, g2, a, u->b2dw.z, 0);
            convbn_bw(m, &u->b2dw, B, g2, g2, a, u->b2a.z, 0);
            convbn_bw(m, &u->b2a, B, g2, g2, a, u->x2, 0);                  // g2 = d(x2)
            o->channel_copy(B, u->hw, b, a, C, 0, g1, C, 0, 0);             // a = d(in) = [d x1, d x2]
            o->channel_copy(B, u->hw, b, a, C, b, g2, b, 0, 0);
            continue;
        }
        o->channel_copy(B, u->hw, b, g2, b, 0, g1, C, 0, 0);                // g2 = d(branch1 out)
        o->channel_copy(B, u->hw, b, a, b, 0, g1, C, b, 0);                 // a = d(branch2 out)
        convbn_bw(m, &u->b2c, B, a, a, g1, u->b2dw.z, 0);
        convbn_bw(m, &u->b2dw, B, a, a, g1, u->b2a.z, 0);
        convbn_bw(m, &u->b2a, B, a, a, g1, u->in, 0);                       // a = d(in) through branch2
        convbn_bw(m, &u->b1c, B, g2, g2, g1, u->b1dw.z, 0);
        convbn_bw(m, &u->b1dw, B, a, g2, g1, u->in, 1);                     // a += d(in) through branch1
    }
    convbn_bw(m, &n->stem, B, NULL, a, g1, m->input, 0);
}

const ModelArch model_arch_shufflenet_v2 = {"shufflenet_v2", sn_build, sn_forward, sn_backward};
