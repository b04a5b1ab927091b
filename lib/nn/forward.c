/* forward: see forward.h. */
#include "nn/forward.h"

#include "nn/ops_cpu.h"
#include "base/util.h"

#include <cblas.h>
#undef I /* complex.h (via cblas.h) defines I; we use it as the MLP width */
#include <stdlib.h>
#include <string.h>

int fwd_init(fwd *f, const model *m, int B, int Tmax, int max_tokens, int keep_acts, int nthreads) {
    memset(f, 0, sizeof *f);
    const mcfg *c = &m->cfg;
    if (B < 1 || Tmax < 1 || max_tokens < 1) return lr_err(LR_EUSAGE, "forward: need B, Tmax and max_tokens >= 1");
    f->m = m;
    f->B = B;
    f->Tmax = Tmax;
    f->max_tokens = max_tokens;
    f->keep_acts = keep_acts;
    f->nthreads = nthreads > 0 ? nthreads : openblas_get_num_threads();
    size_t kvn = (size_t)c->L * B * c->NKV * Tmax * c->HD;
    f->kc = xcalloc(kvn, sizeof(float));
    f->vc = xcalloc(kvn, sizeof(float));
    f->len = xcalloc((size_t)B, sizeof(int));
    /* Size table: one layer's buffers (x_in apart: it is the residual
     * stream, one buffer per layer + x_out with keep_acts, one in all
     * without), then the final norm and the gather buffer. */
    size_t M = (size_t)max_tokens, C = (size_t)c->C, I = (size_t)c->I;
    size_t QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD;
    size_t sizes[] = {C, 1, QD, KD, KD, QD, C, C, C, 1, I, I, I, C}; /* per row, in fwd_layer_acts order from ln1 */
    size_t nsz = sizeof sizes / sizeof sizes[0], per_layer = 0;
    for (size_t i = 0; i < nsz; i++) per_layer += sizes[i] * M;
    size_t nsets = keep_acts ? (size_t)c->L : 1, nresid = keep_acts ? (size_t)c->L + 1 : 1;
    size_t total = nsets * per_layer + nresid * M * C + M * C + M + M * C;
    f->act_mem = xmalloc(total * sizeof(float));
    float *at = f->act_mem;
    fwd_acts *a = &f->a;
    a->layer = xcalloc((size_t)c->L, sizeof *a->layer);
    float *resid0 = at;
    at += nresid * M * C;
    for (int l = 0; l < c->L; l++) {
        fwd_layer_acts *la = &a->layer[l];
        la->x_in = keep_acts ? resid0 + (size_t)l * M * C : resid0;
        if (l == 0 || keep_acts) {
            float **dst[] = {&la->ln1, &la->ln1_rstd, &la->q, &la->k, &la->v, &la->att, &la->o, &la->x_mid,
                             &la->ln2, &la->ln2_rstd, &la->gate, &la->up, &la->h, &la->down};
            for (size_t i = 0; i < nsz; i++) {
                *dst[i] = at;
                at += sizes[i] * M;
            }
        } else { /* share layer 0's buffers */
            float *x_in = la->x_in;
            *la = a->layer[0];
            la->x_in = x_in;
        }
    }
    a->x_out = keep_acts ? resid0 + (size_t)c->L * M * C : resid0;
    a->lnf = at, at += M * C;
    a->lnf_rstd = at, at += M;
    f->gather = at, at += M * C;
    a->tokens = xmalloc(M * sizeof(int));
    a->seq = xmalloc(M * sizeof(int));
    a->pos = xmalloc(M * sizeof(int));
    a->rpos = xmalloc(M * sizeof(int));
    a->apos = xmalloc(M * sizeof(int));
    return LR_OK;
}

void fwd_free(fwd *f) {
    free(f->kc);
    free(f->vc);
    free(f->len);
    free(f->act_mem);
    free(f->a.layer);
    free(f->a.tokens);
    free(f->a.seq);
    free(f->a.pos);
    free(f->a.rpos);
    free(f->a.apos);
    free(f->u_mem);
    free(f->xdrop);
    memset(f, 0, sizeof *f);
}

void fwd_reset(fwd *f, int b) {
    if (b < 0) memset(f->len, 0, (size_t)f->B * sizeof(int));
    else if (b < f->B) f->len[b] = 0;
}

/* Where block (l, h) of a saved prefix lies in the cache: positions
 * 0..n-1 of slot b's (l, h) block; the prefix's own block is number
 * l * NKV + h, of n * HD floats. */
static size_t prefix_at(const fwd *f, int b, int l, int h) {
    const mcfg *c = &f->m->cfg;
    return (((size_t)l * f->B + b) * c->NKV + h) * (size_t)f->Tmax * c->HD;
}

void fwd_save_prefix(const fwd *f, int b, int n, float *k, float *v) {
    const mcfg *c = &f->m->cfg;
    size_t blk = (size_t)n * c->HD;
    for (int l = 0, i = 0; l < c->L; l++)
        for (int h = 0; h < c->NKV; h++, i++) {
            memcpy(k + i * blk, f->kc + prefix_at(f, b, l, h), blk * sizeof(float));
            memcpy(v + i * blk, f->vc + prefix_at(f, b, l, h), blk * sizeof(float));
        }
}

void fwd_load_prefix(fwd *f, int b, int n, const float *k, const float *v) {
    const mcfg *c = &f->m->cfg;
    size_t blk = (size_t)n * c->HD;
    for (int l = 0, i = 0; l < c->L; l++)
        for (int h = 0; h < c->NKV; h++, i++) {
            memcpy(f->kc + prefix_at(f, b, l, h), k + i * blk, blk * sizeof(float));
            memcpy(f->vc + prefix_at(f, b, l, h), v + i * blk, blk * sizeof(float));
        }
    f->len[b] = n;
}

void fwd_set_lora(fwd *f, const lora *lo) {
    const mcfg *c = &f->m->cfg;
    free(f->u_mem);
    free(f->xdrop);
    f->u_mem = f->xdrop = NULL;
    f->lo = lo;
    for (int l = 0; l < c->L; l++) memset(f->a.layer[l].u, 0, sizeof f->a.layer[l].u);
    if (!lo) return;
    /* u (M, r) per adapted module: per layer with keep_acts (the backward
     * reads them), else one set that every layer reuses */
    size_t M = (size_t)f->max_tokens, r = (size_t)lo->r, nmod = 0;
    for (int k = 0; k < LORA_NMOD; k++) nmod += lo->A[k] != NULL;
    size_t nsets = f->keep_acts ? (size_t)c->L : 1;
    size_t nu = nsets * nmod * M * r;
    f->u_mem = xmalloc((nu > 0 ? nu : 1) * sizeof(float));
    float *p = f->u_mem;
    for (int l = 0; l < c->L; l++) {
        fwd_layer_acts *la = &f->a.layer[l];
        if (l > 0 && !f->keep_acts) {
            memcpy(la->u, f->a.layer[0].u, sizeof la->u);
            continue;
        }
        for (int k = 0; k < LORA_NMOD; k++)
            if (lo->A[k]) la->u[k] = p, p += M * r;
    }
}

/* The buffer of a dropped-out module input, made on first use (only
 * training with dropout needs it). */
static float *xdrop_buf(fwd *f) {
    if (!f->xdrop) {
        const mcfg *c = &f->m->cfg;
        int maxic = c->C > c->NH * c->HD ? c->C : c->NH * c->HD;
        if (c->I > maxic) maxic = c->I;
        f->xdrop = xmalloc((size_t)f->max_tokens * maxic * sizeof(float));
    }
    return f->xdrop;
}

/* Copies this chunk's k, v rows into the layer's cache at (slot, pos),
 * but for query-only rows (qonly[n] >= 0; qonly NULL: none). */
static void kv_store(float *kc, float *vc, const float *k, const float *v, const int *seq, const int *pos, const int *qonly,
                     int N, int NKV, int HD, int Tmax) {
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NKV && !(qonly && qonly[n] >= 0); h++) {
            size_t dst = (((size_t)seq[n] * NKV + h) * Tmax + pos[n]) * HD, src = ((size_t)n * NKV + h) * HD;
            memcpy(kc + dst, k + src, (size_t)HD * sizeof(float));
            memcpy(vc + dst, v + src, (size_t)HD * sizeof(float));
        }
}

/* out = inp W^T: the bf16 copy of W for decode-sized N when the model has
 * one and activations are not kept (identical results, half the memory
 * traffic), else float32. */
static void mat_forward(const fwd *f, float *out, const float *inp, const float *W, const uint16_t *W16, int N, int IC,
                        int OC) {
    if (W16 && N <= MATMUL_SMALL_N && !f->keep_acts) matmul_bf16_forward(out, inp, W16, N, IC, OC);
    else matmul_forward(out, inp, W, N, IC, OC);
}

/* Projection k of layer l: out = inp W^T + b (+ s B A drop(inp) when k is
 * adapted), the LoRA term added last, after the bias, as PEFT adds it. */
static void lin_forward(fwd *f, int l, int k, float *out, const float *inp, const float *W, const uint16_t *W16,
                        const float *b, int N, int IC, int OC) {
    mat_forward(f, out, inp, W, W16, N, IC, OC);
    if (b) bias_forward(out, b, N, OC);
    const lora *lo = f->lo;
    if (!lo || !lo->A[k]) return;
    int r = lo->r;
    const float *A = lo->A[k] + (size_t)l * r * IC, *Bm = lo->B[k] + (size_t)l * OC * r; // A (r, IC), B (OC, r)
    const float *x = inp;
    if (f->training && lo->dropout > 0.0f) {
        float *xd = xdrop_buf(f);
        dropout_forward(xd, inp, (long)N * IC, lo->dropout, fwd_lora_drop_key(f->drop_seed, l, k));
        x = xd;
    }
    float *u = f->a.layer[l].u[k]; // (N, r)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, IC, 1.0f, x, IC, A, IC, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, r, lora_scale(lo), u, r, Bm, r, 1.0f, out, OC);
}

/* layer l's slice of a stacked weight (NULL stays NULL: no bias, no bf16 copy) */
#define AT(p, off) ((p) ? (p) + (off) : NULL)

/* One decoder layer over the chunk's N rows: pre-norm attention block then
 * pre-norm SwiGLU MLP, each added to the residual stream. The backward of
 * exactly this sequence is trainer.c's layer_backward. */
static void layer_forward(fwd *f, int l, int N) {
    const mcfg *c = &f->m->cfg;
    const model_weights *w = &f->m->w;
    const model_bf16 *h = &f->m->w16;
    fwd_acts *a = &f->a;
    fwd_layer_acts *la = &a->layer[l];
    int C = c->C, I = c->I, NH = c->NH, NKV = c->NKV, HD = c->HD, QD = NH * HD, KD = NKV * HD;
    size_t lC = (size_t)l * C, lQC = (size_t)l * QD * C, lKC = (size_t)l * KD * C, lIC = (size_t)l * I * C;
    float *x_next = l + 1 < c->L ? a->layer[l + 1].x_in : a->x_out;
    size_t kvl = (size_t)f->B * NKV * f->Tmax * HD;
    float *kc = f->kc + l * kvl, *vc = f->vc + l * kvl; // (B, NKV, Tmax, HD)

    rmsnorm_forward(la->ln1, la->ln1_rstd, la->x_in, w->ln1 + lC, N, C, (float)c->rms_eps);
    lin_forward(f, l, LORA_Q, la->q, la->ln1, w->wq + lQC, AT(h->wq, lQC), AT(w->bq, (size_t)l * QD), N, C, QD);
    lin_forward(f, l, LORA_K, la->k, la->ln1, w->wk + lKC, AT(h->wk, lKC), AT(w->bk, (size_t)l * KD), N, C, KD);
    lin_forward(f, l, LORA_V, la->v, la->ln1, w->wv + lKC, AT(h->wv, lKC), AT(w->bv, (size_t)l * KD), N, C, KD);
    rope_forward(la->q, la->q, a->rpos, N, NH, HD, (float)c->rope_theta);
    rope_forward(la->k, la->k, a->rpos, N, NKV, HD, (float)c->rope_theta);
    kv_store(kc, vc, la->k, la->v, a->seq, a->pos, a->qonly, N, NKV, HD, f->Tmax);
    attention_forward(la->att, la->q, kc, vc, a->seq, a->apos, N, NH, NKV, HD, f->Tmax, f->nthreads);
    lin_forward(f, l, LORA_O, la->o, la->att, w->wo + lQC, AT(h->wo, lQC), AT(w->bo, lC), N, QD, C);
    residual_forward(la->x_mid, la->x_in, la->o, (long)N * C);

    rmsnorm_forward(la->ln2, la->ln2_rstd, la->x_mid, w->ln2 + lC, N, C, (float)c->rms_eps);
    lin_forward(f, l, LORA_GATE, la->gate, la->ln2, w->wgate + lIC, AT(h->wgate, lIC), NULL, N, C, I);
    lin_forward(f, l, LORA_UP, la->up, la->ln2, w->wup + lIC, AT(h->wup, lIC), NULL, N, C, I);
    swiglu_forward(la->h, la->gate, la->up, (long)N * I);
    lin_forward(f, l, LORA_DOWN, la->down, la->h, w->wdown + lIC, AT(h->wdown, lIC), NULL, N, I, C);
    residual_forward(x_next, la->x_mid, la->down, (long)N * C);
}

/* fwd_check_rows, with query-only rows (qpos[i] >= 0; qpos NULL: none):
 * they take no position but need an earlier row in their slot. */
static int check_rows(const char *who, const int *len, int B, int Tmax, int V, int N, const int *tokens, const int *seq,
                      const int *qpos) {
    int *extra = xcalloc((size_t)B, sizeof(int));
    int rc = LR_OK;
    for (int i = 0; i < N && !rc; i++) {
        int q = qpos && qpos[i] >= 0;
        if (seq[i] < 0 || seq[i] >= B) rc = lr_err(LR_EUSAGE, "%s: row %d: slot %d outside [0, %d)", who, i, seq[i], B);
        else if (tokens[i] < 0 || tokens[i] >= V)
            rc = lr_err(LR_EINPUT, "%s: row %d: token id %d outside the vocabulary [0, %d)", who, i, tokens[i], V);
        else if (len[seq[i]] + extra[seq[i]] >= Tmax)
            rc = lr_err(LR_EINPUT, "%s: slot %d: more than %d positions (KV cache full)", who, seq[i], Tmax);
        else if (q && len[seq[i]] + extra[seq[i]] == 0)
            rc = lr_err(LR_EUSAGE, "%s: row %d: a query-only row needs earlier rows in its slot", who, i);
        else if (!q) extra[seq[i]]++;
    }
    free(extra);
    return rc;
}

int fwd_check_rows(const char *who, const int *len, int B, int Tmax, int V, int N, const int *tokens, const int *seq) {
    return check_rows(who, len, B, Tmax, V, N, tokens, seq, NULL);
}

int fwd_run(fwd *f, int N, const int *tokens, const int *seq, const unsigned char *want, float *logits) {
    const mcfg *c = &f->m->cfg;
    const model_weights *w = &f->m->w;
    if (f->keep_acts && N > f->max_tokens)
        return lr_err(LR_EUSAGE, "forward: %d tokens in one call with kept activations, at most %d", N, f->max_tokens);
    const int *qp = f->query_pos;
    int rc = check_rows("forward", f->len, f->B, f->Tmax, c->V, N, tokens, seq, qp);
    if (rc) return rc;
    fwd_acts *a = &f->a;
    int C = c->C;
    size_t out_row = 0;
    for (int start = 0; start < N; start += f->max_tokens) {
        int n = N - start < f->max_tokens ? N - start : f->max_tokens;
        for (int i = 0; i < n; i++) {
            int r = start + i, *len = &f->len[seq[r]];
            a->tokens[i] = tokens[r];
            a->seq[i] = seq[r];
            if (qp && qp[r] >= 0) { /* after its slot's rows, adding no position */
                a->pos[i] = *len;
                a->apos[i] = *len - 1;
                a->rpos[i] = qp[r];
            } else a->rpos[i] = a->apos[i] = a->pos[i] = (*len)++;
        }
        a->qonly = qp ? qp + start : NULL;
        a->N = n;
        embedding_forward(a->layer[0].x_in, a->tokens, w->embed, n, C);
        for (int l = 0; l < c->L; l++) layer_forward(f, l, n);
        rmsnorm_forward(a->lnf, a->lnf_rstd, a->x_out, w->norm, n, C, (float)c->rms_eps);
        if (!logits) continue;
        int g = 0;
        for (int i = 0; i < n; i++)
            if (!want || want[start + i]) memcpy(f->gather + (size_t)g++ * C, a->lnf + (size_t)i * C, (size_t)C * sizeof(float));
        if (g) mat_forward(f, logits + out_row * c->V, f->gather, w->lm_head, f->m->w16.lm_head, g, C, c->V);
        out_row += (size_t)g;
    }
    return LR_OK;
}

/* Packs B sequences into rows for fresh slots 0..B-1; want marks the last
 * row of each sequence (last_only) or every row. */
static int run_packed(fwd *f, int B, const int *const *tokens, const int *lens, float *logits, int last_only) {
    if (B > f->B) return lr_err(LR_EUSAGE, "forward: %d sequences, the cache has %d slots", B, f->B);
    long N = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) return lr_err(LR_EINPUT, "forward: sequence %d is empty", b);
        N += lens[b];
    }
    int *tok = xmalloc((size_t)N * sizeof(int)), *seq = xmalloc((size_t)N * sizeof(int));
    unsigned char *want = xmalloc((size_t)N);
    long r = 0;
    for (int b = 0; b < B; b++) {
        fwd_reset(f, b);
        for (int t = 0; t < lens[b]; t++, r++) {
            tok[r] = tokens[b][t];
            seq[r] = b;
            want[r] = !last_only || t == lens[b] - 1;
        }
    }
    int rc = fwd_run(f, (int)N, tok, seq, want, logits);
    free(tok);
    free(seq);
    free(want);
    return rc;
}

int fwd_prefill(fwd *f, int B, const int *const *tokens, const int *lens, float *logits) {
    return run_packed(f, B, tokens, lens, logits, 1);
}

int fwd_teacher(fwd *f, int B, const int *const *tokens, const int *lens, float *logits) {
    return run_packed(f, B, tokens, lens, logits, 0);
}

int fwd_decode(fwd *f, int B, const int *tokens, float *logits) {
    if (B > f->B) return lr_err(LR_EUSAGE, "forward: %d sequences, the cache has %d slots", B, f->B);
    int seq[B];
    for (int b = 0; b < B; b++) seq[b] = b;
    return fwd_run(f, B, tokens, seq, NULL, logits);
}
