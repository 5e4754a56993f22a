// trainer/data/loader.c — batches built on worker threads ahead of compute.
// Batch b of an epoch goes into slot b % depth and is built by worker b % workers; a worker may
// fill batch b once the consumer has released batch b - depth (depth = workers + 2, so with one
// worker the loader is triple buffered). Sample order depends only on (seed, epoch), never on the
// thread timing, which keeps runs and resumed runs bit-identical.
#include "trainer/data/data.h"
// defines: loader_*
#include "trainer/data/pipeline.h"   // defines: Pipeline, pipeline_train

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SLOT_EMPTY, SLOT_FILLING, SLOT_FULL };

typedef struct { Batch b; int state; } Slot;

struct Loader {
    Dataset *ds;
    LoaderConfig cfg;
    long n;            // samples used (after limit)
    long share;        // this rank's positions per epoch
    long nb;           // batches per epoch
    long *perm;        // epoch permutation (n)
    int perm_epoch;
    size_t img_elems, lab_elems;
    int depth;
    Slot *slots;
    pthread_t *threads;
    int nthreads, running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int epoch;
    long next;         // next batch the consumer will take
    int held;          // consumer holds slot of batch next-1
    int stop;
    uint8_t *scratch;  // the caller's thread, when workers == 0
    Sample sample;     // the same, with the pipeline
    PipeScratch pws;
    int out_h, out_w;  // batch image size (the crop with a pipeline)
    char err[1024];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Fisher-Yates with a splitmix64 stream keyed by (seed, epoch).
static void make_perm(long *perm, long n, uint64_t seed, int epoch) {
    for (long i = 0; i < n; i++) perm[i] = i;
    uint64_t s = data_splitmix64(seed ^ data_splitmix64(0x9E3779B9ull + (uint64_t)epoch));
    for (long i = n - 1; i > 0; i--) {
        s = data_splitmix64(s);
        long j = (long)(s % (uint64_t)(i + 1));
        long t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
}

static long sample_at(const Loader *l, long pos) {
    long p = l->cfg.rank + (long)l->cfg.world * pos;
    return l->cfg.shuffle ? l->perm[p] : p;
}

long loader_sample_index(const Loader *l, int epoch, long pos) {
    if (!l->cfg.shuffle) return l->cfg.rank + (long)l->cfg.world * pos;
    long *perm = malloc(sizeof(long) * l->n);
    if (!perm) return -1;
    make_perm(perm, l->n, l->cfg.seed, epoch);
    long r = perm[l->cfg.rank + (long)l->cfg.world * pos];
    free(perm);
    return r;
}

int loader_create(Dataset *ds, const LoaderConfig *cfg, Loader **out, char *err, size_t errlen) {
    *out = NULL;
    if (cfg->batch < 1 || cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world || cfg->workers < 0) {
        snprintf(err, errlen, "loader: bad batch %d / rank %d of %d / workers %d", cfg->batch, cfg->rank,
                 cfg->world, cfg->workers);
        return -1;
    }
    Loader *l = calloc(1, sizeof *l);
    if (!l) { snprintf(err, errlen, "out of memory"); return -1; }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->ds = ds;
    l->cfg = *cfg;
    l->n = cfg->limit > 0 && cfg->limit < ds->n ? cfg->limit : ds->n;
    if (cfg->drop_last) l->share = l->n / cfg->world;
    else l->share = l->n > cfg->rank ? (l->n - cfg->rank + cfg->world - 1) / cfg->world : 0;
    l->nb = cfg->drop_last ? l->share / cfg->batch : (l->share + cfg->batch - 1) / cfg->batch;
    if (cfg->drop_last && l->nb == 0) {
        snprintf(err, errlen, "%s: %ld samples give rank %d of %d fewer than one batch of %d",
                 ds->name, l->n, cfg->rank, cfg->world, cfg->batch);
        loader_free(l);
        return -1;
    }
    l->out_h = cfg->pipe ? cfg->pipe->crop_h : ds->height;
    l->out_w = cfg->pipe ? cfg->pipe->crop_w : ds->width;
    if (cfg->pipe && !ds->segmentation) {
        snprintf(err, errlen, "%s: the crop pipeline is for segmentation sets", ds->name);
        loader_free(l);
        return -1;
    }
    if (l->out_h <= 0) {
        snprintf(err, errlen, "%s: images of different sizes need the crop pipeline (--crop S, e.g. --crop 512 "
                 "--scale 2048x512)", ds->name);
        loader_free(l);
        return -1;
    }
    l->img_elems = (size_t)ds->channels * l->out_h * l->out_w;
    l->lab_elems = ds->segmentation ? (size_t)l->out_h * l->out_w : 1;
    l->depth = cfg->workers + 2;
    l->perm = malloc(sizeof(long) * (l->n ? l->n : 1));
    l->slots = calloc(l->depth, sizeof(Slot));
    l->threads = calloc(cfg->workers ? cfg->workers : 1, sizeof(pthread_t));
    l->scratch = malloc(l->img_elems);
    if (!l->perm || !l->slots || !l->threads || !l->scratch) goto oom;
    for (int s = 0; s < l->depth; s++) {
        l->slots[s].b.x = malloc(sizeof(float) * l->img_elems * cfg->batch);
        l->slots[s].b.y = malloc(sizeof(int32_t) * l->lab_elems * cfg->batch);
        if (!l->slots[s].b.x || !l->slots[s].b.y) goto oom;
    }
    l->perm_epoch = -1;
    *out = l;
    return 0;
oom:
    snprintf(err, errlen, "out of memory for loader buffers");
    loader_free(l);
    return -1;
}

long loader_num_batches(const Loader *l) { return l->nb; }
long loader_num_samples(const Loader *l) { return l->n; }
const char *loader_error(const Loader *l) { return l->err; }

static void flip_row(float *row, int w) {
    for (int a = 0, b = w - 1; a < b; a++, b--) { float t = row[a]; row[a] = row[b]; row[b] = t; }
}
static void flip_row_i(int32_t *row, int w) {
    for (int a = 0, b = w - 1; a < b; a++, b--) { int32_t t = row[a]; row[a] = row[b]; row[b] = t; }
}

// Sample idx through the pipeline into x, y. Random draws keyed by (seed, epoch, sample).
static int fill_pipe(Loader *l, long idx, float *x, int32_t *y, Sample *smp, PipeScratch *ws, char *msg, size_t msglen) {
    if (dataset_get_sample(l->ds, idx, smp, msg, msglen)) return -1;
    uint64_t key = data_splitmix64(l->cfg.seed ^ data_splitmix64(((uint64_t)l->epoch << 40) ^ (uint64_t)idx ^ 0x5E61ull << 52));
    if (pipeline_train(l->cfg.pipe, smp, key, x, y, ws)) { snprintf(msg, msglen, "out of memory in the pipeline"); return -1; }
    return 0;
}

// --augment on classification sets, the standard CIFAR augmentation (torchvision's RandomCrop(size,
// padding=4) then RandomHorizontalFlip): x = an HxW window of the image zero-padded by 4 on every
// side, at offset (dy, dx) in -4..4, mirrored when bit 0 of key is set. key's bits 8.. and 16.. pick
// the offsets, so the draw depends on (seed, epoch, sample) only.
#define AUGMENT_PAD 4
static void crop_pad_flip(float *x, const uint8_t *src, int c, int h, int w, uint64_t key) {
    int flip = (int)(key & 1);
    int dy = (int)((key >> 8) % (2 * AUGMENT_PAD + 1)) - AUGMENT_PAD;
    int dx = (int)((key >> 16) % (2 * AUGMENT_PAD + 1)) - AUGMENT_PAD;
    for (int ch = 0; ch < c; ch++)
        for (int yy = 0; yy < h; yy++) {
            int sy = yy + dy;
            float *row = x + ((size_t)ch * h + yy) * w;
            for (int xx = 0; xx < w; xx++) {
                int sx = (flip ? w - 1 - xx : xx) + dx;
                row[xx] = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[((size_t)ch * h + sy) * w + sx] / 255.0f : 0.0f;
            }
        }
}

// Builds batch b into slot; returns 0 or -1 with msg.
static int fill(Loader *l, long b, Batch *out, uint8_t *scratch, Sample *smp, PipeScratch *ws, char *msg, size_t msglen) {
    Dataset *ds = l->ds;
    long start = b * l->cfg.batch;
    long end = start + l->cfg.batch < l->share ? start + l->cfg.batch : l->share;
    out->n = (int)(end - start);
    out->index = b;
    for (long pos = start; pos < end; pos++) {
        long j = pos - start, idx = sample_at(l, pos);
        float *x = out->x + j * l->img_elems;
        int32_t *y = out->y + j * l->lab_elems;
        if (l->cfg.pipe) {
            if (fill_pipe(l, idx, x, y, smp, ws, msg, msglen)) return -1;
            continue;
        }
        if (ds->get(ds, idx, scratch, y, msg, msglen)) return -1;
        uint64_t key = data_splitmix64(l->cfg.seed ^ data_splitmix64(((uint64_t)l->epoch << 40) ^ (uint64_t)idx));
        if (l->cfg.augment && !ds->segmentation) {   // classification: CIFAR's crop with padding + flip
            crop_pad_flip(x, scratch, ds->channels, ds->height, ds->width, key);
            continue;
        }
        for (size_t p = 0; p < l->img_elems; p++) x[p] = scratch[p] / 255.0f;
        if (l->cfg.augment && (key & 1)) {
            int h = ds->height, w = ds->width;
            for (int r = 0; r < ds->channels * h; r++) flip_row(x + (size_t)r * w, w);
            if (ds->segmentation)
                for (int r = 0; r < h; r++) flip_row_i(y + (size_t)r * w, w);
        }
    }
    return 0;
}

typedef struct { Loader *l; int id; long first; } WorkerArg;

static void *worker_main(void *p) {
    WorkerArg *a = p;
    Loader *l = a->l;
    int id = a->id;
    long first = a->first;  // not l->next: the consumer may already have moved on
    free(a);
    uint8_t *scratch = malloc(l->img_elems);
    Sample smp = { 0 };
    PipeScratch ws = { 0 };
    char msg[1024];
    for (long b = first + id; b < l->nb; b += l->nthreads) {
        Slot *s = &l->slots[b % l->depth];
        pthread_mutex_lock(&l->mu);
        while (!l->stop && !(b < l->next + l->depth - (l->held ? 1 : 0) && s->state == SLOT_EMPTY))
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) { pthread_mutex_unlock(&l->mu); break; }
        s->state = SLOT_FILLING;
        pthread_mutex_unlock(&l->mu);
        int rc = scratch ? fill(l, b, &s->b, scratch, &smp, &ws, msg, sizeof msg) : -1;
        if (!scratch) snprintf(msg, sizeof msg, "out of memory in loader thread");
        pthread_mutex_lock(&l->mu);
        if (rc && !l->err[0]) snprintf(l->err, sizeof l->err, "%s", msg);
        s->state = SLOT_FULL;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        if (rc) break;
    }
    free(scratch);
    sample_free(&smp);
    pipeline_scratch_free(&ws);
    return NULL;
}

int loader_begin(Loader *l, int epoch, long first_batch, char *err, size_t errlen) {
    if (l->running) loader_end(l);
    l->epoch = epoch;
    if (l->cfg.shuffle && l->perm_epoch != epoch) {
        make_perm(l->perm, l->n, l->cfg.seed, epoch);
        l->perm_epoch = epoch;
    }
    l->next = first_batch;
    l->held = 0;
    l->stop = 0;
    l->err[0] = 0;
    for (int s = 0; s < l->depth; s++) l->slots[s].state = SLOT_EMPTY;
    l->nthreads = l->cfg.workers;
    for (int t = 0; t < l->nthreads; t++) {
        WorkerArg *a = malloc(sizeof *a);
        if (!a) { snprintf(err, errlen, "out of memory"); l->nthreads = t; l->running = 1; loader_end(l); return -1; }
        a->l = l; a->id = t; a->first = first_batch;
        if (pthread_create(&l->threads[t], NULL, worker_main, a)) {
            free(a);
            snprintf(err, errlen, "cannot start loader thread %d", t);
            l->nthreads = t; l->running = 1;
            loader_end(l);
            return -1;
        }
    }
    l->running = 1;
    return 0;
}

const Batch *loader_next(Loader *l, double *wait_s) {
    double t0 = now_s();
    if (wait_s) *wait_s = 0;
    if (!l->running || l->err[0]) return NULL;
    if (l->nthreads == 0) {  // synchronous
        if (l->next >= l->nb) return NULL;
        Slot *s = &l->slots[0];
        if (fill(l, l->next, &s->b, l->scratch, &l->sample, &l->pws, l->err, sizeof l->err)) return NULL;
        l->next++;
        if (wait_s) *wait_s = now_s() - t0;
        return &s->b;
    }
    pthread_mutex_lock(&l->mu);
    if (l->held) {  // release the batch returned last time
        l->slots[(l->next - 1) % l->depth].state = SLOT_EMPTY;
        l->held = 0;
        pthread_cond_broadcast(&l->cv);
    }
    if (l->next >= l->nb) { pthread_mutex_unlock(&l->mu); return NULL; }
    Slot *s = &l->slots[l->next % l->depth];
    while (!l->err[0] && s->state != SLOT_FULL) pthread_cond_wait(&l->cv, &l->mu);
    if (l->err[0]) { pthread_mutex_unlock(&l->mu); return NULL; }
    l->next++;
    l->held = 1;
    pthread_mutex_unlock(&l->mu);
    if (wait_s) *wait_s = now_s() - t0;
    return &s->b;
}

void loader_end(Loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; t < l->nthreads; t++) pthread_join(l->threads[t], NULL);
    l->nthreads = 0;
    l->running = 0;
}

void loader_free(Loader *l) {
    if (!l) return;
    loader_end(l);
    if (l->slots)
        for (int s = 0; s < l->depth; s++) { free(l->slots[s].b.x); free(l->slots[s].b.y); }
    free(l->slots);
    free(l->threads);
    free(l->perm);
    free(l->scratch);
    sample_free(&l->sample);
    pipeline_scratch_free(&l->pws);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
