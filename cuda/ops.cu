/* ops: the element-wise and row-wise layer kernels (kernels.h). Each mirrors
 * the ops_cpu.c function of the same name. */
#include "common.cuh"
#include "kernels.h"
#include "kvpage.cuh"

#define CS(s) ((cudaStream_t)(s))

__global__ void embedding_kernel(float *x, const int *tokens, const bf16 *wte, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * C) {
        size_t n = i / C, c = i % C;
        x[i] = bf2f(wte[(size_t)tokens[n] * C + c]);
    }
}

void k_embedding(float *x, const int *tokens, const uint16_t *wte, int N, int C, void *stream) {
    LAUNCH(embedding_kernel, cdiv((size_t)N * C, 256), 256, 0, CS(stream), x, tokens, (const bf16 *)wte, N, C);
}

__global__ void feed_kernel(int *tok, const int *feed, const int *src, int N, int V) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N && feed[n] >= 0) {
        int t = src[feed[n]];
        tok[n] = t >= 0 && t < V ? t : 0;
    }
}

void k_feed(int *tok, const int *feed, const int *src, int N, int V, void *stream) {
    if (N > 0) LAUNCH(feed_kernel, cdiv((size_t)N, 256), 256, 0, CS(stream), tok, feed, src, N, V);
}

/* One block per row: the sum of squares in float32 (as the CPU twin and
 * transformers' Qwen2RMSNorm compute it), then the scaled row. */
__global__ void rmsnorm_kernel(bf16 *out, const float *x, const float *w, const int *rows, int C, float eps) {
    __shared__ float red[32];
    int n = blockIdx.x;
    const float *xr = x + (size_t)(rows ? rows[n] : n) * C;
    float ss = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    float r = 1.0f / sqrtf(ss / C + eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x) out[(size_t)n * C + i] = f2bf(w[i] * (xr[i] * r));
}

void k_rmsnorm(uint16_t *out, const float *x, const float *w, const int *rows, int N, int C, float eps, void *stream) {
    if (N > 0) LAUNCH(rmsnorm_kernel, N, 256, 0, CS(stream), (bf16 *)out, x, w, rows, C, eps);
}

/* One block per row, a thread per rotation pair (i, i + HD/2) of a head: q
 * heads first, then k heads, then v's plain copy. Angles as rope_forward:
 * float32 pos * inv_freq, precise cosf/sinf. */
__global__ void qkv_rope_kernel(float *q, bf16 *kc, bf16 *vc, const float *qkv, const float *bias,
                                const float *inv_freq, const int *seq, const int *pos, int NH, int NKV, int HD,
                                kv_pages kv) {
    int n = blockIdx.x, half = HD / 2, QD = NH * HD, KD = NKV * HD, W = QD + 2 * KD;
    const float *row = qkv + (size_t)n * W;
    for (int j = threadIdx.x; j < (NH + NKV) * half; j += blockDim.x) {
        int h = j / half, i = j % half, off = h * HD; /* off into [q | k] */
        float x1 = row[off + i], x2 = row[off + i + half];
        if (bias) x1 += bias[off + i], x2 += bias[off + i + half];
        float ang = (float)pos[n] * inv_freq[i], c = cosf(ang), s = sinf(ang);
        float o1 = x1 * c - x2 * s, o2 = x2 * c + x1 * s;
        if (h < NH) {
            q[(size_t)n * QD + off + i] = o1;
            q[(size_t)n * QD + off + i + half] = o2;
        } else {
            bf16 *dst = kc + kv_row(kv, seq[n], NKV, h - NH, pos[n], HD);
            dst[i] = f2bf(o1);
            dst[i + half] = f2bf(o2);
        }
    }
    for (int j = threadIdx.x; j < KD; j += blockDim.x) {
        float v = row[QD + KD + j] + (bias ? bias[QD + KD + j] : 0.0f);
        int h = j / HD, d = j % HD;
        vc[kv_row(kv, seq[n], NKV, h, pos[n], HD) + d] = f2bf(v);
    }
}

void k_qkv_rope(float *q, uint16_t *kc, uint16_t *vc, const float *qkv, const float *bias, const float *inv_freq,
                const int *seq, const int *pos, int N, int NH, int NKV, int HD, kv_pages kv, void *stream) {
    if (N > 0)
        LAUNCH(qkv_rope_kernel, N, 128, 0, CS(stream), q, (bf16 *)kc, (bf16 *)vc, qkv, bias, inv_freq, seq, pos, NH,
               NKV, HD, kv);
}

/* gate and up read as float: float32 from the GEMM, or bf16 (LR_GPU_GU16) */
static __device__ __forceinline__ float gu_at(const float *gu, size_t i) { return gu[i]; }
static __device__ __forceinline__ float gu_at(const bf16 *gu, size_t i) { return bf2f(gu[i]); }

template <class T> __global__ void swiglu_kernel(bf16 *h, const T *gu, int N, int I) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * I) {
        size_t n = i / I, c = i % I;
        float g = gu_at(gu, n * 2 * I + c), u = gu_at(gu, n * 2 * I + I + c);
        h[i] = f2bf(g / (1.0f + expf(-g)) * u);
    }
}

void k_swiglu(uint16_t *h, const float *gu, int N, int I, void *stream) {
    LAUNCH(swiglu_kernel<float>, cdiv((size_t)N * I, 256), 256, 0, CS(stream), (bf16 *)h, gu, N, I);
}

void k_swiglu_bf16(uint16_t *h, const uint16_t *gu, int N, int I, void *stream) {
    LAUNCH(swiglu_kernel<bf16>, cdiv((size_t)N * I, 256), 256, 0, CS(stream), (bf16 *)h, (const bf16 *)gu, N, I);
}

__global__ void add_bias_kernel(float *x, const float *b, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * C) x[i] += b[i % C];
}

void k_add_bias(float *x, const float *b, int N, int C, void *stream) {
    LAUNCH(add_bias_kernel, cdiv((size_t)N * C, 256), 256, 0, CS(stream), x, b, N, C);
}

__global__ void f32_to_bf16_kernel(bf16 *out, const float *in, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = f2bf(in[i]);
}

void k_f32_to_bf16(uint16_t *out, const float *in, size_t n, void *stream) {
    if (n) LAUNCH(f32_to_bf16_kernel, cdiv(n, 256), 256, 0, CS(stream), (bf16 *)out, in, n);
}
