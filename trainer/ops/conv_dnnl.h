// trainer/ops/conv_dnnl.h — ops_cpu's convolutions through oneDNN (Debian libdnnl, the library PyTorch's
// CPU convolutions use), when scripts/configure found it (SEGX_HAVE_DNNL). Each pass reorders NCHW/OIHW
// into the layouts oneDNN's kernels prefer and back, inside the caller's workspace; primitives are
// cached per (shape, batch). Without the library every call reports "not taken" and ops_cpu keeps its
// own paths. Switched off by SEGX_CONV_DNNL=0 (and by tests, to compare paths); SEGX_CONV_DNNL=all makes
// conv_dnnl_ok return 2, which ops_cpu reads as "every shape and pass" (for measuring its choice).
#ifndef SEGX_CONV_DNNL_H
#define SEGX_CONV_DNNL_H
#include "trainer/ops/ops.h"

void   conv_dnnl_enable(int on);                               // 0 off, 1 on, 2 on for every pass
int    conv_dnnl_ok(const ConvDesc *d);                          // built in, enabled, shape supported
size_t conv_dnnl_workspace(const ConvDesc *d, int max_batch);    // floats; 0 when not ok
void   conv_dnnl_set_threads(int n);
// Each returns 0 when done, -1 when it could not run (the caller then takes another path).
// y = conv(x, w) + b (b may be NULL)
int conv_dnnl_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b, float *ws);
// dx (=|+=) input gradient
int conv_dnnl_backward_data(const ConvDesc *d, int B, float *dx, const float *dy, const float *w, float *ws,
                            int accumulate);
// dw += weight gradient, db (may be NULL) += bias gradient
int conv_dnnl_backward_weights(const ConvDesc *d, int B, float *dw, float *db, const float *dy, const float *x,
                               float *ws);

#endif
