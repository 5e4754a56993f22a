// tests/trainer/test_cifar.c — CIFAR-shaped data: cifar10:DIR from the python release (pickled batches)
// against what Python's own pickle reads from the same files, --pad-to, and --augment's random crop
// with padding + flip.
// The fixtures are written by python3 (below): a batch in the release's exact layout (Python 2
// cPickle protocol 2: SHORT_BINSTRING keys, numpy.core.multiarray._reconstruct + BUILD with the raw
// bytes as BINSTRING), checked by loading it with Python's pickle (with a stand-in numpy module), and
// the same data re-pickled by Python 3 (protocol 4: frames, MEMOIZE, STACK_GLOBAL, BINBYTES). Small
// batches (the release has 10000 images each) keep the test fast.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/data/data.h"

static char tmpdir[256];
static int have_fixtures;

// Writes under ROOT: py2/cifar-10-batches-py/{data_batch_1..5,test_batch} (the release's layout),
// py3/ (the same batches, protocol 4), expected_{train,test}.bin (label byte + 3072 bytes per image,
// in file order), and broken variants: trunc/ (test_batch cut in half), c100/ (fine_labels),
// float/ (a float label).
static const char fixture_py[] =
"import os, pickle, random, struct, sys, types\n"
"root = sys.argv[1]\n"
"rnd = random.Random(14)\n"
"np = types.ModuleType('numpy'); core = types.ModuleType('numpy.core'); ma = types.ModuleType('numpy.core.multiarray')\n"
"class ndarray:\n"
"    def __setstate__(self, st): self.version, self.shape, self.dt, self.fortran, self.raw = st\n"
"    def __reduce__(self): return (_reconstruct, (ndarray, (0,), b'b'), (1, self.shape, dtype('u1', False, True), False, self.raw))\n"
"class dtype:\n"
"    def __init__(self, s, a=0, c=1): self.s = s\n"
"    def __setstate__(self, st): self.st = st\n"
"    def __reduce__(self): return (dtype, (self.s, False, True), (3, '|', None, None, None, -1, -1, 0))\n"
"def _reconstruct(cls, shape, code): return cls.__new__(cls)\n"
"ndarray.__module__ = dtype.__module__ = 'numpy'; _reconstruct.__module__ = 'numpy.core.multiarray'\n"
"np.ndarray, np.dtype, np.core, core.multiarray, ma._reconstruct = ndarray, dtype, core, ma, _reconstruct\n"
"sys.modules.update({'numpy': np, 'numpy.core': core, 'numpy.core.multiarray': ma})\n"
"def py2_batch(labels, data, name):\n"
"    out = bytearray(b'\\x80\\x02}q\\x01(')\n"
"    memo = [2]\n"
"    def put():\n"
"        out.extend(b'q' + bytes([memo[0]])); memo[0] += 1\n"
"    def s(v):\n"
"        out.extend((b'U' + bytes([len(v)])) if len(v) < 256 else (b'T' + struct.pack('<i', len(v)))); out.extend(v); put()\n"
"    def i(v):\n"
"        out.extend(b'K' + bytes([v]) if v < 256 else b'M' + struct.pack('<H', v) if v < 65536 else b'J' + struct.pack('<i', v))\n"
"    s(b'data'); out.extend(b'cnumpy.core.multiarray\\n_reconstruct\\n'); put(); out.extend(b'cnumpy\\nndarray\\n'); put()\n"
"    i(0); out.extend(b'\\x85'); s(b'b'); out.extend(b'\\x87R'); put()\n"
"    out.extend(b'('); i(1); i(len(labels)); i(3072); out.extend(b'\\x86cnumpy\\ndtype\\n'); put()\n"
"    s(b'u1'); i(0); i(1); out.extend(b'\\x87R'); put()\n"
"    out.extend(b'('); i(3); s(b'|'); out.extend(b'NNNJ\\xff\\xff\\xff\\xffJ\\xff\\xff\\xff\\xff'); i(0); out.extend(b'tb')\n"
"    out.extend(b'\\x89'); s(data); out.extend(b'tb')\n"
"    s(b'labels'); out.extend(b']'); put()\n"
"    for c in range(0, len(labels), 4):   # cPickle appends in batches (of 1000; 4 here)\n"
"        out.extend(b'(')\n"
"        for l in labels[c:c + 4]: i(l)\n"
"        out.extend(b'e')\n"
"    s(b'batch_label'); s(name); s(b'filenames'); out.extend(b']'); put(); out.extend(b'(')\n"
"    for k in range(len(labels)): s(b'img_%05d.png' % k)\n"
"    out.extend(b'eu.')\n"
"    return bytes(out)\n"
"def mkdir(*p):\n"
"    d = os.path.join(root, *p); os.makedirs(d, exist_ok=True); return d\n"
"py2, py3 = mkdir('py2', 'cifar-10-batches-py'), mkdir('py3')\n"
"for split, files in (('train', ['data_batch_%d' % k for k in range(1, 6)]), ('test', ['test_batch'])):\n"
"    exp = bytearray()\n"
"    for f in files:\n"
"        n = rnd.randint(3, 9)\n"
"        labels = [rnd.randrange(10) for _ in range(n)]\n"
"        data = bytes(rnd.randrange(256) for _ in range(n * 3072))\n"
"        blob = py2_batch(labels, data, b'fixture ' + f.encode())\n"
"        d = pickle.loads(blob, encoding='bytes')   # Python's reading of our bytes is the reference\n"
"        assert d[b'labels'] == labels and d[b'data'].raw == data and d[b'data'].shape == (n, 3072), f\n"
"        assert d[b'data'].dt.s == b'u1' and d[b'data'].fortran is False and len(d[b'filenames']) == n\n"
"        open(os.path.join(py2, f), 'wb').write(blob)\n"
"        arr = ndarray.__new__(ndarray); arr.shape, arr.raw = (n, 3072), data\n"
"        p4 = pickle.dumps({'data': arr, 'labels': labels, 'batch_label': 'fixture'}, protocol=4)\n"
"        assert b'\\x95' in p4[:3] and pickle.loads(p4)['data'].raw == data\n"
"        open(os.path.join(py3, f), 'wb').write(p4)\n"
"        for k in range(n): exp += bytes([labels[k]]) + data[k * 3072:(k + 1) * 3072]\n"
"    open(os.path.join(root, 'expected_%s.bin' % split), 'wb').write(exp)\n"
"blob = open(os.path.join(py2, 'test_batch'), 'rb').read()\n"
"open(os.path.join(mkdir('trunc'), 'test_batch'), 'wb').write(blob[:len(blob) // 2])\n"
"open(os.path.join(mkdir('c100'), 'test_batch'), 'wb').write(pickle.dumps({'data': arr, 'fine_labels': [1]}, protocol=2))\n"
"open(os.path.join(mkdir('float'), 'test_batch'), 'wb').write(pickle.dumps({'data': arr, 'labels': [1.5]}, protocol=4))\n";

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-test-cifar.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 - '%s'", tmpdir);
    FILE *p = popen(cmd, "w");
    if (!p) return 0;
    fputs(fixture_py, p);
    have_fixtures = pclose(p) == 0;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b && fread(b, 1, *len, f) != *len) { free(b); b = NULL; }
    fclose(f);
    return b;
}

// Every sample of cifar10:SUB (both splits) equals what Python wrote.
static void check_release(const char *sub) {
    if (!have_fixtures) skip();
    for (int s = 0; s < 2; s++) {
        char spec[600], path[600], err[1024];
        snprintf(spec, sizeof spec, "cifar10:%s/%s", tmpdir, sub);
        snprintf(path, sizeof path, "%s/expected_%s.bin", tmpdir, s ? "test" : "train");
        size_t len;
        uint8_t *exp = slurp(path, &len);
        assert_non_null(exp);
        DataOptions o = { 0 };
        Dataset *ds;
        int rc = dataset_open(spec, s ? SPLIT_TEST : SPLIT_TRAIN, &o, &ds, err, sizeof err);
        if (rc) fail_msg("%s: %s", spec, err);
        assert_int_equal((size_t)ds->n * 3073, len);
        assert_true(ds->channels == 3 && ds->height == 32 && ds->width == 32 && ds->classes == 10 && !ds->segmentation);
        uint8_t img[3072];
        int32_t lab;
        for (long i = 0; i < ds->n; i++) {
            assert_int_equal(ds->get(ds, i, img, &lab, err, sizeof err), 0);
            assert_int_equal(lab, exp[(size_t)i * 3073]);
            assert_memory_equal(img, exp + (size_t)i * 3073 + 1, 3072);
        }
        dataset_free(ds);
        free(exp);
    }
}

static void test_python_release_py2_layout(void **state) { (void)state; check_release("py2"); }
static void test_python_release_reached_from_parent(void **state) {
    (void)state;   // cifar10:DIR with DIR/cifar-10-batches-py/ is the layout the release unpacks to
    check_release("py2/cifar-10-batches-py");
}
static void test_python3_repickled(void **state) { (void)state; check_release("py3"); }

static void expect_error(const char *sub, const char *what1, const char *what2) {
    char spec[600], err[1024] = "";
    snprintf(spec, sizeof spec, "cifar10:%s/%s", tmpdir, sub);
    DataOptions o = { 0 };
    Dataset *ds = NULL;
    assert_int_equal(dataset_open(spec, SPLIT_TEST, &o, &ds, err, sizeof err), -1);
    assert_null(ds);
    if (!strstr(err, what1) || (what2 && !strstr(err, what2))) fail_msg("%s: error \"%s\" lacks \"%s\"/\"%s\"", sub, err, what1, what2 ? what2 : "");
}

static void test_bad_files_are_named(void **state) {
    (void)state;
    if (!have_fixtures) skip();
    char path[600];
    snprintf(path, sizeof path, "%s/trunc/test_batch: byte ", tmpdir);
    expect_error("trunc", path, "truncated");
    expect_error("c100", "CIFAR-100", NULL);
    expect_error("float", "opcode 0x47 ('G')", "test_batch: byte ");
    expect_error("nothing-here", "cifar-10-batches-py/test_batch", "cifar-10-batches-bin/test_batch.bin");
}

// Damaged copies of a real-layout batch (cut at every offset of its head and tail, and 300 single
// bytes changed) never crash the reader (ASan/valgrind builds watch this): each is an error naming
// the file, or, for a change inside the pixel bytes, reads as a batch.
static void test_damaged_batches(void **state) {
    (void)state;
    if (!have_fixtures) skip();
    char src[600], dir[600], path[700], spec[700], err[1024];
    snprintf(src, sizeof src, "%s/py2/cifar-10-batches-py/test_batch", tmpdir);
    snprintf(dir, sizeof dir, "%s/damaged", tmpdir);
    snprintf(path, sizeof path, "%s/test_batch", dir);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    mkdir(dir, 0777);
    size_t len;
    uint8_t *b = slurp(src, &len);
    assert_non_null(b);
    uint8_t *c = malloc(len);
    uint32_t rnd = 99;
    int errors = 0, reads = 0;
    for (size_t k = 0; k < 900; k++) {
        size_t n = len;
        memcpy(c, b, len);
        if (k < 300) n = k;                          // cut in the head (dict, numpy reconstruct, dtype)
        else if (k < 600) n = len - (k - 300) - 1;    // cut in the tail (labels, names, STOP)
        else { rnd = rnd * 1664525u + 1013904223u; c[(rnd >> 8) % len] ^= (uint8_t)(1 + (rnd >> 3) % 255); }
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(c, 1, n, f), n);
        fclose(f);
        DataOptions o = { 0 };
        Dataset *ds = NULL;
        if (dataset_open(spec, SPLIT_TEST, &o, &ds, err, sizeof err) == 0) { reads++; dataset_free(ds); continue; }
        errors++;
        if (!strstr(err, path)) fail_msg("case %zu: error does not name the file: %s", k, err);
    }
    assert_true(errors >= 600);   // every cut is an error
    printf("# %d damaged copies refused with the file named, %d still read as a batch\n", errors, reads);
    free(b);
    free(c);
}

// --pad-to: the image centred in zeros (masks: the ignore label); a size below the data's is refused.
static void test_pad_to(void **state) {
    (void)state;
    DataOptions o = { .in_channels = 2, .classes = 3, .image_size = 5, .synthetic_n = 4, .seed = 1, .segmentation = 1 };
    Dataset *raw, *pad;
    char err[1024];
    assert_int_equal(dataset_open("synthetic", SPLIT_TRAIN, &o, &raw, err, sizeof err), 0);
    o.pad_to = 9;
    assert_int_equal(dataset_open("synthetic", SPLIT_TRAIN, &o, &pad, err, sizeof err), 0);
    assert_true(pad->height == 9 && pad->width == 9 && pad->channels == 2 && pad->n == 4 && pad->segmentation);
    uint8_t a[2 * 25], b[2 * 81];
    int32_t la[25], lb[81];
    for (long i = 0; i < 4; i++) {
        assert_int_equal(raw->get(raw, i, a, la, err, sizeof err), 0);
        assert_int_equal(pad->get(pad, i, b, lb, err, sizeof err), 0);
        for (int c = 0; c < 2; c++)
            for (int y = 0; y < 9; y++)
                for (int x = 0; x < 9; x++) {
                    int in = y >= 2 && y < 7 && x >= 2 && x < 7;
                    assert_int_equal(b[(c * 9 + y) * 9 + x], in ? a[(c * 5 + y - 2) * 5 + x - 2] : 0);
                    if (c == 0) assert_int_equal(lb[y * 9 + x], in ? la[(y - 2) * 5 + x - 2] : DATA_IGNORE_LABEL);
                }
    }
    dataset_free(raw);
    dataset_free(pad);
    o.pad_to = 4;
    assert_int_equal(dataset_open("synthetic", SPLIT_TRAIN, &o, &pad, err, sizeof err), -1);
    assert_non_null(strstr(err, "--pad-to 4"));
}

// --augment on a classification set: each image is a 32x32 crop of the image padded by 4 with zeros,
// mirrored or not, the same for the same (seed, epoch, sample) whatever the workers, and both
// crops offsets and flips actually vary.
static void test_augment_crop_and_flip(void **state) {
    (void)state;
    DataOptions o = { .in_channels = 1, .classes = 10, .image_size = 32, .synthetic_n = 64, .seed = 3 };
    Dataset *ds;
    char err[1024];
    assert_int_equal(dataset_open("synthetic", SPLIT_TRAIN, &o, &ds, err, sizeof err), 0);
    LoaderConfig lc = { .batch = 64, .workers = 0, .world = 1, .seed = 5, .shuffle = 0, .augment = 1 };
    Loader *l, *l2;
    assert_int_equal(loader_create(ds, &lc, &l, err, sizeof err), 0);
    lc.workers = 3;
    assert_int_equal(loader_create(ds, &lc, &l2, err, sizeof err), 0);
    int shifts[9][9] = { { 0 } }, flips = 0, identity = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        assert_int_equal(loader_begin(l, epoch, 0, err, sizeof err), 0);
        assert_int_equal(loader_begin(l2, epoch, 0, err, sizeof err), 0);
        const Batch *b = loader_next(l, NULL), *b2 = loader_next(l2, NULL);
        assert_non_null(b);
        assert_non_null(b2);
        assert_memory_equal(b->x, b2->x, sizeof(float) * 64 * 1024);   // workers change nothing
        for (int j = 0; j < 64; j++) {
            uint8_t src[1024];
            int32_t lab;
            assert_int_equal(ds->get(ds, j, src, &lab, err, sizeof err), 0);
            assert_int_equal(b->y[j], lab);
            const float *x = b->x + (size_t)j * 1024;
            int found = 0;   // which (dy, dx, flip) explains this image
            for (int dy = -4; dy <= 4 && !found; dy++)
                for (int dx = -4; dx <= 4 && !found; dx++)
                    for (int f = 0; f < 2 && !found; f++) {
                        int ok = 1;
                        for (int y = 0; y < 32 && ok; y++)
                            for (int xx = 0; xx < 32 && ok; xx++) {
                                int sx = (f ? 31 - xx : xx) + dx, sy = y + dy;
                                float want = sy >= 0 && sy < 32 && sx >= 0 && sx < 32 ? src[sy * 32 + sx] / 255.0f : 0.0f;
                                ok = x[y * 32 + xx] == want;
                            }
                        if (ok) { found = 1; shifts[dy + 4][dx + 4]++; flips += f; identity += !f && !dy && !dx; }
                    }
            if (!found) fail_msg("epoch %d sample %d is no padded crop of the source", epoch, j);
        }
        loader_end(l);
        loader_end(l2);
    }
    int distinct = 0;
    for (int a = 0; a < 9; a++) for (int c = 0; c < 9; c++) distinct += shifts[a][c] > 0;
    assert_true(distinct > 20);          // 128 draws over 81 offsets
    assert_true(flips > 30 && flips < 98);
    assert_true(identity < 10);
    loader_free(l);
    loader_free(l2);
    dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_release_py2_layout),
        cmocka_unit_test(test_python_release_reached_from_parent),
        cmocka_unit_test(test_python3_repickled),
        cmocka_unit_test(test_bad_files_are_named),
        cmocka_unit_test(test_damaged_batches),
        cmocka_unit_test(test_pad_to),
        cmocka_unit_test(test_augment_crop_and_flip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
