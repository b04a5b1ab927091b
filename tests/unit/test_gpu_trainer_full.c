/* Full-parameter training on the device (nn/gpu_train.h without LoRA,
 * lr-tune --device cuda --full) against the CPU tuner, on the emulated
 * device: lr-mkmodel's tiny Qwen2 (2 layers, GQA 2:1, q/k/v biases),
 * untied and tied (lm_head is the embedding), driven through the same
 * tuner calls (tune.h, tuner_use_gpu) as lr-tune.
 *
 *   (a) one accumulation (soft-KL packed, with a shared loss row, a
 *       query-only row and repeated tokens; SFT): the loss and the gradient
 *       of every base tensor (embedding, the norms, q/k/v/o with their
 *       biases, gate/up/down, the final norm, lm_head when untied); also
 *       on a Llama with attention_bias (biases on q/k/v and o_proj, which
 *       no Qwen2 has), untied;
 *   (b) on the tied model, a 10-step soft-KL run (AdamW with weight decay,
 *       clipping, a linear schedule): per-step losses and gradient norms
 *       track the CPU run's, and every trained tensor and both moments
 *       agree at the end.
 *
 * Under LR_SAN=1 (the sanitizers look for memory errors, not numbers) the
 * untied Qwen2 is skipped (the tied one and the Llama have every code
 * path between them), and (b) runs 4 steps.
 *
 * Tolerances: both sides are float32 with float32 GEMMs and differ in
 * summation order only. One accumulation: loss 1e-5 relative, each tensor's
 * gradient max |gpu - cpu| / max |cpu| < 1e-4. 10 steps: losses 1e-4
 * relative, norms 1e-3, weights and moments 1e-3 per tensor, as
 * test_gpu_trainer's LoRA bounds. */
#include "check.h"

#include "method/tune.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "base/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune_batches.h"

/* the model's trainable tensors: name, offset in m->mem, floats (a tied
 * lm_head is the embedding, listed once) */
typedef struct {
    const char *name;
    size_t off, n;
} tensor;

static int tensors(const model *m, tensor *t) {
    const mcfg *c = &m->cfg;
    size_t L = (size_t)c->L, C = (size_t)c->C, I = (size_t)c->I, V = (size_t)c->V;
    size_t QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD;
    const model_weights *w = &m->w;
    struct {
        const char *name;
        const float *p;
        size_t n;
    } all[] = {{"embed", w->embed, V * C},   {"ln1", w->ln1, L * C},       {"q", w->wq, L * QD * C},
               {"q.bias", w->bq, L * QD},    {"k", w->wk, L * KD * C},     {"k.bias", w->bk, L * KD},
               {"v", w->wv, L * KD * C},     {"v.bias", w->bv, L * KD},    {"o", w->wo, L * C * QD},
               {"o.bias", w->bo, L * C},     {"ln2", w->ln2, L * C},       {"gate", w->wgate, L * I * C},
               {"up", w->wup, L * I * C},    {"down", w->wdown, L * C * I}, {"norm", w->norm, C},
               {"lm_head", w->lm_head != w->embed ? w->lm_head : NULL, V * C}};
    int k = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i].p) t[k++] = (tensor){all[i].name, (size_t)(all[i].p - m->mem), all[i].n};
    return k;
}

/* the worst per-tensor relative error of a against ref (m's layout);
 * tensors at or above `report` are printed */
static double worst_tensor(const model *m, const float *a, const float *ref, const char *what, const char *tag,
                           double report) {
    tensor t[16];
    int nt = tensors(m, t);
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        double e = check_rel_err(a + t[i].off, ref + t[i].off, t[i].n);
        if (e >= report) fprintf(stderr, "%s %s %s: %.2e\n", tag, what, t[i].name, e);
        worst = fmax(worst, e);
    }
    return worst;
}

/* a full-parameter tuner on its own copy of the model at dir: the cpu
 * (gpu 0) or the device in float32 */
static int open_full(tuner *tu, model *m, const char *dir, int objective, int gpu) {
    if (model_load(m, dir)) return -1;
    if (tuner_init(tu, m, NULL, objective, 0, 1, 64, 32, 8, 2e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f)) return -1;
    tu->seed = 7;
    if (gpu) {
        tu->precision = GTRN_F32;
        if (tuner_use_gpu(tu)) return -1;
    }
    return 0;
}

/* (a) one accumulation: loss and every tensor's gradient */
static void one_step(const char *dir, const batch *b, int objective, const char *tag) {
    tuner c, g;
    model mc, mg;
    if (open_full(&c, &mc, dir, objective, 0) || open_full(&g, &mg, dir, objective, 1)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    CHECK(g.n == mc.nparams && c.n == mc.nparams);
    double l_c, l_g;
    float *gg = accumulate_once(&c, &g, b, &l_c, &l_g);
    double e = worst_tensor(&mc, gg, c.grads, "gradient", tag, 1e-4);
    /* every tensor has a gradient to compare */
    tensor t[16];
    int nt = tensors(&mc, t);
    double gmin = INFINITY;
    for (int i = 0; i < nt; i++) {
        double mx = 0;
        for (size_t j = 0; j < t[i].n; j++) mx = fmax(mx, fabs(c.grads[t[i].off + j]));
        if (mx < 1e-7) fprintf(stderr, "%s: %s has no gradient\n", tag, t[i].name);
        gmin = fmin(gmin, mx);
    }
    fprintf(stderr, "%s: loss cpu %.9g gpu %.9g (rel %.1e); %d tensors, gradients max rel err %.2e (smallest tensor max |g| %.2e)\n",
            tag, l_c, l_g, fabs(l_g - l_c) / fabs(l_c), nt, e, gmin);
    CHECK(gmin > 1e-7);
    CHECK_CLOSE(l_g, l_c, 0, 1e-5);
    CHECK(e < 1e-4);
    free(gg);
    tuner_free(&c), tuner_free(&g);
    model_free(&mc), model_free(&mg);
}

/* (b) `steps` optimizer steps of 2 micro-batches each */
static void run_steps(const char *dir, const batch *b, int steps, const char *tag) {
    tuner c, g;
    model mc, mg, m0;
    if (open_full(&c, &mc, dir, TUNE_SOFTKL, 0) || open_full(&g, &mg, dir, TUNE_SOFTKL, 1) || model_load(&m0, dir)) {
        CHECKF(0, "%s: %s", tag, lr_errmsg());
        return;
    }
    double worst_l, worst_n;
    track(&c, &g, b, steps, tag, "gpu", &worst_l, &worst_n, NULL, NULL);
    CHECK(tuner_download(&g) == 0); /* the device's weights into mg.mem */
    CHECK(g.opt.t == c.opt.t && g.opt.t == steps);
    double ep = worst_tensor(&mc, mg.mem, mc.mem, "weights", tag, 1e-3);
    double em = worst_tensor(&mc, g.opt.m, c.opt.m, "exp_avg", tag, 1e-3);
    double ev = worst_tensor(&mc, g.opt.v, c.opt.v, "exp_avg_sq", tag, 1e-3);
    /* how far training moved the weights from the start, per tensor (the
     * smallest move: every tensor was trained) */
    tensor t[16];
    int nt = tensors(&mc, t);
    double moved = INFINITY;
    for (int i = 0; i < nt; i++) moved = fmin(moved, check_rel_err(mc.mem + t[i].off, m0.mem + t[i].off, t[i].n));
    fprintf(stderr, "%s: %d steps: worst loss rel %.2e, norm rel %.2e; weights %.2e (each tensor moved >= %.2e), exp_avg %.2e, exp_avg_sq %.2e\n",
            tag, steps, worst_l, worst_n, ep, moved, em, ev);
    CHECK(worst_l < 1e-4);
    CHECK(worst_n < 1e-3);
    CHECK(ep < 1e-3 && em < 1e-3 && ev < 1e-3);
    CHECK(moved > 1e-3);
    tuner_free(&c), tuner_free(&g);
    model_free(&mc), model_free(&mg), model_free(&m0);
}

/* does some token occur twice in one of b's examples? (the embedding's
 * gradient scatter must add both rows) */
static int has_repeat(const batch *b) {
    for (int i = 0; i < b->n; i++)
        for (int x = 0; x < b->ex[i].ntok; x++)
            for (int y = x + 1; y < b->ex[i].ntok; y++)
                if (b->ex[i].tokens[x] == b->ex[i].tokens[y]) return 1;
    return 0;
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    int san = getenv("LR_SAN") && !strcmp(getenv("LR_SAN"), "1");
    CHECK_SEED(rng);
    (void)open_tuner, (void)lora_all_seven; /* tune_batches.h's LoRA tuner and LoRA; this test opens full ones (open_full) */
    model m;
    /* 0 untied, 1 tied (Qwen2); 2: Llama with attention_bias, the one
     * with an o_proj bias (Qwen2 has none), untied */
    for (int variant = san; variant < 3; variant++) {
        int tied = variant == 1, obias = variant == 2;
        const char *name = obias ? "llama-bias" : tied ? "tied" : "untied";
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/gpu_trainer_full_%s", tmp, name);
        mk_opts o;
        mk_defaults(&o);
        o.tied = tied;
        if (obias) o.arch = "llama", o.bias = 1;
        CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
        if (model_load(&m, dir)) {
            CHECKF(0, "%s", lr_errmsg());
            CHECK_DONE();
        }
        CHECK(m.w.bq != NULL && m.cfg.NKV < m.cfg.NH && (m.w.lm_head == m.w.embed) == tied);
        CHECK((m.w.bo != NULL) == obias);
        batch kl = make_softkl(m.cfg.V, 4), sft = make_sft(m.cfg.V, 5);
        model_free(&m);
        /* repeated tokens within one sequence: make one if the draw has none */
        if (!has_repeat(&kl))
            for (int i = 0; i < kl.n; i++)
                if (kl.ex[i].problem == 0) kl.ex[i].tokens[1] = kl.ex[i].tokens[0]; /* its steps still extend one another */
        CHECK(has_repeat(&kl));
        char tag[64];
        snprintf(tag, sizeof tag, "%s, soft-kl", name);
        one_step(dir, &kl, TUNE_SOFTKL, tag);
        snprintf(tag, sizeof tag, "%s, sft", name);
        one_step(dir, &sft, TUNE_SFT, tag);
        if (tied) run_steps(dir, &kl, san ? 4 : 10, "tied, soft-kl");
        free_batch(&kl), free_batch(&sft);
    }
    CHECK_DONE();
}
