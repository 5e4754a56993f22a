// orchestrator/cmd/main.c — `segx`: dispatches `segx CMD ...` to cmd_<CMD>(argc, argv) (commands.h).
#include "orchestrator/cmd/commands.h"
#include "orchestrator/util/suggest.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;   // NULL: hidden helper
} Command;

static const Command commands[] = {
    {"plan", cmd_plan, "expand a spec into cells and render their job scripts"},
    {"submit", cmd_submit, "send planned cells to a backend (local, slurm, slurm-cli)"},
    {"status", cmd_status, "one row per cell: state, progress, ETA, job id"},
    {"run", cmd_run, "plan + submit + wait + collect + report in one go"},
    {"collect", cmd_collect, "ingest run dirs (metrics, results, environment) into the DB"},
    {"report", cmd_report, "speedup, efficiency, accuracy and cost tables/HTML"},
    {"query", cmd_query, "run SQL against the results DB"},
    {"serve", cmd_serve, "a dashboard of the results DB in the browser (read-only)"},
    {"plot", cmd_plot, "figures for papers (svg, pdf, png) with their gnuplot source"},
    {"cancel", cmd_cancel, "cancel running or pending cells"},
    {"resubmit", cmd_resubmit, "submit failed cells again"},
    {"doctor", cmd_doctor, "check the cluster, profile and environment"},
    {"logparse", cmd_logparse, "turn an external trainer's log into metrics.jsonl (used by job scripts)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: segx COMMAND [options]   (segx COMMAND --help for details)\n\n"
               "Benchmark deep-learning training across GPU types, GPU counts and batch sizes on\n"
               "Slurm clusters (or this machine) from one spec file; results go to SQLite.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].summary) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\ncommon options: --db FILE (default ./segx.db or $SEGX_DB), --json / --format\n"
               "environment: SEGX_DB, SEGX_TEMPLATES (templates dir), SEGX_TRAIN (segx-train path)\n"
               "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n");
}

// git's way: the commands closest to the typo (distance <= 2, or the typo starts a command's name).
static size_t closeness(const char *typo, const char *cmd)
{
    return strncmp(cmd, typo, strlen(typo)) == 0 ? 1 : (size_t)suggest_edit_distance(typo, cmd);
}

static void suggest(const char *name)
{
    if (!*name) return;
    size_t best = 3, n = 0;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].summary && closeness(name, commands[i].name) < best) best = closeness(name, commands[i].name);
    if (best > 2) return;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        n += commands[i].summary && closeness(name, commands[i].name) == best;
    fprintf(stderr, "\nThe most similar command%s\n", n > 1 ? "s are" : " is");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].summary && closeness(name, commands[i].name) == best) fprintf(stderr, "\t%s\n", commands[i].name);
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 2; }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) { printf("segx 0.1\n"); return 0; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "segx: '%s' is not a segx command. See 'segx --help'.\n", name);
    suggest(name);
    return 2;
}
