// trainer/run/checkpoint.c — one-file checkpoints: header, raw float arrays, CRC-32; atomic.
#include "trainer/run/run.h"
// defines: ckpt_save, ckpt_read_header, ckpt_load

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CKPT_MAGIC "SEGXCKPT"
#define CKPT_VERSION 2u   // 2: + loss scaler fields; 1 still loads

typedef struct { char magic[8]; uint32_t version; uint32_t header_bytes; } CkptPrefix;

static int wr(FILE *f, const void *p, size_t n, uLong *crc) {
    const unsigned char *b = p;
    for (size_t off = 0; off < n;) {  // crc32 takes uInt lengths
        size_t chunk = n - off > (1u << 30) ? (1u << 30) : n - off;
        *crc = crc32(*crc, b + off, (uInt)chunk);
        off += chunk;
    }
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

int ckpt_save(const char *path, const CkptHeader *h, const float *params, const float *buffers,
              const float *opt_state, char *err, size_t errlen) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) { snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); return -1; }
    CkptPrefix pre;
    memcpy(pre.magic, CKPT_MAGIC, 8);
    pre.version = CKPT_VERSION;
    pre.header_bytes = sizeof *h;
    uLong crc = crc32(0, Z_NULL, 0);
    int bad = wr(f, &pre, sizeof pre, &crc) || wr(f, h, sizeof *h, &crc) ||
              wr(f, params, sizeof(float) * h->n_params, &crc) ||
              wr(f, buffers, sizeof(float) * h->n_buffers, &crc) ||
              wr(f, opt_state, sizeof(float) * h->n_opt_state, &crc);
    uint32_t c32 = (uint32_t)crc;
    bad |= fwrite(&c32, 4, 1, f) != 1;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: checkpoint write failed: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    run_fsync_parent_dir(path);
    return 0;
}

int ckpt_exists(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s: cannot open the checkpoint to resume from: %s (fix it, or remove it to start "
                 "afresh; nothing in the run dir was changed)", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    int reg = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
    close(fd);
    if (!reg) {
        snprintf(err, errlen, "%s: the checkpoint to resume from is not a regular file (nothing in the run dir "
                 "was changed)", path);
        return -1;
    }
    return 1;
}

static FILE *open_checked(const char *path, CkptHeader *h, uLong *crc, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open checkpoint: %s", path, strerror(errno)); return NULL; }
    CkptPrefix pre;
    if (fread(&pre, sizeof pre, 1, f) != 1 || memcmp(pre.magic, CKPT_MAGIC, 8) != 0) {
        snprintf(err, errlen, "%s: not a segx-train checkpoint (bad magic)", path);
        fclose(f);
        return NULL;
    }
    // each version has exactly one header size; a version-1 header is a prefix of today's
    size_t want = pre.version == 1 ? CKPT_V1_HEADER_BYTES : sizeof *h;
    if (pre.version < 1 || pre.version > CKPT_VERSION || pre.header_bytes != want) {
        snprintf(err, errlen, "%s: checkpoint version %u (header %u bytes); this segx-train reads versions 1 to %u",
                 path, pre.version, pre.header_bytes, CKPT_VERSION);
        fclose(f);
        return NULL;
    }
    memset(h, 0, sizeof *h);   // fields a version-1 file does not have read as 0
    if (fread(h, want, 1, f) != 1) {
        snprintf(err, errlen, "%s: truncated checkpoint header", path);
        fclose(f);
        return NULL;
    }
    h->tag[sizeof h->tag - 1] = 0;
    *crc = crc32(crc32(0, Z_NULL, 0), (const Bytef *)&pre, sizeof pre);
    *crc = crc32(*crc, (const Bytef *)h, (uInt)want);
    return f;
}

int ckpt_read_header(const char *path, CkptHeader *h, char *err, size_t errlen) {
    uLong crc;
    FILE *f = open_checked(path, h, &crc, err, errlen);
    if (!f) return -1;
    fclose(f);
    return 0;
}

static int rd(FILE *f, void *p, size_t n, uLong *crc) {
    if (fread(p, 1, n, f) != n) return -1;
    const unsigned char *b = p;
    for (size_t off = 0; off < n;) {
        size_t chunk = n - off > (1u << 30) ? (1u << 30) : n - off;
        *crc = crc32(*crc, b + off, (uInt)chunk);
        off += chunk;
    }
    return 0;
}

int ckpt_load(const char *path, const CkptHeader *expect, CkptHeader *h, float *params,
              float *buffers, float *opt_state, char *err, size_t errlen) {
    uLong crc;
    FILE *f = open_checked(path, h, &crc, err, errlen);
    if (!f) return -1;
    if (strcmp(h->tag, expect->tag) != 0) {
        snprintf(err, errlen, "%s: checkpoint is for '%s', this run is '%s' (use another --out or drop --resume)",
                 path, h->tag, expect->tag);
        goto fail;
    }
    if (h->n_params != expect->n_params || h->n_buffers != expect->n_buffers || h->n_opt_state != expect->n_opt_state) {
        snprintf(err, errlen, "%s: checkpoint holds %llu params / %llu buffers / %llu optimizer values, "
                 "the model needs %llu / %llu / %llu", path, (unsigned long long)h->n_params,
                 (unsigned long long)h->n_buffers, (unsigned long long)h->n_opt_state,
                 (unsigned long long)expect->n_params, (unsigned long long)expect->n_buffers,
                 (unsigned long long)expect->n_opt_state);
        goto fail;
    }
    uint32_t stored;
    if (rd(f, params, sizeof(float) * h->n_params, &crc) || rd(f, buffers, sizeof(float) * h->n_buffers, &crc) ||
        rd(f, opt_state, sizeof(float) * h->n_opt_state, &crc) || fread(&stored, 4, 1, f) != 1) {
        snprintf(err, errlen, "%s: truncated checkpoint", path);
        goto fail;
    }
    if (stored != (uint32_t)crc) {
        snprintf(err, errlen, "%s: checkpoint CRC mismatch (file corrupt)", path);
        goto fail;
    }
    fclose(f);
    return 0;
fail:
    fclose(f);
    return -1;
}
