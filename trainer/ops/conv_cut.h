// trainer/ops/conv_cut.h — a stride-1 convolution cut down to the kernel rows and columns that read the
// image. Where a map is no larger than the dilation, a dilated kernel's outer taps read only zero padding
// at every output position (DeepLabv3+'s ASPP at rates 12 and 18 on an 8x8 map: the 3x3 kernels act as
// 1x1). conv_cut_desc gives the smaller convolution over the live taps, with the padding moved to match
// (padh/padw; the bottom and right padding follow from the unchanged oh/ow and may differ from the top
// and left). ops_cpu runs it on a compact copy of the live weights and adds its weight gradient back at
// the live taps, so the dropped taps get the zero gradient the full convolution gives them (their inputs
// are zeros). Exact up to the order of float sums. Off with SEGX_CONV_CUT=0 (tests switch it to compare).
#ifndef SEGX_CONV_CUT_H
#define SEGX_CONV_CUT_H
#include "trainer/ops/ops.h"

void conv_cut_enable(int on);
// 1 when some kernel row or column of d is dead: *r is the cut convolution, (*ky0, *kx0) the full
// kernel's tap at r's (0, 0). 0 when nothing can be cut: the cut is off, d is strided or grouped, or a
// dimension has no live tap at all. r->pad is -1 unless r's four paddings are equal and not negative.
int conv_cut_desc(const ConvDesc *d, ConvDesc *r, int *ky0, int *kx0);
// wc (cout, cin, r->kh, r->kw) = the taps of w (cout, cin, d->kh, d->kw) that r keeps
void conv_cut_gather(const ConvDesc *d, const ConvDesc *r, int ky0, int kx0, float *wc, const float *w);
// dw (cout, cin, d->kh, d->kw) += dwc (cout, cin, r->kh, r->kw) at the kept taps
void conv_cut_add_back(const ConvDesc *d, const ConvDesc *r, int ky0, int kx0, float *dw, const float *dwc);

#endif
