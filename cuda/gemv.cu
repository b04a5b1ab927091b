/* gemv: a decoder layer's four projections for calls of a few rows (batch-1
 * to batch-4 decode), as matrix-vector products fused with the
 * element-wise kernels around them (kernels.h k_gemv_*).
 *
 * Why: at batch 1 a layer's GEMMs read 93.6 MB of bf16 weights on
 * Qwen2.5-Math-1.5B (46.8 M parameters), about 20 us at 4.8 TB/s, while
 * the unfused layer launches nine kernels (ten with o's bias), the two
 * RMSNorms, bias + RoPE and SwiGLU among them, each a launch and a round of
 * latency for a few kilobytes, and writes and re-reads the float32 qkv and
 * gate/up outputs. Here a layer is five launches (six with split-KV's
 * combine): the input norm, the
 * qkv product, bias, RoPE and the cache write in one; attention; the o
 * product with the residual add (and o's bias); the post-attention norm,
 * the gate/up product and SwiGLU in one; the down product with the
 * residual add.
 *
 * Work split: a group of ks warps takes a pair of weight rows, the pair an
 * epilogue needs together (a RoPE rotation pair (i, i + HD/2) of one head;
 * gate row j with up row j; two neighbouring rows elsewhere), and dots
 * both with the call's rows, each lane reading 16 bytes (8 bf16) of both
 * weight rows a step and the input's same 8 columns, so the weights stream
 * through once per call. ks > 1 when pairs are fewer than the grid's warps
 * and the rows have a warp's GV_STEP-column step for each of the ks warps
 * (the qkv product's 1,024 pairs, 2 warps each on 256 of the 264 blocks of
 * 8 warps the cap allows; the o and down products' 768 pairs, one block of
 * 4 warps each): each warp of a group takes every ks-th step and the
 * group's first warp adds the ks partial sums in warp order, so no warp
 * of the grid idles while
 * the weights stream (a bandwidth-bound kernel needs loads in flight on
 * every multiprocessor). Lanes < n of that warp then finish row n's
 * outputs. Fixed orders throughout: the same call gives the same bits.
 *
 * Rounding: the normed inputs are k_rmsnorm's bits (the same loops, block
 * size and reduction in every block), and every epilogue is the unfused
 * kernel's float arithmetic in the same order; only the dot products'
 * summation order differs from cuBLAS's (float32 accumulation both). */
#include "common.cuh"
#include "kernels.h"
#include "kvpage.cuh"

#define CS(s) ((cudaStream_t)(s))
#define GV_NORM_THREADS 256 /* k_rmsnorm's block: the same reduction, the same norm bits */
#define GV_ADD_THREADS 128  /* smaller blocks for the products without a norm: more SMs busy */
#define GV_STEP (32 * 8)    /* columns a warp reads a step: 32 lanes x 8 bf16 (16 bytes) */
/* Blocks an SM the launch bounds ask ptxas for: the two the forward's cap
 * puts on each for the norming kernels, four of the others' (768 blocks on
 * 132 SMs for Qwen2.5-Math-1.5B). Without a count ptxas kept these kernels
 * at 48 registers and spilled around the call of float division's slow
 * path (SwiGLU's silu). */
#define GV_NORM_MIN_BLOCKS 2
#define GV_ADD_MIN_BLOCKS 4

/* the 8 bf16 of a 16-byte load as floats (element 0 in the low half) */
static __device__ __forceinline__ void unpack8(uint4 u, float f[8]) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        f[2 * j] = __uint_as_float(w[j] << 16);
        f[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
    }
}

/* acc[0][r], acc[1][r] (every lane) = weight rows a and b of W (K wide)
 * dotted with input row r (row stride ld), r < n, over the 16-byte column
 * chunks sub, sub + ks, ... of each lane's. K and ld multiples of 8, W and
 * in 16-byte aligned. */
static __device__ __forceinline__ void dot2(float acc[2][GEMV_MAX_ROWS], const bf16 *W, int K, int a, int b, const bf16 *in, int ld,
                            int n, int sub, int ks) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < GEMV_MAX_ROWS; r++) acc[0][r] = acc[1][r] = 0.0f;
    const uint4 *wa = (const uint4 *)(W + (size_t)a * K), *wb = (const uint4 *)(W + (size_t)b * K);
#pragma unroll 4
    for (int k = lane + 32 * sub; k < K / 8; k += 32 * ks) {
        float fa[8], fb[8];
        unpack8(__ldg(wa + k), fa);
        unpack8(__ldg(wb + k), fb);
#pragma unroll
        for (int r = 0; r < GEMV_MAX_ROWS; r++) {
            if (r >= n) break;
            float fx[8];
            unpack8(((const uint4 *)(in + (size_t)r * ld))[k], fx);
#pragma unroll
            for (int j = 0; j < 8; j++) acc[0][r] += fa[j] * fx[j], acc[1][r] += fb[j] * fx[j];
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_MAX_ROWS; r++) acc[0][r] = warp_sum(acc[0][r]), acc[1][r] = warp_sum(acc[1][r]);
}

/* row `lane`'s pair of sums, without indexing the arrays by a variable
 * (which would put them in local memory) */
static __device__ __forceinline__ void pick(const float acc[2][GEMV_MAX_ROWS], int r, float *x1, float *x2) {
#pragma unroll
    for (int i = 0; i < GEMV_MAX_ROWS; i++)
        if (i == r) *x1 = acc[0][i], *x2 = acc[1][i];
}

/* The blocks' work: pair p of P for group grp of the block's warps /
 * ks groups, in rounds every warp of the block takes part in (the
 * partial sums meet at barriers). */
struct gv_split {
    int ks, sub, grp, groups, lane;
};
static __device__ __forceinline__ gv_split gv_split_of(int ks) {
    gv_split g;
    g.ks = ks, g.lane = threadIdx.x & 31, g.sub = (threadIdx.x >> 5) % ks, g.grp = (threadIdx.x >> 5) / ks;
    g.groups = (blockDim.x >> 5) / ks;
    return g;
}
#define GV_MAX_WARPS 8

/* Weight rows a and b dotted with the n input rows by the group (valid:
 * the group has a pair this round; every warp of the block calls it every
 * round). Returns whether this thread finishes row lane's outputs (the
 * group's first warp, lanes < n), with the sums in *x1, *x2. */
static __device__ __forceinline__ bool pair_sums(float *x1, float *x2, const gv_split &g, bool valid, const bf16 *W, int K, int a,
                                 int b, const bf16 *in, int ld, int n) {
    __shared__ float part[GV_MAX_WARPS][2][GEMV_MAX_ROWS];
    float acc[2][GEMV_MAX_ROWS];
    if (valid) dot2(acc, W, K, a, b, in, ld, n, g.sub, g.ks);
    if (g.ks == 1) {
        if (!valid || g.lane >= n) return false;
        pick(acc, g.lane, x1, x2);
        return true;
    }
    const int w = threadIdx.x >> 5;
    __syncthreads(); /* the last round's sums are read (the launchers give a split
                      * pair one round only, but the kernels hold for any grid) */
    if (valid && g.lane == 0)
#pragma unroll
        for (int r = 0; r < GEMV_MAX_ROWS; r++) part[w][0][r] = acc[0][r], part[w][1][r] = acc[1][r];
    __syncthreads();
    if (!valid || g.sub != 0 || g.lane >= n) return false;
    float s1 = 0, s2 = 0;
    for (int j = 0; j < g.ks; j++) s1 += part[w + j][0][g.lane], s2 += part[w + j][1][g.lane];
    *x1 = s1, *x2 = s2;
    return true;
}

/* xs (n, C) bf16 in shared memory = rmsnorm_kernel's rows of x; a barrier
 * after. GV_NORM_THREADS threads, as rmsnorm_kernel, so the bits match. */
static __device__ void norm_rows(bf16 *xs, const float *x, const float *w, int n, int C, float eps, float *red) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * C;
        float ss = 0;
        for (int i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
        ss = block_sum(ss, red);
        float rr = 1.0f / sqrtf(ss / C + eps);
        for (int i = threadIdx.x; i < C; i += blockDim.x) xs[(size_t)r * C + i] = f2bf(w[i] * (xr[i] * rr));
    }
    __syncthreads();
}

/* pairs: (NH + NKV) * HD / 2 rotation pairs of [q | k], then KD / 2 pairs
 * of neighbouring v rows; the epilogue is qkv_rope_kernel's */
__global__ void __launch_bounds__(GV_NORM_THREADS, GV_NORM_MIN_BLOCKS)
gemv_qkv_kernel(float *q, bf16 *kc, bf16 *vc, const float *x, const float *lnw, float eps, const bf16 *W,
                const float *bias, const float *inv_freq, const int *seq, const int *pos, int n, int C, int NH, int NKV,
                int HD, kv_pages kv, int ks) {
    DYN_SMEM(bf16, xs);
    __shared__ float red[32];
    norm_rows(xs, x, lnw, n, C, eps, red);
    const int half = HD / 2, QD = NH * HD, KD = NKV * HD, pqk = (NH + NKV) * half, P = pqk + KD / 2;
    const gv_split g = gv_split_of(ks);
    for (int base = blockIdx.x * g.groups; base < P; base += gridDim.x * g.groups) {
        const int p = base + g.grp;
        const int h = p < pqk ? p / half : 0, i = p < pqk ? p % half : 0;
        const int a = p < pqk ? h * HD + i : QD + KD + 2 * (p - pqk), b = p < pqk ? a + half : a + 1;
        float x1 = 0, x2 = 0;
        if (!pair_sums(&x1, &x2, g, p < P, W, C, a, b, xs, C, n)) continue;
        const int r = g.lane;
        if (p < pqk) {
            if (bias) x1 += bias[a], x2 += bias[b];
            float ang = (float)pos[r] * inv_freq[i], c = cosf(ang), s = sinf(ang);
            float o1 = x1 * c - x2 * s, o2 = x2 * c + x1 * s;
            if (h < NH) {
                q[(size_t)r * QD + a] = o1;
                q[(size_t)r * QD + b] = o2;
            } else {
                bf16 *dst = kc + kv_row(kv, seq[r], NKV, h - NH, pos[r], HD);
                dst[i] = f2bf(o1);
                dst[i + half] = f2bf(o2);
            }
        } else {
            const int j = a - QD - KD; /* even, so j + 1 is in the same head */
            bf16 *dst = vc + kv_row(kv, seq[r], NKV, j / HD, pos[r], HD) + j % HD;
            dst[0] = f2bf(x1 + (bias ? bias[a] : 0.0f));
            dst[1] = f2bf(x2 + (bias ? bias[b] : 0.0f));
        }
    }
}

/* pairs: gate row j with up row I + j; the epilogue is swiglu_kernel's */
__global__ void __launch_bounds__(GV_NORM_THREADS, GV_NORM_MIN_BLOCKS)
gemv_swiglu_kernel(bf16 *hout, const float *x, const float *lnw, float eps, const bf16 *W, int n, int C, int I,
                   int ks) {
    DYN_SMEM(bf16, xs);
    __shared__ float red[32];
    norm_rows(xs, x, lnw, n, C, eps, red);
    const gv_split s = gv_split_of(ks);
    for (int base = blockIdx.x * s.groups; base < I; base += gridDim.x * s.groups) {
        const int p = base + s.grp;
        float g = 0, u = 0;
        if (!pair_sums(&g, &u, s, p < I, W, C, p, I + p, xs, C, n)) continue;
        hout[(size_t)s.lane * I + p] = f2bf(g / (1.0f + expf(-g)) * u);
    }
}

/* x (n, OUT) += in (n, K) W^T (+ bias): cuBLAS's beta = 1 sum, then
 * add_bias_kernel's add; pairs of neighbouring rows */
__global__ void __launch_bounds__(GV_ADD_THREADS, GV_ADD_MIN_BLOCKS)
gemv_add_kernel(float *x, const bf16 *in, const bf16 *W, const float *bias, int n, int K, int OUT, int ks) {
    const gv_split g = gv_split_of(ks);
    for (int base = blockIdx.x * g.groups; base < OUT / 2; base += gridDim.x * g.groups) {
        const int p = base + g.grp;
        float d1 = 0, d2 = 0;
        if (!pair_sums(&d1, &d2, g, p < OUT / 2, W, K, 2 * p, 2 * p + 1, in, K, n)) continue;
        float *xr = x + (size_t)g.lane * OUT + 2 * p;
        float v1 = d1 + xr[0], v2 = d2 + xr[1];
        if (bias) v1 += bias[2 * p], v2 += bias[2 * p + 1];
        xr[0] = v1, xr[1] = v2;
    }
}

int k_gemv_fits(int N, int C, int QD, int KD, int I) {
    return N >= 1 && N <= GEMV_MAX_ROWS && C % 8 == 0 && QD % 8 == 0 && I % 8 == 0 && KD % 2 == 0 &&
           (size_t)N * C * sizeof(bf16) <= GEMV_SMEM_MAX;
}

/* The grid for `pairs` row pairs of K columns on blocks of `threads`, at
 * most maxblocks (0: no cap), and *ks, the warps a pair: the most (a power
 * of 2, up to the block's warps) that still give every pair a group in one
 * round and every warp of a group at least one of the row's GV_STEP-column
 * steps; narrower rows leave extra warps
 * idle, and on small models a block a pair only multiplies the blocks
 * that norm the same rows. With ks = 1 a warp a pair, looping where the
 * grid is capped. */
static unsigned blocks(size_t pairs, int threads, int maxblocks, int K, int *ks) {
    const int warps = threads / 32;
    const size_t steps = cdiv((size_t)K, GV_STEP), cap = maxblocks > 0 ? (size_t)maxblocks : (size_t)-1;
    *ks = 1;
    while (*ks * 2 <= warps && (size_t)(*ks * 2) <= steps && cdiv(pairs, (size_t)(warps / (*ks * 2))) <= cap)
        *ks *= 2;
    size_t b = cdiv(pairs, (size_t)(warps / *ks));
    return (unsigned)(b > cap ? cap : b);
}

void k_gemv_qkv(float *q, uint16_t *kc, uint16_t *vc, const float *x, const float *lnw, float eps, const uint16_t *W,
                const float *bias, const float *inv_freq, const int *seq, const int *pos, int N, int C, int NH, int NKV,
                int HD, kv_pages kv, int maxblocks, void *stream) {
    size_t pairs = (size_t)(NH + NKV) * HD / 2 + (size_t)NKV * HD / 2;
    int ks;
    unsigned nb = blocks(pairs, GV_NORM_THREADS, maxblocks, C, &ks);
    LAUNCH(gemv_qkv_kernel, nb, GV_NORM_THREADS, (size_t)N * C * sizeof(bf16), CS(stream), q, (bf16 *)kc, (bf16 *)vc, x,
           lnw, eps, (const bf16 *)W, bias, inv_freq, seq, pos, N, C, NH, NKV, HD, kv, ks);
}

void k_gemv_swiglu(uint16_t *h, const float *x, const float *lnw, float eps, const uint16_t *W, int N, int C, int I,
                   int maxblocks, void *stream) {
    int ks;
    unsigned nb = blocks((size_t)I, GV_NORM_THREADS, maxblocks, C, &ks);
    LAUNCH(gemv_swiglu_kernel, nb, GV_NORM_THREADS, (size_t)N * C * sizeof(bf16), CS(stream), (bf16 *)h, x, lnw, eps,
           (const bf16 *)W, N, C, I, ks);
}

void k_gemv_add(float *x, const uint16_t *in, const uint16_t *W, const float *bias, int N, int K, int OUT,
                int maxblocks, void *stream) {
    int ks;
    unsigned nb = blocks((size_t)OUT / 2, GV_ADD_THREADS, maxblocks, K, &ks);
    LAUNCH(gemv_add_kernel, nb, GV_ADD_THREADS, 0, CS(stream), x, (const bf16 *)in, (const bf16 *)W, bias, N, K, OUT, ks);
}
