/* attention_tc: causal GQA attention on tensor cores (kernels.h
 * k_attention_tc), for calls whose tiles hold many rows: prefill and
 * teacher forcing. The same attention as attention.cu's k_attention (and
 * ops_cpu.c attention_forward), with S = Q K^T and O += P V on wmma (bf16
 * operands, float accumulation) and the online softmax in float between
 * them.
 *
 * A block takes one tile of rows (att_tiles with ATT_TC_ROWS rows) and one
 * KV head: its ATT_TC_TQ = 64 query lanes are (row, head in group) pairs as
 * in attention.cu, so the G query heads sharing a KV head share each K/V
 * tile read. Four warps own 16 query lanes each (one wmma row block), so
 * after the block has staged a tile of ATT_TC_TK = 64 keys in shared memory
 * every warp works alone, with only __syncwarp between its steps:
 *   S (16 x 64)  = Q_w K^T      wmma, stored to shared memory as float;
 *   softmax      two lanes a query row, 32 keys each: scale, causal mask,
 *                running max m and sum l, P = exp(S - m) rounded to bf16
 *                (the bf16 operand PV needs; l sums the rounded values, so
 *                the output is a convex combination of V rows), and the
 *                row's O rescaled by exp(m_old - m);
 *   O (16 x HD) += P_w V        wmma, accumulators loaded from and stored
 *                to shared memory.
 * Everything crosses between wmma and the softmax through shared memory by
 * the layouts load/store_matrix_sync are told, never through a fragment's
 * element-to-lane mapping, which CUDA leaves unspecified.
 *
 * Q is q rounded to bf16 (the scale is applied to S in float). K/V tiles
 * are double buffered: each thread issues its 16-byte pieces of tile j+1
 * as asynchronous global-to-shared copies (cp.async through
 * cuda_pipeline.h, one commit group a tile, zero-filled past klen without
 * reading) into the buffer that tile j-1 used, right after the barrier
 * that ends tile j-1, and they fly while the warps compute on tile j; at
 * the top of the next step each thread waits for its own group
 * (wait_prior(0): the only group in flight) and the barrier after the
 * waits makes everyone's pieces visible and frees the other buffer. One
 * barrier a tile serves both.
 *
 * Shared memory (dynamic) holds Q, two K and two V tiles, S, P and O; rows
 * are padded by 16 bytes, which keeps wmma's 32-byte alignment and moves
 * successive rows to other banks: 144.25 KiB at HD 128 (Q 17, K/V 4 x 17,
 * O 33, S 17, P 9 KiB), 88.25 KiB at HD 64, under sm_90's 227 KiB opt-in
 * a block. Occupancy: an H100/H200 multiprocessor has 228 KiB, 1 KiB of
 * it reserved per block, so HD 128 runs one block (4 warps) where the
 * single-buffered 110 KiB layout ran two, and HD 64 still runs two; the
 * tile in flight, not a second block, now hides the loads at HD 128
 * (which of the two is faster is for a card to measure). The warp's Q
 * operands are loaded once, into registers. Key tiles past the tile's
 * last row are never loaded, and a warp whose query lanes are all padding
 * skips the math. */
#include "common.cuh"
#include "kernels.h"
#include "kvpage.cuh"
#include "smem_optin.cuh"
#include "tc_softmax.cuh"

namespace wm = nvcuda::wmma;

#define TC_TK ATT_TC_TK
#define TC_TQ ATT_TC_TQ
#define TC_WARPS (TC_TQ / 16)
#define TC_THREADS (TC_WARPS * 32)
#define TC_PER (ATT_TC_MAX_HD / 16) /* 16-byte pieces of a K (and of a V) tile per thread, at most: TC_TK * HD / 8 / TC_THREADS */
#define TC_PAD 8 /* bf16 elements (16 bytes) of padding per shared row */

/* The first of key rows k0 .. k0 + TC_TK - 1 of KV head kvh of `slot` in a
 * layer's cache, found through its page table (kvpage.cuh): row k0 + c is
 * at the result + c * HD, since k0 is a multiple of TC_TK and pages are
 * whole multiples of it (KV_PAGE_ALIGN). The one place the kernel knows
 * the cache layout. */
static_assert(KV_PAGE_ALIGN % TC_TK == 0, "a tensor-core key tile must not straddle two KV pages");
static __device__ __forceinline__ const bf16 *tc_kv_rows(const bf16 *cache, int slot, int kvh, int k0, int NKV,
                                                         int HD, const kv_pages &kv) {
    return cache + kv_row(kv, slot, NKV, kvh, k0, HD);
}

/* Shared memory layout for head dim HD, in bytes from the (128-aligned)
 * base: K/V buffer b (0, 1) at k + b * kv, v + b * kv. */
struct tc_smem {
    int qld, kld, old, sld, pld;              /* row strides in elements */
    size_t q, k, v, kv, o, s, p, inv, bytes; /* offsets; kv: one K (or V) tile */
};
static __host__ __device__ inline tc_smem tc_layout(int HD) {
    tc_smem L;
    L.qld = HD + TC_PAD, L.kld = HD + TC_PAD, L.old = HD + 4, L.sld = TC_TK + 4, L.pld = TC_TK + TC_PAD;
    L.kv = (size_t)TC_TK * L.kld * 2;
    L.q = 0;
    L.k = L.q + (size_t)TC_TQ * L.qld * 2;
    L.v = L.k + 2 * L.kv;
    L.o = L.v + 2 * L.kv;
    L.s = L.o + (size_t)TC_TQ * L.old * 4;
    L.p = L.s + (size_t)TC_TQ * L.sld * 4;
    L.inv = L.p + (size_t)TC_TQ * L.pld * 2;
    L.bytes = L.inv + TC_TQ * 4;
    return L;
}

__global__ void __launch_bounds__(TC_THREADS)
attention_tc_kernel(bf16 *out, const float *q, const bf16 *kc, const bf16 *vc, const att_tile *tiles, int NH, int NKV,
                    int HD, kv_pages kv) {
#ifdef LR_CUDA_EMU
    DYN_SMEM(unsigned char, smem);
#else
    extern __shared__ __align__(128) unsigned char tc_smem_[];
    unsigned char *smem = tc_smem_;
#endif
    const tc_smem L = tc_layout(HD);
    bf16 *Qs = (bf16 *)(smem + L.q), *Ps = (bf16 *)(smem + L.p);
    float *Os = (float *)(smem + L.o), *Ss = (float *)(smem + L.s), *Inv = (float *)(smem + L.inv);
    const att_tile t = tiles[blockIdx.x];
    const int kvh = blockIdx.y, G = NH / NKV, QD = NH * HD, nq = t.n * G, klen = t.pos0 + t.n;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nthr = TC_THREADS, per = HD / 16;
    const float scale = 1.0f / sqrtf((float)HD);

    /* K/V tile at k0 into buffer b: this thread's 16-byte pieces as
     * asynchronous copies, one commit group; rows past klen are zero-filled
     * from the tile's first row without reading it (they may lie past the
     * cache), since P V needs zeros there, not the cache's garbage */
    auto issue = [&](int k0, int b) {
        const bf16 *Kg = tc_kv_rows(kc, t.slot, kvh, k0, NKV, HD, kv), *Vg = tc_kv_rows(vc, t.slot, kvh, k0, NKV, HD, kv);
        bf16 *Kd = (bf16 *)(smem + L.k + b * L.kv), *Vd = (bf16 *)(smem + L.v + b * L.kv);
#pragma unroll
        for (int j = 0; j < TC_PER; j++)
            if (j < per) {
                int i = threadIdx.x + j * nthr, c = i / (HD / 8), d = i % (HD / 8) * 8;
                if (k0 + c < klen) {
                    __pipeline_memcpy_async(Kd + c * L.kld + d, Kg + (size_t)c * HD + d, 16);
                    __pipeline_memcpy_async(Vd + c * L.kld + d, Vg + (size_t)c * HD + d, 16);
                } else {
                    __pipeline_memcpy_async(Kd + c * L.kld + d, Kg, 16, 16);
                    __pipeline_memcpy_async(Vd + c * L.kld + d, Vg, 16, 16);
                }
            }
        __pipeline_commit();
    };
    issue(0, 0); /* flies while Q is staged */

    /* Q (bf16) and O = 0; lanes past nq are zero rows */
    for (int i = threadIdx.x; i < TC_TQ * HD / 4; i += nthr) {
        int qi = i / (HD / 4), d = i % (HD / 4) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (qi < nq) v = *(const float4 *)(q + (size_t)(t.row0 + qi / G) * QD + (kvh * G + qi % G) * HD + d);
        bf16 *dst = Qs + qi * L.qld + d;
        dst[0] = f2bf(v.x), dst[1] = f2bf(v.y), dst[2] = f2bf(v.z), dst[3] = f2bf(v.w);
        *(float4 *)(Os + qi * L.old + d) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }

    /* this lane's query row (within the warp's 16) and half of the keys */
    const int r = lane / 2, h = lane % 2, qi = warp * 16 + r;
    const int last_key = qi < nq ? t.pos0 + qi / G : -1; /* the causal limit; -1: a padding lane */
    const bool busy = warp * 16 < nq;                    /* warp-uniform */
    const int warp_last = busy ? t.pos0 + (min(nq, warp * 16 + 16) - 1) / G : -1;
    float m = -INFINITY, l = 0.0f;

    /* the warp's Q rows as wmma operands, loaded once (registers) */
    __syncthreads();
    wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> qf[ATT_TC_MAX_HD / 16];
    if (busy) {
#pragma unroll
        for (int kk = 0; kk < ATT_TC_MAX_HD / 16; kk++)
            if (kk < HD / 16) wm::load_matrix_sync(qf[kk], Qs + warp * 16 * L.qld + kk * 16, L.qld);
    }

    /* K/V tiles, double buffered: tile k0 in buffer b, the next one in
     * flight into b ^ 1 while the warps work on this one */
    for (int k0 = 0, b = 0; k0 < klen; k0 += TC_TK, b ^= 1) {
        __pipeline_wait_prior(0); /* this thread's pieces of tile k0 have landed */
        __syncthreads();          /* everyone's have; and every warp is done with tile k0 - TC_TK in buffer b ^ 1 */
        if (k0 + TC_TK < klen) issue(k0 + TC_TK, b ^ 1);
        const bf16 *Ks = (const bf16 *)(smem + L.k + b * L.kv), *Vs = (const bf16 *)(smem + L.v + b * L.kv);
        if (!busy || k0 > warp_last) continue; /* warp-uniform: nothing of this tile is visible to the warp */
        const int nkb = min(TC_TK / 16, (warp_last - k0) / 16 + 1); /* key blocks the warp's rows can see */

        /* S = Q_w K^T: K's rows read as a column-major B */
        for (int j = 0; j < nkb; j++) {
            wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
            wm::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < ATT_TC_MAX_HD / 16; kk++)
                if (kk < HD / 16) {
                    wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major> b;
                    wm::load_matrix_sync(b, Ks + j * 16 * L.kld + kk * 16, L.kld);
                    wm::mma_sync(acc, qf[kk], b, acc);
                }
            wm::store_matrix_sync(Ss + warp * 16 * L.sld + j * 16, acc, L.sld, wm::mem_row_major);
        }
        __syncwarp();

        /* online softmax of row qi over keys h, h + 2, ... (32 of them) */
        float *srow = Ss + qi * L.sld;
        bf16 *prow = Ps + qi * L.pld;
        tc_softmax_step(srow, prow, Os + qi * L.old, h, nkb * 16, k0, last_key, scale, HD, &m, &l, NULL);
        __syncwarp();

        /* O_w += P_w V over the key blocks the warp sees */
        for (int j = 0; j < HD; j += 16) {
            wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
            wm::load_matrix_sync(acc, Os + warp * 16 * L.old + j, L.old, wm::mem_row_major);
            for (int kb = 0; kb < nkb; kb++) {
                wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
                wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major> b;
                wm::load_matrix_sync(a, Ps + warp * 16 * L.pld + kb * 16, L.pld);
                wm::load_matrix_sync(b, Vs + kb * 16 * L.kld + j, L.kld);
                wm::mma_sync(acc, a, b, acc);
            }
            wm::store_matrix_sync(Os + warp * 16 * L.old + j, acc, L.old, wm::mem_row_major);
        }
    }
    if (h == 0) Inv[qi] = qi < nq ? 1.0f / l : 0.0f;
    __syncthreads();
    for (int i = threadIdx.x; i < nq * HD / 2; i += nthr) { /* two outputs a thread, consecutive dims */
        int qo = i / (HD / 2), d = i % (HD / 2) * 2;
        bf16 *dst = out + (size_t)(t.row0 + qo / G) * QD + (kvh * G + qo % G) * HD + d;
        dst[0] = f2bf(Os[qo * L.old + d] * Inv[qo]);
        dst[1] = f2bf(Os[qo * L.old + d + 1] * Inv[qo]);
    }
}

int att_tc_serves(int NH, int NKV, int HD) {
    return HD % 16 == 0 && HD >= 16 && HD <= ATT_TC_MAX_HD && NKV > 0 && NH % NKV == 0 && NH / NKV <= TC_TQ;
}

size_t att_tc_smem(int HD) { return tc_layout(HD).bytes; }

int att_tc_tiles(att_tile *tiles, const int *seq, const int *pos, int N, int tc_rows, int *ntc) {
    int nt = 0;
    for (int pass = 0; pass < 2; pass++) { /* runs of two rows or more, then lone rows */
        if (pass == 1) *ntc = nt;
        for (int i = 0, j; i < N; i = j) {
            for (j = i + 1; j < N && seq[j] == seq[i] && pos[j] == pos[j - 1] + 1;) j++;
            if ((j - i >= 2) != (pass == 0)) continue;
            for (int s = i; s < j; s += tc_rows) {
                att_tile *t = &tiles[nt++];
                t->row0 = s, t->n = j - s < tc_rows ? j - s : tc_rows, t->slot = seq[i], t->pos0 = pos[s];
            }
        }
    }
    return nt;
}

void k_attention_tc(uint16_t *out, const float *q, const uint16_t *kc, const uint16_t *vc, const att_tile *tiles,
                    int ntiles, int NH, int NKV, int HD, kv_pages kv, void *stream) {
    if (ntiles < 1) return;
    size_t smem = att_tc_smem(HD);
    static size_t opted[SMEM_OPTIN_DEVS];
    smem_optin(attention_tc_kernel, smem, opted);
    LAUNCH(attention_tc_kernel, dim3(ntiles, NKV), TC_THREADS, smem, (cudaStream_t)stream, (bf16 *)out, q,
           (const bf16 *)kc, (const bf16 *)vc, tiles, NH, NKV, HD, kv);
}
