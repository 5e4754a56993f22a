// orchestrator/render.c — mustache-like templates with shell quoting by default (see render.h).
#include "orchestrator/render.h"
#include "orchestrator/util/fileio.h"
#include "orchestrator/util/strbuf.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// output goes into a StrBuf (util/strbuf.h): out of memory is sticky and checked once at the end
static void quote_into(StrBuf *b, const char *s)
{
    sb_add(b, "'", 1);
    for (const char *c = s; *c; c++) {
        if (*c == '\'') sb_add(b, "'\\''", 4);
        else sb_add(b, c, 1);
    }
    sb_add(b, "'", 1);
}

char *render_shell_quote(const char *s)
{
    StrBuf b = {0};
    quote_into(&b, s ? s : "");
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

// Words a shell must run itself (a container or srun given them as argv would fail or run them on the host).
static int is_shell_builtin(const char *w, size_t n)
{
    static const char *const builtins[] = {"cd", ".", "source", "export", "exec", "eval", "set", "unset", "alias",
                                           "ulimit", "umask", "trap", "shopt", "pushd", "popd", "conda", "module", NULL};
    for (const char *const *b = builtins; *b; b++)
        if (strlen(*b) == n && strncmp(*b, w, n) == 0) return 1;
    return 0;
}

int render_shell_is_simple(const char *cmd)
{
    if (!cmd) return 0;
    const char *p = cmd;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) return 0;
    // the first word: a builtin or a NAME=value assignment needs a shell
    const char *w = p;
    while (*p && *p != ' ' && *p != '\t') {
        if (*p == '=' && p > w) return 0;
        if (*p == '\'' || *p == '"' || *p == '\\') break;   // a quoted first word: judged below
        p++;
    }
    if (is_shell_builtin(w, (size_t)(p - w))) return 0;
    char quote = 0;
    for (p = cmd; *p; p++) {
        if (quote == '\'') { if (*p == '\'') quote = 0; continue; }
        if (quote == '"') {
            if (*p == '\\' && p[1]) { p++; continue; }
            if (*p == '"') quote = 0;
            else if (*p == '$' || *p == '`') return 0;   // expansions inside double quotes
            continue;
        }
        if (*p == '\\') { if (!p[1] || p[1] == '\n') return 0; p++; continue; }
        if (*p == '\'' || *p == '"') { quote = *p; continue; }
        if (strchr(";&|<>()`$\n*?[]{}~#!", *p)) return 0;
    }
    return quote == 0;
}

const char *render_scalar(const json_t *v, char *buf, size_t len)
{
    switch (json_typeof(v)) {
    case JSON_STRING: snprintf(buf, len, "%s", json_string_value(v)); break;
    case JSON_INTEGER: snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: {
        double d = json_real_value(v);
        for (int prec = 6; prec <= 17; prec++) {  // shortest form that reads back exactly
            snprintf(buf, len, "%.*g", prec, d);
            if (strtod(buf, NULL) == d) break;
        }
        break;
    }
    case JSON_TRUE: snprintf(buf, len, "true"); break;
    case JSON_FALSE: snprintf(buf, len, "false"); break;
    case JSON_NULL: snprintf(buf, len, "%s", ""); break;
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        snprintf(buf, len, "%s", s ? s : "");
        free(s);
    }
    }
    return buf;
}

// ---------------------------------------------------------------------------------------------
// rendering: a recursive walk over the template text

#define MAX_DEPTH 16
typedef struct {
    const char *name;         // template name for errors
    const char *start;        // whole template (for line numbers)
    const json_t *stack[MAX_DEPTH];
    int depth;
    char *err;
    size_t errlen;
    int failed;
    int raw;                  // plain {{name}} tags insert the value as is (render_value)
} Ctx;

static int line_of(const Ctx *c, const char *at)
{
    int line = 1;
    for (const char *p = c->start; p < at; p++) line += *p == '\n';
    return line;
}

static void fail_at(Ctx *c, const char *at, const char *fmt, const char *arg)
{
    if (c->failed) return;
    c->failed = 1;
    char what[256];
    snprintf(what, sizeof what, fmt, arg);
    snprintf(c->err, c->errlen, "%s:%d: %s", c->name, line_of(c, at), what);
}

static const json_t *lookup(const Ctx *c, const char *name)
{
    if (strcmp(name, ".") == 0) return c->stack[c->depth - 1];
    for (int d = c->depth - 1; d >= 0; d--) {
        const json_t *v = c->stack[d];
        char part[128];
        const char *p = name;
        int found = 1;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t n = dot ? (size_t)(dot - p) : strlen(p);
            if (n >= sizeof part) return NULL;
            memcpy(part, p, n);
            part[n] = 0;
            if (!json_is_object(v) || !(v = json_object_get(v, part))) { found = 0; break; }
            p = dot ? dot + 1 : p + n;
        }
        if (found) return v;
    }
    return NULL;
}

static int truthy(const json_t *v)
{
    if (!v) return 0;
    switch (json_typeof(v)) {
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0;
    case JSON_TRUE: return 1;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_OBJECT: return json_object_size(v) > 0;
    default: return 0;
    }
}

typedef struct {
    char kind;        // 0 variable, '{' raw, '#' section, '^' inverted, '/' close, '!' comment
    char name[128];
    const char *begin, *end;   // the tag's text [begin, end)
} Tag;

// Finds the next tag at or after p; returns 0 when none (rest is literal), -1 on a bad tag.
static int next_tag(Ctx *c, const char *p, Tag *t)
{
    const char *o = strstr(p, "{{");
    if (!o) return 0;
    t->begin = o;
    const char *s = o + 2, *close;
    if (*s == '{') {
        t->kind = '{';
        s++;
        close = strstr(s, "}}}");
        if (!close) { fail_at(c, o, "unterminated '%s'", "{{{"); return -1; }
        t->end = close + 3;
    } else {
        close = strstr(s, "}}");
        if (!close) { fail_at(c, o, "unterminated '%s'", "{{"); return -1; }
        t->end = close + 2;
        t->kind = 0;
        if (*s == '#' || *s == '^' || *s == '/' || *s == '!') t->kind = *s++;
    }
    while (s < close && (*s == ' ' || *s == '\t')) s++;
    const char *e = close;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (t->kind == '!') { t->name[0] = 0; return 1; }
    if (t->kind == 0 && e - s > 4 && strncmp(s, "raw", 3) == 0 && (s[3] == ' ' || s[3] == '\t')) {
        t->kind = '{';
        s += 4;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
    }
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= sizeof t->name) { fail_at(c, o, "bad tag name near '%.40s'", o); return -1; }
    memcpy(t->name, s, n);
    t->name[n] = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = t->name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.')) {
            fail_at(c, o, "bad character in tag name '%s'", t->name);
            return -1;
        }
    }
    return 1;
}

// A section/comment tag alone on its line (blanks only around it) swallows the whole line.
static void standalone(const Ctx *c, const char *lit_start, Tag *t, const char **emit_end, const char **resume)
{
    *emit_end = t->begin;
    *resume = t->end;
    if (t->kind != '#' && t->kind != '^' && t->kind != '/' && t->kind != '!') return;
    const char *b = t->begin;
    while (b > c->start && b > lit_start && (b[-1] == ' ' || b[-1] == '\t')) b--;
    if (!(b == c->start || b[-1] == '\n')) return;
    if (b == lit_start && b != c->start && b[-1] != '\n') return;
    const char *e = t->end;
    while (*e == ' ' || *e == '\t' || *e == '\r') e++;
    if (*e != '\n' && *e != 0) return;
    *emit_end = b;
    *resume = *e == '\n' ? e + 1 : e;
}

// Renders [p, stop) into out. Returns the position after the closing tag of `section`
// (or stop when section is NULL).
static const char *render_range(Ctx *c, const char *p, const char *section, StrBuf *out, int emit);

static const char *skip_section(Ctx *c, const char *p, const char *name)
{
    return render_range(c, p, name, NULL, 0);
}

static const char *render_range(Ctx *c, const char *p, const char *section, StrBuf *out, int emit)
{
    while (!c->failed) {
        Tag t;
        int r = next_tag(c, p, &t);
        if (r < 0) return NULL;
        if (r == 0) {
            if (section) { fail_at(c, p, "section '%s' is not closed", section); return NULL; }
            if (emit) sb_puts(out, p);
            return p + strlen(p);
        }
        const char *emit_end, *resume;
        standalone(c, p, &t, &emit_end, &resume);
        if (emit) sb_add(out, p, (size_t)(emit_end - p));
        p = resume;
        char sbuf[4096];
        switch (t.kind) {
        case '!': break;
        case '/':
            if (!section || strcmp(section, t.name) != 0) {
                fail_at(c, t.begin, "unexpected closing tag '%s'", t.name);
                return NULL;
            }
            return p;
        case 0:
        case '{': {
            if (!emit) break;
            const json_t *v = lookup(c, t.name);
            if (!v) { fail_at(c, t.begin, "unknown variable '%s'", t.name); return NULL; }
            if (json_is_string(v)) {
                if (t.kind == '{' || c->raw) sb_puts(out, json_string_value(v));
                else quote_into(out, json_string_value(v));
            } else {
                render_scalar(v, sbuf, sizeof sbuf);
                if (t.kind == '{' || c->raw) sb_puts(out, sbuf);
                else quote_into(out, sbuf);
            }
            break;
        }
        case '#':
        case '^': {
            const json_t *v = emit ? lookup(c, t.name) : NULL;
            int on = emit && (t.kind == '#' ? truthy(v) : !truthy(v));
            if (!on) {
                p = skip_section(c, p, t.name);
                if (!p) return NULL;
                break;
            }
            if (c->depth >= MAX_DEPTH) { fail_at(c, t.begin, "sections nested too deep at '%s'", t.name); return NULL; }
            if (t.kind == '#' && json_is_array(v)) {
                const char *after = NULL;
                for (size_t i = 0; i < json_array_size(v); i++) {
                    c->stack[c->depth++] = json_array_get(v, i);
                    after = render_range(c, p, t.name, out, 1);
                    c->depth--;
                    if (!after) return NULL;
                }
                p = after;
            } else {
                int push = t.kind == '#' && json_is_object(v);
                if (push) c->stack[c->depth++] = v;
                p = render_range(c, p, t.name, out, 1);
                if (push) c->depth--;
                if (!p) return NULL;
            }
            break;
        }
        }
    }
    return NULL;
}

static int render_impl(const char *tmpl, const char *name, const json_t *ctx, int raw, char **out,
                       char *err, size_t errlen)
{
    *out = NULL;
    Ctx c = {.name = name, .start = tmpl, .depth = 1, .err = err, .errlen = errlen, .raw = raw};
    c.stack[0] = ctx;
    StrBuf b = {0};
    sb_add(&b, "", 0);
    const char *end = render_range(&c, tmpl, NULL, &b, 1);
    if (!end || c.failed || b.oom) {
        if (b.oom && !c.failed) snprintf(err, errlen, "%s: out of memory", name);
        free(b.p);
        return -1;
    }
    *out = b.p;
    return 0;
}

int render_template(const char *tmpl, const char *name, const json_t *ctx, char **out,
                    char *err, size_t errlen)
{
    return render_impl(tmpl, name, ctx, 0, out, err, errlen);
}

int render_value(const char *value, const char *name, const json_t *ctx, char **out, char *err, size_t errlen)
{
    return render_impl(value, name, ctx, 1, out, err, errlen);
}

int render_file(const char *path, const json_t *ctx, char **out, char *err, size_t errlen)
{
    *out = NULL;
    char why[PATH_MAX + 128];
    char *text = file_read(path, 0, NULL, why, sizeof why);
    if (!text) { snprintf(err, errlen, "%s: cannot read template: %s", path, strerror(errno)); return -1; }
    int rc = render_template(text, path, ctx, out, err, errlen);
    free(text);
    return rc;
}
