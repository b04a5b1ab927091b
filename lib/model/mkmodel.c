/* mkmodel: see mkmodel.h. */
#include "model/mkmodel.h"

#include "model/model.h"
#include "io/safetensors.h"
#include "base/opt.h"
#include "base/outfile.h"
#include "base/rng.h"
#include "base/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Qwen2's pre-tokenizer split, copied from its tokenizer.json. */
static const char QWEN_SPLIT[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *const MERGES[][2] = {
    {"Ġ", "Ġ"}, {"Ġ", "t"}, {"i", "n"}, {"t", "h"}, {"e", "r"}, {"a", "n"}, {"Ġ", "a"},
    {"o", "n"}, {"r", "e"}, {"Ġt", "h"}, {"Ġth", "e"}, {"Ġ", "="}, {"Ġ", "+"},
};
#define MK_NMERGES ((int)(sizeof MERGES / sizeof MERGES[0]))
static const char *const SPECIALS[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

static const char CHAT_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

void mk_defaults(mk_opts *o) {
    *o = (mk_opts){.arch = "qwen2", .L = 2, .C = 64, .NH = 4, .NKV = 2, .I = 128, .V = 0, .max_pos = 4096,
                   .rope_theta = 10000.0, .tied = 0, .bias = -1, .bf16 = 0, .seed = 1, .tokenizer = NULL};
}

/* uniform in [-1, 1) with 24 random bits: exact in float32 */
static float urand(uint64_t *s) { return (float)((double)(rng_next(s) >> 40) / (double)(1 << 23) - 1.0); }

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the others to
 * 256 + k in byte order. Writes the UTF-8 of byte b's symbol into out. */
static void byte_symbol(int b, char *out) {
    int cp;
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) cp = b;
    else {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
}

static int write_json(const char *dir, const char *name, json_t *j) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    int rc = json_dump_file(j, p, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(12)) ? lr_err(LR_EIO, "%s: cannot write", p) : LR_OK;
    free(p);
    json_decref(j);
    return rc;
}

static json_t *byte_level(void) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
}

/* The built-in tokenizer; returns its size (ids 0..n-1). */
static int builtin_tokenizer(const char *dir, int *id_eot, int *id_imend, int *ntok) {
    json_t *vocab = json_object(), *merges = json_array();
    char sym[4];
    for (int b = 0; b < 256; b++) {
        byte_symbol(b, sym);
        json_object_set_new(vocab, sym, json_integer(b));
    }
    for (int i = 0; i < MK_NMERGES; i++) {
        char cat[32];
        snprintf(cat, sizeof cat, "%s%s", MERGES[i][0], MERGES[i][1]);
        json_object_set_new(vocab, cat, json_integer(256 + i));
        json_array_append_new(merges, json_pack("[s, s]", MERGES[i][0], MERGES[i][1]));
    }
    json_t *added = json_array();
    int base = 256 + MK_NMERGES;
    for (int i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", base + i, "content", SPECIALS[i],
                                               "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    json_t *tok = json_pack(
        "{s:s, s:n, s:n, s:o, s:{s:s}, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}, s:o, s:o, "
        "s:{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:b, s:o, s:o}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "type", "NFC",
        "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex", QWEN_SPLIT,
        "behavior", "Isolated", "invert", 0, byte_level(), "post_processor", byte_level(), "decoder", byte_level(),
        "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "",
        "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    if (!tok) return lr_err(LR_EIO, "mkmodel: building tokenizer.json failed");
    *id_eot = base;
    *id_imend = base + 2;
    *ntok = base + 3;
    int rc = write_json(dir, "tokenizer.json", tok);
    if (rc) return rc;
    json_t *tc = json_pack("{s:b, s:b, s:n, s:s, s:s, s:n, s:i, s:s, s:b, s:s}", "add_bos_token", 0, "add_prefix_space", 0,
                           "bos_token", "eos_token", "<|im_end|>", "pad_token", "<|endoftext|>", "unk_token",
                           "model_max_length", 4096, "tokenizer_class", "PreTrainedTokenizerFast",
                           "clean_up_tokenization_spaces", 0, "chat_template", CHAT_TEMPLATE);
    return write_json(dir, "tokenizer_config.json", tc);
}

static int copy_file(const char *src, const char *dir, const char *name) {
    char *buf;
    size_t len;
    int rc = lr_read_file(src, &buf, &len);
    if (rc) return rc;
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) rc = lr_err(LR_EIO, "%s: %s", p, strerror(errno));
    else {
        fwrite(buf, 1, len, f);
        if (fclose(f)) rc = lr_err(LR_EIO, "%s: write error", p);
    }
    free(p);
    free(buf);
    return rc;
}

/* Copies a tokenizer.json (and its sibling tokenizer_config.json) and finds
 * its size and special ids (-1 when absent). */
static int copied_tokenizer(const char *dir, const char *path, int *id_eot, int *id_imend, int *ntok) {
    json_error_t jerr;
    json_t *t = json_load_file(path, 0, &jerr);
    if (!t) return lr_err(LR_EINPUT, "%s: line %d: %s", path, jerr.line, jerr.text);
    int mx = -1;
    *id_eot = *id_imend = -1;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(t, "model"), "vocab"), k, v) {
        if (json_integer_value(v) > mx) mx = (int)json_integer_value(v);
    }
    size_t i;
    json_array_foreach(json_object_get(t, "added_tokens"), i, v) {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        if (id > mx) mx = id;
        if (c && !strcmp(c, SPECIALS[0])) *id_eot = id;
        if (c && !strcmp(c, SPECIALS[2])) *id_imend = id;
    }
    json_decref(t);
    if (mx < 0) return lr_err(LR_EINPUT, "%s: no model.vocab or added_tokens", path);
    *ntok = mx + 1;
    int rc = copy_file(path, dir, "tokenizer.json");
    if (rc) return rc;
    const char *slash = strrchr(path, '/');
    size_t n = (slash ? (size_t)(slash - path) : 1) + 32;
    char *tc = xmalloc(n);
    snprintf(tc, n, "%.*s/tokenizer_config.json", slash ? (int)(slash - path) : 1, slash ? path : ".");
    FILE *f = fopen(tc, "rb");
    if (f) {
        fclose(f);
        rc = copy_file(tc, dir, "tokenizer_config.json");
    }
    free(tc);
    return rc;
}

/* mkdir -p: 0 or -1 with errno set. */
static int mkdir_p(const char *dir) {
    char *p = xstrdup(dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0777) && errno != EEXIST) { free(p); return -1; }
            *s = '/';
        }
    int rc = mkdir(p, 0777) && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

/* Draws one tensor: rows x cols (cols 0: a vector), value = add + scale*u. */
typedef struct {
    char name[128];
    int64_t rows, cols;
    float scale, add;
} mk_spec;

int mk_write_model(const char *dir, const mk_opts *o) {
    int qwen = !strcmp(o->arch, "qwen2");
    if (!qwen && strcmp(o->arch, "llama")) return lr_err(LR_EUSAGE, "--arch: \"%s\" unknown (qwen2 or llama)", o->arch);
    int bias = o->bias < 0 ? qwen : o->bias;
    if (qwen && !bias) return lr_err(LR_EUSAGE, "--no-bias: qwen2 always has q/k/v biases");
    if (o->L < 1 || o->C < 2 || o->NH < 1 || o->NKV < 1 || o->I < 1 || o->C % o->NH || o->NH % o->NKV || (o->C / o->NH) % 2)
        return lr_err(LR_EUSAGE, "shapes: need hidden %% heads == 0, heads %% kv-heads == 0 and an even head size");
    if (!(o->rope_theta > 0)) return lr_err(LR_EUSAGE, "--rope-theta: must be positive");
    if (mkdir_p(dir)) return lr_err(LR_EIO, "%s: %s", dir, strerror(errno));
    int eot, imend, ntok, rc;
    rc = o->tokenizer ? copied_tokenizer(dir, o->tokenizer, &eot, &imend, &ntok) : builtin_tokenizer(dir, &eot, &imend, &ntok);
    if (rc) return rc;
    int V = o->V ? o->V : (o->tokenizer ? ntok : 300);
    if (V < ntok) return lr_err(LR_EUSAGE, "--vocab %d: smaller than the tokenizer's %d ids", V, ntok);
    int HD = o->C / o->NH, QD = o->NH * HD, KD = o->NKV * HD;

    /* config.json, in the layout of real Qwen2.5 / Llama checkpoints */
    json_t *cfg = json_pack("{s:[s], s:s, s:f, s:i, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:n, s:b, s:s, s:i}",
                            "architectures", qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", "model_type", o->arch,
                            "attention_dropout", 0.0, "hidden_size", o->C, "hidden_act", "silu", "intermediate_size", o->I,
                            "num_hidden_layers", o->L, "num_attention_heads", o->NH, "num_key_value_heads", o->NKV,
                            "max_position_embeddings", o->max_pos ? o->max_pos : 4096, "vocab_size", V,
                            "rms_norm_eps", 1e-6, "rope_theta", o->rope_theta, "rope_scaling", "tie_word_embeddings",
                            o->tied, "torch_dtype", o->bf16 ? "bfloat16" : "float32", "head_dim", HD);
    if (qwen) json_object_set_new(cfg, "use_sliding_window", json_false());
    else {
        json_object_set_new(cfg, "attention_bias", json_boolean(bias));
        json_object_set_new(cfg, "mlp_bias", json_false());
    }
    if (eot >= 0) json_object_set_new(cfg, "bos_token_id", json_integer(eot));
    if (eot >= 0) json_object_set_new(cfg, "eos_token_id", json_integer(eot));
    if ((rc = write_json(dir, "config.json", cfg))) return rc;
    json_t *eos = json_array();
    if (imend >= 0) json_array_append_new(eos, json_integer(imend));
    if (eot >= 0) json_array_append_new(eos, json_integer(eot));
    json_t *gen = json_pack("{s:o, s:b}", "eos_token_id", eos, "do_sample", 0);
    if (eot >= 0) json_object_set_new(gen, "bos_token_id", json_integer(eot)), json_object_set_new(gen, "pad_token_id", json_integer(eot));
    if ((rc = write_json(dir, "generation_config.json", gen))) return rc;

    /* tensors, in file order */
    int nmax = 3 + o->L * 13;
    mk_spec *sp = xcalloc((size_t)nmax, sizeof *sp);
    int n = 0;
#define ADD(r, c, sc, ad, ...) do { snprintf(sp[n].name, sizeof sp[n].name, __VA_ARGS__); \
        sp[n].rows = (r), sp[n].cols = (c), sp[n].scale = (sc), sp[n].add = (ad); n++; } while (0)
    float sC = sqrtf(3.0f / o->C), sQ = sqrtf(3.0f / QD), sI = sqrtf(3.0f / o->I);
    ADD(V, o->C, 0.5f, 0, "model.embed_tokens.weight");
    for (int l = 0; l < o->L; l++) {
        ADD(o->C, 0, 0.1f, 1, "model.layers.%d.input_layernorm.weight", l);
        ADD(QD, o->C, sC, 0, "model.layers.%d.self_attn.q_proj.weight", l);
        if (bias) ADD(QD, 0, 0.2f, 0, "model.layers.%d.self_attn.q_proj.bias", l);
        ADD(KD, o->C, sC, 0, "model.layers.%d.self_attn.k_proj.weight", l);
        if (bias) ADD(KD, 0, 0.2f, 0, "model.layers.%d.self_attn.k_proj.bias", l);
        ADD(KD, o->C, sC, 0, "model.layers.%d.self_attn.v_proj.weight", l);
        if (bias) ADD(KD, 0, 0.2f, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        ADD(o->C, QD, sQ, 0, "model.layers.%d.self_attn.o_proj.weight", l);
        if (bias && !qwen) ADD(o->C, 0, 0.2f, 0, "model.layers.%d.self_attn.o_proj.bias", l);
        ADD(o->C, 0, 0.1f, 1, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(o->I, o->C, sC, 0, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(o->I, o->C, sC, 0, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(o->C, o->I, sI, 0, "model.layers.%d.mlp.down_proj.weight", l);
    }
    ADD(o->C, 0, 0.1f, 1, "model.norm.weight");
    if (!o->tied) ADD(V, o->C, sC, 0, "lm_head.weight");
#undef ADD
    st_wtensor *wt = xcalloc((size_t)n, sizeof *wt);
    uint64_t rng = o->seed;
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)sp[i].rows * (size_t)(sp[i].cols ? sp[i].cols : 1);
        float *x = xmalloc(cnt * sizeof(float));
        for (size_t k = 0; k < cnt; k++) x[k] = sp[i].add + sp[i].scale * urand(&rng);
        if (o->bf16) {
            uint16_t *h = xmalloc(cnt * sizeof(uint16_t));
            for (size_t k = 0; k < cnt; k++) h[k] = st_f32_to_bf16(x[k]);
            free(x);
            wt[i].data = h;
        } else wt[i].data = x;
        wt[i].name = sp[i].name;
        wt[i].dtype = o->bf16 ? ST_BF16 : ST_F32;
        wt[i].ndim = sp[i].cols ? 2 : 1;
        wt[i].shape[0] = sp[i].rows;
        wt[i].shape[1] = sp[i].cols;
    }
    size_t plen = strlen(dir) + 40;
    char *p = xmalloc(plen);
    /* a stale shard index would take precedence over the new file */
    snprintf(p, plen, "%s/model.safetensors.index.json", dir);
    unlink(p);
    snprintf(p, plen, "%s/model.safetensors", dir);
    rc = st_write(p, wt, n);
    free(p);
    for (int i = 0; i < n; i++) free((void *)wt[i].data);
    free(wt);
    free(sp);
    return rc;
}

static int parse_int(const char *flag, const char *v, int *out, int min) { return opt_int(flag, v, min, 1 << 30, out); }

int mk_save(const char *dir, const mk_opts *o) {
    lr_out *out;
    const char *tmp;
    char *parent = xstrdup(dir), *slash = strrchr(parent, '/');
    if (slash && slash != parent) *slash = 0; /* its folder, created as mkdir -p */
    int bad = slash && slash != parent && mkdir_p(parent);
    free(parent);
    if (bad) return lr_err(LR_EIO, "%s: cannot create its folder: %s", dir, strerror(errno));
    int rc = out_open_dir(&out, dir, o->force ? OUT_FORCE : 0, &tmp);
    if (rc) return rc;
    if ((rc = mk_write_model(tmp, o))) {
        out_abort(&out);
        return rc;
    }
    return out_commit(&out);
}

int mk_parse_args(mk_opts *o, int argc, char **argv, const char **out) {
    mk_defaults(o);
    if (out) *out = NULL;
    int rc = LR_OK;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tied")) o->tied = 1;
        else if (!strcmp(a, "--untied")) o->tied = 0;
        else if (!strcmp(a, "--bias")) o->bias = 1;
        else if (!strcmp(a, "--no-bias")) o->bias = 0;
        else if (!strcmp(a, "--force")) o->force = 1;
        else if (a[0] == '-' && a[1] == '-') {
            i++;
            if (!v) rc = lr_err(LR_EUSAGE, "%s: unknown option or missing value (see --help)", a);
            else if (!strcmp(a, "--arch")) o->arch = v;
            else if (!strcmp(a, "--layers")) rc = parse_int(a, v, &o->L, 1);
            else if (!strcmp(a, "--hidden")) rc = parse_int(a, v, &o->C, 2);
            else if (!strcmp(a, "--heads")) rc = parse_int(a, v, &o->NH, 1);
            else if (!strcmp(a, "--kv-heads")) rc = parse_int(a, v, &o->NKV, 1);
            else if (!strcmp(a, "--inter")) rc = parse_int(a, v, &o->I, 1);
            else if (!strcmp(a, "--vocab")) rc = parse_int(a, v, &o->V, 1);
            else if (!strcmp(a, "--max-pos")) rc = parse_int(a, v, &o->max_pos, 1);
            else if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
            else if (!strcmp(a, "--rope-theta")) {
                rc = opt_double(a, v, 1e-6, 1e12, &o->rope_theta);
            } else if (!strcmp(a, "--seed")) {
                rc = opt_u64(a, v, &o->seed);
            } else if (!strcmp(a, "--dtype")) {
                if (!strcmp(v, "f32")) o->bf16 = 0;
                else if (!strcmp(v, "bf16")) o->bf16 = 1;
                else rc = lr_err(LR_EUSAGE, "--dtype: \"%s\" unknown (f32 or bf16)", v);
            } else rc = lr_err(LR_EUSAGE, "%s: unknown option (see --help)", a);
        } else if (out && !*out) *out = a;
        else rc = lr_err(LR_EUSAGE, "%s: unexpected argument", a);
    }
    return rc;
}
