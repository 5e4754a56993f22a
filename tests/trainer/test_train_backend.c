// tests/trainer/test_train_backend.c — the pieces the training loop uses on every backend, so that
// the CPU checks the code the GPU path runs: batch staging (trainer/gpu/stage.h), the optimizer with
// caller-owned state (optim_create_on) and the model's forward/loss on backend-memory inputs
// (model_forward_dev, model_loss_dev). The CUDA half of the staging test needs a GPU and SKIPs
// without one, with the reason.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/gpu/stage.h"
#include "trainer/models/model.h"
#include "trainer/ops/ops_cuda.h"
#include "trainer/optim/optim.h"

enum { B = 4, XS = 6, YS = 3 };

static void fill(Batch *b, float *x, int32_t *y, int n, int seed) {
    for (int i = 0; i < n * XS; i++) x[i] = (float)(seed * 1000 + i);
    for (int i = 0; i < n * YS; i++) y[i] = seed * 100 + i;
    *b = (Batch){ .x = x, .y = y, .n = n, .index = seed };
}

// Puts three batches in turn and checks each staged copy against its source, downloading through
// the table; the first stays intact while the second is staged (two slots), the third reuses its slot.
static void stage_roundtrip(const Ops *ops) {
    char err[256];
    BatchStage *s;
    assert_int_equal(stage_create(ops, B, XS, YS, &s, err, sizeof err), 0);
    float xa[B * XS], xb[B * XS], xc[B * XS], got[B * XS];
    int32_t ya[B * YS], yb[B * YS], yc[B * YS], goty[B * YS];
    Batch a, b, c;
    fill(&a, xa, ya, B, 1); fill(&b, xb, yb, B - 1, 2); fill(&c, xc, yc, B, 3);
    const Batch *sa = stage_put(s, &a);
    assert_non_null(sa);
    memset(xa, 0, sizeof xa);   // the source may be reused at once (the loader's buffer)
    const Batch *sb = stage_put(s, &b);
    assert_non_null(sb);
    assert_ptr_not_equal(sa->x, sb->x);
    assert_int_equal(sb->n, B - 1);
    assert_int_equal(sb->index, 2);
    stage_wait(s, sa);
    ops->download(got, sa->x, sizeof got);
    ops->download(goty, sa->y, sizeof goty);
    for (int i = 0; i < B * XS; i++) assert_true(got[i] == (float)(1000 + i));
    for (int i = 0; i < B * YS; i++) assert_int_equal(goty[i], 100 + i);
    stage_wait(s, sb);
    ops->download(got, sb->x, sizeof(float) * (B - 1) * XS);
    for (int i = 0; i < (B - 1) * XS; i++) assert_true(got[i] == (float)(2000 + i));
    const Batch *sc = stage_put(s, &c);
    assert_ptr_equal(sc->x, sa->x);
    stage_wait(s, sc);
    ops->download(goty, sc->y, sizeof goty);
    for (int i = 0; i < B * YS; i++) assert_int_equal(goty[i], 300 + i);
    Batch big = c;
    big.n = B + 1;
    assert_null(stage_put(s, &big));   // more samples than a slot holds
    stage_free(s);
}

static void test_stage_cpu(void **state) {
    (void)state;
    char err[64];
    BatchStage *s;
    assert_int_equal(stage_create(ops_cpu(), B, XS, YS, &s, err, sizeof err), 0);
    assert_int_equal(stage_is_async(s), 0);
    stage_free(s);
    stage_roundtrip(ops_cpu());
}

static void test_stage_cuda(void **state) {
    (void)state;
    char why[512];
    if (ops_cuda_init(0, why, sizeof why)) { printf("# no GPU: %s\n", why); skip(); }
    BatchStage *s;
    assert_int_equal(stage_create(ops_cuda(), B, XS, YS, &s, why, sizeof why), 0);
    assert_int_equal(stage_is_async(s), 1);
    stage_free(s);
    stage_roundtrip(ops_cuda());
    assert_null(ops_cuda_error());
    ops_cuda_shutdown();
}

// optim_create_on: the same updates as optim_create, and optim_free leaves the state to its owner
// (ASan reports a double free or a leak otherwise).
static void test_optim_external_state(void **state) {
    (void)state;
    enum { N = 257 };
    char err[128];
    for (int k = OPT_SGD; k <= OPT_ADADELTA; k++) {
        Optimizer *a, *b;
        assert_int_equal(optim_create((OptKind)k, N, 0.9f, 0.01f, &a, err, sizeof err), 0);
        float *st = ops_cpu()->alloc(sizeof(float) * optim_slots((OptKind)k) * N);
        assert_int_equal(optim_create_on((OptKind)k, N, 0.9f, 0.01f, st, &b, err, sizeof err), 0);
        assert_int_equal(a->nslots, optim_slots((OptKind)k));
        float pa[N], pb[N], g[N];
        for (int i = 0; i < N; i++) { pa[i] = pb[i] = 0.01f * (i % 17) - 0.05f; g[i] = 0.003f * (i % 11) - 0.01f; }
        for (int s = 0; s < 3; s++) { optim_step(a, pa, g, 0.1f); optim_step(b, pb, g, 0.1f); }
        assert_memory_equal(pa, pb, sizeof pa);
        assert_memory_equal(a->state, st, sizeof(float) * a->nslots * N);
        optim_free(a);
        optim_free(b);
        ops_cpu()->free(st);
    }
    Optimizer *o = (Optimizer *)1;
    assert_int_equal(optim_create_on(OPT_SGD, N, 0.9f, 0, NULL, &o, err, sizeof err), -1);
    assert_null(o);
}

// model_forward_dev + model_loss_dev on inputs in backend memory == model_forward + model_loss.
static void test_model_dev_inputs(void **state) {
    (void)state;
    ModelConfig cfg = { .name = "unet", .in_channels = 1, .classes = 3, .height = 16, .width = 16, .base_width = 4,
                        .batch_norm = 1, .max_batch = 2 };
    char err[256];
    Model *m1, *m2;
    assert_int_equal(model_create(&cfg, &m1, err, sizeof err), 0);
    assert_int_equal(model_create(&cfg, &m2, err, sizeof err), 0);
    model_init(m1, 5); model_init(m2, 5);
    size_t xn = 2 * 16 * 16, np = model_num_params(m1);
    float *x = malloc(sizeof(float) * xn);
    int32_t *y = malloc(sizeof(int32_t) * xn);
    for (size_t i = 0; i < xn; i++) { x[i] = (float)((i * 37) % 101) / 101.f; y[i] = (int32_t)((i * 7) % 4 == 3 ? 255 : (i * 7) % 4); }
    const Ops *o = ops_cpu();
    float *dx = o->alloc(sizeof(float) * xn);
    int32_t *dy = o->alloc(sizeof(int32_t) * xn);
    o->upload(dx, x, sizeof(float) * xn);
    o->upload(dy, y, sizeof(int32_t) * xn);
    for (int step = 0; step < 2; step++) {
        model_zero_grad(m1); model_zero_grad(m2);
        model_forward(m1, x, 2, 1);
        assert_non_null(model_forward_dev(m2, dx, 2, 1));
        long c1, c2;
        float l1 = model_loss(m1, y, 0.5f, &c1), l2 = model_loss_dev(m2, dy, 0.5f, &c2);
        assert_true(l1 == l2 && isfinite(l1));
        assert_int_equal(c1, c2);
        model_backward(m1); model_backward(m2);
        assert_memory_equal(model_grads(m1), model_grads(m2), sizeof(float) * np);
        assert_memory_equal(model_buffers(m1), model_buffers(m2), sizeof(float) * model_num_buffers(m1));
    }
    assert_null(model_forward_dev(m2, dx, 3, 1));   // batch above max_batch
    y[5] = 7;   // a bad label is reported as NAN with its index, read back from backend memory
    o->upload(dy, y, sizeof(int32_t) * xn);
    model_forward_dev(m2, dx, 2, 1);
    long cnt;
    assert_true(isnan(model_loss_dev(m2, dy, 1.f, &cnt)));
    assert_int_equal(cnt, -1 - 5);
    o->free(dx); o->free(dy); free(x); free(y);
    model_free(m1); model_free(m2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage_cpu),
        cmocka_unit_test(test_stage_cuda),
        cmocka_unit_test(test_optim_external_state),
        cmocka_unit_test(test_model_dev_inputs),
    };
    return cmocka_run_group_tests_name("train_backend", tests, NULL, NULL);
}
