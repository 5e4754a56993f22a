// tests/orchestrator/test_slurm_backend.c — the slurm (libslurm) and slurm-cli backends against a
// real local Slurm cluster (slurm/local-cluster, started here in a private directory on private
// ports and stopped at the end). Every scenario runs once per backend, with job scripts whose
// #SBATCH lines come from the "local" cluster profile:
//   a failing job ends failed with its exit code and reason; cancel (running and pending); a node
//   going down ends node-fail; scontrol requeue runs a second attempt; slurmctld stopped mid-submit
//   loses no cell and submits none twice; a dead controller is reported in < 1 s and submit gives
//   up with a clear error; max_submitted; a second session does not resubmit a queued attempt; an
//   unknown job id polls as unknown; bad scripts are refused naming file:line.
// (Cells over several GPU types through segx plan/submit/status: tests/integration/slurm_segx.sh.)
// Skips (with the reason) only when the cluster cannot start at all (e.g. not root, no slurm-wlm).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "orchestrator/backend/backend.h"
#include "orchestrator/cluster.h"

static char root[1024], sdir[1024], runs[1024], cluster_cmd[3000], skip_reason[512];
static int cluster_up;
static ClusterProfile *profile;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

// ---------------------------------------------------------------------------------------------
// job scripts

typedef struct {
    char dir[1200], script[1300], key[64], name[96];
    JobSpec spec;
    char id[64];
} Cell;

// A job script for one cell: the profile's #SBATCH lines, then `body`.
static void make_cell(Cell *c, const char *backend, const char *tag, const char *gpu_type, int gpus,
                      const char *time_limit, const char *body)
{
    memset(c, 0, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s-%s", backend, tag);
    snprintf(c->name, sizeof c->name, "segxtest-%s", c->key);
    snprintf(c->dir, sizeof c->dir, "%s/%s/attempt-1", runs, c->key);
    sh("mkdir -p '%s'", c->dir);
    snprintf(c->script, sizeof c->script, "%s/job.sbatch", c->dir);
    const ClusterGpu *g = cluster_find_gpu(profile, gpu_type);
    assert_non_null(g);
    char *dirs = NULL;
    assert_int_equal(cluster_render_directives(profile, g, gpus, 1, time_limit, c->name, c->dir, &dirs), 0);
    FILE *f = fopen(c->script, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/bash\n%s\ncd '%s'\n%s\n", dirs, c->dir, body);
    fclose(f);
    free(dirs);
    c->spec = (JobSpec){.experiment = "slurmtest", .cell_key = c->key, .run_dir = c->dir,
                        .script_path = c->script, .job_name = c->name, .attempt = 1, .gpus = gpus,
                        .nodes = 1, .gpu_type = gpu_type};
}

static Backend *open_backend(const char *name)
{
    Backend *b = NULL;
    char err[512] = "";
    if (backend_open(name, NULL, &b, err, sizeof err)) {
        if (strstr(err, "without libslurm")) { print_message("# SKIP: %s\n", err); skip(); }
        fail_msg("backend_open(%s): %s", name, err);
    }
    assert_string_equal(b->ops->name, name);
    return b;
}

static void submit(Backend *b, Cell *c)
{
    char err[1024] = "";
    if (b->ops->submit(b, &c->spec, c->id, sizeof c->id, err, sizeof err))
        fail_msg("submit %s: %s", c->key, err);
    assert_true(c->id[0] >= '1' && c->id[0] <= '9');
}

// Polls (one call for all) until every job is final or timeout_s passes.
static void wait_final(Backend *b, Cell *cells, size_t n, JobStatus *st, double timeout_s)
{
    const char *ids[64];
    for (size_t i = 0; i < n; i++) ids[i] = cells[i].id;
    double t0 = now_s();
    for (;;) {
        char err[512] = "";
        if (b->ops->poll(b, ids, n, st, err, sizeof err)) fail_msg("poll: %s", err);
        size_t fin = 0;
        for (size_t i = 0; i < n; i++) fin += job_state_is_final(st[i].state);
        if (fin == n) return;
        if (now_s() - t0 > timeout_s) {
            for (size_t i = 0; i < n; i++)
                print_message("# job %s (%s): %s %s\n", st[i].job_id, cells[i].key, job_state_name(st[i].state), st[i].reason);
            fail_msg("jobs not final after %.0f s", timeout_s);
        }
        usleep(200 * 1000);
    }
}

static JobState wait_state(Backend *b, const char *id, JobState want, JobStatus *st, double timeout_s)
{
    double t0 = now_s();
    const char *ids[1] = {id};
    for (;;) {
        char err[512] = "";
        if (b->ops->poll(b, ids, 1, st, err, sizeof err)) fail_msg("poll: %s", err);
        if (st->state == want || job_state_is_final(st->state) || now_s() - t0 > timeout_s) return st->state;
        usleep(100 * 1000);
    }
}

// ---------------------------------------------------------------------------------------------
// scenarios (state = backend name)

static int need_cluster(void **state)
{
    (void)state;
    if (!cluster_up) { skip(); }
    return 0;
}

static void test_failing_job(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = open_backend(be);
    Cell c;
    make_cell(&c, be, "fails", "rtx8000", 1, "00:01:00", "echo going to fail >&2\nexit 3");
    submit(b, &c);
    JobStatus st;
    wait_final(b, &c, 1, &st, 300);
    assert_int_equal(st.state, JOB_FAILED);
    assert_int_equal(st.exit_code, 3);
    if (!strstr(st.reason, "exit code 3") || !strstr(st.reason, "NonZeroExitCode")) fail_msg("reason: %s", st.reason);
    assert_string_equal(st.nodes, "n5");
    backend_close(b);
}

static void test_cancel(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = open_backend(be);
    Cell run, pend;
    make_cell(&run, be, "cancel-running", "cpu", 1, "00:02:00", "sleep 120");
    make_cell(&pend, be, "cancel-pending", "cpu", 1, "00:02:00", "sleep 120");
    submit(b, &run);
    pend.spec.dependency = NULL;
    // held back by a dependency on the running one, so it is still pending when cancelled
    char dep[96];
    snprintf(dep, sizeof dep, "afterok:%s", run.id);
    pend.spec.dependency = dep;
    submit(b, &pend);
    JobStatus st;
    assert_int_equal(wait_state(b, run.id, JOB_RUNNING, &st, 300), JOB_RUNNING);
    assert_int_equal(wait_state(b, pend.id, JOB_PENDING, &st, 60), JOB_PENDING);
    assert_non_null(strstr(st.reason, "Dependency"));
    char err[512] = "";
    assert_int_equal(b->ops->cancel(b, pend.id, err, sizeof err), 0);
    assert_int_equal(b->ops->cancel(b, run.id, err, sizeof err), 0);
    Cell both[2] = {run, pend};
    JobStatus s2[2];
    wait_final(b, both, 2, s2, 300);
    assert_int_equal(s2[0].state, JOB_CANCELLED);
    assert_int_equal(s2[1].state, JOB_CANCELLED);
    // cancelling again is not an error; an id slurmctld never had is
    assert_int_equal(b->ops->cancel(b, run.id, err, sizeof err), 0);
    assert_int_equal(b->ops->cancel(b, "987654", err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    backend_close(b);
}

static void test_requeue_runs_second_attempt(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = open_backend(be);
    Cell c;
    make_cell(&c, be, "requeue", "a100", 1, "00:02:00",
              "echo \"run restart=${SLURM_RESTART_COUNT:-0}\" >> runs.txt\n"
              "if [ \"${SLURM_RESTART_COUNT:-0}\" = 0 ]; then sleep 60; fi\nexit 0");
    submit(b, &c);
    JobStatus st;
    assert_int_equal(wait_state(b, c.id, JOB_RUNNING, &st, 300), JOB_RUNNING);
    char path[4096];
    snprintf(path, sizeof path, "%s/runs.txt", c.dir);
    for (int i = 0; i < 3000 && access(path, F_OK); i++) usleep(100 * 1000);   // the first run has started
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(sh("scontrol requeue %s", c.id), 0);
    wait_final(b, &c, 1, &st, 300);
    assert_int_equal(st.state, JOB_COMPLETED);
    if (!strstr(st.reason, "requeued 1 time")) fail_msg("reason: '%s'", st.reason);
    char *w = read_file(path);
    assert_non_null(w);
    if (!strstr(w, "run restart=0\nrun restart=1\n")) fail_msg("runs.txt: %s", w);
    backend_close(b);
}

// A node that goes down under a running, non-requeueable job: node-fail.
static void test_node_fail(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = open_backend(be);
    Cell c;
    make_cell(&c, be, "nodefail", "rtx8000", 1, "00:02:00", "sleep 60");
    // the profile asks for --requeue (a requeued job would not fail); this job must not be
    char *text = read_file(c.script);
    char *cut = strstr(text, "#SBATCH --requeue\n");
    assert_non_null(cut);
    FILE *f = fopen(c.script, "w");
    fprintf(f, "%.*s#SBATCH --no-requeue\n%s", (int)(cut - text), text, cut + strlen("#SBATCH --requeue\n"));
    fclose(f);
    submit(b, &c);
    JobStatus st;
    assert_int_equal(wait_state(b, c.id, JOB_RUNNING, &st, 300), JOB_RUNNING);
    assert_string_equal(st.nodes, "n5");
    int rc = sh("scontrol update NodeName=n5 State=DOWN Reason=segx-test");
    wait_final(b, &c, 1, &st, 300);
    sh("scontrol update NodeName=n5 State=RESUME >/dev/null 2>&1");   // (may already be back: ReturnToService=2)
    assert_int_equal(rc, 0);
    if (st.state != JOB_NODE_FAIL) fail_msg("state %s (%s)", job_state_name(st.state), st.reason);
    assert_non_null(strstr(st.reason, "exit code"));
    backend_close(b);
}

static void *restart_ctld_later(void *arg)
{
    (void)arg;
    usleep(2500 * 1000);
    sh("%s start >/dev/null 2>&1", cluster_cmd);
    return NULL;
}

// The process exists and is not a zombie (PID 1 of this machine may never reap daemons).
static int running(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static void kill_ctld(void)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/run/slurmctld.pid", sdir);
    char *p = read_file(path);
    assert_non_null(p);
    pid_t pid = (pid_t)atoi(p);
    assert_true(pid > 1);
    assert_int_equal(kill(pid, SIGTERM), 0);
    for (int i = 0; i < 200 && running(pid); i++) usleep(50 * 1000);
    assert_false(running(pid));
}

static void test_controller_down_mid_submit(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = open_backend(be);
    Cell c[6];
    for (int i = 0; i < 6; i++) {
        char tag[32];
        snprintf(tag, sizeof tag, "outage%d", i);
        make_cell(&c[i], be, tag, i % 2 ? "v100" : "cpu", 1, "00:01:00", "echo ran >> ran.txt");
    }
    submit(b, &c[0]);
    submit(b, &c[1]);
    // (let these two finish first: a job whose completion message meets a dead controller can stay
    // "running" in slurmctld until its time limit; that is Slurm's business, not submit's)
    JobStatus early[2];
    wait_final(b, c, 2, early, 300);
    kill_ctld();
    // no controller: open fails fast and says why
    Backend *b2 = NULL;
    char err[1024] = "";
    double t0 = now_s();
    assert_int_equal(backend_open(be, NULL, &b2, err, sizeof err), -1);
    assert_true(now_s() - t0 < 1.0);
    if (!strstr(err, "does not answer")) fail_msg("open error: %s", err);
    // submit keeps trying while slurmctld is restarted behind its back
    pthread_t th;
    pthread_create(&th, NULL, restart_ctld_later, NULL);
    t0 = now_s();
    for (int i = 2; i < 6; i++) submit(b, &c[i]);
    pthread_join(th, NULL);
    assert_true(now_s() - t0 > 2.0);        // it really waited for the restart
    JobStatus st[6];
    wait_final(b, c, 6, st, 300);
    for (int i = 0; i < 6; i++) {
        if (st[i].state != JOB_COMPLETED) fail_msg("%s: %s %s", c[i].key, job_state_name(st[i].state), st[i].reason);
        for (int k = 0; k < i; k++) assert_string_not_equal(c[i].id, c[k].id);
        char path[4096];
        snprintf(path, sizeof path, "%.1199s/ran.txt", c[i].dir);
        char *w = read_file(path);
        assert_non_null(w);
        assert_string_equal(w, "ran\n");      // exactly once
    }
    // each cell is exactly one job: count jobs carrying each cell's comment
    for (int i = 0; i < 6; i++) {
        int n = sh("test \"$(squeue -h -t all -O Comment:200 | grep -c '^segx:slurmtest/%s/1 ')\" = 1", c[i].key);
        assert_int_equal(n, 0);
    }
    backend_close(b);
}

static void test_gives_up_with_clear_error(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = NULL;
    char err[1024] = "";
    assert_int_equal(backend_open(be, "{\"submit_retry_s\": 1.5}", &b, err, sizeof err), 0);
    Cell c;
    make_cell(&c, be, "giveup", "cpu", 1, "00:01:00", "true");
    kill_ctld();
    double t0 = now_s();
    int rc = b->ops->submit(b, &c.spec, c.id, sizeof c.id, err, sizeof err);
    double dt = now_s() - t0;
    sh("%s start >/dev/null 2>&1", cluster_cmd);
    assert_int_equal(rc, -1);
    assert_true(dt >= 1.5 && dt < 8);
    if (!strstr(err, "did not accept") || !strstr(err, "not submitted")) fail_msg("error: %s", err);
    // and nothing was submitted
    assert_int_equal(sh("test -z \"$(squeue -h -t all -O Comment:200 | grep 'segx:slurmtest/%s/1 ')\"", c.key), 0);
    backend_close(b);
}

static void test_max_submitted(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = NULL;
    char err[1024] = "";
    assert_int_equal(backend_open(be, "{\"max_submitted\": 2}", &b, err, sizeof err), 0);
    Cell c[5];
    const char *ids[5];
    JobStatus st[5];
    double t0 = now_s();
    for (int i = 0; i < 5; i++) {
        char tag[32];
        snprintf(tag, sizeof tag, "throttle%d", i);
        make_cell(&c[i], be, tag, i % 2 ? "a100" : "rtx8000", 1, "00:01:00", "sleep 1.5");
        submit(b, &c[i]);
        ids[i] = c[i].id;
        // right after each submit at most 2 of these jobs are queued or running
        assert_int_equal(b->ops->poll(b, ids, (size_t)i + 1, st, err, sizeof err), 0);
        int inflight = 0;
        for (int k = 0; k <= i; k++) inflight += !job_state_is_final(st[k].state);
        if (inflight > 2) fail_msg("%d jobs in flight after submit %d", inflight, i);
    }
    assert_true(now_s() - t0 > 2.5);   // it waited for earlier jobs at least twice (1.5 s each)
    wait_final(b, c, 5, st, 300);
    for (int i = 0; i < 5; i++) assert_int_equal(st[i].state, JOB_COMPLETED);
    backend_close(b);
}

// segx killed after submitting but before recording: a new session does not submit the attempt again.
static void test_same_attempt_not_submitted_twice(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = open_backend(be);
    Cell c;
    make_cell(&c, be, "twice", "cpu", 1, "00:01:00", "echo ran >> ran.txt; sleep 3");
    submit(b, &c);
    char first[64];
    snprintf(first, sizeof first, "%s", c.id);
    backend_close(b);
    b = open_backend(be);
    submit(b, &c);
    assert_string_equal(c.id, first);
    // a new attempt of the same cell is a new job
    Cell c2 = c;
    c2.spec.attempt = 2;
    submit(b, &c2);
    assert_string_not_equal(c2.id, first);
    JobStatus st[2];
    Cell both[2] = {c, c2};
    wait_final(b, both, 2, st, 300);
    assert_int_equal(st[0].state, JOB_COMPLETED);
    assert_int_equal(sh("test \"$(squeue -h -t all -O Comment:200 | grep -c '^segx:slurmtest/%s/1 ')\" = 1", c.key), 0);
    backend_close(b);
}

static void test_unknown_job_and_bad_script(void **state)
{
    const char *be = *state;
    need_cluster(state);
    Backend *b = open_backend(be);
    const char *ids[2] = {"999999", "1"};
    JobStatus st[2];
    char err[1024] = "";
    assert_int_equal(b->ops->poll(b, ids, 1, st, err, sizeof err), 0);
    assert_int_equal(st[0].state, JOB_UNKNOWN);
    assert_int_equal(st[0].exit_code, -1);
    // a script without "#!" is refused before it reaches Slurm, naming the file
    Cell c;
    make_cell(&c, be, "noshebang", "cpu", 1, "00:01:00", "true");
    FILE *f = fopen(c.script, "w");
    fputs("echo no interpreter line\n", f);
    fclose(f);
    assert_int_equal(b->ops->submit(b, &c.spec, c.id, sizeof c.id, err, sizeof err), -1);
    assert_non_null(strstr(err, c.script));
    assert_non_null(strstr(err, "#!"));
    // an unsupported #SBATCH option names file:line
    f = fopen(c.script, "w");
    fputs("#!/bin/bash\n#SBATCH --partition=cpu\n#SBATCH --frobnicate=3\ntrue\n", f);
    fclose(f);
    assert_int_equal(b->ops->submit(b, &c.spec, c.id, sizeof c.id, err, sizeof err), -1);
    char want[4096];
    snprintf(want, sizeof want, "%s:3:", c.script);
    if (!strstr(err, want) || !strstr(err, "frobnicate")) fail_msg("error: %s", err);
    // a partition the cluster does not have: Slurm's own reason comes back
    c.spec.partition = "nosuchpartition";
    make_cell(&c, be, "badpart", "cpu", 1, "00:01:00", "true");
    c.spec.partition = "nosuchpartition";
    assert_int_equal(b->ops->submit(b, &c.spec, c.id, sizeof c.id, err, sizeof err), -1);
    if (!strstr(err, "partition") && !strstr(err, "Partition")) fail_msg("error: %s", err);
    backend_close(b);
}

// ---------------------------------------------------------------------------------------------

static int start_cluster(void **state)
{
    (void)state;
    const char *r = getenv("SEGX_ROOT");
    snprintf(root, sizeof root, "%s", r ? r : ".");
    char tmpl[] = "/tmp/segx-slurmtest.XXXXXX";
    if (!mkdtemp(tmpl)) return -1;
    snprintf(sdir, sizeof sdir, "%s/cluster", tmpl);
    snprintf(runs, sizeof runs, "%s/runs", tmpl);
    srand((unsigned)getpid());
    int port = 20000 + (rand() % 400) * 10;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    setenv("SEGX_SLURM_DIR", sdir, 1);
    setenv("SEGX_SLURM_PORT", port_s, 1);
    char conf[1200];
    snprintf(conf, sizeof conf, "%s/etc/slurm.conf", sdir);
    setenv("SLURM_CONF", conf, 1);
    snprintf(cluster_cmd, sizeof cluster_cmd, "'%s/slurm/local-cluster'", root);
    char log[1200];
    snprintf(log, sizeof log, "%s/start.log", tmpl);
    if (sh("%s start >'%s' 2>&1", cluster_cmd, log) == 0) cluster_up = 1;
    else {
        char *l = read_file(log);
        snprintf(skip_reason, sizeof skip_reason, "local Slurm cluster did not start: %.400s", l ? l : "?");
        print_message("# SKIP: %s\n", skip_reason);
    }
    char templates[1100], err[512];
    snprintf(templates, sizeof templates, "%s/templates", root);
    if (cluster_load(NULL, templates, &profile, err, sizeof err)) { print_message("# %s\n", err); return -1; }
    return 0;
}

static int stop_cluster(void **state)
{
    (void)state;
    sh("%s wipe >/dev/null 2>&1", cluster_cmd);
    char *slash = strrchr(sdir, '/');
    if (slash) { *slash = '\0'; sh("rm -rf '%s'", sdir); }
    cluster_free(profile);
    return 0;
}

static double t_test;
static int t_start(void **state) { (void)state; t_test = now_s(); return 0; }
static int t_end(void **state) { print_message("# %s: %.1f s\n", (const char *)*state, now_s() - t_test); return 0; }

#define BOTH(fn) \
    cmocka_unit_test_prestate_setup_teardown(fn, t_start, t_end, "slurm"), \
    cmocka_unit_test_prestate_setup_teardown(fn, t_start, t_end, "slurm-cli")

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_failing_job),
        BOTH(test_cancel),
        BOTH(test_node_fail),
        BOTH(test_requeue_runs_second_attempt),
        BOTH(test_controller_down_mid_submit),
        BOTH(test_gives_up_with_clear_error),
        BOTH(test_max_submitted),
        BOTH(test_same_attempt_not_submitted_twice),
        BOTH(test_unknown_job_and_bad_script),
    };
    return cmocka_run_group_tests(tests, start_cluster, stop_cluster);
}
