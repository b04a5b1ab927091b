/* tuneplan: see tuneplan.h. */
#include "method/tuneplan.h"

#include "base/util.h"
#include "method/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tplan_defaults(tune_cfg *c) {
    *c = (tune_cfg){.targets_s = "q,v", .r = 8, .alpha = 16, .dropout = 0.05, .lr = 5e-5, .clip = 1.0, .beta1 = 0.9,
                    .beta2 = 0.999, .eps = 1e-8, .batch = 8, .accum = 2, .epochs = 1, .max_steps = -1, .seed = 42,
                    .pack = 1, .shuffle = 1, .max_len = 4096, .max_rows = 2048, .pad_id = -1, .device = "cpu", .world = 1};
}

int tplan_data(tune_cfg *c, const model *m, char *const *inputs, int nin, tune_data *ds) {
    int rc;
    if (c->quirks) {
        int rv;
        if ((rc = tdata_reference_tokens(c->model_dir, &rv, &c->pad_id))) return rc;
        if (!c->vlim) c->vlim = rv;
        if (!c->max_len_set) c->max_len = 512;
        c->pack = 0;
    }
    tune_read_opts ro;
    if ((rc = tdata_read_opts(&ro, c->model_dir, m->cfg.V, c->max_len))) return rc;
    for (int i = 0; i < nin && !rc; i++)
        rc = c->lm ? tdata_read_text(ds, inputs[i], c->model_dir, &ro) : tdata_read(ds, inputs[i], &ro);
    if (rc) return rc;
    if (!ds->n) return lr_err(LR_EINPUT, "%s: no training examples in the input", inputs[0]);
    if (c->objective_s && !c->lm) {
        int want = !strcmp(c->objective_s, "soft-kl") ? TUNE_SOFTKL : !strcmp(c->objective_s, "sft") ? TUNE_SFT : -1;
        if (want < 0) return lr_err(LR_EUSAGE, "--objective: \"%s\" (soft-kl, sft or lm)", c->objective_s);
        if (want != ds->objective)
            return lr_err(LR_EUSAGE, "--objective %s needs %s records", c->objective_s,
                          want == TUNE_SFT ? "`dist`" : "`example`");
    }
    if (c->quirks && ds->objective != TUNE_SOFTKL)
        return lr_err(LR_EUSAGE, "--reference-quirks: the reference's collate is the soft-KL objective's (`example` records)");
    if (ds->truncated)
        fprintf(stderr, "%s: %d sequences cut to --max-len %d tokens\n", lr_progname, ds->truncated, c->max_len);
    /* every token a row of the model's embedding, before any step runs */
    for (int i = 0; i < ds->n; i++)
        for (int j = 0; j < ds->ex[i].ntok; j++)
            if (ds->ex[i].tokens[j] < 0 || ds->ex[i].tokens[j] >= m->cfg.V)
                return lr_err(LR_EINPUT, "example (problem %lld, step %d): token %d at position %d is outside the "
                              "model's vocabulary [0, %d)", (long long)ds->ex[i].problem, ds->ex[i].step,
                              ds->ex[i].tokens[j], j, m->cfg.V);
    return 0;
}

void tplan_schedule(const tune_cfg *c, const tune_data *ds, tune_schedule *s) {
    s->maxlen = 1;
    for (int i = 0; i < ds->n; i++)
        if (ds->ex[i].ntok > s->maxlen) s->maxlen = ds->ex[i].ntok;
    s->mb_per_epoch = (ds->n + c->batch - 1) / c->batch;
    s->steps_per_epoch = (s->mb_per_epoch + c->accum - 1) / c->accum;
    s->total = c->max_steps > 0 ? c->max_steps : s->steps_per_epoch * c->epochs;
}

int tplan_tuner(const tune_cfg *c, model *m, lora *lo, const tune_data *ds, const tune_schedule *s, tuner *tu) {
    int rc;
    if (!c->full && c->init_adapter) {
        if ((rc = lora_load(lo, &m->cfg, c->init_adapter))) return rc;
    } else if (!c->full) {
        lora_alloc(lo, &m->cfg, c->r, (float)c->alpha, (float)c->dropout, c->targets);
        lora_init(lo, c->seed);
    }
    if ((rc = tuner_init(tu, m, c->full ? NULL : lo, ds->objective, c->vlim, c->pack, c->max_rows, s->maxlen, c->batch,
                         (float)c->lr, (float)c->beta1, (float)c->beta2, (float)c->eps, (float)c->wd, (float)c->clip)))
        return rc;
    tu->dropout_on = 1;
    tu->seed = c->seed;
    tu->precision = c->precision && !strcmp(c->precision, "bf16") ? GTRN_BF16 : GTRN_F32;
    tu->mem_budget = (size_t)c->device_mem << 20;
    tu->recompute = !c->recompute || !strcmp(c->recompute, "auto") ? GTRN_RECOMPUTE_AUTO
                    : !strcmp(c->recompute, "always")             ? GTRN_RECOMPUTE_ALWAYS
                                                                  : GTRN_RECOMPUTE_NEVER;
    return 0;
}

json_t *tplan_settings(const tune_cfg *c, const model *m, long total, char *const *inputs, int nin, int *rc) {
    json_t *s = json_object();
    char v[64];
#define PUT(k, ...) (snprintf(v, sizeof v, __VA_ARGS__), json_object_set_new(s, k, json_string(v)))
    PUT("--model", "%s", m->hash_hex);
    PUT("--objective", "%s", c->objective_s ? c->objective_s : "(from the input)");
    PUT("--full", "%d", c->full);
    PUT("--targets", "%#x", c->targets);
    PUT("--r", "%d", c->r);
    PUT("--alpha", "%.9g", c->alpha);
    PUT("--dropout", "%.9g", c->dropout);
    PUT("--lr", "%.9g", c->lr);
    PUT("--warmup", "%d", c->warmup);
    PUT("--weight-decay", "%.9g", c->wd);
    PUT("--clip", "%.9g", c->clip);
    PUT("--beta1", "%.9g", c->beta1);
    PUT("--beta2", "%.9g", c->beta2);
    PUT("--eps", "%.9g", c->eps);
    PUT("--batch", "%d", c->batch);
    PUT("--accum", "%d", c->accum);
    PUT("--max-steps", "%ld", total);
    PUT("--seed", "%llu", (unsigned long long)c->seed);
    PUT("--no-shuffle", "%d", !c->shuffle);
    PUT("--group-by-problem", "%d", c->by_problem);
    PUT("--group-by-length", "%d", c->group_len);
    PUT("--pack", "%d", c->pack);
    PUT("--vocab-limit", "%d", c->vlim);
    PUT("--max-len", "%d", c->max_len);
    PUT("--reference-quirks", "%d", c->quirks);
    /* the dropout masks depend on the ranks (tune.h); one process records
     * nothing, as before data parallelism existed */
    if (c->world > 1) PUT("--world", "%d", c->world);
#undef PUT
    json_t *a = json_array();
    char hx[17];
    *rc = 0;
    for (int i = 0; i < nin && !*rc; i++)
        if (!(*rc = ckpt_file_hash(inputs[i], hx))) json_array_append_new(a, json_string(hx));
    if (c->init_adapter) {
        char p[4200];
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", c->init_adapter);
        if (!*rc && !(*rc = ckpt_file_hash(p, hx))) json_object_set_new(s, "--init-adapter", json_string(hx));
    }
    json_object_set_new(s, "inputs (content)", a);
    if (*rc) {
        json_decref(s);
        return NULL;
    }
    return s;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = s; p && *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return h;
}

static void put_field(comm_field *f, const char *name, const json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->value, sizeof f->value, "%s", json_is_string(v) ? json_string_value(v) : s ? s : "?");
    f->hash = fnv1a(s);
    free(s);
}

int tplan_fields(const json_t *settings, const tune_cfg *c, comm_field *f, int max) {
    size_t nk = json_object_size(settings), n = 0;
    const char **keys = xmalloc((nk + 1) * sizeof *keys);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)settings, k, v) keys[n++] = k;
    /* sorted, so that every rank sends them in one order */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) k = keys[j], keys[j] = keys[j - 1], keys[j - 1] = k;
    int nf = 0;
    for (size_t i = 0; i < n && nf < max; i++) put_field(&f[nf++], keys[i], json_object_get(settings, keys[i]));
    free(keys);
    /* not settings (a resume may change them) but one world trains with one
     * of each; the shard rule is this program's, named so that another
     * version of it cannot join with another one */
    const char *extra[][2] = {{"--precision", c->precision ? c->precision : "f32"},
                              {"--recompute", c->recompute ? c->recompute : "auto"},
                              {"--dp-backend", c->dp_backend ? c->dp_backend : "auto"},
                              {"data shard", "rank r of W: [r*B/W, (r+1)*B/W) of each batch"}};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0] && nf < max; i++) {
        json_t *s = json_string(extra[i][1]);
        put_field(&f[nf++], extra[i][0], s);
        json_decref(s);
    }
    return nf;
}

int tplan_dp_backend(const tune_cfg *c) {
    const char *b = c->dp_backend ? c->dp_backend : "auto";
    return !strcmp(b, "nccl") ? TUNER_DP_NCCL : !strcmp(b, "host") ? TUNER_DP_HOST : TUNER_DP_AUTO;
}
