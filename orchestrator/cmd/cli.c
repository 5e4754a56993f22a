// orchestrator/cmd/cli.c — long-option parser and --help (see cli.h).
#include "orchestrator/cmd/cli.h"
#include "orchestrator/util/suggest.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// help

void cli_print_help(const CliCommand *cmd, FILE *f)
{
    fprintf(f, "usage: %s\n", cmd->usage);
    if (cmd->summary) fprintf(f, "\n%s\n", cmd->summary);
    fprintf(f, "\noptions:\n");
    for (const CliOption *o = cmd->options; o && o->name; o++) {
        char left[96];
        int n = 0;
        if (o->short_name) n = snprintf(left, sizeof left, "-%c, ", o->short_name);
        else n = snprintf(left, sizeof left, "    ");
        if (o->type == CLI_FLAG) snprintf(left + n, sizeof left - n, "--%s", o->name);
        else snprintf(left + n, sizeof left - n, "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
        fprintf(f, "  %-28s %s\n", left, o->help ? o->help : "");
    }
    fprintf(f, "  %-28s %s\n", "-h, --help", "show this help and exit");
    if (cmd->epilog) fprintf(f, "\n%s\n", cmd->epilog);
}

// ---------------------------------------------------------------------------------------------
// parsing

static const CliOption *find_long(const CliCommand *cmd, const char *name, size_t len)
{
    for (const CliOption *o = cmd->options; o && o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

static const CliOption *find_short(const CliCommand *cmd, char c)
{
    for (const CliOption *o = cmd->options; o && o->name; o++)
        if (o->short_name == c) return o;
    return NULL;
}

static int usage_error(const CliCommand *cmd, const char *argv0, const char *msg)
{
    fprintf(stderr, "segx %s: %s\n", argv0, msg);
    fprintf(stderr, "usage: %s\n(see `segx %s --help`)\n", cmd->usage, argv0);
    return 2;
}

static int set_value(const CliCommand *cmd, const char *argv0, const CliOption *o, const char *val)
{
    char msg[512];
    switch (o->type) {
    case CLI_FLAG: *(int *)o->value = 1; return 0;
    case CLI_STRING: *(const char **)o->value = val; return 0;
    case CLI_INT: {
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < INT_MIN || v > INT_MAX) {
            snprintf(msg, sizeof msg, "--%s: expected an integer, got '%s'", o->name, val);
            return usage_error(cmd, argv0, msg);
        }
        *(int *)o->value = (int)v;
        return 0;
    }
    case CLI_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) {
            snprintf(msg, sizeof msg, "--%s: expected a number, got '%s'", o->name, val);
            return usage_error(cmd, argv0, msg);
        }
        *(double *)o->value = v;
        return 0;
    }
    }
    return 0;
}

int cli_parse(const CliCommand *cmd, int argc, char **argv, CliArgs *out)
{
    out->npos = 0;
    const char *argv0 = argc > 0 ? argv[0] : "segx";
    char msg[512];
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == 0) {
            if (out->npos >= CLI_MAX_POS) return usage_error(cmd, argv0, "too many arguments");
            out->pos[out->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) { only_pos = 1; continue; }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_print_help(cmd, stdout);
            return 0;
        }
        const CliOption *o;
        const char *val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(cmd, name, len);
            if (!o) {
                const char *names[128];
                size_t n = 0;
                for (const CliOption *p = cmd->options; p && p->name && n < 126; p++) names[n++] = p->name;
                names[n++] = "help";
                names[n] = NULL;
                char word[128];
                snprintf(word, sizeof word, "%.*s", (int)len, name);
                const char *near = suggest_closest(word, names);
                if (near) snprintf(msg, sizeof msg, "unknown option '--%s' (did you mean '--%s'?)", word, near);
                else snprintf(msg, sizeof msg, "unknown option '--%s'", word);
                return usage_error(cmd, argv0, msg);
            }
            if (eq) {
                if (o->type == CLI_FLAG) {
                    snprintf(msg, sizeof msg, "--%s takes no value (got '%s')", o->name, eq + 1);
                    return usage_error(cmd, argv0, msg);
                }
                val = eq + 1;
            }
        } else {
            if (a[2] != 0 || !(o = find_short(cmd, a[1]))) {
                snprintf(msg, sizeof msg, "unknown option '%s'", a);
                return usage_error(cmd, argv0, msg);
            }
        }
        if (o->type != CLI_FLAG && !val) {
            if (i + 1 >= argc) {
                snprintf(msg, sizeof msg, "--%s needs a value (%s)", o->name, o->metavar ? o->metavar : "VALUE");
                return usage_error(cmd, argv0, msg);
            }
            val = argv[++i];
        }
        int rc = set_value(cmd, argv0, o, val);
        if (rc) return rc;
    }
    if (out->npos < cmd->min_pos) {
        snprintf(msg, sizeof msg, "missing argument (expected at least %d)", cmd->min_pos);
        return usage_error(cmd, argv0, msg);
    }
    if (cmd->max_pos >= 0 && out->npos > cmd->max_pos) {
        snprintf(msg, sizeof msg, "unexpected argument '%s'", out->pos[cmd->max_pos]);
        return usage_error(cmd, argv0, msg);
    }
    return CLI_CONTINUE;
}

// ---------------------------------------------------------------------------------------------
// terminal

int cli_is_tty(FILE *f)
{
    return isatty(fileno(f));
}
