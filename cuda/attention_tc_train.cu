/* attention_tc_train: the trainer's attention on tensor cores over its
 * float32 KV cache, forward (train_forward.h k_attention_tc_f32) and
 * backward (backward.h k_attention_backward_tc, FlashAttention-2's
 * backward made deterministic). The same results as train_forward.cu's
 * k_attention_f32 and backward.cu's k_attention_backward (the float32
 * references), with every product on wmma (bf16 operands, float
 * accumulation) and the softmax arithmetic in float between them.
 *
 * Query lanes: a tile (attb_tc_tiles, built on the host once per call)
 * holds up to BT_TQ / G rows of one slot, not necessarily consecutive nor
 * at consecutive positions; its BT_TQ = 64 lanes are (row, head in group)
 * pairs as in attention_tc.cu, so the G query heads sharing a KV head
 * share each K/V tile, and each lane has its own causal limit, its row's
 * pos (query-only rows included). Keys come in tiles of BT_TK = 64 cache
 * positions. A block is 4 warps; each warp owns 16 query lanes (the dq
 * kernel) or 16 keys (the dk/dv kernel) and, once the block has staged
 * its operands, works alone with only __syncwarp between its steps.
 *   dq   one block per (query tile, KV head). Each lane's lse and
 *        delta = sum_t p_t dp_t first: given the forward's lse and output
 *        O (the trainer's case), lse as it is and delta = dO . O
 *        (FlashAttention-2: sum_t p_t (dO . V_t) = dO . sum_t p_t V_t),
 *        one HD-long dot; without them pass 0 over the key tiles, S = Q
 *        K^T and dP = dO V^T and an online rescaled sum (in float, p
 *        unrounded). Then pass 1 (the only one with the forward's): S and
 *        dP, P = exp(S / sqrt(HD) - lse), dS = P (dP - delta) / sqrt(HD)
 *        rounded to bf16, and dQ += dS K; lse and delta go to stats.
 *        Products a (query tile, key tile): 3 (S, dP, dQ), 5 with pass 0.
 *   dkv  one block per (key tile, KV head, slot), after dq: over the
 *        slot's query tiles that reach the key tile, S^T = K Q^T and dP^T
 *        = V dO^T for the warp's 16 keys, P and dS from the stats (both
 *        rounded to bf16 as operands), dV += P^T dO, dK += dS^T Q: 4
 *        products a (query tile, key tile).
 *   fwd  one block per (query tile, KV head), attention_tc.cu's loop over
 *        the float32 cache: S = Q K^T, the online softmax (P rounded to
 *        bf16, l summing the rounded values), O += P V, out = O / l; for
 *        the backward, lse = m + log of the sum of P unrounded (as the
 *        backward's pass 0 would find it).
 * Each output row has one writer (a query lane of one dq block, a key of
 * one dkv block) and the sums run in a fixed order: no atomics, the same
 * bits on every run.
 * Inputs are float32 in global memory, rounded to bf16 as they are staged
 * into shared memory; accumulators (dQ, dK, dV) live in shared memory as
 * float across tiles. As in attention_tc.cu, everything crosses between
 * wmma and the elementwise steps through shared memory by the layouts
 * load/store_matrix_sync are told, never through a fragment's
 * element-to-lane mapping, which CUDA leaves unspecified.
 *
 * Shared memory (dynamic), rows padded by 16 bytes (wmma's 32-byte
 * alignment kept, successive rows on other banks): dq 144.75 KiB at HD
 * 128 (Q, dO, K, V 4 x 17, S, dP 2 x 17, dS 9, dQ 33 KiB), 96.75 KiB at HD
 * 64; dkv 186.75 KiB at HD 128 (Q, dO, K, V 4 x 17, S, dP 2 x 17, P, dS 2
 * x 9, dK, dV 2 x 33 KiB), 122.75 KiB at HD 64; fwd 110.5 KiB at HD 128
 * (Q, K, V 3 x 17, S 17, P 9, O 33 KiB), 70.5 KiB at HD 64; all under
 * sm_90's 227 KiB opt-in a block (at HD 128 one block per multiprocessor
 * for the backward, two for the forward). */
#include "common.cuh"
#include "backward.h"
#include "train_forward.h"
#include "smem_optin.cuh"
#include "tc_softmax.cuh"

namespace wm = nvcuda::wmma;

#define BT_TQ 64
#define BT_TK 64
#define BT_THREADS 128 /* 4 warps of 16 lanes (dq) or 16 keys (dkv) */
#define BT_MAX_HD 128
#define BT_PAD 8       /* bf16 elements (16 bytes) of padding per shared row */

/* Shared memory layout for head dim HD, offsets in bytes from the
 * (128-aligned) base; dkv: with P, dK and dV, dq: with dQ in dk's place.
 * The forward's is its own (bt_fwd_layout). */
struct bt_smem {
    int ld, sld, pld, old;                                          /* row strides in elements */
    size_t q, o, k, v, s, dp, p, ds, dk, dv, lane, bytes;
};
static __host__ __device__ inline bt_smem bt_layout(int HD, bool dkv) {
    bt_smem L;
    L.ld = HD + BT_PAD, L.sld = BT_TK + 4, L.pld = BT_TK + BT_PAD, L.old = HD + 4;
    size_t tile16 = (size_t)BT_TQ * L.ld * 2, tile32 = (size_t)BT_TQ * L.sld * 4, acc = (size_t)BT_TQ * L.old * 4;
    L.q = 0, L.o = tile16, L.k = 2 * tile16, L.v = 3 * tile16;
    L.s = 4 * tile16, L.dp = L.s + tile32;
    L.p = L.dp + tile32;                             /* dkv only */
    L.ds = dkv ? L.p + (size_t)BT_TQ * L.pld * 2 : L.p;
    L.dk = L.ds + (size_t)BT_TQ * L.pld * 2;         /* dq: dQ */
    L.dv = dkv ? L.dk + acc : L.dk;                  /* dkv only */
    L.lane = L.dv + acc;
    L.bytes = L.lane + 3 * BT_TQ * 4;                /* per lane: pos, lse, delta */
    return L;
}

/* The tile's query lanes into Qs and Os (bf16, zero past nq; Os NULL: q
 * only), their causal limits into La (-1: padding); with stats, their lse
 * and delta too. */
static __device__ void bt_stage_lanes(bf16 *Qs, bf16 *Os, int *La, float *Ll, float *Ld, const float *q,
                                      const float *dout, const float *stats, const int *pos, const attb_tile &t,
                                      const int *rows, int kvh, int G, int NH, int N, int HD, int ld) {
    const int nq = t.n * G, QD = NH * HD;
    for (int i = threadIdx.x; i < BT_TQ * HD / 4; i += BT_THREADS) {
        int qi = i / (HD / 4), d = i % (HD / 4) * 4;
        bf16 *x = Qs + qi * ld + d, *y = Os ? Os + qi * ld + d : NULL;
        const float *a = NULL, *b = NULL;
        if (qi < nq) { /* scalar loads: the trainer's q need not be 16-byte aligned */
            size_t at = (size_t)rows[t.first + qi / G] * QD + (size_t)(kvh * G + qi % G) * HD + d;
            a = q + at, b = Os ? dout + at : NULL;
        }
        for (int e = 0; e < 4; e++) {
            x[e] = f2bf(a ? a[e] : 0.0f);
            if (Os) y[e] = f2bf(b ? b[e] : 0.0f);
        }
    }
    for (int qi = threadIdx.x; qi < BT_TQ; qi += BT_THREADS) {
        int n = qi < nq ? rows[t.first + qi / G] : -1, h = kvh * G + qi % G;
        La[qi] = n >= 0 ? pos[n] : -1;
        if (stats) {
            Ll[qi] = n >= 0 ? stats[(size_t)n * NH + h] : 0.0f;
            Ld[qi] = n >= 0 ? stats[(size_t)N * NH + (size_t)n * NH + h] : 0.0f;
        }
    }
}

/* Key rows k0 .. k0 + BT_TK - 1 of K and V (base: the (slot, KV head)
 * rows) into Ks, Vs as bf16, zero from `end` on: rows no lane sees still
 * enter the products, and zeros keep their terms zero. */
static __device__ void bt_stage_keys(bf16 *Ks, bf16 *Vs, const float *K, const float *V, int k0, int end, int HD,
                                     int ld) {
    for (int i = threadIdx.x; i < BT_TK * HD / 4; i += BT_THREADS) {
        int c = i / (HD / 4), d = i % (HD / 4) * 4;
        float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
        if (k0 + c < end) {
            size_t at = (size_t)(k0 + c) * HD + d;
            a = *(const float4 *)(K + at), b = *(const float4 *)(V + at);
        }
        bf16 *x = Ks + c * ld + d, *y = Vs + c * ld + d;
        x[0] = f2bf(a.x), x[1] = f2bf(a.y), x[2] = f2bf(a.z), x[3] = f2bf(a.w);
        y[0] = f2bf(b.x), y[1] = f2bf(b.y), y[2] = f2bf(b.z), y[3] = f2bf(b.w);
    }
}

/* C (16 x 16 blocks j < nb, row-major float at C with stride ldc) = A B^T
 * and, unless D is NULL (the same in every lane), D = A2 B2^T over HD: A,
 * A2 the warp's 16 rows (row-major), B, B2 rows read as column-major (so
 * B^T), all bf16 with stride ld. */
static __device__ void bt_abt(float *C, float *D, int ldc, const bf16 *A, const bf16 *B, const bf16 *A2,
                              const bf16 *B2, int nb, int HD, int ld) {
    for (int j = 0; j < nb; j++) {
        wm::fragment<wm::accumulator, 16, 16, 16, float> c, d;
        wm::fill_fragment(c, 0.0f);
        if (D) wm::fill_fragment(d, 0.0f);
        for (int kk = 0; kk < HD / 16; kk++) {
            wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
            wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major> b;
            wm::load_matrix_sync(a, A + kk * 16, ld);
            wm::load_matrix_sync(b, B + j * 16 * ld + kk * 16, ld);
            wm::mma_sync(c, a, b, c);
            if (!D) continue;
            wm::load_matrix_sync(a, A2 + kk * 16, ld);
            wm::load_matrix_sync(b, B2 + j * 16 * ld + kk * 16, ld);
            wm::mma_sync(d, a, b, d);
        }
        wm::store_matrix_sync(C + j * 16, c, ldc, wm::mem_row_major);
        if (D) wm::store_matrix_sync(D + j * 16, d, ldc, wm::mem_row_major);
    }
}

/* Acc (16 x HD float, stride lda) += P B: P the warp's 16 rows of nb * 16
 * columns (bf16, stride pld), B (nb * 16 x HD, bf16 row-major, stride ld). */
static __device__ void bt_acc_pb(float *Acc, int lda, const bf16 *P, int pld, const bf16 *B, int ld, int nb, int HD) {
    for (int j = 0; j < HD; j += 16) {
        wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
        wm::load_matrix_sync(acc, Acc + j, lda, wm::mem_row_major);
        for (int kb = 0; kb < nb; kb++) {
            wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
            wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major> b;
            wm::load_matrix_sync(a, P + kb * 16, pld);
            wm::load_matrix_sync(b, B + kb * 16 * ld + j, ld);
            wm::mma_sync(acc, a, b, acc);
        }
        wm::store_matrix_sync(Acc + j, acc, lda, wm::mem_row_major);
    }
}

#ifdef LR_CUDA_EMU
#define BT_SMEM(name) DYN_SMEM(unsigned char, name)
#else
#define BT_SMEM(name)                                                                                         \
    extern __shared__ __align__(128) unsigned char bt_smem_[];                                                \
    unsigned char *name = bt_smem_
#endif

/* The forward's: Q, K, V, S, P, O and the lanes' limits */
struct bt_fwd_smem {
    int ld, sld, pld, old;
    size_t q, k, v, s, p, o, lane, bytes;
};
static __host__ __device__ inline bt_fwd_smem bt_fwd_layout(int HD) {
    bt_fwd_smem L;
    L.ld = HD + BT_PAD, L.sld = BT_TK + 4, L.pld = BT_TK + BT_PAD, L.old = HD + 4;
    size_t tile16 = (size_t)BT_TQ * L.ld * 2;
    L.q = 0, L.k = tile16, L.v = 2 * tile16, L.s = 3 * tile16;
    L.p = L.s + (size_t)BT_TQ * L.sld * 4;
    L.o = L.p + (size_t)BT_TQ * L.pld * 2;
    L.lane = L.o + (size_t)BT_TQ * L.old * 4;
    L.bytes = L.lane + 2 * BT_TQ * 4; /* per lane: pos, 1 / l */
    return L;
}

__global__ void __launch_bounds__(BT_THREADS)
att_tc_f32_kernel(float *out, float *lse, const float *q, const float *kc, const float *vc, const int *pos,
                  const attb_tile *tiles, const int *rows, int NH, int NKV, int HD, int Tmax) {
    BT_SMEM(smem);
    const bt_fwd_smem L = bt_fwd_layout(HD);
    bf16 *Qs = (bf16 *)(smem + L.q), *Ks = (bf16 *)(smem + L.k), *Vs = (bf16 *)(smem + L.v), *Ps = (bf16 *)(smem + L.p);
    float *Ss = (float *)(smem + L.s), *Os = (float *)(smem + L.o);
    int *La = (int *)(smem + L.lane);
    float *Inv = (float *)(smem + L.lane) + BT_TQ;
    const attb_tile t = tiles[blockIdx.x];
    const int kvh = blockIdx.y, G = NH / NKV, QD = NH * HD, nq = t.n * G, klen = t.last + 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t base = ((size_t)t.slot * NKV + kvh) * Tmax * HD;
    bt_stage_lanes(Qs, NULL, La, NULL, NULL, q, NULL, NULL, pos, t, rows, kvh, G, NH, 0, HD, L.ld);
    for (int i = threadIdx.x; i < BT_TQ * HD; i += BT_THREADS) Os[i / HD * L.old + i % HD] = 0.0f;
    __syncthreads();
    const int r = lane / 2, hh = lane % 2, qi = warp * 16 + r, last_key = La[qi];
    const int warp_last = warp_max(last_key);
    float *srow = Ss + qi * L.sld;
    bf16 *prow = Ps + qi * L.pld;
    float m = -INFINITY, l = 0.0f, lx = 0.0f; /* lx: the sum of P unrounded, for lse */
    for (int k0 = 0; k0 < klen; k0 += BT_TK) {
        __syncthreads(); /* every warp done with the previous tile */
        bt_stage_keys(Ks, Vs, kc + base, vc + base, k0, klen, HD, L.ld);
        __syncthreads();
        if (k0 > warp_last) continue; /* warp-uniform */
        const int nkb = min(BT_TK / 16, (warp_last - k0) / 16 + 1);
        bt_abt(Ss + warp * 16 * L.sld, NULL, L.sld, Qs + warp * 16 * L.ld, Ks, NULL, NULL, nkb, HD, L.ld);
        __syncwarp();
        /* online softmax of lane qi over keys hh, hh + 2, ... */
        tc_softmax_step(srow, prow, Os + qi * L.old, hh, nkb * 16, k0, last_key, scale, HD, &m, &l, lse ? &lx : NULL);
        __syncwarp();
        bt_acc_pb(Os + warp * 16 * L.old, L.old, Ps + warp * 16 * L.pld, L.pld, Vs, L.ld, nkb, HD);
    }
    if (hh == 0) Inv[qi] = qi < nq ? 1.0f / l : 0.0f;
    if (lse && hh == 0 && qi < nq) lse[(size_t)rows[t.first + qi / G] * NH + kvh * G + qi % G] = m + logf(lx);
    __syncthreads();
    for (int i = threadIdx.x; i < nq * HD; i += BT_THREADS) {
        int qo = i / HD, d = i % HD;
        out[(size_t)rows[t.first + qo / G] * QD + (size_t)(kvh * G + qo % G) * HD + d] = Os[qo * L.old + d] * Inv[qo];
    }
}

__global__ void __launch_bounds__(BT_THREADS)
attb_tc_dq_kernel(float *dq, float *stats, const float *flse, const bf16 *o, const float *dout, const float *q,
                  const float *kc, const float *vc, const int *pos, const attb_tile *tiles, const int *rows, int N,
                  int NH, int NKV, int HD, int Tmax) {
    BT_SMEM(smem);
    const bt_smem L = bt_layout(HD, false);
    bf16 *Qs = (bf16 *)(smem + L.q), *Os = (bf16 *)(smem + L.o), *Ks = (bf16 *)(smem + L.k), *Vs = (bf16 *)(smem + L.v);
    float *Ss = (float *)(smem + L.s), *DPs = (float *)(smem + L.dp), *DQs = (float *)(smem + L.dk);
    bf16 *DSs = (bf16 *)(smem + L.ds);
    int *La = (int *)(smem + L.lane);
    const attb_tile t = tiles[blockIdx.x];
    const int kvh = blockIdx.y, G = NH / NKV, QD = NH * HD, nq = t.n * G, klen = t.last + 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t base = ((size_t)t.slot * NKV + kvh) * Tmax * HD;
    bt_stage_lanes(Qs, Os, La, NULL, NULL, q, dout, NULL, pos, t, rows, kvh, G, NH, N, HD, L.ld);
    for (int i = threadIdx.x; i < BT_TQ * HD; i += BT_THREADS) DQs[i / HD * L.old + i % HD] = 0.0f;
    __syncthreads();
    /* this lane's query row (within the warp's 16) and half of the keys */
    const int r = lane / 2, hh = lane % 2, qi = warp * 16 + r, last_key = La[qi];
    const int warp_last = warp_max(last_key); /* -1: every lane of the warp is padding */
    const bf16 *Qw = Qs + warp * 16 * L.ld, *Ow = Os + warp * 16 * L.ld;
    float *srow = Ss + qi * L.sld, *drow = DPs + qi * L.sld;
    float m = -INFINITY, l = 0.0f, pd = 0.0f, lse = 0.0f, delta = 0.0f;
    if (flse) { /* the forward's lse, and delta = dO . O (padding lanes: 0, 0), the lane's two threads on alternate
                 * elements; then pass 1 only */
        float s = 0.0f;
        if (qi < nq) {
            const int n = rows[t.first + qi / G], h = kvh * G + qi % G;
            const size_t at = (size_t)n * QD + (size_t)h * HD;
            for (int d = hh; d < HD; d += 2) s += dout[at + d] * bf2f(o[at + d]);
            lse = flse[(size_t)n * NH + h];
        }
        delta = s + __shfl_xor_sync(0xffffffffu, s, 1);
    }
    for (int pass = flse ? 1 : 0; pass < 2; pass++) {
        for (int k0 = 0; k0 < klen; k0 += BT_TK) {
            __syncthreads(); /* every warp done with the previous tile */
            bt_stage_keys(Ks, Vs, kc + base, vc + base, k0, klen, HD, L.ld);
            __syncthreads();
            if (k0 > warp_last) continue; /* warp-uniform: nothing of this tile is visible to the warp */
            const int nkb = min(BT_TK / 16, (warp_last - k0) / 16 + 1); /* key blocks the warp's lanes can see */
            bt_abt(Ss + warp * 16 * L.sld, DPs + warp * 16 * L.sld, L.sld, Qw, Ks, Ow, Vs, nkb, HD, L.ld);
            __syncwarp();
            if (pass == 0) { /* running max m, sum l of e^(s - m), and of e^(s - m) dp */
                float mt = -INFINITY;
                for (int c = hh; c < nkb * 16; c += 2)
                    if (k0 + c <= last_key) mt = fmaxf(mt, srow[c] * scale);
                mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
                const float mn = fmaxf(m, mt);
                float es = 0.0f, ps = 0.0f, corr = 1.0f;
                if (mn > -INFINITY) { /* -inf: a padding lane, which sees no key */
                    corr = expf(m - mn);
                    for (int c = hh; c < nkb * 16; c += 2)
                        if (k0 + c <= last_key) {
                            float e = expf(srow[c] * scale - mn);
                            es += e, ps += e * drow[c];
                        }
                }
                es += __shfl_xor_sync(0xffffffffu, es, 1);
                ps += __shfl_xor_sync(0xffffffffu, ps, 1);
                l = l * corr + es, pd = pd * corr + ps, m = mn;
            } else { /* dS, then dQ_w += dS_w K */
                bf16 *dsrow = DSs + qi * L.pld;
                for (int c = hh; c < nkb * 16; c += 2) {
                    float p = k0 + c <= last_key ? expf(srow[c] * scale - lse) : 0.0f;
                    dsrow[c] = f2bf(p * (drow[c] - delta) * scale);
                }
                __syncwarp();
                bt_acc_pb(DQs + warp * 16 * L.old, L.old, DSs + warp * 16 * L.pld, L.pld, Ks, L.ld, nkb, HD);
            }
        }
        if (pass == 0 && l > 0.0f) lse = m + logf(l), delta = pd / l;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nq * HD; i += BT_THREADS) {
        int qo = i / HD, d = i % HD;
        dq[(size_t)rows[t.first + qo / G] * QD + (size_t)(kvh * G + qo % G) * HD + d] += DQs[qo * L.old + d];
    }
    if (hh == 0 && qi < nq) {
        int n = rows[t.first + qi / G], h = kvh * G + qi % G;
        stats[(size_t)n * NH + h] = lse;
        stats[(size_t)N * NH + (size_t)n * NH + h] = delta;
    }
}

__global__ void __launch_bounds__(BT_THREADS)
attb_tc_dkv_kernel(float *dkc, float *dvc, const float *stats, const float *dout, const float *q, const float *kc,
                   const float *vc, const int *pos, const attb_tile *tiles, const int *rows, const int *sfirst, int N,
                   int NH, int NKV, int HD, int Tmax) {
    const int k0 = blockIdx.x * BT_TK, kvh = blockIdx.y, b = blockIdx.z, G = NH / NKV;
    const int t0 = sfirst[b], t1 = sfirst[b + 1];
    bool any = false; /* the same for the whole block */
    for (int ti = t0; ti < t1 && !any; ti++) any = tiles[ti].last >= k0;
    if (!any) return; /* no query reaches these keys: their rows are left as they are */
    BT_SMEM(smem);
    const bt_smem L = bt_layout(HD, true);
    bf16 *Qs = (bf16 *)(smem + L.q), *Os = (bf16 *)(smem + L.o), *Ks = (bf16 *)(smem + L.k), *Vs = (bf16 *)(smem + L.v);
    float *Ss = (float *)(smem + L.s), *DPs = (float *)(smem + L.dp);
    bf16 *Ps = (bf16 *)(smem + L.p), *DSs = (bf16 *)(smem + L.ds);
    float *DKs = (float *)(smem + L.dk), *DVs = (float *)(smem + L.dv);
    int *La = (int *)(smem + L.lane);
    float *Ll = (float *)(smem + L.lane) + BT_TQ, *Ld = Ll + BT_TQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t base = ((size_t)b * NKV + kvh) * Tmax * HD;
    bt_stage_keys(Ks, Vs, kc + base, vc + base, k0, Tmax, HD, L.ld);
    for (int i = threadIdx.x; i < BT_TK * HD; i += BT_THREADS) {
        int c = i / HD, d = i % HD;
        DKs[c * L.old + d] = DVs[c * L.old + d] = 0.0f;
    }
    /* this lane's key (within the warp's 16) and half of the query lanes */
    const int c = warp * 16 + lane / 2, hh = lane % 2, key = k0 + c;
    for (int ti = t0; ti < t1; ti++) {
        const attb_tile t = tiles[ti];
        if (t.last < k0) continue; /* block-uniform */
        __syncthreads();           /* keys staged, or every warp done with the previous query tile */
        bt_stage_lanes(Qs, Os, La, Ll, Ld, q, dout, stats, pos, t, rows, kvh, G, NH, N, HD, L.ld);
        __syncthreads();
        if (k0 + warp * 16 > t.last) continue; /* warp-uniform: no lane of the tile sees the warp's keys */
        const int nlb = (t.n * G + 15) / 16;    /* lane blocks holding real lanes */
        bt_abt(Ss + warp * 16 * L.sld, DPs + warp * 16 * L.sld, L.sld, Ks + warp * 16 * L.ld, Qs,
                   Vs + warp * 16 * L.ld, Os, nlb, HD, L.ld);
        __syncwarp();
        const float *srow = Ss + c * L.sld, *drow = DPs + c * L.sld;
        bf16 *prow = Ps + c * L.pld, *dsrow = DSs + c * L.pld;
        for (int qi = hh; qi < nlb * 16; qi += 2) {
            float p = key <= La[qi] ? expf(srow[qi] * scale - Ll[qi]) : 0.0f;
            prow[qi] = f2bf(p);
            dsrow[qi] = f2bf(p * (drow[qi] - Ld[qi]) * scale);
        }
        __syncwarp();
        bt_acc_pb(DVs + warp * 16 * L.old, L.old, Ps + warp * 16 * L.pld, L.pld, Os, L.ld, nlb, HD);
        bt_acc_pb(DKs + warp * 16 * L.old, L.old, DSs + warp * 16 * L.pld, L.pld, Qs, L.ld, nlb, HD);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < BT_TK * HD; i += BT_THREADS) {
        int cc = i / HD, d = i % HD;
        if (k0 + cc < Tmax) {
            size_t at = base + (size_t)(k0 + cc) * HD + d;
            dkc[at] += DKs[cc * L.old + d];
            dvc[at] += DVs[cc * L.old + d];
        }
    }
}

int attb_tc_serves(int NH, int NKV, int HD) {
    return HD % 16 == 0 && HD >= 16 && HD <= BT_MAX_HD && NKV > 0 && NH >= NKV && NH % NKV == 0 && NH / NKV <= BT_TQ;
}

size_t attb_tc_smem(int HD) {
    size_t a = bt_layout(HD, false).bytes, b = bt_layout(HD, true).bytes, f = bt_fwd_layout(HD).bytes;
    return a > b ? (a > f ? a : f) : (b > f ? b : f);
}

int k_attention_tc_f32(float *out, float *lse, const float *q, const float *kc, const float *vc, const int *pos,
                       const attb_tile *tiles, int ntiles, const int *rows, int N, int NH, int NKV, int HD, int Tmax,
                       void *stream) {
    if (!attb_tc_serves(NH, NKV, HD) || Tmax < 1 || NKV > 65535) return -1;
    if (N < 1 || ntiles < 1) return 0;
    size_t sf = bt_fwd_layout(HD).bytes;
    static size_t opted[SMEM_OPTIN_DEVS];
    smem_optin(att_tc_f32_kernel, sf, opted);
    LAUNCH(att_tc_f32_kernel, dim3(ntiles, NKV), BT_THREADS, sf, (cudaStream_t)stream, out, lse, q, kc, vc, pos, tiles,
           rows, NH, NKV, HD, Tmax);
    return 0;
}

int attb_tc_tiles(attb_tile *tiles, int *rows, int *sfirst, const int *seq, const int *pos, int N, int B, int G) {
    const int per = BT_TQ / G; /* rows a tile */
    /* rows grouped by slot (a counting sort, stable), each slot's by
     * position (insertion sort: the trainer's rows come in position order
     * already), so a tile's rows are near in position and the warps of a
     * block see similar key ranges */
    for (int b = 0; b <= B; b++) sfirst[b] = 0;
    for (int i = 0; i < N; i++) sfirst[seq[i] + 1]++;
    for (int b = 0; b < B; b++) sfirst[b + 1] += sfirst[b];
    for (int i = 0; i < N; i++) rows[sfirst[seq[i]]++] = i;
    for (int b = B; b > 0; b--) sfirst[b] = sfirst[b - 1];
    sfirst[0] = 0; /* sfirst[b]: the first of slot b's rows in rows */
    int nt = 0;
    for (int b = 0; b < B; b++) {
        int r0 = sfirst[b], r1 = sfirst[b + 1];
        for (int i = r0 + 1; i < r1; i++)
            for (int j = i; j > r0 && pos[rows[j - 1]] > pos[rows[j]]; j--) {
                int x = rows[j];
                rows[j] = rows[j - 1], rows[j - 1] = x;
            }
        sfirst[b] = nt; /* from here on: the first of slot b's tiles (r0 was read above) */
        for (int s = r0; s < r1; s += per) {
            attb_tile *t = &tiles[nt++];
            t->first = s, t->n = r1 - s < per ? r1 - s : per, t->slot = b;
            t->last = pos[rows[s + t->n - 1]]; /* the largest: sorted */
        }
    }
    sfirst[B] = nt;
    return nt;
}

int k_attention_backward_tc(float *dq, float *dkc, float *dvc, float *stats, const float *lse, const uint16_t *o,
                            const float *dout, const float *q, const float *kc, const float *vc, const int *pos,
                            const attb_tile *tiles, int ntiles, const int *rows, const int *sfirst, int N, int NH,
                            int NKV, int HD, int B, int Tmax, void *stream) {
    if (!attb_tc_serves(NH, NKV, HD) || B < 1 || B > 65535 || Tmax < 1 || NKV > 65535 || (lse && !o)) return -1;
    if (N < 1 || ntiles < 1) return 0;
    size_t sq = bt_layout(HD, false).bytes, sk = bt_layout(HD, true).bytes;
    static size_t opted_q[SMEM_OPTIN_DEVS], opted_k[SMEM_OPTIN_DEVS];
    smem_optin(attb_tc_dq_kernel, sq, opted_q);
    smem_optin(attb_tc_dkv_kernel, sk, opted_k);
    cudaStream_t st = (cudaStream_t)stream;
    LAUNCH(attb_tc_dq_kernel, dim3(ntiles, NKV), BT_THREADS, sq, st, dq, stats, lse, (const bf16 *)o, dout, q, kc, vc, pos,
           tiles, rows, N, NH, NKV, HD, Tmax);
    LAUNCH(attb_tc_dkv_kernel, dim3(cdiv((size_t)Tmax, BT_TK), NKV, B), BT_THREADS, sk, st, dkc, dvc, stats, dout, q,
           kc, vc, pos, tiles, rows, sfirst, N, NH, NKV, HD, Tmax);
    return 0;
}
