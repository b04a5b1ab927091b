/* lr-infer: run one model over problems and record its next-token
 * distribution at every step (METHOD.md stage 1, steps 1-3).
 *
 *   generate mode (the expert): prompt each problem with a preset, generate
 *     (greedy by default), record the compact distribution of every step;
 *   follow mode (the amateur, --follow STREAM): teacher-force the exact
 *     prompt + generated ids of another lr-infer stream and record this
 *     model's log-probs of the tokens that stream listed, plus its own list.
 *
 * Output: a `dist` stream (docs/FORMATS.md), one record per problem, written
 * in input order; with -o FILE an interrupted run resumes where it stopped.
 */
#include "eval/benchdata.h"
#include "infer/compact.h"
#include "infer/engine.h"
#include "nn/forward.h"
#include "infer/gpu.h"
#include "model/lora.h"
#include "model/merge.h"
#include "model/model.h"
#include "io/progress.h"
#include "model/prompt.h"
#include "io/stream.h"
#include "model/tokenizer.h"
#include "base/util.h"

#include <cblas.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model_dir, *adapter, *data, *layout, *field, *id_field, *preset, *prompt_file, *follow, *out;
    int max_new, limit, shard_k, shard_n, batch, full, progress, threads, kmax, max_context, zstd_level;
    const char *device;
    double temperature, top_p, mass;
    uint64_t seed;
    int extra_eos[16], n_extra_eos;
    const char *extra_eos_str[16];
    int argc;
    char **argv;
} opts;

/* One problem in flight and the record being built for it. */
typedef struct {
    char *id, *question;
    long idx;
    int32_t *prompt;
    size_t nprompt;
    /* generated / followed tokens and per-step compact lists */
    int32_t *tokens, *k, *ids;
    float *lp, *tail;
    size_t T, nids, cap_T, cap_ids;
    /* follow mode: the followed stream's lists, and our log-probs of them */
    int32_t *fk, *fids;
    size_t nf, *foff;          /* foff[t]: start of step t's list in fids */
    float *ref_lp, *ref_tail;
    float *full;               /* (T, V) with --full */
    char *text;                /* decoded tokens (generate mode) */
    const char *finish;
    uint64_t rng;
    int failed;
} problem;

static void usage(FILE *f) {
    fprintf(f,
        "usage: lr-infer --model DIR [options] [--data FILE | --follow STREAM] [-o OUT]\n"
        "Runs a Hugging Face model folder over problems and writes a `dist` stream:\n"
        "every step's token and the model's compact next-token distribution.\n"
        "\n"
        "  --adapter DIR          a PEFT LoRA adapter (lr-tune output) folded into the\n"
        "                         weights at load time; the header's model identity\n"
        "                         then covers base + adapter\n"
        "Generate mode (default): problems are JSON lines (FILE or stdin).\n"
        "  --data FILE            problems file (default stdin); the layouts of data/ are\n"
        "                         known (gsm8k, math500, svamp, asdiv, minerva_math,\n"
        "                         olympiadbench, mmlu_stem), guessed from the path\n"
        "  --layout NAME          force a known layout\n"
        "  --field NAME           any JSON lines file: the question is this string field\n"
        "  --id-field NAME        ... and the problem id this one (default: file stem:line),\n"
        "                         e.g. `lr-eval prompts` output: --field prompt --id-field id\n"
        "                         --preset raw\n"
        "  --preset NAME          prompt preset: lightreasoner (default), qwen25-math-cot, raw,\n"
        "                         or toolkit: the Qwen2.5-Math toolkit's prompt for the\n"
        "                         benchmark read (5-shot for mmlu_stem), for evaluation\n"
        "  --prompt-file F        a template file with {question} instead of a preset\n"
        "  --max-new-tokens N     default 128\n"
        "  --temperature X        0 (default) = greedy; > 0 samples\n"
        "  --top-p X              nucleus sampling mass (default 1)\n"
        "  --seed N               sampling seed (default 0); each problem's draw depends\n"
        "                         only on the seed and its index, not on batching\n"
        "  --eos TOKEN            also stop at this token (repeatable), e.g. '<|im_end|>'\n"
        "  --limit N              only the first N problems of the input\n"
        "  --shard K/N            only problems whose index is K mod N (outputs concatenate)\n"
        "Follow mode:\n"
        "  --follow STREAM        teacher-force the prompt + tokens of every record of\n"
        "                         STREAM (a dist stream, '-' = stdin) and record this\n"
        "                         model's log-probs of the tokens STREAM listed\n"
        "Distribution recorded at each step:\n"
        "  --top-mass X           list the most probable tokens until they cover X of the\n"
        "                         probability (default 0.99999) ...\n"
        "  --top-k-max N          ... but at most N of them (default 256; 32 in follow mode,\n"
        "                         where this model's own list is informational: the KL\n"
        "                         uses its log-probs of the followed list); the rest is\n"
        "                         the step's tail mass\n"
        "  --full                 also record whole-vocabulary log-probs (large; for checks)\n"
        "Running:\n"
        "  -o, --output FILE      write here (default stdout); rerunning with the same FILE\n"
        "                         resumes after the last complete problem\n"
        "  --batch N              problems per forward pass (default 8 on cpu, 64 on cuda)\n"
        "  --threads N            CPU threads (default: all cores)\n"
        "  --device D             cpu, cuda or auto (default): cuda when a GPU is present.\n"
        "                         On cuda the weights are bf16 on the device (from the\n"
        "                         checkpoint, or rounded from float32 after --adapter),\n"
        "                         and the lists are extracted there; --top-k-max <= 1024\n"
        "  --zstd-level N         compression level of the output stream, 1..19 (default 3)\n"
        "  --progress             progress bar on stderr even when it is not a terminal\n"
        "  -h, --help             this help\n"
        "Exit codes: 0 ok, 1 usage, 2 bad input (a bad problem is reported, skipped, and\n"
        "makes the exit code 2 after the others are written), 3 I/O, 4 GPU.\n");
}

/* ---------------------------------------------------------------- */
/* problems                                                          */

typedef struct {
    bd_reader *bd;            /* a known benchmark layout */
    FILE *f;                  /* --field: any JSON lines */
    const char *path, *field, *id_field;
    char *stem;
    long line;
} source;

static int source_open(source *s, const opts *o) {
    memset(s, 0, sizeof *s);
    s->path = o->data ? o->data : "-";
    s->field = o->field;
    s->id_field = o->id_field;
    if (o->field) {
        s->f = strcmp(s->path, "-") ? fopen(s->path, "rb") : stdin;
        if (!s->f) return lr_err(LR_EIO, "%s: cannot open", s->path);
        const char *b = strrchr(s->path, '/');
        s->stem = xstrdup(b ? b + 1 : s->path);
        char *dot = strrchr(s->stem, '.');
        if (dot) *dot = 0;
        return LR_OK;
    }
    if (!strcmp(s->path, "-") && !o->layout)
        return lr_err(LR_EUSAGE, "problems on stdin need --layout NAME or --field NAME");
    return bd_open(s->path, o->layout, &s->bd);
}

/* Next problem: 1 and (id, question, idx); 0 at the end; an error code for an
 * unreadable input. A row without a question gives *bad = 1 with the
 * message set (the caller reports it and goes on). */
static int source_next(source *s, char **id, char **question, long *idx, int *bad) {
    *bad = 0;
    if (s->bd) {
        bd_item it;
        int rc = bd_next(s->bd, &it);
        if (rc == -1) return 0;
        if (rc == LR_EINPUT) { *bad = 1; *idx = -1; return 1; }
        if (rc) return rc;
        *id = xstrdup(it.id);
        *question = xstrdup(it.question);
        *idx = (long)it.line;
        bd_item_free(&it);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    *id = *question = NULL;
    for (;;) {
        ssize_t n = getline(&line, &cap, s->f);
        if (n < 0) {
            free(line);
            return ferror(s->f) ? lr_err(LR_EIO, "%s: read error", s->path) : 0;
        }
        long ln = s->line++;
        if (n <= 1) continue;
        json_error_t je;
        json_t *v = json_loadb(line, n, 0, &je);
        const json_t *q = v ? json_object_get(v, s->field) : NULL;
        *idx = ln;
        if (!v) lr_err(LR_EINPUT, "%s: line %ld: malformed JSON: %s", s->path, ln + 1, je.text);
        else if (!json_is_string(q))
            lr_err(LR_EINPUT, "%s: line %ld: field \"%s\": missing or not a string", s->path, ln + 1, s->field);
        else if (s->id_field && !json_is_string(json_object_get(v, s->id_field)))
            lr_err(LR_EINPUT, "%s: line %ld: field \"%s\": missing or not a string", s->path, ln + 1, s->id_field);
        else {
            char buf[600];
            snprintf(buf, sizeof buf, "%s:%ld", s->stem, ln);
            *id = xstrdup(s->id_field ? json_string_value(json_object_get(v, s->id_field)) : buf);
            *question = xstrdup(json_string_value(q));
        }
        *bad = !*question;
        json_decref(v);
        free(line);
        return 1;
    }
}

static void source_close(source *s) {
    if (s->bd) bd_close(s->bd);
    if (s->f && s->f != stdin) fclose(s->f);
    free(s->stem);
}

/* ---------------------------------------------------------------- */
/* record building                                                   */

static void grow_steps(problem *p, size_t need_T, size_t need_ids, int full_V) {
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

static void problem_clear(problem *p) {
    free(p->id), free(p->question), free(p->prompt), free(p->tokens), free(p->k), free(p->ids);
    free(p->lp), free(p->tail), free(p->fk), free(p->fids), free(p->foff), free(p->ref_lp), free(p->ref_tail), free(p->full), free(p->text);
    memset(p, 0, sizeof *p);
}

/* Records step t of p from wanted row g of an engine call: this model's
 * own list (appended to p->ids), in follow mode its log-probs of the
 * followed list of step t (gathered by the engine into res->glps at
 * goff[g]), and with --full the whole log-softmax from the logits row.
 * Returns nonzero for NaN/inf logits (the problem fails). */
static int record_step(problem *p, size_t t, const eng_res *res, const size_t *goff, size_t g, int V, int kmax,
                       int full) {
    if (res->bad[g]) return 1;
    int k = res->k[g];
    grow_steps(p, t + 1, p->nids + (size_t)k, full ? V : 0);
    memcpy(p->ids + p->nids, res->ids + g * (size_t)kmax, (size_t)k * sizeof *p->ids);
    memcpy(p->lp + p->nids, res->lps + g * (size_t)kmax, (size_t)k * sizeof *p->lp);
    p->tail[t] = res->tail[g];
    p->k[t] = k;
    p->nids += (size_t)k;
    if (p->fk) {
        memcpy(p->ref_lp + p->foff[t], res->glps + goff[g], (size_t)p->fk[t] * sizeof *p->ref_lp);
        p->ref_tail[t] = res->gtail[g];
    }
    if (full) cd_log_softmax(p->full + t * (size_t)V, res->logits + g * (size_t)V, V);
    return 0;
}

static void write_record(lrs_writer *w, const problem *p, int V, int full) {
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

/* ---------------------------------------------------------------- */
/* sampling                                                          */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const float *cmp_row;
static int by_logit_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (cmp_row[i] != cmp_row[j]) return cmp_row[i] > cmp_row[j] ? -1 : 1;
    return i - j;
}

/* Temperature + nucleus sampling, as transformers' generate does it:
 * logits / T, then keep the smallest set of top tokens whose mass reaches
 * top_p, renormalise, draw. */
static int sample(const float *row, int V, double temp, double top_p, uint64_t *rng, int *order, double *pr) {
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, row[i] / temp);
    for (int i = 0; i < V; i++) z += pr[i] = exp(row[i] / temp - mx);
    int n = V;
    if (top_p < 1) {
        for (int i = 0; i < V; i++) order[i] = i;
        cmp_row = row;
        qsort(order, V, sizeof *order, by_logit_desc);
        double c = 0;
        for (n = 0; n < V && c < top_p * z;) c += pr[order[n++]];
        z = c;
    }
    double u = (double)(splitmix(rng) >> 11) / 9007199254740992.0 * z, c = 0;
    for (int j = 0; j < n; j++) {
        int i = top_p < 1 ? order[j] : j;
        c += pr[i];
        if (u < c) return i;
    }
    return top_p < 1 ? order[n - 1] : V - 1;
}

/* ---------------------------------------------------------------- */
/* the two modes                                                     */

typedef struct {
    const opts *o;
    model m;
    tok_t *tok;
    engine e;
    cd_opts co;
    int *order;
    double *pr;
    /* one engine call's results, for up to res_rows wanted rows */
    eng_res res;
    size_t res_rows, glps_cap;
    size_t *goff;           /* (res_rows + 1) follow mode's gather offsets */
    int32_t *gids;
    size_t gids_cap;
    int eos[MCFG_MAX_EOS + 16], neos;
    /* resume: indices already in the output */
    unsigned char *done;
    size_t ndone_cap;
    long failed, written;
    lr_progress prog;
    bd_layout layout;       /* of a benchmark input, for --preset toolkit */
} ctx;

static int is_done(const ctx *c, long idx) { return idx >= 0 && (size_t)idx < c->ndone_cap && c->done[idx]; }

static int note_done(const msgpack_object *rec, void *arg) {
    ctx *c = arg;
    const msgpack_object *v = lrs_get(rec, "idx");
    long idx = v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long)v->via.u64 : -1;
    if (idx < 0) return lr_err(LR_EINPUT, "resume: a record without a valid idx");
    if ((size_t)idx >= c->ndone_cap) {
        size_t n = (size_t)idx * 2 + 64;
        c->done = xrealloc(c->done, n);
        memset(c->done + c->ndone_cap, 0, n - c->ndone_cap);
        c->ndone_cap = n;
    }
    c->done[idx] = 1;
    return 0;
}

static void fail(ctx *c, problem *p, const char *fmt, const char *detail) {
    fprintf(stderr, "%s: %s: ", lr_progname, p->id ? p->id : "?");
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    p->failed = 1;
    c->failed++;
}

/* The logits rows themselves are needed on the host only to sample and for
 * --full; otherwise the engine's per-row results are all lr-infer uses. */
static int need_logits(const opts *o) { return o->temperature > 0 || o->full; }

/* Room for `rows` wanted rows (and their logits when the run needs them:
 * sampling or --full) and `ng` gathered ids. */
static void ensure_res(ctx *c, size_t rows, size_t ng) {
    size_t K = (size_t)c->co.kmax, V = (size_t)c->m.cfg.V;
    eng_res *r = &c->res;
    if (rows > c->res_rows) {
        r->k = xrealloc(r->k, rows * sizeof *r->k);
        r->ids = xrealloc(r->ids, rows * K * sizeof *r->ids);
        r->lps = xrealloc(r->lps, rows * K * sizeof *r->lps);
        r->tail = xrealloc(r->tail, rows * sizeof *r->tail);
        r->gtail = xrealloc(r->gtail, rows * sizeof *r->gtail);
        r->argmax = xrealloc(r->argmax, rows * sizeof *r->argmax);
        r->bad = xrealloc(r->bad, rows);
        if (need_logits(c->o)) r->logits = xrealloc(r->logits, rows * V * sizeof *r->logits);
        c->goff = xrealloc(c->goff, (rows + 1) * sizeof *c->goff);
        c->res_rows = rows;
    }
    if (ng > c->glps_cap) {
        r->glps = xrealloc(r->glps, ng * sizeof *r->glps);
        c->gids = xrealloc(c->gids, ng * sizeof *c->gids);
        c->glps_cap = ng;
    }
}

static eng_req make_req(const ctx *c, int gather) {
    return (eng_req){.co = c->co, .gids = gather ? c->gids : NULL, .goff = gather ? c->goff : NULL,
                     .logits = need_logits(c->o)};
}

/* Generates for n problems at once (slots 0..n-1). */
static int generate_batch(ctx *c, problem *ps, int n) {
    const opts *o = c->o;
    int V = c->m.cfg.V;
    eng_reset(&c->e, -1);
    int *slot = xmalloc(n * sizeof *slot), *tok = xmalloc(n * sizeof *tok);
    size_t total = 0;
    int na = 0;
    for (int b = 0; b < n; b++)
        if (!ps[b].failed) total += ps[b].nprompt, slot[na++] = b;
    /* prefill: every prompt, logits of each prompt's last row */
    int *rows_tok = xmalloc(total * sizeof *rows_tok), *rows_seq = xmalloc(total * sizeof *rows_seq);
    unsigned char *want = xmalloc(total);
    size_t r = 0;
    for (int a = 0; a < na; a++) {
        problem *p = &ps[slot[a]];
        for (size_t i = 0; i < p->nprompt; i++, r++) {
            rows_tok[r] = p->prompt[i];
            rows_seq[r] = slot[a];
            want[r] = i + 1 == p->nprompt;
        }
    }
    ensure_res(c, (size_t)n, 0);
    eng_req q = make_req(c, 0);
    int rc = na ? eng_run(&c->e, (int)total, rows_tok, rows_seq, want, &q, &c->res) : 0;
    free(rows_tok), free(rows_seq), free(want);
    for (int t = 0; !rc && na > 0; t++) {
        /* logits row a belongs to problem slot[a] */
        int keep = 0;
        for (int a = 0; a < na; a++) {
            problem *p = &ps[slot[a]];
            if (record_step(p, p->T, &c->res, NULL, (size_t)a, V, c->co.kmax, o->full)) {
                fail(c, p, "%s", "NaN or infinite logits; problem skipped");
                continue;
            }
            int next = o->temperature > 0 ? sample(c->res.logits + (size_t)a * V, V, o->temperature, o->top_p,
                                                   &p->rng, c->order, c->pr)
                                          : c->res.argmax[a];
            p->tokens[p->T++] = next;
            c->prog.tokens++;
            int stop = 0;
            for (int e = 0; e < c->neos; e++) stop |= next == c->eos[e];
            if (stop) { p->finish = "eos"; continue; }
            if ((int)p->T >= o->max_new) { p->finish = "length"; continue; }
            slot[keep] = slot[a];
            tok[keep++] = next;
        }
        na = keep;
        if (na) rc = eng_run(&c->e, na, tok, slot, NULL, &q, &c->res);
    }
    free(slot), free(tok);
    return rc;
}

/* Teacher-forces n followed problems (slots 0..n-1). The rows predicting
 * tokens[t] are the last prompt row (t = 0) and token rows 0..T-2; they are
 * fed as a prompt chunk, then chunks of CH tokens per problem, so that at
 * most n * CH rows are wanted at once. Each wanted row gathers this model's
 * log-probs of the followed list of its step. */
static int follow_batch(ctx *c, problem *ps, int n) {
    const opts *o = c->o;
    int V = c->m.cfg.V;
    enum { CH = 64 };
    eng_reset(&c->e, -1);
    size_t total = 0, maxT = 0;
    for (int b = 0; b < n; b++) {
        if (ps[b].failed) continue;
        total += ps[b].nprompt;
        if (ps[b].T > maxT) maxT = ps[b].T;
    }
    size_t cap = total > (size_t)n * CH ? total : (size_t)n * CH;
    int *rt = xmalloc(cap * sizeof *rt), *rs = xmalloc(cap * sizeof *rs);
    size_t *rstep = xmalloc(cap * sizeof *rstep); /* the step a wanted row predicts */
    unsigned char *want = xmalloc(cap);
    int rc = 0;
    /* lo = -1: the prompt chunk; then tokens lo .. lo+CH-1 (only < T-1) */
    for (long lo = -1; !rc && (lo < 0 || (size_t)lo + 1 < maxT); lo = lo < 0 ? 0 : lo + CH) {
        size_t r = 0, G = 0, ng = 0;
        for (int b = 0; b < n; b++) {
            problem *p = &ps[b];
            if (p->failed) continue;
            if (lo < 0)
                for (size_t i = 0; i < p->nprompt; i++, r++)
                    rt[r] = p->prompt[i], rs[r] = b, rstep[r] = 0, want[r] = i + 1 == p->nprompt && p->T > 0;
            else
                for (size_t i = (size_t)lo; i < (size_t)lo + CH && i + 1 < p->T; i++, r++)
                    rt[r] = p->tokens[i], rs[r] = b, rstep[r] = i + 1, want[r] = 1;
        }
        if (r == 0) continue;
        for (size_t i = 0; i < r; i++)
            if (want[i]) G++, ng += (size_t)ps[rs[i]].fk[rstep[i]];
        ensure_res(c, G, ng);
        G = 0, c->goff[0] = 0;
        for (size_t i = 0; i < r; i++) {
            if (!want[i]) continue;
            const problem *p = &ps[rs[i]];
            size_t k = (size_t)p->fk[rstep[i]];
            memcpy(c->gids + c->goff[G], p->fids + p->foff[rstep[i]], k * sizeof *c->gids);
            c->goff[G + 1] = c->goff[G] + k;
            G++;
        }
        eng_req q = make_req(c, 1);
        rc = eng_run(&c->e, (int)r, rt, rs, want, &q, &c->res);
        size_t g = 0;
        for (size_t i = 0; !rc && i < r; i++) {
            if (!want[i]) continue;
            problem *p = &ps[rs[i]];
            size_t gi = g++;
            if (p->failed) continue;
            if (record_step(p, rstep[i], &c->res, c->goff, gi, V, c->co.kmax, o->full))
                fail(c, p, "%s", "NaN or infinite logits; problem skipped");
            else
                c->prog.tokens++;
        }
    }
    free(rt), free(rs), free(rstep), free(want);
    return rc;
}

/* ---------------------------------------------------------------- */
/* driver                                                            */

static void pack_params(msgpack_packer *pk, void *arg) {
    const opts *o = arg;
    char shard[32];
    snprintf(shard, sizeof shard, "%d/%d", o->shard_k, o->shard_n);
    msgpack_pack_map(pk, 11);
    lrs_pack_cstr(pk, "device"); lrs_pack_cstr(pk, o->device);
    lrs_pack_cstr(pk, "mode"); lrs_pack_cstr(pk, o->follow ? "follow" : "generate");
    lrs_pack_cstr(pk, "input"); lrs_pack_cstr(pk, o->follow ? o->follow : o->data ? o->data : "-");
    lrs_pack_cstr(pk, "preset"); lrs_pack_cstr(pk, o->prompt_file ? o->prompt_file : o->preset);
    lrs_pack_cstr(pk, "max_new_tokens"); msgpack_pack_int(pk, o->max_new);
    lrs_pack_cstr(pk, "temperature"); msgpack_pack_double(pk, o->temperature);
    lrs_pack_cstr(pk, "top_p"); msgpack_pack_double(pk, o->top_p);
    lrs_pack_cstr(pk, "seed"); msgpack_pack_uint64(pk, o->seed);
    lrs_pack_cstr(pk, "top_mass"); msgpack_pack_double(pk, o->mass);
    lrs_pack_cstr(pk, "top_k_max"); msgpack_pack_int(pk, o->kmax);
    lrs_pack_cstr(pk, "shard"); lrs_pack_cstr(pk, shard);
}

static int want_problem(const ctx *c, long idx) {
    const opts *o = c->o;
    if (o->shard_n > 1 && idx % o->shard_n != o->shard_k) return 0;
    return !is_done(c, idx);
}

/* Tokenizes the prompt of p and checks it fits; 0 or nonzero (reported).
 * Preset "toolkit": the Qwen2.5-Math toolkit's prompt for the benchmark
 * layout being read (qwen25-math-cot; 5-shot for mmlu_stem). */
static int prepare_prompt(ctx *c, problem *p) {
    const opts *o = c->o;
    char *text;
    size_t n;
    if (!o->prompt_file && !strcmp(o->preset, "toolkit")) {
        text = bd_prompt(c->layout, p->question);
    } else if (prompt_render(o->prompt_file ? NULL : o->preset, o->prompt_file, p->question, &text)) {
        fail(c, p, "%s", lr_errmsg());
        return 1;
    }
    int rc = tok_encode(c->tok, text, strlen(text), &p->prompt, &n);
    free(text);
    if (rc) {
        fail(c, p, "%s", lr_errmsg());
        return 1;
    }
    p->nprompt = n;
    return 0;
}

static int fits(ctx *c, problem *p, size_t new_tokens) {
    if (p->nprompt + new_tokens <= (size_t)eng_tmax(&c->e)) return 1;
    char msg[200];
    snprintf(msg, sizeof msg, "prompt of %zu tokens + %zu new exceeds the context of %d positions", p->nprompt,
             new_tokens, eng_tmax(&c->e));
    fail(c, p, "%s; problem skipped", msg);
    return 0;
}

static int flush_batch(ctx *c, lrs_writer *w, problem *ps, int n) {
    int rc = 0;
    for (int b = 0; b < n && !rc; b++) {
        if (!ps[b].failed && !c->o->follow && !ps[b].text) {
            size_t len;
            /* special tokens dropped, as the toolkit's decode does */
            if (tok_decode_ex(c->tok, ps[b].tokens, ps[b].T, TOK_SKIP_SPECIAL, &ps[b].text, &len)) ps[b].text = NULL;
        }
        if (!ps[b].failed) {
            write_record(w, &ps[b], c->m.cfg.V, c->o->full);
            rc = lrs_record_done(w);
            c->written++;
        }
    }
    if (!rc) rc = lrs_flush(w); /* a resume point after every batch */
    for (int b = 0; b < n; b++) problem_clear(&ps[b]);
    progress_add(&c->prog, (uint64_t)n, 0);
    return rc;
}

static int run_generate(ctx *c, lrs_writer *w) {
    const opts *o = c->o;
    source s;
    int rc = source_open(&s, o);
    if (rc) return rc;
    if (!o->prompt_file && !strcmp(o->preset, "toolkit")) {
        if (!s.bd) {
            source_close(&s);
            return lr_err(LR_EUSAGE, "--preset toolkit needs a benchmark file of a known layout (not --field)");
        }
        c->layout = bd_reader_layout(s.bd);
    }
    problem *ps = xcalloc(o->batch, sizeof *ps);
    for (int end = 0; !rc && !end;) {
        int n = 0;
        while (n < o->batch) {
            problem *p = &ps[n];
            int bad;
            rc = source_next(&s, &p->id, &p->question, &p->idx, &bad);
            if (rc != 1) { end = 1; break; }
            rc = 0;
            if (o->limit >= 0 && p->idx >= o->limit) { problem_clear(p); end = 1; break; }
            if (bad) {
                fprintf(stderr, "%s: %s\n", lr_progname, lr_errmsg());
                c->failed++;
                problem_clear(p);
                continue;
            }
            if (!want_problem(c, p->idx)) { problem_clear(p); continue; }
            p->rng = o->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(p->idx + 1));
            if (prepare_prompt(c, p) || !fits(c, p, (size_t)o->max_new)) { problem_clear(p); continue; }
            n++;
        }
        if (rc) break;
        if (n == 0) continue;
        rc = generate_batch(c, ps, n);
        if (!rc) rc = flush_batch(c, w, ps, n);
    }
    for (int b = 0; b < o->batch; b++) problem_clear(&ps[b]);
    free(ps);
    source_close(&s);
    return rc;
}

/* Loads one followed record into p; a malformed record is fatal (the
 * followed stream is corrupt), a problem that does not fit is skipped. */
static int load_followed(ctx *c, lrs_reader *r, const msgpack_object *rec, problem *p, int *skip) {
    const char *str;
    size_t len, nk, nt, nids;
    int64_t idx;
    *skip = 0;
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
    int V = c->m.cfg.V;
    for (size_t i = 0; i < p->nprompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= V)
            return lrs_field_err(r, "prompt", "token id %d outside this model's vocabulary of %d", p->prompt[i], V);
    for (size_t i = 0; i < nt; i++)
        if (p->tokens[i] < 0 || p->tokens[i] >= V)
            return lrs_field_err(r, "tokens", "token id %d outside this model's vocabulary of %d", p->tokens[i], V);
    /* the per-step arrays; realloc keeps the followed tokens already read */
    grow_steps(p, nt ? nt : 1, 1, c->o->full ? V : 0);
    p->T = nt;
    p->nf = nids;
    p->ref_lp = xmalloc((nids ? nids : 1) * sizeof *p->ref_lp);
    p->finish = "follow";
    if (!fits(c, p, nt)) *skip = 1;
    return 0;
}

static int run_follow(ctx *c, lrs_writer *w, lrs_reader *r) {
    const opts *o = c->o;
    problem *ps = xcalloc(o->batch, sizeof *ps);
    int rc = 0, end = 0;
    const msgpack_object *rec;
    long seen = 0;
    while (!rc && !end) {
        int n = 0;
        while (n < o->batch) {
            int got = lrs_next(r, &rec);
            if (got == 0) { end = 1; break; }
            if (got != 1) { rc = got; break; }
            if (o->limit >= 0 && seen >= o->limit) { end = 1; break; }
            seen++;
            problem *p = &ps[n];
            int skip;
            rc = load_followed(c, r, rec, p, &skip);
            if (rc) break;
            if (skip || !want_problem(c, p->idx)) { problem_clear(p); continue; }
            n++;
        }
        if (rc || n == 0) break;
        rc = follow_batch(c, ps, n);
        if (!rc) rc = flush_batch(c, w, ps, n);
    }
    for (int b = 0; b < o->batch; b++) problem_clear(&ps[b]);
    free(ps);
    return rc;
}

/* Folds a PEFT adapter into the loaded weights (W += alpha/r B A, exact in
 * float32 for inference, where LoRA dropout is off) and makes the model's
 * identity that of base + adapter, so streams from a tuned model never pass
 * for the base model's. */
static int apply_adapter(model *m, const char *dir) {
    lora lo;
    int rc = lora_load(&lo, &m->cfg, dir);
    if (rc) return rc;
    lora_merge(m, &lo);
    lora_free(&lo);
    char path[4096], *bytes;
    size_t n;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = lr_read_file(path, &bytes, &n))) return rc;
    uint64_t h = lr_fnv1a64(m->hash, bytes, n);
    free(bytes);
    snprintf(m->hash_hex, sizeof m->hash_hex, "%016llx", (unsigned long long)h);
    m->hash = h;
    const char *b = strrchr(dir, '/');
    size_t len = strlen(m->name) + strlen(b && b[1] ? b + 1 : dir) + 2;
    char *name = xmalloc(len);
    snprintf(name, len, "%s+%s", m->name, b && b[1] ? b + 1 : dir);
    free(m->name);
    m->name = name;
    return 0;
}

/* For the progress bar's ETA: the problems a generate run will visit (lines
 * of a regular input file, cut by --limit and --shard); 0 when unknown. */
static uint64_t expected_problems(const opts *o) {
    if (!o->data || !strcmp(o->data, "-")) return 0;
    FILE *f = fopen(o->data, "rb");
    if (!f) return 0;
    uint64_t lines = 0;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    fclose(f);
    if (o->limit >= 0 && (uint64_t)o->limit < lines) lines = (uint64_t)o->limit;
    return (lines + o->shard_n - 1 - o->shard_k) / o->shard_n;
}

static int parse_int(const char *flag, const char *s, long lo, long hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v < lo || v > hi) return lr_err(LR_EUSAGE, "%s: expected an integer in [%ld, %ld], got \"%s\"", flag, lo, hi, s);
    *out = (int)v;
    return 0;
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end || !(v >= lo && v <= hi)) return lr_err(LR_EUSAGE, "%s: expected a number in [%g, %g], got \"%s\"", flag, lo, hi, s);
    *out = v;
    return 0;
}

static int parse_args(opts *o, int argc, char **argv) {
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'A'}, {"data", required_argument, 0, 'd'},
        {"layout", required_argument, 0, 'L'}, {"field", required_argument, 0, 'F'}, {"id-field", required_argument, 0, 'I'},
        {"preset", required_argument, 0, 'P'}, {"prompt-file", required_argument, 0, 'T'},
        {"follow", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
        {"max-new-tokens", required_argument, 0, 'n'}, {"limit", required_argument, 0, 'l'},
        {"shard", required_argument, 0, 's'}, {"batch", required_argument, 0, 'b'},
        {"full", no_argument, 0, 'u'}, {"progress", no_argument, 0, 'p'},
        {"threads", required_argument, 0, 't'}, {"temperature", required_argument, 0, 'e'},
        {"top-p", required_argument, 0, 'r'}, {"seed", required_argument, 0, 'S'},
        {"top-mass", required_argument, 0, 'M'}, {"top-k-max", required_argument, 0, 'K'},
        {"eos", required_argument, 0, 'E'}, {"device", required_argument, 0, 'D'},
        {"max-context", required_argument, 0, 'C'}, {"help", no_argument, 0, 'h'},
        {"zstd-level", required_argument, 0, 'Z'}, {0, 0, 0, 0},
    };
    *o = (opts){.preset = "lightreasoner", .max_new = 128, .limit = -1, .shard_n = 1, .batch = 0, .device = "auto",
                .top_p = 1, .mass = CD_DEFAULT_MASS, .kmax = 0, .argc = argc, .argv = argv};
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 'A': o->adapter = optarg; break;
        case 'd': o->data = optarg; break;
        case 'L': o->layout = optarg; break;
        case 'F': o->field = optarg; break;
        case 'I': o->id_field = optarg; break;
        case 'P': o->preset = optarg; break;
        case 'T': o->prompt_file = optarg; break;
        case 'f': o->follow = optarg; break;
        case 'o': o->out = optarg; break;
        case 'n': rc = parse_int("--max-new-tokens", optarg, 1, 1 << 20, &o->max_new); break;
        case 'l': rc = parse_int("--limit", optarg, 0, 1L << 30, &o->limit); break;
        case 'b': rc = parse_int("--batch", optarg, 1, 4096, &o->batch); break;
        case 't': rc = parse_int("--threads", optarg, 1, 1024, &o->threads); break;
        case 'K': rc = parse_int("--top-k-max", optarg, 1, 1 << 20, &o->kmax); break;
        case 'C': rc = parse_int("--max-context", optarg, 1, 1 << 22, &o->max_context); break;
        case 'Z': rc = parse_int("--zstd-level", optarg, LRS_ZSTD_MIN, LRS_ZSTD_MAX, &o->zstd_level); break;
        case 'e': rc = parse_num("--temperature", optarg, 0, 100, &o->temperature); break;
        case 'r': rc = parse_num("--top-p", optarg, 1e-9, 1, &o->top_p); break;
        case 'M': rc = parse_num("--top-mass", optarg, 0, 1, &o->mass); break;
        case 'S': o->seed = strtoull(optarg, NULL, 10); break;
        case 'u': o->full = 1; break;
        case 'p': o->progress = 1; break;
        case 'E':
            if (o->n_extra_eos == 16) rc = lr_err(LR_EUSAGE, "--eos: at most 16");
            else o->extra_eos_str[o->n_extra_eos++] = optarg;
            break;
        case 'D': o->device = optarg; break;
        case 's':
            if (sscanf(optarg, "%d/%d", &o->shard_k, &o->shard_n) != 2 || o->shard_n < 1 || o->shard_k < 0 ||
                o->shard_k >= o->shard_n)
                rc = lr_err(LR_EUSAGE, "--shard: expected K/N with 0 <= K < N, got \"%s\"", optarg);
            break;
        case 'h': usage(stdout); exit(0);
        default: return lr_err(LR_EUSAGE, "see --help");
        }
    }
    if (rc) return rc;
    if (optind < argc) return lr_err(LR_EUSAGE, "unexpected argument \"%s\" (see --help)", argv[optind]);
    if (!o->model_dir) return lr_err(LR_EUSAGE, "--model DIR is required (see --help)");
    if (o->id_field && !o->field) return lr_err(LR_EUSAGE, "--id-field goes with --field");
    if (o->follow && (o->data || o->field || o->layout))
        return lr_err(LR_EUSAGE, "--follow reads its problems from the followed stream; drop --data/--field/--layout");
    if (o->data && o->follow) return lr_err(LR_EUSAGE, "--data and --follow exclude each other");
    return 0;
}

int main(int argc, char **argv) {
    lr_progname = "lr-infer";
    opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc) return lr_fail(rc);
    ctx c = {.o = &o};
    lrs_reader *fr = NULL;
    lrs_writer *w = NULL;
    if (o.threads) openblas_set_num_threads(o.threads);
    eng_device dev;
    if ((rc = eng_parse_device(o.device, &dev))) goto out;
    o.device = eng_device_name(dev); /* the header records the resolved one */
    if (!o.batch) o.batch = dev == ENG_CUDA ? 64 : 8;
    /* The cuda backend uploads bf16 straight from the checkpoint (no
     * float32 host copy), except when an adapter must be merged first. */
    if (dev == ENG_CUDA && !o.adapter) rc = model_open(&c.m, o.model_dir);
    else rc = model_load(&c.m, o.model_dir);
    if (rc || (rc = tok_load(&c.tok, o.model_dir))) goto out;
    if (o.adapter && (rc = apply_adapter(&c.m, o.adapter))) goto out;
    if (!o.kmax) o.kmax = o.follow ? CD_FOLLOW_KMAX : CD_DEFAULT_KMAX;
    c.co = (cd_opts){.mass = o.mass, .kmax = o.kmax < c.m.cfg.V ? o.kmax : c.m.cfg.V, .kmin = 1};
    for (int e = 0; e < c.m.cfg.neos; e++) c.eos[c.neos++] = c.m.cfg.eos[e];
    for (int e = 0; e < o.n_extra_eos; e++) {
        int32_t id = tok_id(c.tok, o.extra_eos_str[e]);
        if (id < 0) { rc = lr_err(LR_EUSAGE, "--eos %s: no such token in the tokenizer", o.extra_eos_str[e]); goto out; }
        c.eos[c.neos++] = id;
    }
    int ctxlen = o.max_context ? o.max_context : (c.m.cfg.max_pos < 2048 ? c.m.cfg.max_pos : 2048);
    if ((rc = eng_init(&c.e, &c.m, dev, o.batch, ctxlen, dev == ENG_CUDA ? 4096 : 512, c.co.kmax, o.threads)))
        goto out;
    if (dev == ENG_CUDA) {
        char name[256];
        gpu_device_count(name, sizeof name);
        fprintf(stderr, "%s: device cuda (%s, %s backend)\n", lr_progname, name, gpu_backend());
    }
    c.order = xmalloc((size_t)c.m.cfg.V * sizeof *c.order);
    c.pr = xmalloc((size_t)c.m.cfg.V * sizeof *c.pr);

    lrs_header h;
    lrs_header_init(&h, "dist", 1, "lr-infer", argc, argv);
    h.model = (lrs_ident){.name = c.m.name, .hash = c.m.hash_hex, .vocab = c.m.cfg.V};
    h.tokenizer = (lrs_ident){.name = c.m.name, .hash = (char *)tok_hash(c.tok), .vocab = tok_vocab_size(c.tok)};
    h.zstd_level = o.zstd_level;
    if (o.follow) {
        if ((rc = lrs_open_read(&fr, o.follow, "dist"))) goto out;
        const lrs_header *fh = lrs_header_of(fr);
        if (strcmp(fh->tokenizer.hash, h.tokenizer.hash) || fh->tokenizer.vocab != h.tokenizer.vocab) {
            rc = lr_err(LR_EINPUT, "%s: tokenizers differ: the followed stream was made with tokenizer %s (%s, "
                        "%lld ids), this model's is %s (%s, %lld ids)", lrs_path(fr), fh->tokenizer.hash,
                        fh->tokenizer.name, (long long)fh->tokenizer.vocab, h.tokenizer.hash, h.tokenizer.name,
                        (long long)h.tokenizer.vocab);
            goto out;
        }
    }
    if (o.out) rc = lrs_resume(&w, o.out, &h, pack_params, &o, note_done, &c);
    else rc = lrs_open_write(&w, "-", &h, pack_params, &o);
    if (rc) goto out;
    progress_init(&c.prog, lr_progress_wanted(o.progress), "problems", o.follow ? 0 : expected_problems(&o));
    rc = o.follow ? run_follow(&c, w, fr) : run_generate(&c, w);
    progress_end(&c.prog);
    if (!rc) {
        double dt = lr_now() - c.prog.t0;
        fprintf(stderr, "%s: %ld problems written, %llu tokens in %.2f s (%.1f tok/s)\n", lr_progname, c.written,
                (unsigned long long)c.prog.tokens, dt, dt > 0 ? c.prog.tokens / dt : 0.0);
    }
out:
    if (w) {
        if (rc) lrs_abort(w);
        else rc = lrs_close(w);
    }
    int code = rc ? lr_fail(rc) : 0;
    if (!rc && c.failed) {
        fprintf(stderr, "%s: %ld problems failed (reported above); %ld written\n", lr_progname, c.failed, c.written);
        code = LR_EINPUT;
    }
    lrs_close_read(fr);
    eng_free(&c.e);
    if (c.tok) tok_free(c.tok);
    model_free(&c.m);
    free(c.order), free(c.pr), free(c.done), free(c.goff), free(c.gids);
    free(c.res.k), free(c.res.ids), free(c.res.lps), free(c.res.tail), free(c.res.gtail), free(c.res.argmax);
    free(c.res.bad), free(c.res.logits), free(c.res.glps);
    return code;
}
