// trainer/data/dataset.c — dataset names -> implementations; synthetic lives here (cifar10: cifar.c).
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
int cifar10_open(const char *dir, DataSplit split, Dataset **out, char *err, size_t errlen);   // cifar.c

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
    else if (strncmp(spec, "cifar10:", 8) == 0 && spec[8]) rc = cifar10_open(spec + 8, split, out, err, errlen);
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
    if (opt->pad_to > 0 && dataset_pad(out, opt->pad_to, err, errlen)) {   // before the shape checks
        dataset_free(*out);
        *out = NULL;
        return -1;
    }
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
