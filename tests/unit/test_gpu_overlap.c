/* Decode one step ahead (docs/CUDA.md "Decode one step ahead"), on the
 * emulated device and on the cpu backend.
 *
 * The engine: eng_submit with feed queues a call whose rows take the
 * previous call's picks (argmax, or the draw when it sampled); a decode
 * run queued that way, one call ahead of the host's reading, must give
 * the very tokens and lists of the same run fed by the host, bit for bit
 * (the same rows through the same launches); a third call queued before
 * the first was collected, and a feed past the previous call's rows, are
 * refused with one message.
 *
 * The scheduler: continuous generation (gen_sched, NP problems on fewer
 * slots, EOS ids ending some early, greedy and sampled) with overlap on
 * and off. On: nearly every call is queued ahead, the rows of problems
 * that ended meanwhile are run and dropped (counted), problems join one
 * call later; off: none of that. Each problem's tokens and lists must be
 * the same either way: its rows are the same rows, its draws come from its
 * own stream, and on these backends a row's results do not depend on the
 * other rows of its call (FMA attention on the device). With a pool too
 * small for every problem, calls that would preempt are not queued ahead,
 * every page comes back, and the tokens still agree.
 *
 * Follow mode (gen_follow): its chunks' calls queued one ahead are the
 * calls of a run without overlap, so every record must be the same bit for
 * bit. */
#include "check.h"
#include "eng_feed.h"

#include "infer/engine.h"
#include "infer/generate.h"
#include "infer/gpu.h"
#include "model/model.h"
#include "base/rng.h"
#include "base/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

size_t emu_graph_launches(void); /* cuda/emu.cc */

static char tmpdir[] = "/tmp/lr-gpuoverlap-XXXXXX";

enum { NP = 12, MAXNEW = 40, TMAX = 160, KMAX = 8, B = 4 };

/* ---- the engine: a decode run fed by the host against one fed on the engine ---- */

typedef struct {
    int32_t tok[B][MAXNEW], k[B][MAXNEW], ids[B][MAXNEW][KMAX];
    float lps[B][MAXNEW][KMAX];
} dec;

/* B prompts of 5 + 3b tokens, then steps decode steps of every slot,
 * slot b taking slot b + 1's pick (mod B: so that the last row, in a later
 * chunk when chunks are short, reads the first); ahead: each step is
 * queued with its tokens fed from the step before and collected only
 * after the next one is queued. */
static void decode(engine *e, int V, int steps, int sample, int ahead, dec *o) {
    eng_reset(e, -1);
    memset(o, 0, sizeof *o);
    int tok[64], seq[64], feed[B];
    unsigned char want[64];
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < 5 + 3 * b; i++) tok[n] = 20 + (i * 13 + b * 7) % (V - 20), seq[n] = b, want[n] = 0, n++;
    for (int i = 0; i < n; i++) want[i] = i + 1 == n || seq[i + 1] != seq[i];
    static int32_t k[2][B], ids[2][B * KMAX], am[2][B], smp[2][B];
    static float lps[2][B * KMAX], tail[2][B];
    static unsigned char bad[2][B];
    double uni[B];
    eng_req q = {.co = {.mass = 0.95, .kmax = KMAX, .kmin = 1}};
    if (sample) q.uniform = uni, q.smp = (smp_opts){.temperature = 0.8, .top_k = 0, .top_p = 0.95};
    eng_res res[2];
    for (int h = 0; h < 2; h++)
        res[h] = (eng_res){.k = k[h], .ids = ids[h], .lps = lps[h], .tail = tail[h], .argmax = am[h], .bad = bad[h],
                           .sampled = sample ? smp[h] : NULL};
    uint64_t rng = 7;
    for (int b = 0; b < B; b++) uni[b] = rng_unit(&rng);
    int rc = eng_submit(e, n, tok, NULL, seq, want, &q, &res[0]);
    CHECKF(rc == 0, "%s", lr_errmsg());
    /* step t's results are in res[t % 2]; with ahead step t + 1 is queued first */
    for (int t = 0; t < steps && !rc; t++) {
        const eng_res *r = &res[t % 2];
        if (ahead && t + 1 < steps) {
            for (int b = 0; b < B; b++) tok[b] = 0, seq[b] = b, feed[b] = (b + 1) % B, uni[b] = rng_unit(&rng);
            rc = eng_submit(e, B, tok, feed, seq, NULL, &q, &res[(t + 1) % 2]);
            CHECKF(rc == 0, "%s", lr_errmsg());
        }
        if (!rc) rc = eng_collect(e);
        for (int b = 0; b < B && !rc; b++) {
            o->tok[b][t] = sample ? r->sampled[b] : r->argmax[b], o->k[b][t] = r->k[b];
            memcpy(o->ids[b][t], r->ids + b * KMAX, sizeof o->ids[b][t]);
            memcpy(o->lps[b][t], r->lps + b * KMAX, sizeof o->lps[b][t]);
        }
        if (!ahead && t + 1 < steps && !rc) {
            for (int b = 0; b < B; b++) tok[b] = o->tok[(b + 1) % B][t], seq[b] = b, uni[b] = rng_unit(&rng);
            rc = eng_submit(e, B, tok, NULL, seq, NULL, &q, &res[(t + 1) % 2]);
            CHECKF(rc == 0, "%s", lr_errmsg());
        }
    }
    CHECK(eng_pending(e) == 0);
}

static void test_engine(engine *e, int V, const char *what) {
    for (int sample = 0; sample < 2; sample++) {
        static dec a, b;
        decode(e, V, 24, sample, 0, &a);
        decode(e, V, 24, sample, 1, &b);
        CHECKF(!memcmp(&a, &b, sizeof a), "%s %s: a decode fed on the engine differs from one fed by the host", what,
               sample ? "sampled" : "greedy");
        int moved = 0; /* the picks really vary: a run stuck on one token would prove little */
        for (int t = 1; t < 24; t++) moved += a.tok[0][t] != a.tok[0][0];
        CHECKF(moved > 0, "%s: slot 0 repeats one token", what);
    }
    /* refusals: a third call queued, a feed past the last call's rows */
    eng_reset(e, -1);
    int tok[1] = {3}, seq[1] = {0}, feed[1] = {0};
    int32_t am[1];
    unsigned char bad[1];
    eng_req q = {.co = {.kmax = 0}};
    eng_res r = {.argmax = am, .bad = bad};
    CHECK(eng_submit(e, 1, tok, NULL, seq, NULL, &q, &r) == 0);
    CHECK(eng_submit(e, 1, tok, feed, seq, NULL, &q, &r) == 0);
    CHECK(eng_submit(e, 1, tok, feed, seq, NULL, &q, &r) == LR_EUSAGE);
    CHECKF(strstr(lr_errmsg(), "third call") != NULL, "%s", lr_errmsg());
    CHECK(eng_collect(e) == 0 && eng_collect(e) == 0 && eng_pending(e) == 0);
    feed[0] = 1; /* the last call had one wanted row */
    CHECK(eng_submit(e, 1, tok, feed, seq, NULL, &q, &r) == LR_EUSAGE);
    CHECKF(strstr(lr_errmsg(), "fed from pick 1") != NULL, "%s", lr_errmsg());
    CHECK(eng_pending(e) == 0);
    eng_reset(e, -1);
}

/* ---- the scheduler: overlap on and off ---- */

typedef struct {
    int32_t tok[NP][MAXNEW];
    float *lp[NP];
    size_t nlp[NP];
    int T[NP];
    long ahead, wasted, preemptions, calls;
} outcome;

static void outcome_free(outcome *o) {
    for (int i = 0; i < NP; i++) free(o->lp[i]);
}

/* NP problems through gen_sched on `slots` slots; eos[0..neos) end them. */
static outcome generate(engine *e, int V, int slots, int sample, int overlap, const int32_t *eos, int neos) {
    gen_opts go = {.V = V, .co = {.mass = 0.9, .kmax = KMAX, .kmin = 1}, .max_new = MAXNEW, .eos = eos, .neos = neos,
                   .sample = sample, .smp = {.temperature = 0.7, .top_p = 0.95, .top_k = 0}};
    gen_ctx g;
    gen_init(&g, e, &go);
    gen_problem *ps = calloc(NP, sizeof *ps);
    uint64_t r = 41;
    for (int i = 0; i < NP; i++) {
        ps[i].idx = i;
        ps[i].nprompt = 3 + (size_t)(rng_unit(&r) * 50);
        ps[i].prompt = malloc(ps[i].nprompt * sizeof *ps[i].prompt);
        for (size_t j = 0; j < ps[i].nprompt; j++) ps[i].prompt[j] = 30 + (int)(rng_unit(&r) * (V - 30));
        gen_seed(&ps[i], 99);
    }
    gen_sched s;
    gen_sched_init(&s, &g, slots, 0);
    CHECK(s.overlap == (e->dev == ENG_CUDA)); /* the default: on for cuda */
    s.overlap = overlap;
    int next = 0, rc = 0;
    while (!rc && (next < NP || gen_busy(&s))) {
        while (next < NP && gen_can_admit(&s, &ps[next])) gen_admit(&s, &ps[next++]);
        rc = gen_step(&g, &s);
    }
    CHECKF(rc == 0, "%s", lr_errmsg());
    CHECK(eng_pending(e) == 0);
    gpu_kv_info k;
    eng_pages(e, &k);
    CHECKF(k.free == k.pages, "%d of %d pages free at the end", k.free, k.pages);
    outcome o = {.ahead = (long)g.ahead, .wasted = s.wasted, .preemptions = s.preemptions, .calls = (long)g.calls};
    for (int i = 0; i < NP; i++) {
        CHECK(gen_done(&ps[i]) && !ps[i].failed && ps[i].pend == 0);
        o.T[i] = (int)ps[i].T;
        memcpy(o.tok[i], ps[i].tokens, ps[i].T * sizeof(int32_t));
        o.nlp[i] = ps[i].nids;
        o.lp[i] = malloc((ps[i].nids + 1) * sizeof(float));
        memcpy(o.lp[i], ps[i].lp, ps[i].nids * sizeof(float));
        gen_problem_clear(&ps[i]);
    }
    free(ps);
    gen_sched_free(&s);
    gen_free(&g);
    return o;
}

/* Problems whose tokens or lists differ at all (reported). */
static int differing(const outcome *a, const outcome *b) {
    int d = 0;
    for (int i = 0; i < NP; i++)
        d += a->T[i] != b->T[i] || memcmp(a->tok[i], b->tok[i], (size_t)a->T[i] * sizeof(int32_t)) ||
             a->nlp[i] != b->nlp[i] || memcmp(a->lp[i], b->lp[i], a->nlp[i] * sizeof(float));
    return d;
}

/* The cpu forward's rounding depends on a call's row count (a streaming
 * kernel for a few rows, sgemm for more), and calls differ with overlap:
 * there each problem's lists must agree within 1e-4 up to its first
 * differing token, and most tokens agree (*same of *total). */
static double diverging(const outcome *a, const outcome *b, int *same, int *total) {
    double worst = 0;
    *same = *total = 0;
    for (int i = 0; i < NP; i++) {
        int t = 0;
        size_t off = 0;
        while (t < a->T[i] && t < b->T[i] && a->tok[i][t] == b->tok[i][t]) t++;
        /* the lists of steps 0..t (step t's too: its token differs, its context does not) */
        for (int u = 0; u <= t && u < a->T[i] && u < b->T[i]; u++) off += KMAX; /* a bound: lists are <= KMAX */
        size_t n = off < a->nlp[i] ? off : a->nlp[i];
        if (n > b->nlp[i]) n = b->nlp[i];
        for (size_t j = 0; j < n && t > 0; j++) {
            double x = fabs((double)a->lp[i][j] - b->lp[i][j]);
            if (x > worst) worst = x;
        }
        *same += t, *total += a->T[i];
    }
    return worst;
}

/* EOS ids that end problems 1, 5 and 9 at steps 8, 16 and 24 (the tokens
 * a run without them produced there), and possibly others. */
static int pick_eos(engine *e, int V, int sample, int32_t *eos) {
    outcome o = generate(e, V, B, sample, 0, NULL, 0);
    eos[0] = o.tok[1][8], eos[1] = o.tok[5][16], eos[2] = o.tok[9][24];
    outcome_free(&o);
    return 3;
}

static void test_sched(engine *e, int V, const char *what) {
    for (int sample = 0; sample < 2; sample++) {
        int32_t eos[3];
        int neos = pick_eos(e, V, sample, eos);
        outcome off = generate(e, V, B, sample, 0, eos, neos), on = generate(e, V, B, sample, 1, eos, neos);
        int early = 0;
        for (int i = 0; i < NP; i++) early += off.T[i] < MAXNEW;
        fprintf(stderr, "  %s %s: %ld calls without overlap; with it %ld calls, %ld of them ahead, %ld rows dropped; "
                "%d of %d problems ended by EOS\n", what, sample ? "sampled" : "greedy", off.calls, on.calls, on.ahead,
                on.wasted, early, NP);
        CHECKF(early >= 3, "%d problems ended early: the EOS ids end at least 3", early);
        CHECK(off.ahead == 0 && off.wasted == 0);
        CHECKF(on.ahead * 10 >= on.calls * 7, "%ld of %ld calls queued ahead", on.ahead, on.calls);
        CHECKF(on.wasted > 0, "no row dropped, though %d problems ended early", early);
        /* a problem joins one call later with overlap, its prompt rows in
         * another call: the device's bf16 activations round by the call,
         * so its lists may move by a bf16 step (as a re-prefill's do,
         * test_gpu_paged); the cpu's by float32 rounding */
        int same, total;
        double worst = diverging(&off, &on, &same, &total), tol = e->dev == ENG_CUDA ? 1e-2 : 1e-4;
        fprintf(stderr, "    %d of %d problems bit for bit; %d of %d tokens agree before a divergence; lists there "
                "within %.1e\n", NP - differing(&off, &on), NP, same, total, worst);
        CHECKF(worst < tol && same * 20 >= total * 19, "%s %s: %d of %d tokens, lists within %g", what,
               sample ? "sampled" : "greedy", same, total, worst);
        outcome_free(&off), outcome_free(&on);
    }
}

/* A pool of 3 pages of 64 (one context of 160 positions): problems are
 * preempted; calls that would preempt are not queued ahead. */
static void test_small_pool(const model *m, int V) {
    engine e;
    gpu_kv kv = {.page = 64, .pages = 3};
    setenv("LR_GPU_TCATT", "0", 1);
    CHECKF(eng_init_kv(&e, m, ENG_CUDA, B, TMAX, 512, KMAX, 1, &kv) == 0, "%s", lr_errmsg());
    outcome off = generate(&e, V, B, 1, 0, NULL, 0), on = generate(&e, V, B, 1, 1, NULL, 0); /* all MAXNEW long */
    fprintf(stderr, "  small pool, sampled: %ld and %ld preemptions; %ld of %ld calls ahead\n", off.preemptions,
            on.preemptions, on.ahead, on.calls);
    CHECK(off.preemptions > 0 && on.preemptions > 0 && on.ahead > 0);
    int same, total;
    double worst = diverging(&off, &on, &same, &total);
    CHECKF(worst < 1e-2 && same * 20 >= total * 19, "small pool: %d of %d tokens, lists within %g", same, total, worst);
    outcome_free(&off), outcome_free(&on);
    eng_free(&e);
    unsetenv("LR_GPU_TCATT");
}

/* ---- follow mode: its calls queued one ahead ---- */

/* B followed problems of 150, 70, 3 and 100 tokens (chunks of 64: three
 * calls past the prompts' for the longest) with made-up followed lists,
 * teacher-forced with overlap on or off; returns every record's numbers
 * concatenated (lists, tails, log-probs of the followed lists) in *out. */
static size_t follow(engine *e, int V, int overlap, float **out, uint64_t *ahead) {
    static const int T[B] = {150, 70, 3, 100};
    gen_opts go = {.V = V, .co = {.mass = 0.9, .kmax = KMAX, .kmin = 1}};
    gen_ctx g;
    gen_init(&g, e, &go);
    CHECK(g.overlap == (e->dev == ENG_CUDA));
    g.overlap = overlap;
    gen_problem ps[B];
    memset(ps, 0, sizeof ps);
    uint64_t r = 5;
    for (int b = 0; b < B; b++) {
        gen_problem *p = &ps[b];
        p->nprompt = 4 + (size_t)b * 2, p->T = (size_t)T[b];
        p->prompt = malloc(p->nprompt * sizeof *p->prompt);
        for (size_t i = 0; i < p->nprompt; i++) p->prompt[i] = 30 + (int)(rng_unit(&r) * (V - 30));
        p->tokens = malloc(p->T * sizeof *p->tokens), p->fk = malloc(p->T * sizeof *p->fk);
        p->foff = malloc((p->T + 1) * sizeof *p->foff);
        p->foff[0] = 0;
        for (size_t t = 0; t < p->T; t++)
            p->tokens[t] = (int)(rng_unit(&r) * V), p->fk[t] = 1 + (int)(t % 5), p->foff[t + 1] = p->foff[t] + p->fk[t];
        p->nf = p->foff[p->T];
        p->fids = malloc(p->nf * sizeof *p->fids);
        for (size_t j = 0; j < p->nf; j++) p->fids[j] = (int)(rng_unit(&r) * V);
        p->cap_T = p->T, p->k = malloc(p->T * sizeof *p->k), p->tail = malloc(p->T * sizeof *p->tail);
        p->ref_lp = malloc(p->nf * sizeof *p->ref_lp), p->ref_tail = malloc(p->T * sizeof *p->ref_tail);
    }
    int rc = gen_follow(&g, ps, B, 0);
    CHECKF(rc == 0, "%s", lr_errmsg());
    CHECK(eng_pending(e) == 0);
    *ahead = g.ahead;
    size_t n = 0;
    for (int b = 0; b < B; b++) n += ps[b].nids * 2 + ps[b].nf + ps[b].T * 3;
    float *o = malloc((n + 1) * sizeof *o), *q = o;
    for (int b = 0; b < B; b++) {
        const gen_problem *p = &ps[b];
        CHECK(!p->failed);
        for (size_t j = 0; j < p->nids; j++) *q++ = (float)p->ids[j], *q++ = p->lp[j];
        for (size_t j = 0; j < p->nf; j++) *q++ = p->ref_lp[j];
        for (size_t t = 0; t < p->T; t++) *q++ = (float)p->k[t], *q++ = p->tail[t], *q++ = p->ref_tail[t];
        gen_problem_clear(&ps[b]);
    }
    gen_free(&g);
    *out = o;
    return n;
}

static void test_follow(engine *e, int V, const char *what) {
    float *a, *b;
    uint64_t ahead_off, ahead_on;
    size_t na = follow(e, V, 0, &a, &ahead_off), nb = follow(e, V, 1, &b, &ahead_on);
    fprintf(stderr, "  %s follow: %zu numbers; %llu calls queued ahead with overlap, %llu without\n", what, na,
            (unsigned long long)ahead_on, (unsigned long long)ahead_off);
    CHECK(ahead_off == 0 && ahead_on >= 2);
    CHECKF(na == nb && na > 1000 && !memcmp(a, b, na * sizeof *a), "%s follow: overlap changed the records", what);
    free(a), free(b);
}

int main(void) {
    char dir[300];
    CHECK(make_kv_model(tmpdir, dir, sizeof dir) == 0);
    model m;
    CHECKF(model_load(&m, dir) == 0, "%s", lr_errmsg());
    int V = m.cfg.V;
    /* FMA attention: a row's rounding then depends on that row alone */
    setenv("LR_GPU_TCATT", "0", 1);
    engine e;
    CHECKF(eng_init(&e, &m, ENG_CUDA, B, TMAX, 512, KMAX, 1) == 0, "%s", lr_errmsg());
    unsetenv("LR_GPU_TCATT");
    size_t g0 = emu_graph_launches();
    test_engine(&e, V, "cuda");
    CHECKF(emu_graph_launches() > g0, "no fed decode step replayed from a graph");
    test_sched(&e, V, "cuda");
    test_follow(&e, V, "cuda");
    eng_free(&e);
    /* calls of 3 rows a chunk: a fed call's later chunks must read the
     * picks of the call before, not those its own first chunk made */
    setenv("LR_GPU_TCATT", "0", 1);
    CHECKF(eng_init(&e, &m, ENG_CUDA, B, TMAX, 3, KMAX, 1) == 0, "%s", lr_errmsg());
    unsetenv("LR_GPU_TCATT");
    test_engine(&e, V, "cuda, chunks of 3 rows");
    eng_free(&e);
    test_small_pool(&m, V);
    CHECKF(eng_init(&e, &m, ENG_CPU, B, TMAX, 512, KMAX, 1) == 0, "%s", lr_errmsg());
    test_engine(&e, V, "cpu");
    test_sched(&e, V, "cpu");
    test_follow(&e, V, "cpu");
    eng_free(&e);
    model_free(&m);
    CHECK(remove_tmp(tmpdir) == 0);
    CHECK_DONE();
}
