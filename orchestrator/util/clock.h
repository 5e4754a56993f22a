// orchestrator/util/clock.h — the two clocks segx reads. defines: now_s, mono_s.
// Contract: seconds as a double with sub-second resolution; no failure (clock_gettime on these
// clocks cannot fail on Linux).
#ifndef SEGX_CLOCK_H
#define SEGX_CLOCK_H
// Wall-clock time, seconds since the epoch: what the DB and job files store.
double now_s(void);
// A monotonic clock for deadlines and timeouts (never jumps with the wall clock).
double mono_s(void);
#endif
