// orchestrator/submit.c — planned (and, on request, failed) cells to a backend, one attempts row per
// submission (see submit.h). Phases of submit_experiment: open (DB, spec, backend, lock), read the
// cells, one cell at a time decide / render / submit / record, the job arrays, the summary.
#include "orchestrator/submit.h"
#include "orchestrator/util/paths.h"
#include "orchestrator/collect.h"
#include "orchestrator/experiment_lookup.h"
#include "orchestrator/notify.h"
#include "orchestrator/plan.h"
#include "orchestrator/render.h"
#include "orchestrator/util/fileio.h"
#include "db/db.h"
#include "orchestrator/runfile.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int submit_find_experiment(sqlite3 *db, const char *name, long long *id, char *name_out, size_t namelen,
                           char *run_root, size_t rrlen, char *err, size_t errlen)
{
    ExperimentRef x;
    int rc = experiment_find(db, name, &x, err, errlen);
    if (rc < 0) return rc;
    *id = x.id;
    snprintf(name_out, namelen, "%s", x.name);
    snprintf(run_root, rrlen, "%s", x.run_root);
    return 0;
}

void submit_backend_options(const char *run_root, int max_parallel, char *out, size_t len)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", run_root);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) *slash = 0;
    json_t *o = json_pack("{s:s+}", "state_dir", dir, "/.local");
    if (max_parallel > 0) {   // an explicit job count: a cap on top of core sharing (cpus 0: all online cores)
        json_object_set_new(o, "max_parallel", json_integer(max_parallel));
        json_object_set_new(o, "cpus", json_integer(0));
    } else if (max_parallel == SUBMIT_SLOTS_CORES) {   // default: jobs share the cores (ranks x cpus_per_gpu each)
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        json_object_set_new(o, "max_parallel", json_integer(0));
        json_object_set_new(o, "cpus", json_integer(cores > 0 ? cores : 1));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    snprintf(out, len, "%s", s ? s : "{}");
    free(s);
    json_decref(o);
}

// ---- one submit's state -------------------------------------------------------------------------

typedef struct { long long cid; char key[32]; char *params; int last; char state[32]; } Todo;

// A cell for --array: submitted below, grouped by the #SBATCH lines of its script.
typedef struct {
    long long cid;
    char key[32], gpu_type[64];
    int attempt, gpus, nodes;
    char run_dir[PATH_MAX + 64], script[PATH_MAX + 96], eval_script[PATH_MAX + 96];
    char *header;      // the script's #SBATCH lines that decide where and how it runs
    int group;         // array it goes into (index of the first cell with the same header)
} Queued;

typedef struct {
    const SubmitOptions *o;
    sqlite3 *db;
    ExperimentRef x;
    Spec *s;
    Backend *b;
    PlanRenderer *r;
    sqlite3_stmt *sel, *ins, *upd, *eins;
    int lock_fd;
    Todo *todo;
    size_t ncells;
    Queued *queued;
    size_t nq, capq;
    size_t nsub, neval, nskip_done, nskip_active, nskip_failed;
    int rc;            // the exit code so far
} Submit;

static void say(const Submit *S, int problem, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(const Submit *S, int problem, const char *fmt, ...)
{
    if (!S->o->say) return;
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    S->o->say(S->o->say_ctx, problem, line);
}

static int load_spec(sqlite3 *db, long long eid, Spec **s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT spec_text, COALESCE(spec_path, 'spec') FROM experiments WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, eid);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = spec_parse((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1), s, err, errlen);
    sqlite3_finalize(st);
    return rc;
}

// ---- recording ----------------------------------------------------------------------------------

// The eval job of a cell attempt, right after its train job: afterok:<train job id>, so it starts
// only when that job ended with exit 0 (Slurm cancels it otherwise: --kill-on-invalid-dep=yes in
// eval.sh; the local backend does the same). Recorded in eval_jobs; a failed submission is
// recorded too (state failed, reason "not submitted: ..."), and returns -1 with err.
static int submit_eval(Submit *S, long long attempt_id, const char *key, int attempt, const char *run_dir,
                       const char *script, const char *cell_gpu_type, const char *train_job, char *err, size_t errlen)
{
    const Spec *s = S->s;
    Backend *b = S->b;
    char job_name[160], dep[128], job_id[64] = "", reason[600] = "";
    snprintf(job_name, sizeof job_name, "segx-%s-%.8s-eval", s->name, key);
    snprintf(dep, sizeof dep, "afterok:%s", train_job);
    JobSpec js = {
        .experiment = s->name, .cell_key = key, .run_dir = run_dir, .script_path = script, .job_name = job_name,
        .attempt = attempt, .gpus = s->eval_gpus, .nodes = 1,
        .cpus_per_task = s->eval_gpus * (s->eval_cpus_per_gpu ? s->eval_cpus_per_gpu : s->cpus_per_gpu),
        .gpu_type = s->eval_gpu_type ? s->eval_gpu_type : cell_gpu_type, .time_limit = s->eval_time,
        .dependency = dep, .kind = "eval",
    };
    int src = b->ops->submit(b, &js, job_id, sizeof job_id, err, errlen);
    if (src < 0) snprintf(reason, sizeof reason, "not submitted: %.500s", err);
    sqlite3_stmt *eins = S->eins;
    sqlite3_bind_int64(eins, 1, attempt_id);
    sqlite3_bind_text(eins, 2, b->ops->name, -1, SQLITE_STATIC);
    if (src == 0) sqlite3_bind_text(eins, 3, job_id, -1, SQLITE_STATIC); else sqlite3_bind_null(eins, 3);
    sqlite3_bind_text(eins, 4, src == 0 ? "submitted" : "failed", -1, SQLITE_STATIC);
    if (reason[0]) sqlite3_bind_text(eins, 5, reason, -1, SQLITE_STATIC); else sqlite3_bind_null(eins, 5);
    sqlite3_bind_double(eins, 6, (double)time(NULL));
    char e[256];
    int ok = db_begin(S->db, e, sizeof e) == 0 && sqlite3_step(eins) == SQLITE_DONE;
    sqlite3_reset(eins);
    if (ok) ok = db_commit(S->db, e, sizeof e) == 0;
    if (!ok) db_rollback(S->db);
    if (!ok) {
        snprintf(err, errlen, "database: %s%s%s", sqlite3_errmsg(S->db), src == 0 ? " (submitted as job " : "",
                 src == 0 ? job_id : "");
        if (src == 0) snprintf(err + strlen(err), errlen - strlen(err), ")");
        return -1;
    }
    if (src < 0) return -1;
    if (!S->o->quiet) say(S, 0, "submitted %s attempt %d: eval job %s (after job %s succeeds)", key, attempt, job_id, train_job);
    return 0;
}

// What one submission leaves in the DB: the attempts row, the cell's state, and the eval job
// submitted after it (spec eval.job). 0 recorded; 1 recorded but its eval job could not be
// submitted (said); -1 DB error (said).
static int record_submission(Submit *S, long long cid, const char *key, int attempt, const char *run_dir,
                             const char *eval_script, const char *gpu_type, const char *job_id)
{
    char err[2048];
    sqlite3_bind_int64(S->ins, 1, cid);
    sqlite3_bind_int(S->ins, 2, attempt);
    sqlite3_bind_text(S->ins, 3, S->b->ops->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(S->ins, 4, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(S->ins, 5, (double)time(NULL));
    sqlite3_bind_text(S->ins, 6, run_dir, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(S->upd, 1, cid);
    // Committed at once: a submit killed later (a throttled one waits long between jobs) leaves
    // every accepted job recorded, so the next submit never runs a finished cell again.
    int bad = db_begin(S->db, err, sizeof err) < 0;
    bad = bad || sqlite3_step(S->ins) != SQLITE_DONE || sqlite3_step(S->upd) != SQLITE_DONE;
    sqlite3_reset(S->ins);
    sqlite3_reset(S->upd);
    if (!bad) bad = db_commit(S->db, err, sizeof err) < 0;
    if (bad) {
        say(S, 1, "database: %s (job %s was submitted)", sqlite3_errmsg(S->db), job_id);
        db_rollback(S->db);
        return -1;
    }
    long long attempt_id = sqlite3_last_insert_rowid(S->db);
    S->nsub++;
    if (!S->o->quiet) say(S, 0, "submitted %s attempt %d: job %s", key, attempt, job_id);
    if (!S->s->eval_job) return 0;
    if (submit_eval(S, attempt_id, key, attempt, run_dir, eval_script, gpu_type, job_id, err, sizeof err) < 0) {
        say(S, 1, "cell %s: eval job: %s", key, err);
        return 1;
    }
    S->neval++;
    return 0;
}

// An attempt dir with a run's output but no row: a submit was killed after the controller had
// accepted the job and before it was recorded. The attempt is recorded (no job id; collect and
// status settle it from its exit_code) instead of running the cell into the same dir again.
static int record_unrecorded_run(Submit *S, long long cid, const char *key, int attempt, const char *run_dir)
{
    sqlite3 *db = S->db;
    sqlite3_stmt *st = NULL;
    char err[512];
    int ok = db_begin(db, err, sizeof err) == 0 &&
             sqlite3_prepare_v2(db, "INSERT INTO attempts(cell_id, attempt, backend, state, run_dir) VALUES(?1, ?2, ?3, 'unknown', ?4)",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, cid);
        sqlite3_bind_int(st, 2, attempt);
        sqlite3_bind_text(st, 3, S->b->ops->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, run_dir, -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (ok) ok = sqlite3_prepare_v2(db, "UPDATE cells SET state = 'unknown' WHERE id = ?1", -1, &st, NULL) == SQLITE_OK;
    if (ok) { sqlite3_bind_int64(st, 1, cid); ok = sqlite3_step(st) == SQLITE_DONE; }
    sqlite3_finalize(st);
    if (ok) ok = db_commit(db, err, sizeof err) == 0;
    if (!ok) {
        say(S, 1, "database: %s", sqlite3_errmsg(db));
        db_rollback(db);
        return -1;
    }
    if (!S->o->quiet)
        say(S, 0, "cell %s attempt %d: %s already holds the output of a run that was never recorded (an interrupted "
            "submit?): recorded, not run again (`segx collect` reads it)", key, attempt, run_dir);
    return 0;
}

// ---- job arrays (--array) ---------------------------------------------------------------------
// Cells whose job scripts share the same #SBATCH lines (all but --job-name/--output/--error) go
// into one `sbatch --array=0-K[%N]` job: RUN_ROOT/.arrays/array-XXXXXX/ holds array.sh (those
// lines, --array, logs task-<i>.out/.err there) and index (line i+1 = the job.sh task i runs).
// Each cell's attempt records job id ARRAYID_i; the Slurm backends poll and cancel tasks by it.

// The #SBATCH lines at the top of a job script, minus the per-cell ones. malloc'd, or NULL.
static char *sbatch_header(const char *script)
{
    FILE *f = fopen(script, "r");
    if (!f) return NULL;
    char line[4096];
    size_t cap = 1024, len = 0;
    char *h = malloc(cap);
    int first = 1;
    while (h && fgets(line, sizeof line, f)) {
        if (first) { first = 0; continue; }   // #!
        if (strncmp(line, "#SBATCH", 7) != 0) {
            if (line[0] == '#' || line[0] == '\n') continue;
            break;                             // sbatch stops at the first command
        }
        if (strstr(line, "--job-name=") || strstr(line, "--output=") || strstr(line, "--error=")) continue;
        size_t n = strlen(line);
        if (len + n + 1 > cap) {
            char *nh = realloc(h, cap = 2 * (len + n + 1));
            if (!nh) { free(h); h = NULL; break; }
            h = nh;
        }
        memcpy(h + len, line, n);
        len += n;
    }
    fclose(f);
    if (h) h[len] = 0;
    return h;
}

// array.sh and index of one array in dir (a fresh RUN_ROOT/.arrays/array-XXXXXX). *first gets the
// first cell of the group, *ntasks their count. 0, or -1 (said).
static int write_array_dir(Submit *S, char *dir, size_t dirlen, char *path, size_t pathlen, int group,
                           size_t *first, size_t *ntasks)
{
    const Spec *s = S->s;
    const Queued *q = S->queued;
    snprintf(dir, dirlen, "%s/.arrays", S->x.run_root);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) { say(S, 1, "%s: %s", dir, strerror(errno)); return -1; }
    snprintf(dir, dirlen, "%s/.arrays/array-XXXXXX", S->x.run_root);
    if (!mkdtemp(dir)) { say(S, 1, "%s: %s", dir, strerror(errno)); return -1; }
    chmod(dir, 0755);
    *ntasks = 0;
    snprintf(path, pathlen, "%s/index", dir);
    FILE *f = fopen(path, "w");
    for (size_t i = 0; f && i < S->nq; i++)
        if (q[i].group == group) {
            if (!*ntasks) *first = i;
            fprintf(f, "%s\n", q[i].script);
            (*ntasks)++;
        }
    if (!f || fclose(f) != 0) { say(S, 1, "%s: cannot write", path); return -1; }
    char *qdir = render_shell_quote(dir);
    snprintf(path, pathlen, "%s/array.sh", dir);
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "#!/usr/bin/env bash\n%s", q[*first].header);
        fprintf(f, "#SBATCH --job-name=segx-%s-array\n#SBATCH --output=%s/task-%%a.out\n#SBATCH --error=%s/task-%%a.err\n",
                s->name, dir, dir);
        fprintf(f, "#SBATCH --array=0-%zu", *ntasks - 1);
        if (S->o->array_throttle > 0) fprintf(f, "%%%d", S->o->array_throttle);
        fprintf(f, "\n# segx job array of experiment %s: task i runs the job script on line i+1 of index\n", s->name);
        fprintf(f, "script=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" %s/index)\n", qdir);
        fprintf(f, "[ -n \"$script\" ] || { echo \"segx array: no line $((SLURM_ARRAY_TASK_ID + 1)) in %s/index\" >&2; exit 1; }\n", dir);
        fprintf(f, "exec bash \"$script\"\n");
    }
    free(qdir);
    if (!f || fclose(f) != 0) { say(S, 1, "%s: cannot write", path); return -1; }
    return 0;
}

// Writes one array's folder and submits it; records every task. Returns 0, or -1 (said).
static int submit_array(Submit *S, int group)
{
    const Spec *s = S->s;
    const Queued *q = S->queued;
    char dir[PATH_MAX + 128], path[PATH_MAX + 160], err[2048];
    size_t first = 0, ntasks = 0;
    if (write_array_dir(S, dir, sizeof dir, path, sizeof path, group, &first, &ntasks) < 0) return -1;
    char job_name[160], array_id[64];
    snprintf(job_name, sizeof job_name, "segx-%s-array", s->name);
    const char *base = strrchr(dir, '/') + 1;
    JobSpec js = {
        .experiment = s->name, .cell_key = base, .run_dir = dir, .script_path = path, .job_name = job_name,
        .attempt = 0, .gpus = q[first].gpus, .nodes = q[first].nodes, .cpus_per_task = s->cpus_per_gpu,
        .gpu_type = q[first].gpu_type, .time_limit = s->time, .kind = "array",
    };
    if (S->b->ops->submit(S->b, &js, array_id, sizeof array_id, err, sizeof err) < 0) {
        say(S, 1, "job array of %zu cells (%s): %s", ntasks, dir, err);
        return -1;
    }
    if (!S->o->quiet)
        say(S, 0, "submitted job array %s: %zu cells%s (%s)", array_id, ntasks, S->o->array_throttle > 0 ? ", throttled" : "", dir);
    size_t task = 0;
    for (size_t i = 0; i < S->nq; i++) {
        if (q[i].group != group) continue;
        char job_id[96];
        snprintf(job_id, sizeof job_id, "%s_%zu", array_id, task++);
        int r = record_submission(S, q[i].cid, q[i].key, q[i].attempt, q[i].run_dir, q[i].eval_script, q[i].gpu_type, job_id);
        if (r < 0) return -1;
        if (r > 0) S->rc = 1;
    }
    return 0;
}

// --array: one job array per distinct #SBATCH header, in the order the cells came.
static void submit_arrays(Submit *S)
{
    for (size_t i = 0; i < S->nq; i++) {
        S->queued[i].group = (int)i;
        for (size_t j = 0; j < i; j++)
            if (strcmp(S->queued[j].header, S->queued[i].header) == 0) { S->queued[i].group = S->queued[j].group; break; }
    }
    for (size_t i = 0; S->rc == 0 && i < S->nq; i++)
        if (S->queued[i].group == (int)i && submit_array(S, (int)i) < 0) S->rc = 1;
}

// ---- open -----------------------------------------------------------------------------------------

// RUN_ROOT/.submit.lock, held (flock) while a submit of the experiment runs. 0 with *fd, -1 said.
static int lock_experiment(Submit *S)
{
    char path[PATH_MAX + 32];
    file_mkdir_p(S->x.run_root, 0755);   // (a purged run root is rendered again below)
    snprintf(path, sizeof path, "%s/.submit.lock", S->x.run_root);
    S->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (S->lock_fd < 0) {
        say(S, 1, "%s: cannot create the submit lock: %s", path, strerror(errno));
        return -1;
    }
    if (flock(S->lock_fd, LOCK_EX | LOCK_NB) == 0) return 0;
    say(S, 1, "another segx submit of '%s' is running: waiting for it to finish (%s)", S->x.name, path);
    while (flock(S->lock_fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            say(S, 1, "%s: %s", path, strerror(errno));
            close(S->lock_fd);
            S->lock_fd = -1;
            return -1;
        }
    return 0;
}

// The backend's options (submit_backend_options plus --max-submitted), then the backend.
// 0, or the exit code (said).
static int open_backend(Submit *S)
{
    const SubmitOptions *o = S->o;
    char opts[PATH_MAX + 128], err[2048];
    submit_backend_options(S->x.run_root, o->max_parallel > 0 ? o->max_parallel : SUBMIT_SLOTS_CORES, opts, sizeof opts);
    if (o->max_submitted > 0) {   // the Slurm backends hold further submissions until one of ours leaves the queue
        json_t *bo = json_loads(opts, 0, NULL);
        if (bo) {
            json_object_set_new(bo, "max_submitted", json_integer(o->max_submitted));
            char *js = json_dumps(bo, JSON_COMPACT);
            if (js) snprintf(opts, sizeof opts, "%s", js);
            free(js);
            json_decref(bo);
        }
    }
    if (o->dry_run) return 0;
    if ((o->open ? o->open : backend_open)(o->backend ? o->backend : "auto", opts, &S->b, err, sizeof err) < 0) {
        S->b = NULL;
        say(S, 1, "%s", err);
        return strstr(err, "unknown backend") ? 2 : 1;
    }
    const char *name = S->b->ops->name;
    if (o->array && strcmp(name, "slurm") && strcmp(name, "slurm-cli") && strcmp(name, "slurm-rest")) {
        say(S, 1, "--array: job arrays are a Slurm feature; backend %s runs each cell as its own job "
            "(drop --array, or use --backend slurm, slurm-rest or slurm-cli)", name);
        return 2;
    }
    return 0;
}

static int prepare_statements(Submit *S)
{
    sqlite3 *db = S->db;
    if (sqlite3_prepare_v2(db,
            "SELECT c.id, c.key, c.params, COALESCE(a.attempt, 0), COALESCE(a.state, 'planned') FROM cells c "
            "LEFT JOIN attempts a ON a.cell_id = c.id AND a.attempt = (SELECT max(attempt) FROM attempts WHERE cell_id = c.id) "
            "WHERE c.experiment_id = ?1 ORDER BY c.id", -1, &S->sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
            "INSERT INTO attempts(cell_id, attempt, backend, job_id, state, submit_time, run_dir) "
            "VALUES(?1, ?2, ?3, ?4, 'submitted', ?5, ?6)", -1, &S->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE cells SET state = 'submitted' WHERE id = ?1", -1, &S->upd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
            "INSERT OR REPLACE INTO eval_jobs(attempt_id, backend, job_id, state, reason, submit_time) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6)", -1, &S->eins, NULL) != SQLITE_OK) {
        say(S, 1, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(S->sel, 1, S->x.id);
    return 0;
}

// Everything before the first cell: DB, experiment, notify URL, spec, backend, statements, and
// (not for a dry run) the experiment's submit lock. 0, or the exit code (said).
static int submit_open(Submit *S)
{
    const SubmitOptions *o = S->o;
    char err[2048];
    if (db_open(db_path_default(o->db_path), DB_EXISTING, &S->db, err, sizeof err) < 0) {
        S->db = NULL;
        say(S, 1, "%s", err);
        return 1;
    }
    int frc = experiment_find(S->db, o->experiment, &S->x, err, sizeof err);
    if (frc < 0) { say(S, 1, "%s", err); return frc == -2 ? 2 : 1; }
    if (o->notify_url && !o->dry_run && notify_set_url(S->x.run_root, o->notify_url, err, sizeof err) < 0) {
        say(S, 1, "%s", err);
        return 2;
    }
    if (load_spec(S->db, S->x.id, &S->s, err, sizeof err) < 0) {
        say(S, 1, "the stored spec of '%s' no longer loads: %s (plan it again)", S->x.name, err);
        return 1;
    }
    int rc = open_backend(S);
    if (rc) return rc;
    if (prepare_statements(S) < 0) return 1;
    if (o->dry_run) return 0;
    // Each submission is committed on its own, so two submits of one experiment must not
    // interleave: the second waits for the first (the lock goes with the process, kill -9 included).
    if (lock_experiment(S) < 0) return 1;
    int forgot = collect_forget_invented(S->db, S->x.id, 1, err, sizeof err);
    if (forgot < 0) { say(S, 1, "%s", err); return 1; }
    if (forgot > 0 && !o->quiet)
        say(S, 0, "%d planned cell(s) had an 'unknown' attempt that an older segx collect recorded: removed, so they are submitted now", forgot);
    return 0;
}

// Reads the cells first: the loop over them writes attempts and cells rows. 0, or -1 (said).
static int read_cells(Submit *S)
{
    size_t cap = 0;
    while (sqlite3_step(S->sel) == SQLITE_ROW) {
        if (S->ncells == cap) {
            cap = cap ? cap * 2 : 256;
            Todo *nt = realloc(S->todo, cap * sizeof *S->todo);
            if (!nt) { say(S, 1, "out of memory"); return -1; }
            S->todo = nt;
        }
        Todo *t = &S->todo[S->ncells++];
        t->cid = sqlite3_column_int64(S->sel, 0);
        snprintf(t->key, sizeof t->key, "%s", (const char *)sqlite3_column_text(S->sel, 1));
        t->params = strdup((const char *)sqlite3_column_text(S->sel, 2));
        t->last = sqlite3_column_int(S->sel, 3);
        snprintf(t->state, sizeof t->state, "%s", (const char *)sqlite3_column_text(S->sel, 4));
    }
    return 0;
}

// ---- one cell -------------------------------------------------------------------------------------

// Whether the cell goes now: 1 yes; 0 skipped (counted).
static int decide(Submit *S, const Todo *t)
{
    if (t->last == 0) return 1;
    if (strcmp(t->state, "completed") == 0) { S->nskip_done++; return 0; }
    if (!job_state_name_in(t->state, JOB_SET_RERUNNABLE)) { S->nskip_active++; return 0; }
    if (!S->o->rerun_failed) { S->nskip_failed++; return 0; }
    return 1;
}

// S->r, opened on first use (templates, cluster profile); its warning is said once. 0, or -1 with err.
static int open_renderer(Submit *S, char *err, size_t errlen)
{
    if (S->r) return 0;
    const char *tdir = S->o->templates_dir ? S->o->templates_dir : paths_templates_dir();
    if (plan_renderer_open(S->s, tdir, S->x.run_root, &S->r, err, errlen) < 0) return -1;
    char warning[2 * PATH_MAX + 200];
    if (plan_renderer_warning(S->r, warning, sizeof warning)) say(S, 2, "%s", warning);
    return 0;
}

// Renders what the attempt's dir lacks: eval.sh (an eval job added to the spec after plan, or a
// later attempt) and job.sh (attempts after the first, or a removed run dir). 0, or -1 (said).
static int render_missing(Submit *S, PlanCell *c, int attempt, char *run_dir, size_t rdlen, char *script, size_t slen,
                          char *eval_script, size_t elen)
{
    char err[2048];
    struct stat sb;
    if (S->s->eval_job && stat(eval_script, &sb) != 0) {
        char *text = NULL;
        int bad = open_renderer(S, err, sizeof err) < 0 ||
                  plan_render_eval_text(S->r, c, attempt, run_dir, &text, err, sizeof err) < 0 ||
                  plan_write_eval(run_dir, text, eval_script, elen, err, sizeof err) < 0;
        free(text);
        if (bad) { say(S, 1, "%s", err); return -1; }
    }
    if (stat(script, &sb) != 0) {
        if (open_renderer(S, err, sizeof err) < 0 ||
            plan_render_job(S->r, c, attempt, script, slen, run_dir, rdlen, err, sizeof err) < 0) {
            say(S, 1, "%s", err);
            return -1;
        }
    }
    return 0;
}

// --array: the cell waits in S->queued for submit_arrays. 0, or -1 (said).
static int queue_for_array(Submit *S, long long cid, const char *key, int attempt, const PlanCell *c,
                           const char *gpu_type, const char *run_dir, const char *script, const char *eval_script)
{
    if (S->nq == S->capq) {
        S->capq = S->capq ? 2 * S->capq : 64;
        Queued *nqv = realloc(S->queued, S->capq * sizeof *S->queued);
        if (!nqv) { say(S, 1, "out of memory"); return -1; }
        S->queued = nqv;
    }
    Queued *x = &S->queued[S->nq];
    memset(x, 0, sizeof *x);
    x->cid = cid;
    snprintf(x->key, sizeof x->key, "%s", key);
    snprintf(x->gpu_type, sizeof x->gpu_type, "%s", gpu_type);
    x->attempt = attempt;
    x->gpus = c->gpus;
    x->nodes = c->nodes;
    snprintf(x->run_dir, sizeof x->run_dir, "%s", run_dir);
    snprintf(x->script, sizeof x->script, "%s", script);
    snprintf(x->eval_script, sizeof x->eval_script, "%s", eval_script);
    if (!(x->header = sbatch_header(script))) { say(S, 1, "cell %s: cannot read %s", key, script); return -1; }
    S->nq++;
    return 0;
}

// One cell that goes now: render, then submit (or queue for --array) and record. 0 on, -1 stop.
static int submit_cell(Submit *S, const Todo *t)
{
    const SubmitOptions *o = S->o;
    int attempt = t->last + 1;
    char err[2048];
    PlanCell c;
    if (!t->params || plan_cell_from_params(S->s, t->params, &c, err, sizeof err) < 0) {
        say(S, 1, "cell %s: %s", t->key, err);
        return -1;
    }
    char run_dir[PATH_MAX + 64], script[PATH_MAX + 96], eval_script[PATH_MAX + 96];
    snprintf(run_dir, sizeof run_dir, "%s/%s/attempt-%d", S->x.run_root, t->key, attempt);
    snprintf(script, sizeof script, "%s/job.sh", run_dir);
    snprintf(eval_script, sizeof eval_script, "%s/eval.sh", run_dir);
    int rc = 0;
    if (o->dry_run) {
        if (!o->quiet) say(S, 0, "would submit %s attempt %d: %s%s%s", t->key, attempt, script,
                           S->s->eval_job ? ", then its eval job after it: " : "", S->s->eval_job ? eval_script : "");
        S->nsub++;
    } else if (render_missing(S, &c, attempt, run_dir, sizeof run_dir, script, sizeof script, eval_script, sizeof eval_script) < 0) {
        rc = -1;
    } else if (runfile_dir_has_run_output(run_dir)) {
        rc = record_unrecorded_run(S, t->cid, t->key, attempt, run_dir);
    } else {
        char gpu_type[64], job_name[160], job_id[64];
        snprintf(gpu_type, sizeof gpu_type, "%s", c.gpu_type ? c.gpu_type : "cpu");
        if (o->array) {
            rc = queue_for_array(S, t->cid, t->key, attempt, &c, gpu_type, run_dir, script, eval_script);
        } else {
            snprintf(job_name, sizeof job_name, "segx-%s-%.8s", S->s->name, t->key);
            JobSpec js = {
                .experiment = S->s->name, .cell_key = t->key, .run_dir = run_dir, .script_path = script,
                .job_name = job_name, .attempt = attempt, .gpus = c.gpus, .nodes = c.nodes,
                .cpus_per_task = S->s->cpus_per_gpu, .gpu_type = gpu_type, .time_limit = S->s->time,
            };
            if (S->b->ops->submit(S->b, &js, job_id, sizeof job_id, err, sizeof err) < 0) {
                say(S, 1, "cell %s: %s", t->key, err);
                rc = -1;
            } else {
                int rec = record_submission(S, t->cid, t->key, attempt, run_dir, eval_script, gpu_type, job_id);
                if (rec > 0) S->rc = 1;
                rc = rec < 0 ? -1 : 0;
            }
        }
    }
    plan_cell_clear(&c);
    return rc;
}

// ---- the whole submit -----------------------------------------------------------------------------

static void submit_summary(const Submit *S)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: %zu submitted%s, %zu completed (skipped), %zu in flight (skipped)", S->x.name,
                     S->nsub, S->o->dry_run ? " (dry run)" : "", S->nskip_done, S->nskip_active);
    if (S->neval) n += snprintf(line + n, sizeof line - (size_t)n, ", %zu eval jobs (afterok)", S->neval);
    if (S->nskip_failed)
        n += snprintf(line + n, sizeof line - (size_t)n, ", %zu failed (skipped: --rerun-failed reruns them)", S->nskip_failed);
    snprintf(line + n, sizeof line - (size_t)n, "%s%s", S->b ? " via " : "", S->b ? S->b->ops->name : "");
    say(S, 0, "%s", line);
}

static void submit_close(Submit *S)
{
    for (size_t i = 0; i < S->nq; i++) free(S->queued[i].header);
    free(S->queued);
    for (size_t i = 0; i < S->ncells; i++) free(S->todo[i].params);
    free(S->todo);
    if (S->lock_fd >= 0) close(S->lock_fd);
    sqlite3_finalize(S->sel);
    sqlite3_finalize(S->ins);
    sqlite3_finalize(S->upd);
    sqlite3_finalize(S->eins);
    plan_renderer_close(S->r);
    backend_close(S->b);
    spec_free(S->s);
    db_close(S->db);
}

int submit_experiment(const SubmitOptions *o, size_t *submitted)
{
    Submit S = {.o = o, .lock_fd = -1};
    if (submitted) *submitted = 0;
    int rc = submit_open(&S);
    if (rc == 0 && read_cells(&S) < 0) rc = 1;
    if (rc == 0) {
        for (size_t i = 0; i < S.ncells; i++)
            if (decide(&S, &S.todo[i]) && submit_cell(&S, &S.todo[i]) < 0) { S.rc = 1; break; }
        submit_arrays(&S);
        submit_summary(&S);
        if (submitted) *submitted = S.nsub;
        rc = S.rc;
    }
    submit_close(&S);
    return rc;
}
