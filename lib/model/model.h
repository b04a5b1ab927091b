/* model: a Qwen2/Llama checkpoint folder loaded into float32 weights, plus
 * its identity (name and a cheap content hash).
 *
 * Weights live in one allocation carved by a size table (llm.c style); the
 * per-layer tensors are stacked over layers, so layer l's q_proj is
 * w.wq + l * (NH*HD) * C. HF Linear layout is kept: (out_features,
 * in_features), y = x W^T + b.
 *
 * Identity hash (model.hash, set by model_load/model_open): FNV-1a 64 over the bytes of config.json,
 * then for each safetensors file in sorted name order: its name, its size in
 * bytes (u64 LE) and its whole JSON header. It reads a few MB at most even
 * for 15 GB checkpoints; it changes whenever the config, a tensor's
 * name/dtype/shape/offset or a file size changes, but NOT when weight bytes
 * change in place with everything else equal (accepted: checkpoints are not
 * edited in place). Printed as 16 lowercase hex digits. */
#ifndef LR_MODEL_H
#define LR_MODEL_H

#include "model/modelcfg.h"
#include "io/safetensors.h"

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

/* Optional bf16 copies of the big matrices, for memory-bound decode
 * (model_make_bf16). Same layouts as model_weights. */
typedef struct {
    uint16_t *wq, *wk, *wv, *wo, *wgate, *wup, *wdown, *lm_head;
} model_bf16;

typedef struct {
    mcfg cfg;
    model_weights w;
    model_bf16 w16;      /* all NULL unless model_make_bf16() was called */
    uint16_t *mem16;
    float *mem;          /* the one allocation behind w */
    size_t nparams;      /* floats in mem (model_open: the floats it would take) */
    char *name;          /* folder name */
    uint64_t hash;       /* the identity hash above */
    st_set *st;         /* model_open: the open checkpoint (else NULL) */
    char hash_hex[17];
} model;

/* One tensor kind of m->mem's layout, in model_load's order: the
 * model_weights pointer it fills (its index, model_weights seen as an array
 * of float pointers), its HF name (a per-layer suffix, or the full name),
 * its shape in one layer, and where it sits: the floats before it, and the
 * floats of one layer (layer l at off + l * each). A backend that reads an
 * opened model (model_open) lays its copy out by this table. */
typedef struct {
    int field;
    const char *suffix;
    int per_layer;
    int64_t rows, cols; /* cols 0: a vector (a norm weight or a bias) */
    size_t off, each;
} model_part;
enum { MODEL_MAX_PARTS = 16 };
/* The parts config c has (no biases it lacks, no lm_head when tied) into
 * p[MODEL_MAX_PARTS]; returns their number, *total = the floats of m->mem. */
int model_parts(const mcfg *c, model_part *p, size_t *total);

/* Loads DIR (config.json, generation_config.json, safetensors) into m.
 * Returns 0, LR_EIO or LR_EINPUT with a message naming file and tensor. */
int model_load(model *m, const char *dir);
/* Like model_load (same config, identity and tensor checks) but reads no
 * weights: m->w stays all NULL and m->st keeps the checkpoint mmap'd, for a
 * backend that converts the tensors itself (the CUDA one uploads bf16). */
int model_open(model *m, const char *dir);
/* An opened model's tensor: per-layer suffix with layer >= 0, or a full
 * name with layer < 0 (e.g. "model.norm.weight"); NULL when absent. */
const st_tensor *model_tensor(const model *m, const char *suffix, int layer);
void model_free(model *m);

/* Opt-in, for inference: adds bf16 copies of the projection and lm_head
 * matrices, which decode steps (<= 8 rows) then stream instead of the
 * float32 ones: half the memory traffic, identical results. Only allowed
 * when every such weight is exactly a bf16 value (a BF16 checkpoint);
 * otherwise LR_EINPUT and nothing changes. Costs 50% more weight memory.
 * The copies go stale if the float32 weights are modified afterwards (not
 * for training). */
int model_make_bf16(model *m);

/* HF tensor name of a per-layer weight, e.g. ("self_attn.q_proj.weight", 3)
 * -> "model.layers.3.self_attn.q_proj.weight". */
void model_tensor_name(char *buf, size_t n, int layer, const char *suffix);

#endif
