/* Finite-difference check of the whole hand-written backward (trainer.c) on
 * tiny random models: every parameter kind of the base (embeddings, both
 * norms, q/k/v/o with biases, gate/up/down, final norm, lm_head, tied or
 * not) and the LoRA A and B of all seven projections, with LoRA dropout on
 * (its mask is a function of the seed, so the loss stays a fixed function),
 * two sequences packed in one call, soft-KL rows (with a vocabulary limit)
 * and cross-entropy rows. For each kind: central differences on its 6
 * largest-gradient entries and 6 random ones, max |fd - an| / max |an| over
 * them < 1e-3, with Richardson-extrapolated central differences (h = 1e-2
 * and 5e-3) so the truncation error is O(h^4) and float32 roundoff rules. */
#include "check.h"
#include "model/lora.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "method/objective.h"
#include "nn/trainer.h"
#include "base/util.h"

#include <string.h>

static uint64_t rng = 777;
static uint64_t next(void) {
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static float urand(void) { return (float)((next() >> 40) * (2.0 / 16777216.0) - 1.0); }

/* the fixed batch: two sequences packed, loss rows = 2 soft-KL + 2 CE */
#define NROWS 13
static const int tokens[NROWS] = {5, 17, 250, 3, 99, 42, 7, 270, 11, 12, 13, 200, 1};
static const int seqs[NROWS] = {0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1};
static const int want[4] = {4, 7, 10, 12}; /* slot 0 rows 4, 7 (last 10); slot 1 row 12 (last) */
static const int kl_ids[3] = {17, 280, 5};    /* 280 >= vlim: dropped */
static const float kl_w[3] = {0.6f, 0.1f, 0.3f};
static const int vlim = 272;

typedef struct {
    trn *t;
    float *logits, *dlogits;
    int V;
} ctx;

/* loss of the fixed batch; with grad, dlogits filled for the backward */
static double batch_loss(ctx *c, int grad) {
    int rc = trn_forward(c->t, NROWS, tokens, seqs, 4, want, c->logits);
    if (rc) fprintf(stderr, "%s\n", lr_errmsg());
    double total = 0.0, l;
    for (int i = 0; i < 4; i++) {
        float *z = c->logits + (size_t)i * c->V, *dz = grad ? c->dlogits + (size_t)i * c->V : NULL;
        if (i == 1 || i == 3) obj_softkl(z, c->V, vlim, kl_ids, kl_w, 3, 0.5f, dz, &l);
        else obj_ce(z, c->V, c->V, tokens[want[i] + 1 < NROWS ? want[i] + 1 : 0], 0.5f, dz, &l);
        total += 0.5 * l;
    }
    return total;
}

static void check_kind(ctx *c, const char *name, float *p, const float *g, size_t n) {
    int idx[12], k = 0;
    /* the 6 largest |g| */
    for (int j = 0; j < 6 && j < (int)n; j++) {
        size_t best = 0;
        double bv = -1;
        for (size_t i = 0; i < n; i++) {
            int seen = 0;
            for (int q = 0; q < k; q++) seen |= idx[q] == (int)i;
            if (!seen && fabs(g[i]) > bv) bv = fabs(g[i]), best = i;
        }
        idx[k++] = (int)best;
    }
    for (int j = 0; j < 6; j++) idx[k++] = (int)(next() % n);
    double maxerr = 0, maxan = 0;
    const float h = 1e-2f;
    for (int j = 0; j < k; j++) {
        size_t i = (size_t)idx[j];
        double d[2];
        for (int e = 0; e < 2; e++) { /* central differences at h and h/2 */
            float x0 = p[i], he = e ? h / 2 : h;
            p[i] = x0 + he;
            double lp = batch_loss(c, 0);
            p[i] = x0 - he;
            double lm = batch_loss(c, 0);
            p[i] = x0;
            d[e] = (lp - lm) / (2.0 * he);
        }
        double fd = (4.0 * d[1] - d[0]) / 3.0; /* Richardson: O(h^4) */
        if (fabs(fd - g[i]) > maxerr) maxerr = fabs(fd - g[i]);
        if (fabs(g[i]) > maxan) maxan = fabs(g[i]);
    }
    double rel = maxerr / (maxan > 0 ? maxan : 1e-30);
    fprintf(stderr, "  %-16s n=%-6zu max|g|=%-10.3g rel err %.2e\n", name, n, maxan, rel);
    CHECKF(rel < 1e-3 && maxan > 1e-7, "%s: relative error %.3g (max |g| %.3g)", name, rel, maxan);
}

static void run(const char *tmp, const char *name, const char *arch, int tied, int bias) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/trainer_%s", tmp, name);
    mk_opts o;
    mk_defaults(&o);
    o.arch = arch, o.L = 2, o.C = 32, o.NH = 4, o.NKV = 2, o.I = 48, o.tied = tied, o.bias = bias, o.seed = 5;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        return;
    }
    const mcfg *cf = &m.cfg;
    fprintf(stderr, "%s: %s L=%d C=%d NH=%d NKV=%d I=%d V=%d tied=%d bias=%d\n", name, arch, cf->L, cf->C, cf->NH, cf->NKV,
            cf->I, cf->V, cf->tied, cf->qkv_bias);
    lora lo, glo;
    lora_alloc(&lo, cf, 4, 8.0f, 0.1f, (1u << LORA_NMOD) - 1);
    for (size_t i = 0; i < lo.n; i++) lo.mem[i] = 0.2f * urand(); /* B != 0 so A has a gradient */
    lora_alloc_like(&glo, &lo);
    trn t;
    CHECK(trn_init(&t, &m, &lo, 2, 16, NROWS) == 0);
    t.training = 1, t.drop_seed = 99;
    ctx c = {&t, malloc(4 * sizeof(float) * cf->V), malloc(4 * sizeof(float) * cf->V), cf->V};
    model_weights gw;
    float *gmem = trn_grads(&m, &gw);
    double loss = batch_loss(&c, 1);
    trn_backward(&t, c.dlogits, &gw, &glo);
    fprintf(stderr, "  loss %.6f\n", loss);
    int L = cf->L, C = cf->C, I = cf->I, QD = cf->NH * cf->HD, KD = cf->NKV * cf->HD;
    struct { const char *n; float *p, *g; size_t k; } kinds[] = {
        {"embed", m.w.embed, gw.embed, (size_t)cf->V * C},  {"ln1", m.w.ln1, gw.ln1, (size_t)L * C},
        {"wq", m.w.wq, gw.wq, (size_t)L * QD * C},          {"bq", m.w.bq, gw.bq, (size_t)L * QD},
        {"wk", m.w.wk, gw.wk, (size_t)L * KD * C},          {"bk", m.w.bk, gw.bk, (size_t)L * KD},
        {"wv", m.w.wv, gw.wv, (size_t)L * KD * C},          {"bv", m.w.bv, gw.bv, (size_t)L * KD},
        {"wo", m.w.wo, gw.wo, (size_t)L * C * QD},          {"bo", m.w.bo, gw.bo, (size_t)L * C},
        {"ln2", m.w.ln2, gw.ln2, (size_t)L * C},            {"wgate", m.w.wgate, gw.wgate, (size_t)L * I * C},
        {"wup", m.w.wup, gw.wup, (size_t)L * I * C},        {"wdown", m.w.wdown, gw.wdown, (size_t)L * C * I},
        {"norm", m.w.norm, gw.norm, (size_t)C},             {"lm_head", tied ? NULL : m.w.lm_head, gw.lm_head, (size_t)cf->V * C},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].p) check_kind(&c, kinds[i].n, kinds[i].p, kinds[i].g, kinds[i].k);
    for (int k = 0; k < LORA_NMOD; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "lora %s A", lora_module_name(k));
        check_kind(&c, nm, lo.A[k], glo.A[k], (size_t)L * lo.r * lo.in[k]);
        snprintf(nm, sizeof nm, "lora %s B", lora_module_name(k));
        check_kind(&c, nm, lo.B[k], glo.B[k], (size_t)L * lo.out[k] * lo.r);
    }
    free(gmem);
    free(c.logits);
    free(c.dlogits);
    trn_free(&t);
    lora_free(&lo);
    lora_free(&glo);
    model_free(&m);
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    CHECK_SEED(rng);
    run(tmp, "qwen2", "qwen2", 0, -1);
    run(tmp, "llama_tied_bias", "llama", 1, 1);
    CHECK_DONE();
}
