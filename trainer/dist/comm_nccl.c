// trainer/dist/comm_nccl.c — communicator over NCCL (GPU). The unique id reaches every rank through
// MPI (mpirun, srun --mpi=pmix_v4) or the TCP rendezvous at MASTER_ADDR:MASTER_PORT (srun without
// MPI). Counts passed to NCCL are ELEMENTS. Buffers may be device or host memory; host buffers
// are staged through a device scratch buffer (the CPU trainer's grads, sync BN statistics).
// The communicator is non-blocking (config.blocking = 0) so every wait is bounded by c->timeout_s
// and a lost peer ends in ncclCommAbort and an error, not a hang.
// Device buffers come from segx-train's compute stream (trainer/ops/ops_cuda.h), which runs ahead of
// the host: each collective on one first makes its own stream wait for the work queued there so far
// (ops_cuda_order_before), and a collective returns (a request completes) only once NCCL is done, so
// compute queued after it sees the result.
#include "config.h"
#include "trainer/dist/comm_impl.h"   // defines: Comm internals, CommOps, comm_fail, comm_now

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SEGX_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#include <time.h>

#include "trainer/dist/rendezvous.h"   // defines: rendezvous_tcp_bcast, rendezvous_env
#include "trainer/ops/ops_cuda.h"      // defines: ops_cuda_order_before

typedef struct {
    ncclComm_t nc;
    cudaStream_t stream;   // every NCCL call goes on this one stream, so ranks see one order
    void *scratch;         // device staging for host buffers
    size_t scratch_bytes;
    int device;
} NcclComm;

// Can this process use a GPU? 0 with *count set, or -1 with a message saying what is missing.
int comm_cuda_devices(int *count, char *err, size_t errlen) {
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    *count = 0;
    if (vis && (!*vis || !strcmp(vis, "NoDevFiles"))) {
        snprintf(err, errlen, "--comm nccl: CUDA_VISIBLE_DEVICES is empty (\"%s\"): no GPU is assigned to this rank "
                 "(request GPUs with --gres=gpu:N or --gpus-per-task, or use --comm mpi on CPUs)", vis);
        return -1;
    }
    cudaError_t e = cudaGetDeviceCount(count);
    if (e == cudaErrorInsufficientDriver) {
        snprintf(err, errlen, "--comm nccl: the NVIDIA driver is missing or older than this CUDA runtime (%d): %s "
                 "(run on a GPU node, or use --comm mpi on CPUs)", CUDART_VERSION, cudaGetErrorString(e));
        return -1;
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && *count == 0)) {
        snprintf(err, errlen, "--comm nccl: no CUDA device found%s%s%s (run on a GPU node, or use --comm mpi on CPUs)",
                 vis ? " (CUDA_VISIBLE_DEVICES=" : "", vis ? vis : "", vis ? ")" : "");
        return -1;
    }
    if (e != cudaSuccess) {
        snprintf(err, errlen, "--comm nccl: cannot use CUDA: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
        return -1;
    }
    return 0;
}

static void nap(double waited) {
    if (waited < 0.01) return;
    struct timespec ts = { 0, 50000 };
    nanosleep(&ts, NULL);
}

static int nccl_err(Comm *c, ncclResult_t r, const char *what) {
    NcclComm *m = c->impl;
    const char *last = m && m->nc ? ncclGetLastError(m->nc) : "";
    c->failed = 1;
    return comm_fail(c, "NCCL %s failed on rank %d of %d: %s%s%s", what, c->rank, c->world, ncclGetErrorString(r),
                     last && *last ? ": " : "", last ? last : "");
}

// Waits while the communicator reports ncclInProgress (non-blocking mode), bounded by the timeout.
static int nccl_settle(Comm *c, ncclResult_t r, const char *what) {
    NcclComm *m = c->impl;
    double t0 = comm_now();
    while (r == ncclInProgress) {
        if (comm_now() - t0 > c->timeout_s) {
            ncclCommAbort(m->nc);
            m->nc = NULL;
            c->failed = 1;
            return comm_fail(c, "NCCL %s timed out after %.0f s on rank %d of %d: a peer rank is lost or stuck", what,
                             c->timeout_s, c->rank, c->world);
        }
        nap(comm_now() - t0);
        ncclCommGetAsyncError(m->nc, &r);
    }
    return r == ncclSuccess ? 0 : nccl_err(c, r, what);
}

// Waits for everything queued on the stream, polling NCCL's async error and the timeout.
static int stream_wait(Comm *c, cudaEvent_t ev, const char *what) {
    NcclComm *m = c->impl;
    double t0 = comm_now();
    for (;;) {
        cudaError_t e = ev ? cudaEventQuery(ev) : cudaStreamQuery(m->stream);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) { c->failed = 1; return comm_fail(c, "CUDA error during %s on rank %d: %s", what, c->rank, cudaGetErrorString(e)); }
        ncclResult_t a = ncclSuccess;
        ncclCommGetAsyncError(m->nc, &a);
        if (a != ncclSuccess && a != ncclInProgress) return nccl_err(c, a, what);
        if (comm_now() - t0 > c->timeout_s) {
            ncclCommAbort(m->nc);
            m->nc = NULL;
            c->failed = 1;
            return comm_fail(c, "NCCL %s timed out after %.0f s on rank %d of %d: a peer rank is lost or stuck "
                             "(limit from SEGX_COMM_TIMEOUT)", what, c->timeout_s, c->rank, c->world);
        }
        nap(comm_now() - t0);
    }
}

static int on_device(const void *p) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) { cudaGetLastError(); return 0; }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

static int scratch(Comm *c, size_t bytes, void **out) {
    NcclComm *m = c->impl;
    if (bytes > m->scratch_bytes) {
        cudaFree(m->scratch);
        m->scratch = NULL;
        m->scratch_bytes = 0;
        if (cudaMalloc(&m->scratch, bytes) != cudaSuccess) return comm_fail(c, "cannot allocate %zu bytes of GPU staging memory", bytes);
        m->scratch_bytes = bytes;
    }
    *out = m->scratch;
    return 0;
}

// Runs a collective on buf (device or host): for host memory, copy in, reduce, copy out.
static int run_collective(Comm *c, void *buf, size_t bytes, size_t count, ncclDataType_t t, int root, const char *what) {
    NcclComm *m = c->impl;
    void *d = buf;
    int host = !on_device(buf);
    // device buffers are written by kernels on the compute stream that may still run: wait for them
    if (!host) ops_cuda_order_before(m->stream);
    if (host) {
        if (scratch(c, bytes, &d)) return -1;
        if (cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, m->stream) != cudaSuccess) return comm_fail(c, "copy to GPU failed");
    }
    ncclResult_t r = root < 0 ? ncclAllReduce(d, d, count, t, ncclSum, m->nc, m->stream)
                              : ncclBroadcast(d, d, count, t, root, m->nc, m->stream);
    if (nccl_settle(c, r, what)) return -1;
    if (host && cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, m->stream) != cudaSuccess) return comm_fail(c, "copy from GPU failed");
    return stream_wait(c, NULL, what);
}

static int nccl_broadcast(Comm *c, void *buf, size_t bytes, int root) {
    return run_collective(c, buf, bytes, bytes, ncclUint8, root, "broadcast");
}

static int nccl_allreduce_sum(Comm *c, void *buf, size_t n, CommDtype t) {
    return run_collective(c, buf, n * (t == COMM_F32 ? 4 : 8), n, t == COMM_F32 ? ncclFloat32 : ncclFloat64, -1, "allreduce");
}

static int nccl_barrier(Comm *c) {
    float one = 1;
    return run_collective(c, &one, sizeof one, 1, ncclFloat32, -1, "barrier");
}

static int nccl_iallreduce_f32(Comm *c, float *buf, size_t n, void **req) {
    NcclComm *m = c->impl;
    *req = NULL;
    if (!on_device(buf)) return nccl_allreduce_sum(c, buf, n, COMM_F32);   // staged: completes now
    ops_cuda_order_before(m->stream);   // the bucket's gradients come from backward kernels in flight
    if (nccl_settle(c, ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, m->nc, m->stream), "gradient allreduce")) return -1;
    cudaEvent_t ev;
    if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess || cudaEventRecord(ev, m->stream) != cudaSuccess)
        return comm_fail(c, "cudaEventRecord failed for a gradient bucket");
    *req = ev;
    return 0;
}

static int nccl_test(Comm *c, void *req, int *done) {
    cudaError_t e = cudaEventQuery((cudaEvent_t)req);
    *done = e == cudaSuccess;
    if (*done) { cudaEventDestroy((cudaEvent_t)req); return 0; }
    if (e != cudaErrorNotReady) { cudaEventDestroy((cudaEvent_t)req); c->failed = 1; return comm_fail(c, "CUDA error in a gradient allreduce: %s", cudaGetErrorString(e)); }
    return 0;
}

static int nccl_wait(Comm *c, void *req) {
    int rc = stream_wait(c, (cudaEvent_t)req, "gradient allreduce");
    cudaEventDestroy((cudaEvent_t)req);
    return rc;
}

static void nccl_destroy(Comm *c) {
    NcclComm *m = c->impl;
    if (!m) return;
    if (m->nc) {
        if (c->failed) ncclCommAbort(m->nc);
        else {
            ncclResult_t r = ncclCommFinalize(m->nc);
            if (r == ncclSuccess || r == ncclInProgress) nccl_settle(c, r, "finalize");
            if (m->nc) ncclCommDestroy(m->nc);
        }
    }
    if (m->stream) cudaStreamDestroy(m->stream);
    cudaFree(m->scratch);
    free(m);
    c->impl = NULL;
}

static const CommOps nccl_ops = {
    .broadcast = nccl_broadcast, .allreduce_sum = nccl_allreduce_sum, .barrier = nccl_barrier,
    .iallreduce_f32 = nccl_iallreduce_f32, .test = nccl_test, .wait = nccl_wait, .destroy = nccl_destroy,
};

int comm_nccl_init(Comm *c, char *err, size_t errlen) {
    int ndev;
    if (comm_cuda_devices(&ndev, err, errlen)) return -1;
    CommLaunch l;
    if (comm_launch_env(&l, err, errlen)) return -1;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int rank = 0, world = 1, local = 0;
    if (l.has_mpi_runtime) {   // mpirun / srun --mpi=pmix_v4: MPI hands out the id
        ncclResult_t r = ncclSuccess;
        if (l.rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) {
            snprintf(err, errlen, "ncclGetUniqueId failed: %s", ncclGetErrorString(r));
            return -1;
        }
        if (comm_mpi_bootstrap(&id, sizeof id, c->timeout_s, &rank, &world, &local, err, errlen)) return -1;
    } else {
        rank = l.rank; world = l.world; local = l.local_rank;
        ncclResult_t r = ncclSuccess;
        if (rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) {
            snprintf(err, errlen, "ncclGetUniqueId failed: %s", ncclGetErrorString(r));
            return -1;
        }
        if (world > 1) {
            const char *addr;
            int port;
            if (rendezvous_env(&addr, &port, err, errlen)) return -1;
            if (rendezvous_tcp_bcast(addr, port, rank, world, &id, sizeof id, c->timeout_s, err, errlen)) return -1;
        }
    }
    NcclComm *m = calloc(1, sizeof *m);
    if (!m) { snprintf(err, errlen, "out of memory creating the NCCL communicator"); return -1; }
    c->impl = m;
    c->rank = rank; c->world = world; c->local_rank = local;
    m->device = local % ndev;
    cudaError_t e = cudaSetDevice(m->device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "--comm nccl: cannot use GPU %d (local rank %d of %d visible): %s", m->device, local, ndev, cudaGetErrorString(e));
        nccl_destroy(c);
        return -1;
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&m->nc, world, id, rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        snprintf(err, errlen, "ncclCommInitRankConfig failed on rank %d of %d: %s", rank, world, ncclGetErrorString(r));
        m->nc = NULL;
        nccl_destroy(c);
        return -1;
    }
    if (nccl_settle(c, r, "communicator setup")) {
        snprintf(err, errlen, "%s", c->err);
        c->failed = 1;
        nccl_destroy(c);
        return -1;
    }
    c->ops = &nccl_ops;
    c->kind = "nccl";
    return 0;
}

#else  // !SEGX_HAVE_CUDA

int comm_cuda_devices(int *count, char *err, size_t errlen) {
    *count = 0;
    snprintf(err, errlen, "--comm nccl: this segx-train was built without CUDA/NCCL (CUDA not found at build time; "
             "rebuild with CUDA=1 on a machine with /usr/local/cuda, or use --comm mpi)");
    return -1;
}

int comm_nccl_init(Comm *c, char *err, size_t errlen) {
    (void)c;
    int n;
    return comm_cuda_devices(&n, err, errlen);
}

#endif
