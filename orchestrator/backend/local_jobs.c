// orchestrator/backend/local_jobs.c — job files, id allocation and the detached agent (see local_jobs.h).
#include "orchestrator/backend/local_jobs.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/fileio.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int local_state_init(const char *dir, char *err, size_t errlen)
{
    char p[PATH_MAX + 32];
    const char *subs[] = {"", "/jobs", "/cancel"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", dir, subs[i]);
        if (file_mkdir_p(p, 0755) < 0) {   // (the runs folder itself may not exist yet)
            snprintf(err, errlen, "%s: cannot create the local backend's state dir: %s", p, strerror(errno));
            return -1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// job files

static void job_path(const char *dir, long id, char *out, size_t len)
{
    snprintf(out, len, "%s/jobs/%ld.json", dir, id);
}

int local_job_write(const char *dir, const LocalJob *j, char *err, size_t errlen)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:f, s:f, s:f}", "id", (json_int_t)j->id,
                          "state", j->state, "script", j->script, "run_dir", j->run_dir, "name", j->name,
                          "pid", j->pid, "cpus", j->cpus, "time_limit_s", (json_int_t)j->time_limit_s, "submit_time", j->submit_time,
                          "start_time", j->start_time, "end_time", j->end_time);
    if (!o) { snprintf(err, errlen, "job %ld: cannot encode", j->id); return -1; }
    json_object_set_new(o, "exit_code", j->exit_code >= 0 ? json_integer(j->exit_code) : json_null());
    if (j->after_ok > 0) json_object_set_new(o, "after_ok", json_integer(j->after_ok));
    if (j->reason[0]) json_object_set_new(o, "reason", json_string(j->reason));
    char path[PATH_MAX + 64];
    job_path(dir, j->id, path, sizeof path);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text) { snprintf(err, errlen, "%s: cannot encode", path); return -1; }
    int rc = file_write_atomic(path, text, strlen(text), 0644, err, errlen);
    free(text);
    return rc;
}

int local_job_read(const char *dir, long id, LocalJob *j, char *err, size_t errlen)
{
    char path[PATH_MAX + 64];
    job_path(dir, id, path, sizeof path);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) { snprintf(err, errlen, "%s: %s", path, je.text); return -1; }
    memset(j, 0, sizeof *j);
    j->id = id;
    snprintf(j->state, sizeof j->state, "%s", json_string_value(json_object_get(o, "state")) ?: "unknown");
    snprintf(j->script, sizeof j->script, "%s", json_string_value(json_object_get(o, "script")) ?: "");
    snprintf(j->run_dir, sizeof j->run_dir, "%s", json_string_value(json_object_get(o, "run_dir")) ?: "");
    snprintf(j->name, sizeof j->name, "%s", json_string_value(json_object_get(o, "name")) ?: "");
    j->pid = (int)json_integer_value(json_object_get(o, "pid"));
    j->cpus = (int)json_integer_value(json_object_get(o, "cpus"));
    j->time_limit_s = (long)json_integer_value(json_object_get(o, "time_limit_s"));
    j->submit_time = json_number_value(json_object_get(o, "submit_time"));
    j->start_time = json_number_value(json_object_get(o, "start_time"));
    j->end_time = json_number_value(json_object_get(o, "end_time"));
    json_t *ec = json_object_get(o, "exit_code");
    j->exit_code = json_is_integer(ec) ? (int)json_integer_value(ec) : -1;
    j->after_ok = (long)json_integer_value(json_object_get(o, "after_ok"));
    snprintf(j->reason, sizeof j->reason, "%s", json_string_value(json_object_get(o, "reason")) ?: "");
    json_decref(o);
    return 0;
}

int local_job_submit(const char *dir, LocalJob *j, char *err, size_t errlen)
{
    if (local_state_init(dir, err, errlen) < 0) return -1;
    char lp[PATH_MAX + 32], np[PATH_MAX + 32];
    snprintf(lp, sizeof lp, "%s/ids.lock", dir);
    snprintf(np, sizeof np, "%s/next_id", dir);
    int lfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
        snprintf(err, errlen, "%s: %s", lp, strerror(errno));
        if (lfd >= 0) close(lfd);
        return -1;
    }
    long id = 1;
    FILE *f = fopen(np, "r");
    if (f) {
        if (fscanf(f, "%ld", &id) != 1 || id < 1) id = 1;
        fclose(f);
    }
    f = fopen(np, "w");
    int ok = f && fprintf(f, "%ld\n", id + 1) > 0;
    if (f && fclose(f) != 0) ok = 0;
    close(lfd);   // releases the lock
    if (!ok) { snprintf(err, errlen, "%s: cannot write: %s", np, strerror(errno)); return -1; }
    j->id = id;
    snprintf(j->state, sizeof j->state, "pending");
    j->pid = 0;
    j->submit_time = now_s();
    j->start_time = j->end_time = 0;
    j->exit_code = -1;
    return local_job_write(dir, j, err, errlen);
}

int local_job_cancel(const char *dir, long id, char *err, size_t errlen)
{
    LocalJob j;
    if (local_job_read(dir, id, &j, err, errlen) < 0) return -1;
    char mp[PATH_MAX + 64];
    snprintf(mp, sizeof mp, "%s/cancel/%ld", dir, id);
    int fd = open(mp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) { snprintf(err, errlen, "%s: %s", mp, strerror(errno)); return -1; }
    close(fd);
    if (strcmp(j.state, "running") == 0 && j.pid > 0) kill(-j.pid, SIGTERM);
    return 0;
}

int local_set_slots(const char *dir, int max_parallel, int cpus, char *err, size_t errlen)
{
    if (local_state_init(dir, err, errlen) < 0) return -1;
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *o = json_pack("{s:i, s:i}", "max_parallel", max_parallel < 0 ? 0 : max_parallel, "cpus", cpus < 0 ? 0 : cpus);
    char *text = o ? json_dumps(o, 0) : NULL;
    json_decref(o);
    if (!text) { snprintf(err, errlen, "%s: cannot encode", p); return -1; }
    int rc = file_write_atomic(p, text, strlen(text), 0644, err, errlen);
    free(text);
    return rc;
}

static void read_slots(const char *dir, int *max_parallel, int *cpus)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *o = json_load_file(p, 0, NULL);
    *max_parallel = o ? (int)json_integer_value(json_object_get(o, "max_parallel")) : 0;
    *cpus = o ? (int)json_integer_value(json_object_get(o, "cpus")) : 0;
    if (!o) {   // no submit wrote slots (a state dir of an older segx): share this machine's cores
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        *cpus = n > 0 ? (int)n : 1;
    }
    json_decref(o);
}

// ---------------------------------------------------------------------------------------------
// the agent

int local_agent_alive(const char *dir)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/agent.lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return 0;
    int held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

static void close_fds_from(int lowest, int keep)
{
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = lowest; fd < max; fd++)
        if (fd != keep) close(fd);
}

int local_agent_ensure(const char *dir, char *err, size_t errlen)
{
    if (local_state_init(dir, err, errlen) < 0) return -1;
    if (local_agent_alive(dir)) return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { snprintf(err, errlen, "cannot start the local agent: fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        // first child: new session, then fork again so the agent is no one's child and has no tty
        setsid();
        pid_t p2 = fork();
        if (p2 != 0) _exit(p2 < 0 ? 1 : 0);
        char lp[PATH_MAX + 32];
        snprintf(lp, sizeof lp, "%s/agent.log", dir);
        int in = open("/dev/null", O_RDONLY), out = open(lp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in >= 0) dup2(in, 0);
        if (out >= 0) { dup2(out, 1); dup2(out, 2); }
        close_fds_from(3, -1);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        _exit(local_agent_run(dir));
    }
    int st;
    waitpid(pid, &st, 0);
    return 0;
}

typedef struct Running {
    long id;
    int pid, cpus;
    double term_sent;      // when SIGTERM went out (cancel/timeout), 0 if not
    int timed_out;
} Running;

static int is_running(const Running *run, size_t nrun, long id)
{
    for (size_t i = 0; i < nrun; i++)
        if (run[i].id == id) return 1;
    return 0;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

// Ids of job files in state pending or running (sorted); final ones are remembered in done.
static size_t scan_jobs(const char *dir, long **ids, size_t *cap)
{
    char jp[PATH_MAX + 16];
    snprintf(jp, sizeof jp, "%s/jobs", dir);
    DIR *d = opendir(jp);
    size_t n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *end;
        long id = strtol(e->d_name, &end, 10);
        if (end == e->d_name || strcmp(end, ".json") != 0) continue;
        if (n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *ids = realloc(*ids, *cap * sizeof **ids);
        }
        (*ids)[n++] = id;
    }
    closedir(d);
    qsort(*ids, n, sizeof **ids, cmp_long);
    return n;
}

// Admission: a job claiming `need` cores starts when fewer than max_parallel jobs run (0: no
// cap) and its claim fits in the cores still free (cpus 0: no core accounting). A job larger
// than the machine starts only when nothing else runs, so it runs alone instead of never.
static int job_fits(int need, size_t nrun, int used, int max_parallel, int cpus)
{
    if (max_parallel > 0 && nrun >= (size_t)max_parallel) return 0;
    if (cpus > 0 && nrun > 0 && used + need > cpus) return 0;
    return 1;
}

static int cancel_requested(const char *dir, long id, int consume)
{
    char mp[PATH_MAX + 64];
    snprintf(mp, sizeof mp, "%s/cancel/%ld", dir, id);
    int yes = access(mp, F_OK) == 0;
    if (yes && consume) unlink(mp);
    return yes;
}

// Cancel markers of jobs that have not started: settled here, wherever they are in the queue.
static void cancel_queued(const char *dir, const Running *run, size_t nrun)
{
    char cp[PATH_MAX + 16], err[512];
    snprintf(cp, sizeof cp, "%s/cancel", dir);
    DIR *d = opendir(cp);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long id = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || is_running(run, nrun, id)) continue;
        LocalJob j;
        if (local_job_read(dir, id, &j, err, sizeof err) < 0) continue;
        if (strcmp(j.state, "pending") == 0) {
            snprintf(j.state, sizeof j.state, "cancelled");
            j.end_time = now_s();
            local_job_write(dir, &j, err, sizeof err);
        }
        if (strcmp(j.state, "running") != 0) cancel_requested(dir, id, 1);   // consumed
    }
    closedir(d);
}

// A job's afterok dependency: 1 it may start (the job it waits for completed), 0 it waits (that
// job is pending or running), -1 never (that job ended another way, or does not exist; why says it).
static int dependency_ready(const char *dir, const LocalJob *j, char *why, size_t len)
{
    LocalJob dep;
    char err[512];
    if (local_job_read(dir, j->after_ok, &dep, err, sizeof err) < 0) {
        snprintf(why, len, "dependency failed: job %ld is unknown", j->after_ok);
        return -1;
    }
    if (strcmp(dep.state, "completed") == 0) return 1;
    if (strcmp(dep.state, "pending") == 0 || strcmp(dep.state, "running") == 0) return 0;
    snprintf(why, len, "dependency failed: job %ld ended %s (exit %d)", dep.id, dep.state, dep.exit_code);
    return -1;
}

static int start_job(const char *dir, LocalJob *j)
{
    char err[512];
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setsid();   // own process group: cancel and timeouts signal the whole tree
        char out[PATH_MAX + 16], idbuf[32];
        // job.sh logs to job.out; an eval job (eval.sh) to eval.out beside it
        const char *base = strrchr(j->script, '/');
        base = base ? base + 1 : j->script;
        snprintf(out, sizeof out, "%s/%s", j->run_dir, strcmp(base, "eval.sh") == 0 ? "eval.out" : "job.out");
        int in = open("/dev/null", O_RDONLY), fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in >= 0) dup2(in, 0);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        close_fds_from(3, -1);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        if (chdir(j->run_dir) < 0) { fprintf(stderr, "segx local agent: cd %s: %s\n", j->run_dir, strerror(errno)); _exit(126); }
        snprintf(idbuf, sizeof idbuf, "%ld", j->id);
        setenv("SEGX_JOB_ID", idbuf, 1);
        unsetenv("SLURM_JOB_ID");
        execl("/bin/bash", "bash", j->script, (char *)NULL);
        fprintf(stderr, "segx local agent: exec bash %s: %s\n", j->script, strerror(errno));
        _exit(127);
    }
    j->pid = (int)pid;
    j->start_time = now_s();
    snprintf(j->state, sizeof j->state, "running");
    if (local_job_write(dir, j, err, sizeof err) < 0) fprintf(stderr, "segx local agent: %s\n", err);
    fprintf(stdout, "job %ld started: pid %d, %s\n", j->id, (int)pid, j->script);
    fflush(stdout);
    return 0;
}

// The agent's state between ticks.
typedef struct {
    const char *dir;
    int lfd;                       // agent.lock, held while the agent runs
    Running run[1024];
    size_t nrun;
    long *ids;                     // scan_jobs' list
    size_t cap;
    unsigned char *final;          // final[id]: the job is over, its file need not be read again
    size_t nfinal;
    double idle_since;
} Agent;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)   // the agent's log (stdout is its agent.log)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
}

// Reap finished jobs: their end, exit code and state (timeout, cancelled, completed, failed).
static void agent_reap(Agent *A)
{
    char err[512];
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (size_t i = 0; i < A->nrun; i++) {
            Running *r = &A->run[i];
            if (r->pid != (int)pid) continue;
            LocalJob j;
            if (local_job_read(A->dir, r->id, &j, err, sizeof err) == 0) {
                j.end_time = now_s();
                j.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                if (r->timed_out) snprintf(j.state, sizeof j.state, "timeout");
                else if (cancel_requested(A->dir, j.id, 1)) snprintf(j.state, sizeof j.state, "cancelled");
                else snprintf(j.state, sizeof j.state, j.exit_code == 0 ? "completed" : "failed");
                if (local_job_write(A->dir, &j, err, sizeof err) < 0) fprintf(stderr, "agent: %s\n", err);
                say("job %ld %s: exit %d\n", j.id, j.state, j.exit_code);
            }
            A->run[i] = A->run[--A->nrun];
            break;
        }
    }
}

// Cancel requests and time limits of running jobs: SIGTERM to the job's process group, SIGKILL
// 10 s later.
static void agent_limits(Agent *A)
{
    char err[512];
    double t = now_s();
    for (size_t i = 0; i < A->nrun; i++) {
        Running *r = &A->run[i];
        LocalJob j;
        if (local_job_read(A->dir, r->id, &j, err, sizeof err) < 0) continue;
        int want_stop = cancel_requested(A->dir, r->id, 0);
        if (!want_stop && j.time_limit_s > 0 && t - j.start_time > (double)j.time_limit_s) {
            r->timed_out = 1;
            want_stop = 1;
        }
        if (want_stop && r->term_sent == 0) {
            kill(-r->pid, SIGTERM);
            r->term_sent = t;
        } else if (r->term_sent > 0 && t - r->term_sent > 10) {
            kill(-r->pid, SIGKILL);
        }
    }
}

// Remembers that job id is over (its file is not read again).
static void mark_final(Agent *A, long id)
{
    if (id < 0 || id >= 100000000) return;
    if ((size_t)id >= A->nfinal) {
        size_t nn = (size_t)id * 2 + 64;
        unsigned char *f2 = realloc(A->final, nn);
        if (!f2) return;
        memset(f2 + A->nfinal, 0, nn - A->nfinal);
        A->final = f2;
        A->nfinal = nn;
    }
    A->final[id] = 1;
}

static void settle_cancelled(Agent *A, LocalJob *j)
{
    char err[512];
    snprintf(j->state, sizeof j->state, "cancelled");
    j->end_time = now_s();
    local_job_write(A->dir, j, err, sizeof err);
}

// One queued job: 1 it waits (counts as pending), 0 it was settled or is not pending, 2 it may
// start now (its dependency is met).
static int agent_consider(Agent *A, LocalJob *j)
{
    if (strcmp(j->state, "pending") != 0) {
        if (strcmp(j->state, "running") != 0) mark_final(A, j->id);
        return 0;
    }
    if (cancel_requested(A->dir, j->id, 1)) { settle_cancelled(A, j); return 0; }
    int dep = j->after_ok > 0 ? dependency_ready(A->dir, j, j->reason, sizeof j->reason) : 1;
    if (dep < 0) {   // its dependency can never be met: cancelled, as Slurm does
        settle_cancelled(A, j);
        say("job %ld cancelled: %s\n", j->id, j->reason);
        return 0;
    }
    return dep == 0 ? 1 : 2;   // waiting: the jobs behind it may start
}

// Starts pending jobs in id order while slots are free. Returns how many still wait.
static int agent_start(Agent *A)
{
    char err[512];
    int maxp, maxcpus, used = 0, pending = 0;
    cancel_queued(A->dir, A->run, A->nrun);
    read_slots(A->dir, &maxp, &maxcpus);
    for (size_t i = 0; i < A->nrun; i++) used += A->run[i].cpus;
    size_t n = scan_jobs(A->dir, &A->ids, &A->cap);
    for (size_t k = 0; k < n; k++) {
        long id = A->ids[k];
        if (is_running(A->run, A->nrun, id) || (id >= 0 && (size_t)id < A->nfinal && A->final[id])) continue;
        LocalJob j;
        if (local_job_read(A->dir, id, &j, err, sizeof err) < 0) continue;
        int c = agent_consider(A, &j);
        if (c == 0) continue;
        pending++;
        if (c == 1) continue;
        int need = j.cpus > 0 ? j.cpus : 1;
        // first come, first served: a job that does not fit blocks the ones behind it (and
        // they need not be read this round: a long queue costs nothing per tick)
        if (A->nrun == sizeof A->run / sizeof A->run[0] || !job_fits(need, A->nrun, used, maxp, maxcpus)) break;
        if (start_job(A->dir, &j) == 0) {
            A->run[A->nrun++] = (Running){.id = j.id, .pid = j.pid, .cpus = need};
            used += need;
            pending--;
        }
    }
    return pending;
}

// Idle for 1.5 s: let go of the lock, then look once more, so a job queued while we were
// deciding is either seen here or by the agent its submitter starts. 1: the agent exits.
static int agent_idle(Agent *A)
{
    char err[512];
    flock(A->lfd, LOCK_UN);
    size_t m = scan_jobs(A->dir, &A->ids, &A->cap);
    int again = 0;
    for (size_t k = 0; k < m && !again; k++) {
        LocalJob j;
        again = local_job_read(A->dir, A->ids[k], &j, err, sizeof err) == 0 && strcmp(j.state, "pending") == 0;
    }
    if (!again || flock(A->lfd, LOCK_EX | LOCK_NB) < 0) return 1;
    A->idle_since = now_s();
    return 0;
}

int local_agent_run(const char *dir)
{
    char lp[PATH_MAX + 32], pp[PATH_MAX + 32];
    snprintf(lp, sizeof lp, "%s/agent.lock", dir);
    snprintf(pp, sizeof pp, "%s/agent.pid", dir);
    int lfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0) return 0;   // another agent runs
    FILE *pf = fopen(pp, "w");
    if (pf) { fprintf(pf, "%d\n", (int)getpid()); fclose(pf); }
    say("agent %d: started\n", (int)getpid());
    Agent A = {.dir = dir, .lfd = lfd, .idle_since = now_s()};
    for (;;) {
        agent_reap(&A);
        agent_limits(&A);
        int pending = agent_start(&A);
        if (A.nrun > 0 || pending > 0) A.idle_since = now_s();
        else if (now_s() - A.idle_since > 1.5 && agent_idle(&A)) break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    say("agent %d: idle, exiting\n", (int)getpid());
    pf = fopen(pp, "r");
    int owner = 0;
    if (pf) { if (fscanf(pf, "%d", &owner) != 1) owner = 0; fclose(pf); }
    if (owner == (int)getpid()) unlink(pp);
    free(A.ids);
    free(A.final);
    close(lfd);
    return 0;
}
