// tests/trainer/test_ops_fixtures.c — the CPU ops' forward AND backward against PyTorch (torch 1.13,
// computed in float64 from the stored float32 inputs by tools/fixtures/gen_fixtures.py into
// tests/fixtures/ops.bin). Tolerance |a-b| <= atol + rtol*|ref| with float32-level atol/rtol.
#include "test_ops_common.h"
#include "trainer/ops/ops.h"

#define ATOL 2e-5
#define RTOL 1e-4

static const Ops *O;
static Fx *fx;

static void expect(const char *rec, const float *got) {
    size_t n; double *ref = fx_f64(fx, rec, &n);
    long bad = check_close(rec, got, ref, n, ATOL, RTOL);
    free(ref);
    assert_int_equal(bad, 0);
}

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static void conv_case(const char *name) {
    char k[64];
    snprintf(k, sizeof k, "%s/cfg", name);
    const int32_t *c = (const int32_t *)fx_get(fx, k)->data;
    int B = c[0], cin = c[1], cout = c[2], h = c[3], w = c[4], ks = c[5], s = c[6], p = c[7], dil = c[8], bias = c[9];
    ConvDesc d;
    assert_int_equal(ops_conv2d_desc(&d, cin, cout, h, w, ks, s, p, dil), 0);
    #define GET(field) (snprintf(k, sizeof k, "%s/" field, name), fx_f32(fx, k, NULL))
    float *x = GET("x"), *wt = GET("w"), *dy = GET("dy"), *b = bias ? GET("b") : NULL;
    size_t ny = (size_t)B * cout * d.oh * d.ow, nx = (size_t)B * cin * h * w, nw = (size_t)cout * cin * ks * ks;
    float *y = zeros(ny), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(cout), *ws = zeros(O->conv2d_workspace(&d, B));
    O->conv2d_forward(&d, B, y, x, wt, b, ws);
    snprintf(k, sizeof k, "%s/y", name); expect(k, y);
    O->conv2d_backward(&d, B, dx, dw, bias ? db : NULL, dy, x, wt, ws, 0);
    snprintf(k, sizeof k, "%s/dx", name); expect(k, dx);
    snprintf(k, sizeof k, "%s/dw", name); expect(k, dw);
    if (bias) { snprintf(k, sizeof k, "%s/db", name); expect(k, db); }
    #undef GET
    free(x); free(wt); free(dy); free(b); free(y); free(dx); free(dw); free(db); free(ws);
}

static void test_conv2d(void **s) {
    (void)s;
    conv_case("conv_s2p1"); conv_case("conv_dil2"); conv_case("conv_1x1s2"); conv_case("conv_1x1"); conv_case("conv_big");
}

static void test_convt2x2(void **s) {
    (void)s;
    const FxRec *rx = fx_get(fx, "convt/x"), *rw = fx_get(fx, "convt/w");
    int B = rx->dims[0], cin = rx->dims[1], h = rx->dims[2], w = rx->dims[3], cout = rw->dims[1];
    float *x = fx_f32(fx, "convt/x", NULL), *wt = fx_f32(fx, "convt/w", NULL), *b = fx_f32(fx, "convt/b", NULL);
    float *dy = fx_f32(fx, "convt/dy", NULL);
    float *y = zeros((size_t)B * cout * 4 * h * w), *dx = zeros(rx->n), *dw = zeros(rw->n), *db = zeros(cout);
    float *ws = zeros(O->convt2x2_workspace(cin, cout, h, w));
    O->convt2x2_forward(B, cin, cout, h, w, y, x, wt, b, ws);
    expect("convt/y", y);
    O->convt2x2_backward(B, cin, cout, h, w, dx, dw, db, dy, x, wt, ws);
    expect("convt/dx", dx); expect("convt/dw", dw); expect("convt/db", db);
    free(x); free(wt); free(b); free(dy); free(y); free(dx); free(dw); free(db); free(ws);
}

static void bn_case(const char *name, int relu) {
    char k[64];
    #define GET(field) (snprintf(k, sizeof k, "%s/" field, name), fx_f32(fx, k, NULL))
    #define EXPECT(field, v) do { snprintf(k, sizeof k, "%s/" field, name); expect(k, v); } while (0)
    snprintf(k, sizeof k, "%s/x", name);
    const FxRec *rx = fx_get(fx, k);
    int B = rx->dims[0], C = rx->dims[1], HW = rx->dims[2] * rx->dims[3];
    float *x = GET("x"), *g = GET("gamma"), *be = GET("beta"), *rm = GET("rm0"), *rv = GET("rv0"), *dy = GET("dy");
    float *y = zeros(rx->n), *dx = zeros(rx->n), *dg = zeros(C), *db = zeros(C), *mean = zeros(C), *is = zeros(C);
    float nb = 0;
    O->batchnorm_forward(B, C, HW, y, mean, is, x, g, be, rm, rv, &nb, 1, relu, NULL);
    EXPECT("y", y); EXPECT("rm1", rm); EXPECT("rv1", rv);
    O->batchnorm_backward(B, C, HW, dx, dg, db, dy, x, y, mean, is, g, relu, NULL);
    EXPECT("dx", dx); EXPECT("dgamma", dg); EXPECT("dbeta", db);
    O->batchnorm_forward(B, C, HW, y, mean, is, x, g, be, rm, rv, &nb, 0, relu, NULL);
    EXPECT("y_eval", y);
    #undef GET
    #undef EXPECT
    free(x); free(g); free(be); free(rm); free(rv); free(dy); free(y); free(dx); free(dg); free(db); free(mean); free(is);
}
static void test_batchnorm(void **s) { (void)s; bn_case("bn", 0); bn_case("bn_relu", 1); }

static void test_maxpool(void **s) {
    (void)s;
    const FxRec *rx = fx_get(fx, "maxpool/x");
    int B = rx->dims[0], C = rx->dims[1], H = rx->dims[2], W = rx->dims[3];
    float *x = fx_f32(fx, "maxpool/x", NULL), *dy = fx_f32(fx, "maxpool/dy", NULL);
    float *y = zeros((size_t)B * C * (H / 2) * (W / 2)), *dx = zeros(rx->n);
    O->maxpool2x2_forward(B, C, H, W, y, x); expect("maxpool/y", y);
    O->maxpool2x2_backward(B, C, H, W, dx, dy, x); expect("maxpool/dx", dx);
    free(x); free(dy); free(y); free(dx);
}

static void test_avgpool(void **s) {
    (void)s;
    const FxRec *rx = fx_get(fx, "avgpool/x");
    int B = rx->dims[0], C = rx->dims[1], HW = rx->dims[2] * rx->dims[3];
    float *x = fx_f32(fx, "avgpool/x", NULL), *dy = fx_f32(fx, "avgpool/dy", NULL), *y = zeros((size_t)B * C), *dx = zeros(rx->n);
    O->avgpool_forward(B, C, HW, y, x); expect("avgpool/y", y);
    O->avgpool_backward(B, C, HW, dx, dy); expect("avgpool/dx", dx);
    free(x); free(dy); free(y); free(dx);
}

static void bilinear_case(const char *name) {
    char k[64];
    snprintf(k, sizeof k, "%s/x", name); const FxRec *rx = fx_get(fx, k);
    snprintf(k, sizeof k, "%s/y", name); const FxRec *ry = fx_get(fx, k);
    int B = rx->dims[0], C = rx->dims[1], h = rx->dims[2], w = rx->dims[3], oh = ry->dims[2], ow = ry->dims[3];
    snprintf(k, sizeof k, "%s/x", name); float *x = fx_f32(fx, k, NULL);
    snprintf(k, sizeof k, "%s/dy", name); float *dy = fx_f32(fx, k, NULL);
    float *y = zeros(ry->n), *dx = zeros(rx->n);
    O->upsample_bilinear_forward(B, C, h, w, oh, ow, y, x);
    snprintf(k, sizeof k, "%s/y", name); expect(k, y);
    O->upsample_bilinear_backward(B, C, h, w, oh, ow, dx, dy);
    snprintf(k, sizeof k, "%s/dx", name); expect(k, dx);
    free(x); free(dy); free(y); free(dx);
}
static void test_bilinear(void **s) { (void)s; bilinear_case("bilinear_up"); bilinear_case("bilinear_down"); bilinear_case("bilinear_x4"); }

static void test_linear(void **s) {
    (void)s;
    const FxRec *rx = fx_get(fx, "linear/x"), *rw = fx_get(fx, "linear/w");
    int B = rx->dims[0], I = rx->dims[1], K = rw->dims[0];
    float *x = fx_f32(fx, "linear/x", NULL), *w = fx_f32(fx, "linear/w", NULL), *b = fx_f32(fx, "linear/b", NULL);
    float *dy = fx_f32(fx, "linear/dy", NULL), *y = zeros((size_t)B * K), *dx = zeros(rx->n), *dw = zeros(rw->n), *db = zeros(K);
    O->linear_forward(B, I, K, y, x, w, b); expect("linear/y", y);
    O->linear_backward(B, I, K, dx, dw, db, dy, x, w);
    expect("linear/dx", dx); expect("linear/dw", dw); expect("linear/db", db);
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db);
}

static void xent_case(const char *name) {
    char k[64];
    snprintf(k, sizeof k, "%s/logits", name); const FxRec *rl = fx_get(fx, k);
    int B = rl->dims[0], C = rl->dims[1], HW = rl->ndim == 4 ? rl->dims[2] * rl->dims[3] : 1;
    float *lg = fx_f32(fx, k, NULL), *dl = zeros(rl->n);
    snprintf(k, sizeof k, "%s/labels", name);
    const int32_t *lab = (const int32_t *)fx_get(fx, k)->data;
    long cnt;
    float loss = (float)O->softmax_xent(B, C, HW, dl, lg, lab, 255, 1.f, &cnt);
    snprintf(k, sizeof k, "%s/loss", name); expect(k, &loss);
    snprintf(k, sizeof k, "%s/dlogits", name); expect(k, dl);
    free(lg); free(dl);
}
static void test_softmax_xent(void **s) { (void)s; xent_case("xent_seg"); xent_case("xent_cls"); }

// ---- ops_mobile.bin: the ops of MobileNetV2 / ShuffleNetV2 / DenseNet

static void test_mobile_convs(void **s) {
    (void)s;
    const char *names[] = {"dw_s1", "dw_s2", "dw_dil2", "grouped"};
    for (int t = 0; t < 4; t++) {
        const char *name = names[t];
        char k[64];
        snprintf(k, sizeof k, "%s/cfg", name);
        const int32_t *c = (const int32_t *)fx_get(fx, k)->data;
        int B = c[0], cin = c[1], cout = c[2], h = c[3], w = c[4], ks = c[5], st = c[6], p = c[7], dil = c[8], bias = c[9], g = c[10];
        ConvDesc d;
        assert_int_equal(ops_conv2d_desc_grouped(&d, cin, cout, h, w, ks, st, p, dil, g), 0);
        #define GET(field) (snprintf(k, sizeof k, "%s/" field, name), fx_f32(fx, k, NULL))
        float *x = GET("x"), *wt = GET("w"), *dy = GET("dy"), *b = bias ? GET("b") : NULL;
        size_t ny = (size_t)B * cout * d.oh * d.ow, nx = (size_t)B * cin * h * w, nw = (size_t)cout * (cin / g) * ks * ks;
        float *y = zeros(ny), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(cout), *ws = zeros(O->conv2d_workspace(&d, B));
        O->conv2d_forward(&d, B, y, x, wt, b, ws);
        snprintf(k, sizeof k, "%s/y", name); expect(k, y);
        O->conv2d_backward(&d, B, dx, dw, bias ? db : NULL, dy, x, wt, ws, 0);
        snprintf(k, sizeof k, "%s/dx", name); expect(k, dx);
        snprintf(k, sizeof k, "%s/dw", name); expect(k, dw);
        if (bias) { snprintf(k, sizeof k, "%s/db", name); expect(k, db); }
        #undef GET
        free(x); free(wt); free(dy); free(b); free(y); free(dx); free(dw); free(db); free(ws);
    }
}

static void test_mobile_relu6(void **s) {
    (void)s;
    const FxRec *rx = fx_get(fx, "relu6/x");
    float *x = fx_f32(fx, "relu6/x", NULL), *dy = fx_f32(fx, "relu6/dy", NULL), *y = zeros(rx->n), *dx = zeros(rx->n);
    O->relu6_forward(rx->n, y, x); expect("relu6/y", y);
    O->relu6_backward(rx->n, dx, dy, y); expect("relu6/dx", dx);
    free(x); free(dy); free(y); free(dx);
    rx = fx_get(fx, "bn_relu6/x");
    int B = rx->dims[0], C = rx->dims[1], HW = rx->dims[2] * rx->dims[3];
    x = fx_f32(fx, "bn_relu6/x", NULL); dy = fx_f32(fx, "bn_relu6/dy", NULL);
    float *g = fx_f32(fx, "bn_relu6/gamma", NULL), *be = fx_f32(fx, "bn_relu6/beta", NULL);
    float *rm = zeros(C), *rv = zeros(C), *mean = zeros(C), *is = zeros(C), *dg = zeros(C), *db = zeros(C), nb = 0;
    y = zeros(rx->n); dx = zeros(rx->n);
    O->batchnorm_forward(B, C, HW, y, mean, is, x, g, be, rm, rv, &nb, 1, 2, NULL); expect("bn_relu6/y", y);
    O->batchnorm_backward(B, C, HW, dx, dg, db, dy, x, y, mean, is, g, 2, NULL);
    expect("bn_relu6/dx", dx); expect("bn_relu6/dgamma", dg); expect("bn_relu6/dbeta", db);
    free(x); free(dy); free(g); free(be); free(rm); free(rv); free(mean); free(is); free(dg); free(db); free(y); free(dx);
}

// ShuffleNetV2's unit: split (channel_copy), concat (channel_copy into one buffer), shuffle; and back
static void test_mobile_shuffle_unit(void **s) {
    (void)s;
    const FxRec *rx = fx_get(fx, "shuffle_unit/x");
    int B = rx->dims[0], C = rx->dims[1], HW = rx->dims[2] * rx->dims[3], h = C / 2;
    float *x = fx_f32(fx, "shuffle_unit/x", NULL), *dy = fx_f32(fx, "shuffle_unit/dy", NULL);
    float *x2 = zeros((size_t)B * h * HW), *cat = zeros(rx->n), *y = zeros(rx->n), *dcat = zeros(rx->n), *dx = zeros(rx->n);
    O->channel_copy(B, HW, h, x2, h, 0, x, C, h, 0);               // x2 = second half
    for (size_t i = 0; i < (size_t)B * h * HW; i++) x2[i] *= 3;    // the branch: f(x2) = 3 x2
    O->channel_copy(B, HW, h, cat, C, 0, x, C, 0, 0);              // cat = [x1, f(x2)]
    O->channel_copy(B, HW, h, cat, C, h, x2, h, 0, 0);
    O->channel_shuffle(B, C, 2, HW, y, cat);
    expect("shuffle_unit/y", y);
    O->channel_shuffle(B, C, C / 2, HW, dcat, dy);                 // backward of the shuffle
    O->channel_copy(B, HW, h, dx, C, 0, dcat, C, 0, 0);            // d x1
    for (size_t n = 0; n < (size_t)B; n++)                          // d x2 = 3 * d f(x2)
        for (size_t i = 0; i < (size_t)h * HW; i++) dx[(n * C + h) * HW + i] = 3 * dcat[(n * C + h) * HW + i];
    expect("shuffle_unit/dx", dx);
    free(x); free(dy); free(x2); free(cat); free(y); free(dcat); free(dx);
}

static void test_mobile_avgpool2x2(void **s) {
    (void)s;
    const FxRec *rx = fx_get(fx, "avgpool2x2/x");
    int B = rx->dims[0], C = rx->dims[1], H = rx->dims[2], W = rx->dims[3];
    float *x = fx_f32(fx, "avgpool2x2/x", NULL), *dy = fx_f32(fx, "avgpool2x2/dy", NULL);
    float *y = zeros((size_t)B * C * (H / 2) * (W / 2)), *dx = zeros(rx->n);
    O->avgpool2x2_forward(B, C, H, W, y, x); expect("avgpool2x2/y", y);
    O->avgpool2x2_backward(B, C, H, W, dx, dy); expect("avgpool2x2/dx", dx);
    free(x); free(dy); free(y); free(dx);
}

static int setup(void **s) { (void)s; fx = fx_load("ops.bin"); return 0; }
static int teardown(void **s) { (void)s; fx_free(fx); return 0; }
static int setup_mobile(void **s) { (void)s; fx = fx_load("ops_mobile.bin"); return 0; }

int main(void) {
    O = ops_cpu();
    O->set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d), cmocka_unit_test(test_convt2x2), cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_maxpool), cmocka_unit_test(test_avgpool), cmocka_unit_test(test_bilinear),
        cmocka_unit_test(test_linear), cmocka_unit_test(test_softmax_xent),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    const struct CMUnitTest mobile[] = {
        cmocka_unit_test(test_mobile_convs), cmocka_unit_test(test_mobile_relu6),
        cmocka_unit_test(test_mobile_shuffle_unit), cmocka_unit_test(test_mobile_avgpool2x2),
    };
    rc |= cmocka_run_group_tests_name("ops_mobile", mobile, setup_mobile, teardown);
    O->set_threads(1);
    return rc;
}
