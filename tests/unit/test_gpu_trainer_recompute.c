/* The device trainer's activation recomputation (nn/gpu_train.h,
 * gtrn_opts.recompute) on the emulated device: lr-mkmodel's tiny Qwen2 with
 * 3 layers (so a recomputed layer's forward also rewrites a kept input
 * that the backward has already read), LoRA on all seven projections,
 * dropout 0.1, both precisions.
 *
 *   (a) recomputing equals keeping bit for bit: one accumulation's losses
 *       and every LoRA gradient (soft-KL with packing, a shared row and a
 *       query-only row; SFT in f32), then (soft-KL) 2 optimizer steps' losses,
 *       gradient norms and the final parameters and moments. Both runs call the
 *       same kernels on the same inputs with the same dropout keys, so
 *       nothing may differ, not even summation order;
 *   (b) the activation memory allocated (gpu_trn_mem: the sizes passed to
 *       cudaMalloc) shrinks by the other layers' activations, all but
 *       their inputs, computed here from the shapes;
 *   (c) the AUTO rule: on under a budget the kept activations exceed
 *       (gtrn_opts.mem_budget, and the tuner's mem_budget that lr-tune
 *       would pass), off under one they fit, and ALWAYS / NEVER regardless;
 *       an unknown setting refused. */
#include "check.h"

#include "method/tune.h"
#include "model/lora.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "base/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune_batches.h"

/* a device tuner at precision prec with recomputation rec, dropout on */
static int open_dev(tuner *tu, lora *lo, const lora *lo0, model *m, int objective, int prec, int rec, size_t budget) {
    if (open_tuner(tu, lo, lo0, m, objective, -1, 1, 32)) return -1;
    tu->precision = prec, tu->recompute = rec, tu->mem_budget = budget;
    return tuner_use_gpu(tu);
}

static const char *pname(int prec) { return prec == GTRN_BF16 ? "bf16" : "f32"; }

/* (a) keeping and recomputing, the same bits */
static void same_bits(model *m, const lora *lo0, const batch *b, int objective, int prec, int steps, const char *tag) {
    tuner k, r;
    lora lk, lr;
    if (open_dev(&k, &lk, lo0, m, objective, prec, GTRN_RECOMPUTE_NEVER, 0) ||
        open_dev(&r, &lr, lo0, m, objective, prec, GTRN_RECOMPUTE_ALWAYS, 0)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    CHECK(!strcmp(tuner_recompute(&k), "off") && !strcmp(tuner_recompute(&r), "on"));
    double lk1 = 0, lr1 = 0;
    CHECKF(tuner_zero_grad(&k) == 0 && tuner_zero_grad(&r) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&k, b->ex, b->n, 1.0 / b->n, &lk1) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&r, b->ex, b->n, 1.0 / b->n, &lr1) == 0, "%s", lr_errmsg());
    float *gk = xmalloc(k.n * sizeof(float)), *gr = xmalloc(k.n * sizeof(float));
    CHECK(gpu_trn_get(k.gpu, NULL, NULL, NULL, gk) == 0 && gpu_trn_get(r.gpu, NULL, NULL, NULL, gr) == 0);
    double gmax = 0;
    size_t ndiff = 0;
    for (size_t i = 0; i < k.n; i++) gmax = fmax(gmax, fabs(gk[i])), ndiff += memcmp(&gk[i], &gr[i], sizeof(float)) != 0;
    fprintf(stderr, "%s: one accumulation: loss kept %.9g recomputed %.9g; %zu of %zu gradients differ (max |g| %.3g, rel err %.1e)\n",
            tag, lk1, lr1, ndiff, k.n, gmax, check_rel_err(gr, gk, k.n));
    CHECK(gmax > 1e-4);
    CHECK(memcmp(&lk1, &lr1, sizeof lk1) == 0);
    CHECK(ndiff == 0);
    /* optimizer steps on top (the accumulation above is dropped by lockstep's zero_grad) */
    for (int s = 0; s < steps; s++) {
        double a, c, na, nc;
        lockstep(&k, &r, b, s, steps, &a, &c, &na, &nc);
        fprintf(stderr, "%s: step %d loss kept %.9g recomputed %.9g norm %.9g %.9g\n", tag, s + 1, a, c, na, nc);
        CHECK(memcmp(&a, &c, sizeof a) == 0 && memcmp(&na, &nc, sizeof na) == 0);
    }
    CHECK(tuner_download(&k) == 0 && tuner_download(&r) == 0);
    CHECK(memcmp(lk.mem, lr.mem, k.n * sizeof(float)) == 0);
    CHECK(memcmp(k.opt.m, r.opt.m, k.n * sizeof(float)) == 0 && memcmp(k.opt.v, r.opt.v, k.n * sizeof(float)) == 0);
    if (steps) CHECK(check_rel_err(lk.mem, lo0->mem, k.n) > 1e-3); /* the steps moved the weights */
    free(gk), free(gr);
    tuner_free(&k), tuner_free(&r);
    lora_free(&lk), lora_free(&lr);
}

/* (b) and (c) on trainers made directly */
static void memory(model *m, const lora *lo0, int prec) {
    const mcfg *c = &m->cfg;
    size_t M = 64, L = (size_t)c->L, C = (size_t)c->C, I = (size_t)c->I, QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD;
    size_t nmod = 0;
    for (int k = 0; k < LORA_NMOD; k++) nmod += lo0->A[k] != NULL;
    gtrn_opts o = {.B = 8, .Tmax = 32, .maxN = (int)M, .precision = prec, .chunk_floats = 1u << 20,
                   .recompute = GTRN_RECOMPUTE_NEVER};
    gpu_trn *k = NULL, *r = NULL, *a = NULL;
    CHECKF(gpu_trn_init(&k, m, lo0, &o) == 0, "%s", lr_errmsg());
    o.recompute = GTRN_RECOMPUTE_ALWAYS;
    CHECKF(gpu_trn_init(&r, m, lo0, &o) == 0, "%s", lr_errmsg());
    if (!k || !r) return;
    size_t wk, wr, ak, ar, need, budget;
    gpu_trn_mem(k, &wk, &ak);
    gpu_trn_mem(r, &wr, &ar);
    CHECK(!gpu_trn_recomputes(k, &need, &budget) && gpu_trn_recomputes(r, NULL, NULL));
    /* one layer's activations (as fwd_layer_acts, the LoRA terms' u); under
     * bf16 ln1, att, ln2 and h at 2 bytes, and the tensor-core attention's
     * lse (M, NH); each recomputed layer keeps its input x_in (M, C) */
    size_t f32 = M * (4 * C + 2 + 2 * QD + 2 * KD + 3 * I + nmod * (size_t)lo0->r), h16 = 0;
    const char *tc = getenv("LR_GPU_TCATT");
    if (prec == GTRN_BF16) h16 = M * (2 * C + QD + I), f32 -= h16;
    if (prec == GTRN_BF16 && (!tc || !*tc || strcmp(tc, "0"))) f32 += M * c->NH; /* the tensor-core attention's lse */
    size_t saved = (L - 1) * ((f32 - M * C) * 4 + h16 * 2);
    fprintf(stderr, "%s memory: activations kept %zu bytes, recomputed %zu (%.3f); saved %zu, computed %zu; weights %zu %zu; keeping needs %zu of %zu free\n",
            pname(prec), ak, ar, (double)ar / ak, ak - ar, saved, wk, wr, need, budget);
    CHECK(wk == wr);
    CHECK(ak - ar == saved);
    CHECK(need > ak);
    gpu_trn_free(r);
    /* (c) AUTO: need against 7/8 of the budget */
    struct {
        size_t budget;
        int want;
    } cases[] = {{need, 1}, {need + need / 8, 1}, {2 * need, 0}, {(size_t)1 << 50, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        o.recompute = GTRN_RECOMPUTE_AUTO, o.mem_budget = cases[i].budget;
        CHECKF(gpu_trn_init(&a, m, lo0, &o) == 0, "%s", lr_errmsg());
        if (!a) continue;
        size_t n2, b2, w2, a2;
        int on = gpu_trn_recomputes(a, &n2, &b2);
        gpu_trn_mem(a, &w2, &a2);
        CHECKF(on == cases[i].want && n2 == need && b2 == cases[i].budget && a2 == (on ? ar : ak),
               "%s auto, budget %zu: recompute %d (want %d), need %zu, budget %zu, activations %zu", pname(prec),
               cases[i].budget, on, cases[i].want, n2, b2, a2);
        gpu_trn_free(a), a = NULL;
    }
    /* ALWAYS and NEVER whatever the budget */
    o.mem_budget = 1;
    o.recompute = GTRN_RECOMPUTE_NEVER;
    CHECK(gpu_trn_init(&a, m, lo0, &o) == 0 && !gpu_trn_recomputes(a, NULL, NULL));
    gpu_trn_free(a), a = NULL;
    o.mem_budget = (size_t)1 << 50, o.recompute = GTRN_RECOMPUTE_ALWAYS;
    CHECK(gpu_trn_init(&a, m, lo0, &o) == 0 && gpu_trn_recomputes(a, NULL, NULL));
    gpu_trn_free(a), a = NULL;
    o.recompute = 3;
    CHECK(gpu_trn_init(&a, m, lo0, &o) == LR_EUSAGE && !a);
    gpu_trn_free(k);
    /* the tuner passes its budget on (lr-tune's path): a small one turns it on */
    tuner t;
    lora lt;
    CHECKF(open_dev(&t, &lt, lo0, m, TUNE_SOFTKL, prec, GTRN_RECOMPUTE_AUTO, 4096) == 0, "%s", lr_errmsg());
    CHECK(!strcmp(tuner_recompute(&t), "on"));
    tuner_free(&t), lora_free(&lt);
    CHECKF(open_dev(&t, &lt, lo0, m, TUNE_SOFTKL, prec, GTRN_RECOMPUTE_AUTO, (size_t)1 << 50) == 0, "%s", lr_errmsg());
    CHECK(!strcmp(tuner_recompute(&t), "off"));
    tuner_free(&t), lora_free(&lt);
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    CHECK_SEED(rng);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpu_trainer_recompute_model", tmp);
    mk_opts o;
    mk_defaults(&o);
    o.L = 3;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        CHECK_DONE();
    }
    CHECK(m.cfg.L == 3 && m.w.bq != NULL && m.cfg.NKV < m.cfg.NH);
    lora lo0;
    lora_all_seven(&lo0, &m.cfg);
    batch kl = make_softkl(m.cfg.V, 3), sft = make_sft(m.cfg.V, 4);
    int san = getenv("LR_SAN") && !strcmp(getenv("LR_SAN"), "1");
    char tag[128];
    for (int p = 0; p < 2; p++) {
        int prec = p ? GTRN_BF16 : GTRN_F32;
        snprintf(tag, sizeof tag, "%s soft-kl, dropout 0.1", pname(prec));
        /* under the sanitizers the optimizer steps in f32 only */
        same_bits(&m, &lo0, &kl, TUNE_SOFTKL, prec, san && prec == GTRN_BF16 ? 0 : 2, tag);
        /* SFT differs only in the loss kernel, which recomputation does not
         * touch: once, and not under the sanitizers (they look for memory
         * errors) */
        snprintf(tag, sizeof tag, "%s sft, dropout 0.1", pname(prec));
        if (!san && prec == GTRN_F32) same_bits(&m, &lo0, &sft, TUNE_SFT, prec, 0, tag);
        memory(&m, &lo0, prec);
    }
    free_batch(&kl), free_batch(&sft);
    lora_free(&lo0);
    model_free(&m);
    CHECK_DONE();
}
