// orchestrator/backend/slurm_util.h — what the Slurm backends (libslurm, CLI, later REST) share.
// defines: SlurmOpts (the #SBATCH options of a job script), slurm_script_parse, slurm_opts_apply_job,
// slurm_time_minutes, slurm_state_from_name, slurm_locate_conf, slurm_conf_controller,
// slurm_probe_controller, slurm_backoff_sleep.
//
// libslurm does not read #SBATCH lines (sbatch does that on the client side), so the libslurm
// backend parses them here, and the CLI backend uses the same parse to add only what the script
// leaves out: both backends then submit the same job for the same script.
#ifndef SEGX_SLURM_UTIL_H
#define SEGX_SLURM_UTIL_H
#include "orchestrator/backend/backend.h"
#include "orchestrator/backend/slurm_types.h"
#include <stddef.h>

// Reads the job script at path: checks it starts with "#!", parses its #SBATCH lines (those before
// the first command, as sbatch does). *text gets the whole script (malloc). 0, or -1 with err naming
// path:line and the option.
int slurm_script_parse(const char *path, SlurmOpts *o, char **text, char *err, size_t errlen);
// Adds the JobSpec's fields: job name, partition, time limit and dependency override the script;
// nodes/tasks/gres/cpus only fill what the script leaves unset; output/error default into run_dir.
// comment gets "segx:<experiment>/<cell>/<attempt>[/<kind>]" (used to find a job after a lost reply).
void slurm_opts_apply_job(SlurmOpts *o, const JobSpec *j);
// "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS", "UNLIMITED" -> minutes
// (rounded up; -1 on bad input; 0 for UNLIMITED means "no limit" to the caller via *unlimited).
int slurm_time_minutes(const char *s, int *unlimited);
// Slurm's state names (squeue %T / scontrol JobState: "COMPLETED", "OUT_OF_MEMORY", "CANCELLED+"
// ...) -> JobState. Unknown names map to JOB_UNKNOWN.
JobState slurm_state_from_name(const char *name);
// The slurm.conf to use: options {"slurm_conf": ...}, else $SLURM_CONF, else /etc/slurm/slurm.conf,
// else $SEGX_SLURM_DIR/etc/slurm.conf, else ./slurm/state/etc/slurm.conf (the local cluster, when
// segx runs in the source tree). Sets SLURM_CONF to it (libslurm and sbatch read it from there).
// 0, or -1 with err when none exists.
int slurm_locate_conf(const char *options_json, char *path, size_t pathlen, char *err, size_t errlen);
// The controller's address and port from slurm.conf (SlurmctldHost / ControlMachine / ControlAddr,
// SlurmctldPort; default port 6817). 0 or -1 with err.
int slurm_conf_controller(const char *conf, char *host, size_t hostlen, int *port, char *err, size_t errlen);
// TCP connect to host:port within timeout_ms. 0 when it accepts, -1 with err otherwise.
int slurm_probe_controller(const char *host, int port, int timeout_ms, char *err, size_t errlen);
// Sleeps for retry number `attempt` (0-based): 0.1 s doubling to at most 5 s. Returns the seconds slept.
double slurm_backoff_sleep(int attempt);
// One job as slurmctld reports it -> JobStatus (shared by both backends, so both say the same).
void slurm_fill_status(const SlurmJobInfo *j, JobStatus *st);
// Fills out[i] for ids[i] from the jobs slurmctld listed; ids it did not list get JOB_UNKNOWN. An
// array task "A_T" that has not started takes the state of its array's pending record "A_[0-3%2]".
int  slurm_match_jobs(const SlurmJobInfo *jobs, size_t njobs, const char *const *ids, size_t n,
                      JobStatus *out, char *err, size_t errlen);
// The job among jobs whose comment is `comment` ("segx:<experiment>/<cell>/<attempt>"); with
// active_only, only a pending, running or requeued one counts. 1 found (job_id set), else 0.
int slurm_find_comment(const SlurmJobInfo *jobs, size_t n, const char *comment, int active_only,
                       char *job_id, size_t idlen);
// Submit with retries, shared by the backends. try_submit makes one attempt (0 ok; -1 with
// *transient = 1 when the controller could not be reached). While it is transient, waits with
// back-off (slurm_backoff_sleep), probes host:port, and before trying again asks find_job whether
// the last try reached slurmctld after all (1 found: its id is returned), so nothing is submitted
// twice. Gives up after retry_s seconds with an error that says nothing was submitted.
typedef int (*SlurmTrySubmit)(void *ctx, char *job_id, size_t idlen, int *transient, char *err, size_t errlen);
typedef int (*SlurmFindJob)(void *ctx, const char *comment, char *job_id, size_t idlen);   // 1, 0, -1
int slurm_submit_with_retry(const char *host, int port, double retry_s, const char *job_name,
                            const char *comment, SlurmTrySubmit try_submit, SlurmFindJob find_job, void *ctx,
                            char *job_id, size_t idlen, char *err, size_t errlen);
// --max-submitted: at most `max` of this backend's own jobs queued or running. slurm_throttle_wait
// blocks (polling through b, one query per round, 0.25 s to 2 s apart) until fewer are; 0 or -1 with
// err when polling fails. max <= 0: no limit.
typedef struct { char (*ids)[64]; size_t n, cap; int max; } SlurmThrottle;
int  slurm_throttle_wait(SlurmThrottle *t, Backend *b, char *err, size_t errlen);
void slurm_throttle_add(SlurmThrottle *t, const char *job_id);
void slurm_throttle_free(SlurmThrottle *t);
// The limit from options {"max_submitted": N}, else $SEGX_MAX_SUBMITTED, else 0 (none).
int  slurm_max_submitted(const char *options_json);
// Numeric option from the backend's options JSON, or dflt.
double slurm_option_number(const char *options_json, const char *key, double dflt);
#endif
