/* summary: the accuracy tables of `lr-eval score`: per benchmark file the
 * counts (problems, scored, correct, missing, skipped rows), the mean
 * generated length, and accuracy by subject and by level for the rows that
 * carry them (MATH-500); rendered as summary.json and summary.md.
 *
 * Contract: accuracy is correct / problems in percent, with rows that have
 * no prediction counted as wrong (0 for an empty file); "avg" is the
 * unweighted mean over the benchmarks (null / absent for none). The two
 * renderings hold the same numbers (markdown rounded to one decimal).
 * Groups are listed in key order, numeric keys by value ("2" before "10").
 * Nothing here allocates except through base/util.h's checked allocators
 * and jansson; nothing prints but the FILE given.
 */
#ifndef LR_SUMMARY_H
#define LR_SUMMARY_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* Accuracy of one group of rows (a subject, a level). */
typedef struct {
    char *key;
    size_t total, correct;
} sum_group;

typedef struct {
    sum_group *g;
    size_t n;
} sum_groups;

/* One benchmark file's counts. */
typedef struct {
    char *bench, *file; /* layout name, path (owned) */
    size_t total, scored, correct, missing, skipped;
    double tok_sum; /* generated tokens over the tok_n predictions that give them */
    size_t tok_n;
    sum_groups by_subject, by_level;
} sum_bench;

/* Counts a row in the group named key (created at first use). */
void sum_group_add(sum_groups *G, const char *key, int correct);
/* Puts the groups in key order (numeric keys by value). */
void sum_groups_sort(sum_groups *G);

/* Accuracy in percent (0 when total is 0). */
double sum_acc(const sum_bench *b);

/* summary.json's object: label, benchmarks (by name), avg, and the two
 * whole-run counts. A new reference. */
json_t *sum_json(const sum_bench *S, int nb, const char *label, size_t unmatched, size_t repaired);
/* summary.md: the table of benchmarks, then each one's subject and level
 * tables. */
void sum_md(FILE *f, const sum_bench *S, int nb, const char *label);

void sum_bench_free(sum_bench *b);

#endif
