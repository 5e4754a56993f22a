// trainer/dist/comm_impl.h — what a communicator backend provides (private to trainer/dist/).
// A backend fills Comm's rank/world/local_rank and ops; the dispatcher (comm.c) owns the rest.
#ifndef SEGX_COMM_IMPL_H
#define SEGX_COMM_IMPL_H
#include "trainer/dist/comm.h"   // defines: Comm, DdpReducer

typedef enum { COMM_F32, COMM_F64 } CommDtype;

typedef struct {
    int  (*broadcast)(Comm *c, void *buf, size_t bytes, int root);
    int  (*allreduce_sum)(Comm *c, void *buf, size_t n, CommDtype t);   // blocking, in place
    int  (*barrier)(Comm *c);
    // Non-blocking sum of n floats in place, on a channel of its own (so it may interleave with
    // the blocking calls above, e.g. sync-BN during backward). *req is owned by the backend until
    // test reports done or wait returns (either frees it).
    int  (*iallreduce_f32)(Comm *c, float *buf, size_t n, void **req);
    int  (*test)(Comm *c, void *req, int *done);      // drives progress; frees req when done
    int  (*wait)(Comm *c, void *req);                 // bounded by c->timeout_s; frees req
    void (*destroy)(Comm *c);
} CommOps;

struct Comm {
    const CommOps *ops;
    const char *kind;        // "none" | "mpi" | "nccl"
    int rank, world, local_rank;
    double timeout_s;        // a collective waiting longer than this fails (peer lost)
    int failed;              // a collective failed: the backend must abort, not finalize, on free
    char err[512];
    char algo[64];           // allreduce algorithm in effect (comm_allreduce_algo)
    void *impl;
};

// printf into c->err; returns -1 so backends can `return comm_fail(c, ...)`.
int comm_fail(Comm *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double comm_now(void);   // monotonic seconds

// Backends: 0, or -1 with a message in err. Each sets c->ops/rank/world/local_rank/impl.
int comm_none_init(Comm *c, char *err, size_t errlen);
int comm_mpi_init(Comm *c, char *err, size_t errlen);
int comm_nccl_init(Comm *c, char *err, size_t errlen);

// Launch environment: how many ranks the launcher started (1 when not launched by mpirun/srun),
// this process's rank and local rank, and which launcher ("mpirun", "srun", "" for none).
typedef struct { int world, rank, local_rank; const char *launcher; int has_mpi_runtime; } CommLaunch;
int comm_launch_env(CommLaunch *l, char *err, size_t errlen);

// MPI bootstrap for NCCL: init MPI, read rank/world/local rank, broadcast buf from rank 0.
int comm_mpi_bootstrap(void *buf, size_t bytes, double timeout_s, int *rank, int *world, int *local_rank,
                       char *err, size_t errlen);
void comm_mpi_abort(int code);
// After comm_mpi_init: the allreduce algorithm Open MPI's coll_libnbc (non-blocking) and coll_tuned
// (blocking) will run, read back through MPI_T, as the --allreduce-algo name ("auto" when neither is
// forced). Two different answers come back as "libnbc:<a>/tuned:<b>". -1 when MPI_T cannot say.
int comm_mpi_allreduce_algo(char *name, size_t len, char *err, size_t errlen);
// Is a GPU usable? 0 with *count, or -1 naming what is missing (empty CUDA_VISIBLE_DEVICES, no
// device, no driver, built without CUDA).
int comm_cuda_devices(int *count, char *err, size_t errlen);

#endif
