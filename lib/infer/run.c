/* run: see run.h. */
#include "infer/run.h"

#include "base/util.h"
#include "model/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void run_init(inf_run *r, const run_opts *o, gen_ctx *g, const tok_t *tok) {
    memset(r, 0, sizeof *r);
    r->o = *o;
    r->g = g;
    r->tok = tok;
}

void run_free(inf_run *r) {
    free(r->done);
    r->done = NULL;
    r->ndone_cap = 0;
}

static int is_done(const inf_run *r, long idx) { return idx >= 0 && (size_t)idx < r->ndone_cap && r->done[idx]; }

int run_note_done(const msgpack_object *rec, void *arg) {
    inf_run *r = arg;
    const msgpack_object *v = lrs_get(rec, "idx");
    long idx = v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long)v->via.u64 : -1;
    if (idx < 0) return lr_err(LR_EINPUT, "resume: a record without a valid idx");
    if ((size_t)idx >= r->ndone_cap) {
        size_t n = (size_t)idx * 2 + 64;
        r->done = xrealloc(r->done, n);
        memset(r->done + r->ndone_cap, 0, n - r->ndone_cap);
        r->ndone_cap = n;
    }
    r->done[idx] = 1;
    return 0;
}

static int in_shard(const inf_run *r, long idx) { return r->o.shard_n <= 1 || idx % r->o.shard_n == r->o.shard_k; }

static int want_problem(const inf_run *r, long idx) { return in_shard(r, idx) && !is_done(r, idx); }

/* Reports one failed problem (id NULL: the message names file and line)
 * and stops the run once max_failures are reached. */
static int report(inf_run *r, const char *id, const char *why) {
    if (id) fprintf(stderr, "%s: %s: %s\n", lr_progname, id, why);
    else fprintf(stderr, "%s: %s\n", lr_progname, why);
    r->failed++;
    if (r->o.max_failures > 0 && r->failed >= r->o.max_failures)
        return lr_err(LR_EINPUT, "stopped after %ld failed problems (reported above), %ld written", r->failed,
                      r->written);
    return 0;
}

/* Tokenizes the prompt of p. Returns 0 (p may have failed: bad template)
 * or a fatal code: a token id past the model's embedding rows means the
 * tokenizer and the model disagree, for every problem alike.
 * Preset "toolkit": the Qwen2.5-Math toolkit's prompt for the benchmark
 * layout being read (qwen25-math-cot; mmlu_stem with o.mmlu_shots shots). */
static int prepare_prompt(inf_run *r, int layout, gen_problem *p) {
    char *text;
    size_t n;
    if (r->o.chat) {
        if (prompt_chat_render(r->o.chat, PROMPT_CHAT_SYSTEM, p->question, &text)) {
            gen_fail(p, "%s", lr_errmsg());
            return 0;
        }
    } else if (!r->o.prompt_file && !strcmp(r->o.preset, "toolkit")) {
        text = bd_prompt_shots((bd_layout)layout, p->question, r->o.mmlu_shots);
    } else if (prompt_render(r->o.prompt_file ? NULL : r->o.preset, r->o.prompt_file, p->question, &text)) {
        gen_fail(p, "%s", lr_errmsg());
        return 0;
    }
    int rc = tok_encode(r->tok, text, strlen(text), &p->prompt, &n);
    free(text);
    if (rc) {
        gen_fail(p, "%s", lr_errmsg());
        return 0;
    }
    p->nprompt = n;
    int V = r->g->o.V;
    for (size_t i = 0; i < n; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= V) {
            const char *s = tok_token(r->tok, p->prompt[i]);
            return lr_err(LR_EINPUT, "%s/tokenizer.json: token id %d (\"%s\") is past the %d embedding rows of "
                          "%s/config.json (vocab_size); problem %s", r->o.model_dir, p->prompt[i], s ? s : "?", V,
                          r->o.model_dir, p->id);
        }
    return 0;
}

/* Writes p's record, or reports it when it failed. */
static int write_one(inf_run *r, lrs_writer *w, gen_problem *p, int follow) {
    const gen_opts *go = &r->g->o;
    if (p->failed) return report(r, p->id, p->err ? p->err : "failed");
    if (!follow && !p->text) {
        size_t len;
        /* special tokens dropped, as the toolkit's decode does */
        if (tok_decode_ex(r->tok, p->tokens, p->T, TOK_SKIP_SPECIAL, &p->text, &len)) p->text = NULL;
    }
    gen_write(w, p, go->V, go->full);
    int rc = lrs_record_done(w);
    r->written++;
    return rc;
}

/* Writes the batch's good problems in order and reports the failed ones. */
static int flush_batch(inf_run *r, lrs_writer *w, gen_problem *ps, int n, int follow, uint64_t tokens0) {
    int rc = 0;
    for (int b = 0; b < n && !rc; b++) rc = write_one(r, w, &ps[b], follow);
    if (!rc) rc = lrs_flush(w); /* a resume point after every batch */
    for (int b = 0; b < n; b++) gen_problem_clear(&ps[b]);
    progress_add(&r->prog, (uint64_t)n, r->g->tokens - tokens0);
    return rc;
}

/* Reads problems into p (cleared) until one is to be run: *got = 1; or the
 * input (or --limit) ends: *got = 0 and *end = 1. Problems of other shards
 * (a bad row too: its own shard reports it) and those already written are
 * skipped; bad ones are reported. */
static int next_problem(inf_run *r, prob_source *s, int layout, long *seen, gen_problem *p, int *got, int *end) {
    const run_opts *o = &r->o;
    int rc = 0;
    *got = 0;
    while (!rc && !*end) {
        int bad;
        if (o->limit >= 0 && *seen >= o->limit) { *end = 1; break; }
        rc = prob_next(s, &p->id, &p->question, &p->idx, &bad);
        if (rc != 1) { *end = 1; break; }
        rc = 0;
        (*seen)++;
        if (o->limit >= 0 && p->idx >= o->limit) { gen_problem_clear(p); *end = 1; break; }
        if (bad && p->idx >= 0 && !in_shard(r, p->idx)) { /* another shard's problem: it reports it */
            gen_problem_clear(p);
            continue;
        }
        if (bad) {
            rc = report(r, NULL, lr_errmsg());
            gen_problem_clear(p);
            continue;
        }
        if (!want_problem(r, p->idx)) { gen_problem_clear(p); continue; }
        gen_seed(p, o->seed);
        if (!(rc = prepare_prompt(r, layout, p)) && !p->failed) gen_fits(r->g, p, (size_t)r->g->o.max_new);
        if (!rc && p->failed) rc = report(r, p->id, p->err);
        if (rc || p->failed) { gen_problem_clear(p); continue; }
        *got = 1;
        break;
    }
    return rc;
}

static int generate_static(inf_run *r, prob_source *s, lrs_writer *w, int layout) {
    const run_opts *o = &r->o;
    gen_problem *ps = xcalloc(o->batch, sizeof *ps);
    long seen = 0;
    int rc = 0;
    for (int end = 0; !rc && !end;) {
        int n = 0, got = 1;
        uint64_t tokens0 = r->g->tokens;
        while (n < o->batch && !rc && got) {
            rc = next_problem(r, s, layout, &seen, &ps[n], &got, &end);
            n += got;
        }
        if (!rc && n) rc = gen_generate(r->g, ps, n);
        if (!rc && n) rc = flush_batch(r, w, ps, n, 0, tokens0);
    }
    for (int b = 0; b < o->batch; b++) gen_problem_clear(&ps[b]);
    free(ps);
    return rc;
}

/* Reads the first window of problems (at most --batch, RUN_PREFIX_WINDOW)
 * into *first and shares the longest prefix that at least half of them
 * start with, short of each one's last token (gen_common_prefix; whichever
 * prompts they are: an odd first prompt does not turn sharing off).
 * gen_sched_prefix keeps it (cuda: its whole pages; cpu: all of it), and
 * only prompts longer than what is kept that start with it use it; the
 * problems are admitted in order afterwards; r->prefix notes what is
 * shared (run_report_prefix). */
static int share_prefix(inf_run *r, prob_source *s, int layout, gen_sched *sc, long *seen, gen_problem ***first,
                        int *nfirst, int *end) {
    int W = r->o.batch < RUN_PREFIX_WINDOW ? r->o.batch : RUN_PREFIX_WINDOW, rc = 0, n = 0;
    gen_problem **f = xcalloc((size_t)W, sizeof *f);
    while (!rc && n < W && !*end) {
        int got;
        f[n] = xcalloc(1, sizeof *f[n]);
        rc = next_problem(r, s, layout, seen, f[n], &got, end);
        if (got) n++;
        else gen_problem_clear(f[n]), free(f[n]);
    }
    *first = f, *nfirst = n;
    if (rc || n < 2) return rc; /* one prompt shares with no other */
    const int32_t **tok = xmalloc((size_t)n * sizeof *tok);
    size_t *len = xmalloc((size_t)n * sizeof *len);
    for (int i = 0; i < n; i++) tok[i] = f[i]->prompt, len[i] = f[i]->nprompt;
    int anchor, count;
    size_t lcp = gen_common_prefix(tok, len, n, &anchor, &count);
    free(tok), free(len);
    size_t kept = 0;
    if (lcp && (rc = gen_sched_prefix(r->g, sc, f[anchor]->prompt, lcp, &kept))) return rc;
    if (kept) {
        gpu_kv_info k;
        eng_pages(r->g->e, &k);
        r->prefix.kept = kept, r->prefix.lcp = lcp, r->prefix.pages = k.shared, r->prefix.window = n,
        r->prefix.count = count;
    }
    return 0;
}

void run_report_prefix(const inf_run *r) {
    if (!r->prefix.kept) return;
    if (r->prefix.spared) /* follow: one per batch */
        fprintf(stderr, "%s: shared prefix: each batch's common prompt start (at most %zu tokens) computed once, "
                "%llu prompt rows spared\n", lr_progname, r->prefix.kept, (unsigned long long)r->prefix.spared);
    else if (r->g->e->dev == ENG_CUDA)
        fprintf(stderr, "%s: shared prefix: %zu tokens, %d pages (%d of the first %d prompts share %zu)\n", lr_progname,
                r->prefix.kept, r->prefix.pages, r->prefix.count, r->prefix.window, r->prefix.lcp);
    else /* no pages on cpu: each sharing slot starts on a copy */
        fprintf(stderr, "%s: shared prefix: %zu tokens, copied into each slot that shares it (%d of the first %d "
                "prompts share %zu)\n", lr_progname, r->prefix.kept, r->prefix.count, r->prefix.window, r->prefix.lcp);
}

/* Continuous batching: the window holds the problems read and not yet
 * written, oldest first (a ring of W): the live ones and the finished ones
 * held back until every earlier one is written. A new problem joins only
 * while the finished ones hold under RUN_AHEAD_BYTES and the window has
 * room, so one long answer costs at most that much memory, and the slots
 * idle only once it is reached. A resume point follows every --batch
 * records written. */
static int generate_continuous(inf_run *r, prob_source *s, lrs_writer *w, int layout) {
    const run_opts *o = &r->o;
    gen_ctx *g = r->g;
    int W = o->batch + (o->ahead_max > 0 ? o->ahead_max : RUN_AHEAD_MAX);
    int head = 0, nwin = 0, end = 0, rc = 0, unflushed = 0;
    int full_V = g->o.full ? g->o.V : 0;
    gen_problem **win = xcalloc((size_t)W, sizeof *win), *next = NULL;
    gen_sched sc;
    gen_sched_init(&sc, g, o->batch, 0);
    long seen = 0;
    gen_problem **first = NULL; /* the first window, read ahead for the shared prefix, then admitted in order */
    int nfirst = 0, ifirst = 0;
    if (o->shared_prefix) rc = share_prefix(r, s, layout, &sc, &seen, &first, &nfirst, &end);
    size_t held = 0, held_max = o->ahead_bytes ? o->ahead_bytes : RUN_AHEAD_BYTES;
    uint64_t tokens0 = g->tokens;
    while (!rc) {
        while (!rc) { /* admit while a slot, the budget and the window allow */
            if (!next && ifirst < nfirst) next = first[ifirst++];
            if (!next && !end) {
                int got;
                next = xcalloc(1, sizeof *next);
                rc = next_problem(r, s, layout, &seen, next, &got, &end);
                if (!got) { gen_problem_clear(next), free(next), next = NULL; }
            }
            if (rc || !next || nwin >= W || held >= held_max || !gen_can_admit(&sc, next)) break;
            win[(head + nwin++) % W] = next;
            gen_admit(&sc, next);
            next = NULL;
            if (nwin > r->peak) r->peak = nwin;
        }
        if (rc || (!gen_busy(&sc) && !next && end)) break;
        rc = gen_step(g, &sc);
        long wrote = 0;
        while (!rc && nwin && gen_done(win[head])) {
            gen_problem *p = win[head];
            rc = write_one(r, w, p, 0);
            gen_problem_clear(p), free(p);
            win[head] = NULL, head = (head + 1) % W, nwin--, wrote++;
        }
        if (wrote) {
            if ((unflushed += (int)wrote) >= o->batch && !rc) rc = lrs_flush(w), unflushed = 0;
            progress_add(&r->prog, (uint64_t)wrote, g->tokens - tokens0);
            tokens0 = g->tokens;
        }
        held = 0;
        for (int i = 0; i < nwin; i++) {
            const gen_problem *p = win[(head + i) % W];
            if (gen_done(p)) held += gen_problem_bytes(p, full_V);
        }
    }
    if (!rc && unflushed) rc = lrs_flush(w);
    for (int i = 0; i < nwin; i++) gen_problem_clear(win[(head + i) % W]), free(win[(head + i) % W]);
    if (next) gen_problem_clear(next), free(next);
    for (; ifirst < nfirst; ifirst++) gen_problem_clear(first[ifirst]), free(first[ifirst]);
    free(first);
    free(win);
    r->peak_live = sc.peak_live, r->preemptions = sc.preemptions, r->wasted = sc.wasted;
    gen_sched_free(&sc);
    return rc;
}

int run_generate(inf_run *r, prob_source *s, lrs_writer *w) {
    const run_opts *o = &r->o;
    int layout = prob_layout(s);
    if (!o->prompt_file && !strcmp(o->preset, "toolkit") && layout < 0)
        return lr_err(LR_EUSAGE, "--preset toolkit needs a benchmark file of a known layout (not --field)");
    return o->static_batches ? generate_static(r, s, w, layout) : generate_continuous(r, s, w, layout);
}

int run_follow(inf_run *r, lrs_reader *fr, lrs_writer *w) {
    const run_opts *o = &r->o;
    gen_problem *ps = xcalloc(o->batch, sizeof *ps);
    int rc = 0, end = 0;
    const msgpack_object *rec;
    long seen = 0;
    while (!rc && !end) {
        int n = 0;
        uint64_t tokens0 = r->g->tokens;
        while (n < o->batch && !rc) {
            if (o->limit >= 0 && seen >= o->limit) { end = 1; break; }
            int got = lrs_next(fr, &rec);
            if (got == 0) { end = 1; break; }
            if (got != 1) { rc = got; break; }
            seen++;
            gen_problem *p = &ps[n];
            rc = gen_load_followed(r->g, fr, rec, p);
            if (rc) break;
            if (!want_problem(r, p->idx)) { gen_problem_clear(p); continue; }
            if (!gen_fits(r->g, p, p->T)) {
                rc = report(r, p->id, p->err);
                gen_problem_clear(p);
                continue;
            }
            n++;
        }
        if (!rc && n) rc = gen_follow(r->g, ps, n, o->shared_prefix);
        if (!rc && n) rc = flush_batch(r, w, ps, n, 1, tokens0);
    }
    for (int b = 0; b < o->batch; b++) gen_problem_clear(&ps[b]);
    free(ps);
    if (r->g->prefix_rows) r->prefix.kept = r->g->prefix_max, r->prefix.spared = r->g->prefix_rows;
    return rc;
}
