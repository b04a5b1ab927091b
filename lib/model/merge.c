/* merge: see merge.h. */
#include "model/merge.h"

#include <cblas.h>
#undef I /* complex.h (via cblas.h) defines I; we use it as the MLP width */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "base/util.h"

static float *layer_weight(model *m, int k, int l) {
    const mcfg *c = &m->cfg;
    model_weights *w = &m->w;
    size_t QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD, C = (size_t)c->C, I = (size_t)c->I;
    switch (k) {
    case LORA_Q: return w->wq + l * QD * C;
    case LORA_K: return w->wk + l * KD * C;
    case LORA_V: return w->wv + l * KD * C;
    case LORA_O: return w->wo + l * C * QD;
    case LORA_GATE: return w->wgate + l * I * C;
    case LORA_UP: return w->wup + l * I * C;
    default: return w->wdown + l * C * I;
    }
}

void lora_merge(model *m, const lora *lo) {
    for (int k = 0; k < LORA_NMOD; k++) {
        if (!lo->A[k]) continue;
        int r = lo->r, in = lo->in[k], out = lo->out[k];
        for (int l = 0; l < lo->L; l++) {
            const float *A = lo->A[k] + (size_t)l * r * in, *B = lo->B[k] + (size_t)l * out * r; // A (r, in), B (out, r)
            /* W (out, in) += s B A */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, lora_scale(lo), B, r, A, in, 1.0f,
                        layer_weight(m, k, l), in);
        }
    }
}

static int copy_file(const char *src, const char *dst) {
    char *buf;
    size_t n;
    if (lr_read_file(src, &buf, &n)) return LR_EIO;
    FILE *f = fopen(dst, "wb");
    int rc = LR_OK;
    if (!f) rc = lr_err(LR_EIO, "%s: %s", dst, strerror(errno));
    else {
        if (fwrite(buf, 1, n, f) != n) rc = lr_err(LR_EIO, "%s: write error", dst);
        if (fclose(f) && !rc) rc = lr_err(LR_EIO, "%s: write error", dst);
    }
    free(buf);
    return rc;
}

int model_save(const model *m, const char *src_dir, const char *out_dir, int dtype) {
    const mcfg *c = &m->cfg;
    const model_weights *w = &m->w;
    if (mkdir(out_dir, 0777) && errno != EEXIST) return lr_err(LR_EIO, "%s: %s", out_dir, strerror(errno));
    int64_t C = c->C, I = c->I, V = c->V, QD = (int64_t)c->NH * c->HD, KD = (int64_t)c->NKV * c->HD;
    struct {
        const float *p;
        const char *name;
        int per_layer;
        int64_t rows, cols;
    } spec[] = {
        {w->embed, "model.embed_tokens.weight", 0, V, C},
        {w->ln1, "input_layernorm.weight", 1, C, 0},
        {w->wq, "self_attn.q_proj.weight", 1, QD, C},
        {w->bq, "self_attn.q_proj.bias", 1, QD, 0},
        {w->wk, "self_attn.k_proj.weight", 1, KD, C},
        {w->bk, "self_attn.k_proj.bias", 1, KD, 0},
        {w->wv, "self_attn.v_proj.weight", 1, KD, C},
        {w->bv, "self_attn.v_proj.bias", 1, KD, 0},
        {w->wo, "self_attn.o_proj.weight", 1, C, QD},
        {w->bo, "self_attn.o_proj.bias", 1, C, 0},
        {w->ln2, "post_attention_layernorm.weight", 1, C, 0},
        {w->wgate, "mlp.gate_proj.weight", 1, I, C},
        {w->wup, "mlp.up_proj.weight", 1, I, C},
        {w->wdown, "mlp.down_proj.weight", 1, C, I},
        {w->norm, "model.norm.weight", 0, C, 0},
        {c->tied ? NULL : w->lm_head, "lm_head.weight", 0, V, C},
    };
    int ns = (int)(sizeof spec / sizeof spec[0]), nt = 0;
    /* a NaN or inf weight (a diverged run, an absurd lora_alpha) is never written */
    for (int i = 0; i < ns; i++) {
        if (!spec[i].p) continue;
        size_t cnt = (size_t)spec[i].rows * (size_t)(spec[i].cols ? spec[i].cols : 1) * (spec[i].per_layer ? c->L : 1);
        for (size_t k = 0; k < cnt; k++)
            if (!isfinite(spec[i].p[k])) {
                char nm[160];
                if (spec[i].per_layer) model_tensor_name(nm, sizeof nm, (int)(k / (cnt / c->L)), spec[i].name);
                else snprintf(nm, sizeof nm, "%s", spec[i].name);
                return lr_err(LR_EINPUT, "%s: tensor %s: element %zu is %g: not writing non-finite weights", out_dir, nm,
                              spec[i].per_layer ? k % (cnt / c->L) : k, (double)spec[i].p[k]);
            }
    }
    st_wtensor *t = xcalloc((size_t)ns * c->L, sizeof *t);
    char(*names)[160] = xcalloc((size_t)ns * c->L, sizeof *names);
    uint16_t *bf = dtype == ST_BF16 ? xmalloc(m->nparams * sizeof(uint16_t)) : NULL;
    for (int i = 0; i < ns; i++) {
        if (!spec[i].p) continue;
        size_t each = (size_t)spec[i].rows * (size_t)(spec[i].cols ? spec[i].cols : 1);
        for (int l = 0; l < (spec[i].per_layer ? c->L : 1); l++) {
            if (spec[i].per_layer) model_tensor_name(names[nt], sizeof names[nt], l, spec[i].name);
            else snprintf(names[nt], sizeof names[nt], "%s", spec[i].name);
            const float *src = spec[i].p + (size_t)l * each;
            const void *data = src;
            if (bf) {
                uint16_t *d = bf + (src - m->mem);
                for (size_t k = 0; k < each; k++) d[k] = st_f32_to_bf16(src[k]);
                data = d;
            }
            t[nt] = (st_wtensor){names[nt], dtype, spec[i].cols ? 2 : 1, {spec[i].rows, spec[i].cols}, data};
            nt++;
        }
    }
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = st_write(tmp, t, nt);
    if (!rc && rename(tmp, path)) rc = lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    free(t);
    free(names);
    free(bf);
    if (rc) return rc;
    /* config.json with the new dtype */
    snprintf(path, sizeof path, "%s/config.json", src_dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return lr_err(LR_EIO, "%s: %s", path, je.text);
    json_object_set_new(j, "torch_dtype", json_string(dtype == ST_BF16 ? "bfloat16" : "float32"));
    if (json_object_get(j, "dtype")) json_object_set_new(j, "dtype", json_string(dtype == ST_BF16 ? "bfloat16" : "float32"));
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    if (json_dump_file(j, path, JSON_INDENT(2))) rc = lr_err(LR_EIO, "%s: cannot write", path);
    json_decref(j);
    static const char *files[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0] && !rc; i++) {
        char src[4200], dst[4200];
        struct stat st;
        snprintf(src, sizeof src, "%s/%s", src_dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", out_dir, files[i]);
        if (stat(src, &st) == 0) rc = copy_file(src, dst);
    }
    return rc;
}
