// trainer/gpu/gpu_check.h — cudaCheck / cudnnCheck / cublasCheck for CUDA C files (llm.c style, but
// without exit(): the library keeps going and the training loop stops the run).
// Each macro evaluates to 0 on success; on failure it records "file:line: call: error string" as the
// backend's first error (ops_cuda_error), prints it once to stderr, and evaluates to -1.
#ifndef SEGX_GPU_CHECK_H
#define SEGX_GPU_CHECK_H
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#ifdef __cplusplus
extern "C" {
#endif
// Defined by ops_cuda.cu.
void gpu_record_error(const char *file, int line, const char *call, const char *what);
#ifdef __cplusplus
}
#endif

static inline int gpu_check_cuda(cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return 0;
    gpu_record_error(file, line, call, cudaGetErrorString(e));
    return -1;
}
static inline int gpu_check_cudnn(cudnnStatus_t s, const char *call, const char *file, int line) {
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    gpu_record_error(file, line, call, cudnnGetErrorString(s));
    return -1;
}
static inline int gpu_check_cublas(cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    gpu_record_error(file, line, call, cublasGetStatusString(s));
    return -1;
}

#define cudaCheck(call) gpu_check_cuda((call), #call, __FILE__, __LINE__)
#define cudnnCheck(call) gpu_check_cudnn((call), #call, __FILE__, __LINE__)
#define cublasCheck(call) gpu_check_cublas((call), #call, __FILE__, __LINE__)
// After a kernel launch: launch-configuration errors surface here, execution errors at the next sync.
#define cudaCheckLaunch(name) gpu_check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)

#endif
