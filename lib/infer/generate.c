/* generate: see generate.h. */
#include "infer/generate.h"

#include "base/rng.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gen_init(gen_ctx *g, engine *e, const gen_opts *o) {
    memset(g, 0, sizeof *g);
    g->e = e;
    g->o = *o;
    const char *ov = getenv("LR_GPU_OVERLAP"); /* as the other LR_GPU_ switches: "0" turns it off */
    g->overlap = e->dev == ENG_CUDA && !(ov && !strcmp(ov, "0"));
}

void gen_free(gen_ctx *g) {
    free(g->gids), free(g->uni);
    for (int i = 0; i < 2; i++) {
        eng_res *r = &g->res[i];
        free(g->goff[i]);
        free(r->k), free(r->ids), free(r->lps), free(r->tail), free(r->gtail), free(r->argmax), free(r->sampled);
        free(r->bad), free(r->logits), free(r->glps);
    }
    memset(g, 0, sizeof *g);
}

void gen_seed(gen_problem *p, uint64_t seed) {
    /* the formula every earlier stream was sampled with (kept for their goldens) */
    p->rng = seed ^ (RNG_GAMMA * (uint64_t)(p->idx + 1));
}

void gen_fail(gen_problem *p, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(p->err);
    p->err = xstrdup(msg);
    p->failed = 1;
}

int gen_fits(gen_ctx *g, gen_problem *p, size_t new_tokens) {
    int tmax = eng_tmax(g->e);
    if (p->nprompt + new_tokens <= (size_t)tmax) return 1;
    gen_fail(p, "prompt of %zu tokens + %zu new exceeds the context of %d positions; problem skipped", p->nprompt,
             new_tokens, tmax);
    return 0;
}

static void grow_steps(gen_problem *p, size_t need_T, size_t need_ids, int full_V) {
    if (need_T > p->cap_T) {
        size_t c = p->cap_T ? p->cap_T * 2 : 64;
        while (c < need_T) c *= 2;
        p->tokens = xrealloc(p->tokens, c * sizeof *p->tokens);
        p->k = xrealloc(p->k, c * sizeof *p->k);
        p->tail = xrealloc(p->tail, c * sizeof *p->tail);
        p->ref_tail = xrealloc(p->ref_tail, c * sizeof *p->ref_tail);
        if (full_V) p->full = xrealloc(p->full, c * (size_t)full_V * sizeof *p->full);
        p->cap_T = c;
    }
    if (need_ids > p->cap_ids) {
        size_t c = p->cap_ids ? p->cap_ids * 2 : 1024;
        while (c < need_ids) c *= 2;
        p->ids = xrealloc(p->ids, c * sizeof *p->ids);
        p->lp = xrealloc(p->lp, c * sizeof *p->lp);
        p->cap_ids = c;
    }
}

void gen_problem_clear(gen_problem *p) {
    free(p->id), free(p->question), free(p->prompt), free(p->tokens), free(p->k), free(p->ids);
    free(p->lp), free(p->tail), free(p->fk), free(p->fids), free(p->foff), free(p->ref_lp), free(p->ref_tail);
    free(p->full), free(p->text), free(p->err);
    memset(p, 0, sizeof *p);
}

/* Records step t of p from wanted row g of an engine call: this model's
 * own list (appended to p->ids), in follow mode its log-probs of the
 * followed list of step t (gathered by the engine into res->glps at
 * goff[g]), and with full the whole log-softmax from the logits row.
 * Returns nonzero for NaN/inf logits (the problem fails). */
static int record_step(const gen_ctx *c, int buf, gen_problem *p, size_t t, size_t g) {
    const eng_res *res = &c->res[buf];
    int V = c->o.V, kmax = c->o.co.kmax, full = c->o.full;
    if (res->bad[g]) return 1;
    int k = res->k[g];
    grow_steps(p, t + 1, p->nids + (size_t)k, full ? V : 0);
    memcpy(p->ids + p->nids, res->ids + g * (size_t)kmax, (size_t)k * sizeof *p->ids);
    memcpy(p->lp + p->nids, res->lps + g * (size_t)kmax, (size_t)k * sizeof *p->lp);
    p->tail[t] = res->tail[g];
    p->k[t] = k;
    p->nids += (size_t)k;
    if (p->fk) {
        if (p->fk[t] > 0)
            memcpy(p->ref_lp + p->foff[t], res->glps + c->goff[buf][g], (size_t)p->fk[t] * sizeof *p->ref_lp);
        p->ref_tail[t] = res->gtail[g];
    }
    if (full) cd_log_softmax(p->full + t * (size_t)V, res->logits + g * (size_t)V, V);
    return 0;
}

/* The logits rows themselves are needed on the host only for full; the
 * engine samples where the logits are, from the uniforms it is sent. */
static int need_logits(const gen_opts *o) { return o->full; }

/* Room in buffer i (res[i], goff[i]) for
 * `rows` wanted rows (and their logits when needed) and `ng` gathered
 * log-probs, and in the request arrays (uniforms, gathered ids) for the
 * same. The other buffer is left alone: a call queued on it may still
 * deliver there. */
static void grow_buf(gen_ctx *c, int i, size_t rows, size_t ng) {
    size_t K = (size_t)c->o.co.kmax, V = (size_t)c->o.V;
    eng_res *r = &c->res[i];
    size_t **goff = &c->goff[i];
    if (rows > c->res_rows[i]) {
        r->k = xrealloc(r->k, rows * sizeof *r->k);
        r->ids = xrealloc(r->ids, rows * K * sizeof *r->ids);
        r->lps = xrealloc(r->lps, rows * K * sizeof *r->lps);
        r->tail = xrealloc(r->tail, rows * sizeof *r->tail);
        r->gtail = xrealloc(r->gtail, rows * sizeof *r->gtail);
        r->argmax = xrealloc(r->argmax, rows * sizeof *r->argmax);
        r->bad = xrealloc(r->bad, rows);
        if (c->o.sample) r->sampled = xrealloc(r->sampled, rows * sizeof *r->sampled);
        if (need_logits(&c->o)) r->logits = xrealloc(r->logits, rows * V * sizeof *r->logits);
        *goff = xrealloc(*goff, (rows + 1) * sizeof **goff);
        c->res_rows[i] = rows;
    }
    if (ng > c->glps_cap[i]) r->glps = xrealloc(r->glps, ng * sizeof *r->glps), c->glps_cap[i] = ng;
    if (c->o.sample && rows > c->uni_cap) c->uni = xrealloc(c->uni, rows * sizeof *c->uni), c->uni_cap = rows;
    if (ng > c->gids_cap) c->gids = xrealloc(c->gids, ng * sizeof *c->gids), c->gids_cap = ng;
}

/* Both buffers (nothing queued). */
static void ensure_res(gen_ctx *c, size_t rows, size_t ng) { grow_buf(c, 0, rows, ng), grow_buf(c, 1, rows, ng); }

static eng_req make_req(const gen_ctx *c, int gather) {
    return (eng_req){.co = c->o.co, .gids = gather ? c->gids : NULL, .goff = gather ? c->goff[0] : NULL,
                     .logits = need_logits(&c->o), .uniform = c->o.sample && !gather ? c->uni : NULL,
                     .smp = c->o.smp};
}

/* Wanted row g of the next call takes p's next draw: one value of p's
 * stream per step, as smp_draw consumes it. */
static void draw_uniform(gen_ctx *c, size_t g, gen_problem *p) {
    if (c->o.sample) c->uni[g] = rng_unit(&p->rng);
}

/* eng_run, counted (lr-infer reports calls; tests check slots refill). */
static int run_rows(gen_ctx *c, int N, const int *tok, const int *seq, const unsigned char *want, const eng_req *q) {
    c->calls++;
    c->rows += (uint64_t)N;
    return eng_run(c->e, N, tok, seq, want, q, &c->res[0]);
}

/* Does the text of p's newest tokens now contain a stop string? Only a
 * window as long as the longest stop string (in tokens: every token is at
 * least one byte) is decoded, since an earlier occurrence ended an earlier
 * step. */
static int stop_hit(const gen_opts *o, const gen_problem *p) {
    size_t w = 1;
    for (int i = 0; i < o->nstop; i++)
        if (strlen(o->stop[i]) + 1 > w) w = strlen(o->stop[i]) + 1;
    if (w > p->T) w = p->T;
    char *text = NULL;
    size_t len;
    if (tok_decode_ex(o->tok, p->tokens + (p->T - w), w, TOK_SKIP_SPECIAL, &text, &len)) return 0;
    int hit = 0;
    for (int i = 0; i < o->nstop && !hit; i++) hit = o->stop[i][0] && strstr(text, o->stop[i]) != NULL;
    free(text);
    return hit;
}

/* Takes step p->T of p from wanted row g of the last call: records it,
 * picks the next token (greedy or p's own sampling stream), and says
 * whether p goes on (1) or has ended (0: finish set, or failed). */
static int take_step(gen_ctx *c, int buf, gen_problem *p, size_t g) {
    const gen_opts *o = &c->o;
    if (record_step(c, buf, p, p->T, g)) {
        gen_fail(p, "NaN or infinite logits; problem skipped");
        return 0;
    }
    int next = o->sample ? c->res[buf].sampled[g] : c->res[buf].argmax[g];
    p->tokens[p->T++] = next;
    c->tokens++;
    for (int e = 0; e < o->neos; e++)
        if (next == o->eos[e]) { p->finish = "eos"; return 0; }
    if (o->nstop && o->tok && stop_hit(o, p)) { p->finish = "stop"; return 0; }
    if ((int)p->T >= o->max_new) { p->finish = "length"; return 0; }
    return 1;
}

int gen_generate(gen_ctx *c, gen_problem *ps, int n) {
    eng_reset(c->e, -1);
    int *slot = xmalloc(n * sizeof *slot), *tok = xmalloc(n * sizeof *tok);
    size_t total = 0;
    int na = 0;
    for (int b = 0; b < n; b++)
        if (!ps[b].failed) total += ps[b].nprompt, slot[na++] = b;
    /* prefill: every prompt, logits of each prompt's last row */
    int *rows_tok = xmalloc((total ? total : 1) * sizeof *rows_tok);
    int *rows_seq = xmalloc((total ? total : 1) * sizeof *rows_seq);
    unsigned char *want = xmalloc(total ? total : 1);
    size_t r = 0;
    for (int a = 0; a < na; a++) {
        gen_problem *p = &ps[slot[a]];
        for (size_t i = 0; i < p->nprompt; i++, r++) {
            rows_tok[r] = p->prompt[i];
            rows_seq[r] = slot[a];
            want[r] = i + 1 == p->nprompt;
        }
    }
    grow_buf(c, 0, (size_t)n, 0);
    for (int a = 0; a < na; a++) draw_uniform(c, (size_t)a, &ps[slot[a]]);
    eng_req q = make_req(c, 0);
    int rc = na ? run_rows(c, (int)total, rows_tok, rows_seq, want, &q) : 0;
    free(rows_tok), free(rows_seq), free(want);
    while (!rc && na > 0) {
        /* logits row a belongs to problem slot[a] */
        int keep = 0;
        for (int a = 0; a < na; a++) {
            gen_problem *p = &ps[slot[a]];
            if (!take_step(c, 0, p, (size_t)a)) continue;
            slot[keep] = slot[a];
            tok[keep++] = p->tokens[p->T - 1];
        }
        for (int a = 0; a < keep; a++) draw_uniform(c, (size_t)a, &ps[slot[a]]);
        na = keep;
        if (na) rc = run_rows(c, na, tok, slot, NULL, &q);
    }
    free(slot), free(tok);
    return rc;
}

/* The rows predicting tokens[t] are the last prompt row (t = 0) and token
 * rows 0..T-2; they are fed as a prompt chunk, then chunks of CH tokens per
 * problem, so that at most n * CH rows are wanted at once. Each wanted row
 * gathers this model's log-probs of the followed list of its step. */
/* One call of tok[0..n) in slot b, its last row wanted (a call must want
 * one; its results are dropped, and with sampling no stream is drawn). */
static int prefill_rows(gen_ctx *c, int b, const int32_t *tok, size_t n, int *rt, int *rs, unsigned char *want) {
    for (size_t i = 0; i < n; i++) rt[i] = tok[i], rs[i] = b, want[i] = i + 1 == n;
    grow_buf(c, 0, 1, 0);
    if (c->o.sample) c->uni[0] = 0.5;
    eng_req q = make_req(c, 0);
    return run_rows(c, (int)n, rt, rs, want, &q);
}

/* gen_follow's shared prefix: from[b], the prompt rows of slot b already in
 * its cache (the prefix attached), 0 for the others; *kept, the tokens kept
 * (0: none, nothing attached). Returns the engine's code. */
static int follow_prefix(gen_ctx *c, gen_problem *ps, int n, size_t *from, int *rt, int *rs, unsigned char *want,
                         long *kept_out) {
    const int32_t **tok = xmalloc((size_t)n * sizeof *tok);
    size_t *len = xmalloc((size_t)n * sizeof *len);
    int *slot = xmalloc((size_t)n * sizeof *slot), m = 0, anchor = 0;
    for (int b = 0; b < n; b++)
        if (!ps[b].failed) tok[m] = ps[b].prompt, len[m] = ps[b].nprompt, slot[m++] = b;
    size_t lcp = m > 1 ? gen_common_prefix(tok, len, m, &anchor, NULL) : 0;
    long kept = 0;
    int rc = 0;
    if (lcp >= (size_t)eng_prefix_min(c->e)) {
        const gen_problem *a = &ps[slot[anchor]];
        rc = prefill_rows(c, slot[anchor], a->prompt, lcp, rt, rs, want);
        if (!rc) kept = eng_prefix_keep(c->e, slot[anchor]);
        eng_reset(c->e, slot[anchor]); /* emptied by a keep; after a failed call, no half-filled slot */
        int joined = 0;
        for (int b = 0; b < n && kept > 0; b++) {
            gen_problem *p = &ps[b];
            if (p->failed || p->nprompt <= (size_t)kept || memcmp(p->prompt, a->prompt, (size_t)kept * sizeof *p->prompt))
                continue;
            eng_prefix_attach(c->e, b);
            from[b] = (size_t)kept, joined++;
        }
        if (joined) { /* computed once instead of in each */
            c->prefix_rows += (uint64_t)(joined - 1) * (uint64_t)kept;
            if ((size_t)kept > c->prefix_max) c->prefix_max = (size_t)kept;
        }
    }
    free(tok), free(len), free(slot);
    *kept_out = kept;
    return rc;
}

int gen_follow(gen_ctx *c, gen_problem *ps, int n, int share) {
    enum { CH = 64 };
    eng_reset(c->e, -1);
    size_t total = 0, maxT = 0;
    for (int b = 0; b < n; b++) {
        if (ps[b].failed) continue;
        total += ps[b].nprompt;
        if (ps[b].T > maxT) maxT = ps[b].T;
    }
    size_t cap = total > (size_t)n * CH ? total : (size_t)n * CH;
    /* a call's rows: tokens (read at submit), and per buffer what taking
     * its results needs: slot, the step a wanted row predicts, wanted */
    int *rt = xmalloc(cap * sizeof *rt), *rs[2];
    size_t *rstep[2], nr[2];
    unsigned char *want[2];
    for (int h = 0; h < 2; h++)
        rs[h] = xmalloc(cap * sizeof *rs[h]), rstep[h] = xmalloc(cap * sizeof *rstep[h]), want[h] = xmalloc(cap);
    size_t *from = xcalloc((size_t)n, sizeof *from); /* prompt rows already in slot b's cache */
    long kept = 0;
    int rc = share ? follow_prefix(c, ps, n, from, rt, rs[0], want[0], &kept) : 0;
    /* with overlap a call is queued before the last one's results are
     * taken (all its tokens are known): cur is the oldest queued call's
     * buffer, queued how many are */
    int cur = 0, queued = 0;
    /* lo = -1: the prompt chunk; then tokens lo .. lo+CH-1 (only < T-1) */
    for (long lo = -1; !rc; lo = lo < 0 ? 0 : lo + CH) {
        int h = (cur + queued) % 2, more = lo < 0 || (size_t)lo + 1 < maxT; /* chunks left to queue */
        if (!more && !queued) break;
        size_t r = 0, G = 0, ng = 0;
        int *s_ = rs[h];
        size_t *st = rstep[h];
        unsigned char *w = want[h];
        for (int b = 0; b < n && more; b++) {
            gen_problem *p = &ps[b];
            if (p->failed) continue;
            if (lo < 0)
                for (size_t i = from[b]; i < p->nprompt; i++, r++)
                    rt[r] = p->prompt[i], s_[r] = b, st[r] = 0, w[r] = i + 1 == p->nprompt && p->T > 0;
            else
                for (size_t i = (size_t)lo; i < (size_t)lo + CH && i + 1 < p->T; i++, r++)
                    rt[r] = p->tokens[i], s_[r] = b, st[r] = i + 1, w[r] = 1;
        }
        if (r) {
            for (size_t i = 0; i < r; i++)
                if (w[i]) G++, ng += (size_t)ps[s_[i]].fk[st[i]];
            /* buffer h is free: its last call was taken (the other may be queued) */
            grow_buf(c, h, G, ng);
            size_t *goff = c->goff[h];
            G = 0, goff[0] = 0;
            for (size_t i = 0; i < r; i++) {
                if (!w[i]) continue;
                const gen_problem *p = &ps[s_[i]];
                size_t k = (size_t)p->fk[st[i]];
                if (k) memcpy(c->gids + goff[G], p->fids + p->foff[st[i]], k * sizeof *c->gids);
                goff[G + 1] = goff[G] + k;
                G++;
            }
            eng_req q = make_req(c, 1);
            q.goff = goff;
            c->calls++;
            c->rows += (uint64_t)r;
            rc = eng_submit(c->e, (int)r, rt, NULL, s_, w, &q, &c->res[h]);
            if (rc) break;
            c->ahead += queued > 0;
            nr[h] = r, queued++;
        }
        /* take the oldest call once another is queued behind it, or at once
         * without overlap, or when no call is left to queue */
        if (!queued || (queued < 2 && c->overlap && r)) continue;
        rc = eng_collect(c->e);
        size_t g = 0;
        for (size_t i = 0; !rc && i < nr[cur]; i++) {
            if (!want[cur][i]) continue;
            gen_problem *p = &ps[rs[cur][i]];
            size_t gi = g++;
            if (p->failed) continue; /* failed at an earlier call, with this one queued */
            if (record_step(c, cur, p, rstep[cur][i], gi)) gen_fail(p, "NaN or infinite logits; problem skipped");
            else c->tokens++;
        }
        cur ^= 1, queued--;
    }
    while (eng_pending(c->e)) (void)eng_collect(c->e); /* an error left a call queued: its results are dropped */
    if (kept > 0) eng_prefix_drop(c->e); /* its pages go back as the next batch resets the slots */
    free(rt), free(from);
    for (int h = 0; h < 2; h++) free(rs[h]), free(rstep[h]), free(want[h]);
    return rc;
}

void gen_sched_init(gen_sched *s, gen_ctx *c, int B, size_t prefill_rows) {
    memset(s, 0, sizeof *s);
    s->B = B;
    s->e = c->e;
    s->live = xcalloc((size_t)B, sizeof *s->live);
    s->wait = xcalloc((size_t)B, sizeof *s->wait);
    s->dn = xcalloc((size_t)B, sizeof *s->dn);
    s->flp[0] = xcalloc((size_t)B, sizeof *s->flp[0]);
    s->flp[1] = xcalloc((size_t)B, sizeof *s->flp[1]);
    s->flg = xmalloc((size_t)B * sizeof *s->flg);
    for (int b = 0; b < B; b++) s->flg[b] = -1;
    s->prefill_rows = prefill_rows ? prefill_rows : 4096;
    s->overlap = c->overlap;
    ensure_res(c, (size_t)B, 0);
    eng_reset(c->e, -1);
}

int gen_sched_prefix(gen_ctx *c, gen_sched *s, const int32_t *tok, size_t n, size_t *kept) {
    *kept = 0;
    if (s->prefix || s->nlive || n < (size_t)eng_prefix_min(c->e) || n > (size_t)eng_tmax(c->e))
        return 0; /* too short to keep (cuda: under one page): run nothing */
    if (n > s->cap) {
        s->cap = n;
        s->tok = xrealloc(s->tok, s->cap * sizeof *s->tok);
        s->seq = xrealloc(s->seq, s->cap * sizeof *s->seq);
        s->feed = xrealloc(s->feed, s->cap * sizeof *s->feed); /* every row array grows with cap */
        s->want = xrealloc(s->want, s->cap);
    }
    int rc = prefill_rows(c, 0, tok, n, s->tok, s->seq, s->want);
    int got = rc ? 0 : eng_prefix_keep(c->e, 0);
    if (rc) eng_reset(c->e, 0);
    if (got > 0) {
        s->nprefix = (size_t)got;
        s->prefix = xmalloc(s->nprefix * sizeof *s->prefix);
        memcpy(s->prefix, tok, s->nprefix * sizeof *s->prefix);
        *kept = s->nprefix;
    }
    return rc;
}

/* a prompt for gen_common_prefix's sort: lexicographic by tokens, a
 * prefix before what continues it, then by index (a total order) */
typedef struct {
    const int32_t *t;
    size_t n;
    int i;
} cp_prompt;
static int by_tokens(const void *x, const void *y) {
    const cp_prompt *a = x, *b = y;
    size_t m = a->n < b->n ? a->n : b->n;
    for (size_t t = 0; t < m; t++)
        if (a->t[t] != b->t[t]) return a->t[t] < b->t[t] ? -1 : 1;
    return a->n != b->n ? (a->n < b->n ? -1 : 1) : a->i - b->i;
}

size_t gen_common_prefix(const int32_t *const *tok, const size_t *len, int n, int *anchor, int *count) {
    *anchor = -1;
    if (count) *count = 0;
    if (n < 2) return 0;
    cp_prompt *o = xmalloc((size_t)n * sizeof *o);
    int need = n < 4 ? 2 : (n + 1) / 2, bestk = 0; /* at least two: a prompt alone shares nothing */
    for (int i = 0; i < n; i++) o[i] = (cp_prompt){tok[i], len[i], i};
    qsort(o, (size_t)n, sizeof *o, by_tokens);
    /* adj[e]: the common start of neighbours e - 1 and e, short of the last
     * token of each (the window o[w..e]'s is the least adj in it) */
    size_t *adj = xmalloc((size_t)n * sizeof *adj), best = 0;
    for (int e = 1; e < n; e++) {
        const cp_prompt *x = &o[e - 1], *y = &o[e];
        size_t j = 0, m = x->n < y->n ? x->n : y->n;
        m = m ? m - 1 : 0;
        while (j < m && x->t[j] == y->t[j]) j++;
        adj[e] = j;
    }
    *anchor = o[0].i;
    for (int w = 0; w + need <= n; w++) {
        size_t c = SIZE_MAX;
        for (int e = w + 1; e < n && c; e++) {
            if (adj[e] < c) c = adj[e];
            int k = e - w + 1;
            /* the most prompt rows spared: k prompts of c shared tokens, the longer prefix on a tie */
            if (k >= need && ((size_t)k * c > (size_t)bestk * best || ((size_t)k * c == (size_t)bestk * best && c > best)))
                best = c, bestk = k, *anchor = o[w].i;
        }
    }
    free(o), free(adj);
    if (count) *count = best ? bestk : 0;
    return best;
}

void gen_sched_free(gen_sched *s) {
    while (eng_pending(s->e)) (void)eng_collect(s->e); /* an error left calls queued: their results are dropped */
    if (s->prefix) eng_prefix_drop(s->e);
    free(s->prefix);
    free(s->live), free(s->wait), free(s->dn), free(s->tok), free(s->seq), free(s->feed), free(s->want);
    free(s->flp[0]), free(s->flp[1]), free(s->flg);
    memset(s, 0, sizeof *s);
}

/* Positions p's cache holds after its next call: prompt + every token but
 * the newest (which that call feeds) for a live one, + one a row of it
 * queued (whose token is not yet taken); the same for one (re)joining,
 * whose call feeds prompt + all its tokens. */
static size_t target_len(const gen_problem *p) { return p->nprompt + p->T + (size_t)p->pend; }

static int free_pages(const gen_sched *s) {
    gpu_kv_info k;
    eng_pages(s->e, &k);
    return k.free;
}

/* Rows p's (re)prefill feeds: all of prompt + tokens, or those after the shared prefix. */
static size_t feed_rows(const gen_sched *s, const gen_problem *p) {
    return target_len(p) - (p->shared ? s->nprefix : 0);
}

/* Whether p's prompt starts with the shared prefix and goes past it (its
 * last prompt row must run: it predicts the first token). */
static int shares(const gen_sched *s, const gen_problem *p) {
    return s->prefix && p->nprompt > s->nprefix && !memcmp(p->prompt, s->prefix, s->nprefix * sizeof *s->prefix);
}

/* Pages the live, prefilled problems' next rows take (kept by gen_step and vacate). */
static int decode_need(const gen_sched *s) { return s->dneed; }

/* Pages p's next call takes in its slot (placed there, prefilled or not). */
static int step_pages(const gen_sched *s, const gen_problem *p) {
    return eng_pages_more(s->e, p->slot, (int)target_len(p));
}

/* Whether p may join now (preempted ones too), by slot, prefill budget and pages. */
static int fits_now(const gen_sched *s, const gen_problem *p) {
    size_t rows = target_len(p) - (shares(s, p) ? s->nprefix : 0);
    if (s->nlive >= s->B || (s->queued && s->queued + rows > s->prefill_rows)) return 0;
    int sh = shares(s, p), want = eng_pages_join(s->e, (int)target_len(p), sh) + GEN_RESERVE_PAGES,
        most = eng_pages_join(s->e, eng_tmax(s->e), sh);
    if (want > most) want = most;
    return want + s->promised + decode_need(s) <= free_pages(s);
}

int gen_can_admit(const gen_sched *s, const gen_problem *p) { return !s->nwait && fits_now(s, p); }

/* p into a free slot; its prefill (prompt + tokens so far) runs next call. */
static void place(gen_sched *s, gen_problem *p) {
    int b = 0;
    while (s->live[b]) b++;
    s->live[b] = p;
    s->nlive++;
    if (s->nlive > s->peak_live) s->peak_live = s->nlive;
    s->queued += feed_rows(s, p);
    p->slot = b;
    if (p->shared) eng_prefix_attach(s->e, b), s->shared_joins++;
    s->promised += step_pages(s, p);
    p->prefilled = 0;
}

void gen_admit(gen_sched *s, gen_problem *p) {
    p->shared = shares(s, p); /* decided once: its prompt is fixed */
    p->order = s->order++;
    place(s, p);
}

int gen_busy(const gen_sched *s) { return s->nlive > 0 || s->nwait > 0 || s->nfl > 0; }

/* Empties slot b: its pages go back to the engine (a queued call's row
 * of it still runs on them: the engine's calls run in order, so a later
 * call that takes them writes after it), and its rows of queued calls
 * are dropped. */
static void vacate(gen_ctx *c, gen_sched *s, int b) {
    for (int i = 0; i < s->nfl; i++) {
        int h = (s->flh + i) % 2;
        for (int g = 0; g < s->flG[h]; g++)
            if (s->flp[h][g] == s->live[b]) s->flp[h][g] = NULL;
    }
    s->live[b]->pend = 0;
    s->flg[b] = -1;
    s->live[b] = NULL;
    s->nlive--;
    s->dneed -= s->dn[b], s->dn[b] = 0;
    eng_reset(c->e, b);
}

/* Preempts the newest live problem: its slot and pages are freed, and it
 * waits (in admission order) to be re-prefilled from its prompt and tokens.
 * Its sampling stream is untouched: draws happen only for rows that run. */
static void preempt_newest(gen_ctx *c, gen_sched *s) {
    int v = -1;
    for (int b = 0; b < s->B; b++)
        if (s->live[b] && (v < 0 || s->live[b]->order > s->live[v]->order)) v = b;
    gen_problem *p = s->live[v];
    if (!p->prefilled) s->queued -= feed_rows(s, p), s->promised -= step_pages(s, p);
    p->prefilled = 0;
    vacate(c, s, v);
    int i = s->nwait++;
    while (i > 0 && s->wait[i - 1]->order > p->order) s->wait[i] = s->wait[i - 1], i--;
    s->wait[i] = p;
    s->preemptions++;
}

/* Whether p has a row in the next call: not when the rows queued for it
 * already produce its last token (max_new). */
static int runs_next(const gen_ctx *c, const gen_problem *p) {
    return !p->prefilled || (int)(p->T + (size_t)p->pend) < c->o.max_new;
}

static void recount_need(gen_sched *s) {
    s->dneed = 0; /* one scan a call, not one per problem tried */
    for (int b = 0; b < s->B; b++)
        if (s->live[b]) s->dneed += s->dn[b] = step_pages(s, s->live[b]);
}

/* Queues one call (ahead: behind the one queued, nothing when that would
 * need a preemption or no live problem has a row), in slot order: a live
 * problem's newest token, fed from the queued call when that produces it,
 * or a joining one's prompt and tokens so far (only the last row wanted). */
static int submit_call(gen_ctx *c, gen_sched *s, int ahead) {
    while (s->nwait && fits_now(s, s->wait[0])) {
        place(s, s->wait[0]);
        memmove(s->wait, s->wait + 1, (size_t)--s->nwait * sizeof *s->wait);
    }
    if (!s->nlive) {
        /* with nothing live every page is free, and any problem fits: else
         * pages were lost, and waiting would never end */
        gpu_kv_info k;
        eng_pages(s->e, &k);
        if (k.free + k.shared < k.pages)
            return lr_err(LR_EGPU, "KV cache: %d of %d pages not returned with no problem live", k.pages - k.free -
                          k.shared, k.pages);
        return 0;
    }
    for (;;) { /* the pages this call takes, against those free */
        int need = 0, fr = free_pages(s), rows = 0;
        for (int b = 0; b < s->B; b++)
            if (s->live[b] && runs_next(c, s->live[b])) need += step_pages(s, s->live[b]), rows++;
        if (ahead && (need > fr || !rows)) return 0; /* taken first, then stepped as without overlap */
        if (need <= fr || !s->nlive) break;
        preempt_newest(c, s);
    }
    if (!s->nlive) return 0;
    size_t N = s->queued + (size_t)s->nlive;
    if (N > s->cap) {
        s->cap = N * 2;
        s->tok = xrealloc(s->tok, s->cap * sizeof *s->tok);
        s->seq = xrealloc(s->seq, s->cap * sizeof *s->seq);
        s->feed = xrealloc(s->feed, s->cap * sizeof *s->feed);
        s->want = xrealloc(s->want, s->cap);
    }
    int h = (s->flh + s->nfl) % 2, G = 0, fed = 0;
    size_t r = 0;
    for (int b = 0; b < s->B; b++) {
        gen_problem *p = s->live[b];
        if (!p || !runs_next(c, p)) {
            if (p) s->flg[b] = -1;
            continue;
        }
        if (p->prefilled) {
            /* pend 1: its newest token is the queued call's pick, not yet seen */
            s->tok[r] = p->pend ? 0 : p->tokens[p->T - 1], s->feed[r] = p->pend ? s->flg[b] : -1, s->seq[r] = b;
            fed |= p->pend > 0;
            s->want[r++] = 1;
        } else {
            /* the slot is empty, or holds the shared prefix only (place) */
            size_t n = target_len(p);
            for (size_t i = p->shared ? s->nprefix : 0; i < n; i++)
                s->tok[r] = i < p->nprompt ? p->prompt[i] : p->tokens[i - p->nprompt], s->feed[r] = -1,
                s->seq[r] = b, s->want[r++] = i + 1 == n;
            p->prefilled = 1;
        }
        draw_uniform(c, (size_t)G, p);
        p->pend++;
        s->flg[b] = G;
        s->flp[h][G++] = p;
    }
    s->flG[h] = G;
    s->queued = 0, s->promised = 0;
    eng_req q = make_req(c, 0);
    c->calls++;
    c->rows += (uint64_t)r;
    int rc = eng_submit(c->e, (int)r, s->tok, fed ? s->feed : NULL, s->seq, s->want, &q, &c->res[h]);
    if (rc) return rc;
    s->nfl++;
    c->ahead += ahead;
    recount_need(s);
    return 0;
}

/* Takes the oldest queued call's results (in c->res[flh], the buffer of
 * its queue slot): each problem's step; those that end leave their slot. */
static int take_call(gen_ctx *c, gen_sched *s) {
    int rc = eng_collect(c->e), h = s->flh;
    for (int g = 0; !rc && g < s->flG[h]; g++) {
        gen_problem *p = s->flp[h][g];
        if (!p) { /* it ended at an earlier step */
            s->wasted++;
            continue;
        }
        p->pend--;
        if (!take_step(c, h, p, (size_t)g)) vacate(c, s, p->slot);
    }
    s->flh = (h + 1) % 2, s->nfl--;
    if (!rc) recount_need(s);
    return rc;
}

int gen_step(gen_ctx *c, gen_sched *s) {
    int rc = 0;
    if (!s->nfl && (rc = submit_call(c, s, 0))) return rc;
    if (!s->nfl) return 0;
    if (s->overlap && (rc = submit_call(c, s, 1))) return rc;
    return take_call(c, s);
}

int gen_done(const gen_problem *p) { return p->failed || p->finish != NULL; }

size_t gen_problem_bytes(const gen_problem *p, int full_V) {
    return sizeof *p + p->nprompt * sizeof *p->prompt + p->cap_T * (2 * sizeof(int32_t) + 2 * sizeof(float)) +
           p->cap_ids * (sizeof *p->ids + sizeof *p->lp) + (p->full ? p->cap_T * (size_t)full_V * sizeof(float) : 0) +
           (p->text ? strlen(p->text) : 0);
}

int gen_load_followed(gen_ctx *c, lrs_reader *r, const msgpack_object *rec, gen_problem *p) {
    const char *str;
    size_t len, nk, nt, nids;
    int64_t idx;
    int rc = lrs_get_str(r, rec, "id", &str, &len);
    if (!rc) rc = lrs_get_int(r, rec, "idx", &idx);
    if (rc) return rc;
    p->id = strndup(str, len);
    p->idx = (long)idx;
    const msgpack_object *q = lrs_get(rec, "question");
    if (q && q->type == MSGPACK_OBJECT_STR) p->question = strndup(q->via.str.ptr, q->via.str.size);
    size_t cap = 0;
    rc = lrs_get_i32s(r, rec, "prompt", &p->prompt, &cap, &p->nprompt);
    cap = 0;
    if (!rc) rc = lrs_get_i32s(r, rec, "tokens", &p->tokens, &cap, &nt);
    cap = 0;
    if (!rc) rc = lrs_get_i32s(r, rec, "k", &p->fk, &cap, &nk);
    cap = 0;
    if (!rc) rc = lrs_get_i32s(r, rec, "top_ids", &p->fids, &cap, &nids);
    if (rc) return rc;
    if (nk != nt) return lrs_field_err(r, "k", "%zu entries for %zu tokens", nk, nt);
    p->foff = xmalloc((nt + 1) * sizeof *p->foff);
    p->foff[0] = 0;
    for (size_t t = 0; t < nt; t++) {
        if (p->fk[t] < 0) return lrs_field_err(r, "k", "negative count at step %zu", t);
        p->foff[t + 1] = p->foff[t] + (size_t)p->fk[t];
    }
    if (p->foff[nt] != nids) return lrs_field_err(r, "top_ids", "%zu ids, k sums to %zu", nids, p->foff[nt]);
    int V = c->o.V;
    for (size_t i = 0; i < p->nprompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= V)
            return lrs_field_err(r, "prompt", "token id %d outside this model's vocabulary of %d", p->prompt[i], V);
    for (size_t i = 0; i < nt; i++)
        if (p->tokens[i] < 0 || p->tokens[i] >= V)
            return lrs_field_err(r, "tokens", "token id %d outside this model's vocabulary of %d", p->tokens[i], V);
    /* the per-step arrays; realloc keeps the followed tokens already read */
    grow_steps(p, nt ? nt : 1, 1, c->o.full ? V : 0);
    p->T = nt;
    p->nf = nids;
    p->ref_lp = xmalloc((nids ? nids : 1) * sizeof *p->ref_lp);
    p->finish = "follow";
    return 0;
}

void gen_write(lrs_writer *w, const gen_problem *p, int V, int full) {
    msgpack_packer *pk = lrs_pk(w);
    int n = 9 + (p->question != NULL) + (p->text != NULL) + (p->fk ? 2 : 0) + (full ? 1 : 0);
    msgpack_pack_map(pk, n);
    lrs_pack_cstr(pk, "id"); lrs_pack_cstr(pk, p->id);
    lrs_pack_cstr(pk, "idx"); msgpack_pack_int64(pk, p->idx);
    lrs_pack_cstr(pk, "prompt"); lrs_pack_i32s(pk, p->prompt, p->nprompt);
    lrs_pack_cstr(pk, "tokens"); lrs_pack_i32s(pk, p->tokens, p->T);
    lrs_pack_cstr(pk, "finish"); lrs_pack_cstr(pk, p->finish);
    lrs_pack_cstr(pk, "k"); lrs_pack_i32s(pk, p->k, p->T);
    lrs_pack_cstr(pk, "top_ids"); lrs_pack_i32s(pk, p->ids, p->nids);
    lrs_pack_cstr(pk, "top_lp"); lrs_pack_f32s(pk, p->lp, p->nids);
    lrs_pack_cstr(pk, "tail"); lrs_pack_f32s(pk, p->tail, p->T);
    if (p->question) { lrs_pack_cstr(pk, "question"); lrs_pack_cstr(pk, p->question); }
    if (p->text) { lrs_pack_cstr(pk, "text"); lrs_pack_cstr(pk, p->text); }
    if (p->fk) {
        lrs_pack_cstr(pk, "ref_lp"); lrs_pack_f32s(pk, p->ref_lp, p->nf);
        lrs_pack_cstr(pk, "ref_tail"); lrs_pack_f32s(pk, p->ref_tail, p->T);
    }
    if (full) { lrs_pack_cstr(pk, "full"); lrs_pack_f32s(pk, p->full, p->T * (size_t)V); }
}
