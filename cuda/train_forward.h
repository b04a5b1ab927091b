/* train_forward: the float32 forward kernels of the device trainer
 * (lib/nn/gpu_train.h), the device twins of the ops_cpu.h forward ops that
 * forward.c's layer_forward runs with kept activations. The inference
 * forward (kernels.h) keeps bf16 activations and a bf16 cache; training
 * needs the float32 values its backward (backward.h) reads, so these ops
 * keep every input and output in float32, with the CPU twins' arithmetic
 * (float sums, precise expf/cosf/sinf), summation order apart.
 *
 * Layouts as forward.h: N packed rows, row n in cache slot seq[n]; caches
 * (B, NKV, Tmax, HD) float32. Pointers are device pointers, `stream` a
 * cudaStream_t. Tested through the whole trainer against the CPU one
 * (tests/unit/test_gpu_trainer.c). */
#ifndef LR_CUDA_TRAIN_FORWARD_H
#define LR_CUDA_TRAIN_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include "backward.h" /* attb_tile */

#ifdef __cplusplus
extern "C" {
#endif

/* embedding_forward: x[n] = wte[tokens[n]], x (N, C), wte (V, C). */
void k_embedding_f32(float *x, const int *tokens, const float *wte, int N, int C, void *stream);
/* rmsnorm_forward: out (N, C) = w * x * rstd, rstd (N) = 1 / sqrt(mean(x^2) + eps). */
void k_rmsnorm_f32(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps, void *stream);
/* rope_forward in place on (N, H, HD) rows at positions pos (N), inv_freq
 * (HD/2) from rope_inv_freq. HD even. */
void k_rope_f32(float *x, const float *inv_freq, const int *pos, int N, int H, int HD, void *stream);
/* forward.c's kv_store: k, v (N, NKV*HD) into kc, vc at (seq[n], pos[n]),
 * but for query-only rows (qonly[n] >= 0; qonly NULL: none). */
void k_kv_store_f32(float *kc, float *vc, const float *k, const float *v, const int *seq, const int *pos,
                    const int *qonly, int N, int NKV, int HD, int Tmax, void *stream);
/* attention_forward: out (N, NH*HD) = softmax(q k^T / sqrt(HD)) v over
 * positions 0..apos[n] of row n's slot, query head h reading KV head
 * h / (NH / NKV). One warp per (row, head), an online softmax over the
 * positions. HD <= 128. */
void k_attention_f32(float *out, const float *q, const float *kc, const float *vc, const int *seq, const int *apos, int N,
                     int NH, int NKV, int HD, int Tmax, void *stream);
/* The same attention on tensor cores (cuda/attention_tc_train.cu), for
 * GTRN_BF16: q and the cache rounded to bf16 as they are staged, P
 * rounded before O += P V, float accumulation and softmax, so it differs
 * from k_attention_f32 by those roundings (docs/CUDA.md gives the measured
 * errors). Rows in the backward's query tiles (backward.h attb_tc_tiles
 * over the same seq and apos; tiles and rows are device copies), the
 * shapes attb_tc_serves accepts, attb_tc_smem(HD) bytes of shared memory
 * a block at most. OVERWRITES out, and unless lse is NULL lse (N * NH):
 * each (row, head)'s log-sum-exp of its scaled scores at [n * NH + h], of
 * P unrounded (as k_attention_backward's stats), for
 * k_attention_backward_tc. Returns 0, or -1 (nothing launched) outside the
 * limits. */
int k_attention_tc_f32(float *out, float *lse, const float *q, const float *kc, const float *vc, const int *apos,
                       const attb_tile *tiles, int ntiles, const int *rows, int N, int NH, int NKV, int HD, int Tmax,
                       void *stream);
/* swiglu_forward: h (n) = silu(gate) * up. */
void k_swiglu_f32(float *h, const float *gate, const float *up, size_t n, void *stream);
/* residual_forward: out (n) = a + b (out may alias a). */
void k_residual_f32(float *out, const float *a, const float *b, size_t n, void *stream);

/* bf16 (raw bits) -> float32 of n values: the bf16 trainer's kept GEMM
 * inputs widened for the float32 LoRA products (the reverse is kernels.h's
 * k_f32_to_bf16). */
void k_bf16_to_f32(float *out, const uint16_t *in, size_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif
