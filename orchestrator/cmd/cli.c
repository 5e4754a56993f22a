// orchestrator/cmd/cli.c — long-option parser, --help and path lookup (see cli.h).
#include "orchestrator/cmd/cli.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
// edit distance

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("modle" -> "model"
// is one edit), the commonest typo in keys and flags.
int cli_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 255 || lb > 255) return (int)(la > lb ? la : lb);
    int rows[3][256];
    int *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int m = sub < del ? sub : del;
            m = m < ins ? m : ins;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < m) m = pp[j - 2] + 1;
            cur[j] = m;
        }
        int *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *cli_closest(const char *word, const char *const *candidates)
{
    int limit = (int)strlen(word) / 3;
    if (limit < 1) limit = 1;
    const char *best = NULL;
    int bestd = limit + 1;
    for (const char *const *c = candidates; *c; c++) {
        int d = cli_edit_distance(word, *c);
        if (d < bestd) { bestd = d; best = *c; }
    }
    return best;
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
                const char *near = cli_closest(word, names);
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
// paths

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_exec(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

const char *cli_self_path(void)
{
    static char buf[PATH_MAX];
    const char *env = getenv("SEGX_SELF");
    if (env && *env) { snprintf(buf, sizeof buf, "%s", env); return buf; }
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "segx";
    buf[n] = 0;
    return buf;
}

const char *cli_self_dir(void)
{
    static char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", cli_self_path());
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
    else snprintf(buf, sizeof buf, ".");
    return buf;
}

const char *cli_templates_dir(void)
{
    static char buf[PATH_MAX];
    const char *env = getenv("SEGX_TEMPLATES");
    if (env && *env) { snprintf(buf, sizeof buf, "%s", env); return buf; }
    // bin/segx -> templates; BUILD/bin/segx (per-engineer build dirs) -> ../../templates
    const char *self = cli_self_dir();
    snprintf(buf, sizeof buf, "%s/../templates", self);
    if (is_dir(buf)) return buf;
    snprintf(buf, sizeof buf, "%s/../../templates", self);
    if (is_dir(buf)) return buf;
    // an installed segx (make install): PREFIX/bin/segx -> PREFIX/share/segx/templates
    snprintf(buf, sizeof buf, "%s/../share/segx/templates", self);
    if (is_dir(buf)) return buf;
    const char *root = getenv("SEGX_ROOT");
    if (root && *root) {
        snprintf(buf, sizeof buf, "%s/templates", root);
        if (is_dir(buf)) return buf;
    }
    return "templates";
}

const char *cli_trainer_path(void)
{
    static char buf[PATH_MAX];
    const char *env = getenv("SEGX_TRAIN");
    if (env && *env) { snprintf(buf, sizeof buf, "%s", env); return buf; }
    snprintf(buf, sizeof buf, "%s/segx-train", cli_self_dir());
    if (is_exec(buf)) return buf;
    const char *bin = getenv("SEGX_BIN");
    if (bin && *bin) {
        snprintf(buf, sizeof buf, "%s/segx-train", bin);
        if (is_exec(buf)) return buf;
    }
    return "segx-train";
}

int cli_is_tty(FILE *f)
{
    return isatty(fileno(f));
}
