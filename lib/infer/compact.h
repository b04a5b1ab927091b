/* compact: the compact per-step distribution lr-infer records (docs/FORMATS.md,
 * `dist` records): from one row of logits, the most probable tokens until they
 * cover `mass` of the probability (at most kmax, at least kmin), their
 * log-probs, and the tail mass outside them; in follow mode, this model's
 * log-probs of another model's listed tokens.
 *
 * All reductions run in double: a log-prob is logit - logsumexp(logits), and
 * the tail is 1 - sum of the listed probabilities, clamped at 0. These are
 * the CPU twins of the CUDA kernels that do the same on the device. */
#ifndef LR_COMPACT_H
#define LR_COMPACT_H

#include <stdint.h>

typedef struct {
    double mass;   /* stop listing once this much probability is covered */
    int kmax;      /* hard cap on listed tokens per step */
    int kmin;      /* always list at least this many (if V allows) */
} cd_opts;

#define CD_DEFAULT_MASS 0.99999
#define CD_DEFAULT_KMAX 256   /* generate mode: the lists lr-kl's KL rests on */
#define CD_FOLLOW_KMAX 32     /* follow mode: the follower's own list is informational */
#define CD_DEFAULT_KMIN 1

/* logsumexp of a logits row, in double. */
double cd_logsumexp(const float *logits, int V);
/* Full log-softmax of a row: lp[i] = logits[i] - lse. */
void cd_log_softmax(float *lp, const float *logits, int V);
/* Lists the top tokens of one row (most probable first, ties by lower id).
 * ids/lps need room for kmax entries. Returns k; sets *tail. `heap` is
 * scratch for kmax ints. */
int cd_select(const float *logits, int V, const cd_opts *o, int32_t *ids, float *lps, float *tail,
              int32_t *heap);
/* This model's log-probs of the given ids (an id outside 0..V-1 gets -inf:
 * a vocabulary truncated to the smaller model's), and the mass outside them. */
void cd_gather(const float *logits, int V, const int32_t *ids, int k, float *lps, float *tail);

#endif
