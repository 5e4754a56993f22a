// trainer/ops/ops.h — the op table: every tensor operation the models use, one table per backend
// (ops_cpu() in ops_cpu.c; ops_cuda() in ops_cuda.cu, declared in ops_cuda.h; ops_traced() wraps either to
// time each op, trainer/run/ops_trace.h). Models are written once against it.
// - Tensors are float32, NCHW, contiguous, in the backend's memory (alloc/free/upload/download).
// - Forward functions OVERWRITE their outputs.
// - Backward functions ACCUMULATE (+=) into parameter gradients (dw, db, dgamma, dbeta) and OVERWRITE
//   input gradients (dx/din) unless the function takes an `accumulate` flag and it is set.
//   An input gradient pointer may be NULL when it is not needed (the first layer).
// - Workspace: ops that need scratch take `ws` with at least *_workspace() floats.
#ifndef SEGX_OPS_H
#define SEGX_OPS_H
#include <stddef.h>
#include <stdint.h>

// --- shapes ------------------------------------------------------------------------------------
typedef struct {
    int cin, cout;          // channels
    int h, w;               // input size
    int kh, kw;             // kernel size
    int stride, pad, dil;   // same in both dimensions
    int oh, ow;             // output size (filled by ops_conv2d_desc)
    int groups;             // cin and cout split into `groups` independent convolutions; weights
                            // (cout, cin/groups, kh, kw); groups == cin == cout is depthwise
    int padh, padw;         // top and left padding: pad (ops_conv2d_desc), except on the smaller
                            // convolutions ops_cpu cuts from dilated ones (conv_cut.h), whose padding may
                            // differ per side or be negative (then pad is -1; bottom and right follow
                            // from oh and ow)
} ConvDesc;

// Fills the output size (groups = 1); returns 0, or -1 when the output would be empty.
int ops_conv2d_desc(ConvDesc *d, int cin, int cout, int h, int w, int k, int stride, int pad, int dil);
// The same with groups; -1 also when groups does not divide cin and cout.
int ops_conv2d_desc_grouped(ConvDesc *d, int cin, int cout, int h, int w, int k, int stride, int pad, int dil,
                            int groups);

// Sync BatchNorm: sums a double buffer over all ranks in place (matches ModelAllreduceFn).
typedef int (*OpsAllreduceFn)(void *ctx, double *buf, size_t n);
typedef struct {
    OpsAllreduceFn fn;     // NULL: local statistics
    void *ctx;
} BnSync;

#define OPS_BN_EPS 1e-5f
#define OPS_BN_MOMENTUM 0.1f

// --- the table -----------------------------------------------------------------------------------
typedef struct {
    const char *name;                                        // "cpu" | "cuda"
    // memory
    void *(*alloc)(size_t bytes);                            // zero-filled; NULL when out of memory
    void  (*free)(void *p);
    void  (*upload)(void *dst, const void *host_src, size_t bytes);
    void  (*download)(void *host_dst, const void *src, size_t bytes);
    void  (*copy)(void *dst, const void *src, size_t bytes);
    void  (*zero)(void *p, size_t bytes);
    void  (*set_threads)(int n);

    // conv2d: x (B,cin,h,w), w (cout,cin,kh,kw), b (cout) or NULL, y (B,cout,oh,ow)
    size_t (*conv2d_workspace)(const ConvDesc *d, int max_batch);   // floats
    void (*conv2d_forward)(const ConvDesc *d, int B, float *y, const float *x, const float *w,
                           const float *b, float *ws);
    // dx (NULL: skip) overwritten, or accumulated when accumulate=1; dw, db (NULL: no bias) accumulated.
    void (*conv2d_backward)(const ConvDesc *d, int B, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, float *ws, int accumulate);

    // transposed conv, kernel 2, stride 2: x (B,cin,h,w), w (cin,cout,2,2), b (cout), y (B,cout,2h,2w)
    size_t (*convt2x2_workspace)(int cin, int cout, int h, int w);
    void (*convt2x2_forward)(int B, int cin, int cout, int h, int w, float *y, const float *x,
                             const float *wt, const float *b, float *ws);
    void (*convt2x2_backward)(int B, int cin, int cout, int h, int w, float *dx, float *dw, float *db,
                              const float *dy, const float *x, const float *wt, float *ws);

    // batch norm over (B, HW) per channel, optionally followed by ReLU (relu=1) or ReLU6 (relu=2:
    // min(max(v, 0), 6); backward passes the gradient where 0 < y < 6).
    // training=1: batch (or synced global) statistics; saves mean and 1/sqrt(var+eps) per channel in
    // save_mean/save_invstd; updates running_mean/var (momentum 0.1, unbiased var) and *num_batches += 1.
    // training=0: running statistics (save_* still filled, from the running stats).
    void (*batchnorm_forward)(int B, int C, int HW, float *y, float *save_mean, float *save_invstd,
                              const float *x, const float *gamma, const float *beta, float *running_mean,
                              float *running_var, float *num_batches, int training, int relu,
                              const BnSync *sync);
    // y is the forward output (for the ReLU mask when relu=1). dx overwritten; dgamma/dbeta accumulated.
    void (*batchnorm_backward)(int B, int C, int HW, float *dx, float *dgamma, float *dbeta,
                               const float *dy, const float *x, const float *y, const float *save_mean,
                               const float *save_invstd, const float *gamma, int relu, const BnSync *sync);

    // elementwise
    void (*relu_forward)(size_t n, float *y, const float *x);                  // y may equal x
    void (*relu_backward)(size_t n, float *dx, const float *dy, const float *y); // dx may equal dy
    void (*add)(size_t n, float *y, const float *a, const float *b);            // y = a + b (y may alias)
    void (*accumulate)(size_t n, float *y, const float *x);                     // y += x

    // max pool 2x2 stride 2 (floor): x (B,C,h,w) -> y (B,C,h/2,w/2). Backward recomputes the argmax
    // from x (first maximum in scan order, as PyTorch) and overwrites dx.
    void (*maxpool2x2_forward)(int B, int C, int h, int w, float *y, const float *x);
    void (*maxpool2x2_backward)(int B, int C, int h, int w, float *dx, const float *dy, const float *x);

    // global average pool: x (B,C,HW) -> y (B,C)
    void (*avgpool_forward)(int B, int C, int HW, float *y, const float *x);
    void (*avgpool_backward)(int B, int C, int HW, float *dx, const float *dy);

    // bilinear resize, align_corners=False (PyTorch's size= semantics): x (B,C,h,w) -> y (B,C,oh,ow)
    void (*upsample_bilinear_forward)(int B, int C, int h, int w, int oh, int ow, float *y, const float *x);
    void (*upsample_bilinear_backward)(int B, int C, int h, int w, int oh, int ow, float *dx, const float *dy);

    // channel concat: y (B,ca+cb,HW) = [a (B,ca,HW), b (B,cb,HW)]; backward splits dy (overwrites da, db;
    // either may be NULL).
    void (*concat_forward)(int B, int ca, int cb, int HW, float *y, const float *a, const float *b);
    void (*concat_backward)(int B, int ca, int cb, int HW, float *da, float *db, const float *dy);

    // linear: x (B,in), w (out,in), b (out) or NULL, y (B,out)
    void (*linear_forward)(int B, int in, int out, float *y, const float *x, const float *w, const float *b);
    void (*linear_backward)(int B, int in, int out, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w);

    // softmax cross-entropy over classes: logits (B,C,HW) (HW=1 for classification), labels (B*HW) int32
    // with `ignore` not counted. Writes dlogits = d(mean loss)/d(logits) * grad_scale (0 where ignored)
    // and returns the mean loss over counted elements (0 when none). A label outside [0,C) that is not
    // `ignore` makes the result NAN (and *counted = -1 - index of the first bad label).
    double (*softmax_xent)(int B, int C, int HW, float *dlogits, const float *logits, const int32_t *labels,
                           int ignore, float grad_scale, long *counted);

    // --- ops of the mobile and dense nets (MobileNetV2, ShuffleNetV2, DenseNet) ------------------
    // ReLU6: y = min(max(x, 0), 6) (y may equal x); dx = dy where 0 < y < 6, else 0 (dx may equal dy)
    void (*relu6_forward)(size_t n, float *y, const float *x);
    void (*relu6_backward)(size_t n, float *dx, const float *dy, const float *y);
    // The apply step of batch norm with given statistics (a training forward's save_mean/save_invstd):
    // y = gamma*(x-mean)*invstd + beta, then ReLU (relu=1) or ReLU6 (2). Recomputes a discarded output.
    void (*batchnorm_apply)(int B, int C, int HW, float *y, const float *x, const float *mean, const float *invstd,
                            const float *gamma, const float *beta, int relu);
    // Channel slice copy: channels [doff, doff+n) of dst (B, dC, HW) = (accumulate: +=) channels
    // [soff, soff+n) of src (B, sC, HW). Concat, split and their gradients, without whole-tensor copies.
    void (*channel_copy)(int B, int HW, int n, float *dst, int dC, int doff, const float *src, int sC, int soff,
                         int accumulate);
    // Channel shuffle: x (B, C, HW) viewed (B, groups, C/groups, HW), the two channel axes swapped.
    // Its gradient is the same op with groups' = C/groups.
    void (*channel_shuffle)(int B, int C, int groups, int HW, float *y, const float *x);
    // y (B, A, HW) = x (A, B, HW) with the two leading axes swapped (NCHW <-> channel-major CNHW).
    void (*swap_dims01)(int A, int B, int HW, float *y, const float *x);
    // average pool 2x2 stride 2 (floor): x (B,C,h,w) -> y (B,C,h/2,w/2); backward overwrites dx.
    void (*avgpool2x2_forward)(int B, int C, int h, int w, float *y, const float *x);
    void (*avgpool2x2_backward)(int B, int C, int h, int w, float *dx, const float *dy);
    // dropout: element i is kept when ops_dropout_keep(seed, i, p) (a counter-based hash, the same on
    // every backend, so backward recomputes the mask); kept elements scaled by 1/(1-p).
    void (*dropout_forward)(size_t n, float p, uint64_t seed, float *y, const float *x);
    void (*dropout_backward)(size_t n, float p, uint64_t seed, float *dx, const float *dy);
} Ops;

const Ops *ops_cpu(void);

// The dropout mask: 1 when element i is kept (probability 1-p) for this seed.
static inline int ops_dropout_keep(uint64_t seed, uint64_t i, float p) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53 >= (double)p;
}

// --- CPU thread pool used by ops_cpu (exposed for tests and the bench) ---------------------------
typedef void (*ParallelFn)(void *ctx, long begin, long end);
void ops_parallel_set_threads(int n);   // >= 1
int  ops_parallel_threads(void);
// Runs fn over [0, n) split into contiguous chunks, one per thread; small n (< 2*grain) runs inline.
void ops_parallel_for(long n, long grain, ParallelFn fn, void *ctx);

// --- pooling with padding (trainer/ops/pool.c; CUDA twin trainer/ops/pool_cuda.cu) ----------------
// Max pool, kernel k, stride s, padding p (PyTorch's MaxPool2d(k, s, p), floor mode; the ResNet stem
// is k=3 s=2 p=1): x (B,C,h,w) -> y (B,C,oh,ow), oh = ops_maxpool_out(h, k, s, p). Padding never
// wins a window. Backward recomputes the argmax from x (first maximum in scan order, as PyTorch),
// overwrites dx and adds dy of overlapping windows.
int  ops_maxpool_out(int in, int k, int s, int p);
void ops_cpu_maxpool_forward(int B, int C, int h, int w, int k, int s, int p, float *y, const float *x);
void ops_cpu_maxpool_backward(int B, int C, int h, int w, int k, int s, int p, float *dx, const float *dy,
                              const float *x);
// The same on device memory, on ops_cuda_stream() (only in builds with CUDA: SEGX_HAVE_CUDA).
void ops_cuda_maxpool_forward(int B, int C, int h, int w, int k, int s, int p, float *y, const float *x);
void ops_cuda_maxpool_backward(int B, int C, int h, int w, int k, int s, int p, float *dx, const float *dy,
                               const float *x);

#endif
