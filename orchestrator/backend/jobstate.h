// orchestrator/backend/jobstate.h — the job states every layer speaks (backends report them,
// submit/status/cancel/collect store and act on them, the DB keeps their names) and the exit
// codes a job leaves. defines: JobState, job_state_name, job_state_parse, job_state_in, the JOB_SET_*
// sets and their SQL lists JOB_SQL_*, JOB_EXIT_*, job_state_from_exit, job_exit_name.
// Contract: the table in jobstate.c is the one definition; the SQL lists below are written out
// (so they can sit inside string literals) and tests/orchestrator/test_jobstate.c checks them, and
// every state list in db/schema.sql, against the table. Pure functions, no output.
#ifndef SEGX_JOBSTATE_H
#define SEGX_JOBSTATE_H

typedef enum {
    JOB_PLANNED, JOB_SUBMITTED, JOB_PENDING, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED,
    JOB_CANCELLED, JOB_TIMEOUT, JOB_PREEMPTED, JOB_OUT_OF_MEMORY, JOB_NODE_FAIL, JOB_UNKNOWN
} JobState;
#define JOB_NSTATES (JOB_UNKNOWN + 1)

const char *job_state_name(JobState s);          // "planned", "running", "out-of-memory", ...
int job_state_parse(const char *name, JobState *out);   // 0, or -1 for a name not in the table

// Sets of states (bit flags, combine with |):
enum {
    JOB_SET_ACTIVE    = 1 << 0,   // the scheduler has it: submitted, pending, running
    JOB_SET_UNSETTLED = 1 << 1,   // ACTIVE + unknown: what status polls and cancel cancels
    JOB_SET_FINAL     = 1 << 2,   // ended for good: completed, failed, cancelled, timeout, out-of-memory,
                                  // node-fail (preempted is not: Slurm requeues it)
    JOB_SET_FAILED    = 1 << 3,   // the job itself failed: failed, timeout, out-of-memory, node-fail
    JOB_SET_UNSUCCESSFUL = 1 << 4,   // FAILED + cancelled: ended without a result (collect notes why)
    JOB_SET_RERUNNABLE = 1 << 5,  // submit --rerun-failed sends it again: FAILED + cancelled,
                                  // preempted, unknown
    JOB_SET_OPEN      = 1 << 6,   // UNSETTLED + planned: collect may settle it from the run dir's exit_code
};
int job_state_in(JobState s, unsigned set);
static inline int job_state_is_final(JobState s) { return job_state_in(s, JOB_SET_FINAL); }
// The same, for a state name from the DB (a name not in the table is in no set).
int job_state_name_in(const char *name, unsigned set);

// The sets as SQL lists, for `state IN JOB_SQL_...` inside a string literal.
#define JOB_SQL_ACTIVE    "('submitted', 'pending', 'running')"
#define JOB_SQL_UNSETTLED "('submitted', 'pending', 'running', 'unknown')"
#define JOB_SQL_FAILED    "('failed', 'timeout', 'out-of-memory', 'node-fail')"

// Exit codes of a job (segx-train's TRAIN_EXIT_*, trainer/train.h; the job script passes them on).
#define JOB_EXIT_OK      0
#define JOB_EXIT_ERROR   1
#define JOB_EXIT_USAGE   2
#define JOB_EXIT_REQUEUE 99   // stopped by SIGTERM/SIGUSR1 after writing its checkpoint: to be requeued
// A job the scheduler no longer knows, by the exit code it left: completed, preempted, else failed.
JobState job_state_from_exit(int code);
// "ok", "error", "usage", "requeue", or NULL for another code.
const char *job_exit_name(int code);

// An eval job (spec eval.job) the scheduler no longer knows, from what its attempt left: with its
// eval_exit_code (have_eval): completed or failed; else a train job that left an exit code other
// than 0 (have_train) means the afterok dependency can never be met: cancelled; else unknown.
JobState job_eval_state(int have_eval, int eval_code, int have_train, int train_code);
#endif
