/* pthreads parallel-for (parallel.h). */
#define _POSIX_C_SOURCE 200809L
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

int sage_cpu_threads(int requested) {
    long n = requested;
    if (n <= 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1) n = 1;
    }
    if (n > SAGE_CPU_MAX_THREADS) n = SAGE_CPU_MAX_THREADS;
    return (int)n;
}

typedef struct sage_par_job {
    sage_parallel_fn fn;
    void *ctx;
    int64_t n_items;
    atomic_llong next;
} sage_par_job;

typedef struct sage_par_worker {
    sage_par_job *job;
    int id;
} sage_par_worker;

static void sage_par_drain(sage_par_job *job, int worker) {
    for (;;) {
        long long i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (i >= job->n_items) break;
        job->fn(job->ctx, (int64_t)i, worker);
    }
}

static void *sage_par_main(void *arg) {
    sage_par_worker *w = (sage_par_worker *)arg;
    sage_par_drain(w->job, w->id);
    return NULL;
}

void sage_parallel_for(int n_workers, int64_t n_items, sage_parallel_fn fn, void *ctx) {
    sage_par_job job;
    pthread_t tid[SAGE_CPU_MAX_THREADS];
    sage_par_worker wk[SAGE_CPU_MAX_THREADS];
    int started = 0;
    if (n_items <= 0) return;
    if (n_workers > SAGE_CPU_MAX_THREADS) n_workers = SAGE_CPU_MAX_THREADS;
    if ((int64_t)n_workers > n_items) n_workers = (int)n_items;
    if (n_workers < 1) n_workers = 1;
    job.fn = fn;
    job.ctx = ctx;
    job.n_items = n_items;
    atomic_init(&job.next, 0);
    for (int t = 1; t < n_workers; t++) {
        wk[started].job = &job;
        wk[started].id = t;
        if (pthread_create(&tid[started], NULL, sage_par_main, &wk[started]) != 0) break;
        started++;
    }
    sage_par_drain(&job, 0);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
}
