// tests/orchestrator/test_slurm_util.c — what the Slurm backends share, without a cluster:
// #SBATCH parsing (as sbatch reads it), time limits, state names, status from job records,
// slurm.conf controller lookup, and the fail-fast controller probe.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "orchestrator/backend/slurm_util.h"

static char tmpdir[64];

static const char *write_tmp(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_time_limits(void **state)
{
    (void)state;
    int unl;
    assert_int_equal(slurm_time_minutes("30", &unl), 30);
    assert_int_equal(slurm_time_minutes("10:30", &unl), 11);         // MM:SS rounds up
    assert_int_equal(slurm_time_minutes("01:30:00", &unl), 90);
    assert_int_equal(slurm_time_minutes("2-00:00:00", &unl), 2880);
    assert_int_equal(slurm_time_minutes("1-12", &unl), 2160);        // D-HH
    assert_int_equal(slurm_time_minutes("0:0:1", &unl), 1);
    assert_int_equal(slurm_time_minutes("UNLIMITED", &unl), 0);
    assert_int_equal(unl, 1);
    assert_int_equal(slurm_time_minutes("1h", &unl), -1);
    assert_int_equal(slurm_time_minutes("1:2:3:4", &unl), -1);
    assert_int_equal(slurm_time_minutes("", &unl), -1);
    assert_int_equal(slurm_time_minutes("10:", &unl), -1);
}

static void test_state_names(void **state)
{
    (void)state;
    assert_int_equal(slurm_state_from_name("COMPLETED"), JOB_COMPLETED);
    assert_int_equal(slurm_state_from_name("CANCELLED+"), JOB_CANCELLED);
    assert_int_equal(slurm_state_from_name("CANCELLED by 0"), JOB_CANCELLED);
    assert_int_equal(slurm_state_from_name("OUT_OF_MEMORY"), JOB_OUT_OF_MEMORY);
    assert_int_equal(slurm_state_from_name("NODE_FAIL"), JOB_NODE_FAIL);
    assert_int_equal(slurm_state_from_name("BOOT_FAIL"), JOB_NODE_FAIL);
    assert_int_equal(slurm_state_from_name("TIMEOUT"), JOB_TIMEOUT);
    assert_int_equal(slurm_state_from_name("PREEMPTED"), JOB_PREEMPTED);
    assert_int_equal(slurm_state_from_name("REQUEUED"), JOB_PENDING);
    assert_int_equal(slurm_state_from_name("COMPLETING"), JOB_RUNNING);
    assert_int_equal(slurm_state_from_name("WHATEVER"), JOB_UNKNOWN);
}

static void test_script_directives(void **state)
{
    (void)state;
    const char *p = write_tmp("a.sbatch",
        "#!/bin/bash\n"
        "# a comment\n"
        "#SBATCH --job-name=exp-c1\n"
        "#SBATCH -p a100\n"
        "#SBATCH --time 01:00:00\n"
        "#SBATCH --nodes=2 # two nodes\n"
        "#SBATCH --ntasks-per-node=2\n"
        "#SBATCH -c4\n"
        "#SBATCH --gres=gpu:a100:2\n"
        "#SBATCH --mem=1G\n"
        "#SBATCH --constraint=\"a100_80gb&ib\"\n"
        "#SBATCH --signal=B:USR1@90\n"
        "#SBATCH --requeue\n"
        "#SBATCH --open-mode=append\n"
        "\n"
        "echo hi\n"
        "#SBATCH --partition=ignored-after-the-first-command\n");
    SlurmOpts o;
    char *text = NULL, err[512] = "";
    if (slurm_script_parse(p, &o, &text, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(o.job_name, "exp-c1");
    assert_string_equal(o.partition, "a100");
    assert_string_equal(o.time, "01:00:00");
    assert_int_equal(o.nodes, 2);
    assert_int_equal(o.ntasks_per_node, 2);
    assert_int_equal(o.cpus_per_task, 4);
    assert_string_equal(o.gres, "gpu:a100:2");
    assert_int_equal(o.mem_mb, 1024);
    assert_string_equal(o.constraint, "a100_80gb&ib");
    assert_int_equal(o.signal_num, 10);          // SIGUSR1 on Linux
    assert_int_equal(o.signal_time, 90);
    assert_int_equal(o.signal_batch_only, 1);
    assert_int_equal(o.requeue, 1);
    assert_int_equal(o.open_append, 1);
    assert_non_null(strstr(text, "echo hi"));
    free(text);
    // the JobSpec: name/partition/time override, the rest only fills gaps
    JobSpec j = {.experiment = "e", .cell_key = "k1", .attempt = 2, .run_dir = "/runs/e/k1/attempt-2",
                 .job_name = "other", .partition = "v100", .gpus = 8, .nodes = 4, .gpu_type = "v100",
                 .cpus_per_task = 9};
    slurm_opts_apply_job(&o, &j);
    assert_string_equal(o.job_name, "other");
    assert_string_equal(o.partition, "v100");
    assert_int_equal(o.nodes, 2);                // the script's
    assert_string_equal(o.gres, "gpu:a100:2");   // the script's
    assert_int_equal(o.cpus_per_task, 4);
    assert_string_equal(o.output, "/runs/e/k1/attempt-2/slurm-%j.out");
    assert_string_equal(o.chdir, "/runs/e/k1/attempt-2");
    assert_string_equal(o.comment, "segx:e/k1/2");
    // a bare script gets everything from the JobSpec
    p = write_tmp("b.sbatch", "#!/bin/sh\ntrue\n");
    assert_int_equal(slurm_script_parse(p, &o, &text, err, sizeof err), 0);
    free(text);
    slurm_opts_apply_job(&o, &j);
    assert_int_equal(o.nodes, 4);
    assert_int_equal(o.ntasks_per_node, 2);
    assert_string_equal(o.gres, "gpu:v100:2");
    assert_int_equal(o.cpus_per_task, 9);
    assert_int_equal(o.requeue, -1);
    j.gpu_type = "cpu";
    assert_int_equal(slurm_script_parse(p, &o, &text, err, sizeof err), 0);
    free(text);
    slurm_opts_apply_job(&o, &j);
    assert_string_equal(o.gres, "");
}

static void test_script_errors(void **state)
{
    (void)state;
    SlurmOpts o;
    char *text = NULL, err[512] = "";
    const char *p = write_tmp("c.sbatch", "echo no shebang\n");
    assert_int_equal(slurm_script_parse(p, &o, &text, err, sizeof err), -1);
    assert_non_null(strstr(err, ":1: a job script must start with \"#!\""));
    p = write_tmp("d.sbatch", "#!/bin/bash\n#SBATCH --nodes=two\n");
    assert_int_equal(slurm_script_parse(p, &o, &text, err, sizeof err), -1);
    assert_non_null(strstr(err, "d.sbatch:2: --nodes 'two'"));
    p = write_tmp("e.sbatch", "#!/bin/bash\n\n#SBATCH --time=1h\n");
    assert_int_equal(slurm_script_parse(p, &o, &text, err, sizeof err), -1);
    assert_non_null(strstr(err, "e.sbatch:3: --time '1h'"));
    p = write_tmp("f.sbatch", "#!/bin/bash\n#SBATCH --gres=nic:1\n");
    assert_int_equal(slurm_script_parse(p, &o, &text, err, sizeof err), -1);
    assert_non_null(strstr(err, "only gpu"));
    p = write_tmp("g.sbatch", "#!/bin/bash\n#SBATCH --signal=USR9@10\n");
    assert_int_equal(slurm_script_parse(p, &o, &text, err, sizeof err), -1);
    assert_non_null(strstr(err, "--signal"));
    assert_int_equal(slurm_script_parse("/nonexistent/x.sbatch", &o, &text, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/x.sbatch"));
}

static void test_status_from_records(void **state)
{
    (void)state;
    SlurmJobInfo jobs[3] = {
        {.job_id = "10", .state = "FAILED", .reason = "NonZeroExitCode", .exit_status = 3 << 8,
         .nodes = "n3", .submit_time = 100, .start_time = 101, .end_time = 105},
        {.job_id = "11", .state = "PENDING", .reason = "BeginTime", .exit_status = 0, .restarts = 1,
         .nodes = "n1", .submit_time = 100, .start_time = 999, .end_time = 2000},
        {.job_id = "12", .state = "CANCELLED", .reason = "None", .exit_status = 9, .nodes = "n2",
         .submit_time = 100, .start_time = 101, .end_time = 102},
    };
    const char *ids[4] = {"12", "10", "77", "11"};
    JobStatus st[4];
    char err[256];
    assert_int_equal(slurm_match_jobs(jobs, 3, ids, 4, st, err, sizeof err), 0);
    assert_int_equal(st[0].state, JOB_CANCELLED);
    assert_int_equal(st[0].exit_code, 128 + 9);     // killed by SIGKILL
    assert_int_equal(st[1].state, JOB_FAILED);
    assert_int_equal(st[1].exit_code, 3);
    assert_string_equal(st[1].reason, "exit code 3, NonZeroExitCode");
    assert_string_equal(st[1].nodes, "n3");
    assert_true(st[1].end_time == 105);
    assert_int_equal(st[2].state, JOB_UNKNOWN);
    assert_string_equal(st[2].job_id, "77");
    assert_int_equal(st[3].state, JOB_PENDING);
    assert_int_equal(st[3].exit_code, -1);
    assert_true(st[3].start_time == 0 && st[3].end_time == 0);   // estimates are not reported
    assert_string_equal(st[3].reason, "BeginTime; requeued 1 time");
}

static void test_conf_and_probe(void **state)
{
    (void)state;
    const char *p = write_tmp("slurm.conf", "# test\nClusterName=x\nSlurmctldHost=head(127.0.0.1)\n"
                                            "SlurmctldHost=backup\nSlurmctldPort=17000-17003\n");
    char host[64];
    int port = 0;
    char err[512];
    assert_int_equal(slurm_conf_controller(p, host, sizeof host, &port, err, sizeof err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 17000);
    p = write_tmp("slurm2.conf", "ControlMachine=localhost\n");
    assert_int_equal(slurm_conf_controller(p, host, sizeof host, &port, err, sizeof err), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 6817);
    p = write_tmp("slurm3.conf", "ClusterName=x\n");
    assert_int_equal(slurm_conf_controller(p, host, sizeof host, &port, err, sizeof err), -1);
    assert_non_null(strstr(err, "SlurmctldHost"));
    // a listening socket is found; a closed port is reported at once
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    int open_port = ntohs(a.sin_port);
    assert_int_equal(slurm_probe_controller("127.0.0.1", open_port, 500, err, sizeof err), 0);
    close(fd);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(slurm_probe_controller("127.0.0.1", open_port, 800, err, sizeof err), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9 < 1.0);
    assert_non_null(strstr(err, "does not answer"));
    // SLURM_CONF naming a missing file is an error that says how to start the local cluster
    setenv("SLURM_CONF", "/nonexistent/slurm.conf", 1);
    char path[256];
    assert_int_equal(slurm_locate_conf(NULL, path, sizeof path, err, sizeof err), -1);
    assert_non_null(strstr(err, "local-cluster start"));
    assert_int_equal(slurm_locate_conf("{\"slurm_conf\": \"/nonexistent/b.conf\"}", path, sizeof path, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/b.conf"));
    p = write_tmp("slurm.conf", "SlurmctldHost=h\n");
    char opt[400];
    snprintf(opt, sizeof opt, "{\"slurm_conf\": \"%s\"}", p);
    assert_int_equal(slurm_locate_conf(opt, path, sizeof path, err, sizeof err), 0);
    assert_string_equal(getenv("SLURM_CONF"), path);
}

static int cleanup(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-slurmutil.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_limits),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_script_directives),
        cmocka_unit_test(test_script_errors),
        cmocka_unit_test(test_status_from_records),
        cmocka_unit_test(test_conf_and_probe),
    };
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
