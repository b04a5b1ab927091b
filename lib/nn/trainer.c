/* trainer: see trainer.h. */
#include "nn/trainer.h"

#include "nn/backward.h"
#include "nn/ops_cpu.h"
#include "base/util.h"

#include <cblas.h>
#undef I /* complex.h (via cblas.h) defines I; we use it as the MLP width */
#include <stdlib.h>
#include <string.h>

/* scratch buffers of the backward, carved from t->scratch */
typedef struct {
    float *dres;       // (N, C) gradient of the residual stream
    float *dln;        // (N, C) gradient of a norm output
    float *dq, *datt;  // (N, QD)
    float *dk, *dv;    // (N, KD)
    float *dh, *dgate, *dup; // (N, I)
    float *xd, *dxd;   // (N, maxIC) dropped-out module input and its gradient
    float *du;         // (N, r)
    float *dkc, *dvc;  // (B, NKV, Tmax, HD) one layer
} bwd_bufs;

static int max3(int a, int b, int c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

int trn_init(trn *t, const model *m, const lora *lo, int B, int Tmax, int maxN) {
    memset(t, 0, sizeof *t);
    const mcfg *c = &m->cfg;
    if (B < 1 || Tmax < 1 || maxN < 1) return lr_err(LR_EUSAGE, "trainer: need B, Tmax and maxN >= 1");
    int rc = fwd_init(&t->f, m, B, Tmax, maxN, 1, 0);
    if (rc) return rc;
    fwd_set_lora(&t->f, lo);
    t->m = m, t->lo = lo, t->B = B, t->Tmax = Tmax, t->maxN = maxN;
    size_t M = (size_t)maxN, C = (size_t)c->C, I = (size_t)c->I, r = lo ? (size_t)lo->r : 0;
    size_t QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD;
    size_t kvl = (size_t)B * c->NKV * Tmax * c->HD;
    t->mem = xcalloc(2 * M * C, sizeof(float));
    t->lnf_g = t->mem;
    t->dlnf_g = t->mem + M * C;
    size_t maxic = (size_t)max3(c->C, (int)QD, c->I);
    t->nscratch = M * (2 * C + 2 * QD + 2 * KD + 3 * I + 2 * maxic + r) + 2 * kvl;
    t->scratch = xmalloc(t->nscratch * sizeof(float));
    t->want = xmalloc(M * sizeof(int));
    return LR_OK;
}

void trn_free(trn *t) {
    fwd_free(&t->f);
    free(t->mem);
    free(t->scratch);
    free(t->want);
    memset(t, 0, sizeof *t);
}

float *trn_grads(const model *m, model_weights *gw) {
    float *g = xcalloc(m->nparams, sizeof(float));
    const float *const *src = (const float *const *)&m->w;
    float **dst = (float **)gw;
    for (size_t i = 0; i < sizeof(model_weights) / sizeof(float *); i++) dst[i] = src[i] ? g + (src[i] - m->mem) : NULL;
    return g;
}

/* The module input LoRA saw in the forward: inp itself, or its dropped-out
 * copy regenerated into buf from the same key. */
static const float *lora_input(const trn *t, int l, int k, const float *inp, int N, int IC, float *buf) {
    float p = t->lo->dropout;
    if (!t->f.training || p <= 0.0f) return inp;
    dropout_forward(buf, inp, (long)N * IC, p, fwd_lora_drop_key(t->f.drop_seed, l, k));
    return buf;
}

/* Backward of forward.c's lin_forward: the projection, its bias and its
 * LoRA term. */
static void lin_backward(trn *t, const bwd_bufs *s, int l, int k, float *dinp, const float *dout, const float *inp,
                         const float *W, float *gW, float *gb, int N, int IC, int OC, lora *glo) {
    matmul_backward(dinp, gW, dout, inp, W, N, IC, OC);
    bias_backward(gb, dout, N, OC);
    const lora *lo = t->lo;
    if (!lo || !lo->A[k]) return;
    int r = lo->r;
    float sc = lora_scale(lo);
    const float *A = lo->A[k] + (size_t)l * r * IC, *Bm = lo->B[k] + (size_t)l * OC * r;
    const float *u = t->f.a.layer[l].u[k];
    const float *x = lora_input(t, l, k, inp, N, IC, s->xd);
    /* du = s dout B (N, r) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, OC, sc, dout, OC, Bm, r, 0.0f, s->du, r);
    if (glo && glo->A[k]) {
        float *gA = glo->A[k] + (size_t)l * r * IC, *gB = glo->B[k] + (size_t)l * OC * r;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, r, N, sc, dout, OC, u, r, 1.0f, gB, r);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, IC, N, 1.0f, s->du, r, x, IC, 1.0f, gA, IC);
    }
    if (x == inp) { /* no dropout: dinp += du A */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, r, 1.0f, s->du, r, A, IC, 1.0f, dinp, IC);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, r, 1.0f, s->du, r, A, IC, 0.0f, s->dxd, IC);
        dropout_backward(dinp, s->dxd, (long)N * IC, lo->dropout, fwd_lora_drop_key(t->f.drop_seed, l, k));
    }
}

/* backward of forward.c's kv_store: the cache gradients of each row's
 * (slot, pos); zero for query-only rows (qonly[n] >= 0), whose key and
 * value were never stored. */
static void kv_gather(float *dk, float *dv, const float *dkc, const float *dvc, const int *seq, const int *pos,
                      const int *qonly, int N, int NKV, int HD, int Tmax) {
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NKV; h++) {
            size_t src = (((size_t)seq[n] * NKV + h) * Tmax + pos[n]) * HD, dst = ((size_t)n * NKV + h) * HD;
            if (qonly && qonly[n] >= 0) {
                memset(dk + dst, 0, (size_t)HD * sizeof(float));
                memset(dv + dst, 0, (size_t)HD * sizeof(float));
                continue;
            }
            memcpy(dk + dst, dkc + src, (size_t)HD * sizeof(float));
            memcpy(dv + dst, dvc + src, (size_t)HD * sizeof(float));
        }
}

int trn_forward(trn *t, int N, const int *tokens, const int *seq, int nwant, const int *want, float *logits) {
    const mcfg *c = &t->m->cfg;
    if (N < 1 || N > t->maxN) return lr_err(LR_EUSAGE, "trainer: %d rows in one call, at most %d", N, t->maxN);
    for (int i = 0; i < nwant; i++)
        if (want[i] < 0 || want[i] >= N || (i && want[i] <= want[i - 1]))
            return lr_err(LR_EUSAGE, "trainer: loss rows must be increasing rows in [0, %d)", N);
    fwd *f = &t->f;
    fwd_reset(f, -1);
    f->training = t->training, f->drop_seed = t->drop_seed, f->query_pos = t->query_pos;
    int rc = fwd_run(f, N, tokens, seq, NULL, NULL);
    f->query_pos = NULL;
    if (rc) return rc;
    int C = c->C;
    t->N = N;
    t->nwant = nwant;
    memcpy(t->want, want, (size_t)nwant * sizeof(int));
    for (int i = 0; i < nwant; i++)
        memcpy(t->lnf_g + (size_t)i * C, f->a.lnf + (size_t)want[i] * C, (size_t)C * sizeof(float));
    memset(t->dlnf_g, 0, (size_t)nwant * C * sizeof(float));
    if (nwant && logits) matmul_forward(logits, t->lnf_g, t->m->w.lm_head, nwant, C, c->V);
    return LR_OK;
}

void trn_logits(trn *t, int r0, int r1, float *logits) {
    int C = t->m->cfg.C;
    if (r1 > r0) matmul_forward(logits, t->lnf_g + (size_t)r0 * C, t->m->w.lm_head, r1 - r0, C, t->m->cfg.V);
}

void trn_logits_backward(trn *t, int r0, int r1, const float *dlogits, const model_weights *gw) {
    int C = t->m->cfg.C;
    if (r1 > r0)
        matmul_backward(t->dlnf_g + (size_t)r0 * C, gw ? gw->lm_head : NULL, dlogits, t->lnf_g + (size_t)r0 * C,
                        t->m->w.lm_head, r1 - r0, C, t->m->cfg.V);
}

/* Backward of forward.c's layer_forward for layer l, in reverse op order:
 * from s->dres (the gradient of the residual leaving the layer) to the
 * gradient of the residual entering it, in place. g: the base gradients
 * (all NULL when frozen). */
static void layer_backward(trn *t, const bwd_bufs *s, int l, const model_weights *g, lora *glo) {
    const mcfg *c = &t->m->cfg;
    const model_weights *w = &t->m->w;
    const fwd_acts *a = &t->f.a;
    const fwd_layer_acts *la = &a->layer[l];
    int N = t->N, C = c->C, I = c->I, NH = c->NH, NKV = c->NKV, HD = c->HD, QD = NH * HD, KD = NKV * HD;
    size_t M = (size_t)N, lC = (size_t)l * C, lQC = (size_t)l * QD * C, lKC = (size_t)l * KD * C, lIC = (size_t)l * I * C;
    size_t kvl = (size_t)t->B * NKV * t->Tmax * HD;
    const float *kc = t->f.kc + l * kvl, *vc = t->f.vc + l * kvl; // (B, NKV, Tmax, HD)
#define LW(x, off) (g->x ? g->x + (off) : NULL) /* layer l's slice of a gradient */
    /* MLP block: x_next = x_mid + down(swiglu(gate(ln2), up(ln2))) */
    memset(s->dh, 0, M * I * sizeof(float));
    lin_backward(t, s, l, LORA_DOWN, s->dh, s->dres, la->h, w->wdown + lIC, LW(wdown, lIC), NULL, N, I, C, glo);
    memset(s->dgate, 0, M * I * sizeof(float));
    memset(s->dup, 0, M * I * sizeof(float));
    swiglu_backward(s->dgate, s->dup, s->dh, la->gate, la->up, (long)N * I);
    memset(s->dln, 0, M * C * sizeof(float));
    lin_backward(t, s, l, LORA_GATE, s->dln, s->dgate, la->ln2, w->wgate + lIC, LW(wgate, lIC), NULL, N, C, I, glo);
    lin_backward(t, s, l, LORA_UP, s->dln, s->dup, la->ln2, w->wup + lIC, LW(wup, lIC), NULL, N, C, I, glo);
    rmsnorm_backward(s->dres, LW(ln2, lC), s->dln, la->x_mid, w->ln2 + lC, la->ln2_rstd, N, C);

    /* attention block: x_mid = x_in + o(attention(rope(q(ln1)), rope(k(ln1)), v(ln1))) */
    memset(s->datt, 0, M * QD * sizeof(float));
    lin_backward(t, s, l, LORA_O, s->datt, s->dres, la->att, w->wo + lQC, LW(wo, lQC), LW(bo, lC), N, QD, C, glo);
    memset(s->dq, 0, M * QD * sizeof(float));
    memset(s->dkc, 0, kvl * sizeof(float));
    memset(s->dvc, 0, kvl * sizeof(float));
    attention_backward(s->dq, s->dkc, s->dvc, s->datt, la->q, kc, vc, a->seq, a->apos, N, NH, NKV, HD, t->Tmax,
                       t->f.nthreads);
    kv_gather(s->dk, s->dv, s->dkc, s->dvc, a->seq, a->pos, a->qonly, N, NKV, HD, t->Tmax);
    rope_backward(s->dq, s->dq, a->rpos, N, NH, HD, (float)c->rope_theta);
    rope_backward(s->dk, s->dk, a->rpos, N, NKV, HD, (float)c->rope_theta);
    memset(s->dln, 0, M * C * sizeof(float));
    lin_backward(t, s, l, LORA_Q, s->dln, s->dq, la->ln1, w->wq + lQC, LW(wq, lQC), LW(bq, (size_t)l * QD), N, C, QD, glo);
    lin_backward(t, s, l, LORA_K, s->dln, s->dk, la->ln1, w->wk + lKC, LW(wk, lKC), LW(bk, (size_t)l * KD), N, C, KD, glo);
    lin_backward(t, s, l, LORA_V, s->dln, s->dv, la->ln1, w->wv + lKC, LW(wv, lKC), LW(bv, (size_t)l * KD), N, C, KD, glo);
    rmsnorm_backward(s->dres, LW(ln1, lC), s->dln, la->x_in, w->ln1 + lC, la->ln1_rstd, N, C);
#undef LW
}

void trn_backward(trn *t, const float *dlogits, const model_weights *gw, lora *glo) {
    const mcfg *c = &t->m->cfg;
    const model_weights *w = &t->m->w;
    int N = t->N, C = c->C, I = c->I, QD = c->NH * c->HD, KD = c->NKV * c->HD;
    size_t M = (size_t)N, kvl = (size_t)t->B * c->NKV * t->Tmax * c->HD, maxic = (size_t)max3(C, QD, I);
    bwd_bufs s;
    float *p = t->scratch;
    s.dres = p, p += M * C;
    s.dln = p, p += M * C;
    s.dq = p, p += M * QD;
    s.datt = p, p += M * QD;
    s.dk = p, p += M * KD;
    s.dv = p, p += M * KD;
    s.dh = p, p += M * I;
    s.dgate = p, p += M * I;
    s.dup = p, p += M * I;
    s.xd = p, p += M * maxic;
    s.dxd = p, p += M * maxic;
    s.du = p, p += M * (t->lo ? t->lo->r : 0);
    s.dkc = p, p += kvl;
    s.dvc = p, p += kvl;
    /* a NULL gw freezes the base: every base gradient pointer is NULL */
    model_weights z = {0};
    const model_weights *g = gw ? gw : &z;

    /* lm_head and the final norm, only the loss rows carry gradient */
    if (dlogits) trn_logits_backward(t, 0, t->nwant, dlogits, gw);
    memset(s.dln, 0, M * C * sizeof(float));
    for (int i = 0; i < t->nwant; i++)
        memcpy(s.dln + (size_t)t->want[i] * C, t->dlnf_g + (size_t)i * C, (size_t)C * sizeof(float));
    memset(s.dres, 0, M * C * sizeof(float));
    rmsnorm_backward(s.dres, g->norm, s.dln, t->f.a.x_out, w->norm, t->f.a.lnf_rstd, N, C);
    for (int l = c->L - 1; l >= 0; l--) layer_backward(t, &s, l, g, glo);
    embedding_backward(g->embed, s.dres, t->f.a.tokens, N, C);
}
