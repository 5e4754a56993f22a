// trainer/gpu/stage.c — double-buffered batch staging (contract: stage.h).
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/gpu/stage.h"
#include "trainer/ops/ops_cuda.h"      // defines: ops_cuda, ops_cuda_stream, ops_cuda_order_before
#ifdef SEGX_HAVE_CUDA
#include "trainer/gpu/gpu_check.h"     // defines: cudaCheck (errors reach ops_cuda_error)
#endif
// defines: stage_create, stage_put, stage_wait, stage_is_async, stage_free

typedef struct {
    Batch b;              // x, y: backend memory
    float *hx;            // pinned host copies (CUDA only)
    int32_t *hy;
    void *ev;             // cudaEvent_t recorded after the upload
    int pending;          // an upload from hx/hy was queued
} Slot;

struct BatchStage {
    const Ops *ops;
    int batch;
    size_t xs, ys;        // per sample
    int async;
    void *copy_stream;    // cudaStream_t
    Slot slot[2];
    int next;
};

#ifdef SEGX_HAVE_CUDA
static int cuda_slots(BatchStage *s, char *err, size_t errlen) {
    cudaStream_t st;
    cudaError_t e = cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    if (e != cudaSuccess) { snprintf(err, errlen, "batch staging: cudaStreamCreate: %s", cudaGetErrorString(e)); return -1; }
    s->copy_stream = st;
    size_t xb = sizeof(float) * s->xs * s->batch, yb = sizeof(int32_t) * s->ys * s->batch;
    for (int k = 0; k < 2 && e == cudaSuccess; k++) {
        Slot *sl = &s->slot[k];
        cudaEvent_t ev;
        if ((e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)) != cudaSuccess) break;
        sl->ev = ev;
        if ((e = cudaHostAlloc((void **)&sl->hx, xb ? xb : 1, cudaHostAllocDefault)) != cudaSuccess) break;
        e = cudaHostAlloc((void **)&sl->hy, yb ? yb : 1, cudaHostAllocDefault);
    }
    if (e != cudaSuccess) {
        snprintf(err, errlen, "batch staging: pinned host buffers (2 x %zu bytes): %s", xb + yb, cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

static void cuda_put(BatchStage *s, Slot *sl, const Batch *b, size_t xb, size_t yb) {
    cudaStream_t st = (cudaStream_t)s->copy_stream;
    if (sl->pending && cudaCheck(cudaEventSynchronize((cudaEvent_t)sl->ev))) return;   // hx/hy free again
    memcpy(sl->hx, b->x, xb);
    memcpy(sl->hy, b->y, yb);
    ops_cuda_order_before(st);   // the slot's previous batch is read by compute queued so far
    if (cudaCheck(cudaMemcpyAsync(sl->b.x, sl->hx, xb, cudaMemcpyHostToDevice, st)) ||
        cudaCheck(cudaMemcpyAsync(sl->b.y, sl->hy, yb, cudaMemcpyHostToDevice, st)) ||
        cudaCheck(cudaEventRecord((cudaEvent_t)sl->ev, st)))
        return;
    sl->pending = 1;
}
#endif

int stage_create(const Ops *ops, int batch, size_t x_per_sample, size_t y_per_sample, BatchStage **out,
                 char *err, size_t errlen) {
    *out = NULL;
    BatchStage *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "batch staging: out of memory"); return -1; }
    s->ops = ops; s->batch = batch > 0 ? batch : 1; s->xs = x_per_sample; s->ys = y_per_sample;
    s->async = ops_cuda() != NULL && ops == ops_cuda();
    for (int k = 0; k < 2; k++) {
        size_t xn = s->xs * (size_t)s->batch, yn = s->ys * (size_t)s->batch;
        s->slot[k].b.x = ops->alloc(sizeof(float) * (xn > 0 ? xn : 1));
        s->slot[k].b.y = ops->alloc(sizeof(int32_t) * (yn > 0 ? yn : 1));
        if (!s->slot[k].b.x || !s->slot[k].b.y) {
            snprintf(err, errlen, "batch staging: out of %s memory for two batches of %d", ops->name, s->batch);
            stage_free(s);
            return -1;
        }
    }
#ifdef SEGX_HAVE_CUDA
    if (s->async && cuda_slots(s, err, errlen)) { stage_free(s); return -1; }
#endif
    *out = s;
    return 0;
}

int stage_is_async(const BatchStage *s) { return s->async; }

const Batch *stage_put(BatchStage *s, const Batch *b) {
    if (b->n < 0 || b->n > s->batch) return NULL;
    Slot *sl = &s->slot[s->next];
    s->next ^= 1;
    size_t xb = sizeof(float) * s->xs * (size_t)b->n, yb = sizeof(int32_t) * s->ys * (size_t)b->n;
#ifdef SEGX_HAVE_CUDA
    if (s->async) cuda_put(s, sl, b, xb, yb);
#endif
    if (!s->async) {
        s->ops->upload(sl->b.x, b->x, xb);
        s->ops->upload(sl->b.y, b->y, yb);
    }
    sl->b.n = b->n;
    sl->b.index = b->index;
    return &sl->b;
}

void stage_wait(BatchStage *s, const Batch *staged) {
#ifdef SEGX_HAVE_CUDA
    for (int k = 0; k < 2 && s->async; k++)
        if (staged == &s->slot[k].b && s->slot[k].pending)
            cudaCheck(cudaStreamWaitEvent((cudaStream_t)ops_cuda_stream(), (cudaEvent_t)s->slot[k].ev, 0));
#else
    (void)s; (void)staged;
#endif
}

void stage_free(BatchStage *s) {
    if (!s) return;
#ifdef SEGX_HAVE_CUDA
    if (s->copy_stream) cudaStreamSynchronize((cudaStream_t)s->copy_stream);
    for (int k = 0; k < 2; k++) {
        if (s->slot[k].ev) cudaEventDestroy((cudaEvent_t)s->slot[k].ev);
        if (s->slot[k].hx) cudaFreeHost(s->slot[k].hx);
        if (s->slot[k].hy) cudaFreeHost(s->slot[k].hy);
    }
    if (s->copy_stream) cudaStreamDestroy((cudaStream_t)s->copy_stream);
#endif
    for (int k = 0; k < 2; k++) { s->ops->free(s->slot[k].b.x); s->ops->free(s->slot[k].b.y); }
    free(s);
}
