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

// ---- evaluation at each image's own size (seg_eval.c) -------------------------------------------

static const ModelConfig unet32 = {.name = "unet", .in_channels = 1, .classes = 11, .height = 32, .width = 32,
                                   .base_width = 8, .batch_norm = 1, .max_batch = 4};

// What model_create_on allocates for unet32 at h x w and batch 1, counted here; its parameter and buffer counts.
static double counted_model(int h, int w, size_t *np, size_t *nb) {
    Ops ops = *ops_cpu();
    ops.alloc = test_alloc;
    ModelConfig c = unet32;
    c.height = h; c.width = w; c.max_batch = 1;
    Model *m;
    char err[512];
    test_bytes = 0;
    if (model_create_on(&c, &ops, &m, err, sizeof err)) fail_msg("unet %dx%d: %s", h, w, err);
    *np = model_num_params(m); *nb = model_num_buffers(m);
    model_free(m);
    return (double)test_bytes;
}

// seg_eval_images' own buffers for an h x w image of C channels and K classes (read off seg_eval.c):
// logits, predictions, labels, the normalised image, two decoded samples.
static double image_buffers(int C, int K, int h, int w) {
    double hw = (double)h * w;
    return 4.0 * K * hw + 8.0 * hw + 4.0 * C * hw + 2.0 * (C * hw + hw);
}

static void test_eval_images_planned(void **state) {
    (void)state;
    char err[512];
    double fixed, per;
    MemRun r = {.batch = 4, .eval_images = MEM_EVAL_IMAGES_NONE};
    assert_int_equal(memplan_eval_images(&unet32, &r, &fixed, &per, err, sizeof err), 0);
    assert_true(fixed == 0 && per == 0);
    // whole: a second model at the image's size (40x48, which unet takes) + the host copy of its parameters
    r.eval_images = MEM_EVAL_IMAGES_WHOLE; r.eval_h = 40; r.eval_w = 48;
    size_t np, nb;
    double model = counted_model(40, 48, &np, &nb);
    assert_int_equal(memplan_eval_images(&unet32, &r, &fixed, &per, err, sizeof err), 0);
    double want = model + 4.0 * (np > nb ? np : nb) + image_buffers(1, 11, 40, 48);
    if (fabs(fixed - want) > 0.5) fail_msg("whole 40x48: planned %.0f bytes, want %.0f", fixed, want);
    assert_true(per == 0);
    // a size unet refuses (sides not multiples of 8): the model is built at 64x64 with a padded input
    r.eval_h = 36; r.eval_w = 44;
    model = counted_model(64, 64, &np, &nb);
    assert_int_equal(memplan_eval_images(&unet32, &r, &fixed, &per, err, sizeof err), 0);
    want = model + 4.0 * 64 * 64 + 4.0 * (np > nb ? np : nb) + image_buffers(1, 11, 36, 44);
    if (fabs(fixed - want) > 0.5) fail_msg("whole 36x44: planned %.0f bytes, want %.0f", fixed, want);
    // eval size unknown: the model's input size
    r.eval_h = r.eval_w = 0;
    model = counted_model(32, 32, &np, &nb);
    assert_int_equal(memplan_eval_images(&unet32, &r, &fixed, &per, err, sizeof err), 0);
    want = model + 4.0 * (np > nb ? np : nb) + image_buffers(1, 11, 32, 32);
    if (fabs(fixed - want) > 0.5) fail_msg("whole 32x32: planned %.0f bytes, want %.0f", fixed, want);
    // slide: windows of the model's input through the training model (per sample), per-pixel counts
    r.eval_images = MEM_EVAL_IMAGES_SLIDE; r.eval_h = 100; r.eval_w = 70;
    assert_int_equal(memplan_eval_images(&unet32, &r, &fixed, &per, err, sizeof err), 0);
    assert_true(fabs(fixed - (image_buffers(1, 11, 100, 70) + 4.0 * 100 * 70)) < 0.5);
    assert_true(per == 4.0 * 32 * 32);
}

// The check counts the second model: a run that fits without it is warned about with it.
static void test_check_counts_whole_eval(void **state) {
    (void)state;
    char err[1024];
    double fixed, per;
    MemRun r = {.batch = 4, .workers = 0, .optim_slots = 1, .sample_floats = 32 * 32, .label_ints = 32 * 32,
                .eval_images = MEM_EVAL_IMAGES_WHOLE, .eval_h = 1024, .eval_w = 1024};
    assert_int_equal(memplan_eval_images(&unet32, &r, &fixed, &per, err, sizeof err), 0);
    assert_true(fixed > 512.0 * 1048576);   // unet at 1024x1024: far more than the 32x32 training run
    char mb[32];
    snprintf(mb, sizeof mb, "%ld", (long)(fixed / 1048576));   // the limit: the evaluation alone
    setenv("SLURM_MEM_PER_NODE", mb, 1);
    assert_int_equal(memplan_check(&unet32, &r, err, sizeof err), 1);
    assert_non_null(strstr(err, "of it evaluation at each image's size"));
    r.eval_images = MEM_EVAL_IMAGES_NONE;
    assert_int_equal(memplan_check(&unet32, &r, err, sizeof err), 0);
    unsetenv("SLURM_MEM_PER_NODE");
}

int main(void) {
    unsetenv("SLURM_MEM_PER_NODE");
    unsetenv("SLURM_MEM_PER_CPU");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_predicts_allocations),
        cmocka_unit_test(test_limit_from_slurm_mem_shared_by_ranks),
        cmocka_unit_test(test_check_refuses_and_says_what_fits),
        cmocka_unit_test(test_eval_images_planned),
        cmocka_unit_test(test_check_counts_whole_eval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
