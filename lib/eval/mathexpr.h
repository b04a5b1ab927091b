/* mathexpr: a small, bounded evaluator for the LaTeX-ish answers the
 * toolkit hands to sympy (grader.symbolic_equal). It covers the common
 * cases -- numbers, + - * / ^, implicit multiplication (2\sqrt{3}, 3\pi,
 * 2x), \frac, \sqrt[n]{}, |x|, n!, \sin \cos \tan \ln \log \exp and
 * friends, single-letter variables and \pi, which sympy's parse_latex
 * reads as a symbol named pi (so "2\pi" = "\pi\cdot 2" but not 6.2832, as in
 * the toolkit) -- and nothing else: anything it does not
 * understand is "not comparable", so the verdict is "not equal" (the
 * toolkit's answer whenever sympy cannot parse either side).
 *
 * No shell-out, no recursion on the input beyond a fixed depth (64), input
 * longer than 4096 bytes is not compared, evaluation is one pass over the
 * parsed nodes; time is linear in the input.
 */
#ifndef LR_MATHEXPR_H
#define LR_MATHEXPR_H

/* 1 when a and b denote the same value: without variables, numerically
 * equal with relative tolerance 1e-4 (as grader.numeric_equal on sympy's
 * N()); with single-letter variables, equal at three fixed points within
 * 1e-8 (standing in for sympy's simplify(a - b) == 0). 0 otherwise,
 * including when either side is not understood. */
int mx_equal(const char *a, const char *b);

/* Evaluates an expression without variables. Returns 0 and sets *out, or -1
 * when it has variables, is not understood or is not finite. */
int mx_eval(const char *s, double *out);

#endif
