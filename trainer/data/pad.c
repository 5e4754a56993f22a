// trainer/data/pad.c — --pad-to S: any fixed-size dataset seen as S x S images, the original centred
// in zeros (per-pixel labels: the ignore label), e.g. fashion-mnist's 28x28 as the 32x32 the CIFAR
// networks are built for (torchvision's Pad(2)).
#include "trainer/data/data.h"
// defines: dataset_pad

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Dataset *inner;
    int top, left;      // where the original sits
    size_t img_bytes;   // the original's c*h*w
} Pad;

static int pad_get(Dataset *ds, long i, uint8_t *img, int32_t *labels, char *err, size_t errlen) {
    Pad *p = ds->impl;
    Dataset *in = p->inner;
    // the original goes to the tail of the caller's buffer (as large as the padded image), then
    // rows move forward into place: no allocation per sample, no shared scratch between threads
    size_t total = (size_t)ds->channels * ds->height * ds->width;
    uint8_t *src = img + total - p->img_bytes;
    int32_t lab_small[1];
    int32_t *lab_src = labels;
    size_t npix = (size_t)ds->height * ds->width, in_pix = (size_t)in->height * in->width;
    if (in->segmentation) lab_src = labels + npix - in_pix;
    else lab_src = lab_small;
    if (in->get(in, i, src, lab_src, err, errlen)) return -1;
    for (int c = 0; c < ds->channels; c++)
        for (int y = 0; y < ds->height; y++) {
            uint8_t *row = img + ((size_t)c * ds->height + y) * ds->width;
            int sy = y - p->top;
            if (sy < 0 || sy >= in->height) { memset(row, 0, (size_t)ds->width); continue; }
            // destination row precedes (or is) its source: copy left to right with memmove
            memmove(row + p->left, src + ((size_t)c * in->height + sy) * in->width, (size_t)in->width);
            memset(row, 0, (size_t)p->left);
            memset(row + p->left + in->width, 0, (size_t)(ds->width - p->left - in->width));
        }
    if (!in->segmentation) { labels[0] = lab_small[0]; return 0; }
    for (int y = 0; y < ds->height; y++) {
        int32_t *row = labels + (size_t)y * ds->width;
        int sy = y - p->top;
        if (sy < 0 || sy >= in->height) { for (int x = 0; x < ds->width; x++) row[x] = DATA_IGNORE_LABEL; continue; }
        memmove(row + p->left, lab_src + (size_t)sy * in->width, sizeof(int32_t) * (size_t)in->width);
        for (int x = 0; x < p->left; x++) row[x] = DATA_IGNORE_LABEL;
        for (int x = p->left + in->width; x < ds->width; x++) row[x] = DATA_IGNORE_LABEL;
    }
    return 0;
}

static void pad_free(Dataset *ds) {
    Pad *p = ds->impl;
    if (p) { dataset_free(p->inner); free(p); }
    free(ds);
}

int dataset_pad(Dataset **dsp, int size, char *err, size_t errlen) {
    Dataset *in = *dsp;
    if (in->height <= 0 || in->width <= 0 || !in->get) {
        snprintf(err, errlen, "--pad-to %d: dataset %s has images of mixed sizes (use its own crop/resize options)", size, in->name);
        return -1;
    }
    if (size < in->height || size < in->width) {
        snprintf(err, errlen, "--pad-to %d is smaller than dataset %s's %dx%d images", size, in->name, in->height, in->width);
        return -1;
    }
    if (size == in->height && size == in->width) return 0;
    Dataset *ds = calloc(1, sizeof *ds);
    Pad *p = calloc(1, sizeof *p);
    if (!ds || !p) { free(ds); free(p); snprintf(err, errlen, "out of memory"); return -1; }
    *ds = *in;
    ds->get_sample = NULL;   // samples through pad_get (dataset_get_sample falls back to get)
    snprintf(ds->name, sizeof ds->name, "%.50s+pad", in->name);
    ds->height = ds->width = size;
    ds->get = pad_get;
    ds->free = pad_free;
    ds->impl = p;
    p->inner = in;
    p->top = (size - in->height) / 2;
    p->left = (size - in->width) / 2;
    p->img_bytes = (size_t)in->channels * in->height * in->width;
    *dsp = ds;
    return 0;
}
