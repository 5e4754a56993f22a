// tests/orchestrator/test_local.c — the local backend with real processes: max-parallel honoured
// (job start/end times never overlap with 1 slot), exit codes and failure reasons, cancel kills
// the whole process group, time limits, and the agent exits when idle.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "orchestrator/backend/backend.h"
#include "orchestrator/backend/local_jobs.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    unsetenv("SEGX_LOCAL_CPUS");   // the tests set the cores they share themselves
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-test-local-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char state_dir[512];
    snprintf(state_dir, sizeof state_dir, "%s/state", tmpdir);
    for (int i = 0; i < 100 && local_agent_alive(state_dir); i++) usleep(100000);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

// Writes RUN_DIR/job.sh (#SBATCH header lines, then body) and returns the run dir.
static void make_job_h(const char *name, const char *header, const char *body, char *run_dir, size_t rlen,
                       char *script, size_t slen)
{
    snprintf(run_dir, rlen, "%s/%s", tmpdir, name);
    mkdir(run_dir, 0755);
    snprintf(script, slen, "%s/job.sh", run_dir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/bash\n%scd \"$(dirname \"$0\")\"\n%s\n", header, body);
    fclose(f);
}

static void make_job(const char *name, const char *body, char *run_dir, size_t rlen, char *script, size_t slen)
{
    make_job_h(name, "", body, run_dir, rlen, script, slen);
}

static Backend *open_local_slots(int max_parallel, int cpus)
{
    char opts[512], err[512];
    snprintf(opts, sizeof opts, "{\"state_dir\": \"%s/state\", \"max_parallel\": %d, \"cpus\": %d}", tmpdir,
             max_parallel, cpus);
    Backend *b;
    if (backend_open("local", opts, &b, err, sizeof err) < 0) fail_msg("%s", err);
    assert_string_equal(b->ops->name, "local");
    return b;
}

// Cores aplenty: only max_parallel limits.
static Backend *open_local(int max_parallel) { return open_local_slots(max_parallel, 64); }

static void submit_g(Backend *b, const char *name, const char *body, int gpus, char *id, size_t idlen)
{
    char rd[512], sc[600], err[512];
    make_job(name, body, rd, sizeof rd, sc, sizeof sc);
    JobSpec js = {.experiment = "t", .cell_key = name, .run_dir = rd, .script_path = sc, .job_name = name,
                  .attempt = 1, .gpus = gpus, .nodes = 1, .cpus_per_task = 1, .gpu_type = "cpu"};
    if (b->ops->submit(b, &js, id, idlen, err, sizeof err) < 0) fail_msg("%s", err);
}

static void submit(Backend *b, const char *name, const char *body, const char *time_limit, char *id, size_t idlen)
{
    char rd[512], sc[600], err[512];
    make_job(name, body, rd, sizeof rd, sc, sizeof sc);
    JobSpec js = {.experiment = "t", .cell_key = name, .run_dir = rd, .script_path = sc, .job_name = name,
                  .attempt = 1, .gpus = 1, .nodes = 1, .cpus_per_task = 1, .gpu_type = "cpu", .time_limit = time_limit};
    if (b->ops->submit(b, &js, id, idlen, err, sizeof err) < 0) fail_msg("%s", err);
}

// Polls until every job is final (or timeout seconds pass).
static void wait_final(Backend *b, const char *const *ids, size_t n, JobStatus *st, double timeout)
{
    char err[512];
    for (double t = 0; t < timeout; t += 0.1) {
        if (b->ops->poll(b, ids, n, st, err, sizeof err) < 0) fail_msg("%s", err);
        size_t done = 0;
        for (size_t i = 0; i < n; i++) done += job_state_is_final(st[i].state);
        if (done == n) return;
        sleep_s(0.1);
    }
    fail_msg("jobs did not finish within %.0fs", timeout);
}

static double read_num(const char *dir, const char *file)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s/%s", tmpdir, dir, file);
    FILE *f = fopen(p, "r");
    if (!f) fail_msg("missing %s", p);
    double v = 0;
    if (fscanf(f, "%lf", &v) != 1) fail_msg("unreadable %s", p);
    fclose(f);
    return v;
}

static void test_max_parallel_and_exit_codes(void **state)
{
    (void)state;
    Backend *b = open_local(1);
    char ids[3][64];
    const char *body = "date +%s.%N > start; sleep 0.3; date +%s.%N > end";
    submit(b, "a", body, "00:05:00", ids[0], sizeof ids[0]);
    submit(b, "b", body, "00:05:00", ids[1], sizeof ids[1]);
    submit(b, "c", "echo first >&2; echo 'the real error: boom' >&2; exit 3", NULL, ids[2], sizeof ids[2]);
    assert_string_not_equal(ids[0], ids[1]);
    const char *idv[3] = {ids[0], ids[1], ids[2]};
    JobStatus st[3];
    wait_final(b, idv, 3, st, 300);
    assert_int_equal(st[0].state, JOB_COMPLETED);
    assert_int_equal(st[1].state, JOB_COMPLETED);
    assert_int_equal(st[0].exit_code, 0);
    assert_int_equal(st[2].state, JOB_FAILED);
    assert_int_equal(st[2].exit_code, 3);
    // the job wrote its stderr to job.out (no stderr.log: the reason is the exit code alone)
    assert_non_null(strstr(st[2].reason, "exit code 3"));
    // one slot: b started after a ended (ids are served in order)
    double a_end = read_num("a", "end"), b_start = read_num("b", "start");
    assert_true(b_start >= a_end);
    assert_true(st[0].start_time >= st[0].submit_time && st[0].end_time >= st[0].start_time);
    assert_true(st[1].start_time >= st[0].end_time - 0.05);
    backend_close(b);
}

static void test_parallel_slots_overlap(void **state)
{
    (void)state;
    Backend *b = open_local(2);
    char ids[2][64];
    // each job waits (at most 5 minutes) until both have started, so with two slots they overlap
    // however slowly this machine starts processes; with one slot they could not meet
    const char *body = "date +%s.%N > start; touch ../meet-par.$(basename \"$PWD\"); "
                       "for i in $(seq 3000); do [ -e ../meet-par.p1 ] && [ -e ../meet-par.p2 ] && break; sleep 0.1; done; "
                       "date +%s.%N > end";
    submit(b, "p1", body, NULL, ids[0], sizeof ids[0]);
    submit(b, "p2", body, NULL, ids[1], sizeof ids[1]);
    const char *idv[2] = {ids[0], ids[1]};
    JobStatus st[2];
    wait_final(b, idv, 2, st, 300);
    // two slots: the second started before the first ended
    assert_true(read_num("p2", "start") < read_num("p1", "end"));
    backend_close(b);
}

// Default slots: jobs take gpus x cpus_per_task CPUs of the machine's; first come first served.
static void test_cpu_accounting(void **state)
{
    (void)state;
    Backend *b = open_local_slots(0, 2);
    char ids[3][64];
    const char *body = "date +%s.%N > start; sleep 0.4; date +%s.%N > end";
    // "one" and "one2" meet (each waits, at most 5 minutes, for the other) so that running side by
    // side shows as overlapping times on any machine
    const char *meet = "date +%s.%N > start; touch ../meet-acc.$(basename \"$PWD\"); "
                       "for i in $(seq 3000); do [ -e ../meet-acc.one ] && [ -e ../meet-acc.one2 ] && break; sleep 0.1; done; "
                       "date +%s.%N > end";
    submit_g(b, "two", body, 2, ids[0], sizeof ids[0]);     // takes both CPUs
    submit_g(b, "one", meet, 1, ids[1], sizeof ids[1]);     // waits for "two"
    submit_g(b, "one2", meet, 1, ids[2], sizeof ids[2]);    // runs beside "one"
    const char *idv[3] = {ids[0], ids[1], ids[2]};
    JobStatus st[3];
    wait_final(b, idv, 3, st, 300);
    assert_true(read_num("one", "start") >= read_num("two", "end"));
    assert_true(read_num("one2", "start") >= read_num("two", "end"));
    assert_true(read_num("one2", "start") < read_num("one", "end"));
    // a job bigger than the machine still runs (alone)
    char big[64];
    submit_g(b, "big", "exit 0", 8, big, sizeof big);
    const char *idb[1] = {big};
    wait_final(b, idb, 1, st, 300);
    assert_int_equal(st[0].state, JOB_COMPLETED);
    backend_close(b);
}

// The claim is what the script asks Slurm for (ranks x --cpus-per-task), which is what the rendered
// trainer runs with (--threads), not the JobSpec's cpus_per_task.
static void test_claim_from_script(void **state)
{
    (void)state;
    Backend *b = open_local_slots(0, 4);
    char rd[512], sc[600], err[512], ids[2][64];
    const char *body = "date +%s.%N > start; sleep 0.4; date +%s.%N > end";
    make_job_h("wide", "#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=2\n#SBATCH --cpus-per-task=2\n", body, rd,
               sizeof rd, sc, sizeof sc);
    JobSpec js = {.experiment = "t", .cell_key = "wide", .run_dir = rd, .script_path = sc, .job_name = "wide",
                  .attempt = 1, .gpus = 1, .nodes = 1, .cpus_per_task = 1, .gpu_type = "cpu"};
    if (b->ops->submit(b, &js, ids[0], sizeof ids[0], err, sizeof err) < 0) fail_msg("%s", err);
    submit_g(b, "narrow", body, 1, ids[1], sizeof ids[1]);   // 1 more core than the 4 that are left: waits
    char dir[512];
    snprintf(dir, sizeof dir, "%s/state", tmpdir);
    LocalJob j;
    assert_int_equal(local_job_read(dir, atol(ids[0]), &j, err, sizeof err), 0);
    assert_int_equal(j.cpus, 4);
    assert_int_equal(local_job_read(dir, atol(ids[1]), &j, err, sizeof err), 0);
    assert_int_equal(j.cpus, 1);
    const char *idv[2] = {ids[0], ids[1]};
    JobStatus st[2];
    wait_final(b, idv, 2, st, 300);
    assert_true(read_num("narrow", "start") >= read_num("wide", "end"));
    backend_close(b);
}

// cpus 0 means this machine's cores; $SEGX_LOCAL_CPUS replaces them, and a bad value is an error.
static void test_cores_shared(void **state)
{
    (void)state;
    char dir[512], path[600], err[512];
    snprintf(dir, sizeof dir, "%s/state", tmpdir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const char *want[] = {NULL, "3"};
    for (int k = 0; k < 2; k++) {
        if (want[k]) setenv("SEGX_LOCAL_CPUS", want[k], 1);
        Backend *b = open_local_slots(1, 0);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char buf[256] = "";
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        char expect[64];
        snprintf(expect, sizeof expect, "\"cpus\": %ld", want[k] ? 3L : ncpu);
        if (!strstr(buf, expect)) fail_msg("config.json: %s, expected %s", buf, expect);
        assert_non_null(strstr(buf, "\"max_parallel\": 1"));
        backend_close(b);
    }
    setenv("SEGX_LOCAL_CPUS", "two", 1);
    Backend *b = NULL;
    assert_int_equal(backend_open("local", "{\"max_parallel\": 1}", &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "SEGX_LOCAL_CPUS='two'"));
    unsetenv("SEGX_LOCAL_CPUS");
}

static void test_failure_reason_has_stderr_tail(void **state)
{
    (void)state;
    Backend *b = open_local(2);
    char id[64];
    submit(b, "f", "for i in 1 2 3 4 5 6 7; do echo line$i >> stderr.log; done; exit 42", NULL, id, sizeof id);
    const char *idv[1] = {id};
    JobStatus st;
    wait_final(b, idv, 1, &st, 20);
    assert_int_equal(st.state, JOB_FAILED);
    assert_string_equal(st.reason, "exit code 42: line3\nline4\nline5\nline6\nline7");
    backend_close(b);
}

// Gone or a zombie (an orphan waits for init to reap it) within 2 s.
static int process_gone(int pid)
{
    for (int i = 0; i < 20; i++) {
        char p[64], buf[512] = "";
        snprintf(p, sizeof p, "/proc/%d/stat", pid);
        FILE *f = fopen(p, "r");
        if (!f) return 1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        const char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && rp[2] == 'Z') return 1;
        sleep_s(0.1);
    }
    return 0;
}

static void test_cancel_kills_process_group(void **state)
{
    (void)state;
    Backend *b = open_local(2);
    char id[64], err[512];
    // the job starts a grandchild (sleep) and records its pid
    submit(b, "k", "sleep 30 & echo $! > child.pid; wait", NULL, id, sizeof id);
    char pidf[600];
    snprintf(pidf, sizeof pidf, "%s/k/child.pid", tmpdir);
    for (int i = 0; i < 100 && access(pidf, F_OK) != 0; i++) sleep_s(0.1);
    sleep_s(0.1);
    int child = (int)read_num("k", "child.pid");
    assert_true(child > 0);
    assert_int_equal(kill(child, 0), 0);
    assert_int_equal(b->ops->cancel(b, id, err, sizeof err), 0);
    const char *idv[1] = {id};
    JobStatus st;
    wait_final(b, idv, 1, &st, 20);
    assert_int_equal(st.state, JOB_CANCELLED);
    assert_true(process_gone(child));   // the grandchild died with its group
    // a pending job cancelled before it starts never runs
    Backend *one = open_local(1);
    char busy[64], queued[64];
    submit(one, "busy", "sleep 1", NULL, busy, sizeof busy);
    submit(one, "queued", "touch ran", NULL, queued, sizeof queued);
    assert_int_equal(one->ops->cancel(one, queued, err, sizeof err), 0);
    const char *idq[2] = {busy, queued};
    JobStatus sq[2];
    wait_final(one, idq, 2, sq, 20);
    assert_int_equal(sq[0].state, JOB_COMPLETED);
    assert_int_equal(sq[1].state, JOB_CANCELLED);
    char ran[600];
    snprintf(ran, sizeof ran, "%s/queued/ran", tmpdir);
    assert_int_equal(access(ran, F_OK), -1);
    assert_int_equal(one->ops->cancel(one, "nope", err, sizeof err), -1);
    backend_close(one);
    backend_close(b);
}

static void test_time_limit(void **state)
{
    (void)state;
    Backend *b = open_local(2);
    char id[64];
    submit(b, "t", "sleep 30", "00:00:01", id, sizeof id);
    const char *idv[1] = {id};
    JobStatus st;
    wait_final(b, idv, 1, &st, 20);
    assert_int_equal(st.state, JOB_TIMEOUT);
    assert_true(st.end_time - st.start_time < 5);
    assert_non_null(strstr(st.reason, "time limit reached"));
    backend_close(b);
}

static void test_agent_exits_when_idle(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/state", tmpdir);
    int alive = 1;
    for (int i = 0; i < 100 && (alive = local_agent_alive(dir)); i++) sleep_s(0.1);
    assert_false(alive);
    // unknown ids poll as unknown, not as errors
    Backend *b = open_local(1);
    const char *idv[2] = {"999", "x"};
    JobStatus st[2];
    char err[256];
    assert_int_equal(b->ops->poll(b, idv, 2, st, err, sizeof err), 0);
    assert_int_equal(st[0].state, JOB_UNKNOWN);
    assert_int_equal(st[1].state, JOB_UNKNOWN);
    backend_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_parallel_and_exit_codes),
        cmocka_unit_test(test_parallel_slots_overlap),
        cmocka_unit_test(test_cpu_accounting),
        cmocka_unit_test(test_claim_from_script),
        cmocka_unit_test(test_cores_shared),
        cmocka_unit_test(test_failure_reason_has_stderr_tail),
        cmocka_unit_test(test_cancel_kills_process_group),
        cmocka_unit_test(test_time_limit),
        cmocka_unit_test(test_agent_exits_when_idle),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
