// orchestrator/backend_slurm_cli.c — placeholder until the Slurm engineer lands the real backend.
#include "orchestrator/backends.h"
#include <stdio.h>
int backend_slurm_cli_open(const char *options_json, Backend **out, char *err, size_t errlen)
{
    (void)options_json;
    *out = NULL;
    snprintf(err, errlen, "the slurm-cli backend is not implemented yet");
    return -1;
}
