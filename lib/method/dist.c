/* dist: see dist.h.
 *
 * What the reference does (HKUDS/LightReasoner, LightR_sampling.py, read for
 * this module): per step t >= 1 it takes expert_dist = softmax(score) and
 * amateur_dist = softmax(logits) as tensors in the model dtype (their config:
 * bf16 on H100; float32 when run in float32), truncates both to
 * min(vocab sizes), then
 *   mask   = expert_dist >= alpha * max(expert_dist)        (>=, model dtype)
 *   kl     = F.kl_div((amateur_dist + 1e-12).log(), expert_dist + 1e-12,
 *                     reduction="sum")
 *          = sum (pE + eps) * (log(pE + eps) - log(pA + eps))
 *            (eps added to BOTH distributions, no renormalisation; the
 *            eps-only entries contribute eps*log(eps/eps) = 0)
 *   skip the step if kl < beta                               (keep kl >= beta)
 *   weights = softmax(log(pE + 1e-12) - log(pA + 1e-12))[mask]
 *   token_ids = arange(V)[mask]                              (ascending ids)
 * This module computes the same quantities. Differences, on purpose:
 *  - KL and weights are accumulated in double from float32 log-probs (the
 *    reference's bf16 sums cannot be reproduced bit for bit and are less
 *    accurate; float32 inputs bound our deviation from an exact computation
 *    by ~1e-7 relative per term);
 *  - the mask compares float32 probabilities, p32 = (float)exp((double)lp),
 *    against (float)alpha * max p32 rounded to float32: the reference run in
 *    float32 (PyTorch multiplies a float32 tensor by a Python scalar in
 *    float32). Ties at the threshold are therefore decided exactly as a
 *    float32 reference decides them, and p == threshold is kept.
 *
 * Compact form and the tail (derivation for dist_kl_compact). Let S be the
 * listed ids below V (n of them), U = V - n the unlisted ones, T_E / T_A the
 * two tails (mass of the unlisted tokens). The full KL splits as
 *   KL = sum_{a in S} f(a) + C,   f(a) = (pE + eps) log((pE + eps)/(pA + eps)),
 *   C  = sum_{a in U} f(a)  (unknown: only the sums of pE, pA over U are known).
 * Log-sum inequality (sum x log(x/y) >= X log(X/Y)) with x = pE + eps,
 * y = pA + eps over U gives
 *   C >= L = (T_E + U eps) log((T_E + U eps) / (T_A + U eps)),
 * so sum_S f + L is a lower bound, exact when the tails are 0 (then every
 * unlisted term is eps log 1 = 0, which is also why eps needs no other
 * closed-form term). Upper bound: every unlisted token has pE <= m, where m =
 * min(smallest listed pE, T_E) (the listing is the expert's top-k), and
 * pA >= 0, so f(a) <= (pE + eps) log((m + eps)/eps) and
 *   C <= (T_E + U eps) log((m + eps) / eps).
 * Hence 0 <= KL - compact <= err = (T_E + U eps) log((m + eps)/eps) - L.
 * The bound is tight in the worst case (the expert's whole tail on tokens the
 * amateur gives 0) and loose in practice; lr-kl reports how many selections
 * it could not decide (compact < beta <= compact + err). Assumption: the
 * tails lie inside the common vocabulary (padding rows carry no mass).
 */
#include "method/dist.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

float dist_prob32(float lp) { return (float)exp((double)lp); }

/* log(p + eps) for p = exp(lp), without a log call for p > 1e-8:
 * lp + log1p(x), x = eps/p <= 1e-4, by its series x - x^2/2 (the next term,
 * x^3/3, is below 4e-13); the plain log for smaller p. Every listed token
 * costs two exp and no log: the KL is the tools' hot loop. */
static double log_eps(double p, double lp) {
    if (p > 1e-8) {
        double x = DIST_EPS / p;
        return lp + x - 0.5 * x * x;
    }
    return log(p + DIST_EPS);
}

/* One KL term f = (p + eps) log((p + eps)/(q + eps)), from log-probs. */
static double kl_term_lp(float lpe, float lpa) {
    double p = exp((double)lpe), q = exp((double)lpa);
    return (p + DIST_EPS) * (log_eps(p, lpe) - log_eps(q, lpa));
}

double dist_kl_full(const float *lp_e, const float *lp_a, int64_t V) {
    double kl = 0;
    for (int64_t i = 0; i < V; i++) kl += kl_term_lp(lp_e[i], lp_a[i]);
    return kl;
}

static double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

double dist_kl_compact(const dist_step *s, int64_t V, double *err) {
    double kl = 0, pmin = 1;
    int64_t n = 0;
    for (int i = 0; i < s->k; i++) {
        double p = exp((double)s->lp_e[i]);
        if (p < pmin) pmin = p;       /* over all listed ids: bounds unlisted pE */
        if (s->ids[i] >= V) continue; /* truncated away, as in the reference */
        double q = exp((double)s->lp_a[i]);
        kl += (p + DIST_EPS) * (log_eps(p, s->lp_e[i]) - log_eps(q, s->lp_a[i]));
        n++;
    }
    int64_t U = V - n;
    double te = clamp01(s->tail_e), ta = clamp01(s->tail_a);
    double L = 0, up = 0;
    if (U > 0) {
        double a = te + (double)U * DIST_EPS, b = ta + (double)U * DIST_EPS;
        L = a * log(a / b);
        double m = te < pmin ? te : pmin;
        up = a * log((m + DIST_EPS) / DIST_EPS);
    }
    if (err) *err = up - L > 0 ? up - L : 0;
    return kl + L;
}

int dist_mask(const dist_step *s, int64_t V, double alpha, int *sel) {
    float pmax = -1;
    for (int i = 0; i < s->k; i++)
        if (s->ids[i] < V) {
            float p = dist_prob32(s->lp_e[i]);
            if (p > pmax) pmax = p;
        }
    if (!(pmax > 0)) return 0;
    float thr = (float)alpha * pmax; /* float32 product, as torch does it */
    int n = 0;
    for (int i = 0; i < s->k; i++)
        if (s->ids[i] < V && dist_prob32(s->lp_e[i]) >= thr) sel[n++] = i;
    return n;
}

int dist_mask_complete(const dist_step *s, int64_t V, double alpha) {
    float pmax = -1, pmin = 2;
    int n = 0;
    for (int i = 0; i < s->k; i++) {
        float p = dist_prob32(s->lp_e[i]);
        if (p < pmin) pmin = p;
        if (s->ids[i] < V) {
            n++;
            if (p > pmax) pmax = p;
        }
    }
    if (n >= V) return 1; /* nothing unlisted */
    float thr = (float)alpha * pmax;
    float bound = s->tail_e < pmin ? s->tail_e : pmin; /* largest possible unlisted p */
    return bound < thr;
}

static const int32_t *sort_ids; /* qsort context (single-threaded tools) */
static int by_id(const void *a, const void *b) {
    int32_t x = sort_ids[*(const int *)a], y = sort_ids[*(const int *)b];
    return (x > y) - (x < y);
}

/* The soft label's logit for listed token i: contrast = log(pE + eps) -
 * log(pA + eps); expert = log pE (softmax of it over the mask is pE
 * renormalised on the mask). */
static double score(const dist_step *s, int i, dist_target_kind kind) {
    if (kind != DIST_CONTRAST) return (double)s->lp_e[i];
    return log_eps(exp((double)s->lp_e[i]), s->lp_e[i]) - log_eps(exp((double)s->lp_a[i]), s->lp_a[i]);
}

int dist_target(const dist_step *s, int64_t V, double alpha, dist_target_kind kind,
                int32_t *ids, float *w, int *sel) {
    int n = dist_mask(s, V, alpha, sel);
    if (n == 0) return 0;
    if (kind == DIST_ONEHOT) {
        /* argmax of the expert's log-probs (the greedy token), lowest id on ties */
        int best = sel[0];
        for (int j = 1; j < n; j++) {
            int i = sel[j];
            if (s->lp_e[i] > s->lp_e[best] || (s->lp_e[i] == s->lp_e[best] && s->ids[i] < s->ids[best]))
                best = i;
        }
        ids[0] = s->ids[best];
        w[0] = 1.0f;
        return 1;
    }
    /* ascending ids, the reference's order (arange(V)[mask]); small n is the
     * common case, a flat full row can make n = V */
    int sorted = 1;
    for (int j = 1; j < n && sorted; j++) sorted = s->ids[sel[j - 1]] < s->ids[sel[j]];
    if (!sorted) {
        sort_ids = s->ids;
        qsort(sel, (size_t)n, sizeof *sel, by_id);
    }
    /* scores in double; the softmax subtracts the max for range safety */
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++) {
        double sc = score(s, sel[j], kind);
        if (sc > mx) mx = sc;
    }
    for (int j = 0; j < n; j++) sum += exp(score(s, sel[j], kind) - mx);
    for (int j = 0; j < n; j++) {
        ids[j] = s->ids[sel[j]];
        w[j] = (float)(exp(score(s, sel[j], kind) - mx) / sum);
    }
    return n;
}

const char *dist_check(const dist_step *s, int64_t vocab, int32_t *scratch) {
    if (s->k < 1) return "no listed tokens at a step (k < 1)";
    if (!(s->tail_e >= -1e-3f && s->tail_e <= 1.001f)) return "expert tail outside [0, 1]";
    if (!(s->tail_a >= -1e-3f && s->tail_a <= 1.001f)) return "amateur tail outside [0, 1]";
    for (int i = 0; i < s->k; i++) {
        if (s->ids[i] < 0 || s->ids[i] == INT32_MAX || (vocab > 0 && s->ids[i] >= vocab)) return "token id outside the vocabulary";
        if (!(s->lp_e[i] <= 1e-3f)) return "expert log-probability above 0";
        if (!(s->lp_a[i] <= 1e-3f)) return "amateur log-probability above 0";
    }
    /* distinct ids: pairwise for short lists, else open addressing in
     * scratch (a power of two >= 2k slots, id + 1 stored, 0 = empty) */
    if (s->k <= 16) {
        for (int i = 1; i < s->k; i++)
            for (int j = 0; j < i; j++)
                if (s->ids[i] == s->ids[j]) return "listed token ids not distinct";
        return NULL;
    }
    uint32_t size = 1, bits = 0;
    while (size < 2u * (uint32_t)s->k) size <<= 1, bits++;
    memset(scratch, 0, size * sizeof *scratch);
    for (int i = 0; i < s->k; i++) {
        /* Fibonacci hashing: the HIGH bits of id * 2^32/phi */
        uint32_t h = (uint32_t)((uint32_t)s->ids[i] * 2654435769u) >> (32 - bits);
        while (scratch[h]) {
            if (scratch[h] == s->ids[i] + 1) return "listed token ids not distinct";
            h = (h + 1) & (size - 1);
        }
        scratch[h] = s->ids[i] + 1;
    }
    return NULL;
}

dist_step dist_step_from_full(const int32_t *ids, const float *lp_e, const float *lp_a, int64_t V) {
    dist_step s = {(int)V, ids, lp_e, lp_a, 0.0f, 0.0f};
    return s;
}

void dist_iota(int32_t *ids, int64_t V) {
    for (int64_t i = 0; i < V; i++) ids[i] = (int32_t)i;
}

static const char *target_names[] = {"contrast", "expert", "onehot"};

int dist_target_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, target_names[i])) return i;
    return -1;
}

const char *dist_target_name(dist_target_kind k) {
    return (unsigned)k < 3 ? target_names[k] : "?";
}
