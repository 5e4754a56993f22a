// orchestrator/backend/backends.h — constructors of the backend implementations, used by backend_open.
// Each returns 0, or -1 with a message that says what to do (e.g. start the local cluster).
#ifndef SEGX_BACKENDS_H
#define SEGX_BACKENDS_H
#include "orchestrator/backend/backend.h"
#include <stdio.h>
int backend_local_open(const char *options_json, Backend **out, char *err, size_t errlen);
int backend_slurm_open(const char *options_json, Backend **out, char *err, size_t errlen);
int backend_slurm_cli_open(const char *options_json, Backend **out, char *err, size_t errlen);
int backend_slurm_rest_open(const char *options_json, Backend **out, char *err, size_t errlen);
// slurm-rest only: "URL, API vX, user U, token SOURCE" and the token's expiry (0 unknown). 0, or -1
// when b is not a slurm-rest backend.
int backend_slurm_rest_describe(Backend *b, char *out, size_t cap, double *token_exp);
// slurm-rest only: slurmdbd's records of job_ids (GET /slurmdb/vX/jobs) written to out as the lines
// `sacct -n -P` prints (accounting.c reads both the same way). Lines written, or -1 with err.
int backend_slurm_rest_accounting(Backend *b, const char *const *job_ids, size_t n, FILE *out, char *err, size_t errlen);
#endif
