/* forward: the CUDA forward engine (gpu.h), the device twin of forward.c.
 *
 * Weights live on the device as bf16 (norm weights and biases as float32),
 * with q/k/v stacked into one (QD + 2 KD, C) matrix and gate/up into one
 * (2I, C) matrix, so a layer is four GEMMs. GEMMs are cuBLAS bf16 x bf16
 * with float32 accumulation; the residual stream stays float32, and the
 * o_proj and down_proj GEMMs add into it directly (beta = 1).
 *
 * The KV cache is bf16 and paged (kernels.h kv_pages): per layer a pool of
 * pages of `page` positions x NKV heads x HD, and per slot a page table at
 * a fixed device address. A call takes the pages its rows need from the
 * free list before its first launch (pages_take; the table's changed rows
 * are uploaded before the launches), gpu_fwd_reset gives a slot's pages
 * back. One page per slot of Tmax positions is the old contiguous layout.
 *
 * A call runs its N packed rows in chunks of max_tokens rows (rows of one
 * slot may span chunks: the cache carries them over). Per chunk, the final
 * norm runs only on the wanted rows, whose logits are produced LM rows at a
 * time and reduced on the device by k_compact (and, when sampling, drawn
 * from by k_sample with the host's uniforms); only the compact results, the
 * sampled ids (and the logits rows, when asked) are copied back.
 *
 * Decode-shaped calls (one chunk of at most B rows) run from a CUDA graph:
 * the launches of a call, everything from the embedding to the sampler,
 * are captured once per shape (graph_key: every host value they bake in)
 * and replayed while the shape stays; the per-call copies stay outside
 * the graph, around its launch, and the values that change every step
 * (tokens, slots, positions, attention tiles, uniforms) reach the kernels
 * through device memory at fixed addresses.
 *
 * Decode runs one step ahead (gpu_fwd_submit / gpu_fwd_collect): a call
 * is queued with rows that take the previous call's picks on the device
 * (k_feed), before the host has seen them, so the host's work on one step
 * overlaps the device's on the next. Each of the two calls in flight has
 * its own half of the pinned arena, page table rows included. */
#include "check.cuh"
#include "common.cuh"
#include "kernels.h"
#include "profile.cuh"

extern "C" {
#include "infer/gpu.h"
#include "nn/forward.h"
#include "nn/ops_cpu.h"
#include "io/safetensors.h"
#include "base/util.h"
}

#include <stdlib.h>
#include <string.h>

/* Every host-side value the launches of a one-chunk call depend on besides
 * the engine's fixed buffers: a call with the same key runs the same
 * launches with the same arguments, so it may replay their graph. gen
 * counts reallocations of the per-call buffers the launches point into. */
typedef struct {
    double mass, temperature, top_p;
    int n, nw, ntc, nt, splits, kmax, kmin, top_k, flags; /* flags: 1 gather, 2 sample, 4 fed, 8 fed by samples */
    unsigned gen;
} graph_key; /* no padding: compared and copied with memcmp/memcpy */
static_assert(sizeof(graph_key) == 3 * sizeof(double) + 10 * sizeof(int), "graph_key has padding");

typedef struct {
    bf16 *wqkv, *wo, *wgu, *wdown;  // (QD+2KD, C) (C, QD) (2I, C) (C, I)
    float *bqkv, *bo, *ln1, *ln2;   // (QD+2KD) or NULL, (C) or NULL, (C), (C)
} gpu_layer;

/* One call's host side of the bus, in pinned memory so that copies are
 * asynchronous DMA: uploads (every row's token, feed, slot, position and
 * tile, in place per chunk, since a chunk's copy may still be pending
 * while the next chunk is being filled; the page table rows that changed;
 * the gather offsets and ids; the uniforms) and the downloads of the
 * per-row results, copied to the caller's arrays when the call is
 * collected. The logits rows of --full go straight to the caller's
 * (pageable) array. */
typedef struct {
    int *tok, *feed, *seq, *pos, *rows, *ptab;
    att_tile *tiles;
    int64_t *goff;
    int32_t *gids;
    double *uni;
    unsigned char *bad;
    int32_t *argmax, *k, *ids, *sampled;
    float *lps, *tail, *glps, *gtail;
} pin_layout;

/* A call queued and not yet collected: where its results wait (its pinned
 * half) and go (the caller's arrays). */
typedef struct {
    pin_layout h;
    eng_res r;               /* the caller's arrays (a copy: the struct itself may change meanwhile) */
    size_t G, K, ng;
    int gather, sample, half;
    int marked;              /* its half's event was recorded (a later call was queued behind it) */
    int done;                /* delivered already (a profiled call is collected at submit) */
} gpu_call;

struct gpu_fwd {
    const model *m;
    mcfg c;
    int B, Tmax, M, LM, kmax;
    cudaStream_t st;
    cublasHandle_t cb;
    bf16 *embed, *lm_head;   // (V, C); lm_head == embed when tied
    float *norm, *inv_freq;  // (C), (HD/2)
    gpu_layer *layer;        /* host array of device pointers */
    bf16 *kc, *vc;           // (L, pages, NKV, page, HD)
    int *len;                /* host: tokens held per slot */
    /* the paged cache: page positions a page, mp table entries per slot */
    int page, mp, pages;
    int *ptab;               /* host page tables (B, mp): their changed rows reach d_ptab through a call's
                                pinned half (a table may change while an earlier call's copy is pending), -1 unused */
    int *d_ptab;             /* device page tables at a fixed address (graphs read it) */
    int *held;               /* host: pages in slot b's table */
    int *freel, nfree;       /* free pages, a stack */
    int *refs;               /* (pages) holders of each page: slots whose table has it, + 1 for the shared prefix;
                                a page is on the free list exactly when it has none */
    int *pre, npre, plen;    /* the shared prompt prefix: its npre whole pages, plen = npre * page positions */
    int dirty_lo, dirty_hi;  /* slots whose table rows changed since the last upload */
    int *want_len;           /* scratch (B): a slot's length after this call */
    /* activations, M rows */
    float *x, *qkv, *q, *gu; // (M, C) (M, QD+2KD) (M, QD) (M, 2I)
    bf16 *ln, *att, *h;      // (M, C) (M, QD) (M, I)
    bf16 *lnf;               // (LM, C)
    float *logits;           // (LM, V)
    char *cws;               /* k_compact's scratch, sized for any call of <= LM rows */
    int *d_tok, *d_seq, *d_pos, *d_rows, *d_feed; // (M)
    att_tile *d_tiles;       // (M)
    /* pinned host memory for a call's uploads and downloads (pin_layout): one half for each of the two calls
       that may be in flight, taken in turn */
    char *pin[2];
    size_t pin_n[2];
    int half;                /* the half the next call takes */
    gpu_call fl[2];          /* the calls in flight, oldest at fl[flh] */
    int nfl, flh;
    cudaEvent_t ev[2];       /* per half: recorded after that call's downloads once a later call is queued */
    const int *pick;         /* the last call's picks on the device (d_sampled or d_argmax), for the next call's
                                fed rows */
    size_t pick_n;           /* its wanted rows (0: no call yet) */
    int *d_pick2;            /* a copy of them for a fed call of several chunks, whose first chunk's picks
                                overwrite them before a later chunk's rows are fed; pick2_n entries */
    size_t pick2_n;
    int nsm;                 /* multiprocessors, for att_splits and k_compact_slices */
    int tcatt;               /* tensor-core attention for prefill-shaped calls: 0 off (LR_GPU_TCATT=0, or the
                                shape or the device's shared memory does not allow it) */
    int gu16;                /* LR_GPU_GU16=1: the gate/up GEMM writes bf16 (k_swiglu_bf16 reads it), as
                                transformers' bf16 Linear does; off by default (docs/CUDA.md "Accuracy") */
    int gemv;                /* calls of at most GEMV_MAX_ROWS rows run each layer as five fused launches
                                (cuda/gemv.cu): 0 off (LR_GPU_GEMV=0, or widths k_gemv_fits refuses) */
    float *d_part;           /* split-KV attention partials, grown as needed */
    size_t part_n;
    /* results of one call, grown as needed */
    size_t rcap, gcap;
    int32_t *d_k, *d_ids, *d_argmax, *d_gids, *d_sampled;
    float *d_lps, *d_tail, *d_glps, *d_gtail;
    double *d_uni;
    unsigned char *d_bad;
    int64_t *d_goff;
    struct prof *prof;       /* kernel time by kind; NULL: the profile is off */
    /* CUDA graphs of decode-shaped calls (graph_run) */
    int graphs;              /* 0: off (LR_GPU_GRAPHS=0, or after a failed capture) */
    unsigned gen;            /* bumped by every reallocation of a per-call device buffer */
    cudaGraphExec_t gexec;   /* the captured graph (NULL: none) and its key */
    graph_key gkey, gseen;   /* gseen: the last decode-shaped call that ran plainly */
    int gseen_ok;
    gpu_graph_stats gst;
    void *ws;                /* cuBLAS workspace: nothing allocated inside a capture */
    /* host staging for weight conversion */
    uint16_t *stage16;
    float *stage32;
    size_t stage16_n, stage32_n;
};

/* Marks the start of a group of launches of one kind (profile.cuh);
 * nothing at all when the profile is off. */
#define PROF(kind)                                                                                            \
    do {                                                                                                      \
        if (g->prof) CK(prof_mark(g->prof, (kind), g->st));                                                   \
    } while (0)

#define CB(call)                                                                                              \
    do {                                                                                                      \
        cublasStatus_t s_ = (call);                                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS) return lr_err(LR_EGPU, "cublas: %s: status %d", #call, (int)s_);     \
    } while (0)

extern "C" const char *gpu_backend(void) {
#ifdef LR_CUDA_EMU
    return "emulated";
#else
    return "cuda";
#endif
}

int lr_cuda_dev = 0;

extern "C" int gpu_select_device(int local_rank, int *dev) {
    int count = gpu_device_count(NULL, 0);
    if (count < 1) return lr_err(LR_EGPU, "cuda: no usable device");
    lr_cuda_dev = local_rank % count;
    if (dev) *dev = lr_cuda_dev;
    CK(cudaSetDevice(lr_cuda_dev));
    return LR_OK;
}

extern "C" int gpu_device_count(char *name, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count < 1) {
        if (name && n) snprintf(name, n, "%s", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
        (void)cudaGetLastError(); /* clear the sticky error */
        return 0;
    }
    cudaDeviceProp p;
    if (name && n) {
        if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) snprintf(name, n, "%s", p.name);
        else snprintf(name, n, "CUDA device 0");
    }
    return count;
}

/* ---------------------------------------------------------------- */
/* weights                                                           */

/* Host staging, each kind grown only when used: a bf16 checkpoint needs
 * float32 staging for norms and biases alone, a float32-loaded model bf16
 * staging alone. */
static uint16_t *stage16(gpu_fwd *g, size_t n) {
    if (n > g->stage16_n) {
        free(g->stage16);
        g->stage16 = (uint16_t *)xmalloc(n * sizeof(uint16_t));
        g->stage16_n = n;
    }
    return g->stage16;
}
static float *stage32(gpu_fwd *g, size_t n) {
    if (n > g->stage32_n) {
        free(g->stage32);
        g->stage32 = (float *)xmalloc(n * sizeof(float));
        g->stage32_n = n;
    }
    return g->stage32;
}

/* The n values of one weight as float32 on the host: the loaded float32
 * copy when the model was model_load'ed (an adapter may have been merged
 * into it), else converted from the checkpoint tensor. */
static const float *host_f32(gpu_fwd *g, const float *loaded, const char *suffix, int layer, size_t n) {
    if (loaded) return loaded;
    const st_tensor *t = model_tensor(g->m, suffix, layer);
    float *s32 = stage32(g, n);
    st_to_f32(s32, t->data, t->dtype, n);
    return s32;
}

static int up_bf16(gpu_fwd *g, bf16 *dst, const float *loaded, const char *suffix, int layer, size_t n) {
    if (!loaded) {
        const st_tensor *t = model_tensor(g->m, suffix, layer);
        if (t->dtype == ST_BF16) { /* straight from the mmap */
            CK(cudaMemcpy(dst, t->data, n * sizeof(bf16), cudaMemcpyHostToDevice));
            return LR_OK;
        }
    }
    const float *src = host_f32(g, loaded, suffix, layer, n);
    uint16_t *s16 = stage16(g, n);
    for (size_t i = 0; i < n; i++) s16[i] = st_f32_to_bf16(src[i]);
    CK(cudaMemcpy(dst, s16, n * sizeof(uint16_t), cudaMemcpyHostToDevice));
    return LR_OK;
}

static int up_f32(gpu_fwd *g, float *dst, const float *loaded, const char *suffix, int layer, size_t n) {
    const float *src = host_f32(g, loaded, suffix, layer, n);
    CK(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice));
    return LR_OK;
}

template <class T> static int dalloc(T **p, size_t n) {
    *p = NULL;
    CK(cudaMalloc((void **)p, (n ? n : 1) * sizeof(T)));
    return LR_OK;
}

/* layer l's slice of a stacked float32 weight, or NULL when not loaded */
#define LW(p, l, n) (g->m->mem && (p) ? (p) + (size_t)(l) * (n) : NULL)

static int upload(gpu_fwd *g) {
    const mcfg *c = &g->c;
    const model_weights *w = &g->m->w;
    size_t C = c->C, I = c->I, V = c->V, QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD, W = QD + 2 * KD;
    int rc;
    if ((rc = dalloc(&g->embed, V * C)) || (rc = up_bf16(g, g->embed, w->embed, "model.embed_tokens.weight", -1, V * C)))
        return rc;
    if (c->tied) g->lm_head = g->embed;
    else if ((rc = dalloc(&g->lm_head, V * C)) || (rc = up_bf16(g, g->lm_head, w->lm_head, "lm_head.weight", -1, V * C)))
        return rc;
    if ((rc = dalloc(&g->norm, C)) || (rc = up_f32(g, g->norm, w->norm, "model.norm.weight", -1, C))) return rc;
    g->layer = (gpu_layer *)xcalloc((size_t)c->L, sizeof *g->layer);
    for (int l = 0; l < c->L; l++) {
        gpu_layer *y = &g->layer[l];
        if ((rc = dalloc(&y->wqkv, W * C)) || (rc = dalloc(&y->wo, C * QD)) || (rc = dalloc(&y->wgu, 2 * I * C)) ||
            (rc = dalloc(&y->wdown, C * I)) || (rc = dalloc(&y->ln1, C)) || (rc = dalloc(&y->ln2, C)))
            return rc;
        if ((rc = up_bf16(g, y->wqkv, LW(w->wq, l, QD * C), "self_attn.q_proj.weight", l, QD * C)) ||
            (rc = up_bf16(g, y->wqkv + QD * C, LW(w->wk, l, KD * C), "self_attn.k_proj.weight", l, KD * C)) ||
            (rc = up_bf16(g, y->wqkv + (QD + KD) * C, LW(w->wv, l, KD * C), "self_attn.v_proj.weight", l, KD * C)) ||
            (rc = up_bf16(g, y->wo, LW(w->wo, l, C * QD), "self_attn.o_proj.weight", l, C * QD)) ||
            (rc = up_bf16(g, y->wgu, LW(w->wgate, l, I * C), "mlp.gate_proj.weight", l, I * C)) ||
            (rc = up_bf16(g, y->wgu + I * C, LW(w->wup, l, I * C), "mlp.up_proj.weight", l, I * C)) ||
            (rc = up_bf16(g, y->wdown, LW(w->wdown, l, C * I), "mlp.down_proj.weight", l, C * I)) ||
            (rc = up_f32(g, y->ln1, LW(w->ln1, l, C), "input_layernorm.weight", l, C)) ||
            (rc = up_f32(g, y->ln2, LW(w->ln2, l, C), "post_attention_layernorm.weight", l, C)))
            return rc;
        if (c->qkv_bias) {
            if ((rc = dalloc(&y->bqkv, W)) ||
                (rc = up_f32(g, y->bqkv, LW(w->bq, l, QD), "self_attn.q_proj.bias", l, QD)) ||
                (rc = up_f32(g, y->bqkv + QD, LW(w->bk, l, KD), "self_attn.k_proj.bias", l, KD)) ||
                (rc = up_f32(g, y->bqkv + QD + KD, LW(w->bv, l, KD), "self_attn.v_proj.bias", l, KD)))
                return rc;
        }
        if (c->o_bias && ((rc = dalloc(&y->bo, C)) || (rc = up_f32(g, y->bo, LW(w->bo, l, C), "self_attn.o_proj.bias", l, C))))
            return rc;
    }
    float inv[256];
    rope_inv_freq(inv, c->HD, (float)c->rope_theta);
    if ((rc = dalloc(&g->inv_freq, (size_t)c->HD / 2))) return rc;
    CK(cudaMemcpy(g->inv_freq, inv, (size_t)c->HD / 2 * sizeof(float), cudaMemcpyHostToDevice));
    return LR_OK;
}

/* ---------------------------------------------------------------- */
/* init / free                                                       */

/* Bytes of one page over all layers, keys and values. */
static size_t page_bytes(const mcfg *c, int page) { return (size_t)c->L * c->NKV * page * c->HD * 2 * sizeof(bf16); }

/* Sizes the pool (kv->pages, or KV_MEM_FRACTION of the free device memory
 * when 0; never more than B full slots, never fewer than one) and
 * allocates the cache and the page tables. */
static int pages_init(gpu_fwd *g, const gpu_kv *kv) {
    const mcfg *c = &g->c;
    int page = kv && kv->page > 0 ? kv->page : GPU_KV_PAGE;
    if (page >= g->Tmax) page = g->Tmax; /* one page a slot: the contiguous layout */
    else if (page % KV_PAGE_ALIGN)
        return lr_err(LR_EUSAGE, "cuda forward: KV page of %d positions: need a multiple of %d (the attention key tile) "
                      "or at least the context (%d)", page, KV_PAGE_ALIGN, g->Tmax);
    g->page = page, g->mp = (g->Tmax + page - 1) / page;
    long most = (long)g->B * g->mp, pages = kv ? kv->pages : 0;
    size_t pb = page_bytes(c, page);
    if (pages <= 0) {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return lr_err(LR_EGPU, "cuda: cudaMemGetInfo failed");
        pages = (long)((double)fr * KV_MEM_FRACTION / (double)pb);
        if (pages < g->mp)
            return lr_err(LR_EGPU, "cuda forward: %.1f MiB of device memory free, one context of %d positions needs "
                          "%.1f MiB of KV cache (lower --max-context)", fr / 1048576.0, g->Tmax,
                          g->mp * (double)pb / 1048576.0);
    }
    if (pages < g->mp)
        return lr_err(LR_EUSAGE, "cuda forward: %ld KV pages cannot hold one context of %d positions (%d pages of %d)",
                      pages, g->Tmax, g->mp, page);
    if (pages > most) pages = most;
    g->pages = (int)pages;
    size_t kvn = (size_t)c->L * pages * c->NKV * page * c->HD;
    int rc;
    if ((rc = dalloc(&g->kc, kvn)) || (rc = dalloc(&g->vc, kvn)) || (rc = dalloc(&g->d_ptab, (size_t)most))) return rc;
    g->ptab = (int *)xmalloc((size_t)most * sizeof(int));
    for (long i = 0; i < most; i++) g->ptab[i] = -1;
    CK(cudaMemcpy(g->d_ptab, g->ptab, (size_t)most * sizeof(int), cudaMemcpyHostToDevice));
    g->held = (int *)xcalloc((size_t)g->B, sizeof(int));
    g->want_len = (int *)xcalloc((size_t)g->B, sizeof(int));
    g->freel = (int *)xmalloc((size_t)pages * sizeof(int));
    g->refs = (int *)xcalloc((size_t)pages, sizeof(int));
    g->pre = (int *)xmalloc((size_t)g->mp * sizeof(int));
    for (int i = 0; i < g->pages; i++) g->freel[i] = g->pages - 1 - i; /* page 0 on top */
    g->nfree = g->pages;
    g->dirty_lo = g->B, g->dirty_hi = -1;
    return LR_OK;
}

/* Drops one hold of page pg; with none left it goes back on the free list. */
static void page_unref(gpu_fwd *g, int pg) {
    if (--g->refs[pg] == 0) g->freel[g->nfree++] = pg;
}

static void mark_dirty(gpu_fwd *g, int b) {
    if (b < g->dirty_lo) g->dirty_lo = b;
    if (b > g->dirty_hi) g->dirty_hi = b;
}

/* Drops slot b's holds on its pages: its own go back to the free list (most
 * recently taken last, so they are taken again first), the shared prefix's
 * stay with their other holders. */
static void pages_release(gpu_fwd *g, int b) {
    int *t = g->ptab + (size_t)b * g->mp;
    for (int i = g->held[b] - 1; i >= 0; i--) page_unref(g, t[i]), t[i] = -1;
    g->held[b] = 0;
}

/* The page rule: pages slot b (b < 0: an empty one) takes to hold len
 * positions, beyond those in its table. */
static int pages_more(const gpu_fwd *g, int b, int len) {
    int np = (len + g->page - 1) / g->page, held = b < 0 ? 0 : g->held[b];
    return np > held ? np - held : 0;
}

/* Takes the pages the call's N rows need (every slot's table covering its
 * length after the call; the changed rows are marked dirty, for the call
 * to upload); nothing is taken when the pool cannot cover all of them. */
static int pages_take(gpu_fwd *g, int N, const int *seq) {
    for (int i = 0; i < N; i++) g->want_len[seq[i]] = g->len[seq[i]];
    long need = 0;
    for (int i = 0; i < N; i++) g->want_len[seq[i]]++;
    for (int i = 0; i < N; i++) {
        int b = seq[i], more = g->want_len[b] >= 0 ? pages_more(g, b, g->want_len[b]) : 0;
        if (more) need += more, g->want_len[b] = -(g->held[b] + more); /* counted once: -pages */
    }
    if (need > g->nfree)
        return lr_err(LR_EUSAGE, "cuda forward: KV cache full: the call needs %ld more pages of %d positions, %d of %d "
                      "are free (raise --kv-pages, or lower --batch for static batches)", need, g->page, g->nfree,
                      g->pages);
    for (int i = 0; i < N; i++) {
        int b = seq[i];
        if (g->want_len[b] >= 0) continue;
        int np = -g->want_len[b];
        int *t = g->ptab + (size_t)b * g->mp;
        while (g->held[b] < np) {
            int pg = g->freel[--g->nfree];
            g->refs[pg] = 1;
            t[g->held[b]++] = pg;
        }
        g->want_len[b] = 0;
        mark_dirty(g, b);
    }
    return LR_OK;
}

/* Entries of the dirty table rows, which the call copies into its pinned half. */
static size_t dirty_entries(const gpu_fwd *g) {
    return g->dirty_hi >= g->dirty_lo ? (size_t)(g->dirty_hi - g->dirty_lo + 1) * g->mp : 0;
}

/* Uploads the dirty table rows through pinned staging (n: dirty_entries). */
static int ptab_upload(gpu_fwd *g, int *staging, size_t n) {
    if (!n) return LR_OK;
    size_t at = (size_t)g->dirty_lo * g->mp;
    memcpy(staging, g->ptab + at, n * sizeof(int));
    PROF(GPU_PROF_H2D);
    CK(cudaMemcpyAsync(g->d_ptab + at, staging, n * sizeof(int), cudaMemcpyHostToDevice, g->st));
    g->dirty_lo = g->B, g->dirty_hi = -1;
    return LR_OK;
}

extern "C" int gpu_fwd_pages_more(const gpu_fwd *g, int b, int len, int shared) {
    int more = pages_more(g, b, len);
    if (b < 0 && shared) more = more > g->npre ? more - g->npre : 0;
    return more;
}

extern "C" int gpu_fwd_prefix_keep(gpu_fwd *g, int b) {
    int n = g->len[b] / g->page, *t = g->ptab + (size_t)b * g->mp;
    if (g->npre) { /* one prefix at a time */
        gpu_fwd_reset(g, b);
        return 0;
    }
    if (n < 1 || g->pages - n < g->mp) n = 0; /* a full context beside it, or no sharing */
    for (int i = 0; i < n; i++) g->pre[i] = t[i], g->refs[t[i]]++; /* the prefix's own hold */
    g->npre = n, g->plen = n * g->page;
    gpu_fwd_reset(g, b);
    return g->plen;
}

extern "C" void gpu_fwd_prefix_attach(gpu_fwd *g, int b) {
    int *t = g->ptab + (size_t)b * g->mp;
    for (int i = 0; i < g->npre; i++) t[i] = g->pre[i], g->refs[g->pre[i]]++;
    g->held[b] = g->npre, g->len[b] = g->plen;
    mark_dirty(g, b);
}

extern "C" void gpu_fwd_prefix_drop(gpu_fwd *g) {
    for (int i = g->npre - 1; i >= 0; i--) page_unref(g, g->pre[i]);
    g->npre = g->plen = 0;
}

extern "C" void gpu_fwd_pages(const gpu_fwd *g, gpu_kv_info *k) {
    k->page = g->page, k->per_slot = g->mp, k->pages = g->pages, k->free = g->nfree, k->shared = g->npre;
    k->page_bytes = page_bytes(&g->c, g->page);
}

static int fwd_init(gpu_fwd **out, const model *m, int B, int Tmax, int max_tokens, int kmax, const gpu_kv *kv);
static int ensure_results(gpu_fwd *g, size_t G, size_t ng);

/* A failed init frees what it allocated: callers do not free an engine that
 * never started. */
extern "C" int gpu_fwd_init(gpu_fwd **out, const model *m, int B, int Tmax, int max_tokens, int kmax, const gpu_kv *kv) {
    int rc = fwd_init(out, m, B, Tmax, max_tokens, kmax, kv);
    if (rc && *out) gpu_fwd_free(*out), *out = NULL;
    return rc;
}

static int fwd_init(gpu_fwd **out, const model *m, int B, int Tmax, int max_tokens, int kmax, const gpu_kv *kv) {
    *out = NULL;
    const mcfg *c = &m->cfg;
    if (B < 1 || Tmax < 1 || max_tokens < 1) return lr_err(LR_EUSAGE, "cuda forward: need B, Tmax and max_tokens >= 1");
    if (c->HD > 128 || c->HD % 4) return lr_err(LR_EINPUT, "cuda forward: head_dim %d not supported (at most 128, a multiple of 4)", c->HD);
    if (c->NH / c->NKV > ATT_TQ)
        return lr_err(LR_EINPUT, "cuda forward: %d query heads per KV head not supported (at most %d)", c->NH / c->NKV, ATT_TQ);
    if (kmax > GPU_KMAX_LIMIT)
        return lr_err(LR_EUSAGE, "cuda forward: --top-k-max %d above the device limit %d (use --device cpu)", kmax, GPU_KMAX_LIMIT);
    if (cudaSetDevice(lr_cuda_dev) != cudaSuccess) return lr_err(LR_EGPU, "cuda: no usable device");
    gpu_fwd *g = (gpu_fwd *)xcalloc(1, sizeof *g);
    *out = g;
    g->m = m;
    g->c = *c;
    g->B = B, g->Tmax = Tmax, g->M = max_tokens, g->LM = max_tokens < 1024 ? max_tokens : 1024;
    g->kmax = kmax > 0 ? kmax : 0;
    cudaDeviceProp prop;
    int have_prop = cudaGetDeviceProperties(&prop, lr_cuda_dev) == cudaSuccess; /* the device this forward runs on */
    g->nsm = have_prop && prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    g->tcatt = env_on("LR_GPU_TCATT", 1) && att_tc_serves(c->NH, c->NKV, c->HD) && have_prop &&
               prop.sharedMemPerBlockOptin >= att_tc_smem(c->HD);
    CK(cudaStreamCreate(&g->st));
    CB(cublasCreate(&g->cb));
    CB(cublasSetStream(g->cb, g->st));
    g->graphs = env_on("LR_GPU_GRAPHS", 1);
    g->gu16 = env_on("LR_GPU_GU16", 0);
    g->gemv = env_on("LR_GPU_GEMV", 1) && k_gemv_fits(1, c->C, c->NH * c->HD, c->NKV * c->HD, c->I);
    if (g->graphs) { /* 32 MiB, what cuBLAS takes on Hopper by default; set after the stream, which resets it */
        size_t wsn = (size_t)32 << 20;
        CK(cudaMalloc(&g->ws, wsn));
        CB(cublasSetWorkspace(g->cb, g->ws, wsn));
    }
    int rc = upload(g);
    if (rc) return rc;
    size_t C = c->C, I = c->I, V = c->V, QD = (size_t)c->NH * c->HD, KD = (size_t)c->NKV * c->HD, M = max_tokens;
    if ((rc = dalloc(&g->x, M * C)) ||
        (rc = dalloc(&g->qkv, M * (QD + 2 * KD))) || (rc = dalloc(&g->q, M * QD)) || (rc = dalloc(&g->gu, M * 2 * I)) ||
        (rc = dalloc(&g->ln, M * C)) || (rc = dalloc(&g->att, M * QD)) || (rc = dalloc(&g->h, M * I)) ||
        (rc = dalloc(&g->lnf, (size_t)g->LM * C)) || (rc = dalloc(&g->logits, (size_t)g->LM * V)) ||
        (rc = dalloc(&g->d_tok, M)) || (rc = dalloc(&g->d_seq, M)) || (rc = dalloc(&g->d_pos, M)) ||
        (rc = dalloc(&g->d_rows, M)) || (rc = dalloc(&g->d_feed, M)) || (rc = dalloc(&g->d_tiles, M)))
        return rc;
    for (int h = 0; h < 2; h++) CK(cudaEventCreateWithFlags(&g->ev[h], cudaEventDisableTiming));
    size_t cws = 0; /* the slice count falls as rows grow, so the largest need is at no fixed row count */
    for (int n = 1; n <= g->LM; n++) {
        size_t b = k_compact_ws_bytes(n, (int)V, k_compact_slices(n, (int)V, g->nsm));
        cws = b > cws ? b : cws;
    }
    if ((rc = dalloc(&g->cws, cws))) return rc;
    g->len = (int *)xcalloc((size_t)B, sizeof(int));
    /* results for B wanted rows from the start: a decode call (one wanted
     * row a slot) never reallocates the picks the next call's fed rows read */
    if ((rc = ensure_results(g, (size_t)B, 0))) return rc;
    if ((rc = pages_init(g, kv))) return rc; /* last: the pool takes a share of what is left */
    if (env_on("LR_GPU_PROFILE", 0)) g->prof = prof_new(GPU_PROF_KINDS);
    free(g->stage16), free(g->stage32);
    g->stage16 = NULL, g->stage32 = NULL, g->stage16_n = g->stage32_n = 0;
    return LR_OK;
}

extern "C" int gpu_fwd_set_profile(gpu_fwd *g, int on) {
    prof_free(g->prof);
    g->prof = on ? prof_new(GPU_PROF_KINDS) : NULL;
    return LR_OK;
}

extern "C" int gpu_fwd_profile(const gpu_fwd *g, gpu_prof *p) {
    if (!g->prof) {
        memset(p, 0, sizeof *p);
        return 1;
    }
    prof_read(g->prof, p->ms, &p->total_ms, &p->calls, &p->events);
    return 0;
}

extern "C" void gpu_fwd_graph_stats(const gpu_fwd *g, gpu_graph_stats *s) {
    *s = g->gst;
    s->enabled = g->graphs;
}

extern "C" void gpu_fwd_free(gpu_fwd *g) {
    if (!g) return;
    if (g->st) (void)cudaStreamSynchronize(g->st); /* a call may still be in flight */
    if (g->gexec) cudaGraphExecDestroy(g->gexec);
    if (g->ws) cudaFree(g->ws);
    if (g->prof) {
        gpu_prof p;
        prof_read(g->prof, p.ms, &p.total_ms, &p.calls, &p.events);
        if (p.calls) gpu_prof_print(stderr, &p);
        prof_free(g->prof);
    }
    if (g->layer)
        for (int l = 0; l < g->c.L; l++) {
            gpu_layer *y = &g->layer[l];
            void *p[] = {y->wqkv, y->wo, y->wgu, y->wdown, y->bqkv, y->bo, y->ln1, y->ln2};
            for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) if (p[i]) cudaFree(p[i]);
        }
    void *p[] = {g->embed, g->lm_head != g->embed ? g->lm_head : NULL, g->norm, g->inv_freq, g->kc, g->vc, g->x,
                 g->qkv, g->q, g->gu, g->ln, g->att, g->h, g->lnf, g->logits, g->d_tok, g->d_seq, g->d_pos,
                 g->d_rows, g->d_feed, g->d_pick2, g->d_tiles, g->d_k, g->d_ids, g->d_argmax, g->d_gids, g->d_lps,
                 g->d_tail, g->d_glps,
                 g->d_gtail, g->d_bad, g->d_goff, g->d_uni, g->d_sampled, g->d_part, g->cws};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) if (p[i]) cudaFree(p[i]);
    if (g->cb) cublasDestroy(g->cb);
    if (g->st) cudaStreamDestroy(g->st);
    for (int h = 0; h < 2; h++) {
        if (g->pin[h]) cudaFreeHost(g->pin[h]);
        if (g->ev[h]) cudaEventDestroy(g->ev[h]);
    }
    free(g->ptab);
    if (g->d_ptab) cudaFree(g->d_ptab);
    free(g->layer), free(g->len), free(g->held), free(g->want_len), free(g->freel), free(g->refs), free(g->pre);
    free(g->stage16), free(g->stage32);
    free(g);
}

extern "C" void gpu_fwd_reset(gpu_fwd *g, int b) {
    for (int s = b < 0 ? 0 : b; s < (b < 0 ? g->B : b + 1 < g->B ? b + 1 : g->B); s++) {
        g->len[s] = 0;
        if (g->held) pages_release(g, s);
    }
}

/* ---------------------------------------------------------------- */
/* running                                                           */

/* out (N, OUT) = in (N, K) W^T (+ out when beta = 1); W (OUT, K) row-major,
 * i.e. the column-major GEMM out^T = W^T' in^T with W transposed. out is
 * float32, or bf16 for otype CUDA_R_16BF (rounded once from the float32
 * sum). */
static int gemm_to(gpu_fwd *g, void *out, cudaDataType otype, const bf16 *in, const bf16 *W, int N, int K, int OUT,
                   float beta) {
    const float one = 1.0f;
    CB(cublasGemmEx(g->cb, CUBLAS_OP_T, CUBLAS_OP_N, OUT, N, K, &one, W, CUDA_R_16BF, K, in, CUDA_R_16BF, K, &beta,
                    out, otype, OUT, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return LR_OK;
}
static int gemm(gpu_fwd *g, float *out, const bf16 *in, const bf16 *W, int N, int K, int OUT, float beta) {
    return gemm_to(g, out, CUDA_R_32F, in, W, N, K, OUT, beta);
}

/* g->att = attention of g->q over a layer's cache. d_tiles: ntc tiles for
 * the tensor-core kernel (att_tc_tiles), then the rest of the nt for
 * k_attention_split, splits key ranges each. */
static int attend(gpu_fwd *g, uint16_t *kc, uint16_t *vc, kv_pages kv, int ntc, int nt, int splits) {
    const int NH = g->c.NH, NKV = g->c.NKV, HD = g->c.HD;
    PROF(GPU_PROF_ATTENTION);
    if (ntc) k_attention_tc((uint16_t *)g->att, g->q, kc, vc, g->d_tiles, ntc, NH, NKV, HD, kv, g->st);
    if (nt > ntc)
        k_attention_split((uint16_t *)g->att, g->q, kc, vc, g->d_tiles + ntc, nt - ntc, NH, NKV, HD, kv, splits,
                          g->d_part, g->st);
    return LR_OK;
}

/* one decoder layer over the call's n rows; attention as attend's */
static int layer_forward(gpu_fwd *g, int l, int n, int ntc, int nt, int splits) {
    const mcfg *c = &g->c;
    const gpu_layer *y = &g->layer[l];
    int C = c->C, I = c->I, NH = c->NH, NKV = c->NKV, HD = c->HD, QD = NH * HD, KD = NKV * HD;
    size_t kvl = (size_t)g->pages * NKV * g->page * HD;
    uint16_t *kc = (uint16_t *)(g->kc + l * kvl), *vc = (uint16_t *)(g->vc + l * kvl);
    const kv_pages kv = {g->d_ptab, g->page, g->mp};
    float eps = (float)c->rms_eps;
    int rc;
    if (g->gemv && k_gemv_fits(n, C, QD, KD, I)) { /* a few rows: five fused launches (cuda/gemv.cu) */
        int mb = 2 * g->nsm;
        PROF(GPU_PROF_GEMM);
        k_gemv_qkv(g->q, kc, vc, g->x, y->ln1, eps, (const uint16_t *)y->wqkv, y->bqkv, g->inv_freq, g->d_seq,
                   g->d_pos, n, C, NH, NKV, HD, kv, mb, g->st);
        if ((rc = attend(g, kc, vc, kv, ntc, nt, splits))) return rc;
        PROF(GPU_PROF_GEMM);
        k_gemv_add(g->x, (const uint16_t *)g->att, (const uint16_t *)y->wo, y->bo, n, QD, C, 0, g->st);
        k_gemv_swiglu((uint16_t *)g->h, g->x, y->ln2, eps, (const uint16_t *)y->wgu, n, C, I, mb, g->st);
        k_gemv_add(g->x, (const uint16_t *)g->h, (const uint16_t *)y->wdown, NULL, n, I, C, 0, g->st);
        return LR_OK;
    }
    PROF(GPU_PROF_ELEMENTWISE);
    k_rmsnorm((uint16_t *)g->ln, g->x, y->ln1, NULL, n, C, eps, g->st);
    PROF(GPU_PROF_GEMM);
    if ((rc = gemm(g, g->qkv, g->ln, y->wqkv, n, C, QD + 2 * KD, 0.0f))) return rc;
    PROF(GPU_PROF_ELEMENTWISE);
    k_qkv_rope(g->q, kc, vc, g->qkv, y->bqkv, g->inv_freq, g->d_seq, g->d_pos, n, NH, NKV, HD, kv, g->st);
    if ((rc = attend(g, kc, vc, kv, ntc, nt, splits))) return rc;
    PROF(GPU_PROF_GEMM);
    if ((rc = gemm(g, g->x, g->att, y->wo, n, QD, C, 1.0f))) return rc; /* residual add fused */
    PROF(GPU_PROF_ELEMENTWISE);
    if (y->bo) k_add_bias(g->x, y->bo, n, C, g->st);
    k_rmsnorm((uint16_t *)g->ln, g->x, y->ln2, NULL, n, C, eps, g->st);
    PROF(GPU_PROF_GEMM);
    if ((rc = gemm_to(g, g->gu, g->gu16 ? CUDA_R_16BF : CUDA_R_32F, g->ln, y->wgu, n, C, 2 * I, 0.0f))) return rc;
    PROF(GPU_PROF_ELEMENTWISE);
    if (g->gu16) k_swiglu_bf16((uint16_t *)g->h, (const uint16_t *)g->gu, n, I, g->st);
    else k_swiglu((uint16_t *)g->h, g->gu, n, I, g->st);
    PROF(GPU_PROF_GEMM);
    return gemm(g, g->x, g->h, y->wdown, n, I, C, 1.0f);
}

/* A per-call buffer reallocated: a captured graph pointing into the old
 * one is not replayed again (its key's gen is outdated). */
template <class T> static int grow(gpu_fwd *g, T **p, size_t n) {
    g->gen++;
    if (*p) cudaFree(*p);
    return dalloc(p, n);
}

/* Sizes the per-call result buffers for G wanted rows and ng gathered ids. */
static int ensure_results(gpu_fwd *g, size_t G, size_t ng) {
    int rc;
    if (G > g->rcap) {
        size_t K = g->kmax ? (size_t)g->kmax : 1;
        if ((rc = grow(g, &g->d_k, G)) || (rc = grow(g, &g->d_ids, G * K)) || (rc = grow(g, &g->d_lps, G * K)) ||
            (rc = grow(g, &g->d_tail, G)) || (rc = grow(g, &g->d_argmax, G)) || (rc = grow(g, &g->d_bad, G)) ||
            (rc = grow(g, &g->d_gtail, G)) || (rc = grow(g, &g->d_goff, G + 1)) || (rc = grow(g, &g->d_uni, G)) ||
            (rc = grow(g, &g->d_sampled, G)))
            return rc;
        g->rcap = G;
    }
    if (ng > g->gcap) {
        if ((rc = grow(g, &g->d_gids, ng)) || (rc = grow(g, &g->d_glps, ng))) return rc;
        g->gcap = ng;
    }
    return LR_OK;
}


/* Carves l out of base (NULL: only measures); returns the bytes used. */
static size_t pin_carve(char *base, pin_layout *l, size_t N, size_t G, size_t K, size_t ng, size_t nptab) {
    size_t at = 0;
#define PIN(field, count)                                                                                     \
    do {                                                                                                      \
        l->field = base ? (decltype(l->field))(base + at) : NULL;                                             \
        at += ((count) * sizeof *l->field + 63) / 64 * 64;                                                    \
    } while (0)
    PIN(tok, N); PIN(feed, N); PIN(ptab, nptab); PIN(seq, N); PIN(pos, N); PIN(rows, N); PIN(tiles, N);
    PIN(goff, G + 1); PIN(gids, ng);
    PIN(uni, G); PIN(bad, G); PIN(argmax, G); PIN(k, G); PIN(ids, G * K); PIN(sampled, G); PIN(lps, G * K);
    PIN(tail, G); PIN(glps, ng); PIN(gtail, G);
#undef PIN
    return at;
}

/* Half h of the arena, grown to fit; its last call has been collected. */
static int pin_grow(gpu_fwd *g, int h, pin_layout *l, size_t N, size_t G, size_t K, size_t ng, size_t nptab) {
    size_t need = pin_carve(NULL, l, N, G, K, ng, nptab);
    if (need > g->pin_n[h]) {
        if (g->pin[h]) cudaFreeHost(g->pin[h]);
        g->pin[h] = NULL, g->pin_n[h] = 0;
        size_t n = need + need / 2; /* room to grow without a new allocation each call */
        CK(cudaMallocHost((void **)&g->pin[h], n));
        g->pin_n[h] = n;
    }
    pin_carve(g->pin[h], l, N, G, K, ng, nptab);
    return LR_OK;
}

template <class T> static int fetch_async(gpu_fwd *g, T *pinned, const T *dev, size_t n) {
    if (n) CK(cudaMemcpyAsync(pinned, dev, n * sizeof(T), cudaMemcpyDeviceToHost, g->st));
    return LR_OK;
}
template <class T> static void deliver(T *host, const T *pinned, size_t n) {
    if (host && n) memcpy(host, pinned, n * sizeof(T));
}

/* The launches of one chunk of n rows (nw wanted, nt attention tiles) once
 * its rows are on the device, from the embedding to the sampler; the
 * chunk's wanted rows are results gbase.. of the call. The --full logits
 * copy is the only copy here (graph_run never captures a call with one). */
static int chunk_launches(gpu_fwd *g, const eng_req *q, eng_res *r, int n, int nw, int ntc, int nt, int splits,
                          size_t gbase, const int *fsrc) {
    const mcfg *c = &g->c;
    const int V = c->V, C = c->C;
    int rc;
    PROF(GPU_PROF_ELEMENTWISE);
    if (fsrc) k_feed(g->d_tok, g->d_feed, fsrc, n, V, g->st); /* the fed rows' tokens: the last call's picks */
    k_embedding(g->x, g->d_tok, (const uint16_t *)g->embed, n, C, g->st);
    for (int l = 0; l < c->L; l++)
        if ((rc = layer_forward(g, l, n, ntc, nt, splits))) return rc;
    for (int s = 0; s < nw; gbase += (size_t)(nw - s < g->LM ? nw - s : g->LM), s += g->LM) {
        int cnt = nw - s < g->LM ? nw - s : g->LM;
        PROF(GPU_PROF_ELEMENTWISE);
        k_rmsnorm((uint16_t *)g->lnf, g->x, g->norm, g->d_rows + s, cnt, C, (float)c->rms_eps, g->st);
        PROF(GPU_PROF_GEMM);
        if ((rc = gemm(g, g->logits, g->lnf, g->lm_head, cnt, C, V, 0.0f))) return rc;
        compact_args a;
        a.kmax = q->co.kmax, a.kmin = q->co.kmin, a.mass = q->co.mass;
        a.gids = q->gids ? g->d_gids : NULL;
        a.goff = g->d_goff + gbase;
        a.k = g->d_k + gbase, a.ids = g->d_ids + gbase * (size_t)(a.kmax > 0 ? a.kmax : 0);
        a.lps = g->d_lps + gbase * (size_t)(a.kmax > 0 ? a.kmax : 0);
        a.argmax = g->d_argmax + gbase, a.tail = g->d_tail + gbase;
        a.glps = g->d_glps, a.gtail = g->d_gtail + gbase, a.bad = g->d_bad + gbase;
        a.slices = k_compact_slices(cnt, V, g->nsm), a.ws = g->cws;
        PROF(GPU_PROF_COMPACT);
        k_compact(g->logits, cnt, V, &a, g->st);
        if (q->uniform) PROF(GPU_PROF_SAMPLE);
        if (q->uniform)
            k_sample(g->logits, cnt, V, g->d_uni + gbase, q->smp.temperature, q->smp.top_k, q->smp.top_p,
                     g->d_sampled + gbase, g->st);
        CK(cudaGetLastError());
        if (q->logits && r->logits) PROF(GPU_PROF_D2H);
        if (q->logits && r->logits)
            CK(cudaMemcpyAsync(r->logits + gbase * (size_t)V, g->logits, (size_t)cnt * V * sizeof(float),
                               cudaMemcpyDeviceToHost, g->st));
    }
    CK(cudaGetLastError());
    return LR_OK;
}

/* A failed capture: this call and every later one run plainly. */
static void graph_failed(gpu_fwd *g, cudaGraph_t graph, cudaGraphExec_t exec) {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError(); /* the capture's error is not the call's */
    g->graphs = 0;
    g->gst.failures++;
}

/* Runs a one-chunk call of key k from a graph when it can (*ran = 1): the
 * graph of this key is replayed; a key seen on the previous such call as
 * well is captured, replacing the graph, and launched; a new key runs
 * plainly this time (*ran = 0), so that the one-off shapes of continuous
 * batching (a prompt joining) neither capture nor evict the decode graph. */
static int graph_run(gpu_fwd *g, const graph_key *k, const eng_req *q, eng_res *r, int n, int nw, int ntc, int nt,
                     int splits, const int *fsrc, int *ran) {
    *ran = 0;
    if (!g->gexec || memcmp(k, &g->gkey, sizeof *k)) {
        if (!g->gseen_ok || memcmp(k, &g->gseen, sizeof *k)) {
            memcpy(&g->gseen, k, sizeof *k), g->gseen_ok = 1;
            return LR_OK;
        }
        cudaGraph_t graph = NULL;
        cudaGraphExec_t exec = NULL;
        if (cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
            graph_failed(g, NULL, NULL);
            return LR_OK;
        }
        int rc = chunk_launches(g, q, r, n, nw, ntc, nt, splits, 0, fsrc);
        cudaError_t e = cudaStreamEndCapture(g->st, &graph); /* always: the stream leaves capture mode */
        if (!rc && e == cudaSuccess && graph) e = cudaGraphInstantiate(&exec, graph, 0);
        if (rc || e != cudaSuccess || !graph || !exec) {
            graph_failed(g, graph, exec);
            return LR_OK;
        }
        cudaGraphDestroy(graph);
        if (g->gexec) cudaGraphExecDestroy(g->gexec);
        g->gexec = exec;
        memcpy(&g->gkey, k, sizeof *k);
        g->gst.captures++;
    }
    CK(cudaGraphLaunch(g->gexec, g->st));
    g->gst.replays++;
    *ran = 1;
    return LR_OK;
}

/* Copies call k's results from its pinned half to the caller's arrays. */
static void deliver_call(const gpu_call *k) {
    const pin_layout *h = &k->h;
    const eng_res *r = &k->r;
    size_t G = k->G, K = k->K, ng = k->ng;
    deliver(r->bad, h->bad, G), deliver(r->argmax, h->argmax, G);
    if (K)
        deliver(r->k, h->k, G), deliver(r->ids, h->ids, G * K), deliver(r->lps, h->lps, G * K),
        deliver(r->tail, h->tail, G);
    if (k->gather) deliver(r->glps, h->glps, ng), deliver(r->gtail, h->gtail, G);
    if (k->sample) deliver(r->sampled, h->sampled, G);
}

extern "C" int gpu_fwd_submit(gpu_fwd *g, int N, const int *tokens, const int *feed, const int *seq,
                              const unsigned char *want, const eng_req *q, eng_res *r) {
    const mcfg *c = &g->c;
    if (g->nfl == 2) return lr_err(LR_EUSAGE, "cuda forward: a third call queued before the first was collected");
    if (q->co.kmax > g->kmax)
        return lr_err(LR_EUSAGE, "cuda forward: kmax %d above the %d it was sized for", q->co.kmax, g->kmax);
    int rc = fwd_check_rows("cuda forward", g->len, g->B, g->Tmax, c->V, N, tokens, seq);
    if (rc) return rc;
    size_t G = 0;
    int fed = 0;
    for (int i = 0; i < N; i++) G += !want || want[i];
    for (int i = 0; feed && i < N; i++) {
        if (feed[i] >= 0 && (size_t)feed[i] >= g->pick_n) /* pick_n 0 before any call */
            return lr_err(LR_EUSAGE, "cuda forward: row %d fed from pick %d of a previous call of %zu", i, feed[i],
                          g->pick_n);
        fed |= feed[i] >= 0;
    }
    /* the picks fed rows read stay where they are: a fed call never grows the results */
    if (fed && G > g->rcap)
        return lr_err(LR_EUSAGE, "cuda forward: a fed call of %zu wanted rows, above the %zu of a decode step", G,
                      g->rcap);
    if (g->prof) CK(prof_start(g->prof, GPU_PROF_HOST, g->st));
    /* the call before, still in flight: its end is marked before this one's
     * first copy, so that collecting it waits for it alone */
    if (g->nfl) {
        gpu_call *prev = &g->fl[(g->flh + g->nfl - 1) % 2];
        if (!prev->done && !prev->marked) {
            CK(cudaEventRecord(g->ev[prev->half], g->st));
            prev->marked = 1;
        }
    }
    if ((rc = pages_take(g, N, seq))) return rc;
    size_t ng = q->gids ? q->goff[G] : 0, K = q->co.kmax > 0 ? (size_t)q->co.kmax : 0, nptab = dirty_entries(g);
    gpu_call *k = &g->fl[(g->flh + g->nfl) % 2];
    memset(k, 0, sizeof *k);
    k->half = g->half, k->r = *r, k->G = G, k->K = K, k->ng = ng, k->gather = q->gids != NULL,
    k->sample = q->uniform != NULL;
    pin_layout &h = k->h;
    if ((rc = ensure_results(g, G, ng)) || (rc = pin_grow(g, k->half, &h, (size_t)N, G, K, ng, nptab)) ||
        (rc = ptab_upload(g, h.ptab, nptab)))
        return rc;
    const int *fsrc = fed ? g->pick : NULL;
    if (fed && N > g->M) { /* several chunks: feed every one from the picks as they were */
        if (g->pick_n > g->pick2_n) {
            if (g->d_pick2) cudaFree(g->d_pick2);
            if ((rc = dalloc(&g->d_pick2, g->pick_n))) return rc;
            g->pick2_n = g->pick_n;
        }
        CK(cudaMemcpyAsync(g->d_pick2, g->pick, g->pick_n * sizeof(int), cudaMemcpyDeviceToDevice, g->st));
        fsrc = g->d_pick2;
    }
    if (q->gids) {
        for (size_t j = 0; j <= G; j++) h.goff[j] = (int64_t)q->goff[j];
        PROF(GPU_PROF_H2D);
        CK(cudaMemcpyAsync(g->d_goff, h.goff, (G + 1) * sizeof(int64_t), cudaMemcpyHostToDevice, g->st));
        if (ng) {
            memcpy(h.gids, q->gids, ng * sizeof(int32_t));
            CK(cudaMemcpyAsync(g->d_gids, h.gids, ng * sizeof(int32_t), cudaMemcpyHostToDevice, g->st));
        }
    }
    if (q->uniform && G) {
        memcpy(h.uni, q->uniform, G * sizeof(double));
        PROF(GPU_PROF_H2D);
        CK(cudaMemcpyAsync(g->d_uni, h.uni, G * sizeof(double), cudaMemcpyHostToDevice, g->st));
    }
    size_t gbase = 0;
    for (int start = 0; start < N; start += g->M) {
        int n = N - start < g->M ? N - start : g->M, nw = 0, cfed = 0;
        PROF(GPU_PROF_HOST);
        int *tok = h.tok + start, *fd = h.feed + start, *sq = h.seq + start, *pos = h.pos + start,
            *rows = h.rows + start;
        att_tile *tiles = h.tiles + start;
        for (int i = 0; i < n; i++) {
            tok[i] = tokens[start + i], sq[i] = seq[start + i];
            fd[i] = feed ? feed[start + i] : -1, cfed |= fd[i] >= 0;
            pos[i] = g->len[sq[i]]++;
            if (!want || want[start + i]) rows[nw++] = i;
        }
        /* runs of rows of one slot (prefill, teacher forcing) on tensor
         * cores, lone rows (decode) as FMA tiles; with few FMA tiles of long
         * contexts (few live problems) their keys split */
        int nt, ntc = 0, splits = 1, maxk = 0;
        if (g->tcatt) nt = att_tc_tiles(tiles, sq, pos, n, ATT_TC_ROWS(c->NH, c->NKV), &ntc);
        else nt = att_tiles(tiles, sq, pos, n, ATT_ROWS(c->NH, c->NKV));
        for (int i = ntc; i < nt; i++)
            if (tiles[i].pos0 + tiles[i].n > maxk) maxk = tiles[i].pos0 + tiles[i].n;
        if (nt > ntc) splits = att_splits(nt - ntc, c->NKV, maxk, g->nsm);
        size_t pn = splits > 1 ? att_part_floats(nt - ntc, c->NKV, c->HD, splits) : 0;
        if (pn > g->part_n) {
            if ((rc = grow(g, &g->d_part, pn))) return rc;
            g->part_n = pn;
        }
        PROF(GPU_PROF_H2D);
        CK(cudaMemcpyAsync(g->d_tok, tok, n * sizeof(int), cudaMemcpyHostToDevice, g->st));
        if (cfed) CK(cudaMemcpyAsync(g->d_feed, fd, n * sizeof(int), cudaMemcpyHostToDevice, g->st));
        CK(cudaMemcpyAsync(g->d_seq, sq, n * sizeof(int), cudaMemcpyHostToDevice, g->st));
        CK(cudaMemcpyAsync(g->d_pos, pos, n * sizeof(int), cudaMemcpyHostToDevice, g->st));
        CK(cudaMemcpyAsync(g->d_rows, rows, nw * sizeof(int), cudaMemcpyHostToDevice, g->st));
        CK(cudaMemcpyAsync(g->d_tiles, tiles, nt * sizeof(att_tile), cudaMemcpyHostToDevice, g->st));
        const int *cs = cfed ? fsrc : NULL;
        int ran = 0;
        if (start == 0 && n == N && g->graphs && !g->prof && N <= g->B && nw <= g->LM && !(q->logits && r->logits)) {
            graph_key gk;
            memset(&gk, 0, sizeof gk); /* padding too: keys compare with memcmp */
            gk.n = n, gk.nw = nw, gk.ntc = ntc, gk.nt = nt, gk.splits = splits, gk.kmax = q->co.kmax,
            gk.kmin = q->co.kmin, gk.mass = q->co.mass, gk.gen = g->gen;
            gk.flags = (q->gids != NULL) | (q->uniform != NULL) << 1 | (cs != NULL) << 2 |
                       (cs && cs == g->d_sampled) << 3;
            if (q->uniform) gk.temperature = q->smp.temperature, gk.top_k = q->smp.top_k, gk.top_p = q->smp.top_p;
            if ((rc = graph_run(g, &gk, q, r, n, nw, ntc, nt, splits, cs, &ran))) return rc;
        }
        if (!ran && (rc = chunk_launches(g, q, r, n, nw, ntc, nt, splits, gbase, cs))) return rc;
        gbase += (size_t)nw;
    }
    PROF(GPU_PROF_D2H);
    if ((rc = fetch_async(g, h.bad, g->d_bad, r->bad ? G : 0)) ||
        (rc = fetch_async(g, h.argmax, g->d_argmax, r->argmax ? G : 0)))
        return rc;
    if (K && ((rc = fetch_async(g, h.k, g->d_k, G)) || (rc = fetch_async(g, h.ids, g->d_ids, G * K)) ||
              (rc = fetch_async(g, h.lps, g->d_lps, G * K)) || (rc = fetch_async(g, h.tail, g->d_tail, G))))
        return rc;
    if (q->gids && ((rc = fetch_async(g, h.glps, g->d_glps, ng)) || (rc = fetch_async(g, h.gtail, g->d_gtail, G))))
        return rc;
    if (q->uniform && (rc = fetch_async(g, h.sampled, g->d_sampled, G))) return rc;
    /* queued: the next call's fed rows read this one's picks */
    g->nfl++, g->half ^= 1;
    g->pick = q->uniform ? g->d_sampled : g->d_argmax, g->pick_n = G;
    if (g->prof) { /* profiled calls run one at a time, each timed whole */
        PROF(GPU_PROF_KINDS); /* the call's last event */
        CK(cudaStreamSynchronize(g->st));
        CK(prof_collect(g->prof));
        deliver_call(k);
        k->done = 1;
    }
    return LR_OK;
}

extern "C" int gpu_fwd_collect(gpu_fwd *g) {
    if (!g->nfl) return LR_OK;
    gpu_call *k = &g->fl[g->flh];
    g->flh = (g->flh + 1) % 2, g->nfl--;
    if (k->done) return LR_OK;
    /* a later call queued behind it: wait for its event, not for the stream */
    if (k->marked) CK(cudaEventSynchronize(g->ev[k->half]));
    else CK(cudaStreamSynchronize(g->st));
    deliver_call(k);
    return LR_OK;
}

extern "C" int gpu_fwd_pending(const gpu_fwd *g) { return g->nfl; }
