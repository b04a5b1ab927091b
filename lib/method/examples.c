/* examples: see examples.h. */
#include "method/examples.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "base/util.h"
#include "io/jsonl.h"
#include "io/stream.h"
#include "model/tokenizer.h"

int tdata_read_opts(tune_read_opts *o, const char *dir, int V, int max_len) {
    char p[4200];
    memset(o, 0, sizeof *o);
    o->V = V, o->max_len = max_len;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    if (access(p, F_OK)) return LR_OK;
    tok_t *t;
    int rc = tok_load(&t, p);
    if (rc) return rc;
    snprintf(o->tok_hash, sizeof o->tok_hash, "%s", tok_hash(t));
    o->tok_vocab = tok_vocab_size(t);
    tok_free(t);
    return LR_OK;
}

static int *dup_i32(const int32_t *v, size_t n) {
    int *p = xmalloc((n ? n : 1) * sizeof(int));
    for (size_t i = 0; i < n; i++) p[i] = v[i];
    return p;
}

/* ids of field `f` inside [0, V) */
static int check_ids(const lrs_reader *r, const char *f, const int32_t *v, size_t n, int V) {
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0 || v[i] >= V)
            return lrs_field_err(r, f, "token %d at position %zu is outside the model's vocabulary [0, %d)", v[i], i, V);
    return LR_OK;
}

/* The header's tokenizer against the model's: the content hash when both
 * have one, else the size. */
static int check_tokenizer(const char *path, const lrs_header *h, const tune_read_opts *o) {
    const lrs_ident *t = &h->tokenizer;
    int hashes = t->hash && *t->hash && *o->tok_hash;
    if ((hashes && strcmp(t->hash, o->tok_hash)) || (!hashes && t->vocab > 0 && o->tok_vocab > 0 && t->vocab != o->tok_vocab))
        return lr_err(LR_EINPUT, "%s: header: field \"tokenizer\": the examples were made with tokenizer %s (%s, %lld ids), "
                      "--model's is %s (%lld ids): not the same tokenizer", path, t->hash && *t->hash ? t->hash : "-",
                      t->name && *t->name ? t->name : "?", (long long)t->vocab, *o->tok_hash ? o->tok_hash : "-",
                      (long long)o->tok_vocab);
    return LR_OK;
}

static int read_record(tune_data *d, lrs_reader *r, const msgpack_object *rec, const tune_read_opts *o, int32_t **a,
                       size_t *ca, int32_t **b, size_t *cb, float **f, size_t *cf, tune_example *e) {
    int64_t idx, step = 0, plen;
    size_t na, nb, nf;
    int rc = lrs_get_int(r, rec, "idx", &idx);
    if (rc) return rc;
    e->problem = idx;
    if (d->objective == TUNE_SOFTKL) {
        if ((rc = lrs_get_int(r, rec, "step", &step)) || (rc = lrs_get_i32s(r, rec, "context", a, ca, &na)) ||
            (rc = lrs_get_i32s(r, rec, "target_ids", b, cb, &nb)) || (rc = lrs_get_f32s(r, rec, "weights", f, cf, &nf)))
            return rc;
        if (step < 0 || step > INT32_MAX) return lrs_field_err(r, "step", "%lld: expected 0..%d", (long long)step, INT32_MAX);
        if (na < 1) return lrs_field_err(r, "context", "empty");
        if (na > INT32_MAX) return lrs_field_err(r, "context", "%zu tokens", na);
        if (nb < 1) return lrs_field_err(r, "target_ids", "empty: no soft target");
        if (nb != nf) return lrs_field_err(r, "weights", "%zu weights for %zu target_ids", nf, nb);
        if (lrs_get(rec, "prompt_len")) {
            if ((rc = lrs_get_int(r, rec, "prompt_len", &plen))) return rc;
            if (plen < 0 || (size_t)plen > na)
                return lrs_field_err(r, "prompt_len", "%lld: outside the context's 0..%zu tokens", (long long)plen, na);
        }
        if ((rc = check_ids(r, "context", *a, na, o->V)) || (rc = check_ids(r, "target_ids", *b, nb, o->V))) return rc;
        for (size_t i = 0; i < nb; i++) {
            if (!isfinite((*f)[i]) || (*f)[i] < 0)
                return lrs_field_err(r, "weights", "weight %g at position %zu: expected a finite number >= 0", (double)(*f)[i], i);
        }
        e->step = (int)step;
        e->tokens = dup_i32(*a, na);
        e->ntok = (int)na;
        e->ids = dup_i32(*b, nb);
        e->w = xmalloc(nf * sizeof(float));
        memcpy(e->w, *f, nf * sizeof(float));
        e->nt = (int)nf;
    } else {
        if ((rc = lrs_get_i32s(r, rec, "prompt", a, ca, &na)) || (rc = lrs_get_i32s(r, rec, "tokens", b, cb, &nb))) return rc;
        if (na < 1 || nb < 1) return lrs_field_err(r, na < 1 ? "prompt" : "tokens", "empty");
        if (na + nb > INT32_MAX) return lrs_field_err(r, "tokens", "%zu tokens", na + nb);
        if ((rc = check_ids(r, "prompt", *a, na, o->V)) || (rc = check_ids(r, "tokens", *b, nb, o->V))) return rc;
        e->tokens = xmalloc((na + nb) * sizeof(int));
        for (size_t i = 0; i < na; i++) e->tokens[i] = (*a)[i];
        for (size_t i = 0; i < nb; i++) e->tokens[na + i] = (*b)[i];
        e->ntok = (int)(na + nb);
        e->nprompt = (int)na;
    }
    return LR_OK;
}

int tdata_read(tune_data *d, const char *path, const tune_read_opts *o) {
    lrs_reader *r;
    int rc = lrs_open_read(&r, path, NULL);
    if (rc) return rc;
    const lrs_header *h = lrs_header_of(r);
    int obj = !strcmp(h->kind, "example") ? TUNE_SOFTKL : !strcmp(h->kind, "dist") ? TUNE_SFT : -1;
    if (obj < 0)
        rc = lr_err(LR_EINPUT, "%s: header: record kind \"%s\": lr-tune reads `example` (soft-KL) or `dist` (SFT) streams",
                    path, h->kind);
    else if (d->n && obj != d->objective)
        rc = lr_err(LR_EINPUT, "%s: header: record kind \"%s\" mixed with another input's `%s` records", path, h->kind,
                    d->objective == TUNE_SFT ? "dist" : "example");
    if (!rc) rc = check_tokenizer(path, h, o);
    if (rc) {
        lrs_close_read(r); /* after the message: it frees the header */
        return rc;
    }
    d->objective = obj;
    int32_t *a = NULL, *b = NULL;
    float *f = NULL;
    size_t ca = 0, cb = 0, cf = 0;
    const msgpack_object *rec;
    while ((rc = lrs_next(r, &rec)) == 1) {
        tune_example e = {0};
        if ((rc = read_record(d, r, rec, o, &a, &ca, &b, &cb, &f, &cf, &e))) {
            free(e.tokens), free(e.ids), free(e.w);
            break;
        }
        if (e.ntok > o->max_len) { /* the reference truncates its inputs (right side) */
            e.ntok = o->max_len;
            d->truncated++;
            if (obj == TUNE_SFT && e.nprompt >= e.ntok) { /* nothing left to learn from */
                free(e.tokens);
                continue;
            }
        }
        if (d->n == d->cap) d->ex = xrealloc(d->ex, (size_t)(d->cap = d->cap ? 2 * d->cap : 64) * sizeof *d->ex);
        d->ex[d->n++] = e;
    }
    free(a), free(b), free(f);
    lrs_close_read(r);
    return rc == 0 ? LR_OK : rc;
}

int tdata_read_text(tune_data *d, const char *path, const char *tok_dir, const tune_read_opts *o) {
    if (d->n && d->objective != TUNE_SFT)
        return lr_err(LR_EINPUT, "%s: text mixed with another input's `example` records", path);
    tok_t *tok;
    int rc = tok_load(&tok, tok_dir);
    if (rc) return rc;
    jsonl r;
    if ((rc = jsonl_open(&r, path))) {
        tok_free(tok);
        return rc;
    }
    d->objective = TUNE_SFT;
    json_t *j;
    while ((rc = jsonl_next(&r, JSONL_OBJECT, &j)) == 0) {
        json_t *t = json_object_get(j, "text");
        int32_t *ids = NULL;
        size_t n = 0;
        if (!json_is_string(t)) rc = lr_err(LR_EINPUT, "%s: line %zu: field \"text\": missing or not a string", r.name, r.lineno);
        else if ((rc = tok_encode(tok, json_string_value(t), json_string_length(t), &ids, &n)))
            lr_err_prefix(rc, "%s: line %zu: field \"text\"", r.name, r.lineno);
        else if (n < 2) rc = lr_err(LR_EINPUT, "%s: line %zu: field \"text\": fewer than 2 tokens", r.name, r.lineno);
        for (size_t i = 0; !rc && i < n; i++)
            if (ids[i] >= o->V)
                rc = lr_err(LR_EINPUT, "%s: line %zu: field \"text\": token %d at position %zu is outside the model's "
                            "vocabulary [0, %d)", r.name, r.lineno, ids[i], i, o->V);
        json_decref(j);
        if (!rc) {
            tune_example e = {.problem = d->n, .nprompt = 1};
            if ((int)n > o->max_len) n = (size_t)o->max_len, d->truncated++;
            e.tokens = dup_i32(ids, n);
            e.ntok = (int)n;
            if (d->n == d->cap) d->ex = xrealloc(d->ex, (size_t)(d->cap = d->cap ? 2 * d->cap : 64) * sizeof *d->ex);
            d->ex[d->n++] = e;
        }
        free(ids);
        if (rc) break;
    }
    jsonl_close(&r);
    tok_free(tok);
    return rc < 0 ? LR_OK : rc;
}

void tdata_free(tune_data *d) {
    for (int i = 0; i < d->n; i++) free(d->ex[i].tokens), free(d->ex[i].ids), free(d->ex[i].w);
    free(d->ex);
    memset(d, 0, sizeof *d);
}

/* qsort has no context argument: the comparators read these */
static const tune_data *sort_d;
static const uint64_t *sort_key;

static int cmp_problem(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    uint64_t ki = sort_key[i], kj = sort_key[j];
    if (ki != kj) return ki < kj ? -1 : 1;
    const tune_example *x = &sort_d->ex[i], *y = &sort_d->ex[j];
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int cmp_len_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b, li = sort_d->ex[i].ntok, lj = sort_d->ex[j].ntok;
    return li != lj ? (li < lj) - (li > lj) : (i > j) - (i < j);
}

void tdata_order(const tune_data *d, const tune_order *o, int e, int *ord) {
    for (int i = 0; i < d->n; i++) ord[i] = i;
    if (!o->shuffle) return;
    uint64_t s = o->seed * 1000003ULL + (uint64_t)e;
    if (o->by_problem) {
        uint64_t *key = xmalloc((size_t)(d->n ? d->n : 1) * sizeof *key);
        for (int i = 0; i < d->n; i++) key[i] = rng_stream(s, (uint64_t)d->ex[i].problem);
        sort_d = d, sort_key = key;
        qsort(ord, (size_t)d->n, sizeof *ord, cmp_problem);
        free(key);
        return;
    }
    for (int i = d->n - 1; i > 0; i--) {
        int j = (int)(rng_next(&s) % (uint64_t)(i + 1)), t = ord[i];
        ord[i] = ord[j], ord[j] = t;
    }
    if (o->group_len) {
        sort_d = d;
        int mega = 50 * o->batch;
        for (int b = 0; b < d->n; b += mega)
            qsort(ord + b, (size_t)(d->n - b < mega ? d->n - b : mega), sizeof *ord, cmp_len_desc);
    }
}

int tdata_pad_batch(const tune_example *ex, int n, int pad_id, tune_example *out, int *tokbuf) {
    int T = 1;
    for (int i = 0; i < n; i++)
        if (ex[i].ntok > T) T = ex[i].ntok;
    for (int i = 0; i < n; i++) {
        out[i] = ex[i];
        if (ex[i].ntok == T) continue;
        /* the pads before the last one are hidden from it by the attention
         * mask and change nothing: only the last is run */
        int *t = tokbuf + (size_t)i * T;
        memcpy(t, ex[i].tokens, (size_t)ex[i].ntok * sizeof(int));
        t[ex[i].ntok] = pad_id;
        out[i].tokens = t;
        out[i].ntok = ex[i].ntok + 1;
        out[i].query_pos = T - 1;
    }
    return T;
}

static json_t *load_json(const char *path, int *rc) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        *rc = json_error_code(&je) == json_error_cannot_open_file ? lr_err(LR_EIO, "%s: %s", path, je.text)
                                                                  : lr_err(LR_EINPUT, "%s: line %d: %s", path, je.line, je.text);
    return j;
}

int tdata_reference_tokens(const char *dir, int *vocab_size, int *pad_id) {
    char p[4200], q[4200];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    snprintf(q, sizeof q, "%s/tokenizer_config.json", dir);
    int rc = LR_OK;
    json_t *tj = load_json(p, &rc), *cj = tj ? load_json(q, &rc) : NULL;
    if (rc) {
        json_decref(tj);
        return rc;
    }
    json_t *vocab = json_object_get(json_object_get(tj, "model"), "vocab"), *pt = json_object_get(cj, "pad_token");
    const char *pad = json_is_string(pt) ? json_string_value(pt) : json_string_value(json_object_get(pt, "content"));
    *pad_id = -1;
    if (!json_is_object(vocab) || !json_object_size(vocab))
        rc = lr_err(LR_EINPUT, "%s: field \"model.vocab\": expected a non-empty object", p);
    else if (!pad)
        rc = lr_err(LR_EINPUT, "%s: field \"pad_token\": missing (the reference's collate pads with pad_token_id)", q);
    if (!rc) {
        *vocab_size = (int)json_object_size(vocab);
        json_t *v = json_object_get(vocab, pad);
        if (json_is_integer(v)) *pad_id = (int)json_integer_value(v);
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(tj, "added_tokens"), i, a) {
            const char *c = json_string_value(json_object_get(a, "content"));
            if (c && !strcmp(c, pad)) *pad_id = (int)json_integer_value(json_object_get(a, "id"));
        }
        if (*pad_id < 0) rc = lr_err(LR_EINPUT, "%s: field \"pad_token\": \"%s\" is not a token of %s", q, pad, p);
    }
    json_decref(tj);
    json_decref(cj);
    return rc;
}
