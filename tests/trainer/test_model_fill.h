// tests/trainer/test_model_fill.h — fills a model's parameters and BN buffers from their state_dict names
// with tools/fixtures/gen_fixtures.py's hash generator (fill_model there), so PyTorch fixtures need not
// store the weights. Header only (every tests/trainer/test_*.c is its own program).
#ifndef SEGX_TEST_MODEL_FILL_H
#define SEGX_TEST_MODEL_FILL_H
#include "test_ops_common.h"
#include "trainer/models/model.h"

static inline void fill_from_names(Model *m) {
    int nt; const ModelTensor *t = model_tensors(m, &nt);
    float *p = model_params(m);
    for (int i = 0; i < nt; i++) {
        double sc = sqrt(6.0 / ((double)t[i].numel / (t[i].ndim ? t[i].shape[0] : 1)));
        for (size_t k = 0; k < t[i].numel; k++) {
            double u = fx_uniform(t[i].name, k), v;
            switch (t[i].kind) {
            case TENSOR_WEIGHT: v = t[i].ndim >= 2 ? u * sc : 0.1 * u; break;
            case TENSOR_BIAS: v = 0.1 * u; break;
            case TENSOR_BN_WEIGHT: v = 1.0 + 0.2 * u; break;
            default: v = 0.2 * u;
            }
            p[t[i].offset + k] = (float)v;
        }
    }
    t = model_buffer_tensors(m, &nt);
    float *b = model_buffers(m);
    for (int i = 0; i < nt; i++)
        for (size_t k = 0; k < t[i].numel; k++) {
            double u = fx_uniform(t[i].name, k);
            b[t[i].offset + k] = strstr(t[i].name, "running_mean") ? (float)(0.1 * u)
                               : strstr(t[i].name, "running_var") ? (float)(1.0 + 0.5 * fabs(u)) : 0.f;
        }
}

#endif
