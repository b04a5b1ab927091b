/* lr-kl: METHOD.md stage 1, steps 4 and 6. Joins the expert's `dist` stream
 * with the amateur's (lr-infer follow mode: the amateur read the expert's
 * tokens and recorded its log-probs on the expert's listed tokens), problem
 * by problem and step by step, computes D_KL(pi_E || pi_A) per step t >= 1
 * and keeps the selected steps as `kl` records (docs/FORMATS.md).
 *
 *   lr-kl [options] EXPERT AMATEUR      (either may be "-", not both)
 *
 * Memory: the two streams are read record by record and joined by position:
 * the same problems in the same order (any order: the amateur follows the
 * expert's stream, concatenated shards included); with --allow-missing a
 * merge join by increasing idx instead. Nothing grows
 * with the stream except, for --select random|lowest, 16 bytes per step
 * (problem, step, KL) kept between the two passes those modes need. Those
 * two modes re-read their inputs and therefore need files, not pipes.
 */
#include "method/dist.h"
#include "model/tokenizer.h"
#include "io/stream.h"
#include "base/opt.h"
#include "base/outfile.h"
#include "base/rng.h"
#include "base/util.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-kl [options] EXPERT AMATEUR\n"
            "Joins the expert's dist stream with the amateur's (lr-infer follow mode) and\n"
            "writes one `kl` record per selected step t >= 1 (METHOD.md stage 1, step 6):\n"
            "D_KL(pi_E || pi_A) over the full vocabulary with eps 1e-12, vocabularies\n"
            "truncated to the smaller. EXPERT or AMATEUR may be - (stdin).\n"
            "\n"
            "  --beta B          keep steps with KL >= B (default 0.4; 0 keeps every step)\n"
            "  --select MODE     kl (default): KL >= beta;\n"
            "                    random: as many steps as `kl` keeps, uniformly at random;\n"
            "                    lowest: as many steps, those with the lowest KL\n"
            "                    (random and lowest read the inputs twice: files only)\n"
            "  --seed N          seed for --select random (default 1)\n"
            "  --allow-missing   skip problems present in one stream only (and count them)\n"
            "  --stats FILE      write the KL histogram as TSV (kl_lo kl_hi steps kept)\n"
            "  -o, --output F    output stream (default stdout)\n"
            "  --zstd-level N    compression level of the output, 1..19 (default 1: the kl\n"
            "                    stream is an intermediate; 1 costs a third of level 3's\n"
            "                    time for a few %% more bytes)\n"
            "  -q, --quiet       no summary on stderr\n"
            "  -h, --help        this help\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error.\n");
}

enum { SEL_KL, SEL_RANDOM, SEL_LOWEST };
enum { PASS_STREAM, PASS_COLLECT, PASS_EMIT };

/* Histogram for quantiles in bounded memory: bins of 1e-3 up to HMAX. */
#define HBIN 1e-3
#define HMAX 64.0
#define HN ((int)(HMAX / HBIN) + 1)

typedef struct {
    uint32_t prob, step;
    double kl;
} step_kl;

typedef struct {
    const char *out, *stats, *paths[2];
    double beta;
    int select, allow_missing, quiet, zstd_level;
    uint64_t seed;
    int argc;
    char **argv;
    /* counters */
    uint64_t problems, steps, kept, missing[2], undecided, exact;
    double kl_max;
    uint32_t *hist_seen, *hist_kept;
    /* --select random|lowest */
    step_kl *all;
    size_t nall, capall;
    step_kl *chosen;
    size_t nchosen, next_chosen;
    /* output */
    lrs_writer *w;
    int64_t V, VE, VA;
    const lrs_header *he, *ha;
} kl_ctx;

/* One side's current record, decoded into reusable buffers. */
typedef struct {
    lrs_reader *r;
    const msgpack_object *rec;
    int64_t idx, prev_idx;
    int ordered; /* --allow-missing: idx must increase (a merge join) */
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
    static const char *sel[] = {"kl", "random", "lowest"};
    msgpack_pack_map(pk, 6);
    lrs_pack_cstr(pk, "beta"); msgpack_pack_double(pk, c->beta);
    lrs_pack_cstr(pk, "select"); lrs_pack_cstr(pk, sel[c->select]);
    lrs_pack_cstr(pk, "seed"); msgpack_pack_uint64(pk, c->seed);
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
    long b = kl <= 0 ? 0 : (long)(kl / HBIN);
    h[b < HN - 1 ? b : HN - 1]++;
}

/* KL selection (METHOD.md step 6): keep KL >= beta. beta 0 keeps every
 * step, also the rare negative KL: truncating a distribution to the smaller
 * vocabulary without renormalising (as the reference does) can make the sum
 * negative when the expert puts mass on the rows the amateur lacks. */
static int selected(const kl_ctx *c, double kl) { return c->beta <= 0 || kl >= c->beta; }

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
            c->all[c->nall++] = (step_kl){(uint32_t)c->problems, (uint32_t)t, kl};
            keep = selected(c, kl);
        } else if (pass == PASS_STREAM) {
            keep = selected(c, kl);
        } else {
            const step_kl *n = c->next_chosen < c->nchosen ? &c->chosen[c->next_chosen] : NULL;
            keep = n && n->prob == c->problems && n->step == t;
            c->next_chosen += keep;
        }
        c->steps++;
        if (pass != PASS_EMIT) {
            hist_add(c->hist_seen, kl);
            if (kl > c->kl_max) c->kl_max = kl;
            c->undecided += !exact && kl < c->beta && kl + err >= c->beta;
            c->exact += exact;
        }
        if (keep) {
            c->kept++;
            hist_add(c->hist_kept, kl);
            if (pass != PASS_COLLECT) {
                int rc = emit(c, e, *ctxbuf, t, &s, kl, err, exact);
                if (rc) return rc;
            }
        }
    }
    return LR_OK;
}

static int is_file(const char *path) {
    struct stat st;
    return strcmp(path, "-") && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* One pass over the joined streams. */
static int run_pass(kl_ctx *c, int pass) {
    side sd[2];
    int rc = open_side(&sd[0], c->paths[0], c->allow_missing);
    if (!rc && (rc = open_side(&sd[1], c->paths[1], c->allow_missing))) free_side(&sd[0]);
    if (rc) return rc;
    int32_t *ctx = NULL, *scratch = NULL;
    size_t ctxcap = 0, scap = 0;
    c->he = lrs_header_of(sd[0].r);
    c->ha = lrs_header_of(sd[1].r);
    c->problems = c->steps = c->kept = c->undecided = c->exact = 0;
    c->missing[0] = c->missing[1] = 0;
    c->kl_max = 0;
    c->next_chosen = 0;
    if (pass != PASS_EMIT) {
        memset(c->hist_seen, 0, HN * sizeof *c->hist_seen);
    }
    memset(c->hist_kept, 0, HN * sizeof *c->hist_kept);
    rc = check_headers(c);
    if (!rc && pass != PASS_COLLECT) {
        lrs_header h;
        lrs_header_init(&h, "kl", 1, "lr-kl", c->argc, c->argv);
        h.model = c->he->model;
        h.tokenizer = c->he->tokenizer;
        h.zstd_level = c->zstd_level;
        rc = lrs_create(&c->w, c->out, &h, pack_params, c);
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
            c->problems++;
            for (int i = 0; i < 2 && !rc; i++)
                if ((have[i] = side_next(&sd[i], i)) > 1) rc = have[i];
            continue;
        }
        if (!c->allow_missing && have[0] && have[1]) {
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
        if (!c->allow_missing) {
            rc = lr_err(LR_EINPUT, "%s: problem %" PRId64 " (\"%.*s\") is missing from %s (use --allow-missing to "
                        "skip such problems; both streams must list problems in the same order)",
                        c->paths[which], sd[which].idx, (int)sd[which].idlen, sd[which].id, c->paths[!which]);
            break;
        }
        c->missing[!which]++;
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

/* --select random|lowest: as many steps as KL selection keeps. */
static void choose(kl_ctx *c, uint64_t n) {
    if (c->select == SEL_RANDOM) {
        uint64_t st = c->seed;
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

static double quantile(const kl_ctx *c, double p) {
    uint64_t need = (uint64_t)ceil(p * (double)c->steps), cum = 0;
    if (need == 0) need = 1;
    for (int b = 0; b < HN; b++)
        if ((cum += c->hist_seen[b]) >= need) return b == HN - 1 ? c->kl_max : (b + 1) * HBIN;
    return c->kl_max;
}

static int write_stats(const kl_ctx *c) {
    lr_out *o;
    FILE *f;
    int rc = out_open(&o, c->stats, 0, &f);
    if (rc) return rc;
    fprintf(f, "kl_lo\tkl_hi\tsteps\tkept\n");
    int last = 0;
    for (int b = 0; b < HN; b++)
        if (c->hist_seen[b] || c->hist_kept[b]) last = b;
    const int group = 50; /* 0.05-wide rows */
    for (int g = 0; g <= last / group; g++) {
        uint64_t s = 0, k = 0;
        for (int b = g * group; b < (g + 1) * group && b < HN; b++) s += c->hist_seen[b], k += c->hist_kept[b];
        fprintf(f, "%.3f\t%.3f\t%" PRIu64 "\t%" PRIu64 "\n", g * group * HBIN, (g + 1) * group * HBIN, s, k);
    }
    return out_commit(&o);
}

int main(int argc, char **argv) {
    lr_progname = "lr-kl";
    /* Into a pipe (lr-kl | lr-contrast): a pipe buffer that holds a whole
     * ~1 MiB frame lets lr-kl run on instead of waiting for each 64 KiB to
     * drain (best effort: the kernel may refuse the size). */
    struct stat st;
    if (fstat(1, &st) == 0 && S_ISFIFO(st.st_mode)) (void)fcntl(1, F_SETPIPE_SZ, 1 << 20);
    kl_ctx c = {.out = "-", .beta = DIST_BETA, .seed = 1, .zstd_level = 1, .argc = argc, .argv = argv};
    static const struct option opts[] = {
        {"beta", required_argument, 0, 'b'}, {"select", required_argument, 0, 's'},
        {"seed", required_argument, 0, 'S'}, {"allow-missing", no_argument, 0, 'm'},
        {"stats", required_argument, 0, 't'}, {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
        {"zstd-level", required_argument, 0, 'Z'},
        {0, 0, 0, 0},
    };
    int o;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((o = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (o) {
        case 'b':
            if (opt_double("--beta", optarg, 0, 1e300, &c.beta)) return lr_fail(LR_EUSAGE);
            break;
        case 's':
            if (!strcmp(optarg, "kl")) c.select = SEL_KL;
            else if (!strcmp(optarg, "random")) c.select = SEL_RANDOM;
            else if (!strcmp(optarg, "lowest")) c.select = SEL_LOWEST;
            else lr_die(LR_EUSAGE, "--select: expected kl, random or lowest, got \"%s\"", optarg);
            break;
        case 'S':
            if (opt_u64("--seed", optarg, &c.seed)) return lr_fail(LR_EUSAGE);
            break;
        case 'm': c.allow_missing = 1; break;
        case 't': c.stats = optarg; break;
        case 'o': c.out = optarg; break;
        case 'q': c.quiet = 1; break;
        case 'Z':
            if (opt_int("--zstd-level", optarg, LRS_ZSTD_MIN, LRS_ZSTD_MAX, &c.zstd_level)) return lr_fail(LR_EUSAGE);
            break;
        case 'h': usage(stdout); return 0;
        default: lr_die(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (argc - optind != 2) {
        lr_die(LR_EUSAGE, "expected two inputs, EXPERT and AMATEUR (see --help)");
    }
    c.paths[0] = argv[optind];
    c.paths[1] = argv[optind + 1];
    if (!strcmp(c.paths[0], "-") && !strcmp(c.paths[1], "-")) lr_die(LR_EUSAGE, "EXPERT and AMATEUR cannot both be stdin");
    if (out_check_inputs(c.out, c.paths, 2) || (c.stats && out_check_inputs(c.stats, c.paths, 2)))
        return lr_fail(LR_EUSAGE);
    if (c.stats && !strcmp(c.stats, c.out)) lr_die(LR_EUSAGE, "--stats and -o name the same file");
    if (c.select != SEL_KL && (!is_file(c.paths[0]) || !is_file(c.paths[1])))
        lr_die(LR_EUSAGE, "--select %s reads the inputs twice: give files, not pipes or stdin",
               c.select == SEL_RANDOM ? "random" : "lowest");
    c.hist_seen = xcalloc(HN, sizeof *c.hist_seen);
    c.hist_kept = xcalloc(HN, sizeof *c.hist_kept);
    int rc;
    uint64_t target = 0;
    if (c.select == SEL_KL) {
        rc = run_pass(&c, PASS_STREAM);
    } else {
        rc = run_pass(&c, PASS_COLLECT);
        if (!rc) {
            target = c.kept;
            choose(&c, target);
            double mx = c.kl_max;
            uint64_t und = c.undecided, ex = c.exact;
            rc = run_pass(&c, PASS_EMIT);
            c.kl_max = mx; /* pass 2 keeps pass 1's KL statistics */
            c.undecided = und;
            c.exact = ex;
        }
    }
    if (!rc && c.stats) rc = write_stats(&c);
    if (!rc && !c.quiet) {
        fprintf(stderr,
                "lr-kl: %" PRIu64 " problems, %" PRIu64 " steps seen (t >= 1), %" PRIu64 " kept (%.2f%%, select %s, "
                "beta %g); KL p50 %.3f p90 %.3f p99 %.3f max %.4f",
                c.problems, c.steps, c.kept, c.steps ? 100.0 * (double)c.kept / (double)c.steps : 0.0,
                c.select == SEL_KL ? "kl" : c.select == SEL_RANDOM ? "random" : "lowest", c.beta,
                quantile(&c, 0.5), quantile(&c, 0.9), quantile(&c, 0.99), c.kl_max);
        if (c.allow_missing)
            fprintf(stderr, "; missing: %" PRIu64 " only in %s, %" PRIu64 " only in %s", c.missing[1], c.paths[0],
                    c.missing[0], c.paths[1]);
        fprintf(stderr, "; %" PRIu64 " exact (full rows), %" PRIu64 " undecided by the compact tails\n", c.exact,
                c.undecided);
    }
    free(c.hist_seen);
    free(c.hist_kept);
    free(c.all);
    return rc ? lr_fail(rc) : 0;
}
