/* backward: the backward pass of each CPU layer op of ops_cpu.h, one
 * function beside each forward, llm.c style: gradients first (d<input>,
 * d<weight>), then the gradient of the output, then whatever the forward
 * saved, its inputs and weights, dimensions.
 *
 * Unless said otherwise every gradient is ACCUMULATED (+=) so that a
 * tensor used twice (the residual stream, ln1 feeding q, k and v, tied
 * embeddings) simply sums its contributions; a NULL gradient pointer skips
 * that gradient (frozen base weights under LoRA). Sums run in a fixed order
 * (single-threaded loops, cblas with fixed threads) so a run is
 * deterministic for a given OPENBLAS_NUM_THREADS. */
#ifndef LR_BACKWARD_H
#define LR_BACKWARD_H

#include <stdint.h>

/* embedding_forward: dwte[tokens[n]] += dout[n]. dwte (V, C), dout (N, C). */
void embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C);

/* rmsnorm_forward with its saved rstd (N). dinp (N, C) and dw (C) += . */
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, const float *rstd, int N,
                      int C);

/* matmul_forward (out = inp W^T): dinp += dout W, dw += dout^T inp.
 * dinp, inp (N, IC), dw, w (OC, IC), dout (N, OC). */
void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N, int IC, int OC);

/* bias_forward: dbias += column sums of dout (N, OC). */
void bias_backward(float *dbias, const float *dout, int N, int OC);

/* rope_forward: the inverse rotation. OVERWRITES dinp (dinp == dout
 * allowed) since the rotation is applied in place. (N, H, HD). */
void rope_backward(float *dinp, const float *dout, const int *pos, int N, int H, int HD, float theta);

/* attention_forward with the same cache layout: recomputes each row's
 * probabilities from q and the cache, then dq (N, NH*HD) += and
 * dkc/dvc (Bslots, NKV, Tmax, HD) += (a cache row receives the gradient of
 * every query row of its slot that attends to it). nthreads > 1 splits the
 * (slot, kv head) pairs over up to nthreads threads of ops_pool; results do
 * not depend on it. */
void attention_backward(float *dq, float *dkc, float *dvc, const float *dout, const float *q, const float *kc,
                        const float *vc, const int *seq, const int *pos, int N, int NH, int NKV, int HD, int Tmax,
                        int nthreads);

/* swiglu_forward: dgate, dup (n) += . */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n);

/* dropout_forward with the same key: dinp (n) += dout * the mask's factor. */
void dropout_backward(float *dinp, const float *dout, long n, float p, uint64_t key);

#endif
