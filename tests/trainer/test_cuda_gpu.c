// tests/trainer/test_cuda_gpu.c — trainer/gpu on any machine: the no-GPU reason for THIS machine's
// situation (driver library missing / CUDA_VISIBLE_DEVICES empty or malformed), env.json facts,
// NVML telemetry refusing cleanly without a driver, the sampler thread and its per-epoch averages
// (with a scripted sample source), the loss scaler, and ops_cuda_init failing with the probe's reason.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "config.h"
#include "trainer/gpu/gpu.h"
#include "trainer/ops/ops_cuda.h"

// Runs f with CUDA_VISIBLE_DEVICES set to v (NULL: unset), restoring the old value.
typedef struct { char *saved; int had; } EnvSave;
static EnvSave env_set(const char *v) {
    const char *old = getenv("CUDA_VISIBLE_DEVICES");
    EnvSave s = {old ? strdup(old) : NULL, old != NULL};
    if (v) setenv("CUDA_VISIBLE_DEVICES", v, 1); else unsetenv("CUDA_VISIBLE_DEVICES");
    return s;
}
static void env_restore(EnvSave s) {
    if (s.had) setenv("CUDA_VISIBLE_DEVICES", s.saved, 1); else unsetenv("CUDA_VISIBLE_DEVICES");
    free(s.saved);
}

static int lib_loadable(const char *name) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h) dlclose(h);
    return h != NULL;
}

// ----------------------------------------------------------------------------------------------

static void test_probe_reason_for_this_machine(void **state) {
    (void)state;
    EnvSave s = env_set(NULL);
    char why[512];
    int n = gpu_probe(why, sizeof why);
    printf("# gpu_probe: %d device(s)%s%s\n", n, n ? "" : ": ", why);
    if (!lib_loadable("libcuda.so.1")) {
        // this machine (and CI): no NVIDIA driver at all
        assert_int_equal(n, 0);
        assert_non_null(strstr(why, "no NVIDIA driver"));
        assert_non_null(strstr(why, "libcuda.so.1"));
        assert_non_null(strstr(why, "--device cpu"));
    } else if (n == 0) {
        assert_true(strlen(why) > 20);   // a driver but no usable device: some precise reason
    } else {
        assert_string_equal(why, "");
    }
    env_restore(s);
}

static void test_probe_empty_visible_devices(void **state) {
    (void)state;
    const char *values[] = {"", "NoDevFiles"};
    for (int i = 0; i < 2; i++) {
        EnvSave s = env_set(values[i]);
        char why[512];
        assert_int_equal(gpu_probe(why, sizeof why), 0);
        assert_non_null(strstr(why, "CUDA_VISIBLE_DEVICES is \""));
        assert_non_null(strstr(why, "no GPU is assigned"));
        env_restore(s);
    }
}

static void test_probe_malformed_visible_devices(void **state) {
    (void)state;
    EnvSave s = env_set("gpu0");
    char why[512];
    assert_int_equal(gpu_probe(why, sizeof why), 0);
    assert_non_null(strstr(why, "CUDA_VISIBLE_DEVICES=\"gpu0\" is not a list"));
    env_restore(s);
    assert_int_equal(gpu_check_visible_devices(NULL, why, sizeof why), 0);
    assert_int_equal(gpu_check_visible_devices("0", why, sizeof why), 0);
    assert_int_equal(gpu_check_visible_devices("1,3", why, sizeof why), 0);
    assert_int_equal(gpu_check_visible_devices("GPU-8a3e5c1b-0000", why, sizeof why), 0);
    assert_int_equal(gpu_check_visible_devices("MIG-1f2e", why, sizeof why), 0);
    assert_int_equal(gpu_check_visible_devices("1x", why, sizeof why), -1);
    assert_int_equal(gpu_check_visible_devices("-1", why, sizeof why), -1);
}

static void test_env_json(void **state) {
    (void)state;
    GpuEnv e;
    gpu_env(&e, 0);
    char buf[2048];
    int k = gpu_env_json(&e, buf, sizeof buf);
    printf("# env: %s\n", buf);
    assert_true(k > 0);
    json_error_t jerr;
    json_t *j = json_loads(buf, 0, &jerr);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "gpu_count")), e.devices);
    assert_non_null(json_object_get(j, "cudnn"));
    assert_non_null(json_object_get(j, "nccl"));
#ifdef SEGX_HAVE_CUDA
    assert_true(e.cudnn >= 90000);          // built against cuDNN 9
    assert_true(e.nccl >= 20000);           // NCCL 2
    assert_true(e.cuda_runtime >= 12000);
    assert_int_equal(strncmp(json_string_value(json_object_get(j, "cudnn")), "9.", 2), 0);
#endif
    if (e.devices == 0) {
        char why[512];
        gpu_probe(why, sizeof why);
        assert_string_equal(json_string_value(json_object_get(j, "no_gpu_reason")), why);
    } else {
        assert_true(strlen(e.name) > 0);
    }
    json_decref(j);
    assert_int_equal(gpu_env_json(&e, buf, 40), -1);   // too small: refused, not truncated JSON
}

static void test_telemetry_without_nvml(void **state) {
    (void)state;
    if (lib_loadable("libnvidia-ml.so.1")) {
        printf("# NVML is present on this machine: the refusal path cannot be exercised\n");
        skip();
    }
    char path[] = "/tmp/segx-h7-gpuXXXXXX", err[512];
    int fd = mkstemp(path); close(fd); unlink(path);
    GpuTelemetry *t = gpu_telemetry_start(path, 0, err, sizeof err);
    printf("# %s\n", err);
    assert_null(t);
    assert_non_null(strstr(err, "libnvidia-ml.so.1"));
    assert_non_null(strstr(err, "telemetry off"));
    assert_int_equal(access(path, F_OK), -1);   // no empty gpu.jsonl left behind
    gpu_telemetry_stop(NULL);                   // harmless
}

// A scripted source: the k-th sample (k = 1, 2, ...) reads util k, memory 100k MiB; call `fail_at` fails.
typedef struct { int calls, fail_at; } Script;
static int scripted(void *ctx, GpuSample *s, char *err, size_t n) {
    Script *sc = ctx;
    int k = ++sc->calls;
    if (k == sc->fail_at) { snprintf(err, n, "scripted \"failure\" at %d", k); return -1; }
    *s = (GpuSample){.util_gpu = k, .util_mem = 2 * k, .mem_used_mib = 100.0 * k, .power_w = 50, .sm_clock_mhz = 1500};
    return 0;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void test_telemetry_sampler_and_epoch_averages(void **state) {
    (void)state;
    char path[] = "/tmp/segx-h7-gpuXXXXXX", err[256];
    int fd = mkstemp(path); close(fd);
    Script sc = {0, 0};
    GpuTelemetry *t = gpu_telemetry_start_source(path, scripted, &sc, 0.01, err, sizeof err);
    assert_non_null(t);
    sleep_s(0.3);
    GpuSample a;
    int c1 = gpu_telemetry_epoch_avg(t, &a);
    assert_true(c1 >= 3);                                  // ~30 at 100 Hz; a loaded machine gives fewer
    assert_true(a.util_gpu == (c1 + 1) / 2.0);             // mean of 1..c1
    assert_true(a.mem_used_mib == 100.0 * (c1 + 1) / 2.0);
    assert_true(a.power_w == 50 && a.sm_clock_mhz == 1500);
    sleep_s(0.2);
    int c2 = gpu_telemetry_epoch_avg(t, &a);
    assert_true(c2 >= 1);
    assert_true(a.util_gpu == c1 + (c2 + 1) / 2.0);        // mean of c1+1..c1+c2: the epoch was reset
    char js[256], obj[300];
    assert_true(gpu_sample_json(&a, js, sizeof js) > 0);
    snprintf(obj, sizeof obj, "{%s}", js);
    json_error_t je0;
    json_t *jo = json_loads(obj, 0, &je0);
    assert_non_null(jo);
    assert_true(json_number_value(json_object_get(jo, "gpu_util")) == a.util_gpu);
    assert_true(json_number_value(json_object_get(jo, "gpu_power_w")) == 50);
    json_decref(jo);
    GpuSample np = {.power_w = -1, .sm_clock_mhz = -1};
    assert_true(gpu_sample_json(&np, js, sizeof js) > 0);
    assert_non_null(strstr(js, "\"gpu_power_w\":null,\"gpu_sm_clock_mhz\":null"));
    assert_int_equal(gpu_sample_json(&np, js, 20), -1);
    assert_true(gpu_telemetry_peak_mem_mib(t) >= 100.0 * (c1 + c2));   // memory grows with k here
    gpu_telemetry_stop(t);
    assert_true(gpu_telemetry_epoch_avg(NULL, &a) == 0 && a.util_gpu == 0);
    // one JSON line per sample, all with the fields
    FILE *f = fopen(path, "r");
    char line[512]; int lines = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);
        assert_non_null(json_object_get(j, "t"));
        assert_int_equal((int)json_number_value(json_object_get(j, "util_gpu")), lines + 1);
        assert_non_null(json_object_get(j, "mem_used_mib"));
        assert_non_null(json_object_get(j, "power_w"));
        assert_non_null(json_object_get(j, "sm_clock_mhz"));
        json_decref(j);
        lines++;
    }
    fclose(f);
    assert_int_equal(lines, sc.calls);
    assert_true(lines >= c1 + c2);
    unlink(path);
}

static void test_telemetry_source_errors(void **state) {
    (void)state;
    char path[] = "/tmp/segx-h7-gpuXXXXXX", err[256];
    int fd = mkstemp(path); close(fd);
    Script first = {0, 1};
    assert_null(gpu_telemetry_start_source(path, scripted, &first, 0.01, err, sizeof err));
    assert_non_null(strstr(err, "scripted"));
    // a failure later is written once as an error line; sampling goes on
    Script later = {0, 3};
    GpuTelemetry *t = gpu_telemetry_start_source(path, scripted, &later, 0.01, err, sizeof err);
    assert_non_null(t);
    sleep_s(0.3);
    GpuSample a;
    int c = gpu_telemetry_epoch_avg(t, &a);
    gpu_telemetry_stop(t);
    assert_true(c >= 3);
    assert_true(gpu_telemetry_peak_mem_mib(NULL) == 0);
    FILE *f = fopen(path, "r");
    char line[512]; int errors = 0, lines = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);   // the quotes in the message were made safe
        if (json_object_get(j, "error")) errors++;
        json_decref(j);
        lines++;
    }
    fclose(f);
    assert_int_equal(errors, 1);
    assert_int_equal(lines, later.calls);
    assert_null(gpu_telemetry_start_source("/nonexistent-dir/gpu.jsonl", scripted, &later, 0.01, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent-dir/gpu.jsonl"));
    unlink(path);
}

static void test_loss_scaler(void **state) {
    (void)state;
    LossScaler s;
    loss_scaler_init(&s, 0);
    assert_true(s.scale == 65536.f);
    assert_int_equal(loss_scaler_update(&s, 1), 1);        // overflow: skip, halve
    assert_true(s.scale == 32768.f);
    assert_int_equal(s.skipped, 1);
    s.growth_interval = 3;
    assert_int_equal(loss_scaler_update(&s, 0), 0);
    assert_int_equal(loss_scaler_update(&s, 0), 0);
    assert_true(s.scale == 32768.f);
    assert_int_equal(loss_scaler_update(&s, 0), 0);        // third clean step: double
    assert_true(s.scale == 65536.f);
    loss_scaler_update(&s, 0);
    loss_scaler_update(&s, 1);                             // an overflow resets the clean streak
    loss_scaler_update(&s, 0); loss_scaler_update(&s, 0);
    assert_true(s.scale == 32768.f);
    loss_scaler_init(&s, 2.f);
    for (int i = 0; i < 5; i++) loss_scaler_update(&s, 1);
    assert_true(s.scale == 1.f);                           // clamped at min_scale
    assert_int_equal(s.skipped, 5);
}

static void test_precision_names(void **state) {
    (void)state;
    GpuPrecision p;
    const char *names[] = {"fp32", "bf16", "fp16"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gpu_precision_parse(names[i], &p), 0);
        assert_string_equal(gpu_precision_name(p), names[i]);
    }
    assert_int_equal(gpu_precision_parse("fp64", &p), -1);
    assert_int_equal(gpu_precision_parse("FP16", &p), -1);
    assert_int_equal(gpu_precision_parse(NULL, &p), -1);
}

static void test_ops_cuda_init(void **state) {
    (void)state;
    char err[512], why[512];
    int n = gpu_probe(why, sizeof why);
    int rc = ops_cuda_init(0, err, sizeof err);
    if (n == 0) {
        printf("# ops_cuda_init: %s\n", err);
        assert_int_equal(rc, -1);
        assert_null(ops_cuda());
        assert_null(ops_cuda_error());
#ifdef SEGX_HAVE_CUDA
        assert_string_equal(err, why);   // the probe's precise reason, not a bare CUDA error code
        assert_int_equal(ops_cuda_set_precision(GPU_BF16, err, sizeof err), -1);
        assert_non_null(strstr(err, "ops_cuda_init first"));
#else
        assert_non_null(strstr(err, "built without CUDA"));
#endif
        assert_int_equal(ops_cuda_unscale_check(NULL, 0, 1.f), 1);   // never "all finite" without a GPU
        return;
    }
    assert_int_equal(rc, 0);
    assert_non_null(ops_cuda());
    assert_string_equal(ops_cuda()->name, "cuda");
    assert_int_equal(ops_cuda_init(n, err, sizeof err), -1);   // one device per process
    ops_cuda_shutdown();
    assert_null(ops_cuda());
    assert_int_equal(ops_cuda_init(n, err, sizeof err), -1);   // out of range
    assert_non_null(strstr(err, "visible"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_reason_for_this_machine),
        cmocka_unit_test(test_probe_empty_visible_devices),
        cmocka_unit_test(test_probe_malformed_visible_devices),
        cmocka_unit_test(test_env_json),
        cmocka_unit_test(test_telemetry_without_nvml),
        cmocka_unit_test(test_telemetry_sampler_and_epoch_averages),
        cmocka_unit_test(test_telemetry_source_errors),
        cmocka_unit_test(test_loss_scaler),
        cmocka_unit_test(test_precision_names),
        cmocka_unit_test(test_ops_cuda_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
