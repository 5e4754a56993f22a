// orchestrator/plan.h — from a checked spec to cells (matrix minus exclude plus include, with the
// scaling rules applied), their rows in the DB and their rendered job scripts.
// defines: PlanCell, plan_expand, plan_cells_free, plan_store, plan_render_job, plan_cell_from_params,
// PlanRenderer, plan_renderer_open/close/warning, plan_hash.
//
// Cell parameters (cells.params, canonical JSON with sorted keys) = the trainer's fixed keys and
// args (minus command/metrics/launch; plus "command" for external trainers) + "eval" + one value
// per matrix axis + derived gpus, nodes, batch_per_gpu, global_batch, "scaling", and, when the
// learning rate is scaled, "lr_scaling" and "lr_ref_batch". "lr" stays the base learning rate; the
// effective one (cells.lr, the trainer's --lr) is lr * f(global_batch / lr_ref_batch).
// key = first 12 hex digits of SHA-256(params); group_key drops seed; scaling_key drops seed, gpus,
// nodes and global_batch (weak) or batch_per_gpu (strong), so a 1-GPU baseline shares it.
//
// Layout on disk (the job's run dir): RUN_ROOT/<key>/attempt-<n>/job.sh, rendered by `segx plan`
// for attempt 1 of a never-submitted cell and by `segx submit` for later attempts. The job writes
// job.out (local backend; slurm-<id>.out/err under Slurm), stdout.log/stderr.log (the trainer),
// metrics.jsonl, progress.json, result.json, env.json and, last, exit_code. With eval.job, eval.sh
// beside job.sh: the eval job (afterok on the train job) writes eval.json and, last, eval_exit_code.
#ifndef SEGX_PLAN_H
#define SEGX_PLAN_H
#include "orchestrator/spec.h"
#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>

#define PLAN_KEY_HEX 12

typedef struct {
    json_t *params;            // owned
    char *canon;               // owned: params as canonical JSON (sorted keys, compact); key = hash of it
    char key[PLAN_KEY_HEX + 1], group_key[PLAN_KEY_HEX + 1], scaling_key[PLAN_KEY_HEX + 1];
    const char *model, *gpu_type;   // borrowed from params; NULL when absent
    int gpus, nodes, batch_per_gpu, global_batch;
    double lr;                 // effective learning rate; 0 when the spec sets none
    int has_seed;
    long long seed;
    long long cell_id;         // filled by plan_store
    int next_attempt;          // filled by plan_store: 1 + the cell's highest attempt
    int is_new;                // filled by plan_store: inserted by this plan
} PlanCell;

// Expands spec into cells (deduplicated by key, in matrix order then include order).
// 0, or -1 with err naming the spec and the offending cell.
int  plan_expand(const Spec *s, PlanCell **cells, size_t *n, char *err, size_t errlen);
void plan_cells_free(PlanCell *cells, size_t n);
// Frees what one cell owns (for a PlanCell filled by plan_cell_from_params).
void plan_cell_clear(PlanCell *c);
// Rebuilds a cell from its stored params (submit renders later attempts with it).
int  plan_cell_from_params(const Spec *s, const char *params_json, PlanCell *c, char *err, size_t errlen);

// Writes the experiment row and the new cells in one transaction; fills cell_id/next_attempt.
// run_root: absolute RUN_ROOT. *added = cells that were not in the DB before.
int  plan_store(sqlite3 *db, const Spec *s, const char *spec_abspath, const char *run_root,
                PlanCell *cells, size_t n, size_t *added, char *err, size_t errlen);

// Renders job scripts: open once per experiment (loads the template and cluster profile), then
// plan_render_job per cell attempt. templates_dir: paths_templates_dir().
typedef struct PlanRenderer PlanRenderer;
int  plan_renderer_open(const Spec *s, const char *templates_dir, const char *run_root,
                        PlanRenderer **out, char *err, size_t errlen);
// Creates RUN_ROOT/<key>/attempt-<n>/ and writes job.sh (mode 0755); path gets the script's
// path, run_dir the directory (both absolute). 0, or -1 with err naming the cell.
int  plan_render_job(PlanRenderer *r, const PlanCell *c, int attempt, char *path, size_t pathlen,
                     char *run_dir, size_t rdlen, char *err, size_t errlen);
// Renders without writing (for --dry-run and tests): *script is malloc'd.
int  plan_render_text(PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                      char **script, char *err, size_t errlen);
void plan_renderer_close(PlanRenderer *r);
// What the caller should warn about after plan_renderer_open (the library prints nothing): 1 with
// the line in buf (no newline; the commands print "segx: warning: LINE") when job scripts of a
// segx-train spec will look for segx-train in PATH (none beside segx, no SEGX_TRAIN), else 0.
int  plan_renderer_warning(const PlanRenderer *r, char *buf, size_t len);
// The eval job (spec with eval.job; templates/eval.sbatch.tmpl): 1 when the spec asks for one.
int  plan_has_eval(const PlanRenderer *r);
// Renders the cell attempt's eval.sh (one process: segx-train --evaluate, or eval.job.command;
// #SBATCH from the profile with the eval job's GPUs, time, --no-requeue and
// --kill-on-invalid-dep=yes; Slurm logs eval-<id>.out/.err). *script is malloc'd.
int  plan_render_eval_text(PlanRenderer *r, const PlanCell *c, int attempt, const char *run_dir,
                           char **script, char *err, size_t errlen);
// Writes script as run_dir/eval.sh (mode 0755; run_dir must exist or is created).
int  plan_write_eval(const char *run_dir, const char *script, char *path, size_t pathlen, char *err, size_t errlen);
// Creates run_dir and writes script as run_dir/job.sh (mode 0755); path gets the file name.
int  plan_write_job(const char *run_dir, const char *script, char *path, size_t pathlen, char *err, size_t errlen);

// First PLAN_KEY_HEX hex digits of SHA-256(text) into out (PLAN_KEY_HEX + 1 bytes).
void plan_hash(const char *text, char *out);
// Short human description of a cell ("model=unet gpus=2 ...") for messages.
void plan_cell_label(const PlanCell *c, char *buf, size_t len);

// One top-level member of a cell's canonical params text (cells.params), as written: key without
// its quotes (jansson escapes only '"', '\\' and control characters in it), raw JSON value.
typedef struct { const char *key, *val; size_t klen, vlen; } PlanMember;
// Splits canonical params text (compact JSON, as plan stores it) into its top-level members, at
// most max; the count, or -1 when the text is not such an object (parse it with jansson then).
long plan_canon_members(const char *canon, PlanMember *m, size_t max);

// Parameter names whose value differs between the given cells' params (what a table shows),
// in the first object's key order, at most max; names are borrowed from params[0].
size_t plan_varying_keys(json_t *const *params, size_t n, const char **keys, size_t max);

enum { PLAN_SCRIPTS_AUTO = 0, PLAN_SCRIPTS_ALL, PLAN_SCRIPTS_NONE };
#define PLAN_SCRIPTS_AUTO_MAX 10000

// What decides how a cell's job script renders, as text into buf (NUL-terminated, cut at len): its
// GPU type, GPUs and nodes (the #SBATCH lines, the container), then each parameter's name with the
// kind of its value (string, number, bool, null, array, object) and whether the template would
// take it as true. Cells with the same signature differ only in the words substituted, so one
// rendering of each checks them all. The length written.
size_t plan_shape_signature(const PlanCell *c, char *buf, size_t len);

// How `segx plan` runs (plan_spec.c's planning, and cmd/'s plan_spec_file, which prints).
typedef struct {
    const char *db_path;     // NULL: db_path_default
    const char *runs_dir;    // NULL: the experiment's stored run root, else ./runs
    int dry_run;             // write nothing (no DB, no files)
    const char *format;      // table | csv | json | markdown (NULL: table)
    int quiet;               // summary line only
    int limit;               // table rows shown (0: all)
    // Attempt 1's job scripts: written by plan (PLAN_SCRIPTS_ALL), left to submit, which renders a
    // missing one when it sends the cell (PLAN_SCRIPTS_NONE), or AUTO (0): all up to
    // PLAN_SCRIPTS_AUTO_MAX cells, none beyond (creating 100,000 files is most of a big plan's time).
    // Without scripts, rendering is checked once per distinct shape of cell (plan_shape_signature).
    int scripts;
    // A warning (plan_renderer_warning's line, no newline); NULL: not said. plan_spec_file
    // prints it on stderr after "segx: warning: ".
    void (*warn)(void *ctx, const char *line);
    void *warn_ctx;
} PlanOptions;

#endif
