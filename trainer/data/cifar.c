// trainer/data/cifar.c — CIFAR-10 in both of its releases, for "cifar10:DIR":
// - binary (cifar-10-batches-bin): records of 1 label byte + 3072 image bytes (R, G, B planes of 32x32);
// - python (cifar-10-batches-py): each batch a pickled dict {b'data': uint8 ndarray (N, 3072),
//   b'labels': [N ints], b'batch_label', b'filenames'}, as the release wrote it (Python 2 cPickle,
//   protocol 2; numpy arrays as numpy.core.multiarray._reconstruct + BUILD with the raw bytes).
// The pickle reader below is a small stack machine for the opcodes such a file uses (and the
// equivalent protocol 3-5 ones, for a batch re-pickled by Python 3 with bytes); it builds no Python
// objects beyond that, runs no code, and names the file, byte offset and opcode of anything else.
#include "trainer/data/data.h"
// defines: Dataset, DataSplit; here: cifar10_open (used by dataset.c)

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_PIXELS 3072   // 3 x 32 x 32
#define CIFAR_CLASSES 10

typedef struct {
    uint8_t *img;     // n x 3072
    uint8_t *label;   // n
} Cifar;

static int cifar_get(Dataset *ds, long i, uint8_t *img, int32_t *labels, char *err, size_t errlen) {
    Cifar *c = ds->impl;
    (void)err; (void)errlen;
    labels[0] = c->label[i];
    memcpy(img, c->img + (size_t)i * CIFAR_PIXELS, CIFAR_PIXELS);
    return 0;
}

static void cifar_free(Dataset *ds) {
    Cifar *c = ds->impl;
    if (c) { free(c->img); free(c->label); free(c); }
    free(ds);
}

// Grows c to hold n more samples after `have`; 0 or -1.
static int cifar_grow(Cifar *c, long have, long more) {
    uint8_t *img = realloc(c->img, (size_t)(have + more) * CIFAR_PIXELS);
    if (!img) return -1;
    c->img = img;
    uint8_t *lab = realloc(c->label, (size_t)(have + more));
    if (!lab) return -1;
    c->label = lab;
    return 0;
}

static int read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    *buf = NULL;
    if (!f) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return -1;
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len ? *len : 1);
    if (!*buf) { snprintf(err, errlen, "%s: out of memory for %zu bytes", path, *len); fclose(f); return -1; }
    size_t got = fread(*buf, 1, *len, f);
    fclose(f);
    if (got != *len) {
        snprintf(err, errlen, "%s: read %zu of %zu bytes", path, got, *len);
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// binary release

static int load_bin(const char *path, Cifar *c, long *n, char *err, size_t errlen) {
    uint8_t *b;
    size_t len;
    if (read_file(path, &b, &len, err, errlen)) return -1;
    // every file of the release holds 10000 records
    if (len != (size_t)10000 * (CIFAR_PIXELS + 1)) {
        snprintf(err, errlen, "%s: truncated or not a CIFAR-10 binary batch: %zu bytes, expected 30730000 (10000 "
                 "records of 3073)", path, len);
        free(b);
        return -1;
    }
    long k = 10000;
    if (cifar_grow(c, *n, k)) { snprintf(err, errlen, "out of memory"); free(b); return -1; }
    for (long i = 0; i < k; i++) {
        const uint8_t *r = b + (size_t)i * (CIFAR_PIXELS + 1);
        if (r[0] >= CIFAR_CLASSES) {
            snprintf(err, errlen, "%s: record %ld has label %d (not 0..9)", path, i, r[0]);
            free(b);
            return -1;
        }
        c->label[*n + i] = r[0];
        memcpy(c->img + (size_t)(*n + i) * CIFAR_PIXELS, r + 1, CIFAR_PIXELS);
    }
    *n += k;
    free(b);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// python release: the pickle subset

typedef enum { PK_NONE, PK_BOOL, PK_INT, PK_BYTES, PK_TEXT, PK_LIST, PK_TUPLE, PK_DICT, PK_GLOBAL, PK_CALL, PK_MARK } PkType;

typedef struct PkObj PkObj;
struct PkObj {
    PkType t;
    long long i;              // PK_INT, PK_BOOL
    const uint8_t *s;         // PK_BYTES, PK_TEXT (into the file buffer); PK_GLOBAL: "module\nname"
    size_t len;
    PkObj **items;            // PK_LIST, PK_TUPLE; PK_DICT: key, value, key, value, ...
    size_t n, cap;
    PkObj *fn, *args, *state; // PK_CALL: REDUCE(fn, args), then BUILD(state)
    char global[160];         // PK_GLOBAL: "module.name"
    PkObj *next_alloc;
};

typedef struct {
    const char *path;
    const uint8_t *b;
    size_t len, pos;
    PkObj **stack;
    size_t sp, scap;
    PkObj **memo;
    size_t nmemo;       // slots allocated
    size_t nput;        // distinct ids stored (MEMOIZE stores at this id, as Python's len(memo))
    PkObj *allocs;
    char *err;
    size_t errlen;
} Pk;

#define PK_CONTENT ((size_t)-1)
static int pk_fail(Pk *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pk_fail(Pk *p, size_t at, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[48] = "";   // content errors (at == PK_CONTENT) are about the batch, not a byte
    if (at != PK_CONTENT) snprintf(where, sizeof where, " byte %zu:", at);
    snprintf(p->err, p->errlen, "%s:%s %s (cifar10:DIR reads the python release's pickled batches, "
             "cifar-10-batches-py, or the binary release, cifar-10-batches-bin)", p->path, where, msg);
    return -1;
}

static PkObj *pk_new(Pk *p, PkType t) {
    PkObj *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->t = t;
    o->next_alloc = p->allocs;
    p->allocs = o;
    return o;
}

static void pk_free_all(Pk *p) {
    for (PkObj *o = p->allocs, *nx; o; o = nx) {
        nx = o->next_alloc;
        free(o->items);
        free(o);
    }
    free(p->stack);
    free(p->memo);
}

static int pk_push(Pk *p, PkObj *o) {
    if (!o) return pk_fail(p, p->pos, "out of memory");
    if (p->sp == p->scap) {
        size_t nc = p->scap ? 2 * p->scap : 64;
        PkObj **s = realloc(p->stack, nc * sizeof *s);
        if (!s) return pk_fail(p, p->pos, "out of memory");
        p->stack = s;
        p->scap = nc;
    }
    p->stack[p->sp++] = o;
    return 0;
}

static PkObj *pk_pop(Pk *p) { return p->sp ? p->stack[--p->sp] : NULL; }
static PkObj *pk_top(Pk *p) { return p->sp ? p->stack[p->sp - 1] : NULL; }

static int pk_append(Pk *p, PkObj *to, PkObj *o) {
    if (to->n == to->cap) {
        size_t nc = to->cap ? 2 * to->cap : 8;
        PkObj **it = realloc(to->items, nc * sizeof *it);
        if (!it) return pk_fail(p, p->pos, "out of memory");
        to->items = it;
        to->cap = nc;
    }
    to->items[to->n++] = o;
    return 0;
}

// Index of the topmost MARK, or -1.
static long pk_mark(Pk *p) {
    for (size_t i = p->sp; i-- > 0;)
        if (p->stack[i]->t == PK_MARK) return (long)i;
    return -1;
}

static int pk_need(Pk *p, size_t at, size_t k) {
    if (p->len - p->pos < k) return pk_fail(p, at, "file ends inside an opcode (truncated?)");
    return 0;
}

static uint64_t pk_le(const uint8_t *b, int k) {
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static int pk_memo_put(Pk *p, size_t at, uint64_t id) {
    PkObj *o = pk_top(p);
    if (!o) return pk_fail(p, at, "memo store with an empty stack");
    if (id > 100000000) return pk_fail(p, at, "memo index %llu too large", (unsigned long long)id);
    if (id >= p->nmemo) {
        size_t nn = (size_t)id + 1 > 2 * p->nmemo ? (size_t)id + 1 : 2 * p->nmemo;
        PkObj **m = realloc(p->memo, nn * sizeof *m);
        if (!m) return pk_fail(p, at, "out of memory");
        memset(m + p->nmemo, 0, (nn - p->nmemo) * sizeof *m);
        p->memo = m;
        p->nmemo = nn;
    }
    if (!p->memo[id]) p->nput++;
    p->memo[id] = o;
    return 0;
}

static int pk_memo_get(Pk *p, size_t at, uint64_t id) {
    if (id >= p->nmemo || !p->memo[id]) return pk_fail(p, at, "memo index %llu was never stored", (unsigned long long)id);
    return pk_push(p, p->memo[id]);
}

static int pk_string(Pk *p, size_t at, PkType t, int lenbytes) {
    if (pk_need(p, at, (size_t)lenbytes)) return -1;
    uint64_t k = pk_le(p->b + p->pos, lenbytes);
    p->pos += (size_t)lenbytes;
    if (k > p->len - p->pos) return pk_fail(p, at, "a %llu-byte string runs past the end of the file (truncated?)", (unsigned long long)k);
    PkObj *o = pk_new(p, t);
    if (o) { o->s = p->b + p->pos; o->len = (size_t)k; }
    p->pos += (size_t)k;
    return pk_push(p, o);
}

// Items from the topmost MARK up, popped (mark too) into *items/*n (pointer into the stack, valid
// until the next push). -1 when there is no mark.
static int pk_take_marked(Pk *p, size_t at, PkObj ***items, size_t *n) {
    long m = pk_mark(p);
    if (m < 0) return pk_fail(p, at, "no MARK on the stack");
    *items = p->stack + m + 1;
    *n = p->sp - (size_t)m - 1;
    p->sp = (size_t)m;
    return 0;
}

// Runs the pickle to STOP; *out is the result.
static int pk_run(Pk *p, PkObj **out) {
    for (;;) {
        size_t at = p->pos;
        if (p->pos >= p->len) return pk_fail(p, at, "file ends before the pickle's STOP opcode (truncated?)");
        uint8_t op = p->b[p->pos++];
        PkObj *o, *a, *b;
        PkObj **items = NULL;
        size_t n = 0;
        switch (op) {
        case 0x80:   // PROTO
            if (pk_need(p, at, 1)) return -1;
            if (p->b[p->pos] < 2 || p->b[p->pos] > 5) return pk_fail(p, at, "pickle protocol %d (want 2..5)", p->b[p->pos]);
            p->pos++;
            break;
        case 0x95:   // FRAME: a length hint
            if (pk_need(p, at, 8)) return -1;
            p->pos += 8;
            break;
        case '.':    // STOP
            if (p->sp != 1) return pk_fail(p, at, "STOP with %zu objects on the stack (want 1)", p->sp);
            *out = pk_pop(p);
            return 0;
        case '(': if (pk_push(p, pk_new(p, PK_MARK))) return -1; break;
        case '}': if (pk_push(p, pk_new(p, PK_DICT))) return -1; break;
        case ']': if (pk_push(p, pk_new(p, PK_LIST))) return -1; break;
        case ')': if (pk_push(p, pk_new(p, PK_TUPLE))) return -1; break;
        case 'N': if (pk_push(p, pk_new(p, PK_NONE))) return -1; break;
        case 0x88: case 0x89:   // NEWTRUE, NEWFALSE
            if (!(o = pk_new(p, PK_BOOL))) return pk_fail(p, at, "out of memory");
            o->i = op == 0x88;
            if (pk_push(p, o)) return -1;
            break;
        case 'K': case 'M': case 'J': {   // BININT1, BININT2, BININT
            int k = op == 'K' ? 1 : op == 'M' ? 2 : 4;
            if (pk_need(p, at, (size_t)k)) return -1;
            if (!(o = pk_new(p, PK_INT))) return pk_fail(p, at, "out of memory");
            uint64_t v = pk_le(p->b + p->pos, k);
            o->i = k == 4 ? (long long)(int32_t)(uint32_t)v : (long long)v;
            p->pos += (size_t)k;
            if (pk_push(p, o)) return -1;
            break;
        }
        case 0x8a: {   // LONG1: n-byte little-endian two's complement
            if (pk_need(p, at, 1)) return -1;
            int k = p->b[p->pos++];
            if (k > 8 || pk_need(p, at, (size_t)k)) return k > 8 ? pk_fail(p, at, "integer of %d bytes", k) : -1;
            if (!(o = pk_new(p, PK_INT))) return pk_fail(p, at, "out of memory");
            uint64_t v = k ? pk_le(p->b + p->pos, k) : 0;
            if (k && k < 8 && (p->b[p->pos + (size_t)k - 1] & 0x80)) v |= ~0ull << (8 * k);
            o->i = (long long)v;
            p->pos += (size_t)k;
            if (pk_push(p, o)) return -1;
            break;
        }
        case 'U': if (pk_string(p, at, PK_BYTES, 1)) return -1; break;      // SHORT_BINSTRING (py2 str)
        case 'T': if (pk_string(p, at, PK_BYTES, 4)) return -1; break;      // BINSTRING
        case 'C': if (pk_string(p, at, PK_BYTES, 1)) return -1; break;      // SHORT_BINBYTES
        case 'B': if (pk_string(p, at, PK_BYTES, 4)) return -1; break;      // BINBYTES
        case 0x8e: if (pk_string(p, at, PK_BYTES, 8)) return -1; break;     // BINBYTES8
        case 0x8c: if (pk_string(p, at, PK_TEXT, 1)) return -1; break;      // SHORT_BINUNICODE
        case 'X': if (pk_string(p, at, PK_TEXT, 4)) return -1; break;       // BINUNICODE
        case 0x8d: if (pk_string(p, at, PK_TEXT, 8)) return -1; break;      // BINUNICODE8
        case 'q': if (pk_need(p, at, 1) || pk_memo_put(p, at, p->b[p->pos])) return -1; p->pos += 1; break;
        case 'r': if (pk_need(p, at, 4) || pk_memo_put(p, at, pk_le(p->b + p->pos, 4))) return -1; p->pos += 4; break;
        case 0x94: if (pk_memo_put(p, at, p->nput)) return -1; break;   // MEMOIZE
        case 'h': if (pk_need(p, at, 1) || pk_memo_get(p, at, p->b[p->pos])) return -1; p->pos += 1; break;
        case 'j': if (pk_need(p, at, 4) || pk_memo_get(p, at, pk_le(p->b + p->pos, 4))) return -1; p->pos += 4; break;
        case 'c': {   // GLOBAL module\nname\n
            const uint8_t *s = p->b + p->pos, *e1 = memchr(s, '\n', p->len - p->pos);
            const uint8_t *e2 = e1 ? memchr(e1 + 1, '\n', p->len - (size_t)(e1 + 1 - p->b)) : NULL;
            if (!e2) return pk_fail(p, at, "GLOBAL without its two lines (truncated?)");
            if (!(o = pk_new(p, PK_GLOBAL))) return pk_fail(p, at, "out of memory");
            snprintf(o->global, sizeof o->global, "%.*s.%.*s", (int)(e1 - s), (const char *)s, (int)(e2 - e1 - 1),
                     (const char *)e1 + 1);
            p->pos = (size_t)(e2 + 1 - p->b);
            if (pk_push(p, o)) return -1;
            break;
        }
        case 0x93:   // STACK_GLOBAL: module, name strings
            b = pk_pop(p); a = pk_pop(p);
            if (!a || !b || a->t != PK_TEXT || b->t != PK_TEXT) return pk_fail(p, at, "STACK_GLOBAL without two strings");
            if (!(o = pk_new(p, PK_GLOBAL))) return pk_fail(p, at, "out of memory");
            snprintf(o->global, sizeof o->global, "%.*s.%.*s", (int)a->len, (const char *)a->s, (int)b->len, (const char *)b->s);
            if (pk_push(p, o)) return -1;
            break;
        case 't':   // TUPLE
            if (pk_take_marked(p, at, &items, &n)) return -1;
            if (!(o = pk_new(p, PK_TUPLE))) return pk_fail(p, at, "out of memory");
            for (size_t i = 0; i < n; i++) if (pk_append(p, o, items[i])) return -1;
            if (pk_push(p, o)) return -1;
            break;
        case 0x85: case 0x86: case 0x87: {   // TUPLE1..3
            size_t k = (size_t)(op - 0x84);
            if (p->sp < k) return pk_fail(p, at, "TUPLE%zu with %zu objects on the stack", k, p->sp);
            if (!(o = pk_new(p, PK_TUPLE))) return pk_fail(p, at, "out of memory");
            for (size_t i = p->sp - k; i < p->sp; i++) if (pk_append(p, o, p->stack[i])) return -1;
            p->sp -= k;
            if (pk_push(p, o)) return -1;
            break;
        }
        case 'a':   // APPEND
            b = pk_pop(p); a = pk_top(p);
            if (!b || !a || a->t != PK_LIST) return pk_fail(p, at, "APPEND without a list");
            if (pk_append(p, a, b)) return -1;
            break;
        case 'e':   // APPENDS
            if (pk_take_marked(p, at, &items, &n)) return -1;
            a = pk_top(p);
            if (!a || a->t != PK_LIST) return pk_fail(p, at, "APPENDS without a list");
            for (size_t i = 0; i < n; i++) if (pk_append(p, a, items[i])) return -1;
            break;
        case 's':   // SETITEM
            b = pk_pop(p); o = pk_pop(p); a = pk_top(p);
            if (!b || !o || !a || a->t != PK_DICT) return pk_fail(p, at, "SETITEM without a dict");
            if (pk_append(p, a, o) || pk_append(p, a, b)) return -1;
            break;
        case 'u':   // SETITEMS
            if (pk_take_marked(p, at, &items, &n)) return -1;
            a = pk_top(p);
            if (!a || a->t != PK_DICT || n % 2) return pk_fail(p, at, "SETITEMS without a dict or with an odd count");
            for (size_t i = 0; i < n; i++) if (pk_append(p, a, items[i])) return -1;
            break;
        case 'R':   // REDUCE: kept as a call, never run
            b = pk_pop(p); a = pk_pop(p);
            if (!a || !b || a->t != PK_GLOBAL || b->t != PK_TUPLE) return pk_fail(p, at, "REDUCE without a global and a tuple");
            if (!(o = pk_new(p, PK_CALL))) return pk_fail(p, at, "out of memory");
            o->fn = a; o->args = b;
            if (pk_push(p, o)) return -1;
            break;
        case 'b':   // BUILD
            b = pk_pop(p); a = pk_top(p);
            if (!b || !a || a->t != PK_CALL) return pk_fail(p, at, "BUILD on something that is not a reconstructed object");
            a->state = b;
            break;
        default:
            return pk_fail(p, at, "pickle opcode 0x%02x ('%c') is not one a CIFAR-10 batch uses", op, op >= 32 && op < 127 ? op : '?');
        }
    }
}

static int pk_is_str(const PkObj *o, const char *s) {
    return o && (o->t == PK_BYTES || o->t == PK_TEXT) && o->len == strlen(s) && memcmp(o->s, s, o->len) == 0;
}

static const PkObj *pk_dict_get(const PkObj *d, const char *key) {
    for (size_t i = 0; i + 1 < d->n; i += 2)
        if (pk_is_str(d->items[i], key)) return d->items[i + 1];
    return NULL;
}

static int is_reconstruct(const PkObj *o) {
    return o && o->t == PK_CALL && (!strcmp(o->fn->global, "numpy.core.multiarray._reconstruct") ||
                                    !strcmp(o->fn->global, "numpy._core.multiarray._reconstruct"));
}

// The batch dict -> n samples appended to c.
static int pk_take_batch(Pk *p, const PkObj *d, Cifar *c, long *n) {
    if (d->t != PK_DICT) return pk_fail(p, PK_CONTENT, "the pickle holds no dict (a CIFAR-10 batch is {data, labels, ...})");
    const PkObj *data = pk_dict_get(d, "data"), *labels = pk_dict_get(d, "labels");
    if (!labels && pk_dict_get(d, "fine_labels"))
        return pk_fail(p, PK_CONTENT, "this batch has fine_labels: a CIFAR-100 file, not CIFAR-10");
    if (!data || !labels) return pk_fail(p, PK_CONTENT, "the batch dict has no '%s' key", data ? "labels" : "data");
    if (!is_reconstruct(data) || !data->state || data->state->t != PK_TUPLE || data->state->n != 5)
        return pk_fail(p, PK_CONTENT, "'data' is not a pickled numpy array (numpy.core.multiarray._reconstruct with its state)");
    PkObj **st = data->state->items;   // (version, shape, dtype, is_fortran, raw bytes)
    const PkObj *shape = st[1], *dtype = st[2], *fortran = st[3], *raw = st[4];
    if (!shape || shape->t != PK_TUPLE || shape->n != 2 || shape->items[0]->t != PK_INT || shape->items[1]->t != PK_INT ||
        shape->items[1]->i != CIFAR_PIXELS || shape->items[0]->i <= 0)
        return pk_fail(p, PK_CONTENT, "'data' is not an (N, 3072) array");
    long k = (long)shape->items[0]->i;
    if (!dtype || dtype->t != PK_CALL || strcmp(dtype->fn->global, "numpy.dtype") || dtype->args->n < 1 ||
        !(pk_is_str(dtype->args->items[0], "u1") || pk_is_str(dtype->args->items[0], "uint8")))
        return pk_fail(p, PK_CONTENT, "'data' is not a uint8 array");
    if (!fortran || (fortran->t != PK_BOOL && fortran->t != PK_INT) || fortran->i)
        return pk_fail(p, PK_CONTENT, "'data' is stored in Fortran order (want C order, as the release)");
    if (!raw || raw->t != PK_BYTES || raw->len != (size_t)k * CIFAR_PIXELS)
        return pk_fail(p, PK_CONTENT, "'data' holds %zu bytes, not %ld x 3072", raw && raw->t == PK_BYTES ? raw->len : 0, k);
    if (labels->t != PK_LIST || (long)labels->n != k)
        return pk_fail(p, PK_CONTENT, "'labels' is not a list of %ld labels (one per image)", k);
    if (cifar_grow(c, *n, k)) return pk_fail(p, PK_CONTENT, "out of memory");
    for (long i = 0; i < k; i++) {
        const PkObj *l = labels->items[i];
        if (l->t != PK_INT || l->i < 0 || l->i >= CIFAR_CLASSES)
            return pk_fail(p, PK_CONTENT, "label %ld is not an integer 0..9", i);
        c->label[*n + i] = (uint8_t)l->i;
    }
    memcpy(c->img + (size_t)*n * CIFAR_PIXELS, raw->s, (size_t)k * CIFAR_PIXELS);
    *n += k;
    return 0;
}

static int load_py(const char *path, Cifar *c, long *n, char *err, size_t errlen) {
    uint8_t *b;
    size_t len;
    if (read_file(path, &b, &len, err, errlen)) return -1;
    Pk p = { .path = path, .b = b, .len = len, .err = err, .errlen = errlen };
    PkObj *top = NULL;
    int rc = pk_run(&p, &top);
    if (!rc) rc = pk_take_batch(&p, top, c, n);
    pk_free_all(&p);
    free(b);
    return rc;
}

// ---------------------------------------------------------------------------------------------

static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }

int cifar10_open(const char *dir, DataSplit split, Dataset **out, char *err, size_t errlen) {
    *out = NULL;
    // which release: DIR/cifar-10-batches-{bin,py}/ or DIR itself holding one's files (the first
    // file this split reads decides)
    char base[4096], probe[4200];
    int py = -1;
    const char *first = split == SPLIT_TEST ? "test_batch" : "data_batch_1";
    const char *sub[2] = { "cifar-10-batches-bin", "cifar-10-batches-py" };
    for (int k = 0; k < 4 && py < 0; k++) {
        if (k < 2) snprintf(base, sizeof base, "%s/%s", dir, sub[k]);
        else snprintf(base, sizeof base, "%s", dir);
        snprintf(probe, sizeof probe, "%s/%s%s", base, first, k % 2 ? "" : ".bin");
        if (is_file(probe)) py = k % 2;
    }
    if (py < 0) {
        snprintf(err, errlen, "cifar10:%s: no CIFAR-10 %s split there: want %s/cifar-10-batches-py/%s (python release) "
                 "or %s/cifar-10-batches-bin/%s.bin (binary release), or those files in %s itself", dir,
                 split == SPLIT_TEST ? "test" : "train", dir, first, dir, first, dir);
        return -1;
    }
    Cifar *c = calloc(1, sizeof *c);
    Dataset *ds = calloc(1, sizeof *ds);
    if (!c || !ds) { free(c); free(ds); snprintf(err, errlen, "out of memory"); return -1; }
    ds->impl = c;
    ds->free = cifar_free;
    long n = 0;
    int nfiles = split == SPLIT_TEST ? 1 : 5;
    for (int k = 0; k < nfiles; k++) {
        char path[4300];
        if (split == SPLIT_TEST) snprintf(path, sizeof path, "%s/test_batch%s", base, py ? "" : ".bin");
        else snprintf(path, sizeof path, "%s/data_batch_%d%s", base, k + 1, py ? "" : ".bin");
        if (py ? load_py(path, c, &n, err, errlen) : load_bin(path, c, &n, err, errlen)) {
            cifar_free(ds);
            return -1;
        }
    }
    snprintf(ds->name, sizeof ds->name, "cifar10");
    ds->n = n;
    ds->channels = 3;
    ds->height = ds->width = 32;
    ds->classes = CIFAR_CLASSES;
    ds->get = cifar_get;
    *out = ds;
    return 0;
}
