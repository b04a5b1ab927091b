/* The training forward (trn_forward: kept activations, LoRA) against the
 * inference forward (fwd_run / fwd_prefill / fwd_decode) on the same model
 * and tokens, directly:
 *   - no adapter, and a LoRA on all seven projections with random nonzero A
 *     and B (dropout configured but off, as at evaluation time);
 *   - inference in one call: the same bits; in chunks of 5 rows, and
 *     prefill + step-by-step decode: within float32 rounding
 *     (max |a - b| / max |b| < 1e-5);
 *   - with LoRA, against inference on the merged float32 weights
 *     (lora_merge + model_save, what lr-merge writes) reloaded: < 1e-4;
 *   - a bf16 checkpoint with bf16 decode copies (model_make_bf16), whose
 *     decode path streams the bf16 weights: within float32 rounding.
 * Two sequences packed in one call, qwen2 (biases, untied) and llama (tied,
 * no biases). */
#include "check.h"
#include "model/lora.h"
#include "model/merge.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "nn/forward.h"
#include "nn/trainer.h"
#include "base/rng.h"
#include "base/util.h"

#include <string.h>

#define N 19
static const int tokens[N] = {5, 17, 250, 3, 99, 42, 7, 270, 11, 12, 13, 200, 1, 64, 33, 101, 8, 9, 150};
static const int seqs[N] = {0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0};

/* training-forward logits of every row: (N, V) */
static float *train_logits(const model *m, const lora *lo) {
    int want[N];
    for (int i = 0; i < N; i++) want[i] = i;
    trn t;
    float *lg = xmalloc((size_t)N * m->cfg.V * sizeof(float));
    CHECK(trn_init(&t, m, lo, 2, 32, N) == 0);
    int rc = trn_forward(&t, N, tokens, seqs, N, want, lg);
    CHECKF(rc == 0, "trn_forward: %s", lr_errmsg());
    trn_free(&t);
    return lg;
}

/* inference logits of every row, in chunks of max_tokens rows: (N, V) */
static float *infer_logits(const model *m, const lora *lo, int max_tokens) {
    fwd f;
    float *lg = xmalloc((size_t)N * m->cfg.V * sizeof(float));
    CHECK(fwd_init(&f, m, 2, 32, max_tokens, 0, 0) == 0);
    fwd_set_lora(&f, lo);
    int rc = fwd_run(&f, N, tokens, seqs, NULL, lg);
    CHECKF(rc == 0, "fwd_run: %s", lr_errmsg());
    fwd_free(&f);
    return lg;
}

/* inference one token per call: prefill both slots with their first token,
 * then decode the rest row by row (each row's logits into its place) */
static float *decode_logits(const model *m, const lora *lo) {
    int V = m->cfg.V;
    fwd f;
    float *lg = xmalloc((size_t)N * V * sizeof(float));
    CHECK(fwd_init(&f, m, 2, 32, 8, 0, 0) == 0);
    fwd_set_lora(&f, lo);
    for (int i = 0; i < N; i++) {
        unsigned char want = 1;
        int rc = fwd_run(&f, 1, &tokens[i], &seqs[i], &want, lg + (size_t)i * V);
        CHECKF(rc == 0, "decode row %d: %s", i, lr_errmsg());
    }
    fwd_free(&f);
    return lg;
}

static void run(const char *tmp, const char *name, const char *arch, int tied, int bf16) {
    char dir[1024], out[1100];
    snprintf(dir, sizeof dir, "%s/fwdtrain_%s", tmp, name);
    mk_opts o;
    mk_defaults(&o);
    o.arch = arch, o.tied = tied, o.bf16 = bf16, o.L = 2, o.C = 64, o.NH = 4, o.NKV = 2, o.I = 96, o.seed = 11;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        return;
    }
    int V = m.cfg.V;
    size_t n = (size_t)N * V;
    lora lo;
    lora_alloc(&lo, &m.cfg, 4, 8.0f, 0.1f, (1u << LORA_NMOD) - 1);
    uint64_t s = 2026;
    CHECK_SEED(s);
    for (size_t i = 0; i < lo.n; i++) lo.mem[i] = 0.3f * (float)(rng_unit(&s) - 0.5); /* A and B nonzero */

    for (int with = 0; with < 2; with++) {
        const lora *l = with ? &lo : NULL;
        const char *what = with ? "LoRA" : "no adapter";
        float *tr = train_logits(&m, l), *one = infer_logits(&m, l, 32), *ch = infer_logits(&m, l, 5),
              *dec = decode_logits(&m, l);
        double e1 = check_rel_err(one, tr, n), ec = check_rel_err(ch, tr, n), ed = check_rel_err(dec, tr, n);
        fprintf(stderr, "%s, %s: training vs inference: one call %.2e, chunks of 5 %.2e, decode %.2e\n", name, what, e1,
                ec, ed);
        CHECKF(!memcmp(one, tr, n * sizeof(float)), "%s, %s: inference in one call differs from the training forward (%.3g)",
               name, what, e1);
        CHECKF(ec < 1e-5, "%s, %s: chunked inference vs training: %.3g", name, what, ec);
        CHECKF(ed < 1e-5, "%s, %s: decode vs training: %.3g", name, what, ed);
        if (with) { /* the adapter changes the logits: the comparison above saw it */
            float *base = train_logits(&m, NULL);
            double eb = check_rel_err(base, tr, n);
            CHECKF(eb > 1e-3, "%s: LoRA changed the logits by only %.3g", name, eb);
            free(base);
        }
        if (bf16 && !with) CHECK(model_make_bf16(&m) == 0); /* next round: decode streams bf16 copies */
        free(tr);
        free(one);
        free(ch);
        free(dec);
    }

    /* LoRA training forward vs inference on the merged float32 weights */
    float *tr = train_logits(&m, &lo);
    model_free(&m);
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        free(tr);
        lora_free(&lo);
        return;
    }
    lora_merge(&m, &lo);
    snprintf(out, sizeof out, "%s_merged", dir);
    CHECKF(model_save(&m, dir, out, ST_F32) == 0, "%s", lr_errmsg());
    model mm;
    if (model_load(&mm, out) == 0) {
        float *mg = infer_logits(&mm, NULL, 32);
        double em = check_rel_err(mg, tr, n);
        fprintf(stderr, "%s: LoRA training forward vs merged f32 inference: %.2e\n", name, em);
        CHECKF(em < 1e-4, "%s: merged f32 inference vs LoRA training forward: %.3g", name, em);
        free(mg);
        model_free(&mm);
    } else CHECKF(0, "%s", lr_errmsg());
    free(tr);
    lora_free(&lo);
    model_free(&m);
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    run(tmp, "qwen2", "qwen2", 0, 0);
    run(tmp, "llama_tied", "llama", 1, 0);
    run(tmp, "qwen2_bf16", "qwen2", 0, 1);
    CHECK_DONE();
}
