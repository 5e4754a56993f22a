// orchestrator/backend_slurm.c — placeholder until the Slurm engineer lands the real backend.
#include "orchestrator/backends.h"
#include <stdio.h>
int backend_slurm_open(const char *options_json, Backend **out, char *err, size_t errlen)
{
    (void)options_json;
    *out = NULL;
    snprintf(err, errlen, "the slurm backend is not implemented yet");
    return -1;
}
