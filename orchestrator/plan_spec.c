// orchestrator/plan_spec.c — a spec file planned into the DB and the run dirs (see plan_spec.h).
#include "orchestrator/plan_spec.h"
#include "orchestrator/util/paths.h"
#include "db/db.h"
#include <pthread.h>
#include <stdint.h>
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

// Where the experiment's run dirs go: --runs, else where it was planned before (read through a
// read-only open, which fails harmlessly when there is no DB yet), else ./runs.
static void resolve_run_root(const Spec *s, const PlanOptions *o, const char *dbp, char *run_root, size_t len)
{
    char buf[PATH_MAX], err[2048];
    if (o->runs_dir) {
        absolute(o->runs_dir, buf, sizeof buf);
        snprintf(run_root, len, "%s/%s", buf, s->name);
        return;
    }
    sqlite3 *db;
    int have = 0;
    if (db_open(dbp, DB_READONLY, &db, err, sizeof err) == 0) {
        have = stored_run_root(db, s->name, run_root, len) != NULL;
        db_close(db);
    }
    if (!have) {
        absolute("runs", buf, sizeof buf);
        snprintf(run_root, len, "%s/%s", buf, s->name);
    }
}

// --dry-run: every cell counts as new, on attempt 1.
static void mark_new(PlanOutcome *P)
{
    for (size_t i = 0; i < P->n; i++) P->cells[i].next_attempt = P->cells[i].is_new = 1;
}

// Renders cell i's attempt-1 job script (and eval script) in memory and drops them: the check
// that it renders. 0, or -1 with err.
static int render_check(PlanRenderer *r, const PlanOutcome *P, size_t i, char *err, size_t errlen)
{
    char *script, rd[3 * PATH_MAX];
    snprintf(rd, sizeof rd, "%s/%s/attempt-1", P->run_root, P->cells[i].key);
    if (plan_render_text(r, &P->cells[i], 1, rd, &script, err, errlen) < 0) return -1;
    free(script);
    if (!plan_has_eval(r)) return 0;
    if (plan_render_eval_text(r, &P->cells[i], 1, rd, &script, err, errlen) < 0) return -1;
    free(script);
    return 0;
}

// --dry-run: every cell rendered in memory so a bad cell is reported; nothing written. 0, or 2.
static int render_only(PlanRenderer *r, PlanOutcome *P, char *err, size_t errlen)
{
    for (size_t i = 0; i < P->n; i++) {
        P->cells[i].next_attempt = 1;
        if (render_check(r, P, i, err, errlen) < 0) return 2;
        P->cells[i].is_new = 1;
    }
    return 0;
}

// The signatures seen so far: an open-addressing set of malloc'd strings (FNV-1a).
typedef struct {
    char **slot;
    size_t cap, n;
} ShapeSet;

static uint64_t fnv1a(const char *p)
{
    uint64_t h = 1469598103934665603ull;
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

// 1 when sig was new (now added), 0 when seen, -1 out of memory.
static int shape_add(ShapeSet *set, const char *sig)
{
    if (2 * (set->n + 1) > set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 64;
        char **slot = calloc(cap, sizeof *slot);
        if (!slot) return -1;
        for (size_t i = 0; i < set->cap; i++) {
            if (!set->slot[i]) continue;
            size_t j = fnv1a(set->slot[i]) & (cap - 1);
            while (slot[j]) j = (j + 1) & (cap - 1);
            slot[j] = set->slot[i];
        }
        free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    size_t j = fnv1a(sig) & (set->cap - 1);
    for (; set->slot[j]; j = (j + 1) & (set->cap - 1))
        if (strcmp(set->slot[j], sig) == 0) return 0;
    if (!(set->slot[j] = strdup(sig))) return -1;
    set->n++;
    return 1;
}

static void shape_set_free(ShapeSet *set)
{
    for (size_t i = 0; i < set->cap; i++) free(set->slot[i]);
    free(set->slot);
}

// Renders the first cell of each distinct shape (plan_shape_signature), job and eval script: the
// check when the job scripts are left to submit (the others differ only in substituted words).
// A signature cut at the buffer's end is not trusted: that cell is rendered itself. 0, or 2.
static int render_shapes(PlanRenderer *r, const PlanOutcome *P, char *err, size_t errlen)
{
    enum { SIG_MAX = 16384 };
    char *sig = malloc(SIG_MAX);
    ShapeSet set = {0};
    int rc = sig ? 0 : 1;
    if (!sig) snprintf(err, errlen, "out of memory");
    for (size_t i = 0; rc == 0 && i < P->n; i++) {
        int fresh = plan_shape_signature(&P->cells[i], sig, SIG_MAX) + 1 >= SIG_MAX ? 1 : shape_add(&set, sig);
        if (fresh < 0) { snprintf(err, errlen, "out of memory"); rc = 1; }
        if (fresh > 0 && render_check(r, P, i, err, errlen) < 0) rc = 2;
    }
    shape_set_free(&set);
    free(sig);
    return rc;
}

// Store the cells without writing job scripts (submit renders each when it sends the cell), after
// checking one rendering per shape. 0, or the exit code.
static int check_store(PlanRenderer *r, PlanOutcome *P, const char *spec_abs, const char *dbp, char *err,
                       size_t errlen)
{
    int rc = render_shapes(r, P, err, errlen);
    if (rc != 0) return rc;
    sqlite3 *db = NULL;
    rc = db_open(dbp, DB_CREATE, &db, err, errlen) == 0 &&
                 plan_store(db, P->spec, spec_abs, P->run_root, P->cells, P->n, &P->added, err, errlen) == 0
             ? 0 : 1;
    db_close(db);
    return rc;
}

// Render first (bad cells are input errors and must leave the DB untouched), then store, then
// write the scripts of cells never submitted (submit renders later attempts). 0, or the exit code.
static int render_store_write(PlanRenderer *r, PlanOutcome *P, const char *spec_abs, const char *dbp, char *err,
                              size_t errlen)
{
    size_t n = P->n;
    char **scripts = calloc(n ? n : 1, sizeof *scripts), **evals = NULL;
    if (plan_has_eval(r)) evals = calloc(n ? n : 1, sizeof *evals);
    size_t budget = PLAN_SCRIPT_BUDGET;
    const char *b_env = getenv("SEGX_PLAN_SCRIPT_BUDGET");   // bytes; tests set it low
    if (b_env && *b_env) budget = (size_t)strtoull(b_env, NULL, 10);
    PlanWork work = {.r = r, .cells = P->cells, .scripts = scripts, .evals = evals, .run_root = P->run_root,
                     .budget = budget, .check = 1};
    sqlite3 *db = NULL;
    int rc = 1;
    if (!scripts || (plan_has_eval(r) && !evals)) snprintf(err, errlen, "out of memory");
    else if (plan_work2(&work, 0, n, err, errlen) < 0) rc = 2;
    else if (db_open(dbp, DB_CREATE, &db, err, errlen) == 0 &&
             plan_store(db, P->spec, spec_abs, P->run_root, P->cells, n, &P->added, err, errlen) == 0) {
        // In chunks, so at most PLAN_WRITE_CHUNK dropped scripts are rendered again at a time.
        work.check = 0;
        rc = 0;
        for (size_t start = 0; rc == 0 && start < n; start += PLAN_WRITE_CHUNK) {
            size_t end = n - start > PLAN_WRITE_CHUNK ? start + PLAN_WRITE_CHUNK : n;
            if (plan_work2(&work, start, end, err, errlen) < 0) rc = 1;
        }
    }
    db_close(db);
    for (size_t i = 0; scripts && i < n; i++) free(scripts[i]);
    free(scripts);
    for (size_t i = 0; evals && i < n; i++) free(evals[i]);
    free(evals);
    return rc;
}

int plan_spec_run(const char *spec_path, const PlanOptions *o, PlanOutcome *P, char *err, size_t errlen)
{
    memset(P, 0, sizeof *P);
    if (spec_load(spec_path, &P->spec, err, errlen) < 0) return 2;
    if (plan_expand(P->spec, &P->cells, &P->n, err, errlen) < 0) return 2;
    char spec_abs[PATH_MAX];
    absolute(spec_path, spec_abs, sizeof spec_abs);
    const char *dbp = db_path_default(o->db_path);
    // Every input error (spec, expansion, rendering: a cell that does not fit the cluster profile)
    // comes before the DB is opened read-write, so bad input never creates or changes the file.
    resolve_run_root(P->spec, o, dbp, P->run_root, sizeof P->run_root);
    PlanRenderer *r = NULL;
    if (plan_renderer_open(P->spec, paths_templates_dir(), P->run_root, &r, err, errlen) < 0) return 2;
    char warning[2 * PATH_MAX + 200];
    if (o->warn && plan_renderer_warning(r, warning, sizeof warning)) o->warn(o->warn_ctx, warning);
    P->scripts = o->scripts == PLAN_SCRIPTS_ALL || (o->scripts == PLAN_SCRIPTS_AUTO && P->n <= PLAN_SCRIPTS_AUTO_MAX);
    int rc;
    if (o->dry_run && P->scripts) rc = render_only(r, P, err, errlen);
    else if (o->dry_run) {
        mark_new(P);
        rc = render_shapes(r, P, err, errlen);
    }
    else if (P->scripts) rc = render_store_write(r, P, spec_abs, dbp, err, errlen);
    else rc = check_store(r, P, spec_abs, dbp, err, errlen);
    if (o->dry_run) P->scripts = 0;
    plan_renderer_close(r);
    return rc;
}

void plan_outcome_free(PlanOutcome *P)
{
    plan_cells_free(P->cells, P->n);
    spec_free(P->spec);
    memset(P, 0, sizeof *P);
}
