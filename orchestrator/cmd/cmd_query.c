// orchestrator/cmd/cmd_query.c — `segx query "SQL"`: read-only SQL against the results DB.
// The DB is opened read-only and every statement is checked with sqlite3_stmt_readonly before
// it runs, so a write is refused with a message instead of a half-done change.
#include "orchestrator/cmd/commands.h"
#include "orchestrator/cmd/cli.h"
#include "orchestrator/table.h"
#include "db/db.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';') return 0;
    return 1;
}

// Every statement of sql prepared (and checked read-only) before any runs: a refused write in
// statement 3 prints nothing, and the JSON shape is known before the first row. 0, or the exit
// code (said); *stmts holds what was prepared either way.
static int prepare_all(sqlite3 *db, const char *sql, sqlite3_stmt ***stmts, size_t *nstmt)
{
    size_t cap = 0;
    while (sql && !is_blank(sql)) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) != SQLITE_OK) {
            fprintf(stderr, "segx query: SQL error: %s\n", sqlite3_errmsg(db));
            return 2;
        }
        if (!st) { sql = tail; continue; }  // a comment or empty statement
        if (!sqlite3_stmt_readonly(st)) {
            int n = (int)(tail ? tail - sql : (long)strlen(sql));
            while (n > 0 && (sql[n - 1] == ';' || sql[n - 1] == ' ' || sql[n - 1] == '\n')) n--;
            while (*sql == ' ' || *sql == '\n' || *sql == '\t') { sql++; n--; }
            fprintf(stderr, "segx query: refusing statement %zu, it would write to the database: %.*s\n"
                            "  segx query is read-only; use the sqlite3 shell on a copy to change data\n",
                    *nstmt + 1, n > 200 ? 200 : n, sql);
            sqlite3_finalize(st);
            return 2;
        }
        if (*nstmt == cap) {
            cap = cap ? 2 * cap : 8;
            sqlite3_stmt **ns = realloc(*stmts, cap * sizeof *ns);
            if (!ns) { sqlite3_finalize(st); fprintf(stderr, "segx query: out of memory\n"); return 1; }
            *stmts = ns;
        }
        (*stmts)[(*nstmt)++] = st;
        sql = tail;
    }
    return 0;
}

// JSON: one statement prints its array of row objects; several print one array holding each
// statement's array, so the output is always one JSON document. 0, or 1 (said).
static int print_all(sqlite3_stmt **stmts, size_t nstmt, TableFormat fmt)
{
    char err[1024];
    int status = 0, json_outer = fmt == TABLE_JSON && nstmt > 1;
    if (json_outer) fputs("[\n", stdout);
    for (size_t i = 0; status == 0 && i < nstmt; i++) {
        if (i > 0 && json_outer) fputs(",\n", stdout);
        else if (i > 0 && fmt != TABLE_JSON && fmt != TABLE_CSV) fputc('\n', stdout);
        if (table_print_stmt(stmts[i], fmt, stdout, err, sizeof err) < 0) {
            fprintf(stderr, "segx query: %s\n", err);
            status = 1;
        }
    }
    if (status == 0 && json_outer) fputs("]\n", stdout);
    return status;
}

int cmd_query(int argc, char **argv)
{
    const char *dbflag = NULL, *format = "auto";
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &dbflag, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"format", 'f', CLI_STRING, &format, "FMT", "table (default), csv, json or markdown"},
        {0}};
    const CliCommand cmd = {
        "segx query \"SQL\" [options]",
        "Runs read-only SQL (one or more statements) against the results DB and prints each result.\n"
        "--format json prints one JSON document: the array of row objects of a single statement, or\n"
        "with several statements an array holding one such array per statement. --format csv takes\n"
        "one statement (one header line, then rows); table and markdown print each result in turn.\n"
        "Writes (INSERT, UPDATE, DELETE, CREATE, ...) are refused. Tables and views: db/README.md.",
        opts, 1, 1,
        "examples:\n"
        "  segx query \"SELECT model, gpus, speedup_throughput FROM scaling\"\n"
        "  segx query --format csv \"SELECT * FROM cell_metrics\" > cells.csv\n"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    TableFormat fmt;
    if (table_format_parse(format, &fmt) < 0) {
        fprintf(stderr, "segx query: --format '%s': expected table, csv, json or markdown\n", format);
        return 2;
    }
    const char *path = db_path_default(dbflag);
    sqlite3 *db;
    char err[1024];
    if (db_open(path, DB_READONLY, &db, err, sizeof err) < 0) {
        fprintf(stderr, "segx query: %s\n", err);
        return 1;
    }
    sqlite3_stmt **stmts = NULL;
    size_t nstmt = 0;
    int status = prepare_all(db, a.pos[0], &stmts, &nstmt);
    // CSV has no way to say where one table ends and the next begins: one statement only.
    if (status == 0 && fmt == TABLE_CSV && nstmt > 1) {
        fprintf(stderr, "segx query: --format csv prints one table, but the SQL has %zu statements: pass one "
                        "statement per call (or --format json, which prints one result per statement)\n", nstmt);
        status = 2;
    }
    if (status == 0) status = print_all(stmts, nstmt, fmt);
    for (size_t i = 0; i < nstmt; i++) sqlite3_finalize(stmts[i]);
    free(stmts);
    db_close(db);
    if (status == 0 && nstmt == 0) {
        fprintf(stderr, "segx query: no SQL statement given\n");
        return 2;
    }
    return status;
}
