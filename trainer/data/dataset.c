// trainer/data/dataset.c — dataset names -> implementations; cifar10 and synthetic live here.
#include "trainer/data/data.h"
// defines: dataset_open, dataset_free

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int fmnist_open(int seg, DataSplit split, const DataOptions *opt, Dataset **out, char *err, size_t errlen);
int segfolder_open(const char *root, DataSplit split, const DataOptions *opt, Dataset **out, char *err, size_t errlen);
int segsets_open(const char *kind, const char *root, DataSplit split, const DataOptions *opt, Dataset **out,
                 char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// CIFAR-10 binary version: records of 1 label byte + 3072 image bytes (R, G, B planes of 32x32).

typedef struct { uint8_t *rec; } Cifar;

static int cifar_get(Dataset *ds, long i, uint8_t *img, int32_t *labels, char *err, size_t errlen) {
    Cifar *c = ds->impl;
    (void)err; (void)errlen;
    const uint8_t *r = c->rec + (size_t)i * 3073;
    labels[0] = r[0];
    memcpy(img, r + 1, 3072);
    return 0;
}
static void cifar_free(Dataset *ds) { Cifar *c = ds->impl; if (c) { free(c->rec); free(c); } free(ds); }

static int cifar_open(const char *dir, DataSplit split, Dataset **out, char *err, size_t errlen) {
    char base[4096], path[4200];
    struct stat st;
    snprintf(base, sizeof base, "%s/cifar-10-batches-bin", dir);
    if (stat(base, &st) != 0) snprintf(base, sizeof base, "%s", dir);
    const char *files[5] = { "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                             "data_batch_4.bin", "data_batch_5.bin" };
    int nfiles = split == SPLIT_TEST ? 1 : 5;
    if (split == SPLIT_TEST) files[0] = "test_batch.bin";
    Cifar *c = calloc(1, sizeof *c);
    Dataset *ds = calloc(1, sizeof *ds);
    c->rec = malloc((size_t)nfiles * 10000 * 3073);
    if (!c || !ds || !c->rec) { snprintf(err, errlen, "out of memory"); goto fail; }
    ds->impl = c; ds->free = cifar_free;
    long n = 0;
    for (int k = 0; k < nfiles; k++) {
        snprintf(path, sizeof path, "%s/%s", base, files[k]);
        FILE *f = fopen(path, "rb");
        if (!f) { snprintf(err, errlen, "%s: cannot open: %s (cifar10:DIR wants the binary version)", path, strerror(errno)); goto fail; }
        size_t got = fread(c->rec + (size_t)n * 3073, 1, (size_t)10000 * 3073, f);
        fclose(f);
        if (got != (size_t)10000 * 3073) {
            snprintf(err, errlen, "%s: truncated: %zu bytes, expected 30730000 (10000 records of 3073)", path, got);
            goto fail;
        }
        for (long i = n; i < n + 10000; i++)
            if (c->rec[(size_t)i * 3073] > 9) {
                snprintf(err, errlen, "%s: record %ld has label %d (not 0..9)", path, i - n, c->rec[(size_t)i * 3073]);
                goto fail;
            }
        n += 10000;
    }
    snprintf(ds->name, sizeof ds->name, "cifar10");
    ds->n = n; ds->channels = 3; ds->height = ds->width = 32; ds->classes = 10;
    ds->get = cifar_get;
    *out = ds;
    return 0;
fail:
    if (ds && ds->impl) cifar_free(ds);
    else { if (c) free(c->rec); free(c); free(ds); }
    return -1;
}

// ---------------------------------------------------------------------------------------------
// synthetic: bytes and labels from a hash of (seed, split, sample, position); costs no I/O.

typedef struct { uint64_t seed; } Synth;

static int synth_get(Dataset *ds, long i, uint8_t *img, int32_t *labels, char *err, size_t errlen) {
    Synth *s = ds->impl;
    (void)err; (void)errlen;
    size_t n = (size_t)ds->channels * ds->height * ds->width;
    uint64_t key = data_splitmix64(s->seed ^ data_splitmix64((uint64_t)i));
    for (size_t p = 0; p < n; p += 8) {
        uint64_t z = data_splitmix64(key + p);
        for (size_t b = 0; b < 8 && p + b < n; b++) img[p + b] = (uint8_t)(z >> (8 * b));
    }
    size_t nl = ds->segmentation ? (size_t)ds->height * ds->width : 1;
    for (size_t p = 0; p < nl; p++)
        labels[p] = (int32_t)(data_splitmix64(key ^ (0xABCDull << 40) ^ p) % (uint64_t)ds->classes);
    return 0;
}
static void synth_free(Dataset *ds) { free(ds->impl); free(ds); }

static int synth_open(DataSplit split, const DataOptions *o, Dataset **out, char *err, size_t errlen) {
    Dataset *ds = calloc(1, sizeof *ds);
    Synth *s = calloc(1, sizeof *s);
    if (!ds || !s) { free(ds); free(s); snprintf(err, errlen, "out of memory"); return -1; }
    snprintf(ds->name, sizeof ds->name, "synthetic");
    s->seed = data_splitmix64(o->seed + (split == SPLIT_TEST ? 0x5EEDull : 0));
    ds->impl = s; ds->free = synth_free; ds->get = synth_get;
    ds->channels = o->in_channels > 0 ? o->in_channels : 3;
    ds->height = ds->width = o->image_size > 0 ? o->image_size : 32;
    ds->classes = o->classes > 0 ? o->classes : 10;
    ds->segmentation = o->segmentation;
    ds->n = o->synthetic_n > 0 ? o->synthetic_n : 1024;
    *out = ds;
    return 0;
}

// ---------------------------------------------------------------------------------------------

int dataset_open(const char *spec, DataSplit split, const DataOptions *opt, Dataset **out,
                 char *err, size_t errlen) {
    *out = NULL;
    int rc;
    if (strcmp(spec, "fashion-mnist") == 0) rc = fmnist_open(0, split, opt, out, err, errlen);
    else if (strcmp(spec, "fashion-mnist-seg") == 0) rc = fmnist_open(1, split, opt, out, err, errlen);
    else if (strncmp(spec, "cifar10:", 8) == 0 && spec[8]) rc = cifar_open(spec + 8, split, out, err, errlen);
    else if (strncmp(spec, "segfolder:", 10) == 0 && spec[10]) rc = segfolder_open(spec + 10, split, opt, out, err, errlen);
    else if (strncmp(spec, "ade20k:", 7) == 0 && spec[7]) rc = segsets_open("ade20k", spec + 7, split, opt, out, err, errlen);
    else if (strncmp(spec, "cityscapes:", 11) == 0 && spec[11]) rc = segsets_open("cityscapes", spec + 11, split, opt, out, err, errlen);
    else if (strcmp(spec, "synthetic") == 0) rc = synth_open(split, opt, out, err, errlen);
    else {
        snprintf(err, errlen, "unknown dataset '%s' (want fashion-mnist, fashion-mnist-seg, cifar10:DIR, "
                 "segfolder:DIR, ade20k:DIR, cityscapes:DIR or synthetic)", spec);
        return -1;
    }
    if (rc) return rc;
    // The model's shape flags must agree with a real dataset.
    Dataset *ds = *out;
    if (strcmp(spec, "synthetic") != 0) {
        if (opt->in_channels > 0 && opt->in_channels != ds->channels) {
            snprintf(err, errlen, "--in-channels %d does not match dataset %s (%d channels)", opt->in_channels, spec, ds->channels);
            goto bad;
        }
        if (opt->classes > 0 && opt->classes != ds->classes) {
            snprintf(err, errlen, "--classes %d does not match dataset %s (%d classes)", opt->classes, spec, ds->classes);
            goto bad;
        }
        if (opt->image_size > 0 && ds->height > 0 && (opt->image_size != ds->height || opt->image_size != ds->width)) {
            snprintf(err, errlen, "--image-size %d does not match dataset %s (%dx%d)", opt->image_size, spec, ds->height, ds->width);
            goto bad;
        }
    }
    return 0;
bad:
    dataset_free(ds);
    *out = NULL;
    return -1;
}

void dataset_free(Dataset *ds) {
    if (ds) ds->free(ds);
}
