/* modelcfg: see modelcfg.h. */
#include "model/modelcfg.h"

#include "base/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CF "config.json"

static int get_int(json_t *root, const char *key, int *out, int dflt, int min) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (dflt == -999) return lr_err(LR_EINPUT, CF ": field \"%s\": missing", key);
        *out = dflt;
        return LR_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > (1 << 30))
        return lr_err(LR_EINPUT, CF ": field \"%s\": expected an integer >= %d", key, min);
    *out = (int)json_integer_value(v);
    return LR_OK;
}

static int get_num(json_t *root, const char *key, double *out, double dflt) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return LR_OK;
    }
    if (!json_is_number(v) || json_number_value(v) <= 0)
        return lr_err(LR_EINPUT, CF ": field \"%s\": expected a positive number", key);
    *out = json_number_value(v);
    return LR_OK;
}

static int get_bool(json_t *root, const char *key, int *out, int dflt) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) *out = dflt;
    else if (json_is_boolean(v)) *out = json_is_true(v);
    else return lr_err(LR_EINPUT, CF ": field \"%s\": expected true or false", key);
    return LR_OK;
}

/* eos_token_id is an int or a list of ints; adds new ids to c->eos. */
static int add_eos(mcfg *c, json_t *v, const char *file) {
    if (!v || json_is_null(v)) return LR_OK;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return lr_err(LR_EINPUT, "%s: field \"eos_token_id\": expected an id or a list of ids", file);
        int id = (int)json_integer_value(e), seen = 0;
        for (int j = 0; j < c->neos; j++) seen |= c->eos[j] == id;
        if (!seen && c->neos < MCFG_MAX_EOS) c->eos[c->neos++] = id;
    }
    return LR_OK;
}

static int parse(mcfg *c, json_t *r) {
    int rc;
    json_t *mt = json_object_get(r, "model_type");
    if (!json_is_string(mt)) return lr_err(LR_EINPUT, CF ": field \"model_type\": missing");
    const char *t = json_string_value(mt);
    if (strcmp(t, "qwen2") && strcmp(t, "llama"))
        return lr_err(LR_EINPUT, CF ": field \"model_type\": \"%s\" unsupported (qwen2 or llama)", t);
    snprintf(c->model_type, sizeof c->model_type, "%s", t);
    int llama = !strcmp(t, "llama");
    if ((rc = get_int(r, "hidden_size", &c->C, -999, 1)) || (rc = get_int(r, "intermediate_size", &c->I, -999, 1)) ||
        (rc = get_int(r, "num_hidden_layers", &c->L, -999, 1)) || (rc = get_int(r, "num_attention_heads", &c->NH, -999, 1)) ||
        (rc = get_int(r, "num_key_value_heads", &c->NKV, c->NH, 1)) || (rc = get_int(r, "vocab_size", &c->V, -999, 1)) ||
        (rc = get_int(r, "max_position_embeddings", &c->max_pos, 32768, 1)) ||
        (rc = get_int(r, "head_dim", &c->HD, c->C / c->NH, 2)) || (rc = get_int(r, "bos_token_id", &c->bos, -1, 0)))
        return rc;
    if (c->NH % c->NKV) return lr_err(LR_EINPUT, CF ": field \"num_key_value_heads\": %d does not divide num_attention_heads %d", c->NKV, c->NH);
    if (c->HD % 2) return lr_err(LR_EINPUT, CF ": field \"head_dim\": %d is odd (RoPE needs pairs)", c->HD);
    /* bounded here so an absurd value is bad input, not an allocation of terabytes */
    if (c->HD > 4096 || (long long)c->HD * c->NH > 1LL << 20)
        return lr_err(LR_EINPUT, CF ": field \"head_dim\": %d (x %d heads) is beyond any supported model", c->HD, c->NH);
    if ((rc = get_num(r, "rms_norm_eps", &c->rms_eps, 1e-6)) || (rc = get_num(r, "rope_theta", &c->rope_theta, 10000.0)) ||
        (rc = get_bool(r, "tie_word_embeddings", &c->tied, 0)))
        return rc;
    /* transformers >= 5 writes rope_parameters {rope_type, rope_theta}. */
    json_t *rp = json_object_get(r, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        json_t *rt = json_object_get(rp, "rope_type");
        if (rt && !(json_is_string(rt) && !strcmp(json_string_value(rt), "default")))
            return lr_err(LR_EINPUT, CF ": field \"rope_parameters\": only rope_type \"default\" is supported");
        json_t *th = json_object_get(rp, "rope_theta");
        if (th && (!json_is_number(th) || json_number_value(th) <= 0))
            return lr_err(LR_EINPUT, CF ": field \"rope_parameters\": rope_theta must be a positive number");
        if (th) c->rope_theta = json_number_value(th);
    }
    json_t *rs = json_object_get(r, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        json_t *rt = json_object_get(rs, "rope_type");
        if (!rt) rt = json_object_get(rs, "type");
        if (!(json_is_string(rt) && !strcmp(json_string_value(rt), "default")))
            return lr_err(LR_EINPUT, CF ": field \"rope_scaling\": only null is supported (scaled RoPE not implemented)");
    }
    json_t *act = json_object_get(r, "hidden_act");
    if (act && !(json_is_string(act) && !strcmp(json_string_value(act), "silu")))
        return lr_err(LR_EINPUT, CF ": field \"hidden_act\": only \"silu\" is supported");
    int sw = 0, mlpb = 0, ab = 0;
    if ((rc = get_bool(r, "use_sliding_window", &sw, 0)) || (rc = get_bool(r, "mlp_bias", &mlpb, 0)) ||
        (rc = get_bool(r, "attention_bias", &ab, 0)))
        return rc;
    if (sw) return lr_err(LR_EINPUT, CF ": field \"use_sliding_window\": sliding-window attention is not supported");
    if (mlpb) return lr_err(LR_EINPUT, CF ": field \"mlp_bias\": MLP biases are not supported");
    /* Qwen2 always has q/k/v biases and none on o_proj; Llama's
     * attention_bias puts biases on all four projections. */
    c->qkv_bias = llama ? ab : 1;
    c->o_bias = llama ? ab : 0;
    return add_eos(c, json_object_get(r, "eos_token_id"), CF);
}

/* The sampling fields of generation_config.json, checked as transformers'
 * GenerationConfig and logits warpers check them. */
static int gen_fields(mcfg *c, json_t *g, const char *file) {
    c->do_sample = 0, c->temperature = 1.0, c->top_p = 1.0, c->top_k = 50;
    json_t *v = json_object_get(g, "do_sample");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) return lr_err(LR_EINPUT, "%s: field \"do_sample\": expected true or false", file);
        c->do_sample = json_is_true(v);
    }
    v = json_object_get(g, "temperature");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) >= 0) || json_number_value(v) > 1e6)
            return lr_err(LR_EINPUT, "%s: field \"temperature\": expected a number >= 0", file);
        c->temperature = json_number_value(v);
    }
    if (c->do_sample && !(c->temperature > 0))
        return lr_err(LR_EINPUT, "%s: field \"temperature\": must be > 0 when do_sample is true", file);
    v = json_object_get(g, "top_p");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) <= 1))
            return lr_err(LR_EINPUT, "%s: field \"top_p\": expected a number in (0, 1]", file);
        c->top_p = json_number_value(v);
    }
    v = json_object_get(g, "top_k");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
            return lr_err(LR_EINPUT, "%s: field \"top_k\": expected an integer >= 0", file);
        c->top_k = (int)json_integer_value(v);
    }
    return LR_OK;
}

int mcfg_load(mcfg *c, const char *dir) {
    memset(c, 0, sizeof *c);
    size_t len = strlen(dir) + 40;
    char *p = xmalloc(len);
    snprintf(p, len, "%s/" CF, dir);
    json_error_t jerr;
    json_t *r = json_load_file(p, 0, &jerr);
    int rc;
    if (!r) rc = access(p, R_OK) ? lr_err(LR_EIO, "%s: cannot read", p) : lr_err(LR_EINPUT, "%s: line %d: %s", p, jerr.line, jerr.text);
    else if (!json_is_object(r)) rc = lr_err(LR_EINPUT, "%s: not a JSON object", p);
    else if ((rc = parse(c, r))) lr_err_prefix(rc, "%s", dir);
    json_decref(r);
    if (!rc) {
        snprintf(p, len, "%s/generation_config.json", dir);
        c->temperature = 1.0, c->top_p = 1.0, c->top_k = 50;
        if (access(p, F_OK) == 0) {
            json_t *g = json_load_file(p, 0, &jerr);
            if (!g) rc = access(p, R_OK) ? lr_err(LR_EIO, "%s: cannot read", p)
                                         : lr_err(LR_EINPUT, "%s: line %d: %s", p, jerr.line, jerr.text);
            else if (!json_is_object(g)) rc = lr_err(LR_EINPUT, "%s: not a JSON object", p);
            else if (!(rc = add_eos(c, json_object_get(g, "eos_token_id"), p))) rc = gen_fields(c, g, p);
            c->gen_file = g != NULL;
            json_decref(g);
        }
    }
    free(p);
    return rc;
}
