/* contrast: METHOD.md stage 1, steps 5, 7 and 8, as a stream filter. Each
 * `kl` record (a selected step) becomes one training `example`: the
 * plausibility mask A_t = {a : pE(a) >= alpha * max pE} and the soft label
 * over it (dist.h: contrast, expert or onehot), with the full context
 * (prompt + expert prefix) passed through undecoded. One record in, at
 * most one out, constant memory.
 *
 * The reference implementation's samples (the JSON lines LightR_sampling.py
 * writes and LightR_finetuning.py reads: prompt_id = the question text,
 * step, prefix = decoded expert prefix, tokens, token_ids, weights,
 * kl_divergence) go both ways:
 *   contrast_run with to_ref   kl stream -> reference JSON lines (key order
 *                              as the reference writes them);
 *   contrast_from_ref          reference JSON lines -> example stream,
 *                              tokenized as the reference's training does:
 *                              the prompt preset rendered with the question,
 *                              followed by the prefix text, encoded as ONE
 *                              string; prompt_len is the length of the
 *                              encoded prompt alone (the common prefix of
 *                              the two encodings).
 *
 * Outputs are written through lrs_create / out_open: a failure leaves
 * nothing under the final name. Bad input is LR_EINPUT naming the file,
 * the record (or line) and the field. Unless quiet, a summary line on
 * stderr, prefixed with lr_progname (also the header's tool). */
#ifndef LR_CONTRAST_H
#define LR_CONTRAST_H

#include "model/tokenizer.h"

#include <stdint.h>

typedef struct {
    double alpha;           /* plausibility threshold factor (DIST_ALPHA) */
    int target;             /* a dist_target_kind */
    int strict;             /* refuse a mask its listed tokens cannot prove complete (else count and warn) */
    int to_ref;             /* contrast_run: write reference JSON lines instead of a stream */
    int quiet, zstd_level;
    tok_t *tok;             /* to_ref, contrast_from_ref: the stream's tokenizer */
    const char *tok_path;   /* ... and its path, for messages and the header */
    const char *prompt;     /* contrast_from_ref: the prompt preset */
    int64_t vocab;          /* contrast_from_ref: target ids below this are valid */
    int argc;               /* the command line, for the output header */
    char **argv;
} contrast_opts;

/* kl stream in ("-": stdin) -> example stream (or reference JSON lines)
 * out ("-": stdout). 0 or the LR_E* code. */
int contrast_run(const contrast_opts *o, const char *in, const char *out);
/* Reference JSON lines in -> example stream out. 0 or the LR_E* code. */
int contrast_from_ref(const contrast_opts *o, const char *in, const char *out);

#endif
