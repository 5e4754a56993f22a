// orchestrator/report.c — the standard result tables (see report.h). First version.
#include "orchestrator/report.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const kinds[] = {"cells", "accuracy", "speedup", "cost", "time-to-target", NULL};

int report_kind_valid(const char *kind)
{
    for (int i = 0; kinds[i]; i++)
        if (strcmp(kind, kinds[i]) == 0) return 1;
    return 0;
}

int report_parse_target(const char *s, char *metric, size_t mlen, double *value, char *err, size_t errlen)
{
    static const char *const metrics[] = {"miou", "pixel_acc", "top1", "val_loss", "train_loss", NULL};
    const char *eq = strchr(s, '=');
    if (!eq) { snprintf(err, errlen, "'%s': expected METRIC=VALUE, e.g. miou=0.5", s); return -1; }
    size_t n = (size_t)(eq - s);
    int ok = 0;
    for (int i = 0; metrics[i]; i++)
        if (strlen(metrics[i]) == n && strncmp(s, metrics[i], n) == 0) ok = 1;
    if (!ok) {
        snprintf(err, errlen, "'%.*s': unknown metric (expected miou, pixel_acc, top1, val_loss or train_loss)", (int)n, s);
        return -1;
    }
    char *end;
    double v = strtod(eq + 1, &end);
    if (end == eq + 1 || *end) { snprintf(err, errlen, "'%s': value is not a number", eq + 1); return -1; }
    if (n >= mlen) { snprintf(err, errlen, "metric name too long"); return -1; }
    memcpy(metric, s, n);
    metric[n] = 0;
    *value = v;
    return 0;
}

// ---- a generic renderer: SQL rows -> table, column by column --------------------------------

enum { C_PLAIN, C_KEY, C_PM, C_FIRSTLINE };
// Columns in the order of the query's result columns: one each, C_PM three (mean, std, n).
typedef struct {
    const char *name;  // header (C_PM: base name; machine formats get NAME_mean, NAME_std, NAME_n)
    int kind;
    int decimals;      // human formats
} Col;

static int col_width(const Col *c) { return c->kind == C_PM ? 3 : 1; }

static int is_human(TableFormat f) { return f == TABLE_TEXT || f == TABLE_MARKDOWN; }

// One report query and how its rows are shown.
typedef struct {
    const char *sql;
    const char *experiment;          // bound to ?1 (NULL: every experiment)
    const char *const *extra_text;   // NULL-terminated, bound to ?2, ?3, ... (NULL: none)
    const double *extra_real;        // bound after the texts' first slot: ?3, ?4, ...
    int nextra_real;
    const Col *cols;
    size_t ncols;
    const char *total_label;         // human formats: a last row with the sum of result column total_col
    int total_col;
} Query;

// The table's headers: one per column, C_PM three (NAME_mean, NAME_std, NAME_n) for machines.
static Table *new_table(const Query *q, int human)
{
    const char *headers[64] = {0};
    char names[64][64];
    int decimals[64];
    size_t nh = 0;
    for (size_t i = 0; i < q->ncols && nh + 3 <= 64; i++) {
        const Col *c = &q->cols[i];
        if (c->kind == C_PM && !human) {
            static const char *const suffix[] = {"_mean", "_std", "_n"};
            for (int k = 0; k < 3; k++) {
                snprintf(names[nh], sizeof names[nh], "%s%s", c->name, suffix[k]);
                decimals[nh] = c->decimals;
                headers[nh] = names[nh];
                nh++;
            }
        } else {
            decimals[nh] = c->decimals;
            headers[nh++] = c->name;
        }
    }
    Table *t = table_new(nh, headers);
    for (size_t i = 0; t && i < nh; i++) table_set_decimals(t, i, decimals[i]);
    return t;
}

// The statement with its parameters bound, checked against the column list. NULL with err.
static sqlite3_stmt *open_query(sqlite3 *db, const Query *q, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, q->sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "report query: %s (is this a segx database of this version?)", sqlite3_errmsg(db));
        return NULL;
    }
    if (q->experiment) sqlite3_bind_text(st, 1, q->experiment, -1, SQLITE_STATIC);
    for (int i = 0; q->extra_text && q->extra_text[i]; i++) sqlite3_bind_text(st, 2 + i, q->extra_text[i], -1, SQLITE_STATIC);
    for (int i = 0; i < q->nextra_real; i++) sqlite3_bind_double(st, 3 + i, q->extra_real[i]);
    int width = 0;
    for (size_t i = 0; i < q->ncols; i++) width += col_width(&q->cols[i]);
    if (sqlite3_column_count(st) != width) {   // a query and its column list out of step
        snprintf(err, errlen, "report query: %d result columns for %d listed", sqlite3_column_count(st), width);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

// One cell of column c (result column col) as people read it.
static void human_cell(Table *t, sqlite3_stmt *st, const Col *c, int col)
{
    int ty = sqlite3_column_type(st, col);
    char buf[96];
    if (c->kind == C_PM) {
        if (ty == SQLITE_NULL) { table_null(t); return; }
        double mean = sqlite3_column_double(st, col);
        if (sqlite3_column_type(st, col + 1) == SQLITE_NULL)
            snprintf(buf, sizeof buf, "%.*f", c->decimals, mean);
        else
            snprintf(buf, sizeof buf, "%.*f ± %.*f", c->decimals, mean, c->decimals, sqlite3_column_double(st, col + 1));
        table_text(t, buf);
    } else if (c->kind == C_KEY && ty == SQLITE_TEXT) {
        snprintf(buf, 16, "%.12s", (const char *)sqlite3_column_text(st, col));
        table_text(t, buf);
    } else if (c->kind == C_FIRSTLINE && ty == SQLITE_TEXT) {
        const char *s = (const char *)sqlite3_column_text(st, col);
        // The last line of the reason says the most (the error); keep it short.
        const char *last = strrchr(s, '\n'), *colon = strchr(s, ':');
        if (last && colon && colon < last) snprintf(buf, 80, "%.*s: %.50s", (int)(colon - s), s, last + 1);
        else snprintf(buf, 80, "%.70s", last ? last + 1 : s);
        table_text(t, buf);
    } else {
        table_sqlite(t, st, col);
    }
}

static void add_row(Table *t, sqlite3_stmt *st, const Query *q, int human)
{
    table_row(t);
    int col = 0;
    for (size_t i = 0; i < q->ncols; col += col_width(&q->cols[i]), i++) {
        if (human) human_cell(t, st, &q->cols[i], col);
        else for (int k = 0; k < col_width(&q->cols[i]); k++) table_sqlite(t, st, col + k);
    }
}

// A total row only for people: machine formats stay one row per group.
static void add_total(Table *t, const Query *q, double total, int any_total)
{
    table_row(t);
    int col = 0;
    for (size_t i = 0; i < q->ncols; col += col_width(&q->cols[i]), i++) {
        if (i == 0) table_text(t, q->total_label);
        else if (col == q->total_col && any_total) table_real(t, total);
        else table_null(t);
    }
}

static int render(sqlite3 *db, const Query *q, TableFormat fmt, FILE *out, char *err, size_t errlen)
{
    int human = is_human(fmt);
    sqlite3_stmt *st = open_query(db, q, err, errlen);
    if (!st) return -1;
    Table *t = new_table(q, human);
    if (!t) { sqlite3_finalize(st); snprintf(err, errlen, "out of memory"); return -1; }
    double total = 0;
    int any_total = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        add_row(t, st, q, human);
        if (q->total_label && sqlite3_column_type(st, q->total_col) != SQLITE_NULL) {
            total += sqlite3_column_double(st, q->total_col);
            any_total = 1;
        }
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "report query: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        table_free(t);
        return -1;
    }
    sqlite3_finalize(st);
    if (q->total_label && human && table_nrows(t) > 0) add_total(t, q, total, any_total);
    rc = table_print(t, fmt, out);
    table_free(t);
    if (rc < 0) { snprintf(err, errlen, "writing the report: %s", strerror(errno)); return -1; }
    return 0;
}

// Every report filters with ?1 = experiment name (NULL = all).
#define EXP_FILTER " (?1 IS NULL OR x.name = ?1) "

// cells, accuracy, speedup and cost are one query each, rendered column by column.
static const char cells_sql[] =
    "SELECT x.name, m.key, m.model, m.gpu_type, m.gpus, m.nodes, m.batch_per_gpu, m.global_batch, m.seed,"
    " m.state, m.attempts, m.epoch, m.miou, m.pixel_acc, m.top1, m.val_loss, m.images_per_s, m.wall_s,"
    " m.gpu_hours, (SELECT a.reason FROM attempts a WHERE a.cell_id = m.cell_id ORDER BY a.attempt DESC LIMIT 1)"
    " FROM cell_metrics m JOIN experiments x ON x.id = m.experiment_id WHERE" EXP_FILTER
    " ORDER BY x.name, m.model, m.gpu_type, m.gpus, m.batch_per_gpu, m.global_batch, m.seed, m.key";
static const Col cells_cols[] = {
    {"experiment", C_PLAIN, 0}, {"cell", C_KEY, 0}, {"model", C_PLAIN, 0},
    {"gpu_type", C_PLAIN, 0}, {"gpus", C_PLAIN, 0}, {"nodes", C_PLAIN, 0},
    {"batch_per_gpu", C_PLAIN, 0}, {"global_batch", C_PLAIN, 0}, {"seed", C_PLAIN, 0},
    {"state", C_PLAIN, 0}, {"attempts", C_PLAIN, 0}, {"epoch", C_PLAIN, 0},
    {"miou", C_PLAIN, 4}, {"pixel_acc", C_PLAIN, 4}, {"top1", C_PLAIN, 4},
    {"val_loss", C_PLAIN, 4}, {"images_per_s", C_PLAIN, 1}, {"wall_s", C_PLAIN, 1},
    {"gpu_hours", C_PLAIN, 3}, {"reason", C_FIRSTLINE, 0},
};

static const char accuracy_sql[] =
    "SELECT x.name, g.model, g.gpu_type, g.gpus, g.nodes, g.batch_per_gpu, g.global_batch, g.optimizer, g.lr,"
    " g.cells, g.n,"
    " g.miou_mean, g.miou_std, g.miou_n, g.pixel_acc_mean, g.pixel_acc_std, g.pixel_acc_n,"
    " g.top1_mean, g.top1_std, g.top1_n, g.val_loss_mean, g.val_loss_std, g.val_loss_n"
    " FROM group_metrics g JOIN experiments x ON x.id = g.experiment_id WHERE" EXP_FILTER
    " ORDER BY x.name, g.model, g.gpu_type, g.gpus, g.batch_per_gpu, g.global_batch, g.optimizer, g.lr, g.group_key";
static const Col accuracy_cols[] = {
    {"experiment", C_PLAIN, 0}, {"model", C_PLAIN, 0}, {"gpu_type", C_PLAIN, 0},
    {"gpus", C_PLAIN, 0}, {"nodes", C_PLAIN, 0}, {"batch_per_gpu", C_PLAIN, 0},
    {"global_batch", C_PLAIN, 0}, {"optimizer", C_PLAIN, 0}, {"lr", C_PLAIN, 5},
    {"cells", C_PLAIN, 0}, {"n", C_PLAIN, 0}, {"miou", C_PM, 4}, {"pixel_acc", C_PM, 4},
    {"top1", C_PM, 4}, {"val_loss", C_PM, 4},
};

static const char speedup_sql[] =
    "SELECT x.name, s.model, s.gpu_type, s.scaling, s.batch_per_gpu, s.global_batch, s.gpus, s.nodes, s.n,"
    " s.images_per_s, s.speedup_throughput, s.efficiency_throughput, s.epoch_s, s.speedup_time, s.efficiency_time"
    " FROM scaling s JOIN experiments x ON x.id = s.experiment_id WHERE" EXP_FILTER
    " ORDER BY x.name, s.model, s.gpu_type, s.scaling,"
    " CASE WHEN s.scaling = 'strong' THEN s.global_batch ELSE s.batch_per_gpu END, s.scaling_key, s.gpus, s.nodes, s.group_key";
static const Col speedup_cols[] = {
    {"experiment", C_PLAIN, 0}, {"model", C_PLAIN, 0}, {"gpu_type", C_PLAIN, 0},
    {"scaling", C_PLAIN, 0}, {"batch_per_gpu", C_PLAIN, 0}, {"global_batch", C_PLAIN, 0},
    {"gpus", C_PLAIN, 0}, {"nodes", C_PLAIN, 0}, {"n", C_PLAIN, 0},
    {"images_per_s", C_PLAIN, 1}, {"speedup_throughput", C_PLAIN, 2},
    {"efficiency_throughput", C_PLAIN, 3}, {"epoch_s", C_PLAIN, 2},
    {"speedup_time", C_PLAIN, 2}, {"efficiency_time", C_PLAIN, 3},
};

// Same numbers as group_metrics (cells, completed, attempts, gpu_hours, est_gpu_hours) without
// computing every metric: attempt_times per cell, then cells grouped.
static const char cost_sql[] =
    "WITH cc AS (SELECT cell_id, COUNT(*) AS attempts, SUM(gpu_hours) AS gpu_hours FROM attempt_times GROUP BY cell_id),"
    " g AS (SELECT c.experiment_id, c.group_key, MIN(c.model) AS model, MIN(c.gpu_type) AS gpu_type,"
    " MIN(c.gpus) AS gpus, MIN(c.batch_per_gpu) AS batch_per_gpu, MIN(c.global_batch) AS global_batch,"
    " COUNT(*) AS cells, COUNT(CASE WHEN c.state = 'completed' THEN 1 END) AS completed,"
    " SUM(COALESCE(cc.attempts, 0)) AS attempts, SUM(cc.gpu_hours) AS gpu_hours, SUM(c.est_gpu_hours) AS est_gpu_hours"
    " FROM cells c LEFT JOIN cc ON cc.cell_id = c.id GROUP BY c.experiment_id, c.group_key)"
    "SELECT x.name, g.model, g.gpu_type, g.gpus, g.batch_per_gpu, g.global_batch, g.cells, g.completed,"
    " g.attempts, g.gpu_hours, g.est_gpu_hours"
    " FROM g JOIN experiments x ON x.id = g.experiment_id WHERE" EXP_FILTER
    " ORDER BY x.name, g.model, g.gpu_type, g.gpus, g.batch_per_gpu, g.global_batch, g.group_key";
static const Col cost_cols[] = {
    {"experiment", C_PLAIN, 0}, {"model", C_PLAIN, 0}, {"gpu_type", C_PLAIN, 0},
    {"gpus", C_PLAIN, 0}, {"batch_per_gpu", C_PLAIN, 0}, {"global_batch", C_PLAIN, 0},
    {"cells", C_PLAIN, 0}, {"completed", C_PLAIN, 0}, {"attempts", C_PLAIN, 0},
    {"gpu_hours", C_PLAIN, 3}, {"est_gpu_hours", C_PLAIN, 3},
};

#define COLS(a) a, sizeof a / sizeof a[0]
static const struct {
    const char *kind, *sql;
    const Col *cols;
    size_t ncols;
    const char *total_label;   // human formats: a last row with the sum of column total_col
    int total_col;
} simple_reports[] = {
    {"cells", cells_sql, COLS(cells_cols), NULL, 0},
    {"accuracy", accuracy_sql, COLS(accuracy_cols), NULL, 0},
    {"speedup", speedup_sql, COLS(speedup_cols), NULL, 0},
    {"cost", cost_sql, COLS(cost_cols), "total", 9},
};

// The group-level time-to-target query over a targets relation named tt_targets; the view
// group_time_to_target is the same query over the targets table.
static const Col ttt_cols[] = {
    {"experiment", C_PLAIN, 0}, {"model", C_PLAIN, 0}, {"gpu_type", C_PLAIN, 0},
    {"gpus", C_PLAIN, 0}, {"batch_per_gpu", C_PLAIN, 0}, {"global_batch", C_PLAIN, 0},
    {"metric", C_PLAIN, 0}, {"target", C_PLAIN, 4}, {"cells", C_PLAIN, 0},
    {"reached", C_PLAIN, 0}, {"wall_s_mean", C_PLAIN, 1}, {"wall_s_std", C_PLAIN, 1},
    {"wall_s_min", C_PLAIN, 1},
};
#define TTT_SELECT                                                                                    \
    "SELECT x.name, g.model, g.gpu_type, g.gpus, g.batch_per_gpu, g.global_batch, t.metric, t.target," \
    " t.cells, t.reached, t.wall_s_mean, t.wall_s_std, t.wall_s_min"
// The groups' parameters, straight from cells (group_metrics would compute every metric too).
#define TTT_GROUPS                                                                                        \
    " JOIN (SELECT experiment_id, group_key, MIN(model) AS model, MIN(gpu_type) AS gpu_type, MIN(gpus) AS gpus," \
    " MIN(batch_per_gpu) AS batch_per_gpu, MIN(global_batch) AS global_batch FROM cells"                    \
    " GROUP BY experiment_id, group_key) g ON g.experiment_id = t.experiment_id AND g.group_key = t.group_key"
#define TTT_ORDER " ORDER BY x.name, g.model, g.gpu_type, g.gpus, g.batch_per_gpu, g.global_batch, t.metric, g.group_key"

static int report_time_to_target(sqlite3 *db, const ReportOptions *o, FILE *out, char *err, size_t errlen)
{
    if (!o->target) {
        sqlite3_stmt *q;
        int ntargets = 0;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM targets t JOIN experiments x ON x.id = t.experiment_id"
                               " WHERE" EXP_FILTER, -1, &q, NULL) == SQLITE_OK) {
            if (o->experiment) sqlite3_bind_text(q, 1, o->experiment, -1, SQLITE_STATIC);
            if (sqlite3_step(q) == SQLITE_ROW) ntargets = sqlite3_column_int(q, 0);
            sqlite3_finalize(q);
        }
        if (ntargets == 0) {
            snprintf(err, errlen, "no targets: pass --target METRIC=VALUE (e.g. miou=0.5), or set eval.targets in "
                                  "the spec and run `segx collect`");
            return -2;
        }
        static const char sql[] =
            TTT_SELECT " FROM group_time_to_target t JOIN experiments x ON x.id = t.experiment_id"
            TTT_GROUPS
            " WHERE" EXP_FILTER TTT_ORDER;
        Query all = {.sql = sql, .experiment = o->experiment, .cols = ttt_cols, .ncols = sizeof ttt_cols / sizeof ttt_cols[0]};
        return render(db, &all, o->format, out, err, errlen);
    }
    char metric[32];
    double value;
    if (report_parse_target(o->target, metric, sizeof metric, &value, err, errlen) < 0) return -2;
    // The metric names a column from a fixed list (checked above), so it is not user text in SQL.
    const char *op = strcmp(metric, "val_loss") == 0 || strcmp(metric, "train_loss") == 0 ? "<=" : ">=";
    char sql[4096];
    snprintf(sql, sizeof sql,
             "WITH at AS MATERIALIZED (SELECT attempt_id, cell_id, offset_s FROM attempt_times),"
             " tt AS MATERIALIZED (SELECT experiment_id, cell_id, group_key, metric, target, MIN(w) AS wall_s FROM ("
             " SELECT c.experiment_id, c.id AS cell_id, c.group_key, ?2 AS metric, ?3 AS target,"
             " at.offset_s + (SELECT MIN(e.wall_s) FROM epochs e WHERE e.attempt_id = at.attempt_id AND e.%s %s ?3) AS w"
             " FROM cells c JOIN experiments x ON x.id = c.experiment_id LEFT JOIN at ON at.cell_id = c.id"
             " WHERE" EXP_FILTER ") GROUP BY cell_id),"
             " m AS (SELECT experiment_id, group_key, AVG(wall_s) AS mean_s FROM tt GROUP BY 1, 2),"
             " t AS (SELECT tt.experiment_id, tt.group_key, MIN(tt.metric) AS metric, MIN(tt.target) AS target,"
             " COUNT(*) AS cells, COUNT(tt.wall_s) AS reached, m.mean_s AS wall_s_mean,"
             " sqrt(SUM((tt.wall_s - m.mean_s) * (tt.wall_s - m.mean_s)) / (COUNT(tt.wall_s) - 1)) AS wall_s_std,"
             " MIN(tt.wall_s) AS wall_s_min FROM tt JOIN m ON m.experiment_id = tt.experiment_id"
             " AND m.group_key = tt.group_key GROUP BY tt.experiment_id, tt.group_key)"
             TTT_SELECT " FROM t JOIN experiments x ON x.id = t.experiment_id"
             TTT_GROUPS TTT_ORDER,
             metric, op);
    const char *texts[] = {metric, NULL};
    Query q = {.sql = sql, .experiment = o->experiment, .extra_text = texts, .extra_real = &value, .nextra_real = 1,
               .cols = ttt_cols, .ncols = sizeof ttt_cols / sizeof ttt_cols[0]};
    return render(db, &q, o->format, out, err, errlen);
}

// ---- speedup: throughput measured on shared cores ------------------------------------------
// The local backend runs jobs side by side when their core claims fit (local_jobs.h), and other
// local jobs' processes (loader threads, memory bandwidth, the agent itself) then slow a cell
// down: its images/s, and every speedup computed from it, are contended. The DB keeps each
// attempt's backend, host (attempts.nodes) and start/end time, so such overlaps can be found.

#define CONTENTION_MIN_S 1.0   // shorter overlaps are start/end jitter, not a measurement effect

typedef struct {
    char host[256], key[16];
    double t0, t1;
    int gpus;
    int eval;           // an eval job of that cell, not its training
    int group;          // its scaling group (index), -1: not measured or not in the report
    double overlap;     // longest time it ran beside another local job on its host
    int partner;        // that job
} LocalRun;

typedef struct {
    char exp[128], scaling_key[96], label[256];
    int measured, contended, worst;   // worst: the run with the longest overlap
} ScalingGroup;

static int group_index(ScalingGroup **g, size_t *n, size_t *cap, sqlite3_stmt *st)
{
    const char *exp = (const char *)sqlite3_column_text(st, 5), *sk = (const char *)sqlite3_column_text(st, 6);
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*g)[i].exp, exp ? exp : "") == 0 && strcmp((*g)[i].scaling_key, sk ? sk : "") == 0) return (int)i;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ScalingGroup *ng = realloc(*g, nc * sizeof *ng);
        if (!ng) return -1;
        *g = ng;
        *cap = nc;
    }
    ScalingGroup *x = &(*g)[*n];
    memset(x, 0, sizeof *x);
    snprintf(x->exp, sizeof x->exp, "%s", exp ? exp : "");
    snprintf(x->scaling_key, sizeof x->scaling_key, "%s", sk ? sk : "");
    const char *scaling = (const char *)sqlite3_column_text(st, 9);
    int strong = scaling && strcmp(scaling, "strong") == 0;
    snprintf(x->label, sizeof x->label, "%s: %s on %s (%s, %s %d)", x->exp,
             sqlite3_column_text(st, 7) ? (const char *)sqlite3_column_text(st, 7) : "?",
             sqlite3_column_text(st, 8) ? (const char *)sqlite3_column_text(st, 8) : "?", scaling ? scaling : "weak",
             strong ? "global_batch" : "batch_per_gpu", sqlite3_column_int(st, strong ? 11 : 10));
    return (int)(*n)++;
}

// The local jobs (train attempts, eval jobs) with a host and a start, sorted by host, then start.
typedef struct {
    LocalRun *r;
    size_t n, cap;
    ScalingGroup *g;
    size_t ng, gcap;
} Contention;

// Reads the local jobs into C. 0, or -1 with err.
static int load_local_runs(sqlite3 *db, const ReportOptions *o, Contention *C, char *err, size_t errlen)
{
    // Train attempts, then (where the DB has them) eval jobs: they take cores too, but measure nothing.
    static const char train_sql[] =
        "SELECT a.nodes, a.start_time, COALESCE(NULLIF(a.end_time, 0), CASE WHEN a.state = 'running' THEN ?2 END),"
        " c.key, c.gpus, x.name, c.scaling_key, c.model, c.gpu_type, c.scaling, c.batch_per_gpu, c.global_batch,"
        " (?1 IS NULL OR x.name = ?1) AND EXISTS (SELECT 1 FROM epochs e WHERE e.attempt_id = a.id"
        "  AND (e.images_per_s IS NOT NULL OR e.epoch_s IS NOT NULL)), 0"
        " FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id"
        " WHERE a.backend = 'local' AND a.start_time > 0 AND COALESCE(a.nodes, '') <> ''";
    static const char eval_sql[] =
        " UNION ALL SELECT v.nodes, v.start_time, COALESCE(NULLIF(v.end_time, 0), CASE WHEN v.state = 'running' THEN ?2 END),"
        " c.key, c.gpus, x.name, c.scaling_key, c.model, c.gpu_type, c.scaling, c.batch_per_gpu, c.global_batch, 0, 1"
        " FROM eval_jobs v JOIN attempts a ON a.id = v.attempt_id JOIN cells c ON c.id = a.cell_id"
        " JOIN experiments x ON x.id = c.experiment_id"
        " WHERE v.backend = 'local' AND v.start_time > 0 AND COALESCE(v.nodes, '') <> ''";
    int has_eval = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'eval_jobs'", -1, &st,
                           NULL) == SQLITE_OK) {
        has_eval = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    char sql[sizeof train_sql + sizeof eval_sql + 32];
    snprintf(sql, sizeof sql, "%s%s ORDER BY 1, 2", train_sql, has_eval ? eval_sql : "");
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "report query (overlapping local jobs): %s", sqlite3_errmsg(db));
        return -1;
    }
    if (o->experiment) sqlite3_bind_text(st, 1, o->experiment, -1, SQLITE_STATIC);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sqlite3_bind_double(st, 2, (double)now.tv_sec);
    int rc, status = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 2) == SQLITE_NULL) continue;   // ended, end unknown
        if (C->n == C->cap) {
            size_t nc = C->cap ? C->cap * 2 : 64;
            LocalRun *nr = realloc(C->r, nc * sizeof *nr);
            if (!nr) { status = -1; break; }
            C->r = nr;
            C->cap = nc;
        }
        LocalRun *x = &C->r[C->n];
        memset(x, 0, sizeof *x);
        snprintf(x->host, sizeof x->host, "%s", (const char *)sqlite3_column_text(st, 0));
        x->t0 = sqlite3_column_double(st, 1);
        x->t1 = sqlite3_column_double(st, 2);
        snprintf(x->key, sizeof x->key, "%.8s", sqlite3_column_text(st, 3) ? (const char *)sqlite3_column_text(st, 3) : "?");
        x->gpus = sqlite3_column_int(st, 4);
        x->eval = sqlite3_column_int(st, 13);
        x->group = sqlite3_column_int(st, 12) ? group_index(&C->g, &C->ng, &C->gcap, st) : -1;
        x->partner = -1;
        if (sqlite3_column_int(st, 12) && x->group < 0) { status = -1; break; }
        C->n++;
    }
    if (status == 0 && rc != SQLITE_DONE) snprintf(err, errlen, "report query (overlapping local jobs): %s", sqlite3_errmsg(db));
    else if (status < 0) snprintf(err, errlen, "out of memory");
    sqlite3_finalize(st);
    return status == 0 && rc != SQLITE_DONE ? -1 : status;
}

// Each run's longest overlap with another on its host, and per group how many measured runs had one.
static void find_overlaps(Contention *C)
{
    LocalRun *r = C->r;
    // Sorted by host, then start: the jobs that overlap run i are the ones right after it that
    // started before it ended.
    for (size_t i = 0; i < C->n; i++) {
        for (size_t j = i + 1; j < C->n && strcmp(r[j].host, r[i].host) == 0 && r[j].t0 < r[i].t1; j++) {
            double ov = (r[j].t1 < r[i].t1 ? r[j].t1 : r[i].t1) - r[j].t0;
            if (ov < CONTENTION_MIN_S) continue;
            if (ov > r[i].overlap) { r[i].overlap = ov; r[i].partner = (int)j; }
            if (ov > r[j].overlap) { r[j].overlap = ov; r[j].partner = (int)i; }
        }
    }
    for (size_t i = 0; i < C->n; i++) {
        if (r[i].group < 0) continue;
        ScalingGroup *x = &C->g[r[i].group];
        x->measured++;
        if (r[i].partner < 0) continue;
        if (x->contended++ == 0 || r[i].overlap > r[x->worst].overlap) x->worst = (int)i;
    }
}

// Writes one warning per scaling group of the report whose measured attempts (those with
// images/s or epoch_s) ran at the same time as another local job on the same host.
static int warn_contention(sqlite3 *db, const ReportOptions *o, char *err, size_t errlen)
{
    Contention C = {0};
    int status = load_local_runs(db, o, &C, err, errlen);
    if (status == 0) find_overlaps(&C);
    FILE *w = o->warn ? o->warn : stderr;
    int warned = 0;
    for (size_t k = 0; status == 0 && k < C.ng; k++) {
        const ScalingGroup *x = &C.g[k];
        if (!x->contended) continue;
        const LocalRun *a = &C.r[x->worst], *b = &C.r[a->partner];
        char beside[96];
        if (b->eval) snprintf(beside, sizeof beside, "the eval job of cell %s", b->key);
        else snprintf(beside, sizeof beside, "cell %s, %d GPU%s", b->key, b->gpus, b->gpus == 1 ? "" : "s");
        fprintf(w, "warning: %s: %d of %d measured attempts ran beside other local jobs on %s (longest: cell %s, "
                   "%d GPU%s, beside %s, for %.1f s): their images/s and epoch_s were measured on shared cores\n",
                x->label, x->contended, x->measured, a->host, a->key, a->gpus, a->gpus == 1 ? "" : "s", beside,
                a->overlap);
        warned = 1;
    }
    if (warned)
        fprintf(w, "  speedup and efficiency from contended attempts are skewed; for clean timings run the study "
                   "with --max-parallel 1 (one job at a time)\n");
    free(C.r);
    free(C.g);
    return status;
}

int report_print(sqlite3 *db, const char *kind, const ReportOptions *opts, FILE *out, char *err, size_t errlen)
{
    ReportOptions o = opts ? *opts : (ReportOptions){0};
    if (!report_kind_valid(kind)) {
        snprintf(err, errlen, "unknown report '%s': expected cells, accuracy, speedup, cost or time-to-target", kind);
        return -2;
    }
    if (o.target && strcmp(kind, "time-to-target") != 0) {
        snprintf(err, errlen, "--target applies to `segx report time-to-target`, not '%s'", kind);
        return -2;
    }
    if (o.experiment) {
        sqlite3_stmt *q;
        int found = 0;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM experiments WHERE name = ?1", -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, o.experiment, -1, SQLITE_STATIC);
            found = sqlite3_step(q) == SQLITE_ROW;
            sqlite3_finalize(q);
        }
        if (!found) {
            snprintf(err, errlen, "--experiment '%s': no such experiment in the database", o.experiment);
            return -2;
        }
    }
    o.format = table_format_resolve(o.format, out);
    for (size_t i = 0; i < sizeof simple_reports / sizeof simple_reports[0]; i++) {
        if (strcmp(kind, simple_reports[i].kind) != 0) continue;
        Query q = {.sql = simple_reports[i].sql, .experiment = o.experiment, .cols = simple_reports[i].cols,
                   .ncols = simple_reports[i].ncols, .total_label = simple_reports[i].total_label,
                   .total_col = simple_reports[i].total_col};
        int rc = render(db, &q, o.format, out, err, errlen);
        if (rc == 0 && strcmp(kind, "speedup") == 0) rc = warn_contention(db, &o, err, errlen);
        return rc;
    }
    return report_time_to_target(db, &o, out, err, errlen);
}

int report_json(sqlite3 *db, const char *kind, const ReportOptions *opts, char **json, size_t *len, char *err,
                size_t errlen)
{
    *json = NULL;
    *len = 0;
    ReportOptions o = opts ? *opts : (ReportOptions){0};
    o.format = TABLE_JSON;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = report_print(db, kind, &o, f, err, errlen);
    if (fclose(f) != 0 && rc == 0) { snprintf(err, errlen, "out of memory"); rc = -1; }
    if (rc < 0) { free(buf); return rc; }
    *json = buf;
    *len = n;
    return 0;
}
