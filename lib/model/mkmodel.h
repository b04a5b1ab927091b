/* mkmodel: writes tiny random Qwen2/Llama checkpoints in Hugging Face format
 * (config.json, generation_config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json), deterministic for a seed. Used by lr-mkmodel and
 * by the tests, which regenerate the same folders the Python reference
 * loaded.
 *
 * Weights: splitmix64 stream u in [-1, 1), drawn tensor by tensor in file
 * order; linear weights u*sqrt(3/in) (unit-variance outputs), embeddings
 * 0.5u, biases 0.2u, norm weights 1 + 0.1u. bf16 checkpoints round these to
 * nearest-even bf16.
 *
 * Built-in tokenizer: byte-level BPE, ids 0..255 = bytes (GPT-2 byte<->unicode
 * map), MK_NMERGES merges after them, then <|endoftext|>, <|im_start|>,
 * <|im_end|>; Qwen's pre-tokenizer regex, NFC, ByteLevel decoder. */
#ifndef LR_MKMODEL_H
#define LR_MKMODEL_H

#include <stdint.h>

typedef struct {
    const char *arch;      /* "qwen2" or "llama" */
    int L, C, NH, NKV, I;  /* layers, hidden, heads, kv heads, MLP width */
    int V;                 /* vocab_size; 0: tokenizer size for a copied one, 300 for the built-in */
    int max_pos;           /* max_position_embeddings (0: 4096) */
    double rope_theta;
    int tied;
    int bias;              /* -1: the arch's default (qwen2 yes, llama no) */
    int bf16;              /* weights stored as BF16 instead of F32 */
    uint64_t seed;
    const char *tokenizer; /* tokenizer.json to copy, NULL: built-in */
    int force;             /* mk_save: replace an existing folder */
} mk_opts;

/* Fills o with the defaults (qwen2, 2 layers, hidden 64, 4/2 heads, MLP
 * 128, theta 1e4, untied, f32, seed 1). */
void mk_defaults(mk_opts *o);
/* Creates dir (if needed) and writes the model into it, in place. Returns
 * 0, LR_EUSAGE for inconsistent options, LR_EIO or LR_EINPUT (bad
 * --tokenizer file). */
int mk_write_model(const char *dir, const mk_opts *o);
/* lr-mkmodel's output: the model written under a temporary name and
 * renamed onto dir once complete (outfile.h), so a failure (a full disk)
 * or a signal leaves no partial folder. An existing dir is refused
 * (LR_EUSAGE) unless o->force, and then replaced only at the end. */
int mk_save(const char *dir, const mk_opts *o);
/* Parses lr-mkmodel's options (argv without the program name) into o,
 * starting from the defaults; the one positional argument goes to *out
 * (NULL out: none allowed). Returns 0 or LR_EUSAGE. */
int mk_parse_args(mk_opts *o, int argc, char **argv, const char **out);

#endif
