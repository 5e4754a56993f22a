// bench/loader_bench.c — images/s of segx-train's loader (decode + the mmseg training pipeline) on
// `workers` threads, read by bench/loader. Compiled straight from trainer/data/*.c.
//   loader_bench DATASET WORKERS BATCH CROP SCALE_W SCALE_H EPOCHS
// prints {"img_per_s": X, "images": N, "seconds": S}
#include "trainer/data/data.h"
#include "trainer/data/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: loader_bench DATASET WORKERS BATCH CROP SCALE_W SCALE_H EPOCHS\n"); return 2; }
    char err[2048];
    Dataset *ds;
    DataOptions o = { 0 };
    if (dataset_open(argv[1], SPLIT_TRAIN, &o, &ds, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    int crop = atoi(argv[4]), epochs = atoi(argv[7]);
    Pipeline p = { .scale_w = atoi(argv[5]), .scale_h = atoi(argv[6]), .ratio_min = 0.5, .ratio_max = 2.0,
                   .crop_h = crop, .crop_w = crop, .cat_max_ratio = 0.75, .flip = 1,
                   .mean = { 123.675f, 116.28f, 103.53f }, .std = { 58.395f, 57.12f, 57.375f } };
    LoaderConfig lc = { .batch = atoi(argv[3]), .workers = atoi(argv[2]), .rank = 0, .world = 1, .seed = 1,
                        .shuffle = 1, .drop_last = 1, .pipe = &p };
    Loader *l;
    if (loader_create(ds, &lc, &l, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    long images = 0;
    double t0 = 0;
    for (int e = 0; e <= epochs; e++) {   // epoch 0 warms the page cache and is not timed
        if (e == 1) t0 = now();
        if (loader_begin(l, e, 0, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        const Batch *b;
        while ((b = loader_next(l, NULL))) if (e > 0) images += b->n;
        if (loader_error(l)[0]) { fprintf(stderr, "%s\n", loader_error(l)); return 1; }
    }
    double s = now() - t0;
    printf("{\"img_per_s\": %.3f, \"images\": %ld, \"seconds\": %.3f}\n", images / s, images, s);
    loader_free(l);
    dataset_free(ds);
    return 0;
}
