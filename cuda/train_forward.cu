/* train_forward: see train_forward.h. Reference kernels, one thread per
 * element where the op is element-wise, each line the CPU twin's
 * expression. */
#include "common.cuh"
#include "train_forward.h"

#define CS(s) ((cudaStream_t)(s))

__global__ void embedding_f32_kernel(float *x, const int *tokens, const float *wte, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * C) x[i] = wte[(size_t)tokens[i / C] * C + i % C];
}

void k_embedding_f32(float *x, const int *tokens, const float *wte, int N, int C, void *stream) {
    if (N > 0) LAUNCH(embedding_f32_kernel, cdiv((size_t)N * C, 256), 256, 0, CS(stream), x, tokens, wte, N, C);
}

/* one block per row, the sum of squares in float32 as the CPU twin */
__global__ void rmsnorm_f32_kernel(float *out, float *rstd, const float *x, const float *w, int C, float eps) {
    __shared__ float red[32];
    int n = blockIdx.x;
    const float *xr = x + (size_t)n * C;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    float r = 1.0f / sqrtf(ss / C + eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x) out[(size_t)n * C + i] = w[i] * (xr[i] * r);
    if (threadIdx.x == 0) rstd[n] = r;
}

void k_rmsnorm_f32(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps, void *stream) {
    if (N > 0) LAUNCH(rmsnorm_f32_kernel, N, 256, 0, CS(stream), out, rstd, x, w, C, eps);
}

/* one block per row, a thread per rotation pair (i, i + HD/2) of a head */
__global__ void rope_f32_kernel(float *x, const float *inv_freq, const int *pos, int H, int HD) {
    int n = blockIdx.x, half = HD / 2;
    for (int j = threadIdx.x; j < H * half; j += blockDim.x) {
        int h = j / half, i = j % half;
        size_t at = ((size_t)n * H + h) * HD;
        float ang = (float)pos[n] * inv_freq[i], c = cosf(ang), s = sinf(ang);
        float x1 = x[at + i], x2 = x[at + i + half];
        x[at + i] = x1 * c - x2 * s;
        x[at + i + half] = x2 * c + x1 * s;
    }
}

void k_rope_f32(float *x, const float *inv_freq, const int *pos, int N, int H, int HD, void *stream) {
    if (N > 0 && H > 0 && HD >= 2) LAUNCH(rope_f32_kernel, N, 128, 0, CS(stream), x, inv_freq, pos, H, HD);
}

__global__ void kv_store_f32_kernel(float *kc, float *vc, const float *k, const float *v, const int *seq, const int *pos,
                                    const int *qonly, int N, int NKV, int HD, int Tmax) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x, KD = (size_t)NKV * HD;
    if (e >= (size_t)N * KD) return;
    size_t n = e / KD, h = e % KD / HD, d = e % HD;
    if (qonly && qonly[n] >= 0) return;
    size_t dst = (((size_t)seq[n] * NKV + h) * Tmax + pos[n]) * HD + d;
    kc[dst] = k[e];
    vc[dst] = v[e];
}

void k_kv_store_f32(float *kc, float *vc, const float *k, const float *v, const int *seq, const int *pos,
                    const int *qonly, int N, int NKV, int HD, int Tmax, void *stream) {
    if (N > 0 && NKV > 0 && HD > 0)
        LAUNCH(kv_store_f32_kernel, cdiv((size_t)N * NKV * HD, 256), 256, 0, CS(stream), kc, vc, k, v, seq, pos, qonly, N,
               NKV, HD, Tmax);
}

/* A warp per (row, head): lane j holds dimensions j, j + 32, ... (HD <= 128:
 * 4 per lane). Each position's score is one warp sum; the online softmax
 * keeps the running max, the sum of exp and the unnormalised output. A
 * warp whose item is past the end leaves as a whole (no barrier here). */
#define ATT_WARPS 4
__global__ void __launch_bounds__(32 * ATT_WARPS)
attention_f32_kernel(float *out, const float *q, const float *kc, const float *vc, const int *seq, const int *apos,
                     int N, int NH, int NKV, int HD, int Tmax) {
    int lane = threadIdx.x & 31;
    size_t item = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    if (item >= (size_t)N * NH) return;
    int n = (int)(item / NH), h = (int)(item % NH), kvh = h / (NH / NKV), T = apos[n] + 1;
    const float *qr = q + ((size_t)n * NH + h) * HD;
    const float *k = kc + ((size_t)seq[n] * NKV + kvh) * Tmax * HD, *v = vc + ((size_t)seq[n] * NKV + kvh) * Tmax * HD;
    float scale = 1.0f / sqrtf((float)HD), qv[4], o[4], mx = -INFINITY, sum = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int d = lane + 32 * j;
        qv[j] = d < HD ? qr[d] : 0.0f;
        o[j] = 0.0f;
    }
    for (int t = 0; t < T; t++) {
        const float *kt = k + (size_t)t * HD, *vt = v + (size_t)t * HD;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int d = lane + 32 * j;
            if (d < HD) s += qv[j] * kt[d];
        }
        s = warp_sum(s) * scale;
        float m2 = s > mx ? s : mx, c = expf(mx - m2), p = expf(s - m2);
        sum = sum * c + p;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int d = lane + 32 * j;
            o[j] = o[j] * c + (d < HD ? p * vt[d] : 0.0f);
        }
        mx = m2;
    }
    float inv = 1.0f / sum;
    float *orow = out + ((size_t)n * NH + h) * HD;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int d = lane + 32 * j;
        if (d < HD) orow[d] = o[j] * inv;
    }
}

void k_attention_f32(float *out, const float *q, const float *kc, const float *vc, const int *seq, const int *apos, int N,
                     int NH, int NKV, int HD, int Tmax, void *stream) {
    if (N > 0 && NH > 0)
        LAUNCH(attention_f32_kernel, cdiv((size_t)N * NH, ATT_WARPS), 32 * ATT_WARPS, 0, CS(stream), out, q, kc, vc, seq,
               apos, N, NH, NKV, HD, Tmax);
}

__global__ void swiglu_f32_kernel(float *h, const float *gate, const float *up, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float g = gate[i];
        h[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void k_swiglu_f32(float *h, const float *gate, const float *up, size_t n, void *stream) {
    if (n) LAUNCH(swiglu_f32_kernel, cdiv(n, 256), 256, 0, CS(stream), h, gate, up, n);
}

__global__ void residual_f32_kernel(float *out, const float *a, const float *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

void k_residual_f32(float *out, const float *a, const float *b, size_t n, void *stream) {
    if (n) LAUNCH(residual_f32_kernel, cdiv(n, 256), 256, 0, CS(stream), out, a, b, n);
}

__global__ void bf16_to_f32_kernel(float *out, const bf16 *in, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = bf2f(in[i]);
}

void k_bf16_to_f32(float *out, const uint16_t *in, size_t n, void *stream) {
    if (n) LAUNCH(bf16_to_f32_kernel, cdiv(n, 256), 256, 0, CS(stream), out, (const bf16 *)in, n);
}
