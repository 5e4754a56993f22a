// trainer/run/run.h — what a segx-train run leaves behind, and how it stops and resumes.
// - Run dir (the contract every segx trainer follows; only rank 0 writes it):
//   metrics.jsonl  one JSON object per epoch, appended and flushed
//   progress.json  {epoch, epochs, step, steps, eta_s}; temp file + fsync + rename
//   result.json    final summary; temp file + fsync + rename
//   env.json       host, CPU model, threads, ranks, library versions, git commit
//   checkpoint.bin see below; trace.json with --profile (Chrome trace format)
// - checkpoint.bin: header (magic "SEGXCKPT", version, sizes, epoch/step, data position, seed,
//   optimizer kind/steps, partial epoch sums, run tag), then params, BN buffers and optimizer
//   state as raw floats, then a CRC-32 of everything before it. Version 2 appends the fp16 loss
//   scaler to the header; version-1 files still load (their scaler fields read as 0: "not stored"). Written to checkpoint.bin.tmp,
//   fsynced, renamed. The data position plus the seed is the whole RNG state: the loader derives
//   every epoch's order from (seed, epoch), so nothing else needs saving.
// - Signals: SIGTERM and SIGUSR1 only set a flag; the training loop checkpoints at the next step
//   boundary and exits with RUN_EXIT_REQUEUE.
#ifndef SEGX_RUN_H
#define SEGX_RUN_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define RUN_EXIT_REQUEUE 99   // "checkpointed after SIGTERM/SIGUSR1: requeue me with --resume"

double run_now_s(void);       // monotonic seconds
int    run_mkdir_p(const char *path, char *err, size_t errlen);

// --- run dir ---------------------------------------------------------------------------------
typedef struct RunDir RunDir;
int  rundir_open(const char *path, int append, RunDir **out, char *err, size_t errlen);
void rundir_close(RunDir *rd);
const char *rundir_path(const RunDir *rd);
// Appends one line to metrics.jsonl and flushes it. Does not steal the reference.
int  rundir_append_metrics(RunDir *rd, json_t *obj, char *err, size_t errlen);
// Writes RUN_DIR/name atomically (name.tmp, fsync, rename, fsync dir).
int  rundir_write_json(RunDir *rd, const char *name, json_t *obj, char *err, size_t errlen);
int  run_write_json_atomic(const char *path, json_t *obj, char *err, size_t errlen);
// fsyncs the directory holding path, so a rename into it survives a crash (best effort).
void run_fsync_parent_dir(const char *path);
// Host, CPU model, threads, ranks, OpenBLAS/jansson/MPI versions, git commit (SEGX_GIT_COMMIT
// or `git -C <dir of the binary> rev-parse HEAD`); `extra` keys are merged in.
json_t *run_env_json(const char *argv0, int threads, int world, const char *comm_kind, json_t *extra);

// --- checkpoint ------------------------------------------------------------------------------
typedef struct {
    uint64_t n_params, n_buffers, n_opt_state;
    uint64_t seed;
    int64_t epoch;          // epoch to continue (0-based)
    int64_t next_batch;     // first micro-batch of that epoch still to run
    int64_t global_step;    // optimizer steps taken
    int64_t opt_kind, opt_steps;
    double loss_sum, loss_count;   // partial train-loss sums of the current epoch
    double best_metric;
    double images_done;
    double wall_s;          // wall seconds of the run so far (wall_s keeps counting across resumes)
    char tag[256];          // model/dataset/batch/world: a resume must match it
    // version 2: --precision fp16's dynamic loss scaler (trainer/gpu/gpu.h LossScaler), so a resumed
    // run goes on at the scale it had instead of restarting at 65536. loss_scale 0: not stored (fp32,
    // bf16, the CPU, or a version-1 file).
    double loss_scale;
    int64_t loss_scale_good_steps;   // clean steps since the last growth or backoff
    int64_t skipped_steps;           // steps skipped for inf/nan gradients so far
} CkptHeader;
// Header bytes of a version-1 file: everything before loss_scale.
#define CKPT_V1_HEADER_BYTES offsetof(CkptHeader, loss_scale)

int ckpt_save(const char *path, const CkptHeader *h, const float *params, const float *buffers,
              const float *opt_state, char *err, size_t errlen);
// --resume: 1 PATH is a checkpoint file that can be opened, 0 there is none (ENOENT: start
// afresh), -1 anything else (EACCES, ELOOP, not a regular file, ...) with err: an error, so a run
// never starts over (and truncates metrics.jsonl) because its checkpoint is unreadable.
int ckpt_exists(const char *path, char *err, size_t errlen);
// Reads the header only (to check it before loading).
int ckpt_read_header(const char *path, CkptHeader *h, char *err, size_t errlen);
// Loads into arrays of the sizes in `expect` (n_* and tag must match the file).
int ckpt_load(const char *path, const CkptHeader *expect, CkptHeader *h, float *params,
              float *buffers, float *opt_state, char *err, size_t errlen);

// --- signals ---------------------------------------------------------------------------------
void signals_install(void);      // SIGTERM, SIGUSR1 -> flag
int  signals_pending(void);      // the signal number, or 0

// --- trace (Chrome trace format, {"traceEvents": [...]}; Perfetto opens it) -------------------
typedef struct Trace Trace;
int  trace_open(const char *path, int rank, Trace **out, char *err, size_t errlen);
// One complete event ("ph":"X") from t0 to t1 (run_now_s() seconds) on thread lane `tid`.
void trace_event(Trace *t, const char *name, const char *cat, double t0, double t1, int tid, long step);
// The same with args.shape (e.g. "B=128 64x32x32->64 k3 s1"), for op events.
void trace_event_shape(Trace *t, const char *name, const char *cat, double t0, double t1, int tid, long step,
                       const char *shape);
void trace_close(Trace *t);

// --- progress bar on stderr (only when it is a TTY) -------------------------------------------
void progress_bar(int epoch, int epochs, long step, long steps, double eta_s, double loss);
void progress_bar_done(void);

#endif
