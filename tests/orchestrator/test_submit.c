// tests/orchestrator/test_submit.c — submit and status logic called directly (submit.h, status.h),
// against a fake BackendOps that records every call and answers what the test chose, and against
// the real local backend (jobs run, status settles them from the scheduler and the run dirs).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "db/db.h"
#include "orchestrator/backend/local_jobs.h"
#include "orchestrator/plan.h"
#include "orchestrator/plan_spec.h"
#include "orchestrator/submit.h"

static char tmpdir[256];

// ---- the fake backend -----------------------------------------------------------------------------

typedef struct {
    int opened, closed, nsubmit, ncancel, npoll;
    int fail_at;                 // the submit call (1-based) that fails; 0: none
    int poll_fails;              // poll answers an error (an unreachable scheduler)
    JobState poll_state;         // what poll says of every job
    size_t polled;               // jobs asked about in the last poll
    char name[32];               // the name it was opened as
    char key[16][32], dep[16][64], kind[16][16], script[16][1024];
} Fake;
static Fake fake;

static int fake_submit(Backend *b, const JobSpec *job, char *id, size_t idlen, char *err, size_t errlen)
{
    (void)b;
    int i = fake.nsubmit++;
    if (fake.fail_at == fake.nsubmit) { snprintf(err, errlen, "fake: queue full"); return -1; }
    if (i < 16) {
        snprintf(fake.key[i], sizeof fake.key[i], "%s", job->cell_key);
        snprintf(fake.dep[i], sizeof fake.dep[i], "%s", job->dependency ? job->dependency : "");
        snprintf(fake.kind[i], sizeof fake.kind[i], "%s", job->kind ? job->kind : "");
        snprintf(fake.script[i], sizeof fake.script[i], "%s", job->script_path);
    }
    snprintf(id, idlen, "F%d", fake.nsubmit);
    return 0;
}

static int fake_poll(Backend *b, const char *const *ids, size_t n, JobStatus *out, char *err, size_t errlen)
{
    (void)b; (void)ids; (void)err; (void)errlen;
    fake.npoll++;
    fake.polled = n;
    if (fake.poll_fails) { snprintf(err, errlen, "fake: controller down"); return -1; }
    for (size_t i = 0; i < n; i++) { memset(&out[i], 0, sizeof out[i]); out[i].state = fake.poll_state; out[i].exit_code = -1; }
    return 0;
}

static int fake_cancel(Backend *b, const char *id, char *err, size_t errlen)
{
    (void)b; (void)id; (void)err; (void)errlen;
    fake.ncancel++;
    return 0;
}

static void fake_close(Backend *b) { fake.closed++; free(b); }

static const BackendOps FAKE_OPS = {"fake", fake_submit, fake_poll, fake_cancel, fake_close};

static int fake_open(const char *name, const char *opts, Backend **out, char *err, size_t errlen)
{
    (void)opts; (void)err; (void)errlen;
    fake.opened++;
    snprintf(fake.name, sizeof fake.name, "%s", name);
    *out = calloc(1, sizeof **out);
    (*out)->ops = &FAKE_OPS;
    return 0;
}

// ---- helpers --------------------------------------------------------------------------------------

typedef struct { char lines[64][512]; int n, problems; } Said;
static void say(void *ctx, int problem, const char *line)
{
    Said *s = ctx;
    if (s->n < 64) snprintf(s->lines[s->n++], sizeof s->lines[0], "%s%s", problem ? "! " : "", line);
    s->problems += problem;
}
static const char *last_line(const Said *s) { return s->n ? s->lines[s->n - 1] : ""; }

// Plans a spec with one cell per value of code (the job exits with it) into tmpdir/NAME.db.
static void plan(const char *name, const char *codes, int eval, char *db, size_t dblen)
{
    char spec[512], runs[512];
    snprintf(spec, sizeof spec, "%s/%s.json", tmpdir, name);
    snprintf(runs, sizeof runs, "%s/runs", tmpdir);
    snprintf(db, dblen, "%s/%s.db", tmpdir, name);
    FILE *f = fopen(spec, "w");
    assert_non_null(f);
    fprintf(f, "{\"name\": \"%s\", \"trainer\": {\"command\": \"bash -c 'echo ran >{{run_dir}}/ran; exit {{fail_at}}'\", "
               "\"launch\": \"once\"}, \"matrix\": {\"model\": [\"m\"], \"fail_at\": [%s], \"gpu_type\": [\"cpu\"], \"gpus\": [1], \"batch_per_gpu\": [8]}%s}",
            name, codes, eval ? ", \"eval\": {\"job\": {\"time\": \"00:05:00\", \"command\": \"true\"}}" : "");
    fclose(f);
    PlanOptions o = {.db_path = db, .runs_dir = runs, .quiet = 1};
    PlanOutcome out;
    char err[1024];
    assert_int_equal(plan_spec_run(spec, &o, &out, err, sizeof err), 0);
    plan_outcome_free(&out);
}

static long long q_int(const char *db_path, const char *sql)
{
    sqlite3 *db;
    char err[512];
    if (db_open(db_path, DB_EXISTING, &db, err, sizeof err) < 0) fail_msg("%s", err);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    db_close(db);
    return v;
}

static void exec_sql(const char *db_path, const char *sql)
{
    sqlite3 *db;
    char err[512];
    if (db_open(db_path, DB_EXISTING, &db, err, sizeof err) < 0) fail_msg("%s", err);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    db_close(db);
}

// ---- against the fake ---------------------------------------------------------------------------

static void test_submit_fake(void **state)
{
    (void)state;
    char db[512];
    plan("fk", "0, 1, 2", 1, db, sizeof db);
    memset(&fake, 0, sizeof fake);
    Said said = {0};
    size_t nsub = 99;
    SubmitOptions o = {.db_path = db, .experiment = "fk", .backend = "whatever", .open = fake_open, .say = say, .say_ctx = &said};
    assert_int_equal(submit_experiment(&o, &nsub), 0);
    assert_int_equal(nsub, 3);
    assert_int_equal(fake.opened, 1);
    assert_int_equal(fake.closed, 1);
    assert_string_equal(fake.name, "whatever");   // the backend named in the options
    assert_int_equal(fake.nsubmit, 6);           // 3 train jobs, each followed by its eval job
    for (int i = 0; i < 6; i += 2) {
        assert_string_equal(fake.kind[i], "");
        assert_string_equal(fake.kind[i + 1], "eval");
        char dep[64];
        snprintf(dep, sizeof dep, "afterok:F%d", i + 1);   // the eval job waits for its train job
        assert_string_equal(fake.dep[i + 1], dep);
        assert_string_equal(fake.key[i], fake.key[i + 1]);
        assert_non_null(strstr(fake.script[i], "/attempt-1/job.sh"));
        assert_non_null(strstr(fake.script[i + 1], "/attempt-1/eval.sh"));
    }
    assert_int_equal(said.problems, 0);
    assert_string_equal(last_line(&said), "fk: 3 submitted, 0 completed (skipped), 0 in flight (skipped), 3 eval jobs (afterok) via fake");
    assert_int_equal(q_int(db, "SELECT count(*) FROM attempts WHERE state = 'submitted' AND backend = 'fake' AND job_id LIKE 'F%'"), 3);
    assert_int_equal(q_int(db, "SELECT count(*) FROM eval_jobs WHERE state = 'submitted'"), 3);
    assert_int_equal(q_int(db, "SELECT count(*) FROM cells WHERE state = 'submitted'"), 3);

    // again: every cell is in flight, nothing is sent
    memset(&fake, 0, sizeof fake);
    said.n = 0;
    assert_int_equal(submit_experiment(&o, &nsub), 0);
    assert_int_equal(nsub, 0);
    assert_int_equal(fake.nsubmit, 0);
    assert_string_equal(last_line(&said), "fk: 0 submitted, 0 completed (skipped), 3 in flight (skipped) via fake");

    // two cells failed: skipped without rerun_failed, attempt 2 (rendered now) with it
    exec_sql(db, "UPDATE attempts SET state = 'failed' WHERE cell_id IN (SELECT id FROM cells ORDER BY id LIMIT 2);"
                 "UPDATE cells SET state = 'failed' WHERE id IN (SELECT id FROM cells ORDER BY id LIMIT 2)");
    said.n = 0;
    assert_int_equal(submit_experiment(&o, &nsub), 0);
    assert_int_equal(nsub, 0);
    assert_non_null(strstr(last_line(&said), "2 failed (skipped: --rerun-failed reruns them)"));
    o.rerun_failed = 1;
    memset(&fake, 0, sizeof fake);
    assert_int_equal(submit_experiment(&o, &nsub), 0);
    assert_int_equal(nsub, 2);
    assert_int_equal(fake.nsubmit, 4);
    assert_non_null(strstr(fake.script[0], "/attempt-2/job.sh"));
    struct stat sb;
    assert_int_equal(stat(fake.script[0], &sb), 0);   // rendered by submit
    assert_int_equal(q_int(db, "SELECT count(*) FROM attempts WHERE attempt = 2 AND state = 'submitted'"), 2);
}

static void test_submit_fake_refuses(void **state)
{
    (void)state;
    char db[512];
    plan("fr", "0, 1, 2, 3", 0, db, sizeof db);
    memset(&fake, 0, sizeof fake);
    fake.fail_at = 2;   // the scheduler refuses the second job: submit stops there
    Said said = {0};
    size_t nsub;
    SubmitOptions o = {.db_path = db, .experiment = "fr", .open = fake_open, .say = say, .say_ctx = &said};
    assert_int_equal(submit_experiment(&o, &nsub), 1);
    assert_int_equal(nsub, 1);
    assert_int_equal(fake.nsubmit, 2);
    assert_int_equal(said.problems, 1);
    int found = 0;
    for (int i = 0; i < said.n; i++) found |= strstr(said.lines[i], "! cell ") && strstr(said.lines[i], ": fake: queue full");
    assert_true(found);
    assert_int_equal(q_int(db, "SELECT count(*) FROM attempts"), 1);   // only what the scheduler took
    assert_int_equal(q_int(db, "SELECT count(*) FROM cells WHERE state = 'planned'"), 3);
    // a dry run opens no backend and changes nothing
    memset(&fake, 0, sizeof fake);
    said = (Said){0};
    o.dry_run = 1;
    assert_int_equal(submit_experiment(&o, &nsub), 0);
    assert_int_equal(nsub, 3);
    assert_int_equal(fake.opened, 0);
    assert_non_null(strstr(said.lines[0], "would submit "));
    assert_int_equal(q_int(db, "SELECT count(*) FROM attempts"), 1);
    // unknown experiment: a usage error, said, nothing opened
    said = (Said){0};
    o.experiment = "nope";
    assert_int_equal(submit_experiment(&o, &nsub), 2);
    assert_non_null(strstr(said.lines[0], "no experiment named 'nope'"));
    assert_int_equal(fake.opened, 0);
}

static void test_status_fake(void **state)
{
    (void)state;
    char db[512];
    plan("st", "0, 1", 1, db, sizeof db);
    memset(&fake, 0, sizeof fake);
    Said said = {0};
    SubmitOptions o = {.db_path = db, .experiment = "st", .open = fake_open, .say = say, .say_ctx = &said};
    assert_int_equal(submit_experiment(&o, NULL), 0);
    sqlite3 *h;
    char err[1024];
    assert_int_equal(db_open(db, DB_EXISTING, &h, err, sizeof err), 0);
    // every job in flight, 2 train + 2 eval jobs, all of backend "fake": one open, one poll for all 4
    memset(&fake, 0, sizeof fake);
    fake.poll_state = JOB_RUNNING;
    StatusRefreshOptions so = {.write_wait_ms = -1, .open = fake_open};
    StatusCounts c;
    assert_int_equal(status_refresh_ex(h, 1, &so, &c, err, sizeof err), 0);
    assert_int_equal(fake.opened, 1);
    assert_int_equal(fake.npoll, 1);
    assert_int_equal(fake.polled, 4);
    assert_int_equal(c.total, 2);
    assert_int_equal(c.by_state[JOB_RUNNING], 2);
    assert_int_equal(c.evals_in_flight, 2);
    assert_int_equal(c.poll_failed, 0);
    // the scheduler does not answer: states stay as stored, said as poll_failed
    memset(&fake, 0, sizeof fake);
    fake.poll_fails = 1;
    assert_int_equal(status_refresh_ex(h, 1, &so, &c, err, sizeof err), 0);
    assert_int_equal(c.poll_failed, 1);
    assert_int_equal(c.by_state[JOB_RUNNING], 2);
    // the scheduler forgot the jobs: their run dirs settle them (exit 0 -> completed, 99 -> preempted
    // for a requeue; the eval jobs: eval_exit_code, else cancelled when their train job failed)
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT a.run_dir, json_extract(c.params, '$.fail_at') FROM attempts a "
                                           "JOIN cells c ON c.id = a.cell_id ORDER BY c.id", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char p[1200];
        int fail_at = sqlite3_column_int(st, 1);
        snprintf(p, sizeof p, "%s/exit_code", (const char *)sqlite3_column_text(st, 0));
        FILE *f = fopen(p, "w");
        fprintf(f, "%d\n", fail_at ? 99 : 0);
        fclose(f);
        if (!fail_at) {
            snprintf(p, sizeof p, "%s/eval_exit_code", (const char *)sqlite3_column_text(st, 0));
            f = fopen(p, "w");
            fputs("0\n", f);
            fclose(f);
        }
    }
    sqlite3_finalize(st);
    memset(&fake, 0, sizeof fake);
    fake.poll_state = JOB_UNKNOWN;
    assert_int_equal(status_refresh_ex(h, 1, &so, &c, err, sizeof err), 0);
    db_close(h);
    assert_int_equal(c.by_state[JOB_COMPLETED], 1);
    assert_int_equal(c.by_state[JOB_PREEMPTED], 1);
    assert_int_equal(c.evals_in_flight, 0);
    assert_int_equal(q_int(db, "SELECT count(*) FROM eval_jobs WHERE state = 'completed' AND exit_code = 0"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM eval_jobs WHERE state = 'cancelled' AND reason LIKE "
                               "'dependency failed: the train job ended with exit code 99'"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM attempts WHERE state = 'preempted' AND exit_code = 99"), 1);
}

// ---- against the local backend ------------------------------------------------------------------

static void test_submit_status_local(void **state)
{
    (void)state;
    char db[512];
    plan("lc", "0, 3", 0, db, sizeof db);
    Said said = {0};
    size_t nsub;
    SubmitOptions o = {.db_path = db, .experiment = "lc", .backend = "local", .max_parallel = 2, .say = say, .say_ctx = &said};
    assert_int_equal(submit_experiment(&o, &nsub), 0);
    assert_int_equal(nsub, 2);
    assert_non_null(strstr(last_line(&said), "via local"));
    sqlite3 *h;
    char err[1024];
    assert_int_equal(db_open(db, DB_EXISTING, &h, err, sizeof err), 0);
    StatusCounts c = {0};
    time_t t0 = time(NULL);
    for (;;) {   // wait for both jobs to settle (generous: the machine may be loaded)
        if (status_refresh(h, 1, &c, err, sizeof err) < 0) fail_msg("%s", err);
        if (c.by_state[JOB_COMPLETED] + c.by_state[JOB_FAILED] == 2) break;
        if (time(NULL) - t0 > 300) fail_msg("jobs did not settle in 300 s");
        usleep(100000);
    }
    db_close(h);
    assert_int_equal(c.total, 2);
    assert_int_equal(c.by_state[JOB_COMPLETED], 1);
    assert_int_equal(c.by_state[JOB_FAILED], 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id "
                               "WHERE a.exit_code = 3 AND a.state = 'failed' AND c.state = 'failed'"), 1);
    char state_dir[600];
    snprintf(state_dir, sizeof state_dir, "%s/runs/.local", tmpdir);
    for (int i = 0; i < 300 && local_agent_alive(state_dir); i++) usleep(100000);
}

static int setup(void **state)
{
    (void)state;
    unsetenv("SEGX_LOCAL_CPUS");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-test-submit-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    const char *root = getenv("SEGX_ROOT");
    char t[1024];
    snprintf(t, sizeof t, "%s/templates", root && *root ? root : ".");
    setenv("SEGX_TEMPLATES", t, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_fake),
        cmocka_unit_test(test_submit_fake_refuses),
        cmocka_unit_test(test_status_fake),
        cmocka_unit_test(test_submit_status_local),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
