// orchestrator/cmd/cmd_serve.c — `segx serve`: the dashboard over the results DB (web/web.h).
#include "orchestrator/cmd/commands.h"
#include "orchestrator/cmd/cli.h"
#include "web/web.h"
#include "db/db.h"
#include <stdio.h>

int cmd_serve(int argc, char **argv)
{
    const char *dbflag = NULL, *bind = "127.0.0.1", *token = NULL;
    int port = 8470, threads = 0;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &dbflag, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"bind", 0, CLI_STRING, &bind, "ADDR", "address to listen on (default 127.0.0.1; others need --token)"},
        {"port", 'p', CLI_INT, &port, "N", "TCP port (default 8470; 0: any free port, printed)"},
        {"token", 0, CLI_STRING, &token, "SECRET", "required from clients (?token=SECRET once, or a Bearer header)"},
        {"threads", 0, CLI_INT, &threads, "N", "request threads (default 8)"},
        {0}};
    const CliCommand cmd = {
        "segx serve [options]",
        "Serves a dashboard of the results DB at http://127.0.0.1:8470/: experiments, the cell grid\n"
        "(refreshing while cells run), scaling with the ideal line, accuracy mean ± std over seeds,\n"
        "curves against epoch and wall-clock, cost, one cell's attempts and logs, and a read-only SQL box.\n"
        "Every page's data is JSON under /api/ (/api/e/NAME/speedup is `segx report speedup -e NAME\n"
        "--format json`). The DB is opened read-only, so it is safe beside `segx collect` and running\n"
        "experiments. Charts need Debian's libjs-vega (scripts/install-deps).",
        opts, 0, 0,
        "examples:\n  segx serve --db results.db\n  ssh -L 8470:127.0.0.1:8470 login-node   # then open http://127.0.0.1:8470/\n"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (port < 0 || port > 65535) { fprintf(stderr, "segx serve: --port %d: expected 0..65535\n", port); return 2; }
    if (threads < 0 || threads > 60) { fprintf(stderr, "segx serve: --threads %d: expected 1..60\n", threads); return 2; }
    WebServeOptions o = {.db_path = db_path_default(dbflag), .bind = bind, .token = token, .port = port,
                         .threads = threads, .log = stderr};
    return web_serve(&o);
}
