/* score: outputs judged against benchmark rows (score.h). */
#include "eval/score.h"
#include "eval/answer.h"
#include "eval/benchdata.h"
#include "eval/judge.h"
#include "io/stream.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Replaces invalid UTF-8 by U+FFFD; returns a new string, *bad = 1 when
 * anything was replaced. */
static char *repair_utf8(const char *s, size_t n, int *bad) {
    char *r = xmalloc(3 * n + 1);
    size_t o = 0;
    *bad = 0;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0) {
            memcpy(r + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            *bad = 1;
        } else {
            memcpy(r + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        }
    }
    r[o] = 0;
    return r;
}

json_t *sc_jstr(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    int bad;
    char *r = repair_utf8(s, strlen(s), &bad);
    j = json_string(r);
    free(r);
    return j ? j : json_string("");
}

int sc_next_object(sc_lines *L, json_t **out) {
    int rc = jsonl_line(&L->in);
    if (rc) return rc;
    int bad;
    char *fixed = repair_utf8(L->in.line, L->in.len, &bad);
    L->repaired += bad;
    json_error_t e;
    json_t *o = json_loads(fixed, 0, &e);
    free(fixed);
    if (!o) return lr_err(LR_EINPUT, "%s: line %zu: not JSON: %s", L->in.name, L->in.lineno, e.text);
    if (!json_is_object(o)) {
        json_decref(o);
        return lr_err(LR_EINPUT, "%s: line %zu: not a JSON object", L->in.name, L->in.lineno);
    }
    *out = o;
    return 0;
}

/* The gold field as text: strings as they are, numbers as Python's str(). */
static int gold_text(json_t *g, ans_kind kind, char *buf, size_t n, const char **out) {
    if (json_is_string(g)) *out = json_string_value(g);
    else if (json_is_integer(g)) {
        long long v = json_integer_value(g);
        if (kind == ANS_CHOICE && v >= 0 && v <= 3) snprintf(buf, n, "%c", (char)('A' + v));
        else snprintf(buf, n, "%lld", v);
        *out = buf;
    } else if (json_is_real(g)) {
        ans_py_float_repr(json_real_value(g), buf, n);
        *out = buf;
    } else return -1;
    return 0;
}

static int judge_bench_kind(const char *b, ans_kind *k) {
    bd_layout l;
    if (bd_layout_from_name(b, &l) && strcmp(b, "math")) return -1;
    *k = ans_bench_kind(b);
    return 0;
}

int sc_judge_object(json_t *o, const char *name, size_t lineno, int *correct) {
    json_t *b = json_object_get(o, "bench"), *p = json_object_get(o, "prediction"), *g = json_object_get(o, "gold");
    ans_kind kind = ANS_MATH;
    const char *gold = NULL;
    char gbuf[64];
    if (!json_is_string(b))
        return lr_err(LR_EINPUT, "%s: line %zu: field \"bench\": missing or not a string", name, lineno);
    if (judge_bench_kind(json_string_value(b), &kind))
        return lr_err(LR_EINPUT, "%s: line %zu: field \"bench\": unknown benchmark \"%s\" (known: %s, math)", name,
                      lineno, json_string_value(b), bd_layout_list());
    if (!json_is_string(p))
        return lr_err(LR_EINPUT, "%s: line %zu: field \"prediction\": missing or not a string", name, lineno);
    if (!g || gold_text(g, kind, gbuf, sizeof gbuf, &gold))
        return lr_err(LR_EINPUT, "%s: line %zu: field \"gold\": missing or not a string or number", name, lineno);
    ans_verdict v;
    ans_judge(kind, json_string_value(p), gold, &v);
    json_object_set_new(o, "extracted", sc_jstr(v.extracted));
    json_object_set_new(o, "correct", json_boolean(v.correct));
    *correct = v.correct;
    ans_verdict_free(&v);
    return 0;
}

static size_t hash_id(const char *s) { return (size_t)lr_fnv1a64(LR_FNV_INIT, s, strlen(s)); }

sc_pred *sc_find(sc_preds *P, const char *id) {
    if (!P->nslot) return NULL;
    for (size_t h = hash_id(id) & (P->nslot - 1);; h = (h + 1) & (P->nslot - 1)) {
        if (!P->slot[h]) return NULL;
        sc_pred *r = &P->rows[P->slot[h] - 1];
        if (!strcmp(r->id, id)) return r;
    }
}

static void add_pred(sc_preds *P, const char *id, char *pred, long long tokens, size_t line) {
    if (P->n == P->cap) P->rows = xrealloc(P->rows, sizeof(sc_pred) * (P->cap = P->cap * 2 + 64));
    sc_pred *r = &P->rows[P->n++];
    r->id = xstrdup(id);
    r->pred = pred;
    r->tokens = tokens;
    r->line = line;
    r->used = 0;
}

/* An lr-infer `dist` stream read as it is: "id", "text" (or "tokens"
 * decoded with tok), the count of generated tokens. A stream that
 * is cut short or damaged is refused like any reader refuses it. */
static int load_stream(const char *path, const tok_t *tok, sc_preds *P) {
    lrs_reader *r;
    int rc = lrs_open_read(&r, path, "dist");
    if (rc) return rc;
    const msgpack_object *rec;
    int32_t *ids = NULL;
    size_t cap = 0, n;
    while ((rc = lrs_next(r, &rec)) == 1) {
        const char *id, *text = NULL;
        size_t idlen, tlen = 0;
        if ((rc = lrs_get_str(r, rec, "id", &id, &idlen)) ||
            (rc = lrs_get_i32s(r, rec, "tokens", &ids, &cap, &n)))
            break;
        if (lrs_get(rec, "text") && (rc = lrs_get_str(r, rec, "text", &text, &tlen))) break;
        char *pred;
        if (text) {
            pred = xmalloc(tlen + 1);
            memcpy(pred, text, tlen);
            pred[tlen] = 0;
        } else if (!tok) {
            rc = lrs_field_err(r, "text", "missing (give --tokenizer to decode \"tokens\")");
            break;
        } else if ((rc = tok_decode(tok, ids, n, &pred, NULL))) {
            lr_err_prefix(rc, "%s: record %llu: field \"tokens\"", lrs_path(r), (unsigned long long)lrs_recno(r));
            break;
        }
        char *idz = xmalloc(idlen + 1);
        memcpy(idz, id, idlen);
        idz[idlen] = 0;
        add_pred(P, idz, pred, (long long)n, (size_t)lrs_recno(r));
        free(idz);
    }
    free(ids);
    lrs_close_read(r);
    return rc == 1 ? 0 : rc;
}

/* Prediction lines: {"id", "prediction"[, "tokens": N]}, or the records of
 * an lr-infer dist stream as lr-dump prints them ({"id", "text", "tokens":
 * [ids]}; the header and {"lrs_end"} lines are passed over, but a dump
 * that has a header must end with its lrs_end line: without it the dump
 * was cut short). "-" is stdin. A zstd stream (.lrs) is read directly. */
int sc_load_preds(const char *path, const tok_t *tok, sc_preds *P, size_t *repaired) {
    sc_lines L = {0};
    if (strcmp(path, "-")) {
        if (jsonl_open(&L.in, path)) return LR_EIO;
    } else jsonl_from(&L.in, stdin, path);
    int first = getc(L.in.f), rc;
    if (first != EOF) ungetc(first, L.in.f);
    if (first == 0x28) { /* the first byte of a zstd frame, never of a JSON line */
        jsonl_close(&L.in);
        rc = load_stream(path, tok, P);
        goto index;
    }
    json_t *o;
    size_t hdr_line = 0, end_line = 0, since_hdr = 0;
    while ((rc = sc_next_object(&L, &o)) == 0) {
        if (json_object_get(o, "lrs")) {
            if (hdr_line && !end_line)
                rc = lr_err(LR_EINPUT, "%s: line %zu: a stream header before the {\"lrs_end\"} line of the one on line %zu",
                            path, L.in.lineno, hdr_line);
            hdr_line = L.in.lineno;
            end_line = 0;
            since_hdr = 0;
            json_decref(o);
            if (rc) break;
            continue;
        }
        if (json_object_get(o, "lrs_end")) {
            json_t *e = json_object_get(o, "lrs_end");
            if (!hdr_line || end_line)
                rc = lr_err(LR_EINPUT, "%s: line %zu: field \"lrs_end\": no stream header before it", path, L.in.lineno);
            else if (!json_is_integer(e) || json_integer_value(e) < 0 || (size_t)json_integer_value(e) != since_hdr)
                rc = lr_err(LR_EINPUT, "%s: line %zu: field \"lrs_end\": counts %lld records, %zu lines were given",
                            path, L.in.lineno, json_is_integer(e) ? (long long)json_integer_value(e) : -1LL, since_hdr);
            end_line = L.in.lineno;
            json_decref(o);
            if (rc) break;
            continue;
        }
        since_hdr++;
        json_t *id = json_object_get(o, "id"), *p = json_object_get(o, "prediction"), *t = json_object_get(o, "tokens");
        const char *pf = "prediction";
        if (!p && json_object_get(o, "text")) {
            p = json_object_get(o, "text");
            pf = "text";
        }
        char *decoded = NULL;
        if (!p && tok && json_is_array(t)) { /* an lr-infer record without text: decode its tokens */
            size_t n = json_array_size(t), len;
            int32_t *ids = xmalloc(sizeof(int32_t) * (n + 1));
            for (size_t k = 0; k < n; k++) ids[k] = (int32_t)json_integer_value(json_array_get(t, k));
            rc = tok_decode(tok, ids, n, &decoded, &len);
            free(ids);
            if (rc) rc = lr_err_prefix(rc, "%s: line %zu: field \"tokens\"", path, L.in.lineno);
        }
        if (rc) {
        } else if (!json_is_string(id)) rc = lr_err(LR_EINPUT, "%s: line %zu: field \"id\": missing or not a string", path, L.in.lineno);
        else if (!json_is_string(p) && !decoded)
            rc = lr_err(LR_EINPUT, "%s: line %zu: field \"%s\": missing or not a string%s", path, L.in.lineno, pf,
                        json_is_array(t) && !tok ? " (give --tokenizer to decode \"tokens\")" : "");
        else if (t && !json_is_null(t) && !json_is_integer(t) && !json_is_array(t))
            rc = lr_err(LR_EINPUT, "%s: line %zu: field \"tokens\": not a count or a list of token ids", path, L.in.lineno);
        if (rc) {
            free(decoded);
            json_decref(o);
            break;
        }
        add_pred(P, json_string_value(id), decoded ? decoded : xstrdup(json_string_value(p)),
                 json_is_integer(t) ? json_integer_value(t) : json_is_array(t) ? (long long)json_array_size(t) : -1,
                 L.in.lineno);
        json_decref(o);
    }
    if (rc == -1) rc = 0;
    if (!rc && hdr_line && !end_line)
        rc = lr_err(LR_EINPUT, "%s: line %zu: input ends without the {\"lrs_end\"} line of the stream header on line %zu: "
                    "the dump was cut short", path, L.in.lineno, hdr_line);
    jsonl_close(&L.in);
    *repaired += L.repaired;
index:
    if (rc) return rc;
    P->nslot = 16;
    while (P->nslot < 2 * P->n) P->nslot *= 2;
    P->slot = xcalloc(P->nslot, sizeof(size_t));
    const char *unit = first == 0x28 ? "record" : "line";
    for (size_t i = 0; i < P->n; i++) {
        size_t h = hash_id(P->rows[i].id) & (P->nslot - 1);
        for (; P->slot[h]; h = (h + 1) & (P->nslot - 1))
            if (!strcmp(P->rows[P->slot[h] - 1].id, P->rows[i].id))
                return lr_err(LR_EINPUT, "%s: %s %zu: field \"id\": duplicate id \"%s\" (first on %s %zu)", path, unit,
                              P->rows[i].line, P->rows[i].id, unit, P->rows[P->slot[h] - 1].line);
        P->slot[h] = i + 1;
    }
    return 0;
}

void sc_preds_free(sc_preds *P) {
    for (size_t i = 0; i < P->n; i++) {
        free(P->rows[i].id);
        free(P->rows[i].pred);
    }
    free(P->rows);
    free(P->slot);
}

int sc_data_files(const sc_preds *P, const char *dir, char **files) {
    int n = 0;
    for (size_t i = 0; i < P->n; i++) {
        const char *id = P->rows[i].id, *colon = strrchr(id, ':');
        if (!colon || !strchr(id, '/')) continue;
        size_t len = strlen(dir) + (size_t)(colon - id) + 16;
        char *f = xmalloc(len);
        snprintf(f, len, "%s/%.*s.jsonl", dir, (int)(colon - id), id);
        int seen = 0;
        for (int k = 0; k < n && !seen; k++) seen = !strcmp(files[k], f);
        if (seen) free(f);
        else files[n++] = f;
    }
    return n;
}

int sc_write_line(FILE *f, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    int bad = !s || fputs(s, f) == EOF || fputc('\n', f) == EOF;
    free(s);
    return bad ? lr_err(LR_EIO, "write error") : 0;
}

int sc_score_file(const char *path, const char *layout, sc_preds *P, FILE *out, sum_bench *st) {
    bd_reader *r;
    int rc = bd_open(path, layout, &r);
    if (rc) return rc;
    memset(st, 0, sizeof *st);
    st->bench = xstrdup(bd_layout_name(bd_reader_layout(r)));
    st->file = xstrdup(path);
    ans_kind kind = ans_bench_kind(st->bench);
    bd_item it;
    for (;;) {
        rc = bd_next(r, &it);
        if (rc == -1) {
            rc = 0;
            break;
        }
        if (rc == LR_EINPUT) { /* a row without question or answer: counted, reported, skipped */
            if (st->skipped < 5) fprintf(stderr, "%s: skipped row: %s\n", lr_progname, lr_errmsg());
            st->skipped++;
            continue;
        }
        if (rc) break;
        st->total++;
        sc_pred *p = sc_find(P, it.id);
        json_t *o = json_object();
        json_object_set_new(o, "id", sc_jstr(it.id));
        json_object_set_new(o, "bench", json_string(st->bench));
        if (!p) {
            st->missing++;
            json_object_set_new(o, "prediction", json_null());
            json_object_set_new(o, "extracted", json_null());
            json_object_set_new(o, "gold", sc_jstr(it.gold_norm));
            json_object_set_new(o, "correct", json_false());
            json_object_set_new(o, "missing", json_true());
        } else {
            p->used = 1;
            ans_verdict v;
            ans_judge(kind, p->pred, it.gold, &v);
            st->scored++;
            st->correct += (size_t)v.correct;
            if (p->tokens >= 0) {
                st->tok_sum += (double)p->tokens;
                st->tok_n++;
            }
            json_object_set_new(o, "prediction", sc_jstr(p->pred));
            json_object_set_new(o, "extracted", sc_jstr(v.extracted));
            json_object_set_new(o, "gold", sc_jstr(v.gold));
            json_object_set_new(o, "correct", json_boolean(v.correct));
            if (p->tokens >= 0) json_object_set_new(o, "tokens", json_integer(p->tokens));
            ans_verdict_free(&v);
        }
        int ok = json_is_true(json_object_get(o, "correct"));
        if (it.subject) sum_group_add(&st->by_subject, it.subject, ok);
        if (it.level >= 0) {
            char lv[16];
            snprintf(lv, sizeof lv, "%d", it.level);
            sum_group_add(&st->by_level, lv, ok);
        }
        bd_item_free(&it);
        rc = sc_write_line(out, o);
        json_decref(o);
        if (rc) break;
    }
    if (st->skipped > 5) fprintf(stderr, "%s: %s: ... %zu rows skipped in all\n", lr_progname, path, st->skipped);
    sum_groups_sort(&st->by_subject);
    sum_groups_sort(&st->by_level);
    bd_close(r);
    return rc;
}

