// trainer/ops/cpu_mobile.h — ops_cpu's kernels for the mobile and dense nets (cpu_mobile.c): depthwise
// and grouped convolution, ReLU6, channel copy/shuffle/swap, 2x2 average pooling, dropout. ops_cpu.c
// puts them in its table (see ops.h for the contracts).
#ifndef SEGX_CPU_MOBILE_H
#define SEGX_CPU_MOBILE_H
#include "trainer/ops/ops.h"

// groups > 1: depthwise (groups == cin == cout) by its own loops, others per (sample, group) through
// `conv1` (ops_cpu's groups = 1 convolution) on the group's sub-descriptor.
typedef void (*CpuConvFw)(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b, float *ws);
typedef void (*CpuConvBw)(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy, const float *x,
                          const float *w, float *ws, int accumulate);
ConvDesc cpu_group_desc(const ConvDesc *d);   // one group's groups = 1 descriptor
void cpu_grouped_conv_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b,
                              float *ws, CpuConvFw conv1);
void cpu_grouped_conv_backward(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy,
                               const float *x, const float *w, float *ws, int accumulate, CpuConvBw conv1);

void cpu_relu6_forward(size_t n, float *y, const float *x);
void cpu_relu6_backward(size_t n, float *dx, const float *dy, const float *y);
void cpu_channel_copy(int B, int HW, int n, float *dst, int dC, int doff, const float *src, int sC, int soff,
                      int accumulate);
void cpu_channel_shuffle(int B, int C, int groups, int HW, float *y, const float *x);
void cpu_swap_dims01(int A, int B, int HW, float *y, const float *x);
void cpu_avgpool2x2_forward(int B, int C, int h, int w, float *y, const float *x);
void cpu_avgpool2x2_backward(int B, int C, int h, int w, float *dx, const float *dy);
void cpu_dropout_forward(size_t n, float p, uint64_t seed, float *y, const float *x);
void cpu_dropout_backward(size_t n, float p, uint64_t seed, float *dx, const float *dy);

#endif
