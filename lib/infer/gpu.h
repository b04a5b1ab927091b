/* gpu: the C interface of the CUDA backend (cuda/). Three builds provide it:
 *   the .cu files compiled by nvcc       the real backend (bin/ when nvcc exists)
 *   the same files by g++ + emu.h        the same source on an emulated GPU
 *                                       (cuda/emu.h): tests run the kernels on
 *                                       the CPU, under ASan too
 *   cuda/none.c                         no backend: gpu_device_count() is 0
 * Everything here returns LR_* codes with lr_err messages. */
#ifndef LR_GPU_H
#define LR_GPU_H

#include "infer/rows.h"
#include "model/model.h"

#include <stddef.h>
#include <stdio.h>

/* "cuda", "emulated" or "none". */
const char *gpu_backend(void);
/* Usable devices (0 without a backend, a driver or a GPU); the first one's
 * name into name[n] (or why there is none). */
int gpu_device_count(char *name, size_t n);

/* Makes device (local_rank mod the devices this process sees) the one
 * every later gpu_fwd_init / gpu_trn_init uses: data-parallel ranks of one
 * node each on their own card (LOCAL_RANK). *dev = its index. Returns 0, or
 * LR_EGPU when there is no device. */
int gpu_select_device(int local_rank, int *dev);

typedef struct gpu_fwd gpu_fwd;

/* The paged KV cache (docs/CUDA.md): a pool of pages of `page` positions
 * (all layers, keys and values), each slot's page table grown as its length
 * crosses a page boundary and emptied by gpu_fwd_reset. 0 picks the
 * default: GPU_KV_PAGE positions a page; a pool of KV_MEM_FRACTION of the
 * device memory free once weights and activations are allocated, at most B
 * full contexts. A page of at least Tmax positions is the contiguous layout
 * (one page a slot); otherwise page is a multiple of 64 (KV_PAGE_ALIGN),
 * the attention kernels' key tiles, so that a key tile never straddles two
 * pages. */
typedef struct {
    int page;    /* positions a page (0: GPU_KV_PAGE) */
    long pages;  /* pages in the pool (0: from free memory) */
} gpu_kv;
#define GPU_KV_PAGE 64
#define KV_MEM_FRACTION 0.9
typedef struct {
    int page, per_slot;  /* positions a page; pages of a full context (Tmax) */
    int pages, free;     /* pages in the pool; on the free list now */
    int shared;          /* pages the shared prompt prefix holds (gpu_fwd_prefix_keep) */
    size_t page_bytes;   /* device bytes of one page */
} gpu_kv_info;

/* Uploads the model as bf16 (from m's float32 weights when loaded, else
 * straight from its safetensors mmap, see model_open), sizes activations
 * for max_tokens rows and a paged bf16 KV cache (kv NULL: defaults) for B
 * slots of at most Tmax positions. A call whose rows need more pages than
 * are free fails (LR_EUSAGE) before running anything: callers admit work
 * by free pages (gpu_fwd_pages). */
int gpu_fwd_init(gpu_fwd **g, const model *m, int B, int Tmax, int max_tokens, int kmax, const gpu_kv *kv);
void gpu_fwd_pages(const gpu_fwd *g, gpu_kv_info *k);
/* Pages slot b (b < 0: an empty slot, shared: one joined to the shared
 * prefix) would take from the free list to hold len positions: the rule
 * pages_take applies. */
int gpu_fwd_pages_more(const gpu_fwd *g, int b, int len, int shared);
/* The shared prompt prefix (docs/CUDA.md): slot b's whole pages (its
 * length rounded down to a page) become the prefix, held with a reference
 * count per page, and slot b is emptied. Nothing is kept (0 returned) when
 * that is under one page, a prefix is already kept, or the pages beside it
 * could not hold one full context. Returns the positions kept. */
int gpu_fwd_prefix_keep(gpu_fwd *g, int b);
/* Empty slot b starts on the prefix: its table begins with the prefix's
 * pages (one more hold each) and its length is the prefix's; a reset drops
 * the holds, and only pages no one holds go back to the free list. */
void gpu_fwd_prefix_attach(gpu_fwd *g, int b);
/* Drops the prefix's own hold: its pages are freed once no slot holds them. */
void gpu_fwd_prefix_drop(gpu_fwd *g);
/* eng_submit's and eng_collect's contract (engine.h): a call queued (at
 * most two uncollected), collected oldest first; gpu_fwd_pending: those
 * not yet collected. */
int gpu_fwd_submit(gpu_fwd *g, int N, const int *tokens, const int *feed, const int *seq, const unsigned char *want,
                   const eng_req *q, eng_res *r);
int gpu_fwd_collect(gpu_fwd *g);
int gpu_fwd_pending(const gpu_fwd *g);
void gpu_fwd_reset(gpu_fwd *g, int b);
void gpu_fwd_free(gpu_fwd *g);

/* Kernel time by kind (opt-in: LR_GPU_PROFILE=1 in the environment at
 * gpu_fwd_init, or gpu_fwd_set_profile). When on, every call brackets each
 * group of launches of one kind with CUDA events on the forward's stream and,
 * after its final synchronisation, adds the device time between consecutive
 * events to that kind; total_ms is the time from a call's first event to its
 * last, which the kinds add up to. "host" is device time spent waiting for
 * the host (idle between the groups the host prepares: a call's row setup);
 * "h2d"/"d2h" are the per-call copies. With the profile on, calls run their
 * launches plainly (no CUDA graph), so that each group can be timed. When
 * off, no event is recorded. gpu_fwd_free prints the totals as a table on
 * stderr when the profile was on and saw calls. */
enum {
    GPU_PROF_GEMM,        /* cuBLAS GEMMs (projections, lm_head) */
    GPU_PROF_ATTENTION,   /* attention (split-KV partials and their combine) */
    GPU_PROF_COMPACT,     /* per-row top list, gather, argmax (k_compact) */
    GPU_PROF_SAMPLE,      /* sampling (k_sample) */
    GPU_PROF_ELEMENTWISE, /* embedding, RMSNorm, bias + RoPE, SwiGLU, bias adds */
    GPU_PROF_H2D,         /* copies host -> device */
    GPU_PROF_D2H,         /* copies device -> host */
    GPU_PROF_HOST,        /* the device waiting for the host between groups */
    GPU_PROF_KINDS
};
typedef struct {
    double ms[GPU_PROF_KINDS];
    double total_ms;      /* first to last event of each call, summed */
    long calls, events;   /* profiled calls; events recorded */
} gpu_prof;
/* "gemm", "attention", ... (the names of the table and of bench_gpu's lines). */
const char *gpu_prof_kind(int kind);
/* The totals as a table: milliseconds and share of total_ms per kind. */
void gpu_prof_print(FILE *f, const gpu_prof *p);
/* Turns the profile on (zeroing its totals) or off. */
int gpu_fwd_set_profile(gpu_fwd *g, int on);
/* The totals so far; 0 when the profile is on, 1 when off (then *p zeroed). */
int gpu_fwd_profile(const gpu_fwd *g, gpu_prof *p);

/* CUDA graphs for decode-shaped calls (one chunk of at most B rows, no
 * logits rows asked): the launches of such a call are captured once per
 * shape and replayed while the shape stays (see docs/CUDA.md); calls run
 * plainly while the profile is on. LR_GPU_GRAPHS=0 at gpu_fwd_init turns
 * them off. */
typedef struct {
    long replays;  /* calls run from a graph, the capturing ones included */
    long captures; /* graphs captured */
    long failures; /* captures that failed (the call ran plainly, graphs went off) */
    int enabled;   /* graphs still in use */
} gpu_graph_stats;
void gpu_fwd_graph_stats(const gpu_fwd *g, gpu_graph_stats *s);

/* Largest kmax the device selection supports (larger lists: use cpu). */
#define GPU_KMAX_LIMIT 1024

#endif
