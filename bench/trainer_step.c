// bench/trainer_step.c — times forward + loss + backward + SGD(momentum 0.9) steps of one model on
// synthetic data, through model.h only. Built by bench/trainer against $BUILD/libtrain.a; used until
// segx-train exists. Usage: trainer_step MODEL THREADS BATCH STEPS [WIDTH SIZE CIN CLASSES]
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "trainer/models/model.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s MODEL THREADS BATCH STEPS [WIDTH SIZE CIN CLASSES]\n", argv[0]); return 2; }
    int threads = atoi(argv[2]), B = atoi(argv[3]), steps = atoi(argv[4]);
    ModelConfig cfg = {.name = argv[1], .base_width = argc > 5 ? atoi(argv[5]) : 16, .batch_norm = 1, .max_batch = B};
    int size = argc > 6 ? atoi(argv[6]) : 32;
    cfg.height = cfg.width = size;
    cfg.in_channels = argc > 7 ? atoi(argv[7]) : 3;
    cfg.classes = argc > 8 ? atoi(argv[8]) : 10;
    model_set_threads(threads);
    Model *m; char err[256];
    if (model_create(&cfg, &m, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    model_init(m, 1);
    size_t n = model_num_params(m), px = (size_t)size * size;
    size_t nl = model_is_segmentation(m) ? B * px : (size_t)B;
    float *x = malloc(sizeof(float) * B * cfg.in_channels * px), *mom = calloc(n, sizeof(float));
    int32_t *y = malloc(sizeof(int32_t) * nl);
    srand(0);
    for (size_t i = 0; i < (size_t)B * cfg.in_channels * px; i++) x[i] = (float)rand() / RAND_MAX * 2 - 1;
    for (size_t i = 0; i < nl; i++) y[i] = rand() % cfg.classes;
    float *p = model_params(m), *g = model_grads(m), loss = 0;
    int warm = 2;
    double t0 = 0, c0 = 0;
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) { t0 = now(); c0 = cpu(); }
        model_zero_grad(m);
        model_forward(m, x, B, 1);
        loss = model_loss(m, y, 1.f, NULL);
        model_backward(m);
        for (size_t i = 0; i < n; i++) { mom[i] = 0.9f * mom[i] + g[i]; p[i] -= 0.01f * mom[i]; }
    }
    double dt = now() - t0, dc = cpu() - c0;
    printf("{\"model\": \"%s\", \"threads\": %d, \"batch\": %d, \"img_per_s\": %.2f, \"step_ms\": %.2f, \"cpu_ms\": %.2f, \"loss\": %.4f}\n",
           argv[1], threads, B, steps * B / dt, 1000 * dt / steps, 1000 * dc / steps, loss);
    model_free(m); free(x); free(y); free(mom);
    return 0;
}
