/* modelcfg: the architecture of a Hugging Face decoder-only model, read from
 * config.json (+ generation_config.json for eos ids). Supported: model_type
 * "qwen2" and "llama" with SiLU MLP, default RoPE (rope_scaling null or
 * rope_type "default"), no sliding window. Anything else is refused with a
 * message naming the field, so we never compute wrong numbers silently. */
#ifndef LR_MODELCFG_H
#define LR_MODELCFG_H

#define MCFG_MAX_EOS 8

typedef struct {
    char model_type[16];   /* "qwen2" or "llama" */
    int C;                 /* hidden_size */
    int I;                 /* intermediate_size */
    int L;                 /* num_hidden_layers */
    int NH;                /* num_attention_heads */
    int NKV;               /* num_key_value_heads (GQA: NH % NKV == 0) */
    int HD;                /* head_dim (config value or C / NH) */
    int V;                 /* vocab_size (rows of embed_tokens / lm_head) */
    int max_pos;           /* max_position_embeddings */
    double rope_theta;
    double rms_eps;
    int tied;              /* tie_word_embeddings: lm_head = embed_tokens */
    int qkv_bias;          /* q/k/v projections have biases (qwen2; llama attention_bias) */
    int o_bias;            /* o_proj has a bias (llama attention_bias) */
    int bos;               /* bos_token_id, -1 when absent */
    int eos[MCFG_MAX_EOS]; /* union of eos_token_id from both files */
    int neos;
} mcfg;

/* Reads DIR/config.json and, when present, DIR/generation_config.json.
 * Returns 0, LR_EIO or LR_EINPUT ("config.json: field \"rope_scaling\": ..."). */
int mcfg_load(mcfg *c, const char *dir);

#endif
