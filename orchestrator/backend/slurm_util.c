// orchestrator/backend/slurm_util.c — shared by the Slurm backends (see slurm_util.h).
#include "orchestrator/util/clock.h"
#include "orchestrator/backend/slurm_util.h"
#include "orchestrator/poll_pace.h"
#include "orchestrator/util/fileio.h"
#include "orchestrator/util/units.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// #SBATCH lines

static int set_str(char *dst, size_t cap, const char *v, const char *where, const char *opt,
                   char *err, size_t errlen)
{
    if (strlen(v) >= cap) { snprintf(err, errlen, "%s: %s value is longer than %zu characters", where, opt, cap - 1); return -1; }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int set_int(int *dst, const char *v, int lo, const char *where, const char *opt, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > 1000000) {
        snprintf(err, errlen, "%s: %s '%s' is not a whole number from %d to 1000000", where, opt, v, lo);
        return -1;
    }
    *dst = (int)n;
    return 0;
}

static int parse_signal(SlurmOpts *o, const char *v, const char *where, char *err, size_t errlen)
{
    const char *s = v;
    o->signal_batch_only = 0;
    if (strncmp(s, "B:", 2) == 0) { o->signal_batch_only = 1; s += 2; }
    else if (strncmp(s, "R:", 2) == 0) s += 2;
    char name[32];
    size_t n = strcspn(s, "@");
    if (n == 0 || n >= sizeof name) goto bad;
    memcpy(name, s, n); name[n] = '\0';
    const char *nm = strncasecmp(name, "SIG", 3) == 0 ? name + 3 : name;
    static const struct { const char *n; int s; } sigs[] = {
        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP},
        {"KILL", SIGKILL}, {"QUIT", SIGQUIT}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {NULL, 0}};
    o->signal_num = 0;
    for (int i = 0; sigs[i].n; i++) if (strcasecmp(nm, sigs[i].n) == 0) o->signal_num = sigs[i].s;
    if (!o->signal_num && isdigit((unsigned char)*nm)) o->signal_num = atoi(nm);
    if (o->signal_num <= 0 || o->signal_num > 64) goto bad;
    o->signal_time = 60;
    if (s[n] == '@' && set_int(&o->signal_time, s + n + 1, 0, where, "--signal time", err, errlen)) return -1;
    return 0;
bad:
    snprintf(err, errlen, "%s: --signal '%s' is not [B:]SIGNAL[@SECONDS]", where, v);
    return -1;
}

// Applies one option (long name without dashes, or a one-letter short name).
static int apply_opt(SlurmOpts *o, const char *key, const char *v, const char *where, char *err, size_t errlen)
{
    static const struct { char s; const char *l; } alias[] = {
        {'J', "job-name"}, {'p', "partition"}, {'A', "account"}, {'q', "qos"}, {'t', "time"},
        {'N', "nodes"}, {'n', "ntasks"}, {'c', "cpus-per-task"}, {'o', "output"}, {'e', "error"},
        {'C', "constraint"}, {'d', "dependency"}, {'a', "array"}, {'D', "chdir"}, {'H', "hold"}, {0, NULL}};
    if (key[0] && !key[1])
        for (int i = 0; alias[i].s; i++) if (alias[i].s == key[0]) { key = alias[i].l; break; }
    int needs_value = strcmp(key, "requeue") && strcmp(key, "no-requeue") && strcmp(key, "hold");
    if (needs_value && (!v || !*v)) { snprintf(err, errlen, "%s: --%s needs a value", where, key); return -1; }
    if (!strcmp(key, "job-name")) return set_str(o->job_name, sizeof o->job_name, v, where, key, err, errlen);
    if (!strcmp(key, "partition")) return set_str(o->partition, sizeof o->partition, v, where, key, err, errlen);
    if (!strcmp(key, "account")) return set_str(o->account, sizeof o->account, v, where, key, err, errlen);
    if (!strcmp(key, "qos")) return set_str(o->qos, sizeof o->qos, v, where, key, err, errlen);
    if (!strcmp(key, "constraint")) return set_str(o->constraint, sizeof o->constraint, v, where, key, err, errlen);
    if (!strcmp(key, "output")) return set_str(o->output, sizeof o->output, v, where, key, err, errlen);
    if (!strcmp(key, "error")) return set_str(o->error, sizeof o->error, v, where, key, err, errlen);
    if (!strcmp(key, "dependency")) return set_str(o->dependency, sizeof o->dependency, v, where, key, err, errlen);
    if (!strcmp(key, "array")) return set_str(o->array, sizeof o->array, v, where, key, err, errlen);
    if (!strcmp(key, "chdir")) return set_str(o->chdir, sizeof o->chdir, v, where, key, err, errlen);
    if (!strcmp(key, "comment")) return set_str(o->comment, sizeof o->comment, v, where, key, err, errlen);
    if (!strcmp(key, "time")) {
        int unl;
        if (slurm_time_minutes(v, &unl) < 0) {
            snprintf(err, errlen, "%s: --time '%s' is not a Slurm time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
                     "D-HH:MM:SS (minutes and seconds 0-59, hours 0-23 after a day count; at most 10 years), or UNLIMITED",
                     where, v);
            return -1;
        }
        return set_str(o->time, sizeof o->time, v, where, key, err, errlen);
    }
    if (!strcmp(key, "nodes")) return set_int(&o->nodes, v, 1, where, "--nodes", err, errlen);
    if (!strcmp(key, "ntasks")) return set_int(&o->ntasks, v, 1, where, "--ntasks", err, errlen);
    if (!strcmp(key, "ntasks-per-node")) return set_int(&o->ntasks_per_node, v, 1, where, "--ntasks-per-node", err, errlen);
    if (!strcmp(key, "cpus-per-task")) return set_int(&o->cpus_per_task, v, 1, where, "--cpus-per-task", err, errlen);
    if (!strcmp(key, "mem")) {
        if ((o->mem_mb = units_mem_mb(v)) < 0) { snprintf(err, errlen, "%s: --mem '%s' is not a size like 4G or 512M", where, v); return -1; }
        return 0;
    }
    if (!strcmp(key, "gres")) {
        // only GPU gres (gpu[:type]:count) is understood; that is all segx renders
        if (strncmp(v, "gpu:", 4) != 0 && strcmp(v, "gpu") != 0) {
            snprintf(err, errlen, "%s: --gres '%s': only gpu[:TYPE]:COUNT is supported", where, v);
            return -1;
        }
        return set_str(o->gres, sizeof o->gres, v, where, key, err, errlen);
    }
    if (!strcmp(key, "gpus-per-node")) {
        char g[160];
        snprintf(g, sizeof g, "gpu:%s", v);
        return set_str(o->gres, sizeof o->gres, g, where, key, err, errlen);
    }
    if (!strcmp(key, "requeue")) { o->requeue = 1; return 0; }
    if (!strcmp(key, "no-requeue")) { o->requeue = 0; return 0; }
    if (!strcmp(key, "hold")) { o->hold = 1; return 0; }
    if (!strcmp(key, "open-mode")) {
        if (!strcmp(v, "append")) o->open_append = 1;
        else if (!strcmp(v, "truncate")) o->open_append = 0;
        else { snprintf(err, errlen, "%s: --open-mode '%s' must be append or truncate", where, v); return -1; }
        return 0;
    }
    if (!strcmp(key, "signal")) return parse_signal(o, v, where, err, errlen);
    if (!strcmp(key, "kill-on-invalid-dep")) {
        if (!strcmp(v, "yes")) o->kill_invalid_dep = 1;
        else if (!strcmp(v, "no")) o->kill_invalid_dep = 0;
        else { snprintf(err, errlen, "%s: --kill-on-invalid-dep '%s' must be yes or no", where, v); return -1; }
        return 0;
    }
    snprintf(err, errlen, "%s: #SBATCH option --%s is not supported by segx's Slurm backends", where, key);
    return -1;
}

// "--key=value" | "--key value" | "-k value" | "-kvalue" | "--flag"
static int parse_directive(SlurmOpts *o, char *s, const char *where, char *err, size_t errlen)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    // a trailing comment (" # ...") is not part of the value
    char *hash = strstr(s, " #");
    if (hash) { *hash = '\0'; e = hash; while (e > s && isspace((unsigned char)e[-1])) *--e = '\0'; }
    char key[64], *v = NULL;
    if (s[0] == '-' && s[1] == '-') {
        s += 2;
        size_t n = strcspn(s, "= \t");
        if (n == 0 || n >= sizeof key) goto bad;
        memcpy(key, s, n); key[n] = '\0';
        v = s + n;
        if (*v) v++;
        while (isspace((unsigned char)*v)) v++;
    } else if (s[0] == '-' && isalpha((unsigned char)s[1])) {
        key[0] = s[1]; key[1] = '\0';
        v = s + 2;
        while (isspace((unsigned char)*v) || *v == '=') v++;
    } else goto bad;
    size_t vl = strlen(v);
    if (vl >= 2 && ((v[0] == '"' && v[vl - 1] == '"') || (v[0] == '\'' && v[vl - 1] == '\''))) {
        v[vl - 1] = '\0'; v++;
    }
    return apply_opt(o, key, v, where, err, errlen);
bad:
    snprintf(err, errlen, "%s: cannot read #SBATCH option '%s'", where, s);
    return -1;
}

int slurm_script_parse(const char *path, SlurmOpts *o, char **text, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->requeue = -1;
    o->open_append = -1;
    o->kill_invalid_dep = -1;
    *text = NULL;
    size_t len;
    char why[PATH_MAX + 128];
    char *buf = file_read(path, 0, &len, why, sizeof why);
    if (!buf) { snprintf(err, errlen, "cannot read job script %s: %s", path, strerror(errno)); return -1; }
    if (len < 2 || buf[0] != '#' || buf[1] != '!') {
        snprintf(err, errlen, "%s:1: a job script must start with \"#!\" (e.g. #!/bin/bash)", path);
        free(buf);
        return -1;
    }
    if (memchr(buf, '\0', len)) { snprintf(err, errlen, "%s: contains a NUL byte (not a script)", path); free(buf); return -1; }
    char *copy = strdup(buf);
    if (!copy) { free(buf); snprintf(err, errlen, "out of memory"); return -1; }
    int lineno = 0, rc = 0;
    for (char *line = copy, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (lineno == 1 || !*s) continue;
        if (*s != '#') break;                    // first command: sbatch stops reading here
        if (strncmp(s, "#SBATCH", 7) != 0 || !isspace((unsigned char)s[7])) continue;
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if ((rc = parse_directive(o, s + 8, where, err, errlen))) break;
    }
    free(copy);
    if (rc) { free(buf); return -1; }
    *text = buf;
    return 0;
}

void slurm_opts_apply_job(SlurmOpts *o, const JobSpec *j)
{
    if (j->job_name && *j->job_name) snprintf(o->job_name, sizeof o->job_name, "%s", j->job_name);
    if (j->partition && *j->partition) snprintf(o->partition, sizeof o->partition, "%s", j->partition);
    if (j->time_limit && *j->time_limit) snprintf(o->time, sizeof o->time, "%s", j->time_limit);
    if (j->dependency && *j->dependency) snprintf(o->dependency, sizeof o->dependency, "%s", j->dependency);
    int nodes = j->nodes > 0 ? j->nodes : 1;
    if (!o->nodes && j->nodes > 0) o->nodes = j->nodes;
    if (!o->ntasks_per_node && !o->ntasks && j->gpus > 0 && j->gpus % nodes == 0)
        o->ntasks_per_node = j->gpus / nodes;
    if (!o->cpus_per_task && j->cpus_per_task > 0) o->cpus_per_task = j->cpus_per_task;
    if (!o->gres[0] && j->gpu_type && *j->gpu_type && strcasecmp(j->gpu_type, "cpu") != 0 && j->gpus > 0)
        snprintf(o->gres, sizeof o->gres, "gpu:%s:%d", j->gpu_type, j->gpus / nodes > 0 ? j->gpus / nodes : 1);
    if (j->run_dir && *j->run_dir) {
        if (!o->chdir[0]) snprintf(o->chdir, sizeof o->chdir, "%s", j->run_dir);
        if (!o->output[0]) snprintf(o->output, sizeof o->output, "%s/slurm-%%j.out", j->run_dir);
        if (!o->error[0]) snprintf(o->error, sizeof o->error, "%s/slurm-%%j.err", j->run_dir);
    }
    if (!o->comment[0])
        snprintf(o->comment, sizeof o->comment, "segx:%s/%s/%d%s%s", j->experiment ? j->experiment : "",
                 j->cell_key ? j->cell_key : "", j->attempt, j->kind && *j->kind ? "/" : "", j->kind ? j->kind : "");
}

// ---------------------------------------------------------------------------------------------
// times and states

int slurm_time_minutes(const char *s, int *unlimited)
{
    int unl_dummy;
    if (!unlimited) unlimited = &unl_dummy;
    *unlimited = 0;
    if (!s || !*s) return -1;
    if (!strcasecmp(s, "UNLIMITED") || !strcasecmp(s, "INFINITE")) { *unlimited = 1; return 0; }
    long secs = units_time_s(s);   // the same reader as a spec's resources.time
    return secs < 0 ? -1 : (int)((secs + 59) / 60);
}

JobState slurm_state_from_name(const char *name)
{
    static const struct { const char *n; JobState s; } map[] = {
        {"PENDING", JOB_PENDING}, {"PD", JOB_PENDING}, {"REQUEUED", JOB_PENDING}, {"REQUEUE_HOLD", JOB_PENDING},
        {"REQUEUE_FED", JOB_PENDING}, {"RESV_DEL_HOLD", JOB_PENDING}, {"CONFIGURING", JOB_RUNNING},
        {"RUNNING", JOB_RUNNING}, {"R", JOB_RUNNING}, {"COMPLETING", JOB_RUNNING}, {"SUSPENDED", JOB_RUNNING},
        {"STAGE_OUT", JOB_RUNNING}, {"SIGNALING", JOB_RUNNING}, {"RESIZING", JOB_RUNNING}, {"STOPPED", JOB_RUNNING},
        {"COMPLETED", JOB_COMPLETED}, {"CD", JOB_COMPLETED}, {"FAILED", JOB_FAILED}, {"F", JOB_FAILED},
        {"BOOT_FAIL", JOB_NODE_FAIL}, {"NODE_FAIL", JOB_NODE_FAIL}, {"CANCELLED", JOB_CANCELLED},
        {"CA", JOB_CANCELLED}, {"REVOKED", JOB_CANCELLED}, {"TIMEOUT", JOB_TIMEOUT}, {"TO", JOB_TIMEOUT},
        {"DEADLINE", JOB_TIMEOUT}, {"PREEMPTED", JOB_PREEMPTED}, {"PR", JOB_PREEMPTED},
        {"OUT_OF_MEMORY", JOB_OUT_OF_MEMORY}, {"OOM", JOB_OUT_OF_MEMORY}, {"SPECIAL_EXIT", JOB_FAILED},
        {NULL, JOB_UNKNOWN}};
    if (!name) return JOB_UNKNOWN;
    char n[32];
    size_t len = strcspn(name, " +");        // sacct prints "CANCELLED by 0", squeue "CANCELLED+"
    if (len >= sizeof n) return JOB_UNKNOWN;
    memcpy(n, name, len); n[len] = '\0';
    for (int i = 0; map[i].n; i++) if (!strcasecmp(n, map[i].n)) return map[i].s;
    return JOB_UNKNOWN;
}

// ---------------------------------------------------------------------------------------------
// finding the controller

int slurm_locate_conf(const char *options_json, char *path, size_t pathlen, char *err, size_t errlen)
{
    char cands[6][1024];
    int n = 0;
    json_t *opt = options_json && *options_json ? json_loads(options_json, 0, NULL) : NULL;
    const char *o = json_string_value(json_object_get(opt, "slurm_conf"));
    if (o) snprintf(cands[n++], sizeof cands[0], "%s", o);
    json_decref(opt);
    const char *e = getenv("SLURM_CONF");
    if (e && *e) snprintf(cands[n++], sizeof cands[0], "%s", e);
    if (n == 0) {
        snprintf(cands[n++], sizeof cands[0], "/etc/slurm/slurm.conf");
        if ((e = getenv("SEGX_SLURM_DIR")) && *e) snprintf(cands[n++], sizeof cands[0], "%s/etc/slurm.conf", e);
        snprintf(cands[n++], sizeof cands[0], "slurm/state/etc/slurm.conf");
    }
    for (int i = 0; i < n; i++) {
        if (access(cands[i], R_OK) != 0) {
            if (i == 0 && (o || (getenv("SLURM_CONF") && *getenv("SLURM_CONF")))) {
                snprintf(err, errlen, "Slurm configuration %s: %s (start the local cluster with "
                         "slurm/local-cluster start, or set SLURM_CONF)", cands[i], strerror(errno));
                return -1;
            }
            continue;
        }
        char abs[4096];
        if (!realpath(cands[i], abs)) snprintf(abs, sizeof abs, "%.1023s", cands[i]);
        snprintf(path, pathlen, "%s", abs);
        setenv("SLURM_CONF", abs, 1);
        return 0;
    }
    snprintf(err, errlen, "no Slurm configuration found (SLURM_CONF unset, no /etc/slurm/slurm.conf, no "
             "slurm/state/etc/slurm.conf): start the local cluster with slurm/local-cluster start");
    return -1;
}

int slurm_conf_controller(const char *conf, char *host, size_t hostlen, int *port, char *err, size_t errlen)
{
    FILE *f = fopen(conf, "r");
    if (!f) { snprintf(err, errlen, "cannot read %s: %s", conf, strerror(errno)); return -1; }
    char line[2048];
    *port = 6817;
    host[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        char *hash = strchr(s, '#');
        if (hash) *hash = '\0';
        s[strcspn(s, "\r\n")] = '\0';
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = '\0';
        char *k = s, *v = eq + 1;
        v[strcspn(v, " \t")] = '\0';
        if ((!strcasecmp(k, "SlurmctldHost") || !strcasecmp(k, "ControlMachine")) && !host[0]) {
            // "name" or "name(addr)": the address is what we connect to
            char *par = strchr(v, '(');
            if (par) { char *close = strchr(par, ')'); if (close) *close = '\0'; v = par + 1; }
            snprintf(host, hostlen, "%s", v);
        } else if (!strcasecmp(k, "ControlAddr")) {
            snprintf(host, hostlen, "%s", v);
        } else if (!strcasecmp(k, "SlurmctldPort")) {
            char *end;   // "6817-6820": the first
            long n = strtol(v, &end, 10);
            if (end == v || (*end && *end != '-') || n < 1 || n > 65535) {
                snprintf(err, errlen, "%s: SlurmctldPort '%s' is not a port number (1-65535)", conf, v);
                fclose(f);
                return -1;
            }
            *port = (int)n;
        }
    }
    fclose(f);
    if (!host[0]) { snprintf(err, errlen, "%s names no SlurmctldHost", conf); return -1; }
    return 0;
}

int slurm_probe_controller(const char *host, int port, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g) { snprintf(err, errlen, "slurmctld host '%s': %s", host, gai_strerror(g)); return -1; }
    int ok = -1;
    char why[256] = "no address";
    for (struct addrinfo *a = res; a && ok; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            r = poll(&p, 1, timeout_ms);
            if (r == 1) {
                int soerr = 0; socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr) { errno = soerr; r = -1; } else r = 0;
            } else { errno = r == 0 ? ETIMEDOUT : errno; r = -1; }
        }
        if (r == 0) ok = 0;
        else snprintf(why, sizeof why, "%s", strerror(errno));
        close(fd);
    }
    freeaddrinfo(res);
    if (ok) snprintf(err, errlen, "slurmctld at %s:%d does not answer (%s): is the cluster up? "
                     "(slurm/local-cluster start for the local one)", host, port, why);
    return ok;
}

double slurm_backoff_sleep(int attempt)
{
    double s = 0.1;
    for (int i = 0; i < attempt && s < 5; i++) s *= 2;
    if (s > 5) s = 5;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
    return s;
}

double slurm_option_number(const char *options_json, const char *key, double dflt)
{
    if (!options_json || !*options_json) return dflt;
    json_t *o = json_loads(options_json, 0, NULL);
    json_t *v = json_object_get(o, key);
    double r = json_is_number(v) ? json_number_value(v) : dflt;
    json_decref(o);
    return r;
}

// ---------------------------------------------------------------------------------------------
// job records -> JobStatus

void slurm_fill_status(const SlurmJobInfo *j, JobStatus *st)
{
    snprintf(st->job_id, sizeof st->job_id, "%s", j->job_id);
    st->state = slurm_state_from_name(j->state);
    int final = job_state_is_final(st->state) || st->state == JOB_PREEMPTED;
    st->submit_time = j->submit_time;
    st->start_time = st->state == JOB_PENDING ? 0 : j->start_time;   // a pending job's is an estimate
    st->end_time = final ? j->end_time : 0;                          // a running job's is its limit
    st->exit_code = -1;
    if (final && j->exit_status >= 0) {
        int w = j->exit_status;
        st->exit_code = WIFSIGNALED(w) ? 128 + WTERMSIG(w) : WEXITSTATUS(w);
    }
    snprintf(st->nodes, sizeof st->nodes, "%s", st->state == JOB_PENDING ? "" : j->nodes);
    const char *r = strcmp(j->reason, "None") == 0 ? "" : j->reason;
    int n;
    if (st->state == JOB_FAILED || st->state == JOB_TIMEOUT || st->state == JOB_OUT_OF_MEMORY ||
        st->state == JOB_NODE_FAIL)
        n = snprintf(st->reason, sizeof st->reason, "exit code %d%s%s", st->exit_code, *r ? ", " : "", r);
    else
        n = snprintf(st->reason, sizeof st->reason, "%s", r);
    size_t len = n < 0 ? 0 : ((size_t)n < sizeof st->reason ? (size_t)n : sizeof st->reason - 1);
    if (j->state_desc[0] && len + 3 < sizeof st->reason)
        len += (size_t)snprintf(st->reason + len, sizeof st->reason - len, "%s%s", len ? ": " : "", j->state_desc);
    if (len >= sizeof st->reason) len = sizeof st->reason - 1;
    if (j->restarts > 0 && len + 3 < sizeof st->reason)
        snprintf(st->reason + len, sizeof st->reason - len, "%srequeued %d time%s", len ? "; " : "",
                 j->restarts, j->restarts == 1 ? "" : "s");
}

typedef struct { const char *id; size_t idx; } IdIdx;
static int cmp_ididx(const void *a, const void *b) { return strcmp(((const IdIdx *)a)->id, ((const IdIdx *)b)->id); }

// 1 when task (of "A_T") is in the pending record "A_[0-3,7,9-11%2]" of the same array A.
static int array_record_has(const char *record, const char *id)
{
    const char *us = strchr(id, '_');
    if (!us || strchr(id, '[')) return 0;
    size_t alen = (size_t)(us - id);
    if (strncmp(record, id, alen) != 0 || strncmp(record + alen, "_[", 2) != 0) return 0;
    char *end;
    long task = strtol(us + 1, &end, 10);
    if (end == us + 1 || *end) return 0;
    const char *p = record + alen + 2;
    while (*p && *p != ']' && *p != '%') {
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p) return 0;
        p = end;
        if (*p == '-') {
            hi = strtol(p + 1, &end, 10);
            if (end == p + 1) return 0;
            p = end;
        }
        if (*p == ':') { while (*p && *p != ',' && *p != ']' && *p != '%') p++; }   // a step: treat as the range
        if (task >= lo && task <= hi) return 1;
        if (*p == ',') p++;
    }
    return 0;
}

int slurm_match_jobs(const SlurmJobInfo *jobs, size_t njobs, const char *const *ids, size_t n,
                     JobStatus *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].job_id, sizeof out[i].job_id, "%s", ids[i]);
        out[i].state = JOB_UNKNOWN;
        out[i].exit_code = -1;
        snprintf(out[i].reason, sizeof out[i].reason,
                 "not known to slurmctld (ended longer ago than MinJobAge): read the run dir's exit_code");
    }
    if (n == 0) return 0;
    IdIdx *idx = malloc(n * sizeof *idx);
    if (!idx) { snprintf(err, errlen, "out of memory"); return -1; }
    for (size_t i = 0; i < n; i++) idx[i] = (IdIdx){ids[i], i};
    qsort(idx, n, sizeof *idx, cmp_ididx);
    for (size_t r = 0; r < njobs; r++) {
        IdIdx key = {jobs[r].job_id, 0}, *hit = bsearch(&key, idx, n, sizeof *idx, cmp_ididx);
        if (!hit) continue;
        while (hit > idx && strcmp(hit[-1].id, key.id) == 0) hit--;   // the same id asked twice
        for (; hit < idx + n && strcmp(hit->id, key.id) == 0; hit++) slurm_fill_status(&jobs[r], &out[hit->idx]);
    }
    free(idx);
    // array tasks that have not started are listed only inside their array's pending record
    for (size_t r = 0; r < njobs; r++) {
        if (!strstr(jobs[r].job_id, "_[")) continue;
        for (size_t i = 0; i < n; i++)
            if (out[i].state == JOB_UNKNOWN && array_record_has(jobs[r].job_id, ids[i])) {
                slurm_fill_status(&jobs[r], &out[i]);
                snprintf(out[i].job_id, sizeof out[i].job_id, "%s", ids[i]);
            }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// submit with retries

int slurm_submit_with_retry(const char *host, int port, double retry_s, const char *job_name,
                            const char *comment, SlurmTrySubmit try_submit, SlurmFindJob find_job, void *ctx,
                            char *job_id, size_t idlen, char *err, size_t errlen)
{
    double t0 = mono_s();
    char last[512] = "";
    int tried = 0;   // a submit call went out, so slurmctld may hold the job already
    for (int attempt = 0;; attempt++) {
        if (attempt > 0) {
            if (mono_s() - t0 >= retry_s) {
                snprintf(err, errlen, "slurmctld at %s:%d did not accept job '%s' for %.0f s (last error: %s); "
                         "it was not submitted: run submit again once the controller is back",
                         host, port, job_name, retry_s, last);
                return -1;
            }
            slurm_backoff_sleep(attempt - 1);
        }
        // a refused connection is known at once; libslurm and sbatch would retry it themselves for
        // many seconds before saying so
        if (slurm_probe_controller(host, port, 800, last, sizeof last)) continue;
        if (tried) {
            // the previous try may have reached slurmctld and lost only its reply
            int f = find_job(ctx, comment, job_id, idlen);
            if (f == 1) return 0;
            if (f < 0) { snprintf(last, sizeof last, "could not list jobs to check for a lost reply"); continue; }
        }
        tried = 1;
        int transient = 0;
        char e[512] = "";
        if (try_submit(ctx, job_id, idlen, &transient, e, sizeof e) == 0) return 0;
        snprintf(last, sizeof last, "%s", e);
        if (!transient) {
            snprintf(err, errlen, "Slurm rejected job '%s': %s", job_name, e);
            return -1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// --max-submitted

int slurm_max_submitted(const char *options_json)
{
    double v = slurm_option_number(options_json, "max_submitted", -1);
    if (v < 0) {
        const char *e = getenv("SEGX_MAX_SUBMITTED");
        v = e && *e ? atof(e) : 0;
    }
    return v > 0 ? (int)v : 0;
}

void slurm_throttle_add(SlurmThrottle *t, const char *job_id)
{
    if (t->max <= 0) return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char (*v)[64] = realloc(t->ids, cap * sizeof *v);
        if (!v) return;   // the limit is best effort under memory pressure
        t->ids = v; t->cap = cap;
    }
    snprintf(t->ids[t->n++], 64, "%s", job_id);
}

void slurm_throttle_free(SlurmThrottle *t)
{
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

int slurm_throttle_wait(SlurmThrottle *t, Backend *b, char *err, size_t errlen)
{
    if (t->max <= 0 || t->n < (size_t)t->max) return 0;
    PollPace pace;   // a slow scheduler (slurmrestd listing thousands of jobs) is asked less often
    poll_pace_init(&pace, 2);
    for (int round = 0;; round++) {
        double p0 = mono_s();
        const char **ids = malloc(t->n * sizeof *ids);
        JobStatus *st = calloc(t->n, sizeof *st);
        if (!ids || !st) { free(ids); free(st); snprintf(err, errlen, "out of memory"); return -1; }
        for (size_t i = 0; i < t->n; i++) ids[i] = t->ids[i];
        int rc = b->ops->poll(b, ids, t->n, st, err, errlen);
        free(ids);
        if (rc) { free(st); return -1; }
        double paced = poll_pace_next(&pace, mono_s() - p0, 0);
        // keep only the jobs still queued or running
        size_t k = 0;
        for (size_t i = 0; i < t->n; i++)
            if (!job_state_is_final(st[i].state) && st[i].state != JOB_UNKNOWN)
                memmove(t->ids[k++], t->ids[i], 64);
        t->n = k;
        free(st);
        if (t->n < (size_t)t->max) return 0;
        double s = 0.25 * (1 << (round < 3 ? round : 3));   // 0.25 s doubling to 2 s, longer while polls are slow
        if (pace.slowed && paced > s) s = paced;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        while (nanosleep(&ts, &ts) && errno == EINTR) {}
    }
}

int slurm_find_comment(const SlurmJobInfo *jobs, size_t n, const char *comment, int active_only,
                       char *job_id, size_t idlen)
{
    if (!comment || !*comment) return 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(jobs[i].comment, comment) != 0) continue;
        JobState st = slurm_state_from_name(jobs[i].state);
        if (active_only && st != JOB_PENDING && st != JOB_RUNNING) continue;
        snprintf(job_id, idlen, "%s", jobs[i].job_id);
        return 1;
    }
    return 0;
}
