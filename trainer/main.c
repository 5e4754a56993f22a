// trainer/main.c — the segx-train command line: flags -> TrainConfig -> train_run.
#include "config.h"
#include "trainer/train.h"       // defines: TrainConfig, train_run, TRAIN_EXIT_*
#include "trainer/evaluate.h"    // defines: evaluate_run (--evaluate)
#include "trainer/io/weights.h"  // defines: infer_run (--infer)
#include "trainer/gpu/gpu.h"     // defines: gpu_probe
#include "trainer/optim/optim.h" // defines: optim_parse, lr_parse
#include "trainer/data/data.h"   // defines: data_make_dataset_n (--make-dataset --export-limit N)

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
"usage: segx-train --model M --dataset D [options] --out RUN_DIR\n"
"\n"
"Trains one model and writes the run dir every segx trainer writes: metrics.jsonl (one line per\n"
"epoch), progress.json, result.json, env.json, checkpoint.bin. Logs go to stderr.\n"
"\n"
"model and data\n"
"  --model M                     cnn | resnet18 | unet | vgg16 | mobilenet_v2 | shufflenet_v2 |\n"
"                                densenet121 (default cnn; the last four are models_ref.py's CIFAR nets:\n"
"                                32x32 inputs, --pad-to 32 for fashion-mnist) | deeplabv3plus\n"
"  --backbone resnet18|resnet50|resnet101   deeplabv3plus's ResNet (default resnet50; torchvision's\n"
"                                names under backbone., so --init R.safetensors --init-prefix backbone.\n"
"                                starts it from a converted torchvision checkpoint)\n"
"  --width W                     unet base width (default 16)\n"
"  --no-batch-norm               drop BatchNorm layers (convs get biases)\n"
"  --dataset D                   fashion-mnist | fashion-mnist-seg | cifar10:DIR | segfolder:DIR | synthetic\n"
"                                (default fashion-mnist). segfolder:DIR reads DIR/images/*.png with\n"
"                                DIR/masks/*.png (or DIR/train/, DIR/val/; or Cityscapes leftImg8bit/ +\n"
"                                gtFine/*_labelTrainIds.png). synthetic: random bytes and labels.\n"
"                                cifar10:DIR: the python release (DIR/cifar-10-batches-py/, pickled\n"
"                                batches) or the binary one (DIR/cifar-10-batches-bin/), or their files in DIR\n"
"                                ade20k:DIR (ADEChallengeData2016: images/{training,validation}/*.jpg,\n"
"                                annotations/.../*.png; label 0 ignored, 1..150 -> 150 classes) and\n"
"                                cityscapes:DIR (leftImg8bit/ + gtFine/ *_labelTrainIds.png, or *_labelIds.png\n"
"                                mapped to the 19 train ids): JPEG or PNG of any size, with --crop\n"
"  --data-dir DIR                fashion-mnist IDX files (default /usr/share/datasets/fashion-mnist)\n"
"  --in-channels C --classes K --image-size S\n"
"                                shape of synthetic data; for real datasets they must match the data\n"
"  --train-limit N               use the first N training samples (default all)\n"
"  --eval-limit N                evaluate on the first N test samples (0: no evaluation; default all)\n"
"  --augment                     classification: random crop with 4 pixels of zero padding + horizontal\n"
"                                flip (CIFAR's standard augmentation); segmentation: horizontal flip\n"
"  --pad-to S                    zero-pad images to SxS, centred (masks: ignore label), e.g. fashion-mnist\n"
"                                --pad-to 32 for the CIFAR networks\n"
"  --workers N                   loader threads running ahead of compute (default 2; 0 = inline)\n"
"  --export-dataset DIR          write DIR/images/000000.png + DIR/masks/000000.png and exit\n"
"  --export-limit N              samples to export (default all)\n"
"  --export-split train|test     (default train)\n"
"  --make-dataset ade20k:DIR|cityscapes:DIR\n"
"                                write a small deterministic set in that layout (JPEG/PNG of mixed sizes\n"
"                                made from Fashion-MNIST pieces; 48 training + 16 validation images, or\n"
"                                --export-limit N training + N/3 validation) and exit\n"
"  --check-data                  ade20k/cityscapes: decode every image and label map before training\n"
"                                (always: every pair present, headers readable, sizes equal)\n"
"\n"
"segmentation pipeline (mmseg's; on with --crop; for ade20k:DIR, cityscapes:DIR, segfolder:DIR)\n"
"  --scale WxH                   random resize: scale WxH times a ratio from --ratio-range, keeping the\n"
"                                aspect ratio (mmseg RandomResize, e.g. 2048x512; default: no resize)\n"
"  --ratio-range LO,HI           (default 0.5,2.0)\n"
"  --crop S|HxW                  random crop of the model's input size; a crop where one class covers\n"
"                                more than --cat-max-ratio of the labelled pixels is redrawn (10 tries)\n"
"  --cat-max-ratio R             (default 0.75; 1 = off)\n"
"                                then a horizontal flip (p=0.5), padding to the crop with label 255\n"
"  --photometric                 brightness, contrast, saturation and hue jitter (PhotoMetricDistortion)\n"
"  --mean R,G,B --std R,G,B      normalisation in 0..255 units, x = (byte - mean) / std (default 0 and\n"
"                                255, i.e. x = byte/255; mmseg's: 123.675,116.28,103.53 / 58.395,57.12,57.375)\n"
"  --eval-every N                evaluate after every N-th epoch and after the last (default 1)\n"
"  --eval-mode whole|slide       at each image's own resolution: whole = one forward of the full image\n"
"                                (a model of that size with the trained weights); slide = windows of\n"
"                                --eval-crop every --eval-stride pixels, logits averaged (default whole)\n"
"  --eval-crop S --eval-stride S window and stride of slide (default: the crop; 2/3 of it)\n"
"\n"
"optimisation\n"
"  --epochs N                    (default 1)\n"
"  --steps N                     stop after N optimizer steps (overrides --epochs)\n"
"  --batch-size B                per rank (default 32)\n"
"  --accum-steps K               micro-batches per optimizer step (default 1)\n"
"  --optimizer O                 sgd | sgd-nesterov | sgdw | adam | adamw | adagrad | adadelta (default sgd;\n"
"                                PyTorch 1.13 update rules; sgdw/adamw decay weights decoupled)\n"
"  --lr X                        base learning rate (default 0.01)\n"
"  --momentum M                  sgd family (default 0.9)\n"
"  --weight-decay W              (default 0)\n"
"  --lr-schedule S               constant | step (x0.1 at 50% and 75% of the post-warmup steps) |\n"
"                                poly (power 0.9) | cosine (default constant); updated every step\n"
"  --warmup-epochs E             linear warmup (may be fractional; default 0)\n"
"  --seed S                      initialisation, data order and augmentation (default 0)\n"
"\n"
"system\n"
"  --threads T                   CPU threads (default SLURM_CPUS_PER_TASK, else cores / ranks per node)\n"
"  --device cpu|cuda|auto        (default cpu). cuda: local rank r uses visible GPU r % count; exits 2\n"
"                                saying why when no GPU is usable. auto: cuda when a GPU is usable,\n"
"                                else the CPU (and says so). With cuda, --comm auto means nccl\n"
"  --precision fp32|bf16|fp16    compute type of convolutions and linear layers on the GPU (default\n"
"                                fp32); fp32 master weights and metrics; fp16 with dynamic loss\n"
"                                scaling; bf16 needs compute capability 8.0. The CPU runs fp32 only\n"
"  --comm auto|none|mpi|nccl     data parallel communicator (default auto: mpi under mpirun/srun)\n"
"  --bucket-mb MB                DDP gradient bucket size (default 25)\n"
"  --reducer bucket|fused|per-tensor\n"
"                                gradient allreduce strategy (default bucket): bucket = PyTorch DDP\n"
"                                (--bucket-mb slices allreduced during backward); fused = Horovod tensor\n"
"                                fusion (whole tensors in --fusion-mb buffers, allreduced after\n"
"                                backward); per-tensor = one allreduce per tensor during backward\n"
"  --fusion-mb MB                fused reducer's fusion buffer (default 64, Horovod's threshold)\n"
"  --allreduce-algo A            auto (default: the engine decides) | ring | recursive-doubling |\n"
"                                rabenseifner (Open MPI coll_tuned/coll_libnbc) | ring | tree (NCCL_ALGO)\n"
"  --sync-bn                     BatchNorm statistics over all ranks\n"
"  --profile trace.json          Chrome trace (Perfetto) of data wait/forward/backward/comm/optimizer/eval,\n"
"                                and on the CPU of every op inside them with its shape (lane \"ops\");\n"
"                                rank r > 0 writes trace.json.rank<r>\n"
"  --print-params                print the parameter tensors and exit\n"
"  --save-params FILE            write the final parameters as raw float32 (for comparisons)\n"
"\n"
"weights in and out (safetensors with PyTorch's state_dict names, parameters and BN buffers)\n"
"  --init W.safetensors          start from these weights (after the seeded init); prints matched,\n"
"                                missing and unexpected keys; a shape mismatch is an error. none: the\n"
"                                seeded init only (a matrix axis init: [none, v1.safetensors, ...])\n"
"  --init-prefix P               file key K loads into model tensor P+K (e.g. backbone.)\n"
"  --init-skip REGEX             skip file keys matching REGEX (POSIX ERE), e.g. '^fc\\.'\n"
"  --save-weights FILE           write the final weights (--steps 0: the initial ones) for PyTorch's\n"
"                                load_state_dict\n"
"  --infer IN --infer-out OUT    no training: eval-mode forward of IN's tensor 'input' (N,C,H,W) with\n"
"                                --model and --init weights on the CPU; writes tensor 'logits' to OUT\n"
"\n"
"run dir and restarts\n"
"  --out RUN_DIR                 where the run's files go (only rank 0 writes)\n"
"  --checkpoint-every N[e|s]     write RUN_DIR/checkpoint.bin every N epochs (or N steps with 's')\n"
"  --evaluate                    no training: evaluate RUN_DIR/checkpoint.bin on the test split (with\n"
"                                the train run's model/data flags; --eval-limit N) into RUN_DIR/eval.json\n"
"  --resume                      continue from RUN_DIR/checkpoint.bin if it exists; bit-exact on CPU\n"
"                                with the same flags and --threads\n"
"\n"
"environment\n"
"  OMP_WAIT_POLICY               unset: segx-train sets PASSIVE (oneDNN's OpenMP workers sleep between\n"
"                                convolutions instead of spinning on the cores segx's own threads need)\n"
"                                and executes itself once more so that libgomp reads it; set it (e.g.\n"
"                                ACTIVE) to keep the runtime's default behaviour\n"
"\n"
"exit codes\n"
"  0   finished\n"
"  1   runtime error (bad/missing data file, I/O, lost peer)\n"
"  2   bad flag or value, or an unavailable device\n"
"  99  SIGTERM or SIGUSR1: checkpointed at the next step boundary; requeue with --resume\n";

enum {
    O_MODEL = 256, O_DATASET, O_EPOCHS, O_BATCH, O_OPT, O_LR, O_MOM, O_WD, O_SCHED, O_WARMUP, O_SEED,
    O_WIDTH, O_NOBN, O_THREADS, O_WORKERS, O_TRAIN_LIMIT, O_EVAL_LIMIT, O_AUGMENT, O_DATA_DIR, O_INC,
    O_CLASSES, O_IMSIZE, O_STEPS, O_PRINT, O_EXPORT, O_EXPORT_LIMIT, O_EXPORT_SPLIT, O_CKPT, O_RESUME,
    O_PROFILE, O_COMM, O_SYNCBN, O_ACCUM, O_BUCKET, O_DEVICE, O_OUT, O_SAVE, O_HELP, O_PRECISION, O_EVALUATE,
    O_INIT, O_INIT_PREFIX, O_INIT_SKIP, O_SAVE_WEIGHTS, O_INFER, O_INFER_OUT, O_BACKBONE
};

// issue 14: data-parallel strategies (trainer/dist) and CIFAR-shaped fashion-mnist
enum { O_REDUCER = 700, O_FUSION, O_ALGO, O_PAD_TO };

// issue 15, data side (trainer/data/pipeline.h)
enum {
    O_EVAL_EVERY = 600, O_SCALE, O_RATIO, O_CROP, O_CATMAX, O_PHOTO, O_MEAN, O_STD, O_EVAL_MODE, O_EVAL_CROP,
    O_EVAL_STRIDE, O_MAKE_DATASET, O_CHECK_DATA
};

static const struct option longopts[] = {
    { "eval-every", 1, 0, O_EVAL_EVERY }, { "scale", 1, 0, O_SCALE }, { "ratio-range", 1, 0, O_RATIO },
    { "crop", 1, 0, O_CROP }, { "cat-max-ratio", 1, 0, O_CATMAX }, { "photometric", 0, 0, O_PHOTO },
    { "mean", 1, 0, O_MEAN }, { "std", 1, 0, O_STD }, { "eval-mode", 1, 0, O_EVAL_MODE },
    { "eval-crop", 1, 0, O_EVAL_CROP }, { "eval-stride", 1, 0, O_EVAL_STRIDE },
    { "make-dataset", 1, 0, O_MAKE_DATASET }, { "check-data", 0, 0, O_CHECK_DATA },
    { "model", 1, 0, O_MODEL }, { "dataset", 1, 0, O_DATASET }, { "epochs", 1, 0, O_EPOCHS },
    { "batch-size", 1, 0, O_BATCH }, { "optimizer", 1, 0, O_OPT }, { "lr", 1, 0, O_LR },
    { "momentum", 1, 0, O_MOM }, { "weight-decay", 1, 0, O_WD }, { "lr-schedule", 1, 0, O_SCHED },
    { "warmup-epochs", 1, 0, O_WARMUP }, { "seed", 1, 0, O_SEED }, { "width", 1, 0, O_WIDTH },
    { "no-batch-norm", 0, 0, O_NOBN }, { "threads", 1, 0, O_THREADS }, { "workers", 1, 0, O_WORKERS },
    { "train-limit", 1, 0, O_TRAIN_LIMIT }, { "eval-limit", 1, 0, O_EVAL_LIMIT }, { "augment", 0, 0, O_AUGMENT },
    { "data-dir", 1, 0, O_DATA_DIR }, { "in-channels", 1, 0, O_INC }, { "classes", 1, 0, O_CLASSES },
    { "image-size", 1, 0, O_IMSIZE }, { "steps", 1, 0, O_STEPS }, { "print-params", 0, 0, O_PRINT },
    { "export-dataset", 1, 0, O_EXPORT }, { "export-limit", 1, 0, O_EXPORT_LIMIT },
    { "export-split", 1, 0, O_EXPORT_SPLIT }, { "checkpoint-every", 1, 0, O_CKPT }, { "resume", 0, 0, O_RESUME },
    { "profile", 1, 0, O_PROFILE }, { "comm", 1, 0, O_COMM }, { "sync-bn", 0, 0, O_SYNCBN },
    { "reducer", 1, 0, O_REDUCER }, { "fusion-mb", 1, 0, O_FUSION }, { "allreduce-algo", 1, 0, O_ALGO },
    { "pad-to", 1, 0, O_PAD_TO },
    { "accum-steps", 1, 0, O_ACCUM }, { "bucket-mb", 1, 0, O_BUCKET }, { "device", 1, 0, O_DEVICE }, { "precision", 1, 0, O_PRECISION },
    { "out", 1, 0, O_OUT }, { "save-params", 1, 0, O_SAVE }, { "help", 0, 0, O_HELP },
    { "evaluate", 0, 0, O_EVALUATE },
    { "init", 1, 0, O_INIT }, { "init-prefix", 1, 0, O_INIT_PREFIX }, { "init-skip", 1, 0, O_INIT_SKIP },
    { "save-weights", 1, 0, O_SAVE_WEIGHTS }, { "infer", 1, 0, O_INFER }, { "infer-out", 1, 0, O_INFER_OUT },
    { "backbone", 1, 0, O_BACKBONE },
    { 0, 0, 0, 0 }
};

static int bad(const char *flag, const char *value, const char *why) {
    fprintf(stderr, "segx-train: --%s '%s': %s (see segx-train --help)\n", flag, value, why);
    return -1;
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return bad(flag, s, "not an integer");
    if (v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof why, "must be between %ld and %ld", lo, hi);
        return bad(flag, s, why);
    }
    *out = v;
    return 0;
}
static int parse_int(const char *flag, const char *s, long lo, long hi, int *out) {
    long v;
    if (parse_long(flag, s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}
static int parse_double(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return bad(flag, s, "not a number");
    if (v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof why, "must be between %g and %g", lo, hi);
        return bad(flag, s, why);
    }
    *out = v;
    return 0;
}
static int one_of(const char *flag, const char *s, const char *const *names) {
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) return 0;
    char why[256] = "want one of:";
    for (int i = 0; names[i]; i++) {
        strncat(why, " ", sizeof why - strlen(why) - 1);
        strncat(why, names[i], sizeof why - strlen(why) - 1);
    }
    return bad(flag, s, why);
}

// "A,B,C" -> n doubles in [lo, hi]; "WxH" and "S" sizes.
static int parse_list(const char *flag, const char *s, int n, double lo, double hi, double *out) {
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        out[i] = strtod(p, &end);
        if (errno || end == p || !isfinite(out[i]) || out[i] < lo || out[i] > hi || (i + 1 < n ? *end != ',' : *end != 0)) {
            char why[128];
            snprintf(why, sizeof why, "want %d comma-separated numbers between %g and %g", n, lo, hi);
            return bad(flag, s, why);
        }
        p = end + 1;
    }
    return 0;
}
static int parse_size(const char *flag, const char *s, int *a, int *b) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10), y = x;
    if (!errno && end != s && *end == 'x') { const char *q = end + 1; y = strtol(q, &end, 10); if (end == q) y = 0; }
    if (errno || end == s || *end || x < 1 || y < 1 || x > 65536 || y > 65536)
        return bad(flag, s, "want a size S or AxB of positive pixels");
    *a = (int)x; *b = (int)y;
    return 0;
}

// The pipeline and evaluation flags (see usage). 1: not one of them.
static int parse_data_flag(int o, const char *name, TrainConfig *c) {
    static const char *const modes[] = { "whole", "slide", NULL };
    double r[2];
    switch (o) {
    case O_EVAL_EVERY: return parse_int(name, optarg, 1, 1000000, &c->eval_every);
    case O_SCALE: return parse_size(name, optarg, &c->scale_w, &c->scale_h);
    case O_RATIO:
        if (parse_list(name, optarg, 2, 0.01, 100, r)) return -1;
        if (r[0] > r[1]) return bad(name, optarg, "the low end is above the high end");
        c->ratio_min = r[0]; c->ratio_max = r[1];
        return 0;
    case O_CROP: {   // S or HxW (mmseg's crop_size order)
        if (parse_size(name, optarg, &c->crop_h, &c->crop_w)) return -1;
        return 0;
    }
    case O_CATMAX: return parse_double(name, optarg, 0.01, 1, &c->cat_max_ratio);
    case O_PHOTO: c->photometric = 1; return 0;
    case O_MEAN: c->have_norm |= 1; return parse_list(name, optarg, 3, -1e4, 1e4, c->mean);
    case O_STD: c->have_norm |= 2; return parse_list(name, optarg, 3, 1e-6, 1e6, c->std);
    case O_EVAL_MODE: c->eval_mode = optarg; return one_of(name, optarg, modes);
    case O_EVAL_CROP: return parse_int(name, optarg, 1, 65536, &c->eval_crop);
    case O_EVAL_STRIDE: return parse_int(name, optarg, 1, 65536, &c->eval_stride);
    case O_MAKE_DATASET: c->make_dataset = optarg; return 0;
    case O_CHECK_DATA: c->check_data = 1; return 0;
    default: return 1;
    }
}

static int default_threads(void) {
    const char *s = getenv("SLURM_CPUS_PER_TASK");
    if (s && atoi(s) > 0) return atoi(s);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = 1;
    const char *l = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!l) l = getenv("SLURM_NTASKS_PER_NODE");
    if (l && atoi(l) > 0) local = atoi(l);
    long t = cores / local;
    return t > 0 ? (int)t : 1;
}

static int evaluate_only;   // --evaluate: evaluate_run instead of train_run

// --checkpoint-every N, Ne (epochs) or Ns (steps).
static int parse_checkpoint_every(const char *name, const char *s, TrainConfig *c) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    size_t n = strlen(buf);
    c->checkpoint_in_steps = 0;
    if (n && (buf[n - 1] == 's' || buf[n - 1] == 'e')) { c->checkpoint_in_steps = buf[n - 1] == 's'; buf[n - 1] = 0; }
    char *end;
    errno = 0;
    c->checkpoint_every = strtol(buf, &end, 10);
    if (errno || end == buf || *end || c->checkpoint_every < 1)
        return bad(name, s, "want a positive count of epochs (N or Ne) or steps (Ns)");
    return 0;
}

// The "model and data" and "optimisation" flags (see usage). 1: not one of them.
static int parse_train_flag(int o, const char *name, TrainConfig *c) {
    static const char *const models[] = { "cnn", "resnet18", "unet", "vgg16", "mobilenet_v2", "shufflenet_v2",
                                          "densenet121", "deeplabv3plus", NULL };
    static const char *const splits[] = { "train", "test", NULL };
    static const char *const bbs[] = { "resnet18", "resnet50", "resnet101", NULL };
    OptKind ok;
    LrKind lk;
    long v;
    int r;
    switch (o) {
    case O_MODEL: c->model = optarg; return one_of(name, optarg, models);
    case O_BACKBONE:
        if ((r = one_of(name, optarg, bbs)) == 0) c->backbone = atoi(optarg + 6);
        return r;
    case O_WIDTH: return parse_int(name, optarg, 1, 4096, &c->width);
    case O_NOBN: c->batch_norm = 0; return 0;
    case O_DATASET: c->dataset = optarg; return 0;
    case O_DATA_DIR: c->data_dir = optarg; return 0;
    case O_INC: return parse_int(name, optarg, 1, 4096, &c->in_channels);
    case O_CLASSES: return parse_int(name, optarg, 2, 255, &c->classes);
    case O_IMSIZE: return parse_int(name, optarg, 4, 65536, &c->image_size);
    case O_TRAIN_LIMIT: return parse_long(name, optarg, 1, 1L << 40, &c->train_limit);
    case O_EVAL_LIMIT: return parse_long(name, optarg, 0, 1L << 40, &c->eval_limit);
    case O_AUGMENT: c->augment = 1; return 0;
    case O_PAD_TO: return parse_int(name, optarg, 1, 65536, &c->pad_to);
    case O_WORKERS: return parse_int(name, optarg, 0, 256, &c->workers);
    case O_EXPORT: c->export_dir = optarg; return 0;
    case O_EXPORT_LIMIT: return parse_long(name, optarg, 1, 1L << 40, &c->export_limit);
    case O_EXPORT_SPLIT: c->export_split = optarg; return one_of(name, optarg, splits);
    case O_EPOCHS: return parse_int(name, optarg, 0, 1000000, &c->epochs);
    case O_STEPS: return parse_long(name, optarg, 0, 1L << 40, &c->steps);
    case O_BATCH: return parse_int(name, optarg, 1, 1 << 20, &c->batch);
    case O_ACCUM: return parse_int(name, optarg, 1, 65536, &c->accum_steps);
    case O_OPT:
        c->optimizer = optarg;
        return optim_parse(optarg, &ok) ? bad(name, optarg, "want sgd, sgd-nesterov, sgdw, adam, adamw, adagrad or adadelta") : 0;
    case O_LR: return parse_double(name, optarg, 0, 1e6, &c->lr);
    case O_MOM: return parse_double(name, optarg, 0, 1, &c->momentum);
    case O_WD: return parse_double(name, optarg, 0, 10, &c->weight_decay);
    case O_SCHED:
        c->lr_schedule = optarg;
        return lr_parse(optarg, &lk) ? bad(name, optarg, "want constant, step, poly or cosine") : 0;
    case O_WARMUP: return parse_double(name, optarg, 0, 1e6, &c->warmup_epochs);
    case O_SEED:
        if (parse_long(name, optarg, 0, 0x7fffffffL, &v)) return -1;
        c->seed = (uint64_t)v;
        return 0;
    default: return 1;
    }
}

// The "system", "weights in and out" and "run dir and restarts" flags (see usage). 1: not one of them.
static int parse_system_flag(int o, const char *name, TrainConfig *c) {
    static const char *const comms[] = { "auto", "none", "mpi", "nccl", NULL };
    static const char *const reducers[] = { "bucket", "fused", "per-tensor", NULL };
    static const char *const algos[] = { "auto", "ring", "recursive-doubling", "rabenseifner", "tree", NULL };
    static const char *const devices[] = { "cpu", "cuda", "auto", NULL };
    static const char *const precisions[] = { "fp32", "bf16", "fp16", NULL };
    switch (o) {
    case O_THREADS: return parse_int(name, optarg, 1, 4096, &c->threads);
    case O_DEVICE: c->device = optarg; return one_of(name, optarg, devices);
    case O_PRECISION: c->precision = optarg; return one_of(name, optarg, precisions);
    case O_COMM: c->comm = optarg; return one_of(name, optarg, comms);
    case O_BUCKET: return parse_double(name, optarg, 0.001, 65536, &c->bucket_mb);
    case O_REDUCER: c->reducer = optarg; return one_of(name, optarg, reducers);
    case O_FUSION: return parse_double(name, optarg, 0.001, 65536, &c->fusion_mb);
    case O_ALGO: c->allreduce_algo = optarg; return one_of(name, optarg, algos);
    case O_SYNCBN: c->sync_bn = 1; return 0;
    case O_PROFILE: c->profile = optarg; return 0;
    case O_PRINT: c->print_params = 1; return 0;
    case O_SAVE: c->save_params = optarg; return 0;
    case O_INIT: c->init = strcmp(optarg, "none") == 0 ? NULL : optarg; return 0;   // ./none for a file
    case O_INIT_PREFIX: c->init_prefix = optarg; return 0;
    case O_INIT_SKIP: c->init_skip = optarg; return 0;
    case O_SAVE_WEIGHTS: c->save_weights = optarg; return 0;
    case O_INFER: c->infer_in = optarg; return 0;
    case O_INFER_OUT: c->infer_out = optarg; return 0;
    case O_OUT: c->out = optarg; return 0;
    case O_CKPT: return parse_checkpoint_every(name, optarg, c);
    case O_EVALUATE: evaluate_only = 1; return 0;
    case O_RESUME: c->resume = 1; return 0;
    default: return 1;
    }
}

// Flags that need one another, once all are read.
static int check_args(int argc, char **argv, TrainConfig *c) {
    if (optind < argc) {
        fprintf(stderr, "segx-train: unexpected argument '%s' (see segx-train --help)\n", argv[optind]);
        return -1;
    }
    if (c->resume && !c->out) {
        fprintf(stderr, "segx-train: --resume needs --out RUN_DIR (the checkpoint lives there)\n");
        return -1;
    }
    if (c->checkpoint_every && !c->out) {
        fprintf(stderr, "segx-train: --checkpoint-every needs --out RUN_DIR\n");
        return -1;
    }
    if (c->threads == 0) c->threads = default_threads();
    return 0;
}

static int parse_args(int argc, char **argv, TrainConfig *c) {
    train_config_defaults(c);
    c->argv0 = argv[0];
    c->threads = 0;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        const char *name = "";
        for (int i = 0; longopts[i].name; i++)
            if (longopts[i].val == o) { name = longopts[i].name; break; }
        if (o == 'h' || o == O_HELP) { fputs(usage, stdout); exit(0); }
        if (o == ':') {
            fprintf(stderr, "segx-train: %s needs a value (see segx-train --help)\n", argv[optind - 1]);
            return -1;
        }
        int r = parse_train_flag(o, name, c);
        if (r == 1) r = parse_system_flag(o, name, c);
        if (r == 1) r = parse_data_flag(o, name, c);
        if (r == 1) {
            fprintf(stderr, "segx-train: unknown option '%s' (see segx-train --help)\n", argv[optind - 1]);
            return -1;
        }
        if (r) return -1;
    }
    return check_args(argc, argv, c);
}

// Resolves --device to "cpu" or "cuda". cuda needs a usable GPU now (else exit 2 with gpu_probe's
// reason); which one (local rank % devices) is decided in train_run, once the launcher's ranks are known.
static int pick_device(TrainConfig *c) {
    if (strcmp(c->device, "cpu") != 0) {
        char why[512] = "";
        int n = gpu_probe(why, sizeof why);
        if (strcmp(c->device, "cuda") == 0 && n <= 0) {
            fprintf(stderr, "segx-train: --device cuda: no usable CUDA device: %s\n", why[0] ? why : "none found");
            return -1;
        }
        if (strcmp(c->device, "auto") == 0) {
            if (n > 0) fprintf(stderr, "segx-train: --device auto: using CUDA (%d device(s) visible)\n", n);
            else fprintf(stderr, "segx-train: --device auto: using the CPU (%s)\n", why[0] ? why : "no CUDA device");
        }
        c->device = n > 0 ? "cuda" : "cpu";
    }
    if (strcmp(c->device, "cpu") == 0 && strcmp(c->precision, "fp32") != 0) {
        fprintf(stderr, "segx-train: --precision %s needs --device cuda: the CPU backend computes in fp32 only "
                "(drop --precision or run on a GPU)\n", c->precision);
        return -1;
    }
    return 0;
}

// oneDNN runs its convolutions on libgomp's OpenMP threads, which by default spin for a while after
// each parallel region; segx's own loops (BN, depthwise, the optimizer) and OpenBLAS run on other
// threads right after, and on a busy core the spinning workers take their time (ShuffleNetV2 at batch
// 128 on 2 threads, runs interleaved: 88-93 img/s and 12.0-12.4 s user with spinning, 95-102 img/s and
// 10.9 s with PASSIVE; bench/RESULTS-cnns.md).
// libgomp reads OMP_WAIT_POLICY once, when it is loaded, before main: so when the environment does not
// set it, set PASSIVE and execute this program again (same pid, argv and environment otherwise). Not
// under valgrind (its preload is in LD_PRELOAD), where the new image would run unchecked; if the exec
// fails the run goes on with the runtime's default. env.json's omp_wait_policy says which it was.
static void omp_wait_passive(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1)) return;
    execv("/proc/self/exe", argv);   // the running binary's inode, even if its path was replaced since
    unsetenv("OMP_WAIT_POLICY");   // env.json records what libgomp read
}

int main(int argc, char **argv) {
    omp_wait_passive(argv);
    TrainConfig c;
    if (parse_args(argc, argv, &c)) return TRAIN_EXIT_USAGE;
    if (pick_device(&c)) return TRAIN_EXIT_USAGE;
    if (evaluate_only) return evaluate_run(&c);
    if (c.infer_in) return infer_run(&c);
    if (c.make_dataset && c.export_limit > 0) {   // --make-dataset with --export-limit N (train_run: 48 + 16)
        char err[2048];
        long n = data_make_dataset_n(c.make_dataset, c.data_dir, c.export_limit, (c.export_limit + 2) / 3, err, sizeof err);
        if (n < 0) { fprintf(stderr, "segx-train: %s\n", err); return TRAIN_EXIT_ERROR; }
        fprintf(stderr, "segx-train: wrote %ld images with their label maps as %s\n", n, c.make_dataset);
        return TRAIN_EXIT_OK;
    }
    return train_run(&c);
}
