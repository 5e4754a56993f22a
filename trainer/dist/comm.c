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

int comm_create(const char *kind, Comm **out, char *err, size_t errlen) {
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
    } else if (!strcmp(kind, "mpi")) rc = comm_mpi_init(c, err, errlen);
    else if (!strcmp(kind, "nccl")) rc = comm_nccl_init(c, err, errlen);
    else {
        snprintf(err, errlen, "unknown communicator \"%s\" (--comm): expected auto, none, mpi or nccl", kind);
        free(c);
        return -1;
    }
    if (rc) { free(c); return -1; }
    *out = c;
    return 0;
}

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
    *out = NULL;
    if (!(bucket_mb > 0) || !isfinite(bucket_mb)) {
        snprintf(err, errlen, "bucket size %g MB (--bucket-mb) must be a positive number", bucket_mb);
        return -1;
    }
    if (n == 0 || !grads) { snprintf(err, errlen, "DDP reducer needs a non-empty gradient buffer"); return -1; }
    double per = bucket_mb * 1024.0 * 1024.0 / sizeof(float);
    size_t bucket_elems = per < 1 ? 1 : per > (double)n ? n : (size_t)per;
    size_t nb = (n + bucket_elems - 1) / bucket_elems;
    if (nb > 1 << 20) { snprintf(err, errlen, "bucket size %g MB gives %zu buckets; use a larger --bucket-mb", bucket_mb, nb); return -1; }
    DdpReducer *r = calloc(1, sizeof *r);
    Bucket *b = calloc(nb, sizeof *b);
    int *order = calloc(nb, sizeof *order);
    if (!r || !b || !order) {
        free(r); free(b); free(order);
        snprintf(err, errlen, "out of memory creating the DDP reducer (%zu buckets)", nb);
        return -1;
    }
    for (size_t i = 0; i < nb; i++) {
        b[i].off = i * bucket_elems;
        b[i].n = i + 1 == nb ? n - b[i].off : bucket_elems;
    }
    *r = (DdpReducer){ .c = c, .grads = grads, .n = n, .b = b, .nb = (int)nb, .order = order, .scale = host_scale };
    *out = r;
    return 0;
}

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
