// tests/trainer/test_optim.c — optimizers against PyTorch, and the lr schedules.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "trainer/optim/optim.h"

// Problem: 8 parameters p0, gradient g = a*p + b (elementwise), 6 steps with lr_k = lr*(1-0.1k).
// Expected parameters after the 6 steps were computed once with Debian's python3-torch 1.13
// (torch.optim.SGD/Adam/AdamW/Adagrad/Adadelta, foreach=False, float32; sgdw = p *= 1-lr*wd
// before a weight-decay-free SGD step) by this script and pasted here:
//   for k in range(6): lr = lr0*(1-0.1*k); p.grad = a*p + b; [p.mul_(1-lr*wd) for sgdw]; opt.step()
static const float A[8] = { 0.5f, 1.0f, 2.0f, 0.1f, 3.0f, 0.7f, 1.5f, 0.25f };
static const float B[8] = { 0.3f, -0.2f, 0.1f, -1.0f, 0.05f, 0.6f, -0.4f, 0.9f };
static const float P0[8] = { 1.0f, -2.0f, 0.5f, 3.0f, -0.7f, 0.2f, 1.2f, -1.5f };

typedef struct { const char *name; float momentum, wd, lr; float want[8]; } Case;
static const Case cases[] = {
    { "sgd", 0.00f, 0.00f, 0.1f, { 6.718088984e-01f, -1.176666737e+00f, 1.564283818e-01f, 3.309211731e+00f, -1.627924889e-01f, -9.260050207e-02f, 7.216135263e-01f, -1.725555301e+00f } },
    { "sgd", 0.90f, 0.05f, 0.1f, { 1.046310142e-01f, 1.292614788e-01f, -2.938566506e-01f, 3.640535831e+00f, 3.995302320e-01f, -5.506344438e-01f, 1.723278314e-02f, -2.004861116e+00f } },
    { "sgd-nesterov", 0.90f, 0.05f, 0.1f, { -4.352800176e-02f, 2.902652919e-01f, -2.303700447e-01f, 3.795815468e+00f, 1.832430214e-01f, -6.472042799e-01f, 2.491455525e-02f, -2.112429142e+00f } },
    { "sgdw", 0.90f, 0.05f, 0.1f, { 1.338394135e-01f, 7.946638763e-02f, -2.864861786e-01f, 3.755692720e+00f, 3.936457634e-01f, -5.486802459e-01f, 4.400376230e-02f, -2.062223196e+00f } },
    { "adam", 0.00f, 0.05f, 0.1f, { 5.535911322e-01f, -1.552274823e+00f, 6.931583583e-02f, 3.448776007e+00f, -2.627755404e-01f, -2.432355583e-01f, 7.574322224e-01f, -1.946259022e+00f } },
    { "adamw", 0.00f, 0.05f, 0.1f, { 5.354826450e-01f, -1.512096286e+00f, 6.293132901e-02f, 3.378473997e+00f, -2.519833446e-01f, -2.440759540e-01f, 7.355899215e-01f, -1.910256147e+00f } },
    { "adagrad", 0.00f, 0.05f, 0.1f, { 7.181448936e-01f, -1.714996696e+00f, 2.402527332e-01f, 3.287928820e+00f, -4.329973459e-01f, -7.570518553e-02f, 9.254120588e-01f, -1.781524301e+00f } },
    { "adadelta", 0.00f, 0.05f, 1.0f, { 9.852360487e-01f, -1.985225677e+00f, 4.852992892e-01f, 3.014783859e+00f, -6.852799058e-01f, 1.852550209e-01f, 1.185258389e+00f, -1.514762521e+00f } },
};

static void test_against_torch(void **state) {
    (void)state;
    int bad = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const Case *k = &cases[c];
        OptKind kind;
        assert_int_equal(optim_parse(k->name, &kind), 0);
        Optimizer *o;
        char err[256];
        assert_int_equal(optim_create(kind, 8, k->momentum, k->wd, &o, err, sizeof err), 0);
        float p[8], g[8];
        memcpy(p, P0, sizeof p);
        for (int s = 0; s < 6; s++) {
            for (int i = 0; i < 8; i++) g[i] = A[i] * p[i] + B[i];
            optim_step(o, p, g, k->lr * (1 - 0.1f * s));
        }
        for (int i = 0; i < 8; i++) {
            float tol = 1e-6f + 1e-5f * fabsf(k->want[i]);
            if (fabsf(p[i] - k->want[i]) > tol) {
                fprintf(stderr, "%s (momentum %g wd %g) p[%d] = %.9g, torch %.9g\n", k->name,
                        k->momentum, k->wd, i, p[i], k->want[i]);
                bad++;
            }
        }
        assert_int_equal(o->steps, 6);
        optim_free(o);
    }
    assert_int_equal(bad, 0);
}

static void test_parse(void **state) {
    (void)state;
    OptKind k;
    assert_int_equal(optim_parse("adamw", &k), 0);
    assert_int_equal(k, OPT_ADAMW);
    assert_string_equal(optim_name(k), "adamw");
    assert_int_equal(optim_parse("lamb", &k), -1);
    LrKind l;
    assert_int_equal(lr_parse("cosine", &l), 0);
    assert_int_equal(lr_parse("exp", &l), -1);
}

static void test_schedules(void **state) {
    (void)state;
    // 10 warmup steps, 100 total: 90 scheduled steps, t = (s-10)/90
    LrSchedule s = { LR_CONSTANT, 0.4, 100, 10 };
    assert_true(fabs(lr_at(&s, 0) - 0.04) < 1e-12);      // (0+1)/10 of the base
    assert_true(fabs(lr_at(&s, 9) - 0.4) < 1e-12);
    assert_true(fabs(lr_at(&s, 99) - 0.4) < 1e-12);
    s.kind = LR_COSINE;
    assert_true(fabs(lr_at(&s, 10) - 0.4) < 1e-12);
    assert_true(fabs(lr_at(&s, 55) - 0.2) < 1e-12);      // t = 0.5
    assert_true(lr_at(&s, 99) < 0.001);
    s.kind = LR_POLY;
    assert_true(fabs(lr_at(&s, 55) - 0.4 * pow(0.5, 0.9)) < 1e-12);
    s.kind = LR_STEP;
    assert_true(fabs(lr_at(&s, 54) - 0.4) < 1e-12);
    assert_true(fabs(lr_at(&s, 55) - 0.04) < 1e-12);     // milestone t = 0.5
    assert_true(fabs(lr_at(&s, 77) - 0.04) < 1e-12);
    assert_true(fabs(lr_at(&s, 78) - 0.004) < 1e-12);    // milestone t = 0.75 (step 77.5)
    // no warmup: step 0 already has the base lr; schedules never increase after warmup
    LrSchedule c = { LR_COSINE, 1.0, 50, 0 };
    assert_true(fabs(lr_at(&c, 0) - 1.0) < 1e-12);
    for (long i = 1; i < 50; i++) assert_true(lr_at(&c, i) <= lr_at(&c, i - 1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_torch),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
