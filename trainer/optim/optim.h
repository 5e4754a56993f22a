// trainer/optim/optim.h — optimizers over one flat parameter buffer, and learning-rate schedules.
// - Update rules are PyTorch 1.13's (torch.optim.*, single-tensor path, float32 arithmetic).
//   sgdw and adamw decay weights decoupled from the gradient: p *= 1 - lr*wd before the step.
//   sgd-nesterov is SGD(nesterov=True). adam/adamw use betas (0.9, 0.999), eps 1e-8;
//   adagrad eps 1e-10; adadelta rho 0.9, eps 1e-6. --momentum applies to the sgd family only.
// - State lives in one buffer of nslots*n floats (momentum / exp_avg / ...) plus a step count,
//   so a checkpoint saves it in one write.
// - Schedules give the lr of optimizer step s (0-based), updated every step: linear warmup
//   lr*(s+1)/W over the first W steps, then with t = (s-W)/(total-W) in [0,1):
//   constant lr; step lr*0.1^k, k = milestones passed at t = 0.5 and t = 0.75;
//   poly lr*(1-t)^0.9; cosine lr*(1+cos(pi*t))/2.
#ifndef SEGX_OPTIM_H
#define SEGX_OPTIM_H
#include <stddef.h>

typedef enum { OPT_SGD, OPT_SGD_NESTEROV, OPT_SGDW, OPT_ADAM, OPT_ADAMW, OPT_ADAGRAD, OPT_ADADELTA } OptKind;

typedef struct {
    OptKind kind;
    float momentum, weight_decay;
    size_t n;
    int nslots;       // state buffers of n floats
    float *state;     // nslots * n
    long steps;       // steps taken (Adam's t, SGD's "momentum buffer exists")
    int state_owned;  // optim_free frees state (optim_create) or leaves it to its owner (optim_create_on)
} Optimizer;

// name: sgd | sgd-nesterov | sgdw | adam | adamw | adagrad | adadelta. Returns 0 or -1 with err.
int  optim_parse(const char *name, OptKind *kind);
const char *optim_name(OptKind kind);
int  optim_create(OptKind kind, size_t n, float momentum, float weight_decay, Optimizer **out,
                  char *err, size_t errlen);
// The same with the state in memory the caller owns and keeps alive: optim_slots(kind) * n floats,
// zero-filled (e.g. from ops->alloc). optim_step needs host memory there; on the GPU the training loop
// passes o->state (device memory) to ops_cuda_optim_step instead. optim_free leaves it alone.
int  optim_create_on(OptKind kind, size_t n, float momentum, float weight_decay, float *state, Optimizer **out,
                     char *err, size_t errlen);
int  optim_slots(OptKind kind);   // state buffers of n floats the kind keeps
void optim_free(Optimizer *o);
// One step: params -= update(grads) with learning rate lr. grads are not modified.
void optim_step(Optimizer *o, float *params, const float *grads, float lr);

typedef enum { LR_CONSTANT, LR_STEP, LR_POLY, LR_COSINE } LrKind;
typedef struct {
    LrKind kind;
    double base_lr;
    long total_steps, warmup_steps;
} LrSchedule;
int    lr_parse(const char *name, LrKind *kind);
const char *lr_name(LrKind kind);
double lr_at(const LrSchedule *s, long step);

#endif
