// trainer/gpu/stage.h — double-buffered batch staging for the training loop: a loader batch (host
// memory) is put into the backend's memory one step ahead of the step that uses it.
// - On the CUDA table: pinned host buffers (cudaHostAlloc) and a copy stream of its own. The upload
//   of batch k+1 is queued while step k's backward and optimizer still run on the compute stream.
//   A slot's upload first waits for the compute work queued before it (the slot's previous batch may
//   still be read by a backward), and stage_wait makes the compute stream wait for the upload.
// - On any other table (the CPU): ops->upload into the slot, nothing asynchronous. The CPU trainer
//   makes the same calls in the same order, so its tests run the staging code of the GPU path.
#ifndef SEGX_STAGE_H
#define SEGX_STAGE_H
#include <stddef.h>
#include "trainer/data/data.h"   // defines: Batch
#include "trainer/ops/ops.h"     // defines: Ops

typedef struct BatchStage BatchStage;

// Slots hold `batch` samples of x_per_sample floats and y_per_sample labels. 0, or -1 with err.
int  stage_create(const Ops *ops, int batch, size_t x_per_sample, size_t y_per_sample, BatchStage **out,
                  char *err, size_t errlen);
// Copies b into the next of the two slots (used in turn) and starts its upload. Returns the staged
// batch: x and y in the backend's memory, n and index as b's; valid until two more stage_put calls.
// NULL when b has more samples than a slot holds.
const Batch *stage_put(BatchStage *s, const Batch *b);
// Orders the compute work queued after this call after the upload of `staged` (a stage_put result).
void stage_wait(BatchStage *s, const Batch *staged);
int  stage_is_async(const BatchStage *s);   // 1 on the CUDA table
void stage_free(BatchStage *s);             // waits for uploads in flight

#endif
