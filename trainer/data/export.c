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
    long n = limit > 0 && limit < ds->n ? limit : ds->n;
    Sample smp = { 0 };   // at each sample's own size (ade20k:, cityscapes: sets differ image to image)
    uint8_t *hwc = NULL;
    size_t cap = 0;
    long done = -1;
    for (long i = 0; i < n; i++) {
        if (dataset_get_sample(ds, i, &smp, err, errlen)) goto out;
        size_t hw = (size_t)smp.h * smp.w;
        if (hw * smp.c > cap) {
            free(hwc);
            cap = hw * smp.c;
            if (!(hwc = malloc(cap))) { snprintf(err, errlen, "out of memory"); goto out; }
        }
        for (int c = 0; c < smp.c; c++)  // CHW -> HWC
            for (size_t p = 0; p < hw; p++) hwc[p * smp.c + c] = smp.img[c * hw + p];
        snprintf(path, sizeof path, "%s/images/%06ld.png", dir, i);
        if (png_write_u8(path, hwc, smp.w, smp.h, smp.c, err, errlen)) goto out;
        snprintf(path, sizeof path, "%s/masks/%06ld.png", dir, i);
        if (png_write_u8(path, smp.lab, smp.w, smp.h, 1, err, errlen)) goto out;
    }
    done = n;
out:
    free(hwc);
    sample_free(&smp);
    return done;
}
