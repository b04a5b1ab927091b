/* bench_gpu: the C driver of tests/gpu/run.sh, the one script to run on a
 * machine with a GPU. Three subcommands (see USAGE):
 *
 *   check    runs the same calls through a cpu engine (the reference) and a
 *            cuda engine (the device under test) and compares what eng_run
 *            returns, row by row: logits, compact lists, gathered log-probs,
 *            argmax; plus the device's self-consistency (its lists and
 *            log-probs recomputed on the host from its own logits rows).
 *   logits   writes every position's float32 logits of given sequences, for
 *            tests/gpu/hf_ref.py to compare with transformers.
 *   teacher  times teacher forcing of random sequences with lr-infer
 *            follow-mode requests (own list kmax 32 + a 256-id gather per row).
 *
 * Without a usable GPU (and without --device cpu) every subcommand prints
 * "bench_gpu: skipped: <reason>" and exits 0, so `make bench` passes on
 * machines without one. --device cpu makes the cpu engine stand in for the
 * device (check then compares two cpu engines): the dry run of the script. */
#include "infer/compact.h"
#include "infer/engine.h"
#include "infer/gpu.h"
#include "model/lora.h"
#include "model/model.h"
#include "nn/gpu_train.h"
#include "base/rng.h"
#include "base/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: bench_gpu check [options] DIR [DIR...]\n"
    "       bench_gpu logits [options] DIR TOKENS_FILE OUT_FILE\n"
    "       bench_gpu teacher [options] DIR [--seqs N] [--len T] [--batch S] [--chunk R] [--peak TFLOPS]\n"
    "       bench_gpu decode [options] DIR [--batch B] [--prompt P] [--steps N] [--bw GBPS]\n"
    "                        [--temperature T [--top-p P] [--top-k K]] [--ahead]\n"
    "       bench_gpu nccl [options] DIR\n"
    "check: cpu (reference) vs the device on packed rows of several slots, a\n"
    "  prompt chunk then appended rows (the KV-cache path) and a slot reset;\n"
    "  one line per model; exit 5 when a bound is broken:\n"
    "  logits ||a-b||/||a|| per row <= 1e-2 (bf16; --bound X), no NaN rows, the device's\n"
    "  lists/gathered log-probs within 1e-3 of its own logits, cross-backend\n"
    "  log-prob differences within 2 max|logit diff| + 1e-3.\n"
    "logits: TOKENS_FILE is text, one sequence per line, token ids separated by\n"
    "  blanks. OUT_FILE: the 8 bytes \"LRLOGIT1\", int32 rows, int32 V (little\n"
    "  endian), then rows x V float32: every position of sequence 0, then of\n"
    "  sequence 1, ... (all sequences run packed in one call, slot i = line i).\n"
    "teacher: random tokens, S sequences per call (default 32) of T tokens\n"
    "  (default 400), N in all (default 256), chunks of R rows (default 4096);\n"
    "  one warm-up call first. Prints tok_s and GEMM TFLOP/s =\n"
    "  2 * (matmul parameters incl. lm_head) * tokens / time, and % of --peak\n"
    "  (default: 989 for an H100/H200 SXM, by the device name).\n"
    "decode: B sequences (default 1) of P random prompt tokens (default 128)\n"
    "  prefilled, then N greedy decode steps (default 64) of B rows, each\n"
    "  recording the generate mode's compact list (256 tokens), the argmax fed\n"
    "  back (on cuda from a CUDA graph after the first steps, LR_GPU_GRAPHS=0: not).\n"
    "  Prints tok_s and the memory-bandwidth roofline: bytes a step must\n"
    "  read (bf16 weights incl. lm_head, plus the KV cache at its mean length)\n"
    "  / step time, as % of --bw (default: 4800 GB/s H200, 3350 H100 SXM).\n"
    "  With --temperature T > 0 each step samples instead (on the device, one\n"
    "  uniform per row sent, the id back, as lr-infer does), the drawn token fed\n"
    "  back. With --ahead each step is queued before the last one's results are\n"
    "  read, its tokens that step's picks on the device (engine.h eng_submit's\n"
    "  feed), as lr-infer's continuous batching runs; printed as ahead=on.\n"
    "nccl: the data-parallel gradient sum over NCCL as lr-tune makes it, on the\n"
    "  one card a machine may have: libnccl.so.2 loaded, a unique id, a world\n"
    "  of one rank joined, then the device trainer's LoRA gradient (q,v r 8 on\n"
    "  DIR, set to known values) all-reduced in place with scale 1 (must come\n"
    "  back bit for bit) and 0.5 (exactly halved). One line \"nccl ...\n"
    "  result=ok|FAIL|UNAVAILABLE|ERROR\" (UNAVAILABLE, exit 0: no NCCL here,\n"
    "  as on the emulated device; FAIL exits 5; ERROR: a call failed, its\n"
    "  message, exit 1-4). Two ranks need two cards.\n"
    "options: --device cuda|cpu (default cuda; cpu: the cpu engine stands in,\n"
    "  for dry runs)   --threads N (cpu threads, default all)\n"
    "  --profile (teacher, decode on cuda: after the timed run, the same calls\n"
    "    again (teacher: one call, decode: as many steps) with the kernel time\n"
    "    profile on (infer/gpu.h), printed as one line \"gpu_profile MODE DIR: ...\n"
    "    KIND_ms=.. KIND_pct=..\" and the table on stderr; the timed run stays\n"
    "    unprofiled)\n"
    "  --inject-error X (check: scale the device's logits by 1+X, to see check fail)\n"
    "Without a usable GPU and without --device cpu: prints\n"
    "  \"bench_gpu: skipped: <reason>\" and exits 0.\n";

typedef struct {
    eng_device dev;
    int dev_set, threads;
    double inject; /* check: scale the device's logits by 1 + inject (tests that check can fail) */
    double bound;  /* check: the logits relative error allowed (the bf16 bound, 1e-2) */
    int profile;   /* teacher, decode: a profiled pass after the timed one */
} opts;

/* The profile of the pass just run (wall_s measured around its calls), as
 * one key=value line. */
static void print_profile(const char *mode, const char *dir, const engine *e, int batch, double wall_s) {
    gpu_prof p;
    if (gpu_fwd_profile(e->gpu, &p)) return;
    double sum = 0;
    for (int k = 0; k < GPU_PROF_KINDS; k++) sum += p.ms[k];
    printf("gpu_profile %s %s: batch=%d calls=%ld events=%ld wall_ms=%.3f total_ms=%.3f sum_ms=%.3f", mode, dir, batch,
           p.calls, p.events, 1e3 * wall_s, p.total_ms, sum);
    for (int k = 0; k < GPU_PROF_KINDS; k++)
        printf(" %s_ms=%.3f %s_pct=%.1f", gpu_prof_kind(k), p.ms[k], gpu_prof_kind(k),
               p.total_ms > 0 ? 100 * p.ms[k] / p.total_ms : 0);
    printf("\n");
}

/* ---- per-call request and result buffers ---- */

typedef struct {
    size_t G;
    int kmax, ngid, V;
    eng_res r;
} resbuf;

static void res_alloc(resbuf *b, size_t G, int kmax, int ngid, int V, int logits) {
    memset(b, 0, sizeof *b);
    b->G = G, b->kmax = kmax, b->ngid = ngid, b->V = V;
    size_t g1 = G ? G : 1;
    if (kmax > 0) {
        b->r.k = xcalloc(g1, sizeof(int32_t));
        b->r.ids = xcalloc(g1 * (size_t)kmax, sizeof(int32_t));
        b->r.lps = xcalloc(g1 * (size_t)kmax, sizeof(float));
        b->r.tail = xcalloc(g1, sizeof(float));
    }
    if (ngid > 0) {
        b->r.glps = xcalloc(g1 * (size_t)ngid, sizeof(float));
        b->r.gtail = xcalloc(g1, sizeof(float));
    }
    b->r.argmax = xcalloc(g1, sizeof(int32_t));
    b->r.bad = xcalloc(g1, 1);
    if (logits) b->r.logits = xcalloc(g1 * (size_t)V, sizeof(float));
}

static void res_free(resbuf *b) {
    free(b->r.k), free(b->r.ids), free(b->r.lps), free(b->r.tail), free(b->r.glps), free(b->r.gtail);
    free(b->r.argmax), free(b->r.bad), free(b->r.logits);
    memset(b, 0, sizeof *b);
}

/* Gather lists: ngid ids per row (a hash of row and j, so both engines get
 * the same), the first one V (outside the vocabulary: must come back -inf). */
static void make_gather(int32_t *gids, size_t *goff, size_t G, int ngid, int V, uint64_t salt) {
    for (size_t g = 0; g <= G; g++) goff[g] = g * (size_t)ngid;
    for (size_t g = 0; g < G; g++)
        for (int j = 0; j < ngid; j++) {
            uint64_t h = lr_fnv1a64(LR_FNV_INIT ^ salt, &g, sizeof g);
            h = lr_fnv1a64(h, &j, sizeof j);
            gids[g * (size_t)ngid + j] = j == 0 ? V : (int32_t)(h % (uint64_t)V);
        }
}

/* ---- loading ---- */

static int load_ref(model *m, const char *dir) { return model_load(m, dir); }

/* The device gets a model_open'ed model (bf16 uploaded straight from the
 * safetensors mmap, the path lr-infer takes); the cpu a loaded one. */
static int load_dev(model *m, const char *dir, eng_device dev) {
    return dev == ENG_CUDA ? model_open(m, dir) : model_load(m, dir);
}

/* 0 when the device can be used; else prints the skip line and returns 1. */
static int skip_without_gpu(const opts *o) {
    if (o->dev == ENG_CPU) return 0;
    char why[256] = "";
    if (gpu_device_count(why, sizeof why) > 0) return 0;
    printf("bench_gpu: skipped: no usable CUDA device (%s; backend %s)\n", why, gpu_backend());
    return 1;
}

static const char *card_name(const opts *o, char *buf, size_t n) {
    if (o->dev == ENG_CPU) snprintf(buf, n, "cpu");
    else if (gpu_device_count(buf, n) < 1) snprintf(buf, n, "none");
    return buf;
}

/* ---- check ---- */

typedef struct {
    double *rel;          /* per compared row: ||a - b|| / ||a|| (L2 over the row) */
    double maxabs;        /* worst max|a - b| / max|a| over rows, reported */
    size_t n, cap;
    size_t top1_same, bad_ref, bad_dut, inf_mismatch;
    double overlap_sum;   /* per row |A and B| / max(|A|, |B|) */
    double lp_max, lp_excess, glp_max, glp_excess, tail_max;
    size_t self_ids_same, self_argmax_same;
    double self_lp, self_glp;
} cstats;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double dmax(double a, double b) { return a > b ? a : b; }

/* Compares row g of the reference (a) and the device (b) results. */
static void compare_row(cstats *s, const resbuf *A, const resbuf *Bb, size_t g, int32_t *heap, int32_t *ids2,
                        float *lps2, const cd_opts *co, const int32_t *gids) {
    int V = A->V, K = A->kmax, NG = A->ngid;
    const eng_res *a = &A->r, *b = &Bb->r;
    const float *la = a->logits + g * (size_t)V, *lb = b->logits + g * (size_t)V;
    s->bad_ref += a->bad[g], s->bad_dut += b->bad[g];
    if (a->bad[g] || b->bad[g]) return;
    double amax = 0, dmx = 0, a2 = 0, d2 = 0;
    for (int i = 0; i < V; i++) {
        double d = (double)la[i] - lb[i];
        amax = dmax(amax, fabs(la[i]));
        dmx = dmax(dmx, fabs(d));
        a2 += (double)la[i] * la[i], d2 += d * d;
    }
    if (s->n == s->cap) s->rel = xrealloc(s->rel, (s->cap = s->cap ? 2 * s->cap : 256) * sizeof *s->rel);
    s->rel[s->n++] = a2 > 0 ? sqrt(d2 / a2) : sqrt(d2);
    s->maxabs = dmax(s->maxabs, amax > 0 ? dmx / amax : dmx);
    s->top1_same += a->argmax[g] == b->argmax[g];
    /* cross-backend lists: overlap and log-prob differences on common ids;
     * |lp_a - lp_b| <= |dlogit| + |dlse| <= 2 max|dlogit| */
    int ka = a->k[g], kb = b->k[g], common = 0;
    const int32_t *ia = a->ids + g * (size_t)K, *ib = b->ids + g * (size_t)K;
    const float *pa = a->lps + g * (size_t)K, *pb = b->lps + g * (size_t)K;
    for (int i = 0; i < ka; i++)
        for (int j = 0; j < kb; j++)
            if (ia[i] == ib[j]) {
                common++;
                double d = fabs((double)pa[i] - pb[j]);
                s->lp_max = dmax(s->lp_max, d);
                s->lp_excess = dmax(s->lp_excess, d - 2 * dmx);
                break;
            }
    s->overlap_sum += (ka > kb ? ka : kb) > 0 ? (double)common / (ka > kb ? ka : kb) : 1;
    s->tail_max = dmax(s->tail_max, fabs((double)a->tail[g] - b->tail[g]));
    const float *ga = a->glps + g * (size_t)NG, *gb = b->glps + g * (size_t)NG;
    for (int j = 0; j < NG; j++) {
        if (isinf(ga[j]) || isinf(gb[j])) {
            s->inf_mismatch += !(isinf(ga[j]) && isinf(gb[j]) && ga[j] < 0 && gb[j] < 0);
            continue;
        }
        double d = fabs((double)ga[j] - gb[j]);
        s->glp_max = dmax(s->glp_max, d);
        s->glp_excess = dmax(s->glp_excess, d - 2 * dmx);
    }
    /* the device against its own logits row, reduced on the host */
    float tail2;
    int k2 = cd_select(lb, V, co, ids2, lps2, &tail2, heap);
    s->self_ids_same += k2 == kb && !memcmp(ids2, ib, (size_t)kb * sizeof *ib);
    double lse = cd_logsumexp(lb, V);
    for (int j = 0; j < kb; j++)
        if (ib[j] >= 0 && ib[j] < V) s->self_lp = dmax(s->self_lp, fabs(pb[j] - ((double)lb[ib[j]] - lse)));
        else s->self_lp = INFINITY;
    const int32_t *gl = gids + g * (size_t)NG;
    for (int j = 0; j < NG; j++) {
        if (gl[j] < 0 || gl[j] >= V) {
            if (!(isinf(gb[j]) && gb[j] < 0)) s->inf_mismatch++;
            continue;
        }
        s->self_glp = dmax(s->self_glp, fabs(gb[j] - ((double)lb[gl[j]] - lse)));
    }
    int best = 0;
    for (int i = 1; i < V; i++)
        if (lb[i] > lb[best]) best = i;
    s->self_argmax_same += best == b->argmax[g];
}

/* One eng_run on both engines with the same rows, then compare. */
static int run_both(engine *ref, engine *dut, int N, const int *tok, const int *seq, const unsigned char *want,
                    cstats *s, int kmax, int ngid, uint64_t salt, double inject) {
    const model *m = ref->m;
    int V = m->cfg.V;
    size_t G = 0;
    for (int i = 0; i < N; i++) G += !want || want[i];
    int32_t *gids = xmalloc((G ? G : 1) * (size_t)ngid * sizeof *gids);
    size_t *goff = xmalloc((G + 1) * sizeof *goff);
    make_gather(gids, goff, G, ngid, V, salt);
    eng_req q = {.co = {.mass = CD_DEFAULT_MASS, .kmax = kmax, .kmin = CD_DEFAULT_KMIN},
                 .gids = gids, .goff = goff, .logits = 1};
    resbuf A, B;
    res_alloc(&A, G, kmax, ngid, V, 1);
    res_alloc(&B, G, kmax, ngid, V, 1);
    int rc = eng_run(ref, N, tok, seq, want, &q, &A.r);
    if (!rc && (rc = eng_run(dut, N, tok, seq, want, &q, &B.r))) lr_err_prefix(rc, "device");
    for (size_t i = 0; !rc && inject != 0 && i < G * (size_t)V; i++) B.r.logits[i] *= (float)(1 + inject);
    if (!rc) {
        int32_t *heap = xmalloc((size_t)kmax * sizeof *heap), *ids2 = xmalloc((size_t)kmax * sizeof *ids2);
        float *lps2 = xmalloc((size_t)kmax * sizeof *lps2);
        for (size_t g = 0; g < G; g++) compare_row(s, &A, &B, g, heap, ids2, lps2, &q.co, gids);
        free(heap), free(ids2), free(lps2);
    }
    res_free(&A), res_free(&B);
    free(gids), free(goff);
    return rc;
}

/* Sequences of different lengths in S slots, run as: (a) the first half of
 * every sequence packed in one call (more rows than a chunk, with a want
 * mask); (b) the next quarter as contiguous blocks, slots in reverse order;
 * (c) the rest one row per slot per call (decode-like, interleaved);
 * (d) slot 0 reset and its whole sequence rerun in one call. */
enum { CK_S = 4, CK_CHUNK = 32, CK_KMAX = 256, CK_NGID = 64 };
static const int ck_len[CK_S] = {5, 37, 64, 97};

static int check_one(const char *dir, const opts *o, int *failed) {
    model mr, md;
    int rc = load_ref(&mr, dir);
    if (rc) return rc;
    if ((rc = load_dev(&md, dir, o->dev))) {
        model_free(&mr);
        return rc;
    }
    engine er, ed;
    int Tmax = ck_len[CK_S - 1] + 8;
    if ((rc = eng_init(&er, &mr, ENG_CPU, CK_S, Tmax, CK_CHUNK, CK_KMAX, o->threads))) goto out0;
    if ((rc = eng_init(&ed, &md, o->dev, CK_S, Tmax, CK_CHUNK, CK_KMAX, o->threads))) {
        lr_err_prefix(rc, "%s: device engine", dir);
        goto out1;
    }
    int V = mr.cfg.V, Vt = V < 151643 ? V : 151643; /* real Qwen: ids above are special/padding */
    int *toks[CK_S];
    for (int b = 0; b < CK_S; b++) {
        toks[b] = xmalloc((size_t)ck_len[b] * sizeof(int));
        for (int t = 0; t < ck_len[b]; t++) toks[b][t] = (int)(((uint64_t)(b + 1) * 2654435761u + t * 40503u) % Vt);
    }
    int total = 0;
    for (int b = 0; b < CK_S; b++) total += ck_len[b];
    int *tok = xmalloc((size_t)total * sizeof *tok), *seq = xmalloc((size_t)total * sizeof *seq);
    unsigned char *want = xmalloc((size_t)total);
    cstats s;
    memset(&s, 0, sizeof s);
    int done[CK_S] = {0}, N = 0;
    /* (a) */
    for (int b = 0; b < CK_S; b++) {
        int n = ck_len[b] / 2;
        for (int t = 0; t < n; t++, N++) tok[N] = toks[b][t], seq[N] = b, want[N] = t % 3 != 1 || t == n - 1;
        done[b] = n;
    }
    rc = run_both(&er, &ed, N, tok, seq, want, &s, CK_KMAX, CK_NGID, 1, o->inject);
    /* (b) */
    N = 0;
    for (int b = CK_S - 1; b >= 0; b--) {
        int n = ck_len[b] / 4;
        for (int t = 0; t < n; t++, N++) tok[N] = toks[b][done[b] + t], seq[N] = b;
        done[b] += n;
    }
    if (!rc && N) rc = run_both(&er, &ed, N, tok, seq, NULL, &s, CK_KMAX, CK_NGID, 2, o->inject);
    /* (c) */
    for (int step = 0; !rc; step++) {
        N = 0;
        for (int b = 0; b < CK_S; b++)
            if (done[b] < ck_len[b]) tok[N] = toks[b][done[b]++], seq[N++] = b;
        if (!N) break;
        rc = run_both(&er, &ed, N, tok, seq, NULL, &s, CK_KMAX, CK_NGID, 3 + (uint64_t)step, o->inject);
    }
    /* (d) */
    if (!rc) {
        eng_reset(&er, 0), eng_reset(&ed, 0);
        for (N = 0; N < ck_len[0]; N++) tok[N] = toks[0][N], seq[N] = 0;
        rc = run_both(&er, &ed, N, tok, seq, NULL, &s, CK_KMAX, CK_NGID, 999, o->inject);
    }
    if (!rc) {
        double med = 0, mx = 0;
        if (s.n) {
            qsort(s.rel, s.n, sizeof *s.rel, cmp_double);
            med = s.rel[s.n / 2], mx = s.rel[s.n - 1];
        }
        double n = s.n ? (double)s.n : 1;
        char why[256] = "";
        size_t w = 0;
#define WHY(...) w += (size_t)snprintf(why + w, w < sizeof why ? sizeof why - w : 0, __VA_ARGS__)
        if (!s.n) WHY(" no rows compared;");
        if (mx > o->bound) WHY(" logits rel err %.3g > %g;", mx, o->bound);
        if (s.bad_dut || s.bad_ref) WHY(" NaN/inf rows ref %zu dev %zu;", s.bad_ref, s.bad_dut);
        if (s.inf_mismatch) WHY(" %zu gathered ids outside the vocabulary not -inf;", s.inf_mismatch);
        if (s.self_lp > 1e-3 || s.self_glp > 1e-3) WHY(" device lps vs its own logits %.3g/%.3g > 1e-3;", s.self_lp, s.self_glp);
        if (s.lp_excess > 1e-3 || s.glp_excess > 1e-3) WHY(" lp diff beyond 2 max|dlogit|;");
        if (s.self_argmax_same < s.n) WHY(" device argmax != argmax of its logits in %zu rows;", s.n - s.self_argmax_same);
        if (s.self_ids_same < 0.99 * n) WHY(" device lists != cd_select of its logits in %.1f%% rows;", 100 - 100 * s.self_ids_same / n);
        char card[256];
        printf("check %s: dev=%s card=\"%s\" rows=%zu rel_err_max=%.3g rel_err_med=%.3g maxabs_err=%.3g top1=%.2f%% "
               "list_overlap=%.2f%% lp_diff_max=%.3g gather_diff_max=%.3g tail_diff_max=%.3g self_ids=%.2f%% "
               "self_lp=%.3g self_gather=%.3g self_argmax=%.2f%% bound=%.3g result=%s%s\n",
               dir, eng_device_name(o->dev), card_name(o, card, sizeof card), s.n, mx, med, s.maxabs,
               100 * s.top1_same / n, 100 * s.overlap_sum / n, s.lp_max, s.glp_max, s.tail_max,
               100 * s.self_ids_same / n, s.self_lp, s.self_glp, 100 * s.self_argmax_same / n, o->bound,
               w ? "FAIL" : "ok", why);
        fflush(stdout);
        *failed |= w > 0;
    }
    for (int b = 0; b < CK_S; b++) free(toks[b]);
    free(tok), free(seq), free(want), free(s.rel);
    eng_free(&ed);
out1:
    eng_free(&er);
out0:
    model_free(&md), model_free(&mr);
    return rc;
}

/* ---- logits ---- */

static int read_tokens(const char *path, int **tok, int **lens, int *nseq, int *total) {
    FILE *f = fopen(path, "r");
    if (!f) return lr_err(LR_EIO, "%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0, tcap = 0;
    int ns = 0, nt = 0, rc = LR_OK;
    *tok = NULL, *lens = NULL;
    while (getline(&line, &cap, f) > 0) {
        char *p = line, *end;
        int n = 0;
        for (;;) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (v < 0 || v > 0x7fffffff) {
                rc = lr_err(LR_EINPUT, "%s: line %d: token %ld out of range", path, ns + 1, v);
                break;
            }
            if ((size_t)nt == tcap) *tok = xrealloc(*tok, (tcap = tcap ? 2 * tcap : 1024) * sizeof **tok);
            (*tok)[nt++] = (int)v, n++;
            p = end;
        }
        if (rc) break;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p) {
            rc = lr_err(LR_EINPUT, "%s: line %d: not a token id: \"%.*s\"", path, ns + 1, (int)strcspn(p, " \t\r\n"), p);
            break;
        }
        if (!n) continue;
        *lens = xrealloc(*lens, (size_t)(ns + 1) * sizeof **lens);
        (*lens)[ns++] = n;
    }
    free(line);
    fclose(f);
    if (!rc && !ns) rc = lr_err(LR_EINPUT, "%s: no sequences", path);
    *nseq = ns, *total = nt;
    return rc;
}

static int cmd_logits(int argc, char **argv, const opts *o) {
    if (argc != 3) return lr_err(LR_EUSAGE, "logits takes DIR TOKENS_FILE OUT_FILE (see --help)");
    if (skip_without_gpu(o)) return LR_OK;
    int *tok = NULL, *lens = NULL, ns = 0, nt = 0, rc = read_tokens(argv[1], &tok, &lens, &ns, &nt);
    if (rc) {
        free(tok), free(lens);
        return rc;
    }
    model m;
    if ((rc = load_dev(&m, argv[0], o->dev))) {
        free(tok), free(lens);
        return rc;
    }
    int V = m.cfg.V, Tmax = 0;
    for (int i = 0; i < ns; i++) Tmax = lens[i] > Tmax ? lens[i] : Tmax;
    for (int i = 0; i < nt && !rc; i++)
        if (tok[i] >= V) rc = lr_err(LR_EINPUT, "%s: token %d outside the vocabulary (%d)", argv[1], tok[i], V);
    engine e;
    if (!rc) rc = eng_init(&e, &m, o->dev, ns, Tmax, nt < 4096 ? nt : 4096, 0, o->threads);
    if (rc) {
        model_free(&m);
        return rc;
    }
    int *seq = xmalloc((size_t)nt * sizeof *seq);
    for (int i = 0, r = 0; i < ns; i++)
        for (int t = 0; t < lens[i]; t++) seq[r++] = i;
    resbuf R;
    res_alloc(&R, (size_t)nt, 0, 0, V, 1);
    eng_req q = {.co = {.kmax = 0}, .logits = 1};
    double t0 = lr_now();
    rc = eng_run(&e, nt, tok, seq, NULL, &q, &R.r);
    double dt = lr_now() - t0;
    if (!rc) {
        FILE *f = fopen(argv[2], "wb");
        int32_t hdr[2] = {nt, V};
        if (!f || fwrite("LRLOGIT1", 1, 8, f) != 8 || fwrite(hdr, sizeof hdr, 1, f) != 1 ||
            fwrite(R.r.logits, sizeof(float) * (size_t)V, (size_t)nt, f) != (size_t)nt)
            rc = lr_err(LR_EIO, "%s: cannot write", argv[2]);
        if (f && fclose(f) && !rc) rc = lr_err(LR_EIO, "%s: cannot write", argv[2]);
    }
    if (!rc) {
        size_t nbad = 0;
        for (int i = 0; i < nt; i++) nbad += R.r.bad[i];
        fprintf(stderr, "bench_gpu logits: %s: %d sequences, %d rows x %d on %s in %.2f s, %zu NaN rows -> %s\n",
                argv[0], ns, nt, V, eng_device_name(o->dev), dt, nbad, argv[2]);
    }
    res_free(&R);
    eng_free(&e);
    model_free(&m);
    free(seq), free(tok), free(lens);
    return rc;
}

/* ---- teacher ---- */

static double matmul_params(const mcfg *c) {
    double C = c->C, qd = (double)c->NH * c->HD, kvd = (double)c->NKV * c->HD;
    return (double)c->L * (C * qd + 2 * C * kvd + qd * C + 3 * C * c->I) + (double)c->V * C;
}

static double card_peak(const char *name) {
    if (strstr(name, "H100") && strstr(name, "PCIe")) return 756;
    if (strstr(name, "H100") && strstr(name, "NVL")) return 835;
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "GH200")) return 989;
    return 0;
}

static int cmd_teacher(int argc, char **argv, const opts *o) {
    const char *dir = NULL;
    int nseq = 256, len = 400, S = 32, chunk = 4096;
    double peak = -1;
    for (int i = 0; i < argc; i++) {
        int *iv = !strcmp(argv[i], "--seqs") ? &nseq : !strcmp(argv[i], "--len") ? &len
                  : !strcmp(argv[i], "--batch") ? &S : !strcmp(argv[i], "--chunk") ? &chunk : NULL;
        if ((iv || !strcmp(argv[i], "--peak")) && i + 1 < argc) {
            if (iv) *iv = atoi(argv[++i]);
            else peak = atof(argv[++i]);
        } else if (argv[i][0] == '-') return lr_err(LR_EUSAGE, "teacher: unknown or incomplete option %s", argv[i]);
        else if (dir) return lr_err(LR_EUSAGE, "teacher takes one DIR");
        else dir = argv[i];
    }
    if (!dir) return lr_err(LR_EUSAGE, "teacher needs DIR (see --help)");
    if (nseq < 1 || len < 2 || S < 1 || chunk < 1) return lr_err(LR_EUSAGE, "teacher: --seqs, --len, --batch, --chunk must be >= 1");
    if (skip_without_gpu(o)) return LR_OK;
    if (S > nseq) S = nseq;
    model m;
    int rc = load_dev(&m, dir, o->dev);
    if (rc) return rc;
    enum { KMAX = CD_FOLLOW_KMAX, NGID = 256 };
    int V = m.cfg.V, Vt = V < 151643 ? V : 151643;
    engine e;
    double ti = lr_now();
    if ((rc = eng_init(&e, &m, o->dev, S, len, chunk, KMAX, o->threads))) {
        model_free(&m);
        return rc;
    }
    double t_init = lr_now() - ti;
    size_t N = (size_t)S * len;
    int *tok = xmalloc(N * sizeof *tok), *seq = xmalloc(N * sizeof *seq);
    int32_t *gids = xmalloc(N * NGID * sizeof *gids);
    size_t *goff = xmalloc((N + 1) * sizeof *goff);
    make_gather(gids, goff, N, NGID, Vt, 7);
    for (size_t j = 0; j < N; j++) gids[j * NGID] = (int32_t)(j % (size_t)Vt); /* no out-of-vocab id here */
    eng_req q = {.co = {.mass = CD_DEFAULT_MASS, .kmax = KMAX, .kmin = CD_DEFAULT_KMIN}, .gids = gids, .goff = goff};
    resbuf R;
    res_alloc(&R, N, KMAX, NGID, V, 0);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    double t_run = 0;
    size_t tokens = 0, nbad = 0;
    int ncalls = (nseq + S - 1) / S;
    for (int c = -1; c < ncalls && !rc; c++) { /* c = -1: warm-up */
        int s = c < 0 ? S : (nseq - c * S < S ? nseq - c * S : S);
        size_t n = (size_t)s * len;
        for (size_t j = 0; j < n; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            tok[j] = (int)(x % (uint64_t)Vt), seq[j] = (int)(j / (size_t)len);
        }
        eng_reset(&e, -1);
        double t0 = lr_now();
        rc = eng_run(&e, (int)n, tok, seq, NULL, &q, &R.r);
        double dt = lr_now() - t0;
        if (c >= 0) t_run += dt, tokens += n;
        for (size_t j = 0; j < n && !rc; j++) nbad += R.r.bad[j];
    }
    double t_prof = 0;
    int profiled = !rc && o->profile && o->dev == ENG_CUDA;
    if (profiled && !(rc = gpu_fwd_set_profile(e.gpu, 1))) { /* the first call's shape again, profiled */
        eng_reset(&e, -1);
        double t0 = lr_now();
        rc = eng_run(&e, S * len, tok, seq, NULL, &q, &R.r);
        t_prof = lr_now() - t0;
    }
    if (!rc) {
        char card[256];
        card_name(o, card, sizeof card);
        if (peak < 0) peak = o->dev == ENG_CUDA ? card_peak(card) : 0;
        double tflops = 2 * matmul_params(&m.cfg) * (double)tokens / t_run / 1e12;
        printf("teacher %s: dev=%s card=\"%s\" seqs=%d len=%d batch=%d chunk=%d tokens=%zu init_s=%.2f run_s=%.3f "
               "tok_s=%.0f gemm_tflops=%.2f peak_tflops=%.0f peak_pct=%.1f nan_rows=%zu\n",
               dir, eng_device_name(o->dev), card, nseq, len, S, chunk, tokens, t_init, t_run, tokens / t_run, tflops,
               peak, peak > 0 ? 100 * tflops / peak : 0, nbad);
        if (profiled) print_profile("teacher", dir, &e, S, t_prof);
    }
    res_free(&R);
    free(tok), free(seq), free(gids), free(goff);
    eng_free(&e);
    model_free(&m);
    return rc;
}

/* ---- decode ---- */

static double card_bw(const char *name) {
    if (strstr(name, "H200") || strstr(name, "GH200")) return 4800;
    if (strstr(name, "H100") && strstr(name, "PCIe")) return 2000;
    if (strstr(name, "H100") && strstr(name, "NVL")) return 3900;
    if (strstr(name, "H100")) return 3350;
    return 0;
}

static int cmd_decode(int argc, char **argv, const opts *o) {
    const char *dir = NULL;
    int B = 1, P = 128, steps = 64, top_k = 0, ahead = 0;
    double bw = -1, temp = 0, top_p = 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--ahead")) {
            ahead = 1;
            continue;
        }
        int *iv = !strcmp(argv[i], "--batch") ? &B : !strcmp(argv[i], "--prompt") ? &P
                  : !strcmp(argv[i], "--steps") ? &steps : !strcmp(argv[i], "--top-k") ? &top_k : NULL;
        double *dv = !strcmp(argv[i], "--bw") ? &bw : !strcmp(argv[i], "--temperature") ? &temp
                     : !strcmp(argv[i], "--top-p") ? &top_p : NULL;
        if ((iv || dv) && i + 1 < argc) {
            if (iv) *iv = atoi(argv[++i]);
            else *dv = atof(argv[++i]);
        } else if (argv[i][0] == '-') return lr_err(LR_EUSAGE, "decode: unknown or incomplete option %s", argv[i]);
        else if (dir) return lr_err(LR_EUSAGE, "decode takes one DIR");
        else dir = argv[i];
    }
    if (!dir) return lr_err(LR_EUSAGE, "decode needs DIR (see --help)");
    if (B < 1 || P < 1 || steps < 2) return lr_err(LR_EUSAGE, "decode: --batch, --prompt >= 1, --steps >= 2");
    if (temp < 0 || !(top_p > 0 && top_p <= 1) || top_k < 0)
        return lr_err(LR_EUSAGE, "decode: --temperature >= 0, --top-p in (0, 1], --top-k >= 0");
    if (skip_without_gpu(o)) return LR_OK;
    model m;
    int rc = load_dev(&m, dir, o->dev);
    if (rc) return rc;
    const mcfg *c = &m.cfg;
    int profiled = o->profile && o->dev == ENG_CUDA;
    int V = c->V, Vt = V < 151643 ? V : 151643, Tmax = P + steps * (1 + profiled) + 1;
    engine e;
    if ((rc = eng_init(&e, &m, o->dev, B, Tmax, B * P, CD_DEFAULT_KMAX, o->threads))) {
        model_free(&m);
        return rc;
    }
    size_t N = (size_t)B * P;
    int *tok = xmalloc(N * sizeof *tok), *seq = xmalloc(N * sizeof *seq);
    unsigned char *want = xcalloc(N, 1);
    eng_req q = {.co = {.mass = CD_DEFAULT_MASS, .kmax = CD_DEFAULT_KMAX, .kmin = CD_DEFAULT_KMIN}};
    resbuf R, R2; /* R2: the results of the step queued behind R's (--ahead) */
    res_alloc(&R, (size_t)B, CD_DEFAULT_KMAX, 0, V, 0);
    res_alloc(&R2, (size_t)B, CD_DEFAULT_KMAX, 0, V, 0);
    /* sampling: one stream per slot, as lr-infer keeps one per problem */
    double *uni = xmalloc((size_t)B * sizeof *uni);
    int32_t *drawn = xmalloc((size_t)B * sizeof *drawn), *drawn2 = xmalloc((size_t)B * sizeof *drawn2);
    int *feed = xmalloc((size_t)B * sizeof *feed);
    uint64_t *streams = xmalloc((size_t)B * sizeof *streams);
    for (int b = 0; b < B; b++) streams[b] = rng_stream(1, (uint64_t)b);
    if (temp > 0) {
        q.uniform = uni, q.smp = (smp_opts){.temperature = temp, .top_p = top_p, .top_k = top_k};
        R.r.sampled = drawn, R2.r.sampled = drawn2;
        for (int b = 0; b < B; b++) uni[b] = rng_unit(&streams[b]);
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t j = 0; j < N; j++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tok[j] = (int)(x % (uint64_t)Vt), seq[j] = (int)(j / (size_t)P);
        want[j] = (j % (size_t)P) == (size_t)P - 1;
    }
    double t0 = lr_now();
    rc = eng_run(&e, (int)N, tok, seq, want, &q, &R.r); /* prefill: the last row of each slot */
    double t_prefill = lr_now() - t0, t_run = 0;
    size_t nbad = 0;
    for (int b = 0; b < B; b++) seq[b] = b, want[b] = 1;
    /* step 0 is a warm-up (first decode-shaped call), not timed */
    for (int st = 0; st < (ahead ? 1 : steps) && !rc; st++) {
        for (int b = 0; b < B; b++) tok[b] = temp > 0 && drawn[b] >= 0 ? drawn[b] : R.r.argmax[b];
        if (temp > 0)
            for (int b = 0; b < B; b++) uni[b] = rng_unit(&streams[b]);
        t0 = lr_now();
        rc = eng_run(&e, B, tok, seq, want, &q, &R.r);
        if (st > 0) t_run += lr_now() - t0;
        for (int b = 0; b < B && !rc; b++) nbad += R.r.bad[b];
    }
    if (ahead && !rc) { /* steps 1.. queued one ahead, each fed the picks of the one before */
        eng_res *res[2] = {&R.r, &R2.r};
        for (int b = 0; b < B; b++) tok[b] = temp > 0 && drawn[b] >= 0 ? drawn[b] : R.r.argmax[b], feed[b] = b;
        if (temp > 0)
            for (int b = 0; b < B; b++) uni[b] = rng_unit(&streams[b]);
        t0 = lr_now();
        rc = eng_submit(&e, B, tok, NULL, seq, want, &q, res[1]); /* step 1, from the warm-up's picks */
        for (int st = 1; st < steps && !rc; st++) {
            if (st + 1 < steps) {
                if (temp > 0)
                    for (int b = 0; b < B; b++) uni[b] = rng_unit(&streams[b]);
                rc = eng_submit(&e, B, tok, feed, seq, want, &q, res[(st + 1) % 2]);
            }
            if (!rc) rc = eng_collect(&e);
            for (int b = 0; b < B && !rc; b++) nbad += res[st % 2]->bad[b];
        }
        t_run = lr_now() - t0;
        while (eng_pending(&e)) (void)eng_collect(&e);
        if (res[(steps - 1) % 2] != &R.r) { /* the last step's picks, where the profiled pass reads them */
            memcpy(R.r.argmax, R2.r.argmax, (size_t)B * sizeof *R.r.argmax);
            if (temp > 0) memcpy(drawn, drawn2, (size_t)B * sizeof *drawn);
        }
    }
    /* the same number of steps again, profiled (the timed ones were not) */
    double t_prof = 0;
    if (!rc && profiled) rc = gpu_fwd_set_profile(e.gpu, 1);
    for (int st = 0; st < steps && !rc && profiled; st++) {
        for (int b = 0; b < B; b++) tok[b] = temp > 0 && drawn[b] >= 0 ? drawn[b] : R.r.argmax[b];
        if (temp > 0)
            for (int b = 0; b < B; b++) uni[b] = rng_unit(&streams[b]);
        t0 = lr_now();
        rc = eng_run(&e, B, tok, seq, want, &q, &R.r);
        t_prof += lr_now() - t0;
    }
    if (!rc) {
        char card[256];
        card_name(o, card, sizeof card);
        if (bw < 0) bw = o->dev == ENG_CUDA ? card_bw(card) : 0;
        int timed = steps - 1;
        double step_s = t_run / timed;
        /* what a step must read: every bf16 weight matrix once (embedding
         * rows are gathered, so only the lm_head counts for the vocabulary,
         * once even when tied), and each slot's K and V at its mean length */
        double wbytes = 2 * matmul_params(c);
        double ctx = P + 1 + timed / 2.0;
        double kvbytes = (double)B * ctx * c->L * 2.0 * c->NKV * c->HD * 2;
        double gbps = (wbytes + kvbytes) / step_s / 1e9;
        printf("decode %s: dev=%s card=\"%s\" batch=%d prompt=%d steps=%d prefill_s=%.3f step_ms=%.3f tok_s=%.0f "
               "bytes_per_step=%.4g gbps=%.1f bw_peak=%.0f roofline_pct=%.1f nan_rows=%zu",
               dir, eng_device_name(o->dev), card, B, P, steps, t_prefill, 1e3 * step_s, B / step_s,
               wbytes + kvbytes, gbps, bw, bw > 0 ? 100 * gbps / bw : 0, nbad);
        if (temp > 0) printf(" temperature=%g top_p=%g top_k=%d", temp, top_p, top_k);
        printf(" ahead=%s", ahead ? "on" : "off");
        if (o->dev == ENG_CUDA) { /* the timed steps' CUDA graphs (the profiled ones run plainly) */
            gpu_graph_stats gs;
            gpu_fwd_graph_stats(e.gpu, &gs);
            printf(" graphs=%s graph_replays=%ld graph_captures=%ld graph_failures=%ld", gs.enabled ? "on" : "off",
                   gs.replays, gs.captures, gs.failures);
        }
        printf("\n");
        if (profiled) print_profile(temp > 0 ? "decode-sampled" : "decode", dir, &e, B, t_prof);
    }
    res_free(&R), res_free(&R2);
    free(tok), free(seq), free(want), free(uni), free(drawn), free(drawn2), free(feed), free(streams);
    eng_free(&e);
    model_free(&m);
    return rc;
}

/* ---- nccl ---- */

/* Worst |got - want| over n floats, and how many differ at all. */
static size_t count_diff(const float *got, const float *want, size_t n, double *worst) {
    size_t bad = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof *got)) {
            double d = fabs((double)got[i] - want[i]);
            bad++;
            *worst = d > *worst || isnan(d) ? d : *worst;
        }
    return bad;
}

static int cmd_nccl(int argc, char **argv, const opts *o) {
    if (argc != 1) return lr_err(LR_EUSAGE, "nccl takes one DIR (see --help)");
    if (o->dev == ENG_CPU) {
        printf("nccl result=UNAVAILABLE why=\"--device cpu: NCCL sums device gradients\"\n");
        return LR_OK;
    }
    if (skip_without_gpu(o)) return LR_OK;
    if (gpu_nccl_load()) {
        printf("nccl result=UNAVAILABLE why=\"%s\"\n", lr_errmsg());
        return LR_OK;
    }
    model m;
    int rc = load_dev(&m, argv[0], o->dev);
    if (rc) return rc;
    lora lo;
    lora_alloc(&lo, &m.cfg, 8, 16, 0, (1u << LORA_Q) | (1u << LORA_V));
    lora_init(&lo, 1);
    gtrn_opts go = {.B = 1, .Tmax = 8, .maxN = 8, .precision = GTRN_BF16, .recompute = GTRN_RECOMPUTE_NEVER};
    gpu_trn *g = NULL;
    size_t n = lo.n;
    float *want = xmalloc(n * sizeof *want), *got = xmalloc(n * sizeof *got);
    /* values whose halving is exact: no subnormals, no zeros */
    uint64_t st = rng_stream(7, 0);
    for (size_t i = 0; i < n; i++) want[i] = (float)(rng_unit(&st) * 2 - 1) + (i & 1 ? 3.0f : -3.0f);
    unsigned char id[GPU_NCCL_ID_BYTES];
    double t0 = lr_now(), t_join = 0, worst1 = 0, worst2 = 0;
    size_t bad1 = 0, bad2 = 0;
    if (!(rc = gpu_trn_init(&g, &m, &lo, &go)) && !(rc = gpu_trn_put_grads(g, want)) && !(rc = gpu_nccl_id(id)) &&
        !(rc = gpu_trn_nccl_join(g, id, 0, 1))) {
        t_join = lr_now() - t0;
        if (!(rc = gpu_trn_allreduce(g, 1.0f)) && !(rc = gpu_trn_get(g, NULL, NULL, NULL, got))) {
            bad1 = count_diff(got, want, n, &worst1);
            for (size_t i = 0; i < n; i++) want[i] *= 0.5f;
            if (!(rc = gpu_trn_allreduce(g, 0.5f)) && !(rc = gpu_trn_get(g, NULL, NULL, NULL, got)))
                bad2 = count_diff(got, want, n, &worst2);
        }
    }
    if (rc) printf("nccl floats=%zu result=ERROR why=\"%s\"\n", n, lr_errmsg());
    else
        printf("nccl world=1 floats=%zu join_s=%.3f differ_scale1=%zu worst_scale1=%.3g differ_scale05=%zu "
               "worst_scale05=%.3g result=%s\n",
               n, t_join, bad1, worst1, bad2, worst2, bad1 || bad2 ? "FAIL" : "ok");
    fflush(stdout);
    gpu_trn_free(g);
    free(want), free(got);
    lora_free(&lo);
    model_free(&m);
    return rc ? rc : bad1 || bad2 ? 5 : LR_OK;
}

static int cmd_check(int argc, char **argv, const opts *o) {
    if (argc < 1) return lr_err(LR_EUSAGE, "check needs at least one DIR (see --help)");
    if (skip_without_gpu(o)) return LR_OK;
    int failed = 0;
    for (int i = 0; i < argc; i++) {
        int rc = check_one(argv[i], o, &failed);
        if (rc) {
            /* one broken model does not hide the others' lines */
            printf("check %s: dev=%s result=ERROR %s\n", argv[i], eng_device_name(o->dev), lr_errmsg());
            fflush(stdout);
            failed = 1;
        }
    }
    return failed ? 5 : LR_OK;
}

int main(int argc, char **argv) {
    lr_progname = "bench_gpu";
    opts o = {.dev = ENG_CUDA, .bound = 1e-2};
    /* options anywhere; the rest stay positional for the subcommand */
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            int rc = eng_parse_device(argv[++i], &o.dev);
            if (rc) return lr_fail(rc);
            o.dev_set = 1;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--inject-error") && i + 1 < argc) o.inject = atof(argv[++i]);
        else if (!strcmp(argv[i], "--bound") && i + 1 < argc) o.bound = atof(argv[++i]);
        else if (!strcmp(argv[i], "--profile")) o.profile = 1;
        else argv[++n] = argv[i];
    }
    argc = n + 1;
    if (argc < 2) {
        /* `make bench` runs every bench_* without arguments */
        if (skip_without_gpu(&o)) return 0;
        printf("bench_gpu: needs a subcommand; run through tests/gpu/run.sh (see --help)\n");
        return 0;
    }
    const char *cmd = argv[1];
    int rc;
    if (!strcmp(cmd, "check")) rc = cmd_check(argc - 2, argv + 2, &o);
    else if (!strcmp(cmd, "logits")) rc = cmd_logits(argc - 2, argv + 2, &o);
    else if (!strcmp(cmd, "teacher")) rc = cmd_teacher(argc - 2, argv + 2, &o);
    else if (!strcmp(cmd, "decode")) rc = cmd_decode(argc - 2, argv + 2, &o);
    else if (!strcmp(cmd, "nccl")) rc = cmd_nccl(argc - 2, argv + 2, &o);
    else rc = lr_err(LR_EUSAGE, "unknown subcommand %s (see --help)", cmd);
    if (rc == 5) return 5;
    return rc ? lr_fail(rc) : 0;
}
