// tests/orchestrator/test_jscan.c — the JSON tokenizer with positions (orchestrator/util/jscan.h)
// and its two users' views of it: spec_locate (FILE:LINE:COL of a key path) on the same texts.
// Every text is copied into a heap buffer of its exact length, so that a read past end is an
// ASan report. Numbers: bit-identical to strtod on edge cases and on random values.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orchestrator/spec.h"
#include "orchestrator/util/jscan.h"

// [text, text + n) in a heap buffer of exactly n bytes (no NUL after it).
static char *exact(const char *text, size_t n)
{
    char *b = malloc(n ? n : 1);
    assert_non_null(b);
    memcpy(b, text, n);
    return b;
}

// jscan_value on the whole of text (strlen bytes): its result; *used: the bytes it read.
static int value_of(const char *text, int fast, int max_depth, char *type, double *num, size_t *used)
{
    size_t n = strlen(text);
    char *b = exact(text, n);
    JScan s = {b, b + n, max_depth, fast};
    char t = 0;
    int rc = jscan_value(&s, type ? type : &t, num);
    if (used) *used = (size_t)(s.p - b);
    free(b);
    return rc;
}

// The line and column of needle's first match in text, counted by hand.
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

// spec_locate(text, keypath) lands on needle's first match.
static void locates(const char *text, const char *keypath, const char *needle)
{
    int line, col, l2, c2;
    assert_int_equal(spec_locate(text, keypath, &line, &col), 0);
    pos_of(text, needle, &l2, &c2);
    if (line != l2 || col != c2) fail_msg("%s: %d:%d, want %d:%d ('%s')", keypath, line, col, l2, c2, needle);
}

// ---- positions -----------------------------------------------------------------------------

static const char POS_TEXT[] = "{\"a\": {\"b\": [10, {\"c\": \"x\"}, 30]},\n"
                               " \"d\": \"s\\\"q\", \"\xc3\xa9t\xc3\xa9\": [[1], [2, 3]],\n"
                               "\t\"e\":\r\n  -1.5e3 , \"f\": [true, false, null]}";

static void test_positions(void **state)
{
    (void)state;
    size_t n = strlen(POS_TEXT);
    char *b = exact(POS_TEXT, n);
    JScan s = {b, b + n, JSCAN_DEEPEST, 0};
    char t;
    assert_int_equal(jscan_value(&s, &t, NULL), JSCAN_OK);
    assert_int_equal(t, 'o');
    assert_ptr_equal(s.p, b + n);
    // token by token: each call leaves s.p just past its token, whitespace untouched
    const char *d = strstr(b, "\"d\"");
    s = (JScan){d, b + n, JSCAN_DEEPEST, 0};
    assert_int_equal(jscan_string(&s), JSCAN_OK);
    assert_ptr_equal(s.p, d + 3);
    assert_true(jscan_at(&s, ':'));
    s.p++;
    assert_true(jscan_at(&s, ' '));
    jscan_ws(&s);
    assert_int_equal(jscan_value(&s, &t, NULL), JSCAN_OK);
    assert_int_equal(t, 's');
    assert_ptr_equal(s.p, strstr(b, "\\\"q\"") + 4);
    const char *e = strstr(b, "-1.5e3");
    s = (JScan){e, b + n, JSCAN_DEEPEST, 1};
    double v = 0;
    assert_int_equal(jscan_number(&s, &v), JSCAN_OK);
    assert_true(v == -1500.0);
    assert_true(jscan_at(&s, ' '));
    // line and column: bytes, 1-based, tabs and CR one column each
    int line, col;
    jscan_line_col(b, b, &line, &col);
    assert_int_equal(line, 1);
    assert_int_equal(col, 1);
    jscan_line_col(b, e, &line, &col);
    assert_int_equal(line, 4);
    assert_int_equal(col, 3);
    jscan_line_col(b, strstr(b, "[[1]"), &line, &col);
    assert_int_equal(line, 2);
    assert_int_equal(col, 24);  // each "\xc3\xa9" is two columns
    free(b);
}

// The same text through spec_locate: values, keys with escapes and UTF-8, array elements.
static void test_positions_spec_locate(void **state)
{
    (void)state;
    locates(POS_TEXT, "a.b[1].c", "\"x\"");
    locates(POS_TEXT, "a.b[2]", "30]");
    locates(POS_TEXT, "a.b", "[10");
    locates(POS_TEXT, "d", "\"s\\");
    locates(POS_TEXT, "\xc3\xa9t\xc3\xa9[1][1]", "3]]");
    locates(POS_TEXT, "e", "-1.5e3");
    locates(POS_TEXT, "f[2]", "null");
    int line = 9, col = 9;
    assert_int_equal(spec_locate(POS_TEXT, "a.zz", &line, &col), -1);
    assert_int_equal(line, 0);
    assert_int_equal(col, 0);
    assert_int_equal(spec_locate(POS_TEXT, "f[3]", &line, &col), -1);
    assert_int_equal(spec_locate(POS_TEXT, "d.x", &line, &col), -1);
    assert_int_equal(spec_locate(POS_TEXT, "a[0]", &line, &col), -1);
}

// ---- nesting -------------------------------------------------------------------------------

// depth arrays inside each other ("[[...]]"), malloc'd.
static char *nested(int depth)
{
    char *t = malloc((size_t)depth * 2 + 1);
    assert_non_null(t);
    for (int i = 0; i < depth; i++) {
        t[i] = '[';
        t[depth * 2 - 1 - i] = ']';
    }
    t[depth * 2] = 0;
    return t;
}

static void test_nesting_limit(void **state)
{
    (void)state;
    for (int fast = 0; fast <= 1; fast++) {
        char *ok = nested(32), *deep = nested(33);
        assert_int_equal(value_of(ok, fast, 32, NULL, NULL, NULL), JSCAN_OK);
        assert_int_equal(value_of(deep, fast, 32, NULL, NULL, NULL), JSCAN_DEFER);
        // the value itself is depth 1; an empty container counts too
        assert_int_equal(value_of("{\"a\": [{\"b\": {}}], \"c\": 1}", fast, 4, NULL, NULL, NULL), JSCAN_OK);
        assert_int_equal(value_of("{\"a\": [{\"b\": {}}], \"c\": 1}", fast, 3, NULL, NULL, NULL), JSCAN_DEFER);
        deep[strlen(deep) - 1] = 0;  // one ']' short: not JSON, within the limit
        assert_int_equal(value_of(deep, fast, 64, NULL, NULL, NULL), JSCAN_BAD);
        free(ok);
        free(deep);
    }
    // jansson's own limit scans whole; a spec key after deep nesting is still found
    char *d = nested(JSCAN_DEEPEST);
    assert_int_equal(value_of(d, 0, JSCAN_DEEPEST, NULL, NULL, NULL), JSCAN_OK);
    size_t n = strlen(d);
    char *text = malloc(n + 64);
    assert_non_null(text);
    snprintf(text, n + 64, "{\"deep\": %s,\n \"name\": \"x\"}", d);
    locates(text, "name", "\"x\"");
    free(text);
    free(d);
}

// ---- strings and UTF-8 ---------------------------------------------------------------------

static void test_strings_utf8(void **state)
{
    (void)state;
    const char *good[] = {"\"\"", "\"plain\"", "\"\xc3\xa9\"", "\"\xe2\x82\xac\"", "\"\xf0\x9d\x84\x9e\"",
                          "\"\xf4\x8f\xbf\xbf\"", "\"\xed\x9f\xbf\"", "\"\xee\x80\x80\"", "\"\x7f\"", NULL};
    const char *bad[] = {"\"\xc0\x80\"",         "\"\xc1\xbf\"",         "\"\xe0\x80\x80\"", "\"\xe0\x9f\xbf\"",
                         "\"\xed\xa0\x80\"",     "\"\xed\xbf\xbf\"",     "\"\xf0\x80\x80\x80\"",
                         "\"\xf0\x8f\xbf\xbf\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"",
                         "\"\x80\"",             "\"\xc3\"",             "\"\xe2\x82\"",     "\"\xc3\x28\"",
                         "\"a\x01\"",            "\"a\nb\"",             "\"open",           "\"\xc3",
                         NULL};
    for (int fast = 0; fast <= 1; fast++) {
        for (const char *const *g = good; *g; g++) {
            size_t used = 0;
            char t = 0;
            assert_int_equal(value_of(*g, fast, 32, &t, NULL, &used), JSCAN_OK);
            assert_int_equal(t, 's');
            assert_int_equal(used, strlen(*g));
        }
        for (const char *const *b = bad; *b; b++)
            if (value_of(*b, fast, 32, NULL, NULL, NULL) != JSCAN_BAD) fail_msg("accepted bad string %s", *b);
    }
    // escapes: deferred with fast, checked and skipped without
    const char *esc[] = {"\"\\\"\"", "\"a\\\\b\"", "\"\\/\\b\\f\\n\\r\\t\"", "\"\\u00e9\\uD834\\udd1e\"", NULL};
    for (const char *const *e = esc; *e; e++) {
        assert_int_equal(value_of(*e, 1, 32, NULL, NULL, NULL), JSCAN_DEFER);
        size_t used = 0;
        assert_int_equal(value_of(*e, 0, 32, NULL, NULL, &used), JSCAN_OK);
        assert_int_equal(used, strlen(*e));
    }
    const char *bad_esc[] = {"\"\\x\"", "\"\\u12G4\"", "\"\\u12\"", "\"\\", "\"\\u123", "\"\\'\"", NULL};
    for (const char *const *e = bad_esc; *e; e++)
        if (value_of(*e, 0, 32, NULL, NULL, NULL) != JSCAN_BAD) fail_msg("accepted bad escape %s", *e);
    // a NUL byte inside a string is a control byte (the range is [p, end), not a C string)
    char *z = exact("\"a\0b\"", 5);
    JScan s = {z, z + 5, 32, 0};
    assert_int_equal(jscan_string(&s), JSCAN_BAD);
    free(z);
    // spec_locate finds keys past UTF-8 text and escapes, and stops at bad bytes before its target
    locates("{\"\xe2\x82\xac\": \"\\u20ac\\\"\", \"k\\n\": 1, \"x\": [\"\xf0\x9d\x84\x9e\", 2]}", "x[1]", "2]");
    int line, col;
    assert_int_equal(spec_locate("{\"a\": \"\xc0\x80\", \"x\": 1}", "x", &line, &col), -1);
    locates("{\"x\": 1, \"a\": \"\xc0\x80\"}", "x", "1,");
}

// ---- literals and grammar ------------------------------------------------------------------

static void test_grammar(void **state)
{
    (void)state;
    struct { const char *text; int rc; char type; size_t used; } cases[] = {
        {"true", JSCAN_OK, 'b', 4},     {"false", JSCAN_OK, 'b', 5},  {"null", JSCAN_OK, 'z', 4},
        {"nul", JSCAN_BAD, 'z', 0},     {"tru", JSCAN_BAD, 'b', 0},   {"nulls", JSCAN_OK, 'z', 4},
        {"01", JSCAN_OK, 'n', 1},       {"-", JSCAN_BAD, 'n', 0},     {"1.", JSCAN_BAD, 'n', 0},
        {".5", JSCAN_BAD, 'n', 0},      {"1e", JSCAN_BAD, 'n', 0},    {"1e+", JSCAN_BAD, 'n', 0},
        {"+1", JSCAN_BAD, 'n', 0},      {"[1,]", JSCAN_BAD, 'a', 0},  {"[,1]", JSCAN_BAD, 'a', 0},
        {"[1 2]", JSCAN_BAD, 'a', 0},   {"{\"a\"}", JSCAN_BAD, 'o', 0}, {"{\"a\":}", JSCAN_BAD, 'o', 0},
        {"{1: 2}", JSCAN_BAD, 'o', 0},  {"{\"a\": 1,}", JSCAN_BAD, 'o', 0}, {"[", JSCAN_BAD, 'a', 0},
        {"{", JSCAN_BAD, 'o', 0},       {"", JSCAN_BAD, 0, 0},        {"x", JSCAN_BAD, 'n', 0},
        {"[ ]", JSCAN_OK, 'a', 3},      {"{ }", JSCAN_OK, 'o', 3},    {"[1 , {\"a\" : [ ] } ]  ", JSCAN_OK, 'a', 19},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char t = 0;
        size_t used = 0;
        int rc = value_of(cases[i].text, 0, 32, &t, NULL, &used);
        if (rc != cases[i].rc || t != cases[i].type || (rc == JSCAN_OK && used != cases[i].used))
            fail_msg("'%s': rc %d type %c used %zu", cases[i].text, rc, t ? t : '-', used);
        assert_int_equal(value_of(cases[i].text, 1, 32, NULL, NULL, NULL), cases[i].rc);
    }
}

// ---- numbers -------------------------------------------------------------------------------

// Checks one number text against strtod: with fast, either the same bits or JSCAN_DEFER for
// exactly the cases the contract names; without fast, the same length and *v untouched.
static void check_number(const char *text)
{
    size_t n = strlen(text);
    double v = 12345.0;
    size_t used = 0;
    int rc = value_of(text, 1, 32, NULL, &v, &used);
    int integral = !strpbrk(text, ".eE");
    double want = strtod(text, NULL);
    int defer = n >= 64 || (integral && n > 18) || isinf(want);
    if (defer) {
        if (rc != JSCAN_DEFER) fail_msg("'%s': rc %d, want JSCAN_DEFER", text, rc);
    } else {
        if (rc != JSCAN_OK || used != n) fail_msg("'%s': rc %d used %zu", text, rc, used);
        if (memcmp(&v, &want, sizeof v) != 0) fail_msg("'%s': %.17g (%a), strtod %.17g (%a)", text, v, v, want, want);
    }
    v = 12345.0;
    assert_int_equal(value_of(text, 0, 32, NULL, &v, &used), JSCAN_OK);
    assert_int_equal(used, n);
    assert_true(v == 12345.0);
}

static void test_numbers_edge(void **state)
{
    (void)state;
    const char *nums[] = {
        "0", "-0", "0.0", "-0.0", "0e0", "0E+0", "-0e-5", "1", "-1", "0.1", "0.2", "0.3", "1e22", "1e23", "-1e22",
        "1e-22", "1e-23", "9007199254740991", "9007199254740992", "9007199254740993", "-9007199254740993",
        "999999999999999", "9999999999999999", "99999999999999999", "999999999999999999", "-99999999999999999",
        "-999999999999999999", "1234567890123456789", "0.000000000000000000001", "123456789012345.6",
        "1234567890123456.7", "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
        "1.8e308", "-1.8e308", "1e309", "1e400", "1e401", "1e999999", "4.9406564584124654e-324", "5e-324",
        "2e-324", "2.4703282292062328e-324", "2.4703282292062327e-324", "1e-400", "1e-99999",
        "2.2250738585072011e-308", "2.2250738585072014e-308", "2.225073858507201136057409796709131975934819546351645"
        "3e-308", "0.1e1", "0.01e2", "100e-2", "123.456e-7", "8.98846567431158e307", "4503599627370496.5",
        "4503599627370497.5", "1.00000000000000011102230246251565404236316680908203125",
        "7.038531e-26", "3.0517578125e-05", "0.000000000000000000000000000000000000000000000000000000000000000001",
        "1000000000000000000000000000000000000000000000000000000000000000", "12345678901234567890.5",
        "1.5E+10", "1.5e-10", "12e0", "1e15", "1e16", "123456789012345e7", "123456789012345e8",
        "0.000001", "3.14159265358979323846", "2.718281828459045", "0.6931471805599453",
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) check_number(nums[i]);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

// A random JSON number: up to 20 integer digits, an optional fraction and exponent.
static void random_number_text(char *buf, size_t len)
{
    size_t n = 0;
    if (rnd() % 2) buf[n++] = '-';
    int id = 1 + (int)(rnd() % 20);
    buf[n++] = rnd() % 8 ? (char)('1' + rnd() % 9) : '0';
    if (buf[n - 1] != '0')
        for (int i = 1; i < id; i++) buf[n++] = (char)('0' + rnd() % 10);
    if (rnd() % 2) {
        buf[n++] = '.';
        int fd = 1 + (int)(rnd() % 25);
        for (int i = 0; i < fd; i++) buf[n++] = (char)('0' + rnd() % 10);
    }
    buf[n] = 0;
    if (rnd() % 2) {
        int r = (int)(rnd() % 4);
        long e = r == 0 ? (long)(rnd() % 23) : r == 1 ? (long)(rnd() % 60) : r == 2 ? (long)(rnd() % 330) : (long)(rnd() % 420);
        const char *sign = rnd() % 2 ? "-" : rnd() % 2 ? "+" : "";
        snprintf(buf + n, len - n, "%s%s%ld", rnd() % 2 ? "e" : "E", sign, e);
    }
}

static void test_numbers_random(void **state)
{
    (void)state;
    char buf[128];
    for (int i = 0; i < 200000; i++) {
        random_number_text(buf, sizeof buf);
        check_number(buf);
    }
    // doubles as a metrics writer prints them (%.17g round-trips, shorter forms do not)
    const char *fmts[] = {"%.17g", "%.15g", "%.9g", "%.6g", "%g"};
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = rnd();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        if (i % 2) d = ldexp((double)(bits >> 11), (int)(rnd() % 80) - 70);  // everyday magnitudes
        snprintf(buf, sizeof buf, fmts[i % 5], d);
        if (strpbrk(buf, "in")) continue;  // inf, nan
        check_number(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positions),     cmocka_unit_test(test_positions_spec_locate),
        cmocka_unit_test(test_nesting_limit), cmocka_unit_test(test_strings_utf8),
        cmocka_unit_test(test_grammar),       cmocka_unit_test(test_numbers_edge),
        cmocka_unit_test(test_numbers_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
