// tests/trainer/test_data.c — datasets, corrupt-input errors, export round trip, loader sharding.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "trainer/data/data.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[256];

static int setup_tmp(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-test-data.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}
static int teardown_tmp(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static void sha256_hex(const char *split_name, DataSplit split, const char *expect) {
    DataOptions o = { 0 };
    Dataset *ds;
    char err[1024];
    int rc = dataset_open("fashion-mnist-seg", split, &o, &ds, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(ds->n, split == SPLIT_TRAIN ? 15000 : 2500);
    assert_int_equal(ds->classes, 11);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    uint8_t img[4096], lab8[4096];
    int32_t lab[4096];
    for (long c = 0; c < 100; c++) {
        assert_int_equal(ds->get(ds, c, img, lab, err, sizeof err), 0);
        for (int p = 0; p < 4096; p++) lab8[p] = (uint8_t)lab[p];
        EVP_DigestUpdate(ctx, img, 4096);
        EVP_DigestUpdate(ctx, lab8, 4096);
    }
    unsigned char md[32];
    unsigned len;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    char hex[65];
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    if (strcmp(hex, expect)) fprintf(stderr, "%s: sha256 %s, want %s\n", split_name, hex, expect);
    assert_string_equal(hex, expect);
    dataset_free(ds);
}

// Checksums stated in issue #3 (and printed by /work/shared/bench/fmseg_torch.py checksum).
static void test_fmseg_checksums(void **state) {
    (void)state;
    sha256_hex("train", SPLIT_TRAIN, "fc6108f7a8729a6463f5e9a0f1cdc886053edf46f64918629da1121b7f2e3cfb");
    sha256_hex("test", SPLIT_TEST, "b2f4fa2f3c2ca06b18f547a2c3a76d36d9809d49e5897076044a5591a06e5500");
}

// First labels and pixel sum of item 0 read with python3 gzip from the Debian files.
static void test_fashion_mnist(void **state) {
    (void)state;
    DataOptions o = { 0 };
    Dataset *tr, *te;
    char err[1024];
    assert_int_equal(dataset_open("fashion-mnist", SPLIT_TRAIN, &o, &tr, err, sizeof err), 0);
    assert_int_equal(dataset_open("fashion-mnist", SPLIT_TEST, &o, &te, err, sizeof err), 0);
    assert_int_equal(tr->n, 60000);
    assert_int_equal(te->n, 10000);
    const int want_tr[10] = { 9, 0, 0, 3, 0, 2, 7, 2, 5, 5 }, want_te[10] = { 9, 2, 1, 1, 6, 1, 4, 6, 5, 7 };
    uint8_t img[784];
    int32_t lab;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(tr->get(tr, i, img, &lab, err, sizeof err), 0);
        assert_int_equal(lab, want_tr[i]);
        assert_int_equal(te->get(te, i, img, &lab, err, sizeof err), 0);
        assert_int_equal(lab, want_te[i]);
    }
    tr->get(tr, 0, img, &lab, err, sizeof err);
    long sum = 0;
    for (int p = 0; p < 784; p++) sum += img[p];
    assert_int_equal(sum, 76247);
    assert_int_equal(img[14 * 28 + 14], 217);
    // shape flags that disagree with the data are refused, naming the flag
    o.classes = 7;
    dataset_free(te);
    assert_int_equal(dataset_open("fashion-mnist", SPLIT_TEST, &o, &te, err, sizeof err), -1);
    assert_non_null(strstr(err, "--classes 7"));
    dataset_free(tr);
    o.classes = 0;
    assert_int_equal(dataset_open("nonsense", SPLIT_TEST, &o, &te, err, sizeof err), -1);
    assert_non_null(strstr(err, "nonsense"));
}

// A gzip IDX cut short must be reported with its path and "truncated".
static void test_truncated_idx(void **state) {
    (void)state;
    char dir[512], path[600], err[1024];
    snprintf(dir, sizeof dir, "%s/fm", tmpdir);
    mkdir(dir, 0777);
    // real labels file, images file cut after 1000 bytes of pixels
    uint8_t *data;
    int nd, dims[4];
    assert_int_equal(idx_read(FM_DIR "/t10k-images-idx3-ubyte.gz", &data, &nd, dims, err, sizeof err), 0);
    assert_int_equal(nd, 3);
    assert_int_equal(dims[0], 10000);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
    gzFile f = gzopen(path, "wb");
    uint8_t hdr[16] = { 0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0, 28, 0, 0, 0, 28 };
    gzwrite(f, hdr, 16);
    gzwrite(f, data, 1000);
    gzclose(f);
    free(data);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp %s/t10k-labels-idx1-ubyte.gz %s/", FM_DIR, dir);
    assert_int_equal(system(cmd), 0);
    DataOptions o = { .data_dir = dir };
    Dataset *ds;
    assert_int_equal(dataset_open("fashion-mnist", SPLIT_TEST, &o, &ds, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "truncated"));
    // a missing file names the file it looked for
    assert_int_equal(dataset_open("fashion-mnist", SPLIT_TRAIN, &o, &ds, err, sizeof err), -1);
    assert_non_null(strstr(err, "train-images-idx3-ubyte"));
    // bad magic
    snprintf(path, sizeof path, "%s/bad.idx", dir);
    FILE *g = fopen(path, "wb");
    fputs("hello world", g);
    fclose(g);
    assert_int_equal(idx_read(path, &data, &nd, dims, err, sizeof err), -1);
    assert_non_null(strstr(err, "IDX"));
}

static void export_fmseg(const char *dir, long n) {
    DataOptions o = { 0 };
    Dataset *ds;
    char err[1024];
    assert_int_equal(dataset_open("fashion-mnist-seg", SPLIT_TEST, &o, &ds, err, sizeof err), 0);
    long w = data_export(ds, dir, n, err, sizeof err);
    if (w < 0) fprintf(stderr, "%s\n", err);
    assert_int_equal(w, n);
    dataset_free(ds);
}

// Export fashion-mnist-seg as PNG pairs, read them back through segfolder: identical samples.
static void test_export_roundtrip(void **state) {
    (void)state;
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s/exp", tmpdir);
    export_fmseg(dir, 6);
    char spec[600];
    snprintf(spec, sizeof spec, "segfolder:%s", dir);
    DataOptions o = { .classes = 11 };
    Dataset *sf, *fm;
    int rc = dataset_open(spec, SPLIT_TRAIN, &o, &sf, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(dataset_open("fashion-mnist-seg", SPLIT_TEST, &o, &fm, err, sizeof err), 0);
    assert_int_equal(sf->n, 6);
    assert_int_equal(sf->width, 64);
    assert_int_equal(sf->channels, 1);
    uint8_t a[4096], b[4096];
    int32_t la[4096], lb[4096];
    for (long i = 0; i < 6; i++) {
        assert_int_equal(sf->get(sf, i, a, la, err, sizeof err), 0);
        assert_int_equal(fm->get(fm, i, b, lb, err, sizeof err), 0);
        assert_memory_equal(a, b, 4096);
        assert_memory_equal(la, lb, sizeof la);
    }
    dataset_free(sf);
    // without --classes the classes come from the largest label in the masks
    o.classes = 0;
    assert_int_equal(dataset_open(spec, SPLIT_TRAIN, &o, &sf, err, sizeof err), 0);
    assert_true(sf->classes >= 2 && sf->classes <= 11);
    dataset_free(sf);
    dataset_free(fm);
}

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

// Corrupt PNG and a mask of the wrong size: errors name the file.
static void test_bad_png_and_mismatch(void **state) {
    (void)state;
    char dir[512], path[700], err[1024], spec[600];
    snprintf(dir, sizeof dir, "%s/bad", tmpdir);
    export_fmseg(dir, 3);
    snprintf(spec, sizeof spec, "segfolder:%s", dir);
    DataOptions o = { .classes = 11 };
    Dataset *ds;
    // 1) image 000001.png replaced by garbage after a valid signature
    snprintf(path, sizeof path, "%s/images/000001.png", dir);
    const unsigned char junk[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 1, 2, 3 };
    write_file(path, junk, sizeof junk);
    assert_int_equal(dataset_open(spec, SPLIT_TRAIN, &o, &ds, err, sizeof err), 0);
    uint8_t img[4096];
    int32_t lab[4096];
    assert_int_equal(ds->get(ds, 0, img, lab, err, sizeof err), 0);
    assert_int_equal(ds->get(ds, 1, img, lab, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "bad PNG"));
    // the loader surfaces the same error instead of a batch
    LoaderConfig lc = { .batch = 3, .workers = 2, .world = 1, .seed = 1, .drop_last = 1 };
    Loader *l;
    assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), 0);
    assert_int_equal(loader_begin(l, 0, 0, err, sizeof err), 0);
    assert_null(loader_next(l, NULL));
    assert_non_null(strstr(loader_error(l), path));
    loader_free(l);
    // 2) not a PNG at all
    write_file(path, "GIF89a", 6);
    assert_int_equal(ds->get(ds, 1, img, lab, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a PNG"));
    dataset_free(ds);
    // 3) mask 000002.png is 32x32 while its image is 64x64
    uint8_t small[32 * 32] = { 0 };
    snprintf(path, sizeof path, "%s/masks/000002.png", dir);
    assert_int_equal(png_write_u8(path, small, 32, 32, 1, err, sizeof err), 0);
    assert_int_equal(dataset_open(spec, SPLIT_TRAIN, &o, &ds, err, sizeof err), 0);
    assert_int_equal(ds->get(ds, 2, img, lab, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "size mismatch"));
    dataset_free(ds);
    // 4) an image without a mask is refused at open, naming the missing mask
    snprintf(path, sizeof path, "%s/masks/000000.png", dir);
    unlink(path);
    assert_int_equal(dataset_open(spec, SPLIT_TRAIN, &o, &ds, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
}

// Cityscapes layout: leftImg8bit/<split>/<city>/X_leftImg8bit.png + gtFine/.../X_gtFine_labelTrainIds.png
static void test_cityscapes_layout(void **state) {
    (void)state;
    char root[512], p[900], err[1024], spec[600];
    snprintf(root, sizeof root, "%s/cs", tmpdir);
    const char *dirs[] = { "leftImg8bit/val/bonn", "gtFine/val/bonn" };
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        char cmd[1000];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
        assert_int_equal(system(cmd), 0);
    }
    uint8_t rgb[8 * 4 * 3], mask[8 * 4];
    for (int i = 0; i < 8 * 4 * 3; i++) rgb[i] = (uint8_t)i;
    for (int i = 0; i < 8 * 4; i++) mask[i] = i == 3 ? 255 : (uint8_t)(i % 19);
    snprintf(p, sizeof p, "%s/leftImg8bit/val/bonn/bonn_000001_000019_leftImg8bit.png", root);
    assert_int_equal(png_write_u8(p, rgb, 8, 4, 3, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/gtFine/val/bonn/bonn_000001_000019_gtFine_labelTrainIds.png", root);
    assert_int_equal(png_write_u8(p, mask, 8, 4, 1, err, sizeof err), 0);
    snprintf(spec, sizeof spec, "segfolder:%s", root);
    DataOptions o = { 0 };
    Dataset *ds;
    int rc = dataset_open(spec, SPLIT_TEST, &o, &ds, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(ds->n, 1);
    assert_int_equal(ds->classes, 19);
    assert_int_equal(ds->channels, 3);
    assert_int_equal(ds->width, 8);
    uint8_t img[8 * 4 * 3];
    int32_t lab[8 * 4];
    assert_int_equal(ds->get(ds, 0, img, lab, err, sizeof err), 0);
    assert_int_equal(img[0], 0);           // R of pixel 0
    assert_int_equal(img[32 + 1], 4);      // G of pixel 1 (HWC index 1*3+1)
    assert_int_equal(lab[3], 255);         // ignore label kept
    assert_int_equal(lab[20], 20 % 19);
    dataset_free(ds);
    // the train split has no images: a clear error naming the directory
    assert_int_equal(dataset_open(spec, SPLIT_TRAIN, &o, &ds, err, sizeof err), -1);
    assert_non_null(strstr(err, "leftImg8bit/train"));
}

static void test_cifar_truncated(void **state) {
    (void)state;
    char dir[512], path[700], err[1024], spec[600];
    snprintf(dir, sizeof dir, "%s/cifar", tmpdir);
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    uint8_t rec[3073 * 2] = { 0 };
    write_file(path, rec, sizeof rec);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    DataOptions o = { 0 };
    Dataset *ds;
    assert_int_equal(dataset_open(spec, SPLIT_TEST, &o, &ds, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "truncated"));
    // a complete test batch in the documented record layout reads back record by record
    FILE *f = fopen(path, "wb");
    uint8_t r[3073];
    for (int i = 0; i < 10000; i++) {
        r[0] = (uint8_t)(i % 10);
        for (int p = 0; p < 3072; p++) r[1 + p] = (uint8_t)(i * 7 + p);
        fwrite(r, 1, sizeof r, f);
    }
    fclose(f);
    assert_int_equal(dataset_open(spec, SPLIT_TEST, &o, &ds, err, sizeof err), 0);
    assert_int_equal(ds->n, 10000);
    assert_int_equal(ds->channels, 3);
    uint8_t img[3072];
    int32_t lab;
    assert_int_equal(ds->get(ds, 1234, img, &lab, err, sizeof err), 0);
    assert_int_equal(lab, 4);
    assert_int_equal(img[0], (uint8_t)(1234 * 7));
    assert_int_equal(img[1024 + 5], (uint8_t)(1234 * 7 + 1029));  // G plane, pixel 5
    dataset_free(ds);
}

// Loader: per epoch every sample exactly once across ranks, ranks disjoint, same batches for
// any number of workers, a new order each epoch, and first_batch resumes mid-epoch.
static void collect(Dataset *ds, int rank, int world, int workers, int epoch, long first,
                    float *xs, int32_t *ys, long *count) {
    LoaderConfig lc = { .batch = 4, .workers = workers, .rank = rank, .world = world, .seed = 42,
                        .shuffle = 1, .drop_last = 1 };
    Loader *l;
    char err[1024];
    assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), 0);
    assert_int_equal(loader_begin(l, epoch, first, err, sizeof err), 0);
    const Batch *b;
    long k = 0;
    while ((b = loader_next(l, NULL))) {
        assert_int_equal(b->index, first + k / 4);
        memcpy(xs + k * 16, b->x, sizeof(float) * 16 * b->n);
        memcpy(ys + k, b->y, sizeof(int32_t) * b->n);
        k += b->n;
    }
    assert_string_equal(loader_error(l), "");
    *count = k;
    loader_free(l);
}

static void test_loader(void **state) {
    (void)state;
    DataOptions o = { .in_channels = 1, .classes = 1000000, .image_size = 4, .synthetic_n = 48, .seed = 3 };
    Dataset *ds;
    char err[1024];
    assert_int_equal(dataset_open("synthetic", SPLIT_TRAIN, &o, &ds, err, sizeof err), 0);
    // the label of each synthetic sample is (almost surely) unique: use it as its identity
    float xs[3][48 * 16], x1[48 * 16], x2[48 * 16];
    int32_t ys[3][48], y1[48], y2[48];
    long n[3], n1, n2;
    int seen[48] = { 0 };
    int32_t all[48];
    uint8_t img[16];
    for (long i = 0; i < 48; i++) ds->get(ds, i, img, &all[i], err, sizeof err);
    for (int r = 0; r < 3; r++) {
        collect(ds, r, 3, 2, 0, 0, xs[r], ys[r], &n[r]);
        assert_int_equal(n[r], 16);
        for (long k = 0; k < 16; k++)
            for (int i = 0; i < 48; i++)
                if (all[i] == ys[r][k]) seen[i]++;
    }
    for (int i = 0; i < 48; i++) assert_int_equal(seen[i], 1);
    // workers 0, 1, 5: identical batches
    collect(ds, 1, 3, 0, 0, 0, x1, y1, &n1);
    collect(ds, 1, 3, 5, 0, 0, x2, y2, &n2);
    assert_memory_equal(y1, ys[1], sizeof(int32_t) * 16);
    assert_memory_equal(y2, ys[1], sizeof(int32_t) * 16);
    assert_memory_equal(x2, xs[1], sizeof(float) * 16 * 16);
    // epoch 1 differs from epoch 0
    collect(ds, 1, 3, 1, 1, 0, x1, y1, &n1);
    assert_memory_not_equal(y1, ys[1], sizeof(int32_t) * 16);
    // starting at batch 2 gives the tail of the full epoch
    collect(ds, 1, 3, 2, 0, 2, x2, y2, &n2);
    assert_int_equal(n2, 8);
    assert_memory_equal(y2, ys[1] + 8, sizeof(int32_t) * 8);
    // eval mode (no shuffle, keep last partial batch): 48 samples, world 5 -> rank 3 has 9
    LoaderConfig lc = { .batch = 4, .workers = 1, .rank = 3, .world = 5, .seed = 42 };
    Loader *l;
    assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), 0);
    assert_int_equal(loader_num_batches(l), 3);
    loader_begin(l, 0, 0, err, sizeof err);
    const Batch *b;
    long k = 0;
    while ((b = loader_next(l, NULL))) {
        for (int j = 0; j < b->n; j++) assert_int_equal(b->y[j], all[3 + 5 * (k + j)]);
        k += b->n;
    }
    assert_int_equal(k, 9);  // positions 3, 8, ..., 43
    loader_free(l);
    dataset_free(ds);
}

// Pixel values reach the model as byte/255 and --augment flips image and mask together.
static void test_loader_values_and_flip(void **state) {
    (void)state;
    DataOptions o = { 0 };
    Dataset *ds;
    char err[1024];
    assert_int_equal(dataset_open("fashion-mnist-seg", SPLIT_TEST, &o, &ds, err, sizeof err), 0);
    LoaderConfig lc = { .batch = 2, .workers = 1, .world = 1, .seed = 5, .augment = 1, .drop_last = 1, .limit = 40 };
    Loader *l;
    assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), 0);
    assert_int_equal(loader_num_batches(l), 20);
    loader_begin(l, 0, 0, err, sizeof err);
    const Batch *b;
    uint8_t img[4096];
    int32_t lab[4096];
    int flipped = 0, straight = 0;
    while ((b = loader_next(l, NULL)))
        for (int j = 0; j < b->n; j++) {
            // no shuffle: sample index = batch*2 + j
            long idx = b->index * 2 + j;
            ds->get(ds, idx, img, lab, err, sizeof err);
            int same = 1, mirror = 1;
            for (int y = 0; y < 64; y++)
                for (int x = 0; x < 64; x++) {
                    float v = b->x[j * 4096 + y * 64 + x];
                    int32_t t = b->y[j * 4096 + y * 64 + x];
                    if (v != img[y * 64 + x] / 255.0f || t != lab[y * 64 + x]) same = 0;
                    if (v != img[y * 64 + 63 - x] / 255.0f || t != lab[y * 64 + 63 - x]) mirror = 0;
                }
            assert_true(same || mirror);
            flipped += mirror && !same;
            straight += same;
        }
    assert_true(flipped > 5 && straight > 5);
    loader_free(l);
    dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmseg_checksums),
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_truncated_idx),
        cmocka_unit_test(test_export_roundtrip),
        cmocka_unit_test(test_bad_png_and_mismatch),
        cmocka_unit_test(test_cityscapes_layout),
        cmocka_unit_test(test_cifar_truncated),
        cmocka_unit_test(test_loader),
        cmocka_unit_test(test_loader_values_and_flip),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
