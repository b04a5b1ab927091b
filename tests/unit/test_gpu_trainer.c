/* The device trainer (nn/gpu_train.h) against the CPU tuner, on the
 * emulated device: lr-mkmodel's default tiny Qwen2 (2 layers, GQA 2:1,
 * q/k/v biases), LoRA on all seven projections, driven through the same
 * tuner (tune.h) with tuner_use_gpu as lr-tune --device cuda does.
 *
 *   (a) one optimizer step's worth of accumulation: the loss and every LoRA
 *       gradient equal the CPU tuner's; soft-KL with packing (prefix-related
 *       contexts of one problem, one shared row), a query-only row (the
 *       reference collate's pad), and SFT cross-entropy; dropout off and on
 *       (the same counter-based masks on both sides);
 *   (b) a 20-step run (AdamW, clipping, linear schedule): per-step losses
 *       and gradient norms track the CPU run's, and the final parameters
 *       and moments agree, dropout off and on.
 *
 * Under LR_SAN=1 (the sanitizer run) only the soft-KL 20-step run with
 * dropout is made.
 *
 * Tolerances: both sides are float32 with float32 GEMMs; they differ in
 * summation order only (cuBLAS vs OpenBLAS, block reductions vs serial
 * loops). One step: loss 1e-5 relative, gradients max |gpu - cpu| /
 * max |cpu| < 1e-4 per tensor. 20 steps: losses 1e-4 relative, norms 1e-3,
 * parameters 1e-3 (max abs error / max abs value). */
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

static double max_tensor_err(const lora *shape, const float *a, const float *ref, const char *what, const char *tag) {
    double worst = 0;
    for (int k = 0; k < LORA_NMOD; k++) {
        if (!shape->A[k]) continue;
        size_t oA = (size_t)(shape->A[k] - shape->mem), oB = (size_t)(shape->B[k] - shape->mem);
        size_t nA = (size_t)shape->L * shape->r * shape->in[k], nB = (size_t)shape->L * shape->out[k] * shape->r;
        double eA = check_rel_err(a + oA, ref + oA, nA), eB = check_rel_err(a + oB, ref + oB, nB);
        if (fmax(eA, eB) > worst) worst = fmax(eA, eB);
        if (eA >= 1e-4 || eB >= 1e-4) fprintf(stderr, "%s %s %s: A %.2e B %.2e\n", tag, what, lora_module_name(k), eA, eB);
    }
    return worst;
}

/* (a) one accumulation: loss and gradients */
static void one_step(model *m, const lora *lo0, const batch *b, int objective, int drop, const char *tag) {
    tuner c, g;
    lora lc, lg;
    int maxlen = 32;
    CHECK(open_tuner(&c, &lc, lo0, m, objective, -1, drop, maxlen) == 0);
    if (open_tuner(&g, &lg, lo0, m, objective, GTRN_F32, drop, maxlen)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    double l_c, l_g;
    float *gg = accumulate_once(&c, &g, b, &l_c, &l_g);
    double e = max_tensor_err(&lc, gg, c.grads, "gradient", tag), gmax = 0;
    for (size_t i = 0; i < c.n; i++) gmax = fmax(gmax, fabs(c.grads[i]));
    fprintf(stderr, "%s: loss cpu %.9g gpu %.9g (rel %.1e); LoRA gradients max rel err %.2e (max |g| %.3g); rows %ld/%ld calls %ld/%ld\n",
            tag, l_c, l_g, fabs(l_g - l_c) / fabs(l_c), e, gmax, c.rows_fwd, g.rows_fwd, c.calls, g.calls);
    CHECK(gmax > 1e-4); /* something to compare */
    CHECK_CLOSE(l_g, l_c, 0, 1e-5);
    CHECK(e < 1e-4);
    CHECK(c.rows_fwd == g.rows_fwd && c.calls == g.calls && c.examples == g.examples);
    free(gg);
    tuner_free(&c), tuner_free(&g);
    lora_free(&lc), lora_free(&lg);
}

/* (b) 20 optimizer steps of 2 micro-batches each */
static void run20(model *m, const lora *lo0, const batch *b, int objective, int drop, const char *tag) {
    tuner c, g;
    lora lc, lg;
    CHECK(open_tuner(&c, &lc, lo0, m, objective, -1, drop, 32) == 0);
    if (open_tuner(&g, &lg, lo0, m, objective, GTRN_F32, drop, 32)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    int steps = 20;
    double worst_l, worst_n;
    track(&c, &g, b, steps, tag, "gpu", &worst_l, &worst_n, NULL, NULL);
    CHECK(tuner_download(&g) == 0);
    CHECK(g.opt.t == c.opt.t && g.opt.t == steps);
    double ep = max_tensor_err(&lc, lg.mem, lc.mem, "params", tag);
    double em = check_rel_err(g.opt.m, c.opt.m, c.n), ev = check_rel_err(g.opt.v, c.opt.v, c.n);
    double moved = check_rel_err(lc.mem, lo0->mem, lc.n);
    fprintf(stderr, "%s: 20 steps: worst loss rel %.2e, norm rel %.2e; params %.2e (moved %.2e from init), exp_avg %.2e, exp_avg_sq %.2e\n",
            tag, worst_l, worst_n, ep, moved, em, ev);
    CHECK(worst_l < 1e-4);
    CHECK(worst_n < 1e-3);
    CHECK(ep < 1e-3 && em < 1e-3 && ev < 1e-3);
    CHECK(moved > 1e-2); /* training moved the weights: the agreement is not the initial state's */
    tuner_free(&c), tuner_free(&g);
    lora_free(&lc), lora_free(&lg);
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    CHECK_SEED(rng);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpu_trainer_model", tmp);
    mk_opts o;
    mk_defaults(&o);
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        CHECK_DONE();
    }
    CHECK(m.w.bq != NULL && m.cfg.NKV < m.cfg.NH); /* biases and GQA are exercised */
    lora lo0;
    lora_all_seven(&lo0, &m.cfg);
    batch kl = make_softkl(m.cfg.V, 4), sft = make_sft(m.cfg.V, 5);
    for (int drop = 0; drop < 2; drop++) {
        one_step(&m, &lo0, &kl, TUNE_SOFTKL, drop, drop ? "soft-kl, dropout 0.1" : "soft-kl, no dropout");
        one_step(&m, &lo0, &sft, TUNE_SFT, drop, drop ? "sft, dropout 0.1" : "sft, no dropout");
    }
    /* under the sanitizers (tests/run.sh sets LR_SAN), which look for memory
     * errors rather than numbers, one 20-step run is enough */
    int san = getenv("LR_SAN") && !strcmp(getenv("LR_SAN"), "1");
    if (!san) run20(&m, &lo0, &kl, TUNE_SOFTKL, 0, "soft-kl 20 steps, no dropout");
    run20(&m, &lo0, &kl, TUNE_SOFTKL, 1, "soft-kl 20 steps, dropout 0.1");
    if (!san) run20(&m, &lo0, &sft, TUNE_SFT, 1, "sft 20 steps, dropout 0.1");
    free_batch(&kl), free_batch(&sft);
    lora_free(&lo0);
    model_free(&m);
    CHECK_DONE();
}
