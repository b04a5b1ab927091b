/* bench_forward: CPU prefill and greedy-decode throughput of the forward
 * engine on a model folder, for bench/forward.sh (which runs PyTorch on the
 * same folder in the same run and prints the ratio).
 *   bench_forward MODEL_DIR BATCH PROMPT_LEN GEN_TOKENS [bf16]
 * With "bf16", decode streams bf16 copies of the weights (model_make_bf16;
 * BF16 checkpoints only; same results).
 * Prints one line: "c blas=... prefill_tok_s=X decode_tok_s=Y tokens=..."
 * (tokens: the greedy continuation of sequence 0, to compare with torch).
 * Without arguments it only says how it is meant to be run. */
#include "nn/forward.h"
#include "model/model.h"
#include "base/util.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int main(int argc, char **argv) {
    lr_progname = "bench_forward";
    int bf16 = argc == 6 && !strcmp(argv[5], "bf16");
    if (argc != 5 && !bf16) {
        printf("bench_forward: needs MODEL_DIR BATCH PROMPT_LEN GEN_TOKENS [bf16]; run through bench/forward.sh\n");
        return argc == 1 ? 0 : LR_EUSAGE;
    }
    int B = atoi(argv[2]), P = atoi(argv[3]), G = atoi(argv[4]);
    if (B < 1 || P < 1 || G < 1) return lr_fail(lr_err(LR_EUSAGE, "BATCH, PROMPT_LEN and GEN_TOKENS must be >= 1"));
    model m;
    int rc = model_load(&m, argv[1]);
    if (rc) return lr_fail(rc);
    if (bf16 && (rc = model_make_bf16(&m))) return lr_fail(rc);
    int V = m.cfg.V;
    fwd f;
    if ((rc = fwd_init(&f, &m, B, P + G, B * P, 0, 0))) return lr_fail(rc);
    int **toks = xmalloc((size_t)B * sizeof *toks), lens[B], next[B];
    for (int b = 0; b < B; b++) {
        toks[b] = xmalloc((size_t)P * sizeof(int));
        lens[b] = P;
        for (int t = 0; t < P; t++) toks[b][t] = (int)(((long)t * 7919 + 13 + b * 101) % (V < 151000 ? V : 151000));
    }
    float *lg = xmalloc((size_t)B * V * sizeof(float));
    /* warm-up: page in weights and BLAS buffers */
    if ((rc = fwd_prefill(&f, B, (const int *const *)toks, lens, lg))) return lr_fail(rc);
    double best_pf = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = lr_now();
        if ((rc = fwd_prefill(&f, B, (const int *const *)toks, lens, lg))) return lr_fail(rc);
        double dt = lr_now() - t0;
        if (dt < best_pf) best_pf = dt;
    }
    int *gen = xmalloc((size_t)G * sizeof(int));
    double t0 = lr_now();
    for (int g = 0; g < G; g++) {
        for (int b = 0; b < B; b++) next[b] = argmax(lg + (size_t)b * V, V);
        gen[g] = next[0];
        if (g + 1 < G && (rc = fwd_decode(&f, B, next, lg))) return lr_fail(rc);
    }
    double dec = lr_now() - t0;
    char *cfg = openblas_get_config();
    printf("c%s blas=\"%s\" threads=%d prefill_tok_s=%.1f decode_tok_s=%.2f tokens=", bf16 ? "-bf16" : "", cfg, openblas_get_num_threads(),
           (double)B * P / best_pf, G > 1 ? (double)B * (G - 1) / dec : 0.0);
    for (int g = 0; g < G; g++) printf("%s%d", g ? "," : "", gen[g]);
    printf("\n");
    for (int b = 0; b < B; b++) free(toks[b]);
    free(toks);
    free(gen);
    free(lg);
    fwd_free(&f);
    model_free(&m);
    return 0;
}
