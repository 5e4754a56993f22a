// trainer/train.c — the training loop of segx-train.
// One optimizer step = accum_steps micro-batches: zero grads, then per micro-batch forward
// (training), loss with grad_scale 1/accum_steps, backward (the DDP hook is installed only on the
// last micro-batch, so gradients are communicated once per step), ddp_finish (the same bucketed
// reducer on the CPU with MPI and on the GPU with NCCL), optimizer step with the scheduled lr.
// Per epoch: evaluation on the test split, metrics all-reduced as sums and a confusion matrix,
// one metrics.jsonl line. Only rank 0 writes the run dir.
#include "trainer/train.h"
// defines: train_config_defaults, train_run

#include "config.h"
#include "trainer/data/data.h"       // defines: Dataset, Loader
#include "trainer/evaluate.h"        // defines: seg_setup, seg_eval_images (the crop pipeline)
#include "trainer/dist/comm.h"       // defines: Comm, DdpReducer
#include "trainer/gpu/gpu.h"         // defines: gpu_probe, gpu_env, GpuTelemetry, LossScaler
#include "trainer/gpu/stage.h"       // defines: BatchStage
#include "trainer/io/weights.h"      // defines: weights_load, weights_save (--init, --save-weights)
#include "trainer/metrics/metrics.h" // defines: ConfMat
#include "trainer/models/model.h"    // defines: Model
#include "trainer/ops/ops_cuda.h"    // defines: ops_cuda_init, ops_cuda_optim_step, ops_cuda_error
#include "trainer/optim/optim.h"     // defines: Optimizer, LrSchedule
#include "trainer/run/ops_trace.h"
#include "trainer/run/memplan.h"     // defines: memplan_check (planned memory vs the limit)
#include "trainer/run/run.h"         // defines: RunDir, checkpoints, Trace

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void train_config_defaults(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    c->model = "cnn";
    c->dataset = "fashion-mnist";
    c->optimizer = "sgd";
    c->lr_schedule = "constant";
    c->comm = "auto";
    c->device = "cpu";
    c->precision = "fp32";
    c->export_split = "train";
    c->epochs = 1;
    c->batch = 32;
    c->width = 16;
    c->batch_norm = 1;
    c->workers = 2;
    c->seed = 0;
    c->eval_limit = -1;
    c->steps = -1;
    c->lr = 0.01;
    c->momentum = 0.9;
    c->bucket_mb = 25;
    c->reducer = "bucket";
    c->allreduce_algo = "auto";
    c->fusion_mb = 64;
    c->accum_steps = 1;
    c->eval_every = 1;
    c->ratio_min = 0.5;
    c->ratio_max = 2.0;
    c->cat_max_ratio = 0.75;
    c->eval_mode = "whole";
}

// ---------------------------------------------------------------------------------------------

typedef struct {
    const TrainConfig *cfg;
    Comm *comm;
    int rank, world;
    Dataset *train_ds, *eval_ds;
    Loader *train_ld, *eval_ld;
    Model *model;
    Optimizer *opt;
    const Ops *ops;              // ops_cpu() or ops_cuda(): params, grads, optimizer state live there
    int gpu, device;             // on the CUDA table, and which visible device
    GpuPrecision prec;
    LossScaler scaler;           // --precision fp16
    BatchStage *stage;           // training batches, uploaded one step ahead
    float *host_params, *host_buffers, *host_state, *host_grads;   // host copies (checkpoints, broadcasts)
    GpuTelemetry *tel;           // rank 0 on the GPU, when NVML is there
    DdpStats gpu_ddp;            // --device cuda --comm mpi: one host-staged allreduce (no DdpReducer)
    DdpReducer *ddp;
    RunDir *rd;
    Trace *trace;
    ConfMat cm;
    int32_t *pred;
    LrSchedule sched;
    long steps_per_epoch, total_steps, micro_per_epoch;
    int epochs;
    char tag[256];
    char ckpt_path[4200];
    double t_start, wall_offset;
    double ckpt_wall;  // the trainer clock stored in the last checkpoint written (logged at a stop)
    double images_after_first, time_after_first;  // throughput excluding the first step
    long steps_this_process;
    double best;  // best mIoU or top-1
    Pipeline pipe;               // --crop: the segmentation pipeline (pipe.crop_h 0: off)
    SegEvalConfig seg;           // and the evaluation at each image's resolution
    char err[2048];
} Trainer;

static void log_rank0(const Trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_rank0(const Trainer *t, const char *fmt, ...) {
    if (t->rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("segx-train: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int sync_bn_allreduce(void *ctx, double *buf, size_t n) {
    return comm_allreduce_sum_f64((Comm *)ctx, buf, n);
}

static double wall(const Trainer *t) { return t->wall_offset + run_now_s() - t->t_start; }

// ---------------------------------------------------------------------------------------------
// backend memory. Parameters, BN buffers, gradients and optimizer state live in t->ops's memory.
// Checkpoints, broadcasts and --save-params go through host copies on EVERY backend (on the CPU,
// download/upload are memcpy), so the CPU runs, and its tests check, the code the GPU path uses.

enum { HOST_PARAMS = 1, HOST_BUFFERS = 2, HOST_STATE = 4 };

static size_t n_state(const Trainer *t) { return (size_t)t->opt->nslots * t->opt->n; }

static int host_alloc(Trainer *t) {
    size_t np = model_num_params(t->model), nb = model_num_buffers(t->model), ns = n_state(t);
    t->host_params = malloc(sizeof(float) * (np ? np : 1));
    t->host_buffers = malloc(sizeof(float) * (nb ? nb : 1));
    t->host_state = malloc(sizeof(float) * (ns ? ns : 1));
    if (!t->host_params || !t->host_buffers || !t->host_state) {
        snprintf(t->err, sizeof t->err, "out of host memory for a copy of the parameters (%zu floats)", np);
        return -1;
    }
    return 0;
}

static void to_host(Trainer *t, int what) {
    if (what & HOST_PARAMS) t->ops->download(t->host_params, model_params(t->model), sizeof(float) * model_num_params(t->model));
    if (what & HOST_BUFFERS) t->ops->download(t->host_buffers, model_buffers(t->model), sizeof(float) * model_num_buffers(t->model));
    if (what & HOST_STATE) t->ops->download(t->host_state, t->opt->state, sizeof(float) * n_state(t));
}

static void from_host(Trainer *t, int what) {
    if (what & HOST_PARAMS) t->ops->upload(model_params(t->model), t->host_params, sizeof(float) * model_num_params(t->model));
    if (what & HOST_BUFFERS) t->ops->upload(model_buffers(t->model), t->host_buffers, sizeof(float) * model_num_buffers(t->model));
    if (what & HOST_STATE) t->ops->upload(t->opt->state, t->host_state, sizeof(float) * n_state(t));
}

// Every rank takes rank 0's values of `what` (HOST_* bits).
static int broadcast_from_rank0(Trainer *t, int what, const char *why) {
    to_host(t, what);
    if (((what & HOST_PARAMS) && comm_broadcast(t->comm, t->host_params, sizeof(float) * model_num_params(t->model), 0)) ||
        ((what & HOST_BUFFERS) && comm_broadcast(t->comm, t->host_buffers, sizeof(float) * model_num_buffers(t->model), 0)) ||
        ((what & HOST_STATE) && comm_broadcast(t->comm, t->host_state, sizeof(float) * n_state(t), 0))) {
        snprintf(t->err, sizeof t->err, "broadcast of %s: %s", why, comm_error(t->comm));
        return -1;
    }
    from_host(t, what);
    return 0;
}

static void optimizer_step(Trainer *t, float lr) {
    if (t->gpu) ops_cuda_optim_step(t->opt, t->opt->state, model_params(t->model), model_grads(t->model), lr);
    else optim_step(t->opt, model_params(t->model), model_grads(t->model), lr);
}

// The first CUDA error since ops_cuda_init ends the run (exit 1) with its message.
static int cuda_failed(Trainer *t, const char *when, int epoch, long step) {
    const char *e = t->gpu ? ops_cuda_error() : NULL;
    if (!e) return 0;
    snprintf(t->err, sizeof t->err, "CUDA error %s (epoch %d, step %ld): %s", when, epoch + 1, step, e);
    return 1;
}

// The reducer's DdpScaleFn on the GPU: the averaging (and fp16 unscaling) kernel, on device memory.
static int gpu_scale_grads(void *ctx, float *g, size_t n, float a) {
    (void)ctx;
    return ops_cuda_unscale_check(g, n, a);
}

// GPU gradients without the bucketed reducer (one rank, or --comm mpi): sum them over the ranks
// through a host copy (MPI cannot read device memory), then scale them by 1/world (and by 1/loss
// scale with fp16) in one pass that also finds inf/nan. With NCCL the DdpReducer does all this.
// Returns 0, 1 when a gradient is not finite (fp16: skip the step), -1 on a communication error.
static int gpu_finish_grads(Trainer *t) {
    size_t n = model_num_params(t->model);
    float *g = model_grads(t->model);
    if (t->world > 1) {
        double c0 = run_now_s();
        if (!t->host_grads && !(t->host_grads = malloc(sizeof(float) * (n ? n : 1)))) {
            snprintf(t->err, sizeof t->err, "out of host memory for the gradients");
            return -1;
        }
        t->ops->download(t->host_grads, g, sizeof(float) * n);
        int rc = comm_allreduce_sum_f32(t->comm, t->host_grads, n);
        if (!rc) t->ops->upload(g, t->host_grads, sizeof(float) * n);
        if (rc) { snprintf(t->err, sizeof t->err, "gradient allreduce: %s", comm_error(t->comm)); return -1; }
        double c1 = run_now_s();
        t->gpu_ddp.exposed_s += c1 - c0; t->gpu_ddp.comm_s += c1 - c0;
        t->gpu_ddp.bytes += (double)n * sizeof(float); t->gpu_ddp.steps++;
    }
    float inv = t->world > 1 ? 1.0f / (float)t->world : 1.0f;
    if (t->prec == GPU_FP16) inv /= t->scaler.scale;
    if (inv == 1.0f && t->prec != GPU_FP16) return 0;   // fp16 at scale 1 still needs the inf/nan check
    int bad = ops_cuda_unscale_check(g, n, inv);
    return t->prec == GPU_FP16 ? bad : 0;
}

// Next training batch, staged into the backend's memory; NULL with t->err on a loader error.
static const Batch *next_batch(Trainer *t, double *wait) {
    double w = 0;
    const Batch *b = loader_next(t->train_ld, &w);
    *wait += w;
    if (!b) {
        snprintf(t->err, sizeof t->err, "%s", loader_error(t->train_ld)[0] ? loader_error(t->train_ld)
                                                                          : "train loader ended early");
        return NULL;
    }
    const Batch *s = stage_put(t->stage, b);
    if (!s) snprintf(t->err, sizeof t->err, "batch of %d samples does not fit the staging buffers", b->n);
    return s;
}

static int save_checkpoint(Trainer *t, int epoch, long next_batch, long global_step, double loss_sum,
                           double loss_count) {
    if (t->rank != 0 || !t->rd) return 0;
    CkptHeader h;
    memset(&h, 0, sizeof h);
    h.n_params = model_num_params(t->model);
    h.n_buffers = model_num_buffers(t->model);
    h.n_opt_state = n_state(t);
    h.seed = t->cfg->seed;
    h.epoch = epoch;
    h.next_batch = next_batch;
    h.global_step = global_step;
    h.opt_kind = t->opt->kind;
    h.opt_steps = t->opt->steps;
    h.loss_sum = loss_sum;
    h.loss_count = loss_count;
    h.best_metric = t->best;
    h.wall_s = wall(t);
    t->ckpt_wall = h.wall_s;
    if (t->prec == GPU_FP16) {   // a resumed fp16 run goes on at this scale, not at 65536 again
        h.loss_scale = t->scaler.scale;
        h.loss_scale_good_steps = t->scaler.good_steps;
        h.skipped_steps = t->scaler.skipped;
    }
    snprintf(h.tag, sizeof h.tag, "%s", t->tag);
    to_host(t, HOST_PARAMS | HOST_BUFFERS | HOST_STATE);
    if (ckpt_save(t->ckpt_path, &h, t->host_params, t->host_buffers, t->host_state, t->err, sizeof t->err))
        return -1;
    return 0;
}

static void write_progress(Trainer *t, int epoch, long global_step, double step_time) {
    if (t->rank != 0 || !t->rd) return;
    long left = t->total_steps - global_step;
    json_t *p = json_pack("{s:i, s:i, s:I, s:I, s:f, s:f}", "epoch", epoch, "epochs", t->epochs,
                          "step", (json_int_t)global_step, "steps", (json_int_t)t->total_steps,
                          "eta_s", left > 0 ? left * step_time : 0.0, "wall_s", wall(t));
    char e[512];
    if (rundir_write_json(t->rd, "progress.json", p, e, sizeof e)) fprintf(stderr, "segx-train: warning: %s\n", e);
    json_decref(p);
}

// Evaluation over this rank's share of the test split; sums are all-reduced by the caller.
static int evaluate(Trainer *t, int epoch, double sums[2]) {
    sums[0] = sums[1] = 0;
    confmat_reset(&t->cm);
    if (!t->eval_ld && !(t->pipe.crop_h && t->eval_ds)) return 0;
    // Ranks' BN running statistics drift apart (each sees its own batches); evaluate rank 0's, as
    // PyTorch DDP does by broadcasting buffers.
    if (t->world > 1 && model_num_buffers(t->model) > 0 && broadcast_from_rank0(t, HOST_BUFFERS, "BN buffers"))
        return -1;
    if (t->pipe.crop_h) {   // images of any size, each at its own resolution
        long lim = t->cfg->eval_limit > 0 ? t->cfg->eval_limit : 0;
        if (seg_eval_images(t->model, t->eval_ds, &t->seg, t->rank, t->world, lim, &t->cm, sums, t->err, sizeof t->err))
            return -1;
        return cuda_failed(t, "during evaluation", epoch, 0) ? -1 : 0;
    }
    if (loader_begin(t->eval_ld, epoch, 0, t->err, sizeof t->err)) return -1;
    const Batch *b;
    size_t hw = t->eval_ds->segmentation ? (size_t)t->eval_ds->height * t->eval_ds->width : 1;
    while ((b = loader_next(t->eval_ld, NULL))) {
        const float *logits = model_forward(t->model, b->x, b->n, 0);
        long counted = 0;
        float loss = model_loss(t->model, b->y, 1.0f, &counted);
        sums[0] += (double)loss * counted;
        sums[1] += counted;
        metrics_argmax(logits, b->n, t->eval_ds->classes, hw, t->pred);
        confmat_add(&t->cm, b->y, t->pred, (size_t)b->n * hw);
    }
    if (loader_error(t->eval_ld)[0]) {
        snprintf(t->err, sizeof t->err, "%s", loader_error(t->eval_ld));
        return -1;
    }
    if (cuda_failed(t, "during evaluation", epoch, 0)) return -1;
    loader_end(t->eval_ld);
    return 0;
}

static int allreduce(Trainer *t, double *buf, size_t n) {
    if (t->world == 1) return 0;
    if (comm_allreduce_sum_f64(t->comm, buf, n)) {
        snprintf(t->err, sizeof t->err, "allreduce of metrics: %s", comm_error(t->comm));
        return -1;
    }
    return 0;
}

static int save_params_file(Trainer *t) {
    const char *path = t->cfg->save_params;
    if (!path || t->rank != 0) return 0;
    size_t n = model_num_params(t->model);
    to_host(t, HOST_PARAMS);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(t->host_params, sizeof(float), n, f) != n || fclose(f) != 0) {
        snprintf(t->err, sizeof t->err, "--save-params %s: cannot write the parameters", path);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------

// How many ranks a launcher started (mpirun, srun), 1 without one.
static int launched_world(void) {
    const char *w = getenv("OMPI_COMM_WORLD_SIZE");
    if (!w) w = getenv("SLURM_STEP_NUM_TASKS");
    return w && atoi(w) > 1 ? atoi(w) : 1;
}

// --device cuda: local rank r opens visible device r % count, with the --precision compute type.
// A GPU that cannot be opened is an unavailable device (exit 2).
static int setup_cuda(Trainer *t) {
    const TrainConfig *c = t->cfg;
    char why[512] = "";
    int n = gpu_probe(why, sizeof why);
    if (n <= 0) {
        snprintf(t->err, sizeof t->err, "--device cuda: no usable CUDA device: %s", why[0] ? why : "none found");
        return TRAIN_EXIT_USAGE;
    }
    t->device = comm_local_rank(t->comm) % n;
    if (ops_cuda_init(t->device, why, sizeof why)) {
        snprintf(t->err, sizeof t->err, "--device cuda: %s", why);
        return TRAIN_EXIT_USAGE;
    }
    t->gpu = 1;
    if (gpu_precision_parse(c->precision ? c->precision : "fp32", &t->prec) ||
        ops_cuda_set_precision(t->prec, why, sizeof why)) {
        snprintf(t->err, sizeof t->err, "--precision %s: %s", c->precision, why);
        return TRAIN_EXIT_USAGE;
    }
    if (t->prec == GPU_FP16) loss_scaler_init(&t->scaler, 0);
    return TRAIN_EXIT_OK;
}

static json_t *gpu_env_object(const Trainer *t) {
    GpuEnv e;
    gpu_env(&e, t->device);
    char buf[2048];
    json_t *o = gpu_env_json(&e, buf, sizeof buf) < 0 ? NULL : json_loads(buf, 0, NULL);
    if (!o) return json_null();
    json_object_set_new(o, "device_index", json_integer(t->device));
    return o;
}

// --reducer bucket|fused|per-tensor over the model's one gradient buffer (trainer/dist/comm.h).
static int create_reducer(Trainer *t, size_t np) {
    const TrainConfig *c = t->cfg;
    int nt;
    const ModelTensor *ts = model_tensors(t->model, &nt);
    size_t *off = malloc(sizeof(size_t) * (nt > 0 ? (size_t)nt : 1));
    if (!off) { snprintf(t->err, sizeof t->err, "out of memory"); return -1; }
    for (int i = 0; i < nt; i++) off[i] = ts[i].offset;
    DdpConfig dc = { .kind = c->reducer, .bucket_mb = c->bucket_mb, .fusion_mb = c->fusion_mb, .tensor_off = off,
                     .ntensors = nt };
    int rc = ddp_create_cfg(t->comm, model_grads(t->model), np, &dc, &t->ddp, t->err, sizeof t->err);
    free(off);
    if (!rc) log_rank0(t, "reducer %s: %d allreduce(s) per step, allreduce algorithm %s", ddp_kind(t->ddp),
                       ddp_num_buckets(t->ddp), comm_allreduce_algo(t->comm));
    return rc;
}

// --profile PATH: the Chrome trace; rank r > 0 writes PATH.rank<r> beside rank 0's PATH.
static int open_profile(Trainer *t) {
    const TrainConfig *c = t->cfg;
    char path[4200];
    if (t->rank > 0) snprintf(path, sizeof path, "%s.rank%d", c->profile, t->rank);
    else snprintf(path, sizeof path, "%s", c->profile);
    char dir[4200];  // ranks may get here before rank 0 has created the run dir
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (run_mkdir_p(dir, t->err, sizeof t->err)) return TRAIN_EXIT_USAGE;
    }
    if (trace_open(path, t->rank, &t->trace, t->err, sizeof t->err)) return TRAIN_EXIT_USAGE;
    // On the CPU every op of the model is timed too (lane "ops"); GPU ops run asynchronously,
    // so host timings of their calls would measure launches, not work: phases only there.
    if (!t->gpu) t->ops = ops_traced(t->ops, t->trace);
    return TRAIN_EXIT_OK;
}

// Phase comm: the communicator (rank, world), the device and its op table, threads, --profile.
static int setup_comm(Trainer *t) {
    const TrainConfig *c = t->cfg;
    int cuda = c->device && strcmp(c->device, "cuda") == 0;
    // on GPUs data parallel means NCCL, bootstrapped through MPI or MASTER_ADDR/PORT
    const char *comm = cuda && strcmp(c->comm, "auto") == 0 && launched_world() > 1 ? "nccl" : c->comm;
    if (comm_create_algo(comm, c->allreduce_algo, &t->comm, t->err, sizeof t->err)) return TRAIN_EXIT_USAGE;
    t->rank = comm_rank(t->comm);
    t->world = comm_world(t->comm);
    if (cuda) {
        int rc = setup_cuda(t);
        if (rc) return rc;
    }
    t->ops = t->gpu ? ops_cuda() : ops_cpu();
    model_set_threads(c->threads);
    return c->profile ? open_profile(t) : TRAIN_EXIT_OK;
}

// Phase data: the train and test splits and the segmentation pipeline; *in_h x *in_w is the
// model's input (the crop, or the dataset's one image size).
static int setup_data(Trainer *t, int *in_h, int *in_w) {
    const TrainConfig *c = t->cfg;
    char *err = t->err;
    size_t el = sizeof t->err;
    DataOptions dopt = { .data_dir = c->data_dir, .in_channels = c->in_channels, .classes = c->classes,
                         .image_size = c->image_size, .segmentation = model_name_is_segmentation(c->model),
                         .seed = c->seed, .verify = c->check_data };
    dopt.pad_to = c->pad_to;   // --pad-to: e.g. fashion-mnist as 32x32 for the CIFAR networks
    long per_step = (long)c->batch * t->world * c->accum_steps;
    dopt.synthetic_n = c->train_limit > 0 ? c->train_limit : c->steps > 0 ? c->steps * per_step : 1024;
    if (dataset_open(c->dataset, SPLIT_TRAIN, &dopt, &t->train_ds, err, el)) return TRAIN_EXIT_ERROR;
    dopt.synthetic_n = c->eval_limit > 0 ? c->eval_limit : 2L * c->batch * t->world;
    if (c->eval_limit != 0 && dataset_open(c->dataset, SPLIT_TEST, &dopt, &t->eval_ds, err, el))
        return TRAIN_EXIT_ERROR;
    if (seg_setup(c, t->train_ds, &t->pipe, &t->seg, in_h, in_w, err, el)) return TRAIN_EXIT_USAGE;
    return TRAIN_EXIT_OK;
}

// Phase model: the memory plan (CPU: a batch that cannot fit is said before it is allocated and
// OOM-killed), the model, its seeded initialisation and --init weights.
static int setup_model(Trainer *t, int in_h, int in_w) {
    const TrainConfig *c = t->cfg;
    char *err = t->err;
    size_t el = sizeof t->err;
    ModelConfig mc = { .name = c->model, .in_channels = t->train_ds->channels, .classes = t->train_ds->classes,
                       .height = in_h, .width = in_w, .base_width = c->width, .backbone = c->backbone,
                       .batch_norm = c->batch_norm, .max_batch = c->batch };
    if (!t->gpu) {
        OptKind pk;
        optim_parse(c->optimizer, &pk);
        size_t pix = (size_t)in_h * in_w;   // a sample as the loader hands it over: the crop, not 0 x 0 for mixed sizes
        MemRun mr = { .batch = c->batch, .workers = c->workers, .has_eval = t->eval_ds && !t->pipe.crop_h,
                      .optim_slots = optim_slots(pk), .sample_floats = (size_t)t->train_ds->channels * pix,
                      .label_ints = t->train_ds->segmentation ? pix : 1 };
        if (t->eval_ds && t->pipe.crop_h) {   // seg_eval.c: each image at its own size, the largest planned
            mr.eval_images = t->seg.slide ? MEM_EVAL_IMAGES_SLIDE : MEM_EVAL_IMAGES_WHOLE;
            mr.eval_h = t->eval_ds->height ? t->eval_ds->height : t->eval_ds->max_height;
            mr.eval_w = t->eval_ds->width ? t->eval_ds->width : t->eval_ds->max_width;
        }
        int mrc = memplan_check(&mc, &mr, err, el);
        if (mrc < 0) return TRAIN_EXIT_USAGE;
        if (mrc > 0 && t->rank == 0) fprintf(stderr, "segx-train: warning: %s\n", err);
    }
    if (model_create_on(&mc, t->ops, &t->model, err, el)) return TRAIN_EXIT_USAGE;
    if (model_is_segmentation(t->model) != t->train_ds->segmentation) {
        snprintf(err, el, "--model %s is a %s model but --dataset %s has %s labels", c->model,
                 model_is_segmentation(t->model) ? "segmentation" : "classification", c->dataset,
                 t->train_ds->segmentation ? "per-pixel" : "per-image");
        return TRAIN_EXIT_USAGE;
    }
    model_init(t->model, c->seed);
    if (c->init && weights_load(t->model, c->init, c->init_prefix, c->init_skip, t->rank == 0 ? stderr : NULL, NULL,
                                err, el))
        return TRAIN_EXIT_USAGE;
    return TRAIN_EXIT_OK;
}

// Phase optimiser: its state in the backend's memory (zero-filled by ops->alloc) and the host copies.
static int setup_optimizer(Trainer *t) {
    const TrainConfig *c = t->cfg;
    OptKind ok;
    optim_parse(c->optimizer, &ok);
    size_t np = model_num_params(t->model);
    float *state = t->ops->alloc(sizeof(float) * optim_slots(ok) * (np ? np : 1));
    if (!state) {
        snprintf(t->err, sizeof t->err, "out of %s memory for the %s state (%d x %zu floats)", t->ops->name,
                 c->optimizer, optim_slots(ok), np);
        return TRAIN_EXIT_ERROR;
    }
    if (optim_create_on(ok, np, (float)c->momentum, (float)c->weight_decay, state, &t->opt, t->err, sizeof t->err)) {
        t->ops->free(state);
        return TRAIN_EXIT_ERROR;
    }
    return host_alloc(t) ? TRAIN_EXIT_ERROR : TRAIN_EXIT_OK;
}

// Phase data parallel: every rank starts from rank 0's parameters and BN buffers; the reducer.
static int setup_ddp(Trainer *t) {
    if (t->world <= 1) return TRAIN_EXIT_OK;
    if (broadcast_from_rank0(t, HOST_PARAMS | HOST_BUFFERS, "initial parameters")) return TRAIN_EXIT_ERROR;
    // bucket allreduces overlap backward on the CPU (MPI, host memory) and on the GPU (NCCL
    // reduces device memory in place; the averaging runs as a kernel). MPI cannot read device
    // memory, so --device cuda --comm mpi reduces a host copy after backward (gpu_finish_grads).
    int nccl = strcmp(comm_kind(t->comm), "nccl") == 0;
    if ((!t->gpu || nccl) && create_reducer(t, model_num_params(t->model))) return TRAIN_EXIT_ERROR;
    if (t->gpu && t->ddp) ddp_set_scale_fn(t->ddp, gpu_scale_grads, NULL);
    if (t->cfg->sync_bn) model_set_sync_bn(t->model, sync_bn_allreduce, t->comm);
    return TRAIN_EXIT_OK;
}

// Phase loaders: the train loader and its staging buffers; the eval loader (not with --crop:
// seg_eval_images reads each image at its own size) and the confusion matrix.
static int setup_loaders(Trainer *t, int in_h, int in_w) {
    const TrainConfig *c = t->cfg;
    char *err = t->err;
    size_t el = sizeof t->err;
    LoaderConfig lc = { .batch = c->batch, .workers = c->workers, .rank = t->rank, .world = t->world,
                        .seed = c->seed, .shuffle = 1, .augment = c->augment, .drop_last = 1,
                        .limit = c->train_limit, .pipe = t->pipe.crop_h ? &t->pipe : NULL };
    if (loader_create(t->train_ds, &lc, &t->train_ld, err, el)) return TRAIN_EXIT_ERROR;
    size_t pix = (size_t)in_h * in_w;
    if (stage_create(t->ops, c->batch, (size_t)t->train_ds->channels * pix, t->train_ds->segmentation ? pix : 1,
                     &t->stage, err, el))
        return TRAIN_EXIT_ERROR;
    if (t->eval_ds && !t->pipe.crop_h) {
        LoaderConfig ec = lc;
        ec.shuffle = 0; ec.augment = 0; ec.drop_last = 0;
        ec.limit = c->eval_limit > 0 ? c->eval_limit : 0;
        if (loader_create(t->eval_ds, &ec, &t->eval_ld, err, el)) return TRAIN_EXIT_ERROR;
        size_t hw = t->eval_ds->segmentation ? (size_t)t->eval_ds->height * t->eval_ds->width : 1;
        t->pred = malloc(sizeof(int32_t) * hw * c->batch);
        if (!t->pred) { snprintf(err, el, "out of memory"); return TRAIN_EXIT_ERROR; }
    }
    if (confmat_init(&t->cm, t->train_ds->classes)) { snprintf(err, el, "out of memory"); return TRAIN_EXIT_ERROR; }
    return TRAIN_EXIT_OK;
}

// Phase schedule: steps per epoch (accum_steps micro-batches each), epochs or --steps, the lr
// schedule and the checkpoint tag (a checkpoint of another configuration is refused).
static int setup_schedule(Trainer *t) {
    const TrainConfig *c = t->cfg;
    t->steps_per_epoch = loader_num_batches(t->train_ld) / c->accum_steps;
    if (t->steps_per_epoch < 1) {
        snprintf(t->err, sizeof t->err, "--accum-steps %d: an epoch has only %ld batches of %d on each rank",
                 c->accum_steps, loader_num_batches(t->train_ld), c->batch);
        return TRAIN_EXIT_USAGE;
    }
    t->micro_per_epoch = t->steps_per_epoch * c->accum_steps;
    if (c->steps >= 0) {
        t->total_steps = c->steps;
        t->epochs = (int)((c->steps + t->steps_per_epoch - 1) / t->steps_per_epoch);
    } else {
        t->epochs = c->epochs;
        t->total_steps = (long)c->epochs * t->steps_per_epoch;
    }
    LrKind lk;
    lr_parse(c->lr_schedule, &lk);
    t->sched = (LrSchedule){ lk, c->lr, t->total_steps, (long)llround(c->warmup_epochs * t->steps_per_epoch) };
    snprintf(t->tag, sizeof t->tag, "%s/%s/w%d/bn%d/b%d/ws%d/acc%d/%s/seed%llu", c->model, c->dataset, c->width,
             c->batch_norm, c->batch, t->world, c->accum_steps, c->optimizer, (unsigned long long)c->seed);
    return TRAIN_EXIT_OK;
}

// Phase checkpoint and run dir (rank 0 with --out): where checkpoint.bin lives, the run dir (appended
// to when --resume finds a checkpoint), env.json and GPU telemetry.
static int setup_rundir(Trainer *t) {
    const TrainConfig *c = t->cfg;
    char *err = t->err;
    size_t el = sizeof t->err;
    if (t->rank != 0 || !c->out) return TRAIN_EXIT_OK;
    snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s/checkpoint.bin", c->out);
    // only "no checkpoint" starts afresh (and truncates metrics.jsonl); an unreadable one is an error
    int appending = c->resume ? ckpt_exists(t->ckpt_path, err, el) : 0;
    if (appending < 0) return TRAIN_EXIT_ERROR;
    if (rundir_open(c->out, appending, &t->rd, err, el)) return TRAIN_EXIT_ERROR;
    json_t *extra = json_pack("{s:s, s:s, s:i, s:i, s:I}", "model", c->model, "dataset", c->dataset,
                              "batch_size", c->batch, "workers", c->workers, "params",
                              (json_int_t)model_num_params(t->model));
    if (t->gpu) {
        json_object_set_new(extra, "device", json_string("cuda"));
        json_object_set_new(extra, "precision", json_string(gpu_precision_name(t->prec)));
        json_object_set_new(extra, "gpu", gpu_env_object(t));
    }
    json_t *env = run_env_json(c->argv0, c->threads, t->world, comm_kind(t->comm), extra);
    json_decref(extra);
    int rc = rundir_write_json(t->rd, "env.json", env, err, el);
    json_decref(env);
    if (rc) return TRAIN_EXIT_ERROR;
    if (t->gpu) {   // NVML about once a second; without it the run goes on, saying why
        char path[4200], why[512];
        snprintf(path, sizeof path, "%s/gpu_telemetry.jsonl", c->out);
        if (!(t->tel = gpu_telemetry_start(path, t->device, why, sizeof why)))
            fprintf(stderr, "segx-train: warning: %s\n", why);
    }
    return TRAIN_EXIT_OK;
}

// Everything a run needs, in phase order (comm, data, model, optimiser, data parallel, loaders,
// schedule, run dir); the first failure's exit code (TRAIN_EXIT_USAGE or _ERROR) with t->err.
static int setup(Trainer *t) {
    int in_h, in_w, rc;
    if ((rc = setup_comm(t)) || (rc = setup_data(t, &in_h, &in_w)) || (rc = setup_model(t, in_h, in_w)) ||
        (rc = setup_optimizer(t)) || (rc = setup_ddp(t)) || (rc = setup_loaders(t, in_h, in_w)) ||
        (rc = setup_schedule(t)))
        return rc;
    return setup_rundir(t);
}

static void teardown(Trainer *t) {
    gpu_telemetry_stop(t->tel);
    trace_close(t->trace);
    rundir_close(t->rd);
    loader_free(t->train_ld);
    loader_free(t->eval_ld);
    dataset_free(t->train_ds);
    dataset_free(t->eval_ds);
    confmat_free(&t->cm);
    free(t->pred);
    stage_free(t->stage);
    if (t->opt) t->ops->free(t->opt->state);
    optim_free(t->opt);
    free(t->host_params); free(t->host_buffers); free(t->host_state); free(t->host_grads);
    ddp_free(t->ddp);  // before its communicator
    model_free(t->model);
    comm_free(t->comm);
    if (t->gpu) ops_cuda_shutdown();
}

// Rank 0 reads checkpoint.bin and broadcasts it, so every rank resumes from the same bytes.
static int resume(Trainer *t, CkptHeader *h) {
    memset(h, 0, sizeof *h);
    int have = 0;
    if (t->rank == 0) {
        have = t->ckpt_path[0] ? ckpt_exists(t->ckpt_path, t->err, sizeof t->err) : 0;
        if (have == 1) {
            CkptHeader want;
            memset(&want, 0, sizeof want);
            want.n_params = model_num_params(t->model);
            want.n_buffers = model_num_buffers(t->model);
            want.n_opt_state = n_state(t);
            snprintf(want.tag, sizeof want.tag, "%s", t->tag);
            if (ckpt_load(t->ckpt_path, &want, h, t->host_params, t->host_buffers, t->host_state, t->err,
                          sizeof t->err))
                have = -1;
        }
    }
    if (t->world > 1) {
        double flag = have;
        if (comm_broadcast(t->comm, &flag, sizeof flag, 0)) goto comm_fail;
        have = (int)flag;
        if (have == 1 &&
            (comm_broadcast(t->comm, h, sizeof *h, 0) ||
             comm_broadcast(t->comm, t->host_params, sizeof(float) * model_num_params(t->model), 0) ||
             comm_broadcast(t->comm, t->host_buffers, sizeof(float) * model_num_buffers(t->model), 0) ||
             comm_broadcast(t->comm, t->host_state, sizeof(float) * n_state(t), 0)))
            goto comm_fail;
    }
    if (have == 1) from_host(t, HOST_PARAMS | HOST_BUFFERS | HOST_STATE);   // the same bytes on every backend
    if (have < 0) {
        if (t->rank != 0) snprintf(t->err, sizeof t->err, "rank 0 could not load the checkpoint");
        return -1;
    }
    if (have) {
        t->opt->steps = h->opt_steps;
        t->best = h->best_metric;
        t->wall_offset = h->wall_s;
        // 0: not stored (an fp32/bf16/CPU run, or a version-1 checkpoint): the scaler starts afresh
        if (t->prec == GPU_FP16 && h->loss_scale > 0) {
            t->scaler.scale = (float)h->loss_scale;
            t->scaler.good_steps = (int)h->loss_scale_good_steps;
            t->scaler.skipped = (long)h->skipped_steps;
            log_rank0(t, "fp16 loss scale %g from the checkpoint (%lld steps skipped so far)", h->loss_scale,
                      (long long)h->skipped_steps);
        }
        log_rank0(t, "resuming from %s: epoch %lld, batch %lld, step %lld, trainer clock %.3f s", t->ckpt_path,
                  (long long)h->epoch + 1, (long long)h->next_batch, (long long)h->global_step, h->wall_s);
    } else {
        log_rank0(t, "--resume: no checkpoint in %s yet; starting from scratch", t->cfg->out ? t->cfg->out : "(no --out)");
    }
    return have;
comm_fail:
    snprintf(t->err, sizeof t->err, "broadcast of the checkpoint: %s", comm_error(t->comm));
    return -1;
}

// GPU keys of an epoch's metrics line: NVML averages over the epoch (rank 0's device), the arena,
// and the fp16 loss scale.
static void gpu_epoch_metrics(Trainer *t, json_t *o) {
    json_object_set_new(o, "precision", json_string(gpu_precision_name(t->prec)));
    OpsCudaStats st;
    ops_cuda_stats(&st);
    json_object_set_new(o, "gpu_arena_mib", json_real((double)st.arena_bytes / 1048576.0));
    if (t->prec == GPU_FP16) {
        json_object_set_new(o, "loss_scale", json_real(t->scaler.scale));
        json_object_set_new(o, "skipped_steps", json_integer(t->scaler.skipped));
    }
    GpuSample avg;
    int n = gpu_telemetry_epoch_avg(t->tel, &avg);
    char buf[512] = "{";
    if (n <= 0 || gpu_sample_json(&avg, buf + 1, sizeof buf - 2) < 0) return;
    strcat(buf, "}");
    json_t *g = json_loads(buf, 0, NULL);
    if (g) json_object_update(o, g);
    json_decref(g);
    json_object_set_new(o, "gpu_samples", json_integer(n));
}

static json_t *epoch_metrics(Trainer *t, int epoch, long global_step, double train_loss, double lr,
                             const double ev[2], double images, double epoch_s, double data_s,
                             double compute_s, double comm_s, double eval_s, DdpStats ds) {
    json_t *o = json_object();
    json_object_set_new(o, "epoch", json_integer(epoch + 1));
    json_object_set_new(o, "step", json_integer(global_step));
    json_object_set_new(o, "wall_s", json_real(wall(t)));
    json_object_set_new(o, "train_loss", json_real(train_loss));
    if (t->eval_ds && ev[1] > 0) {
        json_object_set_new(o, "val_loss", json_real(ev[0] / ev[1]));
        if (t->eval_ds->segmentation) {
            double *pc = malloc(sizeof(double) * t->cm.k);
            double miou = confmat_miou(&t->cm, pc);
            json_object_set_new(o, "miou", json_real(miou));
            json_object_set_new(o, "pixel_acc", json_real(confmat_accuracy(&t->cm)));
            json_t *a = json_array();
            for (int i = 0; i < t->cm.k; i++) json_array_append_new(a, isnan(pc[i]) ? json_null() : json_real(pc[i]));
            json_object_set_new(o, "per_class_iou", a);
            free(pc);
        } else {
            json_object_set_new(o, "top1", json_real(confmat_accuracy(&t->cm)));
        }
    }
    json_object_set_new(o, "lr", json_real(lr));
    json_object_set_new(o, "images_per_s", json_real(epoch_s > 0 ? images / epoch_s : 0));
    json_object_set_new(o, "epoch_s", json_real(epoch_s));
    json_object_set_new(o, "data_s", json_real(data_s));
    json_object_set_new(o, "compute_s", json_real(compute_s));
    json_object_set_new(o, "comm_s", json_real(comm_s));
    json_object_set_new(o, "eval_s", json_real(eval_s));
    if (t->gpu) gpu_epoch_metrics(t, o);
    if (t->ddp || (t->gpu && t->world > 1)) {
        json_object_set_new(o, "comm_exposed_s", json_real(ds.exposed_s));
        json_object_set_new(o, "comm_total_s", json_real(ds.comm_s));
        json_object_set_new(o, "allreduce_bytes", json_real(ds.bytes));
        json_object_set_new(o, "allreduce_gbps", json_real(ds.comm_s > 0 ? ds.bytes / ds.comm_s / 1e9 : 0));
    }
    return o;
}

// The loop's position and the current epoch's sums, handed between its phases: micro_step (forward
// and backward of one micro-batch), finish_step (gradient reduction, optimizer step, progress, stop
// requests and step checkpoints), end_epoch (evaluation, metrics line, epoch checkpoint) and
// write_result (result.json).
typedef struct {
    int epoch, start_epoch, stopped;   // stopped: a signal asked to stop; checkpointed, exit 99
    long start_batch, global_step;
    double loss_sum, loss_count;       // this epoch's partial sums on this rank
    double lr, last_progress, step_time;
    double te0, data_s, compute_s, comm_s, images;   // this epoch's clock and time split
    json_t *last_metrics;              // the last epoch's metrics line (its keys go into result.json)
} Loop;

// --resume: start where checkpoint.bin left off (or at the beginning without one).
static int loop_start(Trainer *t, Loop *L) {
    memset(L, 0, sizeof *L);
    if (t->cfg->resume) {
        CkptHeader h;
        int r = resume(t, &h);
        if (r < 0) return TRAIN_EXIT_ERROR;
        if (r) {
            L->start_epoch = (int)h.epoch;
            L->start_batch = h.next_batch;
            L->global_step = h.global_step;
            // global partial sums; the epoch-end allreduce adds them up again over the ranks
            L->loss_sum = h.loss_sum / t->world;
            L->loss_count = h.loss_count / t->world;
        }
    }
    L->lr = lr_at(&t->sched, L->global_step);
    return TRAIN_EXIT_OK;
}

static void log_start(const Trainer *t) {
    const TrainConfig *c = t->cfg;
    log_rank0(t, "%s on %s: %ld train / %ld eval samples, %d rank(s) x batch %d x accum %d, %ld steps/epoch, "
              "%d epoch(s), %zu params, %d threads, comm %s", c->model, c->dataset,
              loader_num_samples(t->train_ld), t->eval_ld ? loader_num_samples(t->eval_ld) : !t->eval_ds ? 0
              : c->eval_limit > 0 && c->eval_limit < t->eval_ds->n ? c->eval_limit : t->eval_ds->n, t->world,
              c->batch, c->accum_steps, t->steps_per_epoch, t->epochs, model_num_params(t->model), c->threads,
              comm_kind(t->comm));
}

// micro_step: forward, loss scaled by 1/accum_steps and backward of micro-batch mb (gradients are
// zeroed on a step's first micro-batch; the DDP hook is installed on its last). t1: when compute began.
static int micro_step(Trainer *t, Loop *L, const Batch *b, long mb, double t1, float *loss_out) {
    int K = t->cfg->accum_steps, last = mb % K == K - 1;
    if (mb % K == 0) model_zero_grad(t->model);
    if (t->ddp) model_set_grads_ready_hook(t->model, last ? ddp_grads_ready : NULL, last ? t->ddp : NULL);
    stage_wait(t->stage, b);
    model_forward_dev(t->model, b->x, b->n, 1);
    float gscale = t->prec == GPU_FP16 ? t->scaler.scale / K : 1.0f / K;
    float loss = model_loss_dev(t->model, b->y, gscale, NULL);
    if (cuda_failed(t, "in forward", L->epoch, L->global_step)) return TRAIN_EXIT_ERROR;
    double t2 = run_now_s();
    trace_event(t->trace, "forward", "compute", t1, t2, 1, L->global_step);
    model_backward(t->model);
    double t3 = run_now_s();
    trace_event(t->trace, "backward", "compute", t2, t3, 1, L->global_step);
    L->compute_s += t3 - t1;
    L->loss_sum += loss;
    L->loss_count += 1;
    L->images += (double)b->n * t->world;
    if (!isfinite(loss)) {
        snprintf(t->err, sizeof t->err, "loss is %f at epoch %d step %ld (lr %g): training diverged", loss,
                 L->epoch + 1, L->global_step, L->lr);
        return TRAIN_EXIT_ERROR;
    }
    *loss_out = loss;
    return TRAIN_EXIT_OK;
}

// The step's gradients summed over the ranks and averaged (the reducer, or gpu_finish_grads);
// *skip: fp16 found inf/nan gradients, so the step is skipped and the loss scale halved.
static int reduce_grads(Trainer *t, Loop *L, int *skip) {
    int nonfinite = 0;
    *skip = 0;
    if (t->ddp) {
        double c0 = run_now_s();
        if (ddp_finish_unscale(t->ddp, t->prec == GPU_FP16 ? t->scaler.scale : 1.0f, &nonfinite)) {
            snprintf(t->err, sizeof t->err, "gradient allreduce: %s", comm_error(t->comm));
            return TRAIN_EXIT_ERROR;
        }
        double c1 = run_now_s();
        L->comm_s += c1 - c0;
        trace_event(t->trace, "comm", "comm", c0, c1, 1, L->global_step);
    }
    if (t->gpu) {
        double c0 = run_now_s();
        int r = t->ddp ? nonfinite : gpu_finish_grads(t);   // the reducer already unscaled
        if (r < 0) return TRAIN_EXIT_ERROR;
        if (t->prec == GPU_FP16) *skip = loss_scaler_update(&t->scaler, r);
        double c1 = run_now_s();
        L->comm_s += c1 - c0;
        if (t->world > 1 && !t->ddp) trace_event(t->trace, "comm", "comm", c0, c1, 1, L->global_step);
    }
    return TRAIN_EXIT_OK;
}

// Stop requests (every rank must stop at the same step) and --checkpoint-every Ns after a step;
// sets L->stopped when a signal asked to stop. mb: the micro-batch just done.
static int check_stop(Trainer *t, Loop *L, long mb) {
    const TrainConfig *c = t->cfg;
    double sig = signals_pending();
    if (allreduce(t, &sig, 1)) return TRAIN_EXIT_ERROR;
    int ckpt_now = c->checkpoint_every > 0 && c->checkpoint_in_steps && L->global_step % c->checkpoint_every == 0;
    if (sig != 0 || ckpt_now) {  // the partial loss sums of all ranks go into rank 0's file
        double part[2] = { L->loss_sum, L->loss_count };
        if (allreduce(t, part, 2)) return TRAIN_EXIT_ERROR;
        if (save_checkpoint(t, L->epoch, mb + 1, L->global_step, part[0], part[1])) return TRAIN_EXIT_ERROR;
    }
    if (sig != 0) {
        progress_bar_done();
        write_progress(t, L->epoch + 1, L->global_step, L->step_time);
        // the clock is logged as stored, so a test can chain runs: the next run resumes at it
        log_rank0(t, "stop requested by signal: checkpointed at step %ld (trainer clock %.3f s) in %s; exiting with %d (requeue with --resume)",
                  L->global_step, t->ckpt_wall, t->ckpt_path[0] ? t->ckpt_path : "(no --out: nothing saved)", TRAIN_EXIT_REQUEUE);
        L->stopped = 1;
    }
    return TRAIN_EXIT_OK;
}

// finish_step: after a step's last micro-batch (mb, batch b, begun at ts, loss): reduce the
// gradients, the optimizer step at the scheduled lr, then progress and stop requests.
static int finish_step(Trainer *t, Loop *L, const Batch *b, long mb, double ts, float loss) {
    int K = t->cfg->accum_steps, skip;
    if (reduce_grads(t, L, &skip)) return TRAIN_EXIT_ERROR;
    double o0 = run_now_s();
    L->lr = lr_at(&t->sched, L->global_step);
    if (!skip) optimizer_step(t, (float)L->lr);
    if (cuda_failed(t, "in backward or the optimizer step", L->epoch, L->global_step)) return TRAIN_EXIT_ERROR;
    double o1 = run_now_s();
    trace_event(t->trace, "optimizer", "compute", o0, o1, 1, L->global_step);
    L->compute_s += o1 - o0;
    L->global_step++;
    L->step_time = o1 - ts;  // of the last micro-batch; good enough for the ETA
    if (t->steps_this_process++ > 0) {
        t->images_after_first += (double)b->n * t->world * K;
        t->time_after_first += (o1 - ts) * K;
        L->step_time = t->time_after_first / (t->steps_this_process - 1);
    }
    if (t->rank == 0) progress_bar(L->epoch + 1, t->epochs, L->global_step, t->total_steps,
                                   (t->total_steps - L->global_step) * L->step_time, loss);
    if (o1 - L->last_progress > 2) {
        write_progress(t, L->epoch + 1, L->global_step, L->step_time);
        L->last_progress = o1;
    }
    return check_stop(t, L, mb);
}

// One epoch's micro-batches from `first` on, up to total_steps or a stop request. Each batch is
// staged one ahead: on the GPU its upload overlaps the current step's compute.
static int train_epoch(Trainer *t, Loop *L, long first) {
    int K = t->cfg->accum_steps;
    if (loader_begin(t->train_ld, L->epoch, first, t->err, sizeof t->err)) return TRAIN_EXIT_ERROR;
    const Batch *ahead = NULL;   // the next micro-batch, already staged
    for (long mb = first; mb < t->micro_per_epoch && L->global_step < t->total_steps; mb++) {
        double ts = run_now_s(), wait = 0;
        const Batch *b = ahead ? ahead : next_batch(t, &wait);
        if (!b) return TRAIN_EXIT_ERROR;
        ahead = mb + 1 < t->micro_per_epoch ? next_batch(t, &wait) : NULL;
        if (!ahead && mb + 1 < t->micro_per_epoch) return TRAIN_EXIT_ERROR;
        double t1 = run_now_s();
        L->data_s += wait;
        trace_event(t->trace, "data_wait", "data", ts, t1, 1, L->global_step);
        ops_trace_set_step(L->global_step);
        float loss;
        if (micro_step(t, L, b, mb, t1, &loss)) return TRAIN_EXIT_ERROR;
        if (mb % K != K - 1) continue;
        if (finish_step(t, L, b, mb, ts, loss)) return TRAIN_EXIT_ERROR;
        if (L->stopped) return TRAIN_EXIT_OK;
    }
    loader_end(t->train_ld);
    progress_bar_done();
    return TRAIN_EXIT_OK;
}

// end_epoch: loss sums over the ranks, evaluation (--eval-every N: after every N-th epoch and after
// the last one, whose metrics go to result.json) as global sums and one confusion matrix, the
// metrics.jsonl line, the best metric and --checkpoint-every N (epochs). te1: the epoch's training end.
static int end_epoch(Trainer *t, Loop *L, double te1) {
    const TrainConfig *c = t->cfg;
    int epoch = L->epoch;
    double ev[2] = { 0, 0 };
    int eval_now = (epoch + 1) % (c->eval_every > 0 ? c->eval_every : 1) == 0 || epoch + 1 == t->epochs;
    if (eval_now && evaluate(t, epoch, ev)) return TRAIN_EXIT_ERROR;
    if (!eval_now) confmat_reset(&t->cm);
    double sums[4] = { L->loss_sum, L->loss_count, ev[0], ev[1] };
    if (allreduce(t, sums, 4) || allreduce(t, t->cm.m, (size_t)t->cm.k * t->cm.k)) return TRAIN_EXIT_ERROR;
    double te2 = run_now_s();
    trace_event(t->trace, "eval", "eval", te1, te2, 1, L->global_step);
    ev[0] = sums[2]; ev[1] = sums[3];
    double train_loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    DdpStats ds = { 0 };
    if (t->ddp) ds = ddp_stats(t->ddp);
    else if (t->gpu) ds = t->gpu_ddp;
    json_decref(L->last_metrics);
    L->last_metrics = epoch_metrics(t, epoch, L->global_step, train_loss, L->lr, ev, L->images, te1 - L->te0,
                                    L->data_s, L->compute_s, L->comm_s, te2 - te1, ds);
    if (t->eval_ds && ev[1] > 0) {
        double m = json_real_value(json_object_get(L->last_metrics, t->eval_ds->segmentation ? "miou" : "top1"));
        if (m > t->best) t->best = m;
    }
    if (t->rank == 0) {
        if (t->rd && rundir_append_metrics(t->rd, L->last_metrics, t->err, sizeof t->err)) return TRAIN_EXIT_ERROR;
        char *line = json_dumps(L->last_metrics, JSON_COMPACT | JSON_REAL_PRECISION(5));
        fprintf(stderr, "segx-train: %s\n", line);
        free(line);
    }
    write_progress(t, epoch + 1, L->global_step, L->step_time);
    if (c->checkpoint_every > 0 && !c->checkpoint_in_steps && (epoch + 1) % c->checkpoint_every == 0)
        if (save_checkpoint(t, epoch + 1, 0, L->global_step, 0, 0)) return TRAIN_EXIT_ERROR;
    return TRAIN_EXIT_OK;
}

// write_result: result.json of a completed run (rank 0, with --out): the configuration, throughput
// after the first step and the last epoch's metrics.
static int write_result(Trainer *t, const Loop *L) {
    const TrainConfig *c = t->cfg;
    if (t->rank != 0 || !t->rd) return TRAIN_EXIT_OK;
    json_t *r = json_object();
    json_object_set_new(r, "status", json_string("completed"));
    json_object_set_new(r, "model", json_string(c->model));
    json_object_set_new(r, "dataset", json_string(c->dataset));
    json_object_set_new(r, "optimizer", json_string(c->optimizer));
    json_object_set_new(r, "lr", json_real(c->lr));
    json_object_set_new(r, "lr_schedule", json_string(c->lr_schedule));
    json_object_set_new(r, "batch_size", json_integer(c->batch));
    json_object_set_new(r, "global_batch", json_integer((json_int_t)c->batch * t->world * c->accum_steps));
    json_object_set_new(r, "accum_steps", json_integer(c->accum_steps));
    json_object_set_new(r, "ranks", json_integer(t->world));
    json_object_set_new(r, "reducer", json_string(t->ddp ? ddp_kind(t->ddp) : "none"));
    json_object_set_new(r, "allreduce_algo", json_string(comm_allreduce_algo(t->comm)));
    json_object_set_new(r, "threads", json_integer(c->threads));
    json_object_set_new(r, "seed", json_integer((json_int_t)c->seed));
    json_object_set_new(r, "epochs", json_integer(t->epochs));
    json_object_set_new(r, "steps", json_integer(L->global_step));
    json_object_set_new(r, "params", json_integer((json_int_t)model_num_params(t->model)));
    json_object_set_new(r, "wall_s", json_real(wall(t)));
    json_object_set_new(r, "images_per_s",
                        t->time_after_first > 0 ? json_real(t->images_after_first / t->time_after_first) : json_null());
    if (t->gpu) {
        json_object_set_new(r, "device", json_string("cuda"));
        json_object_set_new(r, "precision", json_string(gpu_precision_name(t->prec)));
        if (t->tel) json_object_set_new(r, "gpu_peak_mem_mib", json_real(gpu_telemetry_peak_mem_mib(t->tel)));
        if (t->prec == GPU_FP16) json_object_set_new(r, "skipped_steps", json_integer(t->scaler.skipped));
    }
    if (L->last_metrics) {
        const char *keys[] = { "train_loss", "val_loss", "miou", "pixel_acc", "top1", "per_class_iou" };
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            json_t *v = json_object_get(L->last_metrics, keys[i]);
            if (v) json_object_set(r, keys[i], v);
        }
    }
    if (t->eval_ds && L->last_metrics)
        json_object_set_new(r, t->eval_ds->segmentation ? "best_miou" : "best_top1", json_real(t->best));
    int rc = rundir_write_json(t->rd, "result.json", r, t->err, sizeof t->err);
    json_decref(r);
    return rc ? TRAIN_EXIT_ERROR : TRAIN_EXIT_OK;
}

// The run's outputs besides the run dir: --save-params and --save-weights (rank 0).
static int save_final_weights(Trainer *t) {
    if (save_params_file(t)) return TRAIN_EXIT_ERROR;
    if (t->cfg->save_weights && t->rank == 0 && weights_save(t->model, t->cfg->save_weights, t->err, sizeof t->err))
        return TRAIN_EXIT_ERROR;
    return TRAIN_EXIT_OK;
}

static int train_loop(Trainer *t) {
    Loop L;
    if (loop_start(t, &L)) return TRAIN_EXIT_ERROR;
    log_start(t);
    signals_install();
    int rc = TRAIN_EXIT_OK;
    for (L.epoch = L.start_epoch; L.epoch < t->epochs && !L.stopped && rc == TRAIN_EXIT_OK; L.epoch++) {
        L.te0 = run_now_s();
        L.data_s = L.compute_s = L.comm_s = L.images = 0;
        if (t->ddp) ddp_stats_reset(t->ddp);
        t->gpu_ddp = (DdpStats){ 0 };
        long first = L.epoch == L.start_epoch ? L.start_batch : 0;
        if (L.epoch != L.start_epoch) L.loss_sum = L.loss_count = 0;
        rc = train_epoch(t, &L, first);
        if (rc == TRAIN_EXIT_OK && !L.stopped) rc = end_epoch(t, &L, run_now_s());
    }
    if (rc == TRAIN_EXIT_OK) rc = save_final_weights(t);
    if (rc == TRAIN_EXIT_OK) rc = L.stopped ? TRAIN_EXIT_REQUEUE : write_result(t, &L);
    json_decref(L.last_metrics);
    return rc;
}

// ---------------------------------------------------------------------------------------------

static int print_params(Trainer *t) {
    if (t->rank != 0) return TRAIN_EXIT_OK;
    int n, nb;
    const ModelTensor *ts = model_tensors(t->model, &n);
    const ModelTensor *bs = model_buffer_tensors(t->model, &nb);
    for (int i = 0; i < n; i++) {
        printf("%-40s %10zu  (", ts[i].name, ts[i].numel);
        for (int d = 0; d < ts[i].ndim; d++) printf("%s%d", d ? ", " : "", ts[i].shape[d]);
        printf(")  @%zu\n", ts[i].offset);
    }
    for (int i = 0; i < nb; i++) printf("%-40s %10zu  buffer\n", bs[i].name, bs[i].numel);
    printf("total parameters: %zu\nbuffers: %zu\n", model_num_params(t->model), model_num_buffers(t->model));
    return TRAIN_EXIT_OK;
}

static int export_dataset(const TrainConfig *c) {
    char err[2048];
    Dataset *ds;
    DataOptions o = { .data_dir = c->data_dir, .in_channels = c->in_channels, .classes = c->classes,
                      .image_size = c->image_size, .segmentation = 1, .seed = c->seed,
                      .synthetic_n = c->export_limit > 0 ? c->export_limit : 16 };
    o.pad_to = c->pad_to;
    DataSplit split = strcmp(c->export_split, "test") == 0 ? SPLIT_TEST : SPLIT_TRAIN;
    if (dataset_open(c->dataset, split, &o, &ds, err, sizeof err)) {
        fprintf(stderr, "segx-train: %s\n", err);
        return TRAIN_EXIT_ERROR;
    }
    long n = data_export(ds, c->export_dir, c->export_limit, err, sizeof err);
    dataset_free(ds);
    if (n < 0) { fprintf(stderr, "segx-train: %s\n", err); return TRAIN_EXIT_ERROR; }
    fprintf(stderr, "segx-train: wrote %ld image/mask pairs of %s (%s split) to %s/images and %s/masks\n", n,
            c->dataset, c->export_split, c->export_dir, c->export_dir);
    return TRAIN_EXIT_OK;
}

int train_run(const TrainConfig *c) {
    if (c->export_dir) return export_dataset(c);
    if (c->make_dataset) {
        char err[2048];
        long n = data_make_dataset(c->make_dataset, c->data_dir, err, sizeof err);
        if (n < 0) { fprintf(stderr, "segx-train: %s\n", err); return TRAIN_EXIT_ERROR; }
        fprintf(stderr, "segx-train: wrote %ld images with their label maps as %s\n", n, c->make_dataset);
        return TRAIN_EXIT_OK;
    }
    Trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = c;
    t.t_start = run_now_s();
    t.best = -1;
    int rc = setup(&t);
    if (rc == TRAIN_EXIT_OK) rc = c->print_params ? print_params(&t) : train_loop(&t);
    if (rc != TRAIN_EXIT_OK && rc != TRAIN_EXIT_REQUEUE)
    {
        if (t.world > 1) fprintf(stderr, "segx-train: rank %d: %s\n", t.rank, t.err[0] ? t.err : "failed");
        else fprintf(stderr, "segx-train: %s\n", t.err[0] ? t.err : "failed");
    }
    teardown(&t);
    return rc;
}
