/* Private: a small pthreads parallel-for of the CPU path.
 *
 * Items are handed out dynamically (an atomic counter), so the assignment of items to workers
 * varies from run to run; every caller makes an item's result depend on the item alone (its
 * scratch is per worker and fully rewritten), so the output is the same for any thread count. */
#ifndef SAGE_CPU_PARALLEL_H
#define SAGE_CPU_PARALLEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most workers one call uses. */
#define SAGE_CPU_MAX_THREADS 256

/* fn(ctx, item, worker) for item in [0, n_items); worker in [0, n_workers) identifies the
 * thread (for per-worker scratch). */
typedef void (*sage_parallel_fn)(void *ctx, int64_t item, int worker);

/* Workers for a request: requested > 0 as is, else the online cores; clamped to
 * [1, SAGE_CPU_MAX_THREADS]. */
int sage_cpu_threads(int requested);

/* Run fn over n_items with up to n_workers threads (the calling thread is worker 0). If a thread
 * cannot be created the others do its share. Returns when every item is done. */
void sage_parallel_for(int n_workers, int64_t n_items, sage_parallel_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
