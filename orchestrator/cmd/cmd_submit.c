// orchestrator/cmd/cmd_submit.c — `segx submit [EXPERIMENT]`: options and output; the submitting
// is submit_experiment (orchestrator/submit.h).
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/submit.h"
#include <stdio.h>

void cmd_submit_say(void *ctx, int problem, const char *line)
{
    (void)ctx;
    if (problem == 2) fprintf(stderr, "segx: warning: %s\n", line);
    else if (problem) fprintf(stderr, "segx submit: %s\n", line);
    else printf("%s\n", line);
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
    o.say = cmd_submit_say;
    return submit_experiment(&o, NULL);
}
