// orchestrator/cmd/cmd_collect.c — `segx collect [EXPERIMENT]`: ingest run dirs into the DB.
#include "orchestrator/cmd/commands.h"
#include "orchestrator/cmd/cli.h"
#include "orchestrator/collect.h"
#include "db/db.h"
#include <stdio.h>

int cmd_collect(int argc, char **argv)
{
    const char *dbflag = NULL;
    int force = 0, quiet = 0;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &dbflag, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"force", 0, CLI_FLAG, &force, NULL, "re-read attempts whose files look unchanged"},
        {"quiet", 'q', CLI_FLAG, &quiet, NULL, "no summary line (warnings still go to stderr)"},
        {0}};
    const CliCommand cmd = {
        "segx collect [EXPERIMENT] [options]",
        "Reads the run dirs (metrics.jsonl, result.json, env.json, exit_code, stderr) of the\n"
        "experiment's attempts (all experiments when none is named) into the DB, in one transaction.\n"
        "Idempotent: running it again changes nothing unless the files changed. A malformed metrics\n"
        "line is skipped with a warning naming FILE:LINE. Nothing stored is ever deleted: a run dir that\n"
        "is gone (a scratch purge), a file that is unreadable, empty, truncated or not a regular file (a\n"
        "FIFO, a link to /dev/zero) is a warning naming the path, and the DB keeps what it had; stored\n"
        "rows are only replaced by complete newer data.",
        opts, 0, 1, NULL};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    const char *path = db_path_default(dbflag);
    sqlite3 *db;
    char err[1024];
    if (db_open(path, DB_EXISTING, &db, err, sizeof err) < 0) {
        fprintf(stderr, "segx collect: %s\n", err);
        return 1;
    }
    CollectOptions co = {.warn = stderr, .force = force};
    CollectStats cs;
    rc = collect_run(db, a.npos ? a.pos[0] : NULL, &co, &cs, err, sizeof err);
    db_close(db);
    if (rc < 0) {
        fprintf(stderr, "segx collect: %s\n", err);
        return rc == -2 ? 2 : 1;
    }
    if (!quiet) {
        printf("collected %ld attempt(s) (%ld new), %ld metric row(s); %ld unchanged; %ld malformed line(s) skipped",
               cs.attempts_ingested, cs.attempts_new, cs.epochs, cs.attempts_seen - cs.attempts_ingested - cs.attempts_missing,
               cs.lines_skipped);
        if (cs.attempts_missing) printf("; %ld run dir(s) missing (their rows kept)", cs.attempts_missing);
        if (cs.attempts_forgotten)
            printf("; %ld 'unknown' attempt(s) an older collect recorded for planned cells removed", cs.attempts_forgotten);
        if (cs.warnings) printf("; %ld warning(s)", cs.warnings);
        printf("\n");
    }
    return 0;
}
