/* model: see model.h. */
#include "model/model.h"

#include "io/safetensors.h"
#include "base/util.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void model_tensor_name(char *buf, size_t n, int layer, const char *suffix) {
    snprintf(buf, n, "model.layers.%d.%s", layer, suffix);
}

/* Folder name: basename of the resolved path. */
static char *folder_name(const char *dir) {
    char *rp = realpath(dir, NULL);
    const char *p = rp ? rp : dir;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && p[b - 1] != '/') b--;
    char *out = xmalloc(n - b + 1);
    memcpy(out, p + b, n - b);
    out[n - b] = 0;
    free(rp);
    return out;
}

static uint64_t identity_of(const char *dir, const st_set *s, const char *config, size_t clen) {
    (void)dir;
    uint64_t h = lr_fnv1a64(LR_FNV_INIT, config, clen);
    /* st_open_dir opens shards in sorted order already; a single file is
     * trivially sorted. */
    for (int i = 0; i < s->nfiles; i++) {
        const st_file *f = &s->files[i];
        unsigned char sz[8];
        for (int k = 0; k < 8; k++) sz[k] = (unsigned char)((uint64_t)f->size >> (8 * k));
        h = lr_fnv1a64(h, f->base, strlen(f->base));
        h = lr_fnv1a64(h, sz, 8);
        h = lr_fnv1a64(h, f->header, f->header_len);
    }
    return h;
}

static int read_config_bytes(const char *dir, char **buf, size_t *len) {
    size_t n = strlen(dir) + 16;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/config.json", dir);
    int rc = lr_read_file(p, buf, len);
    free(p);
    return rc;
}

#define FIELD(f) (int)(offsetof(model_weights, f) / sizeof(float *))

int model_parts(const mcfg *c, model_part *p, size_t *total) {
    int64_t C = c->C, I = c->I, V = c->V, QD = (int64_t)c->NH * c->HD, KD = (int64_t)c->NKV * c->HD;
    struct {
        int field, have;
        const char *suffix;
        int per_layer;
        int64_t rows, cols;
    } all[] = {
        {FIELD(embed), 1, "model.embed_tokens.weight", 0, V, C},
        {FIELD(ln1), 1, "input_layernorm.weight", 1, C, 0},
        {FIELD(wq), 1, "self_attn.q_proj.weight", 1, QD, C},
        {FIELD(bq), c->qkv_bias, "self_attn.q_proj.bias", 1, QD, 0},
        {FIELD(wk), 1, "self_attn.k_proj.weight", 1, KD, C},
        {FIELD(bk), c->qkv_bias, "self_attn.k_proj.bias", 1, KD, 0},
        {FIELD(wv), 1, "self_attn.v_proj.weight", 1, KD, C},
        {FIELD(bv), c->qkv_bias, "self_attn.v_proj.bias", 1, KD, 0},
        {FIELD(wo), 1, "self_attn.o_proj.weight", 1, C, QD},
        {FIELD(bo), c->o_bias, "self_attn.o_proj.bias", 1, C, 0},
        {FIELD(ln2), 1, "post_attention_layernorm.weight", 1, C, 0},
        {FIELD(wgate), 1, "mlp.gate_proj.weight", 1, I, C},
        {FIELD(wup), 1, "mlp.up_proj.weight", 1, I, C},
        {FIELD(wdown), 1, "mlp.down_proj.weight", 1, C, I},
        {FIELD(norm), 1, "model.norm.weight", 0, C, 0},
        {FIELD(lm_head), !c->tied, "lm_head.weight", 0, V, C},
    };
    int n = 0;
    size_t at = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (!all[i].have) continue;
        size_t each = (size_t)all[i].rows * (size_t)(all[i].cols ? all[i].cols : 1);
        p[n++] = (model_part){all[i].field, all[i].suffix, all[i].per_layer, all[i].rows, all[i].cols, at, each};
        at += (size_t)(all[i].per_layer ? c->L : 1) * each;
    }
    *total = at;
    return n;
}
#undef FIELD

static int load(model *m, const char *dir, int read) {
    memset(m, 0, sizeof *m);
    int rc = mcfg_load(&m->cfg, dir);
    if (rc) return rc;
    const mcfg *c = &m->cfg;
    model_weights *w = &m->w;
    model_part spec[MODEL_MAX_PARTS];
    size_t total;
    int ns = model_parts(c, spec, &total);
    st_set s;
    if ((rc = st_open_dir(&s, dir))) return lr_err_prefix(rc, "%s", dir);
    char *cfgbytes = NULL;
    size_t clen = 0;
    if ((rc = read_config_bytes(dir, &cfgbytes, &clen))) goto out;
    m->hash = identity_of(dir, &s, cfgbytes, clen);
    snprintf(m->hash_hex, sizeof m->hash_hex, "%016llx", (unsigned long long)m->hash);
    /* model_open: no float32 copy; pointers stay NULL and the tensors are
     * only checked, to be read later from the kept mmap. */
    m->mem = read ? xmalloc(total * sizeof(float)) : NULL;
    m->nparams = total;
    char name[256];
    for (int i = 0; i < ns && !rc; i++) {
        float *at = read ? m->mem + spec[i].off : NULL;
        ((float **)w)[spec[i].field] = at;
        int64_t shape[2] = {spec[i].rows, spec[i].cols};
        int nd = spec[i].cols ? 2 : 1;
        for (int l = 0; l < (spec[i].per_layer ? c->L : 1) && !rc; l++) {
            if (spec[i].per_layer) model_tensor_name(name, sizeof name, l, spec[i].suffix);
            else snprintf(name, sizeof name, "%s", spec[i].suffix);
            rc = read ? st_read_f32(&s, name, nd, shape, at) : st_check(&s, name, nd, shape, NULL);
            if (read) at += spec[i].each;
        }
    }
    /* Tied checkpoints sometimes still store lm_head.weight; like
     * transformers we ignore it and use embed_tokens. */
    int extra = c->tied && st_find(&s, "lm_head.weight");
    if (!rc && c->tied && read) w->lm_head = w->embed;
    if (!rc) {
        /* Unused tensors mean a config we do not understand (e.g. MLP
         * biases, extra norms): refuse rather than ignore them. */
        size_t expect = (size_t)extra;
        for (int i = 0; i < ns; i++) expect += spec[i].per_layer ? (size_t)c->L : 1;
        if ((size_t)s.ntensors != expect) {
            for (int t = 0; t < s.ntensors; t++) {
                const char *n = s.tensors[t].name;
                int known = extra && !strcmp(n, "lm_head.weight");
                for (int i = 0; i < ns && !known; i++) {
                    size_t sl = strlen(spec[i].suffix), nl = strlen(n);
                    known = spec[i].per_layer ? (nl > sl && !strcmp(n + nl - sl, spec[i].suffix) && !strncmp(n, "model.layers.", 13))
                                              : !strcmp(n, spec[i].suffix);
                }
                if (!known) {
                    rc = lr_err(LR_EINPUT, "%s: tensor %s: not used by a %s model with this config", s.files[s.tensors[t].file].base, n, c->model_type);
                    break;
                }
            }
            if (!rc) rc = lr_err(LR_EINPUT, "%d tensors in the checkpoint, %zu expected (layer count?)", s.ntensors, expect);
        }
    }
    if (!rc) m->name = folder_name(dir);
    else lr_err_prefix(rc, "%s", dir);
out:
    free(cfgbytes);
    if (!rc && !read) {
        m->st = xmalloc(sizeof *m->st);
        *m->st = s;
    } else {
        st_close(&s);
    }
    if (rc) model_free(m);
    return rc;
}

int model_load(model *m, const char *dir) { return load(m, dir, 1); }
int model_open(model *m, const char *dir) { return load(m, dir, 0); }

const st_tensor *model_tensor(const model *m, const char *suffix, int layer) {
    if (!m->st) return NULL;
    char name[256];
    if (layer >= 0) model_tensor_name(name, sizeof name, layer, suffix);
    else snprintf(name, sizeof name, "%s", suffix);
    return st_find(m->st, name);
}

int model_make_bf16(model *m) {
    const mcfg *c = &m->cfg;
    size_t C = (size_t)c->C, I = (size_t)c->I, L = (size_t)c->L, V = (size_t)c->V;
    size_t QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD;
    struct { const float *src; uint16_t **dst; size_t n; } t[] = {
        {m->w.wq, &m->w16.wq, L * QD * C},    {m->w.wk, &m->w16.wk, L * KD * C},
        {m->w.wv, &m->w16.wv, L * KD * C},    {m->w.wo, &m->w16.wo, L * C * QD},
        {m->w.wgate, &m->w16.wgate, L * I * C}, {m->w.wup, &m->w16.wup, L * I * C},
        {m->w.wdown, &m->w16.wdown, L * C * I}, {m->w.lm_head, &m->w16.lm_head, V * C},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        for (size_t k = 0; k < t[i].n; k++) {
            uint32_t u;
            memcpy(&u, &t[i].src[k], 4);
            if (u & 0xffff)
                return lr_err(LR_EINPUT, "%s: weights are not exact bf16 values (float32 checkpoint?): bf16 decode copies refused",
                              m->name ? m->name : "model");
        }
        total += t[i].n;
    }
    free(m->mem16);
    uint16_t *at = m->mem16 = xmalloc(total * sizeof(uint16_t));
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        *t[i].dst = at;
        for (size_t k = 0; k < t[i].n; k++) {
            uint32_t u;
            memcpy(&u, &t[i].src[k], 4);
            at[k] = (uint16_t)(u >> 16);
        }
        at += t[i].n;
    }
    return LR_OK;
}

void model_free(model *m) {
    if (m->st) {
        st_close(m->st);
        free(m->st);
    }
    free(m->mem16);
    free(m->mem);
    free(m->name);
    memset(m, 0, sizeof *m);
}
