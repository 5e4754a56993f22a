// tests/orchestrator/test_spec.c — spec errors name file:line:column, key path, expectation and
// a close match; valid specs load with their defaults.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "orchestrator/cmd/cli.h"
#include "orchestrator/util/suggest.h"
#include "orchestrator/spec.h"
#include "orchestrator/backend/slurm_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *QUICKSTART =
    "{\"name\":\"quickstart\",\"trainer\":{\"command\":\"segx-train\",\"dataset\":\"fashion-mnist-seg\",\"epochs\":2,\n"
    "\"optimizer\":\"adam\",\"lr\":0.001,\"args\":{\"train-limit\":2000}},\"matrix\":{\"model\":[\"unet\",\"cnn\"],\n"
    "\"gpu_type\":[\"cpu\"],\"gpus\":[1,2],\"batch_per_gpu\":[16,32],\"seed\":[1,2]},\"exclude\":[{\"model\":\"cnn\",\n"
    "\"batch_per_gpu\":32}],\"scaling\":\"weak\",\"lr_scaling\":\"none\",\"resources\":{\"time\":\"00:30:00\",\n"
    "\"cpus_per_gpu\":1,\"mem_per_gpu\":\"2G\"},\"cluster\":\"local\"}\n";

// Line:column of the first occurrence of needle in text, computed independently of spec.c.
static void pos_of(const char *text, const char *needle, int *line, int *col)
{
    const char *at = strstr(text, needle);
    assert_non_null(at);
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') { (*line)++; *col = 1; } else (*col)++;
    }
}

static char *expect_error(const char *text)
{
    static char err[1024];
    Spec *s = NULL;
    int rc = spec_parse(text, "t.json", &s, err, sizeof err);
    if (rc == 0) { spec_free(s); fail_msg("spec was accepted: %s", text); }
    assert_null(s);
    return err;
}

static void test_quickstart_loads(void **state)
{
    (void)state;
    char err[1024];
    Spec *s;
    int rc = spec_parse(QUICKSTART, "q.json", &s, err, sizeof err);
    if (rc) fail_msg("%s", err);
    assert_string_equal(s->name, "quickstart");
    assert_false(s->external);
    assert_false(s->strong);
    assert_int_equal(s->lr_scaling, LR_SCALE_NONE);
    assert_int_equal(s->time_s, 1800);
    assert_string_equal(s->time, "00:30:00");
    assert_int_equal(s->cpus_per_gpu, 1);
    assert_string_equal(s->mem_per_gpu, "2G");
    assert_string_equal(json_string_value(s->cluster), "local");
    spec_free(s);
}

static void test_syntax_error_has_line_column(void **state)
{
    (void)state;
    const char *text = "{\"name\": \"x\",\n  \"trainer\": {\"epochs\": 2,,}\n}";
    char *err = expect_error(text);
    int line, col;
    pos_of(text, ",,", &line, &col);
    char want[64];
    snprintf(want, sizeof want, "t.json:%d:", line);
    assert_non_null(strstr(err, want));
    assert_int_equal(line, 2);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    char *err = expect_error("{\"name\": \"a\", \"name\": \"b\"}");
    assert_non_null(strstr(err, "t.json:1:"));
    assert_non_null(strstr(err, "duplicate"));
}

static void test_wrong_type_names_path_line_col(void **state)
{
    (void)state;
    const char *text =
        "{\"name\": \"x\",\n"
        " \"trainer\": {\"epochs\": 1},\n"
        " \"matrix\": {\"batch_per_gpu\": [8],\n"
        "            \"gpus\": [1, 2, \"two\"]}}\n";
    char *err = expect_error(text);
    int line, col;
    pos_of(text, "\"two\"", &line, &col);
    char want[128];
    snprintf(want, sizeof want, "t.json:%d:%d: matrix.gpus[2]: expected an integer from 1 to 1048576, got \"two\"", line, col);
    assert_string_equal(err, want);
}

static void test_misspelt_top_key(void **state)
{
    (void)state;
    const char *text = "{\"name\": \"x\", \"trainer\": {},\n \"matirx\": {\"batch_per_gpu\": [8]}}";
    char *err = expect_error(text);
    int line, col;
    pos_of(text, "\"matirx\"", &line, &col);
    char want[160];
    snprintf(want, sizeof want, "t.json:%d:%d: matirx: unknown key 'matirx' (did you mean 'matrix'?)", line, col);
    assert_string_equal(err, want);
}

static void test_unknown_key_lists_known(void **state)
{
    (void)state;
    char *err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"banana\": 1}");
    assert_non_null(strstr(err, "banana: unknown key 'banana' (expected one of: name, trainer, matrix"));
}

static void test_misspelt_resource_and_axis(void **state)
{
    (void)state;
    char *err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},\n"
                             " \"resources\": {\"cpus_per_gpus\": 2}}");
    assert_non_null(strstr(err, "t.json:2:16: resources.cpus_per_gpus: unknown key 'cpus_per_gpus' (did you mean 'cpus_per_gpu'?)"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8], \"gpu\": [1, 2]}}");
    assert_non_null(strstr(err, "matrix.gpu: unknown axis 'gpu' (did you mean 'gpus'?)"));
}

static void test_scaling_batch_rules(void **state)
{
    (void)state;
    char *err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"scaling\": \"strong\", \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(err, "matrix.batch_per_gpu: strong scaling keeps the global batch"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"model\": [\"cnn\"]}}");
    assert_non_null(strstr(err, "weak scaling needs matrix.batch_per_gpu"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"scaling\": \"medium\", \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(err, "scaling: expected \"weak\", \"strong\" or \"weak-data\""));
}

static void test_value_checks(void **state)
{
    (void)state;
    char *err = expect_error("{\"name\": \"a b\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(err, "name: 'a b' may only hold"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {\"epochs\": 0}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(err, "trainer.epochs: expected an integer from 1 to 1000000, got 0"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8, 8]}}");
    assert_non_null(strstr(err, "matrix.batch_per_gpu[1]: duplicate value 8"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": []}}");
    assert_non_null(strstr(err, "matrix.batch_per_gpu: expected a non-empty list"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"resources\": {\"time\": \"1:xx\"}}");
    assert_non_null(strstr(err, "resources.time: expected a Slurm time limit"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"exclude\": [{\"modle\": \"cnn\"}]}");
    assert_non_null(strstr(err, "exclude[0].modle: unknown axis 'modle' (did you mean 'model'?)"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {\"metrics\": {\"miou\": \"mIoU: [0-9.]+\"}}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(err, "trainer.metrics.miou: bad regular expression: needs one capture group"));
    err = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"lr_scaling\": \"linear\"}");
    assert_non_null(strstr(err, "lr_scaling: scaling the learning rate needs trainer.lr or matrix.lr"));
}

static void test_mem_per_gpu(void **state)
{
    (void)state;
    char err[1024];
    Spec *s;
    const char *by_type = "{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},\n"
                          " \"resources\": {\"mem_per_gpu\": {\"a100\": \"64G\", \"v100\": \"1536GB\"}}}";
    if (spec_parse(by_type, "t.json", &s, err, sizeof err)) fail_msg("%s", err);
    assert_null(s->mem_per_gpu);
    assert_string_equal(json_string_value(json_object_get(s->mem_per_gpu_by_type, "a100")), "64G");
    spec_free(s);
    // each bad form names its key path, line and column and shows what is wanted
    const char *text = "{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},\n"
                       " \"resources\": {\"mem_per_gpu\": \"lots\"}}";
    char *e = expect_error(text);
    int line, col;
    char want[256];
    pos_of(text, "\"lots\"", &line, &col);
    snprintf(want, sizeof want, "t.json:%d:%d: resources.mem_per_gpu: expected a memory size per GPU such as \"16G\" "
             "or \"4096M\" (digits alone are MB), got \"lots\"", line, col);
    assert_string_equal(e, want);
    text = "{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},\n"
           " \"resources\": {\"mem_per_gpu\": {\"a100\": \"0G\"}}}";
    e = expect_error(text);
    pos_of(text, "\"0G\"", &line, &col);
    snprintf(want, sizeof want, "t.json:%d:%d: resources.mem_per_gpu.a100: expected a memory size", line, col);
    if (!strstr(e, want)) fail_msg("%s", e);
    const char *bad[] = {"-4G", "16Q", "inf", "nan", " 4G", "4GBB", "123456789012345678M", "1.5T"};   // sbatch refuses fractions
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char t[512];
        snprintf(t, sizeof t, "{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},"
                 " \"resources\": {\"mem_per_gpu\": \"%s\"}}", bad[i]);
        e = expect_error(t);
        if (!strstr(e, "resources.mem_per_gpu: expected a memory size")) fail_msg("'%s': %s", bad[i], e);
    }
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"resources\": {\"mem_per_gpu\": 16}}");
    assert_non_null(strstr(e, "resources.mem_per_gpu: expected a size such as \"16G\" or an object"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"resources\": {\"mem_per_gpu\": {}}}");
    assert_non_null(strstr(e, "resources.mem_per_gpu: expected a size or {\"gpu_type\": size, ...}, got {}"));
}

static void test_eval_job(void **state)
{
    (void)state;
    char err[1024];
    Spec *s;
    const char *ok = "{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},"
                     " \"resources\": {\"time\": \"02:00:00\"}, \"eval\": {\"limit\": 50, \"job\": {\"gpus\": 2}}}";
    if (spec_parse(ok, "t.json", &s, err, sizeof err)) fail_msg("%s", err);
    assert_non_null(s->eval_job);
    assert_string_equal(s->eval_time, "02:00:00");   // default: the train job's limit
    assert_int_equal(s->eval_gpus, 2);
    assert_null(s->eval_command);
    spec_free(s);
    const char *text = "{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},\n"
                       " \"eval\": {\"job\": {\"tiem\": \"00:10:00\"}}}";
    char *e = expect_error(text);
    int line, col;
    char want[256];
    pos_of(text, "\"tiem\"", &line, &col);
    snprintf(want, sizeof want, "t.json:%d:%d: eval.job.tiem: unknown key 'tiem' (did you mean 'time'?)", line, col);
    assert_string_equal(e, want);
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"eval\": {\"job\": {\"time\": \"soon\"}}}");
    assert_non_null(strstr(e, "eval.job.time: expected a Slurm time limit"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"eval\": {\"job\": {\"gpus\": 0}}}");
    assert_non_null(strstr(e, "eval.job.gpus: expected an integer from 1 to 1024 (GPUs of the eval job, on one node), got 0"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"eval\": {\"job\": true}}");
    assert_non_null(strstr(e, "eval.job: expected an object"));
    // an external trainer's eval job needs its own command
    e = expect_error("{\"name\": \"x\", \"trainer\": {\"command\": \"t.sh {{run_dir}}\"}, \"matrix\": {\"batch_per_gpu\": [8]},"
                     " \"eval\": {\"job\": {}}}");
    assert_non_null(strstr(e, "eval.job: an external trainer needs eval.job.command"));
}

static void test_time_formats(void **state)
{
    (void)state;
    assert_int_equal(spec_parse_time("00:30:00"), 1800);
    assert_int_equal(spec_parse_time("1-02:00:00"), 93600);
    assert_int_equal(spec_parse_time("90"), 5400);
    assert_int_equal(spec_parse_time("10:30"), 630);
    assert_int_equal(spec_parse_time("2-4"), 2 * 86400 + 4 * 3600);
    assert_true(spec_parse_time("1:2:3:4") < 0);
    assert_true(spec_parse_time("") < 0);
    assert_true(spec_parse_time("x") < 0);
    // clock fields in range (issue 17: 99:99:99 was accepted and rewritten as 100:40:39)
    assert_int_equal(spec_parse_time("100:00:00"), 360000);          // leading hours may exceed 23
    assert_int_equal(spec_parse_time("1-23:59:59"), 86400 + 86399);
    assert_int_equal(spec_parse_time("120:30"), 120 * 60 + 30);       // leading minutes may exceed 59
    assert_true(spec_parse_time("99:99:99") < 0);
    assert_true(spec_parse_time("1:60:00") < 0);
    assert_true(spec_parse_time("1:00:60") < 0);
    assert_true(spec_parse_time("10:60") < 0);
    assert_true(spec_parse_time("1-24:00:00") < 0);
    assert_true(spec_parse_time("1-2:60") < 0);
    // no overflow: huge fields are malformed, not wrapped around
    assert_true(spec_parse_time("99999999999999999999") < 0);
    assert_true(spec_parse_time("99999999999999999999-1") < 0);
    assert_true(spec_parse_time("3651-00:00:00") < 0);             // beyond SPEC_MAX_TIME_S
    assert_int_equal(spec_parse_time("3650-00:00:00"), SPEC_MAX_TIME_S);
    assert_true(spec_parse_time("-1") < 0);
    assert_true(spec_parse_time("1-") < 0);
}

// Issue 17: 64-bit integers were cut to 32 bits (gpus 4294967297 planned as 1 GPU with gpus=1's
// cell key; batch_per_gpu 4294967304 stored as 8; gpus 10^12 reported as -727379968). Every
// integer is range-checked first, with FILE:LINE:COL and the allowed range.
static void test_integer_ranges(void **state)
{
    (void)state;
    static const struct { const char *axis, *value, *want; } cases[] = {
        {"gpus", "4294967297", "matrix.gpus[0]: expected an integer from 1 to 1048576, got 4294967297"},
        {"gpus", "1000000000000", "matrix.gpus[0]: expected an integer from 1 to 1048576, got 1000000000000"},
        {"nodes", "4294967297", "matrix.nodes[0]: expected an integer from 1 to 65536, got 4294967297"},
        {"batch_per_gpu", "4294967304", "matrix.batch_per_gpu[0]: expected an integer from 1 to 1073741824, got 4294967304"},
        {"seed", "4294967296", "matrix.seed[0]: expected an integer from 0 to 2147483647, got 4294967296"},
        {"seed", "-1", "matrix.seed[0]: expected an integer from 0 to 2147483647, got -1"},
        {"gpus", "0", "matrix.gpus[0]: expected an integer from 1 to 1048576, got 0"},
        {"gpus", "2.5", "matrix.gpus[0]: expected an integer from 1 to 1048576, got 2.5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512], want[256];
        snprintf(text, sizeof text, "{\"name\": \"x\", \"trainer\": {},\n \"matrix\": {\"batch_per_gpu\": [8], \"%s\": [%s]}}",
                 cases[i].axis, cases[i].value);
        if (strcmp(cases[i].axis, "batch_per_gpu") == 0)
            snprintf(text, sizeof text, "{\"name\": \"x\", \"trainer\": {},\n \"matrix\": {\"batch_per_gpu\": [%s]}}", cases[i].value);
        char *err = expect_error(text);
        int line, col;
        char needle[64];
        snprintf(needle, sizeof needle, "[%s]", cases[i].value);
        pos_of(text, needle, &line, &col);
        snprintf(want, sizeof want, "t.json:%d:%d: %s", line, col + 1, cases[i].want);
        assert_string_equal(err, want);
    }
    // the limits themselves are accepted
    char err[1024];
    Spec *s;
    if (spec_parse("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [1073741824], "
                   "\"gpus\": [1048576], \"nodes\": [65536], \"seed\": [2147483647]}}", "t.json", &s, err, sizeof err) < 0)
        fail_msg("%s", err);
    spec_free(s);
    // include/exclude values and trainer keys that fix an integer axis get the same check
    char *e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]},"
                           " \"include\": [{\"gpus\": 4294967297}]}");
    assert_non_null(strstr(e, "include[0].gpus: expected an integer from 1 to 1048576, got 4294967297"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {\"gpus\": 4294967297}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(e, "t.json:1:35: trainer.gpus: expected an integer from 1 to 1048576, got 4294967297"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {\"args\": {\"nodes\": -2}}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(e, "trainer.args.nodes: expected an integer from 1 to 65536, got -2"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {\"epochs\": 4294967297}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(e, "trainer.epochs: expected an integer from 1 to 1000000, got 4294967297"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"resources\": {\"time\": 9223372036854775807}}");
    assert_non_null(strstr(e, "resources.time: expected a Slurm time limit"));
    assert_non_null(strstr(e, "got 9223372036854775807"));
}

// The spec's time limit and an #SBATCH --time line accept the same forms (slurm_util.c parses
// scripts; both reject clock fields out of range).
static void test_time_agrees_with_sbatch_parser(void **state)
{
    (void)state;
    static const char *const t[] = {"30", "10:30", "01:30:00", "100:00:00", "2-00:00:00", "1-12", "1-2:30", "0:0:1",
                                    "99:99:99", "1:60:00", "10:60", "1-24", "1-2:60", "x", "1:2:3:4", "10:", "-1",
                                    "99999999999999999999", "9999999-1", "1h", "",
                                    "4111111", "5256000", "5256001", "9999999", "100000-0", "99999-0"};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        long secs = spec_parse_time(t[i]);
        int unl, mins = slurm_time_minutes(t[i], &unl);
        if ((secs < 0) != (mins < 0)) fail_msg("'%s': spec %ld s, #SBATCH %d min", t[i], secs, mins);
        if (secs >= 0) assert_int_equal(mins, (secs + 59) / 60);
    }
}

// glibc's regcomp copies the operand of '+' and {m,n}: stacked repetitions took 2.7 GB for a
// 48-character pattern (fuzz_logparse). Such patterns are refused before regcomp sees them.
static void test_metric_regex_complexity(void **state)
{
    (void)state;
    static const char *const ok[] = {"Epoch \\[(\\d+)\\]", "([+*?]+)", "a\\+(x)", "((((x+)+)+)+)",
                                     "loss=([0-9.]+)", "v=([0-9]{1,3})", "(a|b|c)+ ([[:alpha:]]+)*",
                                     "((a+)+)(x)", "([]x]+)", "(x{1,100})"};
    static const char *const bad[] = {"\\[+++++++++++++++++++++++++++++++(x)", "(x{1000}){1000}", "((((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)",
                                      "(x{99999999999999999999})", "(x{1,99999999999999999999})",
                                      "E+++++*+++++++++(x)", "(x+?)", "(x*{2})", "((((((((((((x+)+)+)+)+)+)+)+)+)+)+)+)"};
    regex_t re;
    char err[256];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (spec_compile_metric(ok[i], &re, err, sizeof err) < 0) fail_msg("'%s': %s", ok[i], err);
        regfree(&re);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (spec_compile_metric(bad[i], &re, err, sizeof err) == 0) { regfree(&re); fail_msg("'%s' accepted", bad[i]); }
        if (!strstr(err, "too complex") && !strstr(err, "right after another")) fail_msg("'%s': %s", bad[i], err);
    }
    char *longp = malloc(2000);
    memset(longp, 'a', 1999);
    longp[0] = '(';
    longp[1998] = ')';
    longp[1999] = 0;
    assert_int_equal(spec_compile_metric(longp, &re, err, sizeof err), -1);
    assert_non_null(strstr(err, "is 1999 characters long; at most 1024"));
    free(longp);
    char *e = expect_error("{\"name\": \"x\", \"trainer\": {\"command\": \"t {{run_dir}}\", \"metrics\": {\"m\": \"(x{1000}){1000}\"}},"
                           " \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(e, "trainer.metrics.m: bad regular expression: too complex"));
}

// Issue 17: vague messages now say the value and the limit.
static void test_messages_say_value_and_limit(void **state)
{
    (void)state;
    char *e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"resources\": {\"cpus_per_gpu\": -3}}");
    assert_non_null(strstr(e, "resources.cpus_per_gpu: expected an integer from 1 to 1024, got -3"));
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}, \"resources\": {\"time\": \"99:99:99\"}}");
    assert_non_null(strstr(e, "t.json:1:86: resources.time: expected a Slurm time limit: minutes (1 to 5256000), \"MM:SS\", "
                              "\"HH:MM:SS\", \"D-HH\", \"D-HH:MM\" or \"D-HH:MM:SS\" (minutes and seconds 0-59"));
    assert_non_null(strstr(e, "got \"99:99:99\""));
    char *text = malloc(5200);
    int n = snprintf(text, 5200, "{\"name\": \"");
    for (int i = 0; i < 5000; i++) text[n++] = 'a';
    snprintf(text + n, 5200 - (size_t)n, "\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    e = expect_error(text);
    free(text);
    assert_non_null(strstr(e, "t.json:1:10: name: is 5000 characters long; at most 100 are allowed"));
    e = expect_error("{\"name\": 7, \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [8]}}");
    assert_non_null(strstr(e, "name: expected a non-empty string of at most 100 characters (it names runs/<name>/), got 7"));
    // a long string value is cut in the message, with its length
    e = expect_error("{\"name\": \"x\", \"trainer\": {}, \"matrix\": {\"batch_per_gpu\": [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}}");
    assert_non_null(strstr(e, "(a string of 71 characters)"));
}

static void test_metric_regex_translation(void **state)
{
    (void)state;
    regex_t re;
    char err[256];
    assert_int_equal(spec_compile_metric("Epoch \\[(\\d+)\\]", &re, err, sizeof err), 0);
    regmatch_t m[2];
    const char *line = "2024-01-01 mmseg - INFO - Epoch [12][50/100] lr: 1e-2";
    assert_int_equal(regexec(&re, line, 2, m, 0), 0);
    assert_int_equal(m[1].rm_eo - m[1].rm_so, 2);
    assert_memory_equal(line + m[1].rm_so, "12", 2);
    regfree(&re);
}

static void test_locate(void **state)
{
    (void)state;
    const char *text = "{\"a\": {\"b\": [10, {\"c\": \"x\"}, 30]},\n \"d\": \"s\\\"q\", \"e\": [[1], [2, 3]]}";
    int line, col;
    assert_int_equal(spec_locate(text, "a.b[1].c", &line, &col), 0);
    int l2, c2;
    pos_of(text, "\"x\"", &l2, &c2);
    assert_int_equal(line, l2);
    assert_int_equal(col, c2);
    assert_int_equal(spec_locate(text, "e[1][1]", &line, &col), 0);
    pos_of(text, "3]]", &l2, &c2);
    assert_int_equal(line, l2);
    assert_int_equal(col, c2);
    assert_int_equal(spec_locate(text, "a.zz", &line, &col), -1);
}

// The shared option parser (orchestrator/cmd/cli.h) the subcommands use.
static void test_cli_parse(void **state)
{
    (void)state;
    const char *db = NULL;
    int json = 0, n = 0;
    double x = 0;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &db, "FILE", "database"},
        {"json", 'j', CLI_FLAG, &json, NULL, "json"},
        {"max-parallel", 'n', CLI_INT, &n, "N", "slots"},
        {"ratio", 0, CLI_DOUBLE, &x, "X", "ratio"},
        {0}};
    const CliCommand cmd = {"segx t [options] A [B]", "test", opts, 1, 2, NULL};
    CliArgs a;
    char *ok[] = {"t", "--db=x.db", "-j", "pos1", "--max-parallel", "4", "--ratio", "0.5", "--", "--pos2", NULL};
    assert_int_equal(cli_parse(&cmd, 10, ok, &a), CLI_CONTINUE);
    assert_string_equal(db, "x.db");
    assert_int_equal(json, 1);
    assert_int_equal(n, 4);
    assert_true(x == 0.5);
    assert_int_equal(a.npos, 2);
    assert_string_equal(a.pos[0], "pos1");
    assert_string_equal(a.pos[1], "--pos2");
    char *bad1[] = {"t", "--max-paralel", "3", "p", NULL};
    assert_int_equal(cli_parse(&cmd, 4, bad1, &a), 2);
    char *bad2[] = {"t", "p", "--max-parallel", "four", NULL};
    assert_int_equal(cli_parse(&cmd, 4, bad2, &a), 2);
    char *bad3[] = {"t", "p", "--db", NULL};
    assert_int_equal(cli_parse(&cmd, 3, bad3, &a), 2);
    char *bad4[] = {"t", NULL};
    assert_int_equal(cli_parse(&cmd, 1, bad4, &a), 2);
    char *bad5[] = {"t", "a", "b", "c", NULL};
    assert_int_equal(cli_parse(&cmd, 4, bad5, &a), 2);
    char *bad6[] = {"t", "--json=1", "a", NULL};
    assert_int_equal(cli_parse(&cmd, 3, bad6, &a), 2);
    assert_int_equal(suggest_edit_distance("modle", "model"), 1);
    assert_int_equal(suggest_edit_distance("kitten", "sitting"), 3);
    assert_int_equal(suggest_edit_distance("", "abc"), 3);
    const char *cands[] = {"max-parallel", "db", "json", NULL};
    assert_string_equal(suggest_closest("max-paralel", cands), "max-parallel");
    assert_null(suggest_closest("banana", cands));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quickstart_loads),
        cmocka_unit_test(test_syntax_error_has_line_column),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_wrong_type_names_path_line_col),
        cmocka_unit_test(test_misspelt_top_key),
        cmocka_unit_test(test_unknown_key_lists_known),
        cmocka_unit_test(test_misspelt_resource_and_axis),
        cmocka_unit_test(test_scaling_batch_rules),
        cmocka_unit_test(test_value_checks),
        cmocka_unit_test(test_mem_per_gpu),
        cmocka_unit_test(test_eval_job),
        cmocka_unit_test(test_time_formats),
        cmocka_unit_test(test_metric_regex_translation),
        cmocka_unit_test(test_integer_ranges),
        cmocka_unit_test(test_time_agrees_with_sbatch_parser),
        cmocka_unit_test(test_metric_regex_complexity),
        cmocka_unit_test(test_messages_say_value_and_limit),
        cmocka_unit_test(test_locate),
        cmocka_unit_test(test_cli_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
