// orchestrator/backend/slurm_lib.h — the few libslurm calls segx makes, behind plain types (slurm_types.h),
// so that nothing else includes <slurm/slurm.h> (its enum job_states clashes with JobState, and
// libslurm has no stable ABI: only this file and slurm_lib.c follow its version).
// defines: slurm_lib_available, slurm_lib_init, slurm_lib_submit, slurm_lib_load, slurm_lib_cancel,
// slurm_lib_version.
#ifndef SEGX_SLURM_LIB_H
#define SEGX_SLURM_LIB_H
#include "orchestrator/backend/slurm_types.h"
#include <stddef.h>

int  slurm_lib_available(void);             // 1 when segx was built with libslurm
void slurm_lib_init(void);                  // once per process; SLURM_CONF must name a readable file
// Submits the script text with the options o (env: this process's environment). 0 with job_id, or
// -1 with err; *transient = 1 when the controller could not be reached (worth retrying).
int  slurm_lib_submit(const SlurmOpts *o, const char *script_text, const char *script_path,
                      char *job_id, size_t idlen, int *transient, char *err, size_t errlen);
// Every job of the calling user that slurmctld still holds, in one RPC. *jobs is malloc'd.
int  slurm_lib_load(SlurmJobInfo **jobs, size_t *n, char *err, size_t errlen);
// SIGKILL to the whole job (pending or running); a job that already ended is not an error.
int  slurm_lib_cancel(const char *job_id, char *err, size_t errlen);
const char *slurm_lib_version(void);        // "22.05.8" (of the headers built against)
// slurmctld's own version ("23.11.4"), from its configuration (one RPC). 0, or -1 with err.
int  slurm_lib_controller_version(char *out, size_t cap, char *err, size_t errlen);
// 1 when version ("23.11.4") is the release (major.minor) libslurm was built for.
int  slurm_lib_same_release(const char *version);
#endif
