// tests/orchestrator/test_util.c — the small utilities every module shares (orchestrator/util/):
// the string buffer, whole-file read, atomic write, mkdir -p, the install-relative paths and
// "did you mean".
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "orchestrator/util/clock.h"
#include "orchestrator/util/fileio.h"
#include "orchestrator/util/paths.h"
#include "orchestrator/util/strbuf.h"
#include "orchestrator/util/suggest.h"

static char tmpdir[64];

static void test_strbuf(void **state)
{
    (void)state;
    StrBuf b = {0};
    char *empty = sb_take(&b);
    assert_string_equal(empty, "");   // nothing added: "" (malloc'd), not NULL
    free(empty);
    sb_puts(&b, "a");
    sb_putc(&b, 'b');
    sb_add(&b, "cdef", 2);
    assert_string_equal(b.p, "abcd");
    assert_int_equal(b.len, 4);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(sb_printf(&b, "[%s|%d]", big, 42), 0);   // longer than any first allocation
    assert_int_equal(b.len, 4 + 1 + 2999 + 4);
    assert_int_equal(strlen(b.p), b.len);
    assert_string_equal(b.p + b.len - 4, "|42]");
    char *t = sb_take(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(strncmp(t, "abcd[xxx", 8), 0);
    free(t);
    b.oom = 1;   // out of memory is sticky: appends fail, take gives NULL
    assert_int_equal(sb_puts(&b, "z"), -1);
    assert_null(sb_take(&b));
    sb_free(&b);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void test_files(void **state)
{
    (void)state;
    char dir[128], path[192], err[512];
    snprintf(dir, sizeof dir, "%s/a/b/c", tmpdir);
    assert_int_equal(file_mkdir_p(dir, 0755), 0);
    assert_int_equal(file_mkdir_p(dir, 0755), 0);   // exists: fine
    snprintf(path, sizeof path, "%s/f.json", dir);
    assert_int_equal(file_write_atomic(path, "{\"a\": 1}", 8, 0600, err, sizeof err), 0);
    assert_int_equal(file_write_atomic(path, "{\"a\": 22}", 9, 0600, err, sizeof err), 0);   // replaced
    assert_int_equal(count_entries(dir), 1);   // no temporary file left behind
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    size_t n;
    char *text = file_read(path, 0, &n, err, sizeof err);
    assert_non_null(text);
    assert_int_equal(n, 9);
    assert_string_equal(text, "{\"a\": 22}");
    free(text);
    assert_null(file_read(path, 4, &n, err, sizeof err));   // over the limit
    assert_non_null(strstr(err, "larger than 4 bytes"));
    assert_null(file_read(dir, 0, &n, err, sizeof err));    // a folder is not a file
    assert_non_null(strstr(err, dir));
    snprintf(path, sizeof path, "%s/none", tmpdir);
    assert_null(file_read(path, 0, NULL, err, sizeof err));
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(err, "No such file"));
    snprintf(path, sizeof path, "%s/no/such/dir/f", tmpdir);   // the folder must exist
    assert_int_equal(file_write_atomic(path, "x", 1, 0644, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    snprintf(path, sizeof path, "%s/f.json/sub", dir);          // a file in the way
    assert_int_equal(file_mkdir_p(path, 0755), -1);
    assert_int_equal(errno, ENOTDIR);
    // file_write_replace: the same replace-whole contract without the fsyncs (a new inode each time)
    snprintf(path, sizeof path, "%s/job.sh", dir);
    assert_int_equal(file_write_replace(path, "#!/bin/sh\n", 10, 0755, err, sizeof err), 0);
    struct stat first;
    assert_int_equal(stat(path, &first), 0);
    assert_int_equal(file_write_replace(path, "#!/bin/sh\nexit 3\n", 17, 0755, err, sizeof err), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0755);
    assert_int_equal(sb.st_size, 17);
    assert_true(sb.st_ino != first.st_ino);   // renamed over, never rewritten in place
    assert_int_equal(count_entries(dir), 2);  // f.json and job.sh: no temporary file left
    snprintf(path, sizeof path, "%s/no/such/dir/job.sh", tmpdir);
    assert_int_equal(file_write_replace(path, "x", 1, 0755, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
}

static void test_clocks(void **state)
{
    (void)state;
    double w = now_s(), m0 = mono_s(), m1 = mono_s();
    assert_true(w > 1.6e9);    // after 2020: the wall clock, not the monotonic one
    assert_true(m1 >= m0);
}

// util/paths: SEGX_SELF names the binary (its folder is self_dir); templates from SEGX_TEMPLATES,
// else beside the binary (BIN/../templates), else $SEGX_ROOT/templates, else "templates";
// segx-train from SEGX_TRAIN, else an executable beside segx, else $SEGX_BIN/, else PATH.
static void test_paths(void **state)
{
    (void)state;
    char bin[128], tdir[160], train[160];
    snprintf(bin, sizeof bin, "%s/inst/bin", tmpdir);
    snprintf(tdir, sizeof tdir, "%s/inst/templates", tmpdir);
    assert_int_equal(file_mkdir_p(bin, 0755), 0);
    char self[160];
    snprintf(self, sizeof self, "%s/segx", bin);
    setenv("SEGX_SELF", self, 1);
    assert_string_equal(paths_self_path(), self);
    assert_string_equal(paths_self_dir(), bin);
    unsetenv("SEGX_TEMPLATES");
    unsetenv("SEGX_ROOT");
    assert_string_equal(paths_templates_dir(), "templates");
    assert_int_equal(file_mkdir_p(tdir, 0755), 0);
    char want[200];
    snprintf(want, sizeof want, "%s/../templates", bin);
    assert_string_equal(paths_templates_dir(), want);
    setenv("SEGX_TEMPLATES", "/elsewhere/templates", 1);
    assert_string_equal(paths_templates_dir(), "/elsewhere/templates");
    unsetenv("SEGX_TEMPLATES");

    unsetenv("SEGX_TRAIN");
    unsetenv("SEGX_BIN");
    assert_string_equal(paths_trainer_path(), "segx-train");
    snprintf(train, sizeof train, "%s/segx-train", bin);
    char err[256];
    assert_int_equal(file_write_atomic(train, "#!/bin/sh\n", 10, 0644, err, sizeof err), 0);
    assert_string_equal(paths_trainer_path(), "segx-train");   // not executable: not found
    assert_int_equal(chmod(train, 0755), 0);
    assert_string_equal(paths_trainer_path(), train);
    setenv("SEGX_TRAIN", "/opt/x/segx-train", 1);
    assert_string_equal(paths_trainer_path(), "/opt/x/segx-train");
    unsetenv("SEGX_TRAIN");
    unsetenv("SEGX_SELF");
}

// util/suggest: optimal string alignment distance (a swap is one edit) and the closest candidate
// within max(1, len/3) edits, the first of equals.
static void test_suggest(void **state)
{
    (void)state;
    assert_int_equal(suggest_edit_distance("modle", "model"), 1);
    assert_int_equal(suggest_edit_distance("", ""), 0);
    assert_int_equal(suggest_edit_distance("abc", ""), 3);
    assert_int_equal(suggest_edit_distance("ca", "abc"), 3);   // OSA, not Damerau: no edit of a swapped pair
    const char *const cands[] = {"status", "submit", "plan", NULL};
    assert_string_equal(suggest_closest("stauts", cands), "status");
    assert_string_equal(suggest_closest("pln", cands), "plan");
    assert_null(suggest_closest("report", cands));
    const char *const ties[] = {"ab", "ba", NULL};
    assert_string_equal(suggest_closest("aa", ties), "ab");
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-util-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strbuf),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_suggest),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
