/* engine: one model on one backend, cpu or cuda, run like fwd_run (packed
 * rows, each for a KV-cache slot), returning for every wanted row what
 * lr-infer records instead of the logits themselves:
 *   - the compact distribution (compact.h cd_select: most probable tokens
 *     until `mass` is covered, at most kmax, their log-probs, the tail);
 *   - optionally this model's log-probs of given ids (cd_gather), per row;
 *   - the argmax (ties: lowest id), and a flag for NaN/inf logits;
 *   - optionally a token drawn from the row (sample.h) for a given uniform;
 *   - optionally the whole logits row (--full, checks).
 * On cpu this is fwd_run + compact.c row by row; on cuda every reduction
 * runs on the device, sampling included (cuda/sample.cu), and only these
 * small results cross the bus (the logits rows only when asked). compact.c is the CPU twin the device
 * kernels are tested against. */
#ifndef LR_ENGINE_H
#define LR_ENGINE_H

#include "infer/gpu.h"
#include "infer/rows.h"
#include "nn/forward.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { ENG_CPU = 0, ENG_CUDA = 1 } eng_device;


struct gpu_fwd;

typedef struct {
    eng_device dev;
    const model *m;
    fwd cpu;               /* ENG_CPU */
    struct gpu_fwd *gpu;   /* ENG_CUDA */
    float *logits;         /* ENG_CPU: scratch rows */
    size_t logit_rows;
    int32_t *heap;
    int heap_cap;
    smp_scratch smp;       /* ENG_CPU: sampling scratch, made on first use */
    int tmax;              /* positions per slot */
    float *pre_k, *pre_v;  /* ENG_CPU: the shared prefix's keys and values (fwd_save_prefix), or NULL */
    int npre;              /* ENG_CPU: its positions */
    int pending;           /* ENG_CPU: calls submitted (and run) but not yet collected */
    int32_t *pick;         /* ENG_CPU: the last call's picks (eng_submit's feed), npick of them (0: no call yet) */
    int *ftok;             /* ENG_CPU: a fed call's tokens */
    size_t npick, pick_cap, ftok_cap;
} engine;

/* "cpu", "cuda" or "auto" (cuda when a GPU is present, else cpu). */
int eng_parse_device(const char *name, eng_device *dev);
const char *eng_device_name(eng_device d);

/* As fwd_init (B slots of Tmax positions, chunks of max_tokens rows);
 * kmax bounds co.kmax of later calls (the list buffers are sized by it).
 * The KV cache takes the default pages (gpu.h gpu_kv). */
int eng_init(engine *e, const model *m, eng_device dev, int B, int Tmax, int max_tokens, int kmax, int nthreads);
/* The same with the device's KV pages set by kv (NULL: defaults; the cpu
 * backend ignores it and keeps one slot of Tmax positions per slot). */
int eng_init_kv(engine *e, const model *m, eng_device dev, int B, int Tmax, int max_tokens, int kmax, int nthreads,
                const gpu_kv *kv);
int eng_run(engine *e, int N, const int *tokens, const int *seq, const unsigned char *want, const eng_req *q,
            eng_res *r);
/* Decode one step ahead (docs/CUDA.md "Decode one step ahead"):
 * eng_submit queues the call eng_run would run and returns (cpu: once it
 * has run); its results reach r at the eng_collect that takes it, calls
 * being collected oldest first, at most two uncollected at once. r's
 * arrays must stay put until then; tokens, feed, seq, want and q's
 * uniforms and gathers are read at submit. feed: NULL, or per row -1 or a
 * wanted row g of the call submitted just before, whose pick (res.sampled[g]
 * when that call sampled, else its argmax; 0 for a NaN row) becomes this
 * row's token in place of tokens[i] (which must still be an id of the
 * vocabulary), on the device, before the host has seen it. eng_run:
 * eng_submit without feed, then eng_collect until none is left. A fed call
 * wants at most B rows (one a slot). eng_pending: calls not yet collected. */
int eng_submit(engine *e, int N, const int *tokens, const int *feed, const int *seq, const unsigned char *want,
               const eng_req *q, eng_res *r);
int eng_collect(engine *e);
int eng_pending(const engine *e);
void eng_reset(engine *e, int b);
void eng_free(engine *e);
/* Positions per slot (the cache length). */
int eng_tmax(const engine *e);
/* The KV cache in pages, the unit work is admitted by (generate.h
 * gen_sched): on cuda the device pool; on cpu each slot is one page of Tmax
 * positions, free while the slot is empty. A slot of length n holds
 * ceil(n / page) pages; a call needing more than are free fails. */
void eng_pages(const engine *e, gpu_kv_info *k);
/* The page rule, asked of the engine so that a scheduler never repeats it:
 * the pages slot b would take from the free list to grow to len positions
 * (0 when it holds them already), and those an empty slot would take to
 * hold len positions (shared: when it starts on the shared prefix, whose
 * pages it does not take). */
int eng_pages_more(const engine *e, int b, int len);
int eng_pages_join(const engine *e, int len, int shared);

/* The shared prompt prefix, computed once (docs/CUDA.md "The shared
 * prompt prefix"): eng_prefix_keep turns slot b's cache, just filled with
 * the prefix's tokens, into the prefix (slot b is emptied) and returns the
 * positions kept, 0 when none: one prefix at a time; on cuda its whole
 * pages, none under one page or when the pool could not hold a full
 * context beside them; on cpu all of it, copied out of the cache.
 * eng_prefix_attach starts empty slot b on it (length = the prefix's; cpu:
 * a copy of its keys and values); eng_prefix_drop gives it back (cuda: its
 * pages, once no slot holds them). eng_prefix_min: the shortest prefix
 * worth keeping, so that a scheduler runs none shorter (cuda: one page;
 * cpu: 1, see engine.c). */
int eng_prefix_min(const engine *e);
int eng_prefix_keep(engine *e, int b);
void eng_prefix_attach(engine *e, int b);
void eng_prefix_drop(engine *e);

#endif
