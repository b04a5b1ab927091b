/* compare: runs scored on the same problems, set side by side against the
 * first (the base), with the two paired statistics the comparison needs:
 *
 *  - delta: accuracy of a run minus the base's, with a percentile interval
 *    from a paired bootstrap over problems (problems are resampled with
 *    replacement, the same draw for both sides, so the interval reflects
 *    which problems the test set happens to hold);
 *  - McNemar's exact test: on the problems where exactly one side is right
 *    (b = base right only, c = run right only), the two-sided binomial
 *    p-value of b against Binomial(b + c, 1/2) (statsmodels' mcnemar with
 *    exact=True; scipy's binomtest(b, b + c).pvalue).
 *
 * A run is one lr-eval score output folder (summary.json with results.jsonl
 * beside it) or a group of such runs (one variant under several seeds): the
 * group's accuracy is the mean of its runs', its spread their sample
 * standard deviation, its per-problem score the share of its runs right, and
 * its delta interval the bootstrap of that score against the base; McNemar
 * is computed per run of a group (reported as the median, minimum and
 * maximum p). Problems are paired by id; every run must hold exactly the
 * base's problems. */
#ifndef LR_COMPARE_H
#define LR_COMPARE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exact two-sided McNemar p-value for b and c discordant pairs:
 * min(1, 2 * P[X <= min(b, c)]), X ~ Binomial(b + c, 1/2); 1 when b = c = 0. */
double cmp_mcnemar_p(size_t b, size_t c);

/* Percentile bootstrap of the mean of d[0..n): `resamples` means of n draws
 * with replacement (rng.h's stream from seed), and their quantiles
 * (1 - level)/2 and (1 + level)/2 (linear interpolation between order
 * statistics, numpy's default). n = 0 gives 0, 0. Returns 0. */
int cmp_bootstrap(const double *d, size_t n, size_t resamples, uint64_t seed, double level, double *lo, double *hi);

typedef struct {
    size_t resamples; /* bootstrap resamples (10000) */
    uint64_t seed;    /* bootstrap seed (1) */
    double level;     /* interval coverage (0.95) */
} cmp_opts;

/* One argument of `lr-eval compare`: "PATH" (a summary.json, or the folder
 * holding it) or "LABEL=PATH,PATH,..." (a group of runs). */
typedef struct cmp_set cmp_set;

/* Loads the runs named by args[0..nargs) (args[0] is the base). Returns 0 or
 * an LR_E* code with the message naming the file, line and field. */
int cmp_load(const char *const *args, int nargs, cmp_set **out);

/* Writes the markdown table (one per benchmark, one row per argument) to md,
 * and, when json is not NULL, the same numbers as JSON lines (one object
 * per benchmark and argument) to json. Returns 0 or LR_EIO. */
int cmp_write(cmp_set *s, const cmp_opts *o, FILE *md, FILE *json);

void cmp_free(cmp_set *s);

#endif
