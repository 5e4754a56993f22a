// trainer/models/mobilenet_v2.c — MobileNetV2, CIFAR variant (../shared/bench/models_ref.py MobileNetV2):
// stem conv3x3(32)-BN-ReLU6 at stride 1, 17 inverted residual blocks (expand 1x1 - BN - ReLU6, depthwise
// 3x3 - BN - ReLU6, project 1x1 - BN; identity shortcut when stride 1 and the width stays), a 1x1
// conv to 1280 - BN - ReLU6, global average pool, linear. Stages (t, c, n, s): (1,16,1,1) (6,24,2,1)
// (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1). 2,236,682 parameters for 3 -> 10.
// state_dict: features.0.{0,1}, features.<b>.conv.<i>.* (a block without expansion starts at the
// depthwise conv), features.18.{0,1}, classifier.*
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_arch_mobilenet_v2

#define MB_BLOCKS 17
static const int mb_cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 1}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1},
                                 {6, 160, 3, 2}, {6, 320, 1, 1}};

typedef struct {
    ConvBn expand, dw, project;   // expand unused when t == 1
    int has_expand, residual;
    const float *in;
    float *out;                   // project's BN output (+ the input when residual)
} MbBlock;

typedef struct {
    ConvBn stem, last;
    MbBlock blk[MB_BLOCKS];
    ClassifierHead fc;   // global average pool, classifier
} MobileNet;

static int mb_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    MobileNet *n = model_net_alloc(m, sizeof *n, err, errlen);
    if (!n) return -1;
    int h = cfg->height, w = cfg->width, c = 32, b = 0;
    if (convbn_make_ex(m, &n->stem, "features.0.0", "features.0.1", cfg->in_channels, 32, h, w, 3, 1, 1, 1, 1, 2, 0, NULL))
        goto fail;
    const float *in = n->stem.z;
    for (int s = 0; s < 7; s++)
        for (int r = 0; r < mb_cfg[s][2]; r++, b++) {
            MbBlock *k = &n->blk[b];
            int t = mb_cfg[s][0], o = mb_cfg[s][1], stride = r == 0 ? mb_cfg[s][3] : 1, hid = c * t, i = 0;
            char cn[64], bn[64];
            k->in = in;
            k->has_expand = t != 1;
            k->residual = stride == 1 && c == o;
            if (k->has_expand) {
                snprintf(cn, sizeof cn, "features.%d.conv.0.0", b + 1); snprintf(bn, sizeof bn, "features.%d.conv.0.1", b + 1);
                if (convbn_make_ex(m, &k->expand, cn, bn, c, hid, h, w, 1, 1, 0, 1, 1, 2, 0, NULL)) goto fail;
                i = 1;
            }
            snprintf(cn, sizeof cn, "features.%d.conv.%d.0", b + 1, i); snprintf(bn, sizeof bn, "features.%d.conv.%d.1", b + 1, i);
            if (convbn_make_ex(m, &k->dw, cn, bn, hid, hid, h, w, 3, stride, 1, 1, hid, 2, 0, NULL)) goto fail;
            h = k->dw.conv.d.oh; w = k->dw.conv.d.ow;
            snprintf(cn, sizeof cn, "features.%d.conv.%d", b + 1, i + 1); snprintf(bn, sizeof bn, "features.%d.conv.%d", b + 1, i + 2);
            if (convbn_make_ex(m, &k->project, cn, bn, hid, o, h, w, 1, 1, 0, 1, 1, 0, 0, NULL)) goto fail;
            k->out = k->residual ? model_act(m, (size_t)o * h * w) : k->project.z;
            in = k->out; c = o;
        }
    if (convbn_make_ex(m, &n->last, "features.18.0", "features.18.1", c, 1280, h, w, 1, 1, 0, 1, 1, 2, 0, NULL)) goto fail;
    if (classifier_head_make(m, &n->fc, "classifier", 1280, h * w)) goto fail;
    return 0;
fail:
    return model_build_failed(m, " (3 stride-2 stages)", err, errlen);
}

static void mb_forward(Model *m, int B, int training) {
    MobileNet *n = m->net;
    convbn_fw(m, &n->stem, B, m->input, training);
    for (int b = 0; b < MB_BLOCKS; b++) {
        MbBlock *k = &n->blk[b];
        const float *x = k->in;
        if (k->has_expand) { convbn_fw(m, &k->expand, B, x, training); x = k->expand.z; }
        convbn_fw(m, &k->dw, B, x, training);
        convbn_fw(m, &k->project, B, k->dw.z, training);
        if (k->residual) m->ops->add((size_t)B * convbn_out_floats(&k->project), k->out, k->project.z, k->in);
    }
    convbn_fw(m, &n->last, B, n->blk[MB_BLOCKS - 1].out, training);
    classifier_head_fw(m, &n->fc, B, n->last.z);
}

static void mb_backward(Model *m, int B) {
    MobileNet *n = m->net;
    float *a = m->gbuf[0], *b = m->gbuf[1], *c = m->gbuf[2];
    classifier_head_bw(m, &n->fc, B, a, b);
    convbn_bw(m, &n->last, B, a, a, b, n->blk[MB_BLOCKS - 1].out, 0);   // a = d(last block's out)
    for (int i = MB_BLOCKS - 1; i >= 0; i--) {
        MbBlock *k = &n->blk[i];
        // a = d(out); a residual block passes it on to its input as well (c keeps a copy)
        if (k->residual) m->ops->copy(c, a, sizeof(float) * B * convbn_out_floats(&k->project));
        convbn_bw(m, &k->project, B, a, a, b, k->dw.z, 0);                     // a = d(dw.z)
        const float *x = k->has_expand ? k->expand.z : k->in;
        convbn_bw(m, &k->dw, B, a, a, b, x, 0);                                // a = d(x of dw)
        if (k->has_expand) convbn_bw(m, &k->expand, B, a, a, b, k->in, 0);   // a = d(in)
        if (k->residual) m->ops->accumulate((size_t)B * convbn_out_floats(&k->project), a, c);
    }
    convbn_bw(m, &n->stem, B, NULL, a, b, m->input, 0);
}

const ModelArch model_arch_mobilenet_v2 = {"mobilenet_v2", mb_build, mb_forward, mb_backward};
