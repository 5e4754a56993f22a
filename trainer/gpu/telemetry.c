// trainer/gpu/telemetry.c — NVML sampling on a thread: one JSON line per sample in gpu.jsonl and
// running sums for per-epoch averages. NVML is dlopen'ed ("libnvidia-ml.so.1", shipped with the
// driver), so segx-train starts on machines without a driver and simply runs without telemetry.
#include "config.h"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "trainer/gpu/gpu.h"
#include "trainer/gpu/gpu_internal.h"
#ifdef SEGX_HAVE_CUDA
#include <cuda_runtime.h>
#endif
// defines: gpu_telemetry_start, gpu_telemetry_start_source, gpu_telemetry_epoch_avg, gpu_telemetry_stop

// ----------------------------------------------------------------------------------------------
// the few NVML entry points used (types as in nvml.h, declared here so no header is needed)

typedef void *NvmlDevice;
typedef struct { unsigned int gpu, memory; } NvmlUtilization;
typedef struct { unsigned long long total, free, used; } NvmlMemory;
enum { NVML_OK = 0, NVML_CLOCK_SM = 1 };

typedef struct {
    void *lib;
    int (*init)(void);
    int (*shutdown)(void);
    const char *(*error_string)(int);
    int (*by_index)(unsigned int, NvmlDevice *);
    int (*by_pci)(const char *, NvmlDevice *);
    int (*utilization)(NvmlDevice, NvmlUtilization *);
    int (*memory)(NvmlDevice, NvmlMemory *);
    int (*power)(NvmlDevice, unsigned int *);
    int (*clock)(NvmlDevice, int, unsigned int *);
    int (*driver_version)(char *, unsigned int);
} Nvml;

static const char *nvml_str(const Nvml *v, int r) { return v->error_string ? v->error_string(r) : "unknown NVML error"; }

// Loads and initialises NVML; 0, or -1 with the reason.
static int nvml_open(Nvml *v, char *err, size_t n) {
    memset(v, 0, sizeof *v);
    v->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!v->lib) {
        const char *e = dlerror();
        snprintf(err, n, "GPU telemetry off: NVML (libnvidia-ml.so.1, part of the NVIDIA driver) cannot be loaded: %s",
                 e ? e : "not found");
        return -1;
    }
#define SYM(field, name) v->field = (__typeof__(v->field))dlsym(v->lib, name)
    SYM(init, "nvmlInit_v2"); SYM(shutdown, "nvmlShutdown"); SYM(error_string, "nvmlErrorString");
    SYM(by_index, "nvmlDeviceGetHandleByIndex_v2"); SYM(by_pci, "nvmlDeviceGetHandleByPciBusId_v2");
    SYM(utilization, "nvmlDeviceGetUtilizationRates"); SYM(memory, "nvmlDeviceGetMemoryInfo");
    SYM(power, "nvmlDeviceGetPowerUsage"); SYM(clock, "nvmlDeviceGetClockInfo");
    SYM(driver_version, "nvmlSystemGetDriverVersion");
#undef SYM
    if (!v->init || !v->shutdown || !v->by_index || !v->utilization || !v->memory) {
        snprintf(err, n, "GPU telemetry off: libnvidia-ml.so.1 lacks nvmlInit_v2/nvmlDeviceGet*: driver too old?");
        dlclose(v->lib); v->lib = NULL;
        return -1;
    }
    int r = v->init();
    if (r != NVML_OK) {
        snprintf(err, n, "GPU telemetry off: nvmlInit failed: %s", nvml_str(v, r));
        dlclose(v->lib); v->lib = NULL;
        return -1;
    }
    return 0;
}

static void nvml_close(Nvml *v) {
    if (!v->lib) return;
    v->shutdown();
    dlclose(v->lib);
    v->lib = NULL;
}

int gpu_nvml_driver_version(char *buf, size_t n) {
    Nvml v; char err[256];
    buf[0] = '\0';
    if (nvml_open(&v, err, sizeof err)) return -1;
    int rc = -1;
    if (v.driver_version && v.driver_version(buf, (unsigned int)n) == NVML_OK) rc = 0;
    else buf[0] = '\0';
    nvml_close(&v);
    return rc;
}

typedef struct { Nvml nvml; NvmlDevice dev; } NvmlSource;

static int nvml_sample(void *ctx, GpuSample *s, char *err, size_t n) {
    NvmlSource *src = ctx; Nvml *v = &src->nvml;
    NvmlUtilization u; NvmlMemory m; unsigned int mw = 0, mhz = 0;
    int r = v->utilization(src->dev, &u);
    if (r != NVML_OK) { snprintf(err, n, "nvmlDeviceGetUtilizationRates: %s", nvml_str(v, r)); return -1; }
    r = v->memory(src->dev, &m);
    if (r != NVML_OK) { snprintf(err, n, "nvmlDeviceGetMemoryInfo: %s", nvml_str(v, r)); return -1; }
    // power and clocks are not reported by every board (some MIG slices): -1 then
    int pr = v->power ? v->power(src->dev, &mw) : -1, cr = v->clock ? v->clock(src->dev, NVML_CLOCK_SM, &mhz) : -1;
    *s = (GpuSample){.util_gpu = u.gpu, .util_mem = u.memory, .mem_used_mib = (double)m.used / 1048576.0,
                     .power_w = pr == NVML_OK ? mw / 1000.0 : -1, .sm_clock_mhz = cr == NVML_OK ? (double)mhz : -1.0};
    return 0;
}

// ----------------------------------------------------------------------------------------------
// the sampler

struct GpuTelemetry {
    FILE *f;
    GpuSampleFn fn; void *ctx;
    NvmlSource *nvml;              // owned when started through NVML
    double period_s;
    pthread_t thread; int started;
    pthread_mutex_t mu; pthread_cond_t cv; int stop;
    GpuSample sum; int count;      // since the last epoch_avg
    double peak_mem;
    int reported_error;
};

static double wall_now(void) {
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Writes one sample's line and adds it to the epoch sums (called with t->mu held).
static void record(GpuTelemetry *t, const GpuSample *s) {
    fprintf(t->f, "{\"t\":%.3f,\"util_gpu\":%.0f,\"util_mem\":%.0f,\"mem_used_mib\":%.1f,\"power_w\":%.2f,"
            "\"sm_clock_mhz\":%.0f}\n", wall_now(), s->util_gpu, s->util_mem, s->mem_used_mib, s->power_w, s->sm_clock_mhz);
    fflush(t->f);
    t->sum.util_gpu += s->util_gpu; t->sum.util_mem += s->util_mem; t->sum.mem_used_mib += s->mem_used_mib;
    t->sum.power_w += s->power_w; t->sum.sm_clock_mhz += s->sm_clock_mhz;
    t->count++;
    if (s->mem_used_mib > t->peak_mem) t->peak_mem = s->mem_used_mib;
}

// Takes one sample; a failing read is written once as an "error" line and sampling goes on.
static void take_sample(GpuTelemetry *t) {
    GpuSample s; char err[256];
    if (t->fn(t->ctx, &s, err, sizeof err) == 0) { record(t, &s); return; }
    if (!t->reported_error) {
        for (char *c = err; *c; c++) if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = ' ';
        fprintf(t->f, "{\"t\":%.3f,\"error\":\"%s\"}\n", wall_now(), err);
        fflush(t->f);
    }
    t->reported_error = 1;
}

static void *sampler(void *arg) {
    GpuTelemetry *t = arg;
    pthread_mutex_lock(&t->mu);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!t->stop) {
        long ns = (long)(t->period_s * 1e9);
        next.tv_sec += ns / 1000000000L; next.tv_nsec += ns % 1000000000L;
        if (next.tv_nsec >= 1000000000L) { next.tv_sec++; next.tv_nsec -= 1000000000L; }
        while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &next) != ETIMEDOUT) {}
        if (t->stop) break;
        take_sample(t);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

GpuTelemetry *gpu_telemetry_start_source(const char *path, GpuSampleFn fn, void *ctx, double period_s,
                                         char *err, size_t n) {
    if (!fn || !path || period_s <= 0) { snprintf(err, n, "gpu telemetry: bad arguments"); return NULL; }
    GpuTelemetry *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, n, "gpu telemetry: out of memory"); return NULL; }
    t->fn = fn; t->ctx = ctx; t->period_s = period_s;
    // the first sample is synchronous, so a source that cannot be read fails here, not silently later
    GpuSample s;
    if (fn(ctx, &s, err, n)) { free(t); return NULL; }
    t->f = fopen(path, "a");
    if (!t->f) { snprintf(err, n, "gpu telemetry: cannot open %s: %s", path, strerror(errno)); free(t); return NULL; }
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    record(t, &s);
    if (pthread_create(&t->thread, NULL, sampler, t)) {
        snprintf(err, n, "gpu telemetry: cannot start the sampler thread");
        t->started = 0;
        gpu_telemetry_stop(t);
        return NULL;
    }
    t->started = 1;
    return t;
}

GpuTelemetry *gpu_telemetry_start(const char *path, int device, char *err, size_t n) {
    NvmlSource *src = calloc(1, sizeof *src);
    if (!src) { snprintf(err, n, "gpu telemetry: out of memory"); return NULL; }
    if (nvml_open(&src->nvml, err, n)) { free(src); return NULL; }
    // NVML numbers devices ignoring CUDA_VISIBLE_DEVICES: match the CUDA device by PCI bus id
    int r = -1;
#ifdef SEGX_HAVE_CUDA
    char bus[32];
    if (src->nvml.by_pci && cudaDeviceGetPCIBusId(bus, sizeof bus, device) == cudaSuccess)
        r = src->nvml.by_pci(bus, &src->dev);
#endif
    if (r != NVML_OK) r = src->nvml.by_index((unsigned int)device, &src->dev);
    if (r != NVML_OK) {
        snprintf(err, n, "GPU telemetry off: NVML has no device %d: %s", device, nvml_str(&src->nvml, r));
        nvml_close(&src->nvml); free(src);
        return NULL;
    }
    GpuTelemetry *t = gpu_telemetry_start_source(path, nvml_sample, src, 1.0, err, n);
    if (!t) { nvml_close(&src->nvml); free(src); return NULL; }
    t->nvml = src;
    return t;
}

int gpu_telemetry_epoch_avg(GpuTelemetry *t, GpuSample *avg) {
    memset(avg, 0, sizeof *avg);
    if (!t) return 0;
    pthread_mutex_lock(&t->mu);
    int c = t->count;
    if (c) {
        avg->util_gpu = t->sum.util_gpu / c; avg->util_mem = t->sum.util_mem / c;
        avg->mem_used_mib = t->sum.mem_used_mib / c; avg->power_w = t->sum.power_w / c;
        avg->sm_clock_mhz = t->sum.sm_clock_mhz / c;
    }
    memset(&t->sum, 0, sizeof t->sum);
    t->count = 0;
    pthread_mutex_unlock(&t->mu);
    return c;
}

int gpu_sample_json(const GpuSample *a, char *buf, size_t n) {
    char pw[32] = "null", clk[32] = "null";
    if (a->power_w >= 0) snprintf(pw, sizeof pw, "%.1f", a->power_w);
    if (a->sm_clock_mhz >= 0) snprintf(clk, sizeof clk, "%.0f", a->sm_clock_mhz);
    int k = snprintf(buf, n, "\"gpu_util\":%.1f,\"gpu_mem_util\":%.1f,\"gpu_mem_mib\":%.1f,\"gpu_power_w\":%s,"
                     "\"gpu_sm_clock_mhz\":%s", a->util_gpu, a->util_mem, a->mem_used_mib, pw, clk);
    return (k < 0 || (size_t)k >= n) ? -1 : k;
}

double gpu_telemetry_peak_mem_mib(GpuTelemetry *t) {
    if (!t) return 0;
    pthread_mutex_lock(&t->mu);
    double p = t->peak_mem;
    pthread_mutex_unlock(&t->mu);
    return p;
}

void gpu_telemetry_stop(GpuTelemetry *t) {
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (t->started) pthread_join(t->thread, NULL);
    fclose(t->f);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    if (t->nvml) { nvml_close(&t->nvml->nvml); free(t->nvml); }
    free(t);
}
