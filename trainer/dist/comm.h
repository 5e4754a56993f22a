// trainer/dist/comm.h — the communicator that data-parallel training runs on.
// Implementations: "none" (one rank), "mpi" (OpenMPI; the CPU path and the bootstrap),
// "nccl" (GPU). Rank/world come from Slurm (SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID) or MPI.
// Every call returns 0 or -1 with a message retrievable by comm_error(); a lost peer ends in an
// error within the configured timeout, never a hang.
#ifndef SEGX_COMM_H
#define SEGX_COMM_H
#include <stddef.h>
#include <stdint.h>

typedef struct Comm Comm;

// kind: "auto" (mpi when launched with >1 rank by mpirun/srun, else none), "none", "mpi", "nccl".
int  comm_create(const char *kind, Comm **out, char *err, size_t errlen);
void comm_free(Comm *c);
const char *comm_kind(const Comm *c);   // resolved kind
int  comm_rank(const Comm *c);
int  comm_world(const Comm *c);
int  comm_local_rank(const Comm *c);
const char *comm_error(const Comm *c);

int comm_broadcast(Comm *c, void *buf, size_t bytes, int root);
int comm_allreduce_sum_f32(Comm *c, float *buf, size_t n);   // n elements, in place, blocking
int comm_allreduce_sum_f64(Comm *c, double *buf, size_t n);
int comm_barrier(Comm *c);

// --- additions (h5): timeouts, the sync-BN adapter, and what tests and benchmarks inspect.
// Collectives waiting longer than the timeout fail with comm_error() set ("peer lost or stuck").
// Default 300 s, or SEGX_COMM_TIMEOUT (seconds) from the environment.
double comm_timeout(const Comm *c);
void   comm_set_timeout(Comm *c, double seconds);
// Matches ModelAllreduceFn with ctx = the Comm (for model_set_sync_bn).
int  comm_allreduce_sum_f64_fn(void *ctx, double *buf, size_t n);
// Ends every rank of the job now (MPI_Abort under MPI); use on a fatal error when world > 1 so
// peers waiting in a collective do not wait for the timeout. Returns when there is no MPI
// runtime to abort through (then peers fail at their timeout).
void comm_abort(Comm *c, int code);

// --- which allreduce algorithm the engine runs (--allreduce-algo). No collective is written here:
// the name is handed to the engine before it starts. "auto" (or NULL): the engine decides.
// MPI (Open MPI): ring | recursive-doubling | rabenseifner, through the MCA parameters of coll_tuned
// (blocking allreduce: coll_tuned_use_dynamic_rules + coll_tuned_allreduce_algorithm) and of
// coll_libnbc (coll_libnbc_iallreduce_algorithm: the non-blocking MPI_Iallreduce every collective
// here is issued as, so waits stay bounded), set in the environment before MPI_Init and read back
// through MPI_T afterwards. NCCL: ring | tree (NCCL_ALGO before the communicator is created).
// One rank ("none") accepts any name (nothing to reduce). A name the resolved engine does not
// offer is an error naming the flag and the names it does.
int  comm_create_algo(const char *kind, const char *algo, Comm **out, char *err, size_t errlen);
// The algorithm in effect: what MPI_T reads back (MPI), what was requested (NCCL), else "auto".
const char *comm_allreduce_algo(const Comm *c);

// --- DDP gradient reducer: buckets are slices of the one gradient buffer (reverse forward order),
// launched in the same order on every rank as soon as backward has finalised them.
typedef struct DdpReducer DdpReducer;
int  ddp_create(Comm *c, float *grads, size_t n, double bucket_mb, DdpReducer **out, char *err, size_t errlen);
// Three strategies (--reducer), all over slices of the one buffer, so nothing is copied:
//   bucket      PyTorch DDP: bucket_mb slices, each allreduced as soon as backward finalised it
//               (overlaps backward); slices ignore tensor boundaries. ddp_create == this.
//   fused       Horovod tensor fusion: whole tensors packed in order into fusion buffers of at most
//               fusion_mb (a larger tensor is a buffer of its own), one allreduce per buffer, all
//               started after backward (the buffer is a contiguous run of the gradient buffer:
//               Horovod's copy into a fusion buffer is not needed).
//   per-tensor  one allreduce per tensor, each started as soon as backward finalised it.
// fused and per-tensor need the tensors' start offsets (model_tensors' offset), any order.
typedef struct {
    const char *kind;          // "bucket" (NULL too) | "fused" | "per-tensor"
    double bucket_mb;          // bucket (default 25 when 0)
    double fusion_mb;          // fused (default 64, Horovod's HOROVOD_FUSION_THRESHOLD, when 0)
    const size_t *tensor_off;  // fused, per-tensor: where each tensor starts in grads
    int ntensors;
} DdpConfig;
int  ddp_create_cfg(Comm *c, float *grads, size_t n, const DdpConfig *cfg, DdpReducer **out, char *err, size_t errlen);
const char *ddp_kind(const DdpReducer *r);   // "bucket" | "fused" | "per-tensor"
void ddp_free(DdpReducer *r);   // before comm_free of its Comm
// Called from the model's grads-ready hook (see model_set_grads_ready_hook): starts every bucket
// that lies entirely below n_ready. Matches ModelGradsReadyFn when ctx is the reducer.
void ddp_grads_ready(void *reducer, size_t n_ready);
// Waits for all buckets (starting any not yet started) and divides by the world size, so grads hold
// the mean over ranks. Returns 0 or -1 (peer lost, timeout) with comm_error() set.
int  ddp_finish(DdpReducer *r);
// The gradients may live in backend memory (the CUDA table's device arena: NCCL reduces them in
// place). The reducer never touches them on the host itself: it scales them through this function,
// which multiplies grads[0..n) by a in place on the backend that holds them and returns 1 when it saw
// an inf or nan, else 0. Default: a host loop (the CPU table's memory).
typedef int (*DdpScaleFn)(void *ctx, float *grads, size_t n, float a);
void ddp_set_scale_fn(DdpReducer *r, DdpScaleFn fn, void *ctx);
// ddp_finish that also divides by loss_scale (fp16; 1 for none) in the same pass: grads end as
// sum / world / loss_scale. With nonfinite non-NULL the scale function always runs (even for a
// factor of 1) and *nonfinite is its answer; with NULL a factor of 1 skips the pass. The default
// host loop does not look (answers 0). ddp_finish(r) == ddp_finish_unscale(r, 1, NULL).
int  ddp_finish_unscale(DdpReducer *r, float loss_scale, int *nonfinite);
// Seconds spent inside ddp_finish waiting for communication (exposed), total bytes reduced, and the
// achieved bandwidth over the last step; reset by ddp_stats_reset.
typedef struct { double exposed_s, comm_s; double bytes; long steps; } DdpStats;
DdpStats ddp_stats(const DdpReducer *r);
void ddp_stats_reset(DdpReducer *r);
// Bytes per second of the gradient allreduce (bytes / comm_s); 0 before any multi-rank step.
double ddp_stats_bandwidth(DdpStats s);
// Buckets: count, slice i, how many were launched so far in the current step, and the launch order
// of the current/last step (returns the number launched; copies up to max indices).
int  ddp_num_buckets(const DdpReducer *r);
void ddp_bucket(const DdpReducer *r, int i, size_t *off, size_t *n);
int  ddp_buckets_launched(const DdpReducer *r);
int  ddp_launch_order(const DdpReducer *r, int *order, int max);

#endif
