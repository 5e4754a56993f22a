// orchestrator/cmd/cmd_report.c — `segx report KIND`: the standard result tables (report.h).
#include "orchestrator/accounting.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/cmd/cli.h"
#include "orchestrator/report.h"
#include "web/web.h"
#include "db/db.h"
#include <stdio.h>
#include <string.h>

// --format html: the whole experiment in one file (web/pages.c), not one KIND.
static int report_html(const char *dbflag, const char *experiment, const char *kind, const char *target)
{
    if (!experiment) {
        fprintf(stderr, "segx report: --format html needs --experiment NAME (one file per experiment)\n");
        return 2;
    }
    if (kind || target) {
        fprintf(stderr, "segx report: --format html writes every report of the experiment: drop %s\n",
                kind ? "the report KIND" : "--target");
        return 2;
    }
    char err[1024];
    sqlite3 *db;
    if (db_open(db_path_default(dbflag), DB_READONLY, &db, err, sizeof err) < 0) {
        fprintf(stderr, "segx report: %s\n", err);
        return 1;
    }
    int rc = web_report_html(db, experiment, stdout, err, sizeof err);
    db_close(db);
    if (rc == 0 && fflush(stdout) != 0) { snprintf(err, sizeof err, "writing the report failed"); rc = -1; }
    if (rc < 0) {
        fprintf(stderr, "segx report: %s\n", err);
        return rc == -2 ? 2 : 1;
    }
    return 0;
}

int cmd_report(int argc, char **argv)
{
    const char *dbflag = NULL, *format = "auto", *experiment = NULL, *target = NULL;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &dbflag, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"experiment", 'e', CLI_STRING, &experiment, "NAME", "only this experiment (default: all)"},
        {"target", 't', CLI_STRING, &target, "METRIC=VALUE", "time-to-target, e.g. miou=0.5 or val_loss=0.3"},
        {"format", 'f', CLI_STRING, &format, "FMT", "table (default), csv, json, markdown, or html (with --experiment)"},
        {0}};
    const CliCommand cmd = {
        "segx report [cells|accuracy|speedup|cost|time-to-target|queue|usage] [options]",
        "Prints a standard table from the DB views (run `segx collect` first):\n"
        "  cells           every cell: state, attempts, final metrics, wall-clock, GPU-hours\n"
        "  accuracy        mean ± std over seeds (n) of the final miou, pixel_acc, top1, val_loss\n"
        "  speedup         speedup and efficiency vs the 1-GPU cell of each scaling group (weak/strong),\n"
        "                  from images/s and from time per epoch; warns on stderr when measured\n"
        "                  attempts ran at the same time as other local-backend jobs on one host\n"
        "                  (their throughput was measured on shared cores: use --max-parallel 1)\n"
        "  cost            GPU-hours used (sum over attempts of (end-start) x gpus) and planned\n"
        "  time-to-target  first wall-clock second a metric reached --target (or the spec's eval.targets)\n"
        "  queue           Slurm accounting: median and p90 queue wait per GPU type and partition\n"
        "  usage           Slurm accounting: per GPU type jobs, hours, CPU efficiency, MaxRSS, memory headroom\n"
        "With --target and no KIND, prints time-to-target.\n"
        "--format html --experiment NAME writes one self-contained HTML file of the experiment (every table\n"
        "and the dashboard's charts, the chart library inline) that can be mailed: segx report -e NAME\n"
        "--format html > NAME.html",
        opts, 0, 1, NULL};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    const char *kind = a.npos ? a.pos[0] : (target ? "time-to-target" : "cells");
    int acct = accounting_kind_valid(kind);   // queue, usage: Slurm accounting (accounting.c)
    if (!acct && !report_kind_valid(kind)) {
        fprintf(stderr, "segx report: unknown report '%s': expected cells, accuracy, speedup, cost, time-to-target, queue or usage\n", kind);
        return 2;
    }
    if (strcmp(format, "html") == 0) return report_html(dbflag, experiment, a.npos ? a.pos[0] : NULL, target);
    ReportOptions ro = {.experiment = experiment, .target = target};
    if (table_format_parse(format, &ro.format) < 0) {
        fprintf(stderr, "segx report: --format '%s': expected table, csv, json or markdown\n", format);
        return 2;
    }
    char err[1024];
    if (target) {
        char metric[32];
        double v;
        if (report_parse_target(target, metric, sizeof metric, &v, err, sizeof err) < 0) {
            fprintf(stderr, "segx report: --target: %s\n", err);
            return 2;
        }
    }
    const char *path = db_path_default(dbflag);
    sqlite3 *db;
    if (db_open(path, DB_READONLY, &db, err, sizeof err) < 0) {
        fprintf(stderr, "segx report: %s\n", err);
        return 1;
    }
    rc = acct ? accounting_report(db, kind, experiment, ro.format, stdout, err, sizeof err)
              : report_print(db, kind, &ro, stdout, err, sizeof err);
    db_close(db);
    if (rc < 0) {
        fprintf(stderr, "segx report: %s\n", err);
        return rc == -2 ? 2 : 1;
    }
    return 0;
}
