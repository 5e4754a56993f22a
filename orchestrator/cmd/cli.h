// orchestrator/cmd/cli.h — the shared command-line helper of the segx subcommands: long options
// (`--name value`, `--name=value`, flags, `-h`/`--help`, `--` ends options), positional
// arguments, --help text generated from the option table, "did you mean" for misspelt flags
// (util/suggest.h). The paths every subcommand needs (templates dir, the segx-train beside segx)
// are util/paths.h's.
// defines: CliOption, CliCommand, CliArgs, cli_parse, cli_print_help, cli_is_tty.
//
// Usage in a cmd_<name>.c:
//     const char *db = NULL; int json = 0;
//     const CliOption opts[] = {
//         {"db", 0, CLI_STRING, &db, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
//         {"json", 0, CLI_FLAG, &json, NULL, "machine-readable output"},
//         {0}};
//     const CliCommand cmd = {"segx status [EXPERIMENT] [options]", "Shows ...", opts, 0, 1, NULL};
//     CliArgs a;
//     int rc = cli_parse(&cmd, argc, argv, &a);
//     if (rc != CLI_CONTINUE) return rc;       // 0 after --help, 2 after a usage error
//     ... a.pos[0..a.npos-1] are the positional arguments ...
#ifndef SEGX_CLI_H
#define SEGX_CLI_H
#include <stddef.h>
#include <stdio.h>

typedef enum { CLI_FLAG, CLI_STRING, CLI_INT, CLI_DOUBLE } CliType;

typedef struct {
    const char *name;   // long name without "--"; NULL ends the table
    char short_name;    // e.g. 'n' for -n, 0 for none
    CliType type;
    void *value;        // int * (FLAG: set to 1, INT), const char ** (STRING), double * (DOUBLE)
    const char *metavar;// shown in --help, e.g. "FILE" (ignored for flags)
    const char *help;   // one line
} CliOption;

typedef struct {
    const char *usage;      // "segx plan SPEC [options]"
    const char *summary;    // a few lines printed under the usage line
    const CliOption *options;
    int min_pos, max_pos;   // positional argument count bounds; max_pos -1 = unbounded
    const char *epilog;     // printed after the options (examples); may be NULL
} CliCommand;

#define CLI_MAX_POS 64
typedef struct {
    int npos;
    char *pos[CLI_MAX_POS];
} CliArgs;

#define CLI_CONTINUE (-1)
// argv[0] is the subcommand's name. Returns CLI_CONTINUE to go on, 0 after printing --help
// (stdout), 2 after a usage error (stderr, naming the flag or value, with a close match).
int  cli_parse(const CliCommand *cmd, int argc, char **argv, CliArgs *out);
void cli_print_help(const CliCommand *cmd, FILE *f);

int  cli_is_tty(FILE *f);

#endif
