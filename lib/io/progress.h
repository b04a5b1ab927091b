/* progress: a one-line progress bar on stderr (items, tokens/s, ETA),
 * redrawn at most 5 times a second, shown only when enabled (a terminal, or
 * --progress). Never writes to stdout. */
#ifndef LR_PROGRESS_H
#define LR_PROGRESS_H

#include <stdint.h>

typedef struct {
    int on;
    const char *what;      /* "problems", "steps", ... */
    uint64_t total;        /* 0 when unknown */
    uint64_t done, tokens;
    double t0, last;
} lr_progress;

void progress_init(lr_progress *p, int enabled, const char *what, uint64_t total);
/* Adds finished items and processed tokens; redraws if due. */
void progress_add(lr_progress *p, uint64_t items, uint64_t tokens);
/* Final redraw and newline. */
void progress_end(lr_progress *p);

#endif
