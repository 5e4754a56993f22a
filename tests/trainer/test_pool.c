// tests/trainer/test_pool.c — k x k max pooling with stride and padding (trainer/ops/pool.c): forward
// and backward against PyTorch (tests/fixtures/maxpool.bin from tools/fixtures/gen_pool_fixture.py,
// ties included), backward against finite differences, and the CUDA twin (pool_cuda.cu) against the
// CPU (skipped without a GPU, saying why).
#include "test_ops_common.h"   // defines: fx_load, fx_f32, fx_f64, check_close, cmocka

#include "config.h"
#include "trainer/ops/ops.h"
#include "trainer/ops/ops_cuda.h"

static const int NCASES = 5;

static void shape_of(const Fx *fx, int k, int sh[7]) {
    char name[64];
    snprintf(name, sizeof name, "case%d.shape", k);
    const FxRec *r = fx_get(fx, name);
    for (int i = 0; i < 7; i++) sh[i] = ((int32_t *)r->data)[i];
}

static float *get(const Fx *fx, int k, const char *what, size_t *n) {
    char name[64];
    snprintf(name, sizeof name, "case%d.%s", k, what);
    return fx_f32(fx, name, n);
}
static double *get64(const Fx *fx, int k, const char *what, size_t *n) {
    char name[64];
    snprintf(name, sizeof name, "case%d.%s", k, what);
    return fx_f64(fx, name, n);
}

static void test_vs_torch(void **state) {
    (void)state;
    Fx *fx = fx_load("maxpool.bin");
    for (int threads = 1; threads <= 2; threads++) {
        ops_parallel_set_threads(threads);
        for (int k = 0; k < NCASES; k++) {
            int s[7];
            shape_of(fx, k, s);
            int B = s[0], C = s[1], h = s[2], w = s[3], K = s[4], S = s[5], P = s[6];
            int oh = ops_maxpool_out(h, K, S, P), ow = ops_maxpool_out(w, K, S, P);
            size_t nx, ny, ndy, ndx;
            float *x = get(fx, k, "x", &nx), *dy = get(fx, k, "dy", &ndy);
            double *y_ref = get64(fx, k, "y", &ny), *dx_ref = get64(fx, k, "dx", &ndx);
            assert_int_equal(ny, (size_t)B * C * oh * ow);
            float *y = malloc(sizeof(float) * ny), *dx = malloc(sizeof(float) * nx);
            for (size_t i = 0; i < nx; i++) dx[i] = 12345.0f;   // overwritten, not accumulated
            ops_cpu_maxpool_forward(B, C, h, w, K, S, P, y, x);
            ops_cpu_maxpool_backward(B, C, h, w, K, S, P, dx, dy, x);
            char what[64];
            snprintf(what, sizeof what, "case %d forward", k);
            assert_int_equal(check_close(what, y, y_ref, ny, 0, 0), 0);   // a max is exact
            snprintf(what, sizeof what, "case %d backward", k);
            assert_int_equal(check_close(what, dx, dx_ref, nx, 1e-6, 1e-6), 0);
            free(x); free(dy); free(y_ref); free(dx_ref); free(y); free(dx);
        }
    }
    ops_parallel_set_threads(1);
    fx_free(fx);
}

// L = sum(y * r): dL/dx from backward(dy = r) against central differences. Inputs are distinct
// multiples of 0.1, so a step of 0.01 never changes a window's argmax.
static void test_finite_differences(void **state) {
    (void)state;
    const int B = 2, C = 2, h = 9, w = 7, K = 3, S = 2, P = 1;
    int oh = ops_maxpool_out(h, K, S, P), ow = ops_maxpool_out(w, K, S, P);
    assert_int_equal(oh, 5);
    assert_int_equal(ow, 4);
    size_t nx = (size_t)B * C * h * w, ny = (size_t)B * C * oh * ow;
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny), *r = malloc(sizeof(float) * ny);
    float *dx = malloc(sizeof(float) * nx);
    for (size_t i = 0; i < nx; i++) x[i] = 0.1f * (float)((i * 37) % nx) - 5.0f;   // a permutation, distinct
    for (size_t i = 0; i < ny; i++) r[i] = (float)(i % 7) - 3.0f;
    ops_cpu_maxpool_backward(B, C, h, w, K, S, P, dx, r, x);
    long bad = 0;
    for (size_t i = 0; i < nx; i++) {
        double lp = 0, lm = 0;
        float keep = x[i];
        x[i] = keep + 0.01f;
        ops_cpu_maxpool_forward(B, C, h, w, K, S, P, y, x);
        for (size_t j = 0; j < ny; j++) lp += (double)y[j] * r[j];
        x[i] = keep - 0.01f;
        ops_cpu_maxpool_forward(B, C, h, w, K, S, P, y, x);
        for (size_t j = 0; j < ny; j++) lm += (double)y[j] * r[j];
        x[i] = keep;
        double fd = (lp - lm) / (2 * 0.01);
        if (fabs(fd - dx[i]) > 1e-3 + 1e-3 * fabs(fd)) {
            if (bad++ < 5) printf("# dx[%zu]: backward %g, finite difference %g\n", i, dx[i], fd);
        }
    }
    assert_int_equal(bad, 0);
    free(x); free(y); free(r); free(dx);
}

// The CUDA twin against the CPU on every fixture case (bit-exact: a max and sums of the same terms).
static void test_cuda_twin(void **state) {
    (void)state;
#ifndef SEGX_HAVE_CUDA
    printf("# built without CUDA (no nvcc at configure time)\n");
    skip();
#else
    char why[512] = "";
    if (ops_cuda_init(0, why, sizeof why) != 0) {
        printf("# no GPU: %s\n", why);
        skip();
    }
    const Ops *g = ops_cuda();
    Fx *fx = fx_load("maxpool.bin");
    for (int k = 0; k < NCASES; k++) {
        int s[7];
        shape_of(fx, k, s);
        int B = s[0], C = s[1], h = s[2], w = s[3], K = s[4], S = s[5], P = s[6];
        size_t nx, ndy;
        float *x = get(fx, k, "x", &nx), *dy = get(fx, k, "dy", &ndy);
        float *y = malloc(sizeof(float) * ndy), *dx = malloc(sizeof(float) * nx);
        float *gy = malloc(sizeof(float) * ndy), *gdx = malloc(sizeof(float) * nx);
        ops_cpu_maxpool_forward(B, C, h, w, K, S, P, y, x);
        ops_cpu_maxpool_backward(B, C, h, w, K, S, P, dx, dy, x);
        float *dX = g->alloc(sizeof(float) * nx), *dDY = g->alloc(sizeof(float) * ndy);
        float *dY = g->alloc(sizeof(float) * ndy), *dDX = g->alloc(sizeof(float) * nx);
        g->upload(dX, x, sizeof(float) * nx);
        g->upload(dDY, dy, sizeof(float) * ndy);
        ops_cuda_maxpool_forward(B, C, h, w, K, S, P, dY, dX);
        ops_cuda_maxpool_backward(B, C, h, w, K, S, P, dDX, dDY, dX);
        g->download(gy, dY, sizeof(float) * ndy);
        g->download(gdx, dDX, sizeof(float) * nx);
        const char *e = ops_cuda_error();
        if (e) fail_msg("CUDA: %s", e);
        assert_memory_equal(gy, y, sizeof(float) * ndy);
        for (size_t i = 0; i < nx; i++)   // the same terms, maybe summed in another order
            if (fabsf(gdx[i] - dx[i]) > 1e-6f * (1 + fabsf(dx[i]))) fail_msg("case %d dx[%zu]: GPU %g CPU %g", k, i, gdx[i], dx[i]);
        g->free(dX); g->free(dDY); g->free(dY); g->free(dDX);
        free(x); free(dy); free(y); free(dx); free(gy); free(gdx);
    }
    fx_free(fx);
    ops_cuda_shutdown();
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_torch),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_cuda_twin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
