// trainer/data/export.c — writes a segmentation dataset as a segfolder (images/ + masks/ PNGs),
// so any other trainer can read exactly the samples segx-train sees.
#include "trainer/data/data.h"
#include "trainer/run/run.h"
// defines: data_export

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

long data_export(Dataset *ds, const char *dir, long limit, char *err, size_t errlen) {
    if (!ds->segmentation) {
        snprintf(err, errlen, "--export-dataset: %s is a classification dataset; export writes image/mask "
                 "pairs and needs a segmentation dataset", ds->name);
        return -1;
    }
    if (ds->channels != 1 && ds->channels != 3) {
        snprintf(err, errlen, "--export-dataset: %d channels cannot be written as PNG (want 1 or 3)", ds->channels);
        return -1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/images", dir);
    if (run_mkdir_p(path, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/masks", dir);
    if (run_mkdir_p(path, err, errlen)) return -1;
    size_t hw = (size_t)ds->height * ds->width;
    long n = limit > 0 && limit < ds->n ? limit : ds->n;
    uint8_t *img = malloc(hw * ds->channels), *hwc = malloc(hw * ds->channels), *mask = malloc(hw);
    int32_t *lab = malloc(sizeof(int32_t) * hw);
    long done = -1;
    if (!img || !hwc || !mask || !lab) { snprintf(err, errlen, "out of memory"); goto out; }
    for (long i = 0; i < n; i++) {
        if (ds->get(ds, i, img, lab, err, errlen)) goto out;
        for (int c = 0; c < ds->channels; c++)  // CHW -> HWC
            for (size_t p = 0; p < hw; p++) hwc[p * ds->channels + c] = img[c * hw + p];
        for (size_t p = 0; p < hw; p++) mask[p] = (uint8_t)lab[p];
        snprintf(path, sizeof path, "%s/images/%06ld.png", dir, i);
        if (png_write_u8(path, hwc, ds->width, ds->height, ds->channels, err, errlen)) goto out;
        snprintf(path, sizeof path, "%s/masks/%06ld.png", dir, i);
        if (png_write_u8(path, mask, ds->width, ds->height, 1, err, errlen)) goto out;
    }
    done = n;
out:
    free(img); free(hwc); free(mask); free(lab);
    return done;
}
