// orchestrator/backend/jobstate.c — the job-state table (see jobstate.h).
#include "orchestrator/backend/jobstate.h"
#include <stddef.h>
#include <string.h>

#define A JOB_SET_ACTIVE
#define U JOB_SET_UNSETTLED
#define F JOB_SET_FINAL
#define X JOB_SET_FAILED
#define N JOB_SET_UNSUCCESSFUL
#define R JOB_SET_RERUNNABLE
#define O JOB_SET_OPEN
static const struct { const char *name; unsigned sets; } table[JOB_NSTATES] = {
    [JOB_PLANNED]       = {"planned", O},
    [JOB_SUBMITTED]     = {"submitted", A | U | O},
    [JOB_PENDING]       = {"pending", A | U | O},
    [JOB_RUNNING]       = {"running", A | U | O},
    [JOB_COMPLETED]     = {"completed", F},
    [JOB_FAILED]        = {"failed", F | X | N | R},
    [JOB_CANCELLED]     = {"cancelled", F | N | R},
    [JOB_TIMEOUT]       = {"timeout", F | X | N | R},
    [JOB_PREEMPTED]     = {"preempted", R},
    [JOB_OUT_OF_MEMORY] = {"out-of-memory", F | X | N | R},
    [JOB_NODE_FAIL]     = {"node-fail", F | X | N | R},
    [JOB_UNKNOWN]       = {"unknown", U | R | O},
};
#undef A
#undef U
#undef F
#undef X
#undef N
#undef R
#undef O

const char *job_state_name(JobState s)
{
    return (s >= 0 && s < JOB_NSTATES) ? table[s].name : "unknown";
}

int job_state_parse(const char *name, JobState *out)
{
    for (int s = 0; name && s < JOB_NSTATES; s++)
        if (strcmp(name, table[s].name) == 0) { *out = (JobState)s; return 0; }
    return -1;
}

int job_state_in(JobState s, unsigned set)
{
    return s >= 0 && s < JOB_NSTATES && (table[s].sets & set) != 0;
}

int job_state_name_in(const char *name, unsigned set)
{
    JobState s;
    return job_state_parse(name, &s) == 0 && job_state_in(s, set);
}

JobState job_state_from_exit(int code)
{
    return code == JOB_EXIT_OK ? JOB_COMPLETED : code == JOB_EXIT_REQUEUE ? JOB_PREEMPTED : JOB_FAILED;
}

const char *job_exit_name(int code)
{
    switch (code) {
    case JOB_EXIT_OK: return "ok";
    case JOB_EXIT_ERROR: return "error";
    case JOB_EXIT_USAGE: return "usage";
    case JOB_EXIT_REQUEUE: return "requeue";
    default: return NULL;
    }
}

JobState job_eval_state(int have_eval, int eval_code, int have_train, int train_code)
{
    if (have_eval) return eval_code == 0 ? JOB_COMPLETED : JOB_FAILED;
    if (have_train && train_code != 0) return JOB_CANCELLED;
    return JOB_UNKNOWN;
}
