/* The persistent thread pool (base/pool.h): every index of [0, n) runs
 * exactly once, in the documented static chunks, for pools of 1..5
 * threads and n = 0, 1, 2, sizes around the pool size and large; nested
 * calls (from inside a chunk) and calls from several threads at once run
 * inline with the same coverage; thousands of calls in a row (the parked
 * workers are reused, not recreated); pool_for_upto's chunk limit. */
#include "check.h"
#include "base/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

typedef struct {
    atomic_int *hits; /* (n) times each index ran */
    long n;
    int k;           /* expected chunk count */
    atomic_int bad;  /* chunks whose bounds were not the documented ones */
    atomic_int calls;
} job;

static void count(void *ctx, long b, long e, int c) {
    job *j = ctx;
    atomic_fetch_add(&j->calls, 1);
    int inline_all = c == 0 && b == 0 && e == j->n; /* a busy pool runs the whole range inline */
    if (!inline_all && (c < 0 || c >= j->k || b != j->n * c / j->k || e != j->n * (c + 1) / j->k))
        atomic_fetch_add(&j->bad, 1);
    for (long i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
}

/* each index exactly once; returns the number of indices that were not */
static long wrong(const job *j) {
    long w = 0;
    for (long i = 0; i < j->n; i++) w += atomic_load(&j->hits[i]) != 1;
    return w;
}

/* one parallel-for checked; returns 1 when right (callable from threads:
 * the CHECKs stay in main). busy_ok: the pool may be busy with another
 * caller's call, so the whole range in one inline chunk is right too. */
static int run_call(pool *p, long n, int maxchunks, int busy_ok) {
    job j = {.n = n};
    j.hits = calloc((size_t)(n ? n : 1), sizeof *j.hits);
    long k = pool_size(p);
    if (maxchunks > 0 && maxchunks < k) k = maxchunks;
    if (n < k) k = n;
    j.k = (int)(k ? k : 1);
    if (maxchunks) pool_for_upto(p, n, maxchunks, count, &j);
    else pool_for(p, n, count, &j);
    long w = wrong(&j);
    int bad = atomic_load(&j.bad), calls = atomic_load(&j.calls), want = n > 0 ? j.k : 0;
    if (busy_ok && n > 0 && calls == 1) want = 1;
    if (!busy_ok && bad == 0 && j.k > 1 && calls == 1) bad = 1; /* an idle pool ran it inline */
    if (w || bad || calls != want)
        fprintf(stderr, "pool of %d, n %ld, maxchunks %d: %ld indices not run exactly once, %d chunks off the static "
                        "split, %d chunk calls (expected %d)\n", pool_size(p), n, maxchunks, w, bad, calls, want);
    free(j.hits);
    return !w && !bad && calls == want;
}

static int run_one(pool *p, long n, int maxchunks) { return run_call(p, n, maxchunks, 0); }

/* a chunk that runs a whole parallel-for of its own on the same pool */
typedef struct {
    pool *p;
    atomic_int wrong_inner;
} outer;

static void inner_fn(void *ctx, long b, long e, int c) {
    job *j = ctx;
    (void)c;
    for (long i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
}

static void outer_fn(void *ctx, long b, long e, int c) {
    outer *o = ctx;
    (void)c;
    for (long i = b; i < e; i++) {
        job j = {.n = 37};
        j.hits = calloc(37, sizeof *j.hits);
        pool_for(o->p, 37, inner_fn, &j);
        if (wrong(&j)) atomic_fetch_add(&o->wrong_inner, 1);
        free(j.hits);
    }
}

static atomic_int thread_failures;

static void *caller_thread(void *arg) {
    pool *p = arg;
    for (int r = 0; r < 200; r++) atomic_fetch_add(&thread_failures, !run_call(p, 1000 + r, 0, 1));
    return NULL;
}

int main(void) {
    for (int t = 1; t <= 5; t++) {
        pool *p = pool_create(t);
        CHECKF(pool_size(p) == t, "pool_create(%d): size %d", t, pool_size(p));
        long sizes[] = {0, 1, 2, 3, t - 1, t, t + 1, 2 * t + 1, 1000, 100003};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            if (sizes[i] < 0) continue;
            CHECK(run_one(p, sizes[i], 0));
            CHECK(run_one(p, sizes[i], 2));
            CHECK(run_one(p, sizes[i], 1));
        }
        /* nested: every outer index runs an inner parallel-for */
        outer o = {p, 0};
        pool_for(p, 11, outer_fn, &o);
        CHECKF(atomic_load(&o.wrong_inner) == 0, "pool of %d: %d nested calls missed or repeated indices", t,
               atomic_load(&o.wrong_inner));
        /* many calls in a row */
        int ok = 1;
        for (int r = 0; r < 5000; r++) ok &= run_one(p, r % 50, 0);
        CHECKF(ok, "pool of %d: 5000 calls in a row", t);
        /* three threads calling the same pool at once */
        atomic_store(&thread_failures, 0);
        pthread_t th[3];
        for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, caller_thread, p);
        for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
        CHECKF(atomic_load(&thread_failures) == 0, "pool of %d: %d wrong calls from concurrent callers", t,
               atomic_load(&thread_failures));
        pool_free(p);
    }
    pool_free(NULL);
    CHECK(pool_size(NULL) == 1);
    /* pool_create(0) and negative: no workers, everything inline */
    pool *p0 = pool_create(0);
    CHECK(pool_size(p0) == 1);
    CHECK(run_one(p0, 10, 0));
    pool_free(p0);
    CHECK_DONE();
}
