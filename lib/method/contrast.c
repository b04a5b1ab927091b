/* contrast: see contrast.h. The maths is dist.h. */
#include "method/contrast.h"

#include "base/outfile.h"
#include "base/util.h"
#include "io/jsonl.h"
#include "io/mpjson.h"
#include "io/stream.h"
#include "method/dist.h"
#include "model/prompt.h"

#include <jansson.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One contrast_run: its options and the buffers its records reuse. */
typedef struct {
    double alpha;
    int target, strict, quiet, to_ref, zstd_level;
    int64_t V;
    const lrs_header *in;
    tok_t *tok;
    const char *tok_path;
    FILE *json_out; /* to_ref */
    lr_out *json_o;
    lr_buf line;
    int32_t *ctxbuf;
    size_t ctxcap;
} ct_ctx;

/* One reference-format JSON line for an example (key order as the
 * reference writes them). */
static int write_ref(ct_ctx *c, const lrs_reader *r, const msgpack_object *rec, const int32_t *tid,
                     const float *w, int m, double kl) {
    const msgpack_object *q = lrs_get(rec, "question");
    if (!q || q->type != MSGPACK_OBJECT_STR)
        return lrs_field_err(r, "question", "missing: the reference format names a problem by its question text");
    size_t n;
    int64_t step, plen;
    int rc;
    if ((rc = lrs_get_int(r, rec, "step", &step)) || (rc = lrs_get_int(r, rec, "prompt_len", &plen)) ||
        (rc = lrs_get_i32s(r, rec, "context", &c->ctxbuf, &c->ctxcap, &n)))
        return rc;
    const int32_t *ctx = c->ctxbuf;
    if (plen < 0 || (size_t)plen > n) return lrs_field_err(r, "prompt_len", "%lld outside the context", (long long)plen);
    lr_buf *b = &c->line;
    char *txt, num[64];
    size_t len;
    b->n = 0;
    lr_buf_puts(b, "{\"prompt_id\": ");
    mpjson_write_str(b, q->via.str.ptr, q->via.str.size);
    snprintf(num, sizeof num, ", \"step\": %lld, \"prefix\": ", (long long)step);
    lr_buf_puts(b, num);
    if ((rc = tok_decode(c->tok, ctx + plen, n - (size_t)plen, &txt, &len))) return rc;
    mpjson_write_str(b, txt, len);
    free(txt);
    lr_buf_puts(b, ", \"tokens\": [");
    for (int j = 0; j < m; j++) {
        if ((rc = tok_decode(c->tok, &tid[j], 1, &txt, &len))) return rc;
        if (j) lr_buf_puts(b, ", ");
        mpjson_write_str(b, txt, len);
        free(txt);
    }
    lr_buf_puts(b, "], \"token_ids\": [");
    for (int j = 0; j < m; j++) {
        snprintf(num, sizeof num, "%s%d", j ? ", " : "", tid[j]);
        lr_buf_puts(b, num);
    }
    lr_buf_puts(b, "], \"weights\": [");
    for (int j = 0; j < m; j++) {
        snprintf(num, sizeof num, "%s%.9g", j ? ", " : "", (double)w[j]);
        lr_buf_puts(b, num);
    }
    snprintf(num, sizeof num, "], \"kl_divergence\": %.17g}\n", kl);
    lr_buf_puts(b, num);
    if (fwrite(b->p, 1, b->n, c->json_out) != b->n) return lr_err(LR_EIO, "write error: %s", strerror(errno));
    return LR_OK;
}

static void pack_params(msgpack_packer *pk, void *p) {
    ct_ctx *c = p;
    msgpack_pack_map(pk, 4);
    lrs_pack_cstr(pk, "alpha"); msgpack_pack_double(pk, c->alpha);
    lrs_pack_cstr(pk, "target"); lrs_pack_cstr(pk, dist_target_name((dist_target_kind)c->target));
    lrs_pack_cstr(pk, "vocab"); msgpack_pack_int64(pk, c->V);
    lrs_pack_cstr(pk, "kl_params");
    msgpack_pack_object(pk, c->in->params ? *c->in->params : (msgpack_object){.type = MSGPACK_OBJECT_MAP});
}

/* ---------- the reference's JSON lines -> example stream ---------- */

static void pack_ref_params(msgpack_packer *pk, void *p) {
    const contrast_opts *c = p;
    msgpack_pack_map(pk, 3);
    lrs_pack_cstr(pk, "source"); lrs_pack_cstr(pk, "reference-jsonl");
    lrs_pack_cstr(pk, "prompt"); lrs_pack_cstr(pk, c->prompt);
    lrs_pack_cstr(pk, "vocab"); msgpack_pack_int64(pk, c->vocab);
}

static int ref_err(const char *path, long line, const char *field, const char *msg) {
    return lr_err(LR_EINPUT, "%s: line %ld: field \"%s\": %s", path, line, field, msg);
}

/* (id, weight) pairs in ascending id order (the reference writes them so;
 * a hand-made file may not). */
static void sort_pairs(int32_t *ids, float *w, size_t n) {
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            int32_t t = ids[j]; ids[j] = ids[j - 1]; ids[j - 1] = t;
            float f = w[j]; w[j] = w[j - 1]; w[j - 1] = f;
        }
}

int contrast_from_ref(const contrast_opts *c, const char *in, const char *out) {
    jsonl f;
    if (strcmp(in, "-")) {
        if (jsonl_open(&f, in)) return LR_EIO;
    } else jsonl_from(&f, stdin, in);
    lrs_header h;
    lrs_header_init(&h, "example", 1, lr_progname, c->argc, c->argv);
    h.tokenizer = (lrs_ident){(char *)c->tok_path, (char *)tok_hash(c->tok), tok_vocab_size(c->tok)};
    h.zstd_level = c->zstd_level;
    lrs_writer *w;
    int rc = lrs_create(&w, out, &h, pack_ref_params, (void *)c);
    if (rc) {
        jsonl_close(&f);
        return rc;
    }
    char *last_q = NULL, *rendered = NULL;
    size_t np = 0, tcap = 0;
    int32_t *pids = NULL, *tids = NULL;
    float *tw = NULL;
    long line = 0, idx = -1;
    uint64_t n = 0;
    int got;
    while (!rc && (got = jsonl_line(&f)) == 0) { /* blank lines are skipped */
        const char *buf = f.line;
        size_t len = f.len;
        line = (long)f.lineno;
        json_error_t je;
        /* JSON_ALLOW_NUL: --to-ref writes a token that decodes to byte 0 as "\u0000" */
        json_t *o = json_loadb(buf, (size_t)len, JSON_ALLOW_NUL, &je);
        if (!o || !json_is_object(o)) {
            rc = lr_err(LR_EINPUT, "%s: line %ld: not a JSON object%s%s", in, line, o ? "" : ": ", o ? "" : je.text);
            json_decref(o);
            break;
        }
        json_t *q = json_object_get(o, "prompt_id"), *st = json_object_get(o, "step"),
               *pre = json_object_get(o, "prefix"), *ti = json_object_get(o, "token_ids"),
               *wt = json_object_get(o, "weights"), *kl = json_object_get(o, "kl_divergence");
        const char *bad = !json_is_string(q) ? "prompt_id" : !json_is_integer(st) || json_integer_value(st) < 0 ? "step"
                          : !json_is_string(pre) ? "prefix" : !json_is_array(ti) ? "token_ids"
                          : !json_is_array(wt) ? "weights" : !json_is_number(kl) ? "kl_divergence" : NULL;
        if (bad) {
            rc = ref_err(in, line, bad, "missing or of the wrong type");
            json_decref(o);
            break;
        }
        size_t m = json_array_size(ti);
        if (json_array_size(wt) != m || m == 0) {
            rc = ref_err(in, line, "weights", m ? "not as many as token_ids" : "empty token_ids");
            json_decref(o);
            break;
        }
        if (m > tcap) {
            tcap = m;
            tids = xrealloc(tids, tcap * sizeof *tids);
            tw = xrealloc(tw, tcap * sizeof *tw);
        }
        for (size_t j = 0; j < m && !rc; j++) {
            json_t *a = json_array_get(ti, j), *b = json_array_get(wt, j);
            double x = json_number_value(b);
            if (!json_is_integer(a) || json_integer_value(a) < 0 || json_integer_value(a) >= c->vocab)
                rc = ref_err(in, line, "token_ids", c->vocab > tok_vocab_size(c->tok) ? "not a token id below --vocab"
                             : "not a token id of the tokenizer (--vocab allows the model's further rows)");
            else if (!json_is_number(b) || !isfinite(x) || x < 0)
                rc = ref_err(in, line, "weights", "not a finite number >= 0");
            else {
                tids[j] = (int32_t)json_integer_value(a);
                tw[j] = (float)x;
            }
        }
        double wsum = 0;
        for (size_t j = 0; j < m && !rc; j++) wsum += tw[j];
        if (!rc && !(wsum > 0)) rc = ref_err(in, line, "weights", "all zero: no target");
        sort_pairs(tids, tw, m);
        for (size_t j = 1; j < m && !rc; j++)
            if (tids[j] == tids[j - 1]) rc = ref_err(in, line, "token_ids", "repeated id");
        const char *qs = json_string_value(q);
        if (!rc && strlen(qs) != json_string_length(q)) rc = ref_err(in, line, "prompt_id", "contains a NUL character");
        if (!rc && (!last_q || strcmp(qs, last_q))) { /* a new problem: render and encode its prompt once */
            free(last_q);
            free(rendered);
            free(pids);
            pids = NULL;
            last_q = xstrdup(qs);
            idx++;
            if (!(rc = prompt_render(c->prompt, NULL, qs, &rendered)))
                rc = tok_encode(c->tok, rendered, strlen(rendered), &pids, &np);
            if (rc) lr_err_prefix(rc, "%s: line %ld", in, line);
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        if (!rc) {
            /* prompt + prefix as ONE string, as the reference's training encodes it */
            size_t lr = strlen(rendered), lp = json_string_length(pre);
            char *text = xmalloc(lr + lp + 1);
            memcpy(text, rendered, lr);
            memcpy(text + lr, json_string_value(pre), lp);
            text[lr + lp] = 0;
            if ((rc = tok_encode(c->tok, text, lr + lp, &ids, &nid))) lr_err_prefix(rc, "%s: line %ld: prefix", in, line);
            free(text);
        }
        if (!rc) {
            size_t pl = 0;
            while (pl < np && pl < nid && pids[pl] == ids[pl]) pl++;
            char id[48];
            snprintf(id, sizeof id, "ref:%ld", idx);
            msgpack_packer *pk = lrs_pk(w);
            msgpack_pack_map(pk, 9);
            lrs_pack_cstr(pk, "id"); lrs_pack_cstr(pk, id);
            lrs_pack_cstr(pk, "idx"); msgpack_pack_int64(pk, idx);
            lrs_pack_cstr(pk, "step"); msgpack_pack_int64(pk, json_integer_value(st));
            lrs_pack_cstr(pk, "prompt_len"); msgpack_pack_int64(pk, (int64_t)pl);
            lrs_pack_cstr(pk, "context"); lrs_pack_i32s(pk, ids, nid);
            lrs_pack_cstr(pk, "target_ids"); lrs_pack_i32s(pk, tids, m);
            lrs_pack_cstr(pk, "weights"); lrs_pack_f32s(pk, tw, m);
            lrs_pack_cstr(pk, "kl"); msgpack_pack_double(pk, json_number_value(kl));
            lrs_pack_cstr(pk, "question"); lrs_pack_cstr(pk, qs);
            rc = lrs_record_done(w);
            n++;
        }
        free(ids);
        json_decref(o);
    }
    if (!rc && got > 0) rc = got; /* a read error (named by jsonl_line) */
    line = (long)f.lineno;
    if (rc) lrs_abort(w);
    else rc = lrs_close(w);
    if (!rc && !c->quiet) fprintf(stderr, "%s: %" PRIu64 " examples from %ld lines of reference JSON\n", lr_progname, n, line);
    jsonl_close(&f);
    free(last_q); free(rendered); free(pids); free(tids); free(tw);
    return rc;
}

static int run(ct_ctx *c, const char *in, const char *out, int argc, char **argv) {
    lrs_reader *r;
    int rc = lrs_open_read(&r, in, "kl");
    if (rc) return rc;
    c->in = lrs_header_of(r);
    const msgpack_object *pv = c->in->params ? lrs_get(c->in->params, "vocab") : NULL;
    if (!pv || pv->type != MSGPACK_OBJECT_POSITIVE_INTEGER || pv->via.u64 == 0) {
        lrs_close_read(r);
        return lr_err(LR_EINPUT, "%s: header: params.vocab missing (the common vocabulary lr-kl writes)", in);
    }
    c->V = (int64_t)pv->via.u64;
    lrs_header h;
    lrs_header_init(&h, "example", 1, lr_progname, argc, argv);
    h.model = c->in->model;
    h.tokenizer = c->in->tokenizer;
    h.zstd_level = c->zstd_level;
    lrs_writer *w = NULL;
    if (c->to_ref) {
        const char *th = c->in->tokenizer.hash;
        if (th && *th && strcmp(th, tok_hash(c->tok))) {
            rc = lr_err(LR_EINPUT, "%s: header: tokenizer hash %s, but %s has %s: not the stream's tokenizer", in, th,
                        c->tok_path, tok_hash(c->tok));
            lrs_close_read(r); /* frees th: after the message */
            return rc;
        }
        if ((rc = out_open(&c->json_o, out, 0, &c->json_out))) {
            lrs_close_read(r);
            return rc;
        }
    } else if ((rc = lrs_create(&w, out, &h, pack_params, c))) {
        lrs_close_read(r);
        return rc;
    }
    int32_t *ids = NULL, *tid = NULL, *scr = NULL;
    float *le = NULL, *la = NULL, *wt = NULL;
    int *sel = NULL;
    size_t cids = 0, cle = 0, cla = 0, nids, nle, nla, cap = 0;
    uint64_t n = 0, incomplete = 0, masksum = 0;
    const msgpack_object *rec;
    while ((rc = lrs_next(r, &rec)) == 1) {
        double te, ta, kl;
        if ((rc = lrs_get_i32s(r, rec, "ids", &ids, &cids, &nids)) ||
            (rc = lrs_get_f32s(r, rec, "lp_e", &le, &cle, &nle)) ||
            (rc = lrs_get_f32s(r, rec, "lp_a", &la, &cla, &nla)) || (rc = lrs_get_f64(r, rec, "tail_e", &te)) ||
            (rc = lrs_get_f64(r, rec, "tail_a", &ta)) || (rc = lrs_get_f64(r, rec, "kl", &kl)))
            break;
        if (nle != nids || nla != nids) {
            rc = lrs_field_err(r, nle != nids ? "lp_e" : "lp_a", "%zu entries for %zu ids", nle != nids ? nle : nla, nids);
            break;
        }
        if (nids > cap) {
            cap = nids;
            tid = xrealloc(tid, cap * sizeof *tid);
            scr = xrealloc(scr, DIST_CHECK_SCRATCH(cap) * sizeof *scr);
            wt = xrealloc(wt, cap * sizeof *wt);
            sel = xrealloc(sel, cap * sizeof *sel);
        }
        dist_step s = {(int)nids, ids, le, la, (float)te, (float)ta};
        const char *bad = dist_check(&s, c->in->model.vocab, scr);
        if (bad) { rc = lrs_field_err(r, "ids", "%s", bad); break; }
        if (!dist_mask_complete(&s, c->V, c->alpha)) {
            if (c->strict) {
                rc = lrs_field_err(r, "ids", "the listed tokens cannot prove the mask complete (tail %g may hold a "
                                   "token above alpha * max)", te);
                break;
            }
            incomplete++;
        }
        int m = dist_target(&s, c->V, c->alpha, (dist_target_kind)c->target, tid, wt, sel);
        if (m == 0) { rc = lrs_field_err(r, "lp_e", "empty plausibility mask (no listed token with p > 0)"); break; }
        masksum += (uint64_t)m;
        if (c->to_ref) {
            if ((rc = write_ref(c, r, rec, tid, wt, m, kl))) break;
            n++;
            continue;
        }
        const msgpack_object *q = lrs_get(rec, "question");
        msgpack_packer *pk = lrs_pk(w);
        /* prompt_len and context pass through undecoded: check them first */
        int64_t plen, step;
        size_t nctx;
        if ((rc = lrs_get_int(r, rec, "prompt_len", &plen)) || (rc = lrs_get_int(r, rec, "step", &step)) ||
            (rc = lrs_get_i32s(r, rec, "context", &c->ctxbuf, &c->ctxcap, &nctx)))
            break;
        if (plen < 0 || (uint64_t)plen > nctx) {
            rc = lrs_field_err(r, "prompt_len", "%" PRId64 " outside the context of %zu tokens", plen, nctx);
            break;
        }
        if (step < 0) { rc = lrs_field_err(r, "step", "%" PRId64 " is negative", step); break; }
        msgpack_pack_map(pk, 8 + (q != NULL));
        static const char *copy[] = {"id", "idx", "step", "prompt_len", "context"};
        for (int i = 0; i < 5; i++) { /* passed through without decoding */
            lrs_pack_cstr(pk, copy[i]);
            msgpack_pack_object(pk, *lrs_get(rec, copy[i]));
        }
        lrs_pack_cstr(pk, "target_ids"); lrs_pack_i32s(pk, tid, (size_t)m);
        lrs_pack_cstr(pk, "weights"); lrs_pack_f32s(pk, wt, (size_t)m);
        lrs_pack_cstr(pk, "kl"); msgpack_pack_double(pk, kl);
        if (q) { lrs_pack_cstr(pk, "question"); msgpack_pack_object(pk, *q); }
        if ((rc = lrs_record_done(w))) break;
        n++;
    }
    if (c->to_ref) {
        if (rc) out_abort(&c->json_o);
        else rc = out_commit(&c->json_o);
    } else if (rc == 0) {
        rc = lrs_close(w);
    } else {
        lrs_abort(w);
    }
    if (!rc && !c->quiet) {
        fprintf(stderr, "%s: %" PRIu64 " examples (target %s, alpha %g), mean mask size %.2f", lr_progname, n,
                dist_target_name((dist_target_kind)c->target), c->alpha, n ? (double)masksum / (double)n : 0.0);
        if (incomplete)
            fprintf(stderr, "; warning: %" PRIu64 " masks may miss unlisted tokens (raise lr-infer's listing mass)",
                    incomplete);
        fputc('\n', stderr);
    }
    lrs_close_read(r);
    free(ids); free(le); free(la); free(tid); free(scr); free(wt); free(sel);
    return rc;
}

int contrast_run(const contrast_opts *o, const char *in, const char *out) {
    ct_ctx c = {.alpha = o->alpha, .target = o->target, .strict = o->strict, .quiet = o->quiet, .to_ref = o->to_ref,
                .zstd_level = o->zstd_level, .tok = o->tok, .tok_path = o->tok_path};
    int rc = run(&c, in, out, o->argc, o->argv);
    lr_buf_free(&c.line);
    free(c.ctxbuf);
    return rc;
}
