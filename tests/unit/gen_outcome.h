/* gen_outcome.h: what the shared-prefix tests (test_gpu_prefix,
 * test_prefix_cpu) keep of a continuous generation and how they compare
 * two: NP problems of at most MAXNEW tokens each, which the including file
 * defines before it includes this. */
#ifndef LR_GEN_OUTCOME_H
#define LR_GEN_OUTCOME_H
#include "check.h"
#include "infer/generate.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t tok[NP][MAXNEW];
    float *lp[NP]; /* every step's list of log-probs, concatenated */
    size_t nlp[NP];
    int T[NP], shared[NP];
    long preemptions, shared_joins;
    size_t kept; /* what gen_sched_prefix kept (the caller sets it) */
} outcome;

static void outcome_free(outcome *o) {
    for (int i = 0; i < NP; i++) free(o->lp[i]);
}

/* Admits ps[0..NP) in order, each as soon as it fits, and steps until
 * every one has ended; returns gen_step's code. */
static int run_all(gen_ctx *g, gen_sched *s, gen_problem *ps) {
    int next = 0, rc = 0;
    while (!rc && (next < NP || gen_busy(s))) {
        while (next < NP && gen_can_admit(s, &ps[next])) gen_admit(s, &ps[next++]);
        rc = gen_step(g, s);
    }
    return rc;
}

/* Into o: each problem's tokens, lists and whether it shared, and the
 * scheduler's counts; every problem must have ended without failing, and
 * is cleared. */
static void outcome_take(outcome *o, gen_problem *ps, const gen_sched *s) {
    o->preemptions = s->preemptions, o->shared_joins = s->shared_joins;
    for (int i = 0; i < NP; i++) {
        CHECK(gen_done(&ps[i]) && !ps[i].failed);
        o->shared[i] = ps[i].shared;
        o->T[i] = (int)ps[i].T;
        memcpy(o->tok[i], ps[i].tokens, ps[i].T * sizeof(int32_t));
        o->nlp[i] = ps[i].nids;
        o->lp[i] = malloc((ps[i].nids + 1) * sizeof(float));
        memcpy(o->lp[i], ps[i].lp, ps[i].nids * sizeof(float));
        gen_problem_clear(&ps[i]);
    }
}

/* The problems whose tokens differ; *worst: the largest log-prob
 * difference over the problems whose tokens agree (infinite when their
 * lists' lengths do not). */
static int differing(const outcome *a, const outcome *b, double *worst) {
    int d = 0;
    *worst = 0;
    for (int i = 0; i < NP; i++) {
        int same = a->T[i] == b->T[i] && !memcmp(a->tok[i], b->tok[i], (size_t)a->T[i] * sizeof(int32_t));
        d += !same;
        if (!same) continue;
        if (a->nlp[i] != b->nlp[i]) {
            *worst = INFINITY;
            continue;
        }
        for (size_t j = 0; j < a->nlp[i]; j++) {
            double x = fabs((double)a->lp[i][j] - b->lp[i][j]);
            if (x > *worst) *worst = x;
        }
    }
    return d;
}
#endif
