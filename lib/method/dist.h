/* dist: the method's own maths on next-token distributions (METHOD.md,
 * stage 1, steps 5-7): KL divergence between expert and amateur, the
 * plausibility mask, and the soft labels (contrast / expert / one-hot).
 * A leaf module: no I/O, no allocation except dist_target's caller-sized
 * outputs, testable without any model.
 *
 * Two input forms, both as natural-log probabilities stored as float32:
 *  - full rows: lp[0..V) for every vocabulary entry (lr-infer --full);
 *  - the compact form lr-infer writes by default (dist_step): the expert's k
 *    listed tokens (its most probable, most probable first) with its
 *    log-probs, its mass outside them (tail_e), the amateur's log-probs on
 *    the SAME ids and the amateur's mass outside them (tail_a). A full row is
 *    the compact form with k = V, ids 0..V-1, tails 0, so every function here
 *    accepts both (dist_step_from_full).
 *
 * Vocabulary: every function takes V = min(V_expert, V_amateur) and ignores
 * listed ids >= V, as the reference truncates both distributions to the
 * smaller vocabulary (padding rows: 152064 vs 151936) without renormalising.
 *
 * Precision (see dist.c for the reference behaviour this follows): KL,
 * contrast scores and weights are computed in double from the float32
 * log-probs; the plausibility test p >= alpha * max p is done in float32
 * probability space, as the reference does it on float32 softmax outputs.
 */
#ifndef LR_DIST_H
#define LR_DIST_H

#include <stdint.h>

#define DIST_EPS 1e-12        /* added to both distributions (reference) */
#define DIST_ALPHA 0.2        /* plausibility threshold factor */
#define DIST_BETA 0.4         /* KL selection threshold */

/* One step t of one problem, compact form. */
typedef struct {
    int k;                  /* number of listed tokens */
    const int32_t *ids;     // (k) expert's listed token ids, distinct
    const float *lp_e;      // (k) expert log-probs of ids
    const float *lp_a;      // (k) amateur log-probs of the same ids
    float tail_e;           /* expert probability mass outside ids */
    float tail_a;           /* amateur probability mass outside ids */
} dist_step;

typedef enum { DIST_CONTRAST = 0, DIST_EXPERT = 1, DIST_ONEHOT = 2 } dist_target_kind;

/* Exact full-vocabulary KL with eps, METHOD.md step 6:
 *   sum_{a < V} (pE(a) + eps) * log((pE(a) + eps) / (pA(a) + eps)). */
double dist_kl_full(const float *lp_e /* (V) */, const float *lp_a /* (V) */, int64_t V);

/* KL of the same definition from the compact form: the listed tokens exactly,
 * the V - n unlisted tokens (n = listed ids < V) lumped into one bucket of
 * mass tail + (V - n) * eps on each side. By the log-sum inequality the
 * result is a LOWER bound of the full-vocabulary KL; it is exact when both
 * tails are 0. If err is not NULL, *err receives an upper bound of
 * (full KL - returned value), derived in dist.c. */
double dist_kl_compact(const dist_step *s, int64_t V, double *err);

/* The expert's probability in float32, as the reference's softmax holds it:
 * (float)exp((double)lp). */
float dist_prob32(float lp);

/* Plausibility mask, METHOD.md step 5: writes into sel the indices i (into
 * s->ids, ascending i) with ids[i] < V and p32(i) >= (float)alpha * max p32,
 * and returns their count (>= 1 whenever some listed id is < V and its
 * log-prob is > -inf; 0 otherwise). sel must hold s->k entries. */
int dist_mask(const dist_step *s, int64_t V, double alpha, int *sel);

/* 1 when the mask computed from the listed tokens is certainly the mask of
 * the full distribution: no unlisted token can reach the threshold (each
 * unlisted token has p <= min(smallest listed p, tail_e)). */
int dist_mask_complete(const dist_step *s, int64_t V, double alpha);

/* The training target of METHOD.md step 7 over the mask:
 *   DIST_CONTRAST: softmax over the mask of log(pE + eps) - log(pA + eps);
 *   DIST_EXPERT:   pE renormalised over the mask (ablation w/o Contrast);
 *   DIST_ONEHOT:   the expert's argmax (ties: lowest id), weight 1.
 * Writes ids in ascending id order (the reference's order) and weights
 * (float32; they sum to 1 up to float rounding); returns the count, 0 when
 * the mask is empty. ids, w and scratch must hold s->k entries. */
int dist_target(const dist_step *s, int64_t V, double alpha, dist_target_kind kind,
                int32_t *ids, float *w, int *scratch);

/* Checks a compact step for the invariants the functions above rely on:
 * k >= 1, ids in [0, vocab) and distinct, tails in [0, 1] up to rounding
 * (1e-3), log-probs <= 0 up to rounding. Returns NULL when fine, else a
 * static description of the first problem (for the caller's message; it
 * starts with "amateur" when the amateur's values are at fault).
 * scratch must hold DIST_CHECK_SCRATCH(k) entries. */
#define DIST_CHECK_SCRATCH(k) (4 * (size_t)(k) + 2)
const char *dist_check(const dist_step *s, int64_t vocab, int32_t *scratch);

/* Views a pair of full rows as a compact step: ids must hold 0..V-1 (the
 * caller fills it once with dist_iota). */
dist_step dist_step_from_full(const int32_t *ids, const float *lp_e, const float *lp_a, int64_t V);
void dist_iota(int32_t *ids, int64_t V);

/* Name <-> kind for --target; -1 when unknown. */
int dist_target_parse(const char *name);
const char *dist_target_name(dist_target_kind k);

#endif
