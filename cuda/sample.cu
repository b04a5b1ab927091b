/* sample: drawing one token per logits row on the device (kernels.h
 * k_sample), the twin of sample.c smp_draw_u, so that sampled generation
 * moves one id per row over the bus instead of a whole row of logits.
 *
 * The host's definition: p_i = exp(x_i / t - max / t) in double; without
 * top-k and top-p the kept tokens are all of them in id order, else the
 * most probable first (ties: lower id), cut after top_k tokens, then after
 * the first token where the running mass reaches top_p times the kept mass;
 * the token drawn is the first whose running mass exceeds u times the kept
 * mass. One block per row computes the same function of the same u:
 *   - in id order: each thread sums a contiguous chunk of ids, a block scan
 *     gives the chunk offsets, and the thread whose chunk holds u * Z walks
 *     it as the host walks the row;
 *   - in probability order no sort is needed: every cut (the top_k-th
 *     token, the top-p cut, the draw) is "the first position in the order
 *     where a running weight reaches a threshold", found by a radix search
 *     over the logits' order-preserving keys, 8 bits a pass from the top,
 *     with histograms of count and mass per digit; tokens whose logits tie
 *     share a key, and the position among them (lower ids first) follows
 *     from their common probability; the id at that position is found last.
 * The result equals the host's for the same u except where u * Z lies
 * within rounding of a cumulative boundary (about 1e-16 relative): the sums
 * run in another order here, exp may differ by an ulp, and within a run of
 * tied logits the running mass is a product instead of repeated additions.
 * Summation through shared-memory atomics is in no fixed order on a GPU,
 * so such a boundary case may also differ between runs. */
#include "common.cuh"
#include "kernels.h"

#define SMP_T 512 /* threads per row (fewer for small vocabularies) */

/* Order-preserving key of a logit; -0 is keyed as +0, since the host's
 * comparison treats them as equal (a tie, broken by id). */
static __device__ __forceinline__ unsigned skey(float x) {
    if (x == 0.0f) x = 0.0f;
    unsigned u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static __device__ __forceinline__ float key_value(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
static __device__ __forceinline__ double prob(float x, double t, double mx) { return exp((double)x / t - mx); }

struct smp_shared {
    double hm[256];   /* mass per digit */
    unsigned hc[256]; /* count per digit */
    double scan[SMP_T];
    int iscan[SMP_T];
    double redd[32];
    float redf[32];
    int redi[32];
    unsigned s_prefix, s_eq;
    double s_above_m, s_above_c;
    int s_pick;
};

/* A position in the order: the q-th (from 0) lowest id among the tokens
 * whose key is `key`; above_m is the mass of the tokens with larger keys,
 * p the probability of one token with this key, eq their number. */
struct spos {
    unsigned key;
    int q;
    unsigned eq;
    double above_m, p;
};
static __device__ __forceinline__ bool before(const spos &a, const spos &b) {
    return a.key > b.key || (a.key == b.key && a.q < b.q);
}
/* mass of the tokens up to and including position a */
static __device__ __forceinline__ double mass_through(const spos &a) { return a.above_m + (a.q + 1) * a.p; }

enum { BY_COUNT, BY_MASS_GE, BY_MASS_GT };

/* The first position where the running weight (1 a token with BY_COUNT,
 * else its probability) reaches thr: >= thr for BY_COUNT and BY_MASS_GE
 * (top-k, top-p), > thr for BY_MASS_GT (the draw). A thr beyond the total
 * (rounding) gives the last position. Called by the whole block. */
static __device__ spos find(const float *x, int V, double t, double mx, int mode, double thr, smp_shared &sh) {
    unsigned prefix = 0, pmask = 0;
    double above_m = 0, above_c = 0; /* weight of the keys above the current prefix */
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int j = threadIdx.x; j < 256; j += blockDim.x) sh.hm[j] = 0.0, sh.hc[j] = 0u;
        __syncthreads();
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            unsigned k = skey(x[i]);
            if ((k & pmask) == prefix) {
                unsigned d = (k >> shift) & 255u;
                atomicAdd(&sh.hc[d], 1u);
                atomicAdd(&sh.hm[d], prob(x[i], t, mx));
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double cm = above_m, cc = above_c, pm = cm, pc = cc;
            int d, last = -1;
            for (d = 255; d >= 0; d--) {
                if (!sh.hc[d]) continue;
                last = d, pm = cm, pc = cc;
                double nm = cm + sh.hm[d], nc = cc + (double)sh.hc[d];
                double w = mode == BY_COUNT ? nc : nm;
                if (mode == BY_MASS_GT ? w > thr : w >= thr) break;
                cm = nm, cc = nc;
            }
            if (d < 0) d = last, cm = pm, cc = pc; /* some digit matched: the prefix came from one */
            sh.s_prefix = prefix | ((unsigned)d << shift);
            sh.s_above_m = cm, sh.s_above_c = cc;
            sh.s_eq = sh.hc[d];
        }
        __syncthreads();
        prefix = sh.s_prefix, above_m = sh.s_above_m, above_c = sh.s_above_c, pmask |= 255u << shift;
    }
    spos r;
    r.key = prefix, r.eq = sh.s_eq, r.above_m = above_m, r.p = prob(key_value(prefix), t, mx);
    /* how many of the tied tokens it takes to reach thr */
    double above = mode == BY_COUNT ? above_c : above_m, w1 = mode == BY_COUNT ? 1.0 : r.p;
    double n = (thr - above) / w1;
    double q = mode == BY_MASS_GT ? floor(n) : ceil(n) - 1.0;
    r.q = q < 0 ? 0 : q > (double)(r.eq - 1) ? (int)(r.eq - 1) : (int)q;
    return r;
}

/* The id at position p: the p.q-th lowest id with key p.key. */
static __device__ int id_at(const float *x, int V, const spos &p, smp_shared &sh) {
    int need = p.q;
    for (int i0 = 0; i0 < V; i0 += blockDim.x) {
        int i = i0 + threadIdx.x;
        int f = i < V && skey(x[i]) == p.key;
        int total = __syncthreads_count(f);
        if (need < total) { /* block-uniform */
            int pre = block_exscan(f, sh.iscan, NULL);
            if (f && pre == need) sh.s_pick = i;
            __syncthreads();
            return sh.s_pick;
        }
        need -= total;
    }
    return V - 1; /* not reached: the key is some token's */
}

__global__ void __launch_bounds__(SMP_T)
sample_kernel(const float *logits, int V, const double *uni, double t, int top_k, double top_p, int32_t *out) {
    __shared__ smp_shared sh;
    const int g = blockIdx.x, tid = threadIdx.x;
    const float *x = logits + (size_t)g * V;
    int bad = 0;
    float m = -INFINITY;
    for (int i = tid; i < V; i += blockDim.x) {
        float v = x[i];
        if (!isfinite(v)) bad = 1;
        else m = fmaxf(m, v);
    }
    bad = block_sum(bad, sh.redi);
    if (bad) { /* block-uniform; the caller fails such a row anyway */
        if (tid == 0) out[g] = -1;
        return;
    }
    m = block_max(m, sh.redf, -INFINITY);
    /* division by t > 0 keeps the order, so max(x / t) is max(x) / t */
    const double mx = (double)m / t, u = uni[g];

    if (!(top_p < 1.0) && !(top_k > 0 && top_k < V)) { /* all tokens, in id order */
        int ch = (V + (int)blockDim.x - 1) / (int)blockDim.x, lo = min(V, tid * ch), hi = min(V, lo + ch);
        double s = 0;
        for (int i = lo; i < hi; i++) s += prob(x[i], t, mx);
        sh.scan[tid] = s;
        __syncthreads();
        for (int o = 1; o < (int)blockDim.x; o <<= 1) {
            double v = tid >= o ? sh.scan[tid - o] : 0.0;
            __syncthreads();
            sh.scan[tid] += v;
            __syncthreads();
        }
        const double z = sh.scan[blockDim.x - 1], ex = tid ? sh.scan[tid - 1] : 0.0, ut = u * z;
        /* the last chunk with mass that starts at or below u * Z (thread 0's
         * qualifies unless it has no mass; then the first with mass does) */
        int mine = s > 0 && ex <= ut ? tid : -1;
        mine = block_max(mine, sh.redi, -1);
        if (tid == mine) {
            double c = ex;
            int pick = -1, last = lo;
            for (int i = lo; i < hi && pick < 0; i++) {
                double p = prob(x[i], t, mx);
                if (p > 0) last = i;
                c += p;
                if (ut < c) pick = i;
            }
            out[g] = pick >= 0 ? pick : last;
        }
        return;
    }

    /* probability order: E is the last kept position, Z the kept mass */
    spos E = spos();
    double Z;
    bool have_e = false;
    if (top_k > 0 && top_k < V) {
        E = find(x, V, t, mx, BY_COUNT, (double)top_k, sh);
        Z = mass_through(E);
        have_e = true;
    } else {
        double s = 0;
        for (int i = tid; i < V; i += blockDim.x) s += prob(x[i], t, mx);
        Z = block_sum(s, sh.redd);
    }
    if (top_p < 1.0) {
        spos P = find(x, V, t, mx, BY_MASS_GE, top_p * Z, sh);
        if (!have_e || !before(E, P)) E = P, Z = mass_through(P), have_e = true;
    }
    spos D = find(x, V, t, mx, BY_MASS_GT, u * Z, sh);
    if (before(E, D)) D = E; /* u * Z at the very end (rounding): the last kept token, as on the host */
    int id = id_at(x, V, D, sh);
    if (tid == 0) out[g] = id;
}

void k_sample(const float *logits, int G, int V, const double *uniform, double temperature, int top_k, double top_p,
              int32_t *out, void *stream) {
    if (G < 1) return;
    unsigned nt = V >= SMP_T ? SMP_T : (unsigned)((V + 31) / 32 * 32);
    LAUNCH(sample_kernel, G, nt, 0, (cudaStream_t)stream, logits, V, uniform, temperature, top_k, top_p, out);
}
