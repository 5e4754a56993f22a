// orchestrator/report.c — the standard result tables (see report.h). First version.
#include "orchestrator/report.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = {"cells", "accuracy", "speedup", "cost", "time-to-target", NULL};

int report_kind_valid(const char *kind)
{
    for (int i = 0; kinds[i]; i++)
        if (strcmp(kind, kinds[i]) == 0) return 1;
    return 0;
}

int report_parse_target(const char *s, char *metric, size_t mlen, double *value, char *err, size_t errlen)
{
    static const char *const metrics[] = {"miou", "pixel_acc", "top1", "val_loss", "train_loss", NULL};
    const char *eq = strchr(s, '=');
    if (!eq) { snprintf(err, errlen, "'%s': expected METRIC=VALUE, e.g. miou=0.5", s); return -1; }
    size_t n = (size_t)(eq - s);
    int ok = 0;
    for (int i = 0; metrics[i]; i++)
        if (strlen(metrics[i]) == n && strncmp(s, metrics[i], n) == 0) ok = 1;
    if (!ok) {
        snprintf(err, errlen, "'%.*s': unknown metric (expected miou, pixel_acc, top1, val_loss or train_loss)", (int)n, s);
        return -1;
    }
    char *end;
    double v = strtod(eq + 1, &end);
    if (end == eq + 1 || *end) { snprintf(err, errlen, "'%s': value is not a number", eq + 1); return -1; }
    if (n >= mlen) { snprintf(err, errlen, "metric name too long"); return -1; }
    memcpy(metric, s, n);
    metric[n] = 0;
    *value = v;
    return 0;
}

int report_print(sqlite3 *db, const char *kind, const ReportOptions *opts, FILE *out, char *err, size_t errlen)
{
    (void)db; (void)opts; (void)out;
    snprintf(err, errlen, "report %s: not implemented yet", kind);
    return -1;
}
