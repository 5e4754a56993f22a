// orchestrator/poll_pace.h — how long to wait between two polls of the scheduler (`segx status
// --watch`, `segx run`): the interval asked for while the scheduler answers quickly; doubled (up to
// a cap) after a poll that failed or took more than a quarter of the current wait, so a slow or
// failing slurmctld/slurmrestd is asked less often (it serves us at most a quarter of the time);
// kept while polls take a quarter of it or less; back to the interval once a poll takes no more
// than a quarter of the interval.
// defines: PollPace, poll_pace_init, poll_pace_next.
#ifndef SEGX_POLL_PACE_H
#define SEGX_POLL_PACE_H

typedef struct {
    double interval_s;   // what the user asked for (--poll-interval)
    double cur_s;        // the wait now
    double cap_s;        // at most this: max(interval, POLL_PACE_CAP_S)
    int slowed;          // 1 while backing off (the caller says so once)
} PollPace;

#define POLL_PACE_CAP_S 300.0
// A poll that takes more than this fraction of the wait counts as slow.
#define POLL_PACE_SLOW_FRACTION 0.25

void poll_pace_init(PollPace *p, double interval_s);
// After one poll that took took_s seconds (failed: it got no answer): the seconds to wait before
// the next poll.
double poll_pace_next(PollPace *p, double took_s, int failed);
#endif
