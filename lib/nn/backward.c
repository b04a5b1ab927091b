/* backward: see backward.h. */
#include "nn/backward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops_cpu.h"
#include "base/util.h"

void embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
    if (!dwte) return;
    for (int n = 0; n < N; n++) {
        float *d = dwte + (size_t)tokens[n] * C;
        const float *g = dout + (size_t)n * C;
        for (int i = 0; i < C; i++) d[i] += g[i];
    }
}

void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, const float *rstd, int N,
                      int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float r = rstd[n];
        /* out_i = w_i x_i r, r = (mean(x^2) + eps)^-1/2, dr/dx_j = -r^3 x_j / C:
         * dx_j = r w_j g_j - r^3 x_j / C * sum_i w_i g_i x_i */
        if (dw)
            for (int i = 0; i < C; i++) dw[i] += g[i] * x[i] * r;
        if (dinp) {
            float dot = 0.0f;
            for (int i = 0; i < C; i++) dot += w[i] * g[i] * x[i];
            float k = r * r * r * dot / C;
            float *d = dinp + (size_t)n * C;
            for (int i = 0; i < C; i++) d[i] += r * w[i] * g[i] - k * x[i];
        }
    }
}

void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N, int IC, int OC) {
    if (dinp) /* (N, OC) x (OC, IC) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
    if (dw) /* (OC, N) x (N, IC) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
}

void bias_backward(float *dbias, const float *dout, int N, int OC) {
    if (!dbias) return;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) dbias[o] += dout[(size_t)n * OC + o];
}

void rope_backward(float *dinp, const float *dout, const int *pos, int N, int H, int HD, float theta) {
    int half = HD / 2;
    float inv_freq[half > 0 ? half : 1];
    rope_inv_freq(inv_freq, HD, theta); /* the same float32 angles as rope_forward */
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[n] * inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < H; h++) {
                const float *g = dout + ((size_t)n * H + h) * HD;
                float *d = dinp + ((size_t)n * H + h) * HD;
                float g1 = g[i], g2 = g[i + half];
                /* transpose of [[c, -s], [s, c]] */
                d[i] = g1 * c + g2 * s;
                d[i + half] = g2 * c - g1 * s;
            }
        }
    }
}

typedef struct {
    float *dq, *dkc, *dvc;
    const float *dout, *q, *kc, *vc;
    const int *seq, *pos;
    int N, NH, NKV, HD, Tmax, maxlen;
} attb_job;

/* One (slot, kv head) item owns its dkc/dvc slice and the dq of its query
 * heads, so items run in parallel without sharing a write, and each sum
 * keeps the same order whatever the thread count. */
static void attb_run(void *arg, long begin, long end, int chunk) {
    const attb_job *j = arg;
    (void)chunk;
    int HD = j->HD, NKV = j->NKV, grp = j->NH / NKV;
    float scale = 1.0f / sqrtf((float)HD);
    float *p = xmalloc((size_t)j->maxlen * sizeof(float));  // (T) probabilities
    float *dp = xmalloc((size_t)j->maxlen * sizeof(float)); // (T)
    for (long it = begin; it < end; it++) {
        int b = (int)(it / NKV), kvh = (int)(it % NKV);
        size_t base = ((size_t)b * NKV + kvh) * j->Tmax * HD;
        const float *k = j->kc + base, *v = j->vc + base; // (Tmax, HD)
        float *dk = j->dkc + base, *dv = j->dvc + base;
        for (int n = 0; n < j->N; n++) {
            if (j->seq[n] != b) continue;
            int T = j->pos[n] + 1;
            for (int h = kvh * grp; h < (kvh + 1) * grp; h++) {
                const float *qr = j->q + ((size_t)n * j->NH + h) * HD, *go = j->dout + ((size_t)n * j->NH + h) * HD;
                float *dqr = j->dq + ((size_t)n * j->NH + h) * HD;
                /* recompute the probabilities exactly as attention_forward */
                float mx = -INFINITY;
                for (int t = 0; t < T; t++) {
                    float s = 0.0f;
                    for (int d = 0; d < HD; d++) s += qr[d] * k[(size_t)t * HD + d];
                    p[t] = s * scale;
                    if (p[t] > mx) mx = p[t];
                }
                float sum = 0.0f;
                for (int t = 0; t < T; t++) {
                    p[t] = expf(p[t] - mx);
                    sum += p[t];
                }
                float inv = 1.0f / sum, pdp = 0.0f;
                for (int t = 0; t < T; t++) {
                    p[t] *= inv;
                    float s = 0.0f;
                    for (int d = 0; d < HD; d++) s += go[d] * v[(size_t)t * HD + d];
                    dp[t] = s;
                    pdp += p[t] * s;
                    for (int d = 0; d < HD; d++) dv[(size_t)t * HD + d] += p[t] * go[d];
                }
                /* softmax backward: ds_t = p_t (dp_t - sum_u p_u dp_u); s_t = scale q.k_t */
                for (int t = 0; t < T; t++) {
                    float ds = p[t] * (dp[t] - pdp) * scale;
                    for (int d = 0; d < HD; d++) {
                        dqr[d] += ds * k[(size_t)t * HD + d];
                        dk[(size_t)t * HD + d] += ds * qr[d];
                    }
                }
            }
        }
    }
    free(p);
    free(dp);
}

void attention_backward(float *dq, float *dkc, float *dvc, const float *dout, const float *q, const float *kc,
                        const float *vc, const int *seq, const int *pos, int N, int NH, int NKV, int HD, int Tmax,
                        int nthreads) {
    int maxlen = 1, B = 0;
    for (int n = 0; n < N; n++) {
        if (pos[n] + 1 > maxlen) maxlen = pos[n] + 1;
        if (seq[n] + 1 > B) B = seq[n] + 1;
    }
    long items = (long)B * NKV, work = 0;
    for (int n = 0; n < N; n++) work += (long)(pos[n] + 1) * NH * HD;
    if (nthreads < 1 || work < (1L << 16)) nthreads = 1; /* threads only pay off on real work */
    attb_job job = {dq, dkc, dvc, dout, q, kc, vc, seq, pos, N, NH, NKV, HD, Tmax, maxlen};
    if (nthreads == 1) attb_run(&job, 0, items, 0);
    else pool_for_upto(ops_pool(), items, nthreads, attb_run, &job);
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i], sg = 1.0f / (1.0f + expf(-g));
        dup[i] += dout[i] * g * sg;
        dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
    }
}

void dropout_backward(float *dinp, const float *dout, long n, float p, uint64_t key) {
    for (long i = 0; i < n; i++) dinp[i] += dout[i] * dropout_factor(key, i, p);
}
