// trainer/gpu/nocuda.c — ops_cuda.h in a build without CUDA (scripts/configure found no nvcc or
// cuDNN/cuBLAS/NCCL): the same functions, failing with the reason, so callers need no #ifdef.
#include "config.h"
#ifndef SEGX_HAVE_CUDA
#include <stdio.h>
#include <string.h>
#include "trainer/ops/ops_cuda.h"
// defines: ops_cuda_* (without CUDA)

#define NO_CUDA "segx-train was built without CUDA (scripts/configure found no nvcc/cuDNN/cuBLAS/NCCL under " \
                "/usr/local/cuda): rebuild with the CUDA toolkit, or use --device cpu"

int ops_cuda_init(int device, char *err, size_t n) { (void)device; snprintf(err, n, NO_CUDA); return -1; }
void ops_cuda_shutdown(void) {}
const Ops *ops_cuda(void) { return NULL; }
const char *ops_cuda_error(void) { return NULL; }
void ops_cuda_sync(void) {}
void *ops_cuda_stream(void) { return NULL; }
void ops_cuda_order_before(void *consumer_stream) { (void)consumer_stream; }
void ops_cuda_optim_step(Optimizer *o, float *state, float *params, const float *grads, float lr) {
    (void)state; (void)params; (void)grads; (void)lr;
    o->steps++;   // unreachable in practice: ops_cuda_init fails first
}
int ops_cuda_set_precision(GpuPrecision p, char *err, size_t n) { (void)p; snprintf(err, n, NO_CUDA); return -1; }
int ops_cuda_unscale_check(float *g, size_t n, float inv_scale) { (void)g; (void)n; (void)inv_scale; return 1; }
void ops_cuda_stats(OpsCudaStats *s) { memset(s, 0, sizeof *s); }
#else
typedef int segx_nocuda_unused;   // ISO C wants a translation unit to declare something
#endif
