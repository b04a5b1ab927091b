/* compact: the per-row reductions of a logits matrix on the device
 * (kernels.h k_compact), so that only the compact distribution crosses the
 * bus. The CPU twin is compact.c (cd_select, cd_gather) plus the argmax.
 *
 * One block per row:
 *   1. one pass: finite check, argmax (as a max over a 64-bit rank that
 *      orders by logit, then by lower id), the log-sum-exp (an online
 *      running max and sum per thread, combined in double), and the first
 *      radix histogram. Rows of a 152k vocabulary do not fit in shared
 *      memory or, 1024 rows at a time, in L2, so passes over the row are
 *      what this kernel costs: 1 + 3 radix + 1 collect;
 *   2. top-K selection by radix select on the logits' order-preserving
 *      32-bit keys, 8 bits a pass from the top: after 4 histograms
 *      the K-th largest key T is known together with how many of the keys
 *      equal to T are needed; those above T and the needed ones equal to T
 *      (lowest ids first, like the CPU heap's tie rule) are collected;
 *   3. a bitonic sort of the <= 1024 candidates by rank, then one thread
 *      walks them in order accumulating probability in double until `mass`
 *      is covered, exactly as cd_select does;
 *   4. the gather of given ids, the covered mass summed over the block. */
#include "common.cuh"
#include "kernels.h"

#define CT 512          /* threads per row */
#define CAND_MAX 1024   /* GPU_KMAX_LIMIT */

static __device__ __forceinline__ unsigned fkey(float x) {
    unsigned u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
/* larger rank = more probable; equal logits: lower id ranks higher */
static __device__ __forceinline__ unsigned long long rank_of(unsigned key, int id) {
    return ((unsigned long long)key << 32) | (unsigned long long)(0xffffffffu - (unsigned)id);
}
static __device__ __forceinline__ int id_of(unsigned long long r) { return (int)(0xffffffffu - (unsigned)(r & 0xffffffffu)); }

__global__ void __launch_bounds__(CT) compact_kernel(const float *logits, int V, compact_args a) {
    __shared__ double redd[32];
    __shared__ unsigned long long redu[32];
    __shared__ int redi[32];
    __shared__ unsigned hist[256];
    __shared__ unsigned long long cand[CAND_MAX];
    __shared__ int scan[CT];
    __shared__ unsigned s_prefix, s_krem, s_eq;
    __shared__ int s_n;
    const int g = blockIdx.x, tid = threadIdx.x;
    const float *x = logits + (size_t)g * V;

    /* the one pass over the row that every request needs, which also
     * builds the first radix histogram (top 8 bits of every key) */
    for (int j = tid; j < 256; j += CT) hist[j] = 0;
    __syncthreads();
    int bad = 0;
    unsigned long long best = 0;
    float m = -INFINITY; /* this thread's running max and sum of exp(x - m) */
    double s = 0;
    for (int i = tid; i < V; i += CT) {
        float v = x[i];
        if (!isfinite(v)) {
            bad = 1;
            continue;
        }
        unsigned key = fkey(v);
        unsigned long long rk = rank_of(key, i);
        best = rk > best ? rk : best;
        if (v > m) s = s * (double)expf(m - v) + 1.0, m = v;
        else s += (double)expf(v - m);
        if (a.kmax > 0) atomicAdd(&hist[key >> 24], 1u);
    }
    bad = block_sum(bad, redi);
    if (bad) { /* block-uniform: every thread leaves here */
        if (tid == 0) {
            if (a.bad) a.bad[g] = 1;
            if (a.k) a.k[g] = 0;
        }
        return;
    }
    best = block_max(best, redu, 0ull);
    const int amax = id_of(best);
    const float mx = x[amax];
    s = block_sum(m > -INFINITY ? s * exp((double)m - (double)mx) : 0.0, redd);
    const double lse = (double)mx + log(s);
    if (tid == 0) {
        if (a.bad) a.bad[g] = 0;
        if (a.argmax) a.argmax[g] = amax;
    }

    if (a.kmax > 0) {
        const unsigned K = (unsigned)min(a.kmax, V);
        unsigned prefix = 0, pmask = 0, krem = K;
        for (int shift = 24; shift >= 0; shift -= 8) {
            if (shift < 24) { /* the first histogram came with the first pass */
                for (int j = tid; j < 256; j += CT) hist[j] = 0;
                __syncthreads();
                for (int i = tid; i < V; i += CT) {
                    unsigned key = fkey(x[i]);
                    if ((key & pmask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
                }
            }
            __syncthreads();
            if (tid == 0) {
                unsigned cum = 0;
                int d = 255;
                for (; d > 0 && cum + hist[d] < krem; d--) cum += hist[d];
                s_prefix = prefix | ((unsigned)d << shift);
                s_krem = krem - cum;
                s_eq = hist[d];
            }
            __syncthreads();
            prefix = s_prefix, krem = s_krem, pmask |= 255u << shift;
        }
        /* prefix is the K-th largest key T; K - krem keys are above it, and
         * krem of the s_eq keys equal to it are needed */
        const unsigned T = prefix;
        if (tid == 0) s_n = 0;
        __syncthreads();
        const bool all_eq = s_eq == krem;
        for (int i = tid; i < V; i += CT) {
            unsigned key = fkey(x[i]);
            if (key > T || (all_eq && key == T)) cand[atomicAdd(&s_n, 1)] = rank_of(key, i);
        }
        __syncthreads();
        if (!all_eq) { /* ties at the boundary: the lowest ids, in order */
            int base = (int)(K - krem), need = (int)krem;
            for (int i0 = 0; i0 < V && need > 0; i0 += CT) {
                int i = i0 + tid, total;
                int f = i < V && fkey(x[i]) == T;
                /* only when logits tie at the selection boundary, which real models almost never produce */
                int pre = block_exscan(f, scan, &total);
                if (f && pre < need) cand[base + pre] = rank_of(T, i);
                int take = min(total, need);
                base += take, need -= take;
            }
            __syncthreads();
        }
        unsigned P = 1;
        while (P < K) P <<= 1;
        for (unsigned j = K + tid; j < P; j += CT) cand[j] = 0ull;
        __syncthreads();
        for (unsigned size = 2; size <= P; size <<= 1)
            for (unsigned stride = size >> 1; stride > 0; stride >>= 1) {
                for (unsigned i = tid; i < P; i += CT) {
                    unsigned p = i ^ stride;
                    if (p > i) {
                        unsigned long long u = cand[i], w = cand[p];
                        bool desc = (i & size) == 0;
                        if ((u < w) == desc) cand[i] = w, cand[p] = u;
                    }
                }
                __syncthreads();
            }
        if (tid == 0) {
            double covered = 0;
            int k = 0;
            int32_t *ids = a.ids + (size_t)g * a.kmax;
            float *lps = a.lps + (size_t)g * a.kmax;
            while (k < (int)K && (k < a.kmin || covered < a.mass)) {
                int id = id_of(cand[k]);
                double lp = (double)x[id] - lse;
                ids[k] = id;
                lps[k] = (float)lp;
                covered += exp(lp);
                k++;
            }
            a.k[g] = k;
            a.tail[g] = (float)(1.0 - covered > 0 ? 1.0 - covered : 0.0);
        }
    }

    if (a.gids) {
        const int64_t off = a.goff[g], n = a.goff[g + 1] - off;
        double cov = 0;
        for (int64_t j = tid; j < n; j += CT) {
            int id = a.gids[off + j];
            float lp = -INFINITY;
            if (id >= 0 && id < V) {
                double d = (double)x[id] - lse;
                lp = (float)d;
                cov += exp(d);
            }
            a.glps[off + j] = lp;
        }
        cov = block_sum(cov, redd);
        if (tid == 0) a.gtail[g] = (float)(1.0 - cov > 0 ? 1.0 - cov : 0.0);
    }
}

void k_compact(const float *logits, int G, int V, const compact_args *a, void *stream) {
    if (G > 0) LAUNCH(compact_kernel, G, CT, 0, (cudaStream_t)stream, logits, V, *a);
}
