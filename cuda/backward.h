/* backward: the CUDA backend's backward-pass kernels (training) behind C
 * launchers, the device twins of lib/nn/backward.h, one per op with the
 * same contract as its CPU twin: gradients first, then the output's
 * gradient, then what the forward saved; every gradient is ACCUMULATED (+=)
 * unless said otherwise, and a NULL gradient pointer skips that gradient
 * where the CPU twin allows it.
 *
 * Precision: float32 in and out, float32 arithmetic (the CPU twins'
 * precision), except k_attention_backward_tc (bf16 products); bf16
 * activations are not accepted here yet.
 *
 * Determinism: no float atomics. Column sums (weight and bias gradients)
 * run as fixed per-block partial sums into a caller's workspace, then one
 * fixed-order reduction; attention's dk/dv rows each belong to one block.
 * So a launch with the same inputs and shapes gives the same bits every
 * time, whatever the scheduling.
 *
 * Pointers are device pointers; `stream` is a cudaStream_t. Tested on the
 * emulated device against the CPU twins by tests/unit/test_gpu_backward.c. */
#ifndef LR_CUDA_BACKWARD_H
#define LR_CUDA_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Row blocks of the column sums: a column-sum workspace holds
 * BWD_COLSUM_PARTS * C floats (C the columns). */
#define BWD_COLSUM_PARTS 32

/* rmsnorm_backward: rmsnorm_forward's input x (N, C), weight w (C) and
 * saved rstd (N); dinp (N, C) += and dw (C) +=, either NULL to skip it.
 * ws: BWD_COLSUM_PARTS * C floats of scratch (unused when dw is NULL). */
void k_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                        const float *rstd, int N, int C, float *ws, void *stream);

/* bias_backward: dbias (OC) += column sums of dout (N, OC); dbias NULL
 * does nothing. ws: BWD_COLSUM_PARTS * OC floats of scratch. */
void k_bias_backward(float *dbias, const float *dout, int N, int OC, float *ws, void *stream);

/* embedding_backward: dwte (V, C) row tokens[n] += dout row n (N, C);
 * rows sharing a token add up in row order. dwte NULL does nothing. */
void k_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C, void *stream);

/* rope_backward: the inverse rotation of (N, H, HD) rows at positions pos
 * (N), HF rotate-half, inv_freq (HD/2) from rope_inv_freq as the forward's
 * k_qkv_rope takes it. OVERWRITES dinp (dinp == dout allowed). HD even. */
void k_rope_backward(float *dinp, const float *dout, const float *inv_freq, const int *pos, int N, int H, int HD,
                     void *stream);

/* swiglu_backward of N rows of I values: element (n, i) of dgate, dup,
 * gate and up is at n * ld + i (ld = I: separate tensors as the CPU twin;
 * ld = 2 I with dup = dgate + I, up = gate + I: the forward's packed
 * [gate | up] rows), dout (N, I) packed. dgate, dup += . */
void k_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int N, int I,
                       int ld, void *stream);

/* attention_backward for causal GQA over the cache layout of the forward:
 * row n (slot seq[n], position pos[n]) attended with its NH query heads
 * (q (N, NH*HD)) to positions 0..pos[n] of its slot in kc, vc (B, NKV,
 * Tmax, HD), query head h reading KV head h / (NH / NKV). Recomputes the
 * probabilities, then dq (N, NH*HD) += and dkc, dvc (B, NKV, Tmax, HD) +=
 * (a cache row gets the gradient of every query that attends to it; rows
 * no query attends to are left as they are). Rows may mix slots and
 * positions freely, as on the CPU.
 * stats: 2 * N * NH floats of scratch; on return it holds each query's
 * log-sum-exp of its scaled scores at [n * NH + h] and sum_t p_t dp_t at
 * [N * NH + n * NH + h].
 * Limits: HD a multiple of 4, at most 128; NH a multiple of NKV; B <=
 * 65535. Returns 0, or -1 (nothing launched) outside them. */
int k_attention_backward(float *dq, float *dkc, float *dvc, float *stats, const float *dout, const float *q,
                         const float *kc, const float *vc, const int *seq, const int *pos, int N, int NH, int NKV,
                         int HD, int B, int Tmax, void *stream);

/* The same backward on tensor cores (cuda/attention_tc_train.cu):
 * FlashAttention-2's backward made deterministic, products on wmma with
 * bf16 operands (q, dout and the cache rounded to bf16 as they are staged,
 * P and dS rounded before their products) and float accumulation, so it
 * differs from k_attention_backward by those roundings (docs/CUDA.md gives
 * the measured errors). The same contract, with the rows in tiles built
 * on the host by attb_tc_tiles from the same seq and pos: tiles (ntiles),
 * rows (N) and sfirst (B + 1) are device copies of its outputs. Serves
 * the shapes attb_tc_serves accepts (HD a multiple of 16 in [16, 128],
 * NH / NKV <= 64) and needs attb_tc_smem(HD) bytes of shared memory a
 * block (the caller checks the device has them). Returns 0, or -1
 * (nothing launched) outside the limits. */
typedef struct {
    int first, n, slot, last; /* rows[first .. first+n-1], all of `slot`; last: their largest pos */
} attb_tile;
int attb_tc_serves(int NH, int NKV, int HD);
size_t attb_tc_smem(int HD);
/* Rows grouped by slot, each slot's by position, in tiles of at most 64 /
 * G rows (G = NH / NKV): rows (N) gets the row order, tiles (room for N)
 * the tiles, slot b's being sfirst[b] .. sfirst[b+1]-1 (sfirst: B + 1).
 * seq in [0, B). Returns the count. */
int attb_tc_tiles(attb_tile *tiles, int *rows, int *sfirst, const int *seq, const int *pos, int N, int B, int G);
/* lse, o: the forward's (train_forward.h k_attention_tc_f32) log-sum-exp
 * (N * NH, [n * NH + h]) and output rounded to bf16 (raw bits, (N,
 * NH*HD)) for these rows, or lse NULL (o unused): with them the dq kernel
 * takes lse as it is and delta = dout . o per (row, head) and makes one
 * pass over the keys; without, it first recomputes both from the scores,
 * a second pass. stats as k_attention_backward's either way. */
int k_attention_backward_tc(float *dq, float *dkc, float *dvc, float *stats, const float *lse, const uint16_t *o,
                            const float *dout, const float *q, const float *kc, const float *vc, const int *pos,
                            const attb_tile *tiles, int ntiles, const int *rows, const int *sfirst, int N, int NH,
                            int NKV, int HD, int B, int Tmax, void *stream);

/* The backward of storing each row's k and v into the cache: dk, dv (N,
 * NKV*HD) = dkc, dvc (B, NKV, Tmax, HD) at (seq[n], pos[n]), OVERWRITTEN;
 * zero for query-only rows (qonly[n] >= 0; qonly NULL: none, forward.h's
 * query_pos), whose key and value were never stored. */
void k_kv_gather(float *dk, float *dv, const float *dkc, const float *dvc, const int *seq, const int *pos,
                 const int *qonly, int N, int NKV, int HD, int Tmax, void *stream);

#ifdef __cplusplus
}
#endif

#endif
