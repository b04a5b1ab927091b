/* trainer: the training forward and the hand-written backward of a whole
 * Qwen2/Llama decoder on the CPU, with LoRA adapters (lora.h) on any of the
 * seven projections and/or full-parameter gradients.
 *
 * The forward mirrors forward.c's layer_forward op for op (same ops_cpu
 * functions, same order), plus each adapted projection's LoRA term, and
 * keeps every activation of every layer for the backward; attention
 * probabilities are recomputed in attention_backward. Rows are packed: N
 * rows mixing up to B sequences (slot seq[n]); each call starts every slot
 * fresh, a row's position is the count of earlier rows of its slot. So one
 * forward can run a batch of separate examples (one slot each) or one
 * packed example (one slot, loss at several rows).
 *
 * Logits are computed only for the `want` rows (the loss rows), which is
 * what makes a 151,936-wide vocabulary affordable.
 *
 * LoRA dropout is a counter-based hash of (drop_seed, layer, module, row,
 * column): no mask is stored, the backward regenerates it, and a run is
 * reproducible from the seed. */
#ifndef LR_TRAINER_H
#define LR_TRAINER_H

#include <stdint.h>

#include "model/lora.h"
#include "model/model.h"

typedef struct {
    float *x_in;     // (N, C) residual stream entering the layer
    float *ln1;      // (N, C)
    float *ln1_rstd; // (N)
    float *q;        // (N, NH*HD) after bias, LoRA and RoPE
    float *k;        // (N, NKV*HD) after bias, LoRA and RoPE
    float *v;        // (N, NKV*HD)
    float *att;      // (N, NH*HD)
    float *o;        // (N, C)
    float *x_mid;    // (N, C)
    float *ln2;      // (N, C)
    float *ln2_rstd; // (N)
    float *gate;     // (N, I)
    float *up;       // (N, I)
    float *h;        // (N, I)
    float *down;     // (N, C)
    float *u[LORA_NMOD]; // (N, r) A drop(x) of each adapted module
} trn_layer;

typedef struct {
    const model *m;
    const lora *lo;    /* adapters applied in the forward, or NULL */
    int B, Tmax, maxN; /* slots, positions per slot, rows per call */
    int training;      /* LoRA dropout on */
    int nthreads;      /* attention threads (results do not depend on it) */
    uint64_t drop_seed;
    float *kc, *vc;    // (L, B, NKV, Tmax, HD)
    trn_layer *layer;  // (L)
    float *x_out, *lnf, *lnf_rstd;
    float *lnf_g;      // (maxN, C) final-norm rows of the want rows
    float *dlnf_g;     // (maxN, C) their gradient, accumulated by trn_logits_backward
    int *tokens, *seq, *pos, *want;
    int *rpos, *apos;  /* each row's RoPE position and last visible cache position (== pos but for query-only rows) */
    /* NULL, or (N) set before trn_forward: a row with query_pos[n] >= 0 is
     * query-only: RoPE at position query_pos[n], it attends the earlier
     * rows of its slot but not itself, and adds no key/value for later
     * rows. It is a right-padded row of the reference's collate, whose
     * attention_mask hides the padding (tune.h, reference quirks). */
    const int *query_pos;
    int N, nwant;
    float *mem, *scratch;
    size_t nscratch;
} trn;

int trn_init(trn *t, const model *m, const lora *lo, int B, int Tmax, int maxN);
void trn_free(trn *t);

/* Runs N rows (tokens, slots seq) and writes logits (nwant, V) for rows
 * want[0..nwant) (strictly increasing). logits NULL: none computed yet;
 * take them in chunks with trn_logits (a 151,936-wide vocabulary times
 * hundreds of SFT rows would not fit at once). Returns 0 or
 * LR_EINPUT/LR_EUSAGE. */
int trn_forward(trn *t, int N, const int *tokens, const int *seq, int nwant, const int *want, float *logits);
/* Logits (r1 - r0, V) of loss rows r0..r1 (indices into want). */
void trn_logits(trn *t, int r0, int r1, float *logits);
/* Their backward: dlogits (r1 - r0, V); accumulates the final-norm gradient
 * of those rows and, with gw, lm_head's gradient. */
void trn_logits_backward(trn *t, int r0, int r1, const float *dlogits, const model_weights *gw);

/* Backward of the last trn_forward: from dlogits (nwant, V), or with
 * dlogits NULL from what trn_logits_backward accumulated. Accumulates (+=)
 * base-weight gradients into gw (a model_weights whose pointers address a
 * gradient buffer laid out like the model, see trn_grads; NULL: base
 * frozen) and LoRA gradients into glo (shaped like t->lo; NULL: none). */
void trn_backward(trn *t, const float *dlogits, const model_weights *gw, lora *glo);

/* A zeroed gradient buffer with the model's layout (m->nparams floats) and
 * gw pointing into it exactly where m->w points into m->mem (tied
 * embeddings share one gradient). Returns the buffer (free() it). */
float *trn_grads(const model *m, model_weights *gw);

#endif
