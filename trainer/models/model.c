// trainer/models/model.c — model.h for every architecture: creation (build, then one contiguous
// parameter/gradient/buffer allocation in reverse registration order), initialisation, loss, hooks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/models/model_internal.h"
// defines: model_create, model_free, model_init, model_forward, model_loss, model_backward, ...

static const ModelArch *const archs[] = {&model_arch_cnn, &model_arch_resnet18, &model_arch_unet, &model_arch_vgg16,
                                         &model_arch_mobilenet_v2, &model_arch_shufflenet_v2, &model_arch_densenet121,
                                         &model_arch_deeplabv3plus};

// ----------------------------------------------------------------------------------------------
// build helpers

static int grow(void **arr, int *cap, int n, size_t elem) {
    if (n < *cap) return 0;
    int nc = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, elem * nc);
    if (!p) return -1;
    *arr = p; *cap = nc;
    return 0;
}

static ModelTensor make_tensor(const char *name, TensorKind kind, int ndim, const int *shape) {
    ModelTensor t = {.name = strdup(name), .ndim = ndim, .kind = kind, .numel = 1};
    for (int i = 0; i < ndim; i++) { t.shape[i] = shape[i]; t.numel *= (size_t)shape[i]; }
    return t;
}

int model_add_param(Model *m, const char *name, TensorKind kind, int ndim, const int *shape, int fan_in) {
    int cap = m->tcap;
    if (grow((void **)&m->t, &cap, m->nt, sizeof(ModelTensor))) { m->failed = 1; return 0; }
    cap = m->tcap;
    if (grow((void **)&m->fan_in, &cap, m->nt, sizeof(int))) { m->failed = 1; return 0; }
    m->tcap = cap;
    m->t[m->nt] = make_tensor(name, kind, ndim, shape);
    m->fan_in[m->nt] = fan_in;
    m->nparams += m->t[m->nt].numel;
    return m->nt++;
}

int model_add_buffer(Model *m, const char *name, int ndim, const int *shape) {
    if (grow((void **)&m->bt, &m->btcap, m->nbt, sizeof(ModelTensor))) { m->failed = 1; return 0; }
    m->bt[m->nbt] = make_tensor(name, TENSOR_WEIGHT, ndim, shape);
    m->nbuffers += m->bt[m->nbt].numel;
    return m->nbt++;
}

void *model_small(Model *m, size_t bytes) {
    if (grow((void **)&m->allocs, &m->alloccap, m->nalloc, sizeof(void *))) { m->failed = 1; return NULL; }
    void *p = m->ops->alloc(bytes);
    if (!p) { m->failed = 1; return NULL; }
    m->allocs[m->nalloc++] = p;
    return p;
}

float *model_act(Model *m, size_t floats_per_sample) {
    if (floats_per_sample > m->max_act) m->max_act = floats_per_sample;
    return model_small(m, sizeof(float) * floats_per_sample * m->cfg.max_batch);
}

void model_need_ws(Model *m, size_t floats) { if (floats > m->ws_floats) m->ws_floats = floats; }

void model_grads_done(Model *m, int i) {
    size_t n = m->t[i].offset + m->t[i].numel;
    if (n <= m->ready_n) return;
    m->ready_n = n;
    if (m->ready_fn) m->ready_fn(m->ready_ctx, n);
}

// ----------------------------------------------------------------------------------------------
// create / free

int model_create(const ModelConfig *cfg, Model **out, char *err, size_t errlen) {
    return model_create_on(cfg, ops_cpu(), out, err, errlen);
}

int model_create_on(const ModelConfig *cfg, const Ops *ops, Model **out, char *err, size_t errlen) {
    *out = NULL;
    if (!ops) { snprintf(err, errlen, "model %s: no op table (is the backend initialised?)", cfg->name ? cfg->name : "(null)"); return -1; }
    const ModelArch *arch = NULL;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (cfg->name && strcmp(cfg->name, archs[i]->name) == 0) arch = archs[i];
    if (!arch) {
        snprintf(err, errlen, "unknown model '%s' (expected cnn, resnet18, unet, vgg16, mobilenet_v2, shufflenet_v2, "
                 "densenet121 or deeplabv3plus)", cfg->name ? cfg->name : "(null)");
        return -1;
    }
    if (!cfg->batch_norm && arch != &model_arch_cnn && arch != &model_arch_resnet18 && arch != &model_arch_unet) {
        snprintf(err, errlen, "model %s: --no-batch-norm is only for cnn, resnet18 and unet (%s is defined with its "
                 "BatchNorm layers, as models_ref.py has it)", arch->name, arch->name);
        return -1;
    }
    if (cfg->in_channels < 1 || cfg->classes < 1 || cfg->height < 1 || cfg->width < 1 || cfg->max_batch < 1) {
        snprintf(err, errlen, "model %s: in_channels=%d, classes=%d, height=%d, width=%d and max_batch=%d "
                 "must all be >= 1", cfg->name, cfg->in_channels, cfg->classes, cfg->height, cfg->width,
                 cfg->max_batch);
        return -1;
    }
    if (cfg->classes > MODEL_IGNORE_LABEL) {
        snprintf(err, errlen, "model %s: classes=%d collides with the ignore label %d", cfg->name, cfg->classes,
                 MODEL_IGNORE_LABEL);
        return -1;
    }
    Model *m = calloc(1, sizeof *m);
    if (!m) { snprintf(err, errlen, "model %s: out of memory", cfg->name); return -1; }
    m->cfg = *cfg;
    m->cfg.name = arch->name;
    m->arch = arch;
    m->ops = ops;
    if (arch->build(m, err, errlen)) { model_free(m); return -1; }
    // reverse registration order: the last registered tensor (the head) sits at offset 0
    size_t off = 0;
    for (int i = m->nt - 1; i >= 0; i--) { m->t[i].offset = off; off += m->t[i].numel; }
    off = 0;
    for (int i = 0; i < m->nbt; i++) { m->bt[i].offset = off; off += m->bt[i].numel; }
    size_t B = (size_t)cfg->max_batch;
    m->params = model_small(m, sizeof(float) * (m->nparams ? m->nparams : 1));
    m->grads = model_small(m, sizeof(float) * (m->nparams ? m->nparams : 1));
    m->buffers = model_small(m, sizeof(float) * (m->nbuffers ? m->nbuffers : 1));
    m->ws = model_small(m, sizeof(float) * (m->ws_floats ? m->ws_floats : 1));
    for (int i = 0; i < 3; i++) m->gbuf[i] = model_small(m, sizeof(float) * m->max_act * B);
    m->input = m->input_own = model_small(m, sizeof(float) * B * cfg->in_channels * cfg->height * cfg->width);
    m->labels = model_small(m, sizeof(int32_t) * B * (m->seg ? (size_t)cfg->height * cfg->width : 1));
    m->dlogits = model_small(m, sizeof(float) * B * m->logits_per_sample);
    if (ops != ops_cpu() && !(m->logits_host = malloc(sizeof(float) * B * m->logits_per_sample))) m->failed = 1;
    if (m->failed) {
        snprintf(err, errlen, "model %s: out of memory (max_batch=%d, %dx%d)", cfg->name, cfg->max_batch,
                 cfg->height, cfg->width);
        model_free(m);
        return -1;
    }
    model_init(m, 0);
    *out = m;
    return 0;
}

void model_free(Model *m) {
    if (!m) return;
    for (int i = 0; i < m->nalloc; i++) m->ops->free(m->allocs[i]);
    for (int i = 0; i < m->nt; i++) free((char *)m->t[i].name);
    for (int i = 0; i < m->nbt; i++) free((char *)m->bt[i].name);
    free(m->allocs); free(m->t); free(m->fan_in); free(m->bt); free(m->net); free(m->logits_host);
    free(m);
}

// ----------------------------------------------------------------------------------------------
// init: PyTorch's defaults. kaiming_uniform(a=sqrt(5)) gives bound = 1/sqrt(fan_in), as do the biases.

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void model_init(Model *m, uint64_t seed) {
    float *host = malloc(sizeof(float) * (m->nparams ? m->nparams : 1));
    float *hbuf = malloc(sizeof(float) * (m->nbuffers ? m->nbuffers : 1));
    if (!host || !hbuf) { free(host); free(hbuf); return; }
    for (int i = 0; i < m->nt; i++) {
        const ModelTensor *t = &m->t[i];
        float *p = host + t->offset;
        uint64_t s = seed * 0x2545F4914F6CDD1Dull + (uint64_t)i * 0x9E3779B97F4A7C15ull + 1;
        float bound = 1.f / sqrtf((float)m->fan_in[i]);
        for (size_t k = 0; k < t->numel; k++) {
            switch (t->kind) {
            case TENSOR_BN_WEIGHT: p[k] = 1.f; break;
            case TENSOR_BN_BIAS: p[k] = 0.f; break;
            default: p[k] = bound * (float)((double)(splitmix64(&s) >> 11) * 0x1p-52 - 1.0);
            }
        }
    }
    for (int i = 0; i < m->nbt; i++) {
        const ModelTensor *t = &m->bt[i];
        size_t len = strlen(t->name);
        float v = (len > 12 && strcmp(t->name + len - 12, ".running_var") == 0) ? 1.f : 0.f;
        for (size_t k = 0; k < t->numel; k++) hbuf[t->offset + k] = v;
    }
    m->ops->upload(m->params, host, sizeof(float) * m->nparams);
    m->ops->upload(m->buffers, hbuf, sizeof(float) * m->nbuffers);
    m->ops->zero(m->grads, sizeof(float) * m->nparams);
    free(host); free(hbuf);
}

// ----------------------------------------------------------------------------------------------
// accessors

size_t model_num_params(const Model *m) { return m->nparams; }
float *model_params(Model *m) { return m->params; }
float *model_grads(Model *m) { return m->grads; }
void model_zero_grad(Model *m) { m->ops->zero(m->grads, sizeof(float) * m->nparams); }
size_t model_num_buffers(const Model *m) { return m->nbuffers; }
float *model_buffers(Model *m) { return m->buffers; }
const ModelTensor *model_tensors(const Model *m, int *count) { *count = m->nt; return m->t; }
const ModelTensor *model_buffer_tensors(const Model *m, int *count) { *count = m->nbt; return m->bt; }
int model_is_segmentation(const Model *m) { return m->seg; }
int model_name_is_segmentation(const char *name) {
    return name && (strcmp(name, "unet") == 0 || strcmp(name, "deeplabv3plus") == 0);
}
const Ops *model_ops(const Model *m) { return m->ops; }
const ModelConfig *model_config(const Model *m) { return &m->cfg; }

void model_set_grads_ready_hook(Model *m, ModelGradsReadyFn fn, void *ctx) { m->ready_fn = fn; m->ready_ctx = ctx; }
void model_set_sync_bn(Model *m, ModelAllreduceFn fn, void *ctx) { m->sync.fn = fn; m->sync.ctx = ctx; }
void model_set_threads(int n) { ops_cpu()->set_threads(n); }

// ----------------------------------------------------------------------------------------------
// forward / loss / backward

// Runs the architecture on `x` (backend memory); the archs read m->input in forward and backward,
// so it points at x until the next forward.
static int forward_on(Model *m, const float *x, int batch, int training, const char *fn) {
    if (batch < 1 || batch > m->cfg.max_batch) {
        fprintf(stderr, "%s: batch %d outside 1..max_batch=%d\n", fn, batch, m->cfg.max_batch);
        return -1;
    }
    m->input = (float *)x;
    m->arch->forward(m, batch, training ? 1 : 0);
    m->last_batch = batch; m->last_training = training ? 1 : 0; m->have_dlogits = 0;
    return 0;
}

const float *model_forward_dev(Model *m, const float *x, int batch, int training) {
    return forward_on(m, x, batch, training, "model_forward_dev") ? NULL : m->logits;
}

const float *model_forward(Model *m, const float *x, int batch, int training) {
    if (batch < 1 || batch > m->cfg.max_batch) {
        fprintf(stderr, "model_forward: batch %d outside 1..max_batch=%d\n", batch, m->cfg.max_batch);
        return NULL;
    }
    m->ops->upload(m->input_own, x, sizeof(float) * batch * m->cfg.in_channels * m->cfg.height * m->cfg.width);
    forward_on(m, m->input_own, batch, training, "model_forward");
    if (!m->logits_host) return m->logits;
    if (m->no_logits_download) return m->logits;
    m->ops->download(m->logits_host, m->logits, sizeof(float) * batch * m->logits_per_sample);
    return m->logits_host;
}

void model_set_download_logits(Model *m, int on) { m->no_logits_download = !on; }

// labels: backend memory
static float loss_on(Model *m, const int32_t *labels, float grad_scale, long *counted) {
    int B = m->last_batch, C = m->cfg.classes, HW = m->seg ? m->cfg.height * m->cfg.width : 1;
    long cnt = 0;
    double loss = m->ops->softmax_xent(B, C, HW, m->dlogits, m->logits, labels, MODEL_IGNORE_LABEL,
                                       grad_scale, &cnt);
    if (cnt < 0) {
        int32_t bad = 0;
        m->ops->download(&bad, labels + (-1 - cnt), sizeof bad);
        fprintf(stderr, "model_loss: label %d at index %ld is outside 0..%d (and not the ignore label %d)\n",
                bad, -1 - cnt, C - 1, MODEL_IGNORE_LABEL);
    }
    if (counted) *counted = cnt;
    m->have_dlogits = cnt >= 0;
    return (float)loss;
}

float model_loss(Model *m, const int32_t *labels, float grad_scale, long *counted) {
    int B = m->last_batch, HW = m->seg ? m->cfg.height * m->cfg.width : 1;
    if (B < 1) { if (counted) *counted = 0; return NAN; }
    m->ops->upload(m->labels, labels, sizeof(int32_t) * B * HW);
    return loss_on(m, m->labels, grad_scale, counted);
}

float model_loss_dev(Model *m, const int32_t *labels, float grad_scale, long *counted) {
    if (m->last_batch < 1) { if (counted) *counted = 0; return NAN; }
    return loss_on(m, labels, grad_scale, counted);
}

void model_backward(Model *m) {
    if (!m->last_training || !m->have_dlogits) {
        fprintf(stderr, "model_backward: needs a training forward followed by model_loss\n");
        return;
    }
    m->ready_n = 0;
    m->arch->backward(m, m->last_batch);
    if (m->nparams && m->ready_n < m->nparams) { m->ready_n = m->nparams; if (m->ready_fn) m->ready_fn(m->ready_ctx, m->nparams); }
}
