/* ops_cpu: see ops_cpu.h. */
#include "nn/ops_cpu.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/util.h"

static pool *g_pool;
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void make_pool(void) {
    int n = openblas_get_num_threads();
    g_pool = pool_create(n < 1 ? 1 : n > 16 ? 16 : n);
}

pool *ops_pool(void) {
    pthread_once(&g_pool_once, make_pool);
    return g_pool;
}

void embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, (size_t)C * sizeof(float));
}

void feed_tokens(int *tok, const int *feed, const int *src, int N, int V) {
    for (int n = 0; n < N; n++)
        if (feed[n] >= 0) tok[n] = src[feed[n]] >= 0 && src[feed[n]] < V ? src[feed[n]] : 0;
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++) ss += x[i] * x[i];
        float r = 1.0f / sqrtf(ss / C + eps);
        for (int i = 0; i < C; i++) o[i] = w[i] * (x[i] * r);
        if (rstd) rstd[n] = r;
    }
}

/* Small N (decode): one pass over the weights computing all N rows' dots
 * per weight row, rows split over the pool. Memory bound, so it runs as
 * fast for N = 8 as for N = 1, where sgemm repacks the whole weight matrix
 * on every call. Each output is one fixed-order sum: results do not depend
 * on the thread count or on N. */
#define SMALL_N MATMUL_SMALL_N
typedef float v8 __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef uint32_t v8u __attribute__((vector_size(32)));

typedef struct {
    float *out;
    const float *inp, *w;
    const uint16_t *w16; /* bf16 weights instead of w, or NULL */
    int N, IC, OC;
} mm_job;

/* Weight i of row o as a float (bf16 -> f32 is exact: a shift). */
static inline __attribute__((always_inline)) float mm_w(const mm_job *j, const int bf, int o, int i) {
    uint32_t u;
    float f;
    if (!bf) return j->w[(size_t)o * j->IC + i];
    u = (uint32_t)j->w16[(size_t)o * j->IC + i] << 16;
    memcpy(&f, &u, 4);
    return f;
}

static inline __attribute__((always_inline)) void mm_rows(const mm_job *j, int o0, int o1, const int N, const int bf) {
    int IC = j->IC, IC8 = IC / 8 * 8;
    for (int o = o0; o < o1; o++) {
        v8 acc[SMALL_N];
#pragma GCC unroll 8
        for (int n = 0; n < N; n++) acc[n] = (v8){0};
        for (int i = 0; i < IC8; i += 8) {
            v8 wv, xv;
            if (bf) {
                v8h h;
                memcpy(&h, j->w16 + (size_t)o * IC + i, sizeof h);
                v8u u = __builtin_convertvector(h, v8u) << 16;
                memcpy(&wv, &u, sizeof wv);
            } else memcpy(&wv, j->w + (size_t)o * IC + i, sizeof wv);
#pragma GCC unroll 8
            for (int n = 0; n < N; n++) {
                memcpy(&xv, j->inp + (size_t)n * IC + i, sizeof xv);
                acc[n] += wv * xv;
            }
        }
        for (int n = 0; n < N; n++) {
            v8 a = acc[n];
            float sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
            for (int i = IC8; i < IC; i++) sum += mm_w(j, bf, o, i) * j->inp[(size_t)n * IC + i];
            j->out[(size_t)n * j->OC + o] = sum;
        }
    }
}

/* Output rows o0..o1 of a job (a pool chunk). An AVX2 clone chosen at load
 * time where the CPU has it (same arithmetic, no FMA contraction under
 * -std=c11: identical results either way). */
__attribute__((target_clones("avx2", "default"))) static void mm_run(void *arg, long begin, long end, int chunk) {
    const mm_job *j = arg;
    int bf = j->w16 != NULL, o0 = (int)begin, o1 = (int)end;
    (void)chunk;
    switch (j->N * 2 + bf) { /* constant N: accumulators stay in registers */
    case 2: mm_rows(j, o0, o1, 1, 0); break;
    case 3: mm_rows(j, o0, o1, 1, 1); break;
    case 4: mm_rows(j, o0, o1, 2, 0); break;
    case 5: mm_rows(j, o0, o1, 2, 1); break;
    case 6: mm_rows(j, o0, o1, 3, 0); break;
    case 7: mm_rows(j, o0, o1, 3, 1); break;
    case 8: mm_rows(j, o0, o1, 4, 0); break;
    case 9: mm_rows(j, o0, o1, 4, 1); break;
    case 10: mm_rows(j, o0, o1, 5, 0); break;
    case 11: mm_rows(j, o0, o1, 5, 1); break;
    case 12: mm_rows(j, o0, o1, 6, 0); break;
    case 13: mm_rows(j, o0, o1, 6, 1); break;
    case 14: mm_rows(j, o0, o1, 7, 0); break;
    case 15: mm_rows(j, o0, o1, 7, 1); break;
    case 16: mm_rows(j, o0, o1, 8, 0); break;
    default: mm_rows(j, o0, o1, 8, 1); break;
    }
}

static void mm_small(float *out, const float *inp, const float *w, const uint16_t *w16, int N, int IC, int OC) {
    mm_job job = {out, inp, w, w16, N, IC, OC};
    int nt = openblas_get_num_threads();
    if (nt < 1 || (long)OC * IC < (1L << 18)) mm_run(&job, 0, OC, 0); /* too small to pay for a wake-up */
    else pool_for_upto(ops_pool(), OC, nt, mm_run, &job);
}

void matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC) {
    if (N > SMALL_N) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC);
    else mm_small(out, inp, w, NULL, N, IC, OC);
}

void matmul_bf16_forward(float *out, const float *inp, const uint16_t *w, int N, int IC, int OC) {
    for (int n = 0; n < N; n += SMALL_N) /* one weight pass per 8 rows */
        mm_small(out + (size_t)n * OC, inp + (size_t)n * IC, NULL, w, N - n < SMALL_N ? N - n : SMALL_N, IC, OC);
}

void bias_forward(float *out, const float *bias, int N, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += bias[o];
}

void residual_forward(float *out, const float *a, const float *b, long n) {
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void rope_inv_freq(float *inv_freq, int HD, float theta) {
    /* as transformers: 1 / theta^(arange(0, HD, 2) / HD) in float32 */
    for (int i = 0; i < HD / 2; i++) inv_freq[i] = (float)(1.0 / pow(theta, (double)(float)(2 * i) / HD));
}

void rope_forward(float *out, const float *inp, const int *pos, int N, int H, int HD, float theta) {
    int half = HD / 2;
    float inv_freq[half > 0 ? half : 1];
    rope_inv_freq(inv_freq, HD, theta);
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[n] * inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < H; h++) {
                const float *x = inp + ((size_t)n * H + h) * HD;
                float *o = out + ((size_t)n * H + h) * HD;
                float x1 = x[i], x2 = x[i + half];
                o[i] = x1 * c - x2 * s;
                o[i + half] = x2 * c + x1 * s;
            }
        }
    }
}

typedef struct {
    float *out;
    const float *q, *kc, *vc;
    const int *seq, *pos;
    int N, NH, NKV, HD, Tmax, maxlen;
    float *att; /* (chunks, maxlen) scratch: scores, then probabilities */
} att_job;

/* q.k in a fixed order: 8 lanes over d (HD % 8 == 0), then the lanes
 * pairwise; a scalar loop otherwise. */
static inline __attribute__((always_inline)) float att_dot(const float *q, const float *k, int HD) {
    if (HD % 8) {
        float s = 0.0f;
        for (int d = 0; d < HD; d++) s += q[d] * k[d];
        return s;
    }
    v8 acc = {0}, qv, kv;
    for (int d = 0; d < HD; d += 8) {
        memcpy(&qv, q + d, sizeof qv);
        memcpy(&kv, k + d, sizeof kv);
        acc += qv * kv;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* o += p * v (elementwise: vectorising changes no rounding). */
static inline __attribute__((always_inline)) void att_axpy(float *o, float p, const float *v, int HD) {
    int d = 0;
    for (; d + 8 <= HD; d += 8) {
        v8 ov, vv;
        memcpy(&ov, o + d, sizeof ov);
        memcpy(&vv, v + d, sizeof vv);
        ov += p * vv;
        memcpy(o + d, &ov, sizeof ov);
    }
    for (; d < HD; d++) o[d] += p * v[d];
}

/* (row, head) work items begin..end (a pool chunk). */
__attribute__((target_clones("avx2", "default"))) static void att_run(void *arg, long begin, long end, int chunk) {
    const att_job *j = arg;
    int HD = j->HD, grp = j->NH / j->NKV;
    float scale = 1.0f / sqrtf((float)HD), *att = j->att + (size_t)chunk * j->maxlen;
    for (long it = begin; it < end; it++) {
        int n = (int)(it / j->NH), h = (int)(it % j->NH), kvh = h / grp, T = j->pos[n] + 1;
        const float *q = j->q + ((size_t)n * j->NH + h) * HD;
        const float *k = j->kc + ((size_t)j->seq[n] * j->NKV + kvh) * j->Tmax * HD; // (Tmax, HD)
        const float *v = j->vc + ((size_t)j->seq[n] * j->NKV + kvh) * j->Tmax * HD;
        float mx = -INFINITY;
        for (int t = 0; t < T; t++) {
            att[t] = att_dot(q, k + (size_t)t * HD, HD) * scale;
            if (att[t] > mx) mx = att[t];
        }
        float sum = 0.0f;
        for (int t = 0; t < T; t++) {
            att[t] = expf(att[t] - mx);
            sum += att[t];
        }
        float inv = 1.0f / sum;
        float *o = j->out + ((size_t)n * j->NH + h) * HD;
        memset(o, 0, (size_t)HD * sizeof(float));
        for (int t = 0; t < T; t++) att_axpy(o, att[t] * inv, v + (size_t)t * HD, HD);
    }
}

void attention_forward(float *out, const float *q, const float *kc, const float *vc, const int *seq, const int *pos,
                       int N, int NH, int NKV, int HD, int Tmax, int nthreads) {
    long items = (long)N * NH;
    /* Threads only pay off when there is real work (long contexts). */
    long work = 0;
    for (int n = 0; n < N; n++) work += (long)(pos[n] + 1) * NH * HD;
    pool *p = ops_pool();
    if (nthreads > pool_size(p)) nthreads = pool_size(p);
    if (nthreads < 1 || work < (1L << 18) || items < nthreads) nthreads = 1;
    int maxlen = 1;
    for (int n = 0; n < N; n++)
        if (pos[n] + 1 > maxlen) maxlen = pos[n] + 1;
    att_job job = {out, q, kc, vc, seq, pos, N, NH, NKV, HD, Tmax, maxlen, NULL};
    job.att = xmalloc((size_t)nthreads * maxlen * sizeof(float));
    if (nthreads == 1) att_run(&job, 0, items, 0);
    else pool_for_upto(p, items, nthreads, att_run, &job);
    free(job.att);
}

void swiglu_forward(float *out, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

float dropout_factor(uint64_t key, long i, float p) {
    uint64_t s = key ^ (uint64_t)i; /* one draw of the stream at key ^ i: no state to keep */
    return rng_unit(&s) < p ? 0.0f : 1.0f / (1.0f - p);
}

void dropout_forward(float *out, const float *inp, long n, float p, uint64_t key) {
    for (long i = 0; i < n; i++) out[i] = inp[i] * dropout_factor(key, i, p);
}
