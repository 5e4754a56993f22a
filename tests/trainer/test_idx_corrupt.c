// tests/trainer/test_idx_corrupt.c — a gzip IDX file whose compressed stream is cut short: the
// error names the file and carries zlib's own message, read before gzclose frees it (issue 17
// item 10: ASan reported a heap-use-after-free here).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "trainer/data/data.h"

static void test_cut_gzip_stream_reports_zlib_error(void **state) {
    (void)state;
    char path[] = "/tmp/segx-test-idx-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    // A valid IDX of 200 x 28 x 28 bytes of noise (incompressible), gzip-compressed...
    enum { N = 200 * 28 * 28 };
    uint8_t *raw = malloc(16 + N);
    const uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, 200, 0, 0, 0, 28, 0, 0, 0, 28};
    memcpy(raw, hdr, 16);
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) { x = x * 1664525u + 1013904223u; raw[16 + i] = (uint8_t)(x >> 24); }
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, raw, 16 + N), 16 + N);
    gzclose(g);
    free(raw);
    // ...then the file cut in the middle of the deflate stream.
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size / 2), 0);

    uint8_t *data = NULL;
    int nd, dims[4];
    char err[1024];
    assert_int_equal(idx_read(path, &data, &nd, dims, err, sizeof err), -1);
    assert_null(data);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "truncated IDX data"));
    assert_non_null(strstr(err, ": unexpected end of file)"));   // zlib's message (it names the file too), intact
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_gzip_stream_reports_zlib_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
