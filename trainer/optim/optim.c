// trainer/optim/optim.c — PyTorch 1.13 update rules on one flat buffer, and lr schedules.
#include "trainer/optim/optim.h"
// defines: optim_*, lr_*

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const opt_names[] = { "sgd", "sgd-nesterov", "sgdw", "adam", "adamw", "adagrad", "adadelta" };
static const int opt_slots[] = { 1, 1, 1, 2, 2, 1, 2 };

int optim_parse(const char *name, OptKind *kind) {
    for (int k = 0; k < (int)(sizeof opt_names / sizeof *opt_names); k++)
        if (strcmp(name, opt_names[k]) == 0) { *kind = (OptKind)k; return 0; }
    return -1;
}
const char *optim_name(OptKind kind) { return opt_names[kind]; }

int optim_slots(OptKind kind) { return opt_slots[kind]; }

int optim_create_on(OptKind kind, size_t n, float momentum, float weight_decay, float *state, Optimizer **out,
                    char *err, size_t errlen) {
    *out = NULL;
    if (!state) { snprintf(err, errlen, "optimizer %s: no state buffer", opt_names[kind]); return -1; }
    Optimizer *o = calloc(1, sizeof *o);
    if (!o) { snprintf(err, errlen, "out of memory"); return -1; }
    o->kind = kind;
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    o->n = n;
    o->nslots = opt_slots[kind];
    o->state = state;
    *out = o;
    return 0;
}

int optim_create(OptKind kind, size_t n, float momentum, float weight_decay, Optimizer **out,
                 char *err, size_t errlen) {
    *out = NULL;
    float *state = calloc((size_t)opt_slots[kind] * (n ? n : 1), sizeof(float));
    if (!state) { snprintf(err, errlen, "out of memory for optimizer state (%zu floats)", n); return -1; }
    if (optim_create_on(kind, n, momentum, weight_decay, state, out, err, errlen)) { free(state); return -1; }
    (*out)->state_owned = 1;
    return 0;
}

void optim_free(Optimizer *o) {
    if (!o) return;
    if (o->state_owned) free(o->state);
    free(o);
}

// SGD (torch.optim.SGD, dampening 0): g = grad + wd*p; buf = g on the first step, else
// buf = mu*buf + g; step direction buf (or g + mu*buf with nesterov); p -= lr*direction.
static void sgd(Optimizer *o, float *p, const float *grad, float lr, int nesterov, float wd) {
    float mu = o->momentum, *buf = o->state;
    int first = o->steps == 0;
    for (size_t i = 0; i < o->n; i++) {
        float g = grad[i];
        if (wd != 0) g = g + wd * p[i];
        if (mu != 0) {
            buf[i] = first ? g : mu * buf[i] + g;
            g = nesterov ? g + mu * buf[i] : buf[i];
        }
        p[i] = p[i] - lr * g;
    }
}

// Adam (torch.optim.Adam, amsgrad off): m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
static void adam(Optimizer *o, float *p, const float *grad, float lr, float wd) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float *m = o->state, *v = o->state + o->n;
    double t = (double)o->steps + 1;
    float bc1 = (float)(1 - pow(b1, t)), bc2_sqrt = sqrtf((float)(1 - pow(b2, t)));
    float step_size = lr / bc1;
    for (size_t i = 0; i < o->n; i++) {
        float g = grad[i];
        if (wd != 0) g = g + wd * p[i];
        m[i] = m[i] * b1 + (1 - b1) * g;
        v[i] = v[i] * b2 + (1 - b2) * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}

// Adagrad (lr_decay 0, initial accumulator 0): s += g*g; p -= lr * g / (sqrt(s) + eps).
static void adagrad(Optimizer *o, float *p, const float *grad, float lr, float wd) {
    const float eps = 1e-10f;
    float *s = o->state;
    for (size_t i = 0; i < o->n; i++) {
        float g = grad[i];
        if (wd != 0) g = g + wd * p[i];
        s[i] = s[i] + g * g;
        p[i] = p[i] - lr * (g / (sqrtf(s[i]) + eps));
    }
}

// Adadelta: sq = rho*sq + (1-rho)*g*g; d = sqrt(acc+eps)/sqrt(sq+eps)*g;
// acc = rho*acc + (1-rho)*d*d; p -= lr*d.
static void adadelta(Optimizer *o, float *p, const float *grad, float lr, float wd) {
    const float rho = 0.9f, eps = 1e-6f;
    float *sq = o->state, *acc = o->state + o->n;
    for (size_t i = 0; i < o->n; i++) {
        float g = grad[i];
        if (wd != 0) g = g + wd * p[i];
        sq[i] = sq[i] * rho + (1 - rho) * g * g;
        float std = sqrtf(sq[i] + eps);
        float d = sqrtf(acc[i] + eps) / std * g;
        acc[i] = acc[i] * rho + (1 - rho) * d * d;
        p[i] = p[i] - lr * d;
    }
}

static void decay_weights(float *p, size_t n, float lr, float wd) {
    if (wd == 0) return;
    float f = 1 - lr * wd;
    for (size_t i = 0; i < n; i++) p[i] = p[i] * f;
}

void optim_step(Optimizer *o, float *params, const float *grads, float lr) {
    float wd = o->weight_decay;
    switch (o->kind) {
    case OPT_SGD: sgd(o, params, grads, lr, 0, wd); break;
    case OPT_SGD_NESTEROV: sgd(o, params, grads, lr, 1, wd); break;
    case OPT_SGDW: decay_weights(params, o->n, lr, wd); sgd(o, params, grads, lr, 0, 0); break;
    case OPT_ADAM: adam(o, params, grads, lr, wd); break;
    case OPT_ADAMW: decay_weights(params, o->n, lr, wd); adam(o, params, grads, lr, 0); break;
    case OPT_ADAGRAD: adagrad(o, params, grads, lr, wd); break;
    case OPT_ADADELTA: adadelta(o, params, grads, lr, wd); break;
    }
    o->steps++;
}

// ---------------------------------------------------------------------------------------------

static const char *const lr_names[] = { "constant", "step", "poly", "cosine" };

int lr_parse(const char *name, LrKind *kind) {
    for (int k = 0; k < 4; k++)
        if (strcmp(name, lr_names[k]) == 0) { *kind = (LrKind)k; return 0; }
    return -1;
}
const char *lr_name(LrKind kind) { return lr_names[kind]; }

double lr_at(const LrSchedule *s, long step) {
    if (step < s->warmup_steps) return s->base_lr * (double)(step + 1) / (double)s->warmup_steps;
    long span = s->total_steps - s->warmup_steps;
    double t = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 0;
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    switch (s->kind) {
    case LR_CONSTANT: return s->base_lr;
    case LR_STEP: return s->base_lr * (t >= 0.75 ? 0.01 : t >= 0.5 ? 0.1 : 1.0);
    case LR_POLY: return s->base_lr * pow(1 - t, 0.9);
    case LR_COSINE: return s->base_lr * 0.5 * (1 + cos(M_PI * t));
    }
    return s->base_lr;
}
