/* lora: see lora.h. */
#include "model/lora.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "base/rng.h"
#include "base/util.h"

static const char *mod_names[LORA_NMOD] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

const char *lora_module_name(int m) { return mod_names[m]; }
static const char *mod_parent(int m) { return m <= LORA_O ? "self_attn" : "mlp"; }

static int mod_index(const char *s, size_t n) {
    for (int m = 0; m < LORA_NMOD; m++) {
        size_t k = strlen(mod_names[m]) - 5; /* without "_proj" */
        if ((n == k || n == k + 5) && !strncmp(s, mod_names[m], n)) return m;
    }
    return -1;
}

int lora_parse_targets(const char *s, unsigned *mask) {
    *mask = 0;
    if (!strcmp(s, "all")) {
        *mask = (1u << LORA_NMOD) - 1;
        return LR_OK;
    }
    while (*s) {
        size_t n = strcspn(s, ",");
        int m = mod_index(s, n);
        if (m < 0) return lr_err(LR_EUSAGE, "--targets: unknown module \"%.*s\" (q,k,v,o,gate,up,down or all)", (int)n, s);
        *mask |= 1u << m;
        s += n + (s[n] == ',');
    }
    if (!*mask) return lr_err(LR_EUSAGE, "--targets: empty");
    return LR_OK;
}

static void set_shapes(lora *lo, const mcfg *c) {
    int QD = c->NH * c->HD, KD = c->NKV * c->HD;
    int in[LORA_NMOD] = {c->C, c->C, c->C, QD, c->C, c->C, c->I};
    int out[LORA_NMOD] = {QD, KD, KD, c->C, c->I, c->I, c->C};
    memcpy(lo->in, in, sizeof in);
    memcpy(lo->out, out, sizeof out);
}

static void carve(lora *lo) {
    size_t n = 0;
    for (int m = 0; m < LORA_NMOD; m++)
        if (lo->targets >> m & 1) n += (size_t)lo->L * lo->r * (lo->in[m] + lo->out[m]);
    lo->n = n;
    lo->mem = xcalloc(n ? n : 1, sizeof(float));
    float *p = lo->mem;
    for (int m = 0; m < LORA_NMOD; m++) {
        lo->A[m] = lo->B[m] = NULL;
        if (!(lo->targets >> m & 1)) continue;
        lo->A[m] = p, p += (size_t)lo->L * lo->r * lo->in[m];
        lo->B[m] = p, p += (size_t)lo->L * lo->out[m] * lo->r;
    }
}

void lora_alloc(lora *lo, const mcfg *cfg, int r, float alpha, float dropout, unsigned targets) {
    memset(lo, 0, sizeof *lo);
    lo->L = cfg->L, lo->r = r, lo->alpha = alpha, lo->dropout = dropout, lo->targets = targets;
    set_shapes(lo, cfg);
    carve(lo);
}

void lora_alloc_like(lora *lo, const lora *src) {
    *lo = *src;
    carve(lo);
}

void lora_free(lora *lo) {
    free(lo->mem);
    memset(lo, 0, sizeof *lo);
}

void lora_init(lora *lo, uint64_t seed) {
    uint64_t s = seed;
    for (int m = 0; m < LORA_NMOD; m++) {
        if (!lo->A[m]) continue;
        float bound = 1.0f / sqrtf((float)lo->in[m]);
        size_t na = (size_t)lo->L * lo->r * lo->in[m];
        for (size_t i = 0; i < na; i++) lo->A[m][i] = (float)((rng_next(&s) >> 40) * (2.0 / 16777216.0) - 1.0) * bound;
        memset(lo->B[m], 0, (size_t)lo->L * lo->out[m] * lo->r * sizeof(float));
    }
}

static void tensor_name(char *buf, size_t n, int l, int m, char ab) {
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l, mod_parent(m), mod_names[m], ab);
}

static int write_weights(const lora *lo, const char *dir);

int lora_save(const lora *lo, const char *dir, const char *base) {
    char path[4096], tmp[4200];
    for (size_t i = 0; i < lo->n; i++)
        if (!isfinite(lo->mem[i]))
            return lr_err(LR_EINPUT, "%s: adapter parameter %zu is %g: not writing an adapter with non-finite weights", dir, i,
                          (double)lo->mem[i]);
    /* the weights first: adapter_config.json marks a complete adapter */
    int rc = write_weights(lo, dir);
    if (rc) return rc;
    json_t *tm = json_array();
    for (int m = 0; m < LORA_NMOD; m++)
        if (lo->targets >> m & 1) json_array_append_new(tm, json_string(mod_names[m]));
    /* The fields PEFT needs to rebuild the same LoraConfig; the others take
     * PEFT's defaults when absent. */
    json_t *j = json_pack("{s:s, s:s?, s:s, s:b, s:b, s:b, s:i, s:f, s:f, s:o, s:s, s:b, s:b, s:b, s:o, s:o}",
                          "peft_type", "LORA", "base_model_name_or_path", base, "bias", "none", "fan_in_fan_out", 0,
                          "inference_mode", 1, "init_lora_weights", 1, "r", lo->r, "lora_alpha", (double)lo->alpha,
                          "lora_dropout", (double)lo->dropout, "target_modules", tm, "task_type", "CAUSAL_LM", "use_dora",
                          0, "use_rslora", 0, "lora_bias", 0, "rank_pattern", json_object(), "alpha_pattern", json_object());
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(j, tmp, JSON_INDENT(2) | JSON_SORT_KEYS)) rc = lr_err(LR_EIO, "%s: cannot write", tmp);
    else if (rename(tmp, path)) rc = lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    json_decref(j);
    return rc;
}

static int write_weights(const lora *lo, const char *dir) {
    char path[4096], tmp[4200];
    int rc, nt = 0;
    st_wtensor *t = xcalloc((size_t)2 * LORA_NMOD * lo->L, sizeof *t);
    char(*names)[160] = xcalloc((size_t)2 * LORA_NMOD * lo->L, sizeof *names);
    for (int l = 0; l < lo->L; l++)
        for (int m = 0; m < LORA_NMOD; m++) {
            if (!(lo->targets >> m & 1)) continue;
            for (int ab = 0; ab < 2; ab++) {
                tensor_name(names[nt], sizeof names[nt], l, m, ab ? 'B' : 'A');
                int rows = ab ? lo->out[m] : lo->r, cols = ab ? lo->r : lo->in[m];
                const float *d = ab ? lo->B[m] + (size_t)l * lo->out[m] * lo->r : lo->A[m] + (size_t)l * lo->r * lo->in[m];
                t[nt] = (st_wtensor){names[nt], ST_F32, 2, {rows, cols}, d};
                nt++;
            }
        }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    rc = st_write(tmp, t, nt);
    if (!rc && rename(tmp, path)) rc = lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    free(t);
    free(names);
    return rc;
}

int lora_load(lora *lo, const mcfg *cfg, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) /* a file that cannot be read is I/O; one that does not parse is bad input */
        return json_error_code(&je) == json_error_cannot_open_file ? lr_err(LR_EIO, "%s: %s", path, je.text)
                                                                   : lr_err(LR_EINPUT, "%s: line %d: %s", path, je.line, je.text);
    int rc = LR_OK;
    json_t *r = json_object_get(j, "r"), *al = json_object_get(j, "lora_alpha"), *dr = json_object_get(j, "lora_dropout");
    json_t *tm = json_object_get(j, "target_modules");
    const char *bias = json_string_value(json_object_get(j, "bias"));
    unsigned mask = 0;
    if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > 65536) rc = lr_err(LR_EINPUT, "%s: field \"r\": expected an integer in [1, 65536]", path);
    else if (!json_is_object(j)) rc = lr_err(LR_EINPUT, "%s: expected a JSON object", path);
    else if (!json_is_number(al) || !(json_number_value(al) > 0) ||
             !isfinite((float)json_number_value(al) / (float)json_integer_value(r)))
        rc = lr_err(LR_EINPUT, "%s: field \"lora_alpha\": expected a positive number whose alpha / r is finite in float32", path);
    else if (dr && !json_is_null(dr) && (!json_is_number(dr) || !(json_number_value(dr) >= 0) || json_number_value(dr) >= 1))
        rc = lr_err(LR_EINPUT, "%s: field \"lora_dropout\": expected a number in [0, 1)", path);
    else if (json_is_true(json_object_get(j, "fan_in_fan_out")))
        rc = lr_err(LR_EINPUT, "%s: field \"fan_in_fan_out\": true (Conv1D-style transposed weights) is not supported", path);
    else if (!json_is_array(tm)) rc = lr_err(LR_EINPUT, "%s: field \"target_modules\": expected a list of module names", path);
    else if (json_is_true(json_object_get(j, "use_dora")) || json_is_true(json_object_get(j, "use_rslora")) ||
             json_is_true(json_object_get(j, "lora_bias")) || (bias && strcmp(bias, "none")) ||
             json_object_size(json_object_get(j, "rank_pattern")) || json_object_size(json_object_get(j, "alpha_pattern")))
        rc = lr_err(LR_EINPUT, "%s: DoRA, rsLoRA, LoRA biases and rank/alpha patterns are not supported", path);
    for (size_t i = 0; !rc && i < json_array_size(tm); i++) {
        const char *s = json_string_value(json_array_get(tm, i));
        int m = s ? mod_index(s, strlen(s)) : -1;
        if (m < 0) rc = lr_err(LR_EINPUT, "%s: field \"target_modules\": unsupported module \"%s\"", path, s ? s : "?");
        else mask |= 1u << m;
    }
    if (rc) {
        json_decref(j);
        return rc;
    }
    lora_alloc(lo, cfg, (int)json_integer_value(r), (float)json_number_value(al),
               json_is_number(dr) ? (float)json_number_value(dr) : 0.0f, mask);
    json_decref(j);

    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_set s;
    if ((rc = st_open_file(&s, path))) {
        lora_free(lo);
        return rc;
    }
    char name[160];
    for (int l = 0; l < lo->L && !rc; l++)
        for (int m = 0; m < LORA_NMOD && !rc; m++) {
            if (!(lo->targets >> m & 1)) continue;
            int64_t sa[2] = {lo->r, lo->in[m]}, sb[2] = {lo->out[m], lo->r};
            tensor_name(name, sizeof name, l, m, 'A');
            rc = st_read_f32(&s, name, 2, sa, lo->A[m] + (size_t)l * lo->r * lo->in[m]);
            if (rc) break;
            tensor_name(name, sizeof name, l, m, 'B');
            rc = st_read_f32(&s, name, 2, sb, lo->B[m] + (size_t)l * lo->out[m] * lo->r);
        }
    st_close(&s);
    if (rc) lora_free(lo);
    return rc;
}
