// trainer/ops/parallel.c — a tiny persistent pthread pool for the CPU ops' own loops.
// Why not OpenMP: OpenBLAS (pthreads build) runs its own threads; two spinning runtimes on few cores
// fight each other. These workers sleep on a condition variable between jobs.
#include <pthread.h>
#include <stdlib.h>
#include "trainer/ops/ops.h"
// defines: ops_parallel_set_threads, ops_parallel_threads, ops_parallel_for

#define POOL_MAX 64

static struct {
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    pthread_t tid[POOL_MAX];
    int nworkers;         // threads besides the caller
    long generation;      // bumped per job
    int pending;          // workers still running the current job
    int stop;
    ParallelFn fn; void *ctx; long n;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .start = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void chunk(long n, int parts, int i, long *b, long *e) {
    long q = n / parts, r = n % parts;
    *b = i * q + (i < r ? i : r);
    *e = *b + q + (i < r);
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;   // 1..nworkers; the caller is 0
    long seen = 0;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (!pool.stop && pool.generation == seen) pthread_cond_wait(&pool.start, &pool.mu);
        if (pool.stop) break;
        seen = pool.generation;
        ParallelFn fn = pool.fn; void *ctx = pool.ctx; long n = pool.n; int parts = pool.nworkers + 1;
        pthread_mutex_unlock(&pool.mu);
        long b, e; chunk(n, parts, me, &b, &e);
        if (b < e) fn(ctx, b, e);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static void pool_stop(void) {
    pthread_mutex_lock(&pool.mu);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < pool.nworkers; i++) pthread_join(pool.tid[i], NULL);
    pool.nworkers = 0; pool.stop = 0;
}

void ops_parallel_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > POOL_MAX) n = POOL_MAX;
    if (n - 1 == pool.nworkers) return;
    pool_stop();
    pool.generation = 0;
    for (int i = 0; i < n - 1; i++) {
        if (pthread_create(&pool.tid[i], NULL, worker, (void *)(intptr_t)(i + 1)) != 0) break;
        pool.nworkers = i + 1;
    }
}

int ops_parallel_threads(void) { return pool.nworkers + 1; }

void ops_parallel_for(long n, long grain, ParallelFn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (pool.nworkers == 0 || n < 2 * grain) { fn(ctx, 0, n); return; }
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn; pool.ctx = ctx; pool.n = n;
    pool.pending = pool.nworkers;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.mu);
    long b, e; chunk(n, pool.nworkers + 1, 0, &b, &e);
    if (b < e) fn(ctx, b, e);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}
