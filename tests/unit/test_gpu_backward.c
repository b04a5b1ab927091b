/* The CUDA backend's backward kernels (cuda/backward.h) against their CPU
 * twins in lib/nn/backward.c (verified against PyTorch/PEFT by
 * test_backward and test_trainer), on the emulated device, where device
 * memory is host memory; buffers still go through device copies
 * (devcopy, back), so the test is valid CUDA and links against the real
 * backend as well (docs/CUDA.md). Inputs are random; every gradient buffer starts
 * from the same random values on both sides, so the tests also check that
 * the kernels accumulate (+=) and leave alone what they should not touch.
 *
 * Tolerance: both sides compute in float32 and differ only in summation
 * order (block reductions, tiles, an online softmax and exp(s - lse)
 * instead of exp(s - max) / sum), so the error is a few float32 roundings
 * of the largest terms: max |dev - cpu| / max |cpu| < 1e-5 per tensor
 * (float32 epsilon is 1.2e-7, so this allows ~80 ulps of accumulated
 * rounding; a wrong index, mask or formula gives errors of order 1e-2 to 1). */
#include "check.h"
#include "randf.h"

#include "../../cuda/backward.h"
#include "../../cuda/devmem.h"
#include "../../cuda/dropout.h"
#include "nn/backward.h"
#include "nn/ops_cpu.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5


/* Device copies of host buffers for one launch: devcopy(h, bytes) (DV,
 * DI: counted in floats, ints) uploads h (the same device copy again for
 * the same h, so in-place calls stay in place; NULL stays NULL), back()
 * downloads every copy into its host buffer and frees them. A failing CUDA call ends the test (exit 2): every later
 * check would be meaningless. */
static struct {
    void *h, *d;
    size_t n;
} mirror[32];
static int nmirror;
static void *devcopy(const void *h, size_t n) {
    if (!h) return NULL;
    for (int i = 0; i < nmirror; i++)
        if (mirror[i].h == h) return mirror[i].d;
    void *d;
    if (nmirror == 32 || dev_upload(&d, h, n)) exit(2);
    mirror[nmirror].h = (void *)h, mirror[nmirror].d = d, mirror[nmirror++].n = n;
    return d;
}
static void back(void) {
    for (int i = 0; i < nmirror; i++) {
        if (dev_download(mirror[i].h, mirror[i].d, mirror[i].n)) exit(2);
        dev_free(mirror[i].d);
    }
    nmirror = 0;
}
#define DV(p, n) ((float *)devcopy((p), (size_t)(n) * sizeof(float)))
#define DI(p, n) ((int *)devcopy((p), (size_t)(n) * sizeof(int)))


/* dinp and dw, each alone and together; C not a multiple of 32, N = 1, N
 * not a multiple of the colsum row chunks. */
static void test_rmsnorm(int N, int C) {
    /* inputs of scale 0.1: rstd ~ 17, so r, r^2 and r^3 differ plainly */
    float *x = frand((size_t)N * C, 0.1), *w = frand(C, 1), *g = frand((size_t)N * C, 1);
    float *y = malloc((size_t)N * C * 4), *rstd = malloc((size_t)N * 4);
    rmsnorm_forward(y, rstd, x, w, N, C, 1e-6f);
    float *dx0 = frand((size_t)N * C, 1), *dw0 = frand(C, 1), *ws = calloc((size_t)BWD_COLSUM_PARTS * C, 4);
    for (int mode = 0; mode < 3; mode++) { /* 0 both, 1 dinp only, 2 dw only */
        float *dx = fcopy(dx0, (size_t)N * C), *dxr = fcopy(dx0, (size_t)N * C);
        float *dw = fcopy(dw0, C), *dwr = fcopy(dw0, C);
        k_rmsnorm_backward(mode == 2 ? NULL : DV(dx, N * C), mode == 1 ? NULL : DV(dw, C), DV(g, N * C), DV(x, N * C),
                           DV(w, C), DV(rstd, N), N, C, DV(ws, BWD_COLSUM_PARTS * C), NULL);
        back();
        rmsnorm_backward(mode == 2 ? NULL : dxr, mode == 1 ? NULL : dwr, g, x, w, rstd, N, C);
        double ex = check_delta_err(dx, dxr, dx0, (size_t)N * C), ew = check_delta_err(dw, dwr, dw0, C);
        CHECKF(ex < TOL && ew < TOL, "rmsnorm N %d C %d mode %d: dinp %g dw %g", N, C, mode, ex, ew);
        /* the skipped gradient is untouched */
        if (mode == 2) CHECK(!memcmp(dx, dx0, (size_t)N * C * 4));
        if (mode == 1) CHECK(!memcmp(dw, dw0, (size_t)C * 4));
        free(dx), free(dxr), free(dw), free(dwr);
    }
    free(x), free(w), free(g), free(y), free(rstd), free(dx0), free(dw0), free(ws);
}

static void test_bias(int N, int OC) {
    float *g = frand((size_t)N * OC, 1), *db0 = frand(OC, 1), *db = fcopy(db0, OC), *dbr = fcopy(db0, OC);
    float *ws = calloc((size_t)BWD_COLSUM_PARTS * OC, 4);
    k_bias_backward(DV(db, OC), DV(g, N * OC), N, OC, DV(ws, BWD_COLSUM_PARTS * OC), NULL);
    back();
    bias_backward(dbr, g, N, OC);
    double e = check_delta_err(db, dbr, db0, OC);
    CHECKF(e < TOL, "bias N %d OC %d: %g", N, OC, e);
    k_bias_backward(NULL, DV(g, N * OC), N, OC, NULL, NULL); /* NULL: nothing (would crash otherwise) */
    back();
    free(g), free(db0), free(db), free(dbr), free(ws);
}

/* Tokens drawn from a vocabulary smaller than the rows, so most repeat:
 * every row's gradient must reach its token's row, bit for bit the CPU's
 * (the same order of adds). */
static void test_embedding(int N, int V, int C) {
    float *g = frand((size_t)N * C, 1), *d0 = frand((size_t)V * C, 1), *d = fcopy(d0, (size_t)V * C),
          *dr = fcopy(d0, (size_t)V * C);
    int *tok = malloc((size_t)N * sizeof *tok);
    for (int i = 0; i < N; i++) tok[i] = (int)((urand() + 1.0) * 0.5 * V) % V;
    k_embedding_backward(DV(d, (size_t)V * C), DV(g, (size_t)N * C), DI(tok, N), N, C, NULL);
    back();
    embedding_backward(dr, g, tok, N, C);
    CHECKF(!memcmp(d, dr, (size_t)V * C * sizeof(float)), "embedding N %d V %d C %d: %g", N, V, C,
           check_delta_err(d, dr, d0, (size_t)V * C));
    k_embedding_backward(NULL, DV(g, (size_t)N * C), DI(tok, N), N, C, NULL); /* NULL: nothing */
    back();
    free(g), free(d0), free(d), free(dr), free(tok);
}

/* Out of place and in place (dinp == dout); positions up to 4000, where
 * float32 angles are large. */
static void test_rope(int N, int H, int HD) {
    size_t n = (size_t)N * H * HD;
    float *g = frand(n, 1), *d = frand(n, 1), *dr = frand(n, 1), inv[128];
    int *pos = malloc(N * sizeof *pos);
    for (int i = 0; i < N; i++) pos[i] = i % 3 == 2 ? 4000 - i : i;
    rope_inv_freq(inv, HD, 1000000.0f);
    k_rope_backward(DV(d, n), DV(g, n), DV(inv, HD / 2), DI(pos, N), N, H, HD, NULL);
    back();
    rope_backward(dr, g, pos, N, H, HD, 1000000.0f);
    double e = check_rel_err(d, dr, n);
    CHECKF(e < TOL, "rope N %d H %d HD %d: %g", N, H, HD, e);
    float *gi = fcopy(g, n);
    k_rope_backward(DV(gi, n), DV(gi, n), DV(inv, HD / 2), DI(pos, N), N, H, HD, NULL);
    back();
    e = check_rel_err(gi, dr, n);
    CHECKF(e < TOL, "rope in place N %d H %d HD %d: %g", N, H, HD, e);
    free(g), free(d), free(dr), free(pos), free(gi);
}

/* Separate tensors (ld = I), then the forward's packed [gate | up] rows. */
static void test_swiglu(int N, int I) {
    size_t n = (size_t)N * I;
    float *gate = frand(n, 4), *up = frand(n, 2), *go = frand(n, 1);
    float *dg0 = frand(n, 1), *du0 = frand(n, 1), *dg = fcopy(dg0, n), *du = fcopy(du0, n);
    float *dgr = fcopy(dg0, n), *dur = fcopy(du0, n);
    k_swiglu_backward(DV(dg, n), DV(du, n), DV(go, n), DV(gate, n), DV(up, n), N, I, I, NULL);
    back();
    swiglu_backward(dgr, dur, go, gate, up, (long)n);
    double eg = check_delta_err(dg, dgr, dg0, n), eu = check_delta_err(du, dur, du0, n);
    CHECKF(eg < TOL && eu < TOL, "swiglu N %d I %d: dgate %g dup %g", N, I, eg, eu);
    float *gu = malloc(2 * n * 4), *dgu = malloc(2 * n * 4);
    for (int r = 0; r < N; r++) {
        memcpy(gu + (size_t)r * 2 * I, gate + (size_t)r * I, (size_t)I * 4);
        memcpy(gu + (size_t)r * 2 * I + I, up + (size_t)r * I, (size_t)I * 4);
        memset(dgu + (size_t)r * 2 * I, 0, (size_t)2 * I * 4);
    }
    memset(dgr, 0, n * 4), memset(dur, 0, n * 4);
    swiglu_backward(dgr, dur, go, gate, up, (long)n);
    float *d_dgu = DV(dgu, 2 * n), *d_gu = DV(gu, 2 * n);
    k_swiglu_backward(d_dgu, d_dgu + I, DV(go, n), d_gu, d_gu + I, N, I, 2 * I, NULL);
    back();
    int bad = 0;
    for (int r = 0; r < N; r++)
        for (int i = 0; i < I; i++) {
            bad += fabsf(dgu[(size_t)r * 2 * I + i] - dgr[(size_t)r * I + i]) > 1e-5f * (1 + fabsf(dgr[(size_t)r * I + i]));
            bad += fabsf(dgu[(size_t)r * 2 * I + I + i] - dur[(size_t)r * I + i]) > 1e-5f * (1 + fabsf(dur[(size_t)r * I + i]));
        }
    CHECKF(bad == 0, "swiglu packed N %d I %d: %d values off", N, I, bad);
    free(gate), free(up), free(go), free(dg0), free(du0), free(dg), free(du), free(dgr), free(dur), free(gu), free(dgu);
}

/* The mask is the CPU's bit for bit (the same integer hash, the same float
 * factor, one multiply), so the forward is compared exactly; the
 * backward's += may become one fused multiply-add on a card, hence TOL. */
static void test_dropout(size_t n, float p, uint64_t key) {
    float *x = frand(n, 1), *y = malloc(n * 4), *yr = malloc(n * 4);
    k_dropout(DV(y, n), DV(x, n), n, p, key, NULL);
    back();
    dropout_forward(yr, x, (long)n, p, key);
    CHECKF(!memcmp(y, yr, n * 4), "dropout n %zu p %g: masks differ", n, p);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) zeros += y[i] == 0.0f;
    CHECKF(zeros > 0.5 * p * n && zeros < 1.5 * p * n, "dropout p %g: %zu of %zu dropped", p, zeros, n);
    float *xi = fcopy(x, n);
    k_dropout(DV(xi, n), DV(xi, n), n, p, key, NULL); /* in place */
    back();
    CHECK(!memcmp(xi, yr, n * 4));
    float *d0 = frand(n, 1), *d = fcopy(d0, n), *dr = fcopy(d0, n);
    k_dropout_backward(DV(d, n), DV(x, n), n, p, key, NULL);
    back();
    dropout_backward(dr, x, (long)n, p, key);
    double e = check_delta_err(d, dr, d0, n);
    CHECKF(e < TOL, "dropout backward n %zu p %g: %g", n, p, e);
    free(x), free(y), free(yr), free(xi), free(d0), free(d), free(dr);
}

/* Rows as the trainer packs them, plus what inference-style packing adds:
 * slot 0 a sequence of 45 rows (two 32-key tiles and a half), slot 1 six
 * rows then a seventh later in the row order, slot 2 ten rows with one
 * position repeated (a query-only row attends to the same keys as the row
 * before it), slot 3 one row at the last position, Tmax - 1 (80 is no
 * multiple of 32, so the last key tile is partial). The whole cache is
 * random: keys no row reaches must get no gradient. */
static void test_attention(int NH, int NKV, int HD, int single) {
    int B = 4, Tmax = 80, QD = NH * HD;
    int seqs[64], poss[64], N = 0;
    if (single) { /* N = 1: a decode row */
        seqs[N] = 2, poss[N++] = 37;
    } else {
        for (int t = 0; t < 45; t++) seqs[N] = 0, poss[N++] = t;
        for (int t = 0; t < 6; t++) seqs[N] = 1, poss[N++] = t;
        for (int t = 0; t < 10; t++) seqs[N] = 2, poss[N++] = t;
        seqs[N] = 2, poss[N++] = 9;
        seqs[N] = 1, poss[N++] = 6;
        seqs[N] = 3, poss[N++] = Tmax - 1;
    }
    size_t csz = (size_t)B * NKV * Tmax * HD;
    float *q = frand((size_t)N * QD, 3), *go = frand((size_t)N * QD, 1), *kc = frand(csz, 1), *vc = frand(csz, 1);
    float *dq0 = frand((size_t)N * QD, 1), *dk0 = frand(csz, 1), *dv0 = frand(csz, 1);
    float *dq = fcopy(dq0, (size_t)N * QD), *dk = fcopy(dk0, csz), *dv = fcopy(dv0, csz);
    float *dqr = fcopy(dq0, (size_t)N * QD), *dkr = fcopy(dk0, csz), *dvr = fcopy(dv0, csz);
    float *stats = malloc((size_t)2 * N * NH * 4);
    int rc = k_attention_backward(DV(dq, N * QD), DV(dk, csz), DV(dv, csz), DV(stats, 2 * N * NH), DV(go, N * QD),
                                  DV(q, N * QD), DV(kc, csz), DV(vc, csz), DI(seqs, N), DI(poss, N), N, NH, NKV, HD, B,
                                  Tmax, NULL);
    back();
    CHECK(rc == 0);
    attention_backward(dqr, dkr, dvr, go, q, kc, vc, seqs, poss, N, NH, NKV, HD, Tmax, 1);
    double eq = check_delta_err(dq, dqr, dq0, (size_t)N * QD), ek = check_delta_err(dk, dkr, dk0, csz), ev = check_delta_err(dv, dvr, dv0, csz);
    CHECKF(eq < TOL && ek < TOL && ev < TOL, "attention NH %d NKV %d HD %d N %d: dq %g dk %g dv %g", NH, NKV, HD, N, eq,
           ek, ev);
    /* stats: lse and delta of query (n, h) recomputed here in double */
    double es = 0, ed = 0;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH; h++) {
            const float *qr = q + (size_t)n * QD + (size_t)h * HD, *g = go + (size_t)n * QD + (size_t)h * HD;
            size_t base = ((size_t)seqs[n] * NKV + h / (NH / NKV)) * Tmax * HD;
            double mx = -INFINITY, s[128], dp[128], sum = 0, pdp = 0;
            for (int t = 0; t <= poss[n]; t++) {
                double a = 0, b = 0;
                for (int d = 0; d < HD; d++) a += (double)qr[d] * kc[base + (size_t)t * HD + d], b += (double)g[d] * vc[base + (size_t)t * HD + d];
                s[t] = a / sqrt((double)HD), dp[t] = b;
                if (s[t] > mx) mx = s[t];
            }
            for (int t = 0; t <= poss[n]; t++) sum += exp(s[t] - mx);
            for (int t = 0; t <= poss[n]; t++) pdp += exp(s[t] - mx) / sum * dp[t];
            es = fmax(es, fabs(stats[(size_t)n * NH + h] - (mx + log(sum))));
            ed = fmax(ed, fabs(stats[(size_t)N * NH + (size_t)n * NH + h] - pdp));
        }
    CHECKF(es < 1e-5 && ed < 1e-5, "attention stats NH %d NKV %d HD %d: lse %g delta %g", NH, NKV, HD, es, ed);
    free(q), free(go), free(kc), free(vc), free(dq), free(dk), free(dv), free(dqr), free(dkr), free(dvr), free(stats);
    free(dq0), free(dk0), free(dv0);
}

static void test_attention_limits(void) {
    float x = 0;
    int s = 0;
    CHECK(k_attention_backward(&x, &x, &x, &x, &x, &x, &x, &x, &s, &s, 1, 2, 1, 130, 1, 8, NULL) == -1); /* HD > 128 */
    CHECK(k_attention_backward(&x, &x, &x, &x, &x, &x, &x, &x, &s, &s, 1, 2, 1, 6, 1, 8, NULL) == -1);   /* HD % 4 */
    CHECK(k_attention_backward(&x, &x, &x, &x, &x, &x, &x, &x, &s, &s, 1, 3, 2, 8, 1, 8, NULL) == -1);   /* NH % NKV */
}

int main(void) {
    randf_state = 20261201;
    CHECK_SEED(randf_state);
    test_rmsnorm(1, 96);
    test_rmsnorm(7, 77);
    test_rmsnorm(33, 1000); /* 17 row chunks of 2 */
    test_rmsnorm(300, 1536);
    test_bias(1, 5);
    test_bias(37, 77);
    test_bias(300, 2304);
    test_embedding(1, 3, 5);
    test_embedding(40, 7, 77);
    test_embedding(300, 50, 200); /* C not a multiple of the block */
    test_rope(1, 2, 64);
    test_rope(9, 12, 128);
    test_rope(5, 3, 10);
    test_swiglu(1, 7);
    test_swiglu(13, 200);
    test_dropout(10007, 0.05f, 0x1234567890abcdefULL);
    test_dropout(999, 0.5f, 7);
    test_attention(4, 2, 16, 0);   /* GQA 2:1 */
    test_attention(12, 2, 64, 0);  /* 6:1, Qwen2.5-Math-1.5B's grouping */
    test_attention(12, 2, 128, 0); /* its head dim */
    test_attention(14, 2, 64, 0);  /* 7:1, Qwen2.5-0.5B's */
    test_attention(6, 6, 12, 0);   /* no grouping, HD 12 */
    test_attention(12, 2, 128, 1); /* N = 1 */
    test_attention_limits();
    CHECK_DONE();
}
