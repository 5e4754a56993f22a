// trainer/ops/conv_dnnl.c — convolution forward, input gradient and weight gradient through oneDNN.
// Why: its JIT kernels on blocked layouts (nChw16c, OIhw16i16o) are what PyTorch's CPU convolutions
// run; for the channel-heavy small maps of ResNet-18 they beat im2col + sgemm by a wide margin.
// The tensors stay NCHW between ops: each pass reorders its inputs into the primitive's layout and its
// output back (with a sum post-op where the op table accumulates), all inside the caller's workspace
// (the primitives' scratchpads too), so nothing here allocates per call. Primitives are built once per
// (shape, batch, bias) and kept; oneDNN runs them on its OpenMP threads (omp_set_num_threads).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "trainer/ops/conv_dnnl.h"
// defines: conv_dnnl_enable, conv_dnnl_ok, conv_dnnl_workspace, conv_dnnl_set_threads, conv_dnnl_forward,
//          conv_dnnl_backward_data, conv_dnnl_backward_weights

#ifdef SEGX_HAVE_DNNL
#include <omp.h>
#include <pthread.h>
#include <oneapi/dnnl/dnnl.h>

static int enabled = -1;   // -1: not decided yet (SEGX_CONV_DNNL=0 switches off)
static int nthreads = 1;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t engine;
static dnnl_stream_t stream;

void conv_dnnl_enable(int on) { enabled = on; }
void conv_dnnl_set_threads(int n) { nthreads = n < 1 ? 1 : n; }

static int engine_ready(void) {   // called with mu held
    if (engine) return 1;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) { engine = NULL; return 0; }
    if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(engine); engine = NULL; return 0;
    }
    return 1;
}

// A cut kernel's (conv_cut.h, pad -1: sides differ) negative padding on a side, a crop: not asked of oneDNN.
static int cut_crops(const ConvDesc *d) {
    int bottom = (d->oh - 1) * d->stride + (d->kh - 1) * d->dil + 1 - d->h - d->padh;
    int right = (d->ow - 1) * d->stride + (d->kw - 1) * d->dil + 1 - d->w - d->padw;
    return d->padh < 0 || d->padw < 0 || bottom < 0 || right < 0;
}

int conv_dnnl_ok(const ConvDesc *d) {
    if (enabled < 0) {
        const char *e = getenv("SEGX_CONV_DNNL");
        enabled = e && strcmp(e, "0") == 0 ? 0 : e && strcmp(e, "all") == 0 ? 2 : 1;
    }
    if (d->pad < 0 && cut_crops(d)) return 0;
    return enabled && d->cin >= 1 && d->cout >= 1 && d->groups <= 1;   // grouped: cpu_mobile.c
}

// ----------------------------------------------------------------------------------------------
// one tensor argument of a pass: the user's layout, the primitive's, and the reorder between them

typedef struct {
    dnnl_memory_desc_t user, prim;
    dnnl_primitive_t reorder;   // NULL: the primitive reads/writes the user's buffer directly
    size_t off;                 // bytes into the workspace when reordered
} Arg;

enum { IN, OUT, OUT_SUM };      // reorder user->prim before, prim->user after (overwrite / add)

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int arg_init(Arg *a, const dnnl_memory_desc_t *user, const dnnl_memory_desc_t *prim, int dir, size_t *off) {
    a->user = *user; a->prim = *prim; a->reorder = NULL; a->off = 0;
    if (dir != OUT_SUM && dnnl_memory_desc_equal(user, prim)) return 0;
    a->off = *off;
    *off += align64(dnnl_memory_desc_get_size(prim));
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    int rc = -1;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return -1;
    if (dir == OUT_SUM) {
        if (dnnl_post_ops_create(&po) != dnnl_success || dnnl_post_ops_append_sum(po, 1.f) != dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success) goto out;
    }
    const dnnl_memory_desc_t *src = dir == IN ? user : prim, *dst = dir == IN ? prim : user;
    if (dnnl_reorder_primitive_desc_create(&pd, src, engine, dst, engine, attr) != dnnl_success) goto out;
    if (dnnl_primitive_create(&a->reorder, pd) != dnnl_success) { a->reorder = NULL; goto out; }
    rc = 0;
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

typedef struct {
    dnnl_primitive_t prim;
    size_t scratch_off, scratch_bytes, need;   // need: workspace bytes of this pass
} Pass;

typedef struct Entry {
    ConvDesc d; int B, bias, nthr;
    Pass fw, bd, bw;
    Arg f_src, f_wei, f_dst;                      // forward
    Arg d_ddst, d_wei, d_dsrc, d_dsrc_acc;        // input gradient (d_dsrc_acc: the accumulate variant)
    Arg w_src, w_ddst, w_dwei;                    // weight gradient (dwei always summed into dw)
    size_t w_dbias_off;                           // diff bias (cout floats) before it is added to db
    struct Entry *next;
} Entry;
static Entry *cache;

// Workspace granted by conv_dnnl_workspace: a model with max batch mb holds at least this for d.
typedef struct Grant { ConvDesc d; int mb; size_t bytes; struct Grant *next; } Grant;
static Grant *grants;

static int same_desc(const ConvDesc *a, const ConvDesc *b) { return memcmp(a, b, sizeof *a) == 0; }

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int e, dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a, b, c, e};
    dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag);
}

static int pass_finish(Pass *p, dnnl_primitive_desc_t pd, size_t *off) {
    const dnnl_memory_desc_t *s = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->scratch_bytes = s ? dnnl_memory_desc_get_size(s) : 0;
    p->scratch_off = *off;
    *off += align64(p->scratch_bytes);
    p->need = *off;
    return dnnl_primitive_create(&p->prim, pd) == dnnl_success ? 0 : -1;
}

// 1x1 stride-1 layers run on the tensors' own NCHW layout (oneDNN takes its gemm convolution): on the small
// maps of the mobile nets the reorders to and from the blocked layout (nChw8c) that its 1x1 kernel wants
// cost more than that kernel saves (ShuffleNetV2, batch 128, 1 thread: reorders ~14% of a step; CPU per
// step ~7% lower in plain layout). SEGX_CONV_DNNL_BLOCKED=1 restores the blocked layout (for comparisons).
// Only for B > 1: DenseNet's channel-major 1x1 GEMMs (B = 1, one row of B*HW columns) were not measured in
// plain layout, and there its batch-4 fixture missed one of 16 sampled gradients of an early layer by more
// than 8x PyTorch's own float32 error (summation order), so they keep the blocked kernel.
static int plain_1x1(const ConvDesc *d) {
    static int blocked = -1;
    if (blocked < 0) { const char *e = getenv("SEGX_CONV_DNNL_BLOCKED"); blocked = e && strcmp(e, "1") == 0; }
    return !blocked && d->kh == 1 && d->kw == 1 && d->stride == 1 && d->padh == 0 && d->padw == 0 && d->dil == 1;
}

// Builds the three passes of (d, B, bias) for nthr threads; NULL when oneDNN declines the shape.
// The thread count is part of the key: a primitive splits its work for the OpenMP team size current
// when it is created, and keeps that split (and its scratchpad size) whatever the team at run time.
static Entry *entry_build(const ConvDesc *d, int B, int bias, int nthr) {
    Entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->d = *d; e->B = B; e->bias = bias; e->nthr = nthr;
    omp_set_num_threads(nthr);
    dnnl_memory_desc_t src_u, wei_u, dst_u, bias_u, src_a, wei_a, dst_a, bias_a;
    md4(&src_u, B, d->cin, d->h, d->w, dnnl_nchw);
    md4(&wei_u, d->cout, d->cin, d->kh, d->kw, dnnl_oihw);
    md4(&dst_u, B, d->cout, d->oh, d->ow, dnnl_nchw);
    int plain = plain_1x1(d) && B > 1;
    md4(&src_a, B, d->cin, d->h, d->w, plain ? dnnl_nchw : dnnl_format_tag_any);
    md4(&wei_a, d->cout, d->cin, d->kh, d->kw, dnnl_format_tag_any);
    md4(&dst_a, B, d->cout, d->oh, d->ow, plain ? dnnl_nchw : dnnl_format_tag_any);
    dnnl_dims_t bd = {d->cout};
    dnnl_memory_desc_init_by_tag(&bias_u, 1, bd, dnnl_f32, dnnl_x);
    bias_a = bias_u;
    dnnl_dims_t strides = {d->stride, d->stride}, dil = {d->dil - 1, d->dil - 1}, pl = {d->padh, d->padw};
    dnnl_dims_t pr = {(d->oh - 1) * d->stride + (d->kh - 1) * d->dil + 1 - d->h - d->padh,
                      (d->ow - 1) * d->stride + (d->kw - 1) * d->dil + 1 - d->w - d->padw};
    dnnl_convolution_desc_t fd, dd, wd;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    int ok = 0;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success) goto out;
    if (dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src_a, &wei_a,
            bias ? &bias_a : NULL, &dst_a, strides, dil, pl, pr) != dnnl_success ||
        dnnl_primitive_desc_create(&fpd, &fd, attr, engine, NULL) != dnnl_success) goto out;
    if (dnnl_dilated_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &src_a, &wei_a, &dst_a,
            strides, dil, pl, pr) != dnnl_success ||
        dnnl_primitive_desc_create(&dpd, &dd, attr, engine, fpd) != dnnl_success) goto out;
    if (dnnl_dilated_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &src_a, &wei_a,
            bias ? &bias_a : NULL, &dst_a, strides, dil, pl, pr) != dnnl_success ||
        dnnl_primitive_desc_create(&wpd, &wd, attr, engine, fpd) != dnnl_success) goto out;
#define MD(pd, q) dnnl_primitive_desc_query_md(pd, q, 0)
    size_t off = 0;
    if (arg_init(&e->f_src, &src_u, MD(fpd, dnnl_query_src_md), IN, &off) ||
        arg_init(&e->f_wei, &wei_u, MD(fpd, dnnl_query_weights_md), IN, &off) ||
        arg_init(&e->f_dst, &dst_u, MD(fpd, dnnl_query_dst_md), OUT, &off) || pass_finish(&e->fw, fpd, &off)) goto out;
    off = 0;
    size_t off2;
    if (arg_init(&e->d_ddst, &dst_u, MD(dpd, dnnl_query_diff_dst_md), IN, &off) ||
        arg_init(&e->d_wei, &wei_u, MD(dpd, dnnl_query_weights_md), IN, &off)) goto out;
    off2 = off;   // the overwrite and accumulate variants share the diff-src slot
    if (arg_init(&e->d_dsrc, &src_u, MD(dpd, dnnl_query_diff_src_md), OUT, &off) ||
        arg_init(&e->d_dsrc_acc, &src_u, MD(dpd, dnnl_query_diff_src_md), OUT_SUM, &off2)) goto out;
    if (off2 > off) off = off2;
    if (pass_finish(&e->bd, dpd, &off)) goto out;
    off = 0;
    if (arg_init(&e->w_src, &src_u, MD(wpd, dnnl_query_src_md), IN, &off) ||
        arg_init(&e->w_ddst, &dst_u, MD(wpd, dnnl_query_diff_dst_md), IN, &off) ||
        arg_init(&e->w_dwei, &wei_u, MD(wpd, dnnl_query_diff_weights_md), OUT_SUM, &off)) goto out;
    e->w_dbias_off = off;
    off += align64(sizeof(float) * d->cout);
    if (pass_finish(&e->bw, wpd, &off)) goto out;
#undef MD
    ok = 1;
out:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) {   // a half-built entry: its primitives are released with it
        dnnl_primitive_t *all[] = {&e->fw.prim, &e->bd.prim, &e->bw.prim, &e->f_src.reorder, &e->f_wei.reorder,
                                   &e->f_dst.reorder, &e->d_ddst.reorder, &e->d_wei.reorder, &e->d_dsrc.reorder,
                                   &e->d_dsrc_acc.reorder, &e->w_src.reorder, &e->w_ddst.reorder, &e->w_dwei.reorder};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) if (*all[i]) dnnl_primitive_destroy(*all[i]);
        free(e);
        return NULL;
    }
    return e;
}

static size_t entry_need(const Entry *e) {
    size_t n = e->fw.need;
    if (e->bd.need > n) n = e->bd.need;
    if (e->bw.need > n) n = e->bw.need;
    return n + 64;   // the workspace is aligned up to 64 bytes first
}

// Returns the cached entry (built on first use), or NULL. Called with mu held.
static Entry *entry_get(const ConvDesc *d, int B, int bias, int nthr) {
    if (!engine_ready()) return NULL;
    for (Entry *e = cache; e; e = e->next)
        if (e->B == B && e->bias == bias && e->nthr == nthr && same_desc(&e->d, d)) return e;
    Entry *e = entry_build(d, B, bias, nthr);
    if (e) { e->next = cache; cache = e; }
    return e;
}

size_t conv_dnnl_workspace(const ConvDesc *d, int max_batch) {
    if (!conv_dnnl_ok(d) || max_batch < 1) return 0;
    pthread_mutex_lock(&mu);
    size_t bytes = 0;
    // the current thread count and the machine's (a model may be created before its threads are set)
    int procs = omp_get_num_procs(), counts[2] = {nthreads, procs > nthreads ? procs : nthreads};
    for (int t = 0; t < (counts[1] != counts[0] ? 2 : 1); t++)
        for (int bias = 0; bias < 2; bias++) {
            Entry *e = entry_get(d, max_batch, bias, counts[t]);
            if (e && entry_need(e) > bytes) bytes = entry_need(e);
        }
    if (bytes) {
        Grant *g = malloc(sizeof *g);
        if (g) { *g = (Grant){*d, max_batch, bytes, grants}; grants = g; }
        else bytes = 0;
    }
    pthread_mutex_unlock(&mu);
    return (bytes + sizeof(float) - 1) / sizeof(float);
}

// The entry for a call, when the workspace is known to hold it: every model that may call with batch B
// was granted at least the smallest grant among shapes d with max batch >= B.
static Entry *entry_for_call(const ConvDesc *d, int B, int bias) {
    pthread_mutex_lock(&mu);
    size_t have = SIZE_MAX;
    for (Grant *g = grants; g; g = g->next)
        if (g->mb >= B && same_desc(&g->d, d) && g->bytes < have) have = g->bytes;
    Entry *e = have == SIZE_MAX ? NULL : entry_get(d, B, bias, nthreads);
    if (e && entry_need(e) > have) e = NULL;
    pthread_mutex_unlock(&mu);
    return e;
}

// ----------------------------------------------------------------------------------------------
// execution

typedef struct { int n; dnnl_exec_arg_t a[8]; dnnl_memory_t mem[8]; } Args;

static dnnl_memory_t mem_of(const dnnl_memory_desc_t *md, void *p) {
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, engine, p) != dnnl_success) return NULL;
    return m;
}

static int run_reorder(dnnl_primitive_t r, const dnnl_memory_desc_t *smd, const void *src, const dnnl_memory_desc_t *dmd,
                       void *dst) {
    dnnl_memory_t s = mem_of(smd, (void *)src), t = mem_of(dmd, dst);
    int rc = -1;
    if (s && t) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, s}, {DNNL_ARG_TO, t}};
        rc = dnnl_primitive_execute(r, stream, 2, a) == dnnl_success ? 0 : -1;
    }
    if (s) dnnl_memory_destroy(s);
    if (t) dnnl_memory_destroy(t);
    return rc;
}

// The primitive's buffer for argument a: the user's pointer, or the workspace slot after reordering in.
static int bind_in(Args *x, int arg, const Arg *a, const void *user, char *ws) {
    void *p = (void *)user;
    if (a->reorder) {
        p = ws + a->off;
        if (run_reorder(a->reorder, &a->user, user, &a->prim, p)) return -1;
    }
    dnnl_memory_t m = mem_of(&a->prim, p);
    if (!m) return -1;
    x->a[x->n] = (dnnl_exec_arg_t){arg, m}; x->mem[x->n++] = m;
    return 0;
}
static int bind_out(Args *x, int arg, const Arg *a, void *user, char *ws) {
    dnnl_memory_t m = mem_of(&a->prim, a->reorder ? ws + a->off : user);
    if (!m) return -1;
    x->a[x->n] = (dnnl_exec_arg_t){arg, m}; x->mem[x->n++] = m;
    return 0;
}
static int finish_out(const Arg *a, void *user, char *ws) {
    return a->reorder ? run_reorder(a->reorder, &a->prim, ws + a->off, &a->user, user) : 0;
}

static int execute(const Pass *p, Args *x, char *ws) {
    int rc = -1;
    dnnl_memory_desc_t smd;
    dnnl_dims_t sd = {(dnnl_dim_t)p->scratch_bytes};
    if (p->scratch_bytes) {
        dnnl_memory_desc_init_by_tag(&smd, 1, sd, dnnl_u8, dnnl_a);
        dnnl_memory_t m = mem_of(&smd, ws + p->scratch_off);
        if (!m) goto out;
        x->a[x->n] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m}; x->mem[x->n++] = m;
    }
    rc = dnnl_primitive_execute(p->prim, stream, x->n, x->a) == dnnl_success ? 0 : -1;
out:
    return rc;
}

static void args_free(Args *x) { for (int i = 0; i < x->n; i++) dnnl_memory_destroy(x->mem[i]); x->n = 0; }

static char *ws_base(float *ws) { return (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63); }

int conv_dnnl_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b, float *ws) {
    if (!conv_dnnl_ok(d)) return -1;
    Entry *e = entry_for_call(d, B, b != NULL);
    if (!e) return -1;
    omp_set_num_threads(nthreads);
    char *base = ws_base(ws);
    Args a = {0};
    int rc = bind_in(&a, DNNL_ARG_SRC, &e->f_src, x, base) || bind_in(&a, DNNL_ARG_WEIGHTS, &e->f_wei, w, base) ||
             bind_out(&a, DNNL_ARG_DST, &e->f_dst, y, base);
    if (!rc && b) {
        dnnl_memory_desc_t bmd; dnnl_dims_t bd = {d->cout};
        dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
        dnnl_memory_t m = mem_of(&bmd, (void *)b);
        if (!m) rc = -1;
        else { a.a[a.n] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m}; a.mem[a.n++] = m; }
    }
    if (!rc) rc = execute(&e->fw, &a, base) || finish_out(&e->f_dst, y, base);
    args_free(&a);
    return rc ? -1 : 0;
}

int conv_dnnl_backward_data(const ConvDesc *d, int B, float *dx, const float *dy, const float *w, float *ws,
                            int accumulate) {
    if (!conv_dnnl_ok(d)) return -1;
    Entry *e = entry_for_call(d, B, 0);
    if (!e) return -1;
    omp_set_num_threads(nthreads);
    char *base = ws_base(ws);
    const Arg *out = accumulate ? &e->d_dsrc_acc : &e->d_dsrc;
    Args a = {0};
    int rc = bind_in(&a, DNNL_ARG_DIFF_DST, &e->d_ddst, dy, base) ||
             bind_in(&a, DNNL_ARG_WEIGHTS, &e->d_wei, w, base) || bind_out(&a, DNNL_ARG_DIFF_SRC, out, dx, base) ||
             execute(&e->bd, &a, base) || finish_out(out, dx, base);
    args_free(&a);
    return rc ? -1 : 0;
}

int conv_dnnl_backward_weights(const ConvDesc *d, int B, float *dw, float *db, const float *dy, const float *x,
                               float *ws) {
    if (!conv_dnnl_ok(d)) return -1;
    Entry *e = entry_for_call(d, B, db != NULL);
    if (!e) return -1;
    omp_set_num_threads(nthreads);
    char *base = ws_base(ws);
    float *dbias = (float *)(base + e->w_dbias_off);
    Args a = {0};
    int rc = bind_in(&a, DNNL_ARG_SRC, &e->w_src, x, base) || bind_in(&a, DNNL_ARG_DIFF_DST, &e->w_ddst, dy, base) ||
             bind_out(&a, DNNL_ARG_DIFF_WEIGHTS, &e->w_dwei, dw, base);
    if (!rc && db) {
        dnnl_memory_desc_t bmd; dnnl_dims_t bd = {d->cout};
        dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
        dnnl_memory_t m = mem_of(&bmd, dbias);
        if (!m) rc = -1;
        else { a.a[a.n] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, m}; a.mem[a.n++] = m; }
    }
    if (!rc) rc = execute(&e->bw, &a, base) || finish_out(&e->w_dwei, dw, base);
    if (!rc && db) for (int c = 0; c < d->cout; c++) db[c] += dbias[c];
    args_free(&a);
    return rc ? -1 : 0;
}

#else  // !SEGX_HAVE_DNNL: built without oneDNN; ops_cpu keeps its own paths

void conv_dnnl_enable(int on) { (void)on; }
// A cut kernel's (conv_cut.h, pad -1: sides differ) negative padding on a side, a crop: not asked of oneDNN.
static int cut_crops(const ConvDesc *d) {
    int bottom = (d->oh - 1) * d->stride + (d->kh - 1) * d->dil + 1 - d->h - d->padh;
    int right = (d->ow - 1) * d->stride + (d->kw - 1) * d->dil + 1 - d->w - d->padw;
    return d->padh < 0 || d->padw < 0 || bottom < 0 || right < 0;
}

int conv_dnnl_ok(const ConvDesc *d) { (void)d; return 0; }
size_t conv_dnnl_workspace(const ConvDesc *d, int max_batch) { (void)d; (void)max_batch; return 0; }
void conv_dnnl_set_threads(int n) { (void)n; }
int conv_dnnl_forward(const ConvDesc *d, int B, float *y, const float *x, const float *w, const float *b, float *ws) {
    (void)d; (void)B; (void)y; (void)x; (void)w; (void)b; (void)ws; return -1;
}
int conv_dnnl_backward_data(const ConvDesc *d, int B, float *dx, const float *dy, const float *w, float *ws,
                            int accumulate) {
    (void)d; (void)B; (void)dx; (void)dy; (void)w; (void)ws; (void)accumulate; return -1;
}
int conv_dnnl_backward_weights(const ConvDesc *d, int B, float *dw, float *db, const float *dy, const float *x,
                               float *ws) {
    (void)d; (void)B; (void)dw; (void)db; (void)dy; (void)x; (void)ws; return -1;
}
#endif
