/* pool: see pool.h. */
#include "base/pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "base/util.h"

struct pool {
    int nworkers; /* started workers; worker w runs chunk w + 1 */
    int ncv;      /* condition variables in go */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t *go;  /* (nworkers) one per worker: only the workers a job needs are woken */
    pthread_cond_t done; /* pending reached 0 */
    unsigned long gen;   /* job number, bumped per parallel-for */
    int busy, stop, pending;
    /* the current job */
    pool_fn fn;
    void *ctx;
    long n;
    int k;
};

typedef struct {
    pool *p;
    int w;
} worker_arg;

static void run_chunk(pool_fn fn, void *ctx, long n, int k, int c) {
    long b = n * c / k, e = n * (c + 1) / k;
    if (e > b) fn(ctx, b, e, c);
}

static void *worker(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    pool *p = a.p;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        int c = a.w + 1;
        /* a job that has a chunk for this worker (spurious wake-ups and jobs
         * of fewer chunks keep it parked) */
        while (!p->stop && (p->gen == seen || c >= p->k)) pthread_cond_wait(&p->go[a.w], &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pool_fn fn = p->fn;
        void *ctx = p->ctx;
        long n = p->n;
        int k = p->k;
        pthread_mutex_unlock(&p->mu);
        run_chunk(fn, ctx, n, k, c);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pool *pool_create(int nthreads) {
    pool *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->done, NULL);
    int want = nthreads > 1 ? nthreads - 1 : 0;
    p->th = xcalloc((size_t)(want ? want : 1), sizeof *p->th);
    p->go = xcalloc((size_t)(want ? want : 1), sizeof *p->go);
    for (int w = 0; w < want; w++) pthread_cond_init(&p->go[w], NULL);
    p->ncv = want;
    for (int w = 0; w < want; w++) {
        worker_arg *a = xmalloc(sizeof *a);
        *a = (worker_arg){p, w};
        if (pthread_create(&p->th[w], NULL, worker, a)) {
            free(a);
            break;
        }
        p->nworkers++;
    }
    return p;
}

void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    for (int w = 0; w < p->nworkers; w++) pthread_cond_signal(&p->go[w]);
    pthread_mutex_unlock(&p->mu);
    for (int w = 0; w < p->nworkers; w++) pthread_join(p->th[w], NULL);
    for (int w = 0; w < p->ncv; w++) pthread_cond_destroy(&p->go[w]);
    free(p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->th);
    free(p);
}

int pool_size(const pool *p) { return p ? p->nworkers + 1 : 1; }

void pool_for_upto(pool *p, long n, int maxchunks, pool_fn fn, void *ctx) {
    if (n <= 0) return;
    long k = pool_size(p);
    if (maxchunks > 0 && maxchunks < k) k = maxchunks;
    if (n < k) k = n;
    if (k > 1) {
        pthread_mutex_lock(&p->mu);
        if (p->busy) k = 1; /* nested or concurrent: run inline below */
        else {
            p->busy = 1;
            p->fn = fn, p->ctx = ctx, p->n = n, p->k = (int)k;
            p->pending = (int)k - 1;
            p->gen++;
            for (int w = 0; w < k - 1; w++) pthread_cond_signal(&p->go[w]);
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (k == 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    run_chunk(fn, ctx, n, (int)k, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    p->busy = 0;
    pthread_mutex_unlock(&p->mu);
}

void pool_for(pool *p, long n, pool_fn fn, void *ctx) { pool_for_upto(p, n, 0, fn, ctx); }
