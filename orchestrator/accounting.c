// orchestrator/accounting.c — Slurm accounting (sacct) imported per attempt, and the queue/usage
// reports on it (see accounting.h).
#include "orchestrator/accounting.h"
#include "orchestrator/backend/backends.h"
#include "orchestrator/backend/jobstate.h"
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const SCHEMA =
    "CREATE TABLE IF NOT EXISTS slurm_accounting ("
    " attempt_id INTEGER PRIMARY KEY REFERENCES attempts(id) ON DELETE CASCADE,"
    " job_id TEXT NOT NULL, state TEXT, exit_code INTEGER, elapsed_s REAL, total_cpu_s REAL,"
    " max_rss_mb REAL, req_mem_mb REAL, alloc_cpus INTEGER, alloc_gpus INTEGER, alloc_tres TEXT, tres_usage TEXT,"
    " gpu_util REAL, gpu_mem_mb REAL, nodelist TEXT, partition TEXT, qos TEXT,"
    " submit_time REAL, eligible_time REAL, start_time REAL, end_time REAL, imported_at REAL NOT NULL);"
    "CREATE VIEW IF NOT EXISTS accounting_cells AS"
    " SELECT c.experiment_id, c.key, c.gpu_type, c.gpus, a.attempt, s.*,"
    "  CASE WHEN s.start_time > 0 AND s.eligible_time > 0 THEN s.start_time - s.eligible_time END AS queue_wait_s,"
    "  CASE WHEN s.elapsed_s > 0 AND s.alloc_cpus > 0 THEN s.total_cpu_s / (s.elapsed_s * s.alloc_cpus) END AS cpu_efficiency,"
    "  CASE WHEN s.req_mem_mb > 0 AND s.max_rss_mb IS NOT NULL THEN 1 - s.max_rss_mb / s.req_mem_mb END AS mem_headroom"
    " FROM slurm_accounting s JOIN attempts a ON a.id = s.attempt_id JOIN cells c ON c.id = a.cell_id;";

// ---------------------------------------------------------------------------------------------
// sacct's fields

// "2026-12-07T01:52:32" (local time) -> unix seconds; "Unknown", "None", "" -> 0
static double when(const char *s)
{
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    tm.tm_isdst = -1;
    return (double)mktime(&tm);
}

// "[D-][HH:]MM:SS[.mmm]" -> seconds; -1 on anything else
static double duration(const char *s)
{
    if (!s || !*s) return -1;
    double days = 0, parts[3] = {0, 0, 0};
    const char *p = s, *dash = strchr(s, '-');
    if (dash) { days = atof(s); p = dash + 1; }
    int n = 0;
    while (*p && n < 3) {
        char *end;
        parts[n++] = strtod(p, &end);
        if (end == p) return -1;
        p = *end == ':' ? end + 1 : end;
        if (*end != ':') break;
    }
    double sec = n == 3 ? parts[0] * 3600 + parts[1] * 60 + parts[2] : n == 2 ? parts[0] * 60 + parts[1] : parts[0];
    return days * 86400 + sec;
}

// "168576K", "1.5G", "2000M", "2Gn" -> MB; -1 when empty or not a size
static double size_mb(const char *s)
{
    if (!s || !*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s) return -1;
    switch (toupper((unsigned char)*end)) {
    case 'K': return v / 1024;
    case 'G': return v * 1024;
    case 'T': return v * 1024 * 1024;
    case '\0': return v / (1024 * 1024);   // bytes
    default: return v;                     // M
    }
}

// the value of key in "a=1,gres/gpu=2,mem=4G", or NULL (copied into out)
static const char *tres(const char *list, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            snprintf(out, cap, "%.*s", (int)strcspn(p + kl + 1, ","), p + kl + 1);
            return out;
        }
    }
    return NULL;
}

enum { F_JOBID, F_STATE, F_EXIT, F_ELAPSED, F_MAXRSS, F_TOTALCPU, F_ALLOCTRES, F_TRESUSE, F_NODES, F_PART, F_QOS,
       F_SUBMIT, F_ELIGIBLE, F_START, F_END, F_REQMEM, NF };
#define SACCT_FORMAT "JobID,State,ExitCode,ElapsedRaw,MaxRSS,TotalCPU,AllocTRES,TRESUsageInTot,NodeList,Partition,QOS," \
                     "Submit,Eligible,Start,End,ReqMem"

typedef struct {
    long long attempt_id;
    char job_id[64];
    int found;
    int rest;          // submitted through slurm-rest: accounting through slurmrestd's slurmdb API
    char state[32], alloc_tres[512], tres_usage[1024], nodes[256], partition[64], qos[64];
    int exit_code, alloc_cpus, alloc_gpus;
    double elapsed, total_cpu, max_rss, req_mem, gpu_util, gpu_mem, submit, eligible, start, end;
} Row;

// one sacct line into the row of its job ("123_4" from "123_4.batch")
static void take_line(Row *rows, size_t n, char **f)
{
    char base[64];
    snprintf(base, sizeof base, "%.*s", (int)strcspn(f[F_JOBID], "."), f[F_JOBID]);
    int step = strchr(f[F_JOBID], '.') != NULL;
    for (size_t i = 0; i < n; i++) {
        Row *r = &rows[i];
        if (strcmp(r->job_id, base) != 0) continue;
        double rss = size_mb(f[F_MAXRSS]);
        if (rss > r->max_rss) r->max_rss = rss;   // the largest step
        if (step) {
            if (strstr(f[F_JOBID], ".batch") && f[F_TRESUSE][0]) {
                char v[64];
                snprintf(r->tres_usage, sizeof r->tres_usage, "%s", f[F_TRESUSE]);
                if (tres(f[F_TRESUSE], "gres/gpuutil", v, sizeof v)) r->gpu_util = atof(v);
                if (tres(f[F_TRESUSE], "gres/gpumem", v, sizeof v)) r->gpu_mem = size_mb(v);
            }
            continue;
        }
        r->found = 1;
        snprintf(r->state, sizeof r->state, "%.*s", (int)strcspn(f[F_STATE], " "), f[F_STATE]);
        r->exit_code = atoi(f[F_EXIT]);
        r->elapsed = atof(f[F_ELAPSED]);
        r->total_cpu = duration(f[F_TOTALCPU]);
        snprintf(r->alloc_tres, sizeof r->alloc_tres, "%s", f[F_ALLOCTRES]);
        char v[64];
        r->alloc_cpus = tres(f[F_ALLOCTRES], "cpu", v, sizeof v) ? atoi(v) : 0;
        r->alloc_gpus = tres(f[F_ALLOCTRES], "gres/gpu", v, sizeof v) ? atoi(v) : 0;
        snprintf(r->nodes, sizeof r->nodes, "%s", f[F_NODES]);
        snprintf(r->partition, sizeof r->partition, "%s", f[F_PART]);
        snprintf(r->qos, sizeof r->qos, "%s", f[F_QOS]);
        r->submit = when(f[F_SUBMIT]);
        r->eligible = when(f[F_ELIGIBLE]);
        r->start = when(f[F_START]);
        r->end = when(f[F_END]);
        r->req_mem = size_mb(f[F_REQMEM]);
        return;
    }
}

static int job_id_ok(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++) if (!isdigit((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

// sacct's -P lines from p into rows; the first line that is not one goes to first_err
static void take_lines(Row *rows, size_t n, FILE *p, char *first_err, size_t errcap)
{
    char line[4096];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        char *f[NF] = {0}, *q = line;
        int nf = 0;
        for (; nf < NF && q; nf++) {
            f[nf] = q;
            char *bar = strchr(q, '|');
            if (bar) { *bar = '\0'; q = bar + 1; } else q = NULL;
        }
        if (nf < NF) { if (!first_err[0]) snprintf(first_err, errcap, "%.500s", line); continue; }
        take_line(rows, n, f);
    }
}

// The slurm-rest backend's attempts: slurmdbd's records through slurmrestd (GET /slurmdb/vX/jobs),
// written by the backend as the lines sacct would print and read by take_lines, one request per
// call (rows[0..n)); *rest is opened on first use and kept for the next call. 0, or -1 with why.
static int run_rest(Backend **rest, Row *rows, size_t n, char *why, size_t whylen)
{
    if (!*rest && backend_open("slurm-rest", NULL, rest, why, whylen) < 0) { *rest = NULL; return -1; }
    const char **ids = malloc((n ? n : 1) * sizeof *ids);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!ids || !mem) { free(ids); if (mem) fclose(mem); free(text); snprintf(why, whylen, "out of memory"); return -1; }
    for (size_t i = 0; i < n; i++) ids[i] = rows[i].job_id;
    int lines = backend_slurm_rest_accounting(*rest, ids, n, mem, why, whylen);
    fclose(mem);
    free(ids);
    if (lines >= 0) {
        FILE *in = fmemopen(text, len ? len : 1, "r");
        char first_err[512] = "";
        if (in) { take_lines(rows, n, in, first_err, sizeof first_err); fclose(in); }
        else { snprintf(why, whylen, "out of memory"); lines = -1; }
    }
    free(text);
    return lines < 0 ? -1 : 0;
}

// One sacct for rows[0..n). 0, or -1 with the reason in why (accounting not there).
static int run_sacct(Row *rows, size_t n, char *why, size_t whylen)
{
    size_t cap = 256 + n * 24;
    char *cmd = malloc(cap);
    if (!cmd) { snprintf(why, whylen, "out of memory"); return -1; }
    size_t len = (size_t)snprintf(cmd, cap, "sacct -n -P --format=" SACCT_FORMAT " -j ");
    for (size_t i = 0; i < n; i++) len += (size_t)snprintf(cmd + len, cap - len, "%s%s", i ? "," : "", rows[i].job_id);
    snprintf(cmd + len, cap - len, " 2>&1");
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p) { snprintf(why, whylen, "cannot run sacct"); return -1; }
    char first_err[512] = "";
    take_lines(rows, n, p, first_err, sizeof first_err);
    int st = pclose(p);
    if (st != 0) {
        snprintf(why, whylen, "sacct: %s", first_err[0] ? first_err : "failed (is slurmdbd running?)");
        return -1;
    }
    return 0;
}

#define ACCT_PAGE 400   // attempts per sacct call and per write transaction

// One page: its slurm-rest rows through slurmrestd (sacct when that fails), the others through
// sacct. 0, or -1 with why (both reasons when slurmrestd failed too).
static int fetch_page(Row *rows, size_t n, Backend **rest, char *why, size_t whylen)
{
    // the slurm-rest rows last
    for (size_t i = 0, j = n; i < j;) {
        if (!rows[i].rest) { i++; continue; }
        Row t = rows[--j]; rows[j] = rows[i]; rows[i] = t;
    }
    size_t nrest = 0;
    while (nrest < n && rows[n - 1 - nrest].rest) nrest++;
    char rwhy[600] = "";
    if (n > nrest && run_sacct(rows, n - nrest, why, whylen) < 0) return -1;
    if (nrest && run_rest(rest, rows + n - nrest, nrest, rwhy, sizeof rwhy) < 0 &&
        run_sacct(rows + n - nrest, nrest, why, whylen) < 0) {
        char w[600];
        snprintf(w, sizeof w, "%s", why);
        snprintf(why, whylen, "slurmrestd: %.280s; %.280s", rwhy, w);
        return -1;
    }
    return 0;
}

// The paged SELECT of the ended attempts of the Slurm backends without an accounting row into *st (?1:
// experiment or 0, ?2: after this attempt id) and, without its ORDER BY and LIMIT, into sel (to count
// those left). 0, or -1 on a database error.
static int page_query(sqlite3 *db, char *sel, size_t cap, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'slurm_accounting'", -1, st, NULL) != SQLITE_OK)
        return -1;
    int have = sqlite3_step(*st) == SQLITE_ROW && sqlite3_column_int(*st, 0) > 0;
    sqlite3_finalize(*st);
    *st = NULL;
    const char *sel_new =
        "SELECT a.id, a.job_id, a.backend = 'slurm-rest' FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE (?1 = 0 OR c.experiment_id = ?1) "
        "AND a.backend IN ('slurm', 'slurm-cli', 'slurm-rest') AND a.job_id IS NOT NULL "
        "AND a.state NOT IN " JOB_SQL_UNSETTLED " AND a.id > ?2";
    char sql[900];
    snprintf(sel, cap, "%s%s", sel_new, have ? " AND a.id NOT IN (SELECT attempt_id FROM slurm_accounting)" : "");
    snprintf(sql, sizeof sql, "%s ORDER BY a.id LIMIT %d", sel, ACCT_PAGE);
    return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK ? 0 : -1;
}

// The next page after attempt *last (moved on) into rows, those with a job id sacct takes; *seen: the
// attempts the page held (0: none left). Returns how many went into rows.
static size_t read_page(sqlite3_stmt *st, long long eid, long long *last, Row *rows, size_t *seen)
{
    sqlite3_bind_int64(st, 1, eid);
    sqlite3_bind_int64(st, 2, *last);
    size_t n = 0;
    *seen = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        (*seen)++;
        *last = sqlite3_column_int64(st, 0);
        const char *id = (const char *)sqlite3_column_text(st, 1);
        if (!id || !job_id_ok(id)) continue;
        memset(&rows[n], 0, sizeof rows[n]);
        rows[n].attempt_id = *last;
        rows[n].max_rss = rows[n].gpu_util = rows[n].gpu_mem = -1;
        snprintf(rows[n].job_id, sizeof rows[n].job_id, "%s", id);
        rows[n].rest = sqlite3_column_int(st, 2);
        n++;
    }
    sqlite3_reset(st);
    return n;
}

// The note when a page's accounting could not be fetched: how many attempts are left without it (the
// page's n from first_id on, and the ones after it) and why.
static void note_unfetched(sqlite3 *db, const char *sel, long long eid, long long first_id, size_t n, const char *why,
                           FILE *note)
{
    sqlite3_stmt *cnt = NULL;
    long long left = (long long)n;
    char csql[1000];
    snprintf(csql, sizeof csql, "SELECT count(*) FROM (%s)", sel);
    if (sqlite3_prepare_v2(db, csql, -1, &cnt, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(cnt, 1, eid);
        sqlite3_bind_int64(cnt, 2, first_id - 1);
        if (sqlite3_step(cnt) == SQLITE_ROW) left = sqlite3_column_int64(cnt, 0);
    }
    sqlite3_finalize(cnt);
    if (note) fprintf(note, "segx: accounting not imported for %lld Slurm attempt%s (%s): `segx report queue/usage` "
                      "need slurmdbd (slurm/local-cluster start --accounting); everything else is unaffected\n",
                      left, left == 1 ? "" : "s", why);
}

// r's values into the INSERT's parameters (NULL for what sacct did not say)
static void bind_row(sqlite3_stmt *ins, const Row *r, double now)
{
    #define REAL_OR_NULL(k, v) do { if ((v) >= 0) sqlite3_bind_double(ins, k, v); else sqlite3_bind_null(ins, k); } while (0)
    sqlite3_bind_int64(ins, 1, r->attempt_id);
    sqlite3_bind_text(ins, 2, r->job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, r->state, -1, SQLITE_STATIC);
    sqlite3_bind_int(ins, 4, r->exit_code);
    sqlite3_bind_double(ins, 5, r->elapsed);
    REAL_OR_NULL(6, r->total_cpu);
    REAL_OR_NULL(7, r->max_rss);
    REAL_OR_NULL(8, r->req_mem);
    sqlite3_bind_int(ins, 9, r->alloc_cpus);
    sqlite3_bind_int(ins, 10, r->alloc_gpus);
    sqlite3_bind_text(ins, 11, r->alloc_tres, -1, SQLITE_STATIC);
    if (r->tres_usage[0]) sqlite3_bind_text(ins, 12, r->tres_usage, -1, SQLITE_STATIC); else sqlite3_bind_null(ins, 12);
    REAL_OR_NULL(13, r->gpu_util);
    REAL_OR_NULL(14, r->gpu_mem);
    sqlite3_bind_text(ins, 15, r->nodes, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 16, r->partition, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 17, r->qos, -1, SQLITE_STATIC);
    sqlite3_bind_double(ins, 18, r->submit);
    sqlite3_bind_double(ins, 19, r->eligible);
    sqlite3_bind_double(ins, 20, r->start);
    sqlite3_bind_double(ins, 21, r->end);
    sqlite3_bind_double(ins, 22, now);
    #undef REAL_OR_NULL
}

// The page's rows that slurmdbd knows, in one short write transaction; the table and *ins are made on
// first use. Adds the rows stored to *imported. 0, or -1 on a database error.
static int store_page(sqlite3 *db, sqlite3_stmt **ins, const Row *rows, size_t n, int *imported)
{
    if (!*ins && (sqlite3_exec(db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK ||
                  sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO slurm_accounting VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                                         "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)", -1, ins, NULL) != SQLITE_OK))
        return -1;
    double now = (double)time(NULL);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return -1;
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].found) continue;   // slurmdbd has not heard of it (yet)
        bind_row(*ins, &rows[i], now);
        if (sqlite3_step(*ins) == SQLITE_DONE) (*imported)++;
        sqlite3_reset(*ins);
        sqlite3_clear_bindings(*ins);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

// Ended attempts of the Slurm backends without an accounting row, a page of ACCT_PAGE at a time
// (by attempt id): one sacct call and one short write transaction per page, so memory does not
// grow with the number of attempts (a Row is ~2.3 KB: 100,000 attempts held at once were 230 MB).
int accounting_import(sqlite3 *db, long long eid, FILE *note)
{
    sqlite3_stmt *st = NULL, *ins = NULL;
    Row *rows = NULL;
    Backend *rest = NULL;   // slurm-rest, opened for the first page that needs it
    char sel[800];
    if (page_query(db, sel, sizeof sel, &st) < 0) goto sqlfail;
    rows = malloc(ACCT_PAGE * sizeof *rows);
    if (!rows) { sqlite3_finalize(st); if (note) fprintf(note, "segx: accounting: out of memory\n"); return -1; }
    int imported = 0;
    long long last = 0;
    for (;;) {
        size_t seen, n = read_page(st, eid, &last, rows, &seen);
        if (seen == 0) break;
        if (n == 0) continue;
        char why[600];
        long long first_id = rows[0].attempt_id;   // fetch_page reorders the page
        if (fetch_page(rows, n, &rest, why, sizeof why) < 0) {
            note_unfetched(db, sel, eid, first_id, n, why, note);
            break;
        }
        if (store_page(db, &ins, rows, n, &imported) < 0) goto sqlfail;
    }
    sqlite3_finalize(st);
    sqlite3_finalize(ins);
    free(rows);
    backend_close(rest);
    return imported;
sqlfail:
    if (note) fprintf(note, "segx: accounting: database: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_finalize(ins);
    free(rows);
    backend_close(rest);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// reports

int accounting_kind_valid(const char *kind)
{
    return kind && (strcmp(kind, "queue") == 0 || strcmp(kind, "usage") == 0);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// nearest-rank percentile of sorted v[0..n)
static double pct(const double *v, size_t n, double p)
{
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    return v[k ? k - 1 : 0];
}

int accounting_report(sqlite3 *db, const char *kind, const char *experiment, TableFormat fmt, FILE *out,
                      char *err, size_t errlen)
{
    if (!accounting_kind_valid(kind)) { snprintf(err, errlen, "unknown report '%s'", kind); return -2; }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'accounting_cells'", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    int have = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    if (!have) {
        snprintf(err, errlen, "no Slurm accounting imported yet: run `segx collect` on a cluster with slurmdbd "
                 "(locally: slurm/local-cluster start --accounting)");
        return -1;
    }
    const char *filter = " AND (?1 IS NULL OR experiment_id = (SELECT id FROM experiments WHERE name = ?1))";
    char sql[1200];
    int rc = 0;
    if (strcmp(kind, "usage") == 0) {
        snprintf(sql, sizeof sql,
                 "SELECT COALESCE(gpu_type, '-') AS gpu_type, count(*) AS jobs, round(SUM(elapsed_s) / 3600.0, 3) AS elapsed_h, "
                 "round(SUM(elapsed_s * MAX(alloc_gpus, 0)) / 3600.0, 3) AS gpu_h, round(AVG(cpu_efficiency), 3) AS cpu_efficiency, "
                 "round(MAX(max_rss_mb), 1) AS max_rss_mb, round(MIN(mem_headroom), 3) AS min_mem_headroom, "
                 "round(AVG(gpu_util), 1) AS gpu_util "
                 "FROM accounting_cells WHERE 1%s GROUP BY 1 ORDER BY 1", filter);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { snprintf(err, errlen, "database: %s", sqlite3_errmsg(db)); return -1; }
        if (experiment) sqlite3_bind_text(st, 1, experiment, -1, SQLITE_STATIC);
        rc = table_print_stmt(st, fmt, out, err, errlen);
        sqlite3_finalize(st);
        return rc < 0 ? -1 : 0;
    }
    // queue: median and p90 of start - eligible per (gpu_type, partition)
    snprintf(sql, sizeof sql, "SELECT COALESCE(gpu_type, '-'), COALESCE(partition, '-'), queue_wait_s FROM accounting_cells "
             "WHERE queue_wait_s IS NOT NULL%s ORDER BY 1, 2", filter);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { snprintf(err, errlen, "database: %s", sqlite3_errmsg(db)); return -1; }
    if (experiment) sqlite3_bind_text(st, 1, experiment, -1, SQLITE_STATIC);
    const char *hdr[] = {"gpu_type", "partition", "jobs", "median_wait_s", "p90_wait_s", "max_wait_s"};
    Table *t = table_new(6, hdr);
    char g[128] = "", p[128] = "";
    double *w = NULL;
    size_t n = 0, cap = 0;
    int more = 1;
    while (more) {
        more = sqlite3_step(st) == SQLITE_ROW;
        const char *ng = more ? (const char *)sqlite3_column_text(st, 0) : "", *np = more ? (const char *)sqlite3_column_text(st, 1) : "";
        if (n && (!more || strcmp(ng, g) || strcmp(np, p))) {
            qsort(w, n, sizeof *w, cmp_d);
            table_row(t); table_text(t, g); table_text(t, p); table_int(t, (int64_t)n);
            table_real(t, pct(w, n, 50)); table_real(t, pct(w, n, 90)); table_real(t, w[n - 1]);
            n = 0;
        }
        if (!more) break;
        snprintf(g, sizeof g, "%s", ng);
        snprintf(p, sizeof p, "%s", np);
        if (n == cap) { cap = cap ? 2 * cap : 64; double *nw = realloc(w, cap * sizeof *w); if (!nw) break; w = nw; }
        w[n++] = sqlite3_column_double(st, 2);
    }
    sqlite3_finalize(st);
    free(w);
    rc = table_print(t, fmt, out);
    table_free(t);
    if (rc < 0) { snprintf(err, errlen, "cannot write the report"); return -1; }
    return 0;
}
