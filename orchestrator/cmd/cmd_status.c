// orchestrator/cmd/cmd_status.c — `segx status [EXPERIMENT]`: options, the --watch loop and output;
// polling, storing and the table are status.h's.
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/experiment_lookup.h"
#include "orchestrator/poll_pace.h"
#include "orchestrator/status.h"
#include "orchestrator/util/clock.h"
#include "db/db.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

// segx status is interactive: it waits this long for a writer (a big collect) before it shows
// the stored states without the freshly polled ones.
#define STATUS_WRITE_WAIT_MS 2000

void cmd_status_say(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "segx status: %s\n", line);
}

static int all_settled(const StatusCounts *c)
{
    long active = c->evals_in_flight;
    for (int s = 0; s < JOB_NSTATES; s++)
        if (job_state_in((JobState)s, JOB_SET_ACTIVE)) active += c->by_state[s];
    return active == 0;
}

int cmd_status(int argc, char **argv)
{
    const char *db_path = NULL, *format = NULL;
    int json = 0, watch = 0, interval = 2, no_poll = 0;
    double poll_interval = -1;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &db_path, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"format", 0, CLI_STRING, &format, "FMT", "table (default), csv, json or markdown"},
        {"json", 0, CLI_FLAG, &json, NULL, "same as --format json"},
        {"watch", 'w', CLI_FLAG, &watch, NULL, "refresh until every cell has settled"},
        {"poll-interval", 0, CLI_DOUBLE, &poll_interval, "SECONDS", "--watch: seconds between polls (default 2; longer while slow)"},
        {"interval", 0, CLI_INT, &interval, "SECONDS", "same as --poll-interval"},
        {"no-poll", 0, CLI_FLAG, &no_poll, NULL, "show stored states without asking the backend"},
        {0}};
    const CliCommand cmd = {
        "segx status [EXPERIMENT] [options]",
        "One row per cell: short key, the parameters that vary, state, attempt, progress (epoch x/y from\n"
        "progress.json), ETA, elapsed time, job id and failure reason; then counts by state.\n"
        "Polls the backend once for all unsettled cells and stores their states.",
        opts, 0, 1, NULL};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (json) format = "json";
    if (poll_interval != -1 && !(poll_interval > 0)) {
        fprintf(stderr, "segx status: --poll-interval %g: give a number of seconds above 0\n", poll_interval);
        return 2;
    }
    if (poll_interval == -1) poll_interval = interval < 1 ? 1 : interval;
    PollPace pace;
    poll_pace_init(&pace, poll_interval);
    char err[2048];
    sqlite3 *db;
    ExperimentRef x;
    if ((rc = experiment_open(db_path, a.npos ? a.pos[0] : NULL, &db, &x, err, sizeof err)) != 0) {
        fprintf(stderr, "segx status: %s\n", err);
        return rc;
    }
    const long long eid = x.id;
    const char *name = x.name;
    int tty = cli_is_tty(stdout);
    const StatusRefreshOptions so = {.write_wait_ms = STATUS_WRITE_WAIT_MS, .say = cmd_status_say};
    for (;;) {
        StatusCounts c;
        double t0 = now_s();
        int r = no_poll ? 0 : status_refresh_ex(db, eid, &so, &c, err, sizeof err);
        double wait = poll_pace_next(&pace, now_s() - t0, !no_poll && r >= 0 && c.poll_failed);
        if (r < 0) { fprintf(stderr, "segx status: %s\n", err); rc = 1; break; }
        if (r == 1) fprintf(stderr, "segx status: the database is busy with another writer (a collect?): showing the stored states\n");
        if (no_poll) { memset(&c, 0, sizeof c); c.by_state[JOB_COMPLETED] = 1; }
        if (watch && tty) printf("\033[H\033[2J%s (every %gs%s, Ctrl-C stops)\n", name, wait, pace.slowed ? ": the scheduler is slow, asking less often" : "");
        int prc = status_print(db, eid, format, stdout, err, sizeof err);
        if (prc < 0) { fprintf(stderr, "segx status: %s\n", err); rc = prc == -2 ? 2 : 1; break; }
        fflush(stdout);
        rc = 0;
        if (!watch || all_settled(&c)) break;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    db_close(db);
    return rc;
}
