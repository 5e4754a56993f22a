// trainer/io/weights.c — --init, --save-weights and --infer (see weights.h).
#include "trainer/io/weights.h"
// defines: weights_load, weights_save, infer_run

#include "trainer/io/safetensors.h"  // defines: StFile, st_open, st_write

#include <regex.h>
#include <stdlib.h>
#include <string.h>

// One model tensor (parameter or buffer) with where its host copy lives.
typedef struct { const ModelTensor *t; float *host; int loaded, skipped; } Slot;

typedef struct {
    Model *m;
    float *params, *buffers;   // host copies
    Slot *s; int n;
} Host;

static void host_free(Host *h) { free(h->params); free(h->buffers); free(h->s); }

static int host_get(Model *m, Host *h) {
    const Ops *o = model_ops(m);
    size_t np = model_num_params(m), nb = model_num_buffers(m);
    int nt, nbt;
    const ModelTensor *t = model_tensors(m, &nt), *bt = model_buffer_tensors(m, &nbt);
    *h = (Host){.m = m, .params = malloc(sizeof(float) * (np ? np : 1)), .buffers = malloc(sizeof(float) * (nb ? nb : 1)),
                .s = calloc((size_t)(nt + nbt) + 1, sizeof(Slot)), .n = nt + nbt};
    if (!h->params || !h->buffers || !h->s) { host_free(h); return -1; }
    o->download(h->params, model_params(m), sizeof(float) * np);
    o->download(h->buffers, model_buffers(m), sizeof(float) * nb);
    for (int i = 0; i < nt; i++) h->s[i] = (Slot){&t[i], h->params + t[i].offset, 0, 0};
    for (int i = 0; i < nbt; i++) h->s[nt + i] = (Slot){&bt[i], h->buffers + bt[i].offset, 0, 0};
    return 0;
}

static Slot *slot_find(Host *h, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->s[i].t->name, name) == 0) return &h->s[i];
    return NULL;
}

static int same_shape(const ModelTensor *t, const StTensor *f) {
    if (t->ndim != f->ndim) return 0;
    for (int d = 0; d < t->ndim; d++) if ((int64_t)t->shape[d] != f->shape[d]) return 0;
    return 1;
}

static void list(FILE *log, const char *what, const char *const *names, int n) {
    if (!log || !n) return;
    fprintf(log, "segx-train:   %s (%d):", what, n);
    for (int i = 0; i < n && i < 12; i++) fprintf(log, " %s", names[i]);
    if (n > 12) fprintf(log, " ... and %d more", n - 12);
    fputc('\n', log);
}

int weights_load(Model *m, const char *path, const char *prefix, const char *skip_regex, FILE *log,
                 WeightsReport *rep, char *err, size_t el) {
    WeightsReport r = {0};
    if (!prefix) prefix = "";
    regex_t re;
    int have_re = skip_regex && *skip_regex;
    if (have_re) {
        int rc = regcomp(&re, skip_regex, REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char why[128];
            regerror(rc, &re, why, sizeof why);
            snprintf(err, el, "--init-skip '%s': %s (a POSIX extended regular expression)", skip_regex, why);
            return -1;
        }
    }
    StFile *f = NULL;
    Host h = {0};
    const char **unexpected = NULL, **missing = NULL;
    int ret = -1;
    if (st_open(path, &f, err, el)) goto out;
    if (host_get(m, &h)) { snprintf(err, el, "--init %s: out of memory", path); goto out; }
    unexpected = calloc((size_t)f->n + 1, sizeof *unexpected);
    missing = calloc((size_t)h.n + 1, sizeof *missing);
    if (!unexpected || !missing) { snprintf(err, el, "--init %s: out of memory", path); goto out; }
    size_t plen = strlen(prefix);
    char name[1024];
    // pass 1: match and check every key before anything is changed
    for (int i = 0; i < f->n; i++) {
        const StTensor *ft = &f->t[i];
        if (have_re && regexec(&re, ft->name, 0, NULL, 0) == 0) { r.skipped++; continue; }
        snprintf(name, sizeof name, "%s%s", prefix, ft->name);
        Slot *s = slot_find(&h, name);
        if (!s) { unexpected[r.unexpected++] = ft->name; continue; }
        if (!same_shape(s->t, ft)) {
            char a[128], b[128]; int64_t ms[4];
            for (int d = 0; d < s->t->ndim; d++) ms[d] = s->t->shape[d];
            snprintf(err, el, "--init %s: tensor '%s' has shape %s in the file but the model's '%s' is %s "
                     "(another --in-channels/--classes/--width, or --init-skip it)", path, ft->name,
                     st_shape_str(ft->ndim, ft->shape, a, sizeof a), name, st_shape_str(s->t->ndim, ms, b, sizeof b));
            goto out;
        }
        s->loaded = i + 1;
    }
    for (int i = 0; i < h.n; i++) {
        Slot *s = &h.s[i];
        if (s->loaded || strncmp(s->t->name, prefix, plen) != 0) continue;
        if (have_re && regexec(&re, s->t->name + plen, 0, NULL, 0) == 0) continue;   // skipped on purpose
        missing[r.missing++] = s->t->name;
    }
    // pass 2: convert (a dtype error also leaves the model unchanged: the host copies are scratch)
    for (int i = 0; i < h.n; i++) {
        Slot *s = &h.s[i];
        if (!s->loaded) continue;
        if (st_read_f32(f, &f->t[s->loaded - 1], s->host, err, el)) goto out;
        r.matched++;
    }
    if (r.matched == 0) {
        snprintf(err, el, "--init %s: none of its %d tensors matches a tensor of model %s under prefix '%s' (first "
                 "file key '%s'; set --init-prefix so that PREFIX+KEY names a model tensor, see --print-params)", path,
                 f->n, model_config(m)->name, prefix, f->n ? f->t[0].name : "");
        goto out;
    }
    const Ops *o = model_ops(m);
    o->upload(model_params(m), h.params, sizeof(float) * model_num_params(m));
    o->upload(model_buffers(m), h.buffers, sizeof(float) * model_num_buffers(m));
    if (log) {
        fprintf(log, "segx-train: --init %s%s%s: %d tensors matched, %d missing, %d unexpected, %d skipped\n", path,
                *prefix ? " into " : "", prefix, r.matched, r.missing, r.unexpected, r.skipped);
        list(log, "missing (keep their initialisation)", missing, r.missing);
        list(log, "unexpected (ignored)", unexpected, r.unexpected);
    }
    ret = 0;
out:
    if (rep) *rep = r;
    if (have_re) regfree(&re);
    free(unexpected); free(missing);
    host_free(&h);
    st_close(f);
    return ret;
}

int weights_save(Model *m, const char *path, char *err, size_t el) {
    Host h;
    if (host_get(m, &h)) { snprintf(err, el, "--save-weights %s: out of memory", path); return -1; }
    StOut *o = calloc((size_t)h.n + 1, sizeof *o);
    if (!o) { host_free(&h); snprintf(err, el, "--save-weights %s: out of memory", path); return -1; }
    // state_dict order: a module's parameters, then its buffers; registration order is execution
    // order, so the buffers of a BN follow its bias
    int k = 0, nt, nbt;
    const ModelTensor *t = model_tensors(m, &nt), *bt = model_buffer_tensors(m, &nbt);
    int b = 0;
    for (int i = 0; i < nt; i++) {
        const ModelTensor *x = &t[i];
        o[k] = (StOut){.name = x->name, .ndim = x->ndim, .data = h.params + x->offset};
        for (int d = 0; d < x->ndim; d++) o[k].shape[d] = x->shape[d];
        k++;
        // after a BN's bias come its running stats (they share the prefix)
        size_t pl = strlen(x->name) - 4;
        if (x->kind == TENSOR_BN_BIAS && strcmp(x->name + pl, "bias") == 0)
            while (b < nbt && strncmp(bt[b].name, x->name, pl) == 0) {
                o[k] = (StOut){.name = bt[b].name, .ndim = bt[b].ndim, .data = h.buffers + bt[b].offset,
                               .i64 = strstr(bt[b].name, "num_batches_tracked") != NULL};
                for (int d = 0; d < bt[b].ndim; d++) o[k].shape[d] = bt[b].shape[d];
                k++; b++;
            }
    }
    for (; b < nbt; b++) {   // buffers not right after their BN (none today)
        o[k] = (StOut){.name = bt[b].name, .ndim = bt[b].ndim, .data = h.buffers + bt[b].offset,
                       .i64 = strstr(bt[b].name, "num_batches_tracked") != NULL};
        for (int d = 0; d < bt[b].ndim; d++) o[k].shape[d] = bt[b].shape[d];
        k++;
    }
    int rc = st_write(path, o, k, err, el);
    free(o); host_free(&h);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// --infer

static int infer_classes(const TrainConfig *c, const ModelConfig *base, const StFile *w, int *classes, char *err, size_t el) {
    if (c->classes > 0) { *classes = c->classes; return 0; }
    // the head is the last registered tensor of every model: its first dimension is the class count
    ModelConfig mc = *base;
    mc.classes = 2; mc.max_batch = 1;
    Model *m;
    if (model_create(&mc, &m, err, el)) return -1;
    int nt;
    const ModelTensor *t = model_tensors(m, &nt);
    char name[1024];
    snprintf(name, sizeof name, "%s%s", c->init_prefix ? c->init_prefix : "", t[nt - 1].name);
    const char *key = name + (c->init_prefix ? strlen(c->init_prefix) : 0);
    const StTensor *ft = st_find(w, key);
    model_free(m);
    if (!ft || ft->ndim < 1) {
        snprintf(err, el, "--infer: the weights have no '%s' to take the class count from: give --classes", key);
        return -1;
    }
    *classes = (int)ft->shape[0];
    return 0;
}

int infer_run(const TrainConfig *c) {
    char err[2048] = "";
    int rc = TRAIN_EXIT_ERROR;
    StFile *in = NULL, *w = NULL;
    Model *m = NULL;
    float *x = NULL, *y = NULL;
    if (!c->infer_out || !c->init) {
        fprintf(stderr, "segx-train: --infer needs --infer-out OUT.safetensors and --init WEIGHTS.safetensors\n");
        return TRAIN_EXIT_USAGE;
    }
    if (st_open(c->infer_in, &in, err, sizeof err)) goto out;
    const StTensor *ti = st_find(in, "input");
    if (!ti || ti->ndim != 4 || ti->numel == 0) {
        snprintf(err, sizeof err, "--infer %s: needs a tensor 'input' of shape (N, C, H, W)", c->infer_in);
        rc = TRAIN_EXIT_USAGE; goto out;
    }
    if (!(x = malloc(sizeof(float) * ti->numel))) { snprintf(err, sizeof err, "out of memory"); goto out; }
    if (st_read_f32(in, ti, x, err, sizeof err)) goto out;
    int N = (int)ti->shape[0], C = (int)ti->shape[1], H = (int)ti->shape[2], W = (int)ti->shape[3];
    if (st_open(c->init, &w, err, sizeof err)) goto out;
    ModelConfig mc = {.name = c->model, .in_channels = C, .height = H, .width = W, .base_width = c->width, .backbone = c->backbone,
                      .batch_norm = c->batch_norm, .max_batch = N < 16 ? N : 16};
    if (infer_classes(c, &mc, w, &mc.classes, err, sizeof err)) { rc = TRAIN_EXIT_USAGE; goto out; }
    model_set_threads(c->threads > 0 ? c->threads : 1);
    if (model_create(&mc, &m, err, sizeof err)) { rc = TRAIN_EXIT_USAGE; goto out; }
    if (weights_load(m, c->init, c->init_prefix, c->init_skip, stderr, NULL, err, sizeof err)) goto out;
    int seg = model_is_segmentation(m);
    size_t per = (size_t)mc.classes * (seg ? (size_t)H * W : 1), xs = (size_t)C * H * W;
    if (!(y = malloc(sizeof(float) * per * N))) { snprintf(err, sizeof err, "out of memory"); goto out; }
    for (int n0 = 0; n0 < N; n0 += mc.max_batch) {
        int b = N - n0 < mc.max_batch ? N - n0 : mc.max_batch;
        const float *lg = model_forward(m, x + (size_t)n0 * xs, b, 0);
        if (!lg) { snprintf(err, sizeof err, "--infer: forward failed"); goto out; }
        memcpy(y + (size_t)n0 * per, lg, sizeof(float) * per * b);
    }
    StOut o = {.name = "logits", .ndim = seg ? 4 : 2, .shape = {N, mc.classes, H, W}, .data = y};
    if (st_write(c->infer_out, &o, 1, err, sizeof err)) goto out;
    fprintf(stderr, "segx-train: --infer: logits (%d, %d%s) of %s written to %s\n", N, mc.classes, seg ? ", H, W" : "",
            c->model, c->infer_out);
    rc = TRAIN_EXIT_OK;
out:
    if (rc != TRAIN_EXIT_OK) fprintf(stderr, "segx-train: %s\n", err);
    free(x); free(y);
    model_free(m);
    st_close(in); st_close(w);
    return rc;
}
