// tests/trainer/test_safetensors.c — trainer/io: safetensors files and a model's weights in and out.
// - round trip: save a model, load it into a differently initialised one: parameters and BN buffers
//   bit-identical; the file is what safetensors specifies (u64 header length, 8-byte aligned JSON,
//   num_batches_tracked as I64);
// - PyTorch: tests/fixtures/unet_w8.safetensors was written by PyTorch (tools/fixtures/gen_safetensors.py,
//   torch_peer.py's UNet): loaded by name, the eval-mode logits match PyTorch's within 1e-4 x max|logit|;
// - partial loads: --init-prefix and --init-skip, the matched/missing/unexpected counts;
// - bad files: truncated length, header past the end, bad JSON, offsets out of range, a tensor size that
//   does not fit its shape, dtype F16, a shape mismatch: each an error naming the file and byte offset
//   (or key and both shapes), and the model left unchanged.
#include "test_ops_common.h"
#include "trainer/io/safetensors.h"
#include "trainer/io/weights.h"
#include "trainer/models/model.h"
#include <unistd.h>

static char dir[256];

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static Model *make(const char *name, int cin, int ncls, int hw, int width) {
    ModelConfig cfg = {.name = name, .in_channels = cin, .classes = ncls, .height = hw, .width = hw,
                       .base_width = width, .batch_norm = 1, .max_batch = 2};
    Model *m = NULL; char err[256];
    if (model_create(&cfg, &m, err, sizeof err)) fail_msg("model_create(%s): %s", name, err);
    return m;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

// A file with the given JSON header (padded to 8) and `data` bytes of zeros.
static void write_st(const char *path, const char *json, size_t data) {
    size_t hl = strlen(json), pad = (8 - hl % 8) % 8, n = 8 + hl + pad + data;
    unsigned char *b = calloc(n, 1);
    uint64_t L = hl + pad;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(L >> (8 * i));
    memcpy(b + 8, json, hl);
    memset(b + 8 + hl, ' ', pad);
    write_bytes(path, b, n);
    free(b);
}

static void test_round_trip(void **s) {
    (void)s;
    char p[512], err[512];
    path_of(p, sizeof p, "rt.safetensors");
    Model *a = make("unet", 2, 5, 16, 4), *b = make("unet", 2, 5, 16, 4);
    model_init(a, 5); model_init(b, 9);
    int nb0; const ModelTensor *bt = model_buffer_tensors(a, &nb0);
    for (int i = 0; i < nb0; i++)      // running stats with fractions, num_batches_tracked an integer
        for (size_t k = 0; k < bt[i].numel; k++)
            model_buffers(a)[bt[i].offset + k] = strstr(bt[i].name, "num_batches") ? (float)(i + 3) : 0.37f * (float)k - 1;
    assert_int_equal(weights_save(a, p, err, sizeof err), 0);
    assert_true(memcmp(model_params(a), model_params(b), 4 * model_num_params(a)) != 0);
    WeightsReport r;
    if (weights_load(b, p, NULL, NULL, NULL, &r, err, sizeof err)) fail_msg("%s", err);
    int nt, nbt;
    model_tensors(a, &nt); model_buffer_tensors(a, &nbt);
    assert_int_equal(r.matched, nt + nbt);
    assert_int_equal(r.missing + r.unexpected + r.skipped, 0);
    assert_memory_equal(model_params(a), model_params(b), 4 * model_num_params(a));
    assert_memory_equal(model_buffers(a), model_buffers(b), 4 * model_num_buffers(a));
    // the file itself: aligned header, I64 counters, F32 weights with PyTorch's shapes
    StFile *f;
    if (st_open(p, &f, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(f->data_start % 8, 0);
    assert_int_equal(f->n, nt + nbt);
    const StTensor *t = st_find(f, "down.0.0.1.num_batches_tracked");
    assert_non_null(t);
    assert_string_equal(t->dtype, "I64");
    assert_int_equal(t->ndim, 0);
    t = st_find(f, "up.0.weight");
    assert_string_equal(t->dtype, "F32");
    assert_int_equal(t->ndim, 4); assert_int_equal(t->shape[0], 32); assert_int_equal(t->shape[1], 16);
    st_close(f);
    model_free(a); model_free(b);
}

// tests/fixtures/unet_w8.*: written by PyTorch; our eval logits from its weights against its logits
static void test_pytorch_unet_logits(void **s) {
    (void)s;
    char err[512], w[1024], in[1024], out[1024];
    snprintf(w, sizeof w, "%s/unet_w8.safetensors", fx_dir());
    snprintf(in, sizeof in, "%s/unet_w8.in.safetensors", fx_dir());
    snprintf(out, sizeof out, "%s/unet_w8.out.safetensors", fx_dir());
    StFile *fi, *fo;
    if (st_open(in, &fi, err, sizeof err) || st_open(out, &fo, err, sizeof err)) fail_msg("%s", err);
    const StTensor *ti = st_find(fi, "input"), *to = st_find(fo, "logits");
    assert_non_null(ti); assert_non_null(to);
    float *x = malloc(4 * ti->numel), *ref = malloc(4 * to->numel);
    assert_int_equal(st_read_f32(fi, ti, x, err, sizeof err), 0);
    assert_int_equal(st_read_f32(fo, to, ref, err, sizeof err), 0);
    Model *m = make("unet", 1, 11, 16, 8);
    WeightsReport r;
    if (weights_load(m, w, "", NULL, stdout, &r, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(r.missing + r.unexpected, 0);
    const float *y = model_forward(m, x, 2, 0);
    double mx = 0, worst = 0;
    for (size_t i = 0; i < to->numel; i++) mx = fmax(mx, fabs(ref[i]));
    for (size_t i = 0; i < to->numel; i++) worst = fmax(worst, fabs((double)y[i] - ref[i]));
    printf("# unet w8 vs PyTorch: max |diff| %.3g, max |logit| %.3g\n", worst, mx);
    assert_true(mx > 0.01);
    assert_true(worst <= 1e-4 * mx);
    // num_batches_tracked came through as an integer (the fixture sets 7)
    int nb; const ModelTensor *bt = model_buffer_tensors(m, &nb);
    for (int i = 0; i < nb; i++)
        if (strstr(bt[i].name, "num_batches_tracked")) assert_float_equal(model_buffers(m)[bt[i].offset], 7.f, 0);
    free(x); free(ref); st_close(fi); st_close(fo); model_free(m);
}

static void test_prefix_and_skip(void **s) {
    (void)s;
    char p[512], err[512];
    path_of(p, sizeof p, "cnn.safetensors");
    Model *a = make("cnn", 1, 10, 8, 0), *b = make("cnn", 1, 10, 8, 0);
    model_init(a, 1); model_init(b, 2);
    assert_int_equal(weights_save(a, p, err, sizeof err), 0);
    int nt; const ModelTensor *t = model_tensors(b, &nt);
    const ModelTensor *fc = NULL, *c0 = NULL;
    for (int i = 0; i < nt; i++) {
        if (!strcmp(t[i].name, "fc.weight")) fc = &t[i];
        if (!strcmp(t[i].name, "features.0.weight")) c0 = &t[i];
    }
    float fc_before = model_params(b)[fc->offset];
    WeightsReport r;
    // all but the classifier
    if (weights_load(b, p, NULL, "^fc\\.", stdout, &r, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(r.skipped, 2);
    assert_int_equal(r.missing, 0);
    assert_float_equal(model_params(b)[fc->offset], fc_before, 0);
    assert_float_equal(model_params(b)[c0->offset], model_params(a)[c0->offset], 0);
    // a sub-module's file: keys "0.weight" ... load into "features.0.weight" ... with the prefix
    StOut o = {.name = "0.weight", .ndim = 4, .shape = {32, 1, 3, 3}, .data = model_params(a) + c0->offset};
    float junk[4] = {1, 2, 3, 4};
    StOut two[2] = {o, {.name = "nothing.here", .ndim = 1, .shape = {4}, .data = junk}};
    path_of(p, sizeof p, "sub.safetensors");
    assert_int_equal(st_write(p, two, 2, err, sizeof err), 0);
    model_init(b, 3);
    if (weights_load(b, p, "features.", NULL, stdout, &r, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(r.matched, 1);
    assert_int_equal(r.unexpected, 1);
    int nbt; model_buffer_tensors(b, &nbt);
    assert_int_equal(r.missing, nt - 2 + nbt - 1);   // everything under features. but 0.weight (fc.* is not under it)
    assert_memory_equal(model_params(b) + c0->offset, model_params(a) + c0->offset, 4 * c0->numel);
    // nothing matches at all: an error pointing at --init-prefix
    assert_int_equal(weights_load(b, p, "backbone.", NULL, NULL, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "--init-prefix"));
    // a bad regex is named
    assert_int_equal(weights_load(b, p, NULL, "(", NULL, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "--init-skip '('"));
    model_free(a); model_free(b);
}

// Expects weights_load of PATH to fail with every needle in the message, and the model unchanged.
static void expect_bad(Model *m, const char *path, const char *n1, const char *n2) {
    char err[1024];
    size_t np = model_num_params(m);
    float *before = malloc(4 * np);
    memcpy(before, model_params(m), 4 * np);
    assert_int_equal(weights_load(m, path, NULL, NULL, NULL, NULL, err, sizeof err), -1);
    printf("# %s\n", err);
    assert_non_null(strstr(err, path));
    if (n1 && !strstr(err, n1)) fail_msg("'%s' not in: %s", n1, err);
    if (n2 && !strstr(err, n2)) fail_msg("'%s' not in: %s", n2, err);
    assert_memory_equal(before, model_params(m), 4 * np);
    free(before);
}

static void test_malformed_files(void **s) {
    (void)s;
    char p[512], err[512];
    Model *m = make("cnn", 1, 10, 8, 0);
    path_of(p, sizeof p, "bad.safetensors");
    write_bytes(p, "\x10\0\0", 3);
    expect_bad(m, p, "byte 3", "truncated");
    write_bytes(p, "\xff\0\0\0\0\0\0\0{}", 10);
    expect_bad(m, p, "byte 0", "header length 255");
    write_st(p, "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [10], \"data_offsets\": [0, 40]", 40);  // no closing brace
    expect_bad(m, p, "header JSON", "byte ");
    write_st(p, "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [10], \"data_offsets\": [0, 40]}}", 20);
    expect_bad(m, p, "'fc.bias'", "truncated?");
    write_st(p, "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [10], \"data_offsets\": [8, 40]}}", 48);
    expect_bad(m, p, "needs 40 bytes", "byte ");
    write_st(p, "{\"fc.bias\": {\"dtype\": \"F16\", \"shape\": [10], \"data_offsets\": [0, 20]}}", 24);
    expect_bad(m, p, "'fc.bias' is F16", "byte ");
    write_st(p, "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [11], \"data_offsets\": [0, 44]}}", 48);
    expect_bad(m, p, "'fc.bias' has shape (11)", "is (10)");
    write_st(p, "[1, 2]", 0);
    expect_bad(m, p, "not a JSON object", NULL);
    // a real file cut short inside its data: the error names the byte where the first missing tensor ends
    path_of(p, sizeof p, "cut.safetensors");
    assert_int_equal(weights_save(m, p, err, sizeof err), 0);
    FILE *f = fopen(p, "rb"); fseek(f, 0, SEEK_END); long n = ftell(f); fclose(f);
    assert_int_equal(truncate(p, n - 100), 0);
    expect_bad(m, p, "truncated?", "byte ");
    path_of(p, sizeof p, "does-not-exist.safetensors");
    expect_bad(m, p, "cannot open", NULL);
    model_free(m);
}

static int setup(void **s) {
    (void)s;
    snprintf(dir, sizeof dir, "/tmp/segx-test-st-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}
static int teardown(void **s) {
    (void)s;
    const char *names[] = {"rt", "cnn", "sub", "bad", "cut"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_pytorch_unet_logits),
        cmocka_unit_test(test_prefix_and_skip), cmocka_unit_test(test_malformed_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
