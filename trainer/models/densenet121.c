// trainer/models/densenet121.c — DenseNet-121, CIFAR variant (../shared/bench/models_ref.py DenseNet121):
// conv3x3(64), dense blocks of 6, 12, 24, 16 layers (BN-ReLU-conv1x1(128)-BN-ReLU-conv3x3(32), output
// concatenated to the layer's input), transitions BN-ReLU-conv1x1(c/2)-avgpool2 between blocks, BN-ReLU,
// global average pool, linear. 6,956,298 parameters for 3 -> 10. state_dict: conv0, features.<i>.{norm1,
// conv1, norm2, conv2} / features.<i>.{norm, conv} (layers and transitions counted together), norm5,
// classifier.
//
// Memory (the memory-efficient DenseNet idea): each block has ONE feature buffer of its final width in
// channel-major layout (C, B, H*W). A layer appends its 32 channels there, and the input of every
// layer - all channels so far - is a prefix of that buffer: no concatenation copies at all. Batch norm
// over (B, HW) per channel is the same computation over a (1, C, B*HW) tensor, and a 1x1 convolution
// of it is one GEMM over B*HW columns, so norm1 and conv1 (and the transition) run on the prefix in
// place. norm1's output (as wide as the prefix) is not kept: backward recomputes it from the buffer
// with the saved statistics (batchnorm_apply). Kept per layer: conv1's and norm2's outputs (128
// channels each); only the 3x3 conv runs in NCHW (swap_dims01 around it).
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_arch_densenet121

#define DN_K 32
#define DN_BLOCKS 4
#define DN_MAX_LAYERS 24
static const int dn_layers[DN_BLOCKS] = {6, 12, 24, 16};

typedef struct {
    Bn norm1, norm2;
    int conv1_w, conv2_w;      // conv1: 1x1 c -> 128 (run as (1, c, 1, B*HW)); conv2: 3x3 128 -> 32 NCHW
    Conv conv2;
    int c;                     // input channels
    float *y1, *z2;            // conv1 out, norm2+relu out: (128, B, HW)
} DenseLayer;

typedef struct {
    int cin, ctot, h, w, n;    // channels in, channels out, size, layers
    float *S;                  // (ctot, B, HW)
    DenseLayer l[DN_MAX_LAYERS];
    Bn tnorm; int tconv_w;     // transition after the block (not after the last)
} Block;

typedef struct {
    Conv conv0;
    Block b[DN_BLOCKS];
    Bn norm5;
    float *z5, *gap, *gapT;    // the pool runs channel-major here: (C, B) transposed to (B, C)
    ClassifierHead fc;         // the linear layer on gap
    // scratch (largest block): recomputed BN outputs, gradients, NCHW views
    float *s_bn, *s_g1, *s_g2, *s_t, *s_u, *dS[2];
} DenseNet;

static int dn_build(Model *m, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    if (cfg->height < 8 || cfg->width < 8) {
        snprintf(err, errlen, "model densenet121: input %dx%d is too small (3 transitions halve it)", cfg->height, cfg->width);
        return -1;
    }
    DenseNet *d = model_net_alloc(m, sizeof *d, err, errlen);
    if (!d) return -1;
    int h = cfg->height, w = cfg->width, c = 2 * DN_K, idx = 0;
    size_t big = 0;   // floats per sample of the widest (channels x HW) buffer
    if (conv_make(m, &d->conv0, "conv0", cfg->in_channels, c, h, w, 3, 1, 1, 0)) goto fail;
    char nm[96];
    for (int bi = 0; bi < DN_BLOCKS; bi++) {
        Block *b = &d->b[bi];
        b->cin = c; b->h = h; b->w = w; b->n = dn_layers[bi];
        b->ctot = c + b->n * DN_K;
        size_t hw = (size_t)h * w;
        b->S = model_act(m, (size_t)b->ctot * hw);
        if ((size_t)b->ctot * hw > big) big = (size_t)b->ctot * hw;
        for (int li = 0; li < b->n; li++, idx++) {
            DenseLayer *L = &b->l[li];
            L->c = c;
            snprintf(nm, sizeof nm, "features.%d.norm1", idx);
            if (bn_make(m, &L->norm1, nm, c)) goto fail;
            snprintf(nm, sizeof nm, "features.%d.conv1.weight", idx);
            L->conv1_w = model_add_param(m, nm, TENSOR_WEIGHT, 4, (int[]){4 * DN_K, c, 1, 1}, c);
            ConvDesc cd;   // the 1x1 conv over (1, c, 1, B*HW) at the largest batch, for the workspace
            ops_conv2d_desc(&cd, c, 4 * DN_K, 1, (int)(hw * cfg->max_batch), 1, 1, 0, 1);
            model_need_ws(m, m->ops->conv2d_workspace(&cd, 1));
            snprintf(nm, sizeof nm, "features.%d.norm2", idx);
            if (bn_make(m, &L->norm2, nm, 4 * DN_K)) goto fail;
            snprintf(nm, sizeof nm, "features.%d.conv2", idx);
            if (conv_make(m, &L->conv2, nm, 4 * DN_K, DN_K, h, w, 3, 1, 1, 0)) goto fail;
            L->y1 = model_act(m, 4 * DN_K * hw);
            L->z2 = model_act(m, 4 * DN_K * hw);
            c += DN_K;
        }
        if (bi < DN_BLOCKS - 1) {
            snprintf(nm, sizeof nm, "features.%d.norm", idx);
            if (bn_make(m, &b->tnorm, nm, c)) goto fail;
            snprintf(nm, sizeof nm, "features.%d.conv.weight", idx);
            b->tconv_w = model_add_param(m, nm, TENSOR_WEIGHT, 4, (int[]){c / 2, c, 1, 1}, c);
            ConvDesc cd;
            ops_conv2d_desc(&cd, c, c / 2, 1, (int)(hw * cfg->max_batch), 1, 1, 0, 1);
            model_need_ws(m, m->ops->conv2d_workspace(&cd, 1));
            idx++;
            c /= 2; h /= 2; w /= 2;
        }
    }
    if (bn_make(m, &d->norm5, "norm5", c)) goto fail;
    d->z5 = model_act(m, (size_t)c * h * w);
    d->gap = model_act(m, c);
    d->gapT = model_act(m, c);
    classifier_head_make(m, &d->fc, "classifier", c, 0);
    d->s_bn = model_act(m, big);
    d->s_g1 = model_act(m, big);
    d->s_g2 = model_act(m, big);
    d->s_t = model_act(m, big);
    d->s_u = model_act(m, big);
    d->dS[0] = model_act(m, big);
    d->dS[1] = model_act(m, big);
    if (m->failed) goto fail;
    return 0;
fail:
    return model_build_failed(m, "", err, errlen);
}

// y (cout, B*HW) = W (cout, cin) x (cin, B*HW): a 1x1 convolution of a channel-major tensor
static void cm_conv1x1_fw(Model *m, int w, int cin, int cout, long cols, float *y, const float *x) {
    ConvDesc cd;
    ops_conv2d_desc(&cd, cin, cout, 1, (int)cols, 1, 1, 0, 1);
    m->ops->conv2d_forward(&cd, 1, y, x, P(m, w), NULL, m->ws);
}
static void cm_conv1x1_bw(Model *m, int w, int cin, int cout, long cols, float *dx, const float *dy, const float *x) {
    ConvDesc cd;
    ops_conv2d_desc(&cd, cin, cout, 1, (int)cols, 1, 1, 0, 1);
    m->ops->conv2d_backward(&cd, 1, dx, G(m, w), NULL, dy, x, P(m, w), m->ws, 0);
    model_grads_done(m, w);
}

static void bn_fw(Model *m, Bn *bn, long cols, float *y, const float *x, int training, int relu) {
    m->ops->batchnorm_forward(1, bn->C, (int)cols, y, bn->mean, bn->invstd, x, P(m, bn->w), P(m, bn->b), BUF(m, bn->rm),
                              BUF(m, bn->rv), BUF(m, bn->nbt), training, relu, &m->sync);
}
static void bn_bw(Model *m, Bn *bn, long cols, float *dx, const float *dy, const float *x, const float *y) {
    m->ops->batchnorm_backward(1, bn->C, (int)cols, dx, G(m, bn->w), G(m, bn->b), dy, x, y, bn->mean, bn->invstd,
                               P(m, bn->w), 1, &m->sync);
    model_grads_done(m, bn->w);
}

static void dn_forward(Model *m, int B, int training) {
    DenseNet *d = m->net;
    const Ops *o = m->ops;
    Block *b0 = &d->b[0];
    conv_fw(m, &d->conv0, B, d->s_t, m->input);                               // (B, 64, HW)
    o->swap_dims01(B, b0->cin, b0->h * b0->w, b0->S, d->s_t);                  // -> S[0:64] channel-major
    for (int bi = 0; bi < DN_BLOCKS; bi++) {
        Block *b = &d->b[bi];
        int hw = b->h * b->w;
        long cols = (long)B * hw;
        for (int li = 0; li < b->n; li++) {
            DenseLayer *L = &b->l[li];
            bn_fw(m, &L->norm1, cols, d->s_bn, b->S, training, 1);                        // prefix of S
            cm_conv1x1_fw(m, L->conv1_w, L->c, 4 * DN_K, cols, L->y1, d->s_bn);
            bn_fw(m, &L->norm2, cols, L->z2, L->y1, training, 1);
            o->swap_dims01(4 * DN_K, B, hw, d->s_t, L->z2);                                // NCHW for the 3x3
            conv_fw(m, &L->conv2, B, d->s_u, d->s_t);
            o->swap_dims01(B, DN_K, hw, b->S + (size_t)L->c * cols, d->s_u);              // append 32 channels
        }
        if (bi == DN_BLOCKS - 1) break;
        Block *nb = &d->b[bi + 1];
        int c = b->ctot;
        bn_fw(m, &b->tnorm, cols, d->s_bn, b->S, training, 1);
        cm_conv1x1_fw(m, b->tconv_w, c, c / 2, cols, d->s_u, d->s_bn);
        o->swap_dims01(c / 2, B, hw, d->s_t, d->s_u);
        o->avgpool2x2_forward(B, c / 2, b->h, b->w, d->s_u, d->s_t);
        o->swap_dims01(B, c / 2, nb->h * nb->w, nb->S, d->s_u);
    }
    Block *bl = &d->b[DN_BLOCKS - 1];
    int C = bl->ctot, hw = bl->h * bl->w;
    bn_fw(m, &d->norm5, (long)B * hw, d->z5, bl->S, training, 1);
    o->avgpool_forward(1, C * B, hw, d->gapT, d->z5);                          // (C, B)
    o->swap_dims01(C, B, 1, d->gap, d->gapT);                                  // (B, C)
    classifier_head_fw(m, &d->fc, B, d->gap);
}

static void dn_backward(Model *m, int B) {
    DenseNet *d = m->net;
    const Ops *o = m->ops;
    Block *bl = &d->b[DN_BLOCKS - 1];
    int C = bl->ctot, hw = bl->h * bl->w, cur = 0;
    classifier_head_bw(m, &d->fc, B, d->s_g1, NULL);
    o->swap_dims01(B, C, 1, d->s_g2, d->s_g1);
    o->avgpool_backward(1, C * B, hw, d->s_g1, d->s_g2);
    bn_bw(m, &d->norm5, (long)B * hw, d->dS[cur], d->s_g1, bl->S, d->z5);       // dS = d(block 4's buffer)
    for (int bi = DN_BLOCKS - 1; bi >= 0; bi--) {
        Block *b = &d->b[bi];
        hw = b->h * b->w;
        long cols = (long)B * hw;
        float *dS = d->dS[cur];
        for (int li = b->n - 1; li >= 0; li--) {
            DenseLayer *L = &b->l[li];
            o->swap_dims01(DN_K, B, hw, d->s_g1, dS + (size_t)L->c * cols);              // d(conv2 out), NCHW
            o->swap_dims01(4 * DN_K, B, hw, d->s_t, L->z2);                              // conv2's input again
            m->ops->conv2d_backward(&L->conv2.d, B, d->s_u, G(m, L->conv2.w), NULL, d->s_g1, d->s_t,
                                    P(m, L->conv2.w), m->ws, 0);
            model_grads_done(m, L->conv2.w);
            o->swap_dims01(B, 4 * DN_K, hw, d->s_g2, d->s_u);                            // d(z2), channel-major
            bn_bw(m, &L->norm2, cols, d->s_g1, d->s_g2, L->y1, L->z2);                    // d(y1)
            o->batchnorm_apply(1, L->c, (int)cols, d->s_bn, b->S, L->norm1.mean, L->norm1.invstd,
                               P(m, L->norm1.w), P(m, L->norm1.b), 1);                   // norm1's output again
            cm_conv1x1_bw(m, L->conv1_w, L->c, 4 * DN_K, cols, d->s_g2, d->s_g1, d->s_bn);
            bn_bw(m, &L->norm1, cols, d->s_u, d->s_g2, b->S, d->s_bn);
            o->accumulate((size_t)L->c * cols, dS, d->s_u);                              // into the prefix
        }
        if (bi == 0) {
            o->swap_dims01(b->cin, B, hw, d->s_g1, dS);
            m->ops->conv2d_backward(&d->conv0.d, B, NULL, G(m, d->conv0.w), NULL, d->s_g1, m->input,
                                    P(m, d->conv0.w), m->ws, 0);
            model_grads_done(m, d->conv0.w);
            break;
        }
        // the transition before this block: d(its output) = dS[0:cin] -> d(previous block's buffer)
        Block *pb = &d->b[bi - 1];
        int pc = pb->ctot, phw = pb->h * pb->w;
        long pcols = (long)B * phw;
        float *dP = d->dS[cur ^ 1];
        o->swap_dims01(b->cin, B, hw, d->s_g1, dS);                                       // (B, c/2, h, w)
        o->avgpool2x2_backward(B, pc / 2, pb->h, pb->w, d->s_g2, d->s_g1);
        o->swap_dims01(B, pc / 2, phw, d->s_g1, d->s_g2);                                 // d(conv out)
        o->batchnorm_apply(1, pc, (int)pcols, d->s_bn, pb->S, pb->tnorm.mean, pb->tnorm.invstd, P(m, pb->tnorm.w),
                           P(m, pb->tnorm.b), 1);
        cm_conv1x1_bw(m, pb->tconv_w, pc, pc / 2, pcols, d->s_g2, d->s_g1, d->s_bn);
        bn_bw(m, &pb->tnorm, pcols, dP, d->s_g2, pb->S, d->s_bn);                          // overwrites dP
        cur ^= 1;
    }
}

const ModelArch model_arch_densenet121 = {"densenet121", dn_build, dn_forward, dn_backward};
