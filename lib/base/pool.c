/* pool: see pool.h.
 *
 * A parallel-for opens a job of k static chunks, wakes k - 1 workers and
 * claims chunks itself from the same counter, so a worker the scheduler
 * is slow to run (a loaded machine) costs nothing: the caller runs its
 * chunks instead. Chunk c is always [n*c/k, n*(c+1)/k), whoever runs it.
 * The caller returns once no worker is inside the job any more (active ==
 * 0); a worker enters only while the job is open, so one that wakes late
 * finds it closed and parks again. */
#include "base/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/util.h"

struct pool {
    int nworkers; /* started workers */
    int ncv;      /* condition variables in go */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t *go;  /* (ncv) one per worker: only the workers a job needs are woken */
    pthread_cond_t done; /* the last worker left the job */
    unsigned long gen;   /* job number, bumped per parallel-for */
    int busy, open, stop, active;
    /* the current job */
    pool_fn fn;
    void *ctx;
    long n;
    int k;
    atomic_int next; /* the next unclaimed chunk */
};

typedef struct {
    pool *p;
    int w;
} worker_arg;

/* Claims and runs chunks of the open job until none is left. */
static void claim(pool *p, pool_fn fn, void *ctx, long n, int k) {
    for (int c; (c = atomic_fetch_add(&p->next, 1)) < k;) {
        long b = n * c / k, e = n * (c + 1) / k;
        if (e > b) fn(ctx, b, e, c);
    }
}

static void *worker(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    pool *p = a.p;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !(p->open && p->gen != seen)) pthread_cond_wait(&p->go[a.w], &p->mu);
        if (p->stop) break;
        seen = p->gen;
        p->active++;
        pool_fn fn = p->fn;
        void *ctx = p->ctx;
        long n = p->n;
        int k = p->k;
        pthread_mutex_unlock(&p->mu);
        claim(p, fn, ctx, n, k);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pool *pool_create(int nthreads) {
    pool *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
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
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->go);
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
            p->busy = p->open = 1;
            p->fn = fn, p->ctx = ctx, p->n = n, p->k = (int)k;
            atomic_store(&p->next, 0);
            p->gen++;
            for (int w = 0; w < k - 1; w++) pthread_cond_signal(&p->go[w]);
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (k == 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    claim(p, fn, ctx, n, (int)k);
    pthread_mutex_lock(&p->mu);
    p->open = 0; /* every chunk is claimed: late wakers stay parked */
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    p->busy = 0;
    pthread_mutex_unlock(&p->mu);
}

void pool_for(pool *p, long n, pool_fn fn, void *ctx) { pool_for_upto(p, n, 0, fn, ctx); }
