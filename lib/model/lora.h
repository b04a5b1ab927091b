/* lora: LoRA adapters on the q/k/v/o/gate/up/down projections of a
 * Qwen2/Llama decoder, and their PEFT on-disk layout.
 *
 * Module m of layer l adds  s * B (A drop(x))  to  x W^T + b, with
 * s = alpha / r (PEFT, use_rslora false), A (r, in), B (out, r), dropout on
 * the module's input only (PEFT: lora_B(lora_A(dropout(x))) * scaling).
 *
 * All parameters live in one allocation (mem, n floats) so the optimizer,
 * gradient norm and checkpoints treat them as one flat vector; A[m] and B[m]
 * are stacked over layers: layer l's A is A[m] + l * r * in.
 *
 * PEFT layout: DIR/adapter_config.json and DIR/adapter_model.safetensors
 * with tensors named
 *   base_model.model.model.layers.<l>.self_attn.q_proj.lora_A.weight (r, in)
 *   base_model.model.model.layers.<l>.mlp.gate_proj.lora_B.weight    (out, r)
 * (as PEFT 0.21 save_pretrained writes them, float32). */
#ifndef LR_LORA_H
#define LR_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "model/modelcfg.h"

enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_NMOD };
#define LORA_DEFAULT_TARGETS ((1u << LORA_Q) | (1u << LORA_V))

typedef struct {
    int L, r;
    float alpha, dropout;
    unsigned targets;          /* bit m set: module m adapted */
    int in[LORA_NMOD], out[LORA_NMOD];
    float *A[LORA_NMOD];       // (L, r, in[m]) or NULL
    float *B[LORA_NMOD];       // (L, out[m], r) or NULL
    float *mem;                /* the one allocation */
    size_t n;                  /* floats in mem */
} lora;

/* "q_proj" for LORA_Q, ... and its parent ("self_attn" or "mlp"). */
const char *lora_module_name(int m);
/* Parses a comma list "q,v" or "q_proj,v_proj" or "all" into a target mask.
 * Returns 0 or LR_EUSAGE. */
int lora_parse_targets(const char *s, unsigned *mask);

/* Allocates zeroed parameters for the shapes of cfg. */
void lora_alloc(lora *lo, const mcfg *cfg, int r, float alpha, float dropout, unsigned targets);
/* Same shapes as src, zeroed (gradients, Adam moments). */
void lora_alloc_like(lora *lo, const lora *src);
void lora_free(lora *lo);
/* PEFT's default init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with
 * a = sqrt(5)) from a splitmix64 stream of seed, B = 0. */
void lora_init(lora *lo, uint64_t seed);
static inline float lora_scale(const lora *lo) { return lo->alpha / (float)lo->r; }

/* Writes DIR/adapter_model.safetensors, then DIR/adapter_config.json (each
 * through a temp file + rename: the config marks a complete adapter).
 * base: base_model_name_or_path. Returns 0, LR_EIO, or LR_EINPUT when a
 * parameter is NaN or inf (nothing written). */
int lora_save(const lora *lo, const char *dir, const char *base);
/* Reads a PEFT adapter folder for a model of config cfg (r, alpha, dropout,
 * targets from adapter_config.json; refuses DoRA, rsLoRA, biases, patterns,
 * fan_in_fan_out, an alpha / r that is not finite). Returns 0, LR_EIO (a
 * file cannot be read) or LR_EINPUT (malformed JSON, a bad field, a
 * missing or misshapen tensor: the message names file and field or
 * tensor). */
int lora_load(lora *lo, const mcfg *cfg, const char *dir);

#endif
