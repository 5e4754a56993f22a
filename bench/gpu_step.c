// bench/gpu_step.c — times training steps of one model on the CUDA op table directly (model.h +
// ops_cuda.h, no training loop): forward + loss + backward + SGD momentum 0.9 on the device, fp16
// with dynamic loss scaling. Built by bench/gpu (DRIVER=step) against $BUILD/libtrain.a.
// Usage: gpu_step MODEL BATCH STEPS PRECISION [WIDTH SIZE CIN CLASSES]   (prints one JSON line)
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "trainer/gpu/gpu.h"
#include "trainer/models/model.h"
#include "trainer/ops/ops_cuda.h"
#include "trainer/optim/optim.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s MODEL BATCH STEPS fp32|bf16|fp16 [WIDTH SIZE CIN CLASSES]\n", argv[0]); return 2; }
    int B = atoi(argv[2]), steps = atoi(argv[3]);
    GpuPrecision prec;
    if (gpu_precision_parse(argv[4], &prec)) { fprintf(stderr, "precision must be fp32, bf16 or fp16\n"); return 2; }
    ModelConfig cfg = {.name = argv[1], .base_width = argc > 5 ? atoi(argv[5]) : 16, .batch_norm = 1, .max_batch = B};
    int size = argc > 6 ? atoi(argv[6]) : 32;
    cfg.height = cfg.width = size;
    cfg.in_channels = argc > 7 ? atoi(argv[7]) : 3;
    cfg.classes = argc > 8 ? atoi(argv[8]) : 10;
    char err[512];
    if (ops_cuda_init(0, err, sizeof err) || ops_cuda_set_precision(prec, err, sizeof err)) {
        fprintf(stderr, "gpu_step: %s\n", err);
        return 2;
    }
    const Ops *o = ops_cuda();
    Model *m;
    if (model_create_on(&cfg, o, &m, err, sizeof err)) { fprintf(stderr, "gpu_step: %s\n", err); return 1; }
    model_init(m, 1);
    model_set_download_logits(m, 0);   // the loop needs host logits for its metrics; this bench does not
    size_t n = model_num_params(m), px = (size_t)size * size;
    size_t nl = model_is_segmentation(m) ? B * px : (size_t)B;
    float *x = malloc(sizeof(float) * B * cfg.in_channels * px);
    int32_t *y = malloc(sizeof(int32_t) * nl);
    srand(0);
    for (size_t i = 0; i < (size_t)B * cfg.in_channels * px; i++) x[i] = (float)rand() / RAND_MAX * 2 - 1;
    for (size_t i = 0; i < nl; i++) y[i] = rand() % cfg.classes;
    Optimizer *opt;
    if (optim_create(OPT_SGD, n, 0.9f, 0.f, &opt, err, sizeof err)) { fprintf(stderr, "gpu_step: %s\n", err); return 1; }
    float *state = o->alloc(sizeof(float) * n);
    LossScaler ls;
    loss_scaler_init(&ls, prec == GPU_FP16 ? 0 : 1);
    float loss = 0;
    int warm = 2;
    double t0 = 0;
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) { ops_cuda_sync(); t0 = now(); }
        model_zero_grad(m);
        model_forward(m, x, B, 1);
        loss = model_loss(m, y, prec == GPU_FP16 ? ls.scale : 1.f, NULL);
        model_backward(m);
        int skip = 0;
        if (prec == GPU_FP16) skip = loss_scaler_update(&ls, ops_cuda_unscale_check(model_grads(m), n, 1.f / ls.scale));
        if (!skip) ops_cuda_optim_step(opt, state, model_params(m), model_grads(m), 0.01f);
    }
    ops_cuda_sync();
    double dt = now() - t0;
    if (ops_cuda_error()) { fprintf(stderr, "gpu_step: %s\n", ops_cuda_error()); return 1; }
    OpsCudaStats st;
    ops_cuda_stats(&st);
    printf("{\"model\": \"%s\", \"batch\": %d, \"precision\": \"%s\", \"img_per_s\": %.2f, \"step_ms\": %.3f, "
           "\"arena_mib\": %.1f, \"workspace_mib\": %.1f, \"conv_plans\": %d, \"loss\": %.4f, \"skipped_steps\": %ld}\n",
           argv[1], B, argv[4], steps * B / dt, 1000 * dt / steps, st.arena_bytes / 1048576.0,
           st.workspace_bytes / 1048576.0, st.conv_plans, loss, ls.skipped);
    model_free(m); optim_free(opt); free(x); free(y);
    ops_cuda_shutdown();
    return 0;
}
