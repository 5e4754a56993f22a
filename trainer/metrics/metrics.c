// trainer/metrics/metrics.c — confusion matrix, accuracy and mIoU.
#include "trainer/metrics/metrics.h"
// defines: confmat_*, metrics_argmax

#include <math.h>
#include <stdlib.h>
#include <string.h>

int confmat_init(ConfMat *c, int k) {
    c->k = k;
    c->m = calloc((size_t)k * k, sizeof(double));
    return c->m ? 0 : -1;
}
void confmat_free(ConfMat *c) { free(c->m); c->m = NULL; }
void confmat_reset(ConfMat *c) { memset(c->m, 0, sizeof(double) * c->k * c->k); }

void confmat_add(ConfMat *c, const int32_t *truth, const int32_t *pred, size_t n) {
    int k = c->k;
    for (size_t i = 0; i < n; i++) {
        int32_t t = truth[i], p = pred[i];
        if (t < 0 || t >= k || p < 0 || p >= k) continue;
        c->m[(size_t)t * k + p] += 1;
    }
}

void metrics_argmax(const float *logits, int batch, int k, size_t hw, int32_t *pred) {
    for (int b = 0; b < batch; b++) {
        const float *l = logits + (size_t)b * k * hw;
        for (size_t p = 0; p < hw; p++) {
            int best = 0;
            float bv = l[p];
            for (int c = 1; c < k; c++)
                if (l[(size_t)c * hw + p] > bv) { bv = l[(size_t)c * hw + p]; best = c; }
            pred[(size_t)b * hw + p] = best;
        }
    }
}

double confmat_total(const ConfMat *c) {
    double s = 0;
    for (int i = 0; i < c->k * c->k; i++) s += c->m[i];
    return s;
}

double confmat_accuracy(const ConfMat *c) {
    double tot = confmat_total(c), tp = 0;
    for (int i = 0; i < c->k; i++) tp += c->m[(size_t)i * c->k + i];
    return tot > 0 ? tp / tot : 0;
}

double confmat_miou(const ConfMat *c, double *per_class) {
    int k = c->k, used = 0;
    double sum = 0;
    for (int i = 0; i < k; i++) {
        double tp = c->m[(size_t)i * k + i], row = 0, col = 0;
        for (int j = 0; j < k; j++) { row += c->m[(size_t)i * k + j]; col += c->m[(size_t)j * k + i]; }
        double uni = row + col - tp;
        double iou = uni > 0 ? tp / uni : NAN;
        if (per_class) per_class[i] = iou;
        if (uni > 0) { sum += iou; used++; }
    }
    return used ? sum / used : 0;
}
