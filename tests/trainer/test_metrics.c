// tests/trainer/test_metrics.c — confusion matrix metrics on matrices worked out by hand.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "trainer/metrics/metrics.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-12)

// 3 classes, truth/pred pairs chosen so the matrix is
//   truth 0: pred 0 x3, pred 1 x1
//   truth 1: pred 1 x2, pred 2 x2
//   truth 2: pred 2 x1
// IoU0 = 3/(4+3-3) = 3/4, IoU1 = 2/(4+3-2) = 2/5, IoU2 = 1/(1+3-1) = 1/3.
static void test_known_matrix(void **state) {
    (void)state;
    ConfMat c;
    assert_int_equal(confmat_init(&c, 3), 0);
    const int32_t t[] = { 0, 0, 0, 0, 1, 1, 1, 1, 2, 255, 1 };
    const int32_t p[] = { 0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 7 };  // 255 truth and pred 7 ignored
    confmat_add(&c, t, p, 11);
    NEAR(confmat_total(&c), 9);
    NEAR(c.m[0 * 3 + 1], 1);
    NEAR(c.m[1 * 3 + 2], 2);
    double pc[3];
    NEAR(confmat_miou(&c, pc), (0.75 + 0.4 + 1.0 / 3) / 3);
    NEAR(pc[0], 0.75);
    NEAR(pc[1], 0.4);
    NEAR(pc[2], 1.0 / 3);
    NEAR(confmat_accuracy(&c), 6.0 / 9);
    confmat_free(&c);
}

// A class absent from truth and prediction is left out of the mean; one that is only
// predicted counts with IoU 0.
static void test_absent_classes(void **state) {
    (void)state;
    ConfMat c;
    confmat_init(&c, 4);
    const int32_t t[] = { 0, 0, 1, 1 };
    const int32_t p[] = { 0, 0, 1, 3 };
    confmat_add(&c, t, p, 4);
    double pc[4];
    // IoU0 = 1, IoU1 = 1/2, class 2 absent (NaN, excluded), IoU3 = 0/1 = 0
    NEAR(confmat_miou(&c, pc), (1 + 0.5 + 0) / 3);
    assert_true(isnan(pc[2]));
    NEAR(pc[3], 0);
    // reset, then sum of two "ranks" equals one pass over all the data
    ConfMat a, b;
    confmat_init(&a, 4);
    confmat_init(&b, 4);
    confmat_add(&a, t, p, 2);
    confmat_add(&b, t + 2, p + 2, 2);
    for (int i = 0; i < 16; i++) a.m[i] += b.m[i];
    NEAR(confmat_miou(&a, NULL), confmat_miou(&c, NULL));
    confmat_reset(&c);
    NEAR(confmat_total(&c), 0);
    NEAR(confmat_miou(&c, NULL), 0);
    confmat_free(&a); confmat_free(&b); confmat_free(&c);
}

static void test_argmax(void **state) {
    (void)state;
    // batch 2, k 3, hw 2: logits[b][c][p]
    const float l[12] = { 1, 5, 2, 5, 3, 0,    -1, -1, -1, 0, -2, 0 };
    int32_t pred[4];
    metrics_argmax(l, 2, 3, 2, pred);
    assert_int_equal(pred[0], 2);  // (1, 2, 3)
    assert_int_equal(pred[1], 0);  // (5, 5, 0): tie -> lower class
    assert_int_equal(pred[2], 0);  // (-1, -1, -2)
    assert_int_equal(pred[3], 1);  // (-1, 0, 0)
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_matrix),
        cmocka_unit_test(test_absent_classes),
        cmocka_unit_test(test_argmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
