/* backward: the backward-pass kernels (backward.h), each the device twin of
 * the lib/nn/backward.c function of the same name, float32 throughout.
 *
 * These are reference kernels: correct, deterministic and simple enough to
 * check line by line against their CPU twins on the emulated device. Where
 * a card needs a faster path it is named beside the kernel. */
#include "common.cuh"
#include "backward.h"

#define CS(s) ((cudaStream_t)(s))

/* ---- column sums: dw[c] += sum_n g[n, c] (* x[n, c] * r[n]) ----
 * Blocks of (32 columns, one of P row chunks): 8 warps take the chunk's
 * rows 8 apart, each lane one column (coalesced rows), the 8 partials are
 * summed in warp order and the block writes part[p * C + c]. A second
 * kernel adds the P partials in order into dw. No atomics: the sums, and so
 * the bits, are the same on every run. */
#define CSUM_THREADS 256

__global__ void __launch_bounds__(CSUM_THREADS)
colsum_partial_kernel(float *part, const float *g, const float *x, const float *rstd, int N, int C, int chunk) {
    __shared__ float red[CSUM_THREADS / 32][33];
    int lane = threadIdx.x & 31, wy = threadIdx.x >> 5, p = blockIdx.y;
    int c = blockIdx.x * 32 + lane;
    int n0 = p * chunk, n1 = min(n0 + chunk, N);
    float acc = 0.0f;
    if (c < C)
        for (int n = n0 + wy; n < n1; n += CSUM_THREADS / 32) {
            size_t i = (size_t)n * C + c;
            acc += x ? g[i] * x[i] * rstd[n] : g[i]; /* the CPU twin's g * x * r */
        }
    red[wy][lane] = acc;
    __syncthreads();
    if (wy == 0 && c < C) {
        float s = red[0][lane];
        for (int k = 1; k < CSUM_THREADS / 32; k++) s += red[k][lane];
        part[(size_t)p * C + c] = s;
    }
}

__global__ void colsum_reduce_kernel(float *dw, const float *part, int P, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < C) {
        float s = part[c];
        for (int p = 1; p < P; p++) s += part[(size_t)p * C + c];
        dw[c] += s;
    }
}

static void colsum(float *dw, const float *g, const float *x, const float *rstd, int N, int C, float *ws,
                   cudaStream_t st) {
    if (!dw || N < 1 || C < 1) return;
    int P = N < BWD_COLSUM_PARTS ? N : BWD_COLSUM_PARTS, chunk = (int)cdiv((size_t)N, (size_t)P);
    P = (int)cdiv((size_t)N, (size_t)chunk); /* no empty chunk */
    LAUNCH(colsum_partial_kernel, dim3(cdiv((size_t)C, 32), P), CSUM_THREADS, 0, st, ws, g, x, rstd, N, C, chunk);
    LAUNCH(colsum_reduce_kernel, cdiv((size_t)C, 256), 256, 0, st, dw, ws, P, C);
}

/* ---- RMSNorm: one block per row ----
 * dx_j = r w_j g_j - r^3 x_j / C * sum_i w_i g_i x_i (out_i = w_i x_i r,
 * r = (mean(x^2) + eps)^-1/2), the dot a block sum. */
__global__ void rmsnorm_backward_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                        const float *rstd, int C) {
    __shared__ float red[32];
    int n = blockIdx.x;
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    float r = rstd[n], dot = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dot += w[i] * g[i] * x[i];
    dot = block_sum(dot, red);
    float k = r * r * r * dot / C;
    float *d = dinp + (size_t)n * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) d[i] += r * w[i] * g[i] - k * x[i];
}

void k_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                        const float *rstd, int N, int C, float *ws, void *stream) {
    if (N < 1) return;
    colsum(dw, dout, inp, rstd, N, C, ws, CS(stream));
    if (dinp) LAUNCH(rmsnorm_backward_kernel, N, 256, 0, CS(stream), dinp, dout, inp, w, rstd, C);
}

void k_bias_backward(float *dbias, const float *dout, int N, int OC, float *ws, void *stream) {
    colsum(dbias, dout, NULL, NULL, N, OC, ws, CS(stream));
}

/* ---- embedding: a thread per column, the rows in order ----
 * Rows repeating a token add into the same table row, so a thread owns one
 * column of the whole table and walks the rows as the CPU twin does: no
 * two threads write one value (no atomics) and the sums are the CPU's
 * bit for bit. N is a call's rows, so the serial walk is short next to
 * the GEMMs; a card wanting more would sort the rows by token first. */
__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int *tokens, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
}

void k_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C, void *stream) {
    if (dwte && N > 0 && C > 0)
        LAUNCH(embedding_backward_kernel, cdiv((size_t)C, 128), 128, 0, CS(stream), dwte, dout, tokens, N, C);
}

/* ---- RoPE: one block per row, a thread per rotation pair ----
 * The transpose of the forward's [[c, -s], [s, c]], angles as k_qkv_rope:
 * float32 pos * inv_freq, precise cosf/sinf. A thread reads its pair before
 * writing it, so dinp == dout is safe. */
__global__ void rope_backward_kernel(float *dinp, const float *dout, const float *inv_freq, const int *pos, int H,
                                     int HD) {
    int n = blockIdx.x, half = HD / 2;
    for (int j = threadIdx.x; j < H * half; j += blockDim.x) {
        int h = j / half, i = j % half;
        size_t at = ((size_t)n * H + h) * HD;
        float ang = (float)pos[n] * inv_freq[i], c = cosf(ang), s = sinf(ang);
        float g1 = dout[at + i], g2 = dout[at + i + half];
        dinp[at + i] = g1 * c + g2 * s;
        dinp[at + i + half] = g2 * c - g1 * s;
    }
}

void k_rope_backward(float *dinp, const float *dout, const float *inv_freq, const int *pos, int N, int H, int HD,
                     void *stream) {
    if (N > 0 && H > 0 && HD >= 2)
        LAUNCH(rope_backward_kernel, N, 128, 0, CS(stream), dinp, dout, inv_freq, pos, H, HD);
}

/* ---- SwiGLU: element-wise ----
 * h = silu(g) u: dh/du = g sg, dh/dg = u sg (1 + g (1 - sg)), sg = sigmoid(g). */
__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                       const float *up, int N, int I, int ld) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < (size_t)N * I) {
        size_t n = e / I, i = n * ld + e % I;
        float g = gate[i], sg = 1.0f / (1.0f + expf(-g)), go = dout[e];
        dup[i] += go * g * sg;
        dgate[i] += go * up[i] * sg * (1.0f + g * (1.0f - sg));
    }
}

void k_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int N, int I,
                       int ld, void *stream) {
    if (N > 0 && I > 0)
        LAUNCH(swiglu_backward_kernel, cdiv((size_t)N * I, 256), 256, 0, CS(stream), dgate, dup, dout, gate, up, N, I,
               ld);
}

/* ---- attention ----
 * Two kernels, both recomputing scores s_t = q.k_t / sqrt(HD) from q and
 * the cache, 32 keys at a time staged in shared memory; each key of a tile
 * is scored by 4 threads (a quarter of the dims each, combined by two
 * shuffles, so all 4 hold the same value).
 *   attb_dq  one block per (row, query head): pass 1 an online softmax over
 *            the row's keys gives lse = log sum_t e^s_t and delta =
 *            sum_t p_t dp_t (dp_t = dout.v_t), written to stats; pass 2
 *            dq = sum_t ds_t k_t, ds_t = p_t (dp_t - delta) / sqrt(HD).
 *   attb_dkv one block per (tile of 32 cache positions, KV head, slot):
 *            walks every row of the slot that reaches the tile and each of
 *            its G query heads, dv_t += p_t dout, dk_t += ds_t q, in
 *            registers (4 threads per key, a quarter of the dims each), so
 *            a cache row has one writer and no atomics are needed.
 * Both use p_t = exp(s_t - lse), so dq and dk see the same probabilities.
 * This is the correctness reference, O(queries x keys x HD) plain FMAs, each
 * attb_dkv block scanning all N rows for its slot's; the bf16 trainer's
 * fast path is attention_tc_train.cu's k_attention_backward_tc
 * (FlashAttention-2's backward on wmma tiles, the same lse/delta
 * recomputation), which the tests hold to this one. cuDNN's fused
 * attention backward is not used: tests/gpu/run.sh times cuDNN's forward
 * through torch beside ours, to say whether it would pay. */
#define AB_TK 32
#define AB_THREADS (AB_TK * 4)
#define AB_MAX_HD 128
#define AB_PAD 4 /* rows 4 floats longer: the 8 keys x 4 lanes of a warp hit 32 banks */

/* K and V rows t0 .. t0 + AB_TK of one (slot, KV head), zero past `end`. */
static __device__ void attb_load_tile(float (*Ks)[AB_MAX_HD + AB_PAD], float (*Vs)[AB_MAX_HD + AB_PAD],
                                      const float *K, const float *V, int t0, int end, int HD) {
    for (int i = threadIdx.x; i < AB_TK * HD; i += blockDim.x) {
        int c = i / HD, d = i % HD;
        bool in = t0 + c < end;
        Ks[c][d] = in ? K[(size_t)(t0 + c) * HD + d] : 0.0f;
        Vs[c][d] = in ? V[(size_t)(t0 + c) * HD + d] : 0.0f;
    }
}

/* q.k_c and dout.v_c for this thread's key c = threadIdx.x / 4: its quarter
 * of the dims, then summed over the key's 4 lanes (the whole warp takes
 * part: 8 keys of 4 lanes). */
static __device__ void attb_dots(float *s, float *dp, const float *Qs, const float *Gs,
                                 float (*Ks)[AB_MAX_HD + AB_PAD], float (*Vs)[AB_MAX_HD + AB_PAD], int HD) {
    int c = threadIdx.x / 4, qd = threadIdx.x % 4;
    float a = 0.0f, b = 0.0f;
    for (int d = qd; d < HD; d += 4) {
        a += Qs[d] * Ks[c][d];
        b += Gs[d] * Vs[c][d];
    }
    a += __shfl_xor_sync(0xffffffffu, a, 1);
    b += __shfl_xor_sync(0xffffffffu, b, 1);
    a += __shfl_xor_sync(0xffffffffu, a, 2);
    b += __shfl_xor_sync(0xffffffffu, b, 2);
    *s = a, *dp = b;
}

__global__ void __launch_bounds__(AB_THREADS)
attb_dq_kernel(float *dq, float *stats, const float *dout, const float *q, const float *kc, const float *vc,
               const int *seq, const int *pos, int N, int NH, int NKV, int HD, int Tmax) {
    __shared__ float Qs[AB_MAX_HD], Gs[AB_MAX_HD], DS[AB_TK], red[32];
    __shared__ float Ks[AB_TK][AB_MAX_HD + AB_PAD], Vs[AB_TK][AB_MAX_HD + AB_PAD];
    const int n = blockIdx.x, h = blockIdx.y, kvh = h / (NH / NKV), c = threadIdx.x / 4, qd = threadIdx.x % 4;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t row = (size_t)n * NH * HD + (size_t)h * HD, base = ((size_t)seq[n] * NKV + kvh) * Tmax * HD;
    const float *K = kc + base, *V = vc + base;
    const int T = pos[n] + 1;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) Qs[d] = q[row + d], Gs[d] = dout[row + d];

    /* pass 1: running max m, sum l of e^(s - m), and of e^(s - m) dp */
    float m = -INFINITY, l = 0.0f, pd = 0.0f;
    for (int t0 = 0; t0 < T; t0 += AB_TK) {
        __syncthreads(); /* Qs/Gs written; the previous tile's readers done */
        attb_load_tile(Ks, Vs, K, V, t0, T, HD);
        __syncthreads();
        float s, dp;
        attb_dots(&s, &dp, Qs, Gs, Ks, Vs, HD);
        bool ok = t0 + c < T;
        s = ok ? s * scale : -INFINITY;
        float mn = fmaxf(m, block_max(s, red, -INFINITY)); /* finite: key t0 is always in range */
        float e = ok && qd == 0 ? expf(s - mn) : 0.0f;  /* one lane per key counts */
        float corr = expf(m - mn);
        l = l * corr + block_sum(e, red);
        pd = pd * corr + block_sum(e * dp, red);
        m = mn;
    }
    const float lse = m + logf(l), delta = pd / l;

    /* pass 2: ds per key into shared memory, then thread d sums dq[d] over
     * the tile's keys */
    const int tid = threadIdx.x;
    float acc = 0.0f;
    for (int t0 = 0; t0 < T; t0 += AB_TK) {
        __syncthreads();
        attb_load_tile(Ks, Vs, K, V, t0, T, HD);
        __syncthreads();
        float s, dp;
        attb_dots(&s, &dp, Qs, Gs, Ks, Vs, HD);
        float p = t0 + c < T ? expf(s * scale - lse) : 0.0f;
        if (qd == 0) DS[c] = p * (dp - delta) * scale;
        __syncthreads();
        if (tid < HD)
            for (int k = 0; k < AB_TK; k++) acc += DS[k] * Ks[k][tid];
    }
    if (tid < HD) dq[row + tid] += acc;
    if (threadIdx.x == 0) {
        stats[(size_t)n * NH + h] = lse;
        stats[(size_t)N * NH + (size_t)n * NH + h] = delta;
    }
}

__global__ void __launch_bounds__(AB_THREADS)
attb_dkv_kernel(float *dkc, float *dvc, const float *stats, const float *dout, const float *q, const float *kc,
                const float *vc, const int *seq, const int *pos, int N, int NH, int NKV, int HD, int Tmax) {
    __shared__ float Qs[AB_MAX_HD], Gs[AB_MAX_HD];
    __shared__ float Ks[AB_TK][AB_MAX_HD + AB_PAD], Vs[AB_TK][AB_MAX_HD + AB_PAD];
    const int t0 = blockIdx.x * AB_TK, kvh = blockIdx.y, b = blockIdx.z, G = NH / NKV;
    const int c = threadIdx.x / 4, qd = threadIdx.x % 4, hd4 = HD / 4;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t base = ((size_t)b * NKV + kvh) * Tmax * HD;
    attb_load_tile(Ks, Vs, kc + base, vc + base, t0, Tmax, HD);
    float dk[AB_MAX_HD / 4], dv[AB_MAX_HD / 4]; /* dims qd, qd + 4, ... of key c */
#pragma unroll
    for (int j = 0; j < AB_MAX_HD / 4; j++) dk[j] = dv[j] = 0.0f;
    for (int n = 0; n < N; n++) {
        if (seq[n] != b || pos[n] < t0) continue; /* the same for the whole block */
        for (int h = kvh * G; h < (kvh + 1) * G; h++) {
            const size_t row = (size_t)n * NH * HD + (size_t)h * HD;
            __syncthreads(); /* the tile is loaded; the previous query's readers are done */
            for (int d = threadIdx.x; d < HD; d += blockDim.x) Qs[d] = q[row + d], Gs[d] = dout[row + d];
            __syncthreads();
            float s, dp;
            attb_dots(&s, &dp, Qs, Gs, Ks, Vs, HD);
            float lse = stats[(size_t)n * NH + h], delta = stats[(size_t)N * NH + (size_t)n * NH + h];
            float p = t0 + c <= pos[n] ? expf(s * scale - lse) : 0.0f;
            float ds = p * (dp - delta) * scale;
#pragma unroll
            for (int j = 0; j < AB_MAX_HD / 4; j++)
                if (j < hd4) {
                    dv[j] += p * Gs[qd + 4 * j];
                    dk[j] += ds * Qs[qd + 4 * j];
                }
        }
    }
    if (t0 + c < Tmax) {
        size_t at = base + (size_t)(t0 + c) * HD;
#pragma unroll
        for (int j = 0; j < AB_MAX_HD / 4; j++)
            if (j < hd4) {
                dkc[at + qd + 4 * j] += dk[j];
                dvc[at + qd + 4 * j] += dv[j];
            }
    }
}

int k_attention_backward(float *dq, float *dkc, float *dvc, float *stats, const float *dout, const float *q,
                         const float *kc, const float *vc, const int *seq, const int *pos, int N, int NH, int NKV,
                         int HD, int B, int Tmax, void *stream) {
    if (HD < 4 || HD > AB_MAX_HD || HD % 4 || NKV < 1 || NH < NKV || NH % NKV || B < 1 || B > 65535 || Tmax < 1 ||
        NH > 65535)
        return -1;
    if (N < 1) return 0;
    LAUNCH(attb_dq_kernel, dim3(N, NH), AB_THREADS, 0, CS(stream), dq, stats, dout, q, kc, vc, seq, pos, N, NH, NKV,
           HD, Tmax);
    LAUNCH(attb_dkv_kernel, dim3(cdiv((size_t)Tmax, AB_TK), NKV, B), AB_THREADS, 0, CS(stream), dkc, dvc, stats,
           dout, q, kc, vc, seq, pos, N, NH, NKV, HD, Tmax);
    return 0;
}

/* ---- the cache rows' gradients back to the rows that stored them ---- */
__global__ void kv_gather_kernel(float *dk, float *dv, const float *dkc, const float *dvc, const int *seq,
                                 const int *pos, const int *qonly, int N, int NKV, int HD, int Tmax) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x, KD = (size_t)NKV * HD;
    if (e >= (size_t)N * KD) return;
    size_t n = e / KD, h = e % KD / HD, d = e % HD;
    if (qonly && qonly[n] >= 0) {
        dk[e] = dv[e] = 0.0f;
        return;
    }
    size_t src = (((size_t)seq[n] * NKV + h) * Tmax + pos[n]) * HD + d;
    dk[e] = dkc[src];
    dv[e] = dvc[src];
}

void k_kv_gather(float *dk, float *dv, const float *dkc, const float *dvc, const int *seq, const int *pos,
                 const int *qonly, int N, int NKV, int HD, int Tmax, void *stream) {
    if (N > 0 && NKV > 0 && HD > 0)
        LAUNCH(kv_gather_kernel, cdiv((size_t)N * NKV * HD, 256), 256, 0, CS(stream), dk, dv, dkc, dvc, seq, pos,
               qonly, N, NKV, HD, Tmax);
}
