/* The fused small-batch projections (cuda/gemv.cu) against the unfused
 * chain they replace in a layer: k_rmsnorm, the product, then k_qkv_rope,
 * k_swiglu or the residual add with k_add_bias, on the emulated device with
 * host buffers (as test_gpu_kernels).
 *
 * Two kinds of weights:
 *   - selection rows (each weight row one +-1 or +-2 at a chosen column):
 *     every dot product is then exact, so the fused kernels must give the
 *     chain's bits, which checks the norm prologue (the same bits as
 *     k_rmsnorm), the RoPE pairing, the cache addresses through the page
 *     table, the biases and SwiGLU exactly;
 *   - random rows: only the summation order of the dot products differs,
 *     so float outputs stay within a float32 summation bound and bf16
 *     outputs within one bf16 step.
 * Each runs on three grids: uncapped (a pair split over as many of its
 * block's warps as its rows have 256-column steps, as the o and down
 * products run; all 8 at widths 6,016 and 8,016), capped for two warps a
 * pair (as the qkv product runs on a card) and 3 blocks (one warp a pair,
 * each block looping over many). */
#include "check.h"

#include "../../cuda/kernels.h"
#include "io/safetensors.h"
#include "nn/ops_cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cuda/emu.cc: this test hands host buffers to the launchers directly */
void emu_allow_host_pointers(int on);

static uint64_t rng = 777;
static double urand(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}
static float *frand(size_t n, double scale, double offset) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(offset + scale * urand());
    return p;
}
static uint16_t *brand(size_t n, double scale) {
    uint16_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = st_f32_to_bf16((float)(scale * urand()));
    return p;
}
/* weight rows (OUT, K) each with one +-1 or +-2 at a pseudo-random column */
static uint16_t *selection(int OUT, int K) {
    uint16_t *w = calloc((size_t)OUT * K, sizeof *w);
    for (int o = 0; o < OUT; o++) {
        double u = urand();
        int k = (int)((u + 1) / 2 * K) % K;
        float v = (o % 3 == 0 ? 2.0f : 1.0f) * (u < 0 ? -1.0f : 1.0f);
        w[(size_t)o * K + k] = st_f32_to_bf16(v);
    }
    return w;
}
/* y (n, OUT) = in (n, K) bf16 . W^T in double, rounded to float; sabs the
 * sums of |products| (the float32 error scale) */
static void host_gemm(float *y, double *sabs, const uint16_t *in, const uint16_t *W, int n, int K, int OUT) {
    for (int r = 0; r < n; r++)
        for (int o = 0; o < OUT; o++) {
            double s = 0, a = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)st_bf16_to_f32(in[(size_t)r * K + k]) * st_bf16_to_f32(W[(size_t)o * K + k]);
                s += p, a += fabs(p);
            }
            y[(size_t)r * OUT + o] = (float)s;
            if (sabs) sabs[(size_t)r * OUT + o] = a;
        }
}
/* the distance of two bf16 values in representable steps */
static int bf_steps(uint16_t a, uint16_t b) {
    int ia = a & 0x8000 ? -(int)(a & 0x7fff) : (int)a, ib = b & 0x8000 ? -(int)(b & 0x7fff) : (int)b;
    return abs(ia - ib);
}
/* largest step distance over n values; *ndiff how many differ at all */
static int bf_worst(const uint16_t *a, const uint16_t *b, size_t n, size_t *ndiff) {
    int w = 0;
    *ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = bf_steps(a[i], b[i]);
        w = d > w ? d : w;
        *ndiff += d > 0;
    }
    return w;
}
/* float error allowed for a dot product of K terms whose |terms| sum to
 * sabs, summed in any order the kernels use: each lane adds at most K/32
 * terms in sequence (8 at least), then five shuffle rounds and up to 8
 * partial sums; twice that, plus the value's own rounding and the
 * epilogue's few operations */
static double dot_bound(int K, double sabs, double ref) {
    return 2.0 * (K / 32 + 8 + 13) * ldexp(sabs, -24) + 8 * ldexp(fabs(ref), -24) + 1e-30;
}

/* maxblocks of grid t (above) for `pairs` row pairs on blocks of `warps` warps */
#define GRIDS 3
static int grid(int t, int pairs, int warps) { return t == 0 ? 0 : t == 1 ? (pairs + warps / 2 - 1) / (warps / 2) : 3; }

/* the page table of 3 slots of 2 pages of 64 positions, in shuffled pages */
static const int PTAB[6] = {4, 1, 0, 5, 3, 2};
static const int SEQ[GEMV_MAX_ROWS] = {2, 0, 1, 0}, POS[GEMV_MAX_ROWS] = {70, 3, 127, 4};

static void test_qkv(int n, int NH, int NKV, int HD, int C, int with_bias, int exact) {
    const int QD = NH * HD, KD = NKV * HD, OUT = QD + 2 * KD;
    const kv_pages kv = {PTAB, 64, 2};
    const size_t csz = (size_t)6 * NKV * 64 * HD;
    const float eps = 1e-6f;
    float *x = frand((size_t)n * C, 2, 0), *lnw = frand(C, 0.5, 1);
    float *bias = with_bias ? frand(OUT, 0.3, 0) : NULL, inv[128];
    rope_inv_freq(inv, HD, 10000.0f);
    uint16_t *W = exact ? selection(OUT, C) : brand((size_t)OUT * C, 0.1);

    /* the chain */
    uint16_t *xn = malloc((size_t)n * C * 2);
    float *qkv = malloc((size_t)n * OUT * 4), *qr = malloc((size_t)n * QD * 4);
    double *sabs = malloc((size_t)n * OUT * sizeof *sabs);
    uint16_t *kr = malloc(csz * 2), *vr = malloc(csz * 2);
    for (size_t i = 0; i < csz; i++) kr[i] = vr[i] = 0x7fc1; /* a NaN no kernel writes: untouched rows show */
    k_rmsnorm(xn, x, lnw, NULL, n, C, eps, NULL);
    host_gemm(qkv, sabs, xn, W, n, C, OUT);
    k_qkv_rope(qr, kr, vr, qkv, bias, inv, SEQ, POS, n, NH, NKV, HD, kv, NULL);

    float *q = malloc((size_t)n * QD * 4);
    uint16_t *kc = malloc(csz * 2), *vc = malloc(csz * 2);
    const int pairs = (NH + NKV) * HD / 2 + KD / 2;
    for (int t = 0; t < GRIDS; t++) {
        for (size_t i = 0; i < csz; i++) kc[i] = vc[i] = 0x7fc1;
        k_gemv_qkv(q, kc, vc, x, lnw, eps, W, bias, inv, SEQ, POS, n, C, NH, NKV, HD, kv, grid(t, pairs, 8), NULL);
        size_t nk, nv;
        int wk = bf_worst(kc, kr, csz, &nk), wv = bf_worst(vc, vr, csz, &nv);
        if (exact) {
            int same = 1;
            for (size_t i = 0; i < (size_t)n * QD; i++) same &= q[i] == qr[i];
            CHECKF(same && wk == 0 && wv == 0, "qkv n %d NH %d NKV %d HD %d C %d bias %d grid %d, selection weights: "
                   "q %s, %zu k and %zu v cache values differ", n, NH, NKV, HD, C, with_bias, t,
                   same ? "same" : "differs", nk, nv);
            continue;
        }
        /* q's bound: the rotation pair's two dot bounds */
        int bad = 0, half = HD / 2;
        for (int r = 0; r < n; r++)
            for (int j = 0; j < QD; j++) {
                int i = j % HD, a = j - i + (i % half), b = a + half;
                double ref = qr[(size_t)r * QD + j];
                double bnd = dot_bound(C, sabs[(size_t)r * OUT + a] + sabs[(size_t)r * OUT + b], ref);
                bad += !(fabs(q[(size_t)r * QD + j] - ref) <= bnd);
            }
        CHECKF(bad == 0 && wk <= 1 && wv <= 1, "qkv n %d NH %d NKV %d HD %d C %d bias %d grid %d: %d q out of bound, "
               "cache steps k %d v %d", n, NH, NKV, HD, C, with_bias, t, bad, wk, wv);
        /* the untouched cache rows stayed untouched */
        size_t left = 0, leftr = 0;
        for (size_t i = 0; i < csz; i++) left += kc[i] == 0x7fc1, leftr += kr[i] == 0x7fc1;
        CHECK(left == leftr && left == csz - (size_t)n * KD);
    }
    free(q), free(kc), free(vc);
    free(x), free(lnw), free(bias), free(W), free(xn), free(qkv), free(qr), free(sabs), free(kr), free(vr);
}

static void test_swiglu(int n, int C, int I, int exact) {
    const float eps = 1e-6f;
    float *x = frand((size_t)n * C, 2, 0), *lnw = frand(C, 0.5, 1);
    uint16_t *W = exact ? selection(2 * I, C) : brand((size_t)2 * I * C, 0.1);
    uint16_t *xn = malloc((size_t)n * C * 2), *hr = malloc((size_t)n * I * 2);
    float *gu = malloc((size_t)n * 2 * I * 4);
    k_rmsnorm(xn, x, lnw, NULL, n, C, eps, NULL);
    host_gemm(gu, NULL, xn, W, n, C, 2 * I);
    k_swiglu(hr, gu, n, I, NULL);
    uint16_t *h = malloc((size_t)n * I * 2);
    for (int t = 0; t < GRIDS; t++) {
        k_gemv_swiglu(h, x, lnw, eps, W, n, C, I, grid(t, I, 8), NULL);
        size_t nd;
        int w = bf_worst(h, hr, (size_t)n * I, &nd);
        CHECKF(exact ? w == 0 : w <= 1, "swiglu n %d C %d I %d %s grid %d: %zu of %d outputs differ, by up to %d bf16 "
               "steps", n, C, I, exact ? "selection" : "random", t, nd, n * I, w);
    }
    free(x), free(lnw), free(W), free(xn), free(hr), free(gu), free(h);
}

static void test_add(int n, int K, int OUT, int with_bias, int exact) {
    float *x0 = frand((size_t)n * OUT, 4, 0), *bias = with_bias ? frand(OUT, 0.3, 0) : NULL;
    uint16_t *in = brand((size_t)n * K, 2), *W = exact ? selection(OUT, K) : brand((size_t)OUT * K, 0.1);
    float *d = malloc((size_t)n * OUT * 4), *xr = malloc((size_t)n * OUT * 4), *x = malloc((size_t)n * OUT * 4);
    double *sabs = malloc((size_t)n * OUT * sizeof *sabs);
    host_gemm(d, sabs, in, W, n, K, OUT);
    /* cuBLAS's beta = 1 (x + product), then k_add_bias */
    for (size_t i = 0; i < (size_t)n * OUT; i++) {
        xr[i] = d[i] + x0[i];
        if (bias) xr[i] += bias[i % OUT];
    }
    for (int t = 0; t < GRIDS; t++) {
        memcpy(x, x0, (size_t)n * OUT * 4);
        k_gemv_add(x, in, W, bias, n, K, OUT, grid(t, OUT / 2, 4), NULL);
        int bad = 0;
        for (size_t i = 0; i < (size_t)n * OUT; i++)
            bad += exact ? x[i] != xr[i] : !(fabs(x[i] - xr[i]) <= dot_bound(K, sabs[i], xr[i]) + ldexp(fabs(x0[i]), -23));
        CHECKF(bad == 0, "add n %d K %d OUT %d bias %d %s grid %d: %d of %d outputs off", n, K, OUT, with_bias,
               exact ? "selection" : "random", t, bad, n * OUT);
    }
    free(x0), free(bias), free(in), free(W), free(d), free(xr), free(sabs), free(x);
}

int main(void) {
    emu_allow_host_pointers(1);
    CHECK_SEED(rng);
    for (int exact = 1; exact >= 0; exact--) {
        for (int n = 1; n <= GEMV_MAX_ROWS; n++) {
            test_qkv(n, 4, 2, 16, 64, n != 2, exact);
            test_swiglu(n, 64, 40, exact);
            test_add(n, 64, 96, n != 2, exact);
        }
        test_qkv(1, 12, 2, 128, 256, 1, exact); /* Qwen2.5-Math-1.5B's heads */
        test_qkv(3, 14, 2, 64, 896, 1, exact);  /* Qwen2.5-0.5B's heads and width */
        test_qkv(2, 6, 6, 12, 72, 0, exact);    /* HD not a multiple of 8 */
        test_swiglu(4, 896, 4864 / 8, exact);
        test_add(1, 4864 / 8, 896, 0, exact); /* the down product's shape, narrowed */
        test_add(3, 1536, 1536, 1, exact);    /* o with 1.5B's width */
    }
    /* what the forward leaves to the unfused layer */
    CHECK(k_gemv_fits(1, 1536, 1536, 256, 8960) && k_gemv_fits(4, 896, 896, 128, 4864));
    CHECK(!k_gemv_fits(0, 64, 64, 32, 64) && !k_gemv_fits(GEMV_MAX_ROWS + 1, 64, 64, 32, 64));
    CHECK(!k_gemv_fits(1, 68, 64, 32, 64) && !k_gemv_fits(1, 64, 60, 32, 64) && !k_gemv_fits(1, 64, 64, 31, 64) &&
          !k_gemv_fits(1, 64, 64, 32, 60));
    /* the normed rows within GEMV_SMEM_MAX: 4 rows of 6016 and 3 of 8016
     * fit, 8 columns more do not; the widest of each launched, for
     * cuda/resources to check static + dynamic shared memory against the
     * 48 KiB a block gets without an opt-in */
    CHECK(k_gemv_fits(4, 6016, 64, 32, 64) && !k_gemv_fits(4, 6024, 64, 32, 64));
    CHECK(k_gemv_fits(3, 8016, 64, 32, 64) && !k_gemv_fits(3, 8024, 64, 32, 64));
    test_swiglu(4, 6016, 16, 1);
    test_qkv(3, 2, 1, 16, 8016, 1, 1);
    CHECK_DONE();
}
