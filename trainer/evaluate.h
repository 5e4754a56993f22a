// trainer/evaluate.h — `segx-train --evaluate --out RUN_DIR [model and data flags]`: the eval
// job's work. Loads RUN_DIR/checkpoint.bin (written by the train job; its model, dataset, width
// and batch-norm must match the flags), runs the model over the test split (--eval-limit N: the
// first N samples) in one process and writes RUN_DIR/eval.json atomically:
//   {status, model, dataset, checkpoint, epoch, step, images, loss, seconds, images_per_s, threads,
//    device ("cpu": the evaluation runs on the CPU op table whatever --device says),
//    miou, pixel_acc, per_class_iou, pixels (labelled pixels counted) (segmentation) | top1 (classification)}
// defines: evaluate_run.
#ifndef SEGX_EVALUATE_H
#define SEGX_EVALUATE_H
#include "trainer/train.h"   // defines: TrainConfig, TRAIN_EXIT_*

// Returns the process exit code: 0, TRAIN_EXIT_USAGE (bad flags, checkpoint of another model),
// TRAIN_EXIT_ERROR (no checkpoint, data or I/O error).
int evaluate_run(const TrainConfig *c);

// ---------------------------------------------------------------------------------------------
// Segmentation evaluation at each image's own resolution (trainer/seg_eval.c), for sets of any
// image size (ade20k:, cityscapes:) and whenever the crop pipeline is on. The model's input is
// crop_h x crop_w; logits end at the image's size and mIoU comes from the confusion matrix there.
//   whole: one forward of the full image at its own resolution (mmseg's whole mode), on a model of
//     that size with m's weights (built when the size changes; a size the model refuses, e.g. unet's
//     non-multiples of 8, is padded with 0 after normalisation up to a multiple of 32, logits cut back).
//   slide: mmseg's slide_inference at the original resolution: windows of crop_h x crop_w every
//     stride pixels (the last one flush with the edge; windows of a smaller image padded with 0),
//     up to max_batch windows per forward, logits averaged where windows overlap.
#include "trainer/data/pipeline.h"   // defines: Pipeline, Sample
#include "trainer/metrics/metrics.h" // defines: ConfMat
#include "trainer/models/model.h"    // defines: Model

typedef struct {
    int slide;
    int crop_h, crop_w, stride_h, stride_w;
    int classes, max_batch;
    const Pipeline *norm;             // mean and std
} SegEvalConfig;

typedef struct {
    float *x, *batch, *acc, *small; int *cnt; size_t cap_x, cap_b, cap_acc, cap_small;
    Model *whole; int whole_h, whole_w;   // whole mode: the model of the last image's size
} SegEvalWs;
void seg_eval_ws_free(SegEvalWs *ws);

// logits (classes, s->h, s->w) of sample s. 0, or -1 when out of memory.
int seg_infer(Model *m, const SegEvalConfig *c, const Sample *s, float *logits, SegEvalWs *ws);

// Samples rank, rank + world, ... of the first `limit` (0: all) of ds: adds to cm, and to sums
// [0] loss * pixels and [1] labelled pixels. 0 or -1 with err (naming the file on a data error).
int seg_eval_images(Model *m, Dataset *ds, const SegEvalConfig *c, int rank, int world, long limit, ConfMat *cm,
                    double sums[2], char *err, size_t errlen);

// From the flags: the pipeline (crop_h 0: off; then a set of mixed sizes is an error), the
// evaluation, and the model's input size (the crop, or the dataset's one size). 0 or -1 with err.
int seg_setup(const TrainConfig *c, const Dataset *ds, Pipeline *p, SegEvalConfig *e, int *in_h, int *in_w,
              char *err, size_t errlen);

#endif
