/* lr-infer's continuous-batching driver (run_generate) on a tiny random
 * model: one long answer first among short ones, two slots. Finished
 * problems are held back for input order only up to ahead_max: with a
 * bound of 2 at most 2 + 2 problems are held at once (the free slot idles
 * once they are, so it takes more forward passes; likewise under a bound
 * in bytes), without one the free
 * slot runs on through the short problems; every run writes every problem
 * with the same tokens, and static batches take more passes than either. */
#include "check.h"

#include "base/util.h"
#include "infer/run.h"
#include "model/mkmodel.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *tmpdir(void) {
    const char *t = getenv("LR_TMP");
    return t ? t : "/tmp";
}

typedef struct {
    long written;
    int peak;
    uint64_t tokens, calls;
} outcome;

static outcome run_once(const model *m, const tok_t *tok, const char *data, const char *out, int static_batches,
                        int ahead_max, size_t ahead_bytes) {
    outcome res = {0};
    engine e;
    if (eng_init(&e, m, ENG_CPU, 2, 128, 512, 8, 1)) { CHECKF(0, "%s", lr_errmsg()); return res; }
    /* the model's ids for the EOS strings 'ě' (27) and '5' (53): many
     * problems stop at their second token, the first never does */
    static const int32_t eos[] = {27, 53};
    gen_opts go = {.V = m->cfg.V, .co = {.mass = 0.9, .kmax = 8, .kmin = 1}, .max_new = 40, .eos = eos, .neos = 2};
    gen_ctx g;
    gen_init(&g, &e, &go);
    run_opts ro = {.model_dir = "m", .preset = "raw", .limit = -1, .shard_k = 0, .shard_n = 1, .batch = 2,
                   .max_failures = 10, .static_batches = static_batches, .ahead_max = ahead_max,
                   .ahead_bytes = ahead_bytes};
    inf_run r;
    run_init(&r, &ro, &g, tok);
    progress_init(&r.prog, 0, "problems", 0);
    prob_source src = {0};
    lrs_writer *w = NULL;
    lrs_header h;
    char *argv[] = {"test_run"};
    lrs_header_init(&h, "dist", 1, "test_run", 1, argv);
    int rc = prob_open(&src, data, NULL, "q", NULL);
    if (!rc) rc = lrs_open_write(&w, out, &h, NULL, NULL);
    if (!rc) rc = run_generate(&r, &src, w);
    if (w) rc = rc ? (lrs_abort(w), rc) : lrs_close(w);
    CHECKF(rc == 0, "%s", lr_errmsg());
    res = (outcome){.written = r.written, .peak = r.peak, .tokens = g.tokens, .calls = g.calls};
    prob_close(&src);
    run_free(&r);
    gen_free(&g);
    eng_free(&e);
    return res;
}

int main(void) {
    char dir[1024], data[1100], out[1100];
    snprintf(dir, sizeof dir, "%s/run_model", tmpdir());
    mk_opts o;
    mk_defaults(&o);
    o.seed = 4;
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    tok_t *tok = NULL;
    if (model_load(&m, dir) || tok_load(&tok, dir)) { CHECKF(0, "%s", lr_errmsg()); CHECK_DONE(); }
    snprintf(data, sizeof data, "%s/run_q.jsonl", tmpdir());
    FILE *f = fopen(data, "w");
    /* problem 0 runs to max_new; 1, 2, 4, 8, 11 stop after two tokens */
    static const int order[] = {0, 1, 2, 4, 8, 11, 14, 16, 18, 21, 10, 19};
    for (int i = 0; i < 12; i++) fprintf(f, "{\"q\": \"Problem %d: what is %d times %d?\"}\n", order[i], order[i], order[i] + 3);
    fclose(f);
    snprintf(out, sizeof out, "%s/run_out.lrs", tmpdir());
    outcome st = run_once(&m, tok, data, out, 1, 0, 0);
    outcome bounded = run_once(&m, tok, data, out, 0, 2, 0);
    outcome free_ = run_once(&m, tok, data, out, 0, 0, 0);
    /* a byte bound below one finished problem: none joins while one waits */
    outcome bytes = run_once(&m, tok, data, out, 0, 0, 1);
    fprintf(stderr, "static: %llu passes; continuous, 2 held: %llu passes, peak %d; unbounded: %llu passes, peak %d\n",
            (unsigned long long)st.calls, (unsigned long long)bounded.calls, bounded.peak,
            (unsigned long long)free_.calls, free_.peak);
    CHECK(st.written == 12 && bounded.written == 12 && free_.written == 12 && bytes.written == 12);
    CHECK(st.tokens == bounded.tokens && st.tokens == free_.tokens && st.tokens == bytes.tokens);
    CHECKF(bytes.peak <= 2 + 1, "peak %d under the byte bound", bytes.peak);
    CHECK(st.tokens > 40 + 11);          /* the long answer and the short ones */
    CHECKF(bounded.peak <= 2 + 2, "peak %d", bounded.peak);
    CHECKF(free_.peak > 2 + 2, "peak %d", free_.peak);
    CHECK(free_.calls < bounded.calls);
    CHECK(bounded.calls < st.calls);
    tok_free(tok);
    model_free(&m);
    CHECK_DONE();
}
