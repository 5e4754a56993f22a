// tests/trainer/test_ops_common.h — helpers shared by test_ops*.c and test_models*.c (header only,
// because every tests/trainer/test_*.c is its own program): the fixture reader for files written by
// tools/fixtures/gen_fixtures.py, the llm.c-style tolerance check, and the fixture's hash generator.
#ifndef SEGX_TEST_OPS_COMMON_H
#define SEGX_TEST_OPS_COMMON_H
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- fixtures --------------------------------------------------------------------------------------
typedef struct { char *name; int dtype; int ndim; int dims[8]; size_t n; void *data; } FxRec;
typedef struct { FxRec *r; int n; char path[1024]; } Fx;

static inline const char *fx_dir(void) {
    const char *root = getenv("SEGX_ROOT");
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/tests/fixtures", root ? root : ".");
    return buf;
}

// Loads tests/fixtures/NAME; fails the test with the path when it is missing or malformed.
static inline Fx *fx_load(const char *name) {
    Fx *fx = calloc(1, sizeof *fx);
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx_dir(), name);
    FILE *f = fopen(fx->path, "rb");
    if (!f) fail_msg("cannot open fixture %s (run from the repo root or set SEGX_ROOT)", fx->path);
    char magic[6];
    if (fread(magic, 1, 6, f) != 6 || memcmp(magic, "SGXF1\n", 6)) fail_msg("%s: not a SGXF1 fixture", fx->path);
    for (;;) {
        uint32_t len;
        if (fread(&len, 4, 1, f) != 1) break;
        FxRec r = {0};
        r.name = calloc(len + 1, 1);
        uint32_t dt, nd;
        if (fread(r.name, 1, len, f) != len || fread(&dt, 4, 1, f) != 1 || fread(&nd, 4, 1, f) != 1 || nd > 8)
            fail_msg("%s: truncated record header", fx->path);
        r.dtype = (int)dt; r.ndim = (int)nd; r.n = 1;
        for (uint32_t i = 0; i < nd; i++) {
            uint32_t d;
            if (fread(&d, 4, 1, f) != 1) fail_msg("%s: truncated dims of %s", fx->path, r.name);
            r.dims[i] = (int)d; r.n *= d;
        }
        size_t es = dt == 2 ? 8 : 4;
        r.data = malloc(es * (r.n ? r.n : 1));
        if (fread(r.data, es, r.n, f) != r.n) fail_msg("%s: truncated data of %s", fx->path, r.name);
        fx->r = realloc(fx->r, sizeof(FxRec) * (fx->n + 1));
        fx->r[fx->n++] = r;
    }
    fclose(f);
    return fx;
}

static inline void fx_free(Fx *fx) {
    if (!fx) return;
    for (int i = 0; i < fx->n; i++) { free(fx->r[i].name); free(fx->r[i].data); }
    free(fx->r); free(fx);
}

static inline const FxRec *fx_find(const Fx *fx, const char *name) {
    for (int i = 0; i < fx->n; i++) if (strcmp(fx->r[i].name, name) == 0) return &fx->r[i];
    return NULL;
}

static inline const FxRec *fx_get(const Fx *fx, const char *name) {
    const FxRec *r = fx_find(fx, name);
    if (!r) fail_msg("%s: no record '%s'", fx->path, name);
    return r;
}

// Returns a malloc'ed float copy (f32 or f64 records).
static inline float *fx_f32(const Fx *fx, const char *name, size_t *n) {
    const FxRec *r = fx_get(fx, name);
    float *o = malloc(sizeof(float) * (r->n ? r->n : 1));
    for (size_t i = 0; i < r->n; i++)
        o[i] = r->dtype == 2 ? (float)((double *)r->data)[i] : r->dtype == 0 ? ((float *)r->data)[i] : (float)((int32_t *)r->data)[i];
    if (n) *n = r->n;
    return o;
}

static inline double *fx_f64(const Fx *fx, const char *name, size_t *n) {
    const FxRec *r = fx_get(fx, name);
    double *o = malloc(sizeof(double) * (r->n ? r->n : 1));
    for (size_t i = 0; i < r->n; i++)
        o[i] = r->dtype == 2 ? ((double *)r->data)[i] : r->dtype == 0 ? ((float *)r->data)[i] : ((int32_t *)r->data)[i];
    if (n) *n = r->n;
    return o;
}

// --- tolerance check: |a-b| <= atol + rtol*|ref|, printing the first mismatches ----------------------
// Returns the number of mismatches (also prints the max error), so a caller asserts it is 0.
static inline long check_close(const char *what, const float *got, const double *ref, size_t n, double atol, double rtol) {
    long bad = 0; double maxerr = 0; size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= atol + rtol * fabs(ref[i]))) {
            if (bad < 5) printf("# %s[%zu]: got %.8g want %.8g (|diff| %.3g)\n", what, i, got[i], ref[i], e);
            bad++;
        }
        if (e > maxerr || isnan(e)) { maxerr = e; at = i; }
    }
    if (bad) printf("# %s: %ld of %zu mismatched, max |diff| %.3g at %zu\n", what, bad, n, maxerr, at);
    return bad;
}

// --- the fixture generator's fill (see tools/fixtures/gen_fixtures.py) ------------------------------
static inline uint64_t fx_fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

static inline double fx_uniform(const char *name, uint64_t i) {
    uint64_t z = fx_fnv1a64(name) + i + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53 * 2.0 - 1.0;
}

#endif
