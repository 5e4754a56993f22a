// web/plot.c — `segx plot`: the dashboard's charts as static figures through gnuplot (Debian
// gnuplot-nox). Writes OUT's data as NAME.tsv (one block per series, its label in the block's
// header line) and the script as NAME.gp beside OUT, then runs gnuplot in that folder, so the
// pair can be edited and re-run by hand. Labels from the DB go only into the .tsv (quoted), never
// into the script.
#include "web/web_impl.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    char label[256];
    double x, y, lo, hi;   // lo/hi NAN: no error bar or band
} PlotPoint;

typedef struct {
    PlotPoint *p;
    size_t n, cap;
} Points;

static int add(Points *ps, const char *label, double x, double y, double lo, double hi)
{
    if (!isfinite(x) || !isfinite(y)) return 0;
    if (ps->n == ps->cap) {
        size_t nc = ps->cap ? ps->cap * 2 : 64;
        PlotPoint *np = realloc(ps->p, nc * sizeof *np);
        if (!np) return -1;
        ps->p = np;
        ps->cap = nc;
    }
    PlotPoint *q = &ps->p[ps->n++];
    snprintf(q->label, sizeof q->label, "%s", label);
    for (char *c = q->label; *c; c++)   // the label is one quoted TSV field
        if (*c == '"' || *c == '\t' || *c == '\n' || *c == '\r') *c = '\'';
    q->x = x;
    q->y = y;
    q->lo = lo;
    q->hi = hi;
    return 0;
}

static double num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "?";
}

static int cmp_point(const void *a, const void *b)
{
    const PlotPoint *p = a, *q = b;
    int c = strcmp(p->label, q->label);
    if (c) return c;
    return p->x < q->x ? -1 : p->x > q->x;
}

// Series in first-seen order, points by x within each: one TSV block per series.
static int write_tsv(const char *path, Points *ps, size_t *nseries, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    qsort(ps->p, ps->n, sizeof *ps->p, cmp_point);
    *nseries = 0;
    for (size_t i = 0; i < ps->n; i++) {
        if (i == 0 || strcmp(ps->p[i].label, ps->p[i - 1].label) != 0) {
            if (i) fputs("\n\n", f);
            fprintf(f, "\"%s\"\ty\tlow\thigh\n", ps->p[i].label);
            (*nseries)++;
        }
        const PlotPoint *q = &ps->p[i];
        fprintf(f, "%.17g\t%.17g\t%.17g\t%.17g\n", q->x, q->y, isfinite(q->lo) ? q->lo : q->y,
                isfinite(q->hi) ? q->hi : q->y);
    }
    if (fclose(f) != 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    return 0;
}

static const char *pick_metric(json_t *rows, const char *suffix)
{
    static const char *const order[] = {"miou", "top1", "pixel_acc", "val_loss", NULL};
    for (int k = 0; order[k]; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s%s", order[k], suffix);
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r) if (json_is_number(json_object_get(r, key))) return order[k];
    }
    return "miou";
}

int web_plot(sqlite3 *db, const char *kind, const char *experiment, const char *metric, const char *out, char *err,
             size_t errlen)
{
    static const char *const kinds[] = {"speedup", "efficiency", "accuracy", "curves", "curves-wall", "cost", NULL};
    int k;
    for (k = 0; kinds[k] && strcmp(kinds[k], kind) != 0; k++) {}
    if (!kinds[k]) {
        snprintf(err, errlen, "unknown plot '%s': expected speedup, efficiency, accuracy, curves, curves-wall or cost", kind);
        return -2;
    }
    if (metric && !web_metric_valid(metric)) {
        snprintf(err, errlen, "--metric '%s': expected miou, pixel_acc, top1, val_loss or train_loss", metric);
        return -2;
    }
    const char *dot = strrchr(out, '.');
    const char *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash) || (strcmp(dot, ".svg") && strcmp(dot, ".pdf") && strcmp(dot, ".png"))) {
        snprintf(err, errlen, "--out '%s': the name must end in .svg, .pdf or .png", out);
        return -2;
    }
    long long id = web_experiment_id(db, experiment);
    if (id <= 0) {
        snprintf(err, errlen, id == 0 ? "--experiment '%s': no such experiment in the database" : "database error (%s)",
                 id == 0 ? experiment : sqlite3_errmsg(db));
        return id == 0 ? -2 : -1;
    }
    Points ps = {0};
    const char *xlabel = "", *ylabel = "", *style = "yerrorlines", *extra = "";
    char ybuf[128], extrabuf[256];
    int logx = 0, rc = 0;
    json_t *rows = NULL, *aux = NULL;
    if (k <= 1) {   // speedup, efficiency
        rows = web_report(db, "speedup", experiment, NULL, err, errlen);
        aux = rows ? web_scaling_errors_json(db, id, err, errlen) : NULL;
        if (!aux) { json_decref(rows); return -1; }
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r) {
            int tp = isfinite(num(r, "speedup_throughput"));
            double y = k == 0 ? (tp ? num(r, "speedup_throughput") : num(r, "speedup_time"))
                              : (tp ? num(r, "efficiency_throughput") : num(r, "efficiency_time"));
            double sd = NAN;
            size_t j;
            json_t *e;
            json_array_foreach(aux, j, e) {
                if (tp && strcmp(str(e, "model"), str(r, "model")) == 0 && strcmp(str(e, "gpu_type"), str(r, "gpu_type")) == 0 &&
                    strcmp(str(e, "scaling"), str(r, "scaling")) == 0 && num(e, "gpus") == num(r, "gpus") &&
                    num(e, "nodes") == num(r, "nodes") && json_equal(json_object_get(e, "batch_per_gpu"), json_object_get(r, "batch_per_gpu")) &&
                    json_equal(json_object_get(e, "global_batch"), json_object_get(r, "global_batch")))
                    sd = num(e, k == 0 ? "speedup_std" : "efficiency_std");
            }
            char label[256];
            int strong = strcmp(str(r, "scaling"), "strong") == 0;
            snprintf(label, sizeof label, "%s %s, %s, %s %.0f", str(r, "model"), str(r, "gpu_type"), str(r, "scaling"),
                     strong ? "global batch" : "batch/GPU", num(r, strong ? "global_batch" : "batch_per_gpu"));
            if (add(&ps, label, num(r, "gpus"), y, isfinite(sd) ? y - sd : NAN, isfinite(sd) ? y + sd : NAN) < 0) rc = -1;
        }
        logx = 1;
        xlabel = "GPUs";
        ylabel = k == 0 ? "speedup vs 1 GPU" : "efficiency (speedup / GPUs)";
        extra = k == 0 ? ", x with lines dt 2 lc rgb '#777777' title 'ideal'" : ", 1 with lines dt 2 lc rgb '#777777' title 'ideal'";
    } else if (k == 2) {   // accuracy
        rows = web_report(db, "accuracy", experiment, NULL, err, errlen);
        if (!rows) return -1;
        if (!metric) metric = pick_metric(rows, "_mean");
        char km[64], ks[64];
        snprintf(km, sizeof km, "%s_mean", metric);
        snprintf(ks, sizeof ks, "%s_std", metric);
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r) {
            char label[256];
            snprintf(label, sizeof label, "%s %s", str(r, "model"), str(r, "gpu_type"));
            double y = num(r, km), sd = num(r, ks);
            if (add(&ps, label, num(r, "global_batch"), y, isfinite(sd) ? y - sd : NAN, isfinite(sd) ? y + sd : NAN) < 0) rc = -1;
        }
        logx = 1;
        xlabel = "global batch";
        snprintf(ybuf, sizeof ybuf, "%s (mean ± std over seeds)", metric);
        ylabel = ybuf;
    } else if (k <= 4) {   // curves
        if (!metric) {
            json_t *acc = web_report(db, "accuracy", experiment, NULL, err, errlen);
            if (!acc) return -1;
            metric = pick_metric(acc, "_mean");
            json_decref(acc);
        }
        rows = web_curves_json(db, id, metric, NULL, err, errlen);
        if (!rows) return -1;
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(rows, "points"), i, p) {
            char label[256];
            snprintf(label, sizeof label, "%s %s, %.0f GPUs, batch/GPU %.0f", str(p, "model"), str(p, "gpu_type"),
                     num(p, "gpus"), num(p, "batch_per_gpu"));
            if (add(&ps, label, num(p, k == 3 ? "epoch" : "wall_s"), num(p, "mean"), num(p, "lo"), num(p, "hi")) < 0) rc = -1;
        }
        style = "curves";
        xlabel = k == 3 ? "epoch" : "wall-clock seconds (attempts stitched)";
        snprintf(ybuf, sizeof ybuf, "%s (mean over seeds; band: min to max)", metric);
        ylabel = ybuf;
        double target = num(rows, "target");
        if (isfinite(target)) {
            snprintf(extrabuf, sizeof extrabuf, ", %.17g with lines dt 3 lc rgb '#cf222e' title 'target'", target);
            extra = extrabuf;
        }
    } else {   // cost
        rows = web_report(db, "cells", experiment, NULL, err, errlen);
        if (!rows) return -1;
        if (!metric) metric = pick_metric(rows, "");
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r) {
            char label[256];
            snprintf(label, sizeof label, "%s %s", str(r, "model"), str(r, "gpu_type"));
            if (add(&ps, label, num(r, "gpu_hours"), num(r, metric), NAN, NAN) < 0) rc = -1;
        }
        style = "points";
        xlabel = "GPU-hours";
        snprintf(ybuf, sizeof ybuf, "final %s", metric);
        ylabel = ybuf;
    }
    json_decref(rows);
    json_decref(aux);
    if (rc < 0) { free(ps.p); snprintf(err, errlen, "out of memory"); return -1; }
    if (ps.n == 0) {
        free(ps.p);
        snprintf(err, errlen, "nothing to plot: experiment '%s' has no %s data yet (run `segx collect`)", experiment, kind);
        return -2;
    }
    // NAME.tsv and NAME.gp beside OUT; gnuplot runs in OUT's folder with relative names.
    size_t stem = (size_t)(dot - out);
    char tsv[4096], gp[4096];
    if (stem + 5 >= sizeof tsv) { free(ps.p); snprintf(err, errlen, "--out: path too long"); return -2; }
    snprintf(tsv, sizeof tsv, "%.*s.tsv", (int)stem, out);
    snprintf(gp, sizeof gp, "%.*s.gp", (int)stem, out);
    size_t nseries;
    rc = write_tsv(tsv, &ps, &nseries, err, errlen);
    free(ps.p);
    if (rc < 0) return -1;
    const char *base_out = slash ? slash + 1 : out, *base_tsv = strrchr(tsv, '/') ? strrchr(tsv, '/') + 1 : tsv;
    FILE *f = fopen(gp, "w");
    if (!f) { snprintf(err, errlen, "%s: %s", gp, strerror(errno)); return -1; }
    fprintf(f, "# segx plot %s --experiment %s: edit and re-run with `gnuplot %s` in this folder.\n", kind, experiment,
            strrchr(gp, '/') ? strrchr(gp, '/') + 1 : gp);
    if (strcmp(dot, ".svg") == 0) fputs("set terminal svg size 900,560 dynamic enhanced font 'sans,12' background rgb 'white'\n", f);
    else if (strcmp(dot, ".pdf") == 0) fputs("set terminal pdfcairo size 6in,3.8in enhanced font 'sans,10'\n", f);
    else fputs("set terminal pngcairo size 1100,680 enhanced font 'sans,12' background rgb 'white'\n", f);
    fprintf(f, "set output '%s'\n", base_out);
    fprintf(f, "data = '%s'   # one block per series: a header line with its label, then x y low high\n", base_tsv);
    fprintf(f, "set xlabel '%s'\nset ylabel '%s'\n", xlabel, ylabel);
    fputs("set grid\nset key outside bottom center horizontal noenhanced\nset datafile separator tab\n", f);
    if (logx) fputs("set logscale x 2\nset offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n", f);
    fprintf(f, "N = %zu\n", nseries);
    if (strcmp(style, "curves") == 0)
        fprintf(f, "plot for [i=0:N-1] data index i using 1:3:4 with filledcurves fs transparent solid 0.18 "
                   "noborder lc i+1 notitle, \\\n     for [i=0:N-1] data index i using 1:2 with lines lw 2 lc i+1 "
                   "title columnheader(1)%s\n", extra);
    else if (strcmp(style, "points") == 0)
        fputs("plot for [i=0:N-1] data index i using 1:2 with points pt 7 ps 1.2 lc i+1 title columnheader(1)\n", f);
    else
        fprintf(f, "plot for [i=0:N-1] data index i using 1:2:3:4 with yerrorlines lw 2 pt 7 lc i+1 "
                   "title columnheader(1)%s\n", extra);
    if (fclose(f) != 0) { snprintf(err, errlen, "%s: %s", gp, strerror(errno)); return -1; }
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) : 1, slash ? out : ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    pid_t pid = fork();
    if (pid < 0) { snprintf(err, errlen, "fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(126);
        const char *g = strrchr(gp, '/') ? strrchr(gp, '/') + 1 : gp;
        execlp("gnuplot", "gnuplot", g, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        snprintf(err, errlen, "gnuplot not found: install Debian's gnuplot-nox (scripts/install-deps); %s and %s "
                              "are written, run `gnuplot %s` later", gp, tsv, gp);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errlen, "gnuplot %s failed (status %d): see its messages above", gp,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    return 0;
}
