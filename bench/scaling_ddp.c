// bench/scaling_ddp.c — weak-scaling harness for DDP on the CPU: each rank trains one model on its
// own synthetic batch with the grads-ready hook feeding trainer/dist's reducer, then SGD. Built and
// run by bench/scaling against $BUILD/libtrain.a (for when segx-train is not there to run instead).
// Usage: [mpirun -np K] scaling_ddp MODEL BATCH_PER_RANK STEPS WIDTH SIZE [BUCKET_MB [REDUCER [FUSION_MB]]]
// REDUCER: bucket (default) | fused | per-tensor (trainer/dist/comm.h); bench/scaling-reducers compares them.
// Prints (rank 0) one line: key=value ... with the median step time and the DDP stats per step.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer/dist/comm.h"     // defines: Comm, DdpReducer
#include "trainer/models/model.h"  // defines: Model

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double cpu_now(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmp); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: %s MODEL BATCH_PER_RANK STEPS WIDTH SIZE [BUCKET_MB [REDUCER [FUSION_MB]]]\n", argv[0]); return 2; }
    int B = atoi(argv[2]), steps = atoi(argv[3]), size = atoi(argv[5]);
    double bucket_mb = argc > 6 ? atof(argv[6]) : 25, fusion_mb = argc > 8 ? atof(argv[8]) : 64;
    const char *reducer = argc > 7 ? argv[7] : "bucket";
    char err[512];
    Comm *c;
    if (comm_create("auto", &c, err, sizeof err)) { fprintf(stderr, "error: %s\n", err); return 1; }
    int rank = comm_rank(c), world = comm_world(c);
    ModelConfig cfg = { .name = argv[1], .in_channels = 3, .classes = 2, .height = size, .width = size,
                        .base_width = atoi(argv[4]), .batch_norm = 1, .max_batch = B };
    model_set_threads(1);
    Model *m;
    if (model_create(&cfg, &m, err, sizeof err)) { fprintf(stderr, "error: %s\n", err); return 1; }
    model_init(m, 1);
    size_t n = model_num_params(m), px = (size_t)size * size, nx = (size_t)B * 3 * px;
    size_t ny = model_is_segmentation(m) ? (size_t)B * px : (size_t)B;
    float *p = model_params(m), *g = model_grads(m), *mom = calloc(n, sizeof *mom), *x = malloc(nx * sizeof *x);
    int32_t *y = malloc(ny * sizeof *y);
    if (comm_broadcast(c, p, n * sizeof *p, 0)) { fprintf(stderr, "error: %s\n", comm_error(c)); return 1; }
    srand(1000 + (unsigned)rank);   // each rank its own shard
    for (size_t i = 0; i < nx; i++) x[i] = (float)rand() / (float)RAND_MAX * 2 - 1;
    for (size_t i = 0; i < ny; i++) y[i] = rand() % cfg.classes;
    DdpReducer *r;
    int nt;
    const ModelTensor *ts = model_tensors(m, &nt);
    size_t *off = malloc(sizeof(size_t) * (size_t)(nt > 0 ? nt : 1));
    for (int i = 0; i < nt; i++) off[i] = ts[i].offset;
    DdpConfig dc = { .kind = reducer, .bucket_mb = bucket_mb, .fusion_mb = fusion_mb, .tensor_off = off, .ntensors = nt };
    if (ddp_create_cfg(c, g, n, &dc, &r, err, sizeof err)) { fprintf(stderr, "error: %s\n", err); return 1; }
    free(off);
    model_set_grads_ready_hook(m, ddp_grads_ready, r);
    const int warm = 2;
    double *dt = malloc((size_t)steps * sizeof *dt), *ex = malloc((size_t)steps * sizeof *ex), *cm = malloc((size_t)steps * sizeof *cm), *cpu = malloc((size_t)steps * sizeof *cpu);
    float loss = 0;
    for (int s = 0; s < warm + steps; s++) {
        if (comm_barrier(c)) { fprintf(stderr, "error: %s\n", comm_error(c)); return 1; }
        DdpStats before = ddp_stats(r);
        double t0 = now(), c0 = cpu_now();
        model_zero_grad(m);
        model_forward(m, x, B, 1);
        loss = model_loss(m, y, 1.f, NULL);
        model_backward(m);
        if (ddp_finish(r)) { fprintf(stderr, "rank %d: error: %s\n", rank, comm_error(c)); comm_abort(c, 1); return 1; }
        for (size_t i = 0; i < n; i++) { mom[i] = 0.9f * mom[i] + g[i]; p[i] -= 0.01f * mom[i]; }
        double t1 = now(), c1 = cpu_now();
        DdpStats after = ddp_stats(r);
        if (s >= warm) { dt[s - warm] = t1 - t0; ex[s - warm] = after.exposed_s - before.exposed_s; cm[s - warm] = after.comm_s - before.comm_s; cpu[s - warm] = c1 - c0; }
    }
    // every rank must hold the same parameters after DDP steps
    float *p0 = malloc(n * sizeof *p0);
    memcpy(p0, p, n * sizeof *p0);
    if (comm_broadcast(c, p0, n * sizeof *p0, 0)) { fprintf(stderr, "error: %s\n", comm_error(c)); return 1; }
    double maxdiff = 0;
    for (size_t i = 0; i < n; i++) maxdiff = fmax(maxdiff, fabs((double)p0[i] - p[i]));
    if (comm_allreduce_sum_f64(c, &maxdiff, 1)) { fprintf(stderr, "error: %s\n", comm_error(c)); return 1; }
    DdpStats st = ddp_stats(r);
    double medcpu = median(cpu, steps), med = median(dt, steps), medex = median(ex, steps), medcm = median(cm, steps);
    if (rank == 0)
        printf("reducer=%s world=%d params=%zu buckets=%d step_s=%.4f cpu_s=%.4f exposed_s=%.5f comm_s=%.5f bytes_per_step=%.0f "
               "bandwidth_MBps=%.1f images_per_s=%.2f loss=%.4f rank_param_maxdiff=%g\n",
               ddp_kind(r), world, n, ddp_num_buckets(r), med, medcpu, medex, medcm, st.steps ? st.bytes / (double)st.steps : 0,
               ddp_stats_bandwidth(st) / 1e6, world * B / med, loss, maxdiff);
    ddp_free(r);
    model_free(m);
    free(mom); free(x); free(y); free(dt); free(ex); free(cm); free(cpu); free(p0);
    comm_free(c);
    return maxdiff == 0 ? 0 : 3;
}
