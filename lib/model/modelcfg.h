/* modelcfg: the architecture of a Hugging Face decoder-only model, read from
 * config.json, and its generation settings, read from generation_config.json
 * (eos ids, do_sample, temperature, top_p, top_k). Supported: model_type
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
    /* generation_config.json: what transformers' generate() does when called
     * without sampling arguments, as the authors' scripts call it. Absent
     * fields (or no file) take GenerationConfig's defaults: do_sample
     * false, temperature 1, top_p 1, top_k 50. */
    int gen_file;          /* 1 when generation_config.json was read */
    int do_sample;
    double temperature;    /* > 0 when do_sample */
    double top_p;          /* (0, 1] */
    int top_k;             /* 0 = off */
} mcfg;

/* Reads DIR/config.json and, when present, DIR/generation_config.json.
 * Returns 0, LR_EIO or LR_EINPUT naming the file and field
 * ("DIR/config.json: field \"rope_scaling\": ...",
 * "DIR/generation_config.json: field \"top_p\": ..."). */
int mcfg_load(mcfg *c, const char *dir);

#endif
