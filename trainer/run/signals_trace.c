// trainer/run/signals_trace.c — stop requests (SIGTERM/SIGUSR1) and the Chrome trace writer.
#include "trainer/run/run.h"
// defines: signals_install, signals_pending, trace_*

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t pending_signal;

static void on_signal(int sig) { pending_signal = sig; }

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int signals_pending(void) { return pending_signal; }

// ---------------------------------------------------------------------------------------------

struct Trace {
    FILE *f;
    int rank;
    int n;
    double t0;
};

int trace_open(const char *path, int rank, Trace **out, char *err, size_t errlen) {
    *out = NULL;
    Trace *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return -1; }
    t->f = fopen(path, "w");
    if (!t->f) {
        snprintf(err, errlen, "--profile %s: cannot create: %s", path, strerror(errno));
        free(t);
        return -1;
    }
    t->rank = rank;
    t->t0 = run_now_s();
    fprintf(t->f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
    fprintf(t->f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"args\": {\"name\": \"segx-train rank %d\"}}",
            rank, rank);
    // lanes: 1 = phases of a step (train.c), 2 = the ops inside them (ops_trace.c)
    fprintf(t->f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 1, \"args\": {\"name\": \"phases\"}}"
            ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 2, \"args\": {\"name\": \"ops\"}}",
            rank, rank);
    *out = t;
    return 0;
}

void trace_event(Trace *t, const char *name, const char *cat, double t0, double t1, int tid, long step) {
    if (!t) return;
    fprintf(t->f, ",\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, "
            "\"pid\": %d, \"tid\": %d, \"args\": {\"step\": %ld}}",
            name, cat, (t0 - t->t0) * 1e6, (t1 - t0) * 1e6, t->rank, tid, step);
    t->n++;
}

void trace_event_shape(Trace *t, const char *name, const char *cat, double t0, double t1, int tid, long step,
                       const char *shape) {
    if (!t) return;
    fprintf(t->f, ",\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, "
            "\"pid\": %d, \"tid\": %d, \"args\": {\"step\": %ld, \"shape\": \"%s\"}}",
            name, cat, (t0 - t->t0) * 1e6, (t1 - t0) * 1e6, t->rank, tid, step, shape);
    t->n++;
}

void trace_close(Trace *t) {
    if (!t) return;
    fprintf(t->f, "\n]}\n");
    fclose(t->f);
    free(t);
}
