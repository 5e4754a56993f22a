// orchestrator/backend/backend.h — how cells reach a scheduler. Implementations: local (embedded: child
// processes on this machine), slurm (libslurm), slurm-cli (sbatch/squeue/scontrol/sacct) and
// slurm-rest (slurmrestd over HTTP). Callers (submit, status, cancel, run) use only this table, so a
// new backend needs no change to them.
#ifndef SEGX_BACKEND_H
#define SEGX_BACKEND_H
#include "orchestrator/backend/jobstate.h"   // JobState and its sets
#include <stddef.h>

// One job to submit: the rendered job script of one cell attempt.
typedef struct {
    const char *experiment;
    const char *cell_key;
    const char *run_dir;       // runs/<experiment>/<cell-key>/attempt-<n>/ (absolute)
    const char *script_path;   // rendered job script inside run_dir (starts with "#!")
    const char *job_name;
    int attempt;
    int gpus, nodes, cpus_per_task;
    const char *gpu_type;      // e.g. "a100"; "cpu" for no GPU
    const char *partition;     // from the cluster profile (NULL: default)
    const char *time_limit;    // "HH:MM:SS"
    const char *dependency;    // e.g. "afterok:123" (NULL: none); the local backend knows afterok:ID
    const char *kind;          // NULL: the cell's train job; "eval": its eval job (Slurm comment suffix)
} JobSpec;

typedef struct {
    char job_id[64];
    JobState state;
    int exit_code;             // -1 when unknown
    char reason[512];
    double submit_time, start_time, end_time;  // unix seconds, 0 when unknown
    char nodes[256];
} JobStatus;

typedef struct Backend Backend;
typedef struct {
    const char *name;
    // Submits one job; writes the scheduler's job id. 0 or -1 with err.
    int  (*submit)(Backend *b, const JobSpec *job, char *job_id, size_t idlen, char *err, size_t errlen);
    // Fills out[i] for job_ids[i] with ONE scheduler query for all of them. A job the scheduler
    // no longer knows gets JOB_UNKNOWN (the caller resolves it from the run dir's exit_code).
    int  (*poll)(Backend *b, const char *const *job_ids, size_t n, JobStatus *out, char *err, size_t errlen);
    int  (*cancel)(Backend *b, const char *job_id, char *err, size_t errlen);
    void (*close)(Backend *b);
} BackendOps;

struct Backend { const BackendOps *ops; void *impl; };

// name: "local" | "slurm" | "slurm-cli" | "slurm-rest" | "auto" (NULL or "" too): the first that
// reaches a controller of slurm (only when libslurm is the controller's release), slurm-rest,
// slurm-cli, else local. options_json: submit_backend_options (state_dir, local slots, max_submitted).
// 0 or -1 with err that says what to do (e.g. slurm requested but libslurm not built in, slurmctld
// not reachable, an unknown name).
int  backend_open(const char *name, const char *options_json, Backend **out, char *err, size_t errlen);
void backend_close(Backend *b);

// How a caller opens backends: backend_open, or a stand-in (the unit tests' fake BackendOps).
typedef int (*BackendOpenFn)(const char *name, const char *options_json, Backend **out, char *err, size_t errlen);

// Jobs recorded with the backend that took them (status polls them, cancel cancels them): one open
// per backend. names[i] is job i's backend (jobs of one backend next to each other: sort by it);
// fn runs once per group [from, to) with that backend open, or with b NULL and why saying why it
// could not be opened; the backend is closed after fn returns. open NULL: backend_open.
typedef void (*BackendGroupFn)(Backend *b, size_t from, size_t to, const char *why, void *ctx);
void backend_each_group(const char *const *names, size_t n, BackendOpenFn open, const char *options_json,
                        BackendGroupFn fn, void *ctx);

#endif
