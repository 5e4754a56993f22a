// tests/trainer/test_run.c — run dir files, checkpoints (round trip, corruption, mismatch),
// trace JSON, and the stop-request flag.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/run/run.h"

static char tmpdir[256];

static int setup_tmp(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-test-run.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}
static int teardown_tmp(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static void test_rundir_files(void **state) {
    (void)state;
    char dir[512], p[700], err[1024];
    snprintf(dir, sizeof dir, "%s/runs/a/b", tmpdir);
    RunDir *rd;
    assert_int_equal(rundir_open(dir, 0, &rd, err, sizeof err), 0);
    for (int e = 1; e <= 3; e++) {
        json_t *o = json_pack("{s:i, s:f}", "epoch", e, "train_loss", 1.0 / e);
        assert_int_equal(rundir_append_metrics(rd, o, err, sizeof err), 0);
        json_decref(o);
        // flushed: visible to a reader before close
        snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
        FILE *f = fopen(p, "r");
        char line[256];
        int n = 0;
        while (fgets(line, sizeof line, f)) {
            json_error_t je;
            json_t *r = json_loads(line, 0, &je);
            assert_non_null(r);
            n++;
            assert_int_equal(json_integer_value(json_object_get(r, "epoch")), n);
            json_decref(r);
        }
        fclose(f);
        assert_int_equal(n, e);
    }
    json_t *res = json_pack("{s:f, s:s}", "miou", 0.5, "model", "unet");
    assert_int_equal(rundir_write_json(rd, "result.json", res, err, sizeof err), 0);
    json_decref(res);
    snprintf(p, sizeof p, "%s/result.json", dir);
    json_error_t je;
    json_t *back = json_load_file(p, 0, &je);
    assert_non_null(back);
    assert_true(fabs(json_real_value(json_object_get(back, "miou")) - 0.5) < 1e-12);
    json_decref(back);
    snprintf(p, sizeof p, "%s/result.json.tmp", dir);
    assert_int_not_equal(access(p, F_OK), 0);  // temp file renamed away
    // env.json has the documented keys; SEGX_GIT_COMMIT wins
    setenv("SEGX_GIT_COMMIT", "abc123", 1);
    json_t *env = run_env_json("x", 3, 2, "none", NULL);
    assert_string_equal(json_string_value(json_object_get(env, "git_commit")), "abc123");
    assert_int_equal(json_integer_value(json_object_get(env, "threads")), 3);
    assert_int_equal(json_integer_value(json_object_get(env, "ranks")), 2);
    assert_non_null(json_string_value(json_object_get(env, "cpu_model")));
    assert_non_null(json_string_value(json_object_get(env, "openblas")));
    assert_non_null(json_string_value(json_object_get(env, "jansson")));
    assert_non_null(json_string_value(json_object_get(env, "host")));
    json_decref(env);
    rundir_close(rd);
    // append mode keeps earlier lines (resume)
    assert_int_equal(rundir_open(dir, 1, &rd, err, sizeof err), 0);
    json_t *o = json_pack("{s:i}", "epoch", 4);
    rundir_append_metrics(rd, o, err, sizeof err);
    json_decref(o);
    rundir_close(rd);
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    int lines = 0, ch;
    while ((ch = fgetc(f)) != EOF) lines += ch == '\n';
    fclose(f);
    assert_int_equal(lines, 4);
}

static void fill_header(CkptHeader *h) {
    memset(h, 0, sizeof *h);
    h->n_params = 1000; h->n_buffers = 10; h->n_opt_state = 2000;
    h->seed = 7; h->epoch = 2; h->next_batch = 5; h->global_step = 123; h->opt_kind = 3; h->opt_steps = 123;
    h->loss_sum = 4.5; h->loss_count = 5;
    snprintf(h->tag, sizeof h->tag, "unet/fashion-mnist-seg/b32/w1");
}

static void test_checkpoint(void **state) {
    (void)state;
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/checkpoint.bin", tmpdir);
    CkptHeader h, got;
    fill_header(&h);
    float p[1000], b[10], o[2000], p2[1000], b2[10], o2[2000];
    for (int i = 0; i < 1000; i++) p[i] = sinf((float)i) * 1e3f;
    for (int i = 0; i < 10; i++) b[i] = (float)i / 3;
    for (int i = 0; i < 2000; i++) o[i] = cosf((float)i) * 1e-7f;
    assert_int_equal(ckpt_save(path, &h, p, b, o, err, sizeof err), 0);
    assert_int_equal(ckpt_read_header(path, &got, err, sizeof err), 0);
    assert_int_equal(got.global_step, 123);
    assert_int_equal(ckpt_load(path, &h, &got, p2, b2, o2, err, sizeof err), 0);
    assert_memory_equal(p, p2, sizeof p);
    assert_memory_equal(b, b2, sizeof b);
    assert_memory_equal(o, o2, sizeof o);
    assert_int_equal(got.next_batch, 5);
    assert_true(got.loss_sum == 4.5);
    // a different run's tag or size is refused with the file named
    CkptHeader other = h;
    snprintf(other.tag, sizeof other.tag, "cnn/fashion-mnist/b64/w1");
    assert_int_equal(ckpt_load(path, &other, &got, p2, b2, o2, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "cnn/fashion-mnist"));
    other = h;
    other.n_params = 999;
    assert_int_equal(ckpt_load(path, &other, &got, p2, b2, o2, err, sizeof err), -1);
    assert_non_null(strstr(err, "999"));
    // flip one byte in the parameters: CRC catches it
    FILE *f = fopen(path, "r+b");
    fseek(f, 2000, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 2000, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    assert_int_equal(ckpt_load(path, &h, &got, p2, b2, o2, err, sizeof err), -1);
    assert_non_null(strstr(err, "CRC"));
    // truncated
    assert_int_equal(truncate(path, 3000), 0);
    assert_int_equal(ckpt_load(path, &h, &got, p2, b2, o2, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    // not a checkpoint
    f = fopen(path, "w");
    fputs("hello", f);
    fclose(f);
    assert_int_equal(ckpt_read_header(path, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "magic"));
}

static void test_trace(void **state) {
    (void)state;
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/trace.json", tmpdir);
    Trace *t;
    assert_int_equal(trace_open(path, 0, &t, err, sizeof err), 0);
    double t0 = run_now_s();
    trace_event(t, "forward", "compute", t0, t0 + 0.001, 1, 0);
    trace_event(t, "backward", "compute", t0 + 0.001, t0 + 0.003, 1, 0);
    trace_event_shape(t, "conv2d_forward", "op", t0, t0 + 0.0005, 2, 7, "B=4 1x8x8->2x8x8 k3x3 s1 p1 d1");
    trace_close(t);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
    assert_non_null(j);
    json_t *ev = json_object_get(j, "traceEvents");
    // process name, the two lane names (phases, ops), then the events
    assert_int_equal(json_array_size(ev), 6);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(ev, 2), "args"), "name")), "ops");
    json_t *bw = json_array_get(ev, 4);
    assert_string_equal(json_string_value(json_object_get(bw, "ph")), "X");
    assert_true(fabs(json_real_value(json_object_get(bw, "dur")) - 2000) < 1);
    json_t *op = json_array_get(ev, 5);
    assert_int_equal(json_integer_value(json_object_get(op, "tid")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(op, "args"), "step")), 7);
    assert_string_equal(json_string_value(json_object_get(json_object_get(op, "args"), "shape")), "B=4 1x8x8->2x8x8 k3x3 s1 p1 d1");
    assert_true(fabs(json_real_value(json_object_get(op, "dur")) - 500) < 1);
    json_decref(j);
    snprintf(path, sizeof path, "%s/no/such/dir/trace.json", tmpdir);
    assert_int_equal(trace_open(path, 0, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "--profile"));
}

static void test_signals(void **state) {
    (void)state;
    signals_install();
    assert_int_equal(signals_pending(), 0);
    raise(SIGUSR1);
    assert_int_equal(signals_pending(), SIGUSR1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rundir_files),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_trace),
        cmocka_unit_test(test_signals),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
