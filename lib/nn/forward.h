/* forward: the CPU forward of a loaded model, for inference and for
 * training: a KV cache with B sequence slots, optional LoRA adapters on the
 * projections, and three ways to run tokens through it.
 *
 *   fwd_prefill  starts B fresh sequences (slots 0..B-1) of different
 *                lengths; logits of each sequence's LAST position:
 *                (B, V) rows, row b for slot b.
 *   fwd_decode   appends one token to each of slots 0..B-1; logits (B, V).
 *   fwd_teacher  starts B fresh sequences and returns logits for EVERY
 *                position: (sum(lens), V) rows, sequence 0's T0 rows first,
 *                then sequence 1's, ... (packed, no padding).
 *   fwd_run      the general step all three use: N tokens, each for a slot,
 *                appended after what the slot already holds; logits for the
 *                rows flagged in want, in row order.
 * Logits are float32, V = cfg.V columns (padding rows of the vocabulary
 * included). Tokens are packed into N rows with no padding; a row's
 * position is its slot's length when it is processed.
 *
 * One layer function serves inference and training (trainer.h runs this
 * forward, then its backward). Each projection is out = inp W^T + b, plus
 * s B A drop(inp) for a module fwd_set_lora adapted (lora.h); without
 * adapters that term is skipped, so the base model's numbers are the
 * plain ones.
 *
 * Activations (fwd_acts) are addressable per layer: q/k/v/o/gate/up/down
 * are separate matmuls whose inputs and outputs are all kept. With
 * keep_acts every layer has its own buffers, which is what the backward
 * (trainer.h) reads: N <= max_tokens in one call. Without it, layers share
 * one set and long inputs are processed in chunks of max_tokens. Attention
 * probabilities are not stored (the backward recomputes them from q and the
 * cached k, v).
 *
 * Results are deterministic for a given thread count (matmul and attention
 * split their outputs over the shared pool of ops_cpu.h without changing
 * any sum order; OpenBLAS threads come from OPENBLAS_NUM_THREADS). The
 * bf16 weight copies (model_make_bf16) are used for decode-sized calls
 * without keep_acts only: they are exact copies, but go stale when training
 * changes the float32 weights. */
#ifndef LR_FORWARD_H
#define LR_FORWARD_H

#include <stdint.h>

#include "model/lora.h"
#include "model/model.h"

typedef struct {
    float *x_in;     // (N, C) residual stream entering the layer
    float *ln1;      // (N, C) input_layernorm output
    float *ln1_rstd; // (N)
    float *q;        // (N, NH*HD) after bias, LoRA and RoPE
    float *k;        // (N, NKV*HD) after bias, LoRA and RoPE (copied into the cache)
    float *v;        // (N, NKV*HD) after bias and LoRA
    float *att;      // (N, NH*HD) attention output, o_proj input
    float *o;        // (N, C) o_proj output
    float *x_mid;    // (N, C) residual after attention
    float *ln2;      // (N, C) post_attention_layernorm output
    float *ln2_rstd; // (N)
    float *gate;     // (N, I)
    float *up;       // (N, I)
    float *h;        // (N, I) silu(gate) * up, down_proj input
    float *down;     // (N, C)
    float *u[LORA_NMOD]; // (N, r) A drop(inp) of each adapted module (fwd_set_lora)
} fwd_layer_acts;

typedef struct {
    fwd_layer_acts *layer; // (L)
    float *x_out;          // (N, C) residual after the last layer
    float *lnf;            // (N, C) final norm output
    float *lnf_rstd;       // (N)
    int *tokens;           // (N)
    int *seq;              // (N) slot of each row
    int *pos;              // (N) position of each row (where its key and value go in the cache)
    int *rpos;             // (N) its RoPE position (== pos but for query-only rows)
    int *apos;             // (N) the last cache position it attends to (== pos but for query-only rows)
    const int *qonly;      // (N) the chunk's slice of fwd.query_pos, or NULL
    int N;                 // rows of the last chunk run
} fwd_acts;

typedef struct {
    const model *m;
    const lora *lo; /* adapters added to the projections, or NULL (fwd_set_lora) */
    int B, Tmax;    /* cache slots and positions per slot */
    int max_tokens; /* rows per chunk */
    int keep_acts;
    int nthreads;   /* attention threads */
    int training;   /* LoRA dropout on (lo->dropout > 0) */
    uint64_t drop_seed; /* the dropout mask's seed (see fwd_lora_drop_key) */
    /* NULL, or (N) for the next fwd_run: a row with query_pos[n] >= 0 is
     * query-only: RoPE at position query_pos[n], it attends the earlier
     * rows of its slot but not itself, and adds no key/value (nor a
     * position) for later rows. It is a right-padded row of the reference's
     * collate, whose attention_mask hides the padding (tune.h, reference
     * quirks). */
    const int *query_pos;
    float *kc, *vc; // (L, B, NKV, Tmax, HD)
    int *len;       // (B) tokens held per slot
    fwd_acts a;
    float *act_mem;
    float *gather;  // (max_tokens, C) final-norm rows whose logits are wanted
    float *u_mem;   /* the u buffers of every layer */
    float *xdrop;   // (max_tokens, max(C, NH*HD, I)) a dropped-out module input, made on first use
} fwd;

/* B slots of Tmax positions; chunks of max_tokens rows. nthreads <= 0: use
 * openblas_get_num_threads(). */
int fwd_init(fwd *f, const model *m, int B, int Tmax, int max_tokens, int keep_acts, int nthreads);
void fwd_free(fwd *f);
/* Empties slot b (or every slot when b < 0). */
void fwd_reset(fwd *f, int b);
/* A prompt prefix's keys and values outside the cache, laid out (L, NKV,
 * n, HD) (one block of n positions per layer and head: a slot's first n
 * positions are contiguous there too). fwd_save_prefix copies slot b's
 * first n positions (n <= len[b]) into k and v; fwd_load_prefix copies
 * them into empty slot b and sets len[b] = n, so its next rows run from
 * position n as if the prefix's had run in the slot: keys and values
 * depend only on the tokens and positions before them. */
void fwd_save_prefix(const fwd *f, int b, int n, float *k, float *v);
void fwd_load_prefix(fwd *f, int b, int n, const float *k, const float *v);
/* Adds lo's adapters (shaped for this model: lora_alloc on its config) to
 * every later run, or removes them (lo NULL). lo is read, not copied: its
 * parameters may change between runs (training). */
void fwd_set_lora(fwd *f, const lora *lo);
/* LoRA dropout is a counter-based hash: element idx (row * in + column) of
 * module k's input in layer l is kept with probability 1 - p and then
 * scaled by 1 / (1 - p) (torch Dropout), the mask a function of
 * (drop_seed, l, k, idx) alone, so no mask is stored: the backward
 * regenerates it with dropout_backward and this key. */
static inline uint64_t fwd_lora_drop_key(uint64_t drop_seed, int l, int k) {
    return drop_seed ^ ((uint64_t)(l * LORA_NMOD + k) << 40);
}

/* want NULL: every row's logits. logits NULL: the layers and the final
 * norm only (a.lnf), which is how the trainer runs it. Returns 0 or
 * LR_EINPUT/LR_EUSAGE, before running anything. */
int fwd_run(fwd *f, int N, const int *tokens, const int *seq, const unsigned char *want, float *logits);
/* The checks fwd_run makes before running N rows (shared with the CUDA
 * forward): slots in [0, B), tokens in [0, V), no slot past Tmax given the
 * len[] it already holds. `who` prefixes the message. */
int fwd_check_rows(const char *who, const int *len, int B, int Tmax, int V, int N, const int *tokens, const int *seq);
int fwd_prefill(fwd *f, int B, const int *const *tokens, const int *lens, float *logits);
int fwd_decode(fwd *f, int B, const int *tokens, float *logits);
int fwd_teacher(fwd *f, int B, const int *const *tokens, const int *lens, float *logits);

#endif
