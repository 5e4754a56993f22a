// orchestrator/spec.h — the experiment spec: a JSON file read with jansson and checked key by
// key. Every error names FILE:LINE:COLUMN, the key path (`matrix.gpus[2]`), what was expected
// and, for a misspelt key, the closest known one. Unknown keys are errors (except in
// trainer/trainer.args/matrix, whose extra keys are trainer flags).
// defines: Spec, spec_load, spec_parse, spec_free, spec_locate, SPEC_KNOWN_AXES.
//
// Shape (README "Spec" documents it for users):
//   name        experiment name ([A-Za-z0-9._-]+, it names runs/<name>/)
//   trainer     {command (default "segx-train"; otherwise a template of the external command),
//                dataset, epochs, optimizer, lr, args{flag: value}, metrics{name: ERE regex},
//                launch ("per-rank" | "once"), any other key: a trainer flag}
//   matrix      {axis: [values]}: model, gpu_type, gpus, nodes, batch_per_gpu | global_batch,
//                optimizer, lr, seed, and any trainer flag (workers, comm, ...)
//   exclude / include   lists of partial cells (a value may be a list: any of)
//   scaling     "weak" (matrix.batch_per_gpu) | "strong" (matrix.global_batch, split over gpus) |
//               "weak-data" (weak, and train_limit x gpus: constant epoch time under ideal scaling)
//   lr_scaling  "none" | "linear" | "sqrt" (relative to the smallest global batch)
//   resources   {time "HH:MM:SS" | "D-HH:MM:SS" | minutes, cpus_per_gpu, mem_per_gpu: "16G" or
//                {gpu_type: "16G"} (overrides the cluster profile's; --mem = it x GPUs per node)}
//   cluster     profile name or inline object (orchestrator/cluster.h); default "local"
//   container   image path or {runtime, image, bind} (passed to the cluster profile)
//   eval        {every, limit, ...}: trainer flags --eval-<key>; eval.targets {metric: value}
//               are thresholds for `segx report` time-to-target (not trainer flags, not in keys);
//               eval.job {time, gpus, gpu_type, cpus_per_gpu, mem_per_gpu, command} asks for an eval
//               job per cell, run after the train job succeeded (not a trainer flag, not in keys)
#ifndef SEGX_SPEC_H
#define SEGX_SPEC_H
#include "orchestrator/util/units.h"
#include <jansson.h>
#include <regex.h>
#include <stddef.h>

typedef enum { LR_SCALE_NONE, LR_SCALE_LINEAR, LR_SCALE_SQRT } LrScaling;

typedef struct {
    char *path;             // as given (for messages)
    char *text;             // the file's text (for locating keys; stored in experiments.spec_text)
    json_t *root;
    const char *name;
    json_t *trainer;        // object (borrowed from root)
    const char *command;    // "segx-train" or the external command template
    int external;           // command is not segx-train
    int launch_once;        // run the command once per job instead of once per rank
    json_t *matrix;         // object of non-empty arrays
    json_t *exclude, *include;  // arrays of objects, or NULL
    int strong;             // scaling == "strong"
    int weak_data;          // scaling == "weak-data": weak, and the training set grows with gpus (train_limit x gpus)
    LrScaling lr_scaling;
    const char *time;       // normalised "HH:MM:SS" or "D-HH:MM:SS"
    long time_s;
    int cpus_per_gpu;       // 1 when unset
    int cpus_per_gpu_set;   // resources.cpus_per_gpu given: it overrides the cluster profile's
    const char *mem_per_gpu; // resources.mem_per_gpu as one size for every GPU type; NULL when unset
    json_t *mem_per_gpu_by_type; // resources.mem_per_gpu as {gpu_type: size} (borrowed); NULL when unset
    json_t *cluster;        // string or object (default: "local")
    json_t *container;      // NULL when unset
    json_t *eval;           // NULL when unset
    json_t *metrics;        // trainer.metrics, NULL when unset
    // eval.job: one eval job per cell attempt, submitted with dependency afterok:<train job>
    json_t *eval_job;       // the eval.job object (borrowed); NULL: no eval jobs
    const char *eval_time;  // eval.job.time normalised (default: resources.time)
    long eval_time_s;
    int eval_gpus;          // eval.job.gpus (default 1; one node)
    const char *eval_gpu_type;    // NULL: the cell's
    int eval_cpus_per_gpu;        // 0: the train job's
    const char *eval_mem_per_gpu; // NULL: the train job's
    const char *eval_command;     // evaluator command template; NULL: segx-train --evaluate
    char time_buf[32], eval_time_buf[32];
} Spec;

// Limits of the spec's integers, checked before anything is converted (a JSON integer is 64-bit;
// segx keeps GPUs, nodes and batches in int, the trainer takes seeds up to 2^31-1).
#define SPEC_MAX_GPUS 1048576L          // matrix.gpus
#define SPEC_MAX_NODES 65536L           // matrix.nodes
#define SPEC_MAX_BATCH 1073741824L      // matrix.batch_per_gpu, matrix.global_batch (and their product)
#define SPEC_MAX_SEED 2147483647L       // matrix.seed (segx-train --seed)
#define SPEC_MAX_EPOCHS 1000000L        // trainer.epochs
#define SPEC_MAX_CPUS_PER_GPU 1024L     // resources.cpus_per_gpu, eval.job.cpus_per_gpu, eval.job.gpus
#define SPEC_MAX_TIME_S UNITS_MAX_TIME_S // resources.time, eval.job.time: ten years (util/units.h)
#define SPEC_MAX_NAME 100               // name (characters)
#define SPEC_MAX_REGEX 1024            // trainer.metrics patterns (characters)
#define SPEC_MAX_REGEX_STATES 2000      // ... and the states regcomp would build for them

// Reads and checks path. 0, or -1 with err "FILE:LINE:COL: KEY.PATH: message".
int  spec_load(const char *path, Spec **out, char *err, size_t errlen);
// Same from text already in memory (path labels errors). text is copied.
int  spec_parse(const char *text, const char *path, Spec **out, char *err, size_t errlen);
void spec_free(Spec *s);

// Line and column (1-based) of the value at key path ("matrix.gpus[2]") in the JSON text;
// -1 when not found (then line/col stay 0).
int  spec_locate(const char *text, const char *keypath, int *line, int *col);

// Axes segx itself interprets; other axes become trainer flags.
extern const char *const SPEC_KNOWN_AXES[];
// Slurm's time forms (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) -> seconds; -1 when
// malformed, when a clock field is out of range (minutes/seconds 0-59, hours 0-23 after days)
// or beyond SPEC_MAX_TIME_S. The same reader as #SBATCH --time's: units_time_s (util/units.h).
long spec_parse_time(const char *s);
// Compiles a trainer.metrics pattern as POSIX ERE after translating \d \w \s (and \D \W \S);
// it must have a capture group, at most SPEC_MAX_REGEX characters, and repetitions that stay under
// SPEC_MAX_REGEX_STATES (glibc copies the operand of '+' and {m,n}: "(x+)+..." grows exponentially),
// and no repetition right after another ("x++", undefined in POSIX ERE).
// 0, or -1 with err.
int  spec_compile_metric(const char *pattern, regex_t *re, char *err, size_t errlen);

#endif
