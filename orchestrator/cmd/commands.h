// orchestrator/cmd/commands.h — one entry point per subcommand, git style: cmd_<name>(argc, argv)
// gets argv[0] == "<name>" and returns the process exit code: 0 success, 1 runtime failure,
// 2 bad usage or bad input. Each lives in orchestrator/cmd/cmd_<name>.c with its --help text.
#ifndef SEGX_COMMANDS_H
#define SEGX_COMMANDS_H
#include <stddef.h>
#include "orchestrator/plan.h"
int cmd_plan(int argc, char **argv);      // cmd_plan.c      (spec -> cells + job scripts)
int cmd_submit(int argc, char **argv);    // cmd_submit.c    (cells -> backend)
int cmd_status(int argc, char **argv);    // cmd_status.c
int cmd_run(int argc, char **argv);       // cmd_run.c       (plan + submit + wait + collect + report)
int cmd_collect(int argc, char **argv);   // cmd_collect.c   (run dirs -> DB)
int cmd_report(int argc, char **argv);    // cmd_report.c
int cmd_query(int argc, char **argv);     // cmd_query.c
int cmd_cancel(int argc, char **argv);    // cmd_cancel.c
int cmd_resubmit(int argc, char **argv);  // cmd_resubmit.c
int cmd_doctor(int argc, char **argv);    // cmd_doctor.c
int cmd_logparse(int argc, char **argv);  // cmd_logparse.c  (external trainer log -> metrics.jsonl)
int cmd_serve(int argc, char **argv);     // cmd_serve.c     (the dashboard, web/)
int cmd_plot(int argc, char **argv);      // cmd_plot.c      (figures through gnuplot)

// SubmitOptions.say for the commands that submit (submit, run, resubmit): progress and the
// summary on stdout, problems on stderr after "segx submit: ", warnings after "segx: warning: ".
void cmd_submit_say(void *ctx, int problem, const char *line);
// StatusRefreshOptions.say for the commands that refresh states (status, run, resubmit): a backend
// that did not answer, on stderr after "segx status: ".
void cmd_status_say(void *ctx, const char *line);
// `segx plan` of one spec file with its output (cmd_plan and cmd_run; cmd_plan.c): loads the spec,
// expands, stores, renders attempt 1 of never-submitted cells and prints the table. Returns the
// exit code (0, 1, 2); copies the experiment name into name (may be NULL).
int plan_spec_file(const char *spec_path, const PlanOptions *o, char *name, size_t namelen);
#endif
