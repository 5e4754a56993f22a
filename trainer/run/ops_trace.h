// ops_trace: an op table that forwards every call to another table and records each compute op
// (convolutions, batch norm, pooling, ...) as a Chrome-trace event with its shape, on the trace's
// "ops" lane, inside the phase events train.c writes. This is what `segx-train --profile` uses on
// the CPU, so a trace shows which layer a step spends its time in.
//
// The wrapper keeps its state in this file (one traced table per process: segx-train trains one
// model), and calls are timed on the host: on the CPU an op's event is its run time. Memory
// functions (alloc, upload, ...) and workspace queries are passed through untimed.
#ifndef SEGX_OPS_TRACE_H
#define SEGX_OPS_TRACE_H

#include "trainer/ops/ops.h"
#include "trainer/run/run.h"

// The traced table around `inner`, writing to `trace`. Returns inner itself when trace is NULL.
const Ops *ops_traced(const Ops *inner, Trace *trace);
// The training step the following events belong to (their args.step).
void ops_trace_set_step(long step);

#endif
