// bench/submit_bench.c — the C half of bench/submit: submits N held jobs through a segx backend
// and times it, then times single status polls of a list of job ids with each Slurm backend
// (slurm, slurm-cli, slurm-rest; slurm-rest needs SEGX_SLURMRESTD_URL/SLURM_JWT or the local socket).
//   submit_bench submit BACKEND N SCRIPT RUN_DIR IDS_OUT     -> "seconds" on stdout, ids to IDS_OUT
//   submit_bench poll IDS_FILE REPEATS                       -> one line per backend: median seconds
// Built by bench/submit against $BUILD/libsegx.a (it is not part of the normal build).
#include "orchestrator/backend/backend.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int do_submit(const char *backend, int n, const char *script, const char *run_dir, const char *ids_out)
{
    Backend *b;
    char err[1024];
    if (backend_open(backend, NULL, &b, err, sizeof err)) { fprintf(stderr, "submit_bench: %s\n", err); return 1; }
    FILE *f = fopen(ids_out, "w");
    if (!f) { perror(ids_out); return 1; }
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        char key[32], name[64], id[64];
        snprintf(key, sizeof key, "c%d", i);
        snprintf(name, sizeof name, "bench-%s-%d", backend, i);
        // one experiment name per backend: the same comment would make a backend return the job another
        // one submitted (the lost-reply check), and nothing would be submitted twice
        JobSpec j = {.experiment = backend, .cell_key = key, .run_dir = run_dir, .script_path = script,
                     .job_name = name, .attempt = 1, .gpus = 1, .nodes = 1, .gpu_type = "cpu"};
        if (b->ops->submit(b, &j, id, sizeof id, err, sizeof err)) {
            fprintf(stderr, "submit_bench: job %d: %s\n", i, err);
            fclose(f);
            return 1;
        }
        fprintf(f, "%s\n", id);
    }
    double dt = now_s() - t0;
    fclose(f);
    backend_close(b);
    printf("%.3f\n", dt);
    return 0;
}

static int do_poll(const char *ids_file, int repeats)
{
    FILE *f = fopen(ids_file, "r");
    if (!f) { perror(ids_file); return 1; }
    size_t n = 0, cap = 1024;
    char **ids = malloc(cap * sizeof *ids), line[128];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!*line) continue;
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = strdup(line);
    }
    fclose(f);
    JobStatus *st = calloc(n, sizeof *st);
    const char *names[3] = {"slurm", "slurm-cli", "slurm-rest"};
    for (int k = 0; k < 3; k++) {
        Backend *b;
        char err[1024];
        if (backend_open(names[k], NULL, &b, err, sizeof err)) { fprintf(stderr, "submit_bench: %s\n", err); return 1; }
        double t[32];
        if (repeats > 32) repeats = 32;
        size_t known = 0;
        for (int r = 0; r < repeats; r++) {
            double t0 = now_s();
            if (b->ops->poll(b, (const char *const *)ids, n, st, err, sizeof err)) { fprintf(stderr, "submit_bench: %s\n", err); return 1; }
            t[r] = now_s() - t0;
            known = 0;
            for (size_t i = 0; i < n; i++) known += st[i].state != JOB_UNKNOWN;
        }
        qsort(t, (size_t)repeats, sizeof t[0], cmp_d);
        printf("%s %zu %zu %.4f %.4f\n", names[k], n, known, t[repeats / 2], t[repeats - 1]);
        backend_close(b);
    }
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(st);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 7 && !strcmp(argv[1], "submit")) return do_submit(argv[2], atoi(argv[3]), argv[4], argv[5], argv[6]);
    if (argc == 4 && !strcmp(argv[1], "poll")) return do_poll(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: submit_bench submit BACKEND N SCRIPT RUN_DIR IDS_OUT | poll IDS_FILE REPEATS\n");
    return 2;
}
