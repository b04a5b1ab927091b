/* eng_feed.h: feed, n rows of one slot through an engine, the last one
 * wanted: how the device KV tests fill a slot's pages without a generation. */
#ifndef LR_ENG_FEED_H
#define LR_ENG_FEED_H
#include "infer/engine.h"

#include <stdint.h>
#include <stdlib.h>

/* n rows of slot b (tokens (i * 7 + b) % V), the last one wanted; returns eng_run's code. */
static int feed(engine *e, int b, int n, int V) {
    int *tok = malloc((size_t)n * sizeof *tok), *seq = malloc((size_t)n * sizeof *seq);
    unsigned char *want = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) tok[i] = (i * 7 + b) % V, seq[i] = b;
    want[n - 1] = 1;
    int32_t am;
    unsigned char bad;
    eng_req q = {.co = {.kmax = 0}};
    eng_res r = {.argmax = &am, .bad = &bad};
    int rc = eng_run(e, n, tok, seq, want, &q, &r);
    free(tok), free(seq), free(want);
    return rc;
}
#endif
