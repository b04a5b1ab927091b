/* mathequal: answer equivalence with the rules of the Qwen2.5-Math
 * toolkit's evaluation/grader.py (math_equal with include_percentage and
 * is_close, the defaults its evaluate() uses):
 *   1. equal strings (stripped, lower case);
 *   2. a gold letter A-E and the prediction's choice letter;
 *   3. both numbers (commas ignored, "50%" = 0.5): equal within relative
 *      tolerance 1e-4 to gold, gold/100 or gold*100;
 *   4. equal after dropping brackets; tuples/intervals and pmatrix
 *      matrices element by element (recursively, depth-limited);
 *   5. equations compared as lhs - (rhs) up to sign; "x = 5" against "5";
 *   6. symbolic equality: the bounded evaluator in mathexpr.h stands in for
 *      sympy.
 * Inputs are the normalised answers (answer.h). Time is linear in their
 * length; recursion is limited to depth 32 (deeper nesting: not equal).
 */
#ifndef LR_MATHEQUAL_H
#define LR_MATHEQUAL_H

int meq_equal(const char *pred, const char *gold);

/* Python float(s): 0 and *out, or -1 when Python would raise. */
int meq_py_float(const char *s, double *out);

/* grader.parse_digits: float after removing commas, or "x%" / "x\%" as
 * x/100. 0 and *out, or -1. */
int meq_parse_digits(const char *s, double *out);

#endif
