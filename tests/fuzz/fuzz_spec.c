// tests/fuzz/fuzz_spec.c — the experiment spec parser (orchestrator/spec.c) and, for specs it
// accepts, matrix expansion and job-script rendering (plan.c, render.c, cluster.c) with the
// templates in ./templates. Properties: every error names the file; an accepted spec expands to
// cells whose gpus, nodes and batches are in range and whose global batch is batch_per_gpu x gpus.
#include "orchestrator/plan.h"
#include "orchestrator/spec.h"
#include "tests/fuzz/fuzz.h"
#include <limits.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    setenv("SEGX_TRAIN", "/bin/true", 0);       // no "segx-train not found" warning per input
    setenv("SEGX_TEMPLATES", "templates", 0);
    return 0;
}

// Cells the matrix would give, capped (a fuzzed matrix of 100 x 100 x 100 values is valid).
static size_t matrix_cells(const Spec *s)
{
    size_t n = 1;
    const char *k;
    json_t *v;
    json_object_foreach(s->matrix, k, v) {
        n *= json_array_size(v);
        if (n > 4096) return n;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    if (!text) return 0;
    Spec *s = NULL;
    char err[2048] = "";
    if (spec_parse(text, "fuzz.json", &s, err, sizeof err) < 0) {
        fuzz_check(s == NULL, "spec returned on error");
        fuzz_check(strncmp(err, "fuzz.json", 9) == 0, "error does not name the file: '%s'", err);
        free(text);
        return 0;
    }
    PlanCell *cells = NULL;
    size_t n = 0;
    if (matrix_cells(s) <= 256 && (!s->include || json_array_size(s->include) <= 8) &&
        plan_expand(s, &cells, &n, err, sizeof err) == 0) {
        PlanRenderer *r = NULL;
        int rendered = plan_renderer_open(s, "templates", "/nonexistent/runs", &r, err, sizeof err) == 0;
        for (size_t i = 0; i < n; i++) {
            const PlanCell *c = &cells[i];
            fuzz_check(c->gpus >= 1 && c->gpus <= SPEC_MAX_GPUS, "gpus %d", c->gpus);
            fuzz_check(c->nodes >= 1 && c->gpus % c->nodes == 0, "nodes %d gpus %d", c->nodes, c->gpus);
            fuzz_check(c->batch_per_gpu >= 1 && c->global_batch >= 1, "batch %d global %d", c->batch_per_gpu, c->global_batch);
            fuzz_check((long long)c->batch_per_gpu * c->gpus == c->global_batch, "%d x %d != %d", c->batch_per_gpu,
                       c->gpus, c->global_batch);
            fuzz_check(strlen(c->key) == PLAN_KEY_HEX, "key '%s'", c->key);
            if (rendered && i < 16) {
                char *script = NULL;
                if (plan_render_text(r, c, 1, "/nonexistent/runs/k/attempt-1", &script, err, sizeof err) == 0)
                    fuzz_check(strncmp(script, "#!", 2) == 0, "script does not start with #!");
                free(script);
            }
        }
        plan_renderer_close(r);
        plan_cells_free(cells, n);
    }
    spec_free(s);
    free(text);
    return 0;
}
