/* answer: answer extraction and normalisation with the rules of the
 * Qwen2.5-Math evaluation toolkit (evaluation/parser.py, math_eval.py), so
 * that a verdict here means what the paper's numbers mean.
 *
 * Every function takes NUL-terminated text, treats it as UTF-8 where the
 * toolkit's Python works on characters (invalid bytes count as one
 * non-word character each, so nothing is rejected or crashes), runs in time
 * linear in the text length (a constant number of passes; no backtracking
 * regex) and returns a new malloc'd string the caller frees.
 *
 * Equivalence (the toolkit's grader.py) lives in mathequal.h; ans_judge()
 * below is the whole pipeline: prediction text + gold -> verdict.
 */
#ifndef LR_ANSWER_H
#define LR_ANSWER_H

#include <stddef.h>

/* How a benchmark's answers are treated (parser.py keys these on the data
 * name): multiple choice (mmlu_stem, sat_math, aqua, gaokao2023), no unit
 * stripping (minerva_math, carp_en: STRIP_EXCEPTIONS), or plain math. */
typedef enum { ANS_MATH = 0, ANS_CHOICE = 1, ANS_NOUNIT = 2 } ans_kind;

ans_kind ans_bench_kind(const char *bench);

/* parser.strip_string(s, skip_unit). */
char *ans_strip(const char *s, int skip_unit);

/* parser.extract_answer(text, data_name): the answer of a model output
 * (last brace-balanced \boxed{}, "he answer is", "final answer is", last
 * number), normalised once. Used as is for minerva_math gold solutions. */
char *ans_extract_answer(const char *text, ans_kind kind);

/* What the toolkit scores for one output: the text is cut at the first stop
 * string and stripped (math_eval.py), then extract_answer and strip_string
 * again (run_execute). */
char *ans_extract(const char *text, ans_kind kind);

/* parser.choice_answer_clean (the letter a multiple-choice output names). */
char *ans_choice_clean(const char *text);

/* The gold answer as the toolkit compares it (parse_ground_truth's post
 * processing): strip_string, or for NOUNIT benchmarks only \neq/\leq/\geq. */
char *ans_gold(const char *gold_raw, ans_kind kind);

/* math_eval.py's cut of one output: rstrip, cut at the first of the stop
 * strings </s>, <|im_end|>, <|endoftext|>, strip. A new string. */
char *ans_cut_stop(const char *text);


/* Python float(str(x)) text for a JSON number, as the toolkit sees numeric
 * gold answers (svamp's 145.0 -> "145.0"). buf needs 32 bytes. */
void ans_py_float_repr(double x, char *buf, size_t n);

/* Python str.strip() in place-free form: a new string without leading and
 * trailing (Unicode) whitespace. */
char *ans_pystrip(const char *s);

/* Small UTF-8 helpers shared with mathequal.c. */
int ans_cp(const char *s, size_t n, size_t i, int *cp); /* bytes of the char at i; cp -1 if invalid */
int ans_is_word(int cp);                                /* Python re \w */
int ans_is_space(int cp);                               /* Python str.isspace */

#endif
