// tests/orchestrator/test_container.c — container launches per runtime (orchestrator/container.h):
// the exact prefix words, --nv only for GPU jobs, automatic binds, overlays, the command inside
// (bash -c for compound commands and setup lines, run by a real shell to check the quoting), the
// simple-command test, {{var}} in single values (render_value), and the errors for bad containers.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "orchestrator/container.h"
#include "orchestrator/render.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void load(Container *c, const char *json)
{
    json_error_t je;
    json_t *j = json_loads(json, JSON_DECODE_ANY, &je);
    assert_non_null(j);
    char err[1200];
    memset(c, 0, sizeof *c);
    if (container_apply(c, j, "spec", err, sizeof err) || container_check(c, "spec", err, sizeof err))
        fail_msg("container rejected: %s", err);
    json_decref(j);
}

static void expect_prefix(const char *json, int gpu, int under_srun, const char *want)
{
    Container c;
    load(&c, json);
    const ContainerJob j = {.gpu = gpu, .run_dir = "/scratch/runs/e/k/attempt-1", .spec_dir = "/home/u/study"};
    char *p = container_prefix(&c, &j, under_srun);
    assert_non_null(p);
    assert_string_equal(p, want);
    free(p);
    container_clear(&c);
}

static void test_prefix_per_runtime(void **state)
{
    (void)state;
    // apptainer: --nv only for a GPU job; the user's binds, then the spec and run dirs; overlays
    expect_prefix("{\"runtime\": \"apptainer\", \"image\": \"/img/seg.sif\", \"bind\": [\"/data:/data:ro\"],"
                  " \"overlay\": [\"env.ext3:ro\"]}", 1, 0,
                  "apptainer exec --nv --bind /data:/data:ro,/home/u/study,/scratch/runs/e/k/attempt-1"
                  " --overlay env.ext3:ro /img/seg.sif");
    expect_prefix("{\"runtime\": \"singularity\", \"image\": \"/img/seg.sif\"}", 0, 0,
                  "singularity exec --bind /home/u/study,/scratch/runs/e/k/attempt-1 /img/seg.sif");
    // a bind that covers a dir at the same path makes its own bind unneeded; a ro one does not
    expect_prefix("{\"runtime\": \"apptainer\", \"image\": \"a b.sif\", \"bind\": [\"/scratch\", \"/home:/home:ro\"]}", 1, 1,
                  "apptainer exec --nv --bind /scratch,/home:/home:ro,/home/u/study 'a b.sif'");
    // charliecloud: -b per bind, the working dir, '--' before the command; no GPU flag
    expect_prefix("{\"runtime\": \"charliecloud\", \"image\": \"/imgs/segx\", \"bind\": [\"/usr/share/datasets\"]}", 1, 1,
                  "ch-run --bind=/usr/share/datasets --bind=/home/u/study --bind=/scratch/runs/e/k/attempt-1"
                  " --cd=/home/u/study /imgs/segx --");
    // enroot under srun is Pyxis' srun options; without srun, enroot start
    expect_prefix("{\"runtime\": \"enroot\", \"image\": \"nvcr.io#nvidia/pytorch:24.01-py3\", \"bind\": [\"/data:/d:ro\"]}", 1, 1,
                  "'--container-image=nvcr.io#nvidia/pytorch:24.01-py3'"
                  " --container-mounts=/data:/d:ro,/home/u/study:/home/u/study,/scratch/runs/e/k/attempt-1:/scratch/runs/e/k/attempt-1"
                  " --container-workdir=/home/u/study");
    expect_prefix("{\"runtime\": \"enroot\", \"image\": \"/img/pt.sqsh\"}", 1, 0,
                  "enroot start --mount /home/u/study:/home/u/study --mount /scratch/runs/e/k/attempt-1:/scratch/runs/e/k/attempt-1"
                  " /img/pt.sqsh");
    // podman: host network and IPC, the CDI GPU device only for GPU jobs, the Slurm/MPI variables
    expect_prefix("{\"runtime\": \"podman\", \"image\": \"localhost/segx:1\"}", 1, 0,
                  "podman run --rm --network=host --ipc=host --device=nvidia.com/gpu=all -v /home/u/study:/home/u/study"
                  " -v /scratch/runs/e/k/attempt-1:/scratch/runs/e/k/attempt-1 '--env=SLURM_*' '--env=SEGX_*'"
                  " --env=CUDA_VISIBLE_DEVICES --env=NVIDIA_VISIBLE_DEVICES '--env=OMPI_*' '--env=PMIX_*' '--env=PMI_*'"
                  " --env=MASTER_ADDR --env=MASTER_PORT '--env=NCCL_*' --env=OMP_NUM_THREADS --workdir=/home/u/study localhost/segx:1");
    expect_prefix("{\"runtime\": \"podman\", \"image\": \"localhost/segx:1\"}", 0, 0,
                  "podman run --rm --network=host --ipc=host -v /home/u/study:/home/u/study"
                  " -v /scratch/runs/e/k/attempt-1:/scratch/runs/e/k/attempt-1 '--env=SLURM_*' '--env=SEGX_*'"
                  " --env=CUDA_VISIBLE_DEVICES --env=NVIDIA_VISIBLE_DEVICES '--env=OMPI_*' '--env=PMIX_*' '--env=PMI_*'"
                  " --env=MASTER_ADDR --env=MASTER_PORT '--env=NCCL_*' --env=OMP_NUM_THREADS --workdir=/home/u/study localhost/segx:1");
    // no container: nothing
    Container none = {0};
    char *p = container_prefix(&none, NULL, 0);
    assert_string_equal(p, "");
    free(p);
}

static void test_charliecloud_tmp_is_shared(void **state)
{
    (void)state;
    Container c;
    load(&c, "{\"runtime\": \"charliecloud\", \"image\": \"/imgs/segx\"}");
    // ch-run shares /tmp with the host and cannot bind inside it: no bind for dirs under /tmp
    const ContainerJob j = {.run_dir = "/tmp/t/runs/e/k/attempt-1", .spec_dir = "/tmp/t"};
    char *p = container_prefix(&c, &j, 0);
    assert_string_equal(p, "ch-run --cd=/tmp/t /imgs/segx --");
    free(p);
    container_clear(&c);
}

// Runs `bash -c 'printf "<%s>" ARGS'` where ARGS is what container_command produced after a
// stand-in prefix: the shell's own parse says which argv the container would receive.
static char *argv_of(const char *command)
{
    char path[] = "/tmp/segx-test-container-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    // a stand-in runtime: prints each argument in <>, then runs them as the container would
    fprintf(f, "show() { for a in \"$@\"; do printf '<%%s>' \"$a\"; done; printf '\\n'; }\nshow %s\n", command);
    fclose(f);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "bash %s", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    pclose(p);
    unlink(path);
    return out;
}

static void test_command_inside(void **state)
{
    (void)state;
    Container c;
    load(&c, "{\"runtime\": \"apptainer\", \"image\": \"/img/x.sif\"}");
    const ContainerJob j = {.gpu = 1, .spec_dir = "/home/u/study"};
    // a simple command with no setup stays argv
    char *cmd = container_command(&c, &j, NULL, 0, "'segx-train' '--model' 'unet'");
    assert_string_equal(cmd, "'segx-train' '--model' 'unet'");
    free(cmd);
    // a compound command goes whole through bash -c, with its quoting intact
    cmd = container_command(&c, &j, NULL, 0, "cd 'DAFormer' && python tools/train.py --lr '0.01' --name 'a b'\\''c'");
    assert_string_equal(argv_of(cmd), "<bash><-c><cd 'DAFormer' && python tools/train.py --lr '0.01' --name 'a b'\\''c'>\n");
    free(cmd);
    // setup lines run inside, before the trainer, which replaces the shell (exec: signals reach it)
    const char *setup[] = {"source /opt/conda/etc/profile.d/conda.sh", "conda activate seg"};
    cmd = container_command(&c, &j, setup, 2, "'segx-train' '--out' '/r/a b'");
    assert_string_equal(argv_of(cmd), "<bash><-c><source /opt/conda/etc/profile.d/conda.sh\nconda activate seg\n"
                                      "exec 'segx-train' '--out' '/r/a b'>\n");
    free(cmd);
    container_clear(&c);
    // no container: setup lines stay in the job script (not passed), a compound command still
    // needs bash -c so that srun runs all of it
    Container none = {0};
    cmd = container_command(&none, &j, NULL, 0, "cd x && python t.py");
    assert_string_equal(argv_of(cmd), "<bash><-c><cd x && python t.py>\n");
    free(cmd);
    // enroot start does not begin in the job's folder: the command goes there first
    load(&c, "{\"runtime\": \"enroot\", \"image\": \"/img/pt.sqsh\"}");
    cmd = container_command(&c, &j, NULL, 0, "'segx-train' '--epochs' '1'");
    assert_string_equal(argv_of(cmd), "<bash><-c><cd '/home/u/study' || exit 1\nexec 'segx-train' '--epochs' '1'>\n");
    free(cmd);
    container_clear(&c);
}

static void test_simple_command(void **state)
{
    (void)state;
    assert_true(render_shell_is_simple("segx-train --model unet"));
    assert_true(render_shell_is_simple("'python' 'train.py' '--name' 'a;b|c&&d $x'"));
    assert_true(render_shell_is_simple("python train.py --cfg=\"configs/a b.py\""));
    assert_false(render_shell_is_simple("cd DAFormer && python train.py"));
    assert_false(render_shell_is_simple("python a.py; python b.py"));
    assert_false(render_shell_is_simple("python a.py | tee log"));
    assert_false(render_shell_is_simple("python a.py > log"));
    assert_false(render_shell_is_simple("CUDA_VISIBLE_DEVICES=0 python a.py"));
    assert_false(render_shell_is_simple("python $HOME/a.py"));
    assert_false(render_shell_is_simple("python \"$HOME/a.py\""));
    assert_false(render_shell_is_simple("python ~/a.py"));
    assert_false(render_shell_is_simple("python cfg/*.py"));
    assert_false(render_shell_is_simple("source env.sh"));
    assert_false(render_shell_is_simple("conda run -n x python a.py"));
    assert_false(render_shell_is_simple("python a.py\npython b.py"));
    assert_false(render_shell_is_simple("python 'unterminated"));
    assert_false(render_shell_is_simple(""));
}

static void test_render_value_is_raw(void **state)
{
    (void)state;
    json_t *vars = json_pack("{s:s,s:i}", "run_dir", "/r/it's here", "gpus", 4);
    char *out, err[512];
    assert_int_equal(render_value("{{run_dir}}/trace-{{gpus}}.json", "v", vars, &out, err, sizeof err), 0);
    assert_string_equal(out, "/r/it's here/trace-4.json");
    free(out);
    assert_int_equal(render_value("{{rundir}}/t.json", "trainer value of 'profile'", vars, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "rundir"));
    assert_non_null(strstr(err, "trainer value of 'profile'"));
    json_decref(vars);
}

static void expect_bad(const char *json, const char *want)
{
    json_error_t je;
    json_t *j = json_loads(json, JSON_DECODE_ANY, &je);
    assert_non_null(j);
    Container c = {0};
    char err[1200] = "";
    int rc = container_apply(&c, j, "spec", err, sizeof err);
    if (rc == 0) rc = container_check(&c, "spec", err, sizeof err);
    json_decref(j);
    container_clear(&c);
    assert_int_equal(rc, -1);
    if (!strstr(err, want)) fail_msg("error '%s' does not say '%s'", err, want);
}

static void test_errors(void **state)
{
    (void)state;
    expect_bad("{\"runtime\": \"docker\", \"image\": \"x\"}", "'docker' is not one of apptainer, singularity, charliecloud, enroot, podman");
    expect_bad("{\"runtime\": \"charliecloud\"}", "\"image\" is required");
    expect_bad("{\"runtime\": \"charliecloud\", \"image\": \"/i\", \"overlay\": [\"e.ext3\"]}", "charliecloud has no overlay");
    expect_bad("{\"runtime\": \"apptainer\", \"image\": \"/i\", \"overlays\": [\"e.ext3\"]}", "unknown key \"overlays\"");
    expect_bad("{\"runtime\": \"apptainer\", \"image\": \"/i\", \"bind\": [\"/a,/b\"]}", "without commas");
    expect_bad("{\"runtime\": \"podman\", \"image\": \"i\", \"bind\": [\"data:/data\"]}", "must be an absolute path");
    expect_bad("{\"runtime\": \"charliecloud\", \"image\": \"/i\", \"bind\": [\"/a:/b:ro\"]}", "no :ro");
    expect_bad("{\"image\": \"/i\", \"bind\": [\"/a\"]}", "\"runtime\" is required");
    expect_bad("42", "must be an image path or an object");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_per_runtime),
        cmocka_unit_test(test_charliecloud_tmp_is_shared),
        cmocka_unit_test(test_command_inside),
        cmocka_unit_test(test_simple_command),
        cmocka_unit_test(test_render_value_is_raw),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
