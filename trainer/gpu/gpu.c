// trainer/gpu/gpu.c — device detection, environment facts, precision names and the loss scaler.
// The driver is reached through dlopen("libcuda.so.1") first, so the reason for "no GPU" names the
// missing piece (no driver library, driver too old, no device, CUDA_VISIBLE_DEVICES) instead of a
// bare runtime error code.
#include "config.h"
#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/gpu/gpu.h"
#include "trainer/gpu/gpu_internal.h"
#ifdef SEGX_HAVE_CUDA
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>
#endif
// defines: gpu_probe, gpu_check_visible_devices, gpu_env, gpu_env_json, gpu_precision_*, loss_scaler_*

#define NO_GPU_HINT "run on a GPU node (Slurm: --gres=gpu:N) or use --device cpu"

// ----------------------------------------------------------------------------------------------
// detection

int gpu_check_visible_devices(const char *v, char *why, size_t n) {
    if (!v) return 0;
    if (!*v || strcmp(v, "NoDevFiles") == 0) {
        snprintf(why, n, "CUDA_VISIBLE_DEVICES is \"%s\": no GPU is assigned to this process; " NO_GPU_HINT, v);
        return -1;
    }
    // CUDA reads a comma-separated list of indices or GPU-/MIG- UUIDs and stops at the first bad
    // entry, so a bad FIRST entry hides every device.
    const char *p = v;
    while (*p == ' ') p++;
    int ok = isdigit((unsigned char)*p) || strncmp(p, "GPU-", 4) == 0 || strncmp(p, "MIG-", 4) == 0;
    if (ok && isdigit((unsigned char)*p)) {
        char *end;
        strtol(p, &end, 10);
        ok = *end == '\0' || *end == ',' || *end == ' ';
    }
    if (!ok) {
        snprintf(why, n, "CUDA_VISIBLE_DEVICES=\"%s\" is not a list of device indices or GPU-/MIG- UUIDs, so CUDA "
                 "sees no device; unset it or let Slurm set it (--gres=gpu:N)", v);
        return -1;
    }
    return 0;
}

// CUresult values used below (cuda.h is not needed for three numbers).
enum { CU_SUCCESS = 0, CU_ERR_INSUFFICIENT_DRIVER = 35, CU_ERR_NO_DEVICE = 100 };
typedef int (*CuInitFn)(unsigned);
typedef int (*CuCountFn)(int *);
typedef int (*CuVersionFn)(int *);
typedef int (*CuErrStrFn)(int, const char **);

static int driver_probe(char *why, size_t n, int *driver_version) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(why, n, "no NVIDIA driver: libcuda.so.1 cannot be loaded (%s); " NO_GPU_HINT, e ? e : "not found");
        return 0;
    }
    CuInitFn init = (CuInitFn)dlsym(lib, "cuInit");
    CuCountFn count = (CuCountFn)dlsym(lib, "cuDeviceGetCount");
    CuVersionFn version = (CuVersionFn)dlsym(lib, "cuDriverGetVersion");
    CuErrStrFn errstr = (CuErrStrFn)dlsym(lib, "cuGetErrorString");
    int devices = 0;
    if (!init || !count) {
        snprintf(why, n, "libcuda.so.1 lacks cuInit/cuDeviceGetCount: a broken or stub driver library; " NO_GPU_HINT);
        dlclose(lib);
        return 0;
    }
    if (version && driver_version) version(driver_version);
    int r = init(0);
    if (r == CU_SUCCESS) r = count(&devices);
    if (r != CU_SUCCESS || devices == 0) {
        const char *s = NULL;
        if (errstr) errstr(r, &s);
        if (r == CU_ERR_NO_DEVICE || (r == CU_SUCCESS && devices == 0))
            snprintf(why, n, "the NVIDIA driver is loaded but reports no CUDA device%s; " NO_GPU_HINT,
                     getenv("CUDA_VISIBLE_DEVICES") ? " (check CUDA_VISIBLE_DEVICES)" : "");
        else if (r == CU_ERR_INSUFFICIENT_DRIVER)
            snprintf(why, n, "the NVIDIA driver is too old or its kernel module is not loaded (cuInit: %s); " NO_GPU_HINT,
                     s ? s : "CUDA_ERROR_INSUFFICIENT_DRIVER");
        else
            snprintf(why, n, "cuInit failed: %s (error %d); " NO_GPU_HINT, s ? s : "unknown error", r);
        devices = 0;
    }
    // no dlclose: cuInit has run, and the driver must not be unloaded under the CUDA runtime
    return devices;
}

int gpu_probe(char *why, size_t n) {
    char tmp[8];
    if (!why || !n) { why = tmp; n = sizeof tmp; }
    why[0] = '\0';
    if (gpu_check_visible_devices(getenv("CUDA_VISIBLE_DEVICES"), why, n)) return 0;
    int drv = 0, devices = driver_probe(why, n, &drv);
    if (devices == 0) return 0;
#ifdef SEGX_HAVE_CUDA
    int rt = 0, count = 0;
    cudaRuntimeGetVersion(&rt);
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver) {
        snprintf(why, n, "the NVIDIA driver supports CUDA %d.%d but segx-train was built with CUDA %d.%d: update the "
                 "driver or rebuild with the CUDA that matches it", drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
        return 0;
    }
    if (e != cudaSuccess || count == 0) {
        snprintf(why, n, "CUDA runtime: %s (%s); " NO_GPU_HINT, cudaGetErrorString(e), cudaGetErrorName(e));
        return 0;
    }
    return count;
#else
    snprintf(why, n, "segx-train was built without CUDA (scripts/configure found no nvcc/cuDNN/cuBLAS/NCCL), "
             "although %d GPU(s) are present: rebuild on a machine with the CUDA toolkit", devices);
    return 0;
#endif
}

// ----------------------------------------------------------------------------------------------
// environment

void gpu_env(GpuEnv *e, int device) {
    memset(e, 0, sizeof *e);
    e->devices = gpu_probe(e->why, sizeof e->why);
    gpu_nvml_driver_version(e->driver, sizeof e->driver);
#ifdef SEGX_HAVE_CUDA
    cudaRuntimeGetVersion(&e->cuda_runtime);
    e->cudnn = (int)cudnnGetVersion();
    ncclGetVersion(&e->nccl);
    if (e->devices > 0) {
        cudaDriverGetVersion(&e->cuda_driver);
        struct cudaDeviceProp p;
        if (device >= 0 && device < e->devices && cudaGetDeviceProperties(&p, device) == cudaSuccess) {
            snprintf(e->name, sizeof e->name, "%s", p.name);
            e->cc_major = p.major; e->cc_minor = p.minor;
            e->mem_bytes = p.totalGlobalMem;
        }
    }
#else
    (void)device;
#endif
}

static void json_str(char *dst, size_t n, const char *s) {   // s is a device name or a version
    size_t k = 0;
    for (; *s && k + 2 < n; s++) {
        if (*s == '"' || *s == '\\') dst[k++] = '\\';
        dst[k++] = (unsigned char)*s < 0x20 ? ' ' : *s;
    }
    dst[k] = '\0';
}

int gpu_env_json(const GpuEnv *e, char *buf, size_t n) {
    char name[520], driver[80], why[600];
    json_str(name, sizeof name, e->name);
    json_str(driver, sizeof driver, e->driver);
    json_str(why, sizeof why, e->why);
    int k = snprintf(buf, n,
                     "{\"gpu_count\":%d,\"gpu_model\":\"%s\",\"driver\":\"%s\",\"cuda_driver\":\"%d.%d\","
                     "\"cuda_runtime\":\"%d.%d\",\"cudnn\":\"%d.%d.%d\",\"nccl\":\"%d.%d.%d\",\"compute_capability\":\"%d.%d\","
                     "\"gpu_mem_bytes\":%zu%s%s%s}",
                     e->devices, name, driver, e->cuda_driver / 1000, e->cuda_driver % 1000 / 10,
                     e->cuda_runtime / 1000, e->cuda_runtime % 1000 / 10,
                     e->cudnn / 10000, e->cudnn / 100 % 100, e->cudnn % 100,
                     e->nccl / 10000, e->nccl / 100 % 100, e->nccl % 100, e->cc_major, e->cc_minor, e->mem_bytes,
                     e->devices ? "" : ",\"no_gpu_reason\":\"", e->devices ? "" : why, e->devices ? "" : "\"");
    return (k < 0 || (size_t)k >= n) ? -1 : k;
}

// ----------------------------------------------------------------------------------------------
// precision and loss scaling

int gpu_precision_parse(const char *s, GpuPrecision *p) {
    if (!s) return -1;
    if (strcmp(s, "fp32") == 0) { *p = GPU_FP32; return 0; }
    if (strcmp(s, "bf16") == 0) { *p = GPU_BF16; return 0; }
    if (strcmp(s, "fp16") == 0) { *p = GPU_FP16; return 0; }
    return -1;
}

const char *gpu_precision_name(GpuPrecision p) {
    return p == GPU_BF16 ? "bf16" : p == GPU_FP16 ? "fp16" : "fp32";
}

void loss_scaler_init(LossScaler *s, float initial_scale) {
    *s = (LossScaler){.scale = initial_scale > 0 ? initial_scale : 65536.f, .growth = 2.f, .backoff = 0.5f,
                      .min_scale = 1.f, .max_scale = 16777216.f, .growth_interval = 2000};
}

int loss_scaler_update(LossScaler *s, int found_nonfinite) {
    if (found_nonfinite) {
        s->scale *= s->backoff;
        if (s->scale < s->min_scale) s->scale = s->min_scale;
        s->good_steps = 0;
        s->skipped++;
        return 1;
    }
    if (++s->good_steps >= s->growth_interval) {
        s->scale *= s->growth;
        if (s->scale > s->max_scale) s->scale = s->max_scale;
        s->good_steps = 0;
    }
    return 0;
}
