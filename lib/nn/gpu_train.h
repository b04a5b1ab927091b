/* gpu_train: the device trainer, trainer.h's LoRA forward and backward on
 * the CUDA backend plus the loss and the optimizer step, behind a C
 * interface. The same three builds as infer/gpu.h provide it: the real
 * backend (cuda/train.cu by nvcc), the emulated device (the same source by
 * g++, which is what the tests run) and cuda/none.c, where every entry
 * point refuses.
 *
 * What lives on the device: the base model's weights (frozen), the LoRA
 * parameters as float32 master weights with their gradients and AdamW
 * moments (full-parameter training, lo NULL: the weights themselves are the
 * parameters, with a gradient and moments of m->mem's layout), every
 * activation the backward reads (forward.h's fwd_layer_acts; or,
 * recomputing, each layer's input and one layer's activations), a
 * float32 KV cache, the loss rows' logits (chunked), the loss and its
 * logit gradient (k_softkl, k_ce), the backward (backward.h,
 * gemm_backward.h), the global gradient norm, clipping and AdamW
 * (k_grad_norm, k_adamw). The host sees per-call losses, the step's norm,
 * and copies of the parameters, gradients and moments on request.
 *
 * Precision, chosen at init:
 *   GTRN_F32   float32 base weights, float32 GEMMs and activations, the CPU
 *              trainer's arithmetic up to summation order.
 *   GTRN_BF16  the base weights as bf16 (m->mem rounded to nearest, or
 *              for a model_open'ed m the checkpoint's tensors: bf16 as
 *              they are, others rounded the same way; half the memory;
 *              norm weights and biases stay float32); every
 *              product with a base weight (q/k/v/o, gate/up/down, lm_head,
 *              and the input gradients through them) has bf16 operands and
 *              float32 accumulation and output; the activations those
 *              products read (the two norms' outputs, attention's output,
 *              SwiGLU's) are kept in bf16 only, and the LoRA products read
 *              them widened back to float32, as PEFT casts a bf16 input to
 *              its float32 adapter. Embedding rows come from the bf16
 *              table. Attention, forward and backward, runs on tensor
 *              cores (bf16 operands, float32 accumulation, in and out;
 *              LR_GPU_TCATT=0 keeps it float32). Norms, RoPE, the KV
 *              cache, softmax, the losses, the residual stream, the LoRA
 *              terms, their gradients and AdamW stay float32.
 *
 * Rows as trainer.h: each call starts every slot fresh, row n joins slot
 * seq[n] at the next position; qpos (NULL, or -1 but for query-only rows)
 * is forward.h's query_pos. LoRA dropout is forward.h's counter-based mask
 * from drop_seed, bit for bit the CPU's.
 *
 * Full-parameter training (lo NULL, GTRN_F32 only: refused otherwise):
 * every tensor trn_backward gives a gradient (embedding, norms, q/k/v/o
 * weights and biases, gate/up/down, final norm, an untied lm_head; a tied
 * lm_head adds into the embedding's), the flat vectors of put/get/grads
 * are m->nparams floats in m->mem's layout, as the CPU tuner's.
 *
 * Every function returns LR_OK or an LR_* code after lr_err. */
#ifndef LR_GPU_TRAIN_H
#define LR_GPU_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/lora.h"
#include "model/model.h"

typedef struct gpu_trn gpu_trn;

enum { GTRN_SOFTKL, GTRN_CE };

/* The loss entries of one call: entry e sits on trainer row row[e] (rows
 * nondecreasing; entries sharing a row add their logit gradients, as
 * identical contexts do on the CPU). Soft-KL: the (id, weight) pairs
 * ids/w [off[e], off[e+1]); cross-entropy: target[e]. vlim as objective.h
 * (<= 0: V). Each entry's gradient is scaled by `scale`. */
typedef struct {
    int objective, n, vlim;
    float scale;
    const int *row;
    const int64_t *off;
    const int32_t *ids;
    const float *w;
    const int32_t *target;
} gtrn_loss;

enum { GTRN_F32, GTRN_BF16 };

/* Activation recomputation: keep every layer's activations for the
 * backward (NEVER), or keep only each layer's input, the residual stream,
 * and re-run that layer's forward just before its backward (ALWAYS: one
 * layer's activations and one layer's KV cache on the device instead of
 * every layer's; the same kernels on the same inputs, so the same bits,
 * dropout masks included, for one more forward per layer but the last).
 * AUTO recomputes when keeping would not fit: when the kept activations,
 * the KV cache and the other buffers init makes would take more than 7/8
 * of the budget, the free device memory after the weights and the LoRA
 * state (mem_budget when nonzero). docs/CUDA.md has the rule. */
enum { GTRN_RECOMPUTE_AUTO, GTRN_RECOMPUTE_ALWAYS, GTRN_RECOMPUTE_NEVER };

/* The trainer's shape and precision: B slots of Tmax positions, at most
 * maxN rows a call; logits made at most chunk_floats floats at a time;
 * precision GTRN_F32 or GTRN_BF16; recompute GTRN_RECOMPUTE_* (0: AUTO);
 * mem_budget: bytes AUTO compares with (0: the free device memory). */
typedef struct {
    int B, Tmax, maxN, precision;
    size_t chunk_floats;
    int recompute;
    size_t mem_budget;
} gtrn_opts;

/* Uploads m's weights (m->mem, converted to bf16 on the device under
 * GTRN_BF16; with LoRA under GTRN_BF16 m may be model_open'ed instead,
 * the tensors then read from its mmap'd checkpoint, the same device bits)
 * and lo's parameters; moments and gradients start at zero. */
int gpu_trn_init(gpu_trn **g, const model *m, const lora *lo, const gtrn_opts *o);
void gpu_trn_free(gpu_trn *g);
/* Bytes of device memory the trainer allocated for the base weights and
 * for the kept activations (the sizes passed to cudaMalloc). */
void gpu_trn_mem(const gpu_trn *g, size_t *weight_bytes, size_t *act_bytes);
/* Whether the trainer recomputes activations (the AUTO rule resolved at
 * init); *kept_bytes (NULL: skipped) = what keeping every layer's
 * activations and KV cache would take, *budget_bytes = the budget AUTO
 * compared it with. */
int gpu_trn_recomputes(const gpu_trn *g, size_t *kept_bytes, size_t *budget_bytes);

/* Host <-> device copies of the flat parameter vectors (lo->n floats,
 * lo->mem's layout; full: m->nparams, m->mem's): parameters and the AdamW moments; NULL skips one. */
int gpu_trn_put(gpu_trn *g, const float *params, const float *exp_avg, const float *exp_avg_sq);
int gpu_trn_get(gpu_trn *g, float *params, float *exp_avg, float *exp_avg_sq, float *grads);
/* Host -> device gradients (a sum over data-parallel ranks made on the host). */
int gpu_trn_put_grads(gpu_trn *g, const float *grads);

int gpu_trn_zero_grad(gpu_trn *g);
/* Forward of N rows, the loss entries' logits and loss, the backward, the
 * gradients accumulated (+=). loss[e] = entry e's unscaled loss (NaN:
 * a bad target, the objective's LR_EINPUT cases; the caller reports it). */
int gpu_trn_call(gpu_trn *g, int N, const int *tokens, const int *seq, const int *qpos, int training, uint64_t drop_seed,
                 const gtrn_loss *L, double *loss);
/* grad_clip(clip) then adamw_step as adamw.h, t the 1-based update number.
 * *norm = the norm before clipping; a non-finite norm leaves the
 * parameters unchanged. *finite = whether every parameter is finite after
 * the update. */
int gpu_trn_update(gpu_trn *g, float lr, float beta1, float beta2, float eps, float wd, long t, double clip, double *norm,
                   int *finite);

/* Kernel time by kind (opt-in: LR_GPU_PROFILE=1 in the environment at
 * gpu_trn_init), as the forward's (infer/gpu.h gpu_prof): every
 * gpu_trn_call and gpu_trn_update brackets each group of launches of one
 * kind with CUDA events and, after its final synchronisation, adds the
 * device time between consecutive events to that kind; total_ms, the
 * first-to-last-event spans summed, is what the kinds add up to. Layers
 * remade by recomputation count in the forward's kinds. When off, no
 * event is recorded. gpu_trn_free prints the totals on stderr (a table and
 * one "gpu_profile train:" key=value line, gtrn_prof_print) when the
 * profile saw calls. */
enum {
    GTRN_PROF_GEMM,          /* base projections' forward GEMMs, the loss rows' lm_head */
    GTRN_PROF_GEMM_BWD,      /* base projections' input-gradient GEMMs (weight gradients with --full), lm_head's */
    GTRN_PROF_LORA,          /* LoRA's products forward and backward, their inputs widened and dropped out */
    GTRN_PROF_ATTENTION,     /* attention forward */
    GTRN_PROF_ATTENTION_BWD, /* attention backward (dq, dk, dv) */
    GTRN_PROF_LOSS,          /* loss rows gathered, soft-KL / cross-entropy and their logit gradients, row sums */
    GTRN_PROF_ELEMENTWISE,   /* embedding, RMSNorm, RoPE, KV store, SwiGLU, residuals, biases, casts, memsets; their backwards */
    GTRN_PROF_OPTIMIZER,     /* gradient norm and clip, AdamW, the finiteness check */
    GTRN_PROF_H2D,           /* copies host -> device (rows, loss targets) */
    GTRN_PROF_D2H,           /* copies device -> host (losses, norms) */
    GTRN_PROF_HOST,          /* the device waiting for the host between groups */
    GTRN_PROF_KINDS
};
typedef struct {
    double ms[GTRN_PROF_KINDS];
    double total_ms;
    long calls, events; /* profiled gpu_trn_call and gpu_trn_update calls; events recorded */
} gtrn_prof;
/* "gemm", "gemm_bwd", "lora", ... (the table's names and the line's keys). */
const char *gtrn_prof_kind(int kind);
/* The totals as a table, then one line "gpu_profile train: calls=N
 * events=N total_ms=X sum_ms=X KIND_ms=X KIND_pct=X ...". */
void gtrn_prof_print(FILE *f, const gtrn_prof *p);
/* The totals so far; 0 when the profile is on, 1 when off (then *p zeroed). */
int gpu_trn_profile(const gpu_trn *g, gtrn_prof *p);

/* Data parallelism over NCCL, in the real CUDA build only, NCCL loaded at
 * run time (libnccl.so.2, so the build does not need it): gpu_nccl_load
 * says whether it is there (LR_OK; else LR_EUSAGE saying why: the emulated
 * device and cuda/none.c never have it); rank 0 makes the unique id, every
 * rank joins with it (all ranks of the world, as ncclCommInitRank), and
 * gpu_trn_allreduce sums the gradients (LoRA, or full) over the ranks in place, then
 * multiplies them by scale. */
enum { GPU_NCCL_ID_BYTES = 128 };
int gpu_nccl_load(void);
int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES]);
int gpu_trn_nccl_join(gpu_trn *g, const unsigned char id[GPU_NCCL_ID_BYTES], int rank, int world);
int gpu_trn_allreduce(gpu_trn *g, float scale);
/* The 16-byte UUID of the trainer's device (cudaDeviceProp.uuid): the same
 * card seen from two processes, whatever its index in each (NCCL wants one
 * card a rank); every process on the emulated device gets one UUID. */
int gpu_trn_device_uuid(const gpu_trn *g, unsigned char uuid[16]);

#endif
