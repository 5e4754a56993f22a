// trainer/ops/conv3x3_direct.h — ops_cpu's direct 3x3/stride-1/pad-1 convolution (AVX-512, picked at
// run time). conv3x3_direct_ok says whether a shape and this CPU can use it; the workspace is in floats.
#ifndef SEGX_CONV3X3_DIRECT_H
#define SEGX_CONV3X3_DIRECT_H
#include "trainer/ops/ops.h"

// Off when the CPU lacks AVX-512F or the environment has SEGX_CONV_DIRECT=0; tests switch it to compare paths.
void   conv3x3_direct_enable(int on);
int    conv3x3_direct_ok(const ConvDesc *d);
size_t conv3x3_direct_workspace(const ConvDesc *d, int max_batch);
// y = conv(x, w) + b (b may be NULL)
void conv3x3_direct_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b,
                            float *ws);
// dw += d(sum(dy * y))/dw, db (may be NULL) += sum of dy
void conv3x3_direct_backward_weights(const ConvDesc *d, int B, float *dw, float *db, const float *dy, const float *x,
                                     float *ws);
// dx (=|+=) d(sum(dy * y))/dx
void conv3x3_direct_backward_data(const ConvDesc *d, int B, float *dx, const float *dy, const float *w, float *ws,
                                  int accumulate);

#endif
