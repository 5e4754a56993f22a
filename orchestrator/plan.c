// orchestrator/plan.c — matrix expansion, cell keys, DB rows and job scripts (see plan.h).
#include "orchestrator/util/fileio.h"
#include "orchestrator/util/strbuf.h"
#include "orchestrator/plan.h"
#include "orchestrator/util/paths.h"
#include "orchestrator/cluster.h"
#include "orchestrator/render.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// keys

// SHA-256 fetched once: EVP_sha256() in EVP_Digest looks the implementation up on every call
// (OpenSSL 3), a tenth of a big plan's CPU.
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

void plan_hash(const char *text, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    pthread_once(&sha256_once, sha256_fetch);
    EVP_Digest(text, strlen(text), md, &len, sha256_md ? sha256_md : EVP_sha256(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < PLAN_KEY_HEX / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[PLAN_KEY_HEX] = 0;
}

// End of the JSON value at p in jansson's compact output (strings with escapes, nesting).
static const char *canon_value_end(const char *p)
{
    int depth = 0;
    for (; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1]) p++;
            if (!*p) return p;
            if (depth == 0) return p + 1;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0) return p;   // the end of the enclosing object: a scalar ended here
            if (--depth == 0) return p + 1;
        } else if (*p == ',' && depth == 0) {
            return p;
        }
    }
    return p;
}

long plan_canon_members(const char *canon, PlanMember *m, size_t max)
{
    if (!canon || canon[0] != '{') return -1;
    const char *p = canon + 1;
    size_t n = 0;
    while (*p == '"') {
        const char *kend = canon_value_end(p);
        if (*kend != ':' || n == max) return -1;
        const char *vend = canon_value_end(kend + 1);
        if (vend == kend + 1) return -1;
        m[n++] = (PlanMember){p + 1, kend + 1, (size_t)(kend - p - 2), (size_t)(vend - kend - 1)};
        p = *vend == ',' ? vend + 1 : vend;
    }
    return p[0] == '}' && p[1] == 0 ? (long)n : -1;
}

// Hash of the canonical params without some top-level keys, cut from the canonical text itself:
// with sorted keys and compact separators, leaving members out gives exactly what json_dumps of
// a copy without them gives (same bytes, same key), at a fraction of the cost of json_copy +
// json_dumps for every cell. Keys are compared as written: jansson escapes only '"', '\\' and
// control characters, none of which are in the dropped names.
static void hash_without(const char *canon, const char *const *drop, char *out)
{
    size_t n = strlen(canon);
    char *buf = malloc(n + 1), *q = buf;
    if (!buf || canon[0] != '{') { free(buf); plan_hash("", out); return; }
    *q++ = '{';
    const char *p = canon + 1;
    while (*p == '"') {
        const char *member = p, *kend = canon_value_end(p);   // "key"
        if (*kend != ':') break;
        const char *vend = canon_value_end(kend + 1);
        int dropped = 0;
        for (const char *const *d = drop; *d && !dropped; d++)
            dropped = (size_t)(kend - member - 2) == strlen(*d) && memcmp(member + 1, *d, strlen(*d)) == 0;
        if (!dropped) {
            if (q > buf + 1) *q++ = ',';
            memcpy(q, member, (size_t)(vend - member));
            q += vend - member;
        }
        p = *vend == ',' ? vend + 1 : vend;
    }
    *q++ = '}';
    *q = 0;
    plan_hash(buf, out);
    free(buf);
}

// The kind of one canonical value, as plan_shape_signature writes it: 's'/'S' string (empty/not),
// 'n'/'N' number (zero/not), 'f' false or null, 't' true; arrays and objects whole (the
// template may walk into them).
static size_t value_kind(const char *v, size_t vlen, char *out, size_t room)
{
    char k;
    switch (v[0]) {
    case '"': k = vlen > 2 ? 'S' : 's'; break;
    case 't': k = 't'; break;
    case 'f': case 'n': k = 'f'; break;
    case '[': case '{': {
        size_t w = vlen < room ? vlen : room;
        memcpy(out, v, w);
        return w;
    }
    default: k = strtod(v, NULL) != 0 ? 'N' : 'n'; break;
    }
    if (room) out[0] = k;
    return room ? 1 : 0;
}

size_t plan_shape_signature(const PlanCell *c, char *buf, size_t len)
{
    if (len == 0) return 0;
    int n = snprintf(buf, len, "%s|%d|%d|", c->gpu_type ? c->gpu_type : "cpu", c->gpus, c->nodes);
    size_t w = n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
    const char *p = c->canon && c->canon[0] == '{' ? c->canon + 1 : "";
    while (*p == '"' && w + 1 < len) {
        const char *kend = canon_value_end(p);
        if (*kend != ':') break;
        const char *vend = canon_value_end(kend + 1);
        size_t klen = (size_t)(kend - p), room = len - 1 - w;
        memcpy(buf + w, p, klen < room ? klen : room);
        w += klen < room ? klen : room;
        if (w + 1 < len) w += value_kind(kend + 1, (size_t)(vend - kend - 1), buf + w, len - 1 - w);
        p = *vend == ',' ? vend + 1 : vend;
    }
    buf[w] = 0;
    return w;
}

void plan_cell_label(const PlanCell *c, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    static const char *const shown[] = {"model", "gpu_type", "gpus", "nodes", "batch_per_gpu", "global_batch", "seed", NULL};
    for (const char *const *k = shown; *k && n < len; k++) {
        json_t *v = json_object_get(c->params, *k);
        if (!v || (strcmp(*k, "nodes") == 0 && json_integer_value(v) == 1)) continue;
        char val[128];
        render_scalar(v, val, sizeof val);
        n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", n ? " " : "", *k, val);
    }
}

// ---------------------------------------------------------------------------------------------
// one cell from one combination of axis values

// spec.c range-checks every integer axis; a value outside int (only from a hand-edited DB) reads
// as the default rather than wrapping around.
static int int_of(const json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) >= INT_MIN && json_integer_value(v) <= INT_MAX
               ? (int)json_integer_value(v) : dflt;
}

// The cell's parameters before the scaling rules: the trainer's fixed keys and args (minus
// command/metrics/launch), "command" for an external trainer, "eval" (minus targets and job), then
// the combination's axis values.
static json_t *base_params(const Spec *s, const json_t *combo)
{
    json_t *p = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(s->trainer, k, v) {
        if (!strcmp(k, "command") || !strcmp(k, "metrics") || !strcmp(k, "launch") || !strcmp(k, "args")) continue;
        json_object_set(p, k, v);
    }
    json_t *args = json_object_get(s->trainer, "args");
    if (args) json_object_update(p, args);
    if (s->external) json_object_set_new(p, "command", json_string(s->command));
    if (s->eval) {   // eval settings change results; eval.targets (report thresholds) do not
        json_t *ev = json_copy(s->eval);
        json_object_del(ev, "targets");
        json_object_del(ev, "job");
        if (json_object_size(ev)) json_object_set(p, "eval", ev);
        json_decref(ev);
    }
    json_object_update(p, (json_t *)combo);
    return p;
}

// Strong scaling: batch_per_gpu = global_batch / gpus (the global batch must split evenly).
// 0, or -1 with err naming the cell.
static int strong_batch(const Spec *s, const json_t *combo, PlanCell *c, char *err, size_t errlen)
{
    char label[512];
    if (json_object_get(combo, "batch_per_gpu")) {
        plan_cell_label(c, label, sizeof label);
        snprintf(err, errlen, "%s: cell {%s}: strong scaling takes global_batch, not batch_per_gpu", s->path, label);
        return -1;
    }
    c->global_batch = int_of(c->params, "global_batch", 0);
    if (c->global_batch < 1 || c->global_batch % c->gpus) {
        plan_cell_label(c, label, sizeof label);
        snprintf(err, errlen, "%s: cell {%s}: global_batch %d is not divisible by gpus %d (strong scaling "
                 "splits the global batch evenly; exclude this cell or change the values)",
                 s->path, label, c->global_batch, c->gpus);
        return -1;
    }
    c->batch_per_gpu = c->global_batch / c->gpus;
    json_object_set_new(c->params, "batch_per_gpu", json_integer(c->batch_per_gpu));
    return 0;
}

// Weak scaling: global_batch = batch_per_gpu x gpus (at most SPEC_MAX_BATCH). 0, or -1 with err.
static int weak_batch(const Spec *s, const json_t *combo, PlanCell *c, char *err, size_t errlen)
{
    char label[512];
    if (json_object_get(combo, "global_batch")) {
        plan_cell_label(c, label, sizeof label);
        snprintf(err, errlen, "%s: cell {%s}: weak scaling takes batch_per_gpu, not global_batch", s->path, label);
        return -1;
    }
    c->batch_per_gpu = int_of(c->params, "batch_per_gpu", 0);
    // each value is range-checked by spec.c; their product is checked here, before it is an int
    long long gb = (long long)c->batch_per_gpu * c->gpus;
    if (gb > SPEC_MAX_BATCH) {
        plan_cell_label(c, label, sizeof label);
        snprintf(err, errlen, "%s: cell {%s}: global batch %d x %d = %lld is more than %ld (exclude this cell or "
                 "change the values)", s->path, label, c->batch_per_gpu, c->gpus, gb, SPEC_MAX_BATCH);
        return -1;
    }
    c->global_batch = (int)gb;
    json_object_set_new(c->params, "global_batch", json_integer(c->global_batch));
    return 0;
}

// Weak-data scaling: the training set grows with the GPUs (train_limit per GPU x gpus; the per-GPU
// value stays as train_limit_per_gpu). 0, or -1 with err.
static int weak_data_limit(const Spec *s, PlanCell *c, char *err, size_t errlen)
{
    json_t *p = c->params;
    const char *tk = json_object_get(p, "train-limit") ? "train-limit" : "train_limit";
    json_t *tl = json_object_get(p, tk);
    if (!json_is_integer(tl) || json_integer_value(tl) < 1 || json_integer_value(tl) > INT_MAX / c->gpus) {
        char label[512];
        plan_cell_label(c, label, sizeof label);
        snprintf(err, errlen, "%s: cell {%s}: \"scaling\": \"weak-data\" multiplies the training set by gpus: "
                 "set trainer.args.train-limit (or a train_limit axis) to a positive integer, the samples per GPU",
                 s->path, label);
        return -1;
    }
    json_object_set_new(p, "train_limit_per_gpu", json_integer(json_integer_value(tl)));
    json_object_set_new(p, tk, json_integer(json_integer_value(tl) * c->gpus));
    return 0;
}

// Fills c from the base parameters + combo; the learning rate is finished in finish_cell.
static int derive_cell(const Spec *s, const json_t *combo, PlanCell *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    json_t *p = base_params(s, combo);
    c->params = p;
    c->gpus = int_of(p, "gpus", 1);
    c->nodes = int_of(p, "nodes", 1);
    json_object_set_new(p, "gpus", json_integer(c->gpus));
    json_object_set_new(p, "nodes", json_integer(c->nodes));
    if (c->gpus % c->nodes) {
        char label[512];
        plan_cell_label(c, label, sizeof label);
        snprintf(err, errlen, "%s: cell {%s}: gpus %d do not split evenly over nodes %d", s->path, label, c->gpus, c->nodes);
        return -1;
    }
    int rc = s->strong ? strong_batch(s, combo, c, err, errlen) : weak_batch(s, combo, c, err, errlen);
    if (rc < 0) return -1;
    if (s->weak_data && weak_data_limit(s, c, err, errlen) < 0) return -1;
    json_object_set_new(p, "scaling", json_string(s->strong ? "strong" : s->weak_data ? "weak-data" : "weak"));
    c->model = json_string_value(json_object_get(p, "model"));
    c->gpu_type = json_string_value(json_object_get(p, "gpu_type"));
    json_t *seed = json_object_get(p, "seed");
    if (json_is_integer(seed)) { c->has_seed = 1; c->seed = json_integer_value(seed); }
    return 0;
}

static void finish_cell(const Spec *s, PlanCell *c, int ref_batch)
{
    json_t *lr = json_object_get(c->params, "lr");
    c->lr = json_is_number(lr) ? json_number_value(lr) : 0;
    if (s->lr_scaling != LR_SCALE_NONE && c->lr > 0) {
        json_object_set_new(c->params, "lr_scaling", json_string(s->lr_scaling == LR_SCALE_LINEAR ? "linear" : "sqrt"));
        json_object_set_new(c->params, "lr_ref_batch", json_integer(ref_batch));
        double ratio = (double)c->global_batch / ref_batch;
        c->lr *= s->lr_scaling == LR_SCALE_LINEAR ? ratio : sqrt(ratio);
    }
    static const char *const no_seed[] = {"seed", NULL};
    static const char *const weak_drop[] = {"seed", "gpus", "nodes", "global_batch", NULL};
    static const char *const strong_drop[] = {"seed", "gpus", "nodes", "batch_per_gpu", NULL};
    // weak-data: the scaled train limit varies with gpus too (train_limit_per_gpu stays)
    static const char *const data_drop[] = {"seed", "gpus", "nodes", "global_batch", "train-limit", "train_limit", NULL};
    free(c->canon);
    c->canon = json_dumps(c->params, JSON_SORT_KEYS | JSON_COMPACT);
    plan_hash(c->canon ? c->canon : "", c->key);
    hash_without(c->canon ? c->canon : "{}", no_seed, c->group_key);
    hash_without(c->canon ? c->canon : "{}", s->strong ? strong_drop : s->weak_data ? data_drop : weak_drop, c->scaling_key);
    c->model = json_string_value(json_object_get(c->params, "model"));
    c->gpu_type = json_string_value(json_object_get(c->params, "gpu_type"));
}

// ---------------------------------------------------------------------------------------------
// expansion

static int value_matches(const json_t *want, const json_t *have)
{
    if (!have) return 0;
    if (json_is_array(want)) {
        for (size_t i = 0; i < json_array_size(want); i++)
            if (json_equal(json_array_get(want, i), (json_t *)have)) return 1;
        return 0;
    }
    return json_equal((json_t *)want, (json_t *)have);
}

static int excluded(const Spec *s, const json_t *params)
{
    for (size_t i = 0; s->exclude && i < json_array_size(s->exclude); i++) {
        json_t *e = json_array_get(s->exclude, i);
        const char *k;
        json_t *v;
        int all = 1;
        json_object_foreach(e, k, v) if (!value_matches(v, json_object_get(params, k))) { all = 0; break; }
        if (all) return 1;
    }
    return 0;
}

// A growable cell list with a key set for deduplication.
typedef struct {
    PlanCell *v;
    size_t n, cap;
    char **set;   // open addressing over keys (pointers into v[i].key are unstable: store copies)
    size_t setcap;
} CellList;

static size_t key_slot(const CellList *l, const char *key)
{
    size_t h = 1469598103934665603ull;
    for (const char *p = key; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    size_t i = h & (l->setcap - 1);
    while (l->set[i] && strcmp(l->set[i], key) != 0) i = (i + 1) & (l->setcap - 1);
    return i;
}

static int list_add(CellList *l, PlanCell *c)
{
    if ((l->n + 1) * 2 > l->setcap) {
        size_t ncap = l->setcap ? l->setcap * 2 : 1024;
        char **old = l->set;
        size_t oldcap = l->setcap;
        l->set = calloc(ncap, sizeof *l->set);
        if (!l->set) return -1;
        l->setcap = ncap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i]) l->set[key_slot(l, old[i])] = old[i];
        free(old);
    }
    size_t slot = key_slot(l, c->key);
    if (l->set[slot]) { json_decref(c->params); free(c->canon); return 0; }   // duplicate cell
    if (!(l->set[slot] = strdup(c->key))) return -1;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        PlanCell *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv) return -1;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = *c;
    return 0;
}

// Calls fn for every combination of the axes (names[i] over vals[i]).
typedef struct {
    const Spec *s;
    PlanCell *tmp;
    size_t ntmp, captmp;
    int apply_exclude;
    char *err;
    size_t errlen;
} Expand;

static int expand_axes(Expand *x, const char **names, json_t **vals, size_t naxes)
{
    size_t idx[64] = {0};
    if (naxes > 64) { snprintf(x->err, x->errlen, "%s: more than 64 matrix axes", x->s->path); return -1; }
    for (;;) {
        json_t *combo = json_object();
        for (size_t a = 0; a < naxes; a++) json_object_set(combo, names[a], json_array_get(vals[a], idx[a]));
        PlanCell c;
        int rc = derive_cell(x->s, combo, &c, x->err, x->errlen);
        // an excluded combination may be one that cannot be derived (e.g. 64 over 3 GPUs)
        int skip = x->apply_exclude && (rc < 0 ? excluded(x->s, combo) : excluded(x->s, c.params));
        json_decref(combo);
        if (rc < 0 && !skip) { json_decref(c.params); return -1; }
        if (skip) json_decref(c.params);
        else {
            if (x->ntmp == x->captmp) {
                size_t ncap = x->captmp ? x->captmp * 2 : 256;
                PlanCell *nv = realloc(x->tmp, ncap * sizeof *nv);
                if (!nv) { json_decref(c.params); snprintf(x->err, x->errlen, "out of memory"); return -1; }
                x->tmp = nv;
                x->captmp = ncap;
            }
            x->tmp[x->ntmp++] = c;
        }
        size_t a = naxes;   // odometer: the last axis turns fastest
        while (a > 0) {
            a--;
            if (++idx[a] < json_array_size(vals[a])) break;
            idx[a] = 0;
            if (a == 0) return 0;
        }
        if (naxes == 0) return 0;
    }
}

typedef struct {
    const Spec *s;
    PlanCell *c;
    size_t from, to;
    int ref;
} FinishWork;

static void *finish_range(void *arg)
{
    FinishWork *w = arg;
    for (size_t i = w->from; i < w->to; i++) finish_cell(w->s, &w->c[i], w->ref);
    return NULL;
}

// finish_cell of every cell, on two threads when there are many (each cell changes only its own
// params object; shared values are only read, and jansson's reference counts are atomic).
static void finish_all(const Spec *s, PlanCell *c, size_t n, int ref)
{
    FinishWork w[2] = {{s, c, 0, n / 2, ref}, {s, c, n / 2, n, ref}};
    pthread_t th;
    int threaded = n >= 1024 && pthread_create(&th, NULL, finish_range, &w[1]) == 0;
    if (!threaded) w[0].to = n;
    finish_range(&w[0]);
    if (threaded) pthread_join(th, NULL);
}

int plan_expand(const Spec *s, PlanCell **cells, size_t *n, char *err, size_t errlen)
{
    *cells = NULL;
    *n = 0;
    Expand x = {.s = s, .apply_exclude = 1, .err = err, .errlen = errlen};
    const char *names[64];
    json_t *vals[64], *owned[64];
    size_t naxes = 0, nowned = 0;
    const char *k;
    json_t *v;
    json_object_foreach(s->matrix, k, v) {
        if (naxes == 64) break;
        names[naxes] = k;
        vals[naxes++] = v;
    }
    int rc = expand_axes(&x, names, vals, naxes);
    // include: each entry is a partial cell; axes it leaves out take all their matrix values.
    for (size_t i = 0; rc == 0 && s->include && i < json_array_size(s->include); i++) {
        json_t *inc = json_array_get(s->include, i);
        size_t m = 0;
        x.apply_exclude = 0;
        json_object_foreach(s->matrix, k, v) {
            json_t *iv = json_object_get(inc, k);
            names[m] = k;
            if (!iv) vals[m++] = v;
            else if (json_is_array(iv)) vals[m++] = iv;
            else { vals[m] = owned[nowned++] = json_pack("[O]", iv); m++; }
        }
        json_object_foreach(inc, k, v) {
            if (json_object_get(s->matrix, k) || m == 64 || nowned == 64) continue;
            names[m] = k;
            if (json_is_array(v)) vals[m++] = v;
            else { vals[m] = owned[nowned++] = json_pack("[O]", v); m++; }
        }
        rc = expand_axes(&x, names, vals, m);
        while (nowned) json_decref(owned[--nowned]);
    }
    if (rc < 0) { plan_cells_free(x.tmp, x.ntmp); return -1; }
    if (x.ntmp == 0) {
        snprintf(err, errlen, "%s: the matrix minus exclude leaves no cells", s->path);
        free(x.tmp);
        return -1;
    }
    int ref = INT_MAX;
    for (size_t i = 0; i < x.ntmp; i++) if (x.tmp[i].global_batch < ref) ref = x.tmp[i].global_batch;
    finish_all(s, x.tmp, x.ntmp, ref);
    CellList l = {0};
    size_t i = 0;
    for (; i < x.ntmp; i++)
        if (list_add(&l, &x.tmp[i]) < 0) break;
    for (size_t j = 0; j < l.setcap; j++) free(l.set[j]);
    free(l.set);
    if (i < x.ntmp) {
        for (; i < x.ntmp; i++) { json_decref(x.tmp[i].params); free(x.tmp[i].canon); }
        free(x.tmp);
        plan_cells_free(l.v, l.n);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(x.tmp);
    *cells = l.v;
    *n = l.n;
    return 0;
}

void plan_cell_clear(PlanCell *c)
{
    json_decref(c->params);
    free(c->canon);
    c->params = NULL;
    c->canon = NULL;
}

void plan_cells_free(PlanCell *cells, size_t n)
{
    for (size_t i = 0; i < n; i++) { json_decref(cells[i].params); free(cells[i].canon); }
    free(cells);
}

int plan_cell_from_params(const Spec *s, const char *params_json, PlanCell *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *p = json_loads(params_json, 0, &je);
    if (!json_is_object(p)) {
        json_decref(p);
        snprintf(err, errlen, "stored cell params are not a JSON object: %s", je.text);
        return -1;
    }
    c->params = p;
    c->gpus = int_of(p, "gpus", 1);
    c->nodes = int_of(p, "nodes", 1);
    c->batch_per_gpu = int_of(p, "batch_per_gpu", 0);
    c->global_batch = int_of(p, "global_batch", 0);
    json_t *seed = json_object_get(p, "seed");
    if (json_is_integer(seed)) { c->has_seed = 1; c->seed = json_integer_value(seed); }
    // The stored params carry the lr rule the cell was planned with; a later spec edit must not
    // change an existing cell's learning rate.
    json_t *lr = json_object_get(p, "lr");
    c->lr = json_is_number(lr) ? json_number_value(lr) : 0;
    const char *rule = json_string_value(json_object_get(p, "lr_scaling"));
    int ref = int_of(p, "lr_ref_batch", 0);
    if (rule && ref > 0 && c->lr > 0) {
        double ratio = (double)c->global_batch / ref;
        c->lr *= strcmp(rule, "sqrt") == 0 ? sqrt(ratio) : ratio;
    }
    static const char *const no_seed[] = {"seed", NULL};
    static const char *const weak_drop[] = {"seed", "gpus", "nodes", "global_batch", NULL};
    static const char *const strong_drop[] = {"seed", "gpus", "nodes", "batch_per_gpu", NULL};
    static const char *const data_drop[] = {"seed", "gpus", "nodes", "global_batch", "train-limit", "train_limit", NULL};
    const char *scaling = json_string_value(json_object_get(p, "scaling"));
    c->canon = json_dumps(p, JSON_SORT_KEYS | JSON_COMPACT);
    plan_hash(c->canon ? c->canon : "", c->key);
    hash_without(c->canon ? c->canon : "{}", no_seed, c->group_key);
    hash_without(c->canon ? c->canon : "{}", scaling && strcmp(scaling, "strong") == 0 ? strong_drop
                    : scaling && strcmp(scaling, "weak-data") == 0 ? data_drop : weak_drop, c->scaling_key);
    c->model = json_string_value(json_object_get(p, "model"));
    c->gpu_type = json_string_value(json_object_get(p, "gpu_type"));
    (void)s;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// the DB

static int sql_fail(sqlite3 *db, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "database: %s: %s", what, sqlite3_errmsg(db));
    return -1;
}

// The experiment row, inserted or updated (spec, run root, updated_at); *eid its id. 0, or -1 with err.
static int store_experiment(sqlite3 *db, const Spec *s, const char *spec_abspath, const char *run_root, double now,
                            sqlite3_int64 *eid, char *err, size_t errlen)
{
    sqlite3_stmt *exp = NULL;
    if (sqlite3_prepare_v2(db,
            "INSERT INTO experiments(name, spec_path, spec_text, run_root, created_at, updated_at) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(name) DO UPDATE SET spec_path = excluded.spec_path, "
            "spec_text = excluded.spec_text, run_root = excluded.run_root, updated_at = excluded.updated_at "
            "RETURNING id", -1, &exp, NULL) != SQLITE_OK) return sql_fail(db, "experiments", err, errlen);
    sqlite3_bind_text(exp, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(exp, 2, spec_abspath, -1, SQLITE_STATIC);
    sqlite3_bind_text(exp, 3, s->text, -1, SQLITE_STATIC);
    sqlite3_bind_text(exp, 4, run_root, -1, SQLITE_STATIC);
    sqlite3_bind_double(exp, 5, now);
    int rc = sqlite3_step(exp) == SQLITE_ROW ? 0 : sql_fail(db, "experiments", err, errlen);
    if (rc == 0) *eid = sqlite3_column_int64(exp, 0);
    sqlite3_finalize(exp);
    return rc;
}

// The statements plan_store runs per cell: insert if new, else refresh the time limit, then look
// up the id and the highest attempt.
typedef struct {
    sqlite3 *db;
    sqlite3_stmt *ins, *upd, *sel;
    sqlite3_int64 eid;
    double now;
} CellStore;

static int cell_store_prepare(CellStore *cs, char *err, size_t errlen)
{
    if (sqlite3_prepare_v2(cs->db,
            "INSERT OR IGNORE INTO cells(experiment_id, key, params, group_key, scaling_key, model, gpu_type, gpus, "
            "nodes, batch_per_gpu, global_batch, scaling, optimizer, lr, seed, time_limit_s, est_gpu_hours, created_at) "
            "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)", -1, &cs->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(cs->db, "UPDATE cells SET time_limit_s = ?1, est_gpu_hours = ?2 WHERE experiment_id = ?3 AND key = ?4",
                           -1, &cs->upd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(cs->db, "SELECT id, (SELECT COALESCE(max(attempt), 0) FROM attempts WHERE cell_id = cells.id) "
                           "FROM cells WHERE experiment_id = ?1 AND key = ?2", -1, &cs->sel, NULL) != SQLITE_OK)
        return sql_fail(cs->db, "prepare cells", err, errlen);
    return 0;
}

static void cell_store_finalize(CellStore *cs)
{
    sqlite3_finalize(cs->ins);
    sqlite3_finalize(cs->upd);
    sqlite3_finalize(cs->sel);
}

// INSERT OR IGNORE of one cell's row (the columns are what the cell says, one bind each); the
// step's result code (the caller resets the statement).
static int cell_insert(CellStore *cs, const Spec *s, const PlanCell *c, double gpuh)
{
    sqlite3_stmt *ins = cs->ins;
    const char *opt = json_string_value(json_object_get(c->params, "optimizer"));
    sqlite3_bind_int64(ins, 1, cs->eid);
    sqlite3_bind_text(ins, 2, c->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, c->canon, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 4, c->group_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 5, c->scaling_key, -1, SQLITE_STATIC);
    if (c->model) sqlite3_bind_text(ins, 6, c->model, -1, SQLITE_STATIC); else sqlite3_bind_null(ins, 6);
    if (c->gpu_type) sqlite3_bind_text(ins, 7, c->gpu_type, -1, SQLITE_STATIC); else sqlite3_bind_null(ins, 7);
    sqlite3_bind_int(ins, 8, c->gpus);
    sqlite3_bind_int(ins, 9, c->nodes);
    sqlite3_bind_int(ins, 10, c->batch_per_gpu);
    sqlite3_bind_int(ins, 11, c->global_batch);
    // the batch rule; weak-data keeps the batch per GPU (its params' "scaling" says weak-data)
    sqlite3_bind_text(ins, 12, s->strong ? "strong" : "weak", -1, SQLITE_STATIC);
    if (opt) sqlite3_bind_text(ins, 13, opt, -1, SQLITE_STATIC); else sqlite3_bind_null(ins, 13);
    if (c->lr > 0) sqlite3_bind_double(ins, 14, c->lr); else sqlite3_bind_null(ins, 14);
    if (c->has_seed) sqlite3_bind_int64(ins, 15, c->seed); else sqlite3_bind_null(ins, 15);
    sqlite3_bind_int64(ins, 16, s->time_s);
    sqlite3_bind_double(ins, 17, gpuh);
    sqlite3_bind_double(ins, 18, cs->now);
    return sqlite3_step(ins);
}

// One cell: inserted when new (cell_id, next_attempt 1), else its time limit refreshed and its id
// and highest attempt read. 0, or -1 with err.
static int store_cell(CellStore *cs, const Spec *s, PlanCell *c, size_t *added, char *err, size_t errlen)
{
    double gpuh = (double)c->gpus * (double)s->time_s / 3600.0;
    if (cell_insert(cs, s, c, gpuh) != SQLITE_DONE) return sql_fail(cs->db, "insert cell", err, errlen);
    sqlite3_reset(cs->ins);
    c->is_new = sqlite3_changes(cs->db) > 0;
    if (c->is_new) {
        (*added)++;
        c->cell_id = sqlite3_last_insert_rowid(cs->db);
        c->next_attempt = 1;
        return 0;
    }
    sqlite3_bind_int64(cs->upd, 1, s->time_s);
    sqlite3_bind_double(cs->upd, 2, gpuh);
    sqlite3_bind_int64(cs->upd, 3, cs->eid);
    sqlite3_bind_text(cs->upd, 4, c->key, -1, SQLITE_STATIC);
    if (sqlite3_step(cs->upd) != SQLITE_DONE) return sql_fail(cs->db, "update cell", err, errlen);
    sqlite3_reset(cs->upd);
    sqlite3_bind_int64(cs->sel, 1, cs->eid);
    sqlite3_bind_text(cs->sel, 2, c->key, -1, SQLITE_STATIC);
    if (sqlite3_step(cs->sel) != SQLITE_ROW) return sql_fail(cs->db, "select cell", err, errlen);
    c->cell_id = sqlite3_column_int64(cs->sel, 0);
    c->next_attempt = sqlite3_column_int(cs->sel, 1) + 1;
    sqlite3_reset(cs->sel);
    return 0;
}

int plan_store(sqlite3 *db, const Spec *s, const char *spec_abspath, const char *run_root,
               PlanCell *cells, size_t n, size_t *added, char *err, size_t errlen)
{
    *added = 0;
    CellStore cs = {.db = db, .now = (double)time(NULL)};
    // A page cache that holds the new rows (~400 bytes a cell, 40 MB at 100,000 cells), so the
    // transaction does not spill pages to the WAL and read them back (a quarter of storing 100,000
    // cells with the default 2 MB); this connection only.
    sqlite3_exec(db, "PRAGMA cache_size = -65536", NULL, NULL, NULL);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return sql_fail(db, "begin", err, errlen);
    int rc = store_experiment(db, s, spec_abspath, run_root, cs.now, &cs.eid, err, errlen);
    if (rc == 0) rc = cell_store_prepare(&cs, err, errlen);
    for (size_t i = 0; rc == 0 && i < n; i++) rc = store_cell(&cs, s, &cells[i], added, err, errlen);
    if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = sql_fail(db, "commit", err, errlen);
    cell_store_finalize(&cs);
    if (rc < 0) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// job scripts

struct PlanRenderer {
    const Spec *s;
    char *tmpl;
    char tmpl_path[PATH_MAX];
    ClusterProfile *prof;
    char run_root[PATH_MAX];
    char segx[PATH_MAX], trainer[PATH_MAX];
    char spec_dir[PATH_MAX];   // jobs run their command from here (relative paths in commands)
    char *rules;      // trainer.metrics as compact JSON, or NULL
    char *eval_tmpl;  // templates/eval.sbatch.tmpl when the spec has eval.job, else NULL
    char eval_tmpl_path[PATH_MAX];
};

// The whole file as a NUL-terminated string (malloc'd), or NULL with errno set.
static char *read_text(const char *path)
{
    char why[PATH_MAX + 128];
    return file_read(path, 0, NULL, why, sizeof why);
}

// resources.mem_per_gpu {gpu_type: size}: every GPU type it names must be one of the profile's.
static int check_mem_types(const Spec *s, const ClusterProfile *prof, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach(s->mem_per_gpu_by_type, k, v) {
        if (cluster_find_gpu(prof, k)) continue;
        char kp[300], types[512] = "";
        size_t n = 0;
        for (size_t i = 0; i < cluster_gpu_count(prof) && n < sizeof types - 40; i++)
            n += (size_t)snprintf(types + n, sizeof types - n, "%s%s", i ? ", " : "", cluster_gpu_at(prof, i)->gpu_type);
        snprintf(kp, sizeof kp, "resources.mem_per_gpu.%s", k);
        int line, col;
        if (spec_locate(s->text, kp, &line, &col) == 0)
            snprintf(err, errlen, "%s:%d:%d: %s: gpu_type '%s' is not in cluster profile '%s' (its GPU types: %s)",
                     s->path, line, col, kp, k, cluster_name(prof), types);
        else
            snprintf(err, errlen, "%s: %s: gpu_type '%s' is not in cluster profile '%s' (its GPU types: %s)",
                     s->path, kp, k, cluster_name(prof), types);
        return -1;
    }
    return 0;
}

// The spec's memory per GPU for this GPU type, or NULL (the profile's applies).
static const char *mem_override(const Spec *s, const char *gpu_type)
{
    if (s->mem_per_gpu) return s->mem_per_gpu;
    const char *k;
    json_t *v;
    json_object_foreach(s->mem_per_gpu_by_type, k, v)
        if (strcasecmp(k, gpu_type) == 0) return json_string_value(v);
    return NULL;
}

int plan_renderer_open(const Spec *s, const char *templates_dir, const char *run_root,
                       PlanRenderer **out, char *err, size_t errlen)
{
    *out = NULL;
    PlanRenderer *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return -1; }
    r->s = s;
    snprintf(r->run_root, sizeof r->run_root, "%s", run_root);
    snprintf(r->segx, sizeof r->segx, "%s", paths_self_path());
    snprintf(r->trainer, sizeof r->trainer, "%s", paths_trainer_path());
    snprintf(r->tmpl_path, sizeof r->tmpl_path, "%s/job.sbatch.tmpl", templates_dir);
    char abs[PATH_MAX];
    if (realpath(s->path, abs)) {
        char *slash = strrchr(abs, '/');
        if (slash && slash != abs) *slash = 0;
        else snprintf(abs, sizeof abs, "/");
    } else if (!getcwd(abs, sizeof abs)) {
        snprintf(abs, sizeof abs, "/");
    }
    snprintf(r->spec_dir, sizeof r->spec_dir, "%s", abs);
    if (!(r->tmpl = read_text(r->tmpl_path))) {
        snprintf(err, errlen, "%s: cannot read the job template: %s (set SEGX_TEMPLATES to the templates/ folder)",
                 r->tmpl_path, strerror(errno));
        free(r);
        return -1;
    }
    if (cluster_load(s->cluster, templates_dir, &r->prof, err, errlen) < 0) { free(r->tmpl); free(r); return -1; }
    if (check_mem_types(s, r->prof, err, errlen) < 0) { plan_renderer_close(r); return -1; }
    if (s->eval_job) {
        snprintf(r->eval_tmpl_path, sizeof r->eval_tmpl_path, "%s/eval.sbatch.tmpl", templates_dir);
        if (!(r->eval_tmpl = read_text(r->eval_tmpl_path))) {
            snprintf(err, errlen, "%s: cannot read the eval job template: %s (set SEGX_TEMPLATES to the templates/ folder)",
                     r->eval_tmpl_path, strerror(errno));
            plan_renderer_close(r);
            return -1;
        }
    }
    if (s->metrics) r->rules = json_dumps(s->metrics, JSON_COMPACT | JSON_SORT_KEYS);
    *out = r;
    return 0;
}

int plan_renderer_warning(const PlanRenderer *r, char *buf, size_t len)
{
    if (r->s->external || r->trainer[0] == '/') return 0;
    snprintf(buf, len, "no segx-train beside %s (build it with `make`, or set SEGX_TRAIN); "
             "job scripts will look for '%s' in PATH", r->segx, r->trainer);
    return 1;
}

void plan_renderer_close(PlanRenderer *r)
{
    if (!r) return;
    cluster_free(r->prof);
    free(r->tmpl);
    free(r->rules);
    free(r->eval_tmpl);
    free(r);
}

// The command line, a shell-quoted word at a time (a StrBuf, util/strbuf.h).
static void str_word(StrBuf *b, const char *w)
{
    char *q = render_shell_quote(w);
    if (b->len) sb_putc(b, ' ');
    sb_puts(b, q ? q : "''");
    free(q);
}
static void str_flag(StrBuf *b, const char *name, const json_t *v)
{
    char flag[160], val[512];
    snprintf(flag, sizeof flag, "--%s", name);
    for (char *p = flag + 2; *p; p++) if (*p == '_') *p = '-';
    if (json_is_false(v) || json_is_null(v)) return;
    str_word(b, flag);
    if (json_is_true(v)) return;
    str_word(b, render_scalar(v, val, sizeof val));
}

// segx-train's command line: fixed keys, args and axes as flags (see README "Spec"). evaluate:
// the eval job's (--evaluate: the same model and data flags, so it rebuilds the model the
// checkpoint holds and the same test split).
static json_t *command_vars(const PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir, int cpus_per_gpu);

// A flag value with {{var}} tags (e.g. "profile": "{{run_dir}}/trace.json"): the variables of an
// external command, inserted as they are (the whole value is quoted afterwards). 0, or -1 with err.
static int template_params(const PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir, int threads,
                           json_t **out, char *err, size_t errlen)
{
    *out = json_incref(c->params);
    const char *k;
    json_t *v, *vars = NULL;
    json_object_foreach(c->params, k, v) {
        if (!json_is_string(v) || !strstr(json_string_value(v), "{{")) continue;
        if (!vars) vars = command_vars(r, c, attempt, run_dir, threads);
        if (*out == c->params) { json_decref(*out); *out = json_deep_copy(c->params); }
        char *val = NULL, e[600], name[200];
        snprintf(name, sizeof name, "trainer value of '%s'", k);
        if (render_value(json_string_value(v), name, vars, &val, e, sizeof e) < 0) {
            snprintf(err, errlen, "%s: %s (variables: every matrix axis and trainer key, gpus, nodes, batch_per_gpu, "
                     "global_batch, lr, seed, run_dir, cell_key, attempt, cpus_per_gpu, spec_dir)", r->s->path, e);
            json_decref(vars);
            json_decref(*out);
            *out = NULL;
            return -1;
        }
        json_object_set_new(*out, k, json_string(val));
        free(val);
    }
    json_decref(vars);
    return 0;
}

static char *segx_train_command(const PlanRenderer *r, const PlanCell *c, const char *run_dir, int threads,
                                int evaluate, int attempt, const char *trainer, char *err, size_t errlen)
{
    StrBuf b = {0};
    char num[64];
    json_t *params;
    if (template_params(r, c, attempt, run_dir, threads, &params, err, errlen) < 0) return NULL;
    str_word(&b, trainer);
    static const char *const not_flags[] = {"gpu_type", "gpus", "nodes", "global_batch", "batch_per_gpu", "scaling",
                                            "lr_scaling", "lr_ref_batch", "lr", "eval", "seed", "train_limit_per_gpu", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v) {
        int skip = 0;
        for (const char *const *q = not_flags; *q; q++) skip |= strcmp(*q, k) == 0;
        if (!skip) str_flag(&b, k, v);
    }
    json_decref(params);
    str_word(&b, "--batch-size");
    snprintf(num, sizeof num, "%d", c->batch_per_gpu);
    str_word(&b, num);
    if (c->lr > 0) {
        str_word(&b, "--lr");
        snprintf(num, sizeof num, "%.9g", c->lr);
        str_word(&b, num);
    }
    if (c->has_seed) {
        str_word(&b, "--seed");
        snprintf(num, sizeof num, "%lld", c->seed);
        str_word(&b, num);
    }
    json_t *ev = json_object_get(c->params, "eval");
    json_object_foreach(ev, k, v) {
        char name[160];
        snprintf(name, sizeof name, "eval-%s", k);
        str_flag(&b, name, v);
    }
    str_word(&b, "--threads");
    snprintf(num, sizeof num, "%d", threads);
    str_word(&b, num);
    str_word(&b, "--out");
    str_word(&b, run_dir);
    if (evaluate) {   // loads RUN_DIR/checkpoint.bin, writes RUN_DIR/eval.json
        str_word(&b, "--evaluate");
        return b.p;
    }
    // A requeued job (Slurm preemption, exit 99) runs this script again in the same run dir:
    // it continues from checkpoint.bin; a fresh run dir has none and starts from scratch.
    str_word(&b, "--resume");
    // The eval job loads the trained parameters from checkpoint.bin: a checkpoint after every
    // epoch leaves the final one there (unless the spec chose its own --checkpoint-every).
    if (r->s->eval_job && !json_object_get(c->params, "checkpoint_every") && !json_object_get(c->params, "checkpoint-every")) {
        str_word(&b, "--checkpoint-every");
        str_word(&b, "1");
    }
    return b.p;
}

// segx-train inside the container: its "trainer", else segx-train on the image's PATH.
static const char *container_trainer(const PlanRenderer *r, const Container *box)
{
    if (!container_enabled(box)) return r->trainer;
    return box->trainer[0] ? box->trainer : "segx-train";
}

// The launch words of a job (container.h) into ctx: srun (per-rank launch under Slurm), container
// (the prefix without srun: local backend, mpirun), container_slurm (a launch-once trainer under
// Slurm: Pyxis needs an srun step), container_image; and *command becomes what runs in the
// container (setup lines inside it, compound commands through bash -c). 0, or -1 with err.
static int container_context(const PlanRenderer *r, const Container *box, int gpu, const char *run_dir, int gpus,
                             int nodes, int once, json_t *ctx, char **command, char *err, size_t errlen)
{
    const ContainerJob job = {.gpu = gpu, .run_dir = run_dir, .spec_dir = r->spec_dir};
    size_t nsetup = 0;
    const char *const *setup = cluster_setup_lines(r->prof, &nsetup);
    char *srun = NULL, *once_srun = NULL;
    char *prefix = container_prefix(box, &job, 0), *mounts = container_mount_points(box, &job);
    char *wrapped = container_command(box, &job, setup, nsetup, *command);
    int rc = cluster_render_srun(r->prof, box, &job, gpus, nodes, &srun);
    if (rc == 0 && once && !strcmp(box->runtime, "enroot"))   // Pyxis: one task with all the job's GPUs
        rc = cluster_render_srun(NULL, box, &job, 1, 1, &once_srun);
    if (rc < 0 || !prefix || !wrapped || !mounts) {
        snprintf(err, errlen, "%s: %s", r->s->path, rc < 0 ? (srun ? srun : once_srun ? once_srun : "?") : "out of memory");
        rc = -1;
    } else {
        json_object_set_new(ctx, "srun", json_string(srun));
        json_object_set_new(ctx, "container", json_string(prefix));
        json_object_set_new(ctx, "container_slurm", json_string(once_srun ? once_srun : prefix));
        json_object_set_new(ctx, "container_image", json_string(container_enabled(box) ? box->image : ""));
        json_object_set_new(ctx, "container_runtime", json_string(box->runtime));
        json_object_set_new(ctx, "container_mounts", json_string(mounts));
        json_object_set_new(ctx, "command", json_string(wrapped));
        free(*command);
        *command = wrapped;
        wrapped = NULL;
    }
    free(srun);
    free(once_srun);
    free(prefix);
    free(mounts);
    free(wrapped);
    return rc;
}

// The cell's GPU type from the profile, with the spec's overrides: resources.cpus_per_gpu (so
// --cpus-per-task and the trainer's --threads always agree; before, a profile's 12 CPUs per GPU
// ran with --threads 1) and resources.mem_per_gpu per GPU type (--mem = it x GPUs per node).
// 0, or -1 with err naming the cell.
static int train_gpu(const PlanRenderer *r, const char *gt, const char *label, ClusterGpu *gpu, char *err, size_t errlen)
{
    const Spec *s = r->s;
    const ClusterGpu *pg = cluster_find_gpu(r->prof, gt);
    if (!pg) {
        snprintf(err, errlen, "%s: cell {%s}: gpu_type '%s' is not in cluster profile '%s' (templates/clusters/)",
                 s->path, label, gt, cluster_name(r->prof));
        return -1;
    }
    *gpu = *pg;
    if (s->cpus_per_gpu_set) gpu->cpus_per_gpu = s->cpus_per_gpu;
    const char *mem = mem_override(s, gt);
    if (mem) snprintf(gpu->mem_per_gpu, sizeof gpu->mem_per_gpu, "%s", mem);
    return 0;
}

// The train job template's variables, but the launch words (container_context adds them).
static json_t *train_context(const PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                             const char *job_name, int cpus_per_gpu, const char *directives)
{
    const Spec *s = r->s;
    json_t *ctx = json_object();
    json_object_set_new(ctx, "experiment", json_string(s->name));
    json_object_set_new(ctx, "cell_key", json_string(c->key));
    json_object_set_new(ctx, "attempt", json_integer(attempt));
    json_object_set_new(ctx, "run_dir", json_string(run_dir));
    json_object_set_new(ctx, "job_name", json_string(job_name));
    json_object_set_new(ctx, "gpus", json_integer(c->gpus));
    json_object_set_new(ctx, "nodes", json_integer(c->nodes));
    json_object_set_new(ctx, "cpus_per_gpu", json_integer(cpus_per_gpu));
    json_object_set_new(ctx, "time_limit", json_string(s->time));
    json_object_set_new(ctx, "sbatch", json_string(directives));
    json_object_set_new(ctx, "segx", json_string(r->segx));
    json_object_set_new(ctx, "spec_dir", json_string(r->spec_dir));
    json_object_set_new(ctx, "launch_once", json_boolean(s->launch_once));
    json_object_set_new(ctx, "external", json_boolean(s->external));
    if (r->rules) json_object_set_new(ctx, "metrics_rules", json_string(r->rules));
    json_object_set(ctx, "params", c->params);
    return ctx;
}

// What the train job runs: trainer.command rendered with every parameter plus the job's own
// variables (external trainers), else segx-train's command line. NULL with err.
static char *train_command(const PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                           int cpus_per_gpu, const Container *box, char *err, size_t errlen)
{
    const Spec *s = r->s;
    if (!s->external)
        return segx_train_command(r, c, run_dir, cpus_per_gpu, 0, attempt, container_trainer(r, box), err, errlen);
    json_t *vars = command_vars(r, c, attempt, run_dir, cpus_per_gpu);
    char *command = NULL, e[512];
    if (render_template(s->command, "trainer.command", vars, &command, e, sizeof e) < 0)
        snprintf(err, errlen, "%s: %s (variables: every matrix axis, gpus, nodes, batch_per_gpu, "
                 "global_batch, lr, seed, run_dir, cell_key, attempt)", s->path, e);
    json_decref(vars);
    return command;
}

int plan_render_text(PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                     char **script, char *err, size_t errlen)
{
    *script = NULL;
    const Spec *s = r->s;
    char label[512], job_name[160];
    plan_cell_label(c, label, sizeof label);
    const char *gt = c->gpu_type ? c->gpu_type : "cpu";
    ClusterGpu gpu;
    if (train_gpu(r, gt, label, &gpu, err, errlen) < 0) return -1;
    snprintf(job_name, sizeof job_name, "segx-%s-%.8s", s->name, c->key);
    Container box;
    char cerr[1200];
    if (cluster_container(r->prof, s->container, &box, cerr, sizeof cerr) < 0) {
        snprintf(err, errlen, "%s: %s", s->path, cerr);
        return -1;
    }
    const ClusterJobOpts train = {.log_prefix = "slurm", .requeue = 1, .setup_in_container = container_enabled(&box)};
    char *directives = NULL;
    if (cluster_render_job_directives(r->prof, &gpu, c->gpus, c->nodes, s->time, job_name, run_dir, &train, &directives) < 0) {
        snprintf(err, errlen, "%s: cell {%s}: %s", s->path, label, directives);   // the message is in its output
        free(directives);
        container_clear(&box);
        return -1;
    }
    json_t *ctx = train_context(r, c, attempt, run_dir, job_name, gpu.cpus_per_gpu, directives);
    free(directives);
    char *command = train_command(r, c, attempt, run_dir, gpu.cpus_per_gpu, &box, err, errlen);
    int rc = command ? 0 : -1;
    if (rc == 0 && (rc = container_context(r, &box, strcasecmp(gt, "cpu") != 0, run_dir, c->gpus, c->nodes,
                                           s->launch_once, ctx, &command, err, errlen)) == 0)
        rc = render_template(r->tmpl, r->tmpl_path, ctx, script, err, errlen);
    free(command);
    json_decref(ctx);
    container_clear(&box);
    return rc;
}

// Variables of an external command template (trainer.command, eval.job.command).
static json_t *command_vars(const PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir, int cpus_per_gpu)
{
    const Spec *s = r->s;
    json_t *vars = json_copy(c->params);
    json_object_set_new(vars, "run_dir", json_string(run_dir));
    json_object_set_new(vars, "experiment", json_string(s->name));
    json_object_set_new(vars, "cell_key", json_string(c->key));
    json_object_set_new(vars, "attempt", json_integer(attempt));
    json_object_set_new(vars, "cpus_per_gpu", json_integer(cpus_per_gpu));
    json_object_set_new(vars, "spec_dir", json_string(r->spec_dir));
    if (c->lr > 0) json_object_set_new(vars, "lr", json_real(c->lr));
    if (!json_object_get(vars, "seed")) json_object_set_new(vars, "seed", json_integer(0));
    return vars;
}

// "FILE:LINE:COL: KEYPATH: " (or "FILE: KEYPATH: ") for an error about a spec key.
static void spec_where(const Spec *s, const char *keypath, char *out, size_t len)
{
    int line, col;
    if (spec_locate(s->text, keypath, &line, &col) == 0) snprintf(out, len, "%s:%d:%d: %s: ", s->path, line, col, keypath);
    else snprintf(out, len, "%s: %s: ", s->path, keypath);
}

int plan_has_eval(const PlanRenderer *r) { return r->s->eval_job != NULL; }

// The eval job's GPU type (eval.job.gpu_type, else the cell's) from the profile, on one node, with
// eval.job's CPUs and memory per GPU (else the spec's resources, else the profile's). 0, or -1
// with err naming the spec key or the cell.
static int eval_gpu(const PlanRenderer *r, const char *gt, const char *label, ClusterGpu *gpu, char *err, size_t errlen)
{
    const Spec *s = r->s;
    char where[1200];
    const ClusterGpu *pg = cluster_find_gpu(r->prof, gt);
    if (!pg) {
        if (s->eval_gpu_type) {
            spec_where(s, "eval.job.gpu_type", where, sizeof where);
            snprintf(err, errlen, "%sgpu_type '%s' is not in cluster profile '%s' (templates/clusters/)", where, gt,
                     cluster_name(r->prof));
        } else {
            snprintf(err, errlen, "%s: cell {%s}: gpu_type '%s' is not in cluster profile '%s' (templates/clusters/)",
                     s->path, label, gt, cluster_name(r->prof));
        }
        return -1;
    }
    if (s->eval_gpus > pg->gpus_per_node) {
        spec_where(s, "eval.job.gpus", where, sizeof where);
        snprintf(err, errlen, "%s%d GPUs: the eval job runs on one node, and %s nodes of cluster '%s' have %d",
                 where, s->eval_gpus, pg->gpu_type, cluster_name(r->prof), pg->gpus_per_node);
        return -1;
    }
    *gpu = *pg;
    gpu->cpus_per_gpu = s->eval_cpus_per_gpu ? s->eval_cpus_per_gpu : s->cpus_per_gpu_set ? s->cpus_per_gpu : pg->cpus_per_gpu;
    const char *mem = s->eval_mem_per_gpu ? s->eval_mem_per_gpu : mem_override(s, gt);
    if (mem) snprintf(gpu->mem_per_gpu, sizeof gpu->mem_per_gpu, "%s", mem);
    return 0;
}

// What the eval job runs: eval.job.command rendered (the command variables plus eval_gpus), else
// segx-train --evaluate with every CPU of the job. NULL with err.
static char *eval_command(const PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                          int cpus_per_gpu, int threads, const Container *box, char *err, size_t errlen)
{
    const Spec *s = r->s;
    if (!s->eval_command)
        return segx_train_command(r, c, run_dir, threads, 1, attempt, container_trainer(r, box), err, errlen);
    json_t *vars = command_vars(r, c, attempt, run_dir, cpus_per_gpu);
    json_object_set_new(vars, "eval_gpus", json_integer(s->eval_gpus));
    char *command = NULL, e[512];
    if (render_template(s->eval_command, "eval.job.command", vars, &command, e, sizeof e) < 0) {
        char where[1200];
        spec_where(s, "eval.job.command", where, sizeof where);
        snprintf(err, errlen, "%s%s (variables: every matrix axis, gpus, nodes, batch_per_gpu, global_batch, lr, "
                 "seed, run_dir, cell_key, attempt, cpus_per_gpu, eval_gpus)", where, e);
    }
    json_decref(vars);
    return command;
}

// Fills the eval template's variables into ctx (beside container_context's launch words) and
// renders it. 0, or -1 with err.
static int render_eval_context(const PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                               const char *job_name, const char *directives, json_t *ctx, char **script,
                               char *err, size_t errlen)
{
    const Spec *s = r->s;
    json_object_set_new(ctx, "experiment", json_string(s->name));
    json_object_set_new(ctx, "cell_key", json_string(c->key));
    json_object_set_new(ctx, "attempt", json_integer(attempt));
    json_object_set_new(ctx, "run_dir", json_string(run_dir));
    json_object_set_new(ctx, "job_name", json_string(job_name));
    json_object_set_new(ctx, "gpus", json_integer(s->eval_gpus));
    json_object_set_new(ctx, "spec_dir", json_string(r->spec_dir));
    json_object_set_new(ctx, "sbatch", json_string(directives));
    return render_template(r->eval_tmpl, r->eval_tmpl_path, ctx, script, err, errlen);
}

int plan_render_eval_text(PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                          char **script, char *err, size_t errlen)
{
    *script = NULL;
    const Spec *s = r->s;
    if (!s->eval_job || !r->eval_tmpl) { snprintf(err, errlen, "%s: the spec has no eval.job", s->path); return -1; }
    char label[512], job_name[160];
    plan_cell_label(c, label, sizeof label);
    const char *gt = s->eval_gpu_type ? s->eval_gpu_type : c->gpu_type ? c->gpu_type : "cpu";
    ClusterGpu gpu;
    if (eval_gpu(r, gt, label, &gpu, err, errlen) < 0) return -1;
    int threads = gpu.cpus_per_gpu * s->eval_gpus;
    snprintf(job_name, sizeof job_name, "segx-%s-%.8s-eval", s->name, c->key);
    // one process with every CPU of the allocation (the evaluator is not launched per GPU)
    ClusterJobOpts jo = {.log_prefix = "eval", .tasks_per_node = 1, .cpus_per_task = threads,
                               .requeue = 0, .kill_on_invalid_dep = 1};
    Container box;
    char cerr[1200];
    if (cluster_container(r->prof, s->container, &box, cerr, sizeof cerr) < 0) {
        snprintf(err, errlen, "%s: %s", s->path, cerr);
        return -1;
    }
    jo.setup_in_container = container_enabled(&box);
    char *directives = NULL;
    if (cluster_render_job_directives(r->prof, &gpu, s->eval_gpus, 1, s->eval_time, job_name, run_dir, &jo, &directives) < 0) {
        snprintf(err, errlen, "%s: cell {%s}: eval job: %s", s->path, label, directives);
        free(directives);
        container_clear(&box);
        return -1;
    }
    char *command = eval_command(r, c, attempt, run_dir, gpu.cpus_per_gpu, threads, &box, err, errlen);
    int rc = command ? 0 : -1;
    json_t *ctx = json_object();
    if (rc == 0)   // one process with every GPU of the eval job (Pyxis: an srun step of one task)
        rc = container_context(r, &box, strcasecmp(gt, "cpu") != 0, run_dir, 1, 1, 1, ctx, &command, err, errlen);
    if (rc == 0) rc = render_eval_context(r, c, attempt, run_dir, job_name, directives, ctx, script, err, errlen);
    json_decref(ctx);
    free(command);
    free(directives);
    container_clear(&box);
    return rc;
}


// RUN_ROOT/<key>/attempt-<n>: usually only the last one or two levels are missing.
static int make_run_dir(char *dir)
{
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {   // the cell dir first: for a new cell both levels are missing
        *slash = 0;
        int rc = mkdir(dir, 0755);
        *slash = '/';
        if ((rc == 0 || errno == EEXIST) && (mkdir(dir, 0755) == 0 || errno == EEXIST)) return 0;
    }
    return file_mkdir_p(dir, 0755);
}

static int write_script(const char *run_dir, const char *name, const char *script, char *path, size_t pathlen,
                        char *err, size_t errlen);

int plan_write_job(const char *run_dir, const char *script, char *path, size_t pathlen, char *err, size_t errlen)
{
    return write_script(run_dir, "job.sh", script, path, pathlen, err, errlen);
}

int plan_write_eval(const char *run_dir, const char *script, char *path, size_t pathlen, char *err, size_t errlen)
{
    return write_script(run_dir, "eval.sh", script, path, pathlen, err, errlen);
}

// The reason in file_write_replace's "<path>: cannot write: <reason>" (other failures: what follows
// "<path>: "), so a failed write reads as it always has: "<path>: cannot write the job script: <reason>".
static const char *write_reason(const char *why, const char *path)
{
    size_t plen = strlen(path);
    if (strncmp(why, path, plen) != 0 || strncmp(why + plen, ": ", 2) != 0) return why;
    why += plen + 2;
    return strncmp(why, "cannot write: ", 14) == 0 ? why + 14 : why;
}

static int write_script(const char *run_dir, const char *name, const char *script, char *path, size_t pathlen,
                        char *err, size_t errlen)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", run_dir);
    if (make_run_dir(dir) < 0) {
        snprintf(err, errlen, "%s: cannot create the run dir: %s", run_dir, strerror(errno));
        return -1;
    }
    // Replaced whole (temp + rename): a plan killed mid-write leaves the old script or none, never
    // a part of one that a later submit would send. No fsync: one per script made a 10,000-cell plan
    // ~5x slower, and the scripts are rendered again from the DB's rows.
    snprintf(path, pathlen, "%s/%s", run_dir, name);
    char why[PATH_MAX + 300];
    if (file_write_replace(path, script, strlen(script), 0755, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: cannot write the job script: %s", path, write_reason(why, path));
        return -1;
    }
    return 0;
}

int plan_render_job(PlanRenderer *r, const PlanCell *c, int attempt, char *path, size_t pathlen,
                    char *run_dir, size_t rdlen, char *err, size_t errlen)
{
    snprintf(run_dir, rdlen, "%s/%s/attempt-%d", r->run_root, c->key, attempt);
    char *script;
    if (plan_render_text(r, c, attempt, run_dir, &script, err, errlen) < 0) return -1;
    int rc = plan_write_job(run_dir, script, path, pathlen, err, errlen);
    free(script);
    return rc;
}

size_t plan_varying_keys(json_t *const *params, size_t n, const char **keys, size_t max)
{
    size_t m = 0;
    if (n == 0) return 0;
    const char *k;
    json_t *v;
    json_object_foreach(params[0], k, v) {
        if (m == max) break;
        for (size_t i = 1; i < n; i++) {
            if (!json_equal(v, json_object_get(params[i], k))) { keys[m++] = k; break; }
        }
    }
    // keys that some cells lack entirely (include entries adding a new axis)
    for (size_t i = 1; i < n && m < max; i++) {
        json_object_foreach(params[i], k, v) {
            if (json_object_get(params[0], k)) continue;
            int seen = 0;
            for (size_t j = 0; j < m; j++) seen |= strcmp(keys[j], k) == 0;
            if (!seen && m < max) keys[m++] = k;
        }
    }
    return m;
}
