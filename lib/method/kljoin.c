/* kljoin: the expert/amateur join and KL selection (kljoin.h). */
#include "method/kljoin.h"
#include "method/dist.h"
#include "model/tokenizer.h"
#include "io/stream.h"
#include "base/rng.h"
#include "base/util.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { PASS_STREAM, PASS_COLLECT, PASS_EMIT };

typedef struct {
    uint32_t prob, step;
    double kl;
} step_kl;

typedef struct {
    const klj_opts *o;
    const char *paths[2];
    klj_stats *st;
    /* KLJ_RANDOM, KLJ_LOWEST: every step seen by the first pass, and the
     * ones the second emits, in stream order */
    step_kl *all;
    size_t nall, capall;
    step_kl *chosen;
    size_t nchosen, next_chosen;
    lrs_writer *w;
    int64_t V, VE, VA; /* V = min(VE, VA), dist.h's truncation */
    const lrs_header *he, *ha; /* the open inputs' headers */
} kl_ctx;

static const char *const sel_names[] = {"kl", "random", "lowest"};

const char *klj_select_name(klj_select s) { return sel_names[s]; }

int klj_select_from_name(const char *s, klj_select *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, sel_names[i])) {
            *out = (klj_select)i;
            return 0;
        }
    return -1;
}

/* One side's current record, decoded into reusable buffers. */
typedef struct {
    lrs_reader *r;
    const msgpack_object *rec;
    int64_t idx, prev_idx;
    int ordered; /* allow_missing: idx must increase (a merge join) */
    const char *id;
    size_t idlen;
    int32_t *prompt, *tokens, *k, *top_ids;
    float *top_lp, *tail, *full;
    size_t cprompt, ctokens, ck, cids, clp, ctail, cfull;
    size_t nprompt, ntokens, nk, nids, nlp, ntail, nfull;
} side;


/* Advances a side; returns 1 with a record, 0 at the end, or an error. */
static int side_next(side *s, int which) {
    int rc = lrs_next(s->r, &s->rec);
    if (rc != 1) {
        s->rec = NULL;
        return rc;
    }
    const lrs_reader *r = s->r;
    if ((rc = lrs_get_int(r, s->rec, "idx", &s->idx)) || (rc = lrs_get_str(r, s->rec, "id", &s->id, &s->idlen)))
        return rc;
    if (s->ordered && s->idx <= s->prev_idx)
        return lrs_field_err(r, "idx", "problem %" PRId64 " after %" PRId64 ": --allow-missing joins the two "
                             "streams by increasing idx", s->idx, s->prev_idx);
    s->prev_idx = s->idx;
    if ((rc = lrs_get_i32s(r, s->rec, "prompt", &s->prompt, &s->cprompt, &s->nprompt)) ||
        (rc = lrs_get_i32s(r, s->rec, "tokens", &s->tokens, &s->ctokens, &s->ntokens)))
        return rc;
    const char *lpk = which ? "ref_lp" : "top_lp", *tk = which ? "ref_tail" : "tail";
    if (which && !lrs_get(s->rec, "ref_lp"))
        return lrs_field_err(r, "ref_lp", "missing: the amateur stream must come from lr-infer following the "
                             "expert's stream (follow mode)");
    if ((rc = lrs_get_f32s(r, s->rec, lpk, &s->top_lp, &s->clp, &s->nlp)) ||
        (rc = lrs_get_f32s(r, s->rec, tk, &s->tail, &s->ctail, &s->ntail)))
        return rc;
    if (!which && ((rc = lrs_get_i32s(r, s->rec, "k", &s->k, &s->ck, &s->nk)) ||
                   (rc = lrs_get_i32s(r, s->rec, "top_ids", &s->top_ids, &s->cids, &s->nids))))
        return rc;
    s->nfull = 0;
    if (lrs_get(s->rec, "full") && (rc = lrs_get_f32s(r, s->rec, "full", &s->full, &s->cfull, &s->nfull))) return rc;
    if (s->ntail != s->ntokens)
        return lrs_field_err(r, tk, "%zu entries for %zu tokens", s->ntail, s->ntokens);
    if (!which) {
        if (s->nk != s->ntokens) return lrs_field_err(r, "k", "%zu entries for %zu tokens", s->nk, s->ntokens);
        size_t sum = 0;
        for (size_t t = 0; t < s->nk; t++) {
            if (s->k[t] < 1) return lrs_field_err(r, "k", "step %zu lists %d tokens", t, s->k[t]);
            sum += (size_t)s->k[t];
        }
        if (s->nids != sum || s->nlp != sum)
            return lrs_field_err(r, s->nids != sum ? "top_ids" : "top_lp", "%zu entries, k sums to %zu",
                                 s->nids != sum ? s->nids : s->nlp, sum);
    }
    return 1;
}

static int open_side(side *s, const char *path, int ordered) {
    memset(s, 0, sizeof *s);
    s->prev_idx = -1;
    s->ordered = ordered;
    return lrs_open_read(&s->r, path, "dist");
}

static void free_side(side *s) {
    lrs_close_read(s->r);
    free(s->prompt); free(s->tokens); free(s->k); free(s->top_ids);
    free(s->top_lp); free(s->tail); free(s->full);
}

static int64_t vocab_of(const lrs_header *h) { return h->model.vocab > 0 ? h->model.vocab : h->tokenizer.vocab; }

/* Two tokenizers that differ only in added tokens (tokenizer.h) read the
 * same ids, as the reference implementation lets DeepSeek-R1-Distill-Qwen
 * and Qwen2.5 do: said once, then accepted. Anything else is refused. */
static int compatible_tokenizers(kl_ctx *c) {
    const lrs_header *he = c->he, *ha = c->ha;
    const msgpack_object *se = he->params ? lrs_get(he->params, "tokenizer_compat") : NULL;
    const msgpack_object *sa = ha->params ? lrs_get(ha->params, "tokenizer_compat") : NULL;
    tok_sig ge, ga;
    tok_compat_res r = {.compatible = 0};
    int have = se && sa && !tok_sig_read(se, &ge);
    if (have && tok_sig_read(sa, &ga)) tok_sig_free(&ge), have = 0;
    if (have) {
        tok_sig_compat(&ge, &ga, &r);
        tok_sig_free(&ge), tok_sig_free(&ga);
    } else {
        snprintf(r.what, sizeof r.what, "a header without tokenizer_compat to compare them by");
    }
    if (!r.compatible)
        return lr_err(LR_EINPUT, "%s and %s: tokenizers differ: %s (expert \"%s\" hash %s vocab %" PRId64
                      ", amateur \"%s\" hash %s vocab %" PRId64 "): expert and amateur must read the same ids",
                      c->paths[0], c->paths[1], r.what, he->tokenizer.name, he->tokenizer.hash, he->tokenizer.vocab,
                      ha->tokenizer.name, ha->tokenizer.hash, ha->tokenizer.vocab);
    char ids[160] = "";
    tok_compat_ids(&r, ids, sizeof ids);
    if (r.ndiffer)
        fprintf(stderr, "%s: %s and %s: the tokenizers differ only in added tokens: %" PRId64 " ids (%s) name different "
                "tokens in the two; both streams hold the expert's ids\n", lr_progname, c->paths[0], c->paths[1],
                r.ndiffer, ids);
    return LR_OK;
}

/* The header checks: one tokenizer, known vocabularies, none smaller than
 * the tokenizer's. Sets V = min of the two models' vocabularies. */
static int check_headers(kl_ctx *c) {
    const lrs_header *he = c->he, *ha = c->ha;
    if (!lrs_ident_same(&he->tokenizer, &ha->tokenizer)) {
        int rc = compatible_tokenizers(c);
        if (rc) return rc;
    }
    c->VE = vocab_of(he);
    c->VA = vocab_of(ha);
    if (c->VE <= 0 || c->VA <= 0)
        return lr_err(LR_EINPUT, "%s: header: model.vocab and tokenizer.vocab are both 0: vocabulary size unknown",
                      c->paths[c->VE <= 0 ? 0 : 1]);
    c->V = c->VE < c->VA ? c->VE : c->VA;
    if (he->tokenizer.vocab > 0 && c->V < he->tokenizer.vocab)
        return lr_err(LR_EINPUT, "%s: header: model vocabulary %" PRId64 " is smaller than the tokenizer's %" PRId64
                      ": vocabularies differ", c->paths[c->VE < c->VA ? 0 : 1], c->V, he->tokenizer.vocab);
    return LR_OK;
}

static void pack_params(msgpack_packer *pk, void *ctx) {
    kl_ctx *c = ctx;
    msgpack_pack_map(pk, 6);
    lrs_pack_cstr(pk, "beta"); msgpack_pack_double(pk, c->o->beta);
    lrs_pack_cstr(pk, "select"); lrs_pack_cstr(pk, klj_select_name(c->o->select));
    lrs_pack_cstr(pk, "seed"); msgpack_pack_uint64(pk, c->o->seed);
    lrs_pack_cstr(pk, "vocab"); msgpack_pack_int64(pk, c->V);
    lrs_pack_cstr(pk, "amateur_model");
    msgpack_pack_map(pk, 3);
    lrs_pack_cstr(pk, "name"); lrs_pack_cstr(pk, c->ha->model.name);
    lrs_pack_cstr(pk, "hash"); lrs_pack_cstr(pk, c->ha->model.hash);
    lrs_pack_cstr(pk, "vocab"); msgpack_pack_int64(pk, c->ha->model.vocab);
    lrs_pack_cstr(pk, "expert_params");
    msgpack_pack_object(pk, c->he->params ? *c->he->params : (msgpack_object){.type = MSGPACK_OBJECT_MAP});
}

static int emit(kl_ctx *c, const side *e, const int32_t *ctx, size_t t, const dist_step *s, double kl,
                double err, int exact) {
    msgpack_packer *pk = lrs_pk(c->w);
    const msgpack_object *q = lrs_get(e->rec, "question");
    int has_q = q && q->type == MSGPACK_OBJECT_STR;
    msgpack_pack_map(pk, 14 + has_q);
    lrs_pack_cstr(pk, "id"); msgpack_pack_str(pk, e->idlen); msgpack_pack_str_body(pk, e->id, e->idlen);
    lrs_pack_cstr(pk, "idx"); msgpack_pack_int64(pk, e->idx);
    lrs_pack_cstr(pk, "step"); msgpack_pack_int64(pk, (int64_t)t);
    lrs_pack_cstr(pk, "prompt_len"); msgpack_pack_int64(pk, (int64_t)e->nprompt);
    lrs_pack_cstr(pk, "context"); lrs_pack_i32s(pk, ctx, e->nprompt + t);
    lrs_pack_cstr(pk, "token"); msgpack_pack_int32(pk, e->tokens[t]);
    lrs_pack_cstr(pk, "ids"); lrs_pack_i32s(pk, s->ids, (size_t)s->k);
    lrs_pack_cstr(pk, "lp_e"); lrs_pack_f32s(pk, s->lp_e, (size_t)s->k);
    lrs_pack_cstr(pk, "tail_e"); msgpack_pack_float(pk, s->tail_e);
    lrs_pack_cstr(pk, "lp_a"); lrs_pack_f32s(pk, s->lp_a, (size_t)s->k);
    lrs_pack_cstr(pk, "tail_a"); msgpack_pack_float(pk, s->tail_a);
    lrs_pack_cstr(pk, "kl"); msgpack_pack_double(pk, kl);
    lrs_pack_cstr(pk, "kl_err"); msgpack_pack_double(pk, err);
    lrs_pack_cstr(pk, "exact"); if (exact) msgpack_pack_true(pk); else msgpack_pack_false(pk);
    if (has_q) { lrs_pack_cstr(pk, "question"); msgpack_pack_object(pk, *q); }
    return lrs_record_done(c->w);
}

/* memcmp of n elements; n == 0 is equal even when a buffer is still NULL
 * (an empty array read first leaves it so; memcmp(NULL, ...) is undefined). */
static int same_i32(const int32_t *a, const int32_t *b, size_t n) { return !n || !memcmp(a, b, n * sizeof *a); }

/* Checks that the two records describe the same problem and trace. */
static int check_pair(const kl_ctx *c, const side *e, const side *a) {
    if (e->idlen != a->idlen || memcmp(e->id, a->id, e->idlen))
        return lrs_field_err(a->r, "id", "\"%.*s\" where %s has \"%.*s\" for problem %" PRId64, (int)a->idlen, a->id,
                             c->paths[0], (int)e->idlen, e->id, e->idx);
    if (e->nprompt != a->nprompt || !same_i32(e->prompt, a->prompt, e->nprompt))
        return lrs_field_err(a->r, "prompt", "differs from %s's prompt tokens for problem \"%.*s\"", c->paths[0],
                             (int)e->idlen, e->id);
    if (e->ntokens != a->ntokens || !same_i32(e->tokens, a->tokens, e->ntokens)) {
        size_t t = 0;
        while (t < e->ntokens && t < a->ntokens && e->tokens[t] == a->tokens[t]) t++;
        return lrs_field_err(a->r, "tokens", "differ from %s's tokens for problem \"%.*s\" at step %zu (the amateur "
                             "must follow the expert's stream)", c->paths[0], (int)e->idlen, e->id, t);
    }
    size_t sumk = e->nids;
    if (a->nlp != sumk)
        return lrs_field_err(a->r, "ref_lp", "%zu entries, the expert lists %zu tokens for problem \"%.*s\"", a->nlp,
                             sumk, (int)e->idlen, e->id);
    return LR_OK;
}

static void hist_add(uint32_t *h, double kl) {
    long b = kl <= 0 ? 0 : (long)(kl / KLJ_HBIN);
    h[b < KLJ_HN - 1 ? b : KLJ_HN - 1]++;
}

/* KL selection (METHOD.md step 6): keep KL >= beta. beta 0 keeps every
 * step, also the rare negative KL: truncating a distribution to the smaller
 * vocabulary without renormalising (as the reference does) can make the sum
 * negative when the expert puts mass on the rows the amateur lacks. */
static int selected(const kl_ctx *c, double kl) { return c->o->beta <= 0 || kl >= c->o->beta; }

/* Steps of one problem pair. */
static int do_problem(kl_ctx *c, const side *e, const side *a, int pass, int32_t **ctxbuf, size_t *ctxcap,
                      int32_t *scratch) {
    size_t T = e->ntokens;
    int64_t rowE = 0, rowA = 0;
    int exact = e->nfull && a->nfull;
    if (exact) {
        if (e->nfull % T || a->nfull % T)
            return lrs_field_err(e->nfull % T ? e->r : a->r, "full", "%zu values are not T=%zu rows",
                                 e->nfull % T ? e->nfull : a->nfull, T);
        rowE = (int64_t)(e->nfull / T);
        rowA = (int64_t)(a->nfull / T);
        if (rowE != c->VE || rowA != c->VA)
            return lrs_field_err(rowE != c->VE ? e->r : a->r, "full", "rows of %" PRId64 " values, header vocab %" PRId64,
                                 rowE != c->VE ? rowE : rowA, rowE != c->VE ? c->VE : c->VA);
    }
    if (pass != PASS_COLLECT) {
        if (*ctxcap < e->nprompt + T) {
            *ctxcap = e->nprompt + T;
            *ctxbuf = xrealloc(*ctxbuf, *ctxcap * sizeof(int32_t));
        }
        if (e->nprompt) memcpy(*ctxbuf, e->prompt, e->nprompt * sizeof(int32_t));
        if (T) memcpy(*ctxbuf + e->nprompt, e->tokens, T * sizeof(int32_t));
    }
    size_t off = T ? (size_t)e->k[0] : 0;
    for (size_t t = 1; t < T; off += (size_t)e->k[t], t++) { /* step 0 skipped, as the reference does */
        dist_step s = {e->k[t], e->top_ids + off, e->top_lp + off, a->top_lp + off, e->tail[t], a->tail[t]};
        const char *bad = dist_check(&s, c->VE, scratch);
        if (bad) {
            int am = !strncmp(bad, "amateur", 7);
            const char *field = am ? (strstr(bad, "tail") ? "ref_tail" : "ref_lp")
                                   : strstr(bad, "tail") ? "tail" : strstr(bad, "log-prob") ? "top_lp" : "top_ids";
            return lrs_field_err(am ? a->r : e->r, field, "problem \"%.*s\" step %zu: %s", (int)e->idlen, e->id, t, bad);
        }
        double err = 0, kl = exact ? dist_kl_full(e->full + t * rowE, a->full + t * rowA, c->V)
                                   : dist_kl_compact(&s, c->V, &err);
        int keep;
        if (pass == PASS_COLLECT) {
            if (c->nall == c->capall) {
                c->capall = c->capall ? 2 * c->capall : 4096;
                c->all = xrealloc(c->all, c->capall * sizeof *c->all);
            }
            c->all[c->nall++] = (step_kl){(uint32_t)c->st->problems, (uint32_t)t, kl};
            keep = selected(c, kl);
        } else if (pass == PASS_STREAM) {
            keep = selected(c, kl);
        } else {
            const step_kl *n = c->next_chosen < c->nchosen ? &c->chosen[c->next_chosen] : NULL;
            keep = n && n->prob == c->st->problems && n->step == t;
            c->next_chosen += keep;
        }
        klj_stats *st = c->st;
        st->steps++;
        if (pass != PASS_EMIT) {
            hist_add(st->hist_seen, kl);
            if (kl > st->kl_max) st->kl_max = kl;
            st->undecided += !exact && kl < c->o->beta && kl + err >= c->o->beta;
            st->exact += exact;
        }
        if (keep) {
            st->kept++;
            hist_add(st->hist_kept, kl);
            if (pass != PASS_COLLECT) {
                int rc = emit(c, e, *ctxbuf, t, &s, kl, err, exact);
                if (rc) return rc;
            }
        }
    }
    return LR_OK;
}

/* One pass over the joined streams. */
static int run_pass(kl_ctx *c, int pass) {
    side sd[2];
    const klj_opts *o = c->o;
    klj_stats *st = c->st;
    int rc = open_side(&sd[0], c->paths[0], o->allow_missing);
    if (!rc && (rc = open_side(&sd[1], c->paths[1], o->allow_missing))) free_side(&sd[0]);
    if (rc) return rc;
    int32_t *ctx = NULL, *scratch = NULL;
    size_t ctxcap = 0, scap = 0;
    c->he = lrs_header_of(sd[0].r);
    c->ha = lrs_header_of(sd[1].r);
    st->problems = st->steps = st->kept = st->undecided = st->exact = 0;
    st->only_expert = st->only_amateur = 0;
    st->kl_max = 0;
    c->next_chosen = 0;
    if (pass != PASS_EMIT) memset(st->hist_seen, 0, KLJ_HN * sizeof *st->hist_seen);
    memset(st->hist_kept, 0, KLJ_HN * sizeof *st->hist_kept);
    rc = check_headers(c);
    if (!rc && pass != PASS_COLLECT) {
        lrs_header h;
        lrs_header_init(&h, "kl", 1, "lr-kl", o->argc, o->argv);
        h.model = c->he->model;
        h.tokenizer = c->he->tokenizer;
        h.zstd_level = o->zstd_level;
        rc = lrs_create(&c->w, o->out, &h, pack_params, c);
    }
    int have[2] = {0, 0};
    for (int i = 0; i < 2 && !rc; i++) {
        have[i] = side_next(&sd[i], i);
        if (have[i] > 1) rc = have[i];
    }
    while (!rc && (have[0] || have[1])) {
        int which = -1; /* the side whose current problem the other lacks */
        if (have[0] && have[1] && sd[0].idx == sd[1].idx) {
            if ((rc = check_pair(c, &sd[0], &sd[1]))) break;
            size_t maxk = 0;
            for (size_t t = 0; t < sd[0].nk; t++) maxk = (size_t)sd[0].k[t] > maxk ? (size_t)sd[0].k[t] : maxk;
            if (scap < DIST_CHECK_SCRATCH(maxk)) scratch = xrealloc(scratch, (scap = DIST_CHECK_SCRATCH(maxk)) * sizeof *scratch);
            if ((rc = do_problem(c, &sd[0], &sd[1], pass, &ctx, &ctxcap, scratch))) break;
            st->problems++;
            for (int i = 0; i < 2 && !rc; i++)
                if ((have[i] = side_next(&sd[i], i)) > 1) rc = have[i];
            continue;
        }
        if (!o->allow_missing && have[0] && have[1]) {
            /* a positional join: the two streams hold the same problems in the
             * same order (any order: concatenated shards are fine) */
            rc = lr_err(LR_EINPUT, "%s: record %llu: problem %" PRId64 " (\"%.*s\"), but %s: record %llu: problem %"
                        PRId64 " (\"%.*s\"): a problem is missing from one side or the problem order differs "
                        "(--allow-missing skips problems found on one side only)", c->paths[0],
                        (unsigned long long)lrs_recno(sd[0].r), sd[0].idx, (int)sd[0].idlen, sd[0].id, c->paths[1],
                        (unsigned long long)lrs_recno(sd[1].r), sd[1].idx, (int)sd[1].idlen, sd[1].id);
            break;
        }
        which = !have[1] || (have[0] && sd[0].idx < sd[1].idx) ? 0 : 1;
        if (!o->allow_missing) {
            rc = lr_err(LR_EINPUT, "%s: problem %" PRId64 " (\"%.*s\") is missing from %s (use --allow-missing to "
                        "skip such problems; both streams must list problems in the same order)",
                        c->paths[which], sd[which].idx, (int)sd[which].idlen, sd[which].id, c->paths[!which]);
            break;
        }
        if (which) st->only_amateur++; /* sd[1] holds a problem sd[0] lacks */
        else st->only_expert++;
        if ((have[which] = side_next(&sd[which], which)) > 1) rc = have[which];
    }
    if (!rc && pass == PASS_EMIT && c->next_chosen != c->nchosen)
        rc = lr_err(LR_EINPUT, "%s: inputs changed between the two passes of --select", c->paths[0]);
    if (c->w) {
        if (rc) lrs_abort(c->w);
        else rc = lrs_close(c->w);
        c->w = NULL;
    }
    free_side(&sd[0]); /* frees the headers c->he, c->ha point into */
    free_side(&sd[1]);
    c->he = c->ha = NULL;
    free(ctx);
    free(scratch);
    return rc;
}

static int by_pos(const void *a, const void *b) {
    const step_kl *x = a, *y = b;
    if (x->prob != y->prob) return x->prob < y->prob ? -1 : 1;
    return (x->step > y->step) - (x->step < y->step);
}
static int by_kl(const void *a, const void *b) {
    const step_kl *x = a, *y = b;
    if (x->kl != y->kl) return x->kl < y->kl ? -1 : 1;
    return by_pos(a, b);
}

/* KLJ_RANDOM, KLJ_LOWEST: as many steps as KL selection keeps. */
static void choose(kl_ctx *c, uint64_t n) {
    if (c->o->select == KLJ_RANDOM) {
        uint64_t st = c->o->seed;
        for (size_t i = 0; i < n; i++) { /* partial Fisher-Yates */
            size_t j = i + (size_t)(rng_next(&st) % (c->nall - i));
            step_kl tmp = c->all[i];
            c->all[i] = c->all[j];
            c->all[j] = tmp;
        }
    } else {
        qsort(c->all, c->nall, sizeof *c->all, by_kl);
    }
    qsort(c->all, n, sizeof *c->all, by_pos);
    c->chosen = c->all;
    c->nchosen = n;
}

static int is_file(const char *path) {
    struct stat st;
    return strcmp(path, "-") && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int klj_run(const klj_opts *o, klj_stats *st) {
    memset(st, 0, sizeof *st);
    if (o->select != KLJ_KL && (!is_file(o->expert) || !is_file(o->amateur)))
        return lr_err(LR_EUSAGE, "--select %s reads the inputs twice: give files, not pipes or stdin",
                      klj_select_name(o->select));
    st->hist_seen = xcalloc(KLJ_HN, sizeof *st->hist_seen);
    st->hist_kept = xcalloc(KLJ_HN, sizeof *st->hist_kept);
    kl_ctx c = {.o = o, .paths = {o->expert, o->amateur}, .st = st};
    int rc;
    if (o->select == KLJ_KL) {
        rc = run_pass(&c, PASS_STREAM);
    } else {
        rc = run_pass(&c, PASS_COLLECT);
        if (!rc) {
            choose(&c, st->kept);
            double mx = st->kl_max;
            uint64_t und = st->undecided, ex = st->exact;
            rc = run_pass(&c, PASS_EMIT);
            st->kl_max = mx; /* pass 2 keeps pass 1's KL statistics */
            st->undecided = und;
            st->exact = ex;
        }
    }
    free(c.all);
    return rc;
}

void klj_stats_free(klj_stats *st) {
    free(st->hist_seen);
    free(st->hist_kept);
    st->hist_seen = st->hist_kept = NULL;
}

double klj_quantile(const klj_stats *st, double p) {
    uint64_t need = (uint64_t)ceil(p * (double)st->steps), cum = 0;
    if (need == 0) need = 1;
    for (int b = 0; b < KLJ_HN; b++)
        if ((cum += st->hist_seen[b]) >= need) return b == KLJ_HN - 1 ? st->kl_max : (b + 1) * KLJ_HBIN;
    return st->kl_max;
}

void klj_write_hist(const klj_stats *st, FILE *f) {
    fprintf(f, "kl_lo\tkl_hi\tsteps\tkept\n");
    int last = 0;
    for (int b = 0; b < KLJ_HN; b++)
        if (st->hist_seen[b] || st->hist_kept[b]) last = b;
    const int group = 50; /* 0.05-wide rows */
    for (int g = 0; g <= last / group; g++) {
        uint64_t s = 0, k = 0;
        for (int b = g * group; b < (g + 1) * group && b < KLJ_HN; b++) s += st->hist_seen[b], k += st->hist_kept[b];
        fprintf(f, "%.3f\t%.3f\t%" PRIu64 "\t%" PRIu64 "\n", g * group * KLJ_HBIN, (g + 1) * group * KLJ_HBIN, s, k);
    }
}
