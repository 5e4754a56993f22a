// orchestrator/backend/slurm_rest.h — the parts of the slurm-rest backend (backend_slurm_rest.c) that need no
// server: the table of slurmrestd API versions segx speaks, the submit body for each, the jobs reply
// parsed into SlurmJobInfo, a JWT's claims, and the message for a reply that is not what slurmrestd
// sends. The unit tests (tests/orchestrator/test_rest.c) use them directly.
// defines: RestDialect, slurm_rest_dialect, slurm_rest_pick_version, slurm_rest_submit_body,
// slurm_rest_parse_jobs, slurm_rest_jwt_claims, slurm_rest_describe_errors, slurm_rest_sacct_lines.
//
// API versions (slurmrestd's openapi/v0.0.NN plugins): v0.0.37 and v0.0.38 (Slurm 21.08-23.02; tested
// against the 22.05 slurmrestd of slurm/local-cluster), v0.0.39 to v0.0.41 (23.02-24.11; written from
// their published OpenAPI descriptions: environment as a "K=V" array, numbers as {"set","number"},
// --signal=B: as kill_warning_flags, GPUs as tres_per_node "gres/gpu:...", kill_on_invalid_dependency
// as a job flag, and from v0.0.41 the script inside the job). tests/integration/slurm_rest_versions.sh
// submits and polls through each against slurm_rest_fake.py serving that version's shapes. Replies of every version
// are read the same tolerant way (a number or {"set","number"}, a state string or list, an exit code
// as a wait status or {"status","return_code"}).
#ifndef SEGX_SLURM_REST_H
#define SEGX_SLURM_REST_H
#include "orchestrator/backend/slurm_types.h"
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *version;     // "v0.0.38"
    int env_array;           // environment as ["K=V", ...] (else {"K": "V"})
    int wrapped_numbers;     // time_limit, memory_per_node, kill_warning_delay as {"set": true, "number": N}
    int warn_flags;          // --signal as kill_warning_signal/_delay/_flags (else "signal": "SIG@T", no B:)
    int nodes_minmax;        // minimum_nodes/maximum_nodes (else "nodes": [min, max])
    int flag_arrays;         // open_mode as ["APPEND"] (else "append"); kill_on_invalid_dependency as
                             // "flags": ["KILL_INVALID_DEPENDENCY"] (v0.0.39+ have no such field)
    const char *gres_field;  // "gres" ("gpu:a100:2") or "tres_per_node" ("gres/gpu:a100:2")
    int script_in_job;       // the script as job.script (v0.0.41: the top-level "script" is deprecated)
} RestDialect;

// The dialect of version "v0.0.NN", or NULL when segx does not speak it.
const RestDialect *slurm_rest_dialect(const char *version);
// The newest version segx speaks among those the server's OpenAPI document (GET /openapi/v3) lists as
// /slurm/vX/job/submit paths. NULL with err naming the versions offered and those segx speaks.
const RestDialect *slurm_rest_pick_version(json_t *openapi, char *err, size_t errlen);
// {"script": ..., "job": {...}} for the job of o. env: NULL-terminated "K=V" strings (SLURM_JWT is
// left out: the token does not travel into the job). Returns a new reference.
json_t *slurm_rest_submit_body(const RestDialect *d, const SlurmOpts *o, const char *script, char *const *env);
// GET /slurm/vX/jobs -> one SlurmJobInfo per job record of `user` (NULL or "": every user), array
// tasks as "A_T", an array's pending record as "A_[1-3%1]" (what slurm_match_jobs expects).
// *jobs is malloc'd. 0, or -1 with err when the reply has no "jobs" list.
int slurm_rest_parse_jobs(json_t *reply, const char *user, SlurmJobInfo **jobs, size_t *n, char *err, size_t errlen);
// The user ("sun") and expiry ("exp", unix seconds, 0 when absent) of a JWT. 0, or -1 when the token
// is not three base64url parts with a JSON payload.
int slurm_rest_jwt_claims(const char *token, char *user, size_t userlen, double *exp);
// "error text (source), ..." from a slurmrestd reply's "errors" list; *max_number gets the largest
// error number seen (error_number or error_code; 0 when none). Returns the length written.
size_t slurm_rest_describe_errors(json_t *reply, char *out, size_t cap, long *max_number);
// GET /slurmdb/vX/jobs -> the lines `sacct -n -P` prints for those jobs and their steps, in the field
// order of accounting.c's SACCT_FORMAT (JobID|State|ExitCode|ElapsedRaw|MaxRSS|TotalCPU|AllocTRES|
// TRESUsageInTot|NodeList|Partition|QOS|Submit|Eligible|Start|End|ReqMem), so both sources fill the
// same table the same way. MaxRSS and TRESUsageInTot from each step's usage ("tres": {"requested":
// {"max"/"total"}} in slurmrestd 22.05); TotalCPU of the job is the sum of its steps'. Lines written,
// or -1 with err when the reply has no "jobs" list.
int slurm_rest_sacct_lines(json_t *reply, FILE *out, char *err, size_t errlen);
#endif
