// trainer/data/segfolder.c — image/mask PNG pairs from a folder, read on demand by the loader.
// Layouts (first match wins):
//   DIR/leftImg8bit/{train,val}/CITY/X_leftImg8bit.png + DIR/gtFine/.../X_gtFine_labelTrainIds.png
//     (Cityscapes; test split = val; 19 classes; 255 = ignore)
//   DIR/train/{images,masks}/NAME.png and DIR/val/ (or DIR/test/) for the test split
//   DIR/{images,masks}/NAME.png, used for both splits
// Masks are 8-bit label maps (gray or palette indices); 255 is ignored.
#include "trainer/data/data.h"
// defines: segfolder_open (used by dataset.c)

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char **images, **masks;
    long n, cap;
} SegFolder;

// Not inlined so -Wformat-truncation does not guess at path lengths; over-long paths are cut.
__attribute__((noinline)) static void path_join(char *dst, size_t n, const char *a, const char *b) {
    snprintf(dst, n, "%s/%s", a, b);
}

static int is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }
static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int push(SegFolder *s, const char *img, const char *mask) {
    if (s->n == s->cap) {
        long cap = s->cap ? s->cap * 2 : 256;
        char **a = realloc(s->images, sizeof(char *) * cap), **b;
        if (!a) return -1;
        s->images = a;
        b = realloc(s->masks, sizeof(char *) * cap);
        if (!b) return -1;
        s->masks = b;
        s->cap = cap;
    }
    s->images[s->n] = strdup(img);
    s->masks[s->n] = strdup(mask);
    if (!s->images[s->n] || !s->masks[s->n]) return -1;
    s->n++;
    return 0;
}

// Sorted names in dir ending in suffix.
static int list_dir(const char *dir, const char *suffix, char ***names, long *count, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    *names = NULL; *count = 0;
    if (!d) { snprintf(err, errlen, "%s: cannot open directory", dir); return -1; }
    long cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, suffix)) continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 64;
            char **t = realloc(*names, sizeof(char *) * cap);
            if (!t) { closedir(d); snprintf(err, errlen, "out of memory"); return -1; }
            *names = t;
        }
        (*names)[(*count)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof(char *), cmp_str);
    return 0;
}
static void free_names(char **names, long n) { for (long i = 0; i < n; i++) free(names[i]); free(names); }

static int add_pairs(SegFolder *s, const char *imgdir, const char *maskdir, char *err, size_t errlen) {
    char **names; long n;
    if (list_dir(imgdir, ".png", &names, &n, err, errlen)) return -1;
    char ip[4096], mp[4096];
    for (long i = 0; i < n; i++) {
        path_join(ip, sizeof ip, imgdir, names[i]);
        path_join(mp, sizeof mp, maskdir, names[i]);
        if (!is_file(mp)) {
            snprintf(err, errlen, "%s: no mask for image %s", mp, ip);
            free_names(names, n);
            return -1;
        }
        if (push(s, ip, mp)) { snprintf(err, errlen, "out of memory"); free_names(names, n); return -1; }
    }
    free_names(names, n);
    return 0;
}

static int add_cityscapes(SegFolder *s, const char *root, const char *split, char *err, size_t errlen) {
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/leftImg8bit/%s", root, split);
    char **cities; long nc;
    if (list_dir(sdir, "", &cities, &nc, err, errlen)) return -1;
    for (long c = 0; c < nc; c++) {
        char cdir[4096];
        path_join(cdir, sizeof cdir, sdir, cities[c]);
        if (!is_dir(cdir)) continue;
        char **names; long n;
        if (list_dir(cdir, "_leftImg8bit.png", &names, &n, err, errlen)) { free_names(cities, nc); return -1; }
        for (long i = 0; i < n; i++) {
            char ip[4096], mp[4096];
            size_t stem = strlen(names[i]) - strlen("_leftImg8bit.png");
            path_join(ip, sizeof ip, cdir, names[i]);
            snprintf(mp, sizeof mp, "%s/gtFine/%s/%s/%.*s_gtFine_labelTrainIds.png", root, split,
                     cities[c], (int)stem, names[i]);
            if (!is_file(mp)) {
                snprintf(err, errlen, "%s: no labelTrainIds mask for image %s", mp, ip);
                free_names(names, n); free_names(cities, nc);
                return -1;
            }
            if (push(s, ip, mp)) { free_names(names, n); free_names(cities, nc); snprintf(err, errlen, "out of memory"); return -1; }
        }
        free_names(names, n);
    }
    free_names(cities, nc);
    return 0;
}

static void sf_free(Dataset *ds) {
    SegFolder *s = ds->impl;
    if (s) {
        for (long i = 0; i < s->n; i++) { free(s->images[i]); free(s->masks[i]); }
        free(s->images); free(s->masks); free(s);
    }
    free(ds);
}

// Loads pair i, checking sizes; img_out NULL just reads the mask (class scan).
static int sf_load(Dataset *ds, long i, uint8_t *img, int32_t *labels, int *max_label, char *err, size_t errlen) {
    SegFolder *s = ds->impl;
    uint8_t *px = NULL, *mk = NULL;
    int w, h, c, mw, mh, mc;
    if (img) {
        if (png_read_u8(s->images[i], 0, &px, &w, &h, &c, err, errlen)) return -1;
        if (w != ds->width || h != ds->height || c != ds->channels) {
            snprintf(err, errlen, "%s: image is %dx%dx%d but the dataset's first image is %dx%dx%d "
                     "(all images must have one size, or give --crop S for sets of mixed sizes)", s->images[i], w, h, c,
                     ds->width, ds->height, ds->channels);
            free(px);
            return -1;
        }
    }
    if (png_read_u8(s->masks[i], 1, &mk, &mw, &mh, &mc, err, errlen)) { free(px); return -1; }
    if (mc != 1) {
        snprintf(err, errlen, "%s: mask has %d channels; want an 8-bit label map (gray or palette)", s->masks[i], mc);
        free(px); free(mk);
        return -1;
    }
    int iw = ds->width, ih = ds->height, ic;
    // the class scan (no image) checks each mask against its own image's header, so sets of mixed
    // sizes open (for the crop pipeline) and a mismatched pair still fails before training
    if (!img && image_probe(s->images[i], &iw, &ih, &ic, err, errlen)) { free(mk); return -1; }
    if (mw != iw || mh != ih) {
        snprintf(err, errlen, "%s: mask/image size mismatch: mask is %dx%d, image %s is %dx%d",
                 s->masks[i], mw, mh, s->images[i], iw, ih);
        free(px); free(mk);
        return -1;
    }
    size_t hw = (size_t)mw * mh;
    for (size_t p = 0; p < hw; p++) {
        int v = mk[p];
        if (max_label) { if (v != DATA_IGNORE_LABEL && v > *max_label) *max_label = v; continue; }
        if (v != DATA_IGNORE_LABEL && v >= ds->classes) {
            snprintf(err, errlen, "%s: label %d at pixel (%zu, %zu) is not below --classes %d (255 = ignore)",
                     s->masks[i], v, p % mw, p / mw, ds->classes);
            free(px); free(mk);
            return -1;
        }
        labels[p] = v;
    }
    if (img)  // HWC -> CHW
        for (int ch = 0; ch < c; ch++)
            for (size_t p = 0; p < hw; p++) img[ch * hw + p] = px[p * c + ch];
    free(px); free(mk);
    return 0;
}

static int sf_get(Dataset *ds, long i, uint8_t *img, int32_t *labels, char *err, size_t errlen) {
    return sf_load(ds, i, img, labels, NULL, err, errlen);
}

// Pair i at its own size (the crop pipeline; a set of mixed sizes).
static int sf_get_sample(Dataset *ds, long i, Sample *out, char *err, size_t errlen) {
    SegFolder *s = ds->impl;
    uint8_t *px = NULL, *mk = NULL;
    int w, h, c, mw, mh, mc, rc = -1;
    if (png_read_u8(s->images[i], 0, &px, &w, &h, &c, err, errlen)) return -1;
    if (png_read_u8(s->masks[i], 1, &mk, &mw, &mh, &mc, err, errlen)) goto done;
    if (c != ds->channels) {
        snprintf(err, errlen, "%s: image has %d channels but the dataset's first image has %d", s->images[i], c, ds->channels);
        goto done;
    }
    if (mc != 1) {
        snprintf(err, errlen, "%s: mask has %d channels; want an 8-bit label map (gray or palette)", s->masks[i], mc);
        goto done;
    }
    if (mw != w || mh != h) {
        snprintf(err, errlen, "%s: mask/image size mismatch: mask is %dx%d, image %s is %dx%d", s->masks[i], mw, mh,
                 s->images[i], w, h);
        goto done;
    }
    if (sample_reserve(out, c, h, w)) { snprintf(err, errlen, "out of memory for a %dx%d sample", w, h); goto done; }
    size_t hw = (size_t)w * h;
    for (size_t p = 0; p < hw; p++) {
        if (mk[p] != DATA_IGNORE_LABEL && mk[p] >= ds->classes) {
            snprintf(err, errlen, "%s: label %d at pixel (%zu, %zu) is not below --classes %d (255 = ignore)",
                     s->masks[i], mk[p], p % (size_t)w, p / (size_t)w, ds->classes);
            goto done;
        }
        out->lab[p] = mk[p];
    }
    for (int ch = 0; ch < c; ch++)
        for (size_t p = 0; p < hw; p++) out->img[ch * hw + p] = px[p * c + ch];
    rc = 0;
done:
    free(px); free(mk);
    return rc;
}

int segfolder_open(const char *root, DataSplit split, const DataOptions *opt, Dataset **out, char *err, size_t errlen) {
    Dataset *ds = calloc(1, sizeof *ds);
    SegFolder *s = calloc(1, sizeof *s);
    if (!ds || !s) { free(ds); free(s); snprintf(err, errlen, "out of memory"); return -1; }
    ds->impl = s; ds->free = sf_free; ds->get = sf_get; ds->get_sample = sf_get_sample; ds->segmentation = 1;
    snprintf(ds->name, sizeof ds->name, "segfolder");
    char a[4096], b[4096];
    int cityscapes = 0;
    snprintf(a, sizeof a, "%s/leftImg8bit", root);
    if (is_dir(a)) {
        cityscapes = 1;
        if (add_cityscapes(s, root, split == SPLIT_TEST ? "val" : "train", err, errlen)) goto fail;
    } else {
        const char *sub = "";
        snprintf(a, sizeof a, "%s/train/images", root);
        if (is_dir(a)) {
            sub = "/train";
            if (split == SPLIT_TEST) {
                snprintf(a, sizeof a, "%s/val/images", root);
                sub = is_dir(a) ? "/val" : "/test";
            }
        }
        snprintf(a, sizeof a, "%s%s/images", root, sub);
        snprintf(b, sizeof b, "%s%s/masks", root, sub);
        if (!is_dir(a) || !is_dir(b)) {
            snprintf(err, errlen, "segfolder:%s: expected %s and %s (or a Cityscapes leftImg8bit/ + gtFine/ tree)",
                     root, a, b);
            goto fail;
        }
        if (add_pairs(s, a, b, err, errlen)) goto fail;
    }
    if (s->n == 0) { snprintf(err, errlen, "segfolder:%s: no .png images found", root); goto fail; }
    ds->n = s->n;
    // Size and channels from the first image; every other one must match (checked on load).
    uint8_t *px;
    if (png_read_u8(s->images[0], 0, &px, &ds->width, &ds->height, &ds->channels, err, errlen)) goto fail;
    free(px);
    if (opt->classes > 0) ds->classes = opt->classes;
    else if (cityscapes) ds->classes = 19;
    else {  // scan every mask for the largest label
        int maxl = -1;
        for (long i = 0; i < s->n; i++)
            if (sf_load(ds, i, NULL, NULL, &maxl, err, errlen)) goto fail;
        ds->classes = maxl + 1 > 1 ? maxl + 1 : 2;
    }
    *out = ds;
    return 0;
fail:
    sf_free(ds);
    return -1;
}
