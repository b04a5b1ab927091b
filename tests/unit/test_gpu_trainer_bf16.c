/* The device trainer's bf16 precision (nn/gpu_train.h, GTRN_BF16) against
 * the CPU tuner, on the emulated device, as test_gpu_trainer.c does for
 * float32: lr-mkmodel's tiny Qwen2 (2 layers, GQA 2:1, q/k/v biases), LoRA
 * on all seven projections, untied lm_head and tied (lm_head = the bf16
 * embedding table, read by the embedding and by the loss rows' products).
 *
 *   (a) one accumulation: the loss and every LoRA gradient kind against the
 *       CPU's float32 ones; soft-KL with packing, a shared loss row and a
 *       query-only row, and SFT cross-entropy; dropout off and on. The
 *       bf16 loss must also differ from the float32 device trainer's (the
 *       bf16 products really ran);
 *   (b) a 20-step soft-KL run (AdamW, clipping, linear schedule): per-step
 *       losses track the CPU run's and the final adapter is close to it;
 *   (c) device memory: the weights take 2 bytes a parameter (plus the
 *       float32 norm weights and biases), half the float32 trainer's; the
 *       kept activations shrink by the four bf16 ones and grow by the
 *       tensor-core attention's lse;
 *   (d) the model opened (model_open, as lr-tune opens it for bf16: no
 *       float32 copy on the host) against the model loaded: one
 *       accumulation gives the same loss and gradients bit for bit, on a
 *       float32 checkpoint (untied and tied) and on a tied one mixing F16,
 *       BF16 and F32 tensors.
 *
 * Tolerances, from bf16's unit roundoff u = 2^-9 = 1.95e-3: every base
 * product rounds both operands (the weight once, the activation or output
 * gradient once), up to 2u = 3.9e-3 relative per product term, and a
 * layer chains four such products forward and four backward, where
 * cancellation in the sums lets a gradient entry move by ~10u = 2e-2 of
 * its tensor's largest one. That scale is measured independently of the
 * device code: the CPU trainer on the same model with only its weights
 * rounded to bf16 moves the gradients by 1.3e-2 .. 2.4e-2 (printed as
 * cpu-rounded-weights). The device also rounds the activations, a second
 * source of the same size, so its error may be up to twice that (sqrt 2
 * for independent ones; measured 1.2 .. 1.4 times). Bounds: loss 3e-3
 * relative (measured <= 7.2e-4); each LoRA gradient tensor max |gpu - cpu|
 * / max |cpu| < 5e-2 and < 2 x the rounded-weights CPU run's error
 * (measured <= 3.3e-2); 20 steps: every step's loss within 5e-3 relative
 * (measured <= 1.1e-3), the final adapter within 5e-2 per tensor (measured
 * <= 2.7e-2, against 0.165 moved from the initial one). The attention on
 * tensor cores (the default) rounds its inputs, P and dS to bf16 as well,
 * one more source of the same size inside one op each way: measured 0.97
 * .. 1.42 times the rounded-weights run with it, 0.94 .. 1.33 with
 * LR_GPU_TCATT=0. */
#include "check.h"

#include "method/tune.h"
#include "model/lora.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "base/util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_LOSS 3e-3
#define TOL_GRAD 5e-2
#define TOL_LOSS20 5e-3
#define TOL_ADAPTER 5e-2

#include "tune_batches.h"

/* per module: the worse of A's and B's relative error, printed; returns the worst */
static double module_errs(const lora *shape, const float *a, const float *ref, const char *what, const char *tag) {
    double worst = 0;
    char line[512];
    int at = snprintf(line, sizeof line, "%s: %s per module", tag, what);
    for (int k = 0; k < LORA_NMOD; k++) {
        if (!shape->A[k]) continue;
        size_t oA = (size_t)(shape->A[k] - shape->mem), oB = (size_t)(shape->B[k] - shape->mem);
        size_t nA = (size_t)shape->L * shape->r * shape->in[k], nB = (size_t)shape->L * shape->out[k] * shape->r;
        double eA = check_rel_err(a + oA, ref + oA, nA), eB = check_rel_err(a + oB, ref + oB, nB);
        worst = fmax(worst, fmax(eA, eB));
        at += snprintf(line + at, sizeof line - (size_t)at, " %s A %.1e B %.1e", lora_module_name(k), eA, eB);
    }
    fprintf(stderr, "%s\n", line);
    return worst;
}

/* x rounded to the nearest bf16 (ties to even), as __float2bfloat16 does */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/* (a) one accumulation: loss and gradients; *wl / *wg the worst measured
 * errors. mr: the same model with its weights rounded to bf16, on the cpu:
 * how far rounding the weights alone moves the float32 gradients, the
 * scale the bf16 device errors are compared with. */
static void one_step(model *m, model *mr, const lora *lo0, const batch *b, int objective, int drop, const char *tag,
                     double *wl, double *wg) {
    tuner c, g, f, cr;
    lora lc, lg, lf, lr;
    int maxlen = 32;
    CHECK(open_tuner(&c, &lc, lo0, m, objective, -1, drop, maxlen) == 0);
    CHECK(open_tuner(&cr, &lr, lo0, mr, objective, -1, drop, maxlen) == 0);
    if (open_tuner(&g, &lg, lo0, m, objective, GTRN_BF16, drop, maxlen) ||
        open_tuner(&f, &lf, lo0, m, objective, GTRN_F32, drop, maxlen)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    double scale = 1.0 / b->n, l_c = 0, l_g = 0, l_f = 0, l_r = 0;
    CHECKF(tuner_zero_grad(&c) == 0 && tuner_zero_grad(&g) == 0 && tuner_zero_grad(&f) == 0 && tuner_zero_grad(&cr) == 0,
           "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&cr, b->ex, b->n, scale, &l_r) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&c, b->ex, b->n, scale, &l_c) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&g, b->ex, b->n, scale, &l_g) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&f, b->ex, b->n, scale, &l_f) == 0, "%s", lr_errmsg());
    float *gg = xmalloc(g.n * sizeof(float)), *gf = xmalloc(g.n * sizeof(float));
    CHECK(gpu_trn_get(g.gpu, NULL, NULL, NULL, gg) == 0);
    CHECK(gpu_trn_get(f.gpu, NULL, NULL, NULL, gf) == 0);
    double e = module_errs(&lc, gg, c.grads, "bf16 gradient rel err", tag), gmax = 0;
    double ef = check_rel_err(gf, c.grads, c.n), el = fabs(l_g - l_c) / fabs(l_c), elf = fabs(l_f - l_c) / fabs(l_c);
    double er = module_errs(&lc, cr.grads, c.grads, "cpu on bf16-rounded weights, rel err", tag);
    for (size_t i = 0; i < c.n; i++) gmax = fmax(gmax, fabs(c.grads[i]));
    fprintf(stderr, "%s: loss cpu %.9g bf16 %.9g (rel %.1e) f32 %.9g (rel %.1e) cpu-rounded-weights (rel %.1e); gradients bf16 %.2e f32 %.2e cpu-rounded-weights %.2e (max |g| %.3g)\n",
            tag, l_c, l_g, el, l_f, elf, fabs(l_r - l_c) / fabs(l_c), e, ef, er, gmax);
    CHECK(gmax > 1e-4); /* something to compare */
    CHECK(el < TOL_LOSS);
    CHECK(e < TOL_GRAD);
    CHECK(e < 2 * er); /* no worse than two independent bf16 roundings */
    /* the bf16 products ran: bf16 rounding moves the numbers far more than
     * float32's summation order does */
    CHECK(el > 10 * elf && e > 10 * ef);
    CHECK(c.rows_fwd == g.rows_fwd && c.calls == g.calls && c.examples == g.examples);
    *wl = fmax(*wl, el), *wg = fmax(*wg, e);
    free(gg), free(gf);
    tuner_free(&c), tuner_free(&g), tuner_free(&f), tuner_free(&cr);
    lora_free(&lc), lora_free(&lg), lora_free(&lf), lora_free(&lr);
}

/* (b) 20 optimizer steps of 2 micro-batches each */
static void run20(model *m, const lora *lo0, const batch *b, int objective, int drop, const char *tag) {
    tuner c, g;
    lora lc, lg;
    CHECK(open_tuner(&c, &lc, lo0, m, objective, -1, drop, 32) == 0);
    if (open_tuner(&g, &lg, lo0, m, objective, GTRN_BF16, drop, 32)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    int steps = 20;
    double worst_l, worst_n, first = 0, last = 0;
    track(&c, &g, b, steps, tag, "bf16", &worst_l, &worst_n, &first, &last);
    CHECK(tuner_download(&g) == 0);
    CHECK(g.opt.t == c.opt.t && g.opt.t == steps);
    double ep = module_errs(&lc, lg.mem, lc.mem, "adapter rel err", tag);
    double moved = check_rel_err(lc.mem, lo0->mem, lc.n);
    fprintf(stderr, "%s: 20 steps: worst loss rel %.2e; adapter %.2e (moved %.2e from init); cpu loss %.5f -> %.5f\n",
            tag, worst_l, ep, moved, first, last);
    CHECK(worst_l < TOL_LOSS20);
    CHECK(ep < TOL_ADAPTER);
    CHECK(moved > 1e-2);      /* training moved the weights */
    CHECK(ep < 0.5 * moved);  /* and the bf16 run moved them the same way */
    tuner_free(&c), tuner_free(&g);
    lora_free(&lc), lora_free(&lg);
}

/* (c) the allocation sizes of both precisions, against the shapes */
static void memory(model *m, const lora *lo0) {
    const mcfg *c = &m->cfg;
    gpu_trn *f = NULL, *h = NULL;
    int M = 64;
    gtrn_opts o = {.B = 8, .Tmax = 32, .maxN = M, .precision = GTRN_F32, .chunk_floats = 1u << 20};
    CHECKF(gpu_trn_init(&f, m, lo0, &o) == 0, "%s", lr_errmsg());
    o.precision = GTRN_BF16;
    CHECKF(gpu_trn_init(&h, m, lo0, &o) == 0, "%s", lr_errmsg());
    o.precision = 7;
    gpu_trn *bad = NULL;
    CHECK(gpu_trn_init(&bad, m, lo0, &o) == LR_EUSAGE && !bad);
    if (!f || !h) return;
    size_t wf, wh, af, ah, L = (size_t)c->L, C = (size_t)c->C, I = (size_t)c->I, QD = (size_t)c->NH * c->HD;
    size_t KD = (size_t)c->NKV * c->HD;
    gpu_trn_mem(f, &wf, &af);
    gpu_trn_mem(h, &wh, &ah);
    size_t small = L * 2 * C + C + (m->w.bq ? L * (QD + 2 * KD) : 0) + (m->w.bo ? L * C : 0);
    fprintf(stderr, "memory: weights f32 %zu bytes, bf16 %zu (%.3f of f32; %zu float32 norm/bias values); activations f32 %zu, bf16 %zu (%.3f)\n",
            wf, wh, (double)wh / wf, small, af, ah, (double)ah / af);
    CHECK(wf == m->nparams * 4);
    CHECK(wh == m->nparams * 2 + small * 4);
    /* four kept activations at 2 bytes instead of 4; with the attention on
     * tensor cores (the default, which serves this shape) one more, its
     * lse (NH floats a row) */
    const char *tc = getenv("LR_GPU_TCATT");
    size_t lse = !tc || !*tc || strcmp(tc, "0") ? L * (size_t)M * c->NH * 4 : 0;
    CHECK(af + lse - ah == L * (size_t)M * (2 * C + QD + I) * 2);
    gpu_trn_free(f), gpu_trn_free(h);
}

/* (d) an opened model (model_open: the checkpoint mmap'd, no float32 copy,
 * as lr-tune --device cuda --precision bf16 opens it) against the same
 * model loaded (model_load's float32 copy rounded on the device): the
 * device's weights must be the same bits, so one accumulation gives the
 * same loss and gradients bit for bit, and the same weight bytes */
static void opened(const char *dir, const lora *lo0, const batch *b, const char *tag) {
    model ml, mo;
    if (model_load(&ml, dir) || model_open(&mo, dir)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    CHECK(mo.mem == NULL && mo.st != NULL && mo.nparams == ml.nparams && mo.hash == ml.hash);
    tuner tl, to;
    lora ll, lo;
    if (open_tuner(&tl, &ll, lo0, &ml, TUNE_SOFTKL, GTRN_BF16, 1, 32) || open_tuner(&to, &lo, lo0, &mo, TUNE_SOFTKL, GTRN_BF16, 1, 32)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    double l_l = 0, l_o = 0;
    CHECKF(tuner_zero_grad(&tl) == 0 && tuner_zero_grad(&to) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&tl, b->ex, b->n, 1.0 / b->n, &l_l) == 0, "%s", lr_errmsg());
    CHECKF(tuner_accumulate(&to, b->ex, b->n, 1.0 / b->n, &l_o) == 0, "%s", lr_errmsg());
    float *gl = xmalloc(tl.n * sizeof(float)), *go = xmalloc(tl.n * sizeof(float));
    CHECK(gpu_trn_get(tl.gpu, NULL, NULL, NULL, gl) == 0 && gpu_trn_get(to.gpu, NULL, NULL, NULL, go) == 0);
    size_t wl, wo, diff = 0;
    gpu_trn_mem(tl.gpu, &wl, NULL);
    gpu_trn_mem(to.gpu, &wo, NULL);
    for (size_t i = 0; i < tl.n; i++) diff += memcmp(gl + i, go + i, sizeof(float)) != 0;
    fprintf(stderr, "%s: opened vs loaded: loss %.9g / %.9g, %zu of %zu gradients differ, weights %zu / %zu bytes\n", tag,
            l_o, l_l, diff, tl.n, wo, wl);
    CHECK(l_o == l_l && diff == 0 && wo == wl);
    /* the float32 trainer needs the float32 copy */
    gpu_trn *f = NULL;
    gtrn_opts o32 = {.B = 8, .Tmax = 32, .maxN = 64, .precision = GTRN_F32, .chunk_floats = 1u << 20};
    CHECK(gpu_trn_init(&f, &mo, lo0, &o32) == LR_EUSAGE && !f);
    free(gl), free(go);
    tuner_free(&tl), tuner_free(&to);
    lora_free(&ll), lora_free(&lo);
    model_free(&ml), model_free(&mo);
}

/* dir's checkpoint rewritten with its tensors in turn as F16, BF16 and
 * F32 (sorted by name), so an opened model's every upload path runs: a bf16
 * tensor copied as it is, an f16 one converted on the host, a float32 one */
static int mixed_dtypes(const char *dir) {
    char path[1100], tmpp[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmpp, sizeof tmpp, "%s/model.safetensors.tmp", dir);
    st_set s;
    if (st_open_dir(&s, dir)) return -1;
    st_wtensor *wt = xcalloc((size_t)s.ntensors, sizeof *wt);
    void **bufs = xcalloc((size_t)s.ntensors, sizeof *bufs);
    for (int i = 0; i < s.ntensors; i++) {
        const st_tensor *t = &s.tensors[i];
        size_t n = (size_t)t->numel;
        int dt = i % 3 == 0 ? ST_F16 : i % 3 == 1 ? ST_BF16 : ST_F32;
        float *f = xmalloc(n * sizeof(float));
        st_to_f32(f, t->data, t->dtype, n);
        if (dt == ST_F32) bufs[i] = f;
        else {
            uint16_t *h = xmalloc(n * sizeof(uint16_t));
            for (size_t k = 0; k < n; k++) {
                if (dt == ST_BF16) h[k] = st_f32_to_bf16(f[k]);
                else {
                    _Float16 x = (_Float16)f[k];
                    memcpy(&h[k], &x, 2);
                }
            }
            free(f);
            bufs[i] = h;
        }
        wt[i] = (st_wtensor){t->name, dt, t->ndim, {0}, bufs[i]};
        memcpy(wt[i].shape, t->shape, sizeof t->shape);
    }
    int rc = st_write(tmpp, wt, s.ntensors);
    for (int i = 0; i < s.ntensors; i++) free(bufs[i]);
    free(bufs), free(wt);
    st_close(&s);
    if (!rc && rename(tmpp, path)) rc = -1;
    return rc;
}

static int load(model *m, const char *tmp, const char *name, int tied) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    mk_opts o;
    mk_defaults(&o);
    o.tied = tied;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    if (model_load(m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        return -1;
    }
    CHECK(m->w.bq != NULL && m->cfg.NKV < m->cfg.NH);     /* biases and GQA are exercised */
    CHECK((m->w.lm_head == m->w.embed) == (tied != 0)); /* tied as asked */
    return 0;
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    CHECK_SEED(rng);
    int san = getenv("LR_SAN") && !strcmp(getenv("LR_SAN"), "1");
    for (int tied = 0; tied < 2; tied++) {
        model m, mr;
        if (load(&m, tmp, tied ? "bf16_tied" : "bf16_untied", tied) || load(&mr, tmp, tied ? "bf16_tied" : "bf16_untied", tied))
            CHECK_DONE();
        for (size_t i = 0; i < mr.nparams; i++) mr.mem[i] = bf16_round(mr.mem[i]);
        lora lo0;
        lora_all_seven(&lo0, &m.cfg);
        batch kl = make_softkl(m.cfg.V, 4), sft = make_sft(m.cfg.V, 5);
        const char *lm = tied ? "tied" : "untied";
        char tag[128];
        double wl = 0, wg = 0;
        for (int drop = 0; drop < 2; drop++) {
            if (san && !drop) continue; /* the sanitizers look for memory errors: one of each */
            snprintf(tag, sizeof tag, "%s, soft-kl, dropout %s", lm, drop ? "0.1" : "off");
            one_step(&m, &mr, &lo0, &kl, TUNE_SOFTKL, drop, tag, &wl, &wg);
            snprintf(tag, sizeof tag, "%s, sft, dropout %s", lm, drop ? "0.1" : "off");
            one_step(&m, &mr, &lo0, &sft, TUNE_SFT, drop, tag, &wl, &wg);
        }
        fprintf(stderr, "%s: one accumulation, worst: loss rel %.2e (bound %.0e), gradient %.2e (bound %.0e)\n", lm, wl,
                TOL_LOSS, wg, TOL_GRAD);
        snprintf(tag, sizeof tag, "%s, soft-kl 20 steps, dropout 0.1", lm);
        if (!san || tied) run20(&m, &lo0, &kl, TUNE_SOFTKL, 1, tag);
        if (!tied) memory(&m, &lo0);
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", tmp, tied ? "bf16_tied" : "bf16_untied");
        snprintf(tag, sizeof tag, "%s, float32 checkpoint", lm);
        if (!san) opened(dir, &lo0, &kl, tag); /* the sanitizers: the mixed checkpoint has every upload path */
        if (tied) { /* tied: the embedding's bf16 copy is lm_head's too */
            snprintf(dir, sizeof dir, "%s/bf16_mixed", tmp);
            mk_opts o;
            mk_defaults(&o);
            o.tied = 1;
            CHECKF(mk_write_model(dir, &o) == 0 && mixed_dtypes(dir) == 0, "%s", lr_errmsg());
            opened(dir, &lo0, &kl, "tied, f16/bf16/f32 checkpoint");
        }
        free_batch(&kl), free_batch(&sft);
        lora_free(&lo0);
        model_free(&m), model_free(&mr);
    }
    CHECK_DONE();
}
