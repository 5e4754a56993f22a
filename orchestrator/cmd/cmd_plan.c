// orchestrator/cmd/cmd_plan.c — `segx plan SPEC`: options and output; the planning is
// plan_spec_run (orchestrator/plan_spec.h).
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/plan_spec.h"
#include "orchestrator/table.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_table(const PlanCell *cells, size_t n, long time_s, TableFormat f, int limit)
{
    json_t **params = malloc((n ? n : 1) * sizeof *params);
    for (size_t i = 0; i < n; i++) params[i] = cells[i].params;
    const char *vary[32];
    size_t nv = plan_varying_keys(params, n, vary, 32);
    const char *headers[40];
    size_t nh = 0;
    headers[nh++] = "key";
    for (size_t i = 0; i < nv; i++) headers[nh++] = vary[i];
    headers[nh++] = "lr";
    headers[nh++] = "est_gpu_h";
    headers[nh++] = "plan";
    int machine = f != TABLE_TEXT;
    if (machine) headers[nh++] = "params";   // every parameter, canonical JSON text
    Table *t = table_new(nh, headers);
    table_set_decimals(t, nh - 2 - machine, 2);
    table_set_decimals(t, nh - 3 - machine, 6);
    size_t shown = limit > 0 && (size_t)limit < n && f == TABLE_TEXT ? (size_t)limit : n;
    for (size_t i = 0; i < shown; i++) {
        const PlanCell *c = &cells[i];
        table_row(t);
        table_text(t, c->key);
        for (size_t j = 0; j < nv; j++) {
            json_t *v = json_object_get(c->params, vary[j]);
            if (!v) table_null(t);
            else if (json_is_integer(v)) table_int(t, json_integer_value(v));
            else if (json_is_real(v)) table_real(t, json_real_value(v));
            else if (json_is_string(v)) table_text(t, json_string_value(v));
            else { char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT); table_text(t, s); free(s); }
        }
        if (c->lr > 0) table_real(t, c->lr); else table_null(t);
        table_real(t, (double)c->gpus * (double)time_s / 3600.0);
        table_text(t, c->is_new ? "new" : c->next_attempt > 1 ? "submitted before" : "planned");
        if (machine) {
            char *p = json_dumps(c->params, JSON_SORT_KEYS | JSON_COMPACT);
            table_text(t, p);
            free(p);
        }
    }
    table_print(t, f, stdout);
    if (shown < n) printf("... %zu more cells (--limit 0 shows all, --format json for machines)\n", n - shown);
    table_free(t);
    free(params);
}

// PlanOptions.warn of plan_spec_file (plan, run): on stderr after "segx: warning: ".
static void plan_warn(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "segx: warning: %s\n", line);
}

int plan_spec_file(const char *spec_path, const PlanOptions *o, char *name, size_t namelen)
{
    TableFormat fmt = TABLE_TEXT;
    if (o->format && table_format_parse(o->format, &fmt) < 0) {
        fprintf(stderr, "segx plan: --format '%s': expected table, csv, json or markdown\n", o->format);
        return 2;
    }
    fmt = table_format_resolve(fmt, stdout);
    PlanOutcome P;
    char err[2048];
    PlanOptions po = *o;
    if (!po.warn) po.warn = plan_warn;
    int rc = plan_spec_run(spec_path, &po, &P, err, sizeof err);
    if (name && P.spec) snprintf(name, namelen, "%s", P.spec->name);
    if (rc != 0) {
        fprintf(stderr, "segx plan: %s\n", err);
        plan_outcome_free(&P);
        return rc;
    }
    const Spec *s = P.spec;
    double gpuh = 0;
    for (size_t i = 0; i < P.n; i++) gpuh += (double)P.cells[i].gpus * (double)s->time_s / 3600.0;
    if (!o->quiet) print_table(P.cells, P.n, s->time_s, fmt, o->limit);
    char where[3 * PATH_MAX];
    if (o->dry_run) snprintf(where, sizeof where, " — dry run, nothing written");
    else if (P.scripts) snprintf(where, sizeof where, "; job scripts in %s", P.run_root);
    else
        snprintf(where, sizeof where, "; job scripts are written when cells are submitted (%s; --scripts all "
                 "writes them now) under %s", o->scripts == PLAN_SCRIPTS_NONE ? "--scripts none" : "over 10000 cells",
                 P.run_root);
    if (fmt == TABLE_TEXT || o->quiet)
        fprintf(fmt == TABLE_TEXT ? stdout : stderr, "%s: %zu cells (%zu new), %.1f GPU-hours at the %s limit%s\n",
                s->name, P.n, o->dry_run ? P.n : P.added, gpuh, s->time, where);
    plan_outcome_free(&P);
    return 0;
}

int cmd_plan(int argc, char **argv)
{
    PlanOptions o = {.limit = 100};
    int json = 0;
    const char *scripts = NULL;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &o.db_path, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"runs", 0, CLI_STRING, &o.runs_dir, "DIR", "where run dirs go (default ./runs, or where the experiment was planned)"},
        {"dry-run", 'n', CLI_FLAG, &o.dry_run, NULL, "expand and render in memory; write nothing"},
        {"format", 0, CLI_STRING, &o.format, "FMT", "table (default), csv, json or markdown"},
        {"json", 0, CLI_FLAG, &json, NULL, "same as --format json"},
        {"quiet", 'q', CLI_FLAG, &o.quiet, NULL, "print only the summary line"},
        {"limit", 0, CLI_INT, &o.limit, "N", "table rows shown on a terminal (default 100, 0 = all)"},
        {"scripts", 0, CLI_STRING, &scripts, "WHEN",
         "write attempt 1's job scripts now: all, none (submit writes them) or auto (default: all up to 10000 cells)"},
        {0}};
    const CliCommand cmd = {
        "segx plan SPEC.json [options]",
        "Expands the spec's matrix (minus exclude, plus include) into cells, stores new cells in the\n"
        "DB (planning again adds only cells that are new) and renders each new cell's job script into\n"
        "RUNS/<experiment>/<cell-key>/attempt-1/job.sh (and eval.sh when the spec has eval.job). Beyond\n"
        "10000 cells the scripts are left to submit (it writes each as it sends the cell) and plan renders\n"
        "one cell of each shape to check the templates; --scripts all|none decides it. Prints the cells\n"
        "with their estimated GPU-hours.",
        opts, 1, 1,
        "examples:\n  segx plan examples/quickstart.json\n  segx plan spec.json --dry-run --format json"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (json) o.format = "json";
    if (scripts && strcmp(scripts, "all") == 0) o.scripts = PLAN_SCRIPTS_ALL;
    else if (scripts && strcmp(scripts, "none") == 0) o.scripts = PLAN_SCRIPTS_NONE;
    else if (scripts && strcmp(scripts, "auto") != 0) {
        fprintf(stderr, "segx plan: --scripts '%s': expected all, none or auto\n", scripts);
        return 2;
    }
    return plan_spec_file(a.pos[0], &o, NULL, 0);
}
