// trainer/models/resnet18.c — ResNet-18, CIFAR variant (torchvision resnet18 with conv1 replaced by a
// 3x3 stride-1 conv without bias and maxpool = Identity): stem conv-BN-ReLU, BasicBlocks [2,2,2,2] of
// widths 64..512 (stride 2 from layer2 on, 1x1 conv + BN downsample when the shape changes), global
// average pool, fc. 11,173,962 parameters for 3 input channels and 10 classes.
// Activations kept for backward per block: conv1 out, bn1+relu out, conv2 out, block out (+ downsample
// conv out), as PyTorch's autograd keeps them; the downsample BN output lives in gradient scratch.
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_arch_resnet18

typedef struct {
    ConvBn c1, c2, ds;
    int has_ds;
    float *out;          // relu(bn2(conv2) + shortcut)
    const float *in;
} Block;

typedef struct {
    ConvBn stem;
    Block blk[8];
    ClassifierHead fc;   // global average pool over layer4's output, fc
} ResNet;

static int resnet_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    ResNet *r = model_net_alloc(m, sizeof *r, err, errlen);
    if (!r) return -1;
    int h = cfg->height, w = cfg->width, c = 64;
    if (convbn_make(m, &r->stem, "conv1", "bn1", cfg->in_channels, 64, h, w, 3, 1, 1, 1, NULL)) goto fail;
    const float *in = r->stem.z;
    for (int L = 0; L < 4; L++)
        for (int b = 0; b < 2; b++) {
            Block *k = &r->blk[2 * L + b];
            int planes = 64 << L, stride = (L > 0 && b == 0) ? 2 : 1;
            char p[64], q[64];
            ConvDesc d;
            if (ops_conv2d_desc(&d, c, planes, h, w, 3, stride, 1, 1)) goto fail;
            k->out = model_act(m, (size_t)planes * d.oh * d.ow);
            k->in = in;
            snprintf(p, sizeof p, "layer%d.%d.conv1", L + 1, b); snprintf(q, sizeof q, "layer%d.%d.bn1", L + 1, b);
            if (convbn_make(m, &k->c1, p, q, c, planes, h, w, 3, stride, 1, 1, NULL)) goto fail;
            snprintf(p, sizeof p, "layer%d.%d.conv2", L + 1, b); snprintf(q, sizeof q, "layer%d.%d.bn2", L + 1, b);
            if (convbn_make(m, &k->c2, p, q, planes, planes, d.oh, d.ow, 3, 1, 1, 0, k->out)) goto fail;
            k->has_ds = stride != 1 || c != planes;
            if (k->has_ds) {
                snprintf(p, sizeof p, "layer%d.%d.downsample.0", L + 1, b);
                snprintf(q, sizeof q, "layer%d.%d.downsample.1", L + 1, b);
                // z is gradient scratch, set in forward (the out buffer here only avoids an allocation)
                if (convbn_make(m, &k->ds, p, q, c, planes, h, w, 1, stride, 0, 0, k->out)) goto fail;
            }
            c = planes; h = d.oh; w = d.ow; in = k->out;
        }
    if (classifier_head_make(m, &r->fc, "fc", 512, h * w)) goto fail;
    return 0;
fail:
    return model_build_failed(m, "", err, errlen);
}

static size_t block_out_floats(const Block *k) { return convbn_out_floats(&k->c2); }

static void resnet_forward(Model *m, int B, int training) {
    ResNet *r = m->net;
    convbn_fw(m, &r->stem, B, m->input, training);
    for (int i = 0; i < 8; i++) {
        Block *k = &r->blk[i];
        size_t n = (size_t)B * block_out_floats(k);
        convbn_fw(m, &k->c1, B, k->in, training);
        convbn_fw(m, &k->c2, B, k->c1.z, training);
        const float *sc = k->in;
        if (k->has_ds) {
            k->ds.z = m->gbuf[0];
            if (!k->ds.has_bn) k->ds.y = m->gbuf[0];
            convbn_fw(m, &k->ds, B, k->in, training);
            sc = m->gbuf[0];
        }
        m->ops->add(n, k->out, k->out, sc);
        m->ops->relu_forward(n, k->out, k->out);
    }
    classifier_head_fw(m, &r->fc, B, r->blk[7].out);
}

static void resnet_backward(Model *m, int B) {
    ResNet *r = m->net;
    float *a = m->gbuf[0], *b = m->gbuf[1], *c = m->gbuf[2];
    classifier_head_bw(m, &r->fc, B, a, b);
    for (int i = 7; i >= 0; i--) {
        Block *k = &r->blk[i];
        size_t n = (size_t)B * block_out_floats(k);
        m->ops->relu_backward(n, a, a, k->out);                          // a = d(bn2 out + shortcut)
        if (k->has_ds) convbn_bw(m, &k->ds, B, c, a, b, k->in, 0);       // c = d(in) via shortcut
        else m->ops->copy(c, a, sizeof(float) * n);
        convbn_bw(m, &k->c2, B, a, a, b, k->c1.z, 0);                    // a = d(c1.z)
        convbn_bw(m, &k->c1, B, c, a, b, k->in, 1);                      // c += d(in) via the main path
        float *t = a; a = c; c = t;
    }
    convbn_bw(m, &r->stem, B, NULL, a, b, m->input, 0);
}

const ModelArch model_arch_resnet18 = {"resnet18", resnet_build, resnet_forward, resnet_backward};
