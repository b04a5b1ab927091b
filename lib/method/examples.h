/* examples: lr-tune's training data, the one place that knows the record
 * field names of its inputs, and the order in which it visits them.
 *
 * `example` streams (lr-contrast) give soft-KL examples: idx -> problem,
 * step, context -> tokens, target_ids + weights -> the soft target
 * (prompt_len checked against the context). `dist` streams (lr-infer)
 * give SFT examples: prompt + tokens -> tokens, nprompt = len(prompt).
 * Every record is checked against the model before training starts
 * (token and target ids inside its vocabulary, weights finite and
 * non-negative, non-empty spans), and a bad one is reported as
 *   "FILE: record N: field "context": token 5000 at position 3 is outside
 *    the model's vocabulary [0, 300)".
 * The stream header's tokenizer must be the model's (content hash, else
 * size).
 *
 * Order: epoch e visits the examples in a Fisher-Yates shuffle of
 * rng_next draws from the state seed * 1000003 + e, or (by_problem)
 * problems in the order of rng_stream(that state, problem) with each
 * problem's examples kept together by step; group_len sorts each
 * mega-batch of 50 batches by length, longest first (HF group_by_length). */
#ifndef LR_EXAMPLES_H
#define LR_EXAMPLES_H

#include <stdint.h>

#include "method/tune.h"

typedef struct {
    tune_example *ex;
    int n, cap;
    int truncated;     /* sequences cut to max_len */
    int objective;     /* TUNE_SOFTKL or TUNE_SFT, from the first stream's kind */
} tune_data;

typedef struct {
    int V;                /* the model's vocabulary (rows of lm_head) */
    int max_len;          /* longer sequences are cut to their first max_len tokens */
    char tok_hash[32];    /* the model's tokenizer identity ("" and 0: unknown) */
    int64_t tok_vocab;
} tune_read_opts;

/* o for the model folder dir: V, max_len, and the identity of
 * dir/tokenizer.json (none when the folder has no tokenizer). Returns 0,
 * or the tokenizer's load error. */
int tdata_read_opts(tune_read_opts *o, const char *dir, int V, int max_len);

/* Appends every record of path to d. Returns 0, LR_EIO or LR_EINPUT (the
 * message names file, record and field). */
int tdata_read(tune_data *d, const char *path, const tune_read_opts *o);
/* Appends a JSON-lines file of {"text": "..."} documents (lr-tune
 * --objective lm): each text, encoded with the tokenizer of tok_dir
 * (special tokens recognised, nothing added), becomes one SFT example
 * whose prompt is its first token, i.e. the plain next-token loss on every
 * later token. Messages name file, line and field. */
int tdata_read_text(tune_data *d, const char *path, const char *tok_dir, const tune_read_opts *o);
void tdata_free(tune_data *d);

typedef struct {
    uint64_t seed;
    int shuffle, by_problem, group_len, batch;
} tune_order;

/* ord (d->n): the example order of epoch e. */
void tdata_order(const tune_data *d, const tune_order *o, int e, int *ord);

/* The reference's collate (their LightR_finetuning.py): pad_sequence
 * right-pads every example of the micro-batch ex[0..n) with pad_id (and
 * attention_mask 0) to the longest one's length T, and the loss is taken
 * at logits[:, T-1]: for a shorter example that is a pad row at position
 * T-1 attending only the example's own tokens. out[i] is ex[i], or for a
 * shorter one a copy whose tokens (in tokbuf, n * T ints, caller-owned)
 * are its own plus that pad as a query-only row (query_pos = T-1). Returns
 * T. */
int tdata_pad_batch(const tune_example *ex, int n, int pad_id, tune_example *out, int *tokbuf);

/* What the reference's training reads from the tokenizer of model folder
 * dir: tokenizer.vocab_size (the size of tokenizer.json's model.vocab,
 * without added tokens: 151,643 for Qwen) and pad_token_id
 * (tokenizer_config.json's pad_token looked up in tokenizer.json).
 * Returns 0, LR_EIO, or LR_EINPUT naming the file and field (no pad
 * token: their collate cannot pad). */
int tdata_reference_tokens(const char *dir, int *vocab_size, int *pad_id);

#endif
