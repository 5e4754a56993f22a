// tests/trainer/test_memplan.c — segx-train's memory plan: fixed + per-sample bytes from batches 1
// and 2 predict the model's allocations at a batch never built (counted here with our own copy of
// the op table), the limit follows Slurm's --mem shared by the node's ranks, and a batch that does
// not fit the machine is refused, one over the job's --mem warned about, each naming the largest
// batch that fits (issue 17 item 7).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/ops/ops.h"
#include "trainer/run/memplan.h"

static size_t test_bytes;
static void *test_alloc(size_t n) {
    void *p = ops_cpu()->alloc(n);
    if (p) test_bytes += n;
    return p;
}

static const ModelConfig cnn = {.name = "cnn", .in_channels = 3, .classes = 10, .height = 32, .width = 32,
                                .base_width = 16, .batch_norm = 1, .max_batch = 1};

static void test_plan_predicts_allocations(void **state) {
    (void)state;
    const ModelConfig unet = {.name = "unet", .in_channels = 1, .classes = 11, .height = 32, .width = 32,
                              .base_width = 8, .batch_norm = 1, .max_batch = 1};
    const ModelConfig *cfgs[] = {&cnn, &unet};
    for (int k = 0; k < 2; k++) {
        MemPlan p;
        char err[512];
        ModelConfig at = *cfgs[k];
        at.max_batch = 100;   // planned around 100, checked at 64
        if (memplan_model(&at, &p, err, sizeof err)) fail_msg("%s: %s", at.name, err);
        assert_true(p.per_sample > 0 && p.fixed > 0);
        Ops ops = *ops_cpu();
        ops.alloc = test_alloc;
        ModelConfig c = *cfgs[k];
        c.max_batch = 64;
        Model *m;
        test_bytes = 0;
        assert_int_equal(model_create_on(&c, &ops, &m, err, sizeof err), 0);
        // parameters and gradients at least are in the fixed part
        assert_true(p.fixed >= 2.0 * 4 * (double)model_num_params(m));
        model_free(m);
        double planned = p.fixed + 64 * p.per_sample;
        if (fabs(planned - (double)test_bytes) > 0.01 * (double)test_bytes)
            fail_msg("%s: planned %.0f bytes at batch 64, allocated %zu", c.name, planned, test_bytes);
    }
}

static void test_limit_from_slurm_mem_shared_by_ranks(void **state) {
    (void)state;
    setenv("SLURM_MEM_PER_NODE", "1000", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
    char src[256];
    double lim = memplan_limit(src, sizeof src);
    assert_true(fabs(lim - 500.0 * 1048576) < 1);
    assert_non_null(strstr(src, "--mem=1000M"));
    assert_non_null(strstr(src, "shared by 2 ranks"));
    unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    unsetenv("SLURM_MEM_PER_NODE");
    // without Slurm: the machine (or the cgroup), never nothing on Linux
    assert_true(memplan_limit(src, sizeof src) > 0);
}

static void test_check_refuses_and_says_what_fits(void **state) {
    (void)state;
    // synthetic 3x32x32 classification, SGD with momentum, 2 workers, eval
    MemRun r = {.batch = 100000, .workers = 2, .has_eval = 1, .optim_slots = 1, .sample_floats = 3 * 32 * 32, .label_ints = 1};
    char err[1024];
    assert_int_equal(memplan_check(&cnn, &r, err, sizeof err), -1);   // ~130 GiB
    assert_non_null(strstr(err, "--batch-size 100000 needs about"));
    assert_non_null(strstr(err, "but this rank may use"));
    // over what the job asked Slurm for (not over the machine): a warning (1), with what fits
    setenv("SLURM_MEM_PER_NODE", "1024", 1);
    r.batch = 5000;
    assert_int_equal(memplan_check(&cnn, &r, err, sizeof err), 1);
    assert_non_null(strstr(err, "but the job asked for 1.0 GiB (the job's --mem=1024M"));
    const char *at = strstr(err, "a batch of at most ");
    assert_non_null(at);
    long fits = strtol(at + strlen("a batch of at most "), NULL, 10);
    assert_true(fits > 10 && fits < 100000);
    r.batch = (int)(fits * 9 / 10);
    assert_int_equal(memplan_check(&cnn, &r, err, sizeof err), 0);
    r.batch = (int)(fits * 11 / 10 + 1);
    assert_int_equal(memplan_check(&cnn, &r, err, sizeof err), 1);
    r.batch = 100000;   // over the machine as well: the error wins
    assert_int_equal(memplan_check(&cnn, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "the machine's memory"));
    setenv("SEGX_MEMORY_CHECK", "0", 1);   // the way out
    assert_int_equal(memplan_check(&cnn, &r, err, sizeof err), 0);
    unsetenv("SEGX_MEMORY_CHECK");
    unsetenv("SLURM_MEM_PER_NODE");
}

int main(void) {
    unsetenv("SLURM_MEM_PER_NODE");
    unsetenv("SLURM_MEM_PER_CPU");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_predicts_allocations),
        cmocka_unit_test(test_limit_from_slurm_mem_shared_by_ranks),
        cmocka_unit_test(test_check_refuses_and_says_what_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
