// orchestrator/cmd/cmd_plot.c — `segx plot KIND`: a figure for a paper through gnuplot (web/plot.c).
#include "orchestrator/cmd/commands.h"
#include "orchestrator/cmd/cli.h"
#include "web/web.h"
#include "db/db.h"
#include <stdio.h>

int cmd_plot(int argc, char **argv)
{
    const char *dbflag = NULL, *experiment = NULL, *out = NULL, *metric = NULL;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &dbflag, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"experiment", 'e', CLI_STRING, &experiment, "NAME", "the experiment (required)"},
        {"out", 'o', CLI_STRING, &out, "FILE", "the figure: FILE.svg, FILE.pdf or FILE.png (required)"},
        {"metric", 'm', CLI_STRING, &metric, "M", "accuracy/curves/cost: miou, top1, pixel_acc, val_loss, train_loss"},
        {0}};
    const CliCommand cmd = {
        "segx plot [speedup|efficiency|accuracy|curves|curves-wall|cost] --experiment NAME --out FILE.svg",
        "Draws the dashboard's charts (segx serve) as a static figure through gnuplot (Debian gnuplot-nox):\n"
        "  speedup, efficiency  against GPUs (log2 axis), one line per model/GPU type/batch rule, the ideal\n"
        "                       line, error bars: std over seeds\n"
        "  accuracy             final metric, mean ± std over seeds, against the global batch\n"
        "  curves, curves-wall  the metric per epoch against epoch / wall-clock seconds, band over seeds\n"
        "  cost                 GPU-hours against the final metric, one point per cell\n"
        "Beside FILE it writes FILE's .gp script and .tsv data: edit them and run `gnuplot FILE.gp`.",
        opts, 1, 1, NULL};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (!experiment || !out) {
        fprintf(stderr, "segx plot: %s is required (segx plot --help)\n", !experiment ? "--experiment NAME" : "--out FILE.svg");
        return 2;
    }
    char err[4096];
    sqlite3 *db;
    const char *path = db_path_default(dbflag);
    if (db_open(path, DB_READONLY, &db, err, sizeof err) < 0) {
        fprintf(stderr, "segx plot: %s\n", err);
        return 1;
    }
    rc = web_plot(db, a.pos[0], experiment, metric, out, err, sizeof err);
    db_close(db);
    if (rc < 0) {
        fprintf(stderr, "segx plot: %s\n", err);
        return rc == -2 ? 2 : 1;
    }
    printf("%s\n", out);
    return 0;
}
