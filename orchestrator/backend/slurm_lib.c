// orchestrator/backend/slurm_lib.c — libslurm wrappers (see slurm_lib.h). Built against the cluster's own
// headers (configure's SEGX_HAVE_LIBSLURM); without them every call fails with a clear message.
#include "config.h"
#include "orchestrator/backend/slurm_lib.h"
#include "orchestrator/util/units.h"   // (not slurm_util.h: its JobState names clash with slurm.h)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef SEGX_HAVE_LIBSLURM
int slurm_lib_available(void) { return 0; }
void slurm_lib_init(void) {}
static int nolib(char *err, size_t errlen)
{
    snprintf(err, errlen, "segx was built without libslurm (install libslurm-dev, then make config)");
    return -1;
}
int slurm_lib_submit(const SlurmOpts *o, const char *t, const char *p, char *id, size_t idlen, int *tr,
                     char *err, size_t errlen)
{
    (void)o; (void)t; (void)p; (void)id; (void)idlen;
    *tr = 0;
    return nolib(err, errlen);
}
int slurm_lib_load(SlurmJobInfo **jobs, size_t *n, char *err, size_t errlen)
{
    *jobs = NULL; *n = 0;
    return nolib(err, errlen);
}
int slurm_lib_cancel(const char *job_id, char *err, size_t errlen) { (void)job_id; return nolib(err, errlen); }
const char *slurm_lib_version(void) { return ""; }
int slurm_lib_controller_version(char *out, size_t cap, char *err, size_t errlen)
{
    if (cap) out[0] = '\0';
    return nolib(err, errlen);
}
int slurm_lib_same_release(const char *version) { (void)version; return 0; }
#else
#include <signal.h>
#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>
#include <unistd.h>

extern char **environ;
static int inited;

#if defined(__SANITIZE_ADDRESS__)
// libslurm 22.05 leaks the reply of a rejected submit inside slurm_submit_batch_job (its code, not
// ours): leaks whose stack is in libslurm are not reported in sanitizer builds. (LeakSanitizer
// looks this hook up by name; nothing else in segx defines it.)
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libslurm.so\n"; }
#endif

int slurm_lib_available(void) { return 1; }

void slurm_lib_init(void)
{
    if (!inited) { slurm_init(NULL); inited = 1; }
}

const char *slurm_lib_version(void)
{
    static char v[32];
    snprintf(v, sizeof v, "%d.%02d.%d", SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER),
             SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER), SLURM_VERSION_MICRO(SLURM_VERSION_NUMBER));
    return v;
}

static int transient(int e)
{
    return e == SLURM_COMMUNICATIONS_CONNECTION_ERROR || e == SLURM_COMMUNICATIONS_SEND_ERROR ||
           e == SLURM_COMMUNICATIONS_RECEIVE_ERROR || e == SLURM_COMMUNICATIONS_SHUTDOWN_ERROR ||
           e == SLURMCTLD_COMMUNICATIONS_CONNECTION_ERROR || e == SLURMCTLD_COMMUNICATIONS_SEND_ERROR ||
           e == SLURMCTLD_COMMUNICATIONS_RECEIVE_ERROR || e == SLURMCTLD_COMMUNICATIONS_SHUTDOWN_ERROR ||
           e == EAGAIN || e == ESLURM_ERROR_ON_DESC_TO_RECORD_COPY || e == ETIMEDOUT || e == ECONNREFUSED;
}

// The job description's fields from the #SBATCH options (c's strings stay c's: d points into them).
static void fill_job_desc(job_desc_msg_t *d, SlurmOpts *c, char *tres, size_t tlen, char *cwd, size_t cwdlen)
{
    if (c->job_name[0]) d->name = c->job_name;
    if (c->partition[0]) d->partition = c->partition;
    if (c->account[0]) d->account = c->account;
    if (c->qos[0]) d->qos = c->qos;
    if (c->constraint[0]) d->features = c->constraint;
    if (c->dependency[0]) d->dependency = c->dependency;
    if (c->array[0]) d->array_inx = c->array;
    if (c->comment[0]) d->comment = c->comment;
    if (c->chdir[0]) d->work_dir = c->chdir;
    else if (getcwd(cwd, cwdlen)) d->work_dir = cwd;
    if (c->output[0]) d->std_out = c->output;
    if (c->error[0]) d->std_err = c->error;
    static char dev_null[] = "/dev/null";
    d->std_in = dev_null;
    if (c->time[0]) {   // slurm_script_parse validated it (slurm_time_minutes): a time, or UNLIMITED
        long secs = strcasecmp(c->time, "UNLIMITED") && strcasecmp(c->time, "INFINITE") ? units_time_s(c->time) : -1;
        d->time_limit = secs < 0 ? INFINITE : (uint32_t)((secs + 59) / 60);
    }
    if (c->nodes) d->min_nodes = d->max_nodes = (uint32_t)c->nodes;
    if (c->ntasks_per_node) {
        d->ntasks_per_node = (uint16_t)c->ntasks_per_node;
        d->num_tasks = (uint32_t)(c->ntasks_per_node * (c->nodes ? c->nodes : 1));
    }
    if (c->ntasks) d->num_tasks = (uint32_t)c->ntasks;
    if (c->cpus_per_task) d->cpus_per_task = (uint16_t)c->cpus_per_task;
    if (c->mem_mb) d->pn_min_memory = (uint64_t)c->mem_mb;
    if (c->gres[0]) {
        // tres_per_node's form changed in 23.11: "gres:gpu:a100:2" before, "gres/gpu:a100:2" after
#if SLURM_VERSION_NUMBER >= SLURM_VERSION_NUM(23, 11, 0)
        snprintf(tres, tlen, "gres/%s", c->gres);
#else
        snprintf(tres, tlen, "gres:%s", c->gres);
#endif
        d->tres_per_node = tres;
    }
    if (c->requeue >= 0) d->requeue = (uint16_t)c->requeue;
    if (c->hold) d->priority = 0;   // as sbatch --hold
    if (c->kill_invalid_dep == 1) d->bitflags |= KILL_INV_DEP;
    else if (c->kill_invalid_dep == 0) d->bitflags |= NO_KILL_INV_DEP;
    if (c->open_append >= 0) d->open_mode = c->open_append ? OPEN_MODE_APPEND : OPEN_MODE_TRUNCATE;
    if (c->signal_num) {
        d->warn_signal = (uint16_t)c->signal_num;
        d->warn_time = (uint16_t)c->signal_time;
        d->warn_flags = c->signal_batch_only ? KILL_JOB_BATCH : 0;
    }
}

int slurm_lib_submit(const SlurmOpts *o, const char *script_text, const char *script_path,
                     char *job_id, size_t idlen, int *is_transient, char *err, size_t errlen)
{
    *is_transient = 0;
    slurm_lib_init();
    // libslurm takes non-const strings it does not modify; keep private copies anyway
    SlurmOpts c = *o;
    char *text = strdup(script_text), *path = strdup(script_path);
    if (!text || !path) { free(text); free(path); snprintf(err, errlen, "out of memory"); return -1; }
    job_desc_msg_t d;
    slurm_init_job_desc_msg(&d);
    d.script = text;
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    if (nenv == 0) {
        free(text); free(path);
        snprintf(err, errlen, "the environment is empty: Slurm refuses a batch job without one");
        return -1;
    }
    d.environment = environ;       // as `sbatch --export=ALL`
    d.env_size = (uint32_t)nenv;
    char *argv[] = {path, NULL};
    d.argv = argv;
    d.argc = 1;
    d.user_id = getuid();
    d.group_id = getgid();
    char tres[200], cwd[4096];
    fill_job_desc(&d, &c, tres, sizeof tres, cwd, sizeof cwd);
    submit_response_msg_t *resp = NULL;
    int rc = slurm_submit_batch_job(&d, &resp);
    if (rc == SLURM_SUCCESS && resp) {
        snprintf(job_id, idlen, "%u", resp->job_id);
        slurm_free_submit_response_response_msg(resp);
    } else {
        int e = slurm_get_errno();
        *is_transient = transient(e);
        snprintf(err, errlen, "%s", slurm_strerror(e));
        rc = -1;
    }
    free(text); free(path);
    return rc == SLURM_SUCCESS ? 0 : -1;
}

static const char *state_name(uint32_t st)
{
    switch (st & JOB_STATE_BASE) {
    case JOB_PENDING: return (st & JOB_REQUEUE) ? "REQUEUED" : "PENDING";
    case JOB_RUNNING: return "RUNNING";
    case JOB_SUSPENDED: return "SUSPENDED";
    case JOB_COMPLETE: return "COMPLETED";
    case JOB_CANCELLED: return "CANCELLED";
    case JOB_FAILED: return "FAILED";
    case JOB_TIMEOUT: return "TIMEOUT";
    case JOB_NODE_FAIL: return "NODE_FAIL";
    case JOB_PREEMPTED: return "PREEMPTED";
    case JOB_BOOT_FAIL: return "BOOT_FAIL";
    case JOB_DEADLINE: return "DEADLINE";
    case JOB_OOM: return "OUT_OF_MEMORY";
    default: return "UNKNOWN";
    }
}

// squeue's names for the reasons segx users meet; others print as "Reason<N>".
static void reason_name(uint16_t r, char *out, size_t cap)
{
    const char *s = NULL;
    switch (r) {
    case WAIT_NO_REASON: s = "None"; break;
    case WAIT_PRIORITY: s = "Priority"; break;
    case WAIT_DEPENDENCY: s = "Dependency"; break;
    case WAIT_RESOURCES: s = "Resources"; break;
    case WAIT_PART_NODE_LIMIT: s = "PartitionNodeLimit"; break;
    case WAIT_PART_TIME_LIMIT: s = "PartitionTimeLimit"; break;
    case WAIT_PART_DOWN: s = "PartitionDown"; break;
    case WAIT_HELD: s = "JobHeldAdmin"; break;
    case WAIT_HELD_USER: s = "JobHeldUser"; break;
    case WAIT_TIME: s = "BeginTime"; break;
    case WAIT_NODE_NOT_AVAIL: s = "ReqNodeNotAvail"; break;
    case WAIT_CLEANING: s = "Cleaning"; break;
    case WAIT_DEP_INVALID: s = "DependencyNeverSatisfied"; break;
    case FAIL_DOWN_PARTITION: s = "PartitionDown"; break;
    case FAIL_DOWN_NODE: s = "NodeDown"; break;
    case FAIL_BAD_CONSTRAINTS: s = "BadConstraints"; break;
    case FAIL_SYSTEM: s = "SystemFailure"; break;
    case FAIL_LAUNCH: s = "JobLaunchFailure"; break;
    case FAIL_EXIT_CODE: s = "NonZeroExitCode"; break;
    case FAIL_TIMEOUT: s = "TimeLimit"; break;
    case FAIL_INACTIVE_LIMIT: s = "InactiveLimit"; break;
    case FAIL_ACCOUNT: s = "InvalidAccount"; break;
    case FAIL_QOS: s = "InvalidQOS"; break;
    case FAIL_OOM: s = "OutOfMemory"; break;
    default: break;
    }
    if (s) snprintf(out, cap, "%s", s);
    else snprintf(out, cap, "Reason%u", (unsigned)r);
}

int slurm_lib_load(SlurmJobInfo **jobs, size_t *n, char *err, size_t errlen)
{
    *jobs = NULL; *n = 0;
    slurm_lib_init();
    job_info_msg_t *msg = NULL;
    if (slurm_load_job_user(&msg, (uint32_t)getuid(), SHOW_ALL) != SLURM_SUCCESS) {
        snprintf(err, errlen, "slurm_load_job_user: %s", slurm_strerror(slurm_get_errno()));
        return -1;
    }
    SlurmJobInfo *v = calloc(msg->record_count ? msg->record_count : 1, sizeof *v);
    if (!v) { slurm_free_job_info_msg(msg); snprintf(err, errlen, "out of memory"); return -1; }
    for (uint32_t i = 0; i < msg->record_count; i++) {
        const slurm_job_info_t *j = &msg->job_array[i];
        SlurmJobInfo *o = &v[i];
        if (j->array_task_id != NO_VAL && j->array_job_id)
            snprintf(o->job_id, sizeof o->job_id, "%u_%u", j->array_job_id, j->array_task_id);
        else if (j->array_job_id && j->array_task_str)   // the array's tasks still pending, as squeue names them
            snprintf(o->job_id, sizeof o->job_id, "%u_[%s]", j->array_job_id, j->array_task_str);
        else
            snprintf(o->job_id, sizeof o->job_id, "%u", j->job_id);
        snprintf(o->state, sizeof o->state, "%s", state_name(j->job_state));
        reason_name(j->state_reason, o->reason, sizeof o->reason);
        snprintf(o->state_desc, sizeof o->state_desc, "%s", j->state_desc ? j->state_desc : "");
        snprintf(o->comment, sizeof o->comment, "%s", j->comment ? j->comment : "");
        snprintf(o->nodes, sizeof o->nodes, "%s", j->nodes ? j->nodes : "");
        o->exit_status = (int)j->exit_code;
        o->restarts = j->restart_cnt;
        o->submit_time = (double)j->submit_time;
        o->start_time = (double)j->start_time;
        o->end_time = (double)j->end_time;
    }
    *n = msg->record_count;
    *jobs = v;
    slurm_free_job_info_msg(msg);
    return 0;
}

int slurm_lib_cancel(const char *job_id, char *err, size_t errlen)
{
    slurm_lib_init();
    if (slurm_kill_job2(job_id, SIGKILL, 0, NULL) == SLURM_SUCCESS) return 0;
    int e = slurm_get_errno();
    if (e == ESLURM_ALREADY_DONE) return 0;
    snprintf(err, errlen, "cannot cancel Slurm job %s: %s", job_id, slurm_strerror(e));
    return -1;
}

int slurm_lib_controller_version(char *out, size_t cap, char *err, size_t errlen)
{
    slurm_lib_init();
    slurm_conf_t *c = NULL;
    if (slurm_load_ctl_conf((time_t)0, &c) != SLURM_SUCCESS || !c) {
        snprintf(err, errlen, "cannot read slurmctld's configuration: %s", slurm_strerror(slurm_get_errno()));
        return -1;
    }
    snprintf(out, cap, "%s", c->version ? c->version : "");
    slurm_free_ctl_conf(c);
    return 0;
}

int slurm_lib_same_release(const char *version)
{
    int maj = 0, min = 0;
    if (!version || sscanf(version, "%d.%d", &maj, &min) != 2) return 0;
    return maj == SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER) && min == SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER);
}
#endif
