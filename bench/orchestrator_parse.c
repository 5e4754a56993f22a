// bench/orchestrator_parse.c — how long jansson alone takes to parse metrics.jsonl files, to
// tell whether JSON parsing is collect's bottleneck. usage: orchestrator_parse FILE...
// (or file names on stdin, one a line, with no arguments).
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    double t_read = 0, t_parse = 0;
    long lines = 0, bytes = 0, files = 0;
    char name[4096];
    for (int i = 1;; i++) {
        const char *path;
        if (argc > 1) { if (i >= argc) break; path = argv[i]; }
        else { if (!fgets(name, sizeof name, stdin)) break; name[strcspn(name, "\n")] = 0; path = name; }
        double t0 = now();
        size_t len;
        char *buf = slurp(path, &len);
        double t1 = now();
        t_read += t1 - t0;
        if (!buf) continue;
        files++;
        bytes += (long)len;
        for (char *p = buf, *end = buf + len; p < end;) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            char *eol = nl ? nl : end;
            json_error_t e;
            json_t *j = json_loadb(p, (size_t)(eol - p), 0, &e);
            if (j) lines++;
            json_decref(j);
            p = eol + 1;
        }
        t_parse += now() - t1;
        free(buf);
    }
    printf("files %ld, lines %ld, MB %.1f: read %.3f s, json_loadb %.3f s (%.2f us/line)\n", files, lines,
           bytes / 1e6, t_read, t_parse, lines ? 1e6 * t_parse / lines : 0.0);
    return 0;
}
