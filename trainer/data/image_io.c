// trainer/data/image_io.c — JPEG through libjpeg-turbo's TurboJPEG API, format dispatch, header probes.
// Decoding stops on libjpeg's warnings too (TJFLAG_STOPONWARNING): a truncated JPEG would otherwise
// come back gray-filled and train on silently.
#include "trainer/data/data.h"
// defines: image_read_u8, image_probe, jpeg_write_u8, dataset_get_sample, sample_reserve, sample_free

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

static int read_file(const char *path, size_t max, unsigned char **buf, size_t *n, char *err, size_t errlen) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    size_t cap = 65536, len = 0;
    unsigned char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (len < cap || len >= max) break;
        unsigned char *nb = realloc(b, cap * 2);
        if (!nb) { free(b); b = NULL; break; }
        b = nb; cap *= 2;
    }
    int ioerr = ferror(f);
    fclose(f);
    if (!b) { snprintf(err, errlen, "%s: out of memory reading the file", path); return -1; }
    if (ioerr) { free(b); snprintf(err, errlen, "%s: read error", path); return -1; }
    *buf = b; *n = len;
    return 0;
}

static int is_jpeg(const unsigned char *b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }
static int is_png(const unsigned char *b, size_t n) { return n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0; }

static int jpeg_header(tjhandle tj, const char *path, const unsigned char *b, size_t n, int *w, int *h,
                       int *channels, char *err, size_t errlen) {
    int sub, cs;
    if (tjDecompressHeader3(tj, b, (unsigned long)n, w, h, &sub, &cs) != 0) {
        snprintf(err, errlen, "%s: bad JPEG: %s", path, tjGetErrorStr2(tj));
        return -1;
    }
    *channels = cs == TJCS_GRAY ? 1 : 3;
    return 0;
}

int image_read_u8(const char *path, int want_rgb, uint8_t **px, int *w, int *h, int *channels,
                  char *err, size_t errlen) {
    *px = NULL;
    unsigned char *b;
    size_t n;
    if (read_file(path, (size_t)1 << 31, &b, &n, err, errlen)) return -1;
    if (is_png(b, n)) {
        free(b);
        if (png_read_u8(path, 0, px, w, h, channels, err, errlen)) return -1;
        if (want_rgb && *channels == 1) {
            size_t hw = (size_t)*w * *h;
            uint8_t *rgb = malloc(hw * 3);
            if (!rgb) { free(*px); *px = NULL; snprintf(err, errlen, "%s: out of memory", path); return -1; }
            for (size_t p = 0; p < hw; p++) rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = (*px)[p];
            free(*px);
            *px = rgb; *channels = 3;
        }
        return 0;
    }
    if (!is_jpeg(b, n)) {
        free(b);
        snprintf(err, errlen, "%s: neither a JPEG nor a PNG file (first bytes do not match)", path);
        return -1;
    }
    tjhandle tj = tjInitDecompress();
    if (!tj) { free(b); snprintf(err, errlen, "%s: cannot start the JPEG decoder", path); return -1; }
    int c, rc = -1;
    if (jpeg_header(tj, path, b, n, w, h, &c, err, errlen) == 0) {
        if (want_rgb) c = 3;
        uint8_t *out = malloc((size_t)*w * *h * c);
        if (!out) snprintf(err, errlen, "%s: out of memory for a %dx%d image", path, *w, *h);
        else if (tjDecompress2(tj, b, (unsigned long)n, out, *w, 0, *h, c == 3 ? TJPF_RGB : TJPF_GRAY,
                               TJFLAG_STOPONWARNING | TJFLAG_ACCURATEDCT) != 0) {
            snprintf(err, errlen, "%s: bad JPEG: %s", path, tjGetErrorStr2(tj));
            free(out);
        } else {
            *px = out; *channels = c; rc = 0;
        }
    }
    tjDestroy(tj);
    free(b);
    return rc;
}

// PNG: IHDR is the first chunk (width, height, bit depth, color type at bytes 16..25).
int image_probe(const char *path, int *w, int *h, int *channels, char *err, size_t errlen) {
    unsigned char *b;
    size_t n;
    // the JPEG SOF sits after the APPn segments (EXIF up to 64 KiB): read a little more than that
    if (read_file(path, 200000, &b, &n, err, errlen)) return -1;
    int rc = -1;
    if (is_png(b, n)) {
        if (n < 26 || memcmp(b + 12, "IHDR", 4) != 0)
            snprintf(err, errlen, "%s: bad PNG: no IHDR chunk at the start", path);
        else {
            *w = (int)((uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19]);
            *h = (int)((uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23]);
            int ct = b[25];
            *channels = ct == 0 || ct == 4 || ct == 3 ? 1 : 3;   // gray, gray+alpha, palette (index) : RGB(A)
            if (*w <= 0 || *h <= 0) snprintf(err, errlen, "%s: bad PNG: size %dx%d", path, *w, *h);
            else rc = 0;
        }
    } else if (is_jpeg(b, n)) {
        tjhandle tj = tjInitDecompress();
        if (!tj) snprintf(err, errlen, "%s: cannot start the JPEG decoder", path);
        else { rc = jpeg_header(tj, path, b, n, w, h, channels, err, errlen); tjDestroy(tj); }
    } else {
        snprintf(err, errlen, "%s: neither a JPEG nor a PNG file (first bytes do not match)", path);
    }
    free(b);
    return rc;
}

int jpeg_write_u8(const char *path, const uint8_t *px, int w, int h, int channels, int quality,
                  char *err, size_t errlen) {
    tjhandle tj = tjInitCompress();
    if (!tj) { snprintf(err, errlen, "%s: cannot start the JPEG encoder", path); return -1; }
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    int rc = tjCompress2(tj, px, w, 0, h, channels == 3 ? TJPF_RGB : TJPF_GRAY, &jpg, &len,
                         channels == 3 ? TJSAMP_420 : TJSAMP_GRAY, quality, TJFLAG_ACCURATEDCT);
    if (rc != 0) snprintf(err, errlen, "%s: JPEG encoding failed: %s", path, tjGetErrorStr2(tj));
    tjDestroy(tj);
    if (rc != 0) { tjFree(jpg); return -1; }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(jpg, 1, len, f) != len || fclose(f) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        if (f) fclose(f);
        tjFree(jpg);
        return -1;
    }
    tjFree(jpg);
    return 0;
}

// ---------------------------------------------------------------------------------------------

int sample_reserve(Sample *s, int c, int h, int w) {
    size_t ni = (size_t)c * h * w, nl = (size_t)h * w;
    if (ni > s->img_cap) {
        uint8_t *p = realloc(s->img, ni);
        if (!p) return -1;
        s->img = p; s->img_cap = ni;
    }
    if (nl > s->lab_cap) {
        uint8_t *p = realloc(s->lab, nl);
        if (!p) return -1;
        s->lab = p; s->lab_cap = nl;
    }
    s->c = c; s->h = h; s->w = w;
    return 0;
}

void sample_free(Sample *s) {
    free(s->img); free(s->lab);
    memset(s, 0, sizeof *s);
}

// Fixed-size sets hand out int32 labels through get; narrowed here (their labels are < 255 or 255).
int dataset_get_sample(Dataset *ds, long i, Sample *s, char *err, size_t errlen) {
    if (ds->get_sample) return ds->get_sample(ds, i, s, err, errlen);
    if (!ds->segmentation || ds->height <= 0) {
        snprintf(err, errlen, "%s: not a segmentation set with images", ds->name);
        return -1;
    }
    size_t hw = (size_t)ds->height * ds->width;
    int32_t *lab = malloc(sizeof(int32_t) * hw);
    if (!lab || sample_reserve(s, ds->channels, ds->height, ds->width)) {
        free(lab);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = ds->get(ds, i, s->img, lab, err, errlen);
    for (size_t p = 0; rc == 0 && p < hw; p++) s->lab[p] = (uint8_t)(lab[p] >= 0 && lab[p] < 255 ? lab[p] : 255);
    free(lab);
    return rc;
}
