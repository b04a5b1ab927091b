/* kernels: the CUDA backend's kernels behind C launchers, one per op, in the
 * order a decoder layer uses them. Pointers are device pointers; bf16 tensors
 * are uint16_t (raw bits); `stream` is a cudaStream_t. Each kernel has a CPU
 * twin that tests compare it with through the emulated device (tests/unit/
 * test_gpu_kernels.c): ops_cpu.c for the layer ops, compact.c for the
 * per-row reductions (the training section at the end: test_gpu_train.c).
 * Layouts follow forward.h: rows are packed tokens, each with a KV-cache
 * slot seq[n] and position pos[n]. */
#ifndef LR_CUDA_KERNELS_H
#define LR_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x[n] = wte[tokens[n]] (bf16 -> f32). x (N, C), wte (V, C). */
void k_embedding(float *x, const int *tokens, const uint16_t *wte, int N, int C, void *stream);

/* ops_cpu.h feed_tokens on the device: tok[n] = src[feed[n]] (0 outside
 * [0, V)) where feed[n] >= 0. tok, feed (N), src (the previous call's
 * argmax or sampled ids). */
void k_feed(int *tok, const int *feed, const int *src, int N, int V, void *stream);

/* out[n] = bf16(w * x[rows[n]] / sqrt(mean(x[rows[n]]^2) + eps)), rows NULL
 * meaning rows[n] = n (the final norm gathers the wanted rows this way).
 * out (N, C) bf16, x (*, C) f32, w (C) f32. */
void k_rmsnorm(uint16_t *out, const float *x, const float *w, const int *rows, int N, int C, float eps, void *stream);

/* Where the KV cache's rows are (cuda/kvpage.cuh kv_row): pages of `page`
 * positions x NKV heads x HD, one layer's cache (pages, NKV, page, HD) bf16;
 * position p of slot s is row p % page of page ptab[s * mp + p / page]
 * (ptab: device memory, mp entries per slot). ptab NULL: the contiguous
 * layout (B, NKV, Tmax, HD), page = Tmax and slot s in page s. With mp > 1,
 * page must be a multiple of KV_PAGE_ALIGN (the attention kernels' key
 * tiles: 32 keys in attention.cu, 64 in attention_tc.cu), so a key tile
 * never straddles two pages. */
typedef struct {
    const int *ptab;
    int page, mp;
} kv_pages;
#define KV_PAGE_ALIGN 64

/* The projection outputs of one layer, qkv (N, QD + 2 KD) f32 = [q | k | v]
 * per row: adds the biases (bias NULL: none), rotates q and k (RoPE, HF
 * rotate-half, inv_freq (HD/2) from rope_inv_freq), writes q (N, QD) f32
 * and k, v as bf16 into the layer's cache kc, vc at (seq[n], pos[n])
 * through kv (the slot's pages must already be in its table). */
void k_qkv_rope(float *q, uint16_t *kc, uint16_t *vc, const float *qkv, const float *bias, const float *inv_freq,
                const int *seq, const int *pos, int N, int NH, int NKV, int HD, kv_pages kv, void *stream);

/* A run of rows attending together: rows row0 .. row0+n-1 all of slot
 * `slot` at positions pos0 .. pos0+n-1 (built on the host by att_tiles). */
typedef struct {
    int row0, n, slot, pos0;
} att_tile;
/* Query lanes of an attention block: a tile holds ATT_TQ / (NH / NKV) rows. */
#define ATT_TQ 32
#define ATT_ROWS(NH, NKV) (ATT_TQ / ((NH) / (NKV)))
/* Splits N rows into tiles: consecutive rows of one slot with consecutive
 * positions, at most max_rows each (ATT_ROWS). tiles needs room for N.
 * Returns the count. */
int att_tiles(att_tile *tiles, const int *seq, const int *pos, int N, int max_rows);

/* Causal GQA attention of the tiled rows against the cache (which already
 * holds every row's own k, v; rows found through kv): out (N, NH*HD) bf16 = softmax(q k^T / sqrt(HD))
 * v over positions 0..pos of the row's slot; q (N, NH*HD) f32. HD <= 128,
 * a multiple of 4; NH / NKV <= ATT_TQ. Flash-style: one block per (tile, KV
 * head) streams key tiles through shared memory with an online softmax for
 * the tile's rows and the query heads sharing that KV head. */
void k_attention(uint16_t *out, const float *q, const uint16_t *kc, const uint16_t *vc, const att_tile *tiles,
                 int ntiles, int NH, int NKV, int HD, kv_pages kv, void *stream);

/* The same attention with each tile's keys split into `splits` ranges of
 * whole key tiles, one block per (tile, KV head, range) writing an
 * unnormalised partial into part (att_part_floats floats), then combined
 * per query by a second kernel: for calls with few tiles and long contexts
 * (decode), where k_attention would run ntiles * NKV blocks. splits < 2 is
 * k_attention. Equal to it up to float rounding. */
void k_attention_split(uint16_t *out, const float *q, const uint16_t *kc, const uint16_t *vc, const att_tile *tiles,
                       int ntiles, int NH, int NKV, int HD, kv_pages kv, int splits, float *part, void *stream);
size_t att_part_floats(int ntiles, int NKV, int HD, int splits);
/* Splits for a call of ntiles tiles whose longest sees max_klen keys, on a
 * device of nsm multiprocessors: enough blocks for two per SM, at least
 * ATT_SPLIT_MIN_KEYS keys a split, at most ATT_SPLIT_MAX; 1 = no split. */
#define ATT_SPLIT_MIN_KEYS 256
#define ATT_SPLIT_MAX 64
int att_splits(int ntiles, int NKV, int max_klen, int nsm);

/* The same attention on tensor cores (cuda/attention_tc.cu) for calls
 * whose tiles hold many rows (prefill, teacher forcing): tiles from
 * att_tiles with ATT_TC_ROWS rows, one block of 4 warps per (tile, KV head),
 * ATT_TC_TQ query lanes and key tiles of ATT_TC_TK; Q and P are rounded to
 * bf16 before their products (float accumulation), so it differs from
 * k_attention by those roundings (docs/CUDA.md gives the bound). Serves
 * the shapes att_tc_serves accepts and needs att_tc_smem(HD) bytes of
 * shared memory a block (the caller checks the device has them). */
#define ATT_TC_TQ 64
#define ATT_TC_TK 64
#define ATT_TC_MAX_HD 128
#define ATT_TC_ROWS(NH, NKV) (ATT_TC_TQ / ((NH) / (NKV)))
int att_tc_serves(int NH, int NKV, int HD); /* HD a multiple of 16 in [16, 128], NH / NKV <= 64 */
size_t att_tc_smem(int HD);
/* The tiles of a call with tensor-core attention: every run of two or more
 * consecutive rows of one slot (a prompt, a chunk of a teacher-forced row)
 * in tiles of at most tc_rows rows, first (*ntc of them, for
 * k_attention_tc), then one tile per lone row (decode, for
 * k_attention_split). Chosen by run, not by call, so a row's attention
 * does not depend on what else shares its call: a prompt joining a
 * continuous batch of decode rows gets the attention it gets in a batch of
 * prompts. tiles needs room for N. Returns the count. */
int att_tc_tiles(att_tile *tiles, const int *seq, const int *pos, int N, int tc_rows, int *ntc);
void k_attention_tc(uint16_t *out, const float *q, const uint16_t *kc, const uint16_t *vc, const att_tile *tiles,
                    int ntiles, int NH, int NKV, int HD, kv_pages kv, void *stream);

/* h (N, I) bf16 = silu(gate) * up, gu (N, 2I) f32 = [gate | up] per row. */
void k_swiglu(uint16_t *h, const float *gu, int N, int I, void *stream);
/* The same from gu in bf16 (the gate/up GEMM's output under LR_GPU_GU16). */
void k_swiglu_bf16(uint16_t *h, const uint16_t *gu, int N, int I, void *stream);

/* x (N, C) += b (C). */
void k_add_bias(float *x, const float *b, int N, int C, void *stream);

/* f32 -> bf16 of n values (weight upload). */
void k_f32_to_bf16(uint16_t *out, const float *in, size_t n, void *stream);

/* Calls of at most GEMV_MAX_ROWS rows (small-batch decode): each of a
 * layer's projections as one matrix-vector product fused with the kernels
 * around it in the unfused layer (cuda/gemv.cu). W is the projection's
 * bf16 weight (OUT, K) row-major, as the GEMMs take it. k_gemv_fits says
 * whether a call of N rows on a model of these widths may take them
 * (widths multiples of 8 for 16-byte loads, the N normed rows' bf16 within
 * GEMV_SMEM_MAX bytes: a block gets 48 KiB of shared memory without an
 * opt-in, static and dynamic together, and the kernels' reduction buffers
 * take 384 bytes of it). The grid is a block per pair of weight rows, at
 * most maxblocks (> 0), each pair split over as many of a block's warps
 * as leave none idle: the qkv and gate/up kernels norm their input rows
 * once a block, so the forward caps them at 2 blocks a multiprocessor,
 * and leaves the o and down products uncapped (a pair a block). */
#define GEMV_MAX_ROWS 4
#define GEMV_SMEM_MAX (47 * 1024)
int k_gemv_fits(int N, int C, int QD, int KD, int I);
/* k_rmsnorm(x, lnw) -> qkv product with W (QD + 2 KD, C) -> k_qkv_rope. x
 * (N, C) f32, the other arguments k_qkv_rope's. */
void k_gemv_qkv(float *q, uint16_t *kc, uint16_t *vc, const float *x, const float *lnw, float eps, const uint16_t *W,
                const float *bias, const float *inv_freq, const int *seq, const int *pos, int N, int C, int NH, int NKV,
                int HD, kv_pages kv, int maxblocks, void *stream);
/* k_rmsnorm(x, lnw) -> gate/up product with W (2I, C) -> k_swiglu: h (N, I) bf16. */
void k_gemv_swiglu(uint16_t *h, const float *x, const float *lnw, float eps, const uint16_t *W, int N, int C, int I,
                   int maxblocks, void *stream);
/* x (N, OUT) f32 += in (N, K) bf16 W^T, then + bias (NULL: none): the o and
 * down products' residual add, and k_add_bias. */
void k_gemv_add(float *x, const uint16_t *in, const uint16_t *W, const float *bias, int N, int K, int OUT,
                int maxblocks, void *stream);

/* Per-row reductions of logits (G, V) f32, compact.c's cd_select /
 * cd_gather / argmax on the device:
 *   bad[g]     1 when row g holds a NaN/inf (then nothing else is written);
 *   argmax[g]  the most probable id (ties: lowest id);
 *   with kmax > 0: the k[g] <= kmax most probable tokens (ties: lowest id)
 *     until their probability reaches mass (at least kmin), ids and
 *     log-probs at g * kmax, and tail[g] = max(0, 1 - covered);
 *   with gids: log-probs of gids[goff[g] .. goff[g+1]) (-inf outside
 *     [0, V)) into glps at the same offsets, gtail[g] likewise.
 * kmax <= 1024. Log-sum-exp and masses accumulate in double, like compact.c.
 * Each row is read by `slices` blocks (k_compact_slices: more when rows are
 * few) through `ws`, device scratch of k_compact_ws_bytes(G, V, slices)
 * bytes; the results do not depend on the order atomics land in. */
typedef struct {
    int kmax, kmin;
    double mass;
    const int32_t *gids;   /* NULL: no gather */
    const int64_t *goff;   /* (G + 1) */
    int32_t *k, *ids, *argmax;
    float *lps, *tail, *glps, *gtail;
    unsigned char *bad;
    int slices;            /* blocks per row, >= 1 */
    void *ws;              /* scratch, see above */
} compact_args;
/* Blocks per row for G rows on nsm multiprocessors: enough for two blocks
 * per multiprocessor, each slice at least 2048 logits, at most 128. */
int k_compact_slices(int G, int V, int nsm);
size_t k_compact_ws_bytes(int G, int V, int slices);
void k_compact(const float *logits, int G, int V, const compact_args *a, void *stream);

/* One token per row of logits (G, V) f32, sample.c smp_draw_u on the
 * device: row g draws with uniform[g] in [0, 1) under temperature > 0,
 * top_k (0: off) and top_p (1: off) into out[g]; -1 for a row holding a
 * NaN/inf. The same token as the host for the same uniform except within
 * rounding of a cumulative boundary (see cuda/sample.cu). */
void k_sample(const float *logits, int G, int V, const double *uniform, double temperature, int top_k, double top_p,
              int32_t *out, void *stream);

/* ---- training ----
 * lr-tune's losses and optimizer step on the device (the device trainer,
 * cuda/train.cu, calls them). CPU twins: lib/method/objective.c
 * (obj_softkl, obj_ce) and lib/method/adamw.c (grad_clip, adamw_step);
 * tests/unit/test_gpu_train.c compares them.
 * vlim as in objective.h: the softmax runs over the first vlim logits,
 * targets >= vlim are dropped, the other logits get zero gradient; vlim <= 0
 * or > V means V. */

/* Soft-KL of each row r of logits (R, V) f32 against its sparse target,
 * the (id, weight) pairs ids/w [off[r], off[r+1]) (off (R + 1), distinct
 * ids per row): loss[r] = KL(v || softmax(z)) unscaled, in double, and the
 * row overwritten in place by scale * (W softmax(z) - v), W = the sum of the
 * kept weights, as obj_softkl. A row with an id outside [0, V) or a
 * negative or non-finite weight gets loss NaN and a zero gradient. */
void k_softkl(float *logits, int R, int V, int vlim, const int32_t *ids, const float *w, const int64_t *off, float scale,
              double *loss, void *stream);

/* Cross-entropy of each row against target[r], as obj_ce: loss[r] =
 * -log_softmax(z)_target, the row overwritten by scale * (softmax(z) -
 * onehot). A target in [vlim, V): loss 0, gradient 0; outside [0, V): loss
 * NaN, gradient 0. */
void k_ce(float *logits, int R, int V, int vlim, const int32_t *target, float scale, double *loss, void *stream);

/* Global gradient norm and clip factor, clip_grad_norm_ as grad_clip:
 * norm[0] = sqrt(sum g^2) accumulated in double in a fixed order (the same
 * bits every run for the same n), coef[0] = max_norm / (norm + 1e-6) as a
 * float when max_norm > 0 and norm > max_norm, else 1. work holds
 * K_NORM_BLOCKS doubles of scratch. norm, coef and work are device memory:
 * nothing waits for the host. */
#define K_NORM_BLOCKS 256
void k_grad_norm(const float *g, size_t n, double max_norm, double *work, double *norm, float *coef, void *stream);

/* One AdamW update of p (n) with moments m, v (n) from gradient g (n)
 * scaled by coef[0] (coef NULL: 1), as adamw_step after grad_clip:
 *   g *= coef; p *= 1 - lr wd; m = lerp(m, g, 1 - b1); v = b2 v + (1-b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps),
 * t the 1-based number of this update; g is left unchanged. */
void k_adamw(float *p, float *m, float *v, const float *g, const float *coef, size_t n, float lr, float beta1,
             float beta2, float eps, float wd, long t, void *stream);

#ifdef __cplusplus
}
#endif

#endif
