// trainer/data/segsets.c — "ade20k:DIR" and "cityscapes:DIR": image/label-map pairs of any size.
//   ade20k: DIR/images/{training,validation}/NAME.jpg + DIR/annotations/{training,validation}/NAME.png
//     (ADEChallengeData2016); label 0 ("other") is ignored, 1..150 become classes 0..149.
//   cityscapes: DIR/leftImg8bit/{train,val}/CITY/X_leftImg8bit.png + DIR/gtFine/{train,val}/CITY/
//     X_gtFine_labelTrainIds.png (0..18, 255), or X_gtFine_labelIds.png mapped to the 19 train ids.
// At open every pair is listed and both headers read, so a missing split folder, an image without
// its label map or of another size fails before training, naming the file; with DataOptions.verify
// every file is decoded and every label checked too. Otherwise a corrupt file or a label outside the
// classes fails in the loader, naming the file (and the pixel).
#include "trainer/data/data.h"
// defines: segsets_open (used by dataset.c)

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char **images, **masks;
    int16_t *lut_of;           // per pair: which table (0: lut[0], 1: lut[1])
    long n, cap;
    int16_t lut[2][256];       // label map byte -> class, 255 ignore, -1 invalid
    int classes;
    char what[2][64];          // "ADE20K label (0..150)" ... for messages
} SegSet;

static int is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }
static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}
// Paths through vsnprintf so -Wformat-truncation does not guess at lengths; over-long paths are cut.
static void pathf(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *dst, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}
static void path_join(char *dst, size_t n, const char *a, const char *b) { pathf(dst, n, "%s/%s", a, b); }

static void free_names(char **v, long n) { for (long i = 0; i < n; i++) free(v[i]); free(v); }

// Sorted entries of dir whose names end in one of sufs (NULL-terminated; NULL: all but dot files).
static int list_dir(const char *dir, const char *const *sufs, char ***names, long *count, char *err, size_t errlen) {
    *names = NULL; *count = 0;
    DIR *d = opendir(dir);
    if (!d) { snprintf(err, errlen, "%s: cannot open directory (missing split folder?)", dir); return -1; }
    long cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int ok = !sufs;
        for (const char *const *s = sufs; s && *s && !ok; s++) ok = ends_with(e->d_name, *s);
        if (!ok) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            char **t = realloc(*names, sizeof(char *) * cap);
            if (!t) { closedir(d); free_names(*names, *count); *names = NULL; snprintf(err, errlen, "out of memory"); return -1; }
            *names = t;
        }
        if (!((*names)[*count] = strdup(e->d_name))) { closedir(d); snprintf(err, errlen, "out of memory"); return -1; }
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof(char *), cmp_str);
    return 0;
}

static int push(SegSet *s, const char *img, const char *mask, int lut) {
    if (s->n == s->cap) {
        long cap = s->cap ? 2 * s->cap : 256;
        char **a = realloc(s->images, sizeof(char *) * cap);
        if (!a) return -1;
        s->images = a;
        char **b = realloc(s->masks, sizeof(char *) * cap);
        if (!b) return -1;
        s->masks = b;
        int16_t *l = realloc(s->lut_of, sizeof(int16_t) * cap);
        if (!l) return -1;
        s->lut_of = l;
        s->cap = cap;
    }
    s->images[s->n] = strdup(img);
    s->masks[s->n] = strdup(mask);
    s->lut_of[s->n] = (int16_t)lut;
    if (!s->images[s->n] || !s->masks[s->n]) return -1;
    s->n++;
    return 0;
}

static void ss_free(Dataset *ds) {
    SegSet *s = ds->impl;
    if (s) {
        for (long i = 0; i < s->n; i++) { free(s->images[i]); free(s->masks[i]); }
        free(s->images); free(s->masks); free(s->lut_of); free(s);
    }
    free(ds);
}

static int ss_get_sample(Dataset *ds, long i, Sample *out, char *err, size_t errlen) {
    SegSet *s = ds->impl;
    uint8_t *px = NULL, *mk = NULL;
    int w, h, c, mw, mh, mc, rc = -1;
    if (image_read_u8(s->images[i], 1, &px, &w, &h, &c, err, errlen)) return -1;
    if (png_read_u8(s->masks[i], 1, &mk, &mw, &mh, &mc, err, errlen)) goto done;
    if (mc != 1) {
        snprintf(err, errlen, "%s: label map has %d channels; want an 8-bit label map (gray or palette)", s->masks[i], mc);
        goto done;
    }
    if (mw != w || mh != h) {
        snprintf(err, errlen, "%s: label map is %dx%d but its image %s is %dx%d", s->masks[i], mw, mh, s->images[i], w, h);
        goto done;
    }
    if (sample_reserve(out, 3, h, w)) { snprintf(err, errlen, "out of memory for a %dx%d sample", w, h); goto done; }
    size_t hw = (size_t)w * h;
    const int16_t *lut = s->lut[s->lut_of[i]];
    for (size_t p = 0; p < hw; p++) {
        int v = lut[mk[p]];
        if (v < 0) {
            snprintf(err, errlen, "%s: label %d at pixel (%zu, %zu) is outside the classes (%s)", s->masks[i], mk[p],
                     p % (size_t)w, p / (size_t)w, s->what[s->lut_of[i]]);
            goto done;
        }
        out->lab[p] = (uint8_t)v;
    }
    for (int ch = 0; ch < 3; ch++)   // HWC -> CHW
        for (size_t p = 0; p < hw; p++) out->img[ch * hw + p] = px[p * 3 + ch];
    rc = 0;
done:
    free(px); free(mk);
    return rc;
}

// Both headers of every pair: the image must be 3-channel-decodable and the label map 8-bit one
// channel of the same size. The largest height and width go to ds.
static int check_headers(SegSet *s, Dataset *ds, char *err, size_t errlen) {
    for (long i = 0; i < s->n; i++) {
        int w, h, c, mw, mh, mc;
        if (image_probe(s->images[i], &w, &h, &c, err, errlen) || image_probe(s->masks[i], &mw, &mh, &mc, err, errlen))
            return -1;
        if (mc != 1) {
            snprintf(err, errlen, "%s: label map is not a one-channel (gray or palette) PNG", s->masks[i]);
            return -1;
        }
        if (mw != w || mh != h) {
            snprintf(err, errlen, "%s: label map is %dx%d but its image %s is %dx%d", s->masks[i], mw, mh, s->images[i], w, h);
            return -1;
        }
        if (h > ds->max_height) ds->max_height = h;
        if (w > ds->max_width) ds->max_width = w;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------

static int add_ade(SegSet *s, const char *root, const char *split, char *err, size_t errlen) {
    char idir[4096], adir[4096];
    pathf(idir, sizeof idir, "%s/images/%s", root, split);
    pathf(adir, sizeof adir, "%s/annotations/%s", root, split);
    if (!is_dir(idir) || !is_dir(adir)) {
        snprintf(err, errlen, "ade20k:%s: missing split folder %s (want the ADEChallengeData2016 layout: "
                 "images/{training,validation}/*.jpg and annotations/{training,validation}/*.png)", root,
                 is_dir(idir) ? adir : idir);
        return -1;
    }
    static const char *const sufs[] = { ".jpg", ".jpeg", ".JPG", ".png", NULL };
    char **names; long n;
    if (list_dir(idir, sufs, &names, &n, err, errlen)) return -1;
    for (long i = 0; i < n; i++) {
        char ip[4096], mp[4096];
        path_join(ip, sizeof ip, idir, names[i]);
        const char *dot = strrchr(names[i], '.');
        pathf(mp, sizeof mp, "%s/%.*s.png", adir, (int)(dot - names[i]), names[i]);
        if (!is_file(mp)) {
            snprintf(err, errlen, "%s: image without its annotation (expected %s)", ip, mp);
            free_names(names, n);
            return -1;
        }
        if (push(s, ip, mp, 0)) { free_names(names, n); snprintf(err, errlen, "out of memory"); return -1; }
    }
    free_names(names, n);
    return 0;
}

// Cityscapes labelIds -> trainIds (cityscapesScripts' labels.py); other ids 0..33 and -1 are ignored.
static const int cs_train_of_id[34] = {
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5,
    255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18 };

static int add_cityscapes(SegSet *s, const char *root, const char *split, char *err, size_t errlen) {
    char sdir[4096];
    pathf(sdir, sizeof sdir, "%s/leftImg8bit/%s", root, split);
    char g[4096];
    pathf(g, sizeof g, "%s/gtFine/%s", root, split);
    if (!is_dir(sdir) || !is_dir(g)) {
        snprintf(err, errlen, "cityscapes:%s: missing split folder %s (want leftImg8bit/{train,val}/CITY/ and "
                 "gtFine/{train,val}/CITY/)", root, is_dir(sdir) ? g : sdir);
        return -1;
    }
    char **cities; long nc;
    if (list_dir(sdir, NULL, &cities, &nc, err, errlen)) return -1;
    static const char *const sufs[] = { "_leftImg8bit.png", "_leftImg8bit.jpg", NULL };
    for (long c = 0; c < nc; c++) {
        char cdir[4096];
        path_join(cdir, sizeof cdir, sdir, cities[c]);
        if (!is_dir(cdir)) continue;
        char **names; long n;
        if (list_dir(cdir, sufs, &names, &n, err, errlen)) { free_names(cities, nc); return -1; }
        for (long i = 0; i < n; i++) {
            char ip[4096], mp[4096], mp2[4096];
            int stem = (int)(strlen(names[i]) - strlen("_leftImg8bit.png"));
            path_join(ip, sizeof ip, cdir, names[i]);
            pathf(mp, sizeof mp, "%s/%s/%.*s_gtFine_labelTrainIds.png", g, cities[c], stem, names[i]);
            pathf(mp2, sizeof mp2, "%s/%s/%.*s_gtFine_labelIds.png", g, cities[c], stem, names[i]);
            int lut = 0;
            if (!is_file(mp)) {
                if (!is_file(mp2)) {
                    snprintf(err, errlen, "%s: image without its label map (expected %s or %s)", ip, mp, mp2);
                    free_names(names, n); free_names(cities, nc);
                    return -1;
                }
                memcpy(mp, mp2, sizeof mp);
                lut = 1;
            }
            if (push(s, ip, mp, lut)) { free_names(names, n); free_names(cities, nc); snprintf(err, errlen, "out of memory"); return -1; }
        }
        free_names(names, n);
    }
    free_names(cities, nc);
    return 0;
}

int segsets_open(const char *kind, const char *root, DataSplit split, const DataOptions *opt, Dataset **out,
                 char *err, size_t errlen) {
    Dataset *ds = calloc(1, sizeof *ds);
    SegSet *s = calloc(1, sizeof *s);
    if (!ds || !s) { free(ds); free(s); snprintf(err, errlen, "out of memory"); return -1; }
    ds->impl = s; ds->free = ss_free; ds->get_sample = ss_get_sample; ds->segmentation = 1;
    ds->channels = 3;   // height = width = 0: any size
    snprintf(ds->name, sizeof ds->name, "%s", kind);
    int ade = strcmp(kind, "ade20k") == 0;
    for (int t = 0; t < 2; t++)
        for (int v = 0; v < 256; v++) s->lut[t][v] = -1;
    if (ade) {
        s->classes = 150;
        s->lut[0][0] = 255;
        for (int v = 1; v <= 150; v++) s->lut[0][v] = (int16_t)(v - 1);
        snprintf(s->what[0], sizeof s->what[0], "ADE20K labels are 0 = ignore and 1..150");
        if (add_ade(s, root, split == SPLIT_TEST ? "validation" : "training", err, errlen)) goto fail;
    } else {
        s->classes = 19;
        for (int v = 0; v < 19; v++) s->lut[0][v] = (int16_t)v;
        s->lut[0][255] = 255;
        for (int v = 0; v < 34; v++) s->lut[1][v] = (int16_t)cs_train_of_id[v];
        s->lut[1][255] = 255;   // id -1 (license plate) as stored in 8 bits
        snprintf(s->what[0], sizeof s->what[0], "labelTrainIds are 0..18 and 255 = ignore");
        snprintf(s->what[1], sizeof s->what[1], "labelIds are 0..33");
        if (add_cityscapes(s, root, split == SPLIT_TEST ? "val" : "train", err, errlen)) goto fail;
    }
    if (s->n == 0) {
        snprintf(err, errlen, "%s:%s: no images in the %s split", kind, root, split == SPLIT_TEST ? "validation" : "training");
        goto fail;
    }
    ds->n = s->n;
    ds->classes = s->classes;
    if (check_headers(s, ds, err, errlen)) goto fail;
    if (opt && opt->verify) {
        Sample smp = { 0 };
        for (long i = 0; i < s->n; i++)
            if (ss_get_sample(ds, i, &smp, err, errlen)) { sample_free(&smp); goto fail; }
        sample_free(&smp);
    }
    *out = ds;
    return 0;
fail:
    ss_free(ds);
    return -1;
}
