// trainer/data/fmnist.c — fashion-mnist (IDX files) and the derived fashion-mnist-seg set.
#include "trainer/data/data.h"
// defines: idx_read, data_splitmix64, fmnist_open (used by dataset.c)

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

uint64_t data_splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// IDX: magic 0x0000 0x08 ndim, ndim big-endian uint32 dims, then the bytes (type 0x08 = ubyte).
int idx_read(const char *path, uint8_t **data, int *ndim, int dims[4], char *err, size_t errlen) {
    *data = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
        return -1;
    }
    unsigned char hdr[4];
    if (gzread(f, hdr, 4) != 4) {
        snprintf(err, errlen, "%s: truncated IDX header (less than 4 bytes)", path);
        gzclose(f);
        return -1;
    }
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] < 1 || hdr[3] > 4) {
        snprintf(err, errlen, "%s: not an unsigned-byte IDX file (magic %02x%02x%02x%02x)", path,
                 hdr[0], hdr[1], hdr[2], hdr[3]);
        gzclose(f);
        return -1;
    }
    *ndim = hdr[3];
    size_t total = 1;
    for (int d = 0; d < *ndim; d++) {
        unsigned char b[4];
        if (gzread(f, b, 4) != 4) {
            snprintf(err, errlen, "%s: truncated IDX header (dimension %d missing)", path, d);
            gzclose(f);
            return -1;
        }
        dims[d] = (int)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
        if (dims[d] <= 0 || dims[d] > 100000000) {
            snprintf(err, errlen, "%s: bad IDX dimension %d = %d", path, d, dims[d]);
            gzclose(f);
            return -1;
        }
        if ((size_t)dims[d] > ((size_t)1 << 40) / total) {   // 4 dimensions of 10^8 overflow size_t
            snprintf(err, errlen, "%s: IDX dimensions promise more than 2^40 bytes", path);
            gzclose(f);
            return -1;
        }
        total *= (size_t)dims[d];
    }
    // The header promises `total` bytes; the buffer grows as they arrive, so a corrupt header
    // costs memory only for the bytes the file really holds (fuzz_idx found a 185 TB malloc).
    size_t cap = total < ((size_t)1 << 20) ? total : ((size_t)1 << 20), got = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    while (buf && got < total) {
        if (got == cap) {
            size_t ncap = total - cap < cap ? total : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap = ncap;
        }
        unsigned chunk = cap - got > (1u << 30) ? (1u << 30) : (unsigned)(cap - got);
        int r = gzread(f, buf + got, chunk);
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory for %zu bytes", path, total);
        gzclose(f);
        return -1;
    }
    // gzerror's message lives in the gzFile: copy it before gzclose frees it
    int zerr = 0;
    char zmsg[256];
    snprintf(zmsg, sizeof zmsg, "%s", gzerror(f, &zerr));
    gzclose(f);
    if (got < total) {
        snprintf(err, errlen, "%s: truncated IDX data: expected %zu bytes, got %zu%s%s", path, total,
                 got, zerr < 0 ? " (" : "", zerr < 0 ? zmsg : "");
        if (zerr < 0) strncat(err, ")", errlen - strlen(err) - 1);
        free(buf);
        return -1;
    }
    *data = buf;
    return 0;
}

// ---------------------------------------------------------------------------------------------

typedef struct {
    uint8_t *images;   // (n, 28, 28)
    uint8_t *labels;   // (n)
    long n;
    int test;
} Fmnist;

static int fm_get(Dataset *ds, long i, uint8_t *img, int32_t *labels, char *err, size_t errlen) {
    Fmnist *f = ds->impl;
    (void)err; (void)errlen;
    memcpy(img, f->images + (size_t)i * 784, 784);
    labels[0] = f->labels[i];
    return 0;
}

// Canvas c holds items 4c+k at (32*(k/2) + z%5, 32*(k%2) + (z>>32)%5), z = splitmix64(item id).
static int fmseg_get(Dataset *ds, long c, uint8_t *img, int32_t *labels, char *err, size_t errlen) {
    Fmnist *f = ds->impl;
    (void)err; (void)errlen;
    memset(img, 0, 64 * 64);
    for (int p = 0; p < 64 * 64; p++) labels[p] = 0;
    for (int k = 0; k < 4; k++) {
        long i = 4 * c + k;
        uint64_t z = data_splitmix64((uint64_t)i + (f->test ? 1000000u : 0u));
        int oy = 32 * (k / 2) + (int)(z % 5), ox = 32 * (k % 2) + (int)((z >> 32) % 5);
        const uint8_t *src = f->images + (size_t)i * 784;
        int cls = f->labels[i] + 1;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                uint8_t v = src[y * 28 + x];
                img[(oy + y) * 64 + ox + x] = v;
                labels[(oy + y) * 64 + ox + x] = v >= 51 ? cls : 0;
            }
    }
    return 0;
}

static void fm_free(Dataset *ds) {
    Fmnist *f = ds->impl;
    if (f) { free(f->images); free(f->labels); free(f); }
    free(ds);
}

static int read_part(const char *dir, const char *stem, uint8_t **data, int *ndim, int dims[4],
                     char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.gz", dir, stem);
    if (access(path, R_OK) != 0) {
        char plain[4096];
        snprintf(plain, sizeof plain, "%s/%s", dir, stem);
        if (access(plain, R_OK) == 0) return idx_read(plain, data, ndim, dims, err, errlen);
        snprintf(err, errlen, "%s: not found (nor %s); install dataset-fashion-mnist or pass --data-dir",
                 path, plain);
        return -1;
    }
    return idx_read(path, data, ndim, dims, err, errlen);
}

int fmnist_open(int seg, DataSplit split, const DataOptions *opt, Dataset **out, char *err, size_t errlen) {
    const char *dir = opt->data_dir && opt->data_dir[0] ? opt->data_dir : FMNIST_DEFAULT_DIR;
    const char *pre = split == SPLIT_TEST ? "t10k" : "train";
    char stem[64];
    int nd, dims[4], nd2, dims2[4];
    Fmnist *f = calloc(1, sizeof *f);
    Dataset *ds = calloc(1, sizeof *ds);
    if (!f || !ds) { free(f); free(ds); snprintf(err, errlen, "out of memory"); return -1; }
    ds->impl = f;
    ds->free = fm_free;
    snprintf(stem, sizeof stem, "%s-images-idx3-ubyte", pre);
    if (read_part(dir, stem, &f->images, &nd, dims, err, errlen)) goto fail;
    if (nd != 3 || dims[1] != 28 || dims[2] != 28) {
        snprintf(err, errlen, "%s/%s(.gz): expected (N, 28, 28) images, got %d dims", dir, stem, nd);
        goto fail;
    }
    snprintf(stem, sizeof stem, "%s-labels-idx1-ubyte", pre);
    if (read_part(dir, stem, &f->labels, &nd2, dims2, err, errlen)) goto fail;
    if (nd2 != 1 || dims2[0] != dims[0]) {
        snprintf(err, errlen, "%s/%s(.gz): %d labels for %d images", dir, stem, dims2[0], dims[0]);
        goto fail;
    }
    for (int i = 0; i < dims[0]; i++)
        if (f->labels[i] > 9) {
            snprintf(err, errlen, "%s/%s(.gz): label %d of item %d is not 0..9", dir, stem, f->labels[i], i);
            goto fail;
        }
    f->n = dims[0];
    f->test = split == SPLIT_TEST;
    if (seg) {
        snprintf(ds->name, sizeof ds->name, "fashion-mnist-seg");
        ds->n = f->n / 4;
        ds->channels = 1; ds->height = ds->width = 64; ds->classes = 11; ds->segmentation = 1;
        ds->get = fmseg_get;
    } else {
        snprintf(ds->name, sizeof ds->name, "fashion-mnist");
        ds->n = f->n;
        ds->channels = 1; ds->height = ds->width = 28; ds->classes = 10; ds->segmentation = 0;
        ds->get = fm_get;
    }
    *out = ds;
    return 0;
fail:
    fm_free(ds);
    return -1;
}
