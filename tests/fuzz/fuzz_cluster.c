// tests/fuzz/fuzz_cluster.c — cluster profiles (orchestrator/cluster.c): an inline profile object
// (which may name a "base" in ./templates/clusters) or a profile name, then the #SBATCH block,
// srun line and container words for every GPU type at 1 and 2 nodes. Properties: an error is a
// message; a module line holds only module-name characters; no #SBATCH value carries a newline.
#include "orchestrator/cluster.h"
#include "tests/fuzz/fuzz.h"
#include <ctype.h>
#include <jansson.h>

static void check_directives(const char *d)
{
    for (const char *line = d; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > 12 && strncmp(line, "module load ", 12) == 0)
            for (size_t i = 12; i < len; i++)
                fuzz_check(isalnum((unsigned char)line[i]) || strchr("_-.+/@:,=% ", line[i]),
                           "module line '%.*s'", (int)len, line);
        if (!nl) break;
        line = nl + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!j) return 0;
    ClusterProfile *p = NULL;
    char err[2048] = "";
    if (cluster_load(j, "templates", &p, err, sizeof err) < 0) {
        fuzz_check(p == NULL && err[0], "error without message");
        json_decref(j);
        return 0;
    }
    for (size_t i = 0; i < cluster_gpu_count(p); i++) {
        const ClusterGpu *g = cluster_gpu_at(p, i);
        fuzz_check(cluster_find_gpu(p, g->gpu_type) != NULL, "gpu_type '%s' not found", g->gpu_type);
        for (int nodes = 1; nodes <= 2; nodes++) {
            char *d = NULL, *l = NULL, *c = NULL;
            int gpus = g->gpus_per_node * nodes;
            if (cluster_render_directives(p, g, gpus, nodes, "01:00:00", "segx-fuzz-0123", "/r/run", &d) == 0)
                check_directives(d);
            else
                fuzz_check(d && *d, "directives failed without a message");
            cluster_render_launch(p, NULL, gpus, nodes, &l);
            cluster_render_container(p, NULL, &c);
            free(d);
            free(l);
            free(c);
        }
    }
    cluster_free(p);
    json_decref(j);
    return 0;
}
