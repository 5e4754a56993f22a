// trainer/metrics/metrics.h — evaluation metrics from a confusion matrix.
// - The matrix is k*k doubles, rows = ground truth, columns = prediction, so data-parallel ranks
//   add their matrices with one allreduce (comm_allreduce_sum_f64) and every metric is computed
//   from the global counts — never an average of per-rank mIoU.
// - IoU_c = tp / (tp + fp + fn). mIoU averages over classes that occur in the ground truth or the
//   prediction; a class absent from both is left out (per_class_iou reports it as NaN).
// - Labels outside 0..k-1 (e.g. 255 = ignore) are not counted.
#ifndef SEGX_METRICS_H
#define SEGX_METRICS_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int k;
    double *m;    // k*k counts, m[truth*k + pred]
} ConfMat;

int  confmat_init(ConfMat *c, int k);
void confmat_free(ConfMat *c);
void confmat_reset(ConfMat *c);
void confmat_add(ConfMat *c, const int32_t *truth, const int32_t *pred, size_t n);
// Argmax over the class axis of logits laid out (batch, k, hw) — hw = 1 for classification —
// into pred (batch*hw); ties go to the lower class (as torch.argmax).
void metrics_argmax(const float *logits, int batch, int k, size_t hw, int32_t *pred);

double confmat_total(const ConfMat *c);
double confmat_accuracy(const ConfMat *c);               // pixel accuracy / top-1
double confmat_miou(const ConfMat *c, double *per_class); // per_class (k) optional; NaN if absent

#endif
