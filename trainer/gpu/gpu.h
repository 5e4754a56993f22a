// trainer/gpu/gpu.h — what segx-train knows about GPUs, usable from C and CUDA C:
// - gpu_probe: how many GPUs this process can use, and exactly why none when 0;
// - gpu_env: model, driver, CUDA, cuDNN and NCCL versions for env.json;
// - telemetry: an NVML sampler thread (~1 Hz) writing gpu.jsonl plus per-epoch averages;
// - precision: fp32 / bf16 / fp16 names and the dynamic loss scaler used with fp16.
// Nothing here needs a driver to link or to start: libcuda.so.1 and libnvidia-ml.so.1 are dlopen'ed,
// and without a CUDA build (SEGX_HAVE_CUDA unset) the CUDA runtime is never referenced.
// The CUDA op table itself is trainer/ops/ops_cuda.h; the error-check macros are gpu_check.h; the
// training loop's double-buffered batch uploads are stage.h.
#ifndef SEGX_GPU_H
#define SEGX_GPU_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// --- detection ---------------------------------------------------------------------------------
// Number of usable CUDA devices. When 0, `why` says what is missing and what to do: CUDA_VISIBLE_DEVICES
// empty / NoDevFiles / malformed, libcuda.so.1 not loadable (no driver), driver too old for the
// runtime, no device, or a build without CUDA.
int gpu_probe(char *why, size_t n);

// Checks CUDA_VISIBLE_DEVICES alone: 0 when unset or a valid list, else -1 with the reason.
int gpu_check_visible_devices(const char *value, char *why, size_t n);

// --- environment (env.json) ----------------------------------------------------------------------
typedef struct {
    int devices;              // usable devices (gpu_probe)
    char name[256];           // "NVIDIA H100 80GB HBM3", "" when none
    char driver[32];          // NVIDIA driver version from NVML, "" when unknown
    int cuda_driver;          // CUDA version the driver supports (13000 = 13.0), 0 when unknown
    int cuda_runtime;         // CUDA runtime segx-train was built with, 0 without CUDA
    int cudnn;                // cuDNN version (90300 = 9.3.0), 0 without CUDA
    int nccl;                 // NCCL version (22703 = 2.27.3), 0 without CUDA
    int cc_major, cc_minor;   // compute capability of `device`
    size_t mem_bytes;         // total memory of `device`
    char why[256];            // gpu_probe's reason when devices == 0
} GpuEnv;

void gpu_env(GpuEnv *e, int device);
// Writes e as one JSON object (no newline); returns the length, or -1 when buf is too small.
int gpu_env_json(const GpuEnv *e, char *buf, size_t n);

// --- telemetry ---------------------------------------------------------------------------------
typedef struct {
    double util_gpu;      // % of time a kernel ran
    double util_mem;      // % of time memory was read or written
    double mem_used_mib;
    double power_w;
    double sm_clock_mhz;
} GpuSample;

typedef struct GpuTelemetry GpuTelemetry;

// Starts sampling `device` (a CUDA index among the visible devices, mapped to NVML by PCI bus id)
// about once a second, appending one JSON line per sample to `path`. Returns NULL with the reason in
// err when NVML cannot be loaded or the device not read (the run goes on without telemetry).
GpuTelemetry *gpu_telemetry_start(const char *path, int device, char *err, size_t n);

// Any other source of samples (tests, a future ROCm path): fn fills *s, returns 0 or -1 with err.
typedef int (*GpuSampleFn)(void *ctx, GpuSample *s, char *err, size_t n);
GpuTelemetry *gpu_telemetry_start_source(const char *path, GpuSampleFn fn, void *ctx, double period_s,
                                         char *err, size_t n);

// Means of the samples taken since the previous call (the epoch); returns how many (0: *avg zeroed).
int gpu_telemetry_epoch_avg(GpuTelemetry *t, GpuSample *avg);
// The epoch averages as JSON members for metrics.jsonl (no braces): "gpu_util":..,"gpu_mem_util":..,
// "gpu_mem_mib":..,"gpu_power_w":..,"gpu_sm_clock_mhz":..; power/clock are null when the board does
// not report them. Returns the length, or -1 when buf is too small.
int gpu_sample_json(const GpuSample *avg, char *buf, size_t n);
// Peak memory used over the whole run so far, MiB.
double gpu_telemetry_peak_mem_mib(GpuTelemetry *t);
// Stops the thread, closes the file, shuts NVML down. NULL is fine.
void gpu_telemetry_stop(GpuTelemetry *t);

// --- precision -----------------------------------------------------------------------------------
// --precision: master weights, optimizer state and reductions are always fp32; bf16/fp16 are the
// compute type of convolutions and linear layers (fp32 accumulation); fp16 needs loss scaling.
typedef enum { GPU_FP32 = 0, GPU_BF16 = 1, GPU_FP16 = 2 } GpuPrecision;
int gpu_precision_parse(const char *s, GpuPrecision *p);   // 0, or -1 for anything but fp32|bf16|fp16
const char *gpu_precision_name(GpuPrecision p);

// Dynamic loss scaling (PyTorch GradScaler's defaults), one step of the loop with --precision fp16:
//   model_loss(m, labels, scaler.scale, ...); model_backward(m); [DDP allreduce of the grads]
//   found = ops_cuda_unscale_check(grads, n, 1 / scaler.scale);   // after the allreduce: an inf on
//   if (!loss_scaler_update(&scaler, found)) optimizer step;       // any rank reaches every rank
// A non-finite step is skipped and halves the scale; `growth_interval` clean steps double it.
typedef struct {
    float scale, growth, backoff, min_scale, max_scale;
    int growth_interval, good_steps;
    long skipped;             // steps skipped so far
} LossScaler;
void loss_scaler_init(LossScaler *s, float initial_scale);   // 0: 65536
// Returns 1 when the optimizer step must be skipped (found_nonfinite), else 0.
int loss_scaler_update(LossScaler *s, int found_nonfinite);

#ifdef __cplusplus
}
#endif
#endif
