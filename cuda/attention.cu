/* attention: causal GQA attention of packed rows against the bf16 KV cache
 * (kernels.h k_attention), the device twin of ops_cpu.c attention_forward.
 *
 * Flash-style (one pass, online softmax): a block takes a tile of rows of
 * one slot (consecutive positions) and one KV head, and serves all G =
 * NH / NKV query heads that share it: its 32 query lanes are (row, head in
 * group) pairs, so a tile holds 32 / G rows. Each key/value tile streamed
 * through shared memory is then used by 32 queries in prefill, and by the G
 * heads of a row in decode (one row per slot), instead of being read again
 * for every query head. Each query is owned by 4 threads, each holding a
 * quarter of its output dims in registers; the 4 recompute the same running
 * max and sum (cheap), so no extra communication is needed. Attention is a
 * few percent of a forward's FLOPs next to the GEMMs, so plain FMAs (no
 * tensor cores) are enough here.
 *
 * Split-KV (flash-decoding): a decode call has one row per slot, so with
 * few slots it has few blocks (NKV per row: 2 for Qwen2.5-Math-1.5B) and
 * each streams the whole context alone while the rest of the GPU idles.
 * k_attention_split then also splits each tile's keys into ranges, one
 * block per range, and a second kernel combines the partial softmaxes
 * (max, sum, output per query) exactly as the online softmax combines key
 * tiles; att_splits picks how many from the rows and the context. */
#include "common.cuh"
#include "kernels.h"
#include "kvpage.cuh"

#define ATT_TK 32 /* keys a tile; KV_PAGE_ALIGN is a multiple of it */
static_assert(KV_PAGE_ALIGN % ATT_TK == 0, "a key tile must not straddle two KV pages");
#define ATT_THREADS (ATT_TQ * 4)
#define ATT_MAX_HD 128

int att_tiles(att_tile *tiles, const int *seq, const int *pos, int N, int max_rows) {
    int nt = 0;
    for (int i = 0; i < N; i++) {
        att_tile *t = nt ? &tiles[nt - 1] : NULL;
        if (t && t->slot == seq[i] && t->pos0 + t->n == pos[i] && t->row0 + t->n == i && t->n < max_rows) t->n++;
        else tiles[nt++] = (att_tile){i, 1, seq[i], pos[i]};
    }
    return nt;
}

/* One block: the tile's rows and the query heads of KV head blockIdx.y
 * against keys [k_lo, k_hi) of the tile's slot. Without SPLIT that is every
 * key the tile sees and the block writes the normalised output; with SPLIT
 * blockIdx.z picks one of gridDim.z key ranges and the block writes its
 * unnormalised partial (running max m, sum l, output o) for the combine. */
template <bool SPLIT>
__global__ void __launch_bounds__(ATT_THREADS)
attention_kernel(bf16 *out, float *part, const float *q, const bf16 *kc, const bf16 *vc, const att_tile *tiles,
                 int NH, int NKV, int HD, kv_pages kv) {
    __shared__ float Qs[ATT_TQ][ATT_MAX_HD];
    /* rows padded by 2 bf16 (one 4-byte bank): the score loop has the 32
     * lanes of a warp read 32 different key rows at the same d */
    __shared__ bf16 Ks[ATT_TK][ATT_MAX_HD + 2];
    __shared__ bf16 Vs[ATT_TK][ATT_MAX_HD + 2];
    __shared__ float S[ATT_TQ][ATT_TK + 1];
    const att_tile t = tiles[blockIdx.x];
    const int kvh = blockIdx.y, G = NH / NKV, QD = NH * HD, hd4 = HD / 4;
    const int nq = t.n * G; /* query lanes in use: lane i is row i / G, head kvh * G + i % G */
    const int r = threadIdx.x / 4, qd = threadIdx.x % 4;
    const float scale = 1.0f / sqrtf((float)HD);
    const int klen = t.pos0 + t.n;
    int k_lo = 0, k_hi = klen;
    if (SPLIT) { /* whole key tiles per split, the last ones possibly empty */
        int chunk = (klen + (int)gridDim.z - 1) / (int)gridDim.z;
        chunk = (chunk + ATT_TK - 1) / ATT_TK * ATT_TK;
        k_lo = min(klen, (int)blockIdx.z * chunk), k_hi = min(klen, k_lo + chunk);
    }

    for (int i = threadIdx.x; i < ATT_TQ * HD; i += blockDim.x) {
        int qi = i / HD, d = i % HD;
        Qs[qi][d] = qi < nq ? q[(size_t)(t.row0 + qi / G) * QD + (kvh * G + qi % G) * HD + d] * scale : 0.0f;
    }
    float o[ATT_MAX_HD / 4];
#pragma unroll
    for (int j = 0; j < ATT_MAX_HD / 4; j++) o[j] = 0.0f;
    /* dims owned: qd, qd + 4, ... (adjacent threads read adjacent V columns) */
    float m = -INFINITY, l = 0.0f;
    for (int k0 = k_lo; k0 < k_hi; k0 += ATT_TK) {
        /* k0 is a multiple of ATT_TK, so the tile's keys are rows of one page */
        const size_t base = kv_row(kv, t.slot, NKV, kvh, k0, HD);
        const bf16 *K = kc + base, *Vv = vc + base;
        for (int i = threadIdx.x; i < ATT_TK * HD; i += blockDim.x) {
            int c = i / HD, d = i % HD;
            bool in = k0 + c < k_hi;
            Ks[c][d] = in ? K[(size_t)c * HD + d] : f2bf(0.0f);
            Vs[c][d] = in ? Vv[(size_t)c * HD + d] : f2bf(0.0f);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < ATT_TQ * ATT_TK; i += blockDim.x) {
            int qi = i / ATT_TK, c = i % ATT_TK;
            float s = -INFINITY;
            if (qi < nq && k0 + c < k_hi && k0 + c <= t.pos0 + qi / G) {
                s = 0.0f;
                for (int d = 0; d < HD; d++) s += Qs[qi][d] * bf2f(Ks[c][d]);
            }
            S[qi][c] = s;
        }
        __syncthreads();
        float mt = -INFINITY;
        for (int c = 0; c < ATT_TK; c++) mt = fmaxf(mt, S[r][c]);
        float mn = fmaxf(m, mt);
        if (mn > -INFINITY) {
            float corr = expf(m - mn);
            l *= corr;
#pragma unroll
            for (int j = 0; j < ATT_MAX_HD / 4; j++) o[j] *= corr;
            for (int c = 0; c < ATT_TK; c++) {
                float p = expf(S[r][c] - mn);
                l += p;
#pragma unroll
                for (int j = 0; j < ATT_MAX_HD / 4; j++)
                    if (j < hd4) o[j] += p * bf2f(Vs[c][qd + 4 * j]);
            }
            m = mn;
        }
        __syncthreads();
    }
    if (r < nq) {
        if (SPLIT) {
            /* part: per (tile, KV head, split, lane) HD outputs, then m, l */
            float *pp = part + ((((size_t)blockIdx.x * NKV + kvh) * gridDim.z + blockIdx.z) * ATT_TQ + r) * (HD + 2);
#pragma unroll
            for (int j = 0; j < ATT_MAX_HD / 4; j++)
                if (j < hd4) pp[qd + 4 * j] = o[j];
            if (qd == 0) pp[HD] = m, pp[HD + 1] = l;
        } else {
            bf16 *dst = out + (size_t)(t.row0 + r / G) * QD + (kvh * G + r % G) * HD;
#pragma unroll
            for (int j = 0; j < ATT_MAX_HD / 4; j++)
                if (j < hd4) dst[qd + 4 * j] = f2bf(o[j] / l);
        }
    }
}

/* The second pass of split-KV attention: per query lane, the partials of
 * its splits rescaled to their common max and summed, as the online
 * softmax would have combined them in one pass. */
__global__ void __launch_bounds__(ATT_THREADS)
attention_combine_kernel(bf16 *out, const float *part, const att_tile *tiles, int NH, int NKV, int HD, int splits) {
    const att_tile t = tiles[blockIdx.x];
    const int kvh = blockIdx.y, G = NH / NKV, QD = NH * HD, hd4 = HD / 4;
    const int r = threadIdx.x / 4, qd = threadIdx.x % 4;
    if (r >= t.n * G) return; /* no barriers below */
    const size_t stride = (size_t)ATT_TQ * (HD + 2);
    const float *p0 = part + (((size_t)blockIdx.x * NKV + kvh) * splits * ATT_TQ + r) * (HD + 2);
    float M = -INFINITY, L = 0.0f;
    for (int s = 0; s < splits; s++) M = fmaxf(M, p0[s * stride + HD]);
    float o[ATT_MAX_HD / 4];
#pragma unroll
    for (int j = 0; j < ATT_MAX_HD / 4; j++) o[j] = 0.0f;
    for (int s = 0; s < splits; s++) {
        const float *ps = p0 + s * stride;
        if (ps[HD] == -INFINITY) continue; /* a split with no key this row sees */
        float w = expf(ps[HD] - M);
        L += w * ps[HD + 1];
#pragma unroll
        for (int j = 0; j < ATT_MAX_HD / 4; j++)
            if (j < hd4) o[j] += w * ps[qd + 4 * j];
    }
    bf16 *dst = out + (size_t)(t.row0 + r / G) * QD + (kvh * G + r % G) * HD;
#pragma unroll
    for (int j = 0; j < ATT_MAX_HD / 4; j++)
        if (j < hd4) dst[qd + 4 * j] = f2bf(o[j] / L);
}

void k_attention(uint16_t *out, const float *q, const uint16_t *kc, const uint16_t *vc, const att_tile *tiles,
                 int ntiles, int NH, int NKV, int HD, kv_pages kv, void *stream) {
    if (ntiles > 0)
        LAUNCH(attention_kernel<false>, dim3(ntiles, NKV), ATT_THREADS, 0, (cudaStream_t)stream, (bf16 *)out,
               (float *)NULL, q, (const bf16 *)kc, (const bf16 *)vc, tiles, NH, NKV, HD, kv);
}

size_t att_part_floats(int ntiles, int NKV, int HD, int splits) {
    return (size_t)ntiles * NKV * splits * ATT_TQ * (HD + 2);
}

int att_splits(int ntiles, int NKV, int max_klen, int nsm) {
    int blocks = ntiles * NKV, target = 2 * nsm; /* two blocks an SM hide each other's loads */
    if (blocks >= target) return 1;
    int s = (target + blocks - 1) / blocks, most = max_klen / ATT_SPLIT_MIN_KEYS;
    if (s > most) s = most;
    if (s > ATT_SPLIT_MAX) s = ATT_SPLIT_MAX;
    return s >= 2 ? s : 1;
}

void k_attention_split(uint16_t *out, const float *q, const uint16_t *kc, const uint16_t *vc, const att_tile *tiles,
                       int ntiles, int NH, int NKV, int HD, kv_pages kv, int splits, float *part, void *stream) {
    if (ntiles < 1) return;
    if (splits < 2) {
        k_attention(out, q, kc, vc, tiles, ntiles, NH, NKV, HD, kv, stream);
        return;
    }
    LAUNCH(attention_kernel<true>, dim3(ntiles, NKV, splits), ATT_THREADS, 0, (cudaStream_t)stream, (bf16 *)NULL,
           part, q, (const bf16 *)kc, (const bf16 *)vc, tiles, NH, NKV, HD, kv);
    LAUNCH(attention_combine_kernel, dim3(ntiles, NKV), ATT_THREADS, 0, (cudaStream_t)stream, (bf16 *)out,
           (const float *)part, tiles, NH, NKV, HD, splits);
}
