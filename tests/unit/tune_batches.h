/* tune_batches.h: the tuner examples the device-trainer tests feed both
 * backends: soft-KL problems whose step contexts extend one another (so
 * packing shares a sequence), a repeated context (a shared loss row) and a
 * query-only row; SFT examples with prompts of varied length. Seeded, so
 * every test sees the same examples. And open_tuner, the tuner both
 * backends are compared with, accumulate_once, one accumulation of both
 * with the device's gradients fetched, lockstep, one step of two of them,
 * and track, a run of such steps. */
#ifndef LR_TUNE_BATCHES_H
#define LR_TUNE_BATCHES_H
#include "method/tune.h"
#include "model/lora.h"
#include "nn/gpu_train.h"
#include "base/util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 4242;
static double urand01(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static int irand(int n) { return (int)(urand01() * n); }

typedef struct {
    tune_example *ex;
    int n;
} batch;

/* soft-KL examples: problems of 3 steps whose contexts extend one another
 * (packing shares one sequence), one repeated context (a shared loss row),
 * one example with a query-only last row */
static batch make_softkl(int V, int nprob) {
    batch b = {xcalloc((size_t)nprob * 3 + 2, sizeof(tune_example)), 0};
    for (int p = 0; p < nprob; p++) {
        int len = 6 + irand(6);
        int *base = xmalloc((size_t)(len + 8) * sizeof(int));
        for (int i = 0; i < len + 8; i++) base[i] = irand(V);
        for (int s = 0; s < 3; s++) {
            tune_example *e = &b.ex[b.n++];
            e->problem = p, e->step = s, e->ntok = len + 3 * s;
            e->tokens = xmalloc((size_t)e->ntok * sizeof(int));
            memcpy(e->tokens, base, (size_t)e->ntok * sizeof(int));
            e->nt = 1 + irand(5);
            e->ids = xmalloc((size_t)e->nt * sizeof(int));
            e->w = xmalloc((size_t)e->nt * sizeof(float));
            double sum = 0;
            for (int j = 0; j < e->nt; j++) {
                e->ids[j] = (p * 31 + j * 7 + s) % V; /* distinct */
                e->w[j] = (float)(0.1 + urand01());
                sum += e->w[j];
            }
            for (int j = 0; j < e->nt; j++) e->w[j] = (float)(e->w[j] / sum * 0.95);
        }
        free(base);
    }
    /* a repeat of example 1 (same context: the same loss row) */
    tune_example *d = &b.ex[b.n++], *o = &b.ex[1];
    *d = *o;
    d->tokens = xmalloc((size_t)o->ntok * sizeof(int)), memcpy(d->tokens, o->tokens, (size_t)o->ntok * sizeof(int));
    d->ids = xmalloc((size_t)o->nt * sizeof(int)), memcpy(d->ids, o->ids, (size_t)o->nt * sizeof(int));
    d->w = xmalloc((size_t)o->nt * sizeof(float)), memcpy(d->w, o->w, (size_t)o->nt * sizeof(float));
    d->ids[0] = (d->ids[0] + 3) % V;
    /* a padded example: its last row query-only at RoPE position 11 */
    tune_example *q = &b.ex[b.n++];
    q->problem = 1000, q->step = 0, q->ntok = 9, q->query_pos = 11, q->nt = 2;
    q->tokens = xmalloc(9 * sizeof(int));
    for (int i = 0; i < 9; i++) q->tokens[i] = irand(V);
    q->ids = xmalloc(2 * sizeof(int)), q->w = xmalloc(2 * sizeof(float));
    q->ids[0] = 5, q->ids[1] = 9, q->w[0] = 0.6f, q->w[1] = 0.4f;
    return b;
}

/* The LoRA every device-trainer test starts from: r 4, alpha 8, dropout
 * 0.1, on all seven projections of a model of config c; B random (PEFT's
 * init has B = 0, which would leave every A without a gradient). */
static void lora_all_seven(lora *lo0, const mcfg *c) {
    lora_alloc(lo0, c, 4, 8.0f, 0.1f, (1u << LORA_NMOD) - 1);
    lora_init(lo0, 5);
    for (int k = 0; k < LORA_NMOD; k++)
        for (size_t i = 0; i < (size_t)c->L * lo0->out[k] * lo0->r; i++) lo0->B[k][i] = (float)(0.2 * (urand01() - 0.5));
}

static batch make_sft(int V, int n) {
    batch b = {xcalloc((size_t)n, sizeof(tune_example)), n};
    for (int i = 0; i < n; i++) {
        tune_example *e = &b.ex[i];
        e->problem = i, e->ntok = 8 + irand(10), e->nprompt = 3 + irand(4);
        e->tokens = xmalloc((size_t)e->ntok * sizeof(int));
        for (int t = 0; t < e->ntok; t++) e->tokens[t] = irand(V);
    }
    return b;
}

static void free_batch(batch *b) {
    for (int i = 0; i < b->n; i++) free(b->ex[i].tokens), free(b->ex[i].ids), free(b->ex[i].w);
    free(b->ex);
}

/* a tuner on a private copy of lo0: the cpu (prec < 0) or the device at prec */
static int open_tuner(tuner *tu, lora *lo, const lora *lo0, model *m, int objective, int prec, int drop, int maxlen) {
    lora_alloc_like(lo, lo0);
    memcpy(lo->mem, lo0->mem, lo0->n * sizeof(float));
    lo->dropout = drop ? 0.1f : 0.0f;
    if (tuner_init(tu, m, lo, objective, 0, 1, 64, maxlen, 8, 2e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f)) return -1;
    tu->dropout_on = 1, tu->seed = 7;
    if (prec >= 0) {
        tu->precision = prec;
        if (tuner_use_gpu(tu)) return -1;
    }
    return 0;
}
/* One optimizer step of c and g in lockstep (the caller includes check.h):
 * two micro-batches, b's halves, each weighted 0.5 / its size, at step s
 * of a linear schedule of `steps` from 2e-3 with 2 warm-up steps; the
 * summed losses and the gradient norms of each. */
static void lockstep(tuner *c, tuner *g, const batch *b, int s, int steps, double *lc, double *lg, double *nc,
                     double *ng) {
    int half = b->n / 2;
    float lr = lr_linear(2e-3f, s, steps, 2);
    *lc = *lg = *nc = *ng = 0;
    CHECK(tuner_zero_grad(c) == 0 && tuner_zero_grad(g) == 0);
    for (int mb = 0; mb < 2; mb++) {
        const tune_example *ex = b->ex + (mb ? half : 0);
        int n = mb ? b->n - half : half;
        CHECKF(tuner_accumulate(c, ex, n, 0.5 / n, lc) == 0, "%s", lr_errmsg());
        CHECKF(tuner_accumulate(g, ex, n, 0.5 / n, lg) == 0, "%s", lr_errmsg());
    }
    CHECKF(tuner_update(c, lr, nc) == 0, "%s", lr_errmsg());
    CHECKF(tuner_update(g, lr, ng) == 0, "%s", lr_errmsg());
}
/* One accumulation of all of b (scale 1 / its size) on c (the cpu) and g
 * (the device), both zeroed first: the summed losses into *l_c and *l_g,
 * and g's gradients fetched from the device into a new array (g->n
 * floats; the caller frees it). */
static inline float *accumulate_once(tuner *c, tuner *g, const batch *b, double *l_c, double *l_g) {
    double scale = 1.0 / b->n;
    *l_c = *l_g = 0;
    CHECKF(tuner_zero_grad(c) == 0 && tuner_zero_grad(g) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(c, b->ex, b->n, scale, l_c) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(g, b->ex, b->n, scale, l_g) == 0, "%s", lr_errmsg());
    float *gg = xmalloc(g->n * sizeof(float));
    CHECK(gpu_trn_get(g->gpu, NULL, NULL, NULL, gg) == 0);
    return gg;
}
/* `steps` lockstep steps of c (the cpu, the reference) and g (named gname
 * in the log): every fifth step and the last logged to stderr; the worst
 * relative loss and gradient-norm differences, and c's first and last
 * summed loss (NULL: not wanted). */
static inline void track(tuner *c, tuner *g, const batch *b, int steps, const char *tag, const char *gname, double *worst_l,
                  double *worst_n, double *first, double *last) {
    *worst_l = *worst_n = 0;
    for (int s = 0; s < steps; s++) {
        double lcs, lgs, nc, ng;
        lockstep(c, g, b, s, steps, &lcs, &lgs, &nc, &ng);
        *worst_l = fmax(*worst_l, fabs(lgs - lcs) / fabs(lcs));
        *worst_n = fmax(*worst_n, fabs(ng - nc) / fabs(nc));
        if (first && !s) *first = lcs;
        if (last) *last = lcs;
        if (s % 5 == 0 || s == steps - 1)
            fprintf(stderr, "%s: step %d loss cpu %.7f %s %.7f norm cpu %.6f %s %.6f\n", tag, s + 1, lcs, gname, lgs, nc, gname, ng);
    }
}
#endif
