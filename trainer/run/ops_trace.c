// ops_trace.c: the traced op table (see ops_trace.h).
#include "trainer/run/ops_trace.h"

#include <stdarg.h>
#include <stdio.h>

#define OPS_LANE 2   // trace lane of op events (lane 1: train.c's phases)

static struct {
    const Ops *in;
    Trace *trace;
    long step;
    Ops table;
} g;

void ops_trace_set_step(long step) { g.step = step; }

// Ends the op's event that began at t0 (run_now_s()), with a printf-style shape.
__attribute__((format(printf, 3, 4)))
static void emit(const char *name, double t0, const char *fmt, ...)
{
    double t1 = run_now_s();
    char shape[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shape, sizeof shape, fmt, ap);
    va_end(ap);
    trace_event_shape(g.trace, name, "op", t0, t1, OPS_LANE, g.step, shape);
}

#define CONV_SHAPE "B=%d %dx%dx%d->%dx%dx%d k%dx%d s%d p%d d%d"
#define CONV_ARGS(d, B) B, d->cin, d->h, d->w, d->cout, d->oh, d->ow, d->kh, d->kw, d->stride, d->pad, d->dil

static void conv2d_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b,
                           float *ws)
{
    double t0 = run_now_s();
    g.in->conv2d_forward(d, B, y, x, w, b, ws);
    emit("conv2d_forward", t0, CONV_SHAPE, CONV_ARGS(d, B));
}

static void conv2d_backward(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, float *ws, int accumulate)
{
    double t0 = run_now_s();
    g.in->conv2d_backward(d, B, dx, dw, db, dy, x, w, ws, accumulate);
    emit(dx ? "conv2d_backward" : "conv2d_backward_weights", t0, CONV_SHAPE, CONV_ARGS(d, B));
}

static void convt2x2_forward(int B, int cin, int cout, int h, int w, float *y, const float *x, const float *wt,
                             const float *b, float *ws)
{
    double t0 = run_now_s();
    g.in->convt2x2_forward(B, cin, cout, h, w, y, x, wt, b, ws);
    emit("convt2x2_forward", t0, "B=%d %dx%dx%d->%d", B, cin, h, w, cout);
}

static void convt2x2_backward(int B, int cin, int cout, int h, int w, float *dx, float *dw, float *db,
                              const float *dy, const float *x, const float *wt, float *ws)
{
    double t0 = run_now_s();
    g.in->convt2x2_backward(B, cin, cout, h, w, dx, dw, db, dy, x, wt, ws);
    emit("convt2x2_backward", t0, "B=%d %dx%dx%d->%d", B, cin, h, w, cout);
}

static void batchnorm_forward(int B, int C, int HW, float *y, float *save_mean, float *save_invstd, const float *x,
                              const float *gamma, const float *beta, float *running_mean, float *running_var,
                              float *num_batches, int training, int relu, const BnSync *sync)
{
    double t0 = run_now_s();
    g.in->batchnorm_forward(B, C, HW, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var,
                            num_batches, training, relu, sync);
    emit(relu ? "batchnorm_relu_forward" : "batchnorm_forward", t0, "B=%d C=%d HW=%d%s", B, C, HW,
         sync && sync->fn ? " sync" : "");
}

static void batchnorm_backward(int B, int C, int HW, float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *y, const float *save_mean, const float *save_invstd,
                               const float *gamma, int relu, const BnSync *sync)
{
    double t0 = run_now_s();
    g.in->batchnorm_backward(B, C, HW, dx, dgamma, dbeta, dy, x, y, save_mean, save_invstd, gamma, relu, sync);
    emit(relu ? "batchnorm_relu_backward" : "batchnorm_backward", t0, "B=%d C=%d HW=%d%s", B, C, HW,
         sync && sync->fn ? " sync" : "");
}

static void relu_forward(size_t n, float *y, const float *x)
{
    double t0 = run_now_s();
    g.in->relu_forward(n, y, x);
    emit("relu_forward", t0, "n=%zu", n);
}

static void relu_backward(size_t n, float *dx, const float *dy, const float *y)
{
    double t0 = run_now_s();
    g.in->relu_backward(n, dx, dy, y);
    emit("relu_backward", t0, "n=%zu", n);
}

static void add(size_t n, float *y, const float *a, const float *b)
{
    double t0 = run_now_s();
    g.in->add(n, y, a, b);
    emit("add", t0, "n=%zu", n);
}

static void accumulate(size_t n, float *y, const float *x)
{
    double t0 = run_now_s();
    g.in->accumulate(n, y, x);
    emit("accumulate", t0, "n=%zu", n);
}

static void maxpool2x2_forward(int B, int C, int h, int w, float *y, const float *x)
{
    double t0 = run_now_s();
    g.in->maxpool2x2_forward(B, C, h, w, y, x);
    emit("maxpool2x2_forward", t0, "B=%d %dx%dx%d", B, C, h, w);
}

static void maxpool2x2_backward(int B, int C, int h, int w, float *dx, const float *dy, const float *x)
{
    double t0 = run_now_s();
    g.in->maxpool2x2_backward(B, C, h, w, dx, dy, x);
    emit("maxpool2x2_backward", t0, "B=%d %dx%dx%d", B, C, h, w);
}

static void avgpool_forward(int B, int C, int HW, float *y, const float *x)
{
    double t0 = run_now_s();
    g.in->avgpool_forward(B, C, HW, y, x);
    emit("avgpool_forward", t0, "B=%d C=%d HW=%d", B, C, HW);
}

static void avgpool_backward(int B, int C, int HW, float *dx, const float *dy)
{
    double t0 = run_now_s();
    g.in->avgpool_backward(B, C, HW, dx, dy);
    emit("avgpool_backward", t0, "B=%d C=%d HW=%d", B, C, HW);
}

static void upsample_forward(int B, int C, int h, int w, int oh, int ow, float *y, const float *x)
{
    double t0 = run_now_s();
    g.in->upsample_bilinear_forward(B, C, h, w, oh, ow, y, x);
    emit("upsample_bilinear_forward", t0, "B=%d %dx%dx%d->%dx%d", B, C, h, w, oh, ow);
}

static void upsample_backward(int B, int C, int h, int w, int oh, int ow, float *dx, const float *dy)
{
    double t0 = run_now_s();
    g.in->upsample_bilinear_backward(B, C, h, w, oh, ow, dx, dy);
    emit("upsample_bilinear_backward", t0, "B=%d %dx%dx%d->%dx%d", B, C, h, w, oh, ow);
}

static void concat_forward(int B, int ca, int cb, int HW, float *y, const float *a, const float *b)
{
    double t0 = run_now_s();
    g.in->concat_forward(B, ca, cb, HW, y, a, b);
    emit("concat_forward", t0, "B=%d %d+%d HW=%d", B, ca, cb, HW);
}

static void concat_backward(int B, int ca, int cb, int HW, float *da, float *db, const float *dy)
{
    double t0 = run_now_s();
    g.in->concat_backward(B, ca, cb, HW, da, db, dy);
    emit("concat_backward", t0, "B=%d %d+%d HW=%d", B, ca, cb, HW);
}

static void linear_forward(int B, int in, int out, float *y, const float *x, const float *w, const float *b)
{
    double t0 = run_now_s();
    g.in->linear_forward(B, in, out, y, x, w, b);
    emit("linear_forward", t0, "B=%d %d->%d", B, in, out);
}

static void linear_backward(int B, int in, int out, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w)
{
    double t0 = run_now_s();
    g.in->linear_backward(B, in, out, dx, dw, db, dy, x, w);
    emit("linear_backward", t0, "B=%d %d->%d", B, in, out);
}

static double softmax_xent(int B, int C, int HW, float *dlogits, const float *logits, const int32_t *labels,
                           int ignore, float grad_scale, long *counted)
{
    double t0 = run_now_s();
    double loss = g.in->softmax_xent(B, C, HW, dlogits, logits, labels, ignore, grad_scale, counted);
    emit("softmax_xent", t0, "B=%d C=%d HW=%d", B, C, HW);
    return loss;
}

const Ops *ops_traced(const Ops *inner, Trace *trace)
{
    if (!trace) return inner;
    g.in = inner;
    g.trace = trace;
    g.step = 0;
    g.table = *inner;   // name, memory functions and workspace queries pass through
    g.table.conv2d_forward = conv2d_forward;
    g.table.conv2d_backward = conv2d_backward;
    g.table.convt2x2_forward = convt2x2_forward;
    g.table.convt2x2_backward = convt2x2_backward;
    g.table.batchnorm_forward = batchnorm_forward;
    g.table.batchnorm_backward = batchnorm_backward;
    g.table.relu_forward = relu_forward;
    g.table.relu_backward = relu_backward;
    g.table.add = add;
    g.table.accumulate = accumulate;
    g.table.maxpool2x2_forward = maxpool2x2_forward;
    g.table.maxpool2x2_backward = maxpool2x2_backward;
    g.table.avgpool_forward = avgpool_forward;
    g.table.avgpool_backward = avgpool_backward;
    g.table.upsample_bilinear_forward = upsample_forward;
    g.table.upsample_bilinear_backward = upsample_backward;
    g.table.concat_forward = concat_forward;
    g.table.concat_backward = concat_backward;
    g.table.linear_forward = linear_forward;
    g.table.linear_backward = linear_backward;
    g.table.softmax_xent = softmax_xent;
    return &g.table;
}
