// trainer/models/model.h — the contract between the models (cnn, resnet18, unet) and the rest of
// segx-train (training loop, optimizers, DDP, checkpoints).
// - All parameters live in ONE contiguous float buffer, and all gradients in another of the same
//   size and layout; the layout is REVERSE forward order (the head's tensors first, the stem's
//   last), so backward finalizes gradients from offset 0 upwards and a DDP bucket is a slice.
// - BatchNorm running statistics are "buffers": one more contiguous float buffer (checkpointed,
//   broadcast, never optimized).
// - Backward ACCUMULATES into the gradient buffer; the caller zeroes it (model_zero_grad).
// - Tensor names follow PyTorch's state_dict keys of the reference models
//   (../shared/bench/torch_peer.py for unet; torchvision resnet18 CIFAR variant) so fixtures map 1:1.
#ifndef SEGX_MODEL_H
#define SEGX_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "trainer/ops/ops.h"   // defines: Ops (model_create_on)

#define MODEL_IGNORE_LABEL 255

typedef struct {
    const char *name;     // "cnn" | "resnet18" | "unet"
    int in_channels;      // input C
    int classes;          // output classes
    int height, width;    // input H, W
    int base_width;       // --width: unet base width (default 16); ignored by the others
    int backbone;         // --backbone: deeplabv3plus's ResNet depth 18 | 50 | 101 (0: 50)
    int batch_norm;       // 0 with --no-batch-norm (BN layers removed, convs get a bias)
    int max_batch;        // activations are allocated for up to this many samples
} ModelConfig;

typedef enum { TENSOR_WEIGHT, TENSOR_BIAS, TENSOR_BN_WEIGHT, TENSOR_BN_BIAS } TensorKind;

typedef struct {
    const char *name;     // PyTorch state_dict key, e.g. "down.0.0.0.weight"
    size_t offset;        // element offset into model_params()/model_grads()
    size_t numel;
    int ndim; int shape[4];
    TensorKind kind;
} ModelTensor;

typedef struct Model Model;

// Returns 0, or -1 with a message in err (unknown model name, bad shape for the model, no memory).
int  model_create(const ModelConfig *cfg, Model **out, char *err, size_t errlen);
// The same on another op table, e.g. ops_cuda() after ops_cuda_init (trainer/ops/ops_cuda.h).
// Parameters, gradients, buffers and activations then live in that backend's memory: model_params,
// model_grads and model_buffers return DEVICE pointers (optimizer: ops_cuda_optim_step; checkpoint:
// ops->download). model_forward still takes host x and returns HOST logits (downloaded after each
// forward unless model_set_download_logits(m, 0)); model_loss takes host labels.
int  model_create_on(const ModelConfig *cfg, const Ops *ops, Model **out, char *err, size_t errlen);
// Off: model_forward on a non-CPU backend returns the DEVICE logits, not downloaded (benchmarks).
void model_set_download_logits(Model *m, int on);
void model_free(Model *m);

// Deterministic PyTorch-default initialisation (kaiming-uniform a=sqrt(5) for conv/linear weights,
// uniform(+-1/sqrt(fan_in)) biases, BN weight 1 / bias 0, running mean 0 / var 1) from `seed`.
void model_init(Model *m, uint64_t seed);

size_t model_num_params(const Model *m);
float *model_params(Model *m);
float *model_grads(Model *m);
void   model_zero_grad(Model *m);
size_t model_num_buffers(const Model *m);  // BN running mean/var (and num_batches_tracked as float)
float *model_buffers(Model *m);
const ModelTensor *model_tensors(const Model *m, int *count);        // parameters
const ModelTensor *model_buffer_tensors(const Model *m, int *count); // BN running stats

int model_is_segmentation(const Model *m);  // logits (B,classes,H,W) vs (B,classes)
int model_name_is_segmentation(const char *name);   // unet, deeplabv3plus: per-pixel labels
const Ops *model_ops(const Model *m);       // the table its memory belongs to (upload/download)
const ModelConfig *model_config(const Model *m);

// Forward pass on x (batch, in_channels, height, width), NCHW float. training=1 uses batch
// statistics and updates running stats (momentum 0.1); training=0 uses running stats.
// Returns the logits, owned by the model, valid until the next forward.
const float *model_forward(Model *m, const float *x, int batch, int training);

// The same with x already in the backend's memory (ops->alloc'ed: a batch uploaded ahead by the
// training loop). Nothing is uploaded and nothing downloaded: returns the logits in backend memory.
// x must stay unchanged until model_backward of this step has been queued and run.
const float *model_forward_dev(Model *m, const float *x, int batch, int training);

// Softmax cross-entropy of the last forward's logits against labels (int32, one per sample or per
// pixel; MODEL_IGNORE_LABEL pixels are not counted). Returns the mean loss over counted elements,
// stores d(mean loss)/d(logits) * grad_scale for model_backward, and sets *counted if non-NULL.
float model_loss(Model *m, const int32_t *labels, float grad_scale, long *counted);

// The same with labels already in the backend's memory (must stay unchanged until model_backward).
float model_loss_dev(Model *m, const int32_t *labels, float grad_scale, long *counted);

// Backward of the last forward (training=1) using the stored d(logits); accumulates into grads.
void model_backward(Model *m);

// DDP hooks (both optional; NULL disables).
// grads_ready(ctx, n): called during backward each time the first n gradient elements are final
// (n only grows within one backward; the last call has n == model_num_params).
typedef void (*ModelGradsReadyFn)(void *ctx, size_t n_ready);
void model_set_grads_ready_hook(Model *m, ModelGradsReadyFn fn, void *ctx);
// allreduce_sum(ctx, buf, n): sums buf over all ranks in place. When set, BatchNorm in training
// uses global batch statistics (sync BN) in forward and backward.
typedef int (*ModelAllreduceFn)(void *ctx, double *buf, size_t n);
void model_set_sync_bn(Model *m, ModelAllreduceFn fn, void *ctx);

// CPU threads used by the ops (OpenBLAS and the ops' own loops). Call before the first forward.
void model_set_threads(int n);

#endif
