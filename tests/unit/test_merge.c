/* lr-merge's library: base + LoRA (all seven modules, random A and B) merged
 * and saved as a Hugging Face folder, reloaded by model_load; the plain
 * forward (forward.c) of the merged model equals the training forward
 * (trainer.c) of base + adapter: f32 to 1e-5 relative, bf16 within bf16
 * rounding. Tied and untied, with and without biases. */
#include "check.h"
#include "nn/forward.h"
#include "model/lora.h"
#include "model/merge.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "nn/trainer.h"
#include "base/util.h"

#include <string.h>

static void run(const char *tmp, const char *name, const char *arch, int tied) {
    char dir[1024], out[1100];
    snprintf(dir, sizeof dir, "%s/merge_%s", tmp, name);
    mk_opts o;
    mk_defaults(&o);
    o.arch = arch, o.tied = tied, o.seed = 9, o.NH = 4, o.NKV = 2;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        return;
    }
    lora lo;
    lora_alloc(&lo, &m.cfg, 4, 8.0f, 0.05f, (1u << LORA_NMOD) - 1);
    uint64_t s = 5;
    for (size_t i = 0; i < lo.n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        lo.mem[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.3f;
    }
    int tok[20], seq[20] = {0}, want[20], N = 20, V = m.cfg.V;
    for (int i = 0; i < N; i++) tok[i] = (i * 53 + 17) % 269, want[i] = i;
    float *ref = xmalloc((size_t)N * V * sizeof(float)), *got = xmalloc((size_t)N * V * sizeof(float));
    trn t;
    CHECK(trn_init(&t, &m, &lo, 1, 32, 32) == 0);
    CHECK(trn_forward(&t, N, tok, seq, N, want, ref) == 0);
    trn_free(&t);
    lora_merge(&m, &lo);
    for (int bf = 0; bf < 2; bf++) {
        snprintf(out, sizeof out, "%s_merged_%s", dir, bf ? "bf16" : "f32");
        CHECKF(model_save(&m, dir, out, bf ? ST_BF16 : ST_F32) == 0, "%s", lr_errmsg());
        model mm;
        if (model_load(&mm, out)) {
            CHECKF(0, "%s", lr_errmsg());
            continue;
        }
        CHECK(mm.cfg.tied == m.cfg.tied && mm.nparams == m.nparams);
        fwd f;
        CHECK(fwd_init(&f, &mm, 1, 32, 32, 0, 1) == 0);
        const int *tp = tok;
        CHECK(fwd_teacher(&f, 1, &tp, &N, got) == 0);
        double md = 0, mr = 0;
        for (size_t i = 0; i < (size_t)N * V; i++) md = fmax(md, fabs(got[i] - ref[i])), mr = fmax(mr, fabs(ref[i]));
        fprintf(stderr, "%s %s: merged forward vs base+adapter: max rel err %.2e\n", name, bf ? "bf16" : "f32", md / mr);
        CHECK(md / mr < (bf ? 5e-2 : 1e-5));
        fwd_free(&f);
        model_free(&mm);
    }
    free(ref);
    free(got);
    lora_free(&lo);
    model_free(&m);
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    run(tmp, "qwen2", "qwen2", 0);
    run(tmp, "llama_tied", "llama", 1);
    CHECK_DONE();
}
