// trainer/data/png_io.c — 8-bit PNG read/write through libpng (errors name the file).
#include "trainer/data/data.h"
// defines: png_read_u8, png_write_u8

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

typedef struct { char *err; size_t errlen; const char *path; } PngErr;

static void on_png_error(png_structp p, png_const_charp msg) {
    PngErr *e = png_get_error_ptr(p);
    snprintf(e->err, e->errlen, "%s: bad PNG: %s", e->path, msg);
    png_longjmp(p, 1);
}
static void on_png_warning(png_structp p, png_const_charp msg) { (void)p; (void)msg; }

int png_read_u8(const char *path, int keep_index, uint8_t **px, int *w, int *h, int *channels,
                char *err, size_t errlen) {
    *px = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    unsigned char sig[8];
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8)) {
        snprintf(err, errlen, "%s: bad PNG: not a PNG file (signature mismatch)", path);
        fclose(f);
        return -1;
    }
    PngErr pe = { err, errlen, path };
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &pe, on_png_error, on_png_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        snprintf(err, errlen, "%s: out of memory for libpng", path);
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return -1;
    }
    // volatile: modified between setjmp and a possible longjmp
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(p))) {
        free(buf); free(rows);
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return -1;
    }
    png_init_io(p, f);
    png_set_sig_bytes(p, 8);
    png_read_info(p, info);
    int ct = png_get_color_type(p, info), depth = png_get_bit_depth(p, info);
    if (depth == 16) png_set_strip_16(p);
    if (depth < 8) {
        if (ct == PNG_COLOR_TYPE_GRAY) png_set_expand_gray_1_2_4_to_8(p);
        else png_set_packing(p);
    }
    if (ct == PNG_COLOR_TYPE_PALETTE && !keep_index) png_set_palette_to_rgb(p);
    if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(p);
    if (png_get_valid(p, info, PNG_INFO_tRNS) && !(ct == PNG_COLOR_TYPE_PALETTE && keep_index))
        png_set_tRNS_to_alpha(p), png_set_strip_alpha(p);
    png_read_update_info(p, info);
    int c = png_get_channels(p, info);
    *w = (int)png_get_image_width(p, info);
    *h = (int)png_get_image_height(p, info);
    if (c != 1 && c != 3) {
        snprintf(err, errlen, "%s: bad PNG: %d channels after conversion (want gray or RGB)", path, c);
        png_longjmp(p, 1);
    }
    size_t stride = (size_t)*w * c;
    buf = malloc(stride * (size_t)*h);
    rows = malloc(sizeof(png_bytep) * (size_t)*h);
    if (!buf || !rows) {
        snprintf(err, errlen, "%s: out of memory for %dx%d image", path, *w, *h);
        png_longjmp(p, 1);
    }
    for (int y = 0; y < *h; y++) rows[y] = buf + stride * y;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    png_destroy_read_struct(&p, &info, NULL);
    fclose(f);
    free(rows);
    *channels = c;
    *px = buf;
    return 0;
}

int png_write_u8(const char *path, const uint8_t *px, int w, int h, int channels, char *err,
                 size_t errlen) {
    FILE *f = fopen(path, "wb");
    if (!f) { snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)); return -1; }
    PngErr pe = { err, errlen, path };
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, &pe, on_png_error, on_png_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info || setjmp(png_jmpbuf(p))) {
        if (!p || !info) snprintf(err, errlen, "%s: out of memory for libpng", path);
        png_destroy_write_struct(&p, &info);
        fclose(f);
        return -1;
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(px + (size_t)y * w * channels));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    if (fclose(f) != 0) { snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno)); return -1; }
    return 0;
}
