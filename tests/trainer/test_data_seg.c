// tests/trainer/test_data_seg.c — ade20k:/cityscapes: readers on the generated sets, their bad-input
// errors, the crop pipeline (resizes against PyTorch, crop, flip, padding, cat_max_ratio) and the
// evaluation at each image's resolution (whole and slide) against per-window forwards of the unet.
#include "test_ops_common.h"   // defines: fx_load, fx_f64 (PyTorch fixtures), cmocka

#include <sys/stat.h>
#include <unistd.h>

#include "trainer/data/data.h"
#include "trainer/data/pipeline.h"
#include "trainer/evaluate.h"
#include "trainer/models/model.h"
#include "trainer/ops/ops.h"

static char tmp[256], ade[300], csdir[300];

static int sh(const char *fmt, const char *a, const char *b) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/segx-test-dataseg.XXXXXX");
    if (!mkdtemp(tmp)) return -1;
    snprintf(ade, sizeof ade, "%s/ade", tmp);
    snprintf(csdir, sizeof csdir, "%s/cs", tmp);
    char err[1024], spec[400];
    snprintf(spec, sizeof spec, "ade20k:%s", ade);
    if (data_make_dataset(spec, NULL, err, sizeof err) != 64) { fprintf(stderr, "%s\n", err); return -1; }
    snprintf(spec, sizeof spec, "cityscapes:%s", csdir);
    if (data_make_dataset(spec, NULL, err, sizeof err) != 64) { fprintf(stderr, "%s\n", err); return -1; }
    return 0;
}
static int teardown(void **state) {
    (void)state;
    return sh("rm -rf '%s'%s", tmp, "");
}

static Dataset *open_ok(const char *kind, const char *root, DataSplit split, int verify) {
    char spec[1024], err[2048];
    snprintf(spec, sizeof spec, "%s:%s", kind, root);
    DataOptions o = { .verify = verify };
    Dataset *ds = NULL;
    int rc = dataset_open(spec, split, &o, &ds, err, sizeof err);
    if (rc) fprintf(stderr, "# %s\n", err);
    assert_int_equal(rc, 0);
    return ds;
}

// Opening fails (or, with get_i >= 0, reading sample get_i fails) with a message holding want1 and want2.
static void open_fails(const char *kind, const char *root, DataSplit split, int verify, long get_i, const char *want1,
                       const char *want2) {
    char spec[1024], err[2048] = "";
    snprintf(spec, sizeof spec, "%s:%s", kind, root);
    DataOptions o = { .verify = verify };
    Dataset *ds = NULL;
    int rc = dataset_open(spec, split, &o, &ds, err, sizeof err);
    if (get_i >= 0) {
        assert_int_equal(rc, 0);
        Sample s = { 0 };
        rc = dataset_get_sample(ds, get_i, &s, err, sizeof err);
        sample_free(&s);
        dataset_free(ds);
    }
    printf("# %s\n", err);
    assert_int_not_equal(rc, 0);
    if (!strstr(err, want1) || (want2 && !strstr(err, want2))) fail_msg("error '%s' lacks '%s' / '%s'", err, want1, want2 ? want2 : "");
}

// A copy of the generated ADE20K set to break.
static void copy_ade(char *dst, size_t n, const char *name) {
    snprintf(dst, n, "%s/%s", tmp, name);
    assert_int_equal(sh("rm -rf '%s'%s", dst, ""), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", ade, dst);
    assert_int_equal(system(cmd), 0);
}

// ---------------------------------------------------------------------------------------------

static void test_ade_generated(void **state) {
    (void)state;
    Dataset *tr = open_ok("ade20k", ade, SPLIT_TRAIN, 1), *te = open_ok("ade20k", ade, SPLIT_TEST, 0);
    assert_int_equal(tr->n, 48);
    assert_int_equal(te->n, 16);
    assert_int_equal(tr->classes, 150);
    assert_int_equal(tr->height, 0);   // any size
    Sample s = { 0 };
    char err[1024];
    int sizes_differ = 0, h0 = -1, w0 = -1;
    long hist[256] = { 0 };
    for (long i = 0; i < tr->n; i++) {
        assert_int_equal(dataset_get_sample(tr, i, &s, err, sizeof err), 0);
        assert_int_equal(s.c, 3);
        assert_true(s.h >= 48 && s.h < 112 && s.w >= 64 && s.w < 192);
        if (h0 < 0) { h0 = s.h; w0 = s.w; }
        sizes_differ |= s.h != h0 || s.w != w0;
        for (int p = 0; p < s.h * s.w; p++) hist[s.lab[p]]++;
        // the 1-pixel frame is ADE label 0: ignored
        assert_int_equal(s.lab[0], 255);
        assert_int_equal(s.lab[(size_t)s.h * s.w - 1], 255);
    }
    assert_true(sizes_differ);
    // label 1 (background) -> class 0, items 2..11 -> 1..10, nothing else
    for (int v = 11; v < 255; v++) assert_int_equal(hist[v], 0);
    assert_true(hist[0] > hist[1] && hist[1] + hist[5] > 0);
    sample_free(&s);
    dataset_free(tr);
    dataset_free(te);
}

// The generator is deterministic: a second run writes the same bytes.
static void test_make_deterministic(void **state) {
    (void)state;
    char again[400], spec[420], err[1024];
    snprintf(again, sizeof again, "%s/ade-again", tmp);
    snprintf(spec, sizeof spec, "ade20k:%s", again);
    assert_int_equal(data_make_dataset(spec, NULL, err, sizeof err), 64);
    assert_int_equal(sh("diff -r '%s' '%s' >/dev/null", ade, again), 0);
    assert_int_equal(data_make_dataset("coco:/tmp/x", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "ade20k:DIR or cityscapes:DIR"));
}

// cityscapesScripts' labels.py, written out for the ids the generator uses (an independent copy).
static int train_id(int id) {
    switch (id) {
    case 7: return 0;  case 8: return 1;  case 11: return 2; case 12: return 3; case 13: return 4;
    case 17: return 5; case 19: return 6; case 20: return 7; case 21: return 8; case 23: return 10;
    case 24: return 11; default: return 255;
    }
}

static void test_cityscapes_label_ids(void **state) {
    (void)state;
    Dataset *tr = open_ok("cityscapes", csdir, SPLIT_TRAIN, 0), *te = open_ok("cityscapes", csdir, SPLIT_TEST, 1);
    assert_int_equal(tr->n, 48);
    assert_int_equal(te->n, 16);
    assert_int_equal(tr->classes, 19);
    Sample s = { 0 };
    char err[1024], path[1024];
    // train: read through *_labelTrainIds.png; the *_labelIds.png beside it, mapped by the table above, agrees
    for (long i = 0; i < 4; i++) {
        assert_int_equal(dataset_get_sample(tr, i, &s, err, sizeof err), 0);
        // sorted by city, then name: aachen holds the even samples 0, 2, 4, ...
        snprintf(path, sizeof path, "%s/gtFine/train/aachen/aachen_%06ld_000019_gtFine_labelIds.png", csdir, 2 * i);
        uint8_t *ids;
        int w, h, c;
        assert_int_equal(png_read_u8(path, 1, &ids, &w, &h, &c, err, sizeof err), 0);
        assert_int_equal(w, s.w);
        assert_int_equal(h, s.h);
        for (int p = 0; p < w * h; p++) assert_int_equal(s.lab[p], train_id(ids[p]));
        free(ids);
    }
    // val has only *_labelIds.png: mapped on reading
    long road = 0;
    for (long i = 0; i < te->n; i++) {
        assert_int_equal(dataset_get_sample(te, i, &s, err, sizeof err), 0);
        for (int p = 0; p < s.h * s.w; p++) {
            assert_true(s.lab[p] < 19 || s.lab[p] == 255);
            road += s.lab[p] == 0;
        }
    }
    assert_true(road > 0);
    sample_free(&s);
    dataset_free(tr);
    dataset_free(te);
}

// ---------------------------------------------------------------------------------------------
// bad input: every error names the file and what is wrong

static void test_bad_layouts(void **state) {
    (void)state;
    char d[400], cmd[1200];
    copy_ade(d, sizeof d, "nosplit");
    snprintf(cmd, sizeof cmd, "rm -r '%s/annotations/validation'", d);
    assert_int_equal(system(cmd), 0);
    open_fails("ade20k", d, SPLIT_TEST, 0, -1, "missing split folder", "annotations/validation");
    open_fails("cityscapes", ade, SPLIT_TRAIN, 0, -1, "missing split folder", "leftImg8bit/train");

    copy_ade(d, sizeof d, "nomask");
    snprintf(cmd, sizeof cmd, "rm '%s/annotations/training/ADE_train_00000007.png'", d);
    assert_int_equal(system(cmd), 0);
    open_fails("ade20k", d, SPLIT_TRAIN, 0, -1, "ADE_train_00000007.jpg: image without its annotation", NULL);

    copy_ade(d, sizeof d, "size");   // a label map of another size than its image
    char mp[600], err[1024];
    snprintf(mp, sizeof mp, "%s/annotations/training/ADE_train_00000003.png", d);
    uint8_t small[12] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    assert_int_equal(png_write_u8(mp, small, 4, 3, 1, err, sizeof err), 0);
    open_fails("ade20k", d, SPLIT_TRAIN, 0, -1, "ADE_train_00000003.png: label map is 4x3 but its image", NULL);
}

static void test_corrupt_files(void **state) {
    (void)state;
    char d[400], cmd[1200], p[600], err[1024];
    copy_ade(d, sizeof d, "trunc");   // a JPEG cut in half: header fine, data short
    snprintf(p, sizeof p, "%s/images/training/ADE_train_00000005.jpg", d);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size / 2), 0);
    open_fails("ade20k", d, SPLIT_TRAIN, 0, 4, "ADE_train_00000005.jpg: bad JPEG", NULL);   // in the loader
    open_fails("ade20k", d, SPLIT_TRAIN, 1, -1, "ADE_train_00000005.jpg: bad JPEG", NULL);  // up front (--check-data)

    copy_ade(d, sizeof d, "garbage");   // not an image at all: found by the header scan at open
    snprintf(cmd, sizeof cmd, "head -c 300 /dev/zero > '%s/images/training/ADE_train_00000002.jpg'", d);
    assert_int_equal(system(cmd), 0);
    open_fails("ade20k", d, SPLIT_TRAIN, 0, -1, "ADE_train_00000002.jpg: neither a JPEG nor a PNG", NULL);

    copy_ade(d, sizeof d, "badpng");   // a label map with a broken body
    snprintf(p, sizeof p, "%s/annotations/training/ADE_train_00000009.png", d);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size - 20), 0);
    open_fails("ade20k", d, SPLIT_TRAIN, 1, -1, "ADE_train_00000009.png: bad PNG", NULL);

    copy_ade(d, sizeof d, "label");   // label 200 is not an ADE20K class
    snprintf(p, sizeof p, "%s/annotations/training/ADE_train_00000004.png", d);
    uint8_t *lab;
    int w, h, c;
    assert_int_equal(png_read_u8(p, 1, &lab, &w, &h, &c, err, sizeof err), 0);
    lab[2 * w + 5] = 200;
    assert_int_equal(png_write_u8(p, lab, w, h, 1, err, sizeof err), 0);
    free(lab);
    open_fails("ade20k", d, SPLIT_TRAIN, 0, 3, "ADE_train_00000004.png: label 200 at pixel (5, 2)", "1..150");
    open_fails("ade20k", d, SPLIT_TRAIN, 1, -1, "ADE_train_00000004.png: label 200", NULL);
}

// ---------------------------------------------------------------------------------------------
// pipeline

static void test_resize_vs_torch(void **state) {
    (void)state;
    static const int cases[][5] = { { 3, 5, 7, 11, 3 }, { 3, 8, 8, 3, 5 }, { 1, 4, 6, 9, 13 }, { 3, 17, 23, 30, 19 },
                                    { 3, 32, 24, 21, 16 } };
    Fx *fx = fx_load("resize_u8.bin");
    for (int k = 0; k < 5; k++) {
        int c = cases[k][0], h = cases[k][1], w = cases[k][2], oh = cases[k][3], ow = cases[k][4];
        char name[64];
        size_t n, nb, nn;
        snprintf(name, sizeof name, "case%d.in", k);
        double *in = fx_f64(fx, name, &n);
        snprintf(name, sizeof name, "case%d.bilinear", k);
        double *bil = fx_f64(fx, name, &nb);
        snprintf(name, sizeof name, "case%d.nearest", k);
        double *near = fx_f64(fx, name, &nn);
        assert_int_equal(n, (size_t)c * h * w);
        assert_int_equal(nb, (size_t)c * oh * ow);
        uint8_t *src = malloc(n), *dst = malloc(nb), *lab = malloc((size_t)oh * ow);
        for (size_t i = 0; i < n; i++) src[i] = (uint8_t)in[i];
        resize_bilinear_u8(src, c, h, w, dst, oh, ow);
        for (size_t i = 0; i < nb; i++)   // PyTorch's float result, rounded to the nearest byte
            if (fabs(dst[i] - bil[i]) > 0.5 + 1e-4) fail_msg("case %d bilinear [%zu]: got %d want %.4f", k, i, dst[i], bil[i]);
        resize_nearest_u8(src, h, w, lab, oh, ow);   // channel 0
        for (size_t i = 0; i < (size_t)oh * ow; i++) assert_int_equal(lab[i], (int)near[i]);
        free(src); free(dst); free(lab); free(in); free(bil); free(near);
    }
    fx_free(fx);
}

// mmseg's keep-ratio rescale (mmcv.rescale_size), worked by hand: 500x375 to (2048, 512) -> 683x512.
static void test_keep_ratio(void **state) {
    (void)state;
    int oh, ow;
    pipeline_keep_ratio_size(375, 500, 2048, 512, &oh, &ow);
    assert_int_equal(oh, 512);
    assert_int_equal(ow, 683);
    pipeline_keep_ratio_size(1024, 2048, 2048, 512, &oh, &ow);   // Cityscapes at ratio 1: the long side limits
    assert_int_equal(oh, 512);
    assert_int_equal(ow, 1024);
    pipeline_keep_ratio_size(100, 50, 1024, 256, &oh, &ow);      // portrait: short side to 256
    assert_int_equal(oh, 512);
    assert_int_equal(ow, 256);
}

// Without a resize, a crop the size of the image is the image (maybe mirrored), normalised; a crop
// larger than the image is padded with 0 (image) and 255 (labels) at the bottom and right.
static void test_crop_flip_pad(void **state) {
    (void)state;
    int h = 12, w = 20;
    Sample s = { 0 };
    assert_int_equal(sample_reserve(&s, 3, h, w), 0);
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) s.img[(k * h + y) * w + x] = (uint8_t)(x * 10 + k);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) s.lab[y * w + x] = (uint8_t)(x % 7);
    Pipeline p = { .crop_h = h, .crop_w = w, .cat_max_ratio = 1, .flip = 1,
                   .mean = { 1, 2, 3 }, .std = { 2, 4, 8 } };
    float *x = malloc(sizeof(float) * 3 * 16 * 24);
    int32_t *yl = malloc(sizeof(int32_t) * 16 * 24);
    PipeScratch ws = { 0 };
    int flips = 0;
    for (uint64_t key = 1; key <= 64; key++) {
        assert_int_equal(pipeline_train(&p, &s, key, x, yl, &ws), 0);
        int f = x[0] != (0 - 1) / 2.0f;   // column 0 holds value 0 unless mirrored
        flips += f;
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < w; xx++) {
                    int sx = f ? w - 1 - xx : xx;
                    assert_float_equal(x[(k * h + y) * w + xx], (sx * 10 + k - p.mean[k]) / p.std[k], 1e-5);
                    assert_int_equal(yl[y * w + xx], sx % 7);
                }
    }
    assert_true(flips > 16 && flips < 48);   // p = 0.5 over 64 keys
    p.crop_h = 16; p.crop_w = 24; p.flip = 0;
    assert_int_equal(pipeline_train(&p, &s, 7, x, yl, &ws), 0);
    for (int y = 0; y < 16; y++)
        for (int xx = 0; xx < 24; xx++) {
            int in = y < h && xx < w;
            assert_int_equal(yl[y * 24 + xx], in ? xx % 7 : 255);
            if (!in) assert_float_equal(x[(2 * 16 + y) * 24 + xx], 0.0f, 0);
        }
    // the same key gives the same crop: batches do not depend on thread timing
    float *x2 = malloc(sizeof(float) * 3 * 16 * 24);
    int32_t *y2 = malloc(sizeof(int32_t) * 16 * 24);
    p.scale_w = 40; p.scale_h = 30; p.ratio_min = 0.5; p.ratio_max = 2.0; p.photometric = 1; p.flip = 1;
    p.crop_h = 10; p.crop_w = 10;
    assert_int_equal(pipeline_train(&p, &s, 99, x, yl, &ws), 0);
    assert_int_equal(pipeline_train(&p, &s, 99, x2, y2, &ws), 0);
    assert_memory_equal(x, x2, sizeof(float) * 3 * 100);
    assert_memory_equal(yl, y2, sizeof(int32_t) * 100);
    free(x); free(yl); free(x2); free(y2);
    pipeline_scratch_free(&ws);
    sample_free(&s);
}

// PhotoMetricDistortion draws after the crop and flip: the same key gives the same crop and labels
// with it on or off; the image changes for most keys and stays within bytes.
static void test_photometric(void **state) {
    (void)state;
    int h = 24, w = 24;
    Sample s = { 0 };
    assert_int_equal(sample_reserve(&s, 3, h, w), 0);
    for (int i = 0; i < 3 * h * w; i++) s.img[i] = (uint8_t)(40 + (i * 13) % 160);
    for (int i = 0; i < h * w; i++) s.lab[i] = (uint8_t)(i % 5);
    Pipeline p = { .crop_h = 16, .crop_w = 16, .cat_max_ratio = 0.75, .flip = 1, .std = { 1, 1, 1 } };
    float a[3 * 256], b[3 * 256];
    int32_t la[256], lb[256];
    PipeScratch ws = { 0 };
    int changed = 0;
    for (uint64_t key = 0; key < 32; key++) {
        p.photometric = 0;
        assert_int_equal(pipeline_train(&p, &s, key, a, la, &ws), 0);
        p.photometric = 1;
        assert_int_equal(pipeline_train(&p, &s, key, b, lb, &ws), 0);
        assert_memory_equal(la, lb, sizeof la);
        int diff = 0;
        for (int i = 0; i < 3 * 256; i++) {
            assert_true(b[i] >= 0 && b[i] <= 255 && b[i] == floorf(b[i]));   // std 1, mean 0: the bytes
            diff |= a[i] != b[i];
        }
        changed += diff;
    }
    printf("# photometric changed %d of 32 crops\n", changed);
    assert_true(changed >= 24);   // each of its 4 parts fires with p = 0.5: all skip with p = 1/16
    pipeline_scratch_free(&ws);
    sample_free(&s);
}

// cat_max_ratio: on a map whose left half is class 0 and right half class 1 (64 wide, crop 16),
// 7 of the 49 crop offsets hold both classes with neither above 75 %; up to 10 redraws find one
// about 1 - (6/7)^10 = 79 % of the time, against 14 % without redraws.
static void test_cat_max_ratio(void **state) {
    (void)state;
    int h = 16, w = 64;
    uint8_t lab[16 * 64];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) lab[y * w + x] = x < 32 ? 0 : 1;
    Pipeline p = { .crop_h = 16, .crop_w = 16, .cat_max_ratio = 0.75 };
    int good[2] = { 0, 0 };
    for (int on = 0; on < 2; on++) {
        p.cat_max_ratio = on ? 0.75 : 1.0;
        for (uint64_t k = 0; k < 400; k++) {
            uint64_t rng = data_splitmix64(k);
            int y0, x0;
            pipeline_pick_crop(&p, lab, h, w, &rng, &y0, &x0);
            assert_int_equal(y0, 0);
            assert_true(x0 >= 0 && x0 <= 48);
            good[on] += x0 >= 21 && x0 <= 27;
        }
    }
    printf("# crops with both classes under 75%%: %d/400 without redraws, %d/400 with\n", good[0], good[1]);
    assert_true(good[0] < 100);
    assert_true(good[1] > 260);
}

// ---------------------------------------------------------------------------------------------
// evaluation at each image's resolution

static Model *small_unet(int classes, int size, int batch) {
    ModelConfig mc = { .name = "unet", .in_channels = 3, .classes = classes, .height = size, .width = size,
                       .base_width = 4, .batch_norm = 1, .max_batch = batch };
    Model *m;
    char err[512];
    if (model_create(&mc, &m, err, sizeof err)) fail_msg("model_create: %s", err);
    model_init(m, 3);
    return m;
}

static void fill_sample(Sample *s, int h, int w, uint64_t seed) {
    assert_int_equal(sample_reserve(s, 3, h, w), 0);
    for (int i = 0; i < 3 * h * w; i++) s->img[i] = (uint8_t)(data_splitmix64(seed + i) & 255);
    for (int i = 0; i < h * w; i++) s->lab[i] = (uint8_t)(data_splitmix64(seed ^ 0xABC ^ i) % 4);
}

// Logits of the crop_h x crop_w window at (y1, x1) of normalised image xn (3, H, W), zero-padded.
static void window_logits(Model *m, const float *xn, int H, int W, int y1, int x1, int cs, int K, float *out) {
    float *in = calloc((size_t)3 * cs * cs, sizeof(float));
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < cs && y1 + y < H; y++)
            for (int x = 0; x < cs && x1 + x < W; x++) in[(k * cs + y) * cs + x] = xn[((size_t)k * H + y1 + y) * W + x1 + x];
    memcpy(out, model_forward(m, in, 1, 0), sizeof(float) * K * cs * cs);
    free(in);
}

static void test_slide_eval(void **state) {
    (void)state;
    int K = 4, cs = 16, H = 20, W = 40;
    Model *m = small_unet(K, cs, 3);
    Pipeline norm = { .mean = { 100, 110, 120 }, .std = { 50, 60, 70 } };
    SegEvalConfig c = { .slide = 1, .crop_h = cs, .crop_w = cs, .stride_h = 12, .stride_w = 12, .classes = K,
                        .max_batch = 3, .norm = &norm };
    Sample s = { 0 };
    fill_sample(&s, H, W, 5);
    float *xn = malloc(sizeof(float) * 3 * H * W), *got = malloc(sizeof(float) * K * H * W);
    float *want = calloc((size_t)K * H * W, sizeof(float)), *win = malloc(sizeof(float) * K * cs * cs);
    int *cnt = calloc((size_t)H * W, sizeof(int));
    pipeline_normalize(&norm, s.img, 3, H, W, xn);
    SegEvalWs ws = { 0 };
    assert_int_equal(seg_infer(m, &c, &s, got, &ws), 0);
    // mmseg's grid for H 20, W 40, crop 16, stride 12: rows at 0 and 4 (flush with the bottom), columns 0, 12, 24
    int ys[2] = { 0, 4 }, xs[3] = { 0, 12, 24 };
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) {
            window_logits(m, xn, H, W, ys[a], xs[b], cs, K, win);
            for (int k = 0; k < K; k++)
                for (int y = 0; y < cs; y++)
                    for (int x = 0; x < cs; x++) want[((size_t)k * H + ys[a] + y) * W + xs[b] + x] += win[(k * cs + y) * cs + x];
            for (int y = 0; y < cs; y++)
                for (int x = 0; x < cs; x++) cnt[(ys[a] + y) * W + xs[b] + x]++;
        }
    double *ref = malloc(sizeof(double) * K * H * W);
    for (int k = 0; k < K; k++)
        for (int p = 0; p < H * W; p++) ref[k * H * W + p] = want[k * H * W + p] / cnt[p];
    assert_int_equal(check_close("slide", got, ref, (size_t)K * H * W, 1e-5, 1e-4), 0);

    // an image smaller than the window: one zero-padded window, its top-left logits
    Sample t = { 0 };
    fill_sample(&t, 10, 12, 9);
    pipeline_normalize(&norm, t.img, 3, 10, 12, xn);
    assert_int_equal(seg_infer(m, &c, &t, got, &ws), 0);
    window_logits(m, xn, 10, 12, 0, 0, cs, K, win);
    for (int k = 0; k < K; k++)
        for (int y = 0; y < 10; y++)
            for (int x = 0; x < 12; x++) ref[(k * 10 + y) * 12 + x] = win[(k * cs + y) * cs + x];
    assert_int_equal(check_close("slide small", got, ref, (size_t)K * 120, 1e-6, 1e-5), 0);

    // whole: the image at its own resolution (no test resize): one forward of the 32x32 image on a
    // model of that size holding m's parameters and BN buffers (mmseg's whole mode)
    c.slide = 0;
    fill_sample(&t, 32, 32, 11);
    float *big = malloc(sizeof(float) * K * 32 * 32);
    assert_int_equal(seg_infer(m, &c, &t, big, &ws), 0);
    Model *m32 = small_unet(K, 32, 1);
    memcpy(model_params(m32), model_params(m), sizeof(float) * model_num_params(m));
    if (model_num_buffers(m)) memcpy(model_buffers(m32), model_buffers(m), sizeof(float) * model_num_buffers(m));
    float *x32 = malloc(sizeof(float) * 3 * 32 * 32), *up = malloc(sizeof(float) * K * 32 * 32);
    pipeline_normalize(&norm, t.img, 3, 32, 32, x32);
    window_logits(m32, x32, 32, 32, 0, 0, 32, K, up);
    double *ref2 = malloc(sizeof(double) * K * 32 * 32);
    for (int i = 0; i < K * 32 * 32; i++) ref2[i] = up[i];
    assert_int_equal(check_close("whole", big, ref2, (size_t)K * 32 * 32, 1e-6, 1e-5), 0);
    model_free(m32);
    free(x32);

    // seg_eval_images: the confusion matrix counts every labelled pixel of every image once
    ConfMat cm;
    assert_int_equal(confmat_init(&cm, K), 0);
    char err[512];
    double sums[2] = { 0, 0 };
    Dataset *ds = open_ok("ade20k", ade, SPLIT_TEST, 0);
    Model *m150 = small_unet(150, 32, 2);
    SegEvalConfig c150 = { .slide = 1, .crop_h = 32, .crop_w = 32, .stride_h = 21, .stride_w = 21, .classes = 150,
                           .max_batch = 2, .norm = &norm };
    ConfMat cm150;
    assert_int_equal(confmat_init(&cm150, 150), 0);
    assert_int_equal(seg_eval_images(m150, ds, &c150, 0, 1, 3, &cm150, sums, err, sizeof err), 0);
    long labelled = 0;
    for (long i = 0; i < 3; i++) {
        assert_int_equal(dataset_get_sample(ds, i, &t, err, sizeof err), 0);
        for (int p = 0; p < t.h * t.w; p++) labelled += t.lab[p] != 255;
    }
    assert_float_equal(confmat_total(&cm150), (double)labelled, 0);
    assert_float_equal(sums[1], (double)labelled, 0);
    assert_true(sums[0] / sums[1] > 0 && isfinite(sums[0]));
    confmat_free(&cm150);
    confmat_free(&cm);
    dataset_free(ds);
    model_free(m150);
    free(up); free(ref2); free(big);
    free(xn); free(got); free(want); free(win); free(cnt); free(ref);
    seg_eval_ws_free(&ws);
    sample_free(&s); sample_free(&t);
    model_free(m);
}

// The loader with the pipeline: batches of the crop size from images of mixed sizes, the same for 0
// and 3 worker threads.
static void test_loader_pipeline(void **state) {
    (void)state;
    Dataset *ds = open_ok("ade20k", ade, SPLIT_TRAIN, 0);
    Pipeline p = { .scale_w = 128, .scale_h = 64, .ratio_min = 0.5, .ratio_max = 2.0, .crop_h = 32, .crop_w = 32,
                   .cat_max_ratio = 0.75, .flip = 1, .mean = { 0, 0, 0 }, .std = { 255, 255, 255 } };
    float *x0 = NULL;
    int32_t *y0 = NULL;
    for (int workers = 0; workers <= 3; workers += 3) {
        LoaderConfig lc = { .batch = 4, .workers = workers, .rank = 0, .world = 1, .seed = 3, .shuffle = 1,
                            .drop_last = 1, .pipe = &p };
        Loader *l;
        char err[1024];
        assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), 0);
        assert_int_equal(loader_num_batches(l), 12);
        assert_int_equal(loader_begin(l, 1, 0, err, sizeof err), 0);
        const Batch *b;
        long nb = 0;
        while ((b = loader_next(l, NULL))) {
            if (nb++ != 2) continue;
            if (!x0) {
                x0 = malloc(sizeof(float) * 4 * 3 * 32 * 32);
                y0 = malloc(sizeof(int32_t) * 4 * 32 * 32);
                memcpy(x0, b->x, sizeof(float) * 4 * 3 * 32 * 32);
                memcpy(y0, b->y, sizeof(int32_t) * 4 * 32 * 32);
            } else {
                assert_memory_equal(x0, b->x, sizeof(float) * 4 * 3 * 32 * 32);
                assert_memory_equal(y0, b->y, sizeof(int32_t) * 4 * 32 * 32);
            }
            for (int i = 0; i < 4 * 32 * 32; i++) assert_true((b->y[i] >= 0 && b->y[i] <= 10) || b->y[i] == 255);
        }
        assert_string_equal(loader_error(l), "");
        assert_int_equal(nb, 12);
        loader_free(l);
    }
    // without the pipeline, a set of mixed sizes is refused with what to do
    LoaderConfig lc = { .batch = 4, .workers = 0, .rank = 0, .world = 1, .drop_last = 1 };
    Loader *l;
    char err[1024];
    assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "--crop"));
    free(x0); free(y0);
    dataset_free(ds);
}

// segfolder:DIR keeps its layout and, with the pipeline, takes images of mixed sizes too.
static void test_segfolder_mixed(void **state) {
    (void)state;
    char d[400], sub[500], p[600], err[1024];
    snprintf(d, sizeof d, "%s/segfolder", tmp);
    for (int k = 0; k < 2; k++) {
        snprintf(sub, sizeof sub, "%s/%s", d, k ? "masks" : "images");
        assert_int_equal(sh("mkdir -p '%s'%s", sub, ""), 0);
    }
    for (int i = 0; i < 4; i++) {
        int h = 20 + 6 * i, w = 30 - 2 * i;
        uint8_t *img = malloc((size_t)3 * h * w), *lab = malloc((size_t)h * w);
        for (int q = 0; q < 3 * h * w; q++) img[q] = (uint8_t)(q * 7 + i);
        for (int q = 0; q < h * w; q++) lab[q] = (uint8_t)((q / w + i) % 3);
        snprintf(p, sizeof p, "%s/images/%03d.png", d, i);
        assert_int_equal(png_write_u8(p, img, w, h, 3, err, sizeof err), 0);
        snprintf(p, sizeof p, "%s/masks/%03d.png", d, i);
        assert_int_equal(png_write_u8(p, lab, w, h, 1, err, sizeof err), 0);
        free(img); free(lab);
    }
    Dataset *ds = open_ok("segfolder", d, SPLIT_TRAIN, 0);
    assert_int_equal(ds->n, 4);
    assert_int_equal(ds->classes, 3);
    Sample s = { 0 };
    assert_int_equal(dataset_get_sample(ds, 3, &s, err, sizeof err), 0);
    assert_int_equal(s.h, 38);
    assert_int_equal(s.w, 24);
    assert_int_equal(s.lab[5 * 24], (5 + 3) % 3);
    Pipeline pp = { .crop_h = 16, .crop_w = 16, .cat_max_ratio = 1, .flip = 1, .std = { 255, 255, 255 } };
    LoaderConfig lc = { .batch = 2, .workers = 1, .rank = 0, .world = 1, .drop_last = 1, .pipe = &pp };
    Loader *l;
    assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), 0);
    assert_int_equal(loader_begin(l, 0, 0, err, sizeof err), 0);
    long n = 0;
    while (loader_next(l, NULL)) n++;
    assert_string_equal(loader_error(l), "");
    assert_int_equal(n, 2);
    loader_free(l);
    // without the pipeline the second image's size is an error naming it and --crop
    uint8_t img[3 * 20 * 30];
    int32_t lab[20 * 30 * 2];
    assert_int_not_equal(ds->get(ds, 1, img, lab, err, sizeof err), 0);
    assert_non_null(strstr(err, "001.png: image is 28x26x3"));
    assert_non_null(strstr(err, "--crop"));
    sample_free(&s);
    dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ade_generated),
        cmocka_unit_test(test_make_deterministic),
        cmocka_unit_test(test_cityscapes_label_ids),
        cmocka_unit_test(test_bad_layouts),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_resize_vs_torch),
        cmocka_unit_test(test_keep_ratio),
        cmocka_unit_test(test_crop_flip_pad),
        cmocka_unit_test(test_photometric),
        cmocka_unit_test(test_cat_max_ratio),
        cmocka_unit_test(test_slide_eval),
        cmocka_unit_test(test_loader_pipeline),
        cmocka_unit_test(test_segfolder_mixed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
