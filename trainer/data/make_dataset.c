// trainer/data/make_dataset.c — `segx-train --make-dataset ade20k:DIR|cityscapes:DIR`: a small,
// deterministic segmentation set in the real layouts, built from Fashion-MNIST items on textured
// backgrounds, with images of mixed sizes, so the ade20k:/cityscapes: readers, the crop pipeline and
// sliding-window evaluation are exercised (tests, the demo, examples) without downloading anything.
//   ade20k: images/{training,validation}/ADE_{train,val}_%08d.jpg + annotations/.../same.png;
//     label 1 = background ("wall"), 2..11 = the Fashion-MNIST classes, 0 (ignored) on a 1-pixel frame.
//   cityscapes: leftImg8bit/{train,val}/{aachen,bochum}/CITY_%06d_000019_leftImg8bit.png +
//     gtFine/.../CITY_%06d_000019_gtFine_labelIds.png (road 7 as background; items as ids 8, 11, 12,
//     13, 17, 19, 20, 21, 23, 24; 0 on the frame); the train split also has *_labelTrainIds.png.
// Sample i is the same whatever the count (--export-limit N: N training, N/3 validation images).
// Sizes: height 48..111, width 64..191 (from the sample's hash); 2..4 items, scaled x1..x2.
#include "trainer/data/data.h"
// defines: data_make_dataset

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FM_DEFAULT "/usr/share/datasets/fashion-mnist"
#define N_TRAIN 48
#define N_VAL 16

static int mkdirs(const char *path, char *err, size_t errlen) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "%s: cannot create directory: %s", tmp, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

// Base colours of the background and the 10 item classes.
static const uint8_t palette[11][3] = {
    { 120, 120, 120 }, { 180, 120, 120 }, { 6, 230, 230 }, { 80, 50, 50 }, { 4, 200, 3 }, { 120, 120, 80 },
    { 140, 140, 140 }, { 204, 5, 255 }, { 230, 230, 230 }, { 4, 250, 7 }, { 224, 5, 255 } };

static const int cs_item_ids[10] = { 8, 11, 12, 13, 17, 19, 20, 21, 23, 24 };
static const int cs_train_of[34] = {
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5,
    255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18 };

// Sample s of a split: RGB image (h, w, 3) and per-pixel class 0 = background, 1..10 = item class + 1,
// 255 = frame. Items come from the Fashion-MNIST training images (test split: t10k).
static void render(const uint8_t *fm_img, const uint8_t *fm_lab, long fm_n, uint64_t key, int h, int w,
                   uint8_t *rgb, uint8_t *cls) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint64_t z = data_splitmix64(key ^ ((uint64_t)y << 20) ^ (uint64_t)x);
            int n = (int)(z % 31) - 15;   // texture
            size_t p = (size_t)y * w + x;
            for (int k = 0; k < 3; k++) {
                int v = palette[0][k] + n + (y * 40) / h;
                rgb[3 * p + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            cls[p] = 0;
        }
    int items = 2 + (int)(data_splitmix64(key ^ 0x17) % 3);
    for (int it = 0; it < items; it++) {
        uint64_t z = data_splitmix64(key ^ (0x1000ull + (uint64_t)it));
        long idx = (long)(z % (uint64_t)fm_n);
        int sc = 1 + (int)((z >> 20) % 2);
        int size = 28 * sc;
        int oy = h > size ? (int)((z >> 28) % (uint64_t)(h - size + 1)) : 0;
        int ox = w > size ? (int)((z >> 40) % (uint64_t)(w - size + 1)) : 0;
        int c = fm_lab[idx] + 1;
        const uint8_t *src = fm_img + (size_t)idx * 784;
        for (int y = 0; y < size && oy + y < h; y++)
            for (int x = 0; x < size && ox + x < w; x++) {
                int v = src[(y / sc) * 28 + x / sc];
                if (v < 51) continue;
                size_t p = (size_t)(oy + y) * w + ox + x;
                for (int k = 0; k < 3; k++) rgb[3 * p + k] = (uint8_t)(palette[c][k] * (128 + v / 2) / 256);
                cls[p] = (uint8_t)c;
            }
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (y == 0 || x == 0 || y == h - 1 || x == w - 1) cls[(size_t)y * w + x] = 255;
}

static int load_fm(const char *dir, const char *pre, uint8_t **img, uint8_t **lab, long *n, char *err, size_t errlen) {
    char path[4200];
    int nd, dims[4], nd2, dims2[4];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    if (idx_read(path, img, &nd, dims, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
    if (idx_read(path, lab, &nd2, dims2, err, errlen)) { free(*img); *img = NULL; return -1; }
    if (nd != 3 || dims[1] != 28 || dims[2] != 28 || nd2 != 1 || dims2[0] != dims[0]) {
        snprintf(err, errlen, "%s: unexpected Fashion-MNIST shapes", dir);
        free(*img); free(*lab); *img = *lab = NULL;
        return -1;
    }
    *n = dims[0];
    return 0;
}

long data_make_dataset(const char *spec, const char *fm_dir, char *err, size_t errlen) {
    return data_make_dataset_n(spec, fm_dir, N_TRAIN, N_VAL, err, errlen);
}

long data_make_dataset_n(const char *spec, const char *fm_dir, long n_train, long n_val, char *err, size_t errlen) {
    int ade;
    const char *root;
    if (strncmp(spec, "ade20k:", 7) == 0 && spec[7]) { ade = 1; root = spec + 7; }
    else if (strncmp(spec, "cityscapes:", 11) == 0 && spec[11]) { ade = 0; root = spec + 11; }
    else { snprintf(err, errlen, "--make-dataset '%s': want ade20k:DIR or cityscapes:DIR", spec); return -1; }
    if (!fm_dir || !fm_dir[0]) fm_dir = FM_DEFAULT;
    long written = 0;
    for (int split = 0; split < 2; split++) {
        uint8_t *fimg = NULL, *flab = NULL;
        long fn;
        if (load_fm(fm_dir, split ? "t10k" : "train", &fimg, &flab, &fn, err, errlen)) return -1;
        long n = split ? n_val : n_train;
        const char *ade_split = split ? "validation" : "training";
        const char *cs_split = split ? "val" : "train";
        for (long i = 0; i < n; i++) {
            uint64_t key = data_splitmix64(((uint64_t)ade << 40) ^ ((uint64_t)split << 32) ^ (uint64_t)i);
            int h = 48 + (int)(key % 64), w = 64 + (int)((key >> 16) % 128);
            uint8_t *rgb = malloc((size_t)h * w * 3), *cls = malloc((size_t)h * w);
            if (!rgb || !cls) { free(rgb); free(cls); free(fimg); free(flab); snprintf(err, errlen, "out of memory"); return -1; }
            render(fimg, flab, fn, key, h, w, rgb, cls);
            char dir[4200], mdir[4200], ip[4400], mp[4400];
            int rc = 0;
            if (ade) {
                snprintf(dir, sizeof dir, "%s/images/%s", root, ade_split);
                snprintf(mdir, sizeof mdir, "%s/annotations/%s", root, ade_split);
                snprintf(ip, sizeof ip, "%s/ADE_%s_%08ld.jpg", dir, split ? "val" : "train", i + 1);
                snprintf(mp, sizeof mp, "%s/ADE_%s_%08ld.png", mdir, split ? "val" : "train", i + 1);
                for (size_t p = 0; p < (size_t)h * w; p++) cls[p] = cls[p] == 255 ? 0 : (uint8_t)(cls[p] + 1);
                rc = mkdirs(dir, err, errlen) || mkdirs(mdir, err, errlen) ||
                     jpeg_write_u8(ip, rgb, w, h, 3, 90, err, errlen) || png_write_u8(mp, cls, w, h, 1, err, errlen);
            } else {
                const char *city = i % 2 ? "bochum" : "aachen";
                snprintf(dir, sizeof dir, "%s/leftImg8bit/%s/%s", root, cs_split, city);
                snprintf(mdir, sizeof mdir, "%s/gtFine/%s/%s", root, cs_split, city);
                snprintf(ip, sizeof ip, "%s/%s_%06ld_000019_leftImg8bit.png", dir, city, i);
                snprintf(mp, sizeof mp, "%s/%s_%06ld_000019_gtFine_labelIds.png", mdir, city, i);
                for (size_t p = 0; p < (size_t)h * w; p++)
                    cls[p] = cls[p] == 255 ? 0 : cls[p] == 0 ? 7 : (uint8_t)cs_item_ids[cls[p] - 1];
                rc = mkdirs(dir, err, errlen) || mkdirs(mdir, err, errlen) ||
                     png_write_u8(ip, rgb, w, h, 3, err, errlen) || png_write_u8(mp, cls, w, h, 1, err, errlen);
                if (!rc && !split) {
                    for (size_t p = 0; p < (size_t)h * w; p++) cls[p] = (uint8_t)cs_train_of[cls[p]];
                    snprintf(mp, sizeof mp, "%s/%s_%06ld_000019_gtFine_labelTrainIds.png", mdir, city, i);
                    rc = png_write_u8(mp, cls, w, h, 1, err, errlen);
                }
            }
            free(rgb); free(cls);
            if (rc) { free(fimg); free(flab); return -1; }
            written++;
        }
        free(fimg); free(flab);
    }
    return written;
}
