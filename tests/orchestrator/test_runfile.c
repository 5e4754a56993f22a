// tests/orchestrator/test_runfile.c — run-dir file reading (orchestrator/runfile.c): lines across
// buffer refills equal the file's lines (checked against the file split independently), a line
// longer than the limit is reported once and the next line read whole, a last line without '\n',
// FIFOs / devices / directories refused without blocking, a size limit on whole-file reads.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "orchestrator/runfile.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/segx-test-runfile-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

// Lines of random lengths (0 .. 3 x max_line), some over the limit, the last without '\n'.
static void test_lines_match_the_file(void **state)
{
    (void)state;
    const size_t max_line = 1000;
    char path[128];
    snprintf(path, sizeof path, "%s/lines", dir);
    FILE *f = fopen(path, "w");
    unsigned x = 7;
    enum { N = 3000 };
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        lens[i] = (x >> 8) % (i % 50 == 0 ? 3 * max_line : max_line / 2);
        if (i == 1500) lens[i] = 200000;   // longer than the whole buffer: skipped across refills
        for (size_t k = 0; k < lens[i]; k++) fputc('a' + (int)((i + k) % 26), f);
        if (i < N - 1) fputc('\n', f);
    }
    fclose(f);
    RunLines *r;
    char err[256];
    assert_int_equal(runfile_lines_open(path, max_line, &r, err, sizeof err), 0);
    const char *line;
    size_t len;
    int too_long, no_nl, got, n = 0;
    long lineno;
    while ((got = runfile_lines_next(r, &line, &len, &too_long, &no_nl, &lineno, err, sizeof err)) == 1) {
        assert_true(n < N);
        assert_int_equal(lineno, n + 1);
        assert_int_equal(too_long, lens[n] > max_line);
        assert_int_equal(len, lens[n] > max_line ? max_line : lens[n]);
        for (size_t k = 0; k < len; k++)
            if (line[k] != 'a' + (int)((n + k) % 26)) fail_msg("line %d byte %zu differs", n + 1, k);
        assert_int_equal(no_nl, n == N - 1 && lens[n] > 0);
        n++;
    }
    assert_int_equal(got, 0);
    // (an empty last line without '\n' is no line at all)
    assert_int_equal(n, lens[N - 1] > 0 ? N : N - 1);
    runfile_lines_close(r);
}

static void test_special_files_refused(void **state)
{
    (void)state;
    char fifo[128], link[128], err[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(link, sizeof link, "%s/zero", dir);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_int_equal(symlink("/dev/zero", link), 0);
    int fd;
    assert_int_equal(runfile_open(fifo, &fd, err, sizeof err), -1);   // returns at once: no writer awaited
    assert_non_null(strstr(err, "not a regular file (a fifo)"));
    char *text;
    size_t len;
    assert_int_equal(runfile_read(link, 1 << 20, &text, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file (a character device)"));
    RunLines *r;
    assert_int_equal(runfile_lines_open(dir, 100, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file (a directory)"));
    char none[128];
    snprintf(none, sizeof none, "%s/none", dir);
    assert_int_equal(runfile_read(none, 100, &text, &len, err, sizeof err), 1);
    snprintf(none, sizeof none, "%s/fifo/x", dir);   // ENOTDIR: absent too
    assert_int_equal(runfile_open(none, &fd, err, sizeof err), 1);
}

static void test_read_size_limit(void **state)
{
    (void)state;
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/json", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 10000; i++) fputc('x', f);
    fclose(f);
    char *text;
    size_t len;
    assert_int_equal(runfile_read(path, 10000, &text, &len, err, sizeof err), 0);
    assert_int_equal(len, 10000);
    assert_int_equal(strlen(text), 10000);
    free(text);
    assert_int_equal(runfile_read(path, 9999, &text, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "larger than 9999 bytes"));
    assert_null(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_match_the_file),
        cmocka_unit_test(test_special_files_refused),
        cmocka_unit_test(test_read_size_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
