/* lr-eval: scores model outputs on the seven benchmarks the way the
 * Qwen2.5-Math evaluation toolkit does (lib/eval/answer.h, mathequal.h),
 * from generations given as JSON lines, so generation and scoring can run
 * on different machines.
 *
 *   lr-eval judge [IN.jsonl]          {"bench","prediction","gold"} lines -> + "extracted", "correct"
 *   lr-eval score --pred P.jsonl (--data FILE ... | --data-dir DIR) [--layout NAME] [--out-dir D] [--label L]
 *   lr-eval compare [--resamples N] [--seed N] [--json F] BASE RUN|LABEL=RUN,RUN... ...
 */
#include "eval/answer.h"
#include "eval/judge.h"
#include "eval/benchdata.h"
#include "eval/compare.h"
#include "io/jsonl.h"
#include "io/stream.h"
#include "base/opt.h"
#include "model/tokenizer.h"
#include "base/outfile.h"
#include "base/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

static void usage(FILE *f) {
    fputs("usage: lr-eval judge [IN.jsonl]\n"
          "       lr-eval score --pred PRED.jsonl (--data FILE [--data FILE ...] | --data-dir DIR)\n"
          "                     [--layout NAME] [--out-dir DIR] [--label NAME] [--tokenizer PATH]\n"
          "       lr-eval compare [--resamples N] [--seed N] [--level X] [--json FILE]\n"
          "                       BASE RUN|LABEL=RUN,RUN,... ...   (or: lr-eval --compare ...)\n"
          "       lr-eval prompts FILE.jsonl [--layout NAME]\n"
          "\n"
          "Scores generations with the Qwen2.5-Math toolkit's answer extraction and\n"
          "equivalence rules (docs/EVAL.md).\n"
          "\n"
          "judge    reads JSON lines {\"bench\", \"prediction\", \"gold\"} (file or stdin) and\n"
          "         writes each line back with \"extracted\" and \"correct\" added. bench is\n"
          "         one of gsm8k, math500, svamp, asdiv, minerva_math, olympiadbench,\n"
          "         mmlu_stem (or the toolkit's \"math\"); gold is the gold answer (string or\n"
          "         number; for mmlu_stem a letter or the index 0-3).\n"
          "score    joins predictions {\"id\", \"prediction\"[, \"tokens\"]} (or an lr-infer stream,\n"
          "         .lrs as it is or lr-dump's JSON of it: \"text\", or \"tokens\" ids decoded\n"
          "         with --tokenizer; a dump must end with its {\"lrs_end\"} line;\n"
          "         --pred - reads stdin) with the benchmark\n"
          "         rows by id (\"gsm8k/test:17\" = layout/file stem:0-based line). With\n"
          "         --data-dir the files are DIR/<layout>/<stem>.jsonl for the ids seen.\n"
          "         Rows without a prediction count as wrong and are reported as missing;\n"
          "         predictions without a row are reported as unmatched. Writes per-problem\n"
          "         JSON lines and a summary (markdown and JSON): into --out-dir as\n"
          "         results.jsonl, summary.md, summary.json, else lines to stdout and the\n"
          "         markdown summary to stderr. Rows with a subject or level (MATH-500)\n"
          "         also get accuracy by subject and by level.\n"
          "prompts  writes {\"id\", \"bench\", \"prompt\", \"gold\"} per benchmark row: the\n"
          "         toolkit's prompt (qwen25-math-cot; 5-shot for mmlu_stem), for generating\n"
          "         with any engine and scoring the result with score.\n"
          "compare  one table per benchmark, one row per argument: BASE and each RUN are\n"
          "         score --out-dir folders (or their summary.json; results.jsonl beside it\n"
          "         gives the per-problem verdicts, paired by id). LABEL=RUN,RUN,... is one\n"
          "         variant under several seeds: mean accuracy and its sample sd. For each\n"
          "         row vs BASE: the delta in points with a --level (0.95) interval from a\n"
          "         paired bootstrap over problems (--resamples 10000, --seed 1), the exact\n"
          "         McNemar p (two-sided binomial on the discordant problems; for a group\n"
          "         the median and range over its runs) and the discordant counts.\n"
          "         --json FILE also writes the numbers as JSON lines.\n"
          "\n"
          "Invalid UTF-8 in a prediction is replaced by U+FFFD and counted.\n"
          "Exit: 0 ok, 1 usage, 2 bad input, 3 I/O.\n",
          f);
}

/* ---- input lines ---- */

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

/* A JSON string for text that should be UTF-8 (repaired if it is not). */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    int bad;
    char *r = repair_utf8(s, strlen(s), &bad);
    j = json_string(r);
    free(r);
    return j ? j : json_string("");
}

typedef struct {
    jsonl in;
    size_t repaired; /* lines whose invalid UTF-8 was replaced */
} lines;

/* Next non-blank line parsed as a JSON object: 0, -1 at EOF, or an error. */
static int next_object(lines *L, json_t **out) {
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

static int cmd_judge(int argc, char **argv) {
    lines L = {0};
    if (argc > 1) return lr_err(LR_EUSAGE, "judge: one input file at most (see --help)");
    if (argc == 1 && strcmp(argv[0], "-")) {
        if (jsonl_open(&L.in, argv[0])) return LR_EIO;
    } else jsonl_from(&L.in, stdin, "<stdin>");
    int rc = 0;
    size_t n = 0, correct = 0;
    json_t *o;
    while ((rc = next_object(&L, &o)) == 0) {
        json_t *b = json_object_get(o, "bench"), *p = json_object_get(o, "prediction"), *g = json_object_get(o, "gold");
        ans_kind kind = ANS_MATH;
        const char *gold = NULL;
        char gbuf[64];
        if (!json_is_string(b)) rc = lr_err(LR_EINPUT, "%s: line %zu: field \"bench\": missing or not a string", L.in.name, L.in.lineno);
        else if (judge_bench_kind(json_string_value(b), &kind))
            rc = lr_err(LR_EINPUT, "%s: line %zu: field \"bench\": unknown benchmark \"%s\" (known: %s, math)", L.in.name,
                        L.in.lineno, json_string_value(b), bd_layout_list());
        else if (!json_is_string(p))
            rc = lr_err(LR_EINPUT, "%s: line %zu: field \"prediction\": missing or not a string", L.in.name, L.in.lineno);
        else if (!g || gold_text(g, kind, gbuf, sizeof gbuf, &gold))
            rc = lr_err(LR_EINPUT, "%s: line %zu: field \"gold\": missing or not a string or number", L.in.name, L.in.lineno);
        if (rc) {
            json_decref(o);
            break;
        }
        ans_verdict v;
        ans_judge(kind, json_string_value(p), gold, &v);
        json_object_set_new(o, "extracted", jstr(v.extracted));
        json_object_set_new(o, "correct", json_boolean(v.correct));
        n++;
        correct += (size_t)v.correct;
        ans_verdict_free(&v);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!s || fputs(s, stdout) == EOF || fputc('\n', stdout) == EOF) {
            free(s);
            rc = lr_err(LR_EIO, "stdout: write error");
            break;
        }
        free(s);
    }
    if (rc == -1) rc = 0;
    if (L.repaired)
        fprintf(stderr, "%s: %s: %zu line(s) had invalid UTF-8 (replaced by U+FFFD)\n", lr_progname, L.in.name, L.repaired);
    jsonl_close(&L.in);
    if (!rc) fprintf(stderr, "%s: judged %zu, correct %zu\n", lr_progname, n, correct);
    if (!rc && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    return rc;
}

/* ---- score ---- */

typedef struct {
    char *id, *pred;
    long long tokens; /* -1: not given */
    size_t line;
    int used;
} pred_row;

typedef struct {
    pred_row *rows;
    size_t n, cap;
    size_t *slot; /* open addressing: index + 1, 0 empty */
    size_t nslot;
} pred_set;

static size_t hash_id(const char *s) { return (size_t)lr_fnv1a64(LR_FNV_INIT, s, strlen(s)); }

static pred_row *pred_find(pred_set *P, const char *id) {
    if (!P->nslot) return NULL;
    for (size_t h = hash_id(id) & (P->nslot - 1);; h = (h + 1) & (P->nslot - 1)) {
        if (!P->slot[h]) return NULL;
        pred_row *r = &P->rows[P->slot[h] - 1];
        if (!strcmp(r->id, id)) return r;
    }
}

static void add_pred(pred_set *P, const char *id, char *pred, long long tokens, size_t line) {
    if (P->n == P->cap) P->rows = xrealloc(P->rows, sizeof(pred_row) * (P->cap = P->cap * 2 + 64));
    pred_row *r = &P->rows[P->n++];
    r->id = xstrdup(id);
    r->pred = pred;
    r->tokens = tokens;
    r->line = line;
    r->used = 0;
}

/* An lr-infer `dist` stream read as it is: "id", "text" (or "tokens"
 * decoded with --tokenizer), the count of generated tokens. A stream that
 * is cut short or damaged is refused like any reader refuses it. */
static int load_stream(const char *path, const tok_t *tok, pred_set *P) {
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
static int load_preds(const char *path, const tok_t *tok, pred_set *P, size_t *repaired) {
    lines L = {0};
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
    while ((rc = next_object(&L, &o)) == 0) {
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

static void free_preds(pred_set *P) {
    for (size_t i = 0; i < P->n; i++) {
        free(P->rows[i].id);
        free(P->rows[i].pred);
    }
    free(P->rows);
    free(P->slot);
}

/* Accuracy of one group of rows (a subject, a level). */
typedef struct {
    char *key;
    size_t total, correct;
} group_stats;

typedef struct {
    group_stats *g;
    size_t n;
} groups;

typedef struct {
    char *bench, *file;
    size_t total, scored, correct, missing, skipped;
    double tok_sum;
    size_t tok_n;
    groups by_subject, by_level; /* rows that carry a subject / level (MATH-500) */
} bench_stats;

/* Counts a row in its group (few groups: a linear search). */
static void group_add(groups *G, const char *key, int correct) {
    size_t i = 0;
    while (i < G->n && strcmp(G->g[i].key, key)) i++;
    if (i == G->n) {
        G->g = xrealloc(G->g, (G->n + 1) * sizeof *G->g);
        G->g[G->n++] = (group_stats){xstrdup(key), 0, 0};
    }
    G->g[i].total++;
    G->g[i].correct += (size_t)(correct != 0);
}

static int by_key(const void *a, const void *b) {
    const group_stats *x = a, *y = b;
    size_t lx = strlen(x->key), ly = strlen(y->key); /* levels: "2" before "10" */
    int numeric = x->key[0] >= '0' && x->key[0] <= '9' && y->key[0] >= '0' && y->key[0] <= '9';
    if (numeric && lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->key, y->key);
}

static void groups_free(groups *G) {
    for (size_t i = 0; i < G->n; i++) free(G->g[i].key);
    free(G->g);
}

static int write_line(FILE *f, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    int bad = !s || fputs(s, f) == EOF || fputc('\n', f) == EOF;
    free(s);
    return bad ? lr_err(LR_EIO, "write error") : 0;
}

static int score_file(const char *path, const char *layout, pred_set *P, FILE *out, bench_stats *st) {
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
        pred_row *p = pred_find(P, it.id);
        json_t *o = json_object();
        json_object_set_new(o, "id", jstr(it.id));
        json_object_set_new(o, "bench", json_string(st->bench));
        if (!p) {
            st->missing++;
            json_object_set_new(o, "prediction", json_null());
            json_object_set_new(o, "extracted", json_null());
            json_object_set_new(o, "gold", jstr(it.gold_norm));
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
            json_object_set_new(o, "prediction", jstr(p->pred));
            json_object_set_new(o, "extracted", jstr(v.extracted));
            json_object_set_new(o, "gold", jstr(v.gold));
            json_object_set_new(o, "correct", json_boolean(v.correct));
            if (p->tokens >= 0) json_object_set_new(o, "tokens", json_integer(p->tokens));
            ans_verdict_free(&v);
        }
        int ok = json_is_true(json_object_get(o, "correct"));
        if (it.subject) group_add(&st->by_subject, it.subject, ok);
        if (it.level >= 0) {
            char lv[16];
            snprintf(lv, sizeof lv, "%d", it.level);
            group_add(&st->by_level, lv, ok);
        }
        bd_item_free(&it);
        rc = write_line(out, o);
        json_decref(o);
        if (rc) break;
    }
    if (st->skipped > 5) fprintf(stderr, "%s: %s: ... %zu rows skipped in all\n", lr_progname, path, st->skipped);
    if (st->by_subject.n) qsort(st->by_subject.g, st->by_subject.n, sizeof *st->by_subject.g, by_key);
    if (st->by_level.n) qsort(st->by_level.g, st->by_level.n, sizeof *st->by_level.g, by_key);
    bd_close(r);
    return rc;
}

static double acc_of(const bench_stats *s) { return s->total ? 100.0 * (double)s->correct / (double)s->total : 0; }

static double gacc(const group_stats *g) { return g->total ? 100.0 * (double)g->correct / (double)g->total : 0; }

static json_t *groups_json(const groups *G) {
    json_t *o = json_object();
    for (size_t i = 0; i < G->n; i++) {
        json_t *g = json_object();
        json_object_set_new(g, "total", json_integer((json_int_t)G->g[i].total));
        json_object_set_new(g, "correct", json_integer((json_int_t)G->g[i].correct));
        json_object_set_new(g, "acc", json_real(gacc(&G->g[i])));
        json_object_set_new(o, G->g[i].key, g);
    }
    return o;
}

static void groups_md(FILE *f, const char *bench, const char *what, const groups *G) {
    if (!G->n) return;
    fprintf(f, "\n%s by %s\n\n| %s | problems | correct | accuracy (%%) |\n|---|---|---|---|\n", bench, what, what);
    for (size_t i = 0; i < G->n; i++)
        fprintf(f, "| %s | %zu | %zu | %.1f |\n", G->g[i].key, G->g[i].total, G->g[i].correct, gacc(&G->g[i]));
}

static json_t *summary_json(bench_stats *S, int nb, const char *label, size_t unmatched, size_t repaired) {
    json_t *root = json_object(), *bs = json_object();
    json_object_set_new(root, "label", json_string(label));
    double sum = 0;
    for (int i = 0; i < nb; i++) {
        json_t *b = json_object();
        json_object_set_new(b, "file", json_string(S[i].file));
        json_object_set_new(b, "total", json_integer((json_int_t)S[i].total));
        json_object_set_new(b, "scored", json_integer((json_int_t)S[i].scored));
        json_object_set_new(b, "correct", json_integer((json_int_t)S[i].correct));
        json_object_set_new(b, "missing", json_integer((json_int_t)S[i].missing));
        json_object_set_new(b, "skipped_rows", json_integer((json_int_t)S[i].skipped));
        json_object_set_new(b, "acc", json_real(acc_of(&S[i])));
        json_object_set_new(b, "mean_tokens", S[i].tok_n ? json_real(S[i].tok_sum / (double)S[i].tok_n) : json_null());
        if (S[i].by_subject.n) json_object_set_new(b, "by_subject", groups_json(&S[i].by_subject));
        if (S[i].by_level.n) json_object_set_new(b, "by_level", groups_json(&S[i].by_level));
        json_object_set_new(bs, S[i].bench, b);
        sum += acc_of(&S[i]);
    }
    json_object_set_new(root, "benchmarks", bs);
    json_object_set_new(root, "avg", nb ? json_real(sum / nb) : json_null());
    json_object_set_new(root, "unmatched_predictions", json_integer((json_int_t)unmatched));
    json_object_set_new(root, "invalid_utf8_lines", json_integer((json_int_t)repaired));
    return root;
}

static void summary_md(FILE *f, bench_stats *S, int nb, const char *label) {
    fprintf(f, "%s\n\n| benchmark | problems | scored | correct | accuracy (%%) | missing | skipped rows | mean tokens |\n"
               "|---|---|---|---|---|---|---|---|\n", label);
    double sum = 0;
    for (int i = 0; i < nb; i++) {
        char tok[32] = "-";
        if (S[i].tok_n) snprintf(tok, sizeof tok, "%.1f", S[i].tok_sum / (double)S[i].tok_n);
        fprintf(f, "| %s | %zu | %zu | %zu | %.1f | %zu | %zu | %s |\n", S[i].bench, S[i].total, S[i].scored, S[i].correct,
                acc_of(&S[i]), S[i].missing, S[i].skipped, tok);
        sum += acc_of(&S[i]);
    }
    if (nb) fprintf(f, "| avg | | | | %.1f | | | |\n", sum / nb);
    for (int i = 0; i < nb; i++) {
        groups_md(f, S[i].bench, "subject", &S[i].by_subject);
        groups_md(f, S[i].bench, "level", &S[i].by_level);
    }
}

static int cmd_score(int argc, char **argv) {
    const char *pred = NULL, *data_dir = NULL, *layout = NULL, *out_dir = NULL, *label = NULL, *tokp = NULL;
    const char **data = xcalloc((size_t)argc + 1, sizeof(char *));
    int nd = 0, rc = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--pred") ? &pred : !strcmp(a, "--data-dir") ? &data_dir
                           : !strcmp(a, "--layout") ? &layout : !strcmp(a, "--out-dir") ? &out_dir
                           : !strcmp(a, "--label") ? &label : !strcmp(a, "--tokenizer") ? &tokp : NULL;
        if (!strcmp(a, "--data")) dst = &data[nd++];
        if (!dst) {
            free(data);
            return lr_err(LR_EUSAGE, "score: unknown argument \"%s\" (see --help)", a);
        }
        if (i + 1 >= argc) {
            free(data);
            return lr_err(LR_EUSAGE, "score: %s needs a value", a);
        }
        *dst = argv[++i];
    }
    if (!pred || (!nd && !data_dir)) {
        free(data);
        return lr_err(LR_EUSAGE, "score: needs --pred and --data or --data-dir (see --help)");
    }
    if (layout) {
        bd_layout l;
        if (bd_layout_from_name(layout, &l)) {
            free(data);
            return lr_err(LR_EUSAGE, "unknown benchmark layout \"%s\" (known: %s)", layout, bd_layout_list());
        }
    }
    pred_set P = {0};
    lr_out *ores = NULL, *osj = NULL, *omd = NULL;
    size_t repaired = 0;
    char **owned = NULL;
    int nowned = 0;
    tok_t *tok = NULL;
    if (tokp && (rc = tok_load(&tok, tokp))) goto out;
    rc = load_preds(pred, tok, &P, &repaired);
    tok_free(tok);
    if (rc) goto out;
    if (!nd) { /* the files the ids name: "<layout>/<stem>:<line>" */
        owned = xcalloc(P.n + 1, sizeof(char *));
        for (size_t i = 0; i < P.n; i++) {
            const char *id = P.rows[i].id, *colon = strrchr(id, ':');
            if (!colon || !strchr(id, '/')) continue;
            size_t n = strlen(data_dir) + (size_t)(colon - id) + 16;
            char *f = xmalloc(n);
            snprintf(f, n, "%s/%.*s.jsonl", data_dir, (int)(colon - id), id);
            int seen = 0;
            for (int k = 0; k < nowned && !seen; k++) seen = !strcmp(owned[k], f);
            if (seen) free(f);
            else owned[nowned++] = f;
        }
        for (int k = 0; k < nowned; k++) data[nd++] = owned[k];
        if (!nd) {
            rc = lr_err(LR_EINPUT, "%s: no id of the form \"<benchmark>/<split>:<line>\"", pred);
            goto out;
        }
    }
    /* --out-dir: the three files are written under temporary names and
     * renamed into place together once all are complete (base/outfile.h),
     * so a failed or interrupted run leaves no empty or partial summary. */
    FILE *out = stdout, *fsj = NULL, *fmd = NULL;
    char path[4096];
    if (out_dir) {
        if (mkdir(out_dir, 0777) && errno != EEXIST) {
            rc = lr_err(LR_EIO, "%s: %s", out_dir, strerror(errno));
            goto out;
        }
        const char *ins[] = {pred};
        snprintf(path, sizeof path, "%s/results.jsonl", out_dir);
        if ((rc = out_check_inputs(path, ins, 1)) || (rc = out_open(&ores, path, 0, &out))) goto out;
        snprintf(path, sizeof path, "%s/summary.json", out_dir);
        if ((rc = out_check_inputs(path, ins, 1)) || (rc = out_open(&osj, path, 0, &fsj))) goto out;
        snprintf(path, sizeof path, "%s/summary.md", out_dir);
        if ((rc = out_check_inputs(path, ins, 1)) || (rc = out_open(&omd, path, 0, &fmd))) goto out;
    }
    bench_stats *S = xcalloc((size_t)nd, sizeof *S);
    int nb = 0;
    for (int k = 0; k < nd && !rc; k++) {
        rc = score_file(data[k], layout, &P, out, &S[nb]);
        if (S[nb].bench) nb++;
        if (rc) lr_err_prefix(rc, "%s", data[k]);
    }
    size_t unmatched = 0;
    for (size_t i = 0; i < P.n && !rc; i++) /* after an error, only its line */
        if (!P.rows[i].used) {
            if (unmatched < 5) fprintf(stderr, "%s: prediction with no benchmark row: id \"%s\"\n", lr_progname, P.rows[i].id);
            unmatched++;
        }
    if (!label) label = pred;
    if (!rc) {
        json_t *sj = summary_json(S, nb, label, unmatched, repaired);
        if (out_dir) {
            if (json_dumpf(sj, fsj, JSON_INDENT(2)) || fputc('\n', fsj) == EOF)
                rc = lr_err(LR_EIO, "%s/summary.json: write error", out_dir);
            summary_md(fmd, S, nb, label);
            if (!rc) rc = out_commit(&ores);
            if (!rc) rc = out_commit(&osj);
            if (!rc) rc = out_commit(&omd);
        }
        json_decref(sj);
        summary_md(stderr, S, nb, label);
        for (int i = 0; i < nb; i++)
            if (S[i].missing)
                fprintf(stderr, "%s: %s: %zu of %zu problems have no prediction (counted as wrong)\n", lr_progname,
                        S[i].bench, S[i].missing, S[i].total);
        if (unmatched) fprintf(stderr, "%s: %zu prediction(s) matched no benchmark row\n", lr_progname, unmatched);
        if (repaired) fprintf(stderr, "%s: %zu prediction line(s) had invalid UTF-8 (replaced by U+FFFD)\n", lr_progname, repaired);
    }
    if (!rc && !out_dir && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    for (int i = 0; i < nb; i++) {
        free(S[i].bench);
        free(S[i].file);
        groups_free(&S[i].by_subject);
        groups_free(&S[i].by_level);
    }
    free(S);
out:
    out_abort(&ores); /* after a failure: nothing reaches the final names */
    out_abort(&osj);
    out_abort(&omd);
    for (int k = 0; k < nowned; k++) free(owned[k]);
    free(owned);
    free(data);
    free_preds(&P);
    return rc;
}

/* ---- compare ---- */

/* Options, then the summaries (compare.h does the work). */
static int cmd_compare(int argc, char **argv) {
    cmp_opts o = {.resamples = 10000, .seed = 1, .level = 0.95};
    const char *json_path = NULL;
    const char **args = xcalloc((size_t)argc + 1, sizeof(char *));
    int na = 0, rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        int flag = !strcmp(a, "--resamples") || !strcmp(a, "--seed") || !strcmp(a, "--level") || !strcmp(a, "--json");
        if (!flag && a[0] == '-' && a[1] == '-') rc = lr_err(LR_EUSAGE, "compare: unknown option \"%s\" (see --help)", a);
        else if (!flag) args[na++] = a;
        else if (i + 1 >= argc) rc = lr_err(LR_EUSAGE, "compare: %s needs a value", a);
        else if (!strcmp(a, "--resamples")) {
            long v;
            rc = opt_long(a, argv[++i], 1, 10000000, &v);
            o.resamples = (size_t)v;
        } else if (!strcmp(a, "--seed")) rc = opt_u64(a, argv[++i], &o.seed);
        else if (!strcmp(a, "--level")) {
            rc = opt_double(a, argv[++i], 0.5, 0.9999, &o.level);
        } else json_path = argv[++i];
    }
    if (!rc && na < 2) rc = lr_err(LR_EUSAGE, "compare: needs a base summary and at least one other (see --help)");
    cmp_set *s = NULL;
    if (!rc) rc = cmp_load(args, na, &s);
    FILE *jf = NULL;
    if (!rc && json_path && !(jf = fopen(json_path, "wb"))) rc = lr_err(LR_EIO, "%s: %s", json_path, strerror(errno));
    if (!rc) rc = cmp_write(s, &o, stdout, jf);
    if (jf && fclose(jf) && !rc) rc = lr_err(LR_EIO, "%s: write error", json_path);
    if (!rc && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    cmp_free(s);
    free(args);
    return rc;
}

/* ---- prompts ---- */

static int cmd_prompts(int argc, char **argv) {
    const char *file = NULL, *layout = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--layout") && i + 1 < argc) layout = argv[++i];
        else if ((argv[i][0] != '-' || !strcmp(argv[i], "-")) && !file) file = argv[i];
        else return lr_err(LR_EUSAGE, "prompts: unexpected argument \"%s\" (see --help)", argv[i]);
    }
    if (!file) return lr_err(LR_EUSAGE, "prompts: needs a benchmark file (see --help)");
    bd_reader *r;
    int rc = bd_open(file, layout, &r);
    if (rc) return rc;
    bd_layout l = bd_reader_layout(r);
    size_t n = 0, skipped = 0;
    bd_item it;
    while ((rc = bd_next(r, &it)) != -1) {
        if (rc == LR_EINPUT) {
            if (skipped++ < 5) fprintf(stderr, "%s: skipped row: %s\n", lr_progname, lr_errmsg());
            rc = 0;
            continue;
        }
        if (rc) break;
        char *p = bd_prompt(l, it.question);
        json_t *o = json_object();
        json_object_set_new(o, "id", jstr(it.id));
        json_object_set_new(o, "bench", json_string(bd_layout_name(l)));
        json_object_set_new(o, "prompt", jstr(p));
        json_object_set_new(o, "gold", jstr(it.gold));
        free(p);
        bd_item_free(&it);
        rc = write_line(stdout, o);
        json_decref(o);
        if (rc) break;
        n++;
    }
    if (rc == -1) rc = 0;
    bd_close(r);
    if (!rc) fprintf(stderr, "%s: %zu prompts, %zu rows skipped\n", lr_progname, n, skipped);
    if (!rc && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    return rc;
}

int main(int argc, char **argv) {
    lr_progname = "lr-eval";
    if (argc < 2) lr_die(LR_EUSAGE, "expected a command: judge, score, compare or prompts (see --help)");
    const char *cmd = argv[1];
    int rc;
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
    if (!strcmp(cmd, "judge")) rc = cmd_judge(argc - 2, argv + 2);
    else if (!strcmp(cmd, "score")) rc = cmd_score(argc - 2, argv + 2);
    else if (!strcmp(cmd, "compare") || !strcmp(cmd, "--compare")) rc = cmd_compare(argc - 2, argv + 2);
    else if (!strcmp(cmd, "prompts")) rc = cmd_prompts(argc - 2, argv + 2);
    else rc = lr_err(LR_EUSAGE, "unknown command \"%s\" (judge, score, compare, prompts; see --help)", cmd);
    return rc ? lr_fail(rc) : 0;
}
