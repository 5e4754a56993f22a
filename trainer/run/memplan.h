// trainer/run/memplan.h — the host memory a CPU run will need, checked against what this rank may
// use before anything big is allocated. defines: MemPlan, memplan_model, memplan_limit,
// memplan_check, memplan_eval_images.
// Contract:
//  * memplan_model builds the model at its max_batch and half that on a copy of the CPU op table
//    that counts and only maps (never commits) memory, so the plan comes from the model code itself,
//    not a formula: fixed + per_sample x max_batch is exactly what it allocates there.
//  * memplan_limit: the smallest of the machine's memory (MemTotal), the cgroup memory limit and
//    Slurm's --mem (SLURM_MEM_PER_NODE) or --mem-per-cpu (x SLURM_CPUS_PER_TASK), shared by the
//    ranks of this node; 0 when none is known.
//  * memplan_check: 0 fits; -1 (an error) when the plan exceeds the machine or the memory cgroup
//    (an OOM kill); 1 (a warning) when it exceeds only what the job asked Slurm for (--mem, which
//    a cluster that enforces it turns into the cgroup limit). err says what was planned, the
//    limit and where it comes from, and the largest batch that fits. Every allocation is counted, though the kernel charges
//    only pages that are touched (measured: 1.07-1.12x the peak RSS of cnn at batch 128-512), so it
//    errs on the safe side; SEGX_MEMORY_CHECK=0 skips it. Evaluation is in the plan: the eval
//    loader's slots, or seg_eval.c's second model and buffers at the largest image (memplan_eval_images).
#ifndef SEGX_MEMPLAN_H
#define SEGX_MEMPLAN_H
#include <stddef.h>
#include "trainer/models/model.h"

typedef struct {
    double fixed;        // bytes independent of the batch (parameters, gradients, optimizer state, ...)
    double per_sample;   // bytes per sample of the batch (activations, loader slots, ...)
} MemPlan;

// The model's own allocations around mc->max_batch.
int memplan_model(const ModelConfig *mc, MemPlan *p, char *err, size_t errlen);
// Bytes this rank may use (0: unknown), and in src (len bytes) where that comes from.
double memplan_limit(char *src, size_t len);

// How a run evaluates: through the eval loader (has_eval: batches of the model's input size, on the
// training model), or (--crop) one image at a time at its own size (seg_eval.c): whole mode builds a
// second model of that size at batch 1 beside the training one, slide mode runs windows of the
// model's input size through the training model.
enum { MEM_EVAL_IMAGES_NONE, MEM_EVAL_IMAGES_WHOLE, MEM_EVAL_IMAGES_SLIDE };

typedef struct {
    int batch, workers, has_eval;    // has_eval: the eval loader
    int optim_slots;                 // floats of optimizer state per parameter
    size_t sample_floats;            // input floats per sample (C x H x W)
    size_t label_ints;               // labels per sample (H x W for segmentation, else 1)
    int eval_images;                 // MEM_EVAL_IMAGES_*: evaluation at each image's own size
    int eval_h, eval_w;              // the largest evaluation image (0: the model's input size)
} MemRun;

int memplan_check(const ModelConfig *mc, const MemRun *r, char *err, size_t errlen);

// What evaluation at each image's own size (r->eval_images) holds besides the training model, in
// bytes: fixed (a whole-mode second model, the image's buffers) and per sample of the batch (slide
// mode's windows). Both 0 without it; -1 with err when the second model cannot be built at all.
int memplan_eval_images(const ModelConfig *mc, const MemRun *r, double *fixed, double *per_sample, char *err,
                        size_t errlen);

#endif
