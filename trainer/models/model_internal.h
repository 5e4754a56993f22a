// trainer/models/model_internal.h — what the models share: the Model struct, tensor registration
// (build phase, then one contiguous allocation in reverse registration order), build errors, and the
// layer units (conv, batch norm, conv+BN(+ReLU), the classifier head) written against the op table.
// Registration order = forward EXECUTION order, so backward finalizes gradient prefixes in order.
#ifndef SEGX_MODEL_INTERNAL_H
#define SEGX_MODEL_INTERNAL_H
#include "trainer/models/model.h"
#include "trainer/ops/ops.h"

typedef struct ModelArch {
    const char *name;
    int (*build)(Model *m, char *err, size_t errlen);   // registers tensors, allocates activations
    void (*forward)(Model *m, int B, int training);      // reads m->input, writes m->logits
    void (*backward)(Model *m, int B);                   // reads m->dlogits
} ModelArch;

struct Model {
    ModelConfig cfg;
    const ModelArch *arch;
    const Ops *ops;
    ModelTensor *t; int *fan_in; int nt, tcap; size_t nparams;     // parameters
    ModelTensor *bt; int nbt, btcap; size_t nbuffers;              // BN running stats
    float *params, *grads, *buffers;
    void **allocs; int nalloc, alloccap;                           // activations (freed by model_free)
    size_t max_act;            // largest activation, floats per sample (sizes the gradient scratch)
    size_t ws_floats; float *ws;
    float *gbuf[3];            // gradient scratch, max_act * max_batch floats each
    float *input, *logits, *dlogits;   // input: the current forward's x (input_own or the caller's)
    float *input_own;                  // where model_forward uploads x
    int32_t *labels;
    size_t logits_per_sample;  // classes * (H*W for segmentation)
    int seg;                   // 1: logits (B, classes, H, W)
    int last_batch, last_training, have_dlogits;
    ModelGradsReadyFn ready_fn; void *ready_ctx; size_t ready_n;
    BnSync sync;
    void *net;                 // the architecture's own struct (freed by model_free)
    int failed;                // set when an allocation in build failed
    float *logits_host;        // non-CPU backends: host copy returned by model_forward (malloc)
    int no_logits_download;    // model_set_download_logits(m, 0)
};

extern const ModelArch model_arch_cnn, model_arch_resnet18, model_arch_unet;
extern const ModelArch model_arch_vgg16, model_arch_mobilenet_v2, model_arch_shufflenet_v2, model_arch_densenet121;
extern const ModelArch model_arch_deeplabv3plus;

// --- build helpers
// m->net = a zeroed `size`-byte struct of the architecture (freed by model_free); NULL and
// "model NAME: out of memory" in err when it cannot be had.
void  *model_net_alloc(Model *m, size_t size, char *err, size_t errlen);
// A build's failure, -1 with err: "model NAME: out of memory (max_batch=B, HxW)" after a failed
// allocation (m->failed), else "model NAME: input HxW is too small" followed by `why` (e.g. " (3
// stride-2 stages)"; "" for none): a layer's geometry was refused.
int    model_build_failed(Model *m, const char *why, char *err, size_t errlen);
// The model's logits: (B, classes) for a classifier (seg 0), (B, classes, H, W) at the input's size
// for a segmentation model (seg 1); -1 when an allocation failed (m->failed).
int    model_logits_make(Model *m, int seg);
int    model_add_param(Model *m, const char *name, TensorKind kind, int ndim, const int *shape, int fan_in);
int    model_add_buffer(Model *m, const char *name, int ndim, const int *shape);
float *model_act(Model *m, size_t floats_per_sample);   // activation for max_batch samples
void   model_need_ws(Model *m, size_t floats);
void  *model_small(Model *m, size_t bytes);            // other owned memory (BN saved stats)
static inline float *P(Model *m, int i) { return m->params + m->t[i].offset; }
static inline float *G(Model *m, int i) { return m->grads + m->t[i].offset; }
static inline float *BUF(Model *m, int i) { return m->buffers + m->bt[i].offset; }
// Backward finished every tensor with index >= i: report the grown prefix to the DDP hook.
void model_grads_done(Model *m, int i);

// --- layer units
typedef struct { ConvDesc d; int w, b; } Conv;        // tensor indices; b = -1 without bias
typedef struct { int C; int w, b, rm, rv, nbt; float *mean, *invstd; } Bn;

int  conv_make(Model *m, Conv *c, const char *name, int cin, int cout, int h, int w, int k, int stride,
               int pad, int bias);
// the same with dilation and groups (weights (cout, cin/groups, k, k), fan_in cin/groups*k*k)
int  conv_make_ex(Model *m, Conv *c, const char *name, int cin, int cout, int h, int w, int k, int stride,
                  int pad, int dil, int groups, int bias);
void conv_fw(Model *m, Conv *c, int B, float *y, const float *x);
void conv_bw(Model *m, Conv *c, int B, float *dx, const float *dy, const float *x, int accumulate);
int  bn_make(Model *m, Bn *bn, const char *name, int C);

// conv -> [BN] -> [ReLU (relu=1) | ReLU6 (relu=2)]. Without BN the conv has a bias and y == z.
typedef struct { Conv conv; Bn bn; int has_bn, relu; float *y, *z; } ConvBn;
// conv_name/bn_name are state_dict prefixes; z_out: output buffer or NULL to allocate one.
int  convbn_make(Model *m, ConvBn *u, const char *conv_name, const char *bn_name, int cin, int cout, int h,
                 int w, int k, int stride, int pad, int relu, float *z_out);
// with dilation, groups, and a conv bias also in front of BN (bias=1: VGG's convs)
int  convbn_make_ex(Model *m, ConvBn *u, const char *conv_name, const char *bn_name, int cin, int cout, int h,
                    int w, int k, int stride, int pad, int dil, int groups, int relu, int bias, float *z_out);
void convbn_fw(Model *m, ConvBn *u, int B, const float *x, int training);
// dz: gradient of z (read, may be clobbered); tmp: scratch of z's size; dx may equal dz, never tmp.
void convbn_bw(Model *m, ConvBn *u, int B, float *dx, float *dz, float *tmp, const float *x, int accumulate);
static inline size_t convbn_out_floats(const ConvBn *u) { return (size_t)u->conv.d.cout * u->conv.d.oh * u->conv.d.ow; }

// The classification head: [global average pool of (B, in, hw) when hw > 0] then nn.Linear(in,
// classes) with PyTorch's names <name>.weight (classes, in) and <name>.bias (classes), fan_in `in`,
// registered last so that they sit at offset 0. hw = 0: x is already (B, in) (a flatten, or a pool
// the model runs itself). classifier_head_make also allocates the model's logits (B, classes) and
// marks it a classifier; -1 when an allocation failed (m->failed).
typedef struct {
    int in, hw, w, b;   // w, b: tensor indices
    float *gap;         // the pooled (B, in) when hw > 0
    const float *x;     // the linear layer's input in the last forward (for backward)
} ClassifierHead;
int  classifier_head_make(Model *m, ClassifierHead *h, const char *name, int in, int hw);
void classifier_head_fw(Model *m, ClassifierHead *h, int B, const float *x);          // -> m->logits
// m->dlogits -> dx (B, in, hw); tmp: (B, in) scratch when hw > 0, not dx (NULL when hw == 0)
void classifier_head_bw(Model *m, ClassifierHead *h, int B, float *dx, float *tmp);

#endif
