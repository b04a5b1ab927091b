/* tune: one optimizer step of LoRA (or full-parameter) training on top of
 * trainer.h: examples -> packed trainer calls -> objective -> gradients ->
 * clipping -> AdamW. lr-tune and the golden test both go through here.
 *
 * Objectives (METHOD.md stage 2 and the SFT baseline):
 *   TUNE_SOFTKL  KL(v || softmax(z)) at the example's last context
 *                position; each example weighted by `scale` (lr-tune passes
 *                1 / (micro-batch size * accumulation), the Trainer's
 *                batchmean divided by the accumulation steps).
 *   TUNE_SFT     cross-entropy of every response token (tokens[nprompt..]
 *                predicted from the rows before them); each token weighted
 *                by `scale` (1 / response tokens in the optimizer step, as
 *                transformers' num_items_in_batch).
 *
 * Packing (pack = 1, soft-KL): examples whose contexts are prefixes of one
 * another (the method's steps of one problem) run as ONE sequence, the
 * longest, with the loss at each example's last position. Causal attention
 * makes every loss row's logits exactly those of the separate forward, so
 * the gradient is the same sum. Identical contexts share a row (their
 * logit gradients add).
 *
 * Backends: the CPU (trainer.h), or with tuner_use_gpu the device trainer
 * (nn/gpu_train.h, LoRA, or full in float32): the same calls, rows, dropout masks, losses
 * and optimizer arithmetic, with the parameters, gradients and AdamW
 * moments living on the device. tuner_download brings them back into
 * params / opt.m / opt.v (the checkpoint code and lr-tune's adapter save
 * call it); tuner_upload sends host values (a loaded checkpoint) over.
 *
 * Data parallelism (tuner_use_comm): each rank accumulates the gradients
 * of its share of the step's examples, with the loss scale of the whole
 * step, and tuner_sum_grads sums them over the ranks (allreduce.h: the
 * same bits on every rank) before tuner_update clips and steps, so every
 * replica applies the same update and the weights stay identical. */
#ifndef LR_TUNE_H
#define LR_TUNE_H

#include <stdint.h>

#include "method/adamw.h"
#include "nn/allreduce.h"
#include "model/lora.h"
#include "model/model.h"
#include "nn/gpu_train.h"
#include "nn/trainer.h"

enum { TUNE_SOFTKL, TUNE_SFT };

typedef struct {
    int64_t problem;
    int step;
    int *tokens;   // (ntok) soft-KL: the context; SFT: prompt + response
    int ntok;
    int nprompt;   /* SFT: the response starts at tokens[nprompt] (>= 1) */
    int *ids;      // (nt) soft-KL target ids
    float *w;      // (nt) and their weights
    int nt;
    int query_pos; /* > 0: tokens[ntok-1] is a query-only row at RoPE position query_pos
                    * (trainer.h): the reference's trailing pad, see tdata_pad_batch */
} tune_example;

typedef struct {
    model *m;
    lora *lo;          /* trained adapters, or NULL for full-parameter training */
    int objective, vlim, pack;
    int max_rows;      /* rows per trainer call */
    float clip;        /* max gradient norm (<= 0: none) */
    trn t;
    lora glo;          /* LoRA gradients */
    model_weights gw;  /* full-parameter gradients (into gmem) */
    float *gmem;
    float *params, *grads; /* the flat vectors the optimizer sees */
    size_t n;
    adamw opt;
    float *logits, *dlogits, *dz; // (logits_rows, V) twice, (V)
    int logits_rows;   /* loss rows the logit buffers hold (grown on demand) */
    size_t chunk_floats; /* logits computed at most this many floats at a time (32M) */
    int dropout_on;    /* LoRA dropout in the forward (0: eval-mode, for goldens) */
    uint64_t seed;     /* dropout masks derive from (seed, call number) */
    long calls;        /* trainer calls so far */
    long rows_fwd;     /* rows run through the forward so far */
    long examples;     /* examples accumulated so far */
    int B, Tmax;       /* sequences per call, rows per sequence */
    gpu_trn *gpu;      /* the device trainer (tuner_use_gpu), or NULL: the cpu */
    int precision;     /* the device trainer's, GTRN_F32 (tuner_init's) or GTRN_BF16; set before tuner_use_gpu */
    int recompute;     /* the device trainer's GTRN_RECOMPUTE_* (tuner_init's: AUTO); set before tuner_use_gpu */
    size_t mem_budget; /* the device trainer's gtrn_opts.mem_budget (0: its free memory) */
    comm *dp;          /* the data-parallel ranks (tuner_use_comm), or NULL: one process */
    int nccl;          /* a device run's gradients are summed by NCCL (else through the host) */
    char dp_how[256];  /* tuner_use_comm's *how, when it names ranks */
} tuner;

/* max_len: longest sequence (context) in rows; max_rows >= max_len. */
int tuner_init(tuner *tu, model *m, lora *lo, int objective, int vlim, int pack, int max_rows, int max_len, int max_seqs,
               float lr, float beta1, float beta2, float eps, float wd, float clip);
void tuner_free(tuner *tu);
/* Moves training to the device (LoRA in tu->precision; full: GTRN_F32
 * only); the CPU trainer's buffers are released. Returns 0 or the backend's error (none: LR_EUSAGE). */
int tuner_use_gpu(tuner *tu);
/* Device -> host (params, opt.m, opt.v) and host -> device; no-ops on the
 * cpu. */
int tuner_download(const tuner *tu);
/* "bf16" for a device run in GTRN_BF16, else "f32" (the cpu's). */
const char *tuner_precision(const tuner *tu);
/* "on" for a device run that recomputes activations, else "off" (the cpu
 * keeps them all). */
const char *tuner_recompute(const tuner *tu);
int tuner_upload(tuner *tu);
/* How the ranks sum their gradients (lr-tune's --dp-backend): AUTO is
 * NCCL when every rank trains on the device, can load NCCL and has a card
 * of its own (NCCL refuses two ranks on one card), else through the
 * hosts; NCCL insists (refused, naming the rank, when one of those does
 * not hold); HOST always through the hosts over TCP. */
enum { TUNER_DP_AUTO, TUNER_DP_NCCL, TUNER_DP_HOST };
/* Joins the ranks of c (NULL: one process, nothing changes), after
 * tuner_use_gpu, summing as backend (TUNER_DP_*, the same on every rank:
 * lr-tune's rendezvous compares it); *how says how and, under AUTO, why
 * not NCCL, for the log. A refused NCCL is LR_EUSAGE on every rank alike.
 * c stays the caller's. */
int tuner_use_comm(tuner *tu, comm *c, int backend, const char **how);
/* Rank 0's state (parameters, moments, the counters and *step: a
 * resumed checkpoint's) on every rank; no-op in one process. */
int tuner_bcast_state(tuner *tu, long *step);
/* The dropout masks of a data-parallel step: the trainer call counter
 * restarts from (step, rank), so each rank's masks are its own and a
 * resumed run draws the same ones; no-op in one process (the counter runs
 * on, as it always did). */
void tuner_begin_step(tuner *tu, long step);
/* The accumulated gradients summed over the ranks; no-op in one process. */
int tuner_sum_grads(tuner *tu);
/* Returns 0, or the device's error. */
int tuner_zero_grad(tuner *tu);
/* Forward + backward of ex[0..n), gradients accumulated (+=); *loss +=
 * scale * (each example's KL, or each token's CE). */
int tuner_accumulate(tuner *tu, const tune_example *ex, int n, double scale, double *loss);
/* Clips the accumulated gradient, applies AdamW at lr; *norm = the norm
 * before clipping. A non-finite gradient norm skips the update; either it
 * or parameters that the update left non-finite return LR_EINPUT (the
 * run cannot go on: its last checkpoint is the last good state). */
int tuner_update(tuner *tu, float lr, double *norm);

#endif
