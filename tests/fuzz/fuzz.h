// tests/fuzz/fuzz.h — what the libFuzzer harnesses share (tests/fuzz/README.md).
// defines: fuzz_text, fuzz_file, fuzz_check.
// Each harness is one LLVMFuzzerTestOneInput over one parser; a crash, a sanitizer report, a leak
// or a broken property (fuzz_check) stops the fuzzer and leaves the input as crash-<sha1>.
#ifndef SEGX_FUZZ_H
#define SEGX_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// data as a NUL-terminated string (malloc'd); NULL when it holds a NUL byte (parsers that take a
// C string never see one: the file readers reject them first).
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
    if (memchr(data, 0, size)) return NULL;
    char *t = malloc(size + 1);
    if (!t) abort();
    memcpy(t, data, size);
    t[size] = 0;
    return t;
}

// Writes data to this process's scratch file NAME (for parsers that take a path) and returns its
// path. The file is reused by every input; it lives in $TMPDIR (default /tmp).
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/segx-fuzz-%d-%s", tmp && *tmp ? tmp : "/tmp", (int)getpid(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) { perror(path); abort(); }
    return path;
}

// A property every input must keep; a broken one is reported like a crash.
#define fuzz_check(cond, ...)                                                                   \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: property broken: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

#endif
