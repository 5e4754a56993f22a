// trainer/evaluate.h — `segx-train --evaluate --out RUN_DIR [model and data flags]`: the eval
// job's work. Loads RUN_DIR/checkpoint.bin (written by the train job; its model, dataset, width
// and batch-norm must match the flags), runs the model over the test split (--eval-limit N: the
// first N samples) in one process and writes RUN_DIR/eval.json atomically:
//   {status, model, dataset, checkpoint, epoch, step, images, loss, seconds, images_per_s, threads,
//    device ("cpu": the evaluation runs on the CPU op table whatever --device says),
//    miou, pixel_acc, per_class_iou (segmentation) | top1 (classification)}
// defines: evaluate_run.
#ifndef SEGX_EVALUATE_H
#define SEGX_EVALUATE_H
#include "trainer/train.h"   // defines: TrainConfig, TRAIN_EXIT_*

// Returns the process exit code: 0, TRAIN_EXIT_USAGE (bad flags, checkpoint of another model),
// TRAIN_EXIT_ERROR (no checkpoint, data or I/O error).
int evaluate_run(const TrainConfig *c);

#endif
