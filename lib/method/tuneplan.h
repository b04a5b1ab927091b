/* tuneplan: the setup of an lr-tune run, from its settings to a tuner
 * ready for step 1 (the steps themselves are tune.h, the state between
 * runs checkpoint.h).
 *
 *   tplan_defaults  the settings' defaults (docs/TUNE.md);
 *   tplan_data      the inputs read (examples.h), checked against the model
 *                   and the objective asked for; --reference-quirks'
 *                   vocabulary, length and padding applied to the settings;
 *   tplan_schedule  micro-batches and optimizer steps per epoch, the total;
 *   tplan_tuner     the trained weights (a fresh or loaded LoRA adapter, or
 *                   every base weight) and the tuner over them;
 *   tplan_settings  what a --resume compares: every setting that changes
 *                   the result, and the inputs' content hashes;
 *   tplan_fields    what data-parallel ranks must agree on before they
 *                   train together: those settings one field each, and
 *                   what a resume may change but the ranks may not mix
 *                   (the precision, the recompute switch, the gradient
 *                   sum's backend, the data shard rule).
 *
 * Each returns 0 or the LR_E* code with the message set (LR_EUSAGE for a
 * setting that does not fit the inputs, LR_EINPUT naming the example). */
#ifndef LR_TUNEPLAN_H
#define LR_TUNEPLAN_H

#include "method/examples.h"
#include "method/tune.h"
#include "model/lora.h"
#include "model/model.h"
#include "nn/allreduce.h"

#include <jansson.h>
#include <stdint.h>

typedef struct {
    const char *model_dir, *out, *objective_s, *targets_s, *init_adapter, *log_path;
    const char *device;       /* "cpu" or "cuda" (tools resolve "auto" before setup) */
    const char *precision;    /* "f32" or "bf16" (tools resolve the device's default before setup) */
    const char *recompute;    /* the device trainer's activation recomputation: "auto" (NULL), "always" or "never" */
    const char *dp_backend;   /* how ranks sum gradients: "auto" (NULL), "nccl" or "host" (tune.h TUNER_DP_*) */
    int full, group_len, stop_after, r, batch, accum, epochs, warmup, pack, shuffle, by_problem, vlim, max_len, max_rows,
        save_every, resume, force, quirks, max_len_set, reschedule, lm;
    long max_steps;           /* <= 0: from epochs */
    long device_mem;          /* --device-memory, MiB: the budget --recompute auto compares with (0: the free device memory) */
    double alpha, dropout, lr, wd, clip, beta1, beta2, eps;
    uint64_t seed;
    unsigned targets;         /* the LoRA modules (lora_parse_targets of targets_s) */
    int pad_id;               /* quirks: the tokenizer's pad token (set by tplan_data) */
    int world;                /* data-parallel ranks (1: one process) */
} tune_cfg;

typedef struct {
    long mb_per_epoch, steps_per_epoch;
    long total;               /* optimizer steps of the run */
    int maxlen;               /* the longest example, in tokens */
} tune_schedule;

void tplan_defaults(tune_cfg *c);
/* Reads inputs[0..nin) into ds (JSON lines of text when c->lm). */
int tplan_data(tune_cfg *c, const model *m, char *const *inputs, int nin, tune_data *ds);
void tplan_schedule(const tune_cfg *c, const tune_data *ds, tune_schedule *s);
/* lo is left empty for full-parameter training. tu is live only on 0. */
int tplan_tuner(const tune_cfg *c, model *m, lora *lo, const tune_data *ds, const tune_schedule *s, tuner *tu);
/* A new object, or NULL with *rc set (an input that cannot be read). */
json_t *tplan_settings(const tune_cfg *c, const model *m, long total, char *const *inputs, int nin, int *rc);
/* The fields (allreduce.h) of settings, key by key in sorted order, each
 * hashed as FNV-1a 64 of its compact JSON, then c's --precision,
 * --recompute, --dp-backend and the data shard rule; returns how many (at
 * most max). */
int tplan_fields(const json_t *settings, const tune_cfg *c, comm_field *f, int max);
/* c->dp_backend as TUNER_DP_*. */
int tplan_dp_backend(const tune_cfg *c);

#endif
