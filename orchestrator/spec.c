// orchestrator/spec.c — reading and checking experiment specs (see spec.h).
#include "orchestrator/spec.h"
#include "orchestrator/util/suggest.h"
#include "orchestrator/cluster.h"
#include "orchestrator/notify.h"
#include "orchestrator/util/fileio.h"
#include "orchestrator/util/jscan.h"
#include "orchestrator/util/units.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const SPEC_KNOWN_AXES[] = {
    "model", "gpu_type", "gpus", "nodes", "batch_per_gpu", "global_batch", "optimizer", "lr", "seed", NULL};
static const char *const TOP_KEYS[] = {
    "name", "trainer", "matrix", "exclude", "include", "scaling", "lr_scaling", "resources",
    "cluster", "container", "eval", "notify", NULL};
static const char *const RESOURCE_KEYS[] = {"time", "cpus_per_gpu", "mem_per_gpu", NULL};
// trainer keys with a meaning of their own (the rest are trainer flags)
static const char *const TRAINER_KEYS[] = {
    "command", "dataset", "epochs", "optimizer", "lr", "args", "metrics", "launch", NULL};

// ---------------------------------------------------------------------------------------------
// locating a key path in the JSON text (jansson keeps no positions for decoded values)

// Steps into the array at s->p past idx elements and their commas; 0, or -1 when it cannot.
static int enter_index(JScan *s, long idx)
{
    char t;
    if (!jscan_at(s, '[')) return -1;
    s->p++;
    jscan_ws(s);
    for (long i = 0; i < idx; i++) {
        if (jscan_value(s, &t, NULL) != JSCAN_OK) return -1;
        jscan_ws(s);
        if (!jscan_at(s, ',')) return -1;
        s->p++;
        jscan_ws(s);
    }
    return 0;
}

// Steps into the object at s->p to the value of key [k, k + n) (*keypos: the key's opening quote);
// 0, or -1 when the key is not there.
static int enter_key(JScan *s, const char *k, size_t n, const char **keypos)
{
    char t;
    if (!jscan_at(s, '{')) return -1;
    s->p++;
    jscan_ws(s);
    while (jscan_at(s, '"')) {
        const char *kstart = s->p;
        if (jscan_string(s) != JSCAN_OK) return -1;
        size_t klen = (size_t)(s->p - kstart - 2);
        jscan_ws(s);
        if (!jscan_at(s, ':')) return -1;
        s->p++;
        jscan_ws(s);
        if (klen == n && strncmp(kstart + 1, k, n) == 0) {
            *keypos = kstart;
            return 0;
        }
        if (jscan_value(s, &t, NULL) != JSCAN_OK) return -1;
        jscan_ws(s);
        if (jscan_at(s, ',')) {
            s->p++;
            jscan_ws(s);
        }
    }
    return -1;
}

// Finds the value (or, with want_key, the key) at keypath; NULL when absent.
static const char *locate_ptr(const char *text, const char *keypath, int want_key)
{
    JScan s = {text, text + strlen(text), JSCAN_DEEPEST, 0};
    const char *kp = keypath, *keypos = NULL;
    jscan_ws(&s);
    while (*kp) {
        if (*kp == '.') kp++;
        if (*kp == '[') {
            long idx = strtol(kp + 1, (char **)&kp, 10);
            if (*kp == ']') kp++;
            if (enter_index(&s, idx) < 0) return NULL;
            keypos = s.p;
            continue;
        }
        size_t n = strcspn(kp, ".[");
        if (enter_key(&s, kp, n, &keypos) < 0) return NULL;
        kp += n;
    }
    return want_key && keypos ? keypos : s.p;
}

int spec_locate(const char *text, const char *keypath, int *line, int *col)
{
    *line = *col = 0;
    const char *p = locate_ptr(text, keypath, 0);
    if (!p) return -1;
    jscan_line_col(text, p, line, col);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// error reporting

typedef struct {
    const char *path, *text;
    char *err;
    size_t errlen;
} Chk;

// "FILE:LINE:COL: KEYPATH: message"; at_key points at the key instead of its value.
static int fail(const Chk *c, const char *keypath, int at_key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = 0, col = 0;
    const char *at = keypath && *keypath ? locate_ptr(c->text, keypath, at_key) : NULL;
    if (at) jscan_line_col(c->text, at, &line, &col);
    if (line) snprintf(c->err, c->errlen, "%s:%d:%d: %s: %s", c->path, line, col, keypath, msg);
    else if (keypath && *keypath) snprintf(c->err, c->errlen, "%s: %s: %s", c->path, keypath, msg);
    else snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
    return -1;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

// The value itself for messages: a scalar as JSON (a long string cut, with its length), else
// its type. buf should hold 128 bytes.
static const char *describe(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v) && json_string_length(v) > 60) {
        snprintf(buf, len, "\"%.40s...\" (a string of %zu characters)", json_string_value(v), json_string_length(v));
        return buf;
    }
    if (json_is_string(v) || json_is_number(v) || json_is_boolean(v)) {
        char *s = json_dumps(v, JSON_ENCODE_ANY);
        snprintf(buf, len, "%s", s ? s : "?");
        free(s);
        return buf;
    }
    return type_name(v);
}

// describe() into a per-thread buffer: one value per message.
static const char *shown(const json_t *v)
{
    static _Thread_local char buf[160];
    return describe(v, buf, sizeof buf);
}

// An integer in [lo, hi] at keypath (checked before any conversion, so 4294967297 is never read
// as 1). 0 and *out, or -1 with "expected an integer from LO to HI (what), got VALUE".
static int int_in(const Chk *c, const char *keypath, const json_t *v, json_int_t lo, json_int_t hi, const char *what,
                  long long *out)
{
    char d[128];
    if (json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi) {
        *out = json_integer_value(v);
        return 0;
    }
    return fail(c, keypath, 0, "expected an integer from %" JSON_INTEGER_FORMAT " to %" JSON_INTEGER_FORMAT "%s%s%s, got %s",
                lo, hi, what ? " (" : "", what ? what : "", what ? ")" : "", describe(v, d, sizeof d));
}

static int unknown_key(const Chk *c, const char *keypath, const char *key, const char *const *known)
{
    const char *near = suggest_closest(key, known);
    char list[512] = "";
    size_t n = 0;
    for (const char *const *k = known; *k && n < sizeof list - 40; k++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", *k);
    if (near) return fail(c, keypath, 1, "unknown key '%s' (did you mean '%s'?)", key, near);
    return fail(c, keypath, 1, "unknown key '%s' (expected one of: %s)", key, list);
}

static int check_keys(const Chk *c, const json_t *obj, const char *prefix, const char *const *known)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        int ok = 0;
        for (const char *const *q = known; *q; q++) ok |= strcmp(*q, k) == 0;
        if (!ok) {
            char kp[256];
            snprintf(kp, sizeof kp, "%s%s%s", prefix, *prefix ? "." : "", k);
            return unknown_key(c, kp, k, known);
        }
    }
    return 0;
}

static int is_scalar(const json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
}

// ---------------------------------------------------------------------------------------------
// value checks

// Slurm's forms, read once for specs, #SBATCH lines and the local backend (util/units.h).
long spec_parse_time(const char *s) { return units_time_s(s); }

// A time limit at keypath -> seconds and "HH:MM:SS" / "D-HH:MM:SS" in out (32 bytes).
static int norm_time(const Chk *c, const char *keypath, const json_t *v, long *secs, char *out)
{
    long t = -1;
    char buf[64], shown_v[128];
    if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= SPEC_MAX_TIME_S / 60)
        t = (long)json_integer_value(v) * 60;
    else if (json_is_string(v)) t = spec_parse_time(json_string_value(v));
    if (t <= 0)
        return fail(c, keypath, 0, "expected a Slurm time limit: minutes (1 to %ld), \"MM:SS\", \"HH:MM:SS\", \"D-HH\", "
                    "\"D-HH:MM\" or \"D-HH:MM:SS\" (minutes and seconds 0-59, hours 0-23 after a day count; at "
                    "most %ld days), got %s", (long)(SPEC_MAX_TIME_S / 60), (long)(SPEC_MAX_TIME_S / 86400),
                    describe(v, shown_v, sizeof shown_v));
    *secs = t;
    long d = t / 86400, h = t % 86400 / 3600, m = t % 3600 / 60, sec = t % 60;
    if (d) snprintf(buf, sizeof buf, "%ld-%02ld:%02ld:%02ld", d, h, m, sec);
    else snprintf(buf, sizeof buf, "%02ld:%02ld:%02ld", h, m, sec);
    memcpy(out, buf, 31);
    out[31] = 0;
    return 0;
}

static int check_time(const Chk *c, Spec *s, const json_t *v)
{
    if (norm_time(c, "resources.time", v, &s->time_s, s->time_buf) < 0) return -1;
    s->time = s->time_buf;
    return 0;
}

// Translates the Perl-ish escapes people copy from Python (\d \w \s) to POSIX ERE classes.
static char *ere_from_pattern(const char *pat)
{
    size_t cap = strlen(pat) * 12 + 1;
    char *o = malloc(cap), *q = o;
    if (!o) return NULL;
    for (const char *p = pat; *p; p++) {
        if (*p == '\\' && p[1]) {
            const char *rep = NULL;
            switch (p[1]) {
            case 'd': rep = "[0-9]"; break;
            case 'D': rep = "[^0-9]"; break;
            case 'w': rep = "[A-Za-z0-9_]"; break;
            case 'W': rep = "[^A-Za-z0-9_]"; break;
            case 's': rep = "[[:space:]]"; break;
            case 'S': rep = "[^[:space:]]"; break;
            }
            if (rep) { q += sprintf(q, "%s", rep); p++; continue; }
            *q++ = *p++;
        }
        *q++ = *p;
    }
    *q = 0;
    return o;
}

// Rough count of the states glibc's regcomp builds for an ERE: it copies the operand of '+' and
// of {m,n} (x+ is xx*, x{2,4} is xxx?x?), so stacked or nested repetitions grow exponentially
// (fuzz_logparse: "\\[+++...+" of 48 characters took 2.7 GB in regcomp). Saturates at limit.
static long ere_states(const char *p, long limit)
{
    long total[64] = {0}, last[64] = {0};   // per open group: states so far, states of the last atom
    int d = 0, after_rep = 0;
    while (*p) {
        long atom = 1;
        int rep = *p == '+' || *p == '*' || *p == '?' || (*p == '{' && isdigit((unsigned char)p[1]));
        if (rep && after_rep) return -1;   // "x+*+": undefined in POSIX ERE, and glibc's e-closure explodes on it
        after_rep = rep;
        if (*p == '(') {
            if (d == 63) return limit;
            d++;
            total[d] = last[d] = 0;
            p++;
            continue;
        } else if (*p == ')' && d > 0) {
            atom = total[d] + 1;
            d--;
            p++;
        } else if (*p == '[') {   // a bracket expression is one state: []...], [^]...], [:alpha:]
            const char *q = p + 1;
            if (*q == '^') q++;
            if (*q == ']') q++;
            while (*q && *q != ']') q += q[0] == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=') && strchr(q + 2, q[1])
                                        ? (strchr(q + 2, q[1]) - q) + 1 : 1;
            p = *q ? q + 1 : q;
        } else if (*p == '\\' && p[1]) {
            p += 2;
        } else if (*p == '+' || *p == '{') {
            long copies = 2;
            if (*p == '{') {
                char *e;
                long m = strtol(p + 1, &e, 10), n = m;   // clamped: {99999999999999999999} saturates strtol
                if (m < 0 || m > limit) m = limit;
                if (*e == ',') n = isdigit((unsigned char)e[1]) ? strtol(e + 1, &e, 10) : m + 1;
                if (n < 0 || n > limit) n = limit;
                copies = (n > m ? n : m) + 1;
                if (copies > limit) return limit;
                p = strchr(p, '}') ? strchr(p, '}') + 1 : p + strlen(p);
            } else {
                p++;
            }
            total[d] += last[d] * (copies - 1);
            last[d] *= copies;
            if (total[d] > limit || last[d] > limit) return limit;
            continue;
        } else if (*p == '*' || *p == '?') {
            total[d]++;
            p++;
            continue;
        } else if (*p == '|') {
            last[d] = 0;
            p++;
            continue;
        } else {
            p++;
        }
        total[d] += atom;
        last[d] = atom;
        if (total[d] > limit) return limit;
    }
    long sum = 0;
    for (int i = 0; i <= d; i++) sum += total[i];
    return sum > limit ? limit : sum;
}

int spec_compile_metric(const char *pattern, regex_t *re, char *err, size_t errlen)
{
    if (strlen(pattern) > SPEC_MAX_REGEX) {
        snprintf(err, errlen, "is %zu characters long; at most %d are allowed", strlen(pattern), SPEC_MAX_REGEX);
        return -1;
    }
    char *ere = ere_from_pattern(pattern);
    if (!ere) { snprintf(err, errlen, "out of memory"); return -1; }
    long states = ere_states(ere, SPEC_MAX_REGEX_STATES);
    if (states < 0) {
        snprintf(err, errlen, "a repetition ('+', '*', '?', '{m,n}') right after another one is undefined in POSIX ERE; "
                 "write one (x+ rather than x++ or x+*)");
        free(ere);
        return -1;
    }
    if (states >= SPEC_MAX_REGEX_STATES) {
        snprintf(err, errlen, "too complex: its repetitions ('+', '{m,n}' on groups or on each other) would build more "
                 "than %d regex states; simplify it (e.g. '(x+)+' is 'x+')", SPEC_MAX_REGEX_STATES);
        free(ere);
        return -1;
    }
    int rc = regcomp(re, ere, REG_EXTENDED);
    if (rc) {
        regerror(rc, re, err, errlen);
        free(ere);
        return -1;
    }
    free(ere);
    if (re->re_nsub < 1) {
        regfree(re);
        snprintf(err, errlen, "needs one capture group '(...)' around the value");
        return -1;
    }
    return 0;
}

static int axis_int_range(const char *axis, json_int_t *lo, json_int_t *hi);

// A trainer key or trainer.args key that names an integer axis (gpus, seed, ...) fixes that axis
// for every cell, so it gets the axis's range check.
static int check_fixed_axis(const Chk *c, const char *keypath, const char *key, const json_t *v)
{
    json_int_t lo, hi;
    long long x;
    if (!axis_int_range(key, &lo, &hi)) return 0;
    return int_in(c, keypath, v, lo, hi, NULL, &x);
}

static int check_trainer(const Chk *c, Spec *s)
{
    json_t *t = s->trainer;
    const char *k;
    json_t *v;
    s->command = "segx-train";
    json_object_foreach(t, k, v) {
        char kp[256];
        snprintf(kp, sizeof kp, "trainer.%s", k);
        if (check_fixed_axis(c, kp, k, v) < 0) return -1;
        if (strcmp(k, "command") == 0) {
            if (!json_is_string(v) || !*json_string_value(v))
                return fail(c, kp, 0, "expected a non-empty string (\"segx-train\" or a command template), got %s", shown(v));
            s->command = json_string_value(v);
        } else if (strcmp(k, "dataset") == 0 || strcmp(k, "optimizer") == 0) {
            if (!json_is_string(v)) return fail(c, kp, 0, "expected a string, got %s", shown(v));
        } else if (strcmp(k, "epochs") == 0) {
            long long e;
            if (int_in(c, kp, v, 1, SPEC_MAX_EPOCHS, NULL, &e) < 0) return -1;
        } else if (strcmp(k, "lr") == 0) {
            if (!json_is_number(v) || json_number_value(v) <= 0)
                return fail(c, kp, 0, "expected a positive number, got %s", shown(v));
        } else if (strcmp(k, "launch") == 0) {
            const char *l = json_string_value(v);
            if (!l || (strcmp(l, "per-rank") && strcmp(l, "once")))
                return fail(c, kp, 0, "expected \"per-rank\" or \"once\"");
            s->launch_once = strcmp(l, "once") == 0;
        } else if (strcmp(k, "args") == 0) {
            if (!json_is_object(v)) return fail(c, kp, 0, "expected an object of trainer flags, got %s", shown(v));
            const char *ak;
            json_t *av;
            json_object_foreach(v, ak, av) {
                snprintf(kp, sizeof kp, "trainer.args.%s", ak);
                if (check_fixed_axis(c, kp, ak, av) < 0) return -1;
                if (!is_scalar(av)) return fail(c, kp, 0, "expected a string, number or boolean, got %s", shown(av));
            }
        } else if (strcmp(k, "metrics") == 0) {
            if (!json_is_object(v)) return fail(c, kp, 0, "expected an object {name: regex}, got %s", shown(v));
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                snprintf(kp, sizeof kp, "trainer.metrics.%s", mk);
                if (!json_is_string(mv)) return fail(c, kp, 0, "expected a regular expression string, got %s", shown(mv));
                regex_t re;
                char e[256];
                if (spec_compile_metric(json_string_value(mv), &re, e, sizeof e) < 0)
                    return fail(c, kp, 0, "bad regular expression: %s", e);
                regfree(&re);
            }
            s->metrics = v;
        } else if (!is_scalar(v)) {
            const char *near = suggest_closest(k, TRAINER_KEYS);
            if (near) return fail(c, kp, 1, "unknown key '%s' (did you mean '%s'?)", k, near);
            return fail(c, kp, 0, "a trainer flag must be a string, number or boolean, got %s", shown(v));
        }
    }
    s->external = strcmp(s->command, "segx-train") != 0;
    if (!s->external && json_object_get(t, "launch") == NULL) s->launch_once = 0;
    else if (s->external && json_object_get(t, "launch") == NULL) s->launch_once = 1;
    if (s->external && s->metrics == NULL && strstr(s->command, "{{") == NULL)
        return fail(c, "trainer.command", 0, "an external command must use at least {{run_dir}} "
                    "(so its outputs land in the cell's run dir) or name trainer.metrics");
    return 0;
}

static int is_known_axis(const char *k)
{
    for (const char *const *q = SPEC_KNOWN_AXES; *q; q++)
        if (strcmp(*q, k) == 0) return 1;
    return 0;
}

// The range of an integer axis (segx converts these to int, so each is checked before any
// conversion); 0 when axis is not an integer axis.
static int axis_int_range(const char *axis, json_int_t *lo, json_int_t *hi)
{
    static const struct { const char *axis; json_int_t lo, hi; } r[] = {
        {"gpus", 1, SPEC_MAX_GPUS}, {"nodes", 1, SPEC_MAX_NODES}, {"batch_per_gpu", 1, SPEC_MAX_BATCH},
        {"global_batch", 1, SPEC_MAX_BATCH}, {"seed", 0, SPEC_MAX_SEED}};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (strcmp(axis, r[i].axis) == 0) { *lo = r[i].lo; *hi = r[i].hi; return 1; }
    return 0;
}

// Type rule of one axis value; NULL when fine, else what was expected (in buf when it says a range).
static const char *axis_value_problem(const char *axis, const json_t *v, char *buf, size_t len)
{
    json_int_t lo, hi;
    if (axis_int_range(axis, &lo, &hi)) {
        if (json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi) return NULL;
        snprintf(buf, len, "an integer from %" JSON_INTEGER_FORMAT " to %" JSON_INTEGER_FORMAT, lo, hi);
        return buf;
    }
    if (strcmp(axis, "lr") == 0) return json_is_number(v) && json_number_value(v) > 0 ? NULL : "a positive number";
    if (strcmp(axis, "model") == 0 || strcmp(axis, "gpu_type") == 0 || strcmp(axis, "optimizer") == 0)
        return json_is_string(v) && json_string_length(v) > 0 ? NULL : "a non-empty string";
    return is_scalar(v) ? NULL : "a string, number or boolean";
}

static int check_matrix(const Chk *c, Spec *s)
{
    json_t *m = s->matrix;
    if (json_object_size(m) == 0) return fail(c, "matrix", 0, "expected at least one axis, e.g. \"model\": [\"unet\"]");
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        char kp[256], d[128];
        snprintf(kp, sizeof kp, "matrix.%s", k);
        if (!is_known_axis(k)) {
            // Extra axes are trainer flags, but one a letter or two from a known axis is a typo.
            for (const char *const *q = SPEC_KNOWN_AXES; *q; q++) {
                int dist = suggest_edit_distance(k, *q);
                if (dist > 0 && dist <= (strlen(*q) <= 4 ? 1 : 2))
                    return fail(c, kp, 1, "unknown axis '%s' (did you mean '%s'?)", k, *q);
            }
        }
        if (!json_is_array(v) || json_array_size(v) == 0)
            return fail(c, kp, 0, "expected a non-empty list of values, got %s", json_is_array(v) ? "[]" : shown(v));
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            snprintf(kp, sizeof kp, "matrix.%s[%zu]", k, i);
            char range[96];
            const char *want = axis_value_problem(k, e, range, sizeof range);
            if (want) return fail(c, kp, 0, "expected %s, got %s", want, describe(e, d, sizeof d));
            for (size_t j = 0; j < i; j++)
                if (json_equal(json_array_get(v, j), e))
                    return fail(c, kp, 0, "duplicate value %s (already at [%zu])", describe(e, d, sizeof d), j);
        }
    }
    int has_bpg = json_object_get(m, "batch_per_gpu") != NULL, has_gb = json_object_get(m, "global_batch") != NULL;
    if (s->strong) {
        if (has_bpg) return fail(c, "matrix.batch_per_gpu", 1, "strong scaling keeps the global batch: use matrix.global_batch (divided by gpus)");
        if (!has_gb) return fail(c, "matrix", 0, "strong scaling needs matrix.global_batch");
    } else {
        if (has_gb) return fail(c, "matrix.global_batch", 1, "weak scaling keeps the batch per GPU: use matrix.batch_per_gpu (or \"scaling\": \"strong\")");
        if (!has_bpg) return fail(c, "matrix", 0, "weak scaling needs matrix.batch_per_gpu");
    }
    return 0;
}

static int check_partials(const Chk *c, Spec *s, const char *what, json_t *list)
{
    if (!json_is_array(list)) return fail(c, what, 0, "expected a list of partial cells, got %s", shown(list));
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        char kp[256], d[128];
        snprintf(kp, sizeof kp, "%s[%zu]", what, i);
        if (!json_is_object(e) || json_object_size(e) == 0)
            return fail(c, kp, 0, "expected a non-empty object such as {\"model\": \"cnn\"}, got %s", shown(e));
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v) {
            snprintf(kp, sizeof kp, "%s[%zu].%s", what, i, k);
            if (!json_object_get(s->matrix, k) && !is_known_axis(k)) {
                const char *names[64];
                size_t n = 0;
                const char *mk;
                json_t *mv;
                json_object_foreach(s->matrix, mk, mv) if (n < 40) names[n++] = mk;
                for (const char *const *q = SPEC_KNOWN_AXES; *q && n < 62; q++) names[n++] = *q;
                names[n] = NULL;
                const char *near = suggest_closest(k, names);
                if (near) return fail(c, kp, 1, "unknown axis '%s' (did you mean '%s'?)", k, near);
                return fail(c, kp, 1, "unknown axis '%s' (not in matrix)", k);
            }
            json_t *vals = v;
            if (json_is_array(v) && json_array_size(v) == 0) return fail(c, kp, 0, "expected a value or a non-empty list");
            for (size_t j = 0; j < (json_is_array(v) ? json_array_size(v) : 1); j++) {
                json_t *x = json_is_array(v) ? json_array_get(vals, j) : v;
                char range[96];
                const char *want = axis_value_problem(k, x, range, sizeof range);
                if (want) {
                    if (json_is_array(v)) snprintf(kp, sizeof kp, "%s[%zu].%s[%zu]", what, i, k, j);
                    return fail(c, kp, 0, "expected %s, got %s", want, describe(x, d, sizeof d));
                }
            }
        }
    }
    return 0;
}

static int check_name(const Chk *c, const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return fail(c, "name", 0, "expected a non-empty string of at most %d characters (it names runs/<name>/), got %s",
                    SPEC_MAX_NAME, shown(v));
    if (json_string_length(v) > SPEC_MAX_NAME)
        return fail(c, "name", 0, "is %zu characters long; at most %d are allowed (it names runs/<name>/ and Slurm job names)",
                    json_string_length(v), SPEC_MAX_NAME);
    for (const char *p = json_string_value(v); *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return fail(c, "name", 0, "'%s' may only hold letters, digits, '.', '_' and '-' (it names a directory)",
                        json_string_value(v));
    if (json_string_value(v)[0] == '.') return fail(c, "name", 0, "must not start with '.'");
    return 0;
}

// One memory size ("16G", "4096M", "512" = MB), as a cluster profile writes it.
static int check_mem_size(const Chk *c, const char *keypath, const json_t *v)
{
    const char *m = json_string_value(v);
    char d[128];
    if (!m || cluster_mem_mb(m) < 0 || strlen(m) >= sizeof ((ClusterGpu *)0)->mem_per_gpu)
        return fail(c, keypath, 0, "expected a memory size per GPU such as \"16G\" or \"4096M\" (digits alone are MB), got %s",
                    describe(v, d, sizeof d));
    return 0;
}

// resources.mem_per_gpu: one size for every GPU type, or {gpu_type: size} for some of them (the
// others keep the cluster profile's). plan.c checks the GPU types against the profile.
static int check_mem_per_gpu(const Chk *c, Spec *s, const json_t *x)
{
    if (json_is_object(x)) {
        if (json_object_size(x) == 0)
            return fail(c, "resources.mem_per_gpu", 0, "expected a size or {\"gpu_type\": size, ...}, got {}");
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)x, k, v) {
            char kp[256];
            snprintf(kp, sizeof kp, "resources.mem_per_gpu.%s", k);
            if (check_mem_size(c, kp, v) < 0) return -1;
        }
        s->mem_per_gpu_by_type = (json_t *)x;
        return 0;
    }
    if (!json_is_string(x))
        return fail(c, "resources.mem_per_gpu", 0, "expected a size such as \"16G\" or an object {\"a100\": \"64G\", ...}, got %s",
                    shown(x));
    if (check_mem_size(c, "resources.mem_per_gpu", x) < 0) return -1;
    s->mem_per_gpu = json_string_value(x);
    return 0;
}

// eval.job: {time, gpus, gpu_type, cpus_per_gpu, mem_per_gpu, command}; every key optional
// except command with an external trainer. Defaults: the train job's time limit, 1 GPU of the
// cell's type, the train job's CPUs and memory per GPU.
static int check_eval_job(const Chk *c, Spec *s, const json_t *j)
{
    static const char *const keys[] = {"time", "gpus", "gpu_type", "cpus_per_gpu", "mem_per_gpu", "command", NULL};
    if (!json_is_object(j))
        return fail(c, "eval.job", 0, "expected an object such as {\"time\": \"00:20:00\", \"gpus\": 1}, got %s", shown(j));
    if (check_keys(c, j, "eval.job", keys) < 0) return -1;
    json_t *x;
    s->eval_job = (json_t *)j;
    s->eval_gpus = 1;
    s->eval_time_s = s->time_s;
    memcpy(s->eval_time_buf, s->time_buf, sizeof s->eval_time_buf);
    if ((x = json_object_get(j, "time")) && norm_time(c, "eval.job.time", x, &s->eval_time_s, s->eval_time_buf) < 0) return -1;
    s->eval_time = s->eval_time_buf;
    if ((x = json_object_get(j, "gpus"))) {
        long long g;
        if (int_in(c, "eval.job.gpus", x, 1, SPEC_MAX_CPUS_PER_GPU, "GPUs of the eval job, on one node", &g) < 0) return -1;
        s->eval_gpus = (int)g;
    }
    if ((x = json_object_get(j, "gpu_type"))) {
        if (!json_is_string(x) || !json_string_length(x))
            return fail(c, "eval.job.gpu_type", 0, "expected a GPU type of the cluster profile (default: the cell's), got %s", shown(x));
        s->eval_gpu_type = json_string_value(x);
    }
    if ((x = json_object_get(j, "cpus_per_gpu"))) {
        long long n;
        if (int_in(c, "eval.job.cpus_per_gpu", x, 1, SPEC_MAX_CPUS_PER_GPU, NULL, &n) < 0) return -1;
        s->eval_cpus_per_gpu = (int)n;
    }
    if ((x = json_object_get(j, "mem_per_gpu"))) {
        if (check_mem_size(c, "eval.job.mem_per_gpu", x) < 0) return -1;
        s->eval_mem_per_gpu = json_string_value(x);
    }
    if ((x = json_object_get(j, "command"))) {
        if (!json_is_string(x) || !json_string_length(x))
            return fail(c, "eval.job.command", 0, "expected a command template such as \"python eval.py --run {{run_dir}}\", got %s",
                        shown(x));
        s->eval_command = json_string_value(x);
    }
    return 0;
}

// name, trainer, matrix, scaling, lr_scaling, exclude, include.
static int check_core(const Chk *c, Spec *s)
{
    json_t *r = s->root, *v;
    if (!(v = json_object_get(r, "name"))) return fail(c, "", 0, "missing key 'name'");
    if (check_name(c, v) < 0) return -1;
    s->name = json_string_value(v);
    if (!(v = json_object_get(r, "trainer"))) return fail(c, "", 0, "missing key 'trainer' (e.g. {\"command\": \"segx-train\", \"dataset\": ...})");
    if (!json_is_object(v)) return fail(c, "trainer", 0, "expected an object, got %s", shown(v));
    s->trainer = v;
    if (!(v = json_object_get(r, "matrix"))) return fail(c, "", 0, "missing key 'matrix'");
    if (!json_is_object(v)) return fail(c, "matrix", 0, "expected an object of axes, got %s", shown(v));
    s->matrix = v;
    if ((v = json_object_get(r, "scaling"))) {
        const char *x = json_string_value(v);
        if (!x || (strcmp(x, "weak") && strcmp(x, "strong") && strcmp(x, "weak-data")))
            return fail(c, "scaling", 0, "expected \"weak\", \"strong\" or \"weak-data\"");
        s->strong = strcmp(x, "strong") == 0;
        s->weak_data = strcmp(x, "weak-data") == 0;
    }
    if ((v = json_object_get(r, "lr_scaling"))) {
        const char *x = json_string_value(v);
        if (x && strcmp(x, "none") == 0) s->lr_scaling = LR_SCALE_NONE;
        else if (x && strcmp(x, "linear") == 0) s->lr_scaling = LR_SCALE_LINEAR;
        else if (x && strcmp(x, "sqrt") == 0) s->lr_scaling = LR_SCALE_SQRT;
        else return fail(c, "lr_scaling", 0, "expected \"none\", \"linear\" or \"sqrt\"");
    }
    if (check_trainer(c, s) < 0 || check_matrix(c, s) < 0) return -1;
    if (s->lr_scaling != LR_SCALE_NONE && !json_object_get(s->trainer, "lr") && !json_object_get(s->matrix, "lr"))
        return fail(c, "lr_scaling", 0, "scaling the learning rate needs trainer.lr or matrix.lr");
    if ((v = json_object_get(r, "exclude"))) { s->exclude = v; if (check_partials(c, s, "exclude", v) < 0) return -1; }
    if ((v = json_object_get(r, "include"))) { s->include = v; if (check_partials(c, s, "include", v) < 0) return -1; }
    return 0;
}

// resources (time default one hour, cpus_per_gpu default 1, mem_per_gpu), cluster, container, notify.
static int check_placement(const Chk *c, Spec *s)
{
    json_t *r = s->root, *v;
    s->cpus_per_gpu = 1;
    json_t *t60 = json_string("01:00:00");
    int rc = check_time(c, s, t60);
    json_decref(t60);
    if (rc < 0) return -1;
    if ((v = json_object_get(r, "resources"))) {
        if (!json_is_object(v)) return fail(c, "resources", 0, "expected an object, got %s", shown(v));
        if (check_keys(c, v, "resources", RESOURCE_KEYS) < 0) return -1;
        json_t *x;
        if ((x = json_object_get(v, "time")) && check_time(c, s, x) < 0) return -1;
        if ((x = json_object_get(v, "cpus_per_gpu"))) {
            long long n;
            if (int_in(c, "resources.cpus_per_gpu", x, 1, SPEC_MAX_CPUS_PER_GPU, NULL, &n) < 0) return -1;
            s->cpus_per_gpu = (int)n;
            s->cpus_per_gpu_set = 1;
        }
        if ((x = json_object_get(v, "mem_per_gpu")) && check_mem_per_gpu(c, s, x) < 0) return -1;
    }
    if ((v = json_object_get(r, "cluster"))) {
        if (!json_is_string(v) && !json_is_object(v))
            return fail(c, "cluster", 0, "expected a profile name (templates/clusters/<name>.json) or an inline object, got %s", shown(v));
        s->cluster = json_incref(v);
    } else {
        s->cluster = json_string("local");
    }
    if ((v = json_object_get(r, "container"))) {
        if (!json_is_string(v) && !json_is_object(v) && !json_is_null(v))
            return fail(c, "container", 0, "expected an image path or {\"runtime\", \"image\", \"bind\"}, got %s", shown(v));
        if (!json_is_null(v)) s->container = v;
    }
    if ((v = json_object_get(r, "notify"))) {   // checked in notify.c, which sends them
        const char *kp;
        char nerr[512];
        if (notify_spec_check(v, &kp, nerr, sizeof nerr) < 0) return fail(c, kp, 0, "%s", nerr);
    }
    return 0;
}

// eval: trainer eval flags, eval.job (the eval job per cell) and eval.targets (time-to-target).
static int check_eval(const Chk *c, Spec *s, json_t *v)
{
    if (!json_is_object(v)) return fail(c, "eval", 0, "expected an object of eval settings (e.g. {\"every\": 1, \"limit\": 500}), got %s", shown(v));
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        char kp[256];
        snprintf(kp, sizeof kp, "eval.%s", k);
        if (strcmp(k, "job") == 0) {   // the eval job per cell (not a trainer flag, not in keys)
            if (check_eval_job(c, s, x) < 0) return -1;
            continue;
        }
        if (strcmp(k, "targets") == 0) {   // {metric: value} for time-to-target (segx report)
            if (!json_is_object(x)) return fail(c, kp, 0, "expected an object {\"miou\": 0.5, ...}, got %s", shown(x));
            const char *tk;
            json_t *tv;
            json_object_foreach(x, tk, tv) {
                snprintf(kp, sizeof kp, "eval.targets.%s", tk);
                if (!json_is_number(tv)) return fail(c, kp, 0, "expected a number, got %s", shown(tv));
            }
            continue;
        }
        if (!is_scalar(x)) return fail(c, kp, 0, "expected a string, number or boolean, got %s", shown(x));
    }
    s->eval = v;
    if (s->eval_job && s->external && !s->eval_command)
        return fail(c, "eval.job", 0, "an external trainer needs eval.job.command, the evaluator's command template "
                    "(e.g. \"python eval.py --checkpoint {{run_dir}}/model.pt --out {{run_dir}}/eval.json\")");
    return 0;
}

static int check_spec(const Chk *c, Spec *s)
{
    json_t *r = s->root, *v;
    if (!json_is_object(r)) return fail(c, "", 0, "the spec must be a JSON object, got %s", shown(r));
    if (check_keys(c, r, "", TOP_KEYS) < 0 || check_core(c, s) < 0 || check_placement(c, s) < 0) return -1;
    if ((v = json_object_get(r, "eval")) && check_eval(c, s, v) < 0) return -1;
    return 0;
}

// ---------------------------------------------------------------------------------------------

int spec_parse(const char *text, const char *path, Spec **out, char *err, size_t errlen)
{
    *out = NULL;
    Spec *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return -1; }
    s->path = strdup(path);
    s->text = strdup(text);
    json_error_t je;
    s->root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!s->root) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        spec_free(s);
        return -1;
    }
    Chk c = {path, s->text, err, errlen};
    if (check_spec(&c, s) < 0) { spec_free(s); return -1; }
    *out = s;
    return 0;
}

int spec_load(const char *path, Spec **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t n;
    char e[PATH_MAX + 128];
    char *text = file_read(path, 0, &n, e, sizeof e);
    if (!text) { snprintf(err, errlen, "%s: cannot read spec: %s", path, strerror(errno)); return -1; }
    if (strlen(text) != n) { free(text); snprintf(err, errlen, "%s: not a text file (NUL byte)", path); return -1; }
    int rc = spec_parse(text, path, out, err, errlen);
    free(text);
    return rc;
}

void spec_free(Spec *s)
{
    if (!s) return;
    json_decref(s->cluster);
    json_decref(s->root);
    free(s->path);
    free(s->text);
    free(s);
}
