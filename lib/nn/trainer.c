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
    t->m = m, t->lo = lo, t->B = B, t->Tmax = Tmax, t->maxN = maxN;
    t->nthreads = openblas_get_num_threads();
    size_t M = (size_t)maxN, C = (size_t)c->C, I = (size_t)c->I, L = (size_t)c->L;
    size_t QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD, r = lo ? (size_t)lo->r : 0;
    size_t kvn = L * B * c->NKV * Tmax * c->HD;
    int nlora = 0;
    for (int k = 0; lo && k < LORA_NMOD; k++) nlora += lo->A[k] != NULL;
    /* per row, in trn_layer order */
    size_t sizes[] = {C, C, 1, QD, KD, KD, QD, C, C, C, 1, I, I, I, C};
    size_t nsz = sizeof sizes / sizeof sizes[0], per_row = 0;
    for (size_t i = 0; i < nsz; i++) per_row += sizes[i];
    per_row += nlora * r;
    size_t total = 2 * kvn + L * M * per_row + M * (2 * C + 1) + 2 * M * C;
    t->mem = xcalloc(total, sizeof(float));
    float *p = t->mem;
    t->kc = p, p += kvn;
    t->vc = p, p += kvn;
    t->layer = xcalloc(L, sizeof *t->layer);
    for (size_t l = 0; l < L; l++) {
        trn_layer *la = &t->layer[l];
        float **dst[] = {&la->x_in, &la->ln1, &la->ln1_rstd, &la->q, &la->k, &la->v, &la->att, &la->o,
                         &la->x_mid, &la->ln2, &la->ln2_rstd, &la->gate, &la->up, &la->h, &la->down};
        for (size_t i = 0; i < nsz; i++) *dst[i] = p, p += sizes[i] * M;
        for (int k = 0; lo && k < LORA_NMOD; k++)
            if (lo->A[k]) la->u[k] = p, p += r * M;
    }
    t->x_out = p, p += M * C;
    t->lnf = p, p += M * C;
    t->lnf_rstd = p, p += M;
    t->lnf_g = p, p += M * C;
    t->dlnf_g = p, p += M * C;
    size_t maxic = (size_t)max3(c->C, (int)QD, c->I);
    t->nscratch = M * (2 * C + 2 * QD + 2 * KD + 3 * I + 2 * maxic + r) + 2 * kvn / L;
    t->scratch = xmalloc(t->nscratch * sizeof(float));
    t->tokens = xmalloc(M * sizeof(int));
    t->seq = xmalloc(M * sizeof(int));
    t->pos = xmalloc(M * sizeof(int));
    t->rpos = xmalloc(M * sizeof(int));
    t->apos = xmalloc(M * sizeof(int));
    t->want = xmalloc(M * sizeof(int));
    return LR_OK;
}

void trn_free(trn *t) {
    free(t->mem);
    free(t->scratch);
    free(t->layer);
    free(t->tokens);
    free(t->seq);
    free(t->pos);
    free(t->rpos);
    free(t->apos);
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

/* LoRA dropout: keep element (row n, column i) of module k's input in
 * layer l with probability 1 - p, scaled by 1 / (1 - p) (torch Dropout). */
static inline float drop_factor(uint64_t seed, int l, int k, long idx, float p) {
    uint64_t z = seed ^ ((uint64_t)(l * LORA_NMOD + k) << 40) ^ (uint64_t)idx;
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    double u = (double)(z >> 11) * (1.0 / 9007199254740992.0);
    return u < p ? 0.0f : 1.0f / (1.0f - p);
}

/* The module input LoRA sees: inp itself, or a dropped-out copy in buf. */
static const float *lora_input(const trn *t, int l, int k, const float *inp, int N, int IC, float *buf) {
    float p = t->lo->dropout;
    if (!t->training || p <= 0.0f) return inp;
    for (long i = 0; i < (long)N * IC; i++) buf[i] = inp[i] * drop_factor(t->drop_seed, l, k, i, p);
    return buf;
}

/* out = inp W^T + b (+ s B A drop(inp)). */
static void lin_forward(trn *t, int l, int k, float *out, const float *inp, const float *W, const float *b, int N, int IC,
                        int OC) {
    matmul_forward(out, inp, W, N, IC, OC);
    if (b) bias_forward(out, b, N, OC);
    const lora *lo = t->lo;
    if (!lo || !lo->A[k]) return;
    int r = lo->r;
    const float *A = lo->A[k] + (size_t)l * r * IC, *Bm = lo->B[k] + (size_t)l * OC * r; // A (r, IC), B (OC, r)
    const float *x = lora_input(t, l, k, inp, N, IC, t->scratch);
    float *u = t->layer[l].u[k]; // (N, r)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, IC, 1.0f, x, IC, A, IC, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, r, lora_scale(lo), u, r, Bm, r, 1.0f, out, OC);
}

static void lin_backward(trn *t, const bwd_bufs *s, int l, int k, float *dinp, const float *dout, const float *inp,
                         const float *W, float *gW, float *gb, int N, int IC, int OC, lora *glo) {
    matmul_backward(dinp, gW, dout, inp, W, N, IC, OC);
    bias_backward(gb, dout, N, OC);
    const lora *lo = t->lo;
    if (!lo || !lo->A[k]) return;
    int r = lo->r;
    float sc = lora_scale(lo);
    const float *A = lo->A[k] + (size_t)l * r * IC, *Bm = lo->B[k] + (size_t)l * OC * r;
    const float *u = t->layer[l].u[k];
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
        float p = lo->dropout;
        for (long i = 0; i < (long)N * IC; i++) dinp[i] += s->dxd[i] * drop_factor(t->drop_seed, l, k, i, p);
    }
}

/* qonly (NULL: none): rows that add no key/value (trn.query_pos) */
static void kv_store(float *kc, float *vc, const float *k, const float *v, const int *seq, const int *pos, const int *qonly,
                     int N, int NKV, int HD, int Tmax) {
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NKV && !(qonly && qonly[n] >= 0); h++) {
            size_t dst = (((size_t)seq[n] * NKV + h) * Tmax + pos[n]) * HD, src = ((size_t)n * NKV + h) * HD;
            memcpy(kc + dst, k + src, (size_t)HD * sizeof(float));
            memcpy(vc + dst, v + src, (size_t)HD * sizeof(float));
        }
}

/* backward of kv_store: the cache gradients of each row's (slot, pos). */
static void kv_gather(float *dk, float *dv, const float *dkc, const float *dvc, const int *seq, const int *pos,
                      const int *qonly, int N, int NKV, int HD, int Tmax) {
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NKV; h++) {
            size_t src = (((size_t)seq[n] * NKV + h) * Tmax + pos[n]) * HD, dst = ((size_t)n * NKV + h) * HD;
            if (qonly && qonly[n] >= 0) { /* its key and value were never used */
                memset(dk + dst, 0, (size_t)HD * sizeof(float));
                memset(dv + dst, 0, (size_t)HD * sizeof(float));
                continue;
            }
            memcpy(dk + dst, dkc + src, (size_t)HD * sizeof(float));
            memcpy(dv + dst, dvc + src, (size_t)HD * sizeof(float));
        }
}

/* As forward.c's layer_forward, with LoRA on the projections. */
static void layer_forward(trn *t, int l, int N) {
    const mcfg *c = &t->m->cfg;
    const model_weights *w = &t->m->w;
    trn_layer *la = &t->layer[l];
    int C = c->C, I = c->I, NH = c->NH, NKV = c->NKV, HD = c->HD, QD = NH * HD, KD = NKV * HD;
    float *x_next = l + 1 < c->L ? t->layer[l + 1].x_in : t->x_out;
    size_t kvl = (size_t)t->B * NKV * t->Tmax * HD;
    float *kc = t->kc + l * kvl, *vc = t->vc + l * kvl;
    int bias = w->bq != NULL;

    rmsnorm_forward(la->ln1, la->ln1_rstd, la->x_in, w->ln1 + (size_t)l * C, N, C, (float)c->rms_eps);
    lin_forward(t, l, LORA_Q, la->q, la->ln1, w->wq + (size_t)l * QD * C, bias ? w->bq + (size_t)l * QD : NULL, N, C, QD);
    lin_forward(t, l, LORA_K, la->k, la->ln1, w->wk + (size_t)l * KD * C, bias ? w->bk + (size_t)l * KD : NULL, N, C, KD);
    lin_forward(t, l, LORA_V, la->v, la->ln1, w->wv + (size_t)l * KD * C, bias ? w->bv + (size_t)l * KD : NULL, N, C, KD);
    rope_forward(la->q, la->q, t->rpos, N, NH, HD, (float)c->rope_theta);
    rope_forward(la->k, la->k, t->rpos, N, NKV, HD, (float)c->rope_theta);
    kv_store(kc, vc, la->k, la->v, t->seq, t->pos, t->query_pos, N, NKV, HD, t->Tmax);
    attention_forward(la->att, la->q, kc, vc, t->seq, t->apos, N, NH, NKV, HD, t->Tmax, t->nthreads);
    lin_forward(t, l, LORA_O, la->o, la->att, w->wo + (size_t)l * C * QD, w->bo ? w->bo + (size_t)l * C : NULL, N, QD, C);
    residual_forward(la->x_mid, la->x_in, la->o, (long)N * C);

    rmsnorm_forward(la->ln2, la->ln2_rstd, la->x_mid, w->ln2 + (size_t)l * C, N, C, (float)c->rms_eps);
    lin_forward(t, l, LORA_GATE, la->gate, la->ln2, w->wgate + (size_t)l * I * C, NULL, N, C, I);
    lin_forward(t, l, LORA_UP, la->up, la->ln2, w->wup + (size_t)l * I * C, NULL, N, C, I);
    swiglu_forward(la->h, la->gate, la->up, (long)N * I);
    lin_forward(t, l, LORA_DOWN, la->down, la->h, w->wdown + (size_t)l * C * I, NULL, N, I, C);
    residual_forward(x_next, la->x_mid, la->down, (long)N * C);
}

int trn_forward(trn *t, int N, const int *tokens, const int *seq, int nwant, const int *want, float *logits) {
    const mcfg *c = &t->m->cfg;
    const model_weights *w = &t->m->w;
    if (N < 1 || N > t->maxN) return lr_err(LR_EUSAGE, "trainer: %d rows in one call, at most %d", N, t->maxN);
    int *len = xcalloc((size_t)t->B, sizeof(int)), rc = LR_OK;
    for (int i = 0; i < N && !rc; i++) {
        if (seq[i] < 0 || seq[i] >= t->B) rc = lr_err(LR_EUSAGE, "trainer: row %d: slot %d outside [0, %d)", i, seq[i], t->B);
        else if (tokens[i] < 0 || tokens[i] >= c->V)
            rc = lr_err(LR_EINPUT, "trainer: row %d: token id %d outside the vocabulary [0, %d)", i, tokens[i], c->V);
        else if (len[seq[i]] >= t->Tmax)
            rc = lr_err(LR_EINPUT, "trainer: slot %d: more than %d positions", seq[i], t->Tmax);
        else if (t->query_pos && t->query_pos[i] >= 0) { /* after its slot's rows, adding no position */
            if (!len[seq[i]]) rc = lr_err(LR_EUSAGE, "trainer: row %d: a query-only row needs earlier rows in its slot", i);
            t->tokens[i] = tokens[i];
            t->seq[i] = seq[i];
            t->pos[i] = len[seq[i]];
            t->apos[i] = len[seq[i]] - 1;
            t->rpos[i] = t->query_pos[i];
        } else {
            t->tokens[i] = tokens[i];
            t->seq[i] = seq[i];
            t->rpos[i] = t->apos[i] = t->pos[i] = len[seq[i]]++;
        }
    }
    for (int i = 0; i < nwant && !rc; i++)
        if (want[i] < 0 || want[i] >= N || (i && want[i] <= want[i - 1]))
            rc = lr_err(LR_EUSAGE, "trainer: loss rows must be increasing rows in [0, %d)", N);
    free(len);
    if (rc) return rc;
    int C = c->C;
    t->N = N;
    t->nwant = nwant;
    memcpy(t->want, want, (size_t)nwant * sizeof(int));
    embedding_forward(t->layer[0].x_in, t->tokens, w->embed, N, C);
    for (int l = 0; l < c->L; l++) layer_forward(t, l, N);
    rmsnorm_forward(t->lnf, t->lnf_rstd, t->x_out, w->norm, N, C, (float)c->rms_eps);
    for (int i = 0; i < nwant; i++) memcpy(t->lnf_g + (size_t)i * C, t->lnf + (size_t)want[i] * C, (size_t)C * sizeof(float));
    memset(t->dlnf_g, 0, (size_t)nwant * C * sizeof(float));
    if (nwant && logits) matmul_forward(logits, t->lnf_g, w->lm_head, nwant, C, c->V);
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

void trn_backward(trn *t, const float *dlogits, const model_weights *gw, lora *glo) {
    const mcfg *c = &t->m->cfg;
    const model_weights *w = &t->m->w;
    int N = t->N, C = c->C, I = c->I, NH = c->NH, NKV = c->NKV, HD = c->HD, QD = NH * HD, KD = NKV * HD;
    size_t M = (size_t)N, kvl = (size_t)t->B * NKV * t->Tmax * HD, maxic = (size_t)max3(C, QD, I);
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
    rmsnorm_backward(s.dres, g->norm, s.dln, t->x_out, w->norm, t->lnf_rstd, N, C);

    for (int l = c->L - 1; l >= 0; l--) {
        trn_layer *la = &t->layer[l];
        float *kc = t->kc + l * kvl, *vc = t->vc + l * kvl;
#define LW(x, n) (g->x ? g->x + (size_t)l * (n) : NULL) /* layer l's slice of a gradient */
        /* MLP block: x_next = x_mid + down(swiglu(gate(ln2), up(ln2))) */
        memset(s.dh, 0, M * I * sizeof(float));
        lin_backward(t, &s, l, LORA_DOWN, s.dh, s.dres, la->h, w->wdown + (size_t)l * C * I, LW(wdown, (size_t)C * I), NULL,
                     N, I, C, glo);
        memset(s.dgate, 0, M * I * sizeof(float));
        memset(s.dup, 0, M * I * sizeof(float));
        swiglu_backward(s.dgate, s.dup, s.dh, la->gate, la->up, (long)N * I);
        memset(s.dln, 0, M * C * sizeof(float));
        lin_backward(t, &s, l, LORA_GATE, s.dln, s.dgate, la->ln2, w->wgate + (size_t)l * I * C, LW(wgate, (size_t)I * C),
                     NULL, N, C, I, glo);
        lin_backward(t, &s, l, LORA_UP, s.dln, s.dup, la->ln2, w->wup + (size_t)l * I * C, LW(wup, (size_t)I * C), NULL, N,
                     C, I, glo);
        rmsnorm_backward(s.dres, LW(ln2, C), s.dln, la->x_mid, w->ln2 + (size_t)l * C, la->ln2_rstd, N, C);

        /* attention block: x_mid = x_in + o(attention(rope(q(ln1)), rope(k(ln1)), v(ln1))) */
        memset(s.datt, 0, M * QD * sizeof(float));
        lin_backward(t, &s, l, LORA_O, s.datt, s.dres, la->att, w->wo + (size_t)l * C * QD, LW(wo, (size_t)C * QD),
                     LW(bo, C), N, QD, C, glo);
        memset(s.dq, 0, M * QD * sizeof(float));
        memset(s.dkc, 0, kvl * sizeof(float));
        memset(s.dvc, 0, kvl * sizeof(float));
        attention_backward(s.dq, s.dkc, s.dvc, s.datt, la->q, kc, vc, t->seq, t->apos, N, NH, NKV, HD, t->Tmax,
                           t->nthreads);
        kv_gather(s.dk, s.dv, s.dkc, s.dvc, t->seq, t->pos, t->query_pos, N, NKV, HD, t->Tmax);
        rope_backward(s.dq, s.dq, t->rpos, N, NH, HD, (float)c->rope_theta);
        rope_backward(s.dk, s.dk, t->rpos, N, NKV, HD, (float)c->rope_theta);
        memset(s.dln, 0, M * C * sizeof(float));
        lin_backward(t, &s, l, LORA_Q, s.dln, s.dq, la->ln1, w->wq + (size_t)l * QD * C, LW(wq, (size_t)QD * C), LW(bq, QD),
                     N, C, QD, glo);
        lin_backward(t, &s, l, LORA_K, s.dln, s.dk, la->ln1, w->wk + (size_t)l * KD * C, LW(wk, (size_t)KD * C), LW(bk, KD),
                     N, C, KD, glo);
        lin_backward(t, &s, l, LORA_V, s.dln, s.dv, la->ln1, w->wv + (size_t)l * KD * C, LW(wv, (size_t)KD * C), LW(bv, KD),
                     N, C, KD, glo);
        rmsnorm_backward(s.dres, LW(ln1, C), s.dln, la->x_in, w->ln1 + (size_t)l * C, la->ln1_rstd, N, C);
#undef LW
    }
    embedding_backward(g->embed, s.dres, t->tokens, N, C);
}
