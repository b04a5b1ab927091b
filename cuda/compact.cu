/* compact: the per-row reductions of a logits matrix on the device
 * (kernels.h k_compact), so that only the compact distribution crosses the
 * bus. The CPU twin is compact.c (cd_select, cd_gather) plus the argmax.
 *
 * Rows of a 152k vocabulary do not fit in shared memory or, 1024 rows at a
 * time, in L2, so passes over the rows are what this costs. Each row is
 * split into `slices` (one block each; several when rows are few, so that
 * a batch-1 decode step does not run on one multiprocessor), and a short
 * fixed sequence of launches works through them:
 *
 *   scan     (slices x rows) the one pass every request needs: finite
 *            check, argmax (a max over a 64-bit rank that orders by logit,
 *            then by lower id), the log-sum-exp partials (an online max
 *            and sum per thread, combined in double) and the histogram of
 *            the top 11 bits of the logits' order-preserving keys;
 *   decide   (rows) combines the slices in slice order and picks the digit
 *            holding the K-th largest key: then the keys at or above the
 *            prefix found so far number at most CAND_MAX (the common case
 *            after 11 bits), or the next digit needs a histogram (keys
 *            crowded into one bin), or all 32 bits are known and the keys
 *            equal to the K-th one are too many to keep (ties);
 *   pass     (slices x rows) x 3, each followed by a decide but the last:
 *            a histogram of the next digit, or the collect of every key at
 *            or above the prefix into the row's candidate buffer, or, for
 *            ties, the keys above the K-th plus the lowest-id ones equal
 *            to it (a slice knows from the last histogram how many ties
 *            the slices before it hold); rows already done return at once;
 *   final    (rows) sorts the <= CAND_MAX candidates by rank (bitonic, in
 *            shared memory), walks them accumulating probability in double
 *            until `mass` is covered, exactly as cd_select does, and
 *            gathers the given ids.
 *
 * So a row is read twice when the boundary's 11-bit bin holds few keys,
 * and at most four times (11 + 11 + 10 bits, then the collect), where a
 * plain radix select of 8 bits a pass reads it five times. Histograms are
 * integer counts, each warp counting into its own copy (16-bit counters,
 * two a word), so that the few top bins a row's logits fall in collide
 * only between the lanes of one warp, never across warps; the copies are
 * merged once per block and added into the row's histogram with one
 * global atomic per nonzero bin. Candidates are staged in shared memory
 * and reach the row's buffer with one global atomic per block. (Voting
 * per 32 logits with __match_any_sync would aggregate within a warp too,
 * but makes the emulated device, which switches every lane at a vote,
 * ten times slower.) The order atomics land in changes neither: counts
 * are exact, and the candidate set is fixed by the keys (ranks are
 * distinct), then sorted. Floating-point partials combine in fixed orders,
 * so the output depends on the input and the slice count only. */
#include "common.cuh"
#include "kernels.h"

#define CT 256          /* threads of a block reading logits (scan, pass) */
#define WARPS (CT / 32) /* private histograms of such a block */
#define RT 512          /* threads of a block per row (decide, final) */
#define CAND_MAX 4096   /* candidates a row keeps for the final sort */
#define NB0 2048        /* bins of the first two digits (11 bits each) */
#define NB 1024         /* bins of the last digit (10 bits) */
#define SLICE_MIN 2048  /* logits a slice reads at least */
#define SLICES_MAX 128
#define SLICE_MAX (CT * (65535 / 32)) /* a warp's 16-bit counts cannot overflow */

enum { PH_BAD, PH_SKIP, PH_HIST, PH_COLLECT, PH_TIES, PH_SORT };

/* one slice's share of the first pass */
struct cpart {
    unsigned long long best;
    double s; /* sum of exp(x - m) over the slice */
    float m;  /* the slice's max (-inf: none finite) */
    int bad;
};
/* where a row's selection stands; only decide writes it, but for n */
struct crow {
    double lse;
    int amax, phase, lev, w, K, ties;
    unsigned prefix; /* the top w bits of the K-th largest key */
    unsigned above;  /* keys whose top w bits exceed prefix */
    unsigned eq;     /* keys whose top w bits equal it */
    unsigned n;      /* candidates appended so far (atomic) */
};

static __device__ __forceinline__ unsigned fkey(float x) {
    unsigned u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
/* larger rank = more probable; equal logits: lower id ranks higher. Every
 * finite logit's rank is > 0, so 0 pads the sort. */
static __device__ __forceinline__ unsigned long long rank_of(unsigned key, int id) {
    return ((unsigned long long)key << 32) | (unsigned long long)(0xffffffffu - (unsigned)id);
}
static __device__ __forceinline__ int id_of(unsigned long long r) { return (int)(0xffffffffu - (unsigned)(r & 0xffffffffu)); }
static __device__ __forceinline__ int lev_shift(int lev) { return lev == 0 ? 21 : lev == 1 ? 10 : 0; }
static __device__ __forceinline__ int lev_bins(int lev) { return lev == 2 ? NB : NB0; }

/* A block's shared memory for logits: WARPS private histograms of NB0
 * 16-bit counts (two a word), or, when collecting, the block's candidates
 * before they go to the row's buffer. */
union cshared {
    unsigned wh[WARPS][NB0 / 2];
    unsigned long long stage[CAND_MAX];
};

static __device__ __forceinline__ void whist_zero(cshared *sm) {
    unsigned *w = &sm->wh[0][0];
    for (int j = threadIdx.x; j < WARPS * NB0 / 2; j += CT) w[j] = 0;
    __syncthreads();
}
/* Counts bin in this warp's own histogram: lanes of different warps never
 * meet on a counter, and a warp's lanes only on the same bin. */
static __device__ __forceinline__ void whist_add(cshared *sm, unsigned bin) {
    atomicAdd(&sm->wh[threadIdx.x >> 5][bin >> 1], 1u << ((bin & 1u) << 4));
}
/* Merges the warps' histograms once and adds them into the row's with one
 * global atomic per nonzero bin (logits fill few), exact in whatever
 * order the slices land; slice_out (NULL: none) gets the slice's counts. */
static __device__ __forceinline__ void whist_flush(const cshared *sm, int nb, unsigned *row_hist, unsigned *slice_out) {
    __syncthreads();
    for (int j = threadIdx.x; j < nb; j += CT) {
        unsigned c = 0;
        for (int w = 0; w < WARPS; w++) c += (sm->wh[w][j >> 1] >> ((j & 1) << 4)) & 0xffffu;
        if (c) atomicAdd(&row_hist[j], c);
        if (slice_out) slice_out[j] = c;
    }
}
/* The block's staged candidates (n of them) into the row's buffer at an
 * offset reserved with one global atomic; all threads call it. */
static __device__ __forceinline__ void stage_flush(const cshared *sm, const unsigned *n, unsigned *row_n,
                                                   unsigned long long *cand, unsigned *base) {
    __syncthreads();
    if (threadIdx.x == 0) *base = *n ? atomicAdd(row_n, *n) : 0u;
    __syncthreads();
    const unsigned n_ = min(*n, (unsigned)CAND_MAX); /* decide guarantees room; the bounds guard memory */
    for (unsigned j = threadIdx.x; j < n_; j += CT)
        if (*base + j < CAND_MAX) cand[*base + j] = sm->stage[j];
}

__global__ void __launch_bounds__(CT) scan_kernel(const float *logits, int V, int L, int S, int hist_on, cpart *parts,
                                                  unsigned *hist) {
    __shared__ cshared sm;
    __shared__ double redd[32];
    __shared__ unsigned long long redu[32];
    __shared__ float redf[32];
    __shared__ int redi[32];
    const int s = blockIdx.x, g = blockIdx.y, tid = threadIdx.x;
    const int lo = s * L, hi = min(V, lo + L);
    const float *x = logits + (size_t)g * V;
    if (hist_on) whist_zero(&sm);
    int bad = 0;
    unsigned long long best = 0;
    float m = -INFINITY; /* this thread's running max and sum of exp(x - m) */
    double sum = 0;
    for (int i = lo + tid; i < hi; i += CT) {
        const float v = x[i];
        if (!isfinite(v)) {
            bad = 1;
            continue;
        }
        const unsigned key = fkey(v);
        unsigned long long rk = rank_of(key, i);
        best = rk > best ? rk : best;
        if (v > m) sum = sum * (double)expf(m - v) + 1.0, m = v;
        else sum += (double)expf(v - m);
        if (hist_on) whist_add(&sm, key >> 21);
    }
    bad = block_sum(bad, redi);
    best = block_max(best, redu, 0ull);
    const float mx = block_max(m, redf, -INFINITY);
    sum = block_sum(m > -INFINITY ? sum * exp((double)m - (double)mx) : 0.0, redd);
    if (tid == 0) {
        cpart p;
        p.best = best, p.s = sum, p.m = mx, p.bad = bad;
        parts[(size_t)g * S + s] = p;
    }
    if (hist_on) whist_flush(&sm, NB0, hist + (size_t)g * NB0, NULL);
}

__global__ void __launch_bounds__(RT) decide_kernel(int V, int S, int K, int first, const cpart *parts,
                                                    unsigned *hist, crow *rows) {
    __shared__ unsigned h[NB0];
    __shared__ int scan[RT];
    __shared__ int s_d;
    __shared__ unsigned s_cum;
    const int g = blockIdx.x, tid = threadIdx.x;
    crow *r = rows + g;
    if (tid == 0) {
        s_d = 0, s_cum = 0; /* found below; what a row gets if the counts were ever short of K */
        if (first) { /* the slices in slice order: the same sums for the same slicing */
            const cpart *p = parts + (size_t)g * S;
            int bad = 0;
            unsigned long long best = 0;
            float M = -INFINITY;
            for (int s = 0; s < S; s++) {
                bad |= p[s].bad;
                best = p[s].best > best ? p[s].best : best;
                M = p[s].m > M ? p[s].m : M;
            }
            double sum = 0;
            for (int s = 0; s < S; s++)
                if (p[s].m > -INFINITY) sum += p[s].s * exp((double)p[s].m - (double)M);
            r->lse = (double)M + log(sum);
            r->amax = id_of(best);
            r->phase = bad ? PH_BAD : K > 0 ? PH_HIST : PH_SKIP;
            r->lev = 0, r->w = 0, r->K = K, r->ties = 0;
            r->prefix = 0, r->above = 0, r->eq = (unsigned)V, r->n = 0;
        } else if (r->phase == PH_COLLECT || r->phase == PH_TIES) {
            r->phase = PH_SORT;
        }
    }
    __syncthreads();
    if (r->phase != PH_HIST) return; /* block-uniform: read after the barrier */

    /* the histogram the last pass built, zeroed for the next one */
    const int lev = r->lev, nb = lev_bins(lev), bits = lev == 2 ? 10 : 11;
    unsigned *rh = hist + (size_t)g * NB0;
    for (int j = tid; j < nb; j += RT) h[j] = rh[j], rh[j] = 0;
    __syncthreads();
    /* the highest bin d with (count above d) + h[d] >= krem: thread t holds
     * bins nb-1-t*per down to nb-(t+1)*per, the scan gives the count above */
    const unsigned krem = (unsigned)K - r->above;
    const int per = nb / RT, top = nb - 1 - tid * per;
    int local = 0;
    for (int b = 0; b < per; b++) local += (int)h[top - b];
    const unsigned pre = (unsigned)block_exscan(local, scan, NULL);
    if (pre < krem && pre + (unsigned)local >= krem) { /* exactly one thread */
        unsigned cum = pre;
        for (int b = 0; b < per; b++) {
            if (cum + h[top - b] >= krem) {
                s_d = top - b, s_cum = cum;
                break;
            }
            cum += h[top - b];
        }
    }
    __syncthreads();
    if (tid == 0) {
        const int d = s_d;
        r->above += s_cum;
        r->eq = h[d];
        r->prefix = (r->prefix << bits) | (unsigned)d;
        r->w += bits;
        if (r->above + r->eq <= CAND_MAX) r->phase = PH_COLLECT;
        else if (lev_shift(lev) == 0) r->phase = PH_TIES, r->ties = 1;
        else r->lev = lev + 1;
    }
}

__global__ void __launch_bounds__(CT) pass_kernel(const float *logits, int V, int L, int S, crow *rows, unsigned *hist,
                                                  unsigned *shist, unsigned long long *cands) {
    __shared__ cshared sm;
    __shared__ int scan[CT];
    __shared__ unsigned s_n, s_base;
    const int s = blockIdx.x, g = blockIdx.y, tid = threadIdx.x;
    const int lo = s * L, hi = min(V, lo + L);
    const float *x = logits + (size_t)g * V;
    crow *rp = rows + g;
    const int phase = rp->phase, w = rp->w;
    const unsigned prefix = rp->prefix;
    unsigned long long *cand = cands + (size_t)g * CAND_MAX;
    if (phase == PH_HIST) {
        const int lev = rp->lev, nb = lev_bins(lev), shift = lev_shift(lev);
        whist_zero(&sm);
        for (int i = lo + tid; i < hi; i += CT) {
            const unsigned key = fkey(x[i]);
            if ((key >> (32 - w)) == prefix) whist_add(&sm, (key >> shift) & (unsigned)(nb - 1));
        }
        /* the last digit: each slice's count of each key, for the ordered tie collect */
        whist_flush(&sm, nb, hist + (size_t)g * NB0, lev == 2 ? shist + ((size_t)g * S + s) * NB : NULL);
    } else if (phase == PH_COLLECT || phase == PH_TIES) {
        /* COLLECT: every key whose top w >= 11 bits are at or above prefix;
         * TIES (prefix is the K-th largest key T, w = 32): the keys above T
         * here, the lowest-id ones equal to it below */
        const unsigned T = prefix;
        if (tid == 0) s_n = 0;
        __syncthreads();
        for (int i = lo + tid; i < hi; i += CT) {
            const unsigned key = fkey(x[i]);
            if (phase == PH_COLLECT ? (key >> (32 - w)) >= prefix : key > T) {
                const unsigned at = atomicAdd(&s_n, 1u);
                if (at < CAND_MAX) sm.stage[at] = rank_of(key, i);
            }
        }
        stage_flush(&sm, &s_n, &rp->n, cand, &s_base);
        if (phase == PH_TIES) { /* ties at the boundary in id order, after the slices before this one */
            const unsigned above = rp->above;
            const int need = rp->K - (int)above;
            int base = 0;
            for (int t = 0; t < s; t++) base += (int)shist[((size_t)g * S + t) * NB + (T & (NB - 1))];
            for (int i0 = lo; i0 < hi && base < need; i0 += CT) { /* block-uniform */
                const int i = i0 + tid;
                const int f = i < hi && fkey(x[i]) == T;
                int total;
                const int at = base + block_exscan(f, scan, &total);
                if (f && at < need) cand[above + at] = rank_of(T, i);
                base += total;
            }
        }
    }
}

__global__ void __launch_bounds__(RT) final_kernel(const float *logits, int V, compact_args a, const crow *rows,
                                                   const unsigned long long *cands) {
    __shared__ double redd[32];
    __shared__ unsigned long long cand[CAND_MAX];
    const int g = blockIdx.x, tid = threadIdx.x;
    const float *x = logits + (size_t)g * V;
    const crow r = rows[g];
    if (r.phase == PH_BAD) { /* block-uniform: every thread leaves here */
        if (tid == 0) {
            if (a.bad) a.bad[g] = 1;
            if (a.k) a.k[g] = 0;
        }
        return;
    }
    const double lse = r.lse;
    if (tid == 0) {
        if (a.bad) a.bad[g] = 0;
        if (a.argmax) a.argmax[g] = r.amax;
    }

    if (a.kmax > 0) {
        const unsigned K = (unsigned)r.K, n = r.ties ? K : min(r.n, (unsigned)CAND_MAX);
        unsigned P = 1;
        while (P < n) P <<= 1;
        const unsigned long long *src = cands + (size_t)g * CAND_MAX;
        for (unsigned j = tid; j < P; j += RT) cand[j] = j < n ? src[j] : 0ull;
        __syncthreads();
        for (unsigned size = 2; size <= P; size <<= 1)
            for (unsigned stride = size >> 1; stride > 0; stride >>= 1) {
                for (unsigned i = tid; i < P; i += RT) {
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
        for (int64_t j = tid; j < n; j += RT) {
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

/* The scratch of G rows of S slices, each part 256-byte aligned:
 * candidates, slice partials, the row histograms (NB0 counts a row), the
 * slices' histograms of the last digit (NB a slice), row states. */
typedef struct {
    unsigned long long *cand;
    cpart *parts;
    unsigned *hist, *shist;
    crow *rows;
} cws;

static size_t ws_carve(char *base, cws *w, size_t G, size_t S) {
    size_t at = 0;
#define CARVE(field, count)                                                                                   \
    do {                                                                                                      \
        w->field = base ? (decltype(w->field))(base + at) : NULL;                                             \
        at += ((count) * sizeof *w->field + 255) / 256 * 256;                                                 \
    } while (0)
    CARVE(cand, G * CAND_MAX);
    CARVE(parts, G * S);
    CARVE(hist, G * NB0);
    CARVE(shist, G * S * NB);
    CARVE(rows, G);
#undef CARVE
    return at;
}

/* The slicing of a row: S slices of L logits (the last one shorter). */
static void slicing(int V, int want, int *S, int *L) {
    int s = want < 1 ? 1 : want > V ? V : want;
    if ((V + s - 1) / s > SLICE_MAX) s = (V + SLICE_MAX - 1) / SLICE_MAX;
    *L = (V + s - 1) / s;
    *S = (V + *L - 1) / *L;
}

int k_compact_slices(int G, int V, int nsm) {
    if (G <= 0 || V <= 0) return 1;
    long want = (2L * (nsm > 0 ? nsm : 1) + G - 1) / G, cap = V / SLICE_MIN;
    if (cap < 1) cap = 1;
    if (want > cap) want = cap;
    return (int)(want > SLICES_MAX ? SLICES_MAX : want);
}

size_t k_compact_ws_bytes(int G, int V, int slices) {
    if (G <= 0 || V <= 0) return 0;
    int S, L;
    slicing(V, slices, &S, &L);
    cws w;
    return ws_carve(NULL, &w, (size_t)G, (size_t)S);
}

void k_compact(const float *logits, int G, int V, const compact_args *a, void *stream) {
    if (G <= 0) return;
    cudaStream_t st = (cudaStream_t)stream;
    int S, L;
    slicing(V, a->slices, &S, &L);
    cws w;
    ws_carve((char *)a->ws, &w, (size_t)G, (size_t)S);
    const int K = a->kmax > 0 ? min(a->kmax, V) : 0;
    if (K > 0) /* the row histograms start at zero; an error is the caller's cudaGetLastError() */
        cudaMemsetAsync(w.hist, 0, (size_t)G * NB0 * sizeof *w.hist, st);
    LAUNCH(scan_kernel, dim3(S, G), CT, 0, st, logits, V, L, S, K > 0, w.parts, w.hist);
    LAUNCH(decide_kernel, G, RT, 0, st, V, S, K, 1, (const cpart *)w.parts, w.hist, w.rows);
    if (K > 0)
        for (int p = 0; p < 3; p++) { /* at most: 10 more bits, 10 more, the collect */
            LAUNCH(pass_kernel, dim3(S, G), CT, 0, st, logits, V, L, S, w.rows, w.hist, w.shist, w.cand);
            if (p < 2) LAUNCH(decide_kernel, G, RT, 0, st, V, S, K, 0, (const cpart *)w.parts, w.hist, w.rows);
        }
    LAUNCH(final_kernel, G, RT, 0, st, logits, V, *a, (const crow *)w.rows, (const unsigned long long *)w.cand);
}
