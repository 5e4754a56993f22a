// tests/orchestrator/test_cluster.c — cluster profiles: loading, errors, #SBATCH and launch lines.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "orchestrator/cluster.h"

static char templates[1024];

static ClusterProfile *load_text(const char *json, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(json, JSON_DECODE_ANY, &je);
    if (!j) { snprintf(err, errlen, "bad test json: %s", je.text); return NULL; }
    ClusterProfile *p = NULL;
    cluster_load(j, templates, &p, err, errlen);
    json_decref(j);
    return p;
}

static void has_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "%s\n", line);
    if (!strstr(text, want)) fail_msg("line '%s' missing from:\n%s", line, text);
}

static void test_local_profile_a100(void **state)
{
    (void)state;
    char err[512] = "";
    ClusterProfile *p = load_text("\"local\"", err, sizeof err);
    assert_non_null(p);
    assert_string_equal(cluster_name(p), "local");
    const ClusterGpu *g = cluster_find_gpu(p, "A100");
    assert_non_null(g);
    assert_string_equal(g->partition, "a100");
    assert_int_equal(g->gpus_per_node, 2);
    char *d = NULL;
    assert_int_equal(cluster_render_directives(p, g, 4, 2, "00:05:00", "exp-cell1", "/r/run", &d), 0);
    has_line(d, "#SBATCH --job-name=exp-cell1");
    has_line(d, "#SBATCH --partition=a100");
    has_line(d, "#SBATCH --nodes=2");
    has_line(d, "#SBATCH --ntasks-per-node=2");
    has_line(d, "#SBATCH --gres=gpu:a100:2");
    has_line(d, "#SBATCH --time=00:05:00");
    has_line(d, "#SBATCH --mem=512M");                 // 256M per GPU x 2 GPUs per node
    has_line(d, "#SBATCH --output=/r/run/slurm-%j.out");
    has_line(d, "#SBATCH --open-mode=append");
    has_line(d, "#SBATCH --requeue");
    has_line(d, "#SBATCH --signal=B:USR1@10");
    has_line(d, "export OMP_NUM_THREADS=1");
    assert_non_null(strstr(d, "export MASTER_ADDR=${MASTER_ADDR:-$segx_first} MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))"));
    char *l = NULL;
    assert_int_equal(cluster_render_launch(p, NULL, 2, 1, &l), 0);
    assert_string_equal(l, "srun --ntasks=2 --ntasks-per-node=2 --kill-on-bad-exit=1 --mpi=pmix_v4");
    free(l);
    // every #SBATCH line comes before the first setup line (sbatch stops reading at a command)
    const char *last = strstr(d, "#SBATCH --requeue"), *setup = strstr(d, "export ");
    assert_true(last < setup);
    free(d);
    cluster_free(p);
}

static void test_cpu_has_no_gres(void **state)
{
    (void)state;
    char err[512] = "";
    ClusterProfile *p = load_text("\"local\"", err, sizeof err);
    assert_non_null(p);
    const ClusterGpu *g = cluster_find_gpu(p, "cpu");
    assert_non_null(g);
    char *d = NULL;
    assert_int_equal(cluster_render_directives(p, g, 2, 1, NULL, NULL, NULL, &d), 0);
    assert_null(strstr(d, "--gres"));
    assert_null(strstr(d, "--gpus-per-node"));
    has_line(d, "#SBATCH --partition=cpu");
    has_line(d, "#SBATCH --ntasks-per-node=2");
    free(d);
    assert_null(cluster_find_gpu(p, "h100"));
    cluster_free(p);
}

static void test_cell_that_does_not_fit(void **state)
{
    (void)state;
    char err[512] = "";
    ClusterProfile *p = load_text("\"local\"", err, sizeof err);
    char *d = NULL;
    assert_int_equal(cluster_render_directives(p, cluster_find_gpu(p, "v100"), 4, 1, NULL, "j", NULL, &d), -1);
    assert_non_null(strstr(d, "4 v100 GPUs per node"));
    free(d);
    assert_int_equal(cluster_render_directives(p, cluster_find_gpu(p, "v100"), 3, 2, NULL, "j", NULL, &d), -1);
    assert_non_null(strstr(d, "evenly"));
    free(d);
    assert_int_equal(cluster_render_directives(p, cluster_find_gpu(p, "v100"), 2, 1, NULL, "bad name;rm", NULL, &d), -1);
    free(d);
    cluster_free(p);
}

static void test_university_example(void **state)
{
    (void)state;
    char err[512] = "";
    ClusterProfile *p = load_text("\"university-example\"", err, sizeof err);
    assert_non_null(p);
    assert_string_equal(cluster_account(p), "my-lab");
    const ClusterGpu *g = cluster_find_gpu(p, "a100");
    assert_string_equal(g->constraint, "a100_80gb");
    char *d = NULL;
    assert_int_equal(cluster_render_directives(p, g, 16, 2, "12:00:00", "x", "/scratch/r", &d), 0);
    has_line(d, "#SBATCH --account=my-lab");
    has_line(d, "#SBATCH --qos=normal");
    has_line(d, "#SBATCH --constraint=a100_80gb");
    has_line(d, "#SBATCH --gres=gpu:a100:8");
    has_line(d, "#SBATCH --cpus-per-task=12");
    has_line(d, "#SBATCH --mem=983040M");               // 120G x 8
    has_line(d, "module load cuda/12.2");
    free(d);
    char *l = NULL;
    assert_int_equal(cluster_render_launch(p, NULL, 16, 2, &l), 0);
    assert_string_equal(l, "srun --ntasks=16 --ntasks-per-node=8 --kill-on-bad-exit=1 apptainer exec --nv "
                           "--bind /scratch,/datasets:/datasets:ro /scratch/containers/segx-cuda.sif");
    free(l);
    cluster_free(p);
}

static void test_inline_with_base_and_container(void **state)
{
    (void)state;
    char err[512] = "";
    ClusterProfile *p = load_text("{\"base\": \"local\", \"gres_style\": \"gpus-per-node\", \"account\": \"acct1\","
                                  " \"container\": {\"runtime\": \"singularity\", \"image\": \"/img/x y.sif\", \"bind\": [\"/data\"]}}",
                                  err, sizeof err);
    assert_non_null(p);
    assert_string_equal(cluster_account(p), "acct1");
    char *d = NULL;
    assert_int_equal(cluster_render_directives(p, cluster_find_gpu(p, "rtx8000"), 2, 1, NULL, "j", NULL, &d), 0);
    has_line(d, "#SBATCH --gpus-per-node=rtx8000:2");
    free(d);
    char *c = NULL;
    assert_int_equal(cluster_render_container(p, NULL, &c), 0);
    assert_string_equal(c, "singularity exec --nv --bind /data '/img/x y.sif'");
    free(c);
    // a spec container replaces the profile's
    json_t *spec = json_pack("{s:s,s:s}", "runtime", "apptainer", "image", "b.sif");
    assert_int_equal(cluster_render_container(p, spec, &c), 0);
    assert_string_equal(c, "apptainer exec --nv b.sif");
    free(c);
    json_decref(spec);
    spec = json_string("/img/c.sif");            // an image alone keeps the profile's runtime and binds
    assert_int_equal(cluster_render_container(p, spec, &c), 0);
    assert_string_equal(c, "singularity exec --nv --bind /data /img/c.sif");
    free(c);
    json_decref(spec);
    spec = json_pack("{s:s,s:s}", "runtime", "docker", "image", "b.sif");
    assert_int_equal(cluster_render_container(p, spec, &c), -1);
    assert_non_null(strstr(c, "docker"));
    free(c);
    json_decref(spec);
    cluster_free(p);
}

static void test_errors_name_the_problem(void **state)
{
    (void)state;
    char err[512] = "";
    assert_null(load_text("\"no-such-cluster\"", err, sizeof err));
    assert_non_null(strstr(err, "clusters/no-such-cluster.json"));
    assert_null(load_text("{\"gpus\": [{\"gpu_type\": \"a100\", \"partitoin\": \"x\"}]}", err, sizeof err));
    assert_non_null(strstr(err, "gpus[0]: unknown key \"partitoin\""));
    assert_null(load_text("{\"gpus\": [{\"gpu_type\": \"a100\", \"mem_per_gpu\": \"lots\"}]}", err, sizeof err));
    assert_non_null(strstr(err, "mem_per_gpu"));
    assert_null(load_text("{\"gpus\": []}", err, sizeof err));
    assert_non_null(strstr(err, "no GPU types"));
    assert_null(load_text("{\"gpus\": [{\"gpu_type\": \"a100\", \"partition\": \"a b\"}]}", err, sizeof err));
    assert_non_null(strstr(err, "not allowed"));
    assert_null(load_text("42", err, sizeof err));
    // a syntax error names file:line:column
    char path[] = "/tmp/segx-cluster-XXXXXX.json";
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\n \"gpus\": [\n", 13), 13);
    close(fd);
    char quoted[600];
    snprintf(quoted, sizeof quoted, "\"%s\"", path);
    assert_null(load_text(quoted, err, sizeof err));
    char want[600];
    snprintf(want, sizeof want, "%s:3:", path);
    assert_non_null(strstr(err, want));
    unlink(path);
}

// Issue 17: a "modules" entry with shell syntax ran a command in every job script; now only
// module-name characters are accepted, and each name is a quoted-safe word of its own.
static void test_modules_checked(void **state)
{
    (void)state;
    char err[512] = "";
    static const char *const bad[] = {"cuda; touch /tmp/pwned", "cuda$(id)", "a`b`", "x|y", "gcc && rm", "cuda\\\\ 12",
                                      "a>b", "'q'", "\\\"q\\\"", "a[1]", "~x", "*", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"base\": \"local\", \"modules\": [\"cuda/12.2\", \"%s\"]}", bad[i]);
        ClusterProfile *p = load_text(json, err, sizeof err);
        if (p) { cluster_free(p); fail_msg("module '%s' was accepted", bad[i]); }
        if (!strstr(err, "\"modules\"[1]")) fail_msg("%s: %s", bad[i], err);
    }
    assert_non_null(strstr(err, "\"modules\"[1] is empty"));
    ClusterProfile *p = load_text("{\"base\": \"local\", \"modules\": [\"cuda; touch x\"]}", err, sizeof err);
    assert_null(p);
    assert_non_null(strstr(err, "\"modules\"[0] 'cuda; touch x': character ';' is not allowed in a module name"));
    p = load_text("{\"base\": \"local\", \"modules\": [\"cuda/12.2\", \"gcc@12.2.0+cuda  openmpi/4.1\", \"PrgEnv-gnu\"]}",
                  err, sizeof err);
    if (!p) fail_msg("%s", err);
    char *d = NULL;
    assert_int_equal(cluster_render_directives(p, cluster_find_gpu(p, "cpu"), 1, 1, "00:05:00", "j", "/r", &d), 0);
    has_line(d, "module load cuda/12.2");
    has_line(d, "module load gcc@12.2.0+cuda openmpi/4.1");
    has_line(d, "module load PrgEnv-gnu");
    free(d);
    cluster_free(p);
}

int main(void)
{
    const char *root = getenv("SEGX_ROOT");
    snprintf(templates, sizeof templates, "%s/templates", root ? root : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_profile_a100),
        cmocka_unit_test(test_cpu_has_no_gres),
        cmocka_unit_test(test_cell_that_does_not_fit),
        cmocka_unit_test(test_university_example),
        cmocka_unit_test(test_inline_with_base_and_container),
        cmocka_unit_test(test_errors_name_the_problem),
        cmocka_unit_test(test_modules_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
