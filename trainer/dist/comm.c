// trainer/dist/comm.c — picks a communicator backend, reads the launch environment, and the
// DDP gradient reducer that runs on any backend.
#include "config.h"
#include "trainer/dist/comm_impl.h"   // defines: Comm internals, CommOps, CommLaunch

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMM_DEFAULT_TIMEOUT_S 300.0

// ----------------------------------------------------------------------------------------------
// helpers

int comm_fail(Comm *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return -1;
}

double comm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Reads integer env var `name`; 1 if set (value in *v), 0 if unset, -1 if malformed.
static int env_int(const char *name, int *v, char *err, size_t errlen) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end || x < 0 || x > 1 << 24) {
        snprintf(err, errlen, "environment variable %s=\"%s\" is not a non-negative integer", name, s);
        return -1;
    }
    *v = (int)x;
    return 1;
}

int comm_launch_env(CommLaunch *l, char *err, size_t errlen) {
    *l = (CommLaunch){ .world = 1, .rank = 0, .local_rank = 0, .launcher = "", .has_mpi_runtime = 0 };
    int w = 0, r = 0, lr = 0, g;
    if ((g = env_int("OMPI_COMM_WORLD_SIZE", &w, err, errlen)) < 0) return -1;
    if (g) {   // mpirun (OpenMPI), also when mpirun runs inside a Slurm allocation
        if (env_int("OMPI_COMM_WORLD_RANK", &r, err, errlen) < 0) return -1;
        if (env_int("OMPI_COMM_WORLD_LOCAL_RANK", &lr, err, errlen) < 0) return -1;
        *l = (CommLaunch){ w, r, lr, "mpirun", 1 };
    } else if ((g = env_int("SLURM_STEP_NUM_TASKS", &w, err, errlen)) != 0) {   // srun
        if (g < 0) return -1;
        if (env_int("SLURM_PROCID", &r, err, errlen) < 0) return -1;
        if (env_int("SLURM_LOCALID", &lr, err, errlen) < 0) return -1;
        *l = (CommLaunch){ w, r, lr, "srun", getenv("PMIX_RANK") != NULL || getenv("PMI_RANK") != NULL };
    }
    // PMIX_RANK alone is not a launch: an MPI singleton sets it too. mpirun and srun both say the world.
    if (l->rank >= l->world) {
        snprintf(err, errlen, "launch environment says rank %d of world %d (launcher %s)", l->rank, l->world, l->launcher);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------------------------
// dispatcher

// --allreduce-algo names -> the engines' own settings (Open MPI 4.1's enum values of
// coll_tuned_allreduce_algorithm and coll_libnbc_iallreduce_algorithm; NCCL_ALGO's spelling).
typedef struct { const char *name; int tuned, libnbc; const char *nccl; } AlgoName;
static const AlgoName algos[] = {
    { "ring", 4, 1, "Ring" },
    { "recursive-doubling", 3, 4, NULL },
    { "rabenseifner", 6, 3, NULL },
    { "tree", 0, 0, "Tree" },
};

// Hands the algorithm to the engine `kind` (resolved) before it starts: 0, or -1 naming what the
// engine offers.
static int select_algo(const char *kind, const char *algo, char *err, size_t errlen) {
    if (!algo || !*algo || !strcmp(algo, "auto")) return 0;
    const AlgoName *a = NULL;
    for (size_t i = 0; i < sizeof algos / sizeof *algos; i++)
        if (!strcmp(algo, algos[i].name)) a = &algos[i];
    if (!a) {
        snprintf(err, errlen, "unknown allreduce algorithm \"%s\" (--allreduce-algo): expected auto, ring, "
                 "recursive-doubling, rabenseifner (MPI) or tree (NCCL)", algo);
        return -1;
    }
    if (!strcmp(kind, "none")) return 0;   // one rank: nothing is reduced
    if (!strcmp(kind, "mpi")) {
        if (!a->tuned) {
            snprintf(err, errlen, "--allreduce-algo %s is an NCCL algorithm; with --comm mpi use ring, "
                     "recursive-doubling or rabenseifner (Open MPI coll_tuned/coll_libnbc)", algo);
            return -1;
        }
        char v[16];
        setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", 1);
        snprintf(v, sizeof v, "%d", a->tuned);
        setenv("OMPI_MCA_coll_tuned_allreduce_algorithm", v, 1);
        snprintf(v, sizeof v, "%d", a->libnbc);
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", v, 1);
        return 0;
    }
    if (!a->nccl) {
        snprintf(err, errlen, "--allreduce-algo %s is an MPI algorithm; with NCCL use ring or tree (NCCL_ALGO)", algo);
        return -1;
    }
    setenv("NCCL_ALGO", a->nccl, 1);
    return 0;
}

int comm_create(const char *kind, Comm **out, char *err, size_t errlen) {
    return comm_create_algo(kind, NULL, out, err, errlen);
}

int comm_create_algo(const char *kind, const char *algo, Comm **out, char *err, size_t errlen) {
    *out = NULL;
    if (!kind || !*kind) kind = "auto";
    CommLaunch l;
    if (comm_launch_env(&l, err, errlen)) return -1;
    if (!strcmp(kind, "auto")) {
        if (l.world == 1) kind = "none";
        else if (l.has_mpi_runtime) kind = "mpi";
        else {
            snprintf(err, errlen,
                     "--comm auto: %s started %d tasks but without an MPI runtime (no PMIx/PMI in the "
                     "environment): launch with `srun --mpi=pmix_v4` or `mpirun -np %d`, or use --comm nccl "
                     "with MASTER_ADDR/MASTER_PORT set", l.launcher, l.world, l.world);
            return -1;
        }
    }
    Comm *c = calloc(1, sizeof *c);
    if (!c) { snprintf(err, errlen, "out of memory creating communicator"); return -1; }
    c->timeout_s = COMM_DEFAULT_TIMEOUT_S;
    const char *t = getenv("SEGX_COMM_TIMEOUT");
    if (t && *t) {
        char *end;
        double v = strtod(t, &end);
        if (*end || !(v > 0)) {
            snprintf(err, errlen, "SEGX_COMM_TIMEOUT=\"%s\" is not a positive number of seconds", t);
            free(c);
            return -1;
        }
        c->timeout_s = v;
    }
    int rc;
    if (!strcmp(kind, "none")) {
        if (l.world > 1) {
            snprintf(err, errlen, "--comm none but %s launched %d ranks: every rank would train alone; "
                     "use --comm auto, mpi or nccl", l.launcher, l.world);
            free(c);
            return -1;
        }
        rc = comm_none_init(c, err, errlen);
    } else if (!strcmp(kind, "mpi") || !strcmp(kind, "nccl")) {
        if (select_algo(kind, algo, err, errlen)) { free(c); return -1; }
        rc = !strcmp(kind, "mpi") ? comm_mpi_init(c, err, errlen) : comm_nccl_init(c, err, errlen);
    } else {
        snprintf(err, errlen, "unknown communicator \"%s\" (--comm): expected auto, none, mpi or nccl", kind);
        free(c);
        return -1;
    }
    if (!rc && select_algo("none", algo, err, errlen)) { comm_free(c); return -1; }   // a misspelt name, one rank
    if (rc) { free(c); return -1; }
    snprintf(c->algo, sizeof c->algo, "%s", algo && *algo && rc == 0 ? algo : "auto");
    if (!strcmp(c->kind, "mpi")) {   // what the engine took, not what was asked
        if (comm_mpi_allreduce_algo(c->algo, sizeof c->algo, err, errlen)) { comm_free(c); return -1; }
        if (algo && *algo && strcmp(c->algo, algo) && !(strcmp(algo, "auto") == 0)) {
            snprintf(err, errlen, "--allreduce-algo %s: Open MPI reports \"%s\" in effect (MPI was initialised "
                     "before the setting could reach it, or OMPI_MCA_coll_* settings override it)", algo, c->algo);
            comm_free(c);
            return -1;
        }
    }
    *out = c;
    return 0;
}

const char *comm_allreduce_algo(const Comm *c) { return c->algo[0] ? c->algo : "auto"; }

void comm_free(Comm *c) {
    if (!c) return;
    if (c->ops && c->ops->destroy) c->ops->destroy(c);
    free(c);
}

const char *comm_kind(const Comm *c) { return c->kind; }
int comm_rank(const Comm *c) { return c->rank; }
int comm_world(const Comm *c) { return c->world; }
int comm_local_rank(const Comm *c) { return c->local_rank; }
const char *comm_error(const Comm *c) { return c->err; }
double comm_timeout(const Comm *c) { return c->timeout_s; }
void comm_set_timeout(Comm *c, double seconds) { if (seconds > 0) c->timeout_s = seconds; }

static int check_failed(Comm *c) {
    if (c->failed) {
        if (!c->err[0]) comm_fail(c, "communicator already failed");
        return -1;
    }
    return 0;
}

static int mark(Comm *c, int rc) { if (rc) c->failed = 1; return rc; }

int comm_broadcast(Comm *c, void *buf, size_t bytes, int root) {
    if (check_failed(c)) return -1;
    if (root < 0 || root >= c->world) return comm_fail(c, "broadcast root %d outside world of %d", root, c->world);
    if (c->world == 1 || bytes == 0) return 0;
    return mark(c, c->ops->broadcast(c, buf, bytes, root));
}

int comm_allreduce_sum_f32(Comm *c, float *buf, size_t n) {
    if (check_failed(c)) return -1;
    if (c->world == 1 || n == 0) return 0;
    return mark(c, c->ops->allreduce_sum(c, buf, n, COMM_F32));
}

int comm_allreduce_sum_f64(Comm *c, double *buf, size_t n) {
    if (check_failed(c)) return -1;
    if (c->world == 1 || n == 0) return 0;
    return mark(c, c->ops->allreduce_sum(c, buf, n, COMM_F64));
}

int comm_barrier(Comm *c) {
    if (check_failed(c)) return -1;
    if (c->world == 1) return 0;
    return mark(c, c->ops->barrier(c));
}

int comm_allreduce_sum_f64_fn(void *ctx, double *buf, size_t n) {
    return comm_allreduce_sum_f64((Comm *)ctx, buf, n);
}

// ----------------------------------------------------------------------------------------------
// comm_none: one rank; every collective is the identity.

static void none_destroy(Comm *c) { (void)c; }
static const CommOps none_ops = { .destroy = none_destroy };

int comm_none_init(Comm *c, char *err, size_t errlen) {
    (void)err; (void)errlen;
    c->ops = &none_ops;
    c->kind = "none";
    c->rank = 0; c->world = 1; c->local_rank = 0;
    return 0;
}

// ----------------------------------------------------------------------------------------------
// DDP reducer

typedef struct {
    size_t off, n;     // slice of grads
    void *req;         // in flight when non-NULL
    int state;         // 0 waiting for backward, 1 launched, 2 reduced
} Bucket;

struct DdpReducer {
    Comm *c;
    const char *kind;    // "bucket" | "fused" | "per-tensor"
    int overlap;         // buckets start during backward (bucket, per-tensor) or after it (fused)
    float *grads;
    size_t n;
    Bucket *b;
    int nb;
    int next;            // first bucket not yet launched this step
    double t_first;      // first launch of this step
    double t_last_done;  // latest completion observed this step
    DdpStats stats;
    int *order;          // launch order of the last step (bucket indices), for tests
    int norder;
    DdpScaleFn scale;    // averages the sums where the gradients live
    void *scale_ctx;
};

// The default scale function: gradients in host memory (the CPU table).
static int host_scale(void *ctx, float *g, size_t n, float a) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) g[i] *= a;
    return 0;
}

void ddp_set_scale_fn(DdpReducer *r, DdpScaleFn fn, void *ctx) {
    r->scale = fn ? fn : host_scale;
    r->scale_ctx = fn ? ctx : NULL;
}

int ddp_create(Comm *c, float *grads, size_t n, double bucket_mb, DdpReducer **out, char *err, size_t errlen) {
    DdpConfig cfg = { .kind = "bucket", .bucket_mb = bucket_mb };
    if (!(bucket_mb > 0) || !isfinite(bucket_mb)) {
        snprintf(err, errlen, "bucket size %g MB (--bucket-mb) must be a positive number", bucket_mb);
        return -1;
    }
    return ddp_create_cfg(c, grads, n, &cfg, out, err, errlen);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

// Slices [starts[i], starts[i+1]) (the last one to n): bucket_mb tiles, tensors, or fusion buffers of
// whole tensors. Returns the count (starts malloc'd), or -1 with err.
static long plan_slices(const DdpConfig *cfg, size_t n, size_t **starts_out, char *err, size_t errlen) {
    const char *kind = cfg->kind;
    size_t *st = NULL;
    long k = 0;
    if (!strcmp(kind, "bucket")) {
        double mb = cfg->bucket_mb > 0 ? cfg->bucket_mb : 25;
        double per = mb * 1024.0 * 1024.0 / sizeof(float);
        size_t be = per < 1 ? 1 : per > (double)n ? n : (size_t)per;
        size_t nb = (n + be - 1) / be;
        if (nb > 1 << 20) { snprintf(err, errlen, "bucket size %g MB gives %zu buckets; use a larger --bucket-mb", mb, nb); return -1; }
        if (!(st = malloc(nb * sizeof *st))) goto oom;
        for (size_t i = 0; i < nb; i++) st[i] = i * be;
        *starts_out = st;
        return (long)nb;
    }
    if (cfg->ntensors <= 0 || !cfg->tensor_off) {
        snprintf(err, errlen, "--reducer %s needs the model's tensor boundaries", kind);
        return -1;
    }
    // tensors in buffer order; whatever precedes the first tensor joins it
    size_t *t = malloc(((size_t)cfg->ntensors + 1) * sizeof *t);
    if (!t) goto oom;
    memcpy(t, cfg->tensor_off, (size_t)cfg->ntensors * sizeof *t);
    qsort(t, (size_t)cfg->ntensors, sizeof *t, cmp_size);
    int nt = 0;
    for (int i = 0; i < cfg->ntensors; i++) {
        if (t[i] >= n) {
            snprintf(err, errlen, "tensor offset %zu lies outside the gradient buffer of %zu elements", t[i], n);
            free(t);
            return -1;
        }
        if (nt == 0 || t[i] != t[nt - 1]) t[nt++] = t[i];
    }
    t[0] = 0;
    t[nt] = n;
    if (!(st = malloc((size_t)nt * sizeof *st))) { free(t); goto oom; }
    if (!strcmp(kind, "per-tensor")) {
        memcpy(st, t, (size_t)nt * sizeof *st);
        k = nt;
    } else {   // fused: whole tensors into buffers of at most fusion_mb
        double mb = cfg->fusion_mb > 0 ? cfg->fusion_mb : 64;
        double cap = mb * 1024.0 * 1024.0 / sizeof(float);
        for (int i = 0; i < nt; i++)
            if (k == 0 || (double)(t[i + 1] - st[k - 1]) > cap) st[k++] = t[i];
    }
    free(t);
    *starts_out = st;
    return k;
oom:
    snprintf(err, errlen, "out of memory planning the gradient reducer");
    return -1;
}

int ddp_create_cfg(Comm *c, float *grads, size_t n, const DdpConfig *cfg, DdpReducer **out, char *err, size_t errlen) {
    *out = NULL;
    const char *kind = cfg && cfg->kind ? cfg->kind : "bucket";
    const char *canon = !strcmp(kind, "bucket") ? "bucket" : !strcmp(kind, "fused") ? "fused"
                      : !strcmp(kind, "per-tensor") ? "per-tensor" : NULL;
    if (!canon) {
        snprintf(err, errlen, "unknown reducer \"%s\" (--reducer): expected bucket, fused or per-tensor", kind);
        return -1;
    }
    double mb = !strcmp(canon, "fused") ? cfg->fusion_mb : cfg->bucket_mb;
    if (mb < 0 || !isfinite(mb)) {
        snprintf(err, errlen, "%s size %g MB (%s) must be a positive number", !strcmp(canon, "fused") ? "fusion buffer" : "bucket",
                 mb, !strcmp(canon, "fused") ? "--fusion-mb" : "--bucket-mb");
        return -1;
    }
    if (n == 0 || !grads) { snprintf(err, errlen, "DDP reducer needs a non-empty gradient buffer"); return -1; }
    DdpConfig k = *cfg;
    k.kind = canon;
    size_t *st = NULL;
    long nb = plan_slices(&k, n, &st, err, errlen);
    if (nb < 0) return -1;
    DdpReducer *r = calloc(1, sizeof *r);
    Bucket *b = calloc((size_t)nb, sizeof *b);
    int *order = calloc((size_t)nb, sizeof *order);
    if (!r || !b || !order) {
        free(r); free(b); free(order); free(st);
        snprintf(err, errlen, "out of memory creating the DDP reducer (%ld buckets)", nb);
        return -1;
    }
    for (long i = 0; i < nb; i++) {
        b[i].off = st[i];
        b[i].n = (i + 1 == nb ? n : st[i + 1]) - st[i];
    }
    free(st);
    *r = (DdpReducer){ .c = c, .kind = canon, .overlap = strcmp(canon, "fused") != 0, .grads = grads, .n = n,
                       .b = b, .nb = (int)nb, .order = order, .scale = host_scale };
    *out = r;
    return 0;
}

const char *ddp_kind(const DdpReducer *r) { return r->kind; }

void ddp_free(DdpReducer *r) {
    if (!r) return;
    // Requests still in flight belong to a failed or abandoned step: let them finish (bounded by
    // the timeout) so the backend does not write into freed memory.
    for (int i = 0; i < r->nb; i++)
        if (r->b[i].req && !r->c->failed) r->c->ops->wait(r->c, r->b[i].req);
    free(r->b);
    free(r->order);
    free(r);
}

static void launch(DdpReducer *r, int i) {
    Bucket *b = &r->b[i];
    b->state = 1;
    if (r->next == 0) { r->t_first = comm_now(); r->t_last_done = r->t_first; r->norder = 0; }
    r->order[r->norder++] = i;
    r->next = i + 1;
    if (r->c->world == 1 || r->c->failed) { b->state = 2; return; }
    if (r->c->ops->iallreduce_f32(r->c, r->grads + b->off, b->n, &b->req)) {
        r->c->failed = 1;
        b->req = NULL;
        b->state = 2;
    } else if (!b->req) b->state = 2;   // the backend completed it synchronously
}

// Drives progress of launched buckets (MPI progresses non-blocking collectives inside MPI calls).
static void poll_inflight(DdpReducer *r) {
    for (int i = 0; i < r->next; i++) {
        Bucket *b = &r->b[i];
        if (b->state != 1 || !b->req || r->c->failed) continue;
        int done = 0;
        if (r->c->ops->test(r->c, b->req, &done)) { r->c->failed = 1; b->req = NULL; b->state = 2; return; }
        if (done) { b->req = NULL; b->state = 2; r->t_last_done = comm_now(); }
    }
}

void ddp_grads_ready(void *reducer, size_t n_ready) {
    DdpReducer *r = reducer;
    if (!r->overlap) return;   // fused: everything goes after backward
    while (r->next < r->nb && r->b[r->next].off + r->b[r->next].n <= n_ready) launch(r, r->next);
    poll_inflight(r);
}

int ddp_finish(DdpReducer *r) { return ddp_finish_unscale(r, 1.0f, NULL); }

int ddp_finish_unscale(DdpReducer *r, float loss_scale, int *nonfinite) {
    Comm *c = r->c;
    if (nonfinite) *nonfinite = 0;
    double t0 = comm_now();
    while (r->next < r->nb) launch(r, r->next);
    int rc = 0;
    for (int i = 0; i < r->nb; i++) {
        Bucket *b = &r->b[i];
        if (b->state == 1 && b->req) {
            if (c->failed || c->ops->wait(c, b->req)) { c->failed = 1; rc = -1; }
            b->req = NULL;
            r->t_last_done = comm_now();
        }
        b->state = 0;
    }
    if (c->failed) {
        rc = -1;
        if (!c->err[0]) comm_fail(c, "gradient allreduce failed");
    }
    double t1 = comm_now();
    if (!rc) {   // one pass over the gradients, on their backend: 1/world, then 1/loss scale
        float inv = c->world > 1 ? 1.0f / (float)c->world : 1.0f;
        if (loss_scale != 1.0f) inv /= loss_scale;
        // a caller asking about inf/nan gets the pass even for a factor of 1 (fp16 scale 1, or
        // world 2 at scale 0.5), so an overflow is never missed
        int bad = inv != 1.0f || nonfinite ? r->scale(r->scale_ctx, r->grads, r->n, inv) : 0;
        if (nonfinite) *nonfinite = bad;
    }
    r->next = 0;
    r->stats.exposed_s += t1 - t0;
    if (c->world > 1) {
        r->stats.comm_s += r->t_last_done - r->t_first;
        r->stats.bytes += (double)r->n * sizeof(float);
    }
    r->stats.steps++;
    return rc;
}

DdpStats ddp_stats(const DdpReducer *r) { return r->stats; }
void ddp_stats_reset(DdpReducer *r) { r->stats = (DdpStats){ 0 }; }

int ddp_num_buckets(const DdpReducer *r) { return r->nb; }
void ddp_bucket(const DdpReducer *r, int i, size_t *off, size_t *n) { *off = r->b[i].off; *n = r->b[i].n; }
int ddp_buckets_launched(const DdpReducer *r) { return r->next; }
int ddp_launch_order(const DdpReducer *r, int *order, int max) {
    int k = r->norder < max ? r->norder : max;
    memcpy(order, r->order, (size_t)k * sizeof *order);
    return r->norder;
}
double ddp_stats_bandwidth(DdpStats s) { return s.comm_s > 0 ? s.bytes / s.comm_s : 0.0; }

void comm_abort(Comm *c, int code) {
    c->failed = 1;
    if (c->world > 1) comm_mpi_abort(code);   // no-op when MPI was never initialized
}
