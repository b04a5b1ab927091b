/* check.h: the smallest test harness. Every CHECK that fails prints file:line
 * and the expression, and the test binary exits nonzero at the end
 * (CHECK_DONE). Randomised tests print their seed with CHECK_SEED. */
#ifndef LR_CHECK_H
#define LR_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures_ = 0, check_count_ = 0;

#define CHECK(cond) do { check_count_++; if (!(cond)) { check_failures_++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { check_count_++; if (!(cond)) { check_failures_++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
/* |a - b| <= atol + rtol * |b| */
#define CHECK_CLOSE(a, b, atol, rtol) do { double a_ = (a), b_ = (b); check_count_++; \
    if (!(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_))) { check_failures_++; \
    fprintf(stderr, "%s:%d: CHECK_CLOSE failed: %s = %.9g vs %s = %.9g\n", \
            __FILE__, __LINE__, #a, a_, #b, b_); } } while (0)
/* max |a - ref| / max |ref| over n values (a NaN in a counts as infinite
 * error): the tests' relative error of a whole tensor. */
static inline double check_rel_err(const float *a, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}
/* check_rel_err of what a and ref each added to the same starting values
 * start: a gradient far smaller than those values would otherwise hide in
 * them. */
static inline double check_delta_err(const float *a, const float *ref, const float *start, size_t n) {
    float *da = malloc((n ? n : 1) * sizeof *da), *dr = malloc((n ? n : 1) * sizeof *dr);
    for (size_t i = 0; i < n; i++) da[i] = a[i] - start[i], dr[i] = ref[i] - start[i];
    double e = check_rel_err(da, dr, n);
    free(da), free(dr);
    return e;
}
#define CHECK_SEED(seed) fprintf(stderr, "seed %llu\n", (unsigned long long)(seed))
#define CHECK_DONE() do { fprintf(stderr, "%d checks, %d failed\n", check_count_, check_failures_); \
    return check_failures_ ? 1 : (check_count_ ? 0 : 1); } while (0)
#endif
