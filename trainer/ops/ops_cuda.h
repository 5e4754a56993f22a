// trainer/ops/ops_cuda.h — the CUDA op table (ops_cuda.cu), callable from C. Same contract as ops.h;
// differences a caller must know:
// - One device per process, opened by ops_cuda_init; ops_cuda() is NULL before that (and always in a
//   build without CUDA, where ops_cuda_init fails with the reason).
// - Every pointer given to the ops is device memory from ops->alloc (a bump arena of cudaMalloc'ed
//   chunks; a chunk is reused once all its allocations are freed, and ops_cuda_shutdown returns all
//   of it), except where ops.h says host: upload's source, download's destination. softmax_xent's
//   labels are device int32.
// - All work runs on one stream; download (and softmax_xent, which returns the loss) synchronise it.
//   Other streams order themselves against it with ops_cuda_order_before: the training loop's batch
//   uploads (trainer/gpu/stage.h) and comm_nccl's collectives.
// - conv2d_workspace/convt2x2_workspace return 0: cuDNN's workspace is kept inside the backend,
//   capped by SEGX_CUDNN_WORKSPACE_MB (default 512), and algorithms are chosen once per shape.
// - Errors: the op functions return void, so a failing CUDA/cuDNN/cuBLAS call records its first
//   error ("file:line: call: message"), printed once to stderr, readable with ops_cuda_error(); the
//   training loop checks it once per step and stops the run with that message.
#ifndef SEGX_OPS_CUDA_H
#define SEGX_OPS_CUDA_H
#include <stddef.h>
#include "trainer/gpu/gpu.h"

#ifdef __cplusplus
extern "C" {   // ops.h is a C header: its functions (ops_conv2d_desc, ops_cpu) have C linkage
#endif
#include "trainer/ops/ops.h"
#include "trainer/optim/optim.h"

// Opens `device` (an index among the visible devices): stream, cuDNN and cuBLAS handles, arena.
// Returns 0, or -1 with the reason (the gpu_probe reason when there is no usable GPU).
int  ops_cuda_init(int device, char *err, size_t n);
void ops_cuda_shutdown(void);            // frees all device memory of the table
const Ops *ops_cuda(void);               // NULL until ops_cuda_init succeeded

const char *ops_cuda_error(void);        // first failure since init, or NULL
void ops_cuda_sync(void);                // waits for the stream (timing)

// The compute stream (a cudaStream_t), for work on other streams. Ops return before their kernels
// finish, so a consumer on ANOTHER stream (comm_nccl's allreduce of gradient slices handed over by
// the grads-ready hook) must first order itself after the work queued so far:
// ops_cuda_order_before(its_stream) records an event here and makes its_stream wait for it.
void *ops_cuda_stream(void);
void  ops_cuda_order_before(void *consumer_stream);

// Compute type of conv2d/convt2x2/linear (inputs rounded to bf16/fp16, fp32 accumulation, fp32
// outputs); everything else stays fp32. bf16 needs compute capability >= 8.0. 0, or -1 with why.
int ops_cuda_set_precision(GpuPrecision p, char *err, size_t n);

// For fp16 loss scaling: g *= inv_scale in place; returns 1 when any element of g is inf or nan.
int ops_cuda_unscale_check(float *g, size_t n, float inv_scale);

// optim_step on the GPU, the same update rules (trainer/optim/optim.h) for every OptKind: `o` gives
// the kind, hyper-parameters and step count (o->steps is incremented, o->state is NOT used); the
// state lives in `state`, device memory of o->nslots * o->n floats, zeroed before the first step.
void ops_cuda_optim_step(Optimizer *o, float *state, float *params, const float *grads, float lr);

typedef struct {
    size_t arena_bytes;       // device memory reserved by the arena
    size_t arena_used;        // handed out by alloc
    size_t workspace_bytes;   // cuDNN workspace currently held
    int conv_plans;           // distinct conv shapes seen (algorithm choices cached)
} OpsCudaStats;
void ops_cuda_stats(OpsCudaStats *s);

#ifdef __cplusplus
}
#endif
#endif
