// trainer/io/weights.h — a model's weights across the PyTorch border: safetensors files keyed by the
// model's state_dict names (parameters and BatchNorm buffers), in both directions, and the inference
// mode that checks segx-train's logits against PyTorch's.
// Loading (--init FILE [--init-prefix P] [--init-skip REGEX]):
// - a file key K loads into the model tensor named P+K (P: a submodule such as "backbone.", so a
//   torchvision checkpoint starts DeepLabv3+'s backbone); keys matching REGEX (POSIX extended, searched
//   in K as the file spells it) are skipped, e.g. '^fc\.' keeps the classifier's own initialisation;
// - a shape mismatch refuses the whole load (nothing is changed) naming the key and both shapes;
// - missing (model tensors under P that the file lacks) and unexpected (file keys the model lacks)
//   keys are reported, not errors; a file that matches nothing is an error.
// Saving writes every parameter and buffer with its PyTorch name (num_batches_tracked as I64), so
// PyTorch's load_state_dict(strict=True) takes the file as it is.
// defines: WeightsReport, weights_load, weights_save, infer_run
#ifndef SEGX_WEIGHTS_H
#define SEGX_WEIGHTS_H
#include <stdio.h>
#include "trainer/models/model.h"   // defines: Model
#include "trainer/train.h"          // defines: TrainConfig

typedef struct { int matched, missing, unexpected, skipped; } WeightsReport;

// Loads PATH into m (any backend). log (may be NULL) gets the counts and the key lists.
// Returns 0, or -1 with the reason in err (file errors name the file and byte offset).
int weights_load(Model *m, const char *path, const char *prefix, const char *skip_regex, FILE *log,
                 WeightsReport *rep, char *err, size_t errlen);
int weights_save(Model *m, const char *path, char *err, size_t errlen);

// segx-train --infer IN.safetensors --infer-out OUT.safetensors --model M --init W.safetensors:
// eval-mode forward of IN's tensor "input" (N, C, H, W) on the CPU, writes tensor "logits".
// --classes defaults to what the weights' last tensor (the head) says. Returns a TRAIN_EXIT_* code.
int infer_run(const TrainConfig *c);

#endif
