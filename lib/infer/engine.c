/* engine: see engine.h. */
#include "infer/engine.h"

#include "infer/gpu.h"
#include "base/util.h"
#include "nn/ops_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int eng_parse_device(const char *name, eng_device *dev) {
    if (!strcmp(name, "cpu")) *dev = ENG_CPU;
    else if (!strcmp(name, "cuda")) *dev = ENG_CUDA;
    else if (!strcmp(name, "auto")) *dev = gpu_device_count(NULL, 0) > 0 ? ENG_CUDA : ENG_CPU;
    else return lr_err(LR_EUSAGE, "--device %s: expected cpu, cuda or auto", name);
    return LR_OK;
}

const char *eng_device_name(eng_device d) { return d == ENG_CUDA ? "cuda" : "cpu"; }

int eng_init(engine *e, const model *m, eng_device dev, int B, int Tmax, int max_tokens, int kmax, int nthreads) {
    return eng_init_kv(e, m, dev, B, Tmax, max_tokens, kmax, nthreads, NULL);
}

int eng_init_kv(engine *e, const model *m, eng_device dev, int B, int Tmax, int max_tokens, int kmax, int nthreads,
                const gpu_kv *kv) {
    memset(e, 0, sizeof *e);
    e->dev = dev;
    e->m = m;
    e->tmax = Tmax;
    if (dev == ENG_CUDA) {
        char why[256];
        if (gpu_device_count(why, sizeof why) < 1)
            return lr_err(LR_EGPU, "--device cuda: no usable CUDA device (%s)", why);
        return gpu_fwd_init(&e->gpu, m, B, Tmax, max_tokens, kmax, kv);
    }
    if (!m->mem) return lr_err(LR_EUSAGE, "engine: the cpu backend needs the model's weights loaded (model_load)");
    e->heap_cap = kmax > 0 ? kmax : 1;
    e->heap = xmalloc((size_t)e->heap_cap * sizeof *e->heap);
    return fwd_init(&e->cpu, m, B, Tmax, max_tokens, 0, nthreads);
}

/* The CPU twin of the device's per-row reductions (cuda/compact.cu); the
 * row's pick (its draw, or its argmax; -1 for a NaN row) into *pick. */
static void cpu_row(engine *e, const float *row, int V, size_t g, const eng_req *q, eng_res *r, int32_t *pick) {
    int bad = 0;
    for (int i = 0; i < V && !bad; i++) bad = !isfinite(row[i]);
    if (r->bad) r->bad[g] = (unsigned char)bad;
    *pick = -1;
    if (bad) {
        if (q->uniform) r->sampled[g] = -1;
        return;
    }
    if (q->co.kmax > 0) {
        int k = cd_select(row, V, &q->co, r->ids + g * (size_t)q->co.kmax, r->lps + g * (size_t)q->co.kmax,
                          &r->tail[g], e->heap);
        r->k[g] = k;
    }
    if (q->gids)
        cd_gather(row, V, q->gids + q->goff[g], (int)(q->goff[g + 1] - q->goff[g]), r->glps + q->goff[g],
                  &r->gtail[g]);
    if (r->argmax || !q->uniform) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (row[i] > row[best]) best = i;
        if (r->argmax) r->argmax[g] = best;
        *pick = best;
    }
    if (q->uniform) *pick = r->sampled[g] = smp_draw_u(row, &q->smp, q->uniform[g], &e->smp);
}

int eng_run(engine *e, int N, const int *tokens, const int *seq, const unsigned char *want, const eng_req *q,
            eng_res *r) {
    int rc = eng_submit(e, N, tokens, NULL, seq, want, q, r);
    while (eng_pending(e)) {
        int rc2 = eng_collect(e);
        if (!rc) rc = rc2;
    }
    return rc;
}

int eng_pending(const engine *e) { return e->dev == ENG_CUDA ? gpu_fwd_pending(e->gpu) : e->pending; }

int eng_collect(engine *e) {
    if (e->dev == ENG_CUDA) return gpu_fwd_collect(e->gpu);
    if (e->pending) e->pending--; /* on cpu a call's results are in place once it is submitted */
    return LR_OK;
}

int eng_submit(engine *e, int N, const int *tokens, const int *feed, const int *seq, const unsigned char *want,
               const eng_req *q, eng_res *r) {
    if (e->dev == ENG_CUDA) return gpu_fwd_submit(e->gpu, N, tokens, feed, seq, want, q, r);
    if (q->co.kmax > e->heap_cap)
        return lr_err(LR_EUSAGE, "engine: kmax %d above the %d it was sized for", q->co.kmax, e->heap_cap);
    if (e->pending == 2) return lr_err(LR_EUSAGE, "engine: a third call queued before the first was collected");
    size_t G = 0;
    for (int i = 0; i < N; i++) G += !want || want[i];
    if (feed) { /* the fed rows take the last call's picks, as the device's k_feed does */
        if ((size_t)N > e->ftok_cap) e->ftok = xrealloc(e->ftok, (size_t)N * sizeof *e->ftok), e->ftok_cap = (size_t)N;
        memcpy(e->ftok, tokens, (size_t)N * sizeof *tokens);
        for (int i = 0; i < N; i++)
            if (feed[i] >= 0 && (size_t)feed[i] >= e->npick) /* npick 0 before any call */
                return lr_err(LR_EUSAGE, "engine: row %d fed from pick %d of a previous call of %zu", i, feed[i],
                              e->npick);
        feed_tokens(e->ftok, feed, e->pick, N, e->m->cfg.V);
        tokens = e->ftok;
    }
    if (G > e->pick_cap) e->pick = xrealloc(e->pick, G * sizeof *e->pick), e->pick_cap = G;
    int V = e->m->cfg.V;
    if (q->uniform && e->smp.V != V) smp_free(&e->smp), smp_init(&e->smp, V);
    float *dst = r->logits;
    if (!q->logits) {
        if (G > e->logit_rows) {
            e->logits = xrealloc(e->logits, G * (size_t)V * sizeof *e->logits);
            e->logit_rows = G;
        }
        dst = e->logits;
    }
    int rc = fwd_run(&e->cpu, N, tokens, seq, want, dst);
    for (size_t g = 0; !rc && g < G; g++) cpu_row(e, dst + g * (size_t)V, V, g, q, r, &e->pick[g]);
    if (!rc) e->npick = G, e->pending++;
    return rc;
}

void eng_reset(engine *e, int b) {
    if (e->dev == ENG_CUDA) gpu_fwd_reset(e->gpu, b);
    else fwd_reset(&e->cpu, b);
}

int eng_tmax(const engine *e) { return e->tmax; }

void eng_pages(const engine *e, gpu_kv_info *k) {
    if (e->dev == ENG_CUDA) {
        gpu_fwd_pages(e->gpu, k);
        return;
    }
    const mcfg *c = &e->m->cfg;
    int used = 0;
    for (int b = 0; b < e->cpu.B; b++) used += e->cpu.len[b] > 0;
    k->page = e->tmax, k->per_slot = 1, k->pages = e->cpu.B, k->free = e->cpu.B - used, k->shared = 0;
    k->page_bytes = (size_t)c->L * c->NKV * e->tmax * c->HD * 2 * sizeof(float);
}

/* On cpu a slot is one page of Tmax: taken by its first row, kept until reset. */
int eng_pages_more(const engine *e, int b, int len) {
    if (e->dev == ENG_CUDA) return gpu_fwd_pages_more(e->gpu, b, len, 0);
    return len > 0 && e->cpu.len[b] == 0;
}

int eng_pages_join(const engine *e, int len, int shared) {
    if (e->dev == ENG_CUDA) return gpu_fwd_pages_more(e->gpu, -1, len, shared);
    return len > 0;
}

/* On cpu a prefix of any length pays: each position it spares a sharing
 * prompt is a row through every layer's GEMMs (2 flops a weight: 0.7
 * Gflop on Qwen2.5-0.5B), while attaching copies that position's keys and
 * values, 2 * L * NKV * HD floats (6,144 there). Its one other cost is the
 * prefix's own call (one logits row), once a run. It lives outside the
 * slots (one page each), so it takes none of their pages and needs no
 * room check. */
int eng_prefix_min(const engine *e) {
    if (e->dev == ENG_CUDA) {
        gpu_kv_info k;
        gpu_fwd_pages(e->gpu, &k);
        return k.page;
    }
    return 1;
}

int eng_prefix_keep(engine *e, int b) {
    if (e->dev == ENG_CUDA) return gpu_fwd_prefix_keep(e->gpu, b);
    int n = e->cpu.len[b];
    if (!e->npre && n >= eng_prefix_min(e)) {
        const mcfg *c = &e->m->cfg;
        size_t sz = (size_t)c->L * c->NKV * n * c->HD * sizeof(float);
        e->pre_k = xmalloc(sz), e->pre_v = xmalloc(sz);
        fwd_save_prefix(&e->cpu, b, n, e->pre_k, e->pre_v);
        e->npre = n;
    } else n = 0;
    fwd_reset(&e->cpu, b);
    return n;
}

void eng_prefix_attach(engine *e, int b) {
    if (e->dev == ENG_CUDA) gpu_fwd_prefix_attach(e->gpu, b);
    else if (e->npre && !e->cpu.len[b]) fwd_load_prefix(&e->cpu, b, e->npre, e->pre_k, e->pre_v);
}

void eng_prefix_drop(engine *e) {
    if (e->dev == ENG_CUDA) {
        gpu_fwd_prefix_drop(e->gpu);
        return;
    }
    free(e->pre_k), free(e->pre_v);
    e->pre_k = e->pre_v = NULL, e->npre = 0;
}

void eng_free(engine *e) {
    if (e->gpu) gpu_fwd_free(e->gpu);
    if (e->cpu.m) fwd_free(&e->cpu);
    free(e->logits);
    free(e->heap);
    free(e->pre_k), free(e->pre_v);
    free(e->pick), free(e->ftok);
    smp_free(&e->smp);
    memset(e, 0, sizeof *e);
}
