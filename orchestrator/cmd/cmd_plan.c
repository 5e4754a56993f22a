// orchestrator/cmd/cmd_plan.c — `segx plan SPEC`: cells into the DB, job scripts into the run dirs.
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/plan.h"
#include "orchestrator/table.h"
#include "db/db.h"
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *stored_run_root(sqlite3 *db, const char *name, char *buf, size_t len)
{
    sqlite3_stmt *st;
    const char *out = NULL;
    if (sqlite3_prepare_v2(db, "SELECT run_root FROM experiments WHERE name = ?1", -1, &st, NULL) != SQLITE_OK) return NULL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
        out = buf;
    }
    sqlite3_finalize(st);
    return out;
}

static void absolute(const char *p, char *out, size_t len)
{
    if (p[0] == '/') { snprintf(out, len, "%s", p); return; }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
    size_t n = strlen(cwd);
    snprintf(out, len, "%s", cwd);
    if (n + 1 < len) snprintf(out + n, len - n, "/%s", p);
}

// Rendered scripts kept in memory between the check (every cell renders before the DB is
// touched) and the writes; beyond it they are dropped and rendered again when written, so a
// 100,000-cell plan stays within a few hundred MB (its scripts alone are ~700 MB).
#define PLAN_SCRIPT_BUDGET (32u << 20)
#define PLAN_WRITE_CHUNK 2048

// One of two workers over the cells first, first + 2, ... below n (the renderer is read-only
// while they run; jansson's reference counts are atomic). check: render every cell and keep the
// scripts within budget; else: render what was dropped, write the scripts of never-submitted
// cells and free them. File creation (ext4: 50-250 us per mkdir/create) and rendering both run
// on two cores this way.
typedef struct {
    PlanRenderer *r;
    PlanCell *cells;
    char **scripts, **evals;   // evals: eval.sh per cell, or NULL without eval.job
    const char *run_root;
    size_t first, n, stride, budget, kept;
    int check;
    long failed_at;            // -1, or the first cell that failed (err says why)
    char err[2048];
} PlanWork;

static void *plan_work(void *arg)
{
    PlanWork *w = arg;
    for (size_t i = w->first; i < w->n; i += w->stride) {
        if (!w->check && w->cells[i].next_attempt != 1) continue;
        char path[3 * PATH_MAX], rd[3 * PATH_MAX];
        snprintf(rd, sizeof rd, "%s/%s/attempt-1", w->run_root, w->cells[i].key);
        if (!w->scripts[i] && (plan_render_text(w->r, &w->cells[i], 1, rd, &w->scripts[i], w->err, sizeof w->err) < 0 ||
                               (w->evals && plan_render_eval_text(w->r, &w->cells[i], 1, rd, &w->evals[i], w->err,
                                                                  sizeof w->err) < 0))) {
            w->failed_at = (long)i;
            return NULL;
        }
        if (w->check) {
            w->kept += strlen(w->scripts[i]) + (w->evals ? strlen(w->evals[i]) : 0);
            if (w->kept <= w->budget) continue;
        } else if (plan_write_job(rd, w->scripts[i], path, sizeof path, w->err, sizeof w->err) < 0 ||
                   (w->evals && plan_write_eval(rd, w->evals[i], path, sizeof path, w->err, sizeof w->err) < 0)) {
            w->failed_at = (long)i;
            return NULL;
        }
        free(w->scripts[i]);
        w->scripts[i] = NULL;
        if (w->evals) { free(w->evals[i]); w->evals[i] = NULL; }
    }
    return NULL;
}

// Runs two workers like proto over [first, n). 0, or -1 with err of the first cell that failed.
static int plan_work2(const PlanWork *proto, size_t first, size_t n, char *err, size_t errlen)
{
    PlanWork w[2] = {*proto, *proto};
    for (int k = 0; k < 2; k++) {
        w[k].first = first + (size_t)k;
        w[k].n = n;
        w[k].stride = 2;
        w[k].budget = proto->budget / 2;
        w[k].kept = 0;
        w[k].failed_at = -1;
    }
    pthread_t th;
    int threaded = n - first >= 256 && pthread_create(&th, NULL, plan_work, &w[1]) == 0;
    if (!threaded) w[0].stride = 1, w[0].budget = proto->budget;
    plan_work(&w[0]);
    if (threaded) pthread_join(th, NULL);
    int bad = -1;
    for (int k = 0; k < 2; k++)
        if (w[k].failed_at >= 0 && (bad < 0 || w[k].failed_at < w[bad].failed_at)) bad = k;
    if (bad < 0) return 0;
    snprintf(err, errlen, "%s", w[bad].err);
    return -1;
}

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

int plan_spec_file(const char *spec_path, const PlanOptions *o, char *name, size_t namelen)
{
    char err[2048];
    TableFormat fmt = TABLE_TEXT;
    if (o->format && table_format_parse(o->format, &fmt) < 0) {
        fprintf(stderr, "segx plan: --format '%s': expected table, csv, json or markdown\n", o->format);
        return 2;
    }
    fmt = table_format_resolve(fmt, stdout);
    Spec *s;
    if (spec_load(spec_path, &s, err, sizeof err) < 0) {
        fprintf(stderr, "segx plan: %s\n", err);
        return 2;
    }
    if (name) snprintf(name, namelen, "%s", s->name);
    PlanCell *cells;
    size_t n;
    if (plan_expand(s, &cells, &n, err, sizeof err) < 0) {
        fprintf(stderr, "segx plan: %s\n", err);
        spec_free(s);
        return 2;
    }
    int rc = 1;
    sqlite3 *db = NULL;
    PlanRenderer *r = NULL;
    size_t added = 0;
    char **scripts = NULL, **evals = NULL;
    char run_root[2 * PATH_MAX], spec_abs[PATH_MAX], buf[PATH_MAX];
    absolute(spec_path, spec_abs, sizeof spec_abs);
    const char *dbp = db_path_default(o->db_path);
    // Every input error (spec, expansion, rendering: a cell that does not fit the cluster profile)
    // comes before the DB is opened read-write, so bad input never creates or changes the file.
    // An experiment planned before keeps its run root: read it through a read-only open (which
    // fails, harmlessly, when there is no DB yet).
    int have_root = 0;
    if (o->runs_dir) {
        absolute(o->runs_dir, buf, sizeof buf);
        snprintf(run_root, sizeof run_root, "%s/%s", buf, s->name);
        have_root = 1;
    } else if (db_open(dbp, DB_READONLY, &db, err, sizeof err) == 0) {
        have_root = stored_run_root(db, s->name, run_root, sizeof run_root) != NULL;
        db_close(db);
        db = NULL;
    }
    if (!have_root) {
        absolute("runs", buf, sizeof buf);
        snprintf(run_root, sizeof run_root, "%s/%s", buf, s->name);
    }
    if (plan_renderer_open(s, cli_templates_dir(), run_root, &r, err, sizeof err) < 0) {
        fprintf(stderr, "segx plan: %s\n", err);
        rc = 2;
        goto out;
    }
    if (o->dry_run) {
        // Render every cell in memory so a bad cell is reported, but write nothing.
        for (size_t i = 0; i < n; i++) {
            char *script, rd[3 * PATH_MAX];
            snprintf(rd, sizeof rd, "%s/%s/attempt-1", run_root, cells[i].key);
            cells[i].next_attempt = 1;
            if (plan_render_text(r, &cells[i], 1, rd, &script, err, sizeof err) < 0) {
                fprintf(stderr, "segx plan: %s\n", err);
                rc = 2;
                goto out;
            }
            free(script);
            if (plan_has_eval(r) && plan_render_eval_text(r, &cells[i], 1, rd, &script, err, sizeof err) < 0) {
                fprintf(stderr, "segx plan: %s\n", err);
                rc = 2;
                goto out;
            }
            if (plan_has_eval(r)) free(script);
            cells[i].is_new = 1;
        }
    } else {
        // Render first (bad cells are input errors and must leave the DB untouched), then store,
        // then write the scripts of cells never submitted (submit renders later attempts).
        scripts = calloc(n ? n : 1, sizeof *scripts);
        if (plan_has_eval(r)) evals = calloc(n ? n : 1, sizeof *evals);
        size_t budget = PLAN_SCRIPT_BUDGET;
        const char *b_env = getenv("SEGX_PLAN_SCRIPT_BUDGET");   // bytes; tests set it low
        if (b_env && *b_env) budget = (size_t)strtoull(b_env, NULL, 10);
        PlanWork work = {.r = r, .cells = cells, .scripts = scripts, .evals = evals, .run_root = run_root,
                         .budget = budget, .check = 1};
        if (scripts && (evals || !plan_has_eval(r)) && plan_work2(&work, 0, n, err, sizeof err) < 0) {
            fprintf(stderr, "segx plan: %s\n", err);
            rc = 2;
            goto out;
        }
        if (!scripts || (plan_has_eval(r) && !evals)) { fprintf(stderr, "segx plan: out of memory\n"); goto out; }
        if (db_open(dbp, DB_CREATE, &db, err, sizeof err) < 0) { fprintf(stderr, "segx plan: %s\n", err); goto out; }
        if (plan_store(db, s, spec_abs, run_root, cells, n, &added, err, sizeof err) < 0) {
            fprintf(stderr, "segx plan: %s\n", err);
            goto out;
        }
        // In chunks, so at most PLAN_WRITE_CHUNK dropped scripts are rendered again at a time.
        work.check = 0;
        for (size_t start = 0; start < n; start += PLAN_WRITE_CHUNK) {
            size_t end = n - start > PLAN_WRITE_CHUNK ? start + PLAN_WRITE_CHUNK : n;
            if (plan_work2(&work, start, end, err, sizeof err) < 0) { fprintf(stderr, "segx plan: %s\n", err); goto out; }
        }
    }
    double gpuh = 0;
    for (size_t i = 0; i < n; i++) gpuh += (double)cells[i].gpus * (double)s->time_s / 3600.0;
    if (!o->quiet) print_table(cells, n, s->time_s, fmt, o->limit);
    if (fmt == TABLE_TEXT || o->quiet)
        fprintf(fmt == TABLE_TEXT ? stdout : stderr,
                "%s: %zu cells (%zu new), %.1f GPU-hours at the %s limit%s%s\n", s->name, n, o->dry_run ? n : added,
                gpuh, s->time, o->dry_run ? " — dry run, nothing written" : "; job scripts in ",
                o->dry_run ? "" : run_root);
    rc = 0;
out:
    for (size_t i = 0; scripts && i < n; i++) free(scripts[i]);
    free(scripts);
    for (size_t i = 0; evals && i < n; i++) free(evals[i]);
    free(evals);
    plan_renderer_close(r);
    db_close(db);
    plan_cells_free(cells, n);
    spec_free(s);
    return rc;
}

int cmd_plan(int argc, char **argv)
{
    PlanOptions o = {.limit = 100};
    int json = 0;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &o.db_path, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"runs", 0, CLI_STRING, &o.runs_dir, "DIR", "where run dirs go (default ./runs, or where the experiment was planned)"},
        {"dry-run", 'n', CLI_FLAG, &o.dry_run, NULL, "expand and render in memory; write nothing"},
        {"format", 0, CLI_STRING, &o.format, "FMT", "table (default), csv, json or markdown"},
        {"json", 0, CLI_FLAG, &json, NULL, "same as --format json"},
        {"quiet", 'q', CLI_FLAG, &o.quiet, NULL, "print only the summary line"},
        {"limit", 0, CLI_INT, &o.limit, "N", "table rows shown on a terminal (default 100, 0 = all)"},
        {0}};
    const CliCommand cmd = {
        "segx plan SPEC.json [options]",
        "Expands the spec's matrix (minus exclude, plus include) into cells, stores new cells in the\n"
        "DB (planning again adds only cells that are new) and renders each new cell's job script into\n"
        "RUNS/<experiment>/<cell-key>/attempt-1/job.sh (and eval.sh when the spec has eval.job). Prints the\n"
        "cells with their estimated GPU-hours.",
        opts, 1, 1,
        "examples:\n  segx plan examples/quickstart.json\n  segx plan spec.json --dry-run --format json"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (json) o.format = "json";
    return plan_spec_file(a.pos[0], &o, NULL, 0);
}
