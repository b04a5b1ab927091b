/* sample: drawing the next token from one row of logits, as transformers'
 * generate does with do_sample: logits / temperature, then top-k (keep the
 * k most probable tokens), then top-p (keep the smallest set of the most
 * probable tokens whose mass reaches top_p), renormalise, draw.
 *
 * Order: most probable first, ties by lower id (transformers' top-k keeps
 * every token tied with the k-th; the draws differ only on exact ties).
 * One draw consumes one value of the caller's rng_next stream (base/rng.h),
 * so a problem's tokens depend only on its stream, not on batching.
 *
 * The draw itself is a function of one uniform u in [0, 1) (smp_draw_u):
 * u times the kept mass, walked through the kept tokens in order (in id
 * order when neither top-k nor top-p is on). The device sampler
 * (cuda/sample.cu) computes the same function from the same u, so a backend
 * may draw where its logits are, given the host's uniforms. */
#ifndef LR_SAMPLE_H
#define LR_SAMPLE_H

#include <stdint.h>

typedef struct {
    double temperature; /* > 0 */
    double top_p;       /* (0, 1]; 1: off */
    int top_k;          /* 0: off */
} smp_opts;

/* Scratch for rows of V logits (one per thread of draws). */
typedef struct {
    int V;
    int *order;   // (V) token ids, most probable first (top-k/top-p only)
    double *pr;   // (V) unnormalised probabilities
} smp_scratch;

void smp_init(smp_scratch *s, int V);
void smp_free(smp_scratch *s);

/* Draws a token id from row (V logits) under o, advancing *rng by one draw. */
int smp_draw(const float *row, const smp_opts *o, uint64_t *rng, smp_scratch *s);
/* The same draw for a given uniform u in [0, 1): smp_draw is
 * smp_draw_u(row, o, rng_unit(rng), s). */
int smp_draw_u(const float *row, const smp_opts *o, double u, smp_scratch *s);

#endif
