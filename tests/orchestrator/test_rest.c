// tests/orchestrator/test_rest.c — the slurm-rest backend without a server: API version choice from an
// OpenAPI document, the submit body of each API version, jobs replies (v0.0.38 as the local 22.05
// slurmrestd sends them, v0.0.40-style wrapped numbers and state lists) into what slurm_match_jobs
// reads, JWT claims, and slurmrestd's error lists.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "orchestrator/backend/slurm_lib.h"
#include "orchestrator/backend/slurm_rest.h"
#include "orchestrator/backend/slurm_util.h"

static void test_pick_version(void **state)
{
    (void)state;
    char err[512];
    json_t *doc = json_loads("{\"paths\": {\"/slurm/v0.0.36/job/submit\": {}, \"/slurm/v0.0.38/job/submit\": {},"
                             " \"/slurm/v0.0.37/job/submit\": {}, \"/slurm/v0.0.38/jobs\": {}, \"/openapi/v3\": {}}}", 0, NULL);
    const RestDialect *d = slurm_rest_pick_version(doc, err, sizeof err);
    assert_non_null(d);
    assert_string_equal(d->version, "v0.0.38");   // the newest both speak; v0.0.36 is not in the table
    json_decref(doc);
    doc = json_loads("{\"paths\": {\"/slurm/v0.0.40/job/submit\": {}, \"/slurm/v0.0.41/job/submit\": {}, \"/slurm/v0.0.42/job/submit\": {}}}", 0, NULL);
    d = slurm_rest_pick_version(doc, err, sizeof err);
    assert_non_null(d);
    assert_string_equal(d->version, "v0.0.41");
    json_decref(doc);
    doc = json_loads("{\"paths\": {\"/slurm/v0.0.99/job/submit\": {}}}", 0, NULL);
    assert_null(slurm_rest_pick_version(doc, err, sizeof err));
    assert_non_null(strstr(err, "offers API v0.0.99"));
    assert_non_null(strstr(err, "v0.0.38"));
    json_decref(doc);
    doc = json_loads("{\"openapi\": \"3.0\"}", 0, NULL);
    assert_null(slurm_rest_pick_version(doc, err, sizeof err));
    assert_non_null(strstr(err, "paths"));
    json_decref(doc);
    assert_null(slurm_rest_dialect("v0.0.12"));
}

static SlurmOpts job_opts(void)
{
    SlurmOpts o;
    memset(&o, 0, sizeof o);
    o.requeue = 1; o.open_append = 1; o.kill_invalid_dep = 1;
    snprintf(o.job_name, sizeof o.job_name, "segx-x-1234");
    snprintf(o.partition, sizeof o.partition, "a100");
    snprintf(o.time, sizeof o.time, "01:30:00");
    snprintf(o.gres, sizeof o.gres, "gpu:a100:2");
    snprintf(o.comment, sizeof o.comment, "segx:x/abc/1");
    snprintf(o.dependency, sizeof o.dependency, "afterok:12");
    o.nodes = 2; o.ntasks_per_node = 2; o.cpus_per_task = 3; o.mem_mb = 4096;
    o.signal_num = 10; o.signal_time = 30; o.signal_batch_only = 1;
    return o;
}

static void test_submit_body_v38(void **state)
{
    (void)state;
    SlurmOpts o = job_opts();
    char *env[] = {"PATH=/usr/bin", "SLURM_JWT=secret", "A=b=c", "=bad", NULL};
    json_t *b = slurm_rest_submit_body(slurm_rest_dialect("v0.0.38"), &o, "#!/bin/bash\ntrue\n", env);
    json_t *j = json_object_get(b, "job");
    assert_string_equal(json_string_value(json_object_get(b, "script")), "#!/bin/bash\ntrue\n");
    assert_int_equal(json_integer_value(json_object_get(j, "time_limit")), 90);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "nodes"), 0)), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "nodes"), 1)), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "tasks")), 4);   // per node x nodes, as sbatch
    assert_int_equal(json_integer_value(json_object_get(j, "memory_per_node")), 4096);
    assert_string_equal(json_string_value(json_object_get(j, "gres")), "gpu:a100:2");
    assert_null(json_object_get(j, "signal"));   // 22.05 refuses B: and "USR1@30" would go to the steps
    assert_string_equal(json_string_value(json_object_get(j, "open_mode")), "append");
    assert_string_equal(json_string_value(json_object_get(j, "comment")), "segx:x/abc/1");
    assert_string_equal(json_string_value(json_object_get(j, "dependency")), "afterok:12");
    assert_true(json_is_true(json_object_get(j, "requeue")));
    json_t *e = json_object_get(j, "environment");
    assert_true(json_is_object(e));
    assert_string_equal(json_string_value(json_object_get(e, "A")), "b=c");
    assert_null(json_object_get(e, "SLURM_JWT"));      // the token does not travel into the job
    // instead the job script signals itself at the time limit (90 min) less the 30 s
    assert_string_equal(json_string_value(json_object_get(e, "SEGX_BATCH_SIGNAL")), "USR1 5370");
    assert_int_equal(json_object_size(e), 3);
    json_decref(b);
    // a signal for the steps (no B:) is Slurm's own; no time limit: nothing to count from
    o.signal_batch_only = 0;
    b = slurm_rest_submit_body(slurm_rest_dialect("v0.0.38"), &o, "#!/bin/bash\ntrue\n", env);
    assert_string_equal(json_string_value(json_object_get(json_object_get(b, "job"), "signal")), "USR1@30");
    assert_null(json_object_get(json_object_get(json_object_get(b, "job"), "environment"), "SEGX_BATCH_SIGNAL"));
    json_decref(b);
    o.signal_batch_only = 1;
    o.time[0] = '\0';
    char *env2[] = {"SEGX_BATCH_SIGNAL=stale", NULL};
    b = slurm_rest_submit_body(slurm_rest_dialect("v0.0.38"), &o, "#!/bin/bash\ntrue\n", env2);
    assert_null(json_object_get(json_object_get(b, "job"), "signal"));
    assert_null(json_object_get(json_object_get(json_object_get(b, "job"), "environment"), "SEGX_BATCH_SIGNAL"));   // not inherited
    json_decref(b);
}

static void test_submit_body_v40(void **state)
{
    (void)state;
    SlurmOpts o = job_opts();
    char *env[] = {"PATH=/usr/bin", "SLURM_JWT=secret", NULL};
    json_t *b = slurm_rest_submit_body(slurm_rest_dialect("v0.0.40"), &o, "#!/bin/sh\n", env);
    json_t *j = json_object_get(b, "job");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "time_limit"), "number")), 90);
    assert_true(json_is_true(json_object_get(json_object_get(j, "time_limit"), "set")));
    assert_int_equal(json_integer_value(json_object_get(j, "minimum_nodes")), 2);
    assert_null(json_object_get(j, "nodes"));
    assert_string_equal(json_string_value(json_object_get(j, "tres_per_node")), "gres/gpu:a100:2");
    assert_string_equal(json_string_value(json_object_get(j, "kill_warning_signal")), "USR1");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "kill_warning_flags"), 0)), "BATCH_JOB");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "open_mode"), 0)), "APPEND");
    json_t *e = json_object_get(j, "environment");
    assert_true(json_is_array(e));
    assert_int_equal(json_array_size(e), 1);
    assert_string_equal(json_string_value(json_array_get(e, 0)), "PATH=/usr/bin");
    assert_null(json_object_get(j, "kill_on_invalid_dependency"));   // no such field from v0.0.39: a job flag
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "flags"), 0)), "KILL_INVALID_DEPENDENCY");
    assert_string_equal(json_string_value(json_object_get(b, "script")), "#!/bin/sh\n");
    assert_null(json_object_get(j, "script"));
    json_decref(b);
    // v0.0.41: the script inside the job (the top-level one is deprecated)
    b = slurm_rest_submit_body(slurm_rest_dialect("v0.0.41"), &o, "#!/bin/sh\n", env);
    assert_null(json_object_get(b, "script"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(b, "job"), "script")), "#!/bin/sh\n");
    json_decref(b);
}

// what the 22.05 slurmrestd (v0.0.38) sent for an array with throttle 1 and a failed job
static const char *jobs38 =
    "{\"jobs\": ["
    "{\"job_id\": 6, \"job_state\": \"RUNNING\", \"state_reason\": \"None\", \"exit_code\": 0, \"submit_time\": 1796606428,"
    " \"start_time\": 1796606429, \"end_time\": 1796606729, \"nodes\": \"n3\", \"restart_cnt\": 0, \"comment\": \"segx:x/y/1\","
    " \"array_job_id\": 4, \"array_task_id\": 0, \"array_task_string\": \"\", \"user_name\": \"root\"},"
    "{\"job_id\": 4, \"job_state\": \"PENDING\", \"state_reason\": \"JobArrayTaskLimit\", \"exit_code\": 0, \"submit_time\": 1796606428,"
    " \"start_time\": 0, \"end_time\": 0, \"nodes\": \"\", \"restart_cnt\": 0, \"comment\": \"segx:x/y/1\","
    " \"array_job_id\": 4, \"array_task_id\": null, \"array_task_string\": \"1-3%1\", \"user_name\": \"root\"},"
    "{\"job_id\": 7, \"job_state\": \"FAILED\", \"state_reason\": \"NonZeroExitCode\", \"exit_code\": 768, \"submit_time\": 1796606440,"
    " \"start_time\": 1796606441, \"end_time\": 1796606442, \"nodes\": \"n1\", \"restart_cnt\": 1, \"comment\": \"segx:x/z/1\","
    " \"array_job_id\": 0, \"array_task_id\": null, \"array_task_string\": \"\", \"user_name\": \"root\"},"
    "{\"job_id\": 9, \"job_state\": \"RUNNING\", \"comment\": \"segx:x/z/1\", \"user_name\": \"alice\"}"
    "]}";

static void test_parse_jobs_v38(void **state)
{
    (void)state;
    json_t *r = json_loads(jobs38, 0, NULL);
    SlurmJobInfo *jobs;
    size_t n;
    char err[256];
    assert_int_equal(slurm_rest_parse_jobs(r, "root", &jobs, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);   // alice's job is not ours
    assert_string_equal(jobs[0].job_id, "4_0");
    assert_string_equal(jobs[1].job_id, "4_[1-3%1]");
    assert_string_equal(jobs[2].job_id, "7");
    const char *ids[] = {"4_0", "4_2", "7", "8"};
    JobStatus st[4];
    assert_int_equal(slurm_match_jobs(jobs, n, ids, 4, st, err, sizeof err), 0);
    assert_int_equal(st[0].state, JOB_RUNNING);
    assert_string_equal(st[0].nodes, "n3");
    assert_int_equal(st[1].state, JOB_PENDING);          // inside the array's pending record
    assert_non_null(strstr(st[1].reason, "JobArrayTaskLimit"));
    assert_int_equal(st[2].state, JOB_FAILED);
    assert_int_equal(st[2].exit_code, 3);                 // wait status 768
    assert_non_null(strstr(st[2].reason, "requeued 1 time"));
    assert_int_equal(st[3].state, JOB_UNKNOWN);
    char id[64];
    assert_int_equal(slurm_find_comment(jobs, n, "segx:x/z/1", 0, id, sizeof id), 1);
    assert_string_equal(id, "7");
    assert_int_equal(slurm_find_comment(jobs, n, "segx:x/z/1", 1, id, sizeof id), 0);   // not active
    free(jobs);
    assert_int_equal(slurm_rest_parse_jobs(r, NULL, &jobs, &n, err, sizeof err), 0);
    assert_int_equal(n, 4);
    free(jobs);
    json_decref(r);
    r = json_loads("{\"errors\": []}", 0, NULL);
    assert_int_equal(slurm_rest_parse_jobs(r, NULL, &jobs, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "jobs"));
    json_decref(r);
}

static void test_parse_jobs_wrapped(void **state)
{
    (void)state;
    // v0.0.40+: numbers as {"set", "number"}, the state as a list, the exit code as an object
    json_t *r = json_loads(
        "{\"jobs\": [{\"job_id\": 12, \"job_state\": [\"FAILED\"], \"state_reason\": \"NonZeroExitCode\","
        " \"exit_code\": {\"status\": [\"EXITED\"], \"return_code\": {\"set\": true, \"infinite\": false, \"number\": 2}},"
        " \"submit_time\": {\"set\": true, \"number\": 100}, \"start_time\": {\"set\": true, \"number\": 110},"
        " \"end_time\": {\"set\": true, \"number\": 120}, \"array_job_id\": {\"set\": true, \"number\": 0},"
        " \"array_task_id\": {\"set\": false, \"number\": 0}, \"restart_cnt\": 0, \"nodes\": \"n2\", \"user_name\": \"u\"},"
        " {\"job_id\": 13, \"job_state\": [\"CANCELLED\"], \"exit_code\": {\"status\": [\"SIGNALED\"], \"signal\": {\"id\": {\"set\": true, \"number\": 9}}},"
        " \"array_job_id\": {\"set\": true, \"number\": 11}, \"array_task_id\": {\"set\": true, \"number\": 5}},"
        // v0.0.39: the state a string, the exit code a wait status as {"set", "number"}
        " {\"job_id\": 14, \"job_state\": \"FAILED\", \"exit_code\": {\"set\": true, \"infinite\": false, \"number\": 768}}]}", 0, NULL);
    SlurmJobInfo *jobs;
    size_t n;
    char err[256];
    assert_int_equal(slurm_rest_parse_jobs(r, "", &jobs, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(jobs[2].exit_status, 3 << 8);
    assert_string_equal(jobs[2].state, "FAILED");
    assert_string_equal(jobs[0].job_id, "12");
    assert_string_equal(jobs[0].state, "FAILED");
    assert_int_equal(jobs[0].exit_status, 2 << 8);
    assert_true(jobs[0].end_time == 120);
    assert_string_equal(jobs[1].job_id, "11_5");
    assert_int_equal(jobs[1].exit_status, 9);
    JobStatus st;
    slurm_fill_status(&jobs[1], &st);
    assert_int_equal(st.state, JOB_CANCELLED);
    assert_int_equal(st.exit_code, 137);
    free(jobs);
    json_decref(r);
}

static void test_jwt_and_errors(void **state)
{
    (void)state;
    char user[64];
    double exp;
    // {"exp":1796606994,"iat":1796606394,"sun":"root"} as scontrol token wrote it
    assert_int_equal(slurm_rest_jwt_claims("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTY2MDY5OTQsImlhdCI6MTc5NjYwNjM5NCwic3VuIjoicm9vdCJ9.sUiG",
                                           user, sizeof user, &exp), 0);
    assert_string_equal(user, "root");
    assert_true(exp == 1796606994.0);
    assert_int_equal(slurm_rest_jwt_claims("not-a-token", user, sizeof user, &exp), -1);
    assert_int_equal(slurm_rest_jwt_claims("a.!!!.b", user, sizeof user, &exp), -1);
    json_t *r = json_loads("{\"errors\": [{\"error_code\": 2000, \"error\": \"Invalid partition name specified\"},"
                           " {\"description\": \"Failed while looking for jobs\", \"error_number\": -1, \"error\": \"Unspecified error\","
                           " \"source\": \"slurm_load_jobs\"}]}", 0, NULL);
    char out[256];
    long maxnr;
    slurm_rest_describe_errors(r, out, sizeof out, &maxnr);
    assert_int_equal(maxnr, 2000);
    assert_string_equal(out, "Invalid partition name specified; Failed while looking for jobs (slurm_load_jobs)");
    json_decref(r);
}

// slurmdbd's job records through slurmrestd into sacct's -P lines: a v0.0.38 reply (usage under
// "tres": {"requested"}, cpu time as seconds + microseconds) and a wrapped v0.0.40-style one
static void test_sacct_lines(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    json_t *r = json_loads(
        "{\"jobs\": [{\"job_id\": 7, \"array\": {\"job_id\": 0, \"task_id\": null}, \"state\": {\"current\": \"COMPLETED\"},"
        " \"exit_code\": {\"status\": \"SUCCESS\", \"return_code\": 0}, \"nodes\": \"n3\", \"partition\": \"a100\", \"qos\": \"normal\","
        " \"required\": {\"CPUs\": 1, \"memory\": 500},"
        " \"time\": {\"elapsed\": 5, \"eligible\": 1796617251, \"end\": 1796617257, \"start\": 1796617252, \"submission\": 1796617250,"
        "          \"total\": {\"seconds\": 0, \"microseconds\": 0}},"
        " \"tres\": {\"allocated\": [{\"type\": \"cpu\", \"name\": null, \"count\": 1}, {\"type\": \"energy\", \"name\": null, \"count\": null},"
        "   {\"type\": \"gres\", \"name\": \"gpu:a100\", \"count\": 1}, {\"type\": \"gres\", \"name\": \"gpu\", \"count\": 1}]},"
        " \"steps\": [{\"step\": {\"id\": \"batch\"}, \"state\": \"COMPLETED\", \"exit_code\": {\"return_code\": 0},"
        "   \"nodes\": {\"list\": [\"n3\"], \"range\": \"n3\"},"
        "   \"time\": {\"elapsed\": 5, \"start\": 1796617252, \"end\": 1796617257, \"total\": {\"seconds\": 1, \"microseconds\": 250000}},"
        "   \"tres\": {\"requested\": {\"max\": [{\"type\": \"mem\", \"name\": null, \"count\": 141148160}],"
        "                             \"total\": [{\"type\": \"mem\", \"name\": null, \"count\": 141148160}, {\"type\": \"gres\", \"name\": \"gpuutil\", \"count\": 87}]},"
        "            \"allocated\": [{\"type\": \"cpu\", \"name\": null, \"count\": 1}]}}]},"
        " {\"job_id\": 12, \"array\": {\"job_id\": 10, \"task_id\": {\"set\": true, \"number\": 2}}, \"state\": {\"current\": [\"FAILED\"]},"
        "  \"exit_code\": {\"return_code\": {\"set\": true, \"number\": 3}}, \"required\": {\"memory_per_node\": {\"set\": true, \"number\": 1024}},"
        "  \"time\": {\"elapsed\": 9, \"start\": 0, \"end\": 0, \"submission\": 0, \"eligible\": 0}, \"steps\": []}]}", 0, NULL);
    assert_non_null(r);
    char *text = NULL, err[256];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(slurm_rest_sacct_lines(r, f, err, sizeof err), 3);
    fclose(f);
    assert_string_equal(text,
        "7|COMPLETED|0:0|5||1.250|cpu=1,gres/gpu:a100=1,gres/gpu=1||n3|a100|normal|2026-12-07T04:20:50|2026-12-07T04:20:51|"
        "2026-12-07T04:20:52|2026-12-07T04:20:57|500M\n"
        "7.batch|COMPLETED|0:0|5|137840K|1.250|cpu=1|gres/gpuutil=87,mem=137840K|n3|||2026-12-07T04:20:52|2026-12-07T04:20:52|"
        "2026-12-07T04:20:52|2026-12-07T04:20:57|\n"
        "10_2|FAILED|3:0|9||0.000||||||Unknown|Unknown|Unknown|Unknown|1024M\n");
    free(text);
    json_decref(r);
    r = json_loads("{\"errors\": []}", 0, NULL);
    f = open_memstream(&text, &len);
    assert_int_equal(slurm_rest_sacct_lines(r, f, err, sizeof err), -1);
    fclose(f);
    free(text);
    assert_non_null(strstr(err, "no \"jobs\""));
    json_decref(r);
}

static void test_same_release(void **state)
{
    (void)state;
    if (!slurm_lib_available()) { assert_int_equal(slurm_lib_same_release("22.05.8"), 0); return; }
    char mine[64], other[64];
    int maj, min;
    assert_int_equal(sscanf(slurm_lib_version(), "%d.%d", &maj, &min), 2);
    snprintf(mine, sizeof mine, "%d.%02d.99", maj, min);        // another micro release: same ABI family
    snprintf(other, sizeof other, "%d.%02d.1", maj + 1, min);
    assert_int_equal(slurm_lib_same_release(mine), 1);
    assert_int_equal(slurm_lib_same_release(other), 0);
    assert_int_equal(slurm_lib_same_release("garbage"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_version),
        cmocka_unit_test(test_submit_body_v38),
        cmocka_unit_test(test_submit_body_v40),
        cmocka_unit_test(test_parse_jobs_v38),
        cmocka_unit_test(test_parse_jobs_wrapped),
        cmocka_unit_test(test_jwt_and_errors),
        cmocka_unit_test(test_sacct_lines),
        cmocka_unit_test(test_same_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
