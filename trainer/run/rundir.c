// trainer/run/rundir.c — the run dir files: metrics.jsonl, atomic JSON files, env.json.
#include "trainer/run/run.h"
// defines: rundir_*, run_write_json_atomic, run_env_json, run_now_s, run_mkdir_p

#include "config.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#ifdef SEGX_HAVE_MPI
#include <mpi.h>
#endif

struct RunDir {
    char path[4096];
    FILE *metrics;
};

double run_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int run_mkdir_p(const char *path, char *err, size_t errlen) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST) goto bad;
            *p = '/';
        }
    if (mkdir(tmp, 0777) && errno != EEXIST) goto bad;
    return 0;
bad:
    snprintf(err, errlen, "%s: cannot create directory: %s", tmp, strerror(errno));
    return -1;
}

int rundir_open(const char *path, int append, RunDir **out, char *err, size_t errlen) {
    *out = NULL;
    if (run_mkdir_p(path, err, errlen)) return -1;
    RunDir *rd = calloc(1, sizeof *rd);
    if (!rd) { snprintf(err, errlen, "out of memory"); return -1; }
    snprintf(rd->path, sizeof rd->path, "%s", path);
    char p[4200];
    snprintf(p, sizeof p, "%s/metrics.jsonl", path);
    rd->metrics = fopen(p, append ? "a" : "w");
    if (!rd->metrics) {
        snprintf(err, errlen, "%s: cannot open for writing: %s", p, strerror(errno));
        free(rd);
        return -1;
    }
    *out = rd;
    return 0;
}

void rundir_close(RunDir *rd) {
    if (!rd) return;
    if (rd->metrics) fclose(rd->metrics);
    free(rd);
}

const char *rundir_path(const RunDir *rd) { return rd->path; }

int rundir_append_metrics(RunDir *rd, json_t *obj, char *err, size_t errlen) {
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!s) { snprintf(err, errlen, "metrics: cannot encode JSON"); return -1; }
    int bad = fprintf(rd->metrics, "%s\n", s) < 0 || fflush(rd->metrics) != 0;
    free(s);
    if (bad) { snprintf(err, errlen, "%s/metrics.jsonl: write failed: %s", rd->path, strerror(errno)); return -1; }
    return 0;
}

void run_fsync_parent_dir(const char *path) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

int run_write_json_atomic(const char *path, json_t *obj, char *err, size_t errlen) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) { snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); return -1; }
    int bad = json_dumpf(obj, f, JSON_INDENT(1) | JSON_REAL_PRECISION(10)) != 0;
    bad |= fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    run_fsync_parent_dir(path);
    return 0;
}

int rundir_write_json(RunDir *rd, const char *name, json_t *obj, char *err, size_t errlen) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", rd->path, name);
    return run_write_json_atomic(p, obj, err, errlen);
}

// ---------------------------------------------------------------------------------------------

static void cpu_model(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ') c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(out, n, "%s", c);
            }
            break;
        }
    fclose(f);
}

static void git_commit(const char *argv0, char *out, size_t n) {
    out[0] = 0;
    const char *env = getenv("SEGX_GIT_COMMIT");
    if (env && env[0]) { snprintf(out, n, "%s", env); return; }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        if (!argv0 || !realpath(argv0, exe)) return;
    } else exe[len] = 0;
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof cmd, "git -C '%s' rev-parse HEAD 2>/dev/null", dirname(exe));
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (fgets(out, (int)n, p)) out[strcspn(out, "\n")] = 0;
    else out[0] = 0;
    pclose(p);
}

json_t *run_env_json(const char *argv0, int threads, int world, const char *comm_kind, json_t *extra) {
    json_t *e = json_object();
    char host[256] = "unknown", cpu[256], commit[128];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    cpu_model(cpu, sizeof cpu);
    git_commit(argv0, commit, sizeof commit);
    struct utsname u;
    json_object_set_new(e, "host", json_string(host));
    json_object_set_new(e, "cpu_model", json_string(cpu));
    json_object_set_new(e, "cpus_online", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(e, "threads", json_integer(threads));
    json_object_set_new(e, "ranks", json_integer(world));
    json_object_set_new(e, "comm", json_string(comm_kind));
    json_object_set_new(e, "device", json_string("cpu"));
    if (uname(&u) == 0) json_object_set_new(e, "kernel", json_string(u.release));
    json_object_set_new(e, "openblas", json_string(openblas_get_config()));
    json_object_set_new(e, "jansson", json_string(JANSSON_VERSION));
    const char *omp = getenv("OMP_WAIT_POLICY");   // as libgomp read it (segx-train's main sets PASSIVE)
    json_object_set_new(e, "omp_wait_policy", omp ? json_string(omp) : json_null());
#ifdef SEGX_HAVE_MPI
    char mpiv[MPI_MAX_LIBRARY_VERSION_STRING];
    int ml = 0;
    if (MPI_Get_library_version(mpiv, &ml) == MPI_SUCCESS) {
        mpiv[strcspn(mpiv, "\n,")] = 0;
        json_object_set_new(e, "mpi", json_string(mpiv));
    }
#endif
    json_object_set_new(e, "git_commit", commit[0] ? json_string(commit) : json_null());
    const char *jid = getenv("SLURM_JOB_ID");
    if (jid) json_object_set_new(e, "slurm_job_id", json_string(jid));
    time_t now = time(NULL);
    char ts[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(e, "started_utc", json_string(ts));
    if (extra) json_object_update(e, extra);
    return e;
}

// ---------------------------------------------------------------------------------------------

void progress_bar(int epoch, int epochs, long step, long steps, double eta_s, double loss) {
    if (!isatty(2)) return;
    int width = 30, fill = steps > 0 ? (int)(width * step / steps) : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\repoch %d/%d [%s] step %ld/%ld loss %.4f eta %.0fs   ", epoch, epochs, bar, step,
            steps, loss, eta_s);
    fflush(stderr);
}

void progress_bar_done(void) {
    if (isatty(2)) fputc('\n', stderr);
}
