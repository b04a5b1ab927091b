/* rows: what one engine call asks for each wanted row and where the results
 * go, shared by the engine (engine.h) and the backends it drives (gpu.h). */
#ifndef LR_ROWS_H
#define LR_ROWS_H

#include "infer/compact.h"
#include "infer/sample.h"

#include <stddef.h>
#include <stdint.h>

/* What to compute for each wanted row (rows are numbered g = 0..G-1 in row
 * order, G = number of wanted rows in the call). */
typedef struct {
    cd_opts co;           /* co.kmax == 0: no list */
    const int32_t *gids;  /* NULL: no gather; else row g gathers */
    const size_t *goff;   /*   gids[goff[g] .. goff[g+1]) (goff has G+1 entries) */
    int logits;           /* also return the logits rows */
    /* Sampling where the logits are: row g draws smp_draw_u(row, &smp,
     * uniform[g]) into res.sampled[g] (-1 for a NaN/inf row). The caller
     * keeps the random streams and sends one uniform per wanted row, so a
     * problem's tokens depend on its stream alone, on either backend. */
    const double *uniform; /* NULL: no sampling */
    smp_opts smp;
} eng_req;

/* Caller-allocated results for G wanted rows (NULL where not asked). */
typedef struct {
    int32_t *k;           // (G) listed tokens of row g
    int32_t *ids;         // (G, co.kmax) row g's list at g * co.kmax, most probable first
    float *lps;           // (G, co.kmax)
    float *tail;          // (G)
    float *glps;          // (goff[G]) gathered log-probs, -inf for ids outside [0, V)
    float *gtail;         // (G)
    int32_t *argmax;      // (G)
    unsigned char *bad;   // (G) 1 when the row has a NaN or infinite logit (nothing else is set)
    float *logits;        // (G, V) when req.logits
    int32_t *sampled;     // (G) when req.uniform
} eng_res;

#endif
