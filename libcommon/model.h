/* model: a Qwen2/Llama checkpoint folder loaded into float32 weights, plus
 * its identity (name and a cheap content hash).
 *
 * Weights live in one allocation carved by a size table (llm.c style); the
 * per-layer tensors are stacked over layers, so layer l's q_proj is
 * w.wq + l * (NH*HD) * C. HF Linear layout is kept: (out_features,
 * in_features), y = x W^T + b.
 *
 * Identity hash (model_identity): FNV-1a 64 over the bytes of config.json,
 * then for each safetensors file in sorted name order: its name, its size in
 * bytes (u64 LE) and its whole JSON header. It reads a few MB at most even
 * for 15 GB checkpoints; it changes whenever the config, a tensor's
 * name/dtype/shape/offset or a file size changes, but NOT when weight bytes
 * change in place with everything else equal (accepted: checkpoints are not
 * edited in place). Printed as 16 lowercase hex digits. */
#ifndef LR_MODEL_H
#define LR_MODEL_H

#include "modelcfg.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float *embed;   // (V, C) model.embed_tokens.weight
    float *ln1;     // (L, C) input_layernorm
    float *wq;      // (L, NH*HD, C)
    float *bq;      // (L, NH*HD)   NULL without qkv bias
    float *wk;      // (L, NKV*HD, C)
    float *bk;      // (L, NKV*HD)  NULL without qkv bias
    float *wv;      // (L, NKV*HD, C)
    float *bv;      // (L, NKV*HD)  NULL without qkv bias
    float *wo;      // (L, C, NH*HD)
    float *bo;      // (L, C)       NULL without o bias
    float *ln2;     // (L, C) post_attention_layernorm
    float *wgate;   // (L, I, C)
    float *wup;     // (L, I, C)
    float *wdown;   // (L, C, I)
    float *norm;    // (C) model.norm
    float *lm_head; // (V, C) == embed when tied
} model_weights;

typedef struct {
    mcfg cfg;
    model_weights w;
    float *mem;          /* the one allocation behind w */
    size_t nparams;      /* floats in mem */
    char *name;          /* folder name */
    uint64_t hash;       /* see model_identity */
    char hash_hex[17];
} model;

/* Loads DIR (config.json, generation_config.json, safetensors) into m.
 * Returns 0, LR_EIO or LR_EINPUT with a message naming file and tensor. */
int model_load(model *m, const char *dir);
void model_free(model *m);

/* The identity alone (no weights read): name = folder name (malloc'd). */
int model_identity(const char *dir, char **name, uint64_t *hash);

/* HF tensor name of a per-layer weight, e.g. ("self_attn.q_proj.weight", 3)
 * -> "model.layers.3.self_attn.q_proj.weight". */
void model_tensor_name(char *buf, size_t n, int layer, const char *suffix);

#endif
