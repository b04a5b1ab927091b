/* ops_cpu: the reference CPU layer ops of a Qwen2/Llama decoder, one function
 * per op, llm.c style: outputs first, then saved activations, inputs,
 * weights, dimensions. Rows are packed tokens: N rows may mix several
 * sequences (each row carries its sequence slot and position where an op
 * needs them), so prefill, decode and teacher forcing share the same ops.
 * All ops are deterministic: each output element is computed by one thread
 * in a fixed order. Each op's backward is backward.h's x_backward
 * (accumulating into gradients); the forward keeps everything a backward
 * needs addressable (see forward.h).
 *
 * The threaded ops (the small-N matmul, attention, attention_backward) run
 * on one process-wide persistent pool (ops_pool), created on first use with
 * as many threads as OpenBLAS uses then (at most 16). */
#ifndef LR_OPS_CPU_H
#define LR_OPS_CPU_H

#include <stdint.h>

#include "base/pool.h"

/* The shared pool of the threaded ops (created once, never freed: its
 * workers stay parked between calls). */
pool *ops_pool(void);

/* out[n] = wte[tokens[n]]; tokens must be in [0, V). */
void embedding_forward(float *out, const int *tokens, const float *wte, int N, int C);
// out (N, C), tokens (N), wte (V, C)

/* The tokens of a call whose rows take the previous call's picks (decode
 * one step ahead, engine.h eng_submit): tok[n] = src[feed[n]] where
 * feed[n] >= 0, 0 when that pick is outside [0, V) (a NaN row's -1: the
 * row's results are dropped, but its embedding must read a real row);
 * tok[n] unchanged where feed[n] < 0. */
void feed_tokens(int *tok, const int *feed, const int *src, int N, int V);

/* HF RMSNorm: out = w * x / sqrt(mean(x^2) + eps); saves rstd (N) for backward. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);

/* out = inp W^T with W in HF Linear layout (OC, IC): cblas_sgemm for
 * N > 8; for N <= 8 (decode) a weight-streaming kernel on up to
 * openblas_get_num_threads() threads of ops_pool whose results do not
 * depend on N or the thread count. out (N, OC), inp (N, IC), w (OC, IC). */
void matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC);
#define MATMUL_SMALL_N 8

/* The same streaming kernel reading bf16 weights (w (OC, IC) as raw bf16
 * bits), any N (one weight pass per 8 rows: meant for decode).
 * Exactly equal to matmul_forward's N <= 8 path on the float32 values of
 * those weights, with half the memory traffic. */
void matmul_bf16_forward(float *out, const float *inp, const uint16_t *w, int N, int IC, int OC);

/* out[n] += bias for every row. out (N, OC), bias (OC). */
void bias_forward(float *out, const float *bias, int N, int OC);

/* out = a + b elementwise over n floats (out may alias a or b). */
void residual_forward(float *out, const float *a, const float *b, long n);

/* RoPE, HF "rotate half" convention: for i < HD/2 with
 * angle = pos * theta^(-2i/HD): out[i] = x[i] cos - x[i+HD/2] sin,
 * out[i+HD/2] = x[i+HD/2] cos + x[i] sin. In place allowed (out == inp).
 * out, inp (N, H, HD), pos (N). */
/* The RoPE frequencies 1 / theta^(2i / HD), i < HD/2, in float32 exactly as
 * transformers computes them; rope_forward and rope_backward both use these
 * so their angles cannot drift apart. */
void rope_inv_freq(float *inv_freq, int HD, float theta);
void rope_forward(float *out, const float *inp, const int *pos, int N, int H, int HD, float theta);

/* Causal GQA attention against a KV cache. Row n (sequence slot seq[n],
 * position pos[n]) attends to cache positions 0..pos[n] of its slot; query
 * head h uses kv head h / (NH / NKV). Scale 1/sqrt(HD), softmax in float32.
 * out (N, NH*HD), q (N, NH*HD), kc/vc (Bslots, NKV, Tmax, HD) for one layer.
 * nthreads > 1 splits rows x heads over up to nthreads threads of ops_pool
 * (results identical). */
void attention_forward(float *out, const float *q, const float *kc, const float *vc, const int *seq, const int *pos,
                       int N, int NH, int NKV, int HD, int Tmax, int nthreads);

/* SwiGLU: out = silu(gate) * up = gate / (1 + exp(-gate)) * up. out, gate, up (N, I). */
void swiglu_forward(float *out, const float *gate, const float *up, long n);

/* Dropout with a counter-based mask: element i is kept with probability
 * 1 - p and scaled by 1 / (1 - p), else zeroed, as decided by one
 * rng_unit draw of the state key ^ i (rng.h), so the backward regenerates the mask from the key
 * instead of storing it. out, inp (n); out may alias inp. */
float dropout_factor(uint64_t key, long i, float p);
void dropout_forward(float *out, const float *inp, long n, float p, uint64_t key);

#endif
