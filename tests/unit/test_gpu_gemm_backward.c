/* The backward's GEMMs on the emulated device (cuda/gemm_backward.h)
 * against the CPU trainer (trainer.h, verified by finite differences in
 * test_trainer and against PEFT): a tiny random model with LoRA on every
 * projection runs trn_forward / trn_backward on two packed sequences with
 * loss at a few rows, then the device repeats the first steps of that
 * backward from the trainer's saved activations:
 *   gather the loss rows of the final norm (the trainer's lnf_g), lm_head's
 *   backward on those rows only (dlnf_g and lm_head's gradient), scatter
 *   them back into all rows, the final norm's backward (k_rmsnorm_backward),
 *   and the LoRA backward of the last layer's down_proj, whose A and B
 *   gradients the trainer computed from the same quantities.
 * First k_gemm_f32 itself against OpenBLAS in all four transpose cases.
 *
 * Tolerance: float32 on both sides (the emulator's GEMM is OpenBLAS
 * float32), differing in summation order only: max |dev - cpu| / max |cpu|
 * < 1e-5, as in test_gpu_backward. */
#include "check.h"

#include "../../cuda/backward.h"
#include "../../cuda/devmem.h"
#include "../../cuda/dropout.h"
#include "../../cuda/gemm_backward.h"
#include "model/lora.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "nn/backward.h"
#include "nn/trainer.h"
#include "base/util.h"

#include <cblas.h>
#undef I /* complex.h (via cblas.h) defines I; here it is the MLP width */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

static uint64_t rng = 4242;
static float urand(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}
static float *frand(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}
/* device copies of host data, and back; abort on failure (a broken device
 * would make every later check meaningless) */
static void *up(const void *h, size_t n) {
    void *d;
    if (dev_upload(&d, h, n)) exit(2);
    return d;
}
static float *upz(size_t nf) {
    float *z = calloc(nf ? nf : 1, sizeof *z), *d = up(z, nf * sizeof *z);
    free(z);
    return d;
}
static float *down(const float *d, size_t nf) {
    float *h = malloc((nf ? nf : 1) * sizeof *h);
    if (dev_download(h, d, nf * sizeof *h)) exit(2);
    return h;
}
/* A gradient buffer on the device starting from random values (*start, to
 * free), so that a kernel overwriting instead of accumulating fails. */
static float *upr(size_t nf, float **start) {
    *start = frand(nf);
    return up(*start, nf * sizeof(float));
}
/* What the device added to start: down(d) - start. */
static float *added(const float *d, const float *start, size_t nf) {
    float *h = down(d, nf);
    for (size_t i = 0; i < nf; i++) h[i] -= start[i];
    return h;
}

/* Row-major C (M, N) = alpha op(A) op(B) + beta C against cblas_sgemm, odd
 * sizes and padded leading dimensions. */
static void test_gemm(void *blas, int tA, int tB) {
    int M = 13, N = 7, K = 19;
    int ra = tA ? K : M, ca = tA ? M : K, rb = tB ? N : K, cb = tB ? K : N;
    int lda = ca + 3, ldb = cb + 1, ldc = N + 2;
    float *A = frand((size_t)ra * lda), *B = frand((size_t)rb * ldb), *C = frand((size_t)M * ldc);
    float *dA = up(A, (size_t)ra * lda * 4), *dB = up(B, (size_t)rb * ldb * 4), *dC = up(C, (size_t)M * ldc * 4);
    CHECK(k_gemm_f32(blas, tA, tB, M, N, K, 0.7f, dA, lda, dB, ldb, 0.5f, dC, ldc) == 0);
    cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M, N, K, 0.7f, A, lda, B,
                ldb, 0.5f, C, ldc);
    float *got = down(dC, (size_t)M * ldc);
    double e = check_rel_err(got, C, (size_t)M * ldc);
    CHECKF(e < TOL, "gemm tA %d tB %d: %g", tA, tB, e);
    free(A), free(B), free(C), free(got), dev_free(dA), dev_free(dB), dev_free(dC);
}

/* two sequences packed (slot 0: 7 rows, slot 1: 5 rows, interleaved),
 * loss at 4 rows */
#define NROWS 12
static const int tokens[NROWS] = {5, 17, 250, 3, 99, 42, 7, 270, 11, 12, 13, 200};
static const int seqs[NROWS] = {0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1};
static const int want[4] = {3, 6, 10, 11};
#define NWANT 4

/* drop: LoRA dropout probability (0: none, the trainer not in training mode) */
static void test_trainer_path(void *blas, const char *tmp, float drop) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpu_gemm_backward", tmp);
    mk_opts o;
    mk_defaults(&o);
    o.arch = "qwen2", o.L = 2, o.C = 40, o.NH = 4, o.NKV = 2, o.I = 72, o.tied = 0, o.seed = 11;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        return;
    }
    const mcfg *cf = &m.cfg;
    int L = cf->L, C = cf->C, I = cf->I, V = cf->V, N = NROWS, r = 4;
    lora lo, glo;
    lora_alloc(&lo, cf, r, 8.0f, drop, (1u << LORA_NMOD) - 1);
    for (size_t i = 0; i < lo.n; i++) lo.mem[i] = 0.2f * urand(); /* B != 0 so A has a gradient */
    lora_alloc_like(&glo, &lo);
    trn t;
    CHECK(trn_init(&t, &m, &lo, 2, 16, NROWS) == 0);
    t.training = drop > 0, t.drop_seed = 31;
    float *logits = malloc((size_t)NWANT * V * 4), *dlogits = frand((size_t)NWANT * V);
    CHECK(trn_forward(&t, N, tokens, seqs, NWANT, want, logits) == 0);
    model_weights gw;
    float *gmem = trn_grads(&m, &gw);
    trn_backward(&t, dlogits, &gw, &glo);

    /* lm_head on the loss rows */
    const fwd_acts *a = &t.f.a;
    float *d_lnf = up(a->lnf, (size_t)N * C * 4), *d_lnfg = upz((size_t)NWANT * C), *s_du;
    int *d_want = up(want, sizeof want);
    k_gather_rows(d_lnfg, d_lnf, d_want, NWANT, C, NULL);
    float *lnfg = down(d_lnfg, (size_t)NWANT * C);
    CHECK(!memcmp(lnfg, t.lnf_g, (size_t)NWANT * C * 4));
    float *d_dlog = up(dlogits, (size_t)NWANT * V * 4), *d_lm = up(m.w.lm_head, (size_t)V * C * 4);
    float *s_dlnfg, *s_glm, *d_dlnfg = upr((size_t)NWANT * C, &s_dlnfg), *d_glm = upr((size_t)V * C, &s_glm);
    CHECK(k_matmul_backward(blas, d_dlnfg, d_glm, d_dlog, d_lnfg, d_lm, NWANT, C, V) == 0);
    float *dlnfg = added(d_dlnfg, s_dlnfg, (size_t)NWANT * C), *glm = added(d_glm, s_glm, (size_t)V * C);
    dev_free(d_dlnfg);
    d_dlnfg = up(dlnfg, (size_t)NWANT * C * 4); /* the gradient alone, for the scatter */
    double e1 = check_rel_err(dlnfg, t.dlnf_g, (size_t)NWANT * C), e2 = check_rel_err(glm, gw.lm_head, (size_t)V * C);
    CHECKF(e1 < TOL && e2 < TOL, "lm_head backward: dlnf %g dlm_head %g", e1, e2);

    /* back into all rows (the trainer's dln), then the final norm */
    float *s_dln, *d_dln = upr((size_t)N * C, &s_dln);
    k_scatter_add_rows(d_dln, d_dlnfg, d_want, NWANT, C, NULL);
    float *dln = added(d_dln, s_dln, (size_t)N * C), *dlnr = calloc((size_t)N * C, 4);
    dev_free(d_dln), d_dln = up(dln, (size_t)N * C * 4); /* the gradient alone, for the norm */
    for (int i = 0; i < NWANT; i++) memcpy(dlnr + (size_t)want[i] * C, t.dlnf_g + (size_t)i * C, (size_t)C * 4);
    double e3 = check_rel_err(dln, dlnr, (size_t)N * C);
    CHECKF(e3 < TOL, "scattered loss rows: %g", e3);
    float *dres = calloc((size_t)N * C, 4); /* the trainer's first step, on the CPU */
    rmsnorm_backward(dres, NULL, dlnr, a->x_out, m.w.norm, a->lnf_rstd, N, C);
    float *d_xout = up(a->x_out, (size_t)N * C * 4), *d_norm = up(m.w.norm, (size_t)C * 4);
    float *d_rstd = up(a->lnf_rstd, (size_t)N * 4), *d_dres = upz((size_t)N * C);
    float *d_ws = upz((size_t)BWD_COLSUM_PARTS * C);
    k_rmsnorm_backward(d_dres, NULL, d_dln, d_xout, d_norm, d_rstd, N, C, d_ws, NULL);
    float *dres_dev = down(d_dres, (size_t)N * C);
    double e4 = check_rel_err(dres_dev, dres, (size_t)N * C);
    CHECKF(e4 < TOL, "final norm backward: %g", e4);

    /* LoRA of the last layer's down_proj (in I, out C), dout = dres */
    int l = L - 1;
    float sc = lora_scale(&lo);
    const float *A = lo.A[LORA_DOWN] + (size_t)l * r * I, *Bm = lo.B[LORA_DOWN] + (size_t)l * C * r;
    const fwd_layer_acts *la = &a->layer[l];
    float *d_h = up(la->h, (size_t)N * I * 4), *d_u = up(la->u[LORA_DOWN], (size_t)N * r * 4);
    float *d_A = up(A, (size_t)r * I * 4), *d_B = up(Bm, (size_t)C * r * 4);
    float *s_gA, *s_gB, *s_dh, *d_gA = upr((size_t)r * I, &s_gA), *d_gB = upr((size_t)C * r, &s_gB);
    float *d_du = upr((size_t)N * r, &s_du), *d_dh = upr((size_t)N * I, &s_dh); /* du: overwritten */
    uint64_t key = fwd_lora_drop_key(t.drop_seed, l, LORA_DOWN);
    float *d_xd = upz((size_t)N * I), *d_dxd = upz((size_t)N * I);
    if (drop > 0)
        CHECK(k_lora_backward_dropout(blas, d_dh, d_gA, d_gB, d_du, d_xd, d_dxd, d_dres, d_h, d_u, d_A, d_B, N, I, C, r, sc,
                                      drop, key, NULL) == 0);
    else CHECK(k_lora_backward(blas, d_dh, d_gA, d_gB, d_du, d_dres, d_h, d_u, d_A, d_B, N, I, C, r, sc) == 0);
    float *gA = added(d_gA, s_gA, (size_t)r * I), *gB = added(d_gB, s_gB, (size_t)C * r), *dh = added(d_dh, s_dh, (size_t)N * I);
    double eA = check_rel_err(gA, glo.A[LORA_DOWN] + (size_t)l * r * I, (size_t)r * I);
    double eB = check_rel_err(gB, glo.B[LORA_DOWN] + (size_t)l * C * r, (size_t)C * r);
    CHECKF(eA < TOL && eB < TOL, "lora down_proj layer %d dropout %g: gA %g gB %g", l, drop, eA, eB);
    /* its input gradient, against the same products by matmul_backward:
     * du = s dout B, dinp = du A (through the dropout mask) */
    float *du = calloc((size_t)N * r, 4), *dxr = calloc((size_t)N * I, 4), *dhr = calloc((size_t)N * I, 4);
    matmul_backward(du, NULL, dres, NULL, Bm, N, r, C);
    for (int i = 0; i < N * r; i++) du[i] *= sc;
    matmul_backward(dxr, NULL, du, NULL, A, N, I, r);
    if (drop > 0) dropout_backward(dhr, dxr, (long)N * I, drop, key);
    else memcpy(dhr, dxr, (size_t)N * I * 4);
    double eh = check_rel_err(dh, dhr, (size_t)N * I);
    CHECKF(eh < TOL, "lora down_proj layer %d dropout %g: dinp %g", l, drop, eh);
    /* the checks above must have something to compare */
    double mA = 0, mh = 0;
    for (int i = 0; i < r * I; i++) mA = fmax(mA, fabs(glo.A[LORA_DOWN][(size_t)l * r * I + i]));
    for (int i = 0; i < N * I; i++) mh = fmax(mh, fabs(dhr[i]));
    CHECKF(mA > 1e-4 && mh > 1e-4, "gradients too small to test: gA %g dinp %g", mA, mh);

    void *dev[] = {d_lnf, d_lnfg, d_want, d_dlog, d_lm, d_dlnfg, d_glm, d_dln, d_xout, d_norm, d_rstd, d_dres,
                   d_ws, d_h, d_u, d_A, d_B, d_gA, d_gB, d_du, d_dh, d_xd, d_dxd};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) dev_free(dev[i]);
    free(logits), free(dlogits), free(gmem), free(lnfg), free(dlnfg), free(glm), free(dln), free(dlnr), free(dres), free(dres_dev);
    free(gA), free(gB), free(dh), free(du), free(dxr), free(dhr), free(s_dlnfg), free(s_glm), free(s_dln), free(s_gA), free(s_gB);
    free(s_du), free(s_dh);
    trn_free(&t);
    lora_free(&lo);
    lora_free(&glo);
    model_free(&m);
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    CHECK_SEED(rng);
    void *blas = blas_create(NULL);
    CHECK(blas != NULL);
    if (!blas) CHECK_DONE();
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) test_gemm(blas, tA, tB);
    test_trainer_path(blas, tmp, 0.0f);
    test_trainer_path(blas, tmp, 0.1f);
    blas_destroy(blas);
    CHECK_DONE();
}
