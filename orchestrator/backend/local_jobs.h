// orchestrator/backend/local_jobs.h — the local backend's scheduler, built like a tiny real one: submit
// queues a job file and makes sure ONE detached agent process (double fork + setsid) is running;
// the agent starts queued jobs as slots free up (max_parallel), enforces time limits, reaps them
// and records pid/start/end/exit; poll reads the files; cancel leaves a marker and signals the
// job's process group. defines: LocalJob, local_job_*, local_agent_*.
//
// State dir (default RUNS/.local, one per runs folder, shared by its experiments):
//   jobs/<id>.json   one job: written once by submit (state "pending"), then only by the agent
//                    (tmp + rename, so readers never see half a file)
//   cancel/<id>      cancel request marker (written by cancel, consumed by the agent)
//   next_id, ids.lock  job id allocation (flock)
//   agent.lock       flock held by the running agent; agent.pid, agent.log
//   config.json      {"max_parallel": N, "cpus": C} (0 = no limit; latest submit wins; no file:
//                    this machine's cores, no job cap): jobs start in id order while fewer than
//                    N run and their cpus fit in the C not taken by running jobs (a job larger
//                    than C still runs, alone); the first job that does not fit waits, and so
//                    do the ones behind it
// Job states: pending running completed failed cancelled timeout. A job with after_ok waits
// (without holding up the jobs behind it) until that job completed, and is cancelled with reason
// "dependency failed: ..." when it ended any other way (as Slurm's afterok + kill_invalid_depend). A job runs `bash job.sh` in its
// run dir in a new session (its pid is its process group), stdout+stderr to RUN_DIR/job.out.
#ifndef SEGX_LOCAL_JOBS_H
#define SEGX_LOCAL_JOBS_H
#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    long id;
    char state[16];
    char script[PATH_MAX];
    char run_dir[PATH_MAX];
    char name[128];
    int pid;
    int cpus;               // CPU slots the job takes (ranks x threads); 0 counts as 1
    long time_limit_s;      // 0: none
    double submit_time, start_time, end_time;
    int exit_code;          // -1 until known; 128+N after signal N
    long after_ok;          // dependency: start only once job <after_ok> completed (exit 0); 0: none
    char reason[128];       // why it ended without running ("dependency failed: ...")
} LocalJob;

// Allocates an id, writes jobs/<id>.json as pending. 0 or -1 with err.
int  local_job_submit(const char *dir, LocalJob *job, char *err, size_t errlen);
int  local_job_read(const char *dir, long id, LocalJob *job, char *err, size_t errlen);
int  local_job_write(const char *dir, const LocalJob *job, char *err, size_t errlen);
// Marks a cancel request and signals a running job's process group. 0 or -1 with err.
int  local_job_cancel(const char *dir, long id, char *err, size_t errlen);

// Writes config.json (0 = no limit).
int  local_set_slots(const char *dir, int max_parallel, int cpus, char *err, size_t errlen);
// 1 when an agent holds agent.lock.
int  local_agent_alive(const char *dir);
// Starts a detached agent unless one is running. 0 or -1 with err.
int  local_agent_ensure(const char *dir, char *err, size_t errlen);
// The agent's loop (runs in the detached process); returns when idle with nothing queued.
int  local_agent_run(const char *dir);
// Creates dir and its subfolders. 0 or -1 with err.
int  local_state_init(const char *dir, char *err, size_t errlen);

#endif
