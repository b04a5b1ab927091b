/* pool: one persistent thread pool and a parallel-for over it.
 *
 * The workers are started once (pool_create) and park on a condition
 * variable between calls, so a parallel-for costs a wake-up, not a thread
 * creation: decode runs one per projection of every layer of every token.
 *
 * pool_for(p, n, fn, ctx) splits [0, n) into k = min(n, pool_size(p))
 * static chunks, chunk c = [n*c/k, n*(c+1)/k), and calls fn(ctx, begin,
 * end, c) once per chunk; the caller works too (it takes chunks that no
 * worker has started, so a worker the scheduler runs late does not hold it
 * up) and returns when every chunk is done. The split depends only on n
 * and k, never on timing or on which thread runs a chunk, so a fn whose
 * outputs are each computed inside one chunk in a fixed order gives the
 * same bits for any k (and c < pool_size() indexes per-chunk scratch).
 * n <= 0 calls nothing.
 *
 * A pool runs one parallel-for at a time: a call made while it is busy (a
 * nested call from inside fn, or a call from another thread) runs its whole
 * range inline on the calling thread as chunk 0, with the same results. */
#ifndef LR_POOL_H
#define LR_POOL_H

typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, long begin, long end, int chunk);

/* A pool of nthreads threads in all, the caller included (nthreads - 1
 * workers; nthreads <= 1: none, every call runs inline). Threads that fail
 * to start are left out. */
pool *pool_create(int nthreads);
/* Stops and joins the workers. NULL is allowed. */
void pool_free(pool *p);
/* Threads a parallel-for may use, the caller included (>= 1). */
int pool_size(const pool *p);

void pool_for(pool *p, long n, pool_fn fn, void *ctx);
/* As pool_for with k = min(n, pool_size(p), maxchunks) (maxchunks <= 0: no
 * extra limit). */
void pool_for_upto(pool *p, long n, int maxchunks, pool_fn fn, void *ctx);

#endif
