// orchestrator/cluster.c — cluster profiles (see cluster.h and templates/clusters/README.md).
#include "orchestrator/cluster.h"
#include "orchestrator/container.h"
#include "orchestrator/util/strbuf.h"
#include "orchestrator/util/units.h"
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_GPUS 32
#define MAX_LINES 64

struct ClusterProfile {
    char name[64], path[1024], account[64], qos[64], slurm_conf[1024];
    char gres_style[16];              // "gres" (--gres=gpu:TYPE:N) or "gpus-per-node"
    char srun_mpi[32];                // srun --mpi=X ("" = the cluster's MpiDefault)
    Container container;              // runtime "" = none
    char *setup[MAX_LINES]; size_t nsetup;
    char *modules[MAX_LINES]; size_t nmodules;
    char *extra_sbatch[MAX_LINES]; size_t nextra;   // raw "--key=value" added to every job
    int signal_grace_s;
    ClusterGpu gpus[MAX_GPUS]; size_t ngpus;
};

static char *fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fail_msg(const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return strdup(tmp);
}

// ---------------------------------------------------------------------------------------------
// loading

static int copy_str(const json_t *o, const char *key, char *dst, size_t cap, const char *where,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) { snprintf(err, errlen, "%s: \"%s\" must be a string", where, key); return -1; }
    if (json_string_length(v) >= cap) {
        snprintf(err, errlen, "%s: \"%s\" is longer than %zu characters", where, key, cap - 1);
        return -1;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int copy_int(const json_t *o, const char *key, int *dst, int lo, int hi, const char *where,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s: \"%s\" must be an integer in %d..%d", where, key, lo, hi);
        return -1;
    }
    *dst = (int)json_integer_value(v);
    return 0;
}

static void free_list(char **v, size_t *n)
{
    for (size_t i = 0; i < *n; i++) free(v[i]);
    *n = 0;
}

static int copy_list(const json_t *o, const char *key, char **dst, size_t *n, const char *where,
                     char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v)) { snprintf(err, errlen, "%s: \"%s\" must be an array of strings", where, key); return -1; }
    if (json_array_size(v) > MAX_LINES) { snprintf(err, errlen, "%s: \"%s\" has more than %d entries", where, key, MAX_LINES); return -1; }
    free_list(dst, n);
    size_t i; json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) {
            snprintf(err, errlen, "%s: \"%s\"[%zu] must be a string", where, key, i);
            return -1;
        }
        if (strchr(json_string_value(e), '\n')) {
            snprintf(err, errlen, "%s: \"%s\"[%zu] must be one line", where, key, i);
            return -1;
        }
        if (!(dst[(*n)++] = strdup(json_string_value(e)))) { snprintf(err, errlen, "out of memory"); return -1; }
    }
    return 0;
}

long cluster_mem_mb(const char *s)
{
    long mb = units_mem_mb(s);   // Slurm's rules, as #SBATCH --mem reads them
    return mb > 0 ? mb : -1;
}

// Characters that could break out of an #SBATCH line or a shell word.
static int safe_word_extra(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("_-.,:/+=@%[]", *s) || strchr(extra, *s))) return 0;
    return 1;
}
static int safe_word(const char *s) { return safe_word_extra(s, ""); }

static int parse_gpu(const json_t *e, size_t i, ClusterGpu *g, const char *where, char *err, size_t errlen)
{
    char w[1200];
    snprintf(w, sizeof w, "%s: gpus[%zu]", where, i);
    if (!json_is_object(e)) { snprintf(err, errlen, "%s must be an object", w); return -1; }
    memset(g, 0, sizeof *g);
    g->gpus_per_node = 1; g->cpus_per_gpu = 1;
    if (copy_str(e, "gpu_type", g->gpu_type, sizeof g->gpu_type, w, err, errlen) ||
        copy_str(e, "partition", g->partition, sizeof g->partition, w, err, errlen) ||
        copy_str(e, "gres_type", g->gres_type, sizeof g->gres_type, w, err, errlen) ||
        copy_str(e, "constraint", g->constraint, sizeof g->constraint, w, err, errlen) ||
        copy_str(e, "mem_per_gpu", g->mem_per_gpu, sizeof g->mem_per_gpu, w, err, errlen) ||
        copy_int(e, "gpus_per_node", &g->gpus_per_node, 1, 1024, w, err, errlen) ||
        copy_int(e, "cpus_per_gpu", &g->cpus_per_gpu, 1, 1024, w, err, errlen))
        return -1;
    const char *known[] = {"gpu_type", "partition", "gres_type", "constraint", "mem_per_gpu",
                           "gpus_per_node", "cpus_per_gpu", "comment", NULL};
    const char *k; json_t *v;
    json_object_foreach((json_t *)e, k, v) {
        int ok = 0;
        for (int j = 0; known[j]; j++) ok |= strcmp(k, known[j]) == 0;
        if (!ok) { snprintf(err, errlen, "%s: unknown key \"%s\"", w, k); return -1; }
    }
    if (!g->gpu_type[0]) { snprintf(err, errlen, "%s: \"gpu_type\" is required", w); return -1; }
    if (strcasecmp(g->gpu_type, "cpu") != 0 && !g->gres_type[0])
        snprintf(g->gres_type, sizeof g->gres_type, "%s", g->gpu_type);
    if (g->mem_per_gpu[0] && cluster_mem_mb(g->mem_per_gpu) < 0) {
        snprintf(err, errlen, "%s: \"mem_per_gpu\" '%s' is not a size like 16G or 4096M", w, g->mem_per_gpu);
        return -1;
    }
    const char *fields[] = {g->gpu_type, g->partition, g->gres_type, g->constraint};
    for (int j = 0; j < 4; j++)
        if (!safe_word_extra(fields[j], j == 3 ? "&|()*!" : "")) {
            snprintf(err, errlen, "%s: '%s' contains characters not allowed in an #SBATCH value", w, fields[j]);
            return -1;
        }
    return 0;
}

static int apply_container(ClusterProfile *p, const json_t *c, const char *where, char *err, size_t errlen)
{
    return container_apply(&p->container, c, where, err, errlen) || container_check(&p->container, where, err, errlen) ? -1 : 0;
}

// Characters of a module name (Lmod/Environment Modules "cuda/12.2", Spack "gcc@12.2.0+cuda"):
// nothing the shell reads as syntax, so `module load NAME` runs module and nothing else.
static int module_char(char c) { return isalnum((unsigned char)c) || strchr("_-.+/@:,=%", c); }

// A "modules" entry: one or more module names separated by spaces.
static int check_module(const char *m, size_t i, const char *where, char *err, size_t errlen)
{
    int names = 0;
    for (const char *q = m; *q; q++) {
        if (*q == ' ') continue;
        if (!module_char(*q)) {
            snprintf(err, errlen, "%s: \"modules\"[%zu] '%s': character '%c' is not allowed in a module name (letters, "
                     "digits and _-.+/@:,=%% only; shell commands go in \"setup\")", where, i, m, *q);
            return -1;
        }
        if (q == m || q[-1] == ' ') names++;
    }
    if (!names) { snprintf(err, errlen, "%s: \"modules\"[%zu] is empty", where, i); return -1; }
    return 0;
}

// Applies the keys of one profile object on top of p (so "base" profiles can be overridden).
static int apply_profile(ClusterProfile *p, const json_t *o, const char *where, char *err, size_t errlen)
{
    static const char *known[] = {"name", "description", "account", "qos", "setup", "modules", "gpus",
                                  "container", "gres_style", "sbatch", "signal_grace_s", "slurm_conf", "srun_mpi",
                                  "base", "comment", NULL};
    const char *k; json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int ok = 0;
        for (int j = 0; known[j]; j++) ok |= strcmp(k, known[j]) == 0;
        if (!ok) { snprintf(err, errlen, "%s: unknown key \"%s\"", where, k); return -1; }
    }
    if (copy_str(o, "name", p->name, sizeof p->name, where, err, errlen) ||
        copy_str(o, "account", p->account, sizeof p->account, where, err, errlen) ||
        copy_str(o, "qos", p->qos, sizeof p->qos, where, err, errlen) ||
        copy_str(o, "slurm_conf", p->slurm_conf, sizeof p->slurm_conf, where, err, errlen) ||
        copy_str(o, "gres_style", p->gres_style, sizeof p->gres_style, where, err, errlen) ||
        copy_str(o, "srun_mpi", p->srun_mpi, sizeof p->srun_mpi, where, err, errlen) ||
        copy_int(o, "signal_grace_s", &p->signal_grace_s, 0, 65535, where, err, errlen) ||
        copy_list(o, "setup", p->setup, &p->nsetup, where, err, errlen) ||
        copy_list(o, "modules", p->modules, &p->nmodules, where, err, errlen) ||
        copy_list(o, "sbatch", p->extra_sbatch, &p->nextra, where, err, errlen) ||
        apply_container(p, json_object_get(o, "container"), where, err, errlen))
        return -1;
    if (strcmp(p->gres_style, "gres") && strcmp(p->gres_style, "gpus-per-node")) {
        snprintf(err, errlen, "%s: \"gres_style\" '%s' must be \"gres\" or \"gpus-per-node\"", where, p->gres_style);
        return -1;
    }
    if (!safe_word(p->account) || !safe_word(p->qos) || !safe_word(p->srun_mpi)) {
        snprintf(err, errlen, "%s: account/qos/srun_mpi contain characters not allowed in an #SBATCH value", where);
        return -1;
    }
    for (size_t i = 0; i < p->nmodules; i++)
        if (check_module(p->modules[i], i, where, err, errlen) < 0) return -1;
    for (size_t i = 0; i < p->nextra; i++)
        if (strncmp(p->extra_sbatch[i], "--", 2) != 0) {
            snprintf(err, errlen, "%s: \"sbatch\"[%zu] '%s' must start with --", where, i, p->extra_sbatch[i]);
            return -1;
        }
    json_t *gpus = json_object_get(o, "gpus");
    if (gpus) {
        if (!json_is_array(gpus) || json_array_size(gpus) > MAX_GPUS) {
            snprintf(err, errlen, "%s: \"gpus\" must be an array of at most %d objects", where, MAX_GPUS);
            return -1;
        }
        p->ngpus = 0;
        size_t i; json_t *e;
        json_array_foreach(gpus, i, e) {
            if (parse_gpu(e, i, &p->gpus[p->ngpus], where, err, errlen)) return -1;
            for (size_t j = 0; j < p->ngpus; j++)
                if (strcasecmp(p->gpus[j].gpu_type, p->gpus[p->ngpus].gpu_type) == 0) {
                    snprintf(err, errlen, "%s: gpus[%zu]: gpu_type '%s' appears twice", where, i, p->gpus[j].gpu_type);
                    return -1;
                }
            p->ngpus++;
        }
    }
    return 0;
}

static int load_named(ClusterProfile *p, const char *name, const char *templates_dir, int depth,
                      char *err, size_t errlen);

static int load_object(ClusterProfile *p, const json_t *o, const char *where, const char *templates_dir,
                       int depth, char *err, size_t errlen)
{
    if (!json_is_object(o)) { snprintf(err, errlen, "%s: a cluster profile must be a JSON object", where); return -1; }
    json_t *base = json_object_get(o, "base");
    if (base) {
        if (!json_is_string(base)) { snprintf(err, errlen, "%s: \"base\" must be a profile name", where); return -1; }
        if (depth > 4) { snprintf(err, errlen, "%s: \"base\" chain deeper than 4 (a cycle?)", where); return -1; }
        if (load_named(p, json_string_value(base), templates_dir, depth + 1, err, errlen)) return -1;
    }
    return apply_profile(p, o, where, err, errlen);
}

static int load_named(ClusterProfile *p, const char *name, const char *templates_dir, int depth,
                      char *err, size_t errlen)
{
    char path[1024];
    size_t n = strlen(name);
    if (strchr(name, '/') || (n > 5 && strcmp(name + n - 5, ".json") == 0))
        snprintf(path, sizeof path, "%s", name);
    else {
        for (const char *c = name; *c; c++)
            if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '_' || *c == '.')) {
                snprintf(err, errlen, "cluster profile name '%s' may use only letters, digits, - _ .", name);
                return -1;
            }
        snprintf(path, sizeof path, "%s/clusters/%s.json", templates_dir ? templates_dir : "templates", name);
    }
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        if (je.line < 0) snprintf(err, errlen, "cluster profile '%s': cannot read %s: %s", name, path, je.text);
        else snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return -1;
    }
    snprintf(p->path, sizeof p->path, "%s", path);
    int rc = load_object(p, o, path, templates_dir, depth, err, errlen);
    if (rc == 0 && !json_object_get(o, "name")) {
        // the file name is the profile name
        const char *b = strrchr(path, '/');
        snprintf(p->name, sizeof p->name, "%.*s", (int)(strlen(b ? b + 1 : path) - 5), b ? b + 1 : path);
    }
    json_decref(o);
    return rc;
}

int cluster_load(const json_t *spec_cluster, const char *templates_dir, ClusterProfile **out,
                 char *err, size_t errlen)
{
    *out = NULL;
    ClusterProfile *p = calloc(1, sizeof *p);
    if (!p) { snprintf(err, errlen, "out of memory"); return -1; }
    snprintf(p->gres_style, sizeof p->gres_style, "gres");
    p->signal_grace_s = 60;
    int rc;
    if (!spec_cluster || json_is_null(spec_cluster))
        rc = load_named(p, "local", templates_dir, 0, err, errlen);
    else if (json_is_string(spec_cluster))
        rc = load_named(p, json_string_value(spec_cluster), templates_dir, 0, err, errlen);
    else if (json_is_object(spec_cluster)) {
        rc = load_object(p, spec_cluster, "spec \"cluster\"", templates_dir, 0, err, errlen);
        if (rc == 0 && !json_object_get(spec_cluster, "base")) p->path[0] = '\0';
        if (rc == 0 && !p->name[0]) snprintf(p->name, sizeof p->name, "inline");
    } else {
        snprintf(err, errlen, "spec \"cluster\" must be a profile name or an object");
        rc = -1;
    }
    if (rc == 0 && p->ngpus == 0) {
        snprintf(err, errlen, "cluster profile '%s'%s%s: \"gpus\" lists no GPU types", p->name,
                 p->path[0] ? " in " : "", p->path);
        rc = -1;
    }
    if (rc) { cluster_free(p); return -1; }
    *out = p;
    return 0;
}

void cluster_free(ClusterProfile *p)
{
    if (!p) return;
    container_clear(&p->container);
    free_list(p->setup, &p->nsetup);
    free_list(p->modules, &p->nmodules);
    free_list(p->extra_sbatch, &p->nextra);
    free(p);
}

const ClusterGpu *cluster_find_gpu(const ClusterProfile *p, const char *gpu_type)
{
    if (!p || !gpu_type) return NULL;
    for (size_t i = 0; i < p->ngpus; i++)
        if (strcasecmp(p->gpus[i].gpu_type, gpu_type) == 0) return &p->gpus[i];
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// rendering

static int is_cpu(const ClusterGpu *g) { return strcasecmp(g->gpu_type, "cpu") == 0; }

static void buf_word(StrBuf *b, const char *s);

int cluster_render_directives(const ClusterProfile *p, const ClusterGpu *g, int gpus, int nodes,
                              const char *time_limit, const char *job_name, const char *run_dir, char **out)
{
    const ClusterJobOpts train = {.log_prefix = "slurm", .requeue = 1};
    return cluster_render_job_directives(p, g, gpus, nodes, time_limit, job_name, run_dir, &train, out);
}

// The job's shape and the words that go unquoted into #SBATCH lines. NULL when they are fine,
// else the malloc'd message.
static char *job_args_problem(const ClusterProfile *p, const ClusterGpu *g, int gpus, int nodes,
                              const char *time_limit, const char *job_name, const char *run_dir)
{
    if (!p || !g) return fail_msg("no cluster profile or GPU type given");
    if (nodes < 1 || gpus < 1) return fail_msg("gpus (%d) and nodes (%d) must be at least 1", gpus, nodes);
    if (gpus % nodes) return fail_msg("%d GPUs do not split evenly over %d nodes", gpus, nodes);
    int per_node = gpus / nodes;
    if (per_node > g->gpus_per_node)
        return fail_msg("cluster '%s': %d %s GPUs per node requested but its nodes have %d; use more nodes",
                        p->name, per_node, g->gpu_type, g->gpus_per_node);
    if (job_name && (!safe_word(job_name) || !*job_name))
        return fail_msg("job name '%s' may use only letters, digits and _-.,:+=@", job_name);
    if (run_dir && (strchr(run_dir, '\n') || strchr(run_dir, ' ') || strchr(run_dir, '"')))
        return fail_msg("run dir '%s' must not contain spaces, quotes or newlines (Slurm reads #SBATCH values unquoted)", run_dir);
    if (time_limit && (!*time_limit || !safe_word(time_limit)))
        return fail_msg("time limit '%s' is not a Slurm time such as 01:30:00 or 2-00:00:00", time_limit);
    return NULL;
}

// The #SBATCH lines: name, where, how long, the shape (tasks, CPUs, GPUs, memory per node), the
// logs, requeue, the dependency rule and the profile's extra lines.
static void sbatch_lines(StrBuf *b, const ClusterProfile *p, const ClusterGpu *g, int nodes, int per_node,
                         const char *time_limit, const char *job_name, const char *run_dir, const ClusterJobOpts *jo)
{
    if (job_name) sb_printf(b, "#SBATCH --job-name=%s\n", job_name);
    if (g->partition[0]) sb_printf(b, "#SBATCH --partition=%s\n", g->partition);
    if (p->account[0]) sb_printf(b, "#SBATCH --account=%s\n", p->account);
    if (p->qos[0]) sb_printf(b, "#SBATCH --qos=%s\n", p->qos);
    if (time_limit) sb_printf(b, "#SBATCH --time=%s\n", time_limit);
    sb_printf(b, "#SBATCH --nodes=%d\n", nodes);
    int tasks = jo->tasks_per_node > 0 ? jo->tasks_per_node : per_node;
    sb_printf(b, "#SBATCH --ntasks-per-node=%d\n", tasks);
    sb_printf(b, "#SBATCH --cpus-per-task=%d\n", jo->cpus_per_task > 0 ? jo->cpus_per_task : g->cpus_per_gpu);
    if (!is_cpu(g)) {
        if (strcmp(p->gres_style, "gpus-per-node") == 0)
            sb_printf(b, "#SBATCH --gpus-per-node=%s:%d\n", g->gres_type, per_node);
        else
            sb_printf(b, "#SBATCH --gres=gpu:%s:%d\n", g->gres_type, per_node);
    }
    if (g->constraint[0]) sb_printf(b, "#SBATCH --constraint=%s\n", g->constraint);
    if (g->mem_per_gpu[0]) sb_printf(b, "#SBATCH --mem=%ldM\n", cluster_mem_mb(g->mem_per_gpu) * per_node);
    const char *logs = jo->log_prefix && *jo->log_prefix ? jo->log_prefix : "slurm";
    if (run_dir) {
        sb_printf(b, "#SBATCH --output=%s/%s-%%j.out\n", run_dir, logs);
        sb_printf(b, "#SBATCH --error=%s/%s-%%j.err\n", run_dir, logs);
        sb_printf(b, "#SBATCH --open-mode=append\n");   // a requeued run adds to the same logs
    }
    if (jo->requeue) {
        if (p->signal_grace_s > 0) sb_printf(b, "#SBATCH --signal=B:USR1@%d\n", p->signal_grace_s);
        sb_printf(b, "#SBATCH --requeue\n");
    } else {
        sb_printf(b, "#SBATCH --no-requeue\n");
    }
    // without it, a job whose afterok dependency failed stays pending forever (DependencyNeverSatisfied)
    if (jo->kill_on_invalid_dep) sb_printf(b, "#SBATCH --kill-on-invalid-dep=yes\n");
    for (size_t i = 0; i < p->nextra; i++) sb_printf(b, "#SBATCH %s\n", p->extra_sbatch[i]);
}

// After the #SBATCH block: the profile's modules and (unless they run inside the container) setup
// lines, then the rendezvous for multi-process training.
static void prologue_lines(StrBuf *b, const ClusterProfile *p, const ClusterJobOpts *jo)
{
    for (size_t i = 0; i < p->nmodules; i++) {   // checked when loaded; quoted anyway, one word per name
        sb_printf(b, "module load");
        char *copy = strdup(p->modules[i]), *save = NULL;
        for (char *w = copy ? strtok_r(copy, " ", &save) : NULL; w; w = strtok_r(NULL, " ", &save)) {
            sb_printf(b, " ");
            buf_word(b, w);
        }
        if (!copy) b->oom = 1;
        free(copy);
        sb_printf(b, "\n");
    }
    if (!jo->setup_in_container)   // else the job runs them inside the container (cluster_setup_lines)
        for (size_t i = 0; i < p->nsetup; i++) sb_printf(b, "%s\n", p->setup[i]);
    // rendezvous for multi-process training (NCCL/torch style): the first node of the allocation,
    // by its address (emulated nodes share localhost), and a port derived from the job id
    sb_printf(b, "if [ -n \"${SLURM_JOB_ID:-}\" ] && [ -z \"${MASTER_ADDR:-}\" ]; then\n"
                  "  segx_first=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1)\n"
                  "  MASTER_ADDR=$(scontrol -o show node \"$segx_first\" 2>/dev/null | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')\n"
                  "  export MASTER_ADDR=${MASTER_ADDR:-$segx_first} MASTER_PORT=$((20000 + SLURM_JOB_ID %% 20000))\n"
                  "fi\n");
}

int cluster_render_job_directives(const ClusterProfile *p, const ClusterGpu *g, int gpus, int nodes,
                                  const char *time_limit, const char *job_name, const char *run_dir,
                                  const ClusterJobOpts *jo, char **out)
{
    *out = job_args_problem(p, g, gpus, nodes, time_limit, job_name, run_dir);
    if (*out) return -1;
    StrBuf b = {0};
    sbatch_lines(&b, p, g, nodes, gpus / nodes, time_limit, job_name, run_dir, jo);
    prologue_lines(&b, p, jo);
    if (b.oom) { sb_free(&b); *out = fail_msg("out of memory"); return -1; }
    *out = sb_take(&b);
    return 0;
}

// Shell-quotes s into b when it needs it.
static void buf_word(StrBuf *b, const char *s)
{
    if (*s && safe_word(s)) { sb_printf(b, "%s", s); return; }
    sb_printf(b, "'");
    for (; *s; s++) {
        if (*s == '\'') sb_printf(b, "'\\''");
        else sb_printf(b, "%c", *s);
    }
    sb_printf(b, "'");
}

int cluster_container(const ClusterProfile *p, const json_t *spec_container, Container *out, char *err, size_t errlen)
{
    if (p) { if (container_copy(out, &p->container) < 0) { snprintf(err, errlen, "out of memory"); return -1; } }
    else memset(out, 0, sizeof *out);
    if (spec_container && !json_is_null(spec_container)) {
        // the spec's container replaces the profile's (a bare image path keeps its runtime and binds)
        if (!json_is_string(spec_container)) container_clear(out);
        out->image[0] = '\0';
        if (container_apply(out, spec_container, "spec", err, errlen) || container_check(out, "spec", err, errlen)) {
            container_clear(out);
            return -1;
        }
    }
    return 0;
}

int cluster_render_container(const ClusterProfile *p, const json_t *container, char **out)
{
    *out = NULL;
    Container c;
    char err[1200];
    if (cluster_container(p, container, &c, err, sizeof err) < 0) { *out = strdup(err); return -1; }
    const ContainerJob gpu = {.gpu = 1};
    *out = container_prefix(&c, &gpu, 0);
    container_clear(&c);
    if (!*out) { *out = fail_msg("out of memory"); return -1; }
    return 0;
}

int cluster_render_srun(const ClusterProfile *p, const Container *c, const ContainerJob *j, int gpus, int nodes,
                        char **out)
{
    *out = NULL;
    if (nodes < 1 || gpus < 1 || gpus % nodes) {
        *out = fail_msg("%d GPUs do not split evenly over %d nodes", gpus, nodes);
        return -1;
    }
    char *wrap = c ? container_prefix(c, j, 1) : strdup("");
    if (!wrap) { *out = fail_msg("out of memory"); return -1; }
    StrBuf b = {0};
    sb_printf(&b, "srun --ntasks=%d --ntasks-per-node=%d --kill-on-bad-exit=1", gpus, gpus / nodes);
    if (p && p->srun_mpi[0]) sb_printf(&b, " --mpi=%s", p->srun_mpi);
    if (*wrap) sb_printf(&b, " %s", wrap);
    free(wrap);
    if (b.oom) { sb_free(&b); *out = fail_msg("out of memory"); return -1; }
    *out = sb_take(&b);
    return 0;
}

int cluster_render_launch(const ClusterProfile *p, const json_t *container, int gpus, int nodes, char **out)
{
    *out = NULL;
    Container c;
    char err[1200];
    if (cluster_container(p, container, &c, err, sizeof err) < 0) { *out = strdup(err); return -1; }
    const ContainerJob gpu = {.gpu = 1};
    int rc = cluster_render_srun(p, &c, &gpu, gpus, nodes, out);
    container_clear(&c);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// accessors

const char *cluster_name(const ClusterProfile *p) { return p->name; }
const char *cluster_path(const ClusterProfile *p) { return p->path; }
const char *cluster_account(const ClusterProfile *p) { return p->account; }
const char *cluster_qos(const ClusterProfile *p) { return p->qos; }
size_t cluster_gpu_count(const ClusterProfile *p) { return p->ngpus; }
const ClusterGpu *cluster_gpu_at(const ClusterProfile *p, size_t i) { return i < p->ngpus ? &p->gpus[i] : NULL; }
const char *cluster_container_runtime(const ClusterProfile *p) { return p->container.runtime; }
const char *cluster_container_image(const ClusterProfile *p) { return p->container.image; }
const char *const *cluster_setup_lines(const ClusterProfile *p, size_t *n) { *n = p->nsetup; return (const char *const *)p->setup; }
const char *cluster_slurm_conf(const ClusterProfile *p) { return p->slurm_conf; }
int cluster_signal_grace_s(const ClusterProfile *p) { return p->signal_grace_s; }
