// trainer/ops/ops_cuda.cu — the CUDA op table (contract: ops.h, caller notes: ops_cuda.h).
// Convolutions (and the 2x2 transposed conv, as cuDNN's backward-data of a stride-2 conv) go through
// cuDNN with one plan per shape (descriptors + algorithms chosen once, within a workspace budget);
// linear layers through cuBLAS; batch norm, pooling, resize, elementwise and the loss are kernels of
// our own, reducing in double like ops_cpu.c. Everything runs on one stream; memory comes from a bump
// arena of cudaMalloc'ed chunks (never managed memory).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/gpu/gpu_check.h"   // defines: cudaCheck, cudnnCheck, cublasCheck, gpu_record_error
#include "trainer/ops/ops_cuda.h"    // defines: ops_cuda, ops_cuda_init, ...

// ----------------------------------------------------------------------------------------------
// state: one device per process

#define MAX_CHUNKS 1024
#define CHUNK_MIN (64ull << 20)
#define ALIGN 256

typedef struct {
    ConvDesc d; int B; GpuPrecision prec;           // key
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd; cudnnConvolutionBwdDataAlgo_t bwd_data; cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_bwd_data, ws_bwd_filter;     // bytes
} ConvPlan;

typedef struct { void *p; size_t bytes; } Scratch;
enum { S_A, S_B, S_C, S_SUMS, S_PART, S_COUNT, NSCRATCH };   // half copies (A,B,C), sums, partial sums, counters

static struct {
    int ready, device, cc_major;
    cudaStream_t stream;
    cudaEvent_t order_ev;      // ops_cuda_order_before
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    GpuPrecision prec;
    struct { char *base; size_t cap, used; int live; } chunk[MAX_CHUNKS];
    int nchunks;
    size_t arena_bytes, arena_used;
    void *ws; size_t ws_bytes, ws_budget;
    ConvPlan *plans; int nplans, plancap;
    Scratch scratch[NSCRATCH];
    double *host_sums; size_t host_sums_n;
    char err[768]; int failed;
    Ops table;
} G;

extern "C" void gpu_record_error(const char *file, int line, const char *call, const char *what) {
    if (G.failed) return;
    G.failed = 1;
    const char *base = strrchr(file, '/');
    snprintf(G.err, sizeof G.err, "%s:%d: %s: %s", base ? base + 1 : file, line, call, what);
    fprintf(stderr, "segx-train: CUDA backend error: %s\n", G.err);
}

extern "C" const char *ops_cuda_error(void) { return G.failed ? G.err : NULL; }

static void sync_stream(void) { cudaCheck(cudaStreamSynchronize(G.stream)); }
extern "C" void ops_cuda_sync(void) { if (G.ready) sync_stream(); }
extern "C" void *ops_cuda_stream(void) { return G.ready ? (void *)G.stream : NULL; }

extern "C" void ops_cuda_order_before(void *consumer_stream) {
    if (!G.ready) return;
    if (!G.order_ev && cudaCheck(cudaEventCreateWithFlags(&G.order_ev, cudaEventDisableTiming))) return;
    cudaCheck(cudaEventRecord(G.order_ev, G.stream));
    cudaCheck(cudaStreamWaitEvent((cudaStream_t)consumer_stream, G.order_ev, 0));
}

static void *scratch(int slot, size_t bytes) {
    Scratch *s = &G.scratch[slot];
    if (s->bytes >= bytes && s->p) return s->p;
    if (s->p) { sync_stream(); cudaCheck(cudaFree(s->p)); s->p = NULL; s->bytes = 0; }
    size_t want = bytes < 4096 ? 4096 : bytes;
    if (cudaCheck(cudaMalloc(&s->p, want))) return NULL;
    s->bytes = want;
    return s->p;
}

static double *host_sums(size_t n) {
    if (G.host_sums_n < n) {
        free(G.host_sums);
        G.host_sums = (double *)malloc(sizeof(double) * n);
        G.host_sums_n = G.host_sums ? n : 0;
    }
    return G.host_sums;
}

// grid for a grid-stride loop over n elements
static inline unsigned blocks_for(size_t n, int threads = 256) {
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > (1u << 20)) b = 1u << 20;
    return (unsigned)b;
}
#define GRID_STRIDE(i, n) for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                               i += (size_t)blockDim.x * gridDim.x)

// ----------------------------------------------------------------------------------------------
// memory: a bump arena of cudaMalloc'ed chunks. Each chunk counts its live allocations and is
// rewound when the count drops to 0, so per-step temporaries are reused; alloc zero-fills (on the
// stream, before any later use).

static void *cuda_alloc(size_t bytes) {
    size_t need = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (need == 0) need = ALIGN;
    int k = 0;
    while (k < G.nchunks && G.chunk[k].cap - G.chunk[k].used < need) k++;
    if (k == G.nchunks) {
        if (G.nchunks == MAX_CHUNKS) return NULL;
        size_t cap = need > CHUNK_MIN ? need : CHUNK_MIN;
        char *base = NULL;
        if (cudaMalloc(&base, cap) != cudaSuccess) {
            cudaGetLastError();   // out of memory is reported by returning NULL, not as a sticky failure
            return NULL;
        }
        G.chunk[k].base = base; G.chunk[k].cap = cap; G.chunk[k].used = 0; G.chunk[k].live = 0;
        G.nchunks++;
        G.arena_bytes += cap;
    }
    char *p = G.chunk[k].base + G.chunk[k].used;
    if (cudaCheck(cudaMemsetAsync(p, 0, need, G.stream))) return NULL;
    G.chunk[k].used += need; G.chunk[k].live++;
    G.arena_used += need;
    return p;
}

static void cuda_free(void *p) {
    if (!p) return;
    for (int k = 0; k < G.nchunks; k++) {
        auto *c = &G.chunk[k];
        if ((char *)p < c->base || (char *)p >= c->base + c->cap) continue;
        if (--c->live == 0) { G.arena_used -= c->used; c->used = 0; }
        return;
    }
}

static void cuda_upload(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, G.stream));
    sync_stream();   // the host buffer may be reused as soon as we return
}
static void cuda_download(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, G.stream));
    sync_stream();
}
static void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, G.stream));
}
static void cuda_zero(void *p, size_t bytes) {
    if (bytes) cudaCheck(cudaMemsetAsync(p, 0, bytes, G.stream));
}
static void cuda_set_threads(int) {}

// ----------------------------------------------------------------------------------------------
// reduced precision: inputs are rounded to bf16/fp16 copies, cuDNN/cuBLAS accumulate in fp32

template <typename T> __device__ inline T from_float(float v);
template <> __device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __global__ void k_to_half(size_t n, T *dst, const float *src) {
    GRID_STRIDE(i, n) dst[i] = from_float<T>(src[i]);
}
// dst = float(src) + beta * dst (beta 0 or 1)
template <typename T> __global__ void k_from_half(size_t n, float *dst, const T *src, float beta) {
    GRID_STRIDE(i, n) dst[i] = to_float(src[i]) + (beta != 0.f ? beta * dst[i] : 0.f);
}

static size_t half_size(void) { return 2; }

// Returns a bf16/fp16 copy of src (n floats) in scratch slot `slot`.
static void *to_half(int slot, const float *src, size_t n) {
    void *d = scratch(slot, n * half_size());
    if (!d) return NULL;
    if (G.prec == GPU_BF16) k_to_half<__nv_bfloat16><<<blocks_for(n), 256, 0, G.stream>>>(n, (__nv_bfloat16 *)d, src);
    else k_to_half<__half><<<blocks_for(n), 256, 0, G.stream>>>(n, (__half *)d, src);
    cudaCheckLaunch("k_to_half");
    return d;
}
static void from_half(float *dst, const void *src, size_t n, float beta) {
    if (G.prec == GPU_BF16) k_from_half<<<blocks_for(n), 256, 0, G.stream>>>(n, dst, (const __nv_bfloat16 *)src, beta);
    else k_from_half<<<blocks_for(n), 256, 0, G.stream>>>(n, dst, (const __half *)src, beta);
    cudaCheckLaunch("k_from_half");
}

extern "C" int ops_cuda_set_precision(GpuPrecision p, char *err, size_t n) {
    if (!G.ready) { snprintf(err, n, "ops_cuda_set_precision: call ops_cuda_init first"); return -1; }
    if (p == GPU_BF16 && G.cc_major < 8) {
        snprintf(err, n, "--precision bf16 needs compute capability 8.0 or newer (this GPU is %d.x): use fp16 or fp32",
                 G.cc_major);
        return -1;
    }
    if (p != GPU_FP32 && p != GPU_BF16 && p != GPU_FP16) { snprintf(err, n, "unknown precision %d", (int)p); return -1; }
    G.prec = p;
    return 0;
}

// ----------------------------------------------------------------------------------------------
// conv plans: descriptors and algorithms per (shape, batch, precision), chosen on first use

static cudnnDataType_t dnn_type(GpuPrecision p) {
    return p == GPU_BF16 ? CUDNN_DATA_BFLOAT16 : p == GPU_FP16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
}

static int groups_of(const ConvDesc *d) { return d->groups > 1 ? d->groups : 1; }

static int same_desc(const ConvDesc *a, const ConvDesc *b) {
    return a->cin == b->cin && a->cout == b->cout && a->h == b->h && a->w == b->w && a->kh == b->kh &&
           a->kw == b->kw && a->stride == b->stride && a->pad == b->pad && a->dil == b->dil &&
           groups_of(a) == groups_of(b);
}

static int ensure_ws(size_t bytes) {
    if (bytes <= G.ws_bytes) return 0;
    if (G.ws) { sync_stream(); cudaCheck(cudaFree(G.ws)); G.ws = NULL; G.ws_bytes = 0; }
    if (cudaCheck(cudaMalloc(&G.ws, bytes))) return -1;
    G.ws_bytes = bytes;
    return 0;
}

#define NO_ALGO(what) "no cuDNN " what " algorithm is supported for this shape and precision within the " \
                     "workspace budget (raise SEGX_CUDNN_WORKSPACE_MB, default 512)"

// fp32 plans must not pick a tensor-core (TF32 / down-converting) variant: fp32 means fp32 here.
static int math_ok(cudnnMathType_t m) {
    return G.prec != GPU_FP32 || (m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

static ConvPlan *conv_plan(const ConvDesc *d, int B) {
    for (int i = 0; i < G.nplans; i++)
        if (G.plans[i].B == B && G.plans[i].prec == G.prec && same_desc(&G.plans[i].d, d)) return &G.plans[i];
    if (G.nplans == G.plancap) {
        int cap = G.plancap ? 2 * G.plancap : 32;
        ConvPlan *p = (ConvPlan *)realloc(G.plans, sizeof(ConvPlan) * cap);
        if (!p) { gpu_record_error(__FILE__, __LINE__, "conv_plan", "out of host memory"); return NULL; }
        G.plans = p; G.plancap = cap;
    }
    ConvPlan *p = &G.plans[G.nplans];
    memset(p, 0, sizeof *p);
    p->d = *d; p->B = B; p->prec = G.prec;
    cudnnDataType_t t = dnn_type(G.prec);
    if (cudnnCheck(cudnnCreateTensorDescriptor(&p->x)) || cudnnCheck(cudnnCreateTensorDescriptor(&p->y)) ||
        cudnnCheck(cudnnCreateFilterDescriptor(&p->w)) || cudnnCheck(cudnnCreateConvolutionDescriptor(&p->conv)))
        return NULL;
    if (cudnnCheck(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, t, B, d->cin, d->h, d->w)) ||
        cudnnCheck(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, t, B, d->cout, d->oh, d->ow)) ||
        cudnnCheck(cudnnSetFilter4dDescriptor(p->w, t, CUDNN_TENSOR_NCHW, d->cout, d->cin / groups_of(d), d->kh, d->kw)) ||
        cudnnCheck(cudnnSetConvolution2dDescriptor(p->conv, d->pad, d->pad, d->stride, d->stride, d->dil, d->dil,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) ||
        cudnnCheck(cudnnSetConvolutionGroupCount(p->conv, groups_of(d))))   // grouped / depthwise
        return NULL;
    // fp32: FMA kernels only (no TF32), so results match the CPU twin; bf16/fp16: tensor cores.
    if (cudnnCheck(cudnnSetConvolutionMathType(p->conv, G.prec == GPU_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH)))
        return NULL;
    int n, on, oc, oh, ow;
    if (cudnnCheck(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &on, &oc, &oh, &ow))) return NULL;
    if (on != B || oc != d->cout || oh != d->oh || ow != d->ow) {
        gpu_record_error(__FILE__, __LINE__, "cudnnGetConvolution2dForwardOutputDim", "output shape differs from ConvDesc");
        return NULL;
    }
    // heuristics ranked by expected speed; take the first that is supported within the budget
    cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnnConvolutionBwdDataAlgoPerf_t dp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnnConvolutionBwdFilterAlgoPerf_t wp[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int found = 0; size_t bytes;
    if (cudnnCheck(cudnnGetConvolutionForwardAlgorithm_v7(G.dnn, p->x, p->w, p->conv, p->y,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, fp))) return NULL;
    for (int i = 0; i < n && !found; i++)
        if (fp[i].status == CUDNN_STATUS_SUCCESS && math_ok(fp[i].mathType) &&
            cudnnGetConvolutionForwardWorkspaceSize(G.dnn, p->x, p->w, p->conv, p->y, fp[i].algo, &bytes) ==
                CUDNN_STATUS_SUCCESS && bytes <= G.ws_budget) { p->fwd = fp[i].algo; p->ws_fwd = bytes; found = 1; }
    // fallback: implicit GEMM needs no workspace and runs everywhere
    if (!found && cudnnGetConvolutionForwardWorkspaceSize(G.dnn, p->x, p->w, p->conv, p->y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                                          &bytes) == CUDNN_STATUS_SUCCESS && bytes <= G.ws_budget) {
        p->fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM; p->ws_fwd = bytes; found = 1;
    }
    if (!found) { gpu_record_error(__FILE__, __LINE__, "conv_plan", NO_ALGO("forward")); return NULL; }
    found = 0;
    if (cudnnCheck(cudnnGetConvolutionBackwardDataAlgorithm_v7(G.dnn, p->w, p->y, p->conv, p->x,
                                                               CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, dp))) return NULL;
    for (int i = 0; i < n && !found; i++)
        if (dp[i].status == CUDNN_STATUS_SUCCESS && math_ok(dp[i].mathType) &&
            cudnnGetConvolutionBackwardDataWorkspaceSize(G.dnn, p->w, p->y, p->conv, p->x, dp[i].algo, &bytes) ==
                CUDNN_STATUS_SUCCESS && bytes <= G.ws_budget) { p->bwd_data = dp[i].algo; p->ws_bwd_data = bytes; found = 1; }
    if (!found && cudnnGetConvolutionBackwardDataWorkspaceSize(G.dnn, p->w, p->y, p->conv, p->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                                               &bytes) == CUDNN_STATUS_SUCCESS && bytes <= G.ws_budget) {
        p->bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1; p->ws_bwd_data = bytes; found = 1;
    }
    if (!found) { gpu_record_error(__FILE__, __LINE__, "conv_plan", NO_ALGO("backward-data")); return NULL; }
    found = 0;
    if (cudnnCheck(cudnnGetConvolutionBackwardFilterAlgorithm_v7(G.dnn, p->x, p->y, p->conv, p->w,
                                                                 CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, wp))) return NULL;
    for (int i = 0; i < n && !found; i++)
        if (wp[i].status == CUDNN_STATUS_SUCCESS && math_ok(wp[i].mathType) &&
            cudnnGetConvolutionBackwardFilterWorkspaceSize(G.dnn, p->x, p->y, p->conv, p->w, wp[i].algo, &bytes) ==
                CUDNN_STATUS_SUCCESS && bytes <= G.ws_budget) { p->bwd_filter = wp[i].algo; p->ws_bwd_filter = bytes; found = 1; }
    if (!found && cudnnGetConvolutionBackwardFilterWorkspaceSize(G.dnn, p->x, p->y, p->conv, p->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                                                 &bytes) == CUDNN_STATUS_SUCCESS && bytes <= G.ws_budget) {
        p->bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1; p->ws_bwd_filter = bytes; found = 1;
    }
    if (!found) { gpu_record_error(__FILE__, __LINE__, "conv_plan", NO_ALGO("backward-filter")); return NULL; }
    G.nplans++;
    return p;
}

static size_t x_numel(const ConvPlan *p) { return (size_t)p->B * p->d.cin * p->d.h * p->d.w; }
static size_t y_numel(const ConvPlan *p) { return (size_t)p->B * p->d.cout * p->d.oh * p->d.ow; }
static size_t w_numel(const ConvPlan *p) { return (size_t)p->d.cout * (p->d.cin / groups_of(&p->d)) * p->d.kh * p->d.kw; }

// y = conv(x, w) + beta*y. In bf16/fp16 the inputs are rounded copies and the output is converted back.
static void conv_run_fwd(ConvPlan *p, float *y, const float *x, const float *w, float beta) {
    if (ensure_ws(p->ws_fwd)) return;
    float one = 1.f, b = beta, zero = 0.f;
    if (p->prec == GPU_FP32) {
        cudnnCheck(cudnnConvolutionForward(G.dnn, &one, p->x, x, p->w, w, p->conv, p->fwd, G.ws, p->ws_fwd, &b, p->y, y));
        return;
    }
    void *xh = to_half(S_A, x, x_numel(p)), *wh = to_half(S_B, w, w_numel(p)), *yh = scratch(S_C, y_numel(p) * half_size());
    if (!xh || !wh || !yh) return;
    cudnnCheck(cudnnConvolutionForward(G.dnn, &one, p->x, xh, p->w, wh, p->conv, p->fwd, G.ws, p->ws_fwd, &zero, p->y, yh));
    from_half(y, yh, y_numel(p), beta);
}

// dx = conv^T(dy, w) + beta*dx
static void conv_run_bwd_data(ConvPlan *p, float *dx, const float *dy, const float *w, float beta) {
    if (ensure_ws(p->ws_bwd_data)) return;
    float one = 1.f, b = beta, zero = 0.f;
    if (p->prec == GPU_FP32) {
        cudnnCheck(cudnnConvolutionBackwardData(G.dnn, &one, p->w, w, p->y, dy, p->conv, p->bwd_data, G.ws,
                                                p->ws_bwd_data, &b, p->x, dx));
        return;
    }
    void *dyh = to_half(S_A, dy, y_numel(p)), *wh = to_half(S_B, w, w_numel(p)), *dxh = scratch(S_C, x_numel(p) * half_size());
    if (!dyh || !wh || !dxh) return;
    cudnnCheck(cudnnConvolutionBackwardData(G.dnn, &one, p->w, wh, p->y, dyh, p->conv, p->bwd_data, G.ws,
                                            p->ws_bwd_data, &zero, p->x, dxh));
    from_half(dx, dxh, x_numel(p), beta);
}

// dw = sum over the batch of dy (x) x + beta*dw
static void conv_run_bwd_filter(ConvPlan *p, float *dw, const float *dy, const float *x, float beta) {
    if (ensure_ws(p->ws_bwd_filter)) return;
    float one = 1.f, b = beta, zero = 0.f;
    if (p->prec == GPU_FP32) {
        cudnnCheck(cudnnConvolutionBackwardFilter(G.dnn, &one, p->x, x, p->y, dy, p->conv, p->bwd_filter, G.ws,
                                                  p->ws_bwd_filter, &b, p->w, dw));
        return;
    }
    void *xh = to_half(S_A, x, x_numel(p)), *dyh = to_half(S_B, dy, y_numel(p)), *dwh = scratch(S_C, w_numel(p) * half_size());
    if (!xh || !dyh || !dwh) return;
    cudnnCheck(cudnnConvolutionBackwardFilter(G.dnn, &one, p->x, xh, p->y, dyh, p->conv, p->bwd_filter, G.ws,
                                              p->ws_bwd_filter, &zero, p->w, dwh));
    from_half(dw, dwh, w_numel(p), beta);   // master gradients stay fp32 and accumulate in fp32
}

// y (B, C, HW) += b[c]
__global__ void k_add_bias(size_t n, int C, size_t HW, float *y, const float *b) {
    GRID_STRIDE(i, n) y[i] += b[(i / HW) % C];
}

// db[c] += sum over (B, HW) of dy, one block per channel, reduced in double
__global__ void k_channel_sums_acc(int B, int C, size_t HW, float *db, const float *dy) {
    __shared__ double sh[256];
    int c = blockIdx.x;
    double s = 0;
    for (int n = 0; n < B; n++) {
        const float *p = dy + ((size_t)n * C + c) * HW;
        for (size_t i = threadIdx.x; i < HW; i += blockDim.x) s += p[i];
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[c] += (float)sh[0];
}

static void add_bias(int B, int C, size_t HW, float *y, const float *b) {
    size_t n = (size_t)B * C * HW;
    k_add_bias<<<blocks_for(n), 256, 0, G.stream>>>(n, C, HW, y, b);
    cudaCheckLaunch("k_add_bias");
}
static void bias_grad(int B, int C, size_t HW, float *db, const float *dy) {
    k_channel_sums_acc<<<C, 256, 0, G.stream>>>(B, C, HW, db, dy);
    cudaCheckLaunch("k_channel_sums_acc");
}

static size_t cuda_conv2d_workspace(const ConvDesc *, int) { return 0; }

static void cuda_conv2d_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b,
                                float *) {
    ConvPlan *p = conv_plan(d, B);
    if (!p) return;
    conv_run_fwd(p, y, x, w, 0.f);
    if (b) add_bias(B, d->cout, (size_t)d->oh * d->ow, y, b);
}

static void cuda_conv2d_backward(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w, float *, int accumulate) {
    ConvPlan *p = conv_plan(d, B);
    if (!p) return;
    conv_run_bwd_filter(p, dw, dy, x, 1.f);
    if (db) bias_grad(B, d->cout, (size_t)d->oh * d->ow, db, dy);
    if (dx) conv_run_bwd_data(p, dx, dy, w, accumulate ? 1.f : 0.f);
}

// transposed conv 2x2 stride 2 = backward-data of the conv (cout channels at 2h x 2w) -> (cin at h x w)
// whose filter is wt (cin, cout, 2, 2) read as (K = cin, C = cout, 2, 2).
static ConvPlan *convt_plan(int B, int cin, int cout, int h, int w) {
    ConvDesc d;
    if (ops_conv2d_desc(&d, cout, cin, 2 * h, 2 * w, 2, 2, 0, 1)) {
        gpu_record_error(__FILE__, __LINE__, "convt_plan", "bad transposed-conv shape");
        return NULL;
    }
    return conv_plan(&d, B);
}

static size_t cuda_convt2x2_workspace(int, int, int, int) { return 0; }

static void cuda_convt2x2_forward(int B, int cin, int cout, int h, int w, float *y, const float *x, const float *wt,
                                  const float *b, float *) {
    ConvPlan *p = convt_plan(B, cin, cout, h, w);
    if (!p) return;
    conv_run_bwd_data(p, y, x, wt, 0.f);
    if (b) add_bias(B, cout, (size_t)4 * h * w, y, b);
}

static void cuda_convt2x2_backward(int B, int cin, int cout, int h, int w, float *dx, float *dw, float *db,
                                   const float *dy, const float *x, const float *wt, float *) {
    ConvPlan *p = convt_plan(B, cin, cout, h, w);
    if (!p) return;
    conv_run_bwd_filter(p, dw, x, dy, 1.f);   // "x" of the plan is dy (2h x 2w), its "dy" is x
    if (db) bias_grad(B, cout, (size_t)4 * h * w, db, dy);
    if (dx) conv_run_fwd(p, dx, dy, wt, 0.f);
}

// ----------------------------------------------------------------------------------------------
// batch norm (+ReLU). Per-channel sums in double over C x S blocks; the finalize step mirrors
// ops_cpu.c's double arithmetic. With BnSync the 2C+1 sums go to the host for the hook and back.

__device__ inline double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// Channel c's B*HW elements are split over S blocks (grid C x S) so that few, large channels still
// fill the GPU; partial sums are added in block order afterwards, so results are reproducible.
static int bn_splits(int B, int HW) {
    long per = (long)B * HW / (256 * 16);
    return per < 1 ? 1 : per > 64 ? 64 : (int)per;
}

// element j of channel c's (B, HW) slice
__device__ inline size_t bn_at(size_t j, int C, int HW, int c) {
    size_t n = j / HW;
    return (n * C + c) * HW + (j - n * HW);
}

__global__ void k_bn_sums(int B, int C, int HW, double *part, const float *x) {
    __shared__ double sh[256];
    int c = blockIdx.x, S = gridDim.y;
    size_t total = (size_t)B * HW;
    double s = 0, ss = 0;
    for (size_t j = (size_t)blockIdx.y * blockDim.x + threadIdx.x; j < total; j += (size_t)S * blockDim.x) {
        double v = x[bn_at(j, C, HW, c)];
        s += v; ss += v * v;
    }
    s = block_sum(s, sh);
    ss = block_sum(ss, sh);
    if (threadIdx.x == 0) { part[2 * ((size_t)c * S + blockIdx.y)] = s; part[2 * ((size_t)c * S + blockIdx.y) + 1] = ss; }
}

// buf = [sum over the splits of part's first values (C), of its second values (C), count]
__global__ void k_bn_reduce(int C, int S, const double *part, double *buf, double count) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c == 0) buf[2 * C] = count;
    if (c >= C) return;
    double a = 0, b = 0;
    for (int k = 0; k < S; k++) { a += part[2 * ((size_t)c * S + k)]; b += part[2 * ((size_t)c * S + k) + 1]; }
    buf[c] = a; buf[C + c] = b;
}

__global__ void k_bn_stats(int C, const double *buf, float *save_mean, float *save_invstd, float *running_mean,
                           float *running_var, float *num_batches) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c == 0 && num_batches) *num_batches += 1.f;
    if (c >= C) return;
    double N = buf[2 * C], mean = buf[c] / N, var = buf[C + c] / N - mean * mean;
    if (var < 0) var = 0;
    save_mean[c] = (float)mean;
    save_invstd[c] = (float)(1.0 / sqrt(var + (double)OPS_BN_EPS));
    double unbiased = N > 1 ? var * N / (N - 1) : var;
    running_mean[c] = (float)((1 - (double)OPS_BN_MOMENTUM) * running_mean[c] + (double)OPS_BN_MOMENTUM * mean);
    running_var[c] = (float)((1 - (double)OPS_BN_MOMENTUM) * running_var[c] + (double)OPS_BN_MOMENTUM * unbiased);
}

__global__ void k_bn_eval_stats(int C, float *save_mean, float *save_invstd, const float *running_mean,
                                const float *running_var) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    save_mean[c] = running_mean[c];
    save_invstd[c] = (float)(1.0 / sqrt((double)running_var[c] + (double)OPS_BN_EPS));
}

__global__ void k_bn_apply(size_t n, int C, int HW, float *y, const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *beta, int relu) {
    GRID_STRIDE(i, n) {
        int c = (int)((i / HW) % C);
        float sc = gamma[c] * invstd[c], sh = beta[c] - mean[c] * sc;
        float v = x[i] * sc + sh;
        if (relu) v = v > 0.f ? v : 0.f;
        if (relu == 2) v = v < 6.f ? v : 6.f;   // ReLU6
        y[i] = v;
    }
}

// Sends the 2C+1 sums through the sync hook (host side) when one is set.
static void bn_sync(const BnSync *sync, double *dbuf, int C) {
    if (!sync || !sync->fn) return;
    size_t n = 2 * (size_t)C + 1;
    double *h = host_sums(n);
    if (!h) { gpu_record_error(__FILE__, __LINE__, "bn_sync", "out of host memory"); return; }
    cudaCheck(cudaMemcpyAsync(h, dbuf, sizeof(double) * n, cudaMemcpyDeviceToHost, G.stream));
    sync_stream();
    if (sync->fn(sync->ctx, h, n)) gpu_record_error(__FILE__, __LINE__, "BnSync", "the allreduce of batch-norm sums failed");
    cudaCheck(cudaMemcpyAsync(dbuf, h, sizeof(double) * n, cudaMemcpyHostToDevice, G.stream));
    sync_stream();   // h is reused by the next layer
}

static void cuda_batchnorm_forward(int B, int C, int HW, float *y, float *save_mean, float *save_invstd, const float *x,
                                   const float *gamma, const float *beta, float *running_mean, float *running_var,
                                   float *num_batches, int training, int relu, const BnSync *sync) {
    unsigned cb = (unsigned)((C + 127) / 128);
    if (training) {
        int S = bn_splits(B, HW);
        double *buf = (double *)scratch(S_SUMS, sizeof(double) * (2 * (size_t)C + 1));
        double *part = (double *)scratch(S_PART, sizeof(double) * 2 * (size_t)C * S);
        if (!buf || !part) return;
        k_bn_sums<<<dim3(C, S), 256, 0, G.stream>>>(B, C, HW, part, x);
        cudaCheckLaunch("k_bn_sums");
        k_bn_reduce<<<cb, 128, 0, G.stream>>>(C, S, part, buf, (double)B * HW);
        cudaCheckLaunch("k_bn_reduce");
        bn_sync(sync, buf, C);
        k_bn_stats<<<cb, 128, 0, G.stream>>>(C, buf, save_mean, save_invstd, running_mean, running_var, num_batches);
        cudaCheckLaunch("k_bn_stats");
    } else {
        k_bn_eval_stats<<<cb, 128, 0, G.stream>>>(C, save_mean, save_invstd, running_mean, running_var);
        cudaCheckLaunch("k_bn_eval_stats");
    }
    size_t n = (size_t)B * C * HW;
    k_bn_apply<<<blocks_for(n), 256, 0, G.stream>>>(n, C, HW, y, x, save_mean, save_invstd, gamma, beta, relu);
    cudaCheckLaunch("k_bn_apply");
}

// Whether the gradient passes the activation at output y: ReLU y > 0, ReLU6 0 < y < 6.
__device__ inline bool relu_pass(float y, int relu) { return !relu || (y > 0.f && (relu != 2 || y < 6.f)); }

// Partial sums s = sum dy', sx = sum dy' (x - mean) with dy' = dy masked by y > 0 under ReLU.
__global__ void k_bn_grad_sums(int B, int C, int HW, double *part, const float *dy, const float *x, const float *y,
                               const float *mean, int relu) {
    __shared__ double sh[256];
    int c = blockIdx.x, S = gridDim.y;
    float m = mean[c];
    size_t total = (size_t)B * HW;
    double s = 0, sx = 0;
    for (size_t j = (size_t)blockIdx.y * blockDim.x + threadIdx.x; j < total; j += (size_t)S * blockDim.x) {
        size_t o = bn_at(j, C, HW, c);
        float g = relu_pass(y[o], relu) ? dy[o] : 0.f;
        s += g; sx += (double)g * (x[o] - m);
    }
    s = block_sum(s, sh);
    sx = block_sum(sx, sh);
    if (threadIdx.x == 0) { part[2 * ((size_t)c * S + blockIdx.y)] = s; part[2 * ((size_t)c * S + blockIdx.y) + 1] = sx; }
}

// Adds the splits, finalizes the parameter gradients (local, before any sync, like the CPU twin) and
// leaves buf as the sync hook expects it: [sum dy' (C), sum dy' xhat (C), count].
__global__ void k_bn_grad_reduce(int C, int S, const double *part, double *buf, double count, float *dgamma,
                                 float *dbeta, const float *invstd) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c == 0) buf[2 * C] = count;
    if (c >= C) return;
    double s = 0, sx = 0;
    for (int k = 0; k < S; k++) { s += part[2 * ((size_t)c * S + k)]; sx += part[2 * ((size_t)c * S + k) + 1]; }
    double sxh = sx * invstd[c];
    dbeta[c] += (float)s; dgamma[c] += (float)sxh;
    buf[c] = s; buf[C + c] = sxh;
}

// dx = gamma*invstd * (dy' - mean(dy') - xhat * mean(dy' xhat)) = a*dy' + cx*x + e
__global__ void k_bn_grad_apply(size_t n, int C, int HW, float *dx, const double *buf, const float *dy, const float *x,
                                const float *y, const float *mean, const float *invstd, const float *gamma, int relu) {
    GRID_STRIDE(i, n) {
        int c = (int)((i / HW) % C);
        double N = buf[2 * C], is = invstd[c], k = gamma[c] * is, mdy = buf[c] / N, mdyx = buf[C + c] / N;
        float a = (float)k, cx = (float)(-k * is * mdyx), e = (float)(-k * mdy + k * is * mdyx * mean[c]);
        float g = relu_pass(y[i], relu) ? dy[i] : 0.f;
        dx[i] = a * g + cx * x[i] + e;
    }
}

static void cuda_batchnorm_backward(int B, int C, int HW, float *dx, float *dgamma, float *dbeta, const float *dy,
                                    const float *x, const float *y, const float *save_mean, const float *save_invstd,
                                    const float *gamma, int relu, const BnSync *sync) {
    int S = bn_splits(B, HW);
    double *buf = (double *)scratch(S_SUMS, sizeof(double) * (2 * (size_t)C + 1));
    double *part = (double *)scratch(S_PART, sizeof(double) * 2 * (size_t)C * S);
    if (!buf || !part) return;
    k_bn_grad_sums<<<dim3(C, S), 256, 0, G.stream>>>(B, C, HW, part, dy, x, y, save_mean, relu);
    cudaCheckLaunch("k_bn_grad_sums");
    k_bn_grad_reduce<<<(C + 127) / 128, 128, 0, G.stream>>>(C, S, part, buf, (double)B * HW, dgamma, dbeta, save_invstd);
    cudaCheckLaunch("k_bn_grad_reduce");
    bn_sync(sync, buf, C);
    if (!dx) return;
    size_t n = (size_t)B * C * HW;
    k_bn_grad_apply<<<blocks_for(n), 256, 0, G.stream>>>(n, C, HW, dx, buf, dy, x, y, save_mean, save_invstd, gamma, relu);
    cudaCheckLaunch("k_bn_grad_apply");
}

// ----------------------------------------------------------------------------------------------
// elementwise

__global__ void k_relu(size_t n, float *y, const float *x) { GRID_STRIDE(i, n) y[i] = x[i] > 0.f ? x[i] : 0.f; }
__global__ void k_relu_bw(size_t n, float *dx, const float *dy, const float *y) {
    GRID_STRIDE(i, n) { float g = dy[i]; dx[i] = y[i] > 0.f ? g : 0.f; }
}
__global__ void k_add(size_t n, float *y, const float *a, const float *b) { GRID_STRIDE(i, n) y[i] = a[i] + b[i]; }

static void cuda_relu_forward(size_t n, float *y, const float *x) {
    if (!n) return;
    k_relu<<<blocks_for(n), 256, 0, G.stream>>>(n, y, x);
    cudaCheckLaunch("k_relu");
}
static void cuda_relu_backward(size_t n, float *dx, const float *dy, const float *y) {
    if (!n) return;
    k_relu_bw<<<blocks_for(n), 256, 0, G.stream>>>(n, dx, dy, y);
    cudaCheckLaunch("k_relu_bw");
}
static void cuda_add(size_t n, float *y, const float *a, const float *b) {
    if (!n) return;
    k_add<<<blocks_for(n), 256, 0, G.stream>>>(n, y, a, b);
    cudaCheckLaunch("k_add");
}
static void cuda_accumulate(size_t n, float *y, const float *x) { cuda_add(n, y, y, x); }

// ----------------------------------------------------------------------------------------------
// pooling

// first maximum in scan order; a NaN wins (as PyTorch and the CPU twin)
__device__ inline int max4_at(const float *x, int w, int base) {
    int at = base;
    float m = x[base];
    int cand[3] = {base + 1, base + w, base + w + 1};
    for (int k = 0; k < 3; k++)
        if (x[cand[k]] > m || isnan(x[cand[k]])) { m = x[cand[k]]; at = cand[k]; }
    return at;
}

__global__ void k_maxpool(size_t n, int h, int w, float *y, const float *x) {
    int oh = h / 2, ow = w / 2;
    GRID_STRIDE(i, n) {
        size_t p = i / ((size_t)oh * ow);
        int r = (int)(i % ((size_t)oh * ow)), oy = r / ow, ox = r % ow;
        const float *xp = x + p * h * w;
        y[i] = xp[max4_at(xp, w, 2 * oy * w + 2 * ox)];
    }
}
__global__ void k_maxpool_bw(size_t n, int h, int w, float *dx, const float *dy, const float *x) {
    int oh = h / 2, ow = w / 2;
    GRID_STRIDE(i, n) {   // windows do not overlap: one writer per dx element
        size_t p = i / ((size_t)oh * ow);
        int r = (int)(i % ((size_t)oh * ow)), oy = r / ow, ox = r % ow;
        dx[p * h * w + max4_at(x + p * h * w, w, 2 * oy * w + 2 * ox)] = dy[i];
    }
}

static void cuda_maxpool2x2_forward(int B, int C, int h, int w, float *y, const float *x) {
    size_t n = (size_t)B * C * (h / 2) * (w / 2);
    if (!n) return;
    k_maxpool<<<blocks_for(n), 256, 0, G.stream>>>(n, h, w, y, x);
    cudaCheckLaunch("k_maxpool");
}
static void cuda_maxpool2x2_backward(int B, int C, int h, int w, float *dx, const float *dy, const float *x) {
    cuda_zero(dx, sizeof(float) * B * C * h * w);
    size_t n = (size_t)B * C * (h / 2) * (w / 2);
    if (!n) return;
    k_maxpool_bw<<<blocks_for(n), 256, 0, G.stream>>>(n, h, w, dx, dy, x);
    cudaCheckLaunch("k_maxpool_bw");
}

__global__ void k_avgpool(size_t planes, int HW, float *y, const float *x) {
    GRID_STRIDE(p, planes) {
        double s = 0;
        for (int i = 0; i < HW; i++) s += x[p * HW + i];
        y[p] = (float)(s / HW);
    }
}
__global__ void k_avgpool_bw(size_t n, int HW, float *dx, const float *dy) {
    GRID_STRIDE(i, n) dx[i] = dy[i / HW] / (float)HW;
}
static void cuda_avgpool_forward(int B, int C, int HW, float *y, const float *x) {
    size_t planes = (size_t)B * C;
    k_avgpool<<<blocks_for(planes, 128), 128, 0, G.stream>>>(planes, HW, y, x);
    cudaCheckLaunch("k_avgpool");
}
static void cuda_avgpool_backward(int B, int C, int HW, float *dx, const float *dy) {
    size_t n = (size_t)B * C * HW;
    k_avgpool_bw<<<blocks_for(n), 256, 0, G.stream>>>(n, HW, dx, dy);
    cudaCheckLaunch("k_avgpool_bw");
}

// ----------------------------------------------------------------------------------------------
// bilinear resize, align_corners=False (same index arithmetic as the CPU twin)

__device__ inline void lerp_at(int o, int in, int out, int *i0, int *i1, float *l0, float *l1) {
    float scale = (float)in / (float)out;
    float src = __fsub_rn(__fmul_rn(o + 0.5f, scale), 0.5f);   // no FMA: the same rounding as the CPU
    if (src < 0) src = 0;
    int a = (int)src;
    if (a > in - 1) a = in - 1;
    *i0 = a; *i1 = a + (a < in - 1);
    *l1 = src - a; *l0 = 1.f - *l1;
}

__global__ void k_upsample(size_t n, int h, int w, int oh, int ow, float *y, const float *x) {
    GRID_STRIDE(i, n) {
        size_t p = i / ((size_t)oh * ow);
        int r = (int)(i % ((size_t)oh * ow)), oy = r / ow, ox = r % ow;
        int y0, y1, x0, x1; float a0, a1, b0, b1;
        lerp_at(oy, h, oh, &y0, &y1, &a0, &a1);
        lerp_at(ox, w, ow, &x0, &x1, &b0, &b1);
        const float *xp = x + p * h * w, *r0 = xp + y0 * w, *r1 = xp + y1 * w;
        y[i] = a0 * (b0 * r0[x0] + b1 * r0[x1]) + a1 * (b0 * r1[x0] + b1 * r1[x1]);
    }
}
__global__ void k_upsample_bw(size_t n, int h, int w, int oh, int ow, float *dx, const float *dy) {
    GRID_STRIDE(i, n) {
        size_t p = i / ((size_t)oh * ow);
        int r = (int)(i % ((size_t)oh * ow)), oy = r / ow, ox = r % ow;
        int y0, y1, x0, x1; float a0, a1, b0, b1;
        lerp_at(oy, h, oh, &y0, &y1, &a0, &a1);
        lerp_at(ox, w, ow, &x0, &x1, &b0, &b1);
        float g = dy[i], *dp = dx + p * h * w;
        atomicAdd(dp + y0 * w + x0, a0 * b0 * g); atomicAdd(dp + y0 * w + x1, a0 * b1 * g);
        atomicAdd(dp + y1 * w + x0, a1 * b0 * g); atomicAdd(dp + y1 * w + x1, a1 * b1 * g);
    }
}
static void cuda_upsample_bilinear_forward(int B, int C, int h, int w, int oh, int ow, float *y, const float *x) {
    size_t n = (size_t)B * C * oh * ow;
    if (!n) return;
    k_upsample<<<blocks_for(n), 256, 0, G.stream>>>(n, h, w, oh, ow, y, x);
    cudaCheckLaunch("k_upsample");
}
static void cuda_upsample_bilinear_backward(int B, int C, int h, int w, int oh, int ow, float *dx, const float *dy) {
    cuda_zero(dx, sizeof(float) * B * C * h * w);
    size_t n = (size_t)B * C * oh * ow;
    if (!n) return;
    k_upsample_bw<<<blocks_for(n), 256, 0, G.stream>>>(n, h, w, oh, ow, dx, dy);
    cudaCheckLaunch("k_upsample_bw");
}

// ----------------------------------------------------------------------------------------------
// concat: two strided 2D copies (rows = samples)

static void cuda_concat_forward(int B, int ca, int cb, int HW, float *y, const float *a, const float *b) {
    size_t row = sizeof(float) * (size_t)(ca + cb) * HW, sa = sizeof(float) * (size_t)ca * HW, sb = sizeof(float) * (size_t)cb * HW;
    if (sa) cudaCheck(cudaMemcpy2DAsync(y, row, a, sa, sa, B, cudaMemcpyDeviceToDevice, G.stream));
    if (sb) cudaCheck(cudaMemcpy2DAsync((char *)y + sa, row, b, sb, sb, B, cudaMemcpyDeviceToDevice, G.stream));
}
static void cuda_concat_backward(int B, int ca, int cb, int HW, float *da, float *db, const float *dy) {
    size_t row = sizeof(float) * (size_t)(ca + cb) * HW, sa = sizeof(float) * (size_t)ca * HW, sb = sizeof(float) * (size_t)cb * HW;
    if (da && sa) cudaCheck(cudaMemcpy2DAsync(da, sa, dy, row, sa, B, cudaMemcpyDeviceToDevice, G.stream));
    if (db && sb) cudaCheck(cudaMemcpy2DAsync(db, sb, (const char *)dy + sa, row, sb, B, cudaMemcpyDeviceToDevice, G.stream));
}

// ----------------------------------------------------------------------------------------------
// linear through cuBLAS. cuBLAS is column-major: a row-major (r, c) matrix is the column-major
// (c, r) matrix with the same memory, i.e. its transpose. With x (B,in), w (out,in), y (B,out):
//   y^T  (out,B) = w x^T         -> gemm(T, N, out, B, in,  w[ld in], x[ld in],   y[ld out])
//   dw^T (in,out) += x^T dy      -> gemm(N, T, in, out, B,  x[ld in], dy[ld out], dw[ld in])
//   dx^T (in,B)  = w^T dy^T      -> gemm(N, N, in, B, out,  w[ld in], dy[ld out], dx[ld in])

__global__ void k_fill_bias(size_t n, int out, float *y, const float *b) { GRID_STRIDE(i, n) y[i] = b[i % out]; }
__global__ void k_col_sums_acc(int B, int out, float *db, const float *dy) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    double s = 0;
    for (int n = 0; n < B; n++) s += dy[(size_t)n * out + o];
    db[o] += (float)s;
}

// C = op(A) op(B) + beta*C with fp32 C; A and B rounded to bf16/fp16 unless the precision is fp32.
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A, int lda, size_t na,
                 const float *Bm, int ldb, size_t nb, float beta, float *C, int ldc) {
    float one = 1.f;
    if (G.prec == GPU_FP32) {
        cublasCheck(cublasSgemm(G.blas, ta, tb, m, n, k, &one, A, lda, Bm, ldb, &beta, C, ldc));
        return;
    }
    void *ah = to_half(S_A, A, na), *bh = to_half(S_B, Bm, nb);
    if (!ah || !bh) return;
    cudaDataType_t t = G.prec == GPU_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasCheck(cublasGemmEx(G.blas, ta, tb, m, n, k, &one, ah, t, lda, bh, t, ldb, &beta, C, CUDA_R_32F, ldc,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void cuda_linear_forward(int B, int in, int out, float *y, const float *x, const float *w, const float *b) {
    size_t ny = (size_t)B * out;
    if (b) { k_fill_bias<<<blocks_for(ny), 256, 0, G.stream>>>(ny, out, y, b); cudaCheckLaunch("k_fill_bias"); }
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, w, in, (size_t)out * in, x, in, (size_t)B * in, b ? 1.f : 0.f, y, out);
}

static void cuda_linear_backward(int B, int in, int out, float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w) {
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, x, in, (size_t)B * in, dy, out, (size_t)B * out, 1.f, dw, in);
    if (db) { k_col_sums_acc<<<(out + 127) / 128, 128, 0, G.stream>>>(B, out, db, dy); cudaCheckLaunch("k_col_sums_acc"); }
    if (dx) gemm(CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, w, in, (size_t)out * in, dy, out, (size_t)B * out, 0.f, dx, in);
}

// ----------------------------------------------------------------------------------------------
// softmax cross-entropy: pass 1 counts labels and finds the first bad one, pass 2 writes dlogits and
// per-block loss sums (double) that the host adds in block order, so the loss is reproducible.

#define XENT_THREADS 256
__global__ void k_xent_count(size_t P, int C, const int32_t *labels, int ignore, unsigned long long *cnt_bad) {
    GRID_STRIDE(q, P) {
        int y = labels[q];
        if (y == ignore) continue;
        if (y < 0 || y >= C) atomicMin(&cnt_bad[1], (unsigned long long)q);
        else atomicAdd(&cnt_bad[0], 1ull);
    }
}

__global__ void k_xent(size_t P, int C, int HW, float *dl, const float *lg, const int32_t *labels, int ignore, float gs,
                       double *part) {
    __shared__ double sh[XENT_THREADS];
    size_t q = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    double acc = 0;
    if (q < P) {
        size_t n = q / HW, i = q % HW;
        const float *l = lg + n * C * HW + i;
        float *d = dl + n * C * HW + i;
        int y = labels[q];
        if (y == ignore) {
            for (int j = 0; j < C; j++) d[(size_t)j * HW] = 0.f;
        } else {
            float m = l[0];
            for (int j = 1; j < C; j++) m = fmaxf(m, l[(size_t)j * HW]);
            double s = 0;
            for (int j = 0; j < C; j++) s += exp((double)(l[(size_t)j * HW] - m));
            acc = log(s) - (double)(l[(size_t)y * HW] - m);
            for (int j = 0; j < C; j++) d[(size_t)j * HW] = (float)(exp((double)(l[(size_t)j * HW] - m)) / s) * gs;
            d[(size_t)y * HW] -= gs;
        }
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

static double cuda_softmax_xent(int B, int C, int HW, float *dlogits, const float *logits, const int32_t *labels,
                                int ignore, float grad_scale, long *counted) {
    size_t P = (size_t)B * HW;
    unsigned long long *cb = (unsigned long long *)scratch(S_COUNT, 2 * sizeof(unsigned long long));
    size_t nblk = (P + XENT_THREADS - 1) / XENT_THREADS;
    double *part = (double *)scratch(S_SUMS, sizeof(double) * (nblk ? nblk : 1));
    double *hpart = host_sums(nblk ? nblk : 1);
    if (!cb || !part || !hpart) { if (counted) *counted = 0; return NAN; }
    unsigned long long init[2] = {0, ~0ull}, res[2];
    cudaCheck(cudaMemcpyAsync(cb, init, sizeof init, cudaMemcpyHostToDevice, G.stream));
    if (P) { k_xent_count<<<blocks_for(P), 256, 0, G.stream>>>(P, C, labels, ignore, cb); cudaCheckLaunch("k_xent_count"); }
    cudaCheck(cudaMemcpyAsync(res, cb, sizeof res, cudaMemcpyDeviceToHost, G.stream));
    sync_stream();
    if (G.failed) { if (counted) *counted = 0; return NAN; }
    if (res[1] != ~0ull) { if (counted) *counted = -1 - (long)res[1]; return NAN; }
    long cnt = (long)res[0];
    if (counted) *counted = cnt;
    if (!P) return 0.0;
    float gs = cnt ? grad_scale / (float)cnt : 0.f;
    k_xent<<<(unsigned)nblk, XENT_THREADS, 0, G.stream>>>(P, C, HW, dlogits, logits, labels, ignore, gs, part);
    cudaCheckLaunch("k_xent");
    cudaCheck(cudaMemcpyAsync(hpart, part, sizeof(double) * nblk, cudaMemcpyDeviceToHost, G.stream));
    sync_stream();
    if (G.failed) return NAN;
    double total = 0;
    for (size_t k = 0; k < nblk; k++) total += hpart[k];
    return cnt ? total / cnt : 0.0;
}

// ----------------------------------------------------------------------------------------------
// loss scaling support

__global__ void k_unscale_check(size_t n, float *g, float inv, int *bad) {
    GRID_STRIDE(i, n) {
        float v = g[i] * inv;
        g[i] = v;
        if (!isfinite(v)) *bad = 1;
    }
}

extern "C" int ops_cuda_unscale_check(float *g, size_t n, float inv_scale) {
    if (!G.ready) return 1;
    int *bad = (int *)scratch(S_COUNT, sizeof(int)), h = 0;
    if (!bad) return 1;
    cudaCheck(cudaMemsetAsync(bad, 0, sizeof(int), G.stream));
    if (n) { k_unscale_check<<<blocks_for(n), 256, 0, G.stream>>>(n, g, inv_scale, bad); cudaCheckLaunch("k_unscale_check"); }
    cudaCheck(cudaMemcpyAsync(&h, bad, sizeof(int), cudaMemcpyDeviceToHost, G.stream));
    sync_stream();
    return h || G.failed;
}

// ----------------------------------------------------------------------------------------------
// optimizer step: the rules of trainer/optim/optim.c, one thread per parameter

typedef struct { int kind; float lr, wd, mu, step_size, bc2_sqrt; int first, decoupled; } OptArgs;

__global__ void k_optim(size_t n, OptArgs a, float *p, const float *grad, float *s0, float *s1) {
    GRID_STRIDE(i, n) {
        float pi = p[i], g = grad[i];
        if (a.decoupled) pi = pi * (1 - a.lr * a.wd);      // sgdw / adamw: p *= 1 - lr*wd first
        else if (a.wd != 0) g = g + a.wd * pi;
        switch (a.kind) {
        case OPT_SGD: case OPT_SGD_NESTEROV: case OPT_SGDW:
            if (a.mu != 0) {
                float b = a.first ? g : a.mu * s0[i] + g;
                s0[i] = b;
                g = a.kind == OPT_SGD_NESTEROV ? g + a.mu * b : b;
            }
            pi = pi - a.lr * g;
            break;
        case OPT_ADAM: case OPT_ADAMW: {
            float m = s0[i] * 0.9f + (1 - 0.9f) * g, v = s1[i] * 0.999f + (1 - 0.999f) * g * g;
            s0[i] = m; s1[i] = v;
            pi = pi - a.step_size * (m / (sqrtf(v) / a.bc2_sqrt + 1e-8f));
            break;
        }
        case OPT_ADAGRAD: {
            float acc = s0[i] + g * g;
            s0[i] = acc;
            pi = pi - a.lr * (g / (sqrtf(acc) + 1e-10f));
            break;
        }
        case OPT_ADADELTA: {
            float sq = s0[i] * 0.9f + (1 - 0.9f) * g * g;
            float d = sqrtf(s1[i] + 1e-6f) / sqrtf(sq + 1e-6f) * g;
            s0[i] = sq; s1[i] = s1[i] * 0.9f + (1 - 0.9f) * d * d;
            pi = pi - a.lr * d;
            break;
        }
        }
        p[i] = pi;
    }
}

extern "C" void ops_cuda_optim_step(Optimizer *o, float *state, float *params, const float *grads, float lr) {
    if (!G.ready || !o->n) { o->steps++; return; }
    OptArgs a;
    memset(&a, 0, sizeof a);
    a.kind = (int)o->kind; a.lr = lr; a.wd = o->weight_decay; a.mu = o->momentum; a.first = o->steps == 0;
    a.decoupled = (o->kind == OPT_SGDW || o->kind == OPT_ADAMW) && a.wd != 0;
    double t = (double)o->steps + 1;
    a.step_size = lr / (float)(1 - pow(0.9f, t));
    a.bc2_sqrt = sqrtf((float)(1 - pow(0.999f, t)));
    float *s1 = o->nslots > 1 ? state + o->n : state;
    k_optim<<<blocks_for(o->n), 256, 0, G.stream>>>(o->n, a, params, grads, state, s1);
    cudaCheckLaunch("k_optim");
    o->steps++;
}

// ----------------------------------------------------------------------------------------------
// ops of the mobile and dense nets (ops.h; CPU twins in cpu_mobile.c)

static void cuda_batchnorm_apply(int B, int C, int HW, float *y, const float *x, const float *mean, const float *invstd,
                                 const float *gamma, const float *beta, int relu) {
    size_t n = (size_t)B * C * HW;
    if (!n) return;
    k_bn_apply<<<blocks_for(n), 256, 0, G.stream>>>(n, C, HW, y, x, mean, invstd, gamma, beta, relu);
    cudaCheckLaunch("k_bn_apply");
}

__global__ void k_relu6(size_t n, float *y, const float *x) {
    GRID_STRIDE(i, n) { float v = x[i] > 0.f ? x[i] : 0.f; y[i] = v < 6.f ? v : 6.f; }
}
__global__ void k_relu6_bw(size_t n, float *dx, const float *dy, const float *y) {
    GRID_STRIDE(i, n) { float g = dy[i], v = y[i]; dx[i] = (v > 0.f && v < 6.f) ? g : 0.f; }
}
static void cuda_relu6_forward(size_t n, float *y, const float *x) {
    if (!n) return;
    k_relu6<<<blocks_for(n), 256, 0, G.stream>>>(n, y, x);
    cudaCheckLaunch("k_relu6");
}
static void cuda_relu6_backward(size_t n, float *dx, const float *dy, const float *y) {
    if (!n) return;
    k_relu6_bw<<<blocks_for(n), 256, 0, G.stream>>>(n, dx, dy, y);
    cudaCheckLaunch("k_relu6_bw");
}

// dst (B, dC, HW) channels [doff, doff+nc) += src (B, sC, HW) channels [soff, soff+nc)
__global__ void k_channel_add(size_t total, int HW, int nc, float *dst, int dC, int doff, const float *src, int sC, int soff) {
    GRID_STRIDE(i, total) {
        size_t per = (size_t)nc * HW, s = i / per, r = i % per;
        dst[(s * dC + doff) * HW + r] += src[(s * sC + soff) * HW + r];
    }
}
static void cuda_channel_copy(int B, int HW, int nc, float *dst, int dC, int doff, const float *src, int sC, int soff,
                              int accumulate) {
    size_t total = (size_t)B * nc * HW;
    if (!total) return;
    if (accumulate) {
        k_channel_add<<<blocks_for(total), 256, 0, G.stream>>>(total, HW, nc, dst, dC, doff, src, sC, soff);
        cudaCheckLaunch("k_channel_add");
        return;
    }
    size_t row = sizeof(float) * (size_t)nc * HW;
    cudaCheck(cudaMemcpy2DAsync(dst + (size_t)doff * HW, sizeof(float) * (size_t)dC * HW, src + (size_t)soff * HW,
                                sizeof(float) * (size_t)sC * HW, row, B, cudaMemcpyDeviceToDevice, G.stream));
}

// y plane (s, j*G + g) = x plane (s, g*M + j), M = C/G; A x B swap: y plane (b, a) = x plane (a, b)
__global__ void k_shuffle(size_t total, int HW, int G_, int M, float *y, const float *x) {
    GRID_STRIDE(i, total) {
        size_t q = i / HW, r = i % HW, C = (size_t)G_ * M, s = q / C, o = q % C, j = o / G_, g = o % G_;
        y[i] = x[(s * C + g * M + j) * HW + r];
    }
}
static void cuda_channel_shuffle(int B, int C, int groups, int HW, float *y, const float *x) {
    size_t total = (size_t)B * C * HW;
    if (!total) return;
    k_shuffle<<<blocks_for(total), 256, 0, G.stream>>>(total, HW, groups, C / groups, y, x);
    cudaCheckLaunch("k_shuffle");
}
static void cuda_swap_dims01(int A, int B, int HW, float *y, const float *x) {
    // x (A, B, HW) -> y (B, A, HW) is a shuffle of one sample of A*B channels with groups A
    cuda_channel_shuffle(1, A * B, A, HW, y, x);
}

__global__ void k_avgpool2(size_t n, int h, int w, float *y, const float *x) {
    int oh = h / 2, ow = w / 2;
    GRID_STRIDE(i, n) {
        size_t p = i / ((size_t)oh * ow);
        int r = (int)(i % ((size_t)oh * ow)), oy = r / ow, ox = r % ow;
        const float *a = x + p * h * w + (size_t)2 * oy * w + 2 * ox, *b = a + w;
        y[i] = 0.25f * ((a[0] + a[1]) + (b[0] + b[1]));
    }
}
__global__ void k_avgpool2_bw(size_t n, int h, int w, float *dx, const float *dy) {
    int oh = h / 2, ow = w / 2;
    GRID_STRIDE(i, n) {   // one thread per dx element; the odd last row/column gets 0
        size_t p = i / ((size_t)h * w);
        int r = (int)(i % ((size_t)h * w)), iy = r / w, ix = r % w;
        dx[i] = (iy / 2 < oh && ix / 2 < ow) ? 0.25f * dy[p * oh * ow + (size_t)(iy / 2) * ow + ix / 2] : 0.f;
    }
}
static void cuda_avgpool2x2_forward(int B, int C, int h, int w, float *y, const float *x) {
    size_t n = (size_t)B * C * (h / 2) * (w / 2);
    if (!n) return;
    k_avgpool2<<<blocks_for(n), 256, 0, G.stream>>>(n, h, w, y, x);
    cudaCheckLaunch("k_avgpool2");
}
static void cuda_avgpool2x2_backward(int B, int C, int h, int w, float *dx, const float *dy) {
    size_t n = (size_t)B * C * h * w;
    if (!n) return;
    k_avgpool2_bw<<<blocks_for(n), 256, 0, G.stream>>>(n, h, w, dx, dy);
    cudaCheckLaunch("k_avgpool2_bw");
}

// ops_dropout_keep (ops.h) on the device: the same hash, so both backends drop the same elements
__device__ inline bool dropout_keep(uint64_t seed, uint64_t i, float p) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53 >= (double)p;
}
__global__ void k_dropout(size_t n, float p, uint64_t seed, float *y, const float *x) {
    float scale = 1.f / (1.f - p);
    GRID_STRIDE(i, n) y[i] = dropout_keep(seed, i, p) ? x[i] * scale : 0.f;
}
static void cuda_dropout_forward(size_t n, float p, uint64_t seed, float *y, const float *x) {
    if (!n) return;
    if (p <= 0.f) { if (y != x) cuda_copy(y, x, sizeof(float) * n); return; }
    k_dropout<<<blocks_for(n), 256, 0, G.stream>>>(n, p, seed, y, x);
    cudaCheckLaunch("k_dropout");
}
static void cuda_dropout_backward(size_t n, float p, uint64_t seed, float *dx, const float *dy) {
    cuda_dropout_forward(n, p, seed, dx, dy);
}

// ----------------------------------------------------------------------------------------------
// init / shutdown / the table

static void fill_table(Ops *t) {
    memset(t, 0, sizeof *t);
    t->name = "cuda";
    t->alloc = cuda_alloc; t->free = cuda_free; t->upload = cuda_upload; t->download = cuda_download;
    t->copy = cuda_copy; t->zero = cuda_zero; t->set_threads = cuda_set_threads;
    t->conv2d_workspace = cuda_conv2d_workspace; t->conv2d_forward = cuda_conv2d_forward;
    t->conv2d_backward = cuda_conv2d_backward;
    t->convt2x2_workspace = cuda_convt2x2_workspace; t->convt2x2_forward = cuda_convt2x2_forward;
    t->convt2x2_backward = cuda_convt2x2_backward;
    t->batchnorm_forward = cuda_batchnorm_forward; t->batchnorm_backward = cuda_batchnorm_backward;
    t->relu_forward = cuda_relu_forward; t->relu_backward = cuda_relu_backward; t->add = cuda_add;
    t->accumulate = cuda_accumulate;
    t->maxpool2x2_forward = cuda_maxpool2x2_forward; t->maxpool2x2_backward = cuda_maxpool2x2_backward;
    t->avgpool_forward = cuda_avgpool_forward; t->avgpool_backward = cuda_avgpool_backward;
    t->upsample_bilinear_forward = cuda_upsample_bilinear_forward;
    t->upsample_bilinear_backward = cuda_upsample_bilinear_backward;
    t->concat_forward = cuda_concat_forward; t->concat_backward = cuda_concat_backward;
    t->linear_forward = cuda_linear_forward; t->linear_backward = cuda_linear_backward;
    t->softmax_xent = cuda_softmax_xent;
    t->relu6_forward = cuda_relu6_forward; t->relu6_backward = cuda_relu6_backward;
    t->batchnorm_apply = cuda_batchnorm_apply; t->channel_copy = cuda_channel_copy;
    t->channel_shuffle = cuda_channel_shuffle; t->swap_dims01 = cuda_swap_dims01;
    t->avgpool2x2_forward = cuda_avgpool2x2_forward; t->avgpool2x2_backward = cuda_avgpool2x2_backward;
    t->dropout_forward = cuda_dropout_forward; t->dropout_backward = cuda_dropout_backward;
}

extern "C" int ops_cuda_init(int device, char *err, size_t n) {
    if (G.ready) {
        if (device == G.device) return 0;
        snprintf(err, n, "ops_cuda_init: device %d is already open (one device per process)", G.device);
        return -1;
    }
    int count = gpu_probe(err, n);
    if (count == 0) return -1;
    if (device < 0 || device >= count) {
        snprintf(err, n, "--gpu %d: only %d CUDA device(s) are visible (0..%d)", device, count, count - 1);
        return -1;
    }
    memset(&G, 0, sizeof G);
    cudaDeviceProp prop;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&G.stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) { snprintf(err, n, "CUDA device %d: %s", device, cudaGetErrorString(e)); return -1; }
    cudnnStatus_t ds = cudnnCreate(&G.dnn);
    if (ds == CUDNN_STATUS_SUCCESS) ds = cudnnSetStream(G.dnn, G.stream);
    if (ds != CUDNN_STATUS_SUCCESS) {
        snprintf(err, n, "cuDNN on device %d: %s (is libcudnn 9 for this CUDA installed?)", device, cudnnGetErrorString(ds));
        cudaStreamDestroy(G.stream);
        return -1;
    }
    cublasStatus_t bs = cublasCreate(&G.blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(G.blas, G.stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, n, "cuBLAS on device %d: %s", device, cublasGetStatusString(bs));
        cudnnDestroy(G.dnn); cudaStreamDestroy(G.stream);
        return -1;
    }
    const char *mb = getenv("SEGX_CUDNN_WORKSPACE_MB");
    G.ws_budget = (size_t)(mb && atol(mb) > 0 ? atol(mb) : 512) << 20;
    G.device = device; G.cc_major = prop.major; G.prec = GPU_FP32;
    fill_table(&G.table);
    G.ready = 1;
    return 0;
}

extern "C" void ops_cuda_shutdown(void) {
    if (!G.ready) return;
    cudaStreamSynchronize(G.stream);
    for (int i = 0; i < G.nplans; i++) {
        cudnnDestroyTensorDescriptor(G.plans[i].x); cudnnDestroyTensorDescriptor(G.plans[i].y);
        cudnnDestroyFilterDescriptor(G.plans[i].w); cudnnDestroyConvolutionDescriptor(G.plans[i].conv);
    }
    free(G.plans);
    for (int i = 0; i < NSCRATCH; i++) cudaFree(G.scratch[i].p);
    for (int i = 0; i < G.nchunks; i++) cudaFree(G.chunk[i].base);
    cudaFree(G.ws);
    free(G.host_sums);
    if (G.order_ev) cudaEventDestroy(G.order_ev);
    cublasDestroy(G.blas); cudnnDestroy(G.dnn); cudaStreamDestroy(G.stream);
    memset(&G, 0, sizeof G);
}

extern "C" const Ops *ops_cuda(void) { return G.ready ? &G.table : NULL; }

extern "C" void ops_cuda_stats(OpsCudaStats *s) {
    s->arena_bytes = G.arena_bytes; s->arena_used = G.arena_used; s->workspace_bytes = G.ws_bytes;
    s->conv_plans = G.nplans;
}
