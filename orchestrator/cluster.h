// orchestrator/cluster.h — cluster profiles: what a GPU type means on one cluster (partition,
// gres type, constraint, memory), plus account/qos, setup lines, modules and a container.
// defines: ClusterGpu, ClusterProfile, cluster_load, cluster_find_gpu, cluster_render_directives,
// cluster_render_launch, cluster_free, and read accessors for `segx doctor`.
//
// Profiles live in templates/clusters/<name>.json (format documented in templates/clusters/README.md);
// a spec's "cluster" is either such a name or an inline object of the same shape (an inline object
// may name "base": "<profile>" and override its keys). gpu_type "cpu" means no GPU: no gres line.
#ifndef SEGX_CLUSTER_H
#define SEGX_CLUSTER_H
#include "orchestrator/container.h"
#include <jansson.h>
#include <stddef.h>

typedef struct { char gpu_type[32], partition[64], gres_type[32], constraint[128], mem_per_gpu[16];
                 int gpus_per_node, cpus_per_gpu; } ClusterGpu;
typedef struct ClusterProfile ClusterProfile;   // name, account, qos, setup lines, modules, gpus, container

// spec_cluster: a JSON string (profile name, or a path ending in .json) or an inline object.
// templates_dir: the templates/ folder (profiles are read from templates_dir/clusters/).
// 0, or -1 with err naming the file and the offending key.
int  cluster_load(const json_t *spec_cluster, const char *templates_dir,
                  ClusterProfile **out, char *err, size_t errlen);
// The profile's entry for gpu_type (case-insensitive), or NULL.
const ClusterGpu *cluster_find_gpu(const ClusterProfile *p, const char *gpu_type);
// Every #SBATCH line and setup line for one cell, ready to paste into the job script right after
// the "#!" line. gpus = total GPUs (or CPU ranks) of the cell over `nodes` nodes. 0, or -1 when
// the cell does not fit the profile (then *out is a malloc'd one-line error message).
int  cluster_render_directives(const ClusterProfile *p, const ClusterGpu *g, int gpus, int nodes,
                  const char *time_limit, const char *job_name, const char *run_dir, char **out /*malloc*/);
// The same for any job: cluster_render_directives is the train job's form
// ({"slurm", 0, 0, requeue 1, 0}).
typedef struct {
    const char *log_prefix;   // Slurm's logs: RUN_DIR/<prefix>-%j.out and .err (NULL: "slurm")
    int tasks_per_node;       // 0: one task per GPU
    int cpus_per_task;        // 0: the GPU type's cpus_per_gpu
    int requeue;              // --requeue and --signal=B:USR1@grace (else --no-requeue)
    int kill_on_invalid_dep;  // --kill-on-invalid-dep=yes: a job whose afterok dependency failed is cancelled
    int setup_in_container;   // leave the profile's setup lines out: the job runs them inside its container
} ClusterJobOpts;
int  cluster_render_job_directives(const ClusterProfile *p, const ClusterGpu *g, int gpus, int nodes,
                  const char *time_limit, const char *job_name, const char *run_dir, const ClusterJobOpts *o,
                  char **out /*malloc*/);
// The launch prefix for the trainer: "srun --ntasks=G --ntasks-per-node=K --cpus-per-task=C
// --kill-on-bad-exit=1" followed, when the profile (or `container`, which overrides it; may be
// NULL) names one, by "RUNTIME exec --nv --bind A,B IMAGE". The caller appends "segx-train ...".
// 0, or -1 with *out a malloc'd error message (e.g. unknown runtime).
int  cluster_render_launch(const ClusterProfile *p, const json_t *container, int gpus, int nodes,
                  char **out /*malloc*/);
// Only the container part ("" when none), e.g. for the local backend which has no srun.
// (Both render a GPU job without automatic binds; plan.c uses cluster_container + container.h.)
int  cluster_render_container(const ClusterProfile *p, const json_t *container, char **out /*malloc*/);
// The container a job runs in: the profile's, replaced by the spec's "container" (NULL: none;
// a bare image path keeps the profile's runtime and binds). 0, or -1 with err; container_clear it.
int  cluster_container(const ClusterProfile *p, const json_t *spec_container, Container *out, char *err, size_t errlen);
// "srun --ntasks=G --ntasks-per-node=K --kill-on-bad-exit=1 [--mpi=X]" + the container's words for
// srun (container_prefix(c, j, 1); c may be NULL). 0, or -1 with *out a malloc'd message.
int  cluster_render_srun(const ClusterProfile *p, const Container *c, const ContainerJob *j, int gpus, int nodes,
                  char **out /*malloc*/);
void cluster_free(ClusterProfile *p);
// A memory size as profiles and specs write it ("16G", "4096M", "512" = MB, "16GB") in MB, by
// Slurm's rules (units_mem_mb, util/units.h: whole numbers only, K rounds up); -1 when Slurm would
// refuse it or it is 0.
long cluster_mem_mb(const char *s);

// Read accessors (doctor, status).
const char *cluster_name(const ClusterProfile *p);
const char *cluster_path(const ClusterProfile *p);           // file it came from ("" if inline)
const char *cluster_account(const ClusterProfile *p);        // "" when none
const char *cluster_qos(const ClusterProfile *p);            // "" when none
size_t      cluster_gpu_count(const ClusterProfile *p);
const ClusterGpu *cluster_gpu_at(const ClusterProfile *p, size_t i);
const char *cluster_container_runtime(const ClusterProfile *p); // "" when none
const char *cluster_container_image(const ClusterProfile *p);   // "" when none
const char *const *cluster_setup_lines(const ClusterProfile *p, size_t *n);   // the profile's "setup"
const char *cluster_slurm_conf(const ClusterProfile *p);     // SLURM_CONF to use ("" = default)
int         cluster_signal_grace_s(const ClusterProfile *p); // seconds before the limit to send USR1
#endif
