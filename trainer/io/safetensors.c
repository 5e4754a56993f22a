// trainer/io/safetensors.c — reading and writing safetensors files (see safetensors.h); the JSON
// header through jansson.
#include "trainer/io/safetensors.h"
// defines: st_open, st_close, st_find, st_read_f32, st_shape_str, st_write

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The header length is capped as the reference implementation caps it (100 MB).
#define ST_MAX_HEADER (100u << 20)
#define LITTLE_ENDIAN_HOST (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static size_t dtype_size(const char *d) {
    static const struct { const char *n; size_t s; } t[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(d, t[i].n) == 0) return t[i].s;
    return 0;
}

void st_close(StFile *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t); free(f->bytes); free(f->path); free(f);
}

const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, ")");
    return buf;
}

static int read_file(const char *path, unsigned char **out, size_t *size, char *err, size_t el) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { snprintf(err, el, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (!b) { fclose(fp); snprintf(err, el, "%s: out of memory", path); return -1; }
        size_t r = fread(b + n, 1, cap - n, fp);
        n += r;
        if (n < cap) break;
        cap *= 2;
        unsigned char *nb = realloc(b, cap);
        if (!nb) free(b);
        b = nb;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) { free(b); snprintf(err, el, "%s: read error", path); return -1; }
    *out = b; *size = n;
    return 0;
}

// One header entry; off = the header's file offset, for messages.
static int parse_entry(StFile *f, const char *key, json_t *v, size_t data_len, char *err, size_t el) {
    const char *p = f->path;
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"), *of = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) || json_array_size(of) != 2) {
        snprintf(err, el, "%s: byte 8 (header): tensor '%s' needs {\"dtype\": str, \"shape\": [ints], "
                 "\"data_offsets\": [begin, end]}", p, key);
        return -1;
    }
    StTensor t = {.numel = 1};
    snprintf(t.dtype, sizeof t.dtype, "%s", json_string_value(dt));
    size_t es = dtype_size(t.dtype);
    if (!es) { snprintf(err, el, "%s: byte 8 (header): tensor '%s' has unknown dtype '%s'", p, key, json_string_value(dt)); return -1; }
    if (json_array_size(sh) > ST_MAX_DIMS) { snprintf(err, el, "%s: byte 8 (header): tensor '%s' has more than %d dimensions", p, key, ST_MAX_DIMS); return -1; }
    t.ndim = (int)json_array_size(sh);
    for (int i = 0; i < t.ndim; i++) {
        json_t *d = json_array_get(sh, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            snprintf(err, el, "%s: byte 8 (header): tensor '%s': shape[%d] is not a non-negative integer", p, key, i);
            return -1;
        }
        t.shape[i] = json_integer_value(d);
        if (t.shape[i] && t.numel > SIZE_MAX / 16 / (size_t)t.shape[i]) {
            snprintf(err, el, "%s: byte 8 (header): tensor '%s': shape is too large", p, key);
            return -1;
        }
        t.numel *= (size_t)t.shape[i];
    }
    json_t *b = json_array_get(of, 0), *e = json_array_get(of, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 || json_integer_value(e) < json_integer_value(b)) {
        snprintf(err, el, "%s: byte 8 (header): tensor '%s': data_offsets must be integers 0 <= begin <= end", p, key);
        return -1;
    }
    t.begin = (size_t)json_integer_value(b); t.end = (size_t)json_integer_value(e);
    if (t.end > data_len) {
        snprintf(err, el, "%s: byte %zu: tensor '%s' ends there (data_offsets [%zu, %zu]) but the file has %zu bytes "
                 "(truncated?)", p, f->data_start + t.end, key, t.begin, t.end, f->size);
        return -1;
    }
    if (t.end - t.begin != t.numel * es) {
        char s[128];
        snprintf(err, el, "%s: byte %zu: tensor '%s' %s %s needs %zu bytes but data_offsets [%zu, %zu] hold %zu", p,
                 f->data_start + t.begin, key, t.dtype, st_shape_str(t.ndim, t.shape, s, sizeof s), t.numel * es,
                 t.begin, t.end, t.end - t.begin);
        return -1;
    }
    t.name = strdup(key);
    if (!t.name) { snprintf(err, el, "%s: out of memory", p); return -1; }
    f->t[f->n++] = t;
    return 0;
}

int st_open(const char *path, StFile **out, char *err, size_t el) {
    *out = NULL;
    StFile *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) { free(f); snprintf(err, el, "%s: out of memory", path); return -1; }
    if (read_file(path, &f->bytes, &f->size, err, el)) { st_close(f); return -1; }
    if (f->size < 8) {
        snprintf(err, el, "%s: byte %zu: truncated: a safetensors file starts with an 8-byte header length", path, f->size);
        st_close(f); return -1;
    }
    uint64_t hl = le64(f->bytes);
    if (hl > ST_MAX_HEADER || hl > f->size - 8) {
        snprintf(err, el, "%s: byte 0: header length %llu runs past the end of the file (%zu bytes; truncated or "
                 "not a safetensors file)", path, (unsigned long long)hl, f->size);
        st_close(f); return -1;
    }
    f->data_start = 8 + (size_t)hl;
    json_error_t je;
    json_t *h = json_loadb((const char *)f->bytes + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!h || !json_is_object(h)) {
        if (h) snprintf(err, el, "%s: byte 8: the header is not a JSON object", path);
        else snprintf(err, el, "%s: byte %zu: header JSON: %s", path, 8 + (size_t)(je.position > 0 ? je.position : 0), je.text);
        json_decref(h); st_close(f); return -1;
    }
    f->t = calloc(json_object_size(h) + 1, sizeof(StTensor));
    if (!f->t) { json_decref(h); st_close(f); snprintf(err, el, "%s: out of memory", path); return -1; }
    const char *key; json_t *v;
    json_object_foreach(h, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        if (parse_entry(f, key, v, f->size - f->data_start, err, el)) { json_decref(h); st_close(f); return -1; }
    }
    json_decref(h);
    *out = f;
    return 0;
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

int st_read_f32(const StFile *f, const StTensor *t, float *dst, char *err, size_t el) {
    const unsigned char *p = f->bytes + f->data_start + t->begin;
    if (strcmp(t->dtype, "F32") == 0) {
        if (LITTLE_ENDIAN_HOST) { memcpy(dst, p, 4 * t->numel); return 0; }
        for (size_t i = 0; i < t->numel; i++) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(dst + i, &u, 4);
        }
        return 0;
    }
    if (strcmp(t->dtype, "I64") == 0) {
        for (size_t i = 0; i < t->numel; i++) dst[i] = (float)(int64_t)le64(p + 8 * i);
        return 0;
    }
    snprintf(err, el, "%s: byte %zu: tensor '%s' is %s; segx-train reads F32 (I64 for counters): convert it with "
             "tensor.float() before saving", f->path, f->data_start + t->begin, t->name, t->dtype);
    return -1;
}

int st_write(const char *path, const StOut *t, int n, char *err, size_t el) {
    json_t *h = json_object();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        json_t *sh = json_array();
        for (int d = 0; d < t[i].ndim; d++) { numel *= (size_t)t[i].shape[d]; json_array_append_new(sh, json_integer(t[i].shape[d])); }
        size_t bytes = numel * (t[i].i64 ? 8 : 4);
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(t[i].i64 ? "I64" : "F32"));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        json_object_set_new(h, t[i].name, e);
        off += bytes;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!js) { snprintf(err, el, "%s: out of memory", path); return -1; }
    size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) { free(js); snprintf(err, el, "%s: cannot write: %s", tmp, strerror(errno)); return -1; }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(((uint64_t)(hl + pad)) >> (8 * i));
    int ok = fwrite(len, 1, 8, fp) == 8 && fwrite(js, 1, hl, fp) == hl && fwrite("        ", 1, pad, fp) == pad;
    free(js);
    for (int i = 0; ok && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        for (size_t k = 0; ok && k < numel; k++) {
            unsigned char b[8];
            if (t[i].i64) {
                uint64_t v = (uint64_t)(int64_t)t[i].data[k];
                for (int j = 0; j < 8; j++) b[j] = (unsigned char)(v >> (8 * j));
                ok = fwrite(b, 1, 8, fp) == 8;
            } else if (LITTLE_ENDIAN_HOST) {
                ok = fwrite(t[i].data, 4, numel, fp) == numel;
                break;
            } else {
                uint32_t v;
                memcpy(&v, t[i].data + k, 4);
                for (int j = 0; j < 4; j++) b[j] = (unsigned char)(v >> (8 * j));
                ok = fwrite(b, 1, 4, fp) == 4;
            }
        }
    }
    if (fclose(fp) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, el, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}
