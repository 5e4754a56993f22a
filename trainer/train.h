// trainer/train.h — the segx-train training loop: data, model, optimizer, DDP, metrics, run dir.
// main.c fills a TrainConfig from the command line; train_run does the rest and returns the
// process exit code (TRAIN_EXIT_*).
#ifndef SEGX_TRAIN_H
#define SEGX_TRAIN_H
#include <stdint.h>

enum {
    TRAIN_EXIT_OK = 0,
    TRAIN_EXIT_ERROR = 1,     // runtime failure (data, I/O, communication)
    TRAIN_EXIT_USAGE = 2,     // bad flag/value, or a device that is not available
    TRAIN_EXIT_REQUEUE = 99,  // stopped by SIGTERM/SIGUSR1 after writing checkpoint.bin
};

typedef struct {
    const char *argv0;
    const char *model, *dataset, *data_dir, *out;
    const char *optimizer, *lr_schedule, *comm, *device;
    const char *profile, *save_params;
    const char *precision;                       // fp32 | bf16 | fp16 (bf16/fp16: --device cuda only)
    const char *export_dir, *export_split;
    int epochs, batch, width, batch_norm, threads, workers;
    int in_channels, classes, image_size;
    uint64_t seed;
    long train_limit, eval_limit, export_limit;  // eval_limit < 0: whole test split
    long steps;                                  // < 0: not given
    double lr, momentum, weight_decay, warmup_epochs, bucket_mb;
    int augment, print_params, resume, sync_bn, accum_steps;
    long checkpoint_every;                       // 0: never
    int checkpoint_in_steps;                     // "Ns" suffix
    const char *reducer, *allreduce_algo;        // --reducer bucket|fused|per-tensor, --allreduce-algo (trainer/dist)
    double fusion_mb;                            // --fusion-mb: fused reducer's buffer (default 64)
    int pad_to;                                  // --pad-to S: images zero-padded to SxS (0: as stored)
    const char *init, *init_prefix, *init_skip;  // --init W.safetensors (trainer/io/weights.h)
    const char *save_weights;                    // --save-weights FILE.safetensors (PyTorch names)
    const char *infer_in, *infer_out;            // --infer IN --infer-out OUT: no training
    int backbone;                                // --backbone resnetN: deeplabv3plus's depth (0: 50)
    // evaluation cadence and the segmentation pipeline (trainer/data/pipeline.h)
    int eval_every;                              // evaluate after every N-th epoch and the last (default 1)
    int scale_w, scale_h;                        // --scale WxH: base scale of the random resize (0: none)
    double ratio_min, ratio_max;                 // --ratio-range LO,HI (default 0.5,2.0)
    int crop_h, crop_w;                          // --crop S|HxW: training crop (0: pipeline off)
    double cat_max_ratio;                        // --cat-max-ratio (default 0.75; 1 = off)
    int photometric;                             // --photometric: mmseg's PhotoMetricDistortion
    int have_norm; double mean[3], std[3];       // --mean/--std R,G,B in 0..255 units
    const char *eval_mode;                       // --eval-mode whole|slide (default whole)
    int eval_crop, eval_stride;                  // slide windows (default: the crop, 2/3 of it)
    const char *make_dataset;                    // --make-dataset ade20k:DIR|cityscapes:DIR
    int check_data;                              // --check-data: decode every file before training
} TrainConfig;

void train_config_defaults(TrainConfig *c);
int  train_run(const TrainConfig *c);

#endif
