// orchestrator/collect.c — run dirs -> DB (see collect.h). First version: entry points only.
#include "orchestrator/collect.h"
#include <stdio.h>
#include <string.h>

const char *collect_state_from_exit(int exit_code)
{
    return exit_code == 0 ? "completed" : exit_code == 99 ? "preempted" : "failed";
}

int collect_run(sqlite3 *db, const char *experiment, const CollectOptions *opts, CollectStats *stats,
                char *err, size_t errlen)
{
    (void)db; (void)experiment; (void)opts;
    if (stats) memset(stats, 0, sizeof *stats);
    snprintf(err, errlen, "collect: not implemented yet");
    return -1;
}
