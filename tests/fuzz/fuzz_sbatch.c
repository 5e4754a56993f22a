// tests/fuzz/fuzz_sbatch.c — the job-script #SBATCH parser the Slurm backends share
// (orchestrator/backend/slurm_util.c slurm_script_parse, slurm_opts_apply_job), its time parser checked
// against the spec's (both must agree on what a time is), and the slurm.conf controller lookup.
// Properties: an error names the script; parsed fields are NUL-terminated and in range.
#include "orchestrator/backend/slurm_util.h"
#include "orchestrator/spec.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("job.sh", data, size);
    SlurmOpts o;
    char *text = NULL, err[2048] = "";
    if (slurm_script_parse(path, &o, &text, err, sizeof err) == 0) {
        fuzz_check(text != NULL && strncmp(text, "#!", 2) == 0, "script text");
        fuzz_check(memchr(o.time, 0, sizeof o.time) && memchr(o.gres, 0, sizeof o.gres), "unterminated field");
        fuzz_check(o.nodes >= 0 && o.ntasks >= 0 && o.cpus_per_task >= 0 && o.mem_mb >= 0, "negative count");
        if (o.time[0]) {
            int unl;
            fuzz_check(slurm_time_minutes(o.time, &unl) >= 0, "--time '%s' accepted but does not parse", o.time);
        }
        const JobSpec j = {.experiment = "e", .cell_key = "k", .run_dir = "/r", .script_path = path, .job_name = "n",
                           .attempt = 1, .gpus = 4, .nodes = 2, .cpus_per_task = 2, .gpu_type = "a100",
                           .time_limit = "01:00:00"};
        slurm_opts_apply_job(&o, &j);
        free(text);
    } else {
        fuzz_check(text == NULL && strstr(err, path) != NULL, "error does not name the script: '%s'", err);
    }
    // the first line as a time limit: the #SBATCH parser and the spec parser agree
    char line[64];
    size_t n = 0;
    while (n < size && n < sizeof line - 1 && data[n] != '\n' && data[n]) { line[n] = (char)data[n]; n++; }
    line[n] = 0;
    int unl;
    int mins = slurm_time_minutes(line, &unl);
    long secs = spec_parse_time(line);
    if (!unl) {
        fuzz_check((mins < 0) == (secs < 0), "'%s': #SBATCH %d min, spec %ld s", line, mins, secs);
        if (secs >= 0) fuzz_check(mins == (secs + 59) / 60, "'%s': %d min vs %ld s", line, mins, secs);
    }
    slurm_state_from_name(line);
    char host[256];
    int port = 0;
    if (slurm_conf_controller(path, host, sizeof host, &port, err, sizeof err) == 0)
        fuzz_check(port > 0 && port < 65536 && memchr(host, 0, sizeof host), "controller port %d", port);
    return 0;
}
