// tests/trainer/test_comm.c — the communicator dispatcher, launch-environment detection and the
// DDP reducer on one rank (buckets; averaging through a backend's scale function). Multi-rank behaviour: test_comm_mpi.c under tests/integration/dist_mpi.sh.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "config.h"
#include "trainer/dist/comm.h"   // defines: Comm, DdpReducer

static const char *launch_vars[] = { "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                     "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "PMIX_RANK",
                                     "PMI_RANK", "SEGX_COMM_TIMEOUT", NULL };

static int clear_launch_env(void **state) {
    (void)state;
    for (int i = 0; launch_vars[i]; i++) unsetenv(launch_vars[i]);
    return 0;
}

static void test_none_is_identity(void **state) {
    (void)state;
    Comm *c;
    char err[512] = "";
    assert_int_equal(comm_create("none", &c, err, sizeof err), 0);
    assert_string_equal(comm_kind(c), "none");
    assert_int_equal(comm_rank(c), 0);
    assert_int_equal(comm_world(c), 1);
    assert_int_equal(comm_local_rank(c), 0);
    float f[3] = { 1.5f, -2.0f, 3.25f };
    double d[2] = { 1e300, -7.0 };
    assert_int_equal(comm_allreduce_sum_f32(c, f, 3), 0);
    assert_int_equal(comm_allreduce_sum_f64(c, d, 2), 0);
    assert_true(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
    assert_true(d[0] == 1e300 && d[1] == -7.0);
    char msg[8] = "abc";
    assert_int_equal(comm_broadcast(c, msg, sizeof msg, 0), 0);
    assert_string_equal(msg, "abc");
    assert_int_equal(comm_barrier(c), 0);
    // a root outside the world is an error naming it
    assert_int_equal(comm_broadcast(c, msg, sizeof msg, 1), -1);
    assert_non_null(strstr(comm_error(c), "root 1"));
    assert_int_equal(comm_allreduce_sum_f64_fn(c, d, 2), 0);
    comm_free(c);
}

static void test_auto_alone_is_none(void **state) {
    (void)state;
    Comm *c;
    char err[512] = "";
    assert_int_equal(comm_create("auto", &c, err, sizeof err), 0);
    assert_string_equal(comm_kind(c), "none");
    comm_free(c);
    assert_int_equal(comm_create(NULL, &c, err, sizeof err), 0);
    assert_string_equal(comm_kind(c), "none");
    comm_free(c);
}

static void test_unknown_kind_is_named(void **state) {
    (void)state;
    Comm *c = (Comm *)1;
    char err[512] = "";
    assert_int_equal(comm_create("gloo", &c, err, sizeof err), -1);
    assert_null(c);
    assert_non_null(strstr(err, "\"gloo\""));
    assert_non_null(strstr(err, "--comm"));
}

static void test_srun_without_mpi_plugin_is_refused(void **state) {
    (void)state;
    Comm *c;
    char err[512] = "";
    setenv("SLURM_STEP_NUM_TASKS", "2", 1);
    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_LOCALID", "1", 1);
    assert_int_equal(comm_create("auto", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "srun --mpi=pmix_v4"));
    // --comm none with 2 ranks would train two separate models: refused too
    assert_int_equal(comm_create("none", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "2 ranks"));
    clear_launch_env(NULL);
}

static void test_bad_launch_env_is_named(void **state) {
    (void)state;
    Comm *c;
    char err[512] = "";
    setenv("OMPI_COMM_WORLD_SIZE", "two", 1);
    assert_int_equal(comm_create("auto", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "OMPI_COMM_WORLD_SIZE=\"two\""));
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("OMPI_COMM_WORLD_RANK", "5", 1);
    assert_int_equal(comm_create("auto", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "rank 5 of world 2"));
    clear_launch_env(NULL);
    setenv("SEGX_COMM_TIMEOUT", "-3", 1);
    assert_int_equal(comm_create("none", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "SEGX_COMM_TIMEOUT=\"-3\""));
    setenv("SEGX_COMM_TIMEOUT", "2.5", 1);
    assert_int_equal(comm_create("none", &c, err, sizeof err), 0);
    assert_true(comm_timeout(c) == 2.5);
    comm_set_timeout(c, 7);
    assert_true(comm_timeout(c) == 7.0);
    comm_free(c);
    clear_launch_env(NULL);
}

// Buckets tile the buffer in order, start only when entirely below n_ready, and one rank's mean
// is the gradient itself.
static void test_ddp_buckets_one_rank(void **state) {
    (void)state;
    Comm *c;
    char err[512] = "";
    assert_int_equal(comm_create("none", &c, err, sizeof err), 0);
    const size_t n = 1000;
    float *g = malloc(n * sizeof *g), *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++) g[i] = ref[i] = (float)i * 0.5f - 100.0f;
    DdpReducer *r;
    double mb = 300.0 * sizeof(float) / (1024.0 * 1024.0);   // 300 floats per bucket
    assert_int_equal(ddp_create(c, g, n, mb, &r, err, sizeof err), 0);
    assert_int_equal(ddp_num_buckets(r), 4);
    size_t expect_off = 0;
    for (int i = 0; i < 4; i++) {
        size_t off, k;
        ddp_bucket(r, i, &off, &k);
        assert_int_equal(off, expect_off);
        assert_int_equal(k, i < 3 ? 300 : 100);
        expect_off += k;
    }
    assert_int_equal(expect_off, n);
    for (int step = 0; step < 2; step++) {
        ddp_grads_ready(r, 299);
        assert_int_equal(ddp_buckets_launched(r), 0);
        ddp_grads_ready(r, 300);
        assert_int_equal(ddp_buckets_launched(r), 1);
        ddp_grads_ready(r, 899);
        assert_int_equal(ddp_buckets_launched(r), 2);
        ddp_grads_ready(r, 950);   // bucket 2 ends at 900: launched; bucket 3 not yet
        assert_int_equal(ddp_buckets_launched(r), 3);
        assert_int_equal(ddp_finish(r), 0);   // launches the rest
        int order[8];
        assert_int_equal(ddp_launch_order(r, order, 8), 4);
        for (int i = 0; i < 4; i++) assert_int_equal(order[i], i);
        assert_int_equal(ddp_buckets_launched(r), 0);   // next step starts fresh
    }
    assert_memory_equal(g, ref, n * sizeof *g);
    DdpStats s = ddp_stats(r);
    assert_int_equal(s.steps, 2);
    assert_true(s.bytes == 0 && s.comm_s == 0);   // one rank moves nothing
    assert_true(s.exposed_s >= 0 && s.exposed_s < 1);
    ddp_stats_reset(r);
    assert_int_equal(ddp_stats(r).steps, 0);
    ddp_free(r);
    // a bucket larger than the buffer is one bucket
    assert_int_equal(ddp_create(c, g, n, 25, &r, err, sizeof err), 0);
    assert_int_equal(ddp_num_buckets(r), 1);
    ddp_free(r);
    // bad bucket sizes name the flag
    assert_int_equal(ddp_create(c, g, n, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "--bucket-mb"));
    assert_int_equal(ddp_create(c, g, n, -1, &r, err, sizeof err), -1);
    free(g);
    free(ref);
    comm_free(c);
}

// A scale function standing in for a backend whose memory the host cannot touch (the CUDA table's
// device arena): the gradients are mapped PROT_NONE, and only this function (the "kernel") opens
// them. The reducer must do all its averaging and unscaling through it, in one call.
typedef struct { int calls; float a; } FakeDevice;

static int fake_device_scale(void *ctx, float *g, size_t n, float a) {
    FakeDevice *d = ctx;
    d->calls++;
    d->a = a;
    size_t bytes = (n * sizeof *g + 4095) & ~(size_t)4095;
    assert_int_equal(mprotect(g, bytes, PROT_READ | PROT_WRITE), 0);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] *= a;
        bad |= !isfinite(g[i]);
    }
    assert_int_equal(mprotect(g, bytes, PROT_NONE), 0);
    return bad;
}

static void test_ddp_scales_through_the_backend(void **state) {
    (void)state;
    Comm *c;
    char err[512] = "";
    assert_int_equal(comm_create("none", &c, err, sizeof err), 0);
    const size_t n = 3000, bytes = 4 * 4096;
    float *g = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g != MAP_FAILED);
    for (size_t i = 0; i < n; i++) g[i] = (float)i;
    assert_int_equal(mprotect(g, bytes, PROT_NONE), 0);   // from here on a host access is a SIGSEGV
    DdpReducer *r;
    assert_int_equal(ddp_create(c, g, n, 1000.0 * sizeof(float) / (1024.0 * 1024.0), &r, err, sizeof err), 0);
    FakeDevice dev = { 0 };
    ddp_set_scale_fn(r, fake_device_scale, &dev);
    // one rank, no loss scale, no inf/nan check asked for: nothing to do, the backend is not called
    ddp_grads_ready(r, 2000);
    assert_int_equal(ddp_finish_unscale(r, 1.0f, NULL), 0);
    assert_int_equal(dev.calls, 0);
    // asked for the check (fp16 at loss scale 1): the pass runs with a factor of 1
    int nonfinite = -1;
    assert_int_equal(ddp_finish_unscale(r, 1.0f, &nonfinite), 0);
    assert_int_equal(dev.calls, 1);
    assert_true(dev.a == 1.0f);
    assert_int_equal(nonfinite, 0);
    // fp16: the loss scale is divided out in one backend call
    ddp_grads_ready(r, 1000);
    assert_int_equal(ddp_finish_unscale(r, 1024.0f, &nonfinite), 0);
    assert_int_equal(dev.calls, 2);
    assert_true(dev.a == 1.0f / 1024.0f);
    assert_int_equal(nonfinite, 0);
    assert_int_equal(ddp_stats(r).steps, 3);
    assert_int_equal(mprotect(g, bytes, PROT_READ | PROT_WRITE), 0);
    for (size_t i = 0; i < n; i++) assert_true(g[i] == (float)i / 1024.0f);
    // an inf gradient is reported by the backend's pass, for the loss scaler to skip the step
    g[1234] = INFINITY;
    assert_int_equal(mprotect(g, bytes, PROT_NONE), 0);
    assert_int_equal(ddp_finish_unscale(r, 2.0f, &nonfinite), 0);
    assert_int_equal(nonfinite, 1);
    assert_int_equal(dev.calls, 3);
    // back to the default host loop
    assert_int_equal(mprotect(g, bytes, PROT_READ | PROT_WRITE), 0);
    g[1234] = 8.0f;
    ddp_set_scale_fn(r, NULL, NULL);
    assert_int_equal(ddp_finish_unscale(r, 4.0f, NULL), 0);
    assert_true(g[1234] == 2.0f);
    assert_int_equal(dev.calls, 3);
    ddp_free(r);
    munmap(g, bytes);
    comm_free(c);
}

// NCCL without a usable GPU fails at creation with a message saying what is missing; with one
// (a GPU machine), world 1 works on host buffers.
static void test_nccl_needs_a_gpu(void **state) {
    (void)state;
    Comm *c = NULL;
    char err[512] = "";
    setenv("CUDA_VISIBLE_DEVICES", "", 1);
    assert_int_equal(comm_create("nccl", &c, err, sizeof err), -1);
    assert_null(c);
#ifdef SEGX_HAVE_CUDA
    assert_non_null(strstr(err, "CUDA_VISIBLE_DEVICES is empty"));
#else
    assert_non_null(strstr(err, "built without CUDA"));
#endif
    unsetenv("CUDA_VISIBLE_DEVICES");
    int rc = comm_create("nccl", &c, err, sizeof err);
    printf("# --comm nccl here: %s\n", rc ? err : "works (GPU present)");
    if (rc == 0) {
        assert_string_equal(comm_kind(c), "nccl");
        float f[4] = { 1, 2, 3, 4 };
        assert_int_equal(comm_allreduce_sum_f32(c, f, 4), 0);
        assert_true(f[3] == 4);
        comm_free(c);
        return;
    }
    assert_non_null(strstr(err, "--comm nccl"));
    assert_true(strstr(err, "no CUDA device") || strstr(err, "NVIDIA driver is missing") || strstr(err, "built without CUDA"));
    assert_non_null(strstr(err, "--comm mpi"));   // says what to do instead
}

// The three reducers' slices on one rank: per-tensor follows the tensor starts (given in any order,
// duplicates once), fused packs whole tensors into buffers of at most --fusion-mb (a larger tensor
// alone) and starts nothing during backward; bad names and sizes are errors naming the flag.
static void test_reducer_kinds_plan(void **state) {
    (void)state;
    Comm *c;
    char err[512] = "";
    assert_int_equal(comm_create("none", &c, err, sizeof err), 0);
    const size_t n = 1000;
    float *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = (float)i;
    // tensors start at 0, 100, 150, 400, 900 (sizes 100, 50, 250, 500, 100), listed out of order
    size_t off[] = { 400, 0, 150, 900, 100, 150 };
    DdpConfig cfg = { .kind = "per-tensor", .tensor_off = off, .ntensors = 6 };
    DdpReducer *r;
    assert_int_equal(ddp_create_cfg(c, g, n, &cfg, &r, err, sizeof err), 0);
    assert_string_equal(ddp_kind(r), "per-tensor");
    size_t want_off[] = { 0, 100, 150, 400, 900 }, want_n[] = { 100, 50, 250, 500, 100 };
    assert_int_equal(ddp_num_buckets(r), 5);
    for (int i = 0; i < 5; i++) {
        size_t o, k;
        ddp_bucket(r, i, &o, &k);
        assert_int_equal(o, want_off[i]);
        assert_int_equal(k, want_n[i]);
    }
    ddp_grads_ready(r, 399);   // tensors 0 and 1 are final, tensor 2 (150..400) is not
    assert_int_equal(ddp_buckets_launched(r), 2);
    assert_int_equal(ddp_finish(r), 0);
    ddp_free(r);
    // fused at 300 floats: {0,100,150}=400 > 300 -> [0..150) then [150..400), [400..900) alone (500 > 300),
    // [900..1000)
    cfg.kind = "fused";
    cfg.fusion_mb = 300.0 * sizeof(float) / (1024.0 * 1024.0);
    assert_int_equal(ddp_create_cfg(c, g, n, &cfg, &r, err, sizeof err), 0);
    assert_string_equal(ddp_kind(r), "fused");
    size_t f_off[] = { 0, 150, 400, 900 }, f_n[] = { 150, 250, 500, 100 };
    assert_int_equal(ddp_num_buckets(r), 4);
    for (int i = 0; i < 4; i++) {
        size_t o, k;
        ddp_bucket(r, i, &o, &k);
        assert_int_equal(o, f_off[i]);
        assert_int_equal(k, f_n[i]);
    }
    ddp_grads_ready(r, n);   // backward done: fused still waits for ddp_finish
    assert_int_equal(ddp_buckets_launched(r), 0);
    assert_int_equal(ddp_finish(r), 0);
    int order[8];
    assert_int_equal(ddp_launch_order(r, order, 8), 4);
    ddp_free(r);
    // the default fusion buffer (64 MB) holds everything: one allreduce
    cfg.fusion_mb = 0;
    assert_int_equal(ddp_create_cfg(c, g, n, &cfg, &r, err, sizeof err), 0);
    assert_int_equal(ddp_num_buckets(r), 1);
    ddp_free(r);
    for (size_t i = 0; i < n; i++) assert_true(g[i] == (float)i);   // one rank: unchanged
    // errors
    cfg.kind = "horovod";
    assert_int_equal(ddp_create_cfg(c, g, n, &cfg, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "--reducer"));
    assert_non_null(strstr(err, "per-tensor"));
    cfg.kind = "fused";
    cfg.fusion_mb = -1;
    assert_int_equal(ddp_create_cfg(c, g, n, &cfg, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "--fusion-mb"));
    DdpConfig bare = { .kind = "per-tensor" };
    assert_int_equal(ddp_create_cfg(c, g, n, &bare, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "tensor boundaries"));
    size_t outside[] = { 0, 1000 };
    DdpConfig out = { .kind = "fused", .tensor_off = outside, .ntensors = 2 };
    assert_int_equal(ddp_create_cfg(c, g, n, &out, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside"));
    free(g);
    comm_free(c);
}

// --allreduce-algo: names are checked on one rank too (a misspelt matrix value fails at once, not
// only on the multi-rank cells); one rank has nothing to reduce and reports "auto" for any name. An
// engine's wrong name is refused naming the ones it offers (MPI: tests/trainer/test_comm_mpi.c).
static void test_allreduce_algo_names(void **state) {
    (void)state;
    Comm *c = NULL;
    char err[512] = "";
    assert_int_equal(comm_create_algo("none", "ring", &c, err, sizeof err), 0);
    comm_free(c);
    assert_int_equal(comm_create_algo("auto", "tree", &c, err, sizeof err), 0);
    comm_free(c);
    assert_int_equal(comm_create_algo("none", "butterfly", &c, err, sizeof err), -1);
    assert_null(c);
    assert_non_null(strstr(err, "--allreduce-algo"));
    assert_non_null(strstr(err, "rabenseifner"));
#ifdef SEGX_HAVE_MPI
    // tree is NCCL's: refused for MPI before MPI starts
    assert_int_equal(comm_create_algo("mpi", "tree", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "recursive-doubling"));
#endif
    assert_int_equal(comm_create_algo("nccl", "rabenseifner", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "ring or tree"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_none_is_identity, clear_launch_env),
        cmocka_unit_test_setup(test_auto_alone_is_none, clear_launch_env),
        cmocka_unit_test_setup(test_unknown_kind_is_named, clear_launch_env),
        cmocka_unit_test_setup(test_srun_without_mpi_plugin_is_refused, clear_launch_env),
        cmocka_unit_test_setup(test_bad_launch_env_is_named, clear_launch_env),
        cmocka_unit_test_setup(test_ddp_buckets_one_rank, clear_launch_env),
        cmocka_unit_test_setup(test_ddp_scales_through_the_backend, clear_launch_env),
        cmocka_unit_test_setup(test_nccl_needs_a_gpu, clear_launch_env),
        cmocka_unit_test_setup(test_reducer_kinds_plan, clear_launch_env),
        cmocka_unit_test_setup(test_allreduce_algo_names, clear_launch_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
