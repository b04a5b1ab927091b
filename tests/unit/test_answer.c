/* test_answer: every extraction, normalisation and equivalence rule against
 * the verdict the Qwen2.5-Math toolkit's own code gives
 * (tests/golden/answer_rules.jsonl, written by tests/ref/make_answer_rules.py
 * from a transcription of parser.py / grader.py), then pathological inputs:
 * megabyte outputs, 10,000 nested braces and brackets, invalid UTF-8. Those
 * must not crash, recurse deeply (ASan would see the stack) or go
 * quadratic (the suite's time budget would). */
#include "eval/answer.h"
#include "eval/judge.h"
#include "check.h"
#include "eval/mathequal.h"
#include "eval/mathexpr.h"
#include "base/util.h"

#include <jansson.h>
#include <string.h>

static const char *root(void) {
    const char *r = getenv("LR_ROOT");
    return r ? r : ".";
}

static void golden_rules(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/answer_rules.jsonl", root());
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "%s missing", path);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        CHECKF(o != NULL, "%s: %s", path, e.text);
        if (!o) continue;
        const char *fn = json_string_value(json_object_get(o, "fn"));
        const char *rule = json_string_value(json_object_get(o, "rule"));
        if (!strcmp(fn, "strip")) {
            const char *in = json_string_value(json_object_get(o, "in"));
            const char *want = json_string_value(json_object_get(o, "out"));
            char *got = ans_strip(in, (int)json_integer_value(json_object_get(o, "skip_unit")));
            CHECKF(!strcmp(got, want), "strip rule \"%s\": \"%s\" -> \"%s\", toolkit \"%s\"", rule, in, got, want);
            free(got);
        } else if (!strcmp(fn, "extract")) {
            const char *in = json_string_value(json_object_get(o, "in"));
            const char *bench = json_string_value(json_object_get(o, "bench"));
            const char *want = json_string_value(json_object_get(o, "out"));
            char *got = ans_extract(in, ans_bench_kind(bench));
            CHECKF(!strcmp(got, want), "extract rule \"%s\": got \"%s\", toolkit \"%s\"", rule, got, want);
            free(got);
        } else if (!strcmp(fn, "equal")) {
            const char *p = json_string_value(json_object_get(o, "pred"));
            const char *g = json_string_value(json_object_get(o, "gold"));
            int want = json_is_true(json_object_get(o, "out"));
            int got = meq_equal(p, g);
            CHECKF(got == want, "equal rule \"%s\": \"%s\" vs \"%s\": %d, toolkit %d", rule, p, g, got, want);
        }
        json_decref(o);
        n++;
    }
    free(line);
    fclose(f);
    CHECKF(n > 100, "only %d golden rules", n);
}

/* Rules whose toolkit verdict is written here by hand (cited). */
static void handwritten(void) {
    char buf[64];
    /* svamp's numeric Answer is read as Python str(float) (parse_ground_truth) */
    ans_py_float_repr(145.0, buf, sizeof buf);
    CHECK(!strcmp(buf, "145.0"));
    ans_py_float_repr(0.0001, buf, sizeof buf);
    CHECK(!strcmp(buf, "0.0001"));
    ans_py_float_repr(1e16, buf, sizeof buf);
    CHECK(!strcmp(buf, "1e+16"));
    ans_py_float_repr(2.5e-05, buf, sizeof buf);
    CHECK(!strcmp(buf, "2.5e-05"));
    ans_py_float_repr(1500000.0, buf, sizeof buf);
    CHECK(!strcmp(buf, "1500000.0"));
    /* Python float(): underscores between digits, no hex, inf/nan words */
    double x;
    CHECK(meq_py_float("1_000.5", &x) == 0 && x == 1000.5);
    CHECK(meq_py_float("0x10", &x) != 0);
    CHECK(meq_py_float(" -2e3 ", &x) == 0 && x == -2000);
    CHECK(meq_py_float("1__0", &x) != 0);
    CHECK(meq_parse_digits("12\\%", &x) == 0 && x == 0.12);
    /* grader: gold letter vs a choice in words; the judge's choice fallback */
    ans_verdict v;
    ans_judge(ANS_CHOICE, "After checking each option, the answer is (D).", "D", &v);
    CHECK(v.correct && !strcmp(v.extracted, "D"));
    ans_verdict_free(&v);
    ans_judge(ANS_MATH, "The final answer is \\boxed{18}.", " 18", &v); /* gsm8k gold after "####" */
    CHECK(v.correct && !strcmp(v.gold, "18"));
    ans_verdict_free(&v);
    ans_judge(ANS_NOUNIT, "so $\\boxed{4.5e33}$ ergs", "4.5e33", &v);
    CHECK(v.correct);
    ans_verdict_free(&v);
    /* the evaluator */
    CHECK(mx_eval("2\\sqrt{3}\\cdot\\sqrt{3}", &x) == 0 && fabs(x - 6) < 1e-12);
    CHECK(mx_eval("\\frac{3}{4}+\\frac14", &x) == 0 && fabs(x - 1) < 1e-12);
    CHECK(mx_eval("x+1", &x) != 0);  /* has a variable */
    CHECK(mx_eval("\\infty", &x) != 0); /* not understood */
    CHECK(mx_eval("1/0", &x) != 0);     /* not finite */
    CHECK(mx_equal("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"));
    CHECK(!mx_equal("x", "y"));
}

static char *repeat(const char *unit, size_t times, const char *pre, const char *post) {
    size_t u = strlen(unit), n = strlen(pre) + u * times + strlen(post) + 1;
    char *s = xmalloc(n), *p = s;
    p += sprintf(p, "%s", pre);
    for (size_t i = 0; i < times; i++, p += u) memcpy(p, unit, u);
    strcpy(p, post);
    return s;
}

static void pathological(void) {
    size_t big = getenv("LR_SAN") ? 200000 : 1000000;
    /* a megabyte of chain of thought, answer at the end */
    char *cot = repeat("Step: 3 + 4 = 7, so we carry on. ", big / 34, "", "The answer is \\boxed{7}.");
    char *a = ans_extract(cot, ANS_MATH);
    CHECK(!strcmp(a, "7"));
    free(a);
    free(cot);
    /* a megabyte after "The answer is": strip_string runs over all of it */
    char *tail = repeat("lots of words 12 ", big / 17, "The answer is ", "");
    a = ans_extract(tail, ANS_MATH);
    CHECK(strlen(a) > 0);
    CHECK(!meq_equal(a, "12"));
    free(a);
    free(tail);
    /* a megabyte with no trigger: the last number */
    char *nums = repeat("1,234 ", big / 6, "", "");
    a = ans_extract(nums, ANS_MATH);
    CHECK(!strcmp(a, "1234"));
    free(a);
    free(nums);
    /* 10,000 nested braces in \boxed{} (balanced and not) */
    char *open = repeat("{", 10000, "\\boxed{", "1");
    char *closed = repeat("}", 10001, open, "");
    a = ans_extract(closed, ANS_MATH);
    CHECK(strlen(a) == 20001);
    CHECK(meq_equal(a, "1") == 1); /* grader drops {} before comparing: "1" == "1" */
    free(a);
    a = ans_extract(open, ANS_MATH); /* never closed: everything after \boxed{ */
    CHECK(strlen(a) == 10001);
    free(a);
    free(open);
    free(closed);
    /* 10,000 nested brackets: list comparison recursion is depth-limited */
    char *lo = repeat("[", 10000, "", "1");
    char *l1 = repeat("]", 10000, lo, "");
    char *lo2 = repeat("[", 10000, "", "2");
    char *l2 = repeat("]", 10000, lo2, "");
    CHECK(meq_equal(l1, l2) == 0);
    CHECK(meq_equal(l1, l1) == 1); /* equal strings */
    free(lo);
    free(l1);
    free(lo2);
    free(l2);
    /* deep parentheses and unary minus in the evaluator */
    char *po = repeat("(", 5000, "", "1");
    char *pc = repeat(")", 5000, po, "");
    CHECK(!mx_equal(pc, "1"));
    double x;
    char *neg = repeat("-", 5000, "", "1");
    CHECK(mx_eval(neg, &x) != 0);
    free(po);
    free(pc);
    free(neg);
    /* many \frac and \text{ with nothing to close them */
    char *fr = repeat("\\frac", 20000, "", "12");
    a = ans_strip(fr, 0);
    free(a);
    free(fr);
    char *tx = repeat("\\text{", 20000, "", "");
    a = ans_strip(tx, 0);
    free(a);
    free(tx);
    /* invalid UTF-8: bytes are kept, never a crash */
    a = ans_extract("\xff\xfe garbage \xc3 The answer is \xe2\x82 5 \xf0\x9f", ANS_MATH);
    CHECK(a != NULL);
    free(a);
    a = ans_extract("\\boxed{\xff" "5}", ANS_MATH);
    CHECK(!strcmp(a, "\xff" "5"));
    CHECK(!meq_equal(a, "5"));
    free(a);
    a = ans_choice_clean("\xff (B) \xc3");
    CHECK(!strcmp(a, "B"));
    free(a);
}

int main(void) {
    golden_rules();
    handwritten();
    pathological();
    CHECK_DONE();
}
