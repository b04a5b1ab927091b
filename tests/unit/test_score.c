/* score and summary: predictions loaded and joined with benchmark rows by
 * id, on small files written here whose counts are worked out by hand in
 * the comments; the accuracy tables they give; UTF-8 repair; the judge
 * command's per-line work (gold numbers as Python's str() writes them). */
#include "check.h"
#include "tpath.h"
#include "eval/score.h"
#include "eval/summary.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static int load(const char *text, sc_preds *P, size_t *repaired) {
    const char *p = tpath("pred.jsonl");
    put(p, text);
    memset(P, 0, sizeof *P);
    *repaired = 0;
    return sc_load_preds(p, NULL, P, repaired);
}

static void test_utf8(void) {
    json_t *j = sc_jstr("a\xff" "b");
    CHECK(j && !strcmp(json_string_value(j), "a\xef\xbf\xbd" "b"));
    json_decref(j);
    put(tpath("u.jsonl"), "{\"x\": \"ok\"}\n\n{\"x\": \"bad \xfe\"}\n[1]\n");
    sc_lines L = {0};
    CHECK(jsonl_open(&L.in, tpath("u.jsonl")) == 0);
    json_t *o;
    CHECK(sc_next_object(&L, &o) == 0 && L.repaired == 0);
    json_decref(o);
    CHECK(sc_next_object(&L, &o) == 0 && L.repaired == 1 && L.in.lineno == 3);
    CHECK(!strcmp(json_string_value(json_object_get(o, "x")), "bad \xef\xbf\xbd"));
    json_decref(o);
    CHECK(sc_next_object(&L, &o) == LR_EINPUT && strstr(lr_errmsg(), "line 4: not a JSON object"));
    jsonl_close(&L.in);
}

/* judge: gold numbers become text as Python's str() does; an index 0-3 is
 * a letter for mmlu_stem only. */
static void test_judge(void) {
    static const struct {
        const char *line;
        int correct;
        const char *extracted;
    } cases[] = {
        {"{\"bench\": \"gsm8k\", \"prediction\": \"so the answer is 18.\", \"gold\": 18}", 1, "18"},
        {"{\"bench\": \"gsm8k\", \"prediction\": \"so the answer is 17.\", \"gold\": \"18\"}", 0, "17"},
        {"{\"bench\": \"mmlu_stem\", \"prediction\": \"The answer is (C).\", \"gold\": 2}", 1, "C"},
        {"{\"bench\": \"mmlu_stem\", \"prediction\": \"The answer is (C).\", \"gold\": \"B\"}", 0, "C"},
        {"{\"bench\": \"math\", \"prediction\": \"\\\\boxed{0.5}\", \"gold\": 0.5}", 1, "0.5"},
        {"{\"bench\": \"svamp\", \"prediction\": \"\\\\boxed{2}\", \"gold\": 2.0}", 1, "2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *o = json_loads(cases[i].line, 0, NULL);
        int ok = -1;
        CHECK(o && sc_judge_object(o, "in", i + 1, &ok) == 0);
        const char *ex = json_string_value(json_object_get(o, "extracted"));
        CHECKF(ok == cases[i].correct && json_is_boolean(json_object_get(o, "correct")) &&
                   json_is_true(json_object_get(o, "correct")) == cases[i].correct && ex && !strcmp(ex, cases[i].extracted),
               "case %zu: correct %d, extracted \"%s\"", i, ok, ex ? ex : "(null)");
        json_decref(o);
    }
    static const struct {
        const char *line, *msg;
    } bad[] = {
        {"{\"bench\": \"gsm9k\", \"prediction\": \"1\", \"gold\": 1}", "in: line 7: field \"bench\": unknown benchmark \"gsm9k\""},
        {"{\"prediction\": \"1\", \"gold\": 1}", "field \"bench\": missing"},
        {"{\"bench\": \"gsm8k\", \"prediction\": 1, \"gold\": 1}", "field \"prediction\""},
        {"{\"bench\": \"gsm8k\", \"prediction\": \"1\", \"gold\": [1]}", "field \"gold\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *o = json_loads(bad[i].line, 0, NULL);
        int ok;
        CHECKF(sc_judge_object(o, "in", 7, &ok) == LR_EINPUT && strstr(lr_errmsg(), bad[i].msg), "bad %zu: %s", i,
               lr_errmsg());
        json_decref(o);
    }
}

static void test_load(void) {
    sc_preds P;
    size_t rep;
    /* plain lines, a token count, a dump with its header and end line */
    CHECK(load("{\"id\": \"gsm8k/test:0\", \"prediction\": \"a\", \"tokens\": 12}\n"
               "{\"lrs\": 1, \"kind\": \"dist\"}\n"
               "{\"id\": \"gsm8k/test:1\", \"idx\": 1, \"text\": \"b \xff\", \"tokens\": [5, 6, 7]}\n"
               "{\"lrs_end\": 1}\n",
               &P, &rep) == 0);
    CHECK(P.n == 2 && rep == 1);
    sc_pred *a = sc_find(&P, "gsm8k/test:0"), *b = sc_find(&P, "gsm8k/test:1");
    CHECK(a && !strcmp(a->pred, "a") && a->tokens == 12 && a->line == 1 && !a->used);
    CHECK(b && !strcmp(b->pred, "b \xef\xbf\xbd") && b->tokens == 3 && b->line == 3);
    CHECK(sc_find(&P, "gsm8k/test:2") == NULL);
    sc_preds_free(&P);
    /* refused: a duplicate id names both lines; a dump cut short; token ids
     * with no tokenizer to decode them; a count that is not one */
    CHECK(load("{\"id\": \"x/y:0\", \"prediction\": \"a\"}\n{\"id\": \"x/y:1\", \"prediction\": \"a\"}\n"
               "{\"id\": \"x/y:0\", \"prediction\": \"b\"}\n", &P, &rep) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "line 3: field \"id\": duplicate id \"x/y:0\" (first on line 1)"), "%s", lr_errmsg());
    sc_preds_free(&P);
    CHECK(load("{\"lrs\": 1}\n{\"id\": \"x/y:0\", \"text\": \"a\"}\n", &P, &rep) == LR_EINPUT &&
          strstr(lr_errmsg(), "cut short"));
    sc_preds_free(&P);
    CHECK(load("{\"lrs\": 1}\n{\"id\": \"x/y:0\", \"text\": \"a\"}\n{\"lrs_end\": 2}\n", &P, &rep) == LR_EINPUT &&
          strstr(lr_errmsg(), "counts 2 records, 1 lines"));
    sc_preds_free(&P);
    CHECK(load("{\"id\": \"x/y:0\", \"tokens\": [1, 2]}\n", &P, &rep) == LR_EINPUT && strstr(lr_errmsg(), "give --tokenizer"));
    sc_preds_free(&P);
    CHECK(load("{\"id\": \"x/y:0\", \"prediction\": \"a\", \"tokens\": \"3\"}\n", &P, &rep) == LR_EINPUT &&
          strstr(lr_errmsg(), "field \"tokens\""));
    sc_preds_free(&P);
}

static void test_data_files(void) {
    sc_preds P;
    size_t rep;
    CHECK(load("{\"id\": \"gsm8k/test:0\", \"prediction\": \"a\"}\n{\"id\": \"math500/test:3\", \"prediction\": \"a\"}\n"
               "{\"id\": \"nocolon/x\", \"prediction\": \"a\"}\n{\"id\": \"noslash:1\", \"prediction\": \"a\"}\n"
               "{\"id\": \"gsm8k/test:9\", \"prediction\": \"a\"}\n{\"id\": \"gsm8k/train:2\", \"prediction\": \"a\"}\n",
               &P, &rep) == 0);
    char *files[6];
    int n = sc_data_files(&P, "D", files);
    CHECK(n == 3);
    if (n == 3)
        CHECK(!strcmp(files[0], "D/gsm8k/test.jsonl") && !strcmp(files[1], "D/math500/test.jsonl") &&
              !strcmp(files[2], "D/gsm8k/train.jsonl"));
    for (int i = 0; i < n; i++) free(files[i]);
    sc_preds_free(&P);
}

/* Per-problem lines read back, keyed by id. */
static json_t *results(FILE *f) {
    json_t *by_id = json_object();
    rewind(f);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        CHECK(o != NULL);
        if (o) json_object_set_new(by_id, json_string_value(json_object_get(o, "id")), o);
    }
    return by_id;
}

static void test_score(void) {
    mkdir(tpath("gsm8k"), 0777);
    mkdir(tpath("math500"), 0777);
    /* gsm8k: three rows and one without an answer (skipped); row 0 right,
     * row 1 wrong, row 2 without a prediction: 1 of 3 correct, 2 scored,
     * mean tokens (100 + 50) / 2 */
    put(tpath("gsm8k/test.jsonl"), "{\"question\": \"q0\", \"answer\": \"x #### 18\"}\n"
                                   "{\"question\": \"q1\", \"answer\": \"x #### 3\"}\n"
                                   "{\"question\": \"q2\", \"answer\": \"x #### 7\"}\n"
                                   "{\"question\": \"q3\"}\n");
    /* math500: right on 0, 2, 4, wrong on 1, 3 missing */
    put(tpath("math500/test.jsonl"),
        "{\"problem\": \"P0\", \"answer\": \"1\", \"subject\": \"Algebra\", \"level\": 1, \"unique_id\": \"u0\"}\n"
        "{\"problem\": \"P1\", \"answer\": \"2\", \"subject\": \"Algebra\", \"level\": 2, \"unique_id\": \"u1\"}\n"
        "{\"problem\": \"P2\", \"answer\": \"3\", \"subject\": \"Geometry\", \"level\": 2, \"unique_id\": \"u2\"}\n"
        "{\"problem\": \"P3\", \"answer\": \"4\", \"subject\": \"Geometry\", \"level\": 5, \"unique_id\": \"u3\"}\n"
        "{\"problem\": \"P4\", \"answer\": \"5\", \"subject\": \"Number Theory\", \"level\": 10, \"unique_id\": \"u4\"}\n");
    sc_preds P;
    size_t rep;
    CHECK(load("{\"id\": \"gsm8k/test:0\", \"prediction\": \"She makes \\\\boxed{18} dollars.\", \"tokens\": 100}\n"
               "{\"id\": \"gsm8k/test:1\", \"prediction\": \"The answer is 4.\", \"tokens\": 50}\n"
               "{\"id\": \"gsm8k/test:99\", \"prediction\": \"no such row\"}\n"
               "{\"id\": \"math500/test:0\", \"prediction\": \"\\\\boxed{1}\"}\n"
               "{\"id\": \"math500/test:1\", \"prediction\": \"\\\\boxed{9}\"}\n"
               "{\"id\": \"math500/test:2\", \"prediction\": \"\\\\boxed{3}\"}\n"
               "{\"id\": \"math500/test:4\", \"prediction\": \"\\\\boxed{5}\"}\n",
               &P, &rep) == 0);
    sum_bench S[2];
    FILE *out = tmpfile();
    CHECK(out != NULL);
    if (!out) return;
    CHECK(sc_score_file(tpath("gsm8k/test.jsonl"), NULL, &P, out, &S[0]) == 0);
    CHECK(!strcmp(S[0].bench, "gsm8k") && S[0].total == 3 && S[0].scored == 2 && S[0].correct == 1 && S[0].missing == 1 &&
          S[0].skipped == 1 && S[0].tok_n == 2 && S[0].tok_sum == 150 && S[0].by_subject.n == 0 && S[0].by_level.n == 0);
    CHECK(sc_score_file(tpath("math500/test.jsonl"), NULL, &P, out, &S[1]) == 0);
    CHECK(!strcmp(S[1].bench, "math500") && S[1].total == 5 && S[1].correct == 3 && S[1].missing == 1 && S[1].tok_n == 0);
    CHECK(sc_find(&P, "gsm8k/test:0")->used && sc_find(&P, "math500/test:4")->used && !sc_find(&P, "gsm8k/test:99")->used);
    json_t *R = results(out);
    fclose(out);
    CHECK(json_object_size(R) == 8);
    json_t *r0 = json_object_get(R, "gsm8k/test:0"), *r2 = json_object_get(R, "gsm8k/test:2");
    CHECK(r0 && json_is_true(json_object_get(r0, "correct")) && !strcmp(json_string_value(json_object_get(r0, "extracted")), "18") &&
          json_integer_value(json_object_get(r0, "tokens")) == 100);
    CHECK(r2 && json_is_true(json_object_get(r2, "missing")) && json_is_false(json_object_get(r2, "correct")) &&
          json_is_null(json_object_get(r2, "prediction")) && !strcmp(json_string_value(json_object_get(r2, "gold")), "7"));
    json_decref(R);

    /* the tables: subjects in name order, levels by value */
    const sum_groups *sub = &S[1].by_subject, *lev = &S[1].by_level;
    CHECK(sub->n == 3 && lev->n == 4);
    if (sub->n == 3 && lev->n == 4) {
        CHECK(!strcmp(sub->g[0].key, "Algebra") && sub->g[0].total == 2 && sub->g[0].correct == 1);
        CHECK(!strcmp(sub->g[2].key, "Number Theory") && sub->g[2].correct == 1);
        CHECK(!strcmp(lev->g[0].key, "1") && !strcmp(lev->g[1].key, "2") && !strcmp(lev->g[2].key, "5") &&
              !strcmp(lev->g[3].key, "10"));
        CHECK(lev->g[1].total == 2 && lev->g[1].correct == 1 && lev->g[2].total == 1 && lev->g[2].correct == 0);
    }
    CHECK_CLOSE(sum_acc(&S[0]), 100.0 / 3, 1e-12, 0);
    CHECK_CLOSE(sum_acc(&S[1]), 60.0, 1e-12, 0);
    json_t *j = sum_json(S, 2, "run", 1, 0);
    CHECK_CLOSE(json_real_value(json_object_get(j, "avg")), (100.0 / 3 + 60.0) / 2, 1e-12, 0);
    CHECK(json_integer_value(json_object_get(j, "unmatched_predictions")) == 1);
    json_t *g = json_object_get(json_object_get(j, "benchmarks"), "gsm8k");
    CHECK(json_real_value(json_object_get(g, "mean_tokens")) == 75 && json_integer_value(json_object_get(g, "skipped_rows")) == 1);
    CHECK(json_is_null(json_object_get(json_object_get(json_object_get(j, "benchmarks"), "math500"), "mean_tokens")));
    json_t *l10 = json_object_get(json_object_get(json_object_get(json_object_get(j, "benchmarks"), "math500"), "by_level"), "10");
    CHECK(l10 && json_real_value(json_object_get(l10, "acc")) == 100);
    json_decref(j);
    char *md = NULL;
    size_t mdn = 0;
    FILE *m = open_memstream(&md, &mdn);
    sum_md(m, S, 2, "run");
    fclose(m);
    CHECK(!strncmp(md, "run\n\n| benchmark |", 17));
    CHECK(strstr(md, "\n| gsm8k | 3 | 2 | 1 | 33.3 | 1 | 1 | 75.0 |\n") && strstr(md, "\n| math500 | 5 | 4 | 3 | 60.0 | 1 | 0 | - |\n"));
    CHECK(strstr(md, "\n| avg | | | | 46.7 | | | |\n"));
    CHECK(strstr(md, "math500 by level\n\n| level | problems | correct | accuracy (%) |\n|---|---|---|---|\n| 1 | 1 | 1 | 100.0 |\n"
                     "| 2 | 2 | 1 | 50.0 |\n| 5 | 1 | 0 | 0.0 |\n| 10 | 1 | 1 | 100.0 |\n"));
    CHECK(!strstr(md, "gsm8k by"));
    free(md);
    sum_bench_free(&S[0]);
    sum_bench_free(&S[1]);
    sc_preds_free(&P);
}

int main(void) {
    const char *t = getenv("LR_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s", t ? t : "/tmp");
    lr_progname = "test_score";
    test_utf8();
    test_judge();
    test_load();
    test_data_files();
    test_score();
    CHECK_DONE();
}
