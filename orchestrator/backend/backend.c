// orchestrator/backend/backend.c — the backend dispatcher (see backend.h; job states: jobstate.c).
#include "orchestrator/backend/backend.h"
#include "orchestrator/backend/backends.h"
#include "orchestrator/backend/slurm_lib.h"
#include <stdio.h>
#include <string.h>

int backend_open(const char *name, const char *options_json, Backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!name || !*name) name = "auto";
    if (strcmp(name, "local") == 0) return backend_local_open(options_json, out, err, errlen);
    if (strcmp(name, "slurm") == 0) return backend_slurm_open(options_json, out, err, errlen);
    if (strcmp(name, "slurm-cli") == 0) return backend_slurm_cli_open(options_json, out, err, errlen);
    if (strcmp(name, "slurm-rest") == 0) return backend_slurm_rest_open(options_json, out, err, errlen);
    if (strcmp(name, "auto") == 0) {
        // slurm (only when libslurm is the controller's release: its ABI changes every release), then
        // slurm-rest, then slurm-cli, then local: the first that reaches a controller wins.
        char e1[256], e2[1024], e3[256];
        if (backend_slurm_open(options_json, out, e1, sizeof e1) == 0) {
            char cv[64];
            if (slurm_lib_controller_version(cv, sizeof cv, e1, sizeof e1) == 0 && slurm_lib_same_release(cv)) return 0;
            backend_close(*out);
            *out = NULL;
        }
        if (backend_slurm_rest_open(options_json, out, e2, sizeof e2) == 0) return 0;
        if (backend_slurm_cli_open(options_json, out, e3, sizeof e3) == 0) return 0;
        return backend_local_open(options_json, out, err, errlen);
    }
    snprintf(err, errlen, "unknown backend '%s': use auto, local, slurm, slurm-rest or slurm-cli", name);
    return -1;
}

void backend_close(Backend *b)
{
    if (b && b->ops && b->ops->close) b->ops->close(b);
}

void backend_each_group(const char *const *names, size_t n, BackendOpenFn open, const char *options_json,
                        BackendGroupFn fn, void *ctx)
{
    if (!open) open = backend_open;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(names[j], names[i]) == 0) j++;
        Backend *b = NULL;
        char why[1024] = "";
        if (open(names[i], options_json, &b, why, sizeof why) < 0) b = NULL;
        fn(b, i, j, b ? NULL : why, ctx);
        backend_close(b);
        i = j;
    }
}
