// orchestrator/poll_pace.c — the wait between scheduler polls, with back-off (see poll_pace.h).
#include "orchestrator/poll_pace.h"

void poll_pace_init(PollPace *p, double interval_s)
{
    p->interval_s = interval_s > 0 ? interval_s : 1;
    p->cur_s = p->interval_s;
    p->cap_s = p->interval_s > POLL_PACE_CAP_S ? p->interval_s : POLL_PACE_CAP_S;
    p->slowed = 0;
}

double poll_pace_next(PollPace *p, double took_s, int failed)
{
    if (failed || took_s > POLL_PACE_SLOW_FRACTION * p->cur_s) {
        p->cur_s = 2 * p->cur_s < p->cap_s ? 2 * p->cur_s : p->cap_s;
        p->slowed = 1;
    } else if (took_s <= POLL_PACE_SLOW_FRACTION * p->interval_s) {   // quick again: back to what was asked
        p->cur_s = p->interval_s;
        p->slowed = 0;
    }   // else: quick enough for the longer wait, not for the interval: keep the wait (no see-saw)
    return p->cur_s;
}
