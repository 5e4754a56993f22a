// trainer/dist/comm_mpi.c — communicator over MPI (OpenMPI): CPU data parallel, and the bootstrap
// that hands the NCCL unique id to every rank.
// Every blocking collective is issued non-blocking and polled against c->timeout_s, so a lost or
// stuck peer ends in an error naming the call, never a hang. Errors return (MPI_ERRORS_RETURN).
#include "config.h"
#include "trainer/dist/comm_impl.h"   // defines: Comm internals, CommOps, comm_fail, comm_now

#include <stdio.h>
#include <string.h>

#ifdef SEGX_HAVE_MPI
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    MPI_Comm world;   // blocking collectives (broadcast, allreduce, barrier, sync BN)
    MPI_Comm ddp;     // non-blocking gradient buckets: a channel of its own so the two may interleave
} MpiComm;

#ifdef __SANITIZE_ADDRESS__
// OpenMPI keeps allocations until exit by design, and unloads plugins (at init, when probing them,
// and in MPI_Finalize) so leak reports cannot name them. So: MPI_Init's allocations are not leak
// checked, the leak check runs just before MPI_Finalize, and OpenMPI's own libraries are
// suppressed; leaks of ours still fail the run.
#include <sanitizer/lsan_interface.h>
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\nleak:mca_\n"
           "leak:libhwloc.so\nleak:libevent\nleak:libucp.so\nleak:libucs.so\nleak:libfabric.so\n";
}
#define LEAK_CHECK_BEFORE_FINALIZE() __lsan_do_leak_check()
#define LEAK_IGNORE_BEGIN() __lsan_disable()
#define LEAK_IGNORE_END() __lsan_enable()
#else
#define LEAK_CHECK_BEFORE_FINALIZE() ((void)0)
#define LEAK_IGNORE_BEGIN() ((void)0)
#define LEAK_IGNORE_END() ((void)0)
#endif

static int g_mpi_failed;   // a collective failed: MPI_Finalize would hang, so exit without it

static void mpi_finalize_at_exit(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin && !g_mpi_failed) {
        LEAK_CHECK_BEFORE_FINALIZE();
        MPI_Finalize();
    }
}

static int mpi_errmsg(Comm *c, int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, s, &len);
    c->failed = 1;
    g_mpi_failed = 1;
    return comm_fail(c, "MPI %s failed on rank %d of %d: %s (a peer rank may have died)", what, c->rank, c->world, s);
}

// Initializes MPI once per process; MPI_Finalize runs at exit (MPI cannot be initialized twice,
// and tests create several communicators).
static int mpi_ensure_init(char *err, size_t errlen) {
    int init = 0;
    MPI_Initialized(&init);
    if (init) return 0;
    int provided = 0;
    LEAK_IGNORE_BEGIN();
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    LEAK_IGNORE_END();
    if (rc != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init_thread failed (code %d): is this process started by mpirun or srun --mpi=pmix_v4?", rc);
        return -1;
    }
    atexit(mpi_finalize_at_exit);
    return 0;
}

static void nap(double waited) {
    // Spin briefly (latency when the peer is already there), then yield the core at each poll: on a
    // shared node a waiting rank must not take CPU from the rank it waits for (MPI progresses only
    // inside our MPI_Test calls, so sleeping long would slow the transfer). Long waits sleep.
    if (waited < 1e-3) return;
    if (waited < 1.0) { sched_yield(); return; }
    struct timespec ts = { 0, 200000 };
    nanosleep(&ts, NULL);
}

// Waits for req, bounded by c->timeout_s.
static int mpi_wait_bounded(Comm *c, MPI_Request *req, const char *what) {
    double t0 = comm_now(), waited = 0;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_errmsg(c, rc, what);
        if (done) return 0;
        waited = comm_now() - t0;
        if (waited > c->timeout_s) {
            c->failed = 1;
            g_mpi_failed = 1;
            return comm_fail(c, "MPI %s timed out after %.0f s on rank %d of %d: a peer rank is lost or stuck "
                             "(limit from SEGX_COMM_TIMEOUT)", what, c->timeout_s, c->rank, c->world);
        }
        nap(waited);
    }
}

static int mpi_broadcast(Comm *c, void *buf, size_t bytes, int root) {
    MpiComm *m = c->impl;
    for (size_t off = 0; off < bytes; off += (size_t)INT_MAX) {
        size_t k = bytes - off < (size_t)INT_MAX ? bytes - off : (size_t)INT_MAX;
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + off, (int)k, MPI_BYTE, root, m->world, &req);
        if (rc != MPI_SUCCESS) return mpi_errmsg(c, rc, "broadcast");
        if (mpi_wait_bounded(c, &req, "broadcast")) return -1;
    }
    return 0;
}

static int mpi_allreduce_sum(Comm *c, void *buf, size_t n, CommDtype t) {
    MpiComm *m = c->impl;
    size_t esz = t == COMM_F32 ? sizeof(float) : sizeof(double);
    MPI_Datatype dt = t == COMM_F32 ? MPI_FLOAT : MPI_DOUBLE;
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * esz, (int)k, dt, MPI_SUM, m->world, &req);
        if (rc != MPI_SUCCESS) return mpi_errmsg(c, rc, "allreduce");
        if (mpi_wait_bounded(c, &req, "allreduce")) return -1;
    }
    return 0;
}

static int mpi_barrier(Comm *c) {
    MpiComm *m = c->impl;
    MPI_Request req;
    int rc = MPI_Ibarrier(m->world, &req);
    if (rc != MPI_SUCCESS) return mpi_errmsg(c, rc, "barrier");
    return mpi_wait_bounded(c, &req, "barrier");
}

static int mpi_iallreduce_f32(Comm *c, float *buf, size_t n, void **out) {
    MpiComm *m = c->impl;
    *out = NULL;
    if (n > (size_t)INT_MAX) return comm_fail(c, "gradient bucket of %zu elements is too large for MPI; use a smaller --bucket-mb", n);
    MPI_Request *req = malloc(sizeof *req);
    if (!req) return comm_fail(c, "out of memory for an MPI request");
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, m->ddp, req);
    if (rc != MPI_SUCCESS) { free(req); return mpi_errmsg(c, rc, "gradient allreduce (start)"); }
    *out = req;
    return 0;
}

static int mpi_test(Comm *c, void *r, int *done) {
    MPI_Request *req = r;
    int rc = MPI_Test(req, done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) { free(req); return mpi_errmsg(c, rc, "gradient allreduce"); }
    if (*done) free(req);
    return 0;
}

static int mpi_wait(Comm *c, void *r) {
    int rc = mpi_wait_bounded(c, r, "gradient allreduce");
    free(r);
    return rc;
}

static void mpi_destroy(Comm *c) {
    MpiComm *m = c->impl;
    if (!m) return;
    if (c->failed) g_mpi_failed = 1;
    else {   // freeing a communicator with a dead peer could block; a failed run just exits
        MPI_Comm_free(&m->ddp);
        MPI_Comm_free(&m->world);
    }
    free(m);
    c->impl = NULL;
}

static const CommOps mpi_ops = {
    .broadcast = mpi_broadcast, .allreduce_sum = mpi_allreduce_sum, .barrier = mpi_barrier,
    .iallreduce_f32 = mpi_iallreduce_f32, .test = mpi_test, .wait = mpi_wait, .destroy = mpi_destroy,
};

// Rank, world and local rank from MPI, checked against what the launcher said (srun without an
// MPI plugin starts N singletons that would each train alone).
static int mpi_world_info(int *rank, int *world, int *local_rank, char *err, size_t errlen) {
    CommLaunch l;
    if (comm_launch_env(&l, err, errlen)) return -1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, world);
    MPI_Comm node;
    *local_rank = 0;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, *rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, local_rank);
        MPI_Comm_free(&node);
    }
    if (l.world != *world) {
        snprintf(err, errlen, "%s started %d tasks but MPI sees a world of %d: launch with `srun --mpi=pmix_v4` "
                 "(check `srun --mpi=list`) or mpirun", l.launcher, l.world, *world);
        return -1;
    }
    return 0;
}

int comm_mpi_init(Comm *c, char *err, size_t errlen) {
    if (mpi_ensure_init(err, errlen)) return -1;
    MpiComm *m = calloc(1, sizeof *m);
    if (!m) { snprintf(err, errlen, "out of memory creating the MPI communicator"); return -1; }
    if (mpi_world_info(&c->rank, &c->world, &c->local_rank, err, errlen)) { free(m); return -1; }
    if (MPI_Comm_dup(MPI_COMM_WORLD, &m->world) != MPI_SUCCESS || MPI_Comm_dup(MPI_COMM_WORLD, &m->ddp) != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Comm_dup failed");
        free(m);
        return -1;
    }
    MPI_Comm_set_errhandler(m->world, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(m->ddp, MPI_ERRORS_RETURN);
    c->ops = &mpi_ops;
    c->kind = "mpi";
    c->impl = m;
    return 0;
}

int comm_mpi_bootstrap(void *buf, size_t bytes, double timeout_s, int *rank, int *world, int *local_rank,
                       char *err, size_t errlen) {
    if (mpi_ensure_init(err, errlen)) return -1;
    if (mpi_world_info(rank, world, local_rank, err, errlen)) return -1;
    Comm tmp = { .rank = *rank, .world = *world, .timeout_s = timeout_s };
    MpiComm m = { .world = MPI_COMM_WORLD };
    tmp.impl = &m;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (mpi_broadcast(&tmp, buf, bytes, 0)) { snprintf(err, errlen, "%s", tmp.err); return -1; }
    return 0;
}

// One int- or bool-valued control variable through MPI_T (MPI 3.1's tool interface): 0, or -1 when
// this MPI does not have it (component not built) or it is not a scalar int/bool.
static int mpit_read_int(const char *name, int *val) {
    int provided, idx, count, rc = -1;
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return -1;
    if (MPI_T_cvar_get_index(name, &idx) == MPI_SUCCESS) {
        MPI_Datatype dt;
        int nlen = 0, dlen = 0, verb, bind, scope;
        if (MPI_T_cvar_get_info(idx, NULL, &nlen, &verb, &dt, NULL, NULL, &dlen, &bind, &scope) == MPI_SUCCESS &&
            (dt == MPI_INT || dt == MPI_C_BOOL)) {
            MPI_T_cvar_handle h;
            if (MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) == MPI_SUCCESS) {
                _Bool b = 0;   // Open MPI's bool MCA parameters are MPI_C_BOOL (one byte)
                if (count == 1 && MPI_T_cvar_read(h, dt == MPI_INT ? (void *)val : (void *)&b) == MPI_SUCCESS) {
                    if (dt == MPI_C_BOOL) *val = b;
                    rc = 0;
                }
                MPI_T_cvar_handle_free(&h);
            }
        }
    }
    MPI_T_finalize();
    return rc;
}

int comm_mpi_allreduce_algo(char *name, size_t len, char *err, size_t errlen) {
    // enum values of Open MPI 4.1 (ompi_info --param coll tuned|libnbc --level 9)
    static const char *const tuned[] = { "auto", "basic-linear", "nonoverlapping", "recursive-doubling", "ring",
                                         "segmented-ring", "rabenseifner" };
    static const char *const libnbc[] = { "auto", "ring", "binomial", "rabenseifner", "recursive-doubling" };
    int t = 0, l = 0, dyn = 0;
    // MPI_T's allocations belong to Open MPI's plugins (freed, or not, as MPI_Init's are): not leak checked
    LEAK_IGNORE_BEGIN();
    int bad = mpit_read_int("coll_tuned_allreduce_algorithm", &t) || mpit_read_int("coll_libnbc_iallreduce_algorithm", &l);
    if (!bad && mpit_read_int("coll_tuned_use_dynamic_rules", &dyn)) dyn = 0;
    LEAK_IGNORE_END();
    if (bad) {
        snprintf(err, errlen, "cannot read Open MPI's allreduce algorithm through MPI_T (coll_tuned or coll_libnbc "
                 "missing from this MPI): --allreduce-algo needs Open MPI 4.x");
        return -1;
    }
    const char *a = t >= 0 && t < 7 ? tuned[t] : "?";
    const char *b = l >= 0 && l < 5 ? libnbc[l] : "?";
    if (t && !dyn) a = "auto";   // without dynamic rules coll_tuned ignores the forced algorithm
    if (!strcmp(a, b)) snprintf(name, len, "%s", a);
    else snprintf(name, len, "libnbc:%s/tuned:%s", b, a);
    return 0;
}

void comm_mpi_abort(int code) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    g_mpi_failed = 1;
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
}

#else  // !SEGX_HAVE_MPI

int comm_mpi_init(Comm *c, char *err, size_t errlen) {
    (void)c;
    snprintf(err, errlen, "--comm mpi: this segx-train was built without MPI (install libopenmpi-dev and rebuild)");
    return -1;
}

int comm_mpi_bootstrap(void *buf, size_t bytes, double timeout_s, int *rank, int *world, int *local_rank,
                       char *err, size_t errlen) {
    (void)buf; (void)bytes; (void)timeout_s; (void)rank; (void)world; (void)local_rank;
    snprintf(err, errlen, "built without MPI: cannot exchange the NCCL id over MPI (set MASTER_ADDR/MASTER_PORT)");
    return -1;
}

void comm_mpi_abort(int code) { (void)code; }

int comm_mpi_allreduce_algo(char *name, size_t len, char *err, size_t errlen) {
    (void)err; (void)errlen;
    snprintf(name, len, "auto");
    return 0;
}

#endif
