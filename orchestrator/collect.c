// orchestrator/collect.c — run dirs -> DB (see collect.h for the contract).
#include "orchestrator/util/clock.h"
#include "orchestrator/util/jscan.h"
#include "orchestrator/util/strbuf.h"
#include "orchestrator/collect.h"
#include "orchestrator/accounting.h"
#include "orchestrator/collect_trace.h"
#include "db/db.h"
#include "orchestrator/runfile.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ---- small helpers -----------------------------------------------------------------------

// States the backend has not settled: collect may set them from the run dir's exit_code.
static int state_is_open(const char *s) { return !s || job_state_name_in(s, JOB_SET_OPEN); }

// Ended without a result: collect notes why (the exit code and stderr's last lines).
static int state_is_failure(const char *s) { return s && job_state_name_in(s, JOB_SET_UNSUCCESSFUL); }

// ---- context -------------------------------------------------------------------------------

enum {
    S_EPOCH, S_EPOCH_NEW, S_EPOCH_ID, S_DEL_IOU_LINE, S_MAX_LINE, S_IOU, S_DEL_IOU_FROM, S_RESULT, S_HAS_RESULT,
    S_ENV, S_HAS_ENV, S_ATTEMPT_FILES, S_RUN_S, S_ATTEMPT_STATE, S_HAS_EPOCHS, S_SIG_NOW, S_LAST_EPOCH, S_TRACE_CELL,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_EPOCH] =
        "INSERT INTO epochs (attempt_id, line, epoch, step, wall_s, train_loss, val_loss, miou, pixel_acc,"
        " top1, lr, images_per_s, epoch_s, data_s, compute_s, comm_s, extra)"
        " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"
        " ON CONFLICT (attempt_id, line) DO UPDATE SET epoch=excluded.epoch, step=excluded.step,"
        " wall_s=excluded.wall_s, train_loss=excluded.train_loss, val_loss=excluded.val_loss,"
        " miou=excluded.miou, pixel_acc=excluded.pixel_acc, top1=excluded.top1, lr=excluded.lr,"
        " images_per_s=excluded.images_per_s, epoch_s=excluded.epoch_s, data_s=excluded.data_s,"
        " compute_s=excluded.compute_s, comm_s=excluded.comm_s, extra=excluded.extra",
    // For an attempt with no rows yet: a plain insert (cheaper than the upsert).
    [S_EPOCH_NEW] =
        "INSERT INTO epochs (attempt_id, line, epoch, step, wall_s, train_loss, val_loss, miou, pixel_acc,"
        " top1, lr, images_per_s, epoch_s, data_s, compute_s, comm_s, extra)"
        " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
    [S_EPOCH_ID] = "SELECT id FROM epochs WHERE attempt_id = ?1 AND line = ?2",
    [S_DEL_IOU_LINE] = "DELETE FROM class_iou WHERE epoch_id = (SELECT id FROM epochs WHERE attempt_id = ?1 AND line = ?2)",
    [S_MAX_LINE] = "SELECT max(line), count(*) FROM epochs WHERE attempt_id = ?1",
    [S_IOU] = "INSERT INTO class_iou (epoch_id, class, iou) VALUES (?1, ?2, ?3)"
              " ON CONFLICT (epoch_id, class) DO UPDATE SET iou = excluded.iou",
    [S_DEL_IOU_FROM] = "DELETE FROM class_iou WHERE epoch_id = ?1 AND class >= ?2",
    [S_RESULT] = "INSERT INTO results (attempt_id, images_per_s, wall_s, miou, pixel_acc, top1, val_loss, json)"
                 " VALUES (?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT (attempt_id) DO UPDATE SET"
                 " images_per_s=excluded.images_per_s, wall_s=excluded.wall_s, miou=excluded.miou,"
                 " pixel_acc=excluded.pixel_acc, top1=excluded.top1, val_loss=excluded.val_loss, json=excluded.json",
    [S_HAS_RESULT] = "SELECT 1 FROM results WHERE attempt_id = ?1",
    [S_ENV] = "INSERT INTO environments (attempt_id, host, gpu_model, driver, cuda, cudnn, nccl,"
              " container_digest, git_commit, json) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
              " ON CONFLICT (attempt_id) DO UPDATE SET host=excluded.host, gpu_model=excluded.gpu_model,"
              " driver=excluded.driver, cuda=excluded.cuda, cudnn=excluded.cudnn, nccl=excluded.nccl,"
              " container_digest=excluded.container_digest, git_commit=excluded.git_commit, json=excluded.json",
    [S_HAS_ENV] = "SELECT 1 FROM environments WHERE attempt_id = ?1",
    [S_ATTEMPT_FILES] = "UPDATE attempts SET ingest_sig = ?2, collected_at = ?3 WHERE id = ?1",
    // status shows a collected attempt's progress from it (no epochs lookup per cell)
    [S_LAST_EPOCH] = "UPDATE attempts SET last_epoch = (SELECT epoch FROM epochs WHERE attempt_id = ?1 AND epoch IS NOT NULL"
                     " ORDER BY line DESC LIMIT 1) WHERE id = ?1",
    [S_RUN_S] = "UPDATE attempts SET run_s = ?2 WHERE id = ?1 AND run_s IS NOT ?2",
    [S_HAS_EPOCHS] = "SELECT 1 FROM epochs WHERE attempt_id = ?1 LIMIT 1",
    [S_SIG_NOW] = "SELECT ingest_sig FROM attempts WHERE id = ?1",
    [S_ATTEMPT_STATE] = "UPDATE attempts SET state = ?2, exit_code = ?3, reason = ?4 WHERE id = ?1"
                        " AND (state IS NOT ?2 OR exit_code IS NOT ?3 OR reason IS NOT ?4)",
    [S_TRACE_CELL] = COLLECT_TRACE_CELL_SQL,   // prepared once, not once per attempt
};

typedef struct {
    sqlite3 *db;
    FILE *warn;
    int force, stderr_lines;
    double now;
    CollectStats *st;
    int kept;            // this attempt: a source was gone or unreadable, its stored rows kept
    struct Pre *pre;     // this attempt's files, read before the write transaction (or NULL)
    const char *pre_dir; // ... and its run dir
    size_t batch_bytes;  // PRE_BATCH_BYTES, or SEGX_COLLECT_BATCH_BYTES (tests set it low)
    sqlite3_stmt *s[S_COUNT];
    struct Rows *rows;   // epochs rows of an attempt's first ingest, not yet inserted
    char *err;
    size_t errlen;
} Ctx;

// ---- an attempt's files, read before the write transaction --------------------------------
// collect reads and fingerprints a batch of attempts with no transaction open (a slow or purged
// file system, a FIFO, a big file never holds the write lock), then writes the batch in one short
// transaction from memory. The ingest functions below take their bytes from here when c->pre is
// set (same warnings, same rows); a file too big to hold (> PRE_FILE_MAX) is read as before, while
// writing.

enum { PF_METRICS, PF_RESULT, PF_ENV, PF_RUNS, PF_EXIT, PF_COUNT };
static const char *const pf_names[PF_COUNT] = {"metrics.jsonl", "result.json", "env.json", "runs.tsv", "exit_code"};
#define PRE_FILE_MAX (64u << 20)     // one metrics.jsonl or runs.tsv held in memory at most
#define PRE_BATCH_BYTES (16u << 20)  // a write transaction's worth of file bytes

struct PreFile {
    int have;        // read before the transaction (else the ingest reads the file itself)
    int rc;          // runfile_read: 0 read, 1 absent, -1 not read (why)
    int used;        // handed out once; later reads go to the disk
    char *text, *why;
    size_t len;
};

struct Pre {
    int st_rc, st_errno, is_dir;   // stat of the run dir
    char *sig;                     // dir_signature, or NULL
    int have_tail;                 // tail computed (the attempt looked like a failure)
    char *tail;
    size_t bytes;
    struct PreFile f[PF_COUNT];
};

static void pre_free(struct Pre *p)
{
    free(p->sig);
    free(p->tail);
    for (int i = 0; i < PF_COUNT; i++) { free(p->f[i].text); free(p->f[i].why); }
    memset(p, 0, sizeof *p);
}

// The prefetched file at path (RUN_DIR/NAME of the attempt being written), or NULL: read it.
static struct PreFile *pre_file(Ctx *c, const char *path)
{
    if (!c->pre || !c->pre_dir) return NULL;
    size_t dl = strlen(c->pre_dir);
    if (strncmp(path, c->pre_dir, dl) != 0 || path[dl] != '/') return NULL;
    for (int i = 0; i < PF_COUNT; i++) {
        struct PreFile *pf = &c->pre->f[i];
        if (strcmp(path + dl + 1, pf_names[i]) == 0) return pf->have && !pf->used ? pf : NULL;
    }
    return NULL;
}

// A copy of a prefetched small file, as runfile_read gives it.
static int pre_take_small(struct PreFile *pf, char **text, size_t *len, const char **why)
{
    pf->used = 1;
    *text = NULL;
    *len = 0;
    *why = pf->why ? pf->why : "";
    if (pf->rc != 0) return pf->rc;
    *text = malloc(pf->len + 1);
    if (!*text) { *why = "out of memory"; return -1; }
    memcpy(*text, pf->text, pf->len + 1);
    *len = pf->len;
    return 0;
}

// runfile_lines_open, or the same lines from the prefetched bytes.
static int open_lines(Ctx *c, const char *path, size_t max_line, RunLines **r, char *e, size_t elen)
{
    struct PreFile *pf = pre_file(c, path);
    if (!pf) return runfile_lines_open(path, max_line, r, e, elen);
    pf->used = 1;
    if (pf->rc != 0) {
        if (pf->rc < 0) snprintf(e, elen, "%s", pf->why ? pf->why : path);
        return pf->rc;
    }
    char *buf = pf->text;
    pf->text = NULL;
    return runfile_lines_mem(path, buf, pf->len, max_line, r, e, elen);
}

static void warnf(Ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("segx collect: warning: ", c->warn);
    vfprintf(c->warn, fmt, ap);
    fputc('\n', c->warn);
    va_end(ap);
    c->st->warnings++;
}

static int sql_fail(Ctx *c, const char *what)
{
    snprintf(c->err, c->errlen, "%s: %s", what, sqlite3_errmsg(c->db));
    return -1;
}

// Runs a prepared statement that returns no rows (bindings already made), then resets it.
static int run_stmt(Ctx *c, int which)
{
    sqlite3_stmt *s = c->s[which];
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sql_fail(c, "writing the database");
    return 0;
}

// A small run-dir file (JSON, exit code) whole: 0, 1 absent, -1 unreadable / not a regular file /
// too large (warned, naming the path).
static struct PreFile *pre_file(Ctx *c, const char *path);
static int pre_take_small(struct PreFile *pf, char **text, size_t *len, const char **why);

static int read_small(Ctx *c, const char *path, char **text, size_t *len)
{
    struct PreFile *pf = pre_file(c, path);
    if (pf) {
        const char *why;
        int rr = pre_take_small(pf, text, len, &why);
        if (rr < 0) warnf(c, "%s", why);
        return rr;
    }
    char e[4400];
    int rr = runfile_read(path, RUNFILE_MAX_JSON, text, len, e, sizeof e);
    if (rr < 0) warnf(c, "%s", e);
    return rr;
}

// 1 when the one-row query `which` (bound to attempt_id) finds a row.
static int stmt_has(Ctx *c, int which, sqlite3_int64 attempt_id)
{
    sqlite3_stmt *s = c->s[which];
    sqlite3_bind_int64(s, 1, attempt_id);
    int has = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return has;
}

// ---- metrics.jsonl -------------------------------------------------------------------------

// Known keys and their epochs columns (bind index); is_int for INTEGER columns.
#define COL(name, bind, is_int) {name, sizeof name - 1, bind, is_int}
static const struct { const char *key; size_t len; int bind; int is_int; } metric_cols[] = {
    COL("epoch", 3, 1), COL("step", 4, 1), COL("wall_s", 5, 0), COL("train_loss", 6, 0), COL("val_loss", 7, 0),
    COL("miou", 8, 0), COL("pixel_acc", 9, 0), COL("top1", 10, 0), COL("lr", 11, 0), COL("images_per_s", 12, 0),
    COL("epoch_s", 13, 0), COL("data_s", 14, 0), COL("compute_s", 15, 0), COL("comm_s", 16, 0),
};
#undef COL
#define N_METRIC_COLS (sizeof metric_cols / sizeof metric_cols[0])

// The id of an upserted line (RETURNING would do, at about twice the cost of the upsert).
static sqlite3_int64 epoch_id_of(Ctx *c, sqlite3_int64 attempt_id, long line)
{
    sqlite3_stmt *s = c->s[S_EPOCH_ID];
    sqlite3_bind_int64(s, 1, attempt_id);
    sqlite3_bind_int64(s, 2, line);
    sqlite3_int64 id = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return id;
}

// A line rewritten without per_class_iou keeps no stale classes.
static int delete_line_ious(Ctx *c, sqlite3_int64 attempt_id, long line)
{
    sqlite3_bind_int64(c->s[S_DEL_IOU_LINE], 1, attempt_id);
    sqlite3_bind_int64(c->s[S_DEL_IOU_LINE], 2, line);
    return run_stmt(c, S_DEL_IOU_LINE);
}

static int store_class_iou(Ctx *c, sqlite3_int64 epoch_id, json_t *arr)
{
    size_t n = arr ? json_array_size(arr) : 0;
    for (size_t k = 0; k < n; k++) {
        json_t *v = json_array_get(arr, k);
        sqlite3_bind_int64(c->s[S_IOU], 1, epoch_id);
        sqlite3_bind_int64(c->s[S_IOU], 2, (sqlite3_int64)k);
        if (json_is_number(v)) sqlite3_bind_double(c->s[S_IOU], 3, json_number_value(v));
        else sqlite3_bind_null(c->s[S_IOU], 3);
        if (run_stmt(c, S_IOU) < 0) return -1;
    }
    sqlite3_bind_int64(c->s[S_DEL_IOU_FROM], 1, epoch_id);
    sqlite3_bind_int64(c->s[S_DEL_IOU_FROM], 2, (sqlite3_int64)n);
    return run_stmt(c, S_DEL_IOU_FROM);
}

// One metrics line (an object). Returns 0 stored, 1 skipped (warned), -1 DB error.
static int store_metrics_line(Ctx *c, sqlite3_int64 attempt_id, const char *path, long line, json_t *obj)
{
    sqlite3_stmt *s = c->s[S_EPOCH];
    json_t *extra = json_object();
    json_t *ious = NULL;
    if (!extra) return sql_fail(c, "out of memory");
    sqlite3_bind_int64(s, 1, attempt_id);
    sqlite3_bind_int64(s, 2, line);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        size_t k = 0;
        while (k < N_METRIC_COLS && strcmp(metric_cols[k].key, key) != 0) k++;
        if (k < N_METRIC_COLS) {
            if (json_is_null(v)) continue;
            if (!json_is_number(v)) {
                warnf(c, "%s:%ld: key '%s' is not a number; kept in epochs.extra", path, line, key);
                json_object_set(extra, key, v);
                continue;
            }
            double d = json_number_value(v);
            if (metric_cols[k].is_int) {
                if (d != floor(d) || fabs(d) > 9e15) {
                    warnf(c, "%s:%ld: key '%s' is not an integer (%g); kept in epochs.extra", path, line, key, d);
                    json_object_set(extra, key, v);
                    continue;
                }
                sqlite3_bind_int64(s, metric_cols[k].bind, (sqlite3_int64)d);
            } else {
                sqlite3_bind_double(s, metric_cols[k].bind, d);
            }
        } else if (strcmp(key, "per_class_iou") == 0 && json_is_array(v)) {
            ious = v;
        } else {
            if (strcmp(key, "per_class_iou") == 0)
                warnf(c, "%s:%ld: per_class_iou is not an array; kept in epochs.extra", path, line);
            json_object_set(extra, key, v);
        }
    }
    char *extra_text = NULL;
    if (json_object_size(extra) > 0) {
        extra_text = json_dumps(extra, JSON_COMPACT);  // insertion order, like the scanner
        sqlite3_bind_text(s, 17, extra_text, -1, SQLITE_TRANSIENT);
    }
    json_decref(extra);
    free(extra_text);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) return sql_fail(c, "storing a metrics line");
    c->st->epochs++;
    if (!ious) return delete_line_ious(c, attempt_id, line);
    return store_class_iou(c, epoch_id_of(c, attempt_id, line), ious);
}

// ---- a strict in-place scanner for one metrics line ----------------------------------------
// jansson builds a hash table per line (about 12 us a line measured, most of collect's time on
// 500k lines); metrics lines are flat objects of numbers, so this reads them in place with
// util/jscan (fast mode). A line it does not handle (escapes in strings, huge integers, deep
// nesting) or finds invalid goes to jansson, which decides and words the error message.

typedef struct {
    const char *key, *val;  // key without quotes; raw value text
    size_t klen, vlen;
    char type;              // 'n' number, 's' string, 'z' null, 'b' true/false, 'a' array, 'o' object
    double num;
} Field;

// The tokenizer's results under the names of what collect does with them.
enum { SCAN_OK = JSCAN_OK, SCAN_BAD = JSCAN_BAD, SCAN_JANSSON = JSCAN_DEFER };
#define MAX_FIELDS 64
#define SCAN_DEPTH 32   // containers nested deeper inside a field's value go to jansson

// One line as a flat object: fills f[0..*nf). SCAN_OK, SCAN_BAD or SCAN_JANSSON.
static int scan_line(const char *p, const char *end, Field *f, int *nf)
{
    JScan s = {p, end, SCAN_DEPTH, 1};
    *nf = 0;
    jscan_ws(&s);
    if (!jscan_at(&s, '{')) return SCAN_BAD;
    s.p++;
    jscan_ws(&s);
    if (jscan_at(&s, '}')) { s.p++; goto tail; }
    for (;;) {
        if (*nf == MAX_FIELDS) return SCAN_JANSSON;
        Field *x = &f[(*nf)++];
        if (!jscan_at(&s, '"')) return SCAN_BAD;
        x->key = s.p + 1;
        int rc = jscan_string(&s);
        if (rc != SCAN_OK) return rc;
        x->klen = (size_t)(s.p - 1 - x->key);
        jscan_ws(&s);
        if (!jscan_at(&s, ':')) return SCAN_BAD;
        s.p++;
        jscan_ws(&s);
        x->val = s.p;
        if ((rc = jscan_value(&s, &x->type, &x->num)) != SCAN_OK) return rc;
        x->vlen = (size_t)(s.p - x->val);
        jscan_ws(&s);
        if (jscan_at(&s, ',')) { s.p++; jscan_ws(&s); continue; }
        if (jscan_at(&s, '}')) { s.p++; break; }
        return SCAN_BAD;
    }
tail:
    jscan_ws(&s);
    return s.p == s.end ? SCAN_OK : SCAN_BAD;
}

static int key_is(const Field *x, const char *name)
{
    return strlen(name) == x->klen && memcmp(x->key, name, x->klen) == 0;
}

// 1 when the n bytes at a and b are equal (keys are short: no call to memcmp).
static int same_bytes(const char *a, const char *b, size_t n)
{
    while (n && *a == *b) a++, b++, n--;
    return n == 0;
}

// The metric_cols index of x's key, or N_METRIC_COLS. The search starts at *hint (lines name
// their keys in the same order, so the first comparison is most often the match) and leaves it
// after the match.
static size_t metric_col(const Field *x, size_t *hint)
{
    for (size_t i = 0, k = *hint; i < N_METRIC_COLS; i++, k = k + 1 == N_METRIC_COLS ? 0 : k + 1)
        if (metric_cols[k].len == x->klen && same_bytes(metric_cols[k].key, x->key, x->klen)) {
            *hint = k + 1 == N_METRIC_COLS ? 0 : k + 1;
            return k;
        }
    return N_METRIC_COLS;
}

// ---- epochs rows, several per INSERT ---------------------------------------------------------
// An attempt's first ingest inserts its lines ROWS_MAX to a statement (one statement's fixed cost
// per row was a third of the insert's), then their per_class_iou rows, IOUS_MAX to a statement;
// ids, order and values are those of one insert per line. A line read by jansson and the end of
// the file insert what waits.

#define ROWS_MAX 32
#define IOUS_MAX 64

// One metrics line's epochs row, before it is bound.
typedef struct {
    long line;
    unsigned set;                     // bit k: metric_cols[k] has a value
    union { double d; sqlite3_int64 i; } v[N_METRIC_COLS];
    size_t extra_off, extra_len;      // its extra text in Rows.text (extra_len 0: NULL)
    size_t ious_off, ious_len;        // its per_class_iou array's text there (ious_len 0: none)
} EpochRow;

struct Rows {
    sqlite3_int64 attempt_id;
    int n;
    EpochRow row[ROWS_MAX];
    StrBuf text;                      // the rows' extra texts, one after the other
    sqlite3_stmt *insert[ROWS_MAX + 1];   // [n]: the INSERT of n rows, prepared when first needed
    sqlite3_stmt *iou_insert[IOUS_MAX + 1];   // [n]: the INSERT of n class_iou rows
};

static void rows_free(struct Rows *r)
{
    if (!r) return;
    for (int i = 0; i <= ROWS_MAX; i++) sqlite3_finalize(r->insert[i]);
    for (int i = 0; i <= IOUS_MAX; i++) sqlite3_finalize(r->iou_insert[i]);
    sb_free(&r->text);
    free(r);
}

// *slot, or else "INSERT INTO table_cols VALUES" with n groups of the parameters in group
// prepared into it (once per statement and n).
static sqlite3_stmt *multi_insert(Ctx *c, sqlite3_stmt **slot, const char *table_cols, const char *group, int n)
{
    if (*slot) return *slot;
    StrBuf b = {0};
    sb_printf(&b, "INSERT INTO %s VALUES ", table_cols);
    for (int i = 0; i < n; i++) sb_printf(&b, "%s%s", i ? "," : "", group);
    if (!b.oom && sqlite3_prepare_v2(c->db, b.p, -1, slot, NULL) != SQLITE_OK) *slot = NULL;
    sb_free(&b);
    return *slot;
}

// The INSERT of n epochs rows.
static sqlite3_stmt *rows_insert(Ctx *c, int n)
{
    return multi_insert(c, &c->rows->insert[n], "epochs (attempt_id, line, epoch, step, wall_s, train_loss, val_loss,"
                        " miou, pixel_acc, top1, lr, images_per_s, epoch_s, data_s, compute_s, comm_s, extra)",
                        "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", n);
}

// Binds row r as the statement's row at parameter base (0 for the first).
static void bind_row(sqlite3_stmt *s, int base, sqlite3_int64 attempt_id, const EpochRow *r, const char *text)
{
    sqlite3_bind_int64(s, base + 1, attempt_id);
    sqlite3_bind_int64(s, base + 2, r->line);
    for (size_t k = 0; k < N_METRIC_COLS; k++) {
        if (!(r->set >> k & 1)) continue;
        if (metric_cols[k].is_int) sqlite3_bind_int64(s, base + metric_cols[k].bind, r->v[k].i);
        else sqlite3_bind_double(s, base + metric_cols[k].bind, r->v[k].d);
    }
    if (r->extra_len) sqlite3_bind_text(s, base + 17, text + r->extra_off, (int)r->extra_len, SQLITE_STATIC);
}

// Steps s (bound), then resets it and clears its bindings. 0, or -1 with the error.
static int step_rows(Ctx *c, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : sql_fail(c, "storing a metrics line");
}

static int store_ious(Ctx *c, sqlite3_int64 epoch_id, const char *val, size_t vlen, int fresh);

// Inserts the rows that wait, in one statement, then their class_iou rows. 0, or -1 with the error.
static int flush_rows(Ctx *c)
{
    struct Rows *r = c->rows;
    int n = r->n;
    r->n = 0;
    if (n == 0) return 0;
    if (r->text.oom) { snprintf(c->err, c->errlen, "storing a metrics line: out of memory"); return -1; }
    sqlite3_stmt *s = n == 1 ? c->s[S_EPOCH_NEW] : rows_insert(c, n);
    if (!s) return sql_fail(c, "storing a metrics line");
    for (int i = 0; i < n; i++) bind_row(s, 17 * i, r->attempt_id, &r->row[i], r->text.p);
    int rc = step_rows(c, s);
    for (int i = 0; i < n && rc == 0; i++)
        if (r->row[i].ious_len)
            rc = store_ious(c, epoch_id_of(c, r->attempt_id, r->row[i].line), r->text.p + r->row[i].ious_off,
                            r->row[i].ious_len, 1);
    r->text.len = 0;
    return rc;
}

// The scanned fields of one line into row e (its extra text appended to c->rows->text), with
// the warnings about keys kept in extra; *ious: its per_class_iou array, or NULL.
static void line_row(Ctx *c, const char *path, long line, const Field *f, int nf, EpochRow *e, const Field **ious)
{
    StrBuf *t = &c->rows->text;
    *e = (EpochRow){.line = line, .extra_off = t->len};
    *ious = NULL;
    size_t hint = 0;
    for (int i = 0; i < nf; i++) {
        const Field *x = &f[i];
        size_t k = metric_col(x, &hint);
        int keep = 0;
        if (k < N_METRIC_COLS) {
            if (x->type == 'z') continue;
            if (x->type != 'n') {
                warnf(c, "%s:%ld: key '%s' is not a number; kept in epochs.extra", path, line, metric_cols[k].key);
                keep = 1;
            } else if (metric_cols[k].is_int) {
                if (x->num != floor(x->num) || fabs(x->num) > 9e15) {
                    warnf(c, "%s:%ld: key '%s' is not an integer (%g); kept in epochs.extra", path, line,
                          metric_cols[k].key, x->num);
                    keep = 1;
                } else {
                    e->v[k].i = (sqlite3_int64)x->num;
                    e->set |= 1u << k;
                }
            } else {
                e->v[k].d = x->num;
                e->set |= 1u << k;
            }
        } else if (key_is(x, "per_class_iou") && x->type == 'a') {
            *ious = x;
        } else {
            if (key_is(x, "per_class_iou"))
                warnf(c, "%s:%ld: per_class_iou is not an array; kept in epochs.extra", path, line);
            keep = 1;
        }
        if (keep) {
            sb_add(t, t->len > e->extra_off ? ",\"" : "{\"", 2);
            sb_add(t, x->key, x->klen);
            sb_add(t, "\":", 2);
            sb_add(t, x->val, x->vlen);
        }
    }
    if (t->len > e->extra_off) sb_add(t, "}", 1);
    e->extra_len = t->len - e->extra_off;
    e->ious_off = t->len;
    if (*ious) sb_add(t, (*ious)->val, (*ious)->vlen);   // kept past the line's buffer
    e->ious_len = t->len - e->ious_off;
}

// A class_iou row before it is inserted.
typedef struct { sqlite3_int64 epoch_id, cls; double iou; int null; } IouRow;

// Inserts the class_iou rows that wait in v[0..n), in one statement. 0, or -1 with the error.
static int flush_ious(Ctx *c, const IouRow *v, int n)
{
    if (n == 0) return 0;
    sqlite3_stmt *s = multi_insert(c, &c->rows->iou_insert[n], "class_iou (epoch_id, class, iou)", "(?,?,?)", n);
    if (!s) return sql_fail(c, "writing the database");
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int64(s, 3 * i + 1, v[i].epoch_id);
        sqlite3_bind_int64(s, 3 * i + 2, v[i].cls);
        if (!v[i].null) sqlite3_bind_double(s, 3 * i + 3, v[i].iou);
    }
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : sql_fail(c, "writing the database");
}

// A line's per_class_iou elements [val, val + vlen) (the array's text; numbers, or NULL for
// anything else: absent classes are null) as class_iou rows of epoch_id. A line's first ingest
// (fresh) inserts them IOUS_MAX to a statement; a rewritten line upserts them and drops classes
// beyond them.
static int store_ious(Ctx *c, sqlite3_int64 epoch_id, const char *val, size_t vlen, int fresh)
{
    JScan sc = {val + 1, val + vlen, SCAN_DEPTH, 1};
    IouRow wait[IOUS_MAX];
    int nwait = 0;
    long k = 0;
    for (jscan_ws(&sc); sc.p < sc.end && *sc.p != ']'; k++) {
        char t;
        double d = 0;
        jscan_value(&sc, &t, &d);  // validated by scan_line already
        if (fresh) {
            if (nwait == IOUS_MAX) {
                if (flush_ious(c, wait, nwait) < 0) return -1;
                nwait = 0;
            }
            wait[nwait++] = (IouRow){epoch_id, k, d, t != 'n'};
        } else {
            sqlite3_bind_int64(c->s[S_IOU], 1, epoch_id);
            sqlite3_bind_int64(c->s[S_IOU], 2, k);
            if (t == 'n') sqlite3_bind_double(c->s[S_IOU], 3, d);
            else sqlite3_bind_null(c->s[S_IOU], 3);
            if (run_stmt(c, S_IOU) < 0) return -1;
        }
        jscan_ws(&sc);
        if (jscan_at(&sc, ',')) sc.p++;
        jscan_ws(&sc);
    }
    if (fresh) return flush_ious(c, wait, nwait);
    sqlite3_bind_int64(c->s[S_DEL_IOU_FROM], 1, epoch_id);
    sqlite3_bind_int64(c->s[S_DEL_IOU_FROM], 2, k);
    return run_stmt(c, S_DEL_IOU_FROM);
}

// The scanned twin of store_metrics_line. fresh: the line waits in c->rows for the lines after
// it (inserted when ROWS_MAX wait); else it is upserted now.
// 0 stored (or waiting), -1 DB error.
static int store_scanned_line(Ctx *c, sqlite3_int64 attempt_id, const char *path, long line, const Field *f, int nf,
                              int fresh)
{
    struct Rows *r = c->rows;
    if (fresh && r->n == ROWS_MAX && flush_rows(c) < 0) return -1;
    if (!fresh) r->text.len = 0;
    EpochRow one, *e = fresh ? &r->row[r->n] : &one;
    const Field *ious;
    line_row(c, path, line, f, nf, e, &ious);
    c->st->epochs++;
    if (fresh) {
        r->attempt_id = attempt_id;
        r->n++;
        return 0;
    }
    if (r->text.oom) { snprintf(c->err, c->errlen, "storing a metrics line: out of memory"); return -1; }
    bind_row(c->s[S_EPOCH], 0, attempt_id, e, r->text.p);
    if (step_rows(c, c->s[S_EPOCH]) < 0) return -1;
    if (!ious) return delete_line_ious(c, attempt_id, line);
    return store_ious(c, epoch_id_of(c, attempt_id, line), ious->val, ious->vlen, 0);
}

// Streams metrics.jsonl line by line (at most RUNFILE_MAX_LINE bytes held). Stored lines are only
// ever replaced by complete newer lines: a gone or unreadable file, a malformed, blank or too long
// line, and lines beyond the end of a file that shrank all keep what the DB holds (with a warning).
// fresh: the attempt has no rows yet (plain inserts).
static int ingest_metrics(Ctx *c, sqlite3_int64 attempt_id, const char *dir, int fresh)
{
    char path[4096], e[4400];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    long stored_max = 0, stored_n = 0;
    if (!fresh) {
        sqlite3_stmt *q = c->s[S_MAX_LINE];
        sqlite3_bind_int64(q, 1, attempt_id);
        if (sqlite3_step(q) == SQLITE_ROW) {
            stored_max = (long)sqlite3_column_int64(q, 0);
            stored_n = (long)sqlite3_column_int64(q, 1);
        }
        sqlite3_reset(q);
    }
    RunLines *r;
    int rr = open_lines(c, path, RUNFILE_MAX_LINE, &r, e, sizeof e);
    if (rr != 0) {
        if (rr < 0) warnf(c, "%s%s", e, stored_n ? "; the metric rows stored before are kept" : "");
        else if (stored_n) warnf(c, "%s: gone (run dir moved or purged?); keeping the %ld metric row(s) stored before", path, stored_n);
        if (rr < 0 || stored_n) c->kept = 1;
        return 0;
    }
    Field fields[MAX_FIELDS];
    const char *p;
    size_t n;
    int too_long, no_nl, got;
    long line = 0;
    while ((got = runfile_lines_next(r, &p, &n, &too_long, &no_nl, &line, e, sizeof e)) == 1) {
        const char *eol = p + n, *q = p;
        if (too_long) {
            warnf(c, "%s:%ld: line longer than %u bytes; line skipped", path, line, RUNFILE_MAX_LINE);
            c->st->lines_skipped++;
            if (line <= stored_max) c->kept = 1;
            continue;
        }
        while (q < eol && isspace((unsigned char)*q)) q++;
        int nf = 0;
        if (q == eol) continue;   // blank line: nothing to store
        if (scan_line(p, eol, fields, &nf) == SCAN_OK) {
            if (store_scanned_line(c, attempt_id, path, line, fields, nf, fresh) < 0) goto fail;
            continue;
        }
        if (flush_rows(c) < 0) goto fail;   // the lines before this one first
        json_error_t je;
        json_t *obj = json_loadb(p, n, 0, &je);
        if (!obj || !json_is_object(obj)) {
            if (!obj)
                warnf(c, "%s:%ld: %s at column %d%s; line skipped", path, line, je.text, je.column,
                      no_nl ? " (last line has no newline: still being written?)" : "");
            else
                warnf(c, "%s:%ld: not a JSON object; line skipped", path, line);
            json_decref(obj);
            c->st->lines_skipped++;
            continue;
        }
        int rc = store_metrics_line(c, attempt_id, path, line, obj);
        json_decref(obj);
        if (rc < 0) goto fail;
    }
    runfile_lines_close(r);
    if (flush_rows(c) < 0) return -1;
    if (got < 0) {
        warnf(c, "%s; the lines after %ld are not read this time", e, line);
        c->kept = 1;
    }
    if (got == 0 && stored_max > line) {
        warnf(c, "%s: %ld line(s), but the DB holds rows up to line %ld for this attempt (file truncated or "
              "rewritten?); the rows after line %ld are kept", path, line, stored_max, line);
        c->kept = 1;
    }
    return 0;
fail:
    runfile_lines_close(r);
    c->rows->n = 0;
    c->rows->text.len = 0;
    return -1;
}

// ---- result.json, env.json -------------------------------------------------------------------

static void bind_number(sqlite3_stmt *s, int i, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_number(v)) sqlite3_bind_double(s, i, json_number_value(v));
    else sqlite3_bind_null(s, i);
}

// Strings as they are; numbers and other values as their compact JSON text.
static void bind_text_any(sqlite3_stmt *s, int i, json_t *obj, const char *key, const char *alias)
{
    json_t *v = json_object_get(obj, key);
    if (!v && alias) v = json_object_get(obj, alias);
    if (!v || json_is_null(v)) { sqlite3_bind_null(s, i); return; }
    if (json_is_string(v)) { sqlite3_bind_text(s, i, json_string_value(v), -1, SQLITE_TRANSIENT); return; }
    char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (t) sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(s, i);
    free(t);
}

// Loads DIR/NAME as a JSON object: 0 with *out; 1 absent; -1 unreadable or invalid (warned). A
// stored row is only replaced by a complete new file: when the file is not loaded and the DB holds
// a row for it (has_row), that row is kept and the attempt marked so it is looked at again.
static int load_json_file(Ctx *c, const char *dir, const char *name, int has_row, json_t **out, char **text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    *out = NULL;
    int rr = read_small(c, path, text, &len);
    if (rr == 0) {
        json_error_t je;
        *out = json_loadb(*text, len, 0, &je);
        if (!*out || !json_is_object(*out)) {
            if (!*out) warnf(c, "%s:%d:%d: %s; file ignored%s", path, je.line, je.column, je.text,
                             has_row ? ", the row stored before is kept" : "");
            else warnf(c, "%s: not a JSON object; file ignored%s", path, has_row ? ", the row stored before is kept" : "");
            json_decref(*out);
            *out = NULL;
            free(*text);
            *text = NULL;
            rr = -1;
        }
    } else if (rr == 1 && has_row) {
        warnf(c, "%s: gone (run dir moved or purged?); keeping the row stored before", path);
    }
    if (rr != 0 && (rr < 0 || has_row)) c->kept = 1;
    return rr;
}

static int ingest_result(Ctx *c, sqlite3_int64 attempt_id, const char *dir)
{
    json_t *o;
    char *text;
    if (load_json_file(c, dir, "result.json", stmt_has(c, S_HAS_RESULT, attempt_id), &o, &text) != 0) return 0;
    sqlite3_stmt *s = c->s[S_RESULT];
    sqlite3_bind_int64(s, 1, attempt_id);
    bind_number(s, 2, o, "images_per_s");
    bind_number(s, 3, o, "wall_s");
    bind_number(s, 4, o, "miou");
    bind_number(s, 5, o, "pixel_acc");
    bind_number(s, 6, o, "top1");
    bind_number(s, 7, o, "val_loss");
    sqlite3_bind_text(s, 8, text, -1, SQLITE_TRANSIENT);
    json_decref(o);
    free(text);
    return run_stmt(c, S_RESULT);
}

static int ingest_env(Ctx *c, sqlite3_int64 attempt_id, const char *dir)
{
    json_t *o;
    char *text;
    if (load_json_file(c, dir, "env.json", stmt_has(c, S_HAS_ENV, attempt_id), &o, &text) != 0) return 0;
    sqlite3_stmt *s = c->s[S_ENV];
    sqlite3_bind_int64(s, 1, attempt_id);
    bind_text_any(s, 2, o, "host", "hostname");
    bind_text_any(s, 3, o, "gpu_model", "gpu");
    bind_text_any(s, 4, o, "driver", NULL);
    bind_text_any(s, 5, o, "cuda", NULL);
    bind_text_any(s, 6, o, "cudnn", NULL);
    bind_text_any(s, 7, o, "nccl", NULL);
    bind_text_any(s, 8, o, "container_digest", "container");
    bind_text_any(s, 9, o, "git_commit", "git");
    sqlite3_bind_text(s, 10, text, -1, SQLITE_TRANSIENT);
    json_decref(o);
    free(text);
    return run_stmt(c, S_ENV);
}

// RUN_DIR/runs.tsv, written by the job script: one line per run of the job (restart, job id,
// start, end, exit; unix seconds). A Slurm job requeued after a checkpoint runs several times;
// its attempt's time is the sum of its runs. A malformed line is reported (file:line) and left out
// of the sum. Without a whole line (absent, unreadable, still being written) the stored time stays.
static int ingest_runs(Ctx *c, sqlite3_int64 attempt_id, const char *dir, int has_run_s)
{
    char path[4096], e[4400];
    snprintf(path, sizeof path, "%s/runs.tsv", dir);
    RunLines *r;
    int rr = open_lines(c, path, 512, &r, e, sizeof e);
    if (rr != 0) {
        if (rr < 0) warnf(c, "%s%s", e, has_run_s ? "; the run time stored before is kept" : "");
        else if (has_run_s) warnf(c, "%s: gone (run dir moved or purged?); keeping the run time stored before", path);
        if (rr < 0 || has_run_s) c->kept = 1;
        return 0;
    }
    double sum = 0;
    int n = 0, got, too_long, no_nl;
    const char *p;
    size_t len;
    long lineno = 0;
    while ((got = runfile_lines_next(r, &p, &len, &too_long, &no_nl, &lineno, e, sizeof e)) == 1) {
        char line[520];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        long long restart, start, end;
        int exit_status, used = 0;
        char job[128];
        if (no_nl) continue;   // being written
        if (too_long || sscanf(line, "%lld\t%127s\t%lld\t%lld\t%d%n", &restart, job, &start, &end, &exit_status, &used) != 5 ||
            end < start || restart < 0) {
            warnf(c, "%s:%ld: not a run line (restart, job id, start, end, exit); left out of the time", path, lineno);
            continue;
        }
        sum += (double)(end - start);
        n++;
    }
    runfile_lines_close(r);
    if (got < 0) { warnf(c, "%s; the run time stored before is kept", e); c->kept = 1; return 0; }
    if (!n) return 0;
    sqlite3_stmt *s = c->s[S_RUN_S];
    sqlite3_bind_int64(s, 1, attempt_id);
    sqlite3_bind_double(s, 2, sum);
    return run_stmt(c, S_RUN_S);
}

// ---- exit code, stderr, signature -----------------------------------------------------------

// The job's stderr in DIR: a file named stderr / stderr.log / stderr.txt / job.err, else the
// newest *.err (Slurm's slurm-<jobid>.err; only those with only_err_files). 0 with path, -1 none.
static int find_stderr(const char *dir, char *path, size_t len, int only_err_files)
{
    static const char *const names[] = {"stderr", "stderr.log", "stderr.txt", "job.err", NULL};
    struct stat sb;
    for (int i = 0; !only_err_files && names[i]; i++) {
        snprintf(path, len, "%s/%s", dir, names[i]);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) return 0;
    }
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *de;
    double best = -1;
    char name[256] = "";
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".err") != 0 || n >= sizeof name) continue;
        if (strncmp(de->d_name, "eval-", 5) == 0) continue;   // the eval job's Slurm log, not the train job's
        snprintf(path, len, "%s/%s", dir, de->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        double t = (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec * 1e-9;
        if (t > best || (t == best && strcmp(de->d_name, name) > 0)) { best = t; snprintf(name, sizeof name, "%s", de->d_name); }
    }
    closedir(d);
    if (!name[0]) return -1;
    snprintf(path, len, "%s/%s", dir, name);
    return 0;
}

// The last `want` non-blank lines of a file (at most its last 8 KiB), joined by '\n'. NULL if none.
static char *tail_lines(const char *path, int want)
{
    int fd;
    char why[64];
    if (runfile_open(path, &fd, why, sizeof why) != 0) return NULL;   // a regular file only
    FILE *f = fdopen(fd, "rb");
    if (!f) { close(fd); return NULL; }
    char buf[8192];
    long off = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        off = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
        fseek(f, off, SEEK_SET);
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    // Trim trailing blanks, then walk back over `want` non-blank lines.
    while (n > 0 && isspace((unsigned char)buf[n - 1])) buf[--n] = 0;
    if (n == 0) return NULL;
    size_t start = n;
    int got = 0;
    while (start > 0 && got < want) {
        size_t e = start;
        while (start > 0 && buf[start - 1] != '\n') start--;
        int blank = 1;
        for (size_t k = start; k < e; k++)
            if (!isspace((unsigned char)buf[k])) blank = 0;
        if (!blank) got++;
        if (got < want && start > 0) start--;  // step over the '\n'
    }
    // Drop a partial first line when the 8 KiB window cut it.
    if (start == 0 && off > 0) {
        char *nl = memchr(buf, '\n', n);
        if (nl) start = (size_t)(nl - buf) + 1;
    }
    StrBuf out = {0};
    const char *p = buf + start;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t')) l--;
        if (l > 0) {
            if (out.len) sb_add(&out, "\n", 1);
            sb_add(&out, p, l);
        }
        if (!nl) break;
        p = nl + 1;
    }
    return out.p;
}

// 0 with *code, 1 absent, -1 unreadable/garbled (warned). name: exit_code or eval_exit_code.
static int read_code_file(Ctx *c, const char *dir, const char *name, int *code)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text;
    size_t len;
    int rr = read_small(c, path, &text, &len);
    if (rr != 0) return rr;
    int v;
    if (runfile_parse_code(text, &v) < 0) {   // the rule status reads them by too
        if (len > 0) warnf(c, "%s: '%.40s' is not an exit code; ignored", path, text);
        free(text);
        return len > 0 ? -1 : 1;  // an empty file: the job is still writing it
    }
    free(text);
    *code = v;
    return 0;
}

static int read_exit_code(Ctx *c, const char *dir, int *code) { return read_code_file(c, dir, "exit_code", code); }

// ---- one attempt --------------------------------------------------------------------------

typedef struct {
    sqlite3_int64 id;
    char *run_dir, *state, *reason, *sig;
    int has_exit, exit_code, has_run_s;
} AttemptRow;

static char *dir_signature(const char *dir);

// Reads what collect_attempt will need of attempt a, with no transaction open: the run dir's
// stat and fingerprint, the files it ingests when they changed (or with --force), exit_code, and
// the stderr tail when the attempt looks failed. Nothing is warned here: collect_attempt says
// what it says when it uses them.
static void pre_read(Ctx *c, const AttemptRow *a, struct Pre *p)
{
    memset(p, 0, sizeof *p);
    struct stat sb;
    p->st_rc = stat(a->run_dir, &sb);
    p->st_errno = errno;
    p->is_dir = p->st_rc == 0 && S_ISDIR(sb.st_mode);
    if (!p->is_dir) return;
    p->sig = dir_signature(a->run_dir);
    int ingest = c->force || !p->sig || !a->sig || strcmp(p->sig, a->sig) != 0;
    char path[4096], e[4400];
    for (int i = 0; i < PF_COUNT; i++) {
        if (!ingest && i != PF_EXIT) continue;
        struct PreFile *pf = &p->f[i];
        snprintf(path, sizeof path, "%s/%s", a->run_dir, pf_names[i]);
        size_t max = i == PF_METRICS || i == PF_RUNS ? PRE_FILE_MAX : RUNFILE_MAX_JSON;
        pf->rc = runfile_read(path, max, &pf->text, &pf->len, e, sizeof e);
        if (pf->rc < 0 && max == PRE_FILE_MAX && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (size_t)sb.st_size > max)
            continue;   // too big to hold: the ingest streams it from the file
        if (pf->rc < 0) pf->why = strdup(e);
        pf->have = 1;
        p->bytes += pf->len;
    }
    // The failure reason's stderr tail, when collect_attempt will want it: a failed state without
    // a reason, or an open state that exit_code will make failed.
    if (a->reason && *a->reason) return;
    int failed = state_is_failure(a->state);
    int v;   // exit_code read by settle_attempt's rule (read_code_file, job_state_from_exit)
    if (!failed && state_is_open(a->state) && p->f[PF_EXIT].rc == 0 && p->f[PF_EXIT].text)
        failed = runfile_parse_code(p->f[PF_EXIT].text, &v) == 0 &&
                 job_state_in(job_state_from_exit(v), JOB_SET_UNSUCCESSFUL);
    if (!failed) return;
    char sp[4096];
    p->tail = find_stderr(a->run_dir, sp, sizeof sp, 0) == 0 ? tail_lines(sp, c->stderr_lines) : NULL;
    if (!p->tail && find_stderr(a->run_dir, sp, sizeof sp, 1) == 0) p->tail = tail_lines(sp, c->stderr_lines);
    p->have_tail = 1;
}

static char *dir_signature_by_name(const char *dir);

// Fingerprint of the files collect reads: name, size, mtime. Caller frees. One pass over the dir
// (readdir, fstatat of the names that count) instead of a stat per name that might be there (9 per
// attempt, most of them missing, plus find_stderr's pass); the same text as dir_signature_by_name.
static char *dir_signature(const char *dir)
{
    static const char *const names[] = {"metrics.jsonl", "result.json", "env.json", "exit_code", "runs.tsv", NULL};
    static const char *const err_names[] = {"stderr", "stderr.log", "stderr.txt", "job.err", NULL};
    DIR *d = opendir(dir);
    if (!d) return dir_signature_by_name(dir);
    int dfd = dirfd(d);
    struct stat st[5], est[4], bst;
    int have[5] = {0}, ehave[4] = {0};
    char best[256] = "";
    double bt = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        int k;
        for (k = 0; names[k] && strcmp(names[k], nm) != 0; k++) {}
        if (names[k]) { have[k] = fstatat(dfd, nm, &st[k], 0) == 0; continue; }
        size_t n = strlen(nm);
        int is_err = n >= 5 && strcmp(nm + n - 4, ".err") == 0;
        for (k = 0; err_names[k] && strcmp(err_names[k], nm) != 0; k++) {}
        if (!err_names[k] && !is_err) continue;
        struct stat sb;
        if (fstatat(dfd, nm, &sb, 0) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (err_names[k]) { est[k] = sb; ehave[k] = 1; }
        // find_stderr's fallback: the newest *.err but the eval job's (ties: the greater name)
        if (!is_err || strncmp(nm, "eval-", 5) == 0 || n >= sizeof best) continue;
        double t = (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec * 1e-9;
        if (t > bt || (t == bt && strcmp(nm, best) > 0)) { bt = t; snprintf(best, sizeof best, "%s", nm); bst = sb; }
    }
    closedir(d);
    StrBuf b = {0};
    sb_printf(&b, "v1");
    for (int i = 0; names[i]; i++)
        if (have[i])
            sb_printf(&b, ";%s:%lld:%lld.%09ld", names[i], (long long)st[i].st_size, (long long)st[i].st_mtim.tv_sec,
                       (long)st[i].st_mtim.tv_nsec);
    const char *en = NULL;
    const struct stat *es = NULL;
    for (int i = 0; err_names[i] && !en; i++)
        if (ehave[i]) { en = err_names[i]; es = &est[i]; }
    if (!en && best[0]) { en = best; es = &bst; }
    if (en)
        sb_printf(&b, ";%s:%lld:%lld.%09ld", en, (long long)es->st_size, (long long)es->st_mtim.tv_sec,
                   (long)es->st_mtim.tv_nsec);
    return b.p;
}

// The same fingerprint, a stat per name (a dir that cannot be listed).
static char *dir_signature_by_name(const char *dir)
{
    static const char *const names[] = {"metrics.jsonl", "result.json", "env.json", "exit_code", "runs.tsv", NULL};
    StrBuf b = {0};
    char path[4096];
    struct stat sb;
    sb_printf(&b, "v1");
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &sb) == 0)
            sb_printf(&b, ";%s:%lld:%lld.%09ld", names[i], (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
                       (long)sb.st_mtim.tv_nsec);
    }
    if (find_stderr(dir, path, sizeof path, 0) == 0 && stat(path, &sb) == 0)
        sb_printf(&b, ";%s:%lld:%lld.%09ld", strrchr(path, '/') + 1, (long long)sb.st_size,
                   (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    return b.p;
}

static int attempt_has_rows(Ctx *c, sqlite3_int64 id)
{
    sqlite3_stmt *s = c->s[S_HAS_EPOCHS];
    sqlite3_bind_int64(s, 1, id);
    int has = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return has;
}

// 1 when attempt a's run dir is there; else warns (a scratch purge or an unmounted file system:
// nothing to read, and nothing stored goes) and returns 0.
static int run_dir_present(Ctx *c, const AttemptRow *a)
{
    struct stat sb;
    struct Pre *pre = c->pre;
    int st_rc = pre ? pre->st_rc : stat(a->run_dir, &sb);
    int st_errno = pre ? pre->st_errno : errno;
    if (pre ? pre->is_dir : st_rc == 0 && S_ISDIR(sb.st_mode)) return 1;
    const char *why = st_rc == 0 ? "is not a directory" : st_errno == ENOENT || st_errno == ENOTDIR ? "not found" : strerror(st_errno);
    warnf(c, "%s: run dir %s (moved away or purged?); keeping what the DB holds for this attempt", a->run_dir, why);
    c->st->attempts_missing++;
    return 0;
}

// For files read before this transaction: 0 when the attempt has gone since (nothing is written
// for it), or another collect ingested it (its fingerprint moved on: the attempt is left to that
// collect's rows, only --force reads it again, with *changed cleared); else 1.
static int pre_still_current(Ctx *c, const AttemptRow *a, int *changed)
{
    sqlite3_stmt *q = c->s[S_SIG_NOW];
    sqlite3_bind_int64(q, 1, a->id);
    int exists = sqlite3_step(q) == SQLITE_ROW;
    const unsigned char *now_sig = exists ? sqlite3_column_text(q, 0) : NULL;
    int moved = (now_sig == NULL) != (a->sig == NULL) || (now_sig && strcmp((const char *)now_sig, a->sig) != 0);
    sqlite3_reset(q);
    if (!exists) return 0;
    if (moved) *changed = 0;
    return !(moved && !c->force);
}

// Ingests the attempt's files (metrics, result, env, runs, traces); stores their fingerprint sig
// when they changed and none was kept. 0, or -1 on a database error.
static int ingest_files(Ctx *c, const AttemptRow *a, const char *sig, int changed)
{
    c->st->attempts_ingested++;
    c->kept = 0;
    sqlite3_bind_int64(c->s[S_LAST_EPOCH], 1, a->id);
    if (ingest_metrics(c, a->id, a->run_dir, !a->sig && !attempt_has_rows(c, a->id)) < 0 || run_stmt(c, S_LAST_EPOCH) < 0 ||
        ingest_result(c, a->id, a->run_dir) < 0 ||
        ingest_env(c, a->id, a->run_dir) < 0 || ingest_runs(c, a->id, a->run_dir, a->has_run_s) < 0 ||
        collect_trace_attempt(c->db, c->s[S_TRACE_CELL], a->id, a->run_dir, c->force, c->warn, &c->st->warnings, c->err,
                              c->errlen) < 0)
        return -1;
    // A source that was gone or unreadable: its fingerprint is not stored, so the next collect
    // looks again (and says so again) until the files are back or replaced.
    if (!changed || c->kept) return 0;
    sqlite3_bind_int64(c->s[S_ATTEMPT_FILES], 1, a->id);
    sqlite3_bind_text(c->s[S_ATTEMPT_FILES], 2, sig, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(c->s[S_ATTEMPT_FILES], 3, c->now);
    return run_stmt(c, S_ATTEMPT_FILES) < 0 ? -1 : 0;
}

// The files of attempt a, ingested when their fingerprint changed (or with --force).
// 0, 1 when the attempt is left alone (no run dir, or no longer ours to write), -1 on an error.
static int ingest_attempt(Ctx *c, const AttemptRow *a)
{
    if (!run_dir_present(c, a)) return 1;
    struct Pre *pre = c->pre;
    char *sig = pre ? pre->sig : dir_signature(a->run_dir);
    if (pre) pre->sig = NULL;
    if (!sig) return sql_fail(c, "out of memory");
    int changed = !a->sig || strcmp(sig, a->sig) != 0;
    int rc = pre && !pre_still_current(c, a, &changed) ? 1 : 0;
    if (rc == 0 && (changed || c->force)) rc = ingest_files(c, a, sig, changed);
    free(sig);
    return rc;
}

// Why an attempt failed: "exit code N" (has_exit) and its stderr's last lines, either part
// absent when unknown; NULL when both are. Caller frees.
static char *failure_reason(Ctx *c, const char *run_dir, int has_exit, int exit_code)
{
    struct Pre *pre = c->pre;
    char path[4096];
    char *tail = NULL;
    if (pre && pre->have_tail) {
        tail = pre->tail;
        pre->tail = NULL;
    } else {
        tail = find_stderr(run_dir, path, sizeof path, 0) == 0 ? tail_lines(path, c->stderr_lines) : NULL;
        // The trainer's stderr is empty when it never started: the job's own *.err says why.
        if (!tail && find_stderr(run_dir, path, sizeof path, 1) == 0) tail = tail_lines(path, c->stderr_lines);
    }
    StrBuf b = {0};
    if (has_exit) sb_printf(&b, "exit code %d", exit_code);
    if (tail) {
        if (b.len) sb_add(&b, ": ", 2);
        sb_add(&b, tail, strlen(tail));
    }
    free(tail);
    return b.p;
}

// State, exit code and reason: from the run dir where the backend has not settled them.
static int settle_attempt(Ctx *c, const AttemptRow *a)
{
    int code = 0;
    int have = read_exit_code(c, a->run_dir, &code) == 0;
    const char *state = a->state;
    int has_exit = a->has_exit, exit_code = a->exit_code;
    if (have) { has_exit = 1; exit_code = code; }
    if (have && state_is_open(state)) state = job_state_name(job_state_from_exit(code));
    char *reason = NULL;
    if (state_is_failure(state) && (!a->reason || !*a->reason)) reason = failure_reason(c, a->run_dir, has_exit, exit_code);
    sqlite3_stmt *s = c->s[S_ATTEMPT_STATE];
    sqlite3_bind_int64(s, 1, a->id);
    if (state) sqlite3_bind_text(s, 2, state, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_text(s, 2, "unknown", -1, SQLITE_STATIC);
    if (has_exit) sqlite3_bind_int(s, 3, exit_code);
    const char *r = reason ? reason : a->reason;
    if (r) sqlite3_bind_text(s, 4, r, -1, SQLITE_TRANSIENT);
    int rc = run_stmt(c, S_ATTEMPT_STATE);
    free(reason);
    return rc;
}

// One attempt: its files when they changed, then its state from the run dir.
static int collect_attempt(Ctx *c, const AttemptRow *a)
{
    c->st->attempts_seen++;
    int rc = ingest_attempt(c, a);
    return rc == 0 ? settle_attempt(c, a) : rc < 0 ? -1 : 0;
}

// ---- targets from the spec -------------------------------------------------------------------

static int sync_targets(Ctx *c, sqlite3_int64 exp_id, const char *name, const char *spec_text)
{
    static const char *const known[] = {"miou", "pixel_acc", "top1", "val_loss", "train_loss", NULL};
    json_error_t je;
    json_t *spec = spec_text ? json_loads(spec_text, 0, &je) : NULL;
    json_t *targets = json_object_get(json_object_get(spec, "eval"), "targets");
    if (!targets) { json_decref(spec); return 0; }
    // Accept {"miou": 0.5} or [{"metric": "miou", "value": 0.5}, ...].
    const char *names[8];
    double values[8];
    int n = 0;
    if (json_is_object(targets)) {
        const char *k;
        json_t *v;
        json_object_foreach(targets, k, v) {
            if (n < 8 && json_is_number(v)) { names[n] = k; values[n++] = json_number_value(v); }
            else warnf(c, "experiment '%s': eval.targets.%s: expected a number", name, k);
        }
    } else if (json_is_array(targets)) {
        size_t i;
        json_t *v;
        json_array_foreach(targets, i, v) {
            json_t *m = json_object_get(v, "metric"), *t = json_object_get(v, "value");
            if (!t) t = json_object_get(v, "target");
            if (n < 8 && json_is_string(m) && json_is_number(t)) { names[n] = json_string_value(m); values[n++] = json_number_value(t); }
            else warnf(c, "experiment '%s': eval.targets[%zu]: expected {\"metric\": NAME, \"value\": NUMBER}", name, i);
        }
    }
    sqlite3_stmt *ins = NULL, *del = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(c->db, "INSERT INTO targets (experiment_id, metric, value) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT (experiment_id, metric) DO UPDATE SET value = excluded.value"
                           " WHERE value IS NOT excluded.value", -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "DELETE FROM targets WHERE experiment_id = ?1 AND metric NOT IN (?2,?3,?4,?5,?6,?7,?8,?9)",
                           -1, &del, NULL) != SQLITE_OK) {
        rc = sql_fail(c, "targets");
        goto done;
    }
    int kept = 0;
    for (int i = 0; i < n; i++) {
        int ok = 0;
        for (int k = 0; known[k]; k++) ok |= strcmp(known[k], names[i]) == 0;
        if (!ok) {
            warnf(c, "experiment '%s': eval.targets: unknown metric '%s' (expected miou, pixel_acc, top1, val_loss or train_loss)",
                  name, names[i]);
            continue;
        }
        sqlite3_bind_int64(ins, 1, exp_id);
        sqlite3_bind_text(ins, 2, names[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(ins, 3, values[i]);
        if (sqlite3_step(ins) != SQLITE_DONE) { rc = sql_fail(c, "targets"); goto done; }
        sqlite3_reset(ins);
        sqlite3_bind_text(del, 2 + kept++, names[i], -1, SQLITE_TRANSIENT);
    }
    for (int i = kept; i < 8; i++) sqlite3_bind_text(del, 2 + i, "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(del, 1, exp_id);
    if (sqlite3_step(del) != SQLITE_DONE) rc = sql_fail(c, "targets");
done:
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    json_decref(spec);
    return rc;
}

// ---- discovery of attempt dirs without a row -----------------------------------------------

static int parse_attempt_name(const char *name)
{
    if (strncmp(name, "attempt-", 8) != 0 || !isdigit((unsigned char)name[8])) return 0;
    char *end;
    long n = strtol(name + 8, &end, 10);
    return *end || n <= 0 || n > 1000000 ? 0 : (int)n;
}

static char *dup_col(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

#define PAGE 256   // rows read at a time: memory does not grow with the number of cells
#define PAGE_SQL "256"

// Attempt dirs with output but no row (a job that requeued itself into attempt-<n+1>), for cells
// submitted at least once; the new row takes the backend of the cell's latest attempt. A cell
// never submitted is left alone: its attempt-1/ holds only what plan rendered, and its first
// attempt is submit's to record (an 'unknown' row there would make submit skip the cell).
// A page of cells at a time: their dirs are listed with no transaction open, then what was found
// is inserted in one short transaction (looked up again there: another collect may have been first).
typedef struct { sqlite3_int64 cell_id; int attempt; char *backend, *path; } Found;

static int insert_found(Ctx *c, sqlite3_stmt *have, sqlite3_stmt *ins, Found *f, size_t nf)
{
    if (nf == 0) return 0;
    if (db_begin(c->db, c->err, c->errlen) < 0) return -1;
    for (size_t i = 0; i < nf; i++) {
        sqlite3_bind_int64(have, 1, f[i].cell_id);
        sqlite3_bind_int(have, 2, f[i].attempt);
        int exists = sqlite3_step(have) == SQLITE_ROW;
        sqlite3_reset(have);
        if (exists) continue;
        sqlite3_bind_int64(ins, 1, f[i].cell_id);
        sqlite3_bind_int(ins, 2, f[i].attempt);
        sqlite3_bind_text(ins, 3, f[i].backend ? f[i].backend : "unknown", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 4, f[i].path, -1, SQLITE_TRANSIENT);
        int r = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (r != SQLITE_DONE) { sql_fail(c, "recording a found attempt dir"); db_rollback(c->db); return -1; }
        c->st->attempts_new++;
    }
    return db_commit(c->db, c->err, c->errlen) < 0 ? (db_rollback(c->db), -1) : 0;
}

static int discover_attempts(Ctx *c, sqlite3_int64 exp_id)
{
    sqlite3_stmt *cells = NULL, *have = NULL, *ins = NULL;
    Found *found = NULL;
    size_t nfound = 0, capfound = 0;
    int rc = -1;
    if (sqlite3_prepare_v2(c->db, "SELECT c.id, c.key, e.run_root, (SELECT a.backend FROM attempts a WHERE a.cell_id = c.id"
                           " ORDER BY a.attempt DESC LIMIT 1) FROM cells c JOIN experiments e ON e.id = c.experiment_id"
                           " WHERE (?1 IS NULL OR e.id = ?1) AND c.id > ?2"
                           " AND EXISTS (SELECT 1 FROM attempts a WHERE a.cell_id = c.id) ORDER BY c.id LIMIT " PAGE_SQL,
                           -1, &cells, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "SELECT 1 FROM attempts WHERE cell_id = ?1 AND attempt = ?2", -1, &have, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "INSERT INTO attempts (cell_id, attempt, backend, state, run_dir) VALUES (?1, ?2, ?3, 'unknown', ?4)",
                           -1, &ins, NULL) != SQLITE_OK) {
        sql_fail(c, "finding attempt dirs");
        goto done;
    }
    struct { sqlite3_int64 id; char *key, *root, *backend; } page[PAGE];
    sqlite3_int64 last = 0;
    for (;;) {
        if (exp_id > 0) sqlite3_bind_int64(cells, 1, exp_id);
        sqlite3_bind_int64(cells, 2, last);
        int n = 0, src = SQLITE_DONE;
        while (n < PAGE && (src = sqlite3_step(cells)) == SQLITE_ROW) {
            page[n].id = sqlite3_column_int64(cells, 0);
            page[n].key = dup_col(cells, 1);
            page[n].root = dup_col(cells, 2);
            page[n].backend = dup_col(cells, 3);
            n++;
        }
        if (n < PAGE && src != SQLITE_DONE) sql_fail(c, "listing cells");
        sqlite3_reset(cells);
        int bad = n < PAGE && src != SQLITE_DONE;
        for (int i = 0; i < n && !bad; i++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s", page[i].root ? page[i].root : ".", page[i].key ? page[i].key : "");
            DIR *d = opendir(dir);
            struct dirent *de;
            while (d && !bad && (de = readdir(d))) {
                int an = parse_attempt_name(de->d_name);
                if (!an) continue;
                sqlite3_bind_int64(have, 1, page[i].id);
                sqlite3_bind_int(have, 2, an);
                int exists = sqlite3_step(have) == SQLITE_ROW;
                sqlite3_reset(have);
                if (exists) continue;
                char path[4400];
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                struct stat sb;
                if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode) || !runfile_dir_has_run_output(path)) continue;
                if (nfound == capfound) {
                    size_t nc = capfound ? 2 * capfound : 64;
                    Found *nf = realloc(found, nc * sizeof *nf);
                    if (!nf) { snprintf(c->err, c->errlen, "out of memory"); bad = 1; break; }
                    found = nf;
                    capfound = nc;
                }
                found[nfound++] = (Found){page[i].id, an, page[i].backend ? strdup(page[i].backend) : NULL, strdup(path)};
            }
            if (d) closedir(d);
        }
        for (int i = 0; i < n; i++) { free(page[i].key); free(page[i].root); free(page[i].backend); }
        if (!bad && insert_found(c, have, ins, found, nfound) < 0) bad = 1;
        for (size_t i = 0; i < nfound; i++) { free(found[i].backend); free(found[i].path); }
        nfound = 0;
        if (bad) goto done;
        if (n < PAGE) break;
        last = page[n - 1].id;
    }
    rc = 0;
done:
    free(found);
    sqlite3_finalize(cells);
    sqlite3_finalize(have);
    sqlite3_finalize(ins);
    return rc;
}

// ---- the whole ingest ------------------------------------------------------------------------


// ---- eval jobs (spec eval.job) ----------------------------------------------------------------

typedef struct { sqlite3_int64 attempt_id; char *run_dir, *state, *json; } EvalRow;

// The state of an eval job the backend has not settled, from its run dir: eval_exit_code, else
// cancelled when the train job ended with another code than 0 (its afterok can never be met).
// 0 with state/code/reason set, 1 nothing to say yet.
static int eval_state_from_files(Ctx *c, const char *dir, const char **state, int *code, char **reason)
{
    int ec = 0, tc = 0;
    *reason = NULL;
    int have_eval = read_code_file(c, dir, "eval_exit_code", &ec) == 0;
    int have_train = !have_eval && read_exit_code(c, dir, &tc) == 0;
    JobState st = job_eval_state(have_eval, ec, have_train, tc);   // the rule status settles them by
    if (st == JOB_UNKNOWN) return 1;
    *state = job_state_name(st);
    StrBuf b = {0};
    if (have_eval) {
        *code = ec;
        if (ec != 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/eval.stderr.log", dir);
            char *tail = tail_lines(path, c->stderr_lines);
            sb_printf(&b, "exit code %d%s%s", ec, tail ? ": " : "", tail ? tail : "");
            free(tail);
        }
    } else {
        *code = -1;
        sb_printf(&b, "dependency failed: the train job ended with exit code %d", tc);
    }
    *reason = b.p;
    return 0;
}

// eval.json of one eval job, stored whole and in columns when it differs from what is stored.
static int ingest_eval_json(Ctx *c, sqlite3_stmt *put, const EvalRow *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/eval.json", e->run_dir);
    char *text;
    size_t len;
    if (read_small(c, path, &text, &len) != 0) return 0;
    if (!c->force && e->json && strcmp(e->json, text) == 0) { free(text); return 0; }
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!json_is_object(o)) {
        warnf(c, "%s:%d: not a JSON object (%s); not stored", path, je.line, je.text);
        json_decref(o);
        free(text);
        return 0;
    }
    sqlite3_bind_int64(put, 1, e->attempt_id);
    static const char *const cols[] = {"miou", "pixel_acc", "top1", "loss", "images", "seconds", "images_per_s"};
    for (int i = 0; i < 7; i++) bind_number(put, i + 2, o, cols[i]);
    sqlite3_bind_text(put, 9, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(put, 10, c->now);
    int rc = sqlite3_step(put) == SQLITE_DONE ? 0 : sql_fail(c, "storing eval.json");
    sqlite3_reset(put);
    json_decref(o);
    free(text);
    return rc;
}

static int collect_evals(Ctx *c, sqlite3_int64 exp_id)
{
    sqlite3_stmt *q = NULL, *put = NULL, *set = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT e.attempt_id, a.run_dir, e.state, e.json FROM eval_jobs e"
                           " JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id"
                           " WHERE (?1 IS NULL OR c.experiment_id = ?1) AND e.attempt_id > ?2 ORDER BY e.attempt_id"
                           " LIMIT " PAGE_SQL, -1, &q, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "UPDATE eval_jobs SET miou = ?2, pixel_acc = ?3, top1 = ?4, loss = ?5, images = ?6,"
                           " seconds = ?7, images_per_s = ?8, json = ?9, collected_at = ?10 WHERE attempt_id = ?1",
                           -1, &put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "UPDATE eval_jobs SET state = ?2, exit_code = ?3, reason = COALESCE(reason, ?4)"
                           " WHERE attempt_id = ?1", -1, &set, NULL) != SQLITE_OK) {
        sqlite3_finalize(q);
        sqlite3_finalize(put);
        return sql_fail(c, "reading eval jobs");
    }
    EvalRow rows[PAGE];
    sqlite3_int64 last = 0;
    int rc = 0;
    for (size_t n = PAGE; rc == 0 && n == PAGE; ) {   // a page at a time: ingest writes eval_jobs
        if (exp_id > 0) sqlite3_bind_int64(q, 1, exp_id);
        sqlite3_bind_int64(q, 2, last);
        n = 0;
        while (n < PAGE && sqlite3_step(q) == SQLITE_ROW) {
            rows[n] = (EvalRow){sqlite3_column_int64(q, 0), dup_col(q, 1), dup_col(q, 2), dup_col(q, 3)};
            n++;
        }
        sqlite3_reset(q);
        if (n) last = rows[n - 1].attempt_id;
        for (size_t i = 0; i < n && rc == 0; i++) {
            EvalRow *e = &rows[i];
            if (!e->run_dir) continue;
            const char *state;
            int code;
            char *reason;
            if (state_is_open(e->state) && eval_state_from_files(c, e->run_dir, &state, &code, &reason) == 0) {
                sqlite3_bind_int64(set, 1, e->attempt_id);
                sqlite3_bind_text(set, 2, state, -1, SQLITE_STATIC);
                if (code >= 0) sqlite3_bind_int(set, 3, code); else sqlite3_bind_null(set, 3);
                if (reason) sqlite3_bind_text(set, 4, reason, -1, SQLITE_TRANSIENT); else sqlite3_bind_null(set, 4);
                if (sqlite3_step(set) != SQLITE_DONE) rc = sql_fail(c, "storing an eval job's state");
                sqlite3_reset(set);
                free(reason);
            }
            if (rc == 0) rc = ingest_eval_json(c, put, e);
        }
        for (size_t i = 0; i < n; i++) { free(rows[i].run_dir); free(rows[i].state); free(rows[i].json); }
    }
    sqlite3_finalize(q);
    sqlite3_finalize(put);
    sqlite3_finalize(set);
    return rc;
}

// ---- attempts that an older collect invented for planned cells -----------------------------
// Before discovery was limited to submitted cells, `segx collect` before `segx submit` recorded
// each planned cell's attempt-1/ (holding only job.sh) as an attempt with backend and state
// 'unknown'. Such a row is no submission and holds nothing: no job id, submit time, exit code,
// metrics, result, environment or eval job, and no other attempt of its cell has a backend.

#define INVENTED_WHERE \
    " FROM attempts WHERE backend = 'unknown' AND state = 'unknown' AND job_id IS NULL AND submit_time IS NULL" \
    " AND exit_code IS NULL AND cell_id IN (SELECT id FROM cells WHERE ?1 IS NULL OR experiment_id = ?1)" \
    " AND NOT EXISTS (SELECT 1 FROM epochs e WHERE e.attempt_id = attempts.id)" \
    " AND NOT EXISTS (SELECT 1 FROM results r WHERE r.attempt_id = attempts.id)" \
    " AND NOT EXISTS (SELECT 1 FROM environments v WHERE v.attempt_id = attempts.id)" \
    " AND NOT EXISTS (SELECT 1 FROM eval_jobs j WHERE j.attempt_id = attempts.id)" \
    " AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.cell_id = attempts.cell_id AND b.backend <> 'unknown')"

int collect_forget_invented(sqlite3 *db, long long experiment_id, int own_transaction, char *err, size_t errlen)
{
    sqlite3_stmt *q = NULL;
    int n = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*)" INVENTED_WHERE, -1, &q, NULL) != SQLITE_OK) goto fail;
    if (experiment_id > 0) sqlite3_bind_int64(q, 1, experiment_id);
    if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    q = NULL;
    if (n == 0) return 0;   // (no write lock taken)
    if (own_transaction && db_begin(db, err, errlen) < 0) return -1;
    if (sqlite3_prepare_v2(db, "DELETE" INVENTED_WHERE, -1, &q, NULL) != SQLITE_OK) goto fail_tx;
    if (experiment_id > 0) sqlite3_bind_int64(q, 1, experiment_id);
    if (sqlite3_step(q) != SQLITE_DONE) goto fail_tx;
    n = sqlite3_changes(db);
    sqlite3_finalize(q);
    q = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE cells SET state = 'planned' WHERE (?1 IS NULL OR experiment_id = ?1)"
                           " AND state <> 'planned' AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.cell_id = cells.id)",
                           -1, &q, NULL) != SQLITE_OK)
        goto fail_tx;
    if (experiment_id > 0) sqlite3_bind_int64(q, 1, experiment_id);
    if (sqlite3_step(q) != SQLITE_DONE) goto fail_tx;
    sqlite3_finalize(q);
    if (own_transaction && db_commit(db, err, errlen) < 0) { db_rollback(db); return -1; }
    return n;
fail_tx:
    snprintf(err, errlen, "forgetting invented attempts: %s", sqlite3_errmsg(db));
    sqlite3_finalize(q);
    if (own_transaction) db_rollback(db);
    return -1;
fail:
    snprintf(err, errlen, "forgetting invented attempts: %s", sqlite3_errmsg(db));
    sqlite3_finalize(q);
    return -1;
}

// Writes rows[0..n) (their files read before, pre[i]) in one transaction.
static int write_batch(Ctx *c, AttemptRow *rows, struct Pre *pre, size_t n)
{
    if (db_begin(c->db, c->err, c->errlen) < 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!rows[i].run_dir) continue;
        c->pre = &pre[i];
        c->pre_dir = rows[i].run_dir;
        rc = collect_attempt(c, &rows[i]);
        c->pre = NULL;
        c->pre_dir = NULL;
    }
    if (rc == 0 && db_commit(c->db, c->err, c->errlen) == 0) return 0;
    db_rollback(c->db);
    return -1;
}

// Reads the next page of attempts (id > last) from q into rows: their count (the caller frees
// them), with *rc -1 on an error.
static size_t read_attempt_page(Ctx *c, sqlite3_stmt *q, sqlite3_int64 exp_id, sqlite3_int64 last, AttemptRow *rows,
                                int *rc)
{
    if (exp_id > 0) sqlite3_bind_int64(q, 1, exp_id);
    sqlite3_bind_int64(q, 2, last);
    int src = SQLITE_DONE;
    size_t n = 0;
    while (n < PAGE && (src = sqlite3_step(q)) == SQLITE_ROW) {
        AttemptRow *a = &rows[n++];
        a->id = sqlite3_column_int64(q, 0);
        a->run_dir = dup_col(q, 1);
        a->state = dup_col(q, 2);
        a->reason = dup_col(q, 3);
        a->sig = dup_col(q, 4);
        a->has_exit = sqlite3_column_type(q, 5) != SQLITE_NULL;
        a->exit_code = sqlite3_column_int(q, 5);
        a->has_run_s = sqlite3_column_type(q, 6) != SQLITE_NULL;
    }
    if (n < PAGE && src != SQLITE_DONE) *rc = sql_fail(c, "reading attempts");
    sqlite3_reset(q);
    return n;
}

// Collects rows[0..n): batches of batch_bytes of files at most, each read, then written. 0 or -1.
static int collect_page(Ctx *c, AttemptRow *rows, struct Pre *pre, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t j = i, bytes = 0;
        for (; j < n && (j == i || bytes < c->batch_bytes); j++) {
            if (rows[j].run_dir) pre_read(c, &rows[j], &pre[j]);
            bytes += pre[j].bytes;
        }
        rc = write_batch(c, rows + i, pre + i, j - i);
        for (size_t k = i; k < j; k++) pre_free(&pre[k]);
        i = j;
    }
    return rc;
}

// The attempts, a page at a time (memory stays the same for 100 or 100,000 cells): each page
// read with no transaction open, its files read, then written in batches.
static int collect_attempts(Ctx *c, sqlite3_int64 exp_id)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(c->db, "SELECT a.id, a.run_dir, a.state, a.reason, a.ingest_sig, a.exit_code, a.run_s"
                           " FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE (?1 IS NULL OR c.experiment_id = ?1)"
                           " AND a.id > ?2 ORDER BY a.id LIMIT " PAGE_SQL, -1, &q, NULL) != SQLITE_OK)
        return sql_fail(c, "reading attempts");
    AttemptRow rows[PAGE];
    struct Pre *pre = calloc(PAGE, sizeof *pre);
    if (!pre) { sqlite3_finalize(q); snprintf(c->err, c->errlen, "out of memory"); return -1; }
    sqlite3_int64 last = 0;
    int rc = 0;
    for (size_t n = PAGE; rc == 0 && n == PAGE;) {
        n = read_attempt_page(c, q, exp_id, last, rows, &rc);
        if (n) last = rows[n - 1].id;
        if (rc == 0) rc = collect_page(c, rows, pre, n);
        for (size_t i = 0; i < n; i++) {
            pre_free(&pre[i]);
            free(rows[i].run_dir);
            free(rows[i].state);
            free(rows[i].reason);
            free(rows[i].sig);
        }
    }
    free(pre);
    sqlite3_finalize(q);
    return rc < 0 ? -1 : 0;
}

// Targets from each experiment's spec, eval jobs and cell states, in one transaction. 0 or -1.
static int collect_experiments(Ctx *c, sqlite3_int64 exp_id)
{
    sqlite3_stmt *q;
    if (db_begin(c->db, c->err, c->errlen) < 0) return -1;
    // Targets from each experiment's spec.
    if (sqlite3_prepare_v2(c->db, "SELECT id, name, spec_text FROM experiments WHERE ?1 IS NULL OR id = ?1",
                           -1, &q, NULL) != SQLITE_OK) {
        sql_fail(c, "reading experiments");
        db_rollback(c->db);
        return -1;
    }
    if (exp_id > 0) sqlite3_bind_int64(q, 1, exp_id);
    while (sqlite3_step(q) == SQLITE_ROW)
        if (sync_targets(c, sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
                         (const char *)sqlite3_column_text(q, 2)) < 0) { sqlite3_finalize(q); db_rollback(c->db); return -1; }
    sqlite3_finalize(q);
    if (collect_evals(c, exp_id) < 0) { db_rollback(c->db); return -1; }

    // cells.state = state of the latest attempt.
    if (sqlite3_prepare_v2(c->db,
                           "UPDATE cells SET state = (SELECT a.state FROM attempts a WHERE a.cell_id = cells.id"
                           " ORDER BY a.attempt DESC LIMIT 1) WHERE (?1 IS NULL OR experiment_id = ?1)"
                           " AND EXISTS (SELECT 1 FROM attempts a WHERE a.cell_id = cells.id)"
                           " AND state IS NOT (SELECT a.state FROM attempts a WHERE a.cell_id = cells.id"
                           " ORDER BY a.attempt DESC LIMIT 1)", -1, &q, NULL) != SQLITE_OK) {
        sql_fail(c, "updating cell states");
        db_rollback(c->db);
        return -1;
    }
    if (exp_id > 0) sqlite3_bind_int64(q, 1, exp_id);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : sql_fail(c, "updating cell states");
    sqlite3_finalize(q);
    if (rc == 0 && db_commit(c->db, c->err, c->errlen) == 0) return 0;
    db_rollback(c->db);
    return -1;
}

// The whole ingest, in short write transactions, each taken only when there is something to
// write: forgotten rows; found attempt dirs (a page of cells each); the attempts, a batch each
// (read first, batch_bytes of files at most, then written); targets, eval jobs and cell states.
// Each attempt's rows and its fingerprint commit together, so a collect killed half-way leaves
// every attempt as it was or fully ingested, and the next one goes on from there.
static int collect_all(Ctx *c, sqlite3_int64 exp_id)
{
    int forgot = collect_forget_invented(c->db, exp_id, 1, c->err, c->errlen);
    if (forgot < 0) return -1;
    c->st->attempts_forgotten = forgot;
    if (discover_attempts(c, exp_id) < 0) return -1;
    if (collect_attempts(c, exp_id) < 0) return -1;
    return collect_experiments(c, exp_id);
}

static int collect_in_transaction(Ctx *cp, sqlite3 *db, sqlite3_int64 exp_id, char *err, size_t errlen);

int collect_run(sqlite3 *db, const char *experiment, const CollectOptions *opts, CollectStats *stats,
                char *err, size_t errlen)
{
    CollectStats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    Ctx c = {.db = db, .warn = opts && opts->warn ? opts->warn : stderr, .force = opts ? opts->force : 0,
             .stderr_lines = opts && opts->stderr_lines > 0 ? opts->stderr_lines : 5,
             .now = now_s(), .st = stats, .err = err, .errlen = errlen, .batch_bytes = PRE_BATCH_BYTES};
    const char *bb = getenv("SEGX_COLLECT_BATCH_BYTES");   // bytes of files per write transaction
    if (bb && *bb && strtoull(bb, NULL, 10) > 0) c.batch_bytes = (size_t)strtoull(bb, NULL, 10);
    sqlite3_int64 exp_id = 0;
    if (experiment) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(db, "SELECT id FROM experiments WHERE name = ?1", -1, &q, NULL) != SQLITE_OK)
            return sql_fail(&c, "reading experiments");
        sqlite3_bind_text(q, 1, experiment, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW) exp_id = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        if (!exp_id) {
            snprintf(err, errlen, "no experiment named '%s' in the database (see `segx status`, or plan it first)", experiment);
            return -2;
        }
    }
    // A big ingest is one transaction: a larger page cache keeps it from spilling to the WAL
    // half-way (restored afterwards).
    int cache = -2000;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "PRAGMA cache_size", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW) cache = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_exec(db, "PRAGMA cache_size = -65536", NULL, NULL, NULL);
    // No foreign-key lookups per inserted line (7% of a big ingest's CPU): every row collect writes
    // hangs off an attempt it found in the same transaction (collect_attempt), or off the epochs
    // row it just inserted. On again afterwards.
    sqlite3_exec(db, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL);
    int rc = collect_in_transaction(&c, db, exp_id, err, errlen);
    sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    if (rc >= 0) accounting_import(db, exp_id, c.warn);   // sacct per ended Slurm attempt; a note without slurmdbd
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size = %d", cache);
    sqlite3_exec(db, pragma, NULL, NULL, NULL);
    return rc;
}

static int collect_in_transaction(Ctx *cp, sqlite3 *db, sqlite3_int64 exp_id, char *err, size_t errlen)
{
    Ctx c = *cp;
    (void)err;
    (void)errlen;
    int rc = 0;
    c.rows = calloc(1, sizeof *c.rows);
    if (!c.rows) { snprintf(c.err, c.errlen, "out of memory"); return -1; }
    for (int i = 0; i < S_COUNT && rc == 0; i++)
        if (sqlite3_prepare_v2(db, stmt_sql[i], -1, &c.s[i], NULL) != SQLITE_OK) rc = sql_fail(&c, "preparing ingest");
    if (rc == 0) rc = collect_all(&c, exp_id);   // its own short transactions
    for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(c.s[i]);
    rows_free(c.rows);
    return rc < 0 ? -1 : 0;
}
