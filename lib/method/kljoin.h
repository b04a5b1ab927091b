/* kljoin: METHOD.md stage 1, steps 4 and 6. Joins the expert's `dist`
 * stream with the amateur's (lr-infer follow mode: the amateur read the
 * expert's tokens and recorded its log-probs on the expert's listed
 * tokens), problem by problem and step by step, computes D_KL(pi_E || pi_A)
 * per step t >= 1 (dist.h) and writes the selected steps as `kl` records
 * (docs/FORMATS.md).
 *
 * Contract:
 *  - The join is by position: both streams hold the same problems in the
 *    same order (any order: concatenated shards included). With
 *    allow_missing it is a merge join by increasing idx instead, and the
 *    problems found on one side only are counted, not refused.
 *  - Every pair must describe the same trace (id, prompt and tokens equal;
 *    the amateur lists log-probs for exactly the expert's listed tokens),
 *    and the two headers one tokenizer (or two that differ only in added
 *    tokens, said once on stderr). Anything else: LR_EINPUT with one message
 *    naming the file, the record and the field.
 *  - Memory: the streams are read record by record. Nothing grows with the
 *    stream except, for KLJ_RANDOM and KLJ_LOWEST, 16 bytes per step kept
 *    between the two passes those modes need; those re-read their inputs
 *    and so need regular files (else LR_EUSAGE before anything is read).
 *  - The output is written through lrs_create (outputs appear complete or
 *    not at all); on any error it is removed and the error code returned.
 *    Nothing here exits.
 */
#ifndef LR_KLJOIN_H
#define LR_KLJOIN_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    KLJ_KL,     /* KL >= beta (METHOD.md step 6) */
    KLJ_RANDOM, /* as many steps as KLJ_KL keeps, uniformly at random */
    KLJ_LOWEST  /* as many steps, those of lowest KL (a control) */
} klj_select;

/* "kl", "random", "lowest". */
const char *klj_select_name(klj_select s);
/* The mode named s: 0, or -1 for an unknown name. */
int klj_select_from_name(const char *s, klj_select *out);

typedef struct {
    const char *expert, *amateur; /* input paths; "-" is stdin (not both) */
    const char *out;              /* output stream path; "-" is stdout */
    double beta;                  /* keep KL >= beta; 0 keeps every step */
    klj_select select;
    uint64_t seed;                /* KLJ_RANDOM's draw */
    int allow_missing;
    int zstd_level;
    int argc;                     /* recorded in the output header */
    char **argv;
} klj_opts;

/* KL histogram in bounded memory: bins of KLJ_HBIN up to KLJ_HMAX (the last
 * bin holds everything above). */
#define KLJ_HBIN 1e-3
#define KLJ_HMAX 64.0
#define KLJ_HN ((int)(KLJ_HMAX / KLJ_HBIN) + 1)

/* What a run saw. For the two-pass modes the KL statistics (histogram of
 * seen steps, kl_max, undecided, exact) are the first pass's. */
typedef struct {
    uint64_t problems, steps, kept;
    uint64_t only_expert, only_amateur; /* allow_missing: problems on one side only */
    uint64_t undecided; /* compact-form steps whose KL bound straddles beta */
    uint64_t exact;     /* steps computed from full rows */
    double kl_max;
    uint32_t *hist_seen, *hist_kept; /* KLJ_HN bins each */
} klj_stats;

/* Runs the join and selection, writing o->out, filling *st (freed by
 * klj_stats_free even after an error). Returns 0 or an LR_E* code with the
 * message set. */
int klj_run(const klj_opts *o, klj_stats *st);
void klj_stats_free(klj_stats *st);

/* The p-quantile of the KL of the seen steps from the histogram: the upper
 * edge of the bin that holds it (kl_max for the last bin). */
double klj_quantile(const klj_stats *st, double p);

/* The histogram as TSV rows of 0.05 width: kl_lo kl_hi steps kept, with a
 * header line, up to the last non-empty bin. */
void klj_write_hist(const klj_stats *st, FILE *f);

#endif
