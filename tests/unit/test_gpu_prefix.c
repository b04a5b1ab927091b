/* The shared prompt prefix on the emulated device's KV pages
 * (gen_sched_prefix, forward.cu gpu_fwd_prefix_*).
 *
 * 1. The allocator: a prefix under one page, or one that would leave less
 *    than a full context beside it, is not kept; a kept one holds its pages
 *    (never free while held) through every slot that attaches to it and
 *    detaches (reset), and they come back only when it is dropped.
 * 2. Generation: problems sharing a header (and two that do not, and one
 *    whose prompt is the header's kept part only, which must not share)
 *    give the tokens and log-probs of the same run without sharing; with a
 *    pool small enough to preempt, the shared pages survive the
 *    preemptions and every own page is back at the end. */
#include "check.h"
#include "eng_feed.h"

#include "base/rng.h"
#include "base/util.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "infer/gpu.h"
#include "model/mkmodel.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TMAX = 256, NP = 8, MAXNEW = 12, HEAD = 176 };
#include "gen_outcome.h"

static char tmpdir[] = "/tmp/lr-gpuprefix-XXXXXX";

static gpu_kv_info pages(const engine *e) {
    gpu_kv_info k;
    eng_pages(e, &k);
    return k;
}


static void allocator(const model *m) {
    int V = m->cfg.V;
    engine e;
    gpu_kv kv = {.page = 64, .pages = 7}; /* 4 pages a context */
    CHECK(eng_init_kv(&e, m, ENG_CUDA, 4, TMAX, 512, 8, 1, &kv) == 0);
    CHECK(feed(&e, 0, 50, V) == 0 && eng_prefix_keep(&e, 0) == 0); /* under one page */
    CHECK(pages(&e).free == 7 && pages(&e).shared == 0);
    CHECK(feed(&e, 0, 200, V) == 0 && pages(&e).free == 3);
    CHECK(eng_prefix_keep(&e, 0) == 192); /* 3 whole pages, 4 beside them: one context */
    CHECK(pages(&e).free == 4 && pages(&e).shared == 3);
    CHECK(feed(&e, 1, 70, V) == 0 && eng_prefix_keep(&e, 1) == 0); /* one prefix at a time */
    CHECK(pages(&e).free == 4);
    eng_prefix_drop(&e);
    CHECK(pages(&e).free == 7);
    eng_free(&e);
    kv.pages = 5;
    CHECK(eng_init_kv(&e, m, ENG_CUDA, 4, TMAX, 512, 8, 1, &kv) == 0);
    CHECK(feed(&e, 0, 140, V) == 0 && eng_prefix_keep(&e, 0) == 0); /* 2 pages, 5 - 2 < 4: not kept */
    CHECK(pages(&e).free == 5);
    eng_free(&e);
    kv.pages = 7;
    CHECK(eng_init_kv(&e, m, ENG_CUDA, 4, TMAX, 512, 8, 1, &kv) == 0);
    CHECK(feed(&e, 0, 140, V) == 0 && eng_prefix_keep(&e, 0) == 128); /* 2 whole pages, the partial one back */
    CHECK(pages(&e).free == 5 && pages(&e).shared == 2);
    CHECK(eng_pages_join(&e, 130, 1) == 1 && eng_pages_join(&e, 130, 0) == 3 && eng_pages_join(&e, 100, 1) == 0);
    eng_prefix_attach(&e, 1), eng_prefix_attach(&e, 2);
    CHECK(eng_pages_more(&e, 1, 128) == 0 && eng_pages_more(&e, 1, 129) == 1);
    CHECK(feed(&e, 1, 10, V) == 0 && feed(&e, 2, 70, V) == 0 && pages(&e).free == 2);
    eng_reset(&e, 1);
    CHECK(pages(&e).free == 3); /* only slot 1's own page came back */
    eng_reset(&e, -1);
    CHECK(pages(&e).free == 5 && pages(&e).shared == 2); /* the prefix outlives its slots */
    eng_prefix_drop(&e);
    CHECK(pages(&e).free == 7 && pages(&e).shared == 0);
    eng_free(&e);
}

/* NP problems: 0..4 a HEAD-token header + 8..12 own tokens, 5 and 6 their
 * own prompts, 7 the header's first `whole` tokens only. prefix: the
 * tokens offered to gen_sched_prefix (0: none). free_end: the free pages
 * once every problem ended, before gen_sched_free. */
static outcome generate(engine *e, int V, int prefix, int whole, int *free_end) {
    /* no EOS: every problem grows by MAXNEW, across page boundaries */
    gen_opts go = {.V = V, .co = {.mass = 0.9, .kmax = 8, .kmin = 1}, .max_new = MAXNEW};
    gen_ctx g;
    gen_init(&g, e, &go);
    gen_problem *ps = calloc(NP, sizeof *ps);
    uint64_t r = 5;
    int32_t head[HEAD];
    for (int j = 0; j < HEAD; j++) head[j] = 20 + (int)(rng_unit(&r) * (V - 20));
    for (int i = 0; i < NP; i++) {
        ps[i].idx = i;
        /* the sharing ones end their prompt in the prefix's next page and cross into another as they grow */
        size_t own = i < 5 ? 8 + (size_t)i : 4 + (size_t)(rng_unit(&r) * 27), h = i < 5 ? HEAD : i == 7 ? (size_t)whole : 0;
        ps[i].nprompt = h + (i == 7 ? 0 : own);
        ps[i].prompt = malloc(ps[i].nprompt * sizeof *ps[i].prompt);
        memcpy(ps[i].prompt, head, h * sizeof *head);
        for (size_t j = h; j < ps[i].nprompt; j++) ps[i].prompt[j] = 20 + (int)(rng_unit(&r) * (V - 20));
        gen_seed(&ps[i], 1);
    }
    gen_sched s;
    gen_sched_init(&s, &g, 4, 0);
    outcome o;
    memset(&o, 0, sizeof o);
    int rc = prefix ? gen_sched_prefix(&g, &s, head, (size_t)prefix, &o.kept) : 0;
    if (!rc) rc = run_all(&g, &s, ps);
    CHECKF(rc == 0, "%s", lr_errmsg());
    *free_end = pages(e).free;
    outcome_take(&o, ps, &s);
    for (int i = 0; i < NP; i++) CHECK(!o.shared[i] || i < 5); /* problem 7 (the kept header only) and 5, 6 never share */
    free(ps);
    gen_sched_free(&s);
    gen_free(&g);
    return o;
}

static void generation(const model *m, int tc) {
    int V = m->cfg.V, fr;
    setenv("LR_GPU_TCATT", tc ? "1" : "0", 1);
    engine e;
    CHECK(eng_init_kv(&e, m, ENG_CUDA, 4, TMAX, 512, 8, 1, &(gpu_kv){.page = 64, .pages = 16}) == 0);
    outcome base = generate(&e, V, 0, 128, &fr);
    CHECK(fr == 16 && base.preemptions == 0 && base.shared_joins == 0);
    outcome sh = generate(&e, V, HEAD, 128, &fr);
    CHECK(sh.kept == 128 && sh.shared_joins == 5 && fr == 16 - 2); /* the prefix's 2 pages held to the end */
    CHECK(pages(&e).free == 16);                                   /* and given back by gen_sched_free */
    double dl;
    int d = differing(&sh, &base, &dl);
    fprintf(stderr, "tensor-core prefill %s: shared prefix of %zu tokens, %ld joins on it: %d problems' tokens "
            "differ from the unshared run, log-probs within %.3g\n", tc ? "on" : "off", sh.kept, sh.shared_joins, d,
            dl);
    /* not bit-identical: the calls differ (the prompts' rows after the prefix in GEMMs of fewer rows, whose
     * float32 sums round otherwise), so a bf16 key or value may round to its neighbour; measured 5.3e-5 with
     * FMA attention and 4.8e-7 with tensor-core prefill, a wrong context moves them by far more */
    CHECKF(d == 0 && dl < 1e-3, "%d problems differ, log-probs within %g", d, dl);
    /* a header under one page is not shared: gen_sched_prefix runs nothing, so the run is the unshared one */
    gen_ctx gc;
    gen_init(&gc, &e, &(gen_opts){.V = V, .co = {.mass = 0.9, .kmax = 8, .kmin = 1}, .max_new = MAXNEW});
    gen_sched sc;
    gen_sched_init(&sc, &gc, 4, 0);
    int32_t few[50] = {0};
    size_t kept = 1;
    CHECK(gen_sched_prefix(&gc, &sc, few, 50, &kept) == 0 && kept == 0 && gc.calls == 0 && !sc.prefix);
    CHECK(pages(&e).free == 16 && pages(&e).shared == 0);
    gen_sched_free(&sc), gen_free(&gc);
    eng_free(&e);
    if (tc) { /* once is enough for the rest */
        outcome_free(&base), outcome_free(&sh);
        return;
    }
    /* a pool of 6: 2 for the prefix and one context beside it; 4 slots preempt */
    CHECK(eng_init_kv(&e, m, ENG_CUDA, 4, TMAX, 512, 8, 1, &(gpu_kv){.page = 64, .pages = 6}) == 0);
    outcome pre = generate(&e, V, HEAD, 128, &fr);
    CHECK(pre.kept == 128 && pre.preemptions > 0 && pre.shared_joins > 5);
    CHECKF(fr == 6 - 2, "%d pages free at the end, the prefix holding 2 of 6", fr); /* every own page back */
    CHECK(pages(&e).free == 6);
    d = differing(&pre, &base, &dl);
    fprintf(stderr, "  6 pages: %ld preemptions, %ld joins on the prefix: %d problems differ, log-probs within %.3g\n",
            pre.preemptions, pre.shared_joins, d, dl);
    /* preemption re-prefills in calls of other shapes (GEMMs of other row counts round otherwise): greedy
     * tokens equal, log-probs within bf16 rounding of a key or value (a wrong context moves them by far more) */
    CHECKF(d == 0 && dl < 1e-2, "%d problems differ, log-probs within %g", d, dl);
    outcome_free(&pre);
    eng_free(&e);
    outcome_free(&base), outcome_free(&sh);
}

int main(void) {
    char dir[300];
    CHECK(make_kv_model(tmpdir, dir, sizeof dir) == 0);
    model m;
    CHECK(model_open(&m, dir) == 0);
    allocator(&m);
    generation(&m, 0);
    generation(&m, 1);
    unsetenv("LR_GPU_TCATT");
    model_free(&m);
    CHECK(remove_tmp(tmpdir) == 0);
    CHECK_DONE();
}
