// orchestrator/cmd/cmd_submit.c — `segx submit [EXPERIMENT]`: planned (and, on request, failed) cells
// to a backend, one attempts row per submission.
#include "orchestrator/cmd/cli.h"
#include "orchestrator/collect.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/plan.h"
#include "orchestrator/submit.h"
#include "db/db.h"
#include "orchestrator/render.h"
#include "orchestrator/notify.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int submit_find_experiment(sqlite3 *db, const char *name, long long *id, char *name_out, size_t namelen,
                           char *run_root, size_t rrlen, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    const char *sql = name ? "SELECT id, name, run_root FROM experiments WHERE name = ?1"
                           : "SELECT id, name, run_root FROM experiments ORDER BY updated_at DESC";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (name) sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int n = 0;
    char names[1024] = "";
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == 0) {
            *id = sqlite3_column_int64(st, 0);
            snprintf(name_out, namelen, "%s", (const char *)sqlite3_column_text(st, 1));
            snprintf(run_root, rrlen, "%s", (const char *)sqlite3_column_text(st, 2));
        }
        size_t l = strlen(names);
        if (l < sizeof names - 80)
            snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", (const char *)sqlite3_column_text(st, 1));
        n++;
    }
    sqlite3_finalize(st);
    if (n == 0) {
        if (name) snprintf(err, errlen, "no experiment named '%s' in the database (run `segx plan SPEC` first)", name);
        else snprintf(err, errlen, "the database has no experiments yet: run `segx plan SPEC` first");
        return -2;
    }
    if (!name && n > 1) {
        snprintf(err, errlen, "the database holds %d experiments (%s): name one", n, names);
        return -2;
    }
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

static int is_rerunnable(const char *state)
{
    static const char *const bad[] = {"failed", "cancelled", "timeout", "preempted", "out-of-memory", "node-fail", "unknown", NULL};
    for (const char *const *b = bad; *b; b++)
        if (strcmp(state, *b) == 0) return 1;
    return 0;
}

// The eval job of a cell attempt, right after its train job: afterok:<train job id>, so it starts
// only when that job ended with exit 0 (Slurm cancels it otherwise: --kill-on-invalid-dep=yes in
// eval.sh; the local backend does the same). Recorded in eval_jobs; a failed submission is
// recorded too (state failed, reason "not submitted: ..."), and returns -1 with err.
static int submit_eval(Backend *b, const Spec *s, sqlite3_stmt *eins, long long attempt_id, const char *key,
                       int attempt, const char *run_dir, const char *script, const char *cell_gpu_type,
                       const char *train_job, int quiet, char *err, size_t errlen)
{
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
    sqlite3_bind_int64(eins, 1, attempt_id);
    sqlite3_bind_text(eins, 2, b->ops->name, -1, SQLITE_STATIC);
    if (src == 0) sqlite3_bind_text(eins, 3, job_id, -1, SQLITE_STATIC); else sqlite3_bind_null(eins, 3);
    sqlite3_bind_text(eins, 4, src == 0 ? "submitted" : "failed", -1, SQLITE_STATIC);
    if (reason[0]) sqlite3_bind_text(eins, 5, reason, -1, SQLITE_STATIC); else sqlite3_bind_null(eins, 5);
    sqlite3_bind_double(eins, 6, (double)time(NULL));
    sqlite3 *db = sqlite3_db_handle(eins);
    char e[256];
    int ok = db_begin(db, e, sizeof e) == 0 && sqlite3_step(eins) == SQLITE_DONE;
    sqlite3_reset(eins);
    if (ok) ok = db_commit(db, e, sizeof e) == 0;
    if (!ok) db_rollback(db);
    if (!ok) {
        snprintf(err, errlen, "database: %s%s%s", sqlite3_errmsg(sqlite3_db_handle(eins)), src == 0 ? " (submitted as job " : "",
                 src == 0 ? job_id : "");
        if (src == 0) snprintf(err + strlen(err), errlen - strlen(err), ")");
        return -1;
    }
    if (src < 0) return -1;
    if (!quiet) printf("submitted %s attempt %d: eval job %s (after job %s succeeds)\n", key, attempt, job_id, train_job);
    return 0;
}

// What one submission leaves in the DB: the attempts row, the cell's state, and the eval job
// submitted after it (spec eval.job).
typedef struct {
    sqlite3 *db;
    sqlite3_stmt *ins, *upd, *eins;
    Backend *b;
    const Spec *s;
    int quiet;
    size_t nsub, neval;
} Recorder;

// 0 recorded; 1 recorded but its eval job could not be submitted (said on stderr); -1 DB error.
static int record_submission(Recorder *R, long long cid, const char *key, int attempt, const char *run_dir,
                             const char *eval_script, const char *gpu_type, const char *job_id)
{
    char err[2048];
    sqlite3_bind_int64(R->ins, 1, cid);
    sqlite3_bind_int(R->ins, 2, attempt);
    sqlite3_bind_text(R->ins, 3, R->b->ops->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(R->ins, 4, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(R->ins, 5, (double)time(NULL));
    sqlite3_bind_text(R->ins, 6, run_dir, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(R->upd, 1, cid);
    // Committed at once: a submit killed later (a throttled one waits long between jobs) leaves
    // every accepted job recorded, so the next submit never runs a finished cell again.
    int bad = db_begin(R->db, err, sizeof err) < 0;
    bad = bad || sqlite3_step(R->ins) != SQLITE_DONE || sqlite3_step(R->upd) != SQLITE_DONE;
    sqlite3_reset(R->ins);
    sqlite3_reset(R->upd);
    if (!bad) bad = db_commit(R->db, err, sizeof err) < 0;
    if (bad) {
        fprintf(stderr, "segx submit: database: %s (job %s was submitted)\n", sqlite3_errmsg(R->db), job_id);
        db_rollback(R->db);
        return -1;
    }
    long long attempt_id = sqlite3_last_insert_rowid(R->db);
    R->nsub++;
    if (!R->quiet) printf("submitted %s attempt %d: job %s\n", key, attempt, job_id);
    if (!R->s->eval_job) return 0;
    if (submit_eval(R->b, R->s, R->eins, attempt_id, key, attempt, run_dir, eval_script, gpu_type, job_id, R->quiet,
                    err, sizeof err) < 0) {
        fprintf(stderr, "segx submit: cell %s: eval job: %s\n", key, err);
        return 1;
    }
    R->neval++;
    return 0;
}

// ---- job arrays (--array) ---------------------------------------------------------------------
// Cells whose job scripts share the same #SBATCH lines (all but --job-name/--output/--error) go
// into one `sbatch --array=0-K[%N]` job: RUN_ROOT/.arrays/array-XXXXXX/ holds array.sh (those
// lines, --array, logs task-<i>.out/.err there) and index (line i+1 = the job.sh task i runs).
// Each cell's attempt records job id ARRAYID_i; the Slurm backends poll and cancel tasks by it.

typedef struct {
    long long cid;
    char key[32], gpu_type[64];
    int attempt, gpus, nodes;
    char run_dir[PATH_MAX + 64], script[PATH_MAX + 96], eval_script[PATH_MAX + 96];
    char *header;      // the script's #SBATCH lines that decide where and how it runs
    int group;         // array it goes into (index of the first cell with the same header)
} Queued;

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

// Writes one array's folder and submits it; records every task. Returns 0, or -1 (err said).
static int submit_array(Recorder *R, const char *run_root, Queued *q, size_t n, int group, int throttle, int *rc)
{
    const Spec *s = R->s;
    char dir[PATH_MAX + 128], path[PATH_MAX + 160], err[2048];
    snprintf(dir, sizeof dir, "%s/.arrays", run_root);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "segx submit: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    snprintf(dir, sizeof dir, "%s/.arrays/array-XXXXXX", run_root);
    if (!mkdtemp(dir)) { fprintf(stderr, "segx submit: %s: %s\n", dir, strerror(errno)); return -1; }
    chmod(dir, 0755);
    size_t ntasks = 0, first = 0;
    snprintf(path, sizeof path, "%s/index", dir);
    FILE *f = fopen(path, "w");
    for (size_t i = 0; f && i < n; i++)
        if (q[i].group == group) {
            if (!ntasks) first = i;
            fprintf(f, "%s\n", q[i].script);
            ntasks++;
        }
    if (!f || fclose(f) != 0) { fprintf(stderr, "segx submit: %s: cannot write\n", path); return -1; }
    char *qdir = render_shell_quote(dir);
    snprintf(path, sizeof path, "%s/array.sh", dir);
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "#!/usr/bin/env bash\n%s", q[first].header);
        fprintf(f, "#SBATCH --job-name=segx-%s-array\n#SBATCH --output=%s/task-%%a.out\n#SBATCH --error=%s/task-%%a.err\n",
                s->name, dir, dir);
        fprintf(f, "#SBATCH --array=0-%zu", ntasks - 1);
        if (throttle > 0) fprintf(f, "%%%d", throttle);
        fprintf(f, "\n# segx job array of experiment %s: task i runs the job script on line i+1 of index\n", s->name);
        fprintf(f, "script=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" %s/index)\n", qdir);
        fprintf(f, "[ -n \"$script\" ] || { echo \"segx array: no line $((SLURM_ARRAY_TASK_ID + 1)) in %s/index\" >&2; exit 1; }\n", dir);
        fprintf(f, "exec bash \"$script\"\n");
    }
    free(qdir);
    if (!f || fclose(f) != 0) { fprintf(stderr, "segx submit: %s: cannot write\n", path); return -1; }
    char job_name[160], array_id[64];
    snprintf(job_name, sizeof job_name, "segx-%s-array", s->name);
    const char *base = strrchr(dir, '/') + 1;
    JobSpec js = {
        .experiment = s->name, .cell_key = base, .run_dir = dir, .script_path = path, .job_name = job_name,
        .attempt = 0, .gpus = q[first].gpus, .nodes = q[first].nodes, .cpus_per_task = s->cpus_per_gpu,
        .gpu_type = q[first].gpu_type, .time_limit = s->time, .kind = "array",
    };
    if (R->b->ops->submit(R->b, &js, array_id, sizeof array_id, err, sizeof err) < 0) {
        fprintf(stderr, "segx submit: job array of %zu cells (%s): %s\n", ntasks, dir, err);
        return -1;
    }
    if (!R->quiet) printf("submitted job array %s: %zu cells%s (%s)\n", array_id, ntasks, throttle > 0 ? ", throttled" : "", dir);
    size_t task = 0;
    for (size_t i = 0; i < n; i++) {
        if (q[i].group != group) continue;
        char job_id[96];
        snprintf(job_id, sizeof job_id, "%s_%zu", array_id, task++);
        int r = record_submission(R, q[i].cid, q[i].key, q[i].attempt, q[i].run_dir, q[i].eval_script, q[i].gpu_type, job_id);
        if (r < 0) return -1;
        if (r > 0) *rc = 1;
    }
    return 0;
}

// RUN_ROOT/.submit.lock, held (flock) while a submit of the experiment runs. 0 with *fd, -1 said.
static int lock_experiment(const char *run_root, const char *name, int *fd)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s", run_root);   // (a purged run root is rendered again below)
    for (char *p = path + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(path, 0755); *p = '/'; }
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/.submit.lock", run_root);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) {
        fprintf(stderr, "segx submit: %s: cannot create the submit lock: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return 0;
    fprintf(stderr, "segx submit: another segx submit of '%s' is running: waiting for it to finish (%s)\n", name, path);
    while (flock(*fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            fprintf(stderr, "segx submit: %s: %s\n", path, strerror(errno));
            close(*fd);
            *fd = -1;
            return -1;
        }
    return 0;
}

// A dir that plan or submit rendered holds job.sh (and eval.sh) only; a job that ran leaves more.
static int has_run_output(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int any = 0;
    while (!any && (de = readdir(d)))
        any = strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "job.sh") &&
              strcmp(de->d_name, "eval.sh");
    closedir(d);
    return any;
}

// An attempt dir with a run's output but no row: a submit was killed after the controller had
// accepted the job and before it was recorded. The attempt is recorded (no job id; collect and
// status settle it from its exit_code) instead of running the cell into the same dir again.
static int record_unrecorded_run(sqlite3 *db, const char *backend, long long cid, const char *key, int attempt,
                                 const char *run_dir, int quiet)
{
    sqlite3_stmt *st = NULL;
    char err[512];
    int ok = db_begin(db, err, sizeof err) == 0 &&
             sqlite3_prepare_v2(db, "INSERT INTO attempts(cell_id, attempt, backend, state, run_dir) VALUES(?1, ?2, ?3, 'unknown', ?4)",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, cid);
        sqlite3_bind_int(st, 2, attempt);
        sqlite3_bind_text(st, 3, backend, -1, SQLITE_STATIC);
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
        fprintf(stderr, "segx submit: database: %s\n", sqlite3_errmsg(db));
        db_rollback(db);
        return -1;
    }
    if (!quiet)
        printf("cell %s attempt %d: %s already holds the output of a run that was never recorded (an interrupted "
               "submit?): recorded, not run again (`segx collect` reads it)\n", key, attempt, run_dir);
    return 0;
}

int submit_experiment(const SubmitOptions *o, size_t *submitted)
{
    char err[2048], name[256], run_root[PATH_MAX], opts[PATH_MAX + 128];
    size_t nsub = 0, nskip_done = 0, nskip_active = 0, nskip_failed = 0;
    if (submitted) *submitted = 0;
    sqlite3 *db;
    if (db_open(db_path_default(o->db_path), DB_EXISTING, &db, err, sizeof err) < 0) {
        fprintf(stderr, "segx submit: %s\n", err);
        return 1;
    }
    long long eid;
    int frc = submit_find_experiment(db, o->experiment, &eid, name, sizeof name, run_root, sizeof run_root, err, sizeof err);
    if (frc < 0) {
        fprintf(stderr, "segx submit: %s\n", err);
        db_close(db);
        return frc == -2 ? 2 : 1;
    }
    Spec *s = NULL;
    Backend *b = NULL;
    PlanRenderer *r = NULL;
    sqlite3_stmt *sel = NULL, *ins = NULL, *upd = NULL, *eins = NULL;
    size_t neval = 0;
    int rc = 1, lock_fd = -1;
    typedef struct { long long cid; char key[32]; char *params; int last; char state[32]; } Todo;
    Todo *todo = NULL;
    size_t ncells = 0, capcells = 0;
    Recorder R = {0};
    Queued *queued = NULL;
    size_t nq = 0, capq = 0;
    if (o->notify_url && !o->dry_run && notify_set_url(run_root, o->notify_url, err, sizeof err) < 0) {
        fprintf(stderr, "segx submit: %s\n", err);
        rc = 2;
        goto out;
    }
    if (load_spec(db, eid, &s, err, sizeof err) < 0) {
        fprintf(stderr, "segx submit: the stored spec of '%s' no longer loads: %s (plan it again)\n", name, err);
        goto out;
    }
    submit_backend_options(run_root, o->max_parallel > 0 ? o->max_parallel : SUBMIT_SLOTS_CORES, opts, sizeof opts);
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
    if (!o->dry_run && backend_open(o->backend ? o->backend : "auto", opts, &b, err, sizeof err) < 0) {
        fprintf(stderr, "segx submit: %s\n", err);
        rc = strstr(err, "unknown backend") ? 2 : 1;
        goto out;
    }
    if (sqlite3_prepare_v2(db,
            "SELECT c.id, c.key, c.params, COALESCE(a.attempt, 0), COALESCE(a.state, 'planned') FROM cells c "
            "LEFT JOIN attempts a ON a.cell_id = c.id AND a.attempt = (SELECT max(attempt) FROM attempts WHERE cell_id = c.id) "
            "WHERE c.experiment_id = ?1 ORDER BY c.id", -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
            "INSERT INTO attempts(cell_id, attempt, backend, job_id, state, submit_time, run_dir) "
            "VALUES(?1, ?2, ?3, ?4, 'submitted', ?5, ?6)", -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE cells SET state = 'submitted' WHERE id = ?1", -1, &upd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
            "INSERT OR REPLACE INTO eval_jobs(attempt_id, backend, job_id, state, reason, submit_time) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6)", -1, &eins, NULL) != SQLITE_OK) {
        fprintf(stderr, "segx submit: database: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_int64(sel, 1, eid);
    R = (Recorder){.db = db, .ins = ins, .upd = upd, .eins = eins, .b = b, .s = s, .quiet = o->quiet};
    if (o->array && !o->dry_run && strcmp(b->ops->name, "slurm") && strcmp(b->ops->name, "slurm-cli") &&
        strcmp(b->ops->name, "slurm-rest")) {
        fprintf(stderr, "segx submit: --array: job arrays are a Slurm feature; backend %s runs each cell as its own job "
                "(drop --array, or use --backend slurm, slurm-rest or slurm-cli)\n", b->ops->name);
        rc = 2;
        goto out;
    }
    if (!o->dry_run) {
        // Each submission is committed on its own (below), so two submits of one experiment must
        // not interleave: the second waits for the first (the lock goes with the process, kill -9
        // included).
        if (lock_experiment(run_root, name, &lock_fd) < 0) goto out;
        int forgot = collect_forget_invented(db, eid, 1, err, sizeof err);
        if (forgot < 0) { fprintf(stderr, "segx submit: %s\n", err); goto out; }
        if (forgot > 0 && !o->quiet)
            printf("%d planned cell(s) had an 'unknown' attempt that an older segx collect recorded: removed, so they are submitted now\n", forgot);
    }
    rc = 0;
    // Read the cells first: the loop below writes attempts and cells rows.
    while (sqlite3_step(sel) == SQLITE_ROW) {
        if (ncells == capcells) {
            capcells = capcells ? capcells * 2 : 256;
            Todo *nt = realloc(todo, capcells * sizeof *todo);
            if (!nt) { fprintf(stderr, "segx submit: out of memory\n"); rc = 1; goto out; }
            todo = nt;
        }
        Todo *t = &todo[ncells++];
        t->cid = sqlite3_column_int64(sel, 0);
        snprintf(t->key, sizeof t->key, "%s", (const char *)sqlite3_column_text(sel, 1));
        t->params = strdup((const char *)sqlite3_column_text(sel, 2));
        t->last = sqlite3_column_int(sel, 3);
        snprintf(t->state, sizeof t->state, "%s", (const char *)sqlite3_column_text(sel, 4));
    }
    for (size_t ti = 0; ti < ncells; ti++) {
        long long cid = todo[ti].cid;
        const char *key = todo[ti].key;
        int last = todo[ti].last;
        const char *state = todo[ti].state;
        if (last > 0 && strcmp(state, "completed") == 0) { nskip_done++; continue; }
        if (last > 0 && !is_rerunnable(state)) { nskip_active++; continue; }
        if (last > 0 && !o->rerun_failed) { nskip_failed++; continue; }
        int attempt = last + 1;
        PlanCell c;
        if (!todo[ti].params || plan_cell_from_params(s, todo[ti].params, &c, err, sizeof err) < 0) {
            fprintf(stderr, "segx submit: cell %s: %s\n", key, err);
            rc = 1;
            break;
        }
        char run_dir[PATH_MAX + 64], script[PATH_MAX + 96];
        snprintf(run_dir, sizeof run_dir, "%s/%s/attempt-%d", run_root, key, attempt);
        snprintf(script, sizeof script, "%s/job.sh", run_dir);
        char eval_script[PATH_MAX + 96];
        snprintf(eval_script, sizeof eval_script, "%s/eval.sh", run_dir);
        struct stat sb;
        if (s->eval_job && stat(eval_script, &sb) != 0 && !o->dry_run) {
            // an eval job added to the spec after plan, or a later attempt: render it now
            char *text = NULL;
            if ((!r && plan_renderer_open(s, cli_templates_dir(), run_root, &r, err, sizeof err) < 0) ||
                plan_render_eval_text(r, &c, attempt, run_dir, &text, err, sizeof err) < 0 ||
                plan_write_eval(run_dir, text, eval_script, sizeof eval_script, err, sizeof err) < 0) {
                fprintf(stderr, "segx submit: %s\n", err);
                free(text);
                plan_cell_clear(&c);
                rc = 1;
                break;
            }
            free(text);
        }
        if (stat(script, &sb) != 0 && !o->dry_run) {
            // attempts after the first (or a removed run dir) are rendered now
            if (!r && plan_renderer_open(s, cli_templates_dir(), run_root, &r, err, sizeof err) < 0) {
                fprintf(stderr, "segx submit: %s\n", err);
                plan_cell_clear(&c);
                rc = 1;
                break;
            }
            if (plan_render_job(r, &c, attempt, script, sizeof script, run_dir, sizeof run_dir, err, sizeof err) < 0) {
                fprintf(stderr, "segx submit: %s\n", err);
                plan_cell_clear(&c);
                rc = 1;
                break;
            }
        }
        if (!o->dry_run && has_run_output(run_dir)) {
            plan_cell_clear(&c);
            if (record_unrecorded_run(db, b->ops->name, cid, key, attempt, run_dir, o->quiet) < 0) { rc = 1; break; }
            continue;
        }
        if (o->dry_run) {
            if (!o->quiet) printf("would submit %s attempt %d: %s%s%s\n", key, attempt, script,
                                  s->eval_job ? ", then its eval job after it: " : "", s->eval_job ? eval_script : "");
            nsub++;
            plan_cell_clear(&c);
            continue;
        }
        char gpu_type[64];
        snprintf(gpu_type, sizeof gpu_type, "%s", c.gpu_type ? c.gpu_type : "cpu");
        if (o->array) {   // submitted below, grouped into job arrays
            if (nq == capq) {
                capq = capq ? 2 * capq : 64;
                Queued *nqv = realloc(queued, capq * sizeof *queued);
                if (!nqv) { fprintf(stderr, "segx submit: out of memory\n"); plan_cell_clear(&c); rc = 1; break; }
                queued = nqv;
            }
            Queued *x = &queued[nq];
            memset(x, 0, sizeof *x);
            x->cid = cid;
            snprintf(x->key, sizeof x->key, "%s", key);
            snprintf(x->gpu_type, sizeof x->gpu_type, "%s", gpu_type);
            x->attempt = attempt;
            x->gpus = c.gpus;
            x->nodes = c.nodes;
            snprintf(x->run_dir, sizeof x->run_dir, "%s", run_dir);
            snprintf(x->script, sizeof x->script, "%s", script);
            snprintf(x->eval_script, sizeof x->eval_script, "%s", eval_script);
            plan_cell_clear(&c);
            if (!(x->header = sbatch_header(script))) {
                fprintf(stderr, "segx submit: cell %s: cannot read %s\n", key, script);
                rc = 1;
                break;
            }
            nq++;
            continue;
        }
        char job_name[160], job_id[64];
        snprintf(job_name, sizeof job_name, "segx-%s-%.8s", s->name, key);
        JobSpec js = {
            .experiment = s->name, .cell_key = key, .run_dir = run_dir, .script_path = script,
            .job_name = job_name, .attempt = attempt, .gpus = c.gpus, .nodes = c.nodes,
            .cpus_per_task = s->cpus_per_gpu, .gpu_type = c.gpu_type ? c.gpu_type : "cpu",
            .time_limit = s->time,
        };
        int src = b->ops->submit(b, &js, job_id, sizeof job_id, err, sizeof err);
        plan_cell_clear(&c);
        if (src < 0) {
            fprintf(stderr, "segx submit: cell %s: %s\n", key, err);
            rc = 1;
            break;
        }
        int rec = record_submission(&R, cid, key, attempt, run_dir, eval_script, gpu_type, job_id);
        if (rec < 0) { rc = 1; break; }
        if (rec > 0) rc = 1;
    }
    // --array: one job array per distinct #SBATCH header, in the order the cells came
    for (size_t i = 0; i < nq; i++) {
        queued[i].group = (int)i;
        for (size_t j = 0; j < i; j++)
            if (strcmp(queued[j].header, queued[i].header) == 0) { queued[i].group = queued[j].group; break; }
    }
    for (size_t i = 0; rc == 0 && i < nq; i++)
        if (queued[i].group == (int)i && submit_array(&R, run_root, queued, nq, (int)i, o->array_throttle, &rc) < 0) rc = 1;
    nsub += R.nsub;   // (a dry run counts in nsub itself)
    neval += R.neval;
    printf("%s: %zu submitted%s, %zu completed (skipped), %zu in flight (skipped)", name, nsub,
           o->dry_run ? " (dry run)" : "", nskip_done, nskip_active);
    if (neval) printf(", %zu eval jobs (afterok)", neval);
    if (nskip_failed) printf(", %zu failed (skipped: --rerun-failed reruns them)", nskip_failed);
    printf("%s%s\n", b ? " via " : "", b ? b->ops->name : "");
    if (submitted) *submitted = nsub;
out:
    for (size_t i = 0; i < nq; i++) free(queued[i].header);
    free(queued);
    for (size_t i = 0; i < ncells; i++) free(todo[i].params);
    free(todo);
    if (lock_fd >= 0) close(lock_fd);
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    sqlite3_finalize(eins);
    plan_renderer_close(r);
    backend_close(b);
    spec_free(s);
    db_close(db);
    return rc;
}

int cmd_submit(int argc, char **argv)
{
    SubmitOptions o = {0};
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &o.db_path, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"backend", 'b', CLI_STRING, &o.backend, "NAME", "auto (default: slurm if reachable and of the controller's release, else slurm-rest, slurm-cli, local), local, slurm, slurm-rest, slurm-cli"},
        {"max-parallel", 'j', CLI_INT, &o.max_parallel, "N", "local backend: jobs at once (default: as many as fit the cores, each taking gpus x cpus_per_gpu)"},
        {"max-submitted", 0, CLI_INT, &o.max_submitted, "N", "Slurm backends: keep at most N of the jobs this submit sends queued or running, waiting for one to leave before sending the next (QOS MaxSubmitJobs)"},
        {"rerun-failed", 0, CLI_FLAG, &o.rerun_failed, NULL, "submit failed/cancelled/timed-out cells again (new attempt)"},
        {"array", 0, CLI_FLAG, &o.array, NULL, "Slurm: cells whose job scripts share their #SBATCH lines go into one job array"},
        {"array-throttle", 0, CLI_INT, &o.array_throttle, "N", "with --array: at most N tasks of an array run at once (--array=0-K%N)"},
        {"dry-run", 'n', CLI_FLAG, &o.dry_run, NULL, "list what would be submitted"},
        {"quiet", 'q', CLI_FLAG, &o.quiet, NULL, "only the summary line"},
        {"notify", 0, CLI_STRING, &o.notify_url, "URL", "POST JSON (Slack/Mattermost 'text' + fields) when the experiment finishes or a cell fails; sent by the next segx status/run"},
        {0}};
    const CliCommand cmd = {
        "segx submit [EXPERIMENT] [options]",
        "Sends every planned cell of the experiment to a backend, one job per cell. Idempotent:\n"
        "completed and in-flight cells are never submitted again; failed ones only with --rerun-failed.\n"
        "The local backend runs jobs as child processes of a detached agent on this machine.",
        opts, 0, 1, "examples:\n  segx submit quickstart --backend local --max-parallel 2"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (o.max_parallel < 0) { fprintf(stderr, "segx submit: --max-parallel must be >= 1\n"); return 2; }
    if (o.max_submitted < 0) { fprintf(stderr, "segx submit: --max-submitted must be >= 1\n"); return 2; }
    if (o.array_throttle < 0) { fprintf(stderr, "segx submit: --array-throttle must be >= 1\n"); return 2; }
    if (o.array_throttle > 0 && !o.array) { fprintf(stderr, "segx submit: --array-throttle N needs --array\n"); return 2; }
    o.experiment = a.npos ? a.pos[0] : NULL;
    return submit_experiment(&o, NULL);
}
