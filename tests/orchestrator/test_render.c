// tests/orchestrator/test_render.c — the template engine: substitution, quoting (executed by a
// real shell against injection), sections, raw blocks, errors with line numbers.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "orchestrator/render.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *render_ok(const char *tmpl, const char *ctx_json)
{
    json_error_t je;
    json_t *ctx = json_loads(ctx_json, 0, &je);
    assert_non_null(ctx);
    char *out, err[512];
    int rc = render_template(tmpl, "t.tmpl", ctx, &out, err, sizeof err);
    json_decref(ctx);
    if (rc) fail_msg("render failed: %s", err);
    return out;
}

static void test_substitution_is_quoted(void **state)
{
    (void)state;
    char *o = render_ok("a={{x}} n={{n}} r={{r}} b={{b}} raw={{{x}}} raw2={{raw x}}",
                        "{\"x\": \"it's\", \"n\": 42, \"r\": 0.001, \"b\": true}");
    assert_string_equal(o, "a='it'\\''s' n='42' r='0.001' b='true' raw=it's raw2=it's");
    free(o);
}

static void test_sections(void **state)
{
    (void)state;
    const char *t = "x\n{{#c}}\nC={{c.image}}\n{{/c}}\n{{^c}}\nno c\n{{/c}}\n{{#list}}[{{.}}]{{/list}}\n{{#objs}}{{k}};{{/objs}}\nend\n";
    char *o = render_ok(t, "{\"c\": {\"image\": \"/i.sif\"}, \"list\": [1, \"a b\"], \"objs\": [{\"k\": 1}, {\"k\": 2}]}");
    assert_string_equal(o, "x\nC='/i.sif'\n['1']['a b']\n'1';'2';\nend\n");
    free(o);
    o = render_ok(t, "{\"list\": [], \"objs\": []}");
    assert_string_equal(o, "x\nno c\n\n\nend\n");
    free(o);
    o = render_ok("{{! a comment }}a{{#f}}F{{/f}}{{^f}}notF{{/f}}", "{\"f\": false}");
    assert_string_equal(o, "anotF");
    free(o);
}

static void expect_err(const char *tmpl, const char *want)
{
    json_t *ctx = json_pack("{s:s}", "x", "1");
    char *out = NULL, err[512];
    assert_int_equal(render_template(tmpl, "t.tmpl", ctx, &out, err, sizeof err), -1);
    assert_null(out);
    json_decref(ctx);
    if (!strstr(err, want)) fail_msg("error '%s' lacks '%s'", err, want);
}

static void test_errors(void **state)
{
    (void)state;
    expect_err("line1\nline2 {{nope}}\n", "t.tmpl:2: unknown variable 'nope'");
    expect_err("{{#x}}open", "t.tmpl:1: section 'x' is not closed");
    expect_err("a\n\n{{/x}}", "t.tmpl:3: unexpected closing tag 'x'");
    expect_err("{{x", "unterminated");
    expect_err("{{x y}}", "bad character in tag name 'x y'");
}

// Renders a script with a hostile value, runs it with sh and checks the value arrived as one
// argument and that nothing it tried to do happened.
static void test_injection_is_inert_when_executed(void **state)
{
    (void)state;
    char dir[] = "/tmp/segx-render-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pwned[512], outp[512], script[512];
    snprintf(pwned, sizeof pwned, "%s/pwned", dir);
    snprintf(outp, sizeof outp, "%s/args", dir);
    snprintf(script, sizeof script, "%s/job.sh", dir);
    const char *hostile[] = {
        "x; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "' ; touch PWNED ; '", "a\nb'\"\\ && touch PWNED",
        "x' 'y", "${IFS}touch${IFS}PWNED",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        // replace PWNED by the real path
        char val[1024] = "";
        const char *p = hostile[i], *q;
        while ((q = strstr(p, "PWNED"))) {
            strncat(val, p, (size_t)(q - p));
            strcat(val, pwned);
            p = q + 5;
        }
        strcat(val, p);
        json_t *ctx = json_pack("{s:s, s:s}", "v", val, "out", outp);
        char *text, err[256];
        assert_int_equal(render_template("#!/bin/sh\nprintf '%s\\n' \"$#\" > {{out}}\nset -- {{v}}\n"
                                         "printf '%s' \"$#:$1\" > {{out}}\n",
                                         "inj", ctx, &text, err, sizeof err), 0);
        FILE *f = fopen(script, "w");
        fputs(text, f);
        fclose(f);
        free(text);
        chmod(script, 0755);
        pid_t pid = fork();
        if (pid == 0) { execl("/bin/sh", "sh", script, (char *)NULL); _exit(127); }
        int st;
        waitpid(pid, &st, 0);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        if (access(pwned, F_OK) == 0) fail_msg("value %zu ran a command: %s", i, val);
        char got[2048] = "";
        f = fopen(outp, "r");
        assert_non_null(f);
        size_t n = fread(got, 1, sizeof got - 1, f);
        got[n] = 0;
        fclose(f);
        char want[2048];
        snprintf(want, sizeof want, "1:%s", val);
        assert_string_equal(got, want);   // exactly one argument, byte for byte
        json_decref(ctx);
    }
    unlink(outp);
    unlink(script);
    rmdir(dir);
}

static void test_shell_quote_and_scalar(void **state)
{
    (void)state;
    char *q = render_shell_quote("a'b");
    assert_string_equal(q, "'a'\\''b'");
    free(q);
    char buf[64];
    json_t *r = json_real(0.1);
    assert_string_equal(render_scalar(r, buf, sizeof buf), "0.1");
    json_decref(r);
    r = json_real(1.0 / 3.0);
    assert_true(strtod(render_scalar(r, buf, sizeof buf), NULL) == 1.0 / 3.0);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_substitution_is_quoted),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_injection_is_inert_when_executed),
        cmocka_unit_test(test_shell_quote_and_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
