/* objective: training losses on one row of logits and their gradient with
 * respect to those logits.
 *
 * vlim (the reference's quirk, METHOD.md "Quirks"): the softmax runs over
 * the first vlim logits only (151,643 for Qwen: regular tokens), targets
 * with id >= vlim are dropped and the other logits get zero gradient.
 * vlim = V is the method as written. Everything is accumulated in double. */
#ifndef LR_OBJECTIVE_H
#define LR_OBJECTIVE_H

/* Soft-KL, KL(v || softmax(z)) = sum_j w_j (log w_j - log_softmax(z)_{ids_j})
 * (0 log 0 = 0) for a sparse target v given as n (id, weight) pairs with
 * distinct ids. Sets *loss to the unscaled KL and dz (V) to
 * scale * dKL/dz = scale * (W softmax(z) - v) with W = sum of kept weights
 * (so weights summing to less than 1 are honoured exactly as
 * torch.kl_div does). Returns 0, or LR_EINPUT for an id outside [0, V) or
 * a negative or non-finite weight. */
int obj_softkl(const float *z, int V, int vlim, const int *ids, const float *w, int n, float scale, float *dz,
               double *loss);

/* Cross-entropy -log_softmax(z)_target; dz = scale * (softmax(z) - onehot).
 * A target >= vlim contributes nothing (loss 0, dz 0). */
int obj_ce(const float *z, int V, int vlim, int target, float scale, float *dz, double *loss);

#endif
