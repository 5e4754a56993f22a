// tests/orchestrator/test_table.c — output formats: csv quoting (read back by a small RFC 4180
// reader here), json validity (parsed back with jansson), markdown escaping, aligned text,
// shortest round-trip reals.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orchestrator/table.h"

static const char *const HEADERS[] = {"name", "n", "x"};

// Rows: plain; comma + quote; newline; NULL cells; unicode; non-finite real.
static Table *sample(void)
{
    Table *t = table_new(3, HEADERS);
    table_row(t); table_text(t, "plain"); table_int(t, 42); table_real(t, 0.1);
    table_row(t); table_text(t, "a,\"b\""); table_int(t, -7); table_real(t, 1e-300);
    table_row(t); table_text(t, "two\nlines|pipe"); table_null(t); table_real(t, 2.0 / 3.0);
    table_row(t); table_null(t); table_int(t, 0); table_null(t);
    table_row(t); table_text(t, "μ ± σ"); table_int(t, 9007199254740993LL); table_real(t, NAN);
    return t;
}

static char *render(Table *t, TableFormat f)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    assert_int_equal(table_print(t, f, m), 0);
    fclose(m);
    return out;
}

// Minimal RFC 4180 reader: returns field (row, col) of csv text into buf.
static int csv_field(const char *s, int row, int col, char *buf, size_t len)
{
    int r = 0, c = 0;
    size_t n = 0;
    while (*s) {
        int quoted = *s == '"';
        if (quoted) s++;
        n = 0;
        for (;;) {
            if (quoted && *s == '"' && s[1] == '"') { if (r == row && c == col && n + 1 < len) buf[n++] = '"'; s += 2; continue; }
            if (quoted && *s == '"') { s++; quoted = 0; continue; }
            if (!quoted && (*s == ',' || *s == '\n' || !*s)) break;
            if (r == row && c == col && n + 1 < len) buf[n++] = *s;
            s++;
        }
        if (r == row && c == col) { buf[n] = 0; return 0; }
        if (*s == ',') { c++; s++; }
        else if (*s == '\n') { r++; c = 0; s++; }
    }
    return -1;
}

static void test_csv_quoting(void **state)
{
    (void)state;
    Table *t = sample();
    char *out = render(t, TABLE_CSV);
    char f[64];
    assert_int_equal(csv_field(out, 0, 0, f, sizeof f), 0); assert_string_equal(f, "name");
    assert_int_equal(csv_field(out, 2, 0, f, sizeof f), 0); assert_string_equal(f, "a,\"b\"");
    assert_int_equal(csv_field(out, 3, 0, f, sizeof f), 0); assert_string_equal(f, "two\nlines|pipe");
    assert_int_equal(csv_field(out, 3, 1, f, sizeof f), 0); assert_string_equal(f, "");
    assert_int_equal(csv_field(out, 1, 2, f, sizeof f), 0); assert_string_equal(f, "0.1");
    assert_int_equal(csv_field(out, 2, 2, f, sizeof f), 0); assert_string_equal(f, "1e-300");
    assert_int_equal(csv_field(out, 3, 2, f, sizeof f), 0); assert_true(strtod(f, NULL) == 2.0 / 3.0);
    assert_int_equal(csv_field(out, 5, 1, f, sizeof f), 0); assert_string_equal(f, "9007199254740993");
    // Exactly the quoting RFC 4180 asks for, byte for byte, on the second row.
    assert_non_null(strstr(out, "\n\"a,\"\"b\"\"\",-7,1e-300\n"));
    free(out);
    table_free(t);
}

static void test_json_valid(void **state)
{
    (void)state;
    Table *t = sample();
    char *out = render(t, TABLE_JSON);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    if (!j) fail_msg("invalid JSON at %d:%d: %s\n%s", e.line, e.column, e.text, out);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 5);
    json_t *r1 = json_array_get(j, 1);
    assert_string_equal(json_string_value(json_object_get(r1, "name")), "a,\"b\"");
    assert_true(json_is_integer(json_object_get(r1, "n")));
    assert_true(json_real_value(json_object_get(r1, "x")) == 1e-300);
    json_t *r2 = json_array_get(j, 2);
    assert_string_equal(json_string_value(json_object_get(r2, "name")), "two\nlines|pipe");
    assert_true(json_is_null(json_object_get(r2, "n")));
    assert_true(json_real_value(json_object_get(r2, "x")) == 2.0 / 3.0);
    json_t *r4 = json_array_get(j, 4);
    assert_string_equal(json_string_value(json_object_get(r4, "name")), "μ ± σ");
    assert_true(json_is_null(json_object_get(r4, "x")));  // NaN is not JSON
    json_decref(j);
    free(out);
    // An empty table is an empty array.
    Table *e0 = table_new(3, HEADERS);
    out = render(e0, TABLE_JSON);
    j = json_loads(out, 0, &e);
    assert_non_null(j);
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    free(out);
    table_free(e0);
    table_free(t);
}

static void test_markdown(void **state)
{
    (void)state;
    Table *t = sample();
    char *out = render(t, TABLE_MARKDOWN);
    assert_non_null(strstr(out, "| name | n | x |\n| --- | ---: | ---: |\n"));
    assert_non_null(strstr(out, "| two<br>lines\\|pipe |  | 0.6667 |"));
    free(out);
    table_free(t);
}

static void test_text_alignment(void **state)
{
    (void)state;
    const char *h[] = {"model", "gpus", "speedup"};
    Table *t = table_new(3, h);
    table_set_decimals(t, 2, 2);
    table_row(t); table_text(t, "unet"); table_int(t, 1); table_real(t, 1.0);
    table_row(t); table_text(t, "resnet18"); table_int(t, 16); table_real(t, 12.3456);
    char *out = render(t, TABLE_TEXT);
    // Text left-aligned, numbers right-aligned, reals rounded to the column's decimals.
    assert_string_equal(out, "model     gpus  speedup\n"
                             "unet         1     1.00\n"
                             "resnet18    16    12.35\n");
    free(out);
    table_free(t);
}

static void test_formats_and_reals(void **state)
{
    (void)state;
    TableFormat f;
    assert_int_equal(table_format_parse("csv", &f), 0); assert_int_equal(f, TABLE_CSV);
    assert_int_equal(table_format_parse("md", &f), 0); assert_int_equal(f, TABLE_MARKDOWN);
    assert_int_equal(table_format_parse("xml", &f), -1);
    assert_int_equal(table_format_resolve(TABLE_AUTO, stdout), TABLE_TEXT);
    char buf[64];
    const double vals[] = {0.1, 1.0 / 3.0, 1e21, -2.5e-8, 123456789.125, 0.30000000000000004};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        table_format_real(vals[i], buf, sizeof buf);
        assert_true(strtod(buf, NULL) == vals[i]);
    }
    table_format_real(0.1, buf, sizeof buf);
    assert_string_equal(buf, "0.1");
    // Filling more cells than columns is refused.
    Table *t = table_new(1, HEADERS);
    assert_int_equal(table_int(t, 1), -1);  // no row yet
    table_row(t);
    assert_int_equal(table_int(t, 1), 0);
    assert_int_equal(table_int(t, 2), -1);
    table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_json_valid),
        cmocka_unit_test(test_markdown),
        cmocka_unit_test(test_text_alignment),
        cmocka_unit_test(test_formats_and_reals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
