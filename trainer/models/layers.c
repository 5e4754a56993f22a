// trainer/models/layers.c — the layer units every model is built from (see model_internal.h).
#include <stdio.h>
#include <stdlib.h>
#include "trainer/models/model_internal.h"
// defines: model_net_alloc, model_build_failed, model_logits_make, conv_make, conv_fw, conv_bw, bn_make, convbn_make,
// convbn_fw, convbn_bw, classifier_head_make, classifier_head_fw, classifier_head_bw

void *model_net_alloc(Model *m, size_t size, char *err, size_t errlen) {
    m->net = calloc(1, size);
    if (!m->net) snprintf(err, errlen, "model %s: out of memory", m->arch->name);
    return m->net;
}

int model_build_failed(Model *m, const char *why, char *err, size_t errlen) {
    const ModelConfig *cfg = &m->cfg;
    if (m->failed)
        snprintf(err, errlen, "model %s: out of memory (max_batch=%d, %dx%d)", m->arch->name, cfg->max_batch,
                 cfg->height, cfg->width);
    else
        snprintf(err, errlen, "model %s: input %dx%d is too small%s", m->arch->name, cfg->height, cfg->width, why);
    return -1;
}

int model_logits_make(Model *m, int seg) {
    m->seg = seg != 0;
    m->logits_per_sample = (size_t)m->cfg.classes * (seg ? (size_t)m->cfg.height * m->cfg.width : 1);
    m->logits = model_act(m, m->logits_per_sample);
    return m->failed ? -1 : 0;
}

int conv_make(Model *m, Conv *c, const char *name, int cin, int cout, int h, int w, int k, int stride,
              int pad, int bias) {
    return conv_make_ex(m, c, name, cin, cout, h, w, k, stride, pad, 1, 1, bias);
}

int conv_make_ex(Model *m, Conv *c, const char *name, int cin, int cout, int h, int w, int k, int stride,
                 int pad, int dil, int groups, int bias) {
    if (ops_conv2d_desc_grouped(&c->d, cin, cout, h, w, k, stride, pad, dil, groups)) return -1;
    char buf[160];
    int fan_in = cin / groups * k * k;
    snprintf(buf, sizeof buf, "%s.weight", name);
    c->w = model_add_param(m, buf, TENSOR_WEIGHT, 4, (int[]){cout, cin / groups, k, k}, fan_in);
    c->b = -1;
    if (bias) {
        snprintf(buf, sizeof buf, "%s.bias", name);
        c->b = model_add_param(m, buf, TENSOR_BIAS, 1, (int[]){cout}, fan_in);
    }
    model_need_ws(m, m->ops->conv2d_workspace(&c->d, m->cfg.max_batch));
    return 0;
}

void conv_fw(Model *m, Conv *c, int B, float *y, const float *x) {
    m->ops->conv2d_forward(&c->d, B, y, x, P(m, c->w), c->b >= 0 ? P(m, c->b) : NULL, m->ws);
}

void conv_bw(Model *m, Conv *c, int B, float *dx, const float *dy, const float *x, int accumulate) {
    m->ops->conv2d_backward(&c->d, B, dx, G(m, c->w), c->b >= 0 ? G(m, c->b) : NULL, dy, x, P(m, c->w),
                            m->ws, accumulate);
    model_grads_done(m, c->w);
}

int bn_make(Model *m, Bn *bn, const char *name, int C) {
    char buf[160];
    bn->C = C;
    snprintf(buf, sizeof buf, "%s.weight", name);
    bn->w = model_add_param(m, buf, TENSOR_BN_WEIGHT, 1, (int[]){C}, C);
    snprintf(buf, sizeof buf, "%s.bias", name);
    bn->b = model_add_param(m, buf, TENSOR_BN_BIAS, 1, (int[]){C}, C);
    snprintf(buf, sizeof buf, "%s.running_mean", name);
    bn->rm = model_add_buffer(m, buf, 1, (int[]){C});
    snprintf(buf, sizeof buf, "%s.running_var", name);
    bn->rv = model_add_buffer(m, buf, 1, (int[]){C});
    snprintf(buf, sizeof buf, "%s.num_batches_tracked", name);
    bn->nbt = model_add_buffer(m, buf, 0, NULL);
    bn->mean = model_small(m, sizeof(float) * C);
    bn->invstd = model_small(m, sizeof(float) * C);
    return m->failed ? -1 : 0;
}

int convbn_make(Model *m, ConvBn *u, const char *conv_name, const char *bn_name, int cin, int cout, int h,
                int w, int k, int stride, int pad, int relu, float *z_out) {
    return convbn_make_ex(m, u, conv_name, bn_name, cin, cout, h, w, k, stride, pad, 1, 1, relu, 0, z_out);
}

int convbn_make_ex(Model *m, ConvBn *u, const char *conv_name, const char *bn_name, int cin, int cout, int h,
                   int w, int k, int stride, int pad, int dil, int groups, int relu, int bias, float *z_out) {
    u->has_bn = m->cfg.batch_norm != 0;
    u->relu = relu;
    if (conv_make_ex(m, &u->conv, conv_name, cin, cout, h, w, k, stride, pad, dil, groups, bias || !u->has_bn))
        return -1;
    size_t n = convbn_out_floats(u);
    if (u->has_bn && bn_make(m, &u->bn, bn_name, cout)) return -1;
    u->z = z_out ? z_out : model_act(m, n);
    u->y = u->has_bn ? model_act(m, n) : u->z;
    return m->failed ? -1 : 0;
}

void convbn_fw(Model *m, ConvBn *u, int B, const float *x, int training) {
    conv_fw(m, &u->conv, B, u->y, x);
    int HW = u->conv.d.oh * u->conv.d.ow;
    if (u->has_bn) {
        Bn *b = &u->bn;
        m->ops->batchnorm_forward(B, b->C, HW, u->z, b->mean, b->invstd, u->y, P(m, b->w), P(m, b->b),
                                  BUF(m, b->rm), BUF(m, b->rv), BUF(m, b->nbt), training, u->relu, &m->sync);
    } else if (u->relu == 2) {
        m->ops->relu6_forward((size_t)B * convbn_out_floats(u), u->z, u->z);
    } else if (u->relu) {
        m->ops->relu_forward((size_t)B * convbn_out_floats(u), u->z, u->z);
    }
}

void convbn_bw(Model *m, ConvBn *u, int B, float *dx, float *dz, float *tmp, const float *x, int accumulate) {
    int HW = u->conv.d.oh * u->conv.d.ow;
    const float *dy = dz;
    if (u->has_bn) {
        Bn *b = &u->bn;
        m->ops->batchnorm_backward(B, b->C, HW, tmp, G(m, b->w), G(m, b->b), dz, u->y, u->z, b->mean, b->invstd,
                                   P(m, b->w), u->relu, &m->sync);
        model_grads_done(m, b->w);
        dy = tmp;
    } else if (u->relu) {
        if (u->relu == 2) m->ops->relu6_backward((size_t)B * convbn_out_floats(u), tmp, dz, u->z);
        else m->ops->relu_backward((size_t)B * convbn_out_floats(u), tmp, dz, u->z);
        dy = tmp;
    }
    conv_bw(m, &u->conv, B, dx, dy, x, accumulate);
}

int classifier_head_make(Model *m, ClassifierHead *h, const char *name, int in, int hw) {
    char buf[160];
    int classes = m->cfg.classes;
    h->in = in;
    h->hw = hw;
    h->gap = hw > 0 ? model_act(m, (size_t)in) : NULL;
    snprintf(buf, sizeof buf, "%s.weight", name);
    h->w = model_add_param(m, buf, TENSOR_WEIGHT, 2, (int[]){classes, in}, in);
    snprintf(buf, sizeof buf, "%s.bias", name);
    h->b = model_add_param(m, buf, TENSOR_BIAS, 1, (int[]){classes}, in);
    return model_logits_make(m, 0);
}

void classifier_head_fw(Model *m, ClassifierHead *h, int B, const float *x) {
    if (h->hw > 0) {
        m->ops->avgpool_forward(B, h->in, h->hw, h->gap, x);
        x = h->gap;
    }
    h->x = x;
    m->ops->linear_forward(B, h->in, m->cfg.classes, m->logits, x, P(m, h->w), P(m, h->b));
}

void classifier_head_bw(Model *m, ClassifierHead *h, int B, float *dx, float *tmp) {
    float *d = h->hw > 0 ? tmp : dx;   // d(linear input)
    m->ops->linear_backward(B, h->in, m->cfg.classes, d, G(m, h->w), G(m, h->b), m->dlogits, h->x, P(m, h->w));
    model_grads_done(m, h->w);
    if (h->hw > 0) m->ops->avgpool_backward(B, h->in, h->hw, dx, tmp);
}
