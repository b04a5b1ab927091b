/* The device backward pieces composed into the CPU trainer's whole LoRA
 * backward, on the emulated device: a tiny random Qwen2 model (biases, GQA
 * 2:1) with LoRA on all seven projections runs trn_forward / trn_backward
 * on two packed sequences (one with a query-only row, forward.h's
 * query_pos), then the device redoes that backward from the trainer's
 * saved activations, op for op as trainer.c's trn_backward and
 * layer_backward order them, with the base frozen: lm_head on the loss
 * rows, the final norm, then per layer from the last one down_proj, SwiGLU,
 * gate/up, RMSNorm, o_proj, attention, the cache rows' gather, RoPE,
 * q/k/v, RMSNorm. Every LoRA A and B gradient of every layer and the
 * gradient reaching the embeddings are compared with the trainer's (which
 * test_trainer checks by finite differences), without and with LoRA
 * dropout. So the kernels' layouts and contracts fit together as a device
 * trainer will use them.
 *
 * Tolerance: float32 throughout on both sides, summation order apart;
 * through 2 layers max |dev - cpu| / max |cpu| < 1e-5 per tensor. */
#include "check.h"

#include "../../cuda/backward.h"
#include "../../cuda/devmem.h"
#include "../../cuda/gemm_backward.h"
#include "model/lora.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "nn/backward.h"
#include "nn/ops_cpu.h"
#include "nn/trainer.h"
#include "base/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

static uint64_t rng = 9001;
static float urand(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}

/* device copies; any CUDA failure ends the test (exit 2) */
static void *up(const void *h, size_t bytes) {
    void *d;
    if (dev_upload(&d, h, bytes)) exit(2);
    return d;
}
#define UPF(h, n) ((float *)up((h), (size_t)(n) * sizeof(float)))
#define UPI(h, n) ((int *)up((h), (size_t)(n) * sizeof(int)))
static float *zeros(size_t nf) {
    void *d;
    if (dev_alloc(&d, nf * sizeof(float)) || dev_zero(d, nf * sizeof(float))) exit(2);
    return d;
}
static void zero(float *d, size_t nf) {
    if (dev_zero(d, nf * sizeof(float))) exit(2);
}
static float *down(const float *d, size_t nf) {
    float *h = malloc((nf ? nf : 1) * sizeof *h);
    if (dev_download(h, d, nf * sizeof *h)) exit(2);
    return h;
}

/* two sequences packed; row 9 of slot 1 query-only at RoPE position 9 (a
 * right-padded row of the reference's collate), and a row of its slot
 * after it, which stores its key at the position the query-only row would
 * have had: that cache row's gradient must not reach the query-only row */
#define NROWS 12
static const int tokens[NROWS] = {5, 17, 250, 3, 99, 42, 7, 270, 11, 12, 13, 200};
static const int seqs[NROWS] = {0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1};
static const int qpos[NROWS] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, 9, -1, -1};
static const int want[4] = {3, 9, 10, 11};
#define NWANT 4

typedef struct {
    void *blas;
    const lora *lo;
    const trn *t;
    int N, r;
    float *lo_d, *glo_d;  /* the adapters and their gradients, laid out as lo.mem */
    float *du, *xd, *dxd; /* LoRA scratch: (N, r), (N, max in) twice */
} dev;

/* trainer.c's lin_backward with the base frozen: dinp += dout W, then the
 * LoRA term of module k of layer l (inp the module input, u its A x). */
static void lin_backward(dev *d, int l, int k, float *dinp, const float *dout, const float *inp, const float *W,
                         const float *u, int IC, int OC) {
    const lora *lo = d->lo;
    int N = d->N, r = d->r;
    CHECK(k_matmul_backward(d->blas, dinp, NULL, dout, NULL, W, N, IC, OC) == 0);
    size_t offA = (size_t)(lo->A[k] - lo->mem) + (size_t)l * r * IC, offB = (size_t)(lo->B[k] - lo->mem) + (size_t)l * OC * r;
    float sc = lora_scale(lo);
    if (d->t->f.training && lo->dropout > 0)
        CHECK(k_lora_backward_dropout(d->blas, dinp, d->glo_d + offA, d->glo_d + offB, d->du, d->xd, d->dxd, dout, inp, u,
                                      d->lo_d + offA, d->lo_d + offB, N, IC, OC, r, sc, lo->dropout,
                                      fwd_lora_drop_key(d->t->f.drop_seed, l, k), NULL) == 0);
    else
        CHECK(k_lora_backward(d->blas, dinp, d->glo_d + offA, d->glo_d + offB, d->du, dout, inp, u, d->lo_d + offA,
                              d->lo_d + offB, N, IC, OC, r, sc) == 0);
}

static void run(void *blas, const char *tmp, float drop) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpu_lora_backward", tmp);
    mk_opts o;
    mk_defaults(&o);
    o.arch = "qwen2", o.L = 2, o.C = 48, o.NH = 4, o.NKV = 2, o.I = 72, o.tied = 0, o.seed = 3;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        return;
    }
    const mcfg *cf = &m.cfg;
    const model_weights *w = &m.w;
    int L = cf->L, C = cf->C, I = cf->I, V = cf->V, NH = cf->NH, NKV = cf->NKV, HD = cf->HD, QD = NH * HD, KD = NKV * HD;
    int N = NROWS, r = 4, B = 2, Tmax = 16;
    lora lo, glo;
    lora_alloc(&lo, cf, r, 8.0f, drop, (1u << LORA_NMOD) - 1);
    for (size_t i = 0; i < lo.n; i++) lo.mem[i] = 0.2f * urand(); /* B != 0 so A has a gradient */
    lora_alloc_like(&glo, &lo);
    for (int k = 0; k < LORA_NMOD; k++) CHECK(glo.A[k] - glo.mem == lo.A[k] - lo.mem && glo.B[k] - glo.mem == lo.B[k] - lo.mem);
    trn t;
    CHECK(trn_init(&t, &m, &lo, B, Tmax, NROWS) == 0);
    t.training = drop > 0, t.drop_seed = 77, t.query_pos = qpos;
    float *logits = malloc((size_t)NWANT * V * 4), *dlogits = malloc((size_t)NWANT * V * 4);
    for (int i = 0; i < NWANT * V; i++) dlogits[i] = urand();
    CHECK(trn_forward(&t, N, tokens, seqs, NWANT, want, logits) == 0);
    model_weights gw;
    float *gmem = trn_grads(&m, &gw); /* only its embeddings are compared */
    trn_backward(&t, dlogits, &gw, &glo);
    const fwd_acts *a = &t.f.a;

    dev d = {blas, &lo, &t, N, r, UPF(lo.mem, lo.n), zeros(lo.n), zeros((size_t)N * r), NULL, NULL};
    int maxic = C > QD ? (C > I ? C : I) : (QD > I ? QD : I);
    d.xd = zeros((size_t)N * maxic), d.dxd = zeros((size_t)N * maxic);
    int *d_want = UPI(want, NWANT), *d_seq = UPI(a->seq, N), *d_pos = UPI(a->pos, N), *d_rpos = UPI(a->rpos, N);
    int *d_apos = UPI(a->apos, N), *d_qonly = UPI(qpos, N);
    float inv[64];
    rope_inv_freq(inv, HD, (float)cf->rope_theta);
    float *d_inv = UPF(inv, HD / 2);
    /* scratch as trainer.c's bwd_bufs */
    float *dres = zeros((size_t)N * C), *dln = zeros((size_t)N * C), *dq = zeros((size_t)N * QD), *datt = zeros((size_t)N * QD);
    float *dk = zeros((size_t)N * KD), *dv = zeros((size_t)N * KD), *dh = zeros((size_t)N * I);
    float *dgate = zeros((size_t)N * I), *dup = zeros((size_t)N * I), *ws = zeros((size_t)BWD_COLSUM_PARTS * C);
    size_t kvl = (size_t)B * NKV * Tmax * HD;
    float *dkc = zeros(kvl), *dvc = zeros(kvl), *stats = zeros((size_t)2 * N * NH);

    /* lm_head on the loss rows, scattered back, the final norm */
    float *lnf = UPF(a->lnf, (size_t)N * C), *lnfg = zeros((size_t)NWANT * C), *dlnfg = zeros((size_t)NWANT * C);
    float *dlog = UPF(dlogits, (size_t)NWANT * V), *lm = UPF(w->lm_head, (size_t)V * C);
    k_gather_rows(lnfg, lnf, d_want, NWANT, C, NULL);
    CHECK(k_matmul_backward(blas, dlnfg, NULL, dlog, lnfg, lm, NWANT, C, V) == 0);
    k_scatter_add_rows(dln, dlnfg, d_want, NWANT, C, NULL);
    float *xout = UPF(a->x_out, (size_t)N * C), *norm = UPF(w->norm, C), *rstd = UPF(a->lnf_rstd, N);
    k_rmsnorm_backward(dres, NULL, dln, xout, norm, rstd, N, C, ws, NULL);
    void *top[] = {lnf, lnfg, dlnfg, dlog, lm, xout, norm, rstd};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) dev_free(top[i]);

    for (int l = L - 1; l >= 0; l--) {
        const fwd_layer_acts *la = &a->layer[l];
        size_t lC = (size_t)l * C, lQC = (size_t)l * QD * C, lKC = (size_t)l * KD * C, lIC = (size_t)l * I * C;
        float *wq = UPF(w->wq + lQC, QD * C), *wk = UPF(w->wk + lKC, KD * C), *wv = UPF(w->wv + lKC, KD * C);
        float *wo = UPF(w->wo + lQC, C * QD), *wg = UPF(w->wgate + lIC, I * C), *wu = UPF(w->wup + lIC, I * C);
        float *wd = UPF(w->wdown + lIC, C * I), *ln1 = UPF(w->ln1 + lC, C), *ln2 = UPF(w->ln2 + lC, C);
        float *x_in = UPF(la->x_in, N * C), *ln1o = UPF(la->ln1, N * C), *r1 = UPF(la->ln1_rstd, N);
        float *q = UPF(la->q, N * QD), *att = UPF(la->att, N * QD), *x_mid = UPF(la->x_mid, N * C);
        float *ln2o = UPF(la->ln2, N * C), *r2 = UPF(la->ln2_rstd, N), *gate = UPF(la->gate, N * I);
        float *upv = UPF(la->up, N * I), *h = UPF(la->h, N * I);
        float *kc = UPF(t.f.kc + l * kvl, kvl), *vc = UPF(t.f.vc + l * kvl, kvl), *u[LORA_NMOD];
        for (int k = 0; k < LORA_NMOD; k++) u[k] = UPF(la->u[k], N * r);

        /* MLP block */
        zero(dh, (size_t)N * I);
        lin_backward(&d, l, LORA_DOWN, dh, dres, h, wd, u[LORA_DOWN], I, C);
        zero(dgate, (size_t)N * I), zero(dup, (size_t)N * I);
        k_swiglu_backward(dgate, dup, dh, gate, upv, N, I, I, NULL);
        zero(dln, (size_t)N * C);
        lin_backward(&d, l, LORA_GATE, dln, dgate, ln2o, wg, u[LORA_GATE], C, I);
        lin_backward(&d, l, LORA_UP, dln, dup, ln2o, wu, u[LORA_UP], C, I);
        k_rmsnorm_backward(dres, NULL, dln, x_mid, ln2, r2, N, C, ws, NULL);
        /* attention block */
        zero(datt, (size_t)N * QD);
        lin_backward(&d, l, LORA_O, datt, dres, att, wo, u[LORA_O], QD, C);
        zero(dq, (size_t)N * QD), zero(dkc, kvl), zero(dvc, kvl);
        CHECK(k_attention_backward(dq, dkc, dvc, stats, datt, q, kc, vc, d_seq, d_apos, N, NH, NKV, HD, B, Tmax, NULL) == 0);
        k_kv_gather(dk, dv, dkc, dvc, d_seq, d_pos, d_qonly, N, NKV, HD, Tmax, NULL);
        k_rope_backward(dq, dq, d_inv, d_rpos, N, NH, HD, NULL);
        k_rope_backward(dk, dk, d_inv, d_rpos, N, NKV, HD, NULL);
        zero(dln, (size_t)N * C);
        lin_backward(&d, l, LORA_Q, dln, dq, ln1o, wq, u[LORA_Q], C, QD);
        lin_backward(&d, l, LORA_K, dln, dk, ln1o, wk, u[LORA_K], C, KD);
        lin_backward(&d, l, LORA_V, dln, dv, ln1o, wv, u[LORA_V], C, KD);
        k_rmsnorm_backward(dres, NULL, dln, x_in, ln1, r1, N, C, ws, NULL);

        void *lay[] = {wq, wk, wv, wo, wg, wu, wd, ln1, ln2, x_in, ln1o, r1, q, att, x_mid, ln2o, r2, gate, upv, h, kc, vc};
        for (size_t i = 0; i < sizeof lay / sizeof lay[0]; i++) dev_free(lay[i]);
        for (int k = 0; k < LORA_NMOD; k++) dev_free(u[k]);
    }

    /* every LoRA gradient, and the embeddings' (dres summed per token) */
    float *g = down(d.glo_d, lo.n);
    for (int k = 0; k < LORA_NMOD; k++) {
        size_t nA = (size_t)L * r * lo.in[k], nB = (size_t)L * lo.out[k] * r;
        double eA = check_rel_err(g + (lo.A[k] - lo.mem), glo.A[k], nA);
        double eB = check_rel_err(g + (lo.B[k] - lo.mem), glo.B[k], nB);
        CHECKF(eA < TOL && eB < TOL, "dropout %g, lora %s: gA %g gB %g", drop, lora_module_name(k), eA, eB);
    }
    float *dx = down(dres, (size_t)N * C), *gemb = calloc((size_t)V * C, 4);
    embedding_backward(gemb, dx, a->tokens, N, C);
    double ee = check_rel_err(gemb, gw.embed, (size_t)V * C);
    CHECKF(ee < TOL, "dropout %g, embeddings' gradient %g", drop, ee);
    double mq = 0; /* the query-only row must have been part of it */
    for (int i = 0; i < r * lo.in[LORA_Q]; i++) mq = fmax(mq, fabs(glo.A[LORA_Q][i]));
    CHECKF(mq > 1e-4, "layer 0 q_proj A gradient too small to test: %g", mq);

    void *rest[] = {d.lo_d, d.glo_d, d.du, d.xd, d.dxd, d_want, d_seq, d_pos, d_rpos, d_apos, d_qonly, d_inv, dres, dln,
                    dq, datt, dk, dv, dh, dgate, dup, ws, dkc, dvc, stats};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) dev_free(rest[i]);
    free(g), free(dx), free(gemb), free(logits), free(dlogits), free(gmem);
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
    run(blas, tmp, 0.0f);
    run(blas, tmp, 0.1f);
    blas_destroy(blas);
    CHECK_DONE();
}
