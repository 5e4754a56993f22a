// orchestrator/cmd/cmd_run.c — `segx run SPEC`: plan + submit + wait (live progress) + collect + report.
// Re-running it resumes: planning adds nothing, completed cells are not resubmitted.
#include "orchestrator/cmd/cli.h"
#include "orchestrator/collect.h"
#include "orchestrator/experiment_lookup.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/plan.h"
#include "orchestrator/poll_pace.h"
#include "orchestrator/report.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/submit.h"
#include "db/db.h"
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// Done when no train job and no eval job (eval.job in the spec) is still queued or running, so the
// collect and report steps see the eval results too.
static int settled(const StatusCounts *c)
{
    return c->by_state[JOB_SUBMITTED] + c->by_state[JOB_PENDING] + c->by_state[JOB_RUNNING] + c->evals_in_flight == 0;
}

// 3. wait: status refreshed (paced by poll_pace) until every job settled, with a live table on a
// terminal or a line per change in the counts otherwise. 0 settled (*c the last counts), else the
// exit code (said).
static int run_wait(sqlite3 *db, long long eid, const char *name, int interval, int timeout, StatusCounts *c)
{
    char err[2048], last[512] = "";
    const StatusRefreshOptions so = {.write_wait_ms = -1, .say = cmd_status_say};
    int tty = cli_is_tty(stdout);
    time_t t0 = time(NULL);
    PollPace pace;
    poll_pace_init(&pace, interval);
    for (;;) {
        double p0 = mono_s();
        if (status_refresh_ex(db, eid, &so, c, err, sizeof err) < 0) { fprintf(stderr, "segx run: %s\n", err); return 1; }
        double wait = poll_pace_next(&pace, mono_s() - p0, c->poll_failed);
        char sum[512];
        status_summary(c, sum, sizeof sum);
        if (tty) {
            printf("\033[H\033[2J%s: waiting (%lds; Ctrl-C stops waiting, jobs keep running)\n", name, (long)(time(NULL) - t0));
            if (status_print(db, eid, "table", stdout, err, sizeof err) < 0) fprintf(stderr, "segx run: %s\n", err);
        } else if (strcmp(sum, last) != 0) {
            printf("[%4lds] %s\n", (long)(time(NULL) - t0), sum);
            snprintf(last, sizeof last, "%s", sum);
        }
        fflush(stdout);
        if (settled(c)) break;
        if (timeout > 0 && time(NULL) - t0 >= timeout) {
            fprintf(stderr, "segx run: gave up waiting after %ds (jobs keep running: `segx status %s`)\n", timeout, name);
            return 1;
        }
        sleep((unsigned)wait);
    }
    if (!tty && status_print(db, eid, "table", stdout, err, sizeof err) < 0) fprintf(stderr, "segx run: %s\n", err);
    return 0;
}

// 4. collect, 5. the reports (kinds: "k1,k2,..."; NULL: none). 0, or 1 when collect failed (said).
static int run_collect_report(sqlite3 *db, const char *name, const char *kinds, TableFormat tf)
{
    char err[2048], rk[256];
    CollectStats cs = {0};
    if (collect_run(db, name, NULL, &cs, err, sizeof err) < 0) { fprintf(stderr, "segx run: collect: %s\n", err); return 1; }
    printf("collected %ld attempts (%ld metric lines)\n", cs.attempts_ingested, cs.epochs);
    if (!kinds) return 0;
    ReportOptions ro = {.experiment = name, .format = tf};
    snprintf(rk, sizeof rk, "%s", kinds);
    for (char *k = strtok(rk, ","); k; k = strtok(NULL, ",")) {
        printf("\n== %s ==\n", k);
        fflush(stdout);
        if (report_print(db, k, &ro, stdout, err, sizeof err) < 0) fprintf(stderr, "segx run: report %s: %s\n", k, err);
    }
    return 0;
}

int cmd_run(int argc, char **argv)
{
    const char *db_path = NULL, *backend = NULL, *runs = NULL, *format = NULL, *reports = "cells,speedup", *notify = NULL;
    int max_parallel = 0, rerun_failed = 0, interval = 1, timeout = 0, no_report = 0;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &db_path, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"backend", 'b', CLI_STRING, &backend, "NAME", "auto (default), local, slurm, slurm-rest, slurm-cli"},
        {"max-parallel", 'j', CLI_INT, &max_parallel, "N", "local backend: jobs at once (default: as many as fit the cores)"},
        {"rerun-failed", 0, CLI_FLAG, &rerun_failed, NULL, "submit failed cells again"},
        {"runs", 0, CLI_STRING, &runs, "DIR", "where run dirs go (default ./runs)"},
        {"interval", 0, CLI_INT, &interval, "SECONDS", "status refresh period (default 1; longer while Slurm is slow)"},
        {"poll-interval", 0, CLI_INT, &interval, "SECONDS", "same as --interval"},
        {"timeout", 0, CLI_INT, &timeout, "SECONDS", "stop waiting after this long (jobs keep running; exit 1)"},
        {"report", 0, CLI_STRING, &reports, "KINDS", "reports printed at the end (default cells,speedup)"},
        {"no-report", 0, CLI_FLAG, &no_report, NULL, "collect but print no report"},
        {"format", 0, CLI_STRING, &format, "FMT", "report format: table (default), csv, json, markdown"},
        {"notify", 0, CLI_STRING, &notify, "URL", "POST JSON (Slack/Mattermost 'text' + fields) when the experiment finishes or a cell fails"},
        {0}};
    const CliCommand cmd = {
        "segx run SPEC.json [options]",
        "Plans the spec, submits its cells, waits for them with a live progress display, collects\n"
        "the run dirs into the DB and prints the report. Exit status 1 when a cell did not complete.",
        opts, 1, 1, "example:\n  segx run examples/quickstart.json --backend local"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (interval < 1) interval = 1;
    TableFormat tf = TABLE_AUTO;
    if (format && table_format_parse(format, &tf) < 0) {
        fprintf(stderr, "segx run: --format '%s': expected table, csv, json or markdown\n", format);
        return 2;
    }
    char rk[256];
    snprintf(rk, sizeof rk, "%s", reports);
    for (char *k = strtok(rk, ","); k; k = strtok(NULL, ","))
        if (!report_kind_valid(k)) { fprintf(stderr, "segx run: --report: unknown report '%s'\n", k); return 2; }

    // 1. plan
    char name[256];
    PlanOptions po = {.db_path = db_path, .runs_dir = runs, .limit = 20};
    if ((rc = plan_spec_file(a.pos[0], &po, name, sizeof name)) != 0) return rc;
    // 2. submit
    SubmitOptions so = {.db_path = db_path, .experiment = name, .backend = backend, .max_parallel = max_parallel,
                        .rerun_failed = rerun_failed, .quiet = 1, .notify_url = notify, .say = cmd_submit_say};
    if ((rc = submit_experiment(&so, NULL)) != 0) return rc;
    // 3. wait
    char err[2048];
    sqlite3 *db;
    if (db_open(db_path_default(db_path), DB_EXISTING, &db, err, sizeof err) < 0) { fprintf(stderr, "segx run: %s\n", err); return 1; }
    ExperimentRef x;
    if (experiment_find(db, name, &x, err, sizeof err) < 0) {
        fprintf(stderr, "segx run: %s\n", err);
        db_close(db);
        return 1;
    }
    StatusCounts c;
    if ((rc = run_wait(db, x.id, name, interval, timeout, &c)) != 0 ||
        (rc = run_collect_report(db, name, no_report ? NULL : reports, tf)) != 0) {
        db_close(db);
        return rc;
    }
    // the collect step may have settled states the backend had not
    const StatusRefreshOptions ro = {.write_wait_ms = -1, .say = cmd_status_say};
    status_refresh_ex(db, x.id, &ro, &c, err, sizeof err);
    db_close(db);
    long bad = c.total - c.by_state[JOB_COMPLETED];
    if (bad > 0) {
        char sum[512];
        status_summary(&c, sum, sizeof sum);
        fprintf(stderr, "segx run: not every cell completed (%s); see `segx status %s`\n", sum, name);
        return 1;
    }
    return 0;
}
