/* trainer: the hand-written backward of a whole Qwen2/Llama decoder on the
 * CPU, with LoRA adapters (lora.h) on any of the seven projections and/or
 * full-parameter gradients.
 *
 * The forward is forward.h's, run with kept activations and the adapters
 * (trn_forward); this module adds the loss rows' logits and the backward of
 * exactly that forward, layer by layer (layer_backward mirrors forward.c's
 * layer_forward; attention probabilities are recomputed in
 * attention_backward). Rows are packed: N rows mixing up to B sequences
 * (slot seq[n]); each call starts every slot fresh, a row's position is the
 * count of earlier rows of its slot. So one forward can run a batch of
 * separate examples (one slot each) or one packed example (one slot, loss
 * at several rows).
 *
 * Logits are computed only for the `want` rows (the loss rows), which is
 * what makes a 151,936-wide vocabulary affordable.
 *
 * LoRA dropout is forward.h's counter-based mask (fwd_lora_drop_key): none
 * is stored, the backward regenerates it, and a run is reproducible from
 * the seed. */
#ifndef LR_TRAINER_H
#define LR_TRAINER_H

#include <stdint.h>

#include "model/lora.h"
#include "model/model.h"
#include "nn/forward.h"

typedef struct {
    fwd f;             /* the forward: kept activations, adapters lo */
    const model *m;
    const lora *lo;    /* adapters applied in the forward, or NULL */
    int B, Tmax, maxN; /* slots, positions per slot, rows per call */
    int training;      /* LoRA dropout on (copied into f by trn_forward) */
    uint64_t drop_seed;
    /* NULL, or (N) set before trn_forward: query-only rows, as fwd's
     * query_pos (forward.h): a right-padded row of the reference's collate
     * (tune.h, reference quirks). */
    const int *query_pos;
    float *lnf_g;      // (maxN, C) final-norm rows of the want rows
    float *dlnf_g;     // (maxN, C) their gradient, accumulated by trn_logits_backward
    int *want;         // (maxN)
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
