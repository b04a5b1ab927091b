/* train: the device trainer (nn/gpu_train.h), trainer.c's LoRA forward and
 * backward op for op on the device, then the loss (loss.cu) and the
 * optimizer step (adamw.cu). Without LoRA (full) the same backward also
 * makes every base tensor's gradient (grad_of: at its weight's offset, as
 * trn_grads), and AdamW updates wmem itself. Float32 throughout, or under GTRN_BF16 the
 * base-weight products in bf16 (see gpu_train.h): lin_forward16 and
 * lin_backward16 are lin_forward and lin_backward with the bf16 weight and
 * activation, the rest of the layer the same kernels on the same float32
 * tensors.
 *
 * The forward is forward.c's layer_forward with kept activations
 * (train_forward.h's kernels, cuBLAS float32 GEMMs for the projections and
 * the LoRA terms, dropout.h's mask); the backward is trainer.c's
 * layer_backward with the base frozen (backward.h, gemm_backward.h), the
 * order test_gpu_lora_backward checks against the CPU. Recomputing
 * (gpu_train.h), layers past the first keep only x_in and share layer 0's
 * other buffers and one KV cache; each layer's forward is rerun just
 * before its backward. Logits exist only
 * for the loss entries, chunk_floats at a time: gather their final-norm
 * rows, lm_head, the loss kernel turns the logits into their gradient in
 * place, one more GEMM gives the final-norm rows' gradient.
 *
 * Everything runs on the default stream; the host waits only for the
 * losses of a call and the norms of an update. */
#include "check.cuh"
#include "common.cuh"
#include "backward.h"
#include "dpnccl.h"
#include "dropout.h"
#include "gemm_backward.h"
#include "kernels.h"
#include "profile.cuh"
#include "train_forward.h"

extern "C" {
#include "nn/forward.h"
#include "nn/gpu_train.h"
#include "nn/ops_cpu.h"
#include "base/util.h"
}

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CB(call)                                                                                              \
    do {                                                                                                      \
        int s_ = (call);                                                                                      \
        if (s_) return lr_err(LR_EGPU, "cublas: %s: status %d", #call, s_);                                   \
    } while (0)

typedef struct {
    float *x_in, *ln1, *r1, *q, *k, *v, *att, *x_mid, *ln2, *r2, *gate, *up, *h;
    uint16_t *ln1h, *atth, *ln2h, *hh; // bf16: ln1, att, ln2, h kept as bf16 only (the float32 ones NULL)
    float *lse; // tcatt: (M, NH) the attention forward's log-sum-exp, which the backward reads with atth
    float *u[LORA_NMOD]; // (M, r) A drop(inp) of each adapted module, NULL otherwise
} tlayer;

struct gpu_trn {
    mcfg c;
    int B, Tmax, M, r;
    size_t chunk_rows, kvl;
    void *blas;
    int bf16;                /* precision GTRN_BF16 */
    int recompute;           /* activations recomputed per layer (gtrn_opts.recompute resolved at init) */
    int tcatt;               /* bf16: attention on tensor cores (k_attention_tc_f32, k_attention_backward_tc), unless
                              * LR_GPU_TCATT=0 or the shape or the device's shared memory rules it out */
    attb_tile *tiles, *h_tiles; /* tcatt: the call's query tiles (attb_tc_tiles), device and host */
    int *trows, *tsfirst, *h_trows, *h_tsfirst, ntiles; /* their row order (M) and per-slot firsts (B + 1) */
    size_t need_bytes, budget; /* what keeping would take, and the budget the AUTO rule compared it with */
    float *wmem;             /* the model's float32 weights, m->mem's layout (f32) */
    model_weights w;         /* device pointers into wmem (f32); bf16: only the norms and biases, into smallw */
    uint16_t *wmem16;        /* bf16: m->mem rounded to bf16, m->mem's layout */
    float *smallw;           /* bf16: the float32 norm weights and biases */
    struct {
        const uint16_t *embed, *wq, *wk, *wv, *wo, *wgate, *wup, *wdown, *lm_head;
    } w16;                   /* bf16: device pointers into wmem16 */
    uint16_t *act16;         /* bf16: the bf16 activations, one allocation */
    uint16_t *g16;           /* bf16: (M, max(C, QD, I)), a product's bf16 operand (an output gradient, lm_head's rows) */
    uint16_t *logits16;      /* bf16: (chunk_rows, V), the logit gradient as lm_head's backward reads it */
    size_t wbytes, abytes;   /* gpu_trn_mem */
    size_t offA[LORA_NMOD], offB[LORA_NMOD], n;
    int adapted[LORA_NMOD];
    float scale, dropout;
    float *p, *gr, *m1, *m2; // (n) parameters, gradients, moments
    int full;                /* no LoRA: every base weight trained, p is wmem and gr has m->mem's layout */
    void *nccl;              /* data-parallel communicator (dpnccl.h), or NULL */
    float *act;              /* every activation, one allocation */
    tlayer *L;               /* host array of device pointers */
    float *x_out, *lnf, *rstdf, *tmp, *kc, *vc, *inv_freq;
    int *tok, *seq, *pos, *rpos, *apos, *qonly; // (M) device
    int *h_pos, *h_rpos, *h_apos, *h_len;        /* host staging */
    /* backward scratch, as trainer.c's bwd_bufs */
    float *bwd, *dres, *dln, *dq, *datt, *dk, *dv, *dh, *dgate, *dup, *xd, *dxd, *du, *dkc, *dvc, *stats, *ws;
    /* loss entries, grown per call */
    float *lg, *logits, *dlg; // (chunk_rows, C), (chunk_rows, V), (ecap, C)
    int *erow, *wrow, *wfirst;
    int32_t *ids, *tgt;
    float *tw;
    int64_t *off;
    double *eloss, *work, *norm;
    float *coef;
    size_t ecap, tcap;
    struct prof *prof;       /* kernel time by kind (gpu_train.h gtrn_prof); NULL: the profile is off */
};

/* Marks the start of a group of launches of one kind (profile.cuh) on the
 * stream every trainer launch goes to; nothing when the profile is off. */
#define TP(kind)                                                                                              \
    do {                                                                                                      \
        if (g->prof) CK(prof_mark(g->prof, (kind), (cudaStream_t)0));                                         \
    } while (0)

/* A profiled call's last mark, then its times collected once the device
 * has run everything up to it. */
static int prof_end(gpu_trn *g) {
    if (!g->prof) return LR_OK;
    CK(prof_mark(g->prof, GTRN_PROF_KINDS, (cudaStream_t)0));
    CK(cudaDeviceSynchronize());
    CK(prof_collect(g->prof));
    return LR_OK;
}

static int imax3(int a, int b, int c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

/* Recomputation keeps one layer's activations and one layer's KV cache,
 * shared by every layer: layer l's KV rows start at kv_off(g, l). */
static size_t kv_off(const gpu_trn *g, int l) { return g->recompute ? 0 : (size_t)l * g->kvl; }

/* gtrn_opts.recompute resolved (the rule in gpu_train.h): keep is what
 * keeping every layer's activations and KV cache takes, other what init
 * allocates besides them either way (bytes). */
static int choose_recompute(gpu_trn *g, const gtrn_opts *o, size_t keep, size_t other) {
    size_t budget = o->mem_budget, total = 0;
    if (!budget && cudaMemGetInfo(&budget, &total) != cudaSuccess) return lr_err(LR_EGPU, "cuda trainer: cudaMemGetInfo failed");
    g->need_bytes = keep + other, g->budget = budget;
    /* the eighth left over: cuBLAS's workspace, the loss entries' buffers
     * grown per call, the allocator's rounding */
    g->recompute = o->recompute == GTRN_RECOMPUTE_ALWAYS ||
                   (o->recompute == GTRN_RECOMPUTE_AUTO && g->need_bytes > budget - budget / 8);
    return LR_OK;
}

static int dalloc(void *pp, size_t bytes) {
    void **p = (void **)pp;
    CK(cudaMalloc(p, bytes ? bytes : 1));
    return LR_OK;
}

extern "C" void gpu_trn_free(gpu_trn *g) {
    if (!g) return;
    if (g->prof) {
        gtrn_prof p;
        if (!gpu_trn_profile(g, &p) && p.calls) gtrn_prof_print(stderr, &p);
        prof_free(g->prof);
    }
    if (g->full) g->p = NULL; /* wmem, freed once below */
    dpnccl_free(g->nccl);
    void *ptrs[] = {g->wmem, g->wmem16, g->smallw, g->act16, g->g16, g->logits16, g->p, g->gr, g->m1, g->m2, g->act,
                    g->kc, g->vc, g->inv_freq, g->tok, g->seq, g->pos, g->rpos, g->apos, g->qonly, g->bwd, g->lg,
                    g->logits, g->dlg, g->erow, g->wrow, g->wfirst, g->ids, g->tgt, g->tw, g->off, g->eloss, g->work,
                    g->norm, g->coef, g->tiles, g->trows, g->tsfirst};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
        if (ptrs[i]) cudaFree(ptrs[i]);
    blas_destroy(g->blas);
    free(g->L);
    free(g->h_pos);
    free(g->h_rpos);
    free(g->h_apos);
    free(g->h_len);
    free(g->h_tiles);
    free(g->h_trows);
    free(g->h_tsfirst);
    free(g);
}

/* Layer l's elements [o, o + k) of part p as float32 on the host: the
 * loaded copy (model_load), or the opened checkpoint's tensor (model_open):
 * float32 as it is in the mmap, another dtype converted into host (k
 * floats). */
static const float *part_f32(const model *m, const model_part *p, int l, size_t o, size_t k, float *host) {
    if (m->mem) return m->mem + p->off + (size_t)l * p->each + o;
    const st_tensor *t = model_tensor(m, p->suffix, p->per_layer ? l : -1);
    if (t->dtype == ST_F32) return (const float *)t->data + o;
    st_to_f32(host, (const char *)t->data + o * st_dtype_size(t->dtype), t->dtype, k);
    return host;
}

/* GTRN_BF16's weights in m->mem's layout (model_parts), part by part and
 * layer by layer: an opened checkpoint's bf16 tensors copied as they are,
 * every other one through a float32 staging buffer into bf16 on the device
 * (k_f32_to_bf16, the same rounding whichever way the float32 values came:
 * model_load's widened copy, a float32 tensor, an f16 one converted on the
 * host chunk by chunk), so no host copy of the whole model exists (an
 * opened tensor's mmap'd pages dropped once copied); and the norm weights
 * and biases, read by float32 kernels, as float32 too */
static int upload_bf16(gpu_trn *g, const model *m) {
    const mcfg *c = &m->cfg;
    model_part parts[MODEL_MAX_PARTS];
    size_t n;
    int np = model_parts(c, parts, &n), rc;
    if ((rc = dalloc(&g->wmem16, n * sizeof(uint16_t)))) return rc;
    size_t chunk = n < ((size_t)16 << 20) ? n : ((size_t)16 << 20), ns = 0;
    for (int i = 0; i < np; i++) ns += parts[i].cols ? 0 : (size_t)(parts[i].per_layer ? c->L : 1) * parts[i].each;
    float *stage = NULL, *host = NULL; /* host: only for an opened model's tensors not in float32 */
    if ((rc = dalloc(&stage, chunk * sizeof(float))) || (rc = dalloc(&g->smallw, ns * sizeof(float)))) {
        cudaFree(stage);
        return rc;
    }
    float *at = g->smallw;
    rc = LR_OK;
    for (int i = 0; i < np && !rc; i++) {
        const model_part *p = &parts[i];
        int nl = p->per_layer ? c->L : 1;
        if (!p->cols) ((float **)&g->w)[p->field] = at;
        for (int l = 0; l < nl && !rc; l++) {
            uint16_t *dst = g->wmem16 + p->off + (size_t)l * p->each;
            const st_tensor *t = m->mem ? NULL : model_tensor(m, p->suffix, p->per_layer ? l : -1);
            if (t && !host && t->dtype != ST_F32) host = (float *)xmalloc(chunk * sizeof(float));
            if (t && t->dtype == ST_BF16) { /* straight from the mmap */
                if (cudaMemcpy(dst, t->data, p->each * sizeof(uint16_t), cudaMemcpyHostToDevice) != cudaSuccess) rc = LR_EGPU;
            } else {
                for (size_t o = 0; o < p->each && !rc; o += chunk) {
                    size_t k = p->each - o < chunk ? p->each - o : chunk;
                    /* cudaMemcpy on the default stream waits for the previous chunk's conversion */
                    if (cudaMemcpy(stage, part_f32(m, p, l, o, k, host), k * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess)
                        rc = LR_EGPU;
                    else k_f32_to_bf16(dst + o, stage, k, NULL);
                }
            }
            if (!rc && !p->cols &&
                cudaMemcpy(at, part_f32(m, p, l, 0, p->each, host), p->each * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess)
                rc = LR_EGPU;
            if (!p->cols) at += p->each;
            st_drop_pages(t); /* copied: its pages need not stay resident */
        }
    }
    cudaError_t done = cudaDeviceSynchronize();
    cudaFree(stage);
    free(host);
    if (rc) return lr_err(LR_EGPU, "cuda trainer: uploading the weights failed");
    CK(done);
    size_t off[sizeof(model_weights) / sizeof(float *)];
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) off[i] = SIZE_MAX;
    for (int i = 0; i < np; i++) off[parts[i].field] = parts[i].off;
#define R16(f) (off[offsetof(model_weights, f) / sizeof(float *)] != SIZE_MAX ? g->wmem16 + off[offsetof(model_weights, f) / sizeof(float *)] : NULL)
    g->w16.embed = R16(embed), g->w16.wq = R16(wq), g->w16.wk = R16(wk), g->w16.wv = R16(wv);
    g->w16.wo = R16(wo), g->w16.wgate = R16(wgate), g->w16.wup = R16(wup), g->w16.wdown = R16(wdown);
    g->w16.lm_head = c->tied ? g->w16.embed : R16(lm_head);
#undef R16
    g->wbytes = n * sizeof(uint16_t) + ns * sizeof(float);
    return LR_OK;
}

static int init(gpu_trn *g, const model *m, const lora *lo, const gtrn_opts *o) {
    const mcfg *c = &m->cfg;
    int B = o->B, Tmax = o->Tmax, maxN = o->maxN;
    size_t chunk_floats = o->chunk_floats;
    g->bf16 = o->precision == GTRN_BF16;
    g->c = *c;
    g->B = B, g->Tmax = Tmax, g->M = maxN, g->full = !lo;
    g->r = lo ? lo->r : 0, g->scale = lo ? lora_scale(lo) : 0.0f, g->dropout = lo ? lo->dropout : 0.0f;
    g->n = lo ? lo->n : m->nparams;
    size_t cr = chunk_floats / (size_t)c->V;
    g->chunk_rows = cr < 1 ? 1 : cr > (size_t)maxN ? (size_t)maxN : cr;
    for (int k = 0; k < LORA_NMOD; k++)
        if ((g->adapted[k] = lo && lo->A[k] != NULL)) g->offA[k] = (size_t)(lo->A[k] - lo->mem), g->offB[k] = (size_t)(lo->B[k] - lo->mem);
    if (cudaSetDevice(lr_cuda_dev) != cudaSuccess) return lr_err(LR_EGPU, "cuda: no usable device");
    if (!(g->blas = blas_create(NULL))) return lr_err(LR_EGPU, "cuda trainer: no cuBLAS handle");
    /* weights: one upload of m->mem, the pointers rebased as trn_grads does */
    int rc;
    if (g->bf16) {
        if ((rc = upload_bf16(g, m))) return rc;
    } else {
        if ((rc = dalloc(&g->wmem, m->nparams * sizeof(float)))) return rc;
        CK(cudaMemcpy(g->wmem, m->mem, m->nparams * sizeof(float), cudaMemcpyHostToDevice));
        const float *const *src = (const float *const *)&m->w;
        float **dst = (float **)&g->w;
        for (size_t i = 0; i < sizeof(model_weights) / sizeof(float *); i++) dst[i] = src[i] ? g->wmem + (src[i] - m->mem) : NULL;
        g->wbytes = m->nparams * sizeof(float);
    }
    float **lov[] = {&g->p, &g->gr, &g->m1, &g->m2};
    for (int i = g->full; i < 4; i++) { /* full: the parameters are the weights just uploaded */
        if ((rc = dalloc(lov[i], g->n * sizeof(float)))) return rc;
        CK(cudaMemset(*lov[i], 0, g->n * sizeof(float)));
    }
    if (g->full) g->p = g->wmem;
    else CK(cudaMemcpy(g->p, lo->mem, g->n * sizeof(float), cudaMemcpyHostToDevice));
    /* activations: per layer as fwd_layer_acts, then x_out, lnf, its rstd, one (M, C) temporary */
    size_t M = (size_t)maxN, C = (size_t)c->C, I = (size_t)c->I, QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD;
    size_t r = (size_t)g->r, nmod = 0;
    for (int k = 0; k < LORA_NMOD; k++) nmod += g->adapted[k];
    if (g->bf16 && env_on("LR_GPU_TCATT", 1) && attb_tc_serves(c->NH, c->NKV, c->HD)) {
        cudaDeviceProp prop;
        g->tcatt = cudaGetDeviceProperties(&prop, lr_cuda_dev) == cudaSuccess &&
                   prop.sharedMemPerBlockOptin >= attb_tc_smem(c->HD);
    }
    /* tcatt: the attention's lse, NH floats a row */
    size_t per_layer = M * (4 * C + 2 + 2 * QD + 2 * KD + 3 * I + nmod * r + (g->tcatt ? (size_t)c->NH : 0));
    /* bf16: ln1, att, ln2 and h are read only by base-weight products and
     * the LoRA terms, so they are kept in bf16 alone */
    size_t per_layer16 = g->bf16 ? M * (2 * C + QD + I) : 0;
    per_layer -= per_layer16;
    g->kvl = (size_t)B * c->NKV * Tmax * c->HD;
    size_t maxic = (size_t)imax3(c->C, (int)QD, c->I), L = (size_t)c->L, V = (size_t)c->V;
    size_t nb = M * (2 * C + 2 * QD + 2 * KD + 3 * I + 2 * maxic + r) + 2 * g->kvl + 2 * M * c->NH +
                (size_t)BWD_COLSUM_PARTS * imax3(c->C, (int)QD, c->I);
    size_t cr16 = g->bf16 ? (M * maxic + g->chunk_rows * V) * sizeof(uint16_t) : 0;
    size_t keep = (L * per_layer + M * (3 * C + 1) + 2 * L * g->kvl) * sizeof(float) + L * per_layer16 * sizeof(uint16_t);
    size_t tbytes = g->tcatt ? M * (sizeof(attb_tile) + sizeof(int)) + ((size_t)B + 1) * sizeof(int) : 0;
    size_t other = (nb + g->chunk_rows * (C + V)) * sizeof(float) + cr16 + 6 * M * sizeof(int) + tbytes;
    if ((rc = choose_recompute(g, o, keep, other))) return rc;
    /* recomputing: every layer's input, one layer's other activations */
    size_t nkept = g->recompute ? 1 : L;
    size_t total = (L - nkept) * M * C + nkept * per_layer + M * (3 * C + 1);
    if ((rc = dalloc(&g->act, total * sizeof(float)))) return rc;
    if (g->bf16 && (rc = dalloc(&g->act16, nkept * per_layer16 * sizeof(uint16_t)))) return rc;
    g->abytes = total * sizeof(float) + nkept * per_layer16 * sizeof(uint16_t);
    g->L = (tlayer *)xcalloc((size_t)c->L, sizeof *g->L);
    float *a = g->act;
    uint16_t *a16 = g->act16;
#define TAKE(ptr, nf) (ptr = a, a += (nf))
#define TAKE_KEPT(ptr, ptr16, nf)                                                                             \
    do {                                                                                                      \
        if (g->bf16) ptr16 = a16, a16 += (nf);                                                                \
        else TAKE(ptr, nf);                                                                                   \
    } while (0)
    for (int l = 0; l < c->L; l++) {
        tlayer *t = &g->L[l];
        if (g->recompute && l) { /* its input kept, the rest layer 0's buffers, remade before its backward */
            *t = g->L[0];
            TAKE(t->x_in, M * C);
            continue;
        }
        TAKE(t->x_in, M * C);
        TAKE_KEPT(t->ln1, t->ln1h, M * C);
        TAKE(t->r1, M), TAKE(t->q, M * QD), TAKE(t->k, M * KD), TAKE(t->v, M * KD);
        TAKE_KEPT(t->att, t->atth, M * QD);
        TAKE(t->x_mid, M * C);
        TAKE_KEPT(t->ln2, t->ln2h, M * C);
        TAKE(t->r2, M), TAKE(t->gate, M * I), TAKE(t->up, M * I);
        TAKE_KEPT(t->h, t->hh, M * I);
        if (g->tcatt) TAKE(t->lse, M * c->NH);
        for (int k = 0; k < LORA_NMOD; k++)
            if (g->adapted[k]) TAKE(t->u[k], M * r);
    }
#undef TAKE_KEPT
    TAKE(g->x_out, M * C), TAKE(g->lnf, M * C), TAKE(g->rstdf, M), TAKE(g->tmp, M * C);
    size_t kvn = nkept * g->kvl;
    if ((rc = dalloc(&g->kc, kvn * sizeof(float))) || (rc = dalloc(&g->vc, kvn * sizeof(float)))) return rc;
    /* the cache's unwritten rows are never read (no row attends past its
     * slot's rows), but zero them so nothing reads uninitialised memory */
    CK(cudaMemset(g->kc, 0, kvn * sizeof(float)));
    CK(cudaMemset(g->vc, 0, kvn * sizeof(float)));
    float inv[512];
    if (c->HD / 2 > 512) return lr_err(LR_EINPUT, "cuda trainer: head_dim %d not supported (at most 128)", c->HD);
    rope_inv_freq(inv, c->HD, (float)c->rope_theta);
    if ((rc = dalloc(&g->inv_freq, (size_t)(c->HD / 2) * sizeof(float)))) return rc;
    CK(cudaMemcpy(g->inv_freq, inv, (size_t)(c->HD / 2) * sizeof(float), cudaMemcpyHostToDevice));
    int **iv[] = {&g->tok, &g->seq, &g->pos, &g->rpos, &g->apos, &g->qonly};
    for (int i = 0; i < 6; i++)
        if ((rc = dalloc(iv[i], M * sizeof(int)))) return rc;
    g->h_pos = (int *)xmalloc(M * sizeof(int)), g->h_rpos = (int *)xmalloc(M * sizeof(int));
    g->h_apos = (int *)xmalloc(M * sizeof(int)), g->h_len = (int *)xmalloc((size_t)B * sizeof(int));
    if (g->tcatt) {
        if ((rc = dalloc(&g->tiles, M * sizeof(attb_tile))) || (rc = dalloc(&g->trows, M * sizeof(int))) ||
            (rc = dalloc(&g->tsfirst, ((size_t)B + 1) * sizeof(int))))
            return rc;
        g->h_tiles = (attb_tile *)xmalloc(M * sizeof(attb_tile)), g->h_trows = (int *)xmalloc(M * sizeof(int));
        g->h_tsfirst = (int *)xmalloc(((size_t)B + 1) * sizeof(int));
    }
    if ((rc = dalloc(&g->bwd, nb * sizeof(float)))) return rc;
    a = g->bwd;
    TAKE(g->dres, M * C), TAKE(g->dln, M * C), TAKE(g->dq, M * QD), TAKE(g->datt, M * QD), TAKE(g->dk, M * KD);
    TAKE(g->dv, M * KD), TAKE(g->dh, M * I), TAKE(g->dgate, M * I), TAKE(g->dup, M * I), TAKE(g->xd, M * maxic);
    TAKE(g->dxd, M * maxic), TAKE(g->du, M * r), TAKE(g->dkc, g->kvl), TAKE(g->dvc, g->kvl);
    TAKE(g->stats, 2 * M * c->NH), TAKE(g->ws, (size_t)BWD_COLSUM_PARTS * imax3(c->C, (int)QD, c->I));
#undef TAKE
    if ((rc = dalloc(&g->lg, g->chunk_rows * C * sizeof(float))) ||
        (rc = dalloc(&g->logits, g->chunk_rows * (size_t)c->V * sizeof(float))) ||
        (rc = dalloc(&g->work, K_NORM_BLOCKS * sizeof(double))) || (rc = dalloc(&g->norm, 2 * sizeof(double))) ||
        (rc = dalloc(&g->coef, sizeof(float))))
        return rc;
    if (g->bf16 && ((rc = dalloc(&g->g16, M * maxic * sizeof(uint16_t))) ||
                    (rc = dalloc(&g->logits16, g->chunk_rows * (size_t)c->V * sizeof(uint16_t)))))
        return rc;
    return LR_OK;
}

extern "C" void gpu_trn_mem(const gpu_trn *g, size_t *weight_bytes, size_t *act_bytes) {
    if (weight_bytes) *weight_bytes = g->wbytes;
    if (act_bytes) *act_bytes = g->abytes;
}

extern "C" int gpu_trn_recomputes(const gpu_trn *g, size_t *need_bytes, size_t *budget_bytes) {
    if (need_bytes) *need_bytes = g->need_bytes;
    if (budget_bytes) *budget_bytes = g->budget;
    return g->recompute;
}

extern "C" int gpu_trn_init(gpu_trn **gp, const model *m, const lora *lo, const gtrn_opts *o) {
    *gp = NULL;
    const mcfg *c = &m->cfg;
    int B = o->B, Tmax = o->Tmax, maxN = o->maxN;
    if (!lo && o->precision != GTRN_F32)
        return lr_err(LR_EUSAGE, "cuda trainer: full-parameter training is float32 only (float32 master weights and products)");
    if (B < 1 || Tmax < 1 || maxN < 1) return lr_err(LR_EUSAGE, "cuda trainer: need B, Tmax and maxN >= 1");
    if (o->precision != GTRN_F32 && o->precision != GTRN_BF16)
        return lr_err(LR_EUSAGE, "cuda trainer: unknown precision %d", o->precision);
    if (o->recompute < GTRN_RECOMPUTE_AUTO || o->recompute > GTRN_RECOMPUTE_NEVER)
        return lr_err(LR_EUSAGE, "cuda trainer: unknown recompute setting %d", o->recompute);
    /* an opened model (model_open) has no float32 copy: bf16 LoRA uploads
     * its tensors from the checkpoint; full training and float32 products
     * need model_load's weights */
    if (!m->mem && (!m->st || !lo || o->precision != GTRN_BF16))
        return lr_err(LR_EUSAGE, "cuda trainer: the model's float32 weights are not loaded (model_open'ed: bf16 LoRA only)");
    if (c->HD > 128 || c->HD % 4)
        return lr_err(LR_EINPUT, "cuda trainer: head_dim %d not supported (at most 128, a multiple of 4)", c->HD);
    if (B > 65535) return lr_err(LR_EUSAGE, "cuda trainer: %d slots, at most 65535", B);
    gpu_trn *g = (gpu_trn *)xcalloc(1, sizeof *g);
    int rc = init(g, m, lo, o);
    if (rc) {
        gpu_trn_free(g);
        return rc;
    }
    if (env_on("LR_GPU_PROFILE", 0)) g->prof = prof_new(GTRN_PROF_KINDS);
    *gp = g;
    return LR_OK;
}

extern "C" int gpu_trn_profile(const gpu_trn *g, gtrn_prof *p) {
    memset(p, 0, sizeof *p);
    if (!g->prof) return 1;
    prof_read(g->prof, p->ms, &p->total_ms, &p->calls, &p->events);
    return 0;
}

extern "C" int gpu_trn_put(gpu_trn *g, const float *params, const float *exp_avg, const float *exp_avg_sq) {
    size_t b = g->n * sizeof(float);
    if (params) CK(cudaMemcpy(g->p, params, b, cudaMemcpyHostToDevice));
    if (exp_avg) CK(cudaMemcpy(g->m1, exp_avg, b, cudaMemcpyHostToDevice));
    if (exp_avg_sq) CK(cudaMemcpy(g->m2, exp_avg_sq, b, cudaMemcpyHostToDevice));
    return LR_OK;
}

extern "C" int gpu_trn_get(gpu_trn *g, float *params, float *exp_avg, float *exp_avg_sq, float *grads) {
    size_t b = g->n * sizeof(float);
    if (params) CK(cudaMemcpy(params, g->p, b, cudaMemcpyDeviceToHost));
    if (exp_avg) CK(cudaMemcpy(exp_avg, g->m1, b, cudaMemcpyDeviceToHost));
    if (exp_avg_sq) CK(cudaMemcpy(exp_avg_sq, g->m2, b, cudaMemcpyDeviceToHost));
    if (grads) CK(cudaMemcpy(grads, g->gr, b, cudaMemcpyDeviceToHost));
    return LR_OK;
}

extern "C" int gpu_trn_put_grads(gpu_trn *g, const float *grads) {
    CK(cudaMemcpy(g->gr, grads, g->n * sizeof(float), cudaMemcpyHostToDevice));
    return LR_OK;
}

extern "C" int gpu_trn_nccl_join(gpu_trn *g, const unsigned char id[GPU_NCCL_ID_BYTES], int rank, int world) {
    return dpnccl_join(&g->nccl, id, rank, world);
}

extern "C" int gpu_trn_allreduce(gpu_trn *g, float scale) { return dpnccl_sum(g->nccl, g->gr, g->n, scale); }

extern "C" int gpu_trn_device_uuid(const gpu_trn *g, unsigned char uuid[16]) {
    (void)g; /* the trainer lives on the device gpu_select_device made current */
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, lr_cuda_dev));
    memcpy(uuid, p.uuid.bytes, 16);
    return LR_OK;
}

extern "C" int gpu_trn_zero_grad(gpu_trn *g) {
    CK(cudaMemset(g->gr, 0, g->n * sizeof(float)));
    return LR_OK;
}

/* Full-parameter training: the gradient of the base tensor at w (device
 * pointer into wmem), which sits at the same offset of gr as w of wmem, as
 * trn_grads lays it out (so a tied lm_head and the embedding share one
 * gradient). NULL when the base is frozen, or for a NULL w. */
static float *grad_of(const gpu_trn *g, const float *w) { return g->full && w ? g->gr + (w - g->wmem) : NULL; }

/* layer l's bias of projection k, or NULL (gate/up/down have none) */
static const float *bias_of(const gpu_trn *g, int k, int l) {
    const mcfg *c = &g->c;
    size_t QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD;
    const float *b = k == LORA_Q ? g->w.bq : k == LORA_K ? g->w.bk : k == LORA_V ? g->w.bv : k == LORA_O ? g->w.bo : NULL;
    size_t n = k == LORA_Q ? QD : k == LORA_O ? (size_t)c->C : KD;
    return b ? b + (size_t)l * n : NULL;
}

/* A projection's base weight and input in the trainer's precision: the
 * float32 pair, or under GTRN_BF16 the bf16 pair (the other one NULL). */
typedef struct {
    const float *W, *x;
    const uint16_t *W16, *x16;
} proj;

/* forward.c's lin_forward: out = x W^T + b (+ s B A drop(x)). Under
 * GTRN_BF16 the base product takes the bf16 input and weight, and the LoRA
 * term reads the input widened to float32 (in xd, the dropout mask applied
 * there in place). */
static int lin_forward(gpu_trn *g, int l, int k, int N, float *out, proj p, const float *b, int IC, int OC, int drop,
                       uint64_t seed) {
    TP(GTRN_PROF_GEMM);
    if (p.W16) CB(k_gemm_bf16(g->blas, 0, 1, N, OC, IC, 1.0f, p.x16, IC, p.W16, IC, 0.0f, out, OC));
    else CB(k_gemm_f32(g->blas, 0, 1, N, OC, IC, 1.0f, p.x, IC, p.W, IC, 0.0f, out, OC));
    if (b) {
        TP(GTRN_PROF_ELEMENTWISE);
        k_add_bias(out, b, N, OC, NULL);
    }
    if (!g->adapted[k]) return LR_OK;
    TP(GTRN_PROF_LORA);
    int r = g->r;
    const float *A = g->p + g->offA[k] + (size_t)l * r * IC, *Bm = g->p + g->offB[k] + (size_t)l * OC * r;
    const float *x = p.x;
    if (p.x16) k_bf16_to_f32(g->xd, p.x16, (size_t)N * IC, NULL), x = g->xd;
    if (drop) {
        k_dropout(g->xd, x, (size_t)N * IC, g->dropout, fwd_lora_drop_key(seed, l, k), NULL);
        x = g->xd;
    }
    float *u = g->L[l].u[k];
    CB(k_gemm_f32(g->blas, 0, 1, N, r, IC, 1.0f, x, IC, A, IC, 0.0f, u, r));
    CB(k_gemm_f32(g->blas, 0, 1, N, OC, r, g->scale, u, r, Bm, r, 1.0f, out, OC));
    return LR_OK;
}

/* trainer.c's lin_backward with the base frozen: dinp += dout W (under
 * GTRN_BF16 bf16(dout) W16 in a bf16 product), then the LoRA term on the
 * input as the forward read it (its mask regenerated when dropout is on). */
static int lin_backward(gpu_trn *g, int l, int k, int N, float *dinp, const float *dout, proj p, int IC, int OC, int drop,
                        uint64_t seed) {
    if (p.W16) {
        TP(GTRN_PROF_ELEMENTWISE);
        k_f32_to_bf16(g->g16, dout, (size_t)N * OC, NULL);
        TP(GTRN_PROF_GEMM_BWD);
        CB(k_gemm_bf16(g->blas, 0, 0, N, IC, OC, 1.0f, g->g16, OC, p.W16, IC, 1.0f, dinp, IC));
    } else {
        TP(GTRN_PROF_GEMM_BWD);
        CB(k_matmul_backward(g->blas, dinp, grad_of(g, p.W), dout, p.x, p.W, N, IC, OC));
    }
    float *gb = grad_of(g, bias_of(g, k, l)); /* full only: else NULL */
    if (gb) {
        TP(GTRN_PROF_ELEMENTWISE);
        k_bias_backward(gb, dout, N, OC, g->ws, NULL);
    }
    if (!g->adapted[k]) return LR_OK;
    TP(GTRN_PROF_LORA);
    int r = g->r;
    size_t oA = g->offA[k] + (size_t)l * r * IC, oB = g->offB[k] + (size_t)l * OC * r;
    const float *u = g->L[l].u[k], *x = p.x;
    if (p.x16) k_bf16_to_f32(g->xd, p.x16, (size_t)N * IC, NULL), x = g->xd;
    if (drop) /* under bf16 x is xd: the mask regenerated there in place */
        CB(k_lora_backward_dropout(g->blas, dinp, g->gr + oA, g->gr + oB, g->du, g->xd, g->dxd, dout, x, u, g->p + oA,
                                   g->p + oB, N, IC, OC, r, g->scale, g->dropout, fwd_lora_drop_key(seed, l, k), NULL));
    else CB(k_lora_backward(g->blas, dinp, g->gr + oA, g->gr + oB, g->du, dout, x, u, g->p + oA, g->p + oB, N, IC, OC, r, g->scale));
    return LR_OK;
}

#define TRY(x)                                                                                                \
    do {                                                                                                      \
        int rc_ = (x);                                                                                        \
        if (rc_) return rc_;                                                                                  \
    } while (0)

/* The projection of base weight w->NAME (layer offset OFF) reading the
 * kept input X (float32) or X16 (its bf16 copy under GTRN_BF16). */
#define PJ(NAME, OFF, X, X16) \
    (g->bf16 ? proj{NULL, NULL, g->w16.NAME + (OFF), (X16)} : proj{w->NAME + (OFF), (X), NULL, NULL})
/* A kept input that only projections read is made in its float32 buffer,
 * or under GTRN_BF16 in the scratch xd and then rounded once into its bf16
 * copy (kept16). */
#define KEEP(X) (g->bf16 ? g->xd : (X))
static void kept16(gpu_trn *g, uint16_t *h, size_t n) {
    if (g->bf16) k_f32_to_bf16(h, g->xd, n, NULL);
}

static int layer_forward(gpu_trn *g, int l, int N, int drop, uint64_t seed, const int *qonly) {
    const mcfg *c = &g->c;
    const model_weights *w = &g->w;
    tlayer *t = &g->L[l];
    int C = c->C, I = c->I, NH = c->NH, NKV = c->NKV, HD = c->HD, QD = NH * HD, KD = NKV * HD;
    size_t lC = (size_t)l * C, lQC = (size_t)l * QD * C, lKC = (size_t)l * KD * C, lIC = (size_t)l * I * C;
    float *x_next = l + 1 < c->L ? g->L[l + 1].x_in : g->x_out;
    float *kc = g->kc + kv_off(g, l), *vc = g->vc + kv_off(g, l);
    float eps = (float)c->rms_eps;
#define AT(p, off) ((p) ? (p) + (off) : NULL)
    TP(GTRN_PROF_ELEMENTWISE);
    k_rmsnorm_f32(KEEP(t->ln1), t->r1, t->x_in, w->ln1 + lC, N, C, eps, NULL);
    kept16(g, t->ln1h, (size_t)N * C);
    TRY(lin_forward(g, l, LORA_Q, N, t->q, PJ(wq, lQC, t->ln1, t->ln1h), AT(w->bq, (size_t)l * QD), C, QD, drop, seed));
    TRY(lin_forward(g, l, LORA_K, N, t->k, PJ(wk, lKC, t->ln1, t->ln1h), AT(w->bk, (size_t)l * KD), C, KD, drop, seed));
    TRY(lin_forward(g, l, LORA_V, N, t->v, PJ(wv, lKC, t->ln1, t->ln1h), AT(w->bv, (size_t)l * KD), C, KD, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    k_rope_f32(t->q, g->inv_freq, g->rpos, N, NH, HD, NULL);
    k_rope_f32(t->k, g->inv_freq, g->rpos, N, NKV, HD, NULL);
    k_kv_store_f32(kc, vc, t->k, t->v, g->seq, g->pos, qonly, N, NKV, HD, g->Tmax, NULL);
    TP(GTRN_PROF_ATTENTION);
    if (g->tcatt) /* served: init checked the shape */
        k_attention_tc_f32(KEEP(t->att), t->lse, t->q, kc, vc, g->apos, g->tiles, g->ntiles, g->trows, N, NH, NKV, HD, g->Tmax, NULL);
    else k_attention_f32(KEEP(t->att), t->q, kc, vc, g->seq, g->apos, N, NH, NKV, HD, g->Tmax, NULL);
    TP(GTRN_PROF_ELEMENTWISE);
    kept16(g, t->atth, (size_t)N * QD);
    TRY(lin_forward(g, l, LORA_O, N, g->tmp, PJ(wo, lQC, t->att, t->atth), AT(w->bo, lC), QD, C, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    k_residual_f32(t->x_mid, t->x_in, g->tmp, (size_t)N * C, NULL);
    k_rmsnorm_f32(KEEP(t->ln2), t->r2, t->x_mid, w->ln2 + lC, N, C, eps, NULL);
    kept16(g, t->ln2h, (size_t)N * C);
    TRY(lin_forward(g, l, LORA_GATE, N, t->gate, PJ(wgate, lIC, t->ln2, t->ln2h), NULL, C, I, drop, seed));
    TRY(lin_forward(g, l, LORA_UP, N, t->up, PJ(wup, lIC, t->ln2, t->ln2h), NULL, C, I, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    k_swiglu_f32(KEEP(t->h), t->gate, t->up, (size_t)N * I, NULL);
    kept16(g, t->hh, (size_t)N * I);
    TRY(lin_forward(g, l, LORA_DOWN, N, g->tmp, PJ(wdown, lIC, t->h, t->hh), NULL, I, C, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    k_residual_f32(x_next, t->x_mid, g->tmp, (size_t)N * C, NULL);
#undef AT
    return LR_OK;
}

static int layer_backward(gpu_trn *g, int l, int N, int drop, uint64_t seed, const int *qonly) {
    const mcfg *c = &g->c;
    const model_weights *w = &g->w;
    tlayer *t = &g->L[l];
    int C = c->C, I = c->I, NH = c->NH, NKV = c->NKV, HD = c->HD, QD = NH * HD, KD = NKV * HD;
    size_t M = (size_t)N, lC = (size_t)l * C, lQC = (size_t)l * QD * C, lKC = (size_t)l * KD * C, lIC = (size_t)l * I * C;
    const float *kc = g->kc + kv_off(g, l), *vc = g->vc + kv_off(g, l);
    size_t fb = sizeof(float);
    /* MLP block */
    TP(GTRN_PROF_ELEMENTWISE);
    CK(cudaMemset(g->dh, 0, M * I * fb));
    TRY(lin_backward(g, l, LORA_DOWN, N, g->dh, g->dres, PJ(wdown, lIC, t->h, t->hh), I, C, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    CK(cudaMemset(g->dgate, 0, M * I * fb));
    CK(cudaMemset(g->dup, 0, M * I * fb));
    k_swiglu_backward(g->dgate, g->dup, g->dh, t->gate, t->up, N, I, I, NULL);
    CK(cudaMemset(g->dln, 0, M * C * fb));
    TRY(lin_backward(g, l, LORA_GATE, N, g->dln, g->dgate, PJ(wgate, lIC, t->ln2, t->ln2h), C, I, drop, seed));
    TRY(lin_backward(g, l, LORA_UP, N, g->dln, g->dup, PJ(wup, lIC, t->ln2, t->ln2h), C, I, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    k_rmsnorm_backward(g->dres, grad_of(g, w->ln2 + lC), g->dln, t->x_mid, w->ln2 + lC, t->r2, N, C, g->ws, NULL);
    /* attention block */
    CK(cudaMemset(g->datt, 0, M * QD * fb));
    TRY(lin_backward(g, l, LORA_O, N, g->datt, g->dres, PJ(wo, lQC, t->att, t->atth), QD, C, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    CK(cudaMemset(g->dq, 0, M * QD * fb));
    CK(cudaMemset(g->dkc, 0, g->kvl * fb));
    CK(cudaMemset(g->dvc, 0, g->kvl * fb));
    /* tcatt: from the forward's lse and output (kept, or remade just now) */
    TP(GTRN_PROF_ATTENTION_BWD);
    int arc = g->tcatt ? k_attention_backward_tc(g->dq, g->dkc, g->dvc, g->stats, t->lse, t->atth, g->datt, t->q, kc, vc,
                                                 g->apos, g->tiles, g->ntiles, g->trows, g->tsfirst, N, NH, NKV, HD,
                                                 g->B, g->Tmax, NULL)
                       : k_attention_backward(g->dq, g->dkc, g->dvc, g->stats, g->datt, t->q, kc, vc, g->seq, g->apos, N, NH,
                                              NKV, HD, g->B, g->Tmax, NULL);
    if (arc)
        return lr_err(LR_EINPUT, "cuda trainer: attention shape not supported (head_dim %d, %d/%d heads)", HD, NH, NKV);
    TP(GTRN_PROF_ELEMENTWISE);
    k_kv_gather(g->dk, g->dv, g->dkc, g->dvc, g->seq, g->pos, qonly, N, NKV, HD, g->Tmax, NULL);
    k_rope_backward(g->dq, g->dq, g->inv_freq, g->rpos, N, NH, HD, NULL);
    k_rope_backward(g->dk, g->dk, g->inv_freq, g->rpos, N, NKV, HD, NULL);
    CK(cudaMemset(g->dln, 0, M * C * fb));
    TRY(lin_backward(g, l, LORA_Q, N, g->dln, g->dq, PJ(wq, lQC, t->ln1, t->ln1h), C, QD, drop, seed));
    TRY(lin_backward(g, l, LORA_K, N, g->dln, g->dk, PJ(wk, lKC, t->ln1, t->ln1h), C, KD, drop, seed));
    TRY(lin_backward(g, l, LORA_V, N, g->dln, g->dv, PJ(wv, lKC, t->ln1, t->ln1h), C, KD, drop, seed));
    TP(GTRN_PROF_ELEMENTWISE);
    k_rmsnorm_backward(g->dres, grad_of(g, w->ln1 + lC), g->dln, t->x_in, w->ln1 + lC, t->r1, N, C, g->ws, NULL);
    return LR_OK;
}
#undef PJ
#undef KEEP

/* dln[wrow[i]] = the sum of dlg rows wfirst[i] .. wfirst[i+1]-1 (the loss
 * entries of that trainer row, in entry order); other rows untouched. */
__global__ void rows_sum_kernel(float *dln, const float *dlg, const int *wrow, const int *wfirst, int C) {
    int i = blockIdx.x;
    float *o = dln + (size_t)wrow[i] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int e = wfirst[i]; e < wfirst[i + 1]; e++) s += dlg[(size_t)e * C + c];
        o[c] = s;
    }
}

/* grows a device buffer to hold n elements of size sz (contents dropped) */
static int grow(void *pp, size_t n, size_t sz) {
    void **p = (void **)pp;
    if (*p) cudaFree(*p);
    *p = NULL;
    return dalloc(pp, n * sz);
}

/* the loss entries' staging: rows, targets, per-entry losses */
static int put_loss(gpu_trn *g, const gtrn_loss *Ls, int *nw) {
    int n = Ls->n;
    size_t C = (size_t)g->c.C;
    if ((size_t)n > g->ecap) {
        size_t cap = (size_t)n * 2;
        int rc;
        if ((rc = grow(&g->erow, cap, sizeof(int))) || (rc = grow(&g->wrow, cap, sizeof(int))) ||
            (rc = grow(&g->wfirst, cap + 1, sizeof(int))) || (rc = grow(&g->tgt, cap, sizeof(int32_t))) ||
            (rc = grow(&g->off, cap + 1, sizeof(int64_t))) || (rc = grow(&g->eloss, cap, sizeof(double))) ||
            (rc = grow(&g->dlg, cap * C, sizeof(float))))
            return rc;
        g->ecap = cap;
    }
    TP(GTRN_PROF_HOST);
    int *wrow = (int *)xmalloc(((size_t)n + 1) * sizeof(int)), *wfirst = (int *)xmalloc(((size_t)n + 1) * sizeof(int));
    int k = 0;
    for (int e = 0; e < n; e++)
        if (!k || wrow[k - 1] != Ls->row[e]) wfirst[k] = e, wrow[k++] = Ls->row[e];
    wfirst[k] = n;
    *nw = k;
    TP(GTRN_PROF_H2D);
    cudaError_t e1 = cudaMemcpy(g->erow, Ls->row, (size_t)n * sizeof(int), cudaMemcpyHostToDevice);
    cudaError_t e2 = cudaMemcpy(g->wrow, wrow, (size_t)k * sizeof(int), cudaMemcpyHostToDevice);
    cudaError_t e3 = cudaMemcpy(g->wfirst, wfirst, ((size_t)k + 1) * sizeof(int), cudaMemcpyHostToDevice);
    free(wrow);
    free(wfirst);
    CK(e1);
    CK(e2);
    CK(e3);
    if (Ls->objective == GTRN_CE) {
        CK(cudaMemcpy(g->tgt, Ls->target, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice));
    } else {
        size_t nt = (size_t)Ls->off[n];
        if (nt > g->tcap) {
            int rc;
            if ((rc = grow(&g->ids, nt * 2, sizeof(int32_t))) || (rc = grow(&g->tw, nt * 2, sizeof(float)))) return rc;
            g->tcap = nt * 2;
        }
        CK(cudaMemcpy(g->off, Ls->off, ((size_t)n + 1) * sizeof(int64_t), cudaMemcpyHostToDevice));
        if (nt) {
            CK(cudaMemcpy(g->ids, Ls->ids, nt * sizeof(int32_t), cudaMemcpyHostToDevice));
            CK(cudaMemcpy(g->tw, Ls->w, nt * sizeof(float), cudaMemcpyHostToDevice));
        }
    }
    return LR_OK;
}

/* the rows' slots and positions as fwd_run assigns them in fresh slots,
 * with its checks (check_rows) */
static int place_rows(gpu_trn *g, int N, const int *tokens, const int *seq, const int *qpos) {
    memset(g->h_len, 0, (size_t)g->B * sizeof(int));
    for (int i = 0; i < N; i++) {
        int s = seq[i], q = qpos && qpos[i] >= 0;
        if (s < 0 || s >= g->B) return lr_err(LR_EUSAGE, "cuda trainer: row %d: slot %d outside [0, %d)", i, s, g->B);
        if (tokens[i] < 0 || tokens[i] >= g->c.V)
            return lr_err(LR_EINPUT, "cuda trainer: row %d: token id %d outside the vocabulary [0, %d)", i, tokens[i], g->c.V);
        int *len = &g->h_len[s];
        if (*len >= g->Tmax) return lr_err(LR_EINPUT, "cuda trainer: slot %d: more than %d positions", s, g->Tmax);
        if (q && *len == 0) return lr_err(LR_EUSAGE, "cuda trainer: row %d: a query-only row needs earlier rows in its slot", i);
        if (q) g->h_pos[i] = *len, g->h_apos[i] = *len - 1, g->h_rpos[i] = qpos[i];
        else g->h_rpos[i] = g->h_apos[i] = g->h_pos[i] = (*len)++;
    }
    size_t b = (size_t)N * sizeof(int);
    TP(GTRN_PROF_H2D);
    CK(cudaMemcpy(g->tok, tokens, b, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(g->seq, seq, b, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(g->pos, g->h_pos, b, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(g->rpos, g->h_rpos, b, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(g->apos, g->h_apos, b, cudaMemcpyHostToDevice));
    if (qpos) CK(cudaMemcpy(g->qonly, qpos, b, cudaMemcpyHostToDevice));
    if (g->tcatt) { /* the tensor-core attention's query tiles, over the positions it attends to */
        TP(GTRN_PROF_HOST);
        g->ntiles = attb_tc_tiles(g->h_tiles, g->h_trows, g->h_tsfirst, seq, g->h_apos, N, g->B, g->c.NH / g->c.NKV);
        TP(GTRN_PROF_H2D);
        CK(cudaMemcpy(g->tiles, g->h_tiles, (size_t)g->ntiles * sizeof(attb_tile), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(g->trows, g->h_trows, b, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(g->tsfirst, g->h_tsfirst, ((size_t)g->B + 1) * sizeof(int), cudaMemcpyHostToDevice));
    }
    return LR_OK;
}

extern "C" int gpu_trn_call(gpu_trn *g, int N, const int *tokens, const int *seq, const int *qpos, int training,
                            uint64_t drop_seed, const gtrn_loss *Ls, double *loss) {
    const mcfg *c = &g->c;
    if (N < 1 || N > g->M) return lr_err(LR_EUSAGE, "cuda trainer: %d rows in one call, at most %d", N, g->M);
    for (int e = 0; e < Ls->n; e++)
        if (Ls->row[e] < 0 || Ls->row[e] >= N || (e && Ls->row[e] < Ls->row[e - 1]))
            return lr_err(LR_EUSAGE, "cuda trainer: loss rows must be nondecreasing rows in [0, %d)", N);
    if (g->prof) CK(prof_start(g->prof, GTRN_PROF_HOST, (cudaStream_t)0));
    TRY(place_rows(g, N, tokens, seq, qpos));
    int nw = 0;
    if (Ls->n) TRY(put_loss(g, Ls, &nw));
    int C = c->C, V = c->V, drop = training && g->dropout > 0.0f;
    const int *qonly = qpos ? g->qonly : NULL;
    size_t fb = sizeof(float);
    /* forward */
    TP(GTRN_PROF_ELEMENTWISE);
    if (g->bf16) k_embedding(g->L[0].x_in, g->tok, g->w16.embed, N, C, NULL);
    else k_embedding_f32(g->L[0].x_in, g->tok, g->w.embed, N, C, NULL);
    for (int l = 0; l < c->L; l++)
        TRY(layer_forward(g, l, N, drop, drop_seed, qonly));
    TP(GTRN_PROF_ELEMENTWISE);
    k_rmsnorm_f32(g->lnf, g->rstdf, g->x_out, g->w.norm, N, C, (float)c->rms_eps, NULL);
    /* the loss entries' logits, loss and gradient, chunk by chunk, down to
     * their final-norm rows' gradient dlg */
    for (int e0 = 0; e0 < Ls->n; e0 += (int)g->chunk_rows) {
        int ne = Ls->n - e0 < (int)g->chunk_rows ? Ls->n - e0 : (int)g->chunk_rows;
        TP(GTRN_PROF_LOSS);
        k_gather_rows(g->lg, g->lnf, g->erow + e0, ne, C, NULL);
        if (g->bf16) {
            TP(GTRN_PROF_ELEMENTWISE);
            k_f32_to_bf16(g->g16, g->lg, (size_t)ne * C, NULL);
            TP(GTRN_PROF_GEMM);
            CB(k_gemm_bf16(g->blas, 0, 1, ne, V, C, 1.0f, g->g16, C, g->w16.lm_head, C, 0.0f, g->logits, V));
        } else {
            TP(GTRN_PROF_GEMM);
            CB(k_gemm_f32(g->blas, 0, 1, ne, V, C, 1.0f, g->lg, C, g->w.lm_head, C, 0.0f, g->logits, V));
        }
        TP(GTRN_PROF_LOSS);
        if (Ls->objective == GTRN_CE) k_ce(g->logits, ne, V, Ls->vlim, g->tgt + e0, Ls->scale, g->eloss + e0, NULL);
        else k_softkl(g->logits, ne, V, Ls->vlim, g->ids, g->tw, g->off + e0, Ls->scale, g->eloss + e0, NULL);
        if (g->bf16) {
            TP(GTRN_PROF_ELEMENTWISE);
            k_f32_to_bf16(g->logits16, g->logits, (size_t)ne * V, NULL);
            TP(GTRN_PROF_GEMM_BWD);
            CB(k_gemm_bf16(g->blas, 0, 0, ne, C, V, 1.0f, g->logits16, V, g->w16.lm_head, C, 0.0f, g->dlg + (size_t)e0 * C, C));
        } else {
            TP(GTRN_PROF_GEMM_BWD);
            CB(k_gemm_f32(g->blas, 0, 0, ne, C, V, 1.0f, g->logits, V, g->w.lm_head, C, 0.0f, g->dlg + (size_t)e0 * C, C));
        }
        /* full: lm_head's gradient from these entries (tied: the embedding's) */
        if (g->full) CB(k_matmul_backward(g->blas, NULL, grad_of(g, g->w.lm_head), g->logits, g->lg, g->w.lm_head, ne, C, V));
    }
    /* backward */
    TP(GTRN_PROF_ELEMENTWISE);
    CK(cudaMemset(g->dln, 0, (size_t)N * C * fb));
    TP(GTRN_PROF_LOSS);
    if (nw) LAUNCH(rows_sum_kernel, nw, 128, 0, (cudaStream_t)0, g->dln, g->dlg, g->wrow, g->wfirst, C);
    TP(GTRN_PROF_ELEMENTWISE);
    CK(cudaMemset(g->dres, 0, (size_t)N * C * fb));
    k_rmsnorm_backward(g->dres, grad_of(g, g->w.norm), g->dln, g->x_out, g->w.norm, g->rstdf, N, C, g->ws, NULL);
    for (int l = c->L - 1; l >= 0; l--) {
        /* recomputing: the layer's activations remade from its kept input,
         * the same kernels and dropout keys as the forward above (the last
         * layer's are still there). It also rewrites layer l+1's input, with
         * the same bits, after that layer's backward has read it. */
        if (g->recompute && l + 1 < c->L) TRY(layer_forward(g, l, N, drop, drop_seed, qonly));
        TRY(layer_backward(g, l, N, drop, drop_seed, qonly));
    }
    if (g->full) {
        TP(GTRN_PROF_ELEMENTWISE);
        k_embedding_backward(grad_of(g, g->w.embed), g->dres, g->tok, N, C, NULL);
    }
    TP(GTRN_PROF_D2H);
    if (Ls->n) CK(cudaMemcpy(loss, g->eloss, (size_t)Ls->n * sizeof(double), cudaMemcpyDeviceToHost));
    CK(cudaGetLastError());
    return prof_end(g);
}

extern "C" int gpu_trn_update(gpu_trn *g, float lr, float beta1, float beta2, float eps, float wd, long t, double clip,
                              double *norm, int *finite) {
    double nm[2];
    if (g->prof) CK(prof_start(g->prof, GTRN_PROF_OPTIMIZER, (cudaStream_t)0));
    k_grad_norm(g->gr, g->n, clip, g->work, g->norm, g->coef, NULL);
    TP(GTRN_PROF_D2H);
    CK(cudaMemcpy(nm, g->norm, sizeof(double), cudaMemcpyDeviceToHost));
    *norm = nm[0];
    *finite = 1;
    if (!isfinite(nm[0])) return prof_end(g);
    TP(GTRN_PROF_OPTIMIZER);
    k_adamw(g->p, g->m1, g->m2, g->gr, g->coef, g->n, lr, beta1, beta2, eps, wd, t, NULL);
    /* every parameter finite iff the sum of their squares is (in double it
     * cannot overflow for finite floats) */
    k_grad_norm(g->p, g->n, 0.0, g->work, g->norm + 1, g->coef, NULL);
    TP(GTRN_PROF_D2H);
    CK(cudaMemcpy(nm + 1, g->norm + 1, sizeof(double), cudaMemcpyDeviceToHost));
    *finite = isfinite(nm[1]) != 0;
    CK(cudaGetLastError());
    return prof_end(g);
}
