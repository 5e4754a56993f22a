// orchestrator/cmd/cmd_logparse.c — `segx logparse`: an external trainer's log lines -> metrics.jsonl,
// so `segx collect` reads one contract for every trainer. Job scripts pipe the trainer's stdout
// through it (trainer.metrics in the spec); it also works on a finished log file.
// Rules: {name: ERE with one capture group} (\d \w \s translated, see spec_compile_metric).
// Records: with an "epoch" rule, a line whose epoch differs from the current record's starts a
// new record and later values (loss, mIoU, ...) fill it, the last value winning; without one,
// every matching line is a record. Each record gets wall_s (seconds since logparse started) and
// is written as one JSON line, flushed, so progress is visible while the job runs.
#include "orchestrator/util/clock.h"
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/spec.h"
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *name;
    regex_t re;
} Rule;

static json_t *value_of(const char *s, size_t n)
{
    char buf[256];
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    long long i = strtoll(buf, &end, 10);
    if (end != buf && *end == 0) return json_integer(i);
    double d = strtod(buf, &end);
    if (end != buf && *end == 0 && isfinite(d)) return json_real(d);
    return json_string(buf);
}

static int emit(json_t *rec, FILE *out, double t0)
{
    if (json_object_size(rec) == 0) return 0;
    json_object_set_new(rec, "wall_s", json_real(round((mono_s() - t0) * 1000) / 1000));
    char *s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(15));   // values came from text: no 0.20000000000000001
    int ok = s && fprintf(out, "%s\n", s) >= 0 && fflush(out) == 0;
    free(s);
    json_object_clear(rec);
    return ok ? 0 : -1;
}

// The rules compiled (spec_compile_metric: the spec's own checks). 0 with *out / *nr / *epoch_rule
// (the index of the "epoch" rule, -1 without), or 2 (said).
static int compile_rules(json_t *rules, Rule **out, size_t *nr, int *epoch_rule)
{
    *nr = json_object_size(rules);
    size_t k = 0;
    Rule *r = calloc(*nr, sizeof *r);
    *epoch_rule = -1;
    const char *name;
    json_t *v;
    json_object_foreach(rules, name, v) {
        char err[256];
        if (!json_is_string(v) || spec_compile_metric(json_string_value(v), &r[k].re, err, sizeof err) < 0) {
            fprintf(stderr, "segx logparse: --rules: %s: %s\n", name, json_is_string(v) ? err : "expected a regex string");
            for (size_t i = 0; i < k; i++) regfree(&r[i].re);
            free(r);
            return 2;
        }
        r[k].name = name;
        if (strcmp(name, "epoch") == 0) *epoch_rule = (int)k;
        k++;
    }
    *out = r;
    return 0;
}

// Every line of in (copied to tf) matched against the rules; a record per epoch (or per matching
// line without an epoch rule) to out. 0, or 1 when out cannot be written.
static int parse_lines(const Rule *r, size_t nr, int epoch_rule, FILE *in, FILE *tf, FILE *out)
{
    json_t *rec = json_object();
    double t0 = mono_s();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, in)) >= 0) {
        if (tf) { fwrite(line, 1, (size_t)len, tf); fflush(tf); }
        if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
        regmatch_t m[2];
        if (epoch_rule >= 0 && regexec(&r[epoch_rule].re, line, 2, m, 0) == 0 && m[1].rm_so >= 0) {
            json_t *ep = value_of(line + m[1].rm_so, (size_t)(m[1].rm_eo - m[1].rm_so));
            json_t *cur = json_object_get(rec, "epoch");
            if (cur && !json_equal(cur, ep) && emit(rec, out, t0) < 0) rc = 1;
            json_object_set_new(rec, "epoch", ep);
        }
        int any = 0;
        for (size_t i = 0; i < nr; i++) {
            if ((int)i == epoch_rule) continue;
            if (regexec(&r[i].re, line, 2, m, 0) == 0 && m[1].rm_so >= 0) {
                json_object_set_new(rec, r[i].name, value_of(line + m[1].rm_so, (size_t)(m[1].rm_eo - m[1].rm_so)));
                any = 1;
            }
        }
        if (any && epoch_rule < 0 && emit(rec, out, t0) < 0) rc = 1;
    }
    if (!rc && emit(rec, out, t0) < 0) rc = 1;
    free(line);
    json_decref(rec);
    return rc;
}

int cmd_logparse(int argc, char **argv)
{
    const char *rules_json = NULL, *tee = NULL, *outp = NULL;
    const CliOption opts[] = {
        {"rules", 'r', CLI_STRING, &rules_json, "JSON", "{\"name\": \"regex with one (group)\", ...} (the spec's trainer.metrics)"},
        {"tee", 0, CLI_STRING, &tee, "FILE", "also copy every input line to FILE (the job's stdout.log)"},
        {"out", 'o', CLI_STRING, &outp, "FILE", "append records to FILE (default stdout)"},
        {0}};
    const CliCommand cmd = {
        "segx logparse --rules JSON [options] [LOG]",
        "Turns a trainer's log (LOG or stdin) into metrics.jsonl records using named regular\n"
        "expressions; an \"epoch\" rule groups the values of one epoch into one record.",
        opts, 0, 1,
        "example:\n  python train.py | segx logparse --rules '{\"epoch\": \"Epoch \\\\[(\\\\d+)\\\\]\", "
        "\"miou\": \"mIoU: ([0-9.]+)\"}' --tee stdout.log --out metrics.jsonl"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (!rules_json) { fprintf(stderr, "segx logparse: --rules is required\n"); return 2; }
    json_error_t je;
    json_t *rules = json_loads(rules_json, 0, &je);
    if (!json_is_object(rules) || json_object_size(rules) == 0) {
        fprintf(stderr, "segx logparse: --rules: expected a non-empty JSON object of regexes (%s)\n", je.text);
        json_decref(rules);
        return 2;
    }
    size_t nr;
    Rule *r;
    int epoch_rule;
    if (compile_rules(rules, &r, &nr, &epoch_rule) != 0) { json_decref(rules); return 2; }
    FILE *in = stdin, *tf = NULL, *out = stdout;
    rc = 0;
    if (a.npos && !(in = fopen(a.pos[0], "r"))) { fprintf(stderr, "segx logparse: %s: %m\n", a.pos[0]); rc = 1; }
    if (!rc && tee && !(tf = fopen(tee, "a"))) { fprintf(stderr, "segx logparse: --tee %s: %m\n", tee); rc = 1; }
    if (!rc && outp && !(out = fopen(outp, "a"))) { fprintf(stderr, "segx logparse: --out %s: %m\n", outp); rc = 1; }
    if (!rc) rc = parse_lines(r, nr, epoch_rule, in, tf, out);
    if (rc == 0 && ferror(in)) { fprintf(stderr, "segx logparse: read error\n"); rc = 1; }
    if (in && in != stdin) fclose(in);
    if (tf) fclose(tf);
    if (out && out != stdout) fclose(out);
    for (size_t i = 0; i < nr; i++) regfree(&r[i].re);
    free(r);
    json_decref(rules);
    return rc;
}
