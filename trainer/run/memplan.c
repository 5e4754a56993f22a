// trainer/run/memplan.c — planned host memory of a CPU run against the rank's limit (see memplan.h).
#include "trainer/run/memplan.h"
// defines: memplan_model, memplan_limit, memplan_check, memplan_eval_images

#include "trainer/ops/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// ---- the model's allocations, counted -----------------------------------------------------------
// The model is built on a copy of the CPU op table whose alloc maps address space without
// committing memory (MAP_NORESERVE: pages cost nothing until touched, and creating a model touches
// only its parameters and buffers), so a batch of 100,000 is planned without being allocated.

typedef struct { void *p; size_t n; } Mapping;
static Mapping *maps;
static size_t nmaps, capmaps;
static size_t counted_bytes;

static void *count_alloc(size_t bytes)
{
    if (nmaps == capmaps) {
        size_t cap = capmaps ? 2 * capmaps : 256;
        Mapping *m = realloc(maps, cap * sizeof *m);
        if (!m) return NULL;
        maps = m;
        capmaps = cap;
    }
    size_t n = bytes ? bytes : 1;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    maps[nmaps++] = (Mapping){p, n};
    counted_bytes += bytes;
    return p;
}

static void count_free(void *p)
{
    for (size_t i = 0; p && i < nmaps; i++)
        if (maps[i].p == p) {
            munmap(p, maps[i].n);
            maps[i] = maps[--nmaps];
            return;
        }
}

typedef struct { double fixed, per_sample; size_t params, buffers; } ModelBytes;

// Bytes the model allocates at max_batch = batch.
static int bytes_at(const ModelConfig *mc, int batch, double *bytes, ModelBytes *out, char *err, size_t errlen)
{
    Ops ops = *ops_cpu();
    ops.alloc = count_alloc;
    ops.free = count_free;
    ModelConfig c = *mc;
    c.max_batch = batch;
    Model *m;
    counted_bytes = 0;
    int rc = model_create_on(&c, &ops, &m, err, errlen);
    if (rc == 0) {
        *bytes = (double)counted_bytes;
        out->params = model_num_params(m);
        out->buffers = model_num_buffers(m);
        model_free(m);
    }
    free(maps);
    maps = NULL;
    nmaps = capmaps = 0;
    return rc;
}

// Exact at mc->max_batch; per_sample is the slope towards half that batch (workspaces stop growing
// with the batch once convolutions run in chunks, so the slope from batch 1 to 2 would be too steep).
static int model_bytes(const ModelConfig *mc, ModelBytes *out, char *err, size_t errlen)
{
    int b = mc->max_batch > 1 ? mc->max_batch : 2, a = b / 2;
    double at_b, at_a;
    if (bytes_at(mc, b, &at_b, out, err, errlen) || bytes_at(mc, a, &at_a, out, err, errlen)) return -1;
    out->per_sample = (at_b - at_a) / (b - a);
    out->fixed = at_b - out->per_sample * b;
    return 0;
}

int memplan_model(const ModelConfig *mc, MemPlan *p, char *err, size_t errlen)
{
    ModelBytes mb;
    if (model_bytes(mc, &mb, err, errlen)) return -1;
    p->fixed = mb.fixed;
    p->per_sample = mb.per_sample;
    return 0;
}

// ---- evaluation at each image's own size (seg_eval.c) ---------------------------------------------

// The second model of whole mode: the image's size at batch 1, or (a size the model refuses) padded up
// to a multiple of 32 as whole_model pads it; *mh, *mw the size it was built at.
static int whole_model_bytes(const ModelConfig *mc, int h, int w, double *bytes, ModelBytes *mb, int *mh, int *mw,
                             char *err, size_t errlen)
{
    ModelConfig c = *mc;
    c.height = *mh = h; c.width = *mw = w;
    if (bytes_at(&c, 1, bytes, mb, err, errlen) == 0) return 0;
    c.height = *mh = (h < 32 ? 32 : h + 31) / 32 * 32;
    c.width = *mw = (w < 32 ? 32 : w + 31) / 32 * 32;
    return bytes_at(&c, 1, bytes, mb, err, errlen);
}

int memplan_eval_images(const ModelConfig *mc, const MemRun *r, double *fixed, double *per_sample, char *err,
                        size_t errlen)
{
    *fixed = *per_sample = 0;
    if (r->eval_images == MEM_EVAL_IMAGES_NONE) return 0;
    double C = mc->in_channels, K = mc->classes;
    int h = r->eval_h > 0 ? r->eval_h : mc->height, w = r->eval_w > 0 ? r->eval_w : mc->width;
    double hw = (double)h * w;
    // seg_eval_images: logits, predictions and labels of the image; its normalised copy (SegEvalWs.x);
    // two decoded samples (image and label bytes), one fetched ahead on a helper thread
    *fixed = 4.0 * K * hw + 2 * 4.0 * hw + 4.0 * C * hw + 2 * (C * hw + hw);
    if (r->eval_images == MEM_EVAL_IMAGES_SLIDE) {   // per-pixel counts; a batch of windows (at most 64)
        double win = 4.0 * C * mc->height * mc->width;
        *fixed += 4.0 * hw + (r->batch > 64 ? 64 * win : 0);
        *per_sample = r->batch > 64 ? 0 : win;
        return 0;
    }
    double model; ModelBytes mb; int mh, mw;
    if (whole_model_bytes(mc, h, w, &model, &mb, &mh, &mw, err, errlen)) return -1;
    // the model, the padded input (when padded), the host copy its parameters and buffers pass through
    double big = mb.params > mb.buffers ? mb.params : mb.buffers;
    *fixed += model + (mh != h || mw != w ? 4.0 * C * mh * mw : 0) + 4.0 * big;
    return 0;
}

// ---- the limit ---------------------------------------------------------------------------------

static double read_number_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    double v = 0;
    if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0) v = strtod(buf, NULL);
    fclose(f);
    return v >= 1e18 ? 0 : v;   // cgroup v1 says "unlimited" with a huge number
}

static double meminfo_kb(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double v = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') { v = strtod(line + n + 1, NULL); break; }
    fclose(f);
    return v * 1024;
}

// The memory cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes), 0 when none.
static double cgroup_limit(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[1024], path[1400];
    double best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *controllers = c1 + 1, *cg = c2 + 1;
        double v = 0;
        if (!*controllers) {   // v2
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", cg);
            v = read_number_file(path);
            if (v == 0) v = read_number_file("/sys/fs/cgroup/memory.max");
        } else if (strstr(controllers, "memory")) {   // v1
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", cg);
            v = read_number_file(path);
            if (v == 0) v = read_number_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
        }
        if (v > 0 && (best == 0 || v < best)) best = v;
    }
    fclose(f);
    return best;
}

static long env_long(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : 0;
}

// Ranks of this job on this node (they share its memory).
static long local_ranks(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE",
                                        "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE", NULL};
    for (int i = 0; names[i]; i++) {
        long n = env_long(names[i]);   // "2(x3)" reads as 2
        if (n > 0) return n;
    }
    return 1;
}

static void fmt_bytes(double b, char *out, size_t len)
{
    if (b >= 1024.0 * 1024 * 1024) snprintf(out, len, "%.1f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(out, len, "%.1f MiB", b / (1024.0 * 1024));
    else snprintf(out, len, "%.1f KiB", b / 1024.0);
}

// The kernel's limits (the machine, the memory cgroup: going over them is an OOM kill) when
// requested is 0; Slurm's --mem / --mem-per-cpu (what the job asked for: a cluster that enforces
// it shows it as the cgroup limit too) when requested is 1. 0 when none is known.
static double limit_of(int requested, char *src, size_t len)
{
    long ranks = local_ranks();
    double best = 0;
    char what[200] = "";
    if (!requested) {
        double total = meminfo_kb("MemTotal");
        if (total > 0) { best = total / ranks; snprintf(what, sizeof what, "the machine's memory (MemTotal)"); }
        double cg = cgroup_limit();
        if (cg > 0 && (best == 0 || cg / ranks < best)) { best = cg / ranks; snprintf(what, sizeof what, "the cgroup memory limit"); }
    } else {
        long per_node = env_long("SLURM_MEM_PER_NODE");   // MB, from sbatch --mem
        if (per_node > 0) {
            best = per_node * 1048576.0 / ranks;
            snprintf(what, sizeof what, "the job's --mem=%ldM (SLURM_MEM_PER_NODE)", per_node);
        }
        long per_cpu = env_long("SLURM_MEM_PER_CPU");
        if (per_cpu > 0) {
            long cpus = env_long("SLURM_CPUS_PER_TASK");
            double v = per_cpu * 1048576.0 * (cpus > 0 ? cpus : 1);
            if (best == 0 || v < best) {
                best = v;
                snprintf(what, sizeof what, "the job's --mem-per-cpu=%ldM x %ld CPU(s) per task", per_cpu, cpus > 0 ? cpus : 1);
                ranks = 1;
            }
        }
    }
    if (ranks > 1 && best > 0) snprintf(what + strlen(what), sizeof what - strlen(what), " shared by %ld ranks on this node", ranks);
    if (src) snprintf(src, len, "%s", what);
    return best;
}

double memplan_limit(char *src, size_t len)
{
    char hard_src[256], req_src[256];
    double hard = limit_of(0, hard_src, sizeof hard_src), req = limit_of(1, req_src, sizeof req_src);
    int use_req = req > 0 && (hard == 0 || req < hard);
    if (src) snprintf(src, len, "%s", use_req ? req_src : hard_src);
    return use_req ? req : hard;
}

// ---- the check ---------------------------------------------------------------------------------

static double resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long size = 0, rss = 0;
    int ok = fscanf(f, "%ld %ld", &size, &rss) == 2;
    fclose(f);
    return ok ? (double)rss * (double)sysconf(_SC_PAGESIZE) : 0;
}

// The error (or warning) for a plan over the limit: what was planned, of what, and the largest batch
// that fits by the plan's own fixed and per-sample bytes.
typedef struct { double planned, fixed, per_sample, in_use, limit, eval; int over_request; } Over;

static void say_over(const MemRun *r, const Over *o, const char *src, char *err, size_t errlen)
{
    char a[32], b[32], c[32], d[32], e[32], ev[96] = "";
    fmt_bytes(o->planned, a, sizeof a);
    fmt_bytes(o->fixed, b, sizeof b);
    fmt_bytes(o->per_sample, c, sizeof c);
    fmt_bytes(o->in_use, d, sizeof d);
    fmt_bytes(o->limit, e, sizeof e);
    if (o->eval > 0) {
        char f[32];
        fmt_bytes(o->eval, f, sizeof f);
        snprintf(ev, sizeof ev, " (%s of it evaluation at each image's size)", f);
    }
    double fit = (o->limit - o->in_use - o->fixed) / o->per_sample;
    long max_batch = fit >= 1 ? (long)fit : 0;
    char fits[160];
    if (max_batch > 0)
        snprintf(fits, sizeof fits, "a batch of at most %ld fits: use --batch-size %ld or less, or ask for more memory "
                 "(sbatch --mem)", max_batch, max_batch);
    else
        snprintf(fits, sizeof fits, "not even a batch of 1 fits: use a smaller model or ask for more memory (sbatch --mem)");
    snprintf(err, errlen,
             "--batch-size %d needs about %s of memory (%s for parameters, gradients and optimizer state%s + %s per "
             "sample x %d, on top of %s in use; every allocation counted) but %s %s (%s)%s; %s%s",
             r->batch, a, b, ev, c, r->batch, d, o->over_request ? "the job asked for" : "this rank may use", e, src,
             o->over_request ? ": a cluster that enforces it kills the job when it goes over" : "", fits,
             o->over_request ? "" : " (SEGX_MEMORY_CHECK=0 skips this check)");
}

int memplan_check(const ModelConfig *mc, const MemRun *r, char *err, size_t errlen)
{
    const char *off = getenv("SEGX_MEMORY_CHECK");
    if (off && strcmp(off, "0") == 0) return 0;
    char src[256], req_src[256];
    double hard = limit_of(0, src, sizeof src), req = limit_of(1, req_src, sizeof req_src);
    Over o = {.limit = hard};   // which limit the message is about: over_request
    if (req > 0 && (hard <= 0 || req < hard)) { o.limit = req; o.over_request = 1; }
    if (o.limit <= 0) return 0;   // nothing known to check against
    // the model at this batch (one build: the common case ends here)
    ModelBytes mb;
    double at_b, eval_sample;
    if (bytes_at(mc, r->batch, &at_b, &mb, err, errlen)) return 0;   // cannot even be mapped: model_create says so
    if (memplan_eval_images(mc, r, &o.eval, &eval_sample, err, errlen)) return 0;   // nor this: evaluation says so
    // beyond the model: optimizer state and the host copies of parameters, buffers and state
    double extra_fixed = 4.0 * ((double)r->optim_slots * mb.params + (double)mb.params + mb.buffers +
                                (double)r->optim_slots * mb.params) + o.eval;
    // loader slots (workers + 2 per loader), the 2 staging slots, eval predictions
    double sample = 4.0 * ((double)r->sample_floats + (double)r->label_ints);
    int slots = (r->workers + 2) * (r->has_eval ? 2 : 1) + 2;
    double extra_sample = sample * slots + (r->has_eval ? 4.0 * (double)r->label_ints : 0) + eval_sample;
    o.in_use = resident_bytes();
    o.planned = o.in_use + at_b + extra_fixed + extra_sample * r->batch;
    if (o.planned <= o.limit) return 0;
    if (o.over_request && hard > 0 && o.planned > hard) { o.limit = hard; o.over_request = 0; }
    if (o.over_request) snprintf(src, sizeof src, "%s", req_src);
    // too big: the model's slope (towards half the batch) says what fits
    int hi = r->batch > 1 ? r->batch : 2, lo = hi / 2;
    double at_hi = at_b, at_lo;
    if (hi != r->batch && bytes_at(mc, hi, &at_hi, &mb, err, errlen)) return 0;
    if (bytes_at(mc, lo, &at_lo, &mb, err, errlen)) return 0;
    o.per_sample = (at_hi - at_lo) / (hi - lo) + extra_sample;
    o.fixed = at_hi - (at_hi - at_lo) / (hi - lo) * hi + extra_fixed;
    say_over(r, &o, src, err, errlen);
    return o.over_request ? 1 : -1;
}
