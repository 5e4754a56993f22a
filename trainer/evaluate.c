// trainer/evaluate.c — evaluate-only mode of segx-train (see evaluate.h).
#include "trainer/evaluate.h"
// defines: evaluate_run

#include "trainer/data/data.h"       // defines: Dataset, Loader
#include "trainer/metrics/metrics.h" // defines: ConfMat
#include "trainer/models/model.h"    // defines: Model
#include "trainer/run/run.h"         // defines: checkpoints, run_write_json_atomic

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Dataset *ds;
    Loader *ld;
    Model *model;
    ConfMat cm;
    int32_t *pred;
    float *opt_state;   // read from the checkpoint and dropped: evaluation needs no optimizer
    Pipeline pipe;      // --crop: images of any size, each at its own resolution (seg_eval.c)
    SegEvalConfig seg;
} Eval;

static void eval_free(Eval *e) {
    loader_free(e->ld);
    dataset_free(e->ds);
    model_free(e->model);
    confmat_free(&e->cm);
    free(e->pred);
    free(e->opt_state);
}

// The checkpoint's tag starts "model/dataset/wW/bnB/": those must match the flags (the batch
// size, ranks and optimizer of the train job may differ from the eval job's).
static int tag_matches(const TrainConfig *c, const char *tag, char *want, size_t len) {
    snprintf(want, len, "%s/%s/w%d/bn%d/", c->model, c->dataset, c->width, c->batch_norm);
    return strncmp(tag, want, strlen(want)) == 0;
}

static int load(const TrainConfig *c, Eval *e, const char *ckpt, CkptHeader *h, char *err, size_t el) {
    if (ckpt_read_header(ckpt, h, err, el)) return TRAIN_EXIT_ERROR;
    char want[512];
    if (!tag_matches(c, h->tag, want, sizeof want)) {
        snprintf(err, el, "%.1000s holds '%.255s', not a %.500s... run: give --evaluate the train job's --model, --dataset, "
                 "--width and --no-batch-norm", ckpt, h->tag, want);
        return TRAIN_EXIT_USAGE;
    }
    int seg_model = model_name_is_segmentation(c->model);
    DataOptions dopt = { .data_dir = c->data_dir, .in_channels = c->in_channels, .classes = c->classes,
                         .image_size = c->image_size, .segmentation = seg_model, .seed = c->seed,
                         .synthetic_n = c->eval_limit > 0 ? c->eval_limit : 2L * c->batch };
    dopt.pad_to = c->pad_to;
    if (dataset_open(c->dataset, SPLIT_TEST, &dopt, &e->ds, err, el)) return TRAIN_EXIT_ERROR;
    int in_h, in_w;
    if (seg_setup(c, e->ds, &e->pipe, &e->seg, &in_h, &in_w, err, el)) return TRAIN_EXIT_USAGE;
    ModelConfig mc = { .name = c->model, .in_channels = e->ds->channels, .classes = e->ds->classes,
                       .height = in_h, .width = in_w, .base_width = c->width, .backbone = c->backbone,
                       .batch_norm = c->batch_norm, .max_batch = c->batch };
    if (model_create(&mc, &e->model, err, el)) return TRAIN_EXIT_USAGE;
    if (model_is_segmentation(e->model) != e->ds->segmentation) {
        snprintf(err, el, "--model %s does not fit the labels of --dataset %s", c->model, c->dataset);
        return TRAIN_EXIT_USAGE;
    }
    CkptHeader expect = *h, got;
    expect.n_params = model_num_params(e->model);
    expect.n_buffers = model_num_buffers(e->model);
    e->opt_state = malloc(sizeof(float) * (h->n_opt_state ? h->n_opt_state : 1));
    if (!e->opt_state) { snprintf(err, el, "out of memory"); return TRAIN_EXIT_ERROR; }
    if (ckpt_load(ckpt, &expect, &got, model_params(e->model), model_buffers(e->model), e->opt_state, err, el))
        return TRAIN_EXIT_USAGE;
    if (e->pipe.crop_h) {
        if (confmat_init(&e->cm, e->ds->classes)) { snprintf(err, el, "out of memory"); return TRAIN_EXIT_ERROR; }
        return TRAIN_EXIT_OK;
    }
    LoaderConfig lc = { .batch = c->batch, .workers = c->workers, .rank = 0, .world = 1, .seed = c->seed,
                        .shuffle = 0, .augment = 0, .drop_last = 0, .limit = c->eval_limit > 0 ? c->eval_limit : 0 };
    if (loader_create(e->ds, &lc, &e->ld, err, el)) return TRAIN_EXIT_ERROR;
    size_t hw = e->ds->segmentation ? (size_t)e->ds->height * e->ds->width : 1;
    e->pred = malloc(sizeof(int32_t) * hw * c->batch);
    if (!e->pred || confmat_init(&e->cm, e->ds->classes)) { snprintf(err, el, "out of memory"); return TRAIN_EXIT_ERROR; }
    return TRAIN_EXIT_OK;
}

static int run(const TrainConfig *c, Eval *e, const char *ckpt, const CkptHeader *h, char *err, size_t el) {
    double t0 = run_now_s(), loss_sum = 0, counted_sum = 0;
    long images = 0;
    size_t hw = e->ds->segmentation ? (size_t)e->ds->height * e->ds->width : 1;
    if (e->pipe.crop_h) {   // each image at its own resolution
        long lim = c->eval_limit > 0 && c->eval_limit < e->ds->n ? c->eval_limit : e->ds->n;
        double sums[2] = { 0, 0 };
        if (seg_eval_images(e->model, e->ds, &e->seg, 0, 1, lim, &e->cm, sums, err, el)) return TRAIN_EXIT_ERROR;
        loss_sum = sums[0]; counted_sum = sums[1]; images = lim;
    } else {
        if (loader_begin(e->ld, 0, 0, err, el)) return TRAIN_EXIT_ERROR;
        const Batch *b;
        while ((b = loader_next(e->ld, NULL))) {
            const float *logits = model_forward(e->model, b->x, b->n, 0);
            long counted = 0;
            float loss = model_loss(e->model, b->y, 1.0f, &counted);
            loss_sum += (double)loss * counted;
            counted_sum += counted;
            metrics_argmax(logits, b->n, e->ds->classes, hw, e->pred);
            confmat_add(&e->cm, b->y, e->pred, (size_t)b->n * hw);
            images += b->n;
        }
        if (loader_error(e->ld)[0]) { snprintf(err, el, "%s", loader_error(e->ld)); return TRAIN_EXIT_ERROR; }
        loader_end(e->ld);
    }
    double secs = run_now_s() - t0;
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("completed"));
    json_object_set_new(o, "model", json_string(c->model));
    json_object_set_new(o, "dataset", json_string(c->dataset));
    json_object_set_new(o, "checkpoint", json_string(ckpt));
    json_object_set_new(o, "epoch", json_integer(h->epoch));
    json_object_set_new(o, "step", json_integer(h->global_step));
    json_object_set_new(o, "images", json_integer(images));
    json_object_set_new(o, "loss", counted_sum > 0 ? json_real(loss_sum / counted_sum) : json_null());
    if (e->ds->segmentation) {   // pixels: labelled pixels counted (at each image's own size with --crop)
        json_object_set_new(o, "pixels", json_integer((json_int_t)llround(counted_sum)));
        double *pc = malloc(sizeof(double) * e->cm.k);
        double miou = confmat_miou(&e->cm, pc);
        json_object_set_new(o, "miou", isfinite(miou) ? json_real(miou) : json_null());
        json_object_set_new(o, "pixel_acc", json_real(confmat_accuracy(&e->cm)));
        json_t *a = json_array();
        for (int i = 0; pc && i < e->cm.k; i++) json_array_append_new(a, isnan(pc[i]) ? json_null() : json_real(pc[i]));
        json_object_set_new(o, "per_class_iou", a);
        free(pc);
    } else {
        json_object_set_new(o, "top1", json_real(confmat_accuracy(&e->cm)));
    }
    json_object_set_new(o, "seconds", json_real(secs));
    json_object_set_new(o, "images_per_s", json_real(secs > 0 ? images / secs : 0));
    json_object_set_new(o, "threads", json_integer(c->threads));
    json_object_set_new(o, "device", json_string("cpu"));
    char path[4200];
    snprintf(path, sizeof path, "%s/eval.json", c->out);
    int rc = run_write_json_atomic(path, o, err, el);
    if (rc == 0) {
        char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(5));
        fprintf(stderr, "segx-train: evaluated %s: %s\n", ckpt, line ? line : "");
        free(line);
    }
    json_decref(o);
    return rc ? TRAIN_EXIT_ERROR : TRAIN_EXIT_OK;
}

int evaluate_run(const TrainConfig *c) {
    char err[2048] = "", ckpt[4200];
    if (!c->out) {
        fprintf(stderr, "segx-train: --evaluate needs --out RUN_DIR (its checkpoint.bin is evaluated, eval.json written there)\n");
        return TRAIN_EXIT_USAGE;
    }
    if (c->eval_limit == 0) {
        fprintf(stderr, "segx-train: --evaluate with --eval-limit 0 has nothing to evaluate\n");
        return TRAIN_EXIT_USAGE;
    }
    // The evaluation runs on the CPU op table (one process, no optimizer): say so when the run asked
    // for a GPU, rather than let eval.json's images/s pass for a GPU figure.
    if (c->device && strcmp(c->device, "cpu") != 0)
        fprintf(stderr, "segx-train: --evaluate runs on the CPU (--device %s applies to training)\n", c->device);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.bin", c->out);
    model_set_threads(c->threads);
    Eval e;
    memset(&e, 0, sizeof e);
    CkptHeader h;
    int rc = load(c, &e, ckpt, &h, err, sizeof err);
    if (rc == TRAIN_EXIT_OK) rc = run(c, &e, ckpt, &h, err, sizeof err);
    if (rc != TRAIN_EXIT_OK) fprintf(stderr, "segx-train: --evaluate: %s\n", err[0] ? err : "failed");
    eval_free(&e);
    return rc;
}
