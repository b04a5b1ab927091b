/* tune: see tune.h. */
#include "method/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "method/objective.h"
#include "base/util.h"

int tuner_init(tuner *tu, model *m, lora *lo, int objective, int vlim, int pack, int max_rows, int max_len, int max_seqs,
               float lr, float beta1, float beta2, float eps, float wd, float clip) {
    memset(tu, 0, sizeof *tu);
    if (max_rows < max_len) max_rows = max_len;
    tu->m = m, tu->lo = lo, tu->objective = objective, tu->vlim = vlim, tu->pack = pack;
    tu->max_rows = max_rows, tu->clip = clip;
    tu->chunk_floats = 32u << 20;
    tu->B = max_seqs, tu->Tmax = max_len;
    int rc = trn_init(&tu->t, m, lo, max_seqs, max_len, max_rows);
    if (rc) return rc;
    if (lo) {
        lora_alloc_like(&tu->glo, lo);
        tu->params = lo->mem, tu->grads = tu->glo.mem, tu->n = lo->n;
    } else {
        tu->gmem = trn_grads(m, &tu->gw);
        tu->params = m->mem, tu->grads = tu->gmem, tu->n = m->nparams;
    }
    adamw_init(&tu->opt, tu->n, lr, beta1, beta2, eps, wd);
    size_t V = (size_t)m->cfg.V;
    tu->dz = xmalloc(V * sizeof(float)); /* logits: grown to the loss rows of a call */
    return LR_OK;
}

void tuner_free(tuner *tu) {
    gpu_trn_free(tu->gpu);
    trn_free(&tu->t);
    if (tu->lo) lora_free(&tu->glo);
    free(tu->gmem);
    adamw_free(&tu->opt);
    free(tu->logits);
    free(tu->dlogits);
    free(tu->dz);
    memset(tu, 0, sizeof *tu);
}

int tuner_use_gpu(tuner *tu) {
    gtrn_opts o = {.B = tu->B, .Tmax = tu->Tmax, .maxN = tu->max_rows, .precision = tu->precision, .chunk_floats = tu->chunk_floats,
                   .recompute = tu->recompute, .mem_budget = tu->mem_budget};
    int rc = gpu_trn_init(&tu->gpu, tu->m, tu->lo, &o);
    if (rc) return rc;
    if ((rc = tuner_upload(tu))) return rc;
    trn_free(&tu->t); /* the device keeps the activations */
    return LR_OK;
}

int tuner_download(const tuner *tu) { return tu->gpu ? gpu_trn_get(tu->gpu, tu->params, tu->opt.m, tu->opt.v, NULL) : LR_OK; }

const char *tuner_precision(const tuner *tu) { return tu->gpu && tu->precision == GTRN_BF16 ? "bf16" : "f32"; }

const char *tuner_recompute(const tuner *tu) { return tu->gpu && gpu_trn_recomputes(tu->gpu, NULL, NULL) ? "on" : "off"; }

int tuner_upload(tuner *tu) { return tu->gpu ? gpu_trn_put(tu->gpu, tu->params, tu->opt.m, tu->opt.v) : LR_OK; }

/* Why NCCL cannot sum over the ranks of c, into why[n] (empty: it can).
 * Every rank gets the same answer: each puts whether it trains on the
 * device, whether it can load NCCL and a hash of its card's UUID at its
 * own index, and one sum gives every rank all of them. A rank without
 * NCCL would leave the others waiting in ncclCommInitRank; two ranks on
 * one card fail there. */
static int nccl_blocker(tuner *tu, comm *c, char *why, size_t n) {
    int W = comm_world(c), r = comm_rank(c), rc = LR_OK;
    double *v = xcalloc((size_t)3 * W, sizeof *v);
    unsigned char uuid[16];
    char load_why[160] = "";
    if (tu->gpu) {
        v[r] = 1;
        if (!gpu_nccl_load()) v[W + r] = 1;
        else snprintf(load_why, sizeof load_why, "%s", lr_errmsg());
        /* 48 bits of the UUID's hash, 1 added: exact in a double, 0 for a
         * card that cannot be told (this rank still takes part in the sum,
         * so that the others do not wait for it) */
        if (!gpu_trn_device_uuid(tu->gpu, uuid))
            v[2 * W + r] = (double)(lr_fnv1a64(0xcbf29ce484222325ULL, uuid, sizeof uuid) >> 16) + 1;
    }
    if ((rc = comm_sum_f64(c, v, (size_t)3 * W))) goto out;
    why[0] = 0;
    for (int k = 0; k < W && !why[0]; k++)
        if (!v[k]) snprintf(why, n, "rank %d trains on the cpu", k);
        else if (!v[2 * W + k]) snprintf(why, n, "rank %d cannot tell which card it is on", k);
    for (int a = 0; a < W && !why[0]; a++)
        for (int b = a + 1; b < W && !why[0]; b++)
            if (v[2 * W + a] == v[2 * W + b]) snprintf(why, n, "ranks %d and %d are on one card, and NCCL wants a card a rank", a, b);
    for (int k = 0; k < W && !why[0]; k++)
        if (!v[W + k]) snprintf(why, n, "rank %d cannot load NCCL%s%.100s", k, k == r && load_why[0] ? ": " : "", k == r ? load_why : "");
out:
    free(v);
    return rc;
}

int tuner_use_comm(tuner *tu, comm *c, int backend, const char **how) {
    tu->dp = c;
    *how = "one process";
    if (!c) return LR_OK;
    if (backend == TUNER_DP_HOST) {
        *how = tu->gpu ? "gradients summed through the hosts over TCP (--dp-backend host)" : "gradients summed over TCP";
        return LR_OK;
    }
    char why[160];
    int rc = nccl_blocker(tu, c, why, sizeof why);
    if (rc) return rc;
    unsigned char id[1 + GPU_NCCL_ID_BYTES] = {0};
    if (!why[0]) {
        if (!comm_rank(c)) id[0] = !gpu_nccl_id(id + 1);
        if ((rc = comm_bcast(c, id, sizeof id))) return rc;
        if (!id[0]) snprintf(why, sizeof why, "rank 0 could not make NCCL's unique id");
    }
    if (why[0] && backend == TUNER_DP_NCCL) return lr_err(LR_EUSAGE, "--dp-backend nccl: %s", why);
    if (why[0]) {
        if (tu->gpu) snprintf(tu->dp_how, sizeof tu->dp_how, "gradients summed through the hosts over TCP (not NCCL: %.150s)", why);
        *how = tu->gpu ? tu->dp_how : "gradients summed over TCP";
        return LR_OK;
    }
    if ((rc = gpu_trn_nccl_join(tu->gpu, id + 1, comm_rank(c), comm_world(c)))) return rc;
    tu->nccl = 1;
    *how = "gradients summed by NCCL";
    return LR_OK;
}

int tuner_bcast_state(tuner *tu, long *step) {
    if (!tu->dp) return LR_OK;
    int rc = tuner_download(tu);
    int64_t k[5] = {*step, tu->opt.t, tu->calls, tu->rows_fwd, tu->examples};
    size_t b = tu->n * sizeof(float);
    if (!rc) rc = comm_bcast(tu->dp, k, sizeof k);
    if (!rc) rc = comm_bcast(tu->dp, tu->params, b);
    if (!rc) rc = comm_bcast(tu->dp, tu->opt.m, b);
    if (!rc) rc = comm_bcast(tu->dp, tu->opt.v, b);
    if (rc) return rc;
    *step = (long)k[0], tu->opt.t = (long)k[1], tu->calls = (long)k[2], tu->rows_fwd = (long)k[3], tu->examples = (long)k[4];
    return tuner_upload(tu);
}

void tuner_begin_step(tuner *tu, long step) {
    if (!tu->dp) return;
    uint64_t key = (uint64_t)step * (uint64_t)comm_world(tu->dp) + (uint64_t)comm_rank(tu->dp);
    tu->calls = (long)((key << 24) & 0x7fffffffffffffffULL); /* 2^24 calls a step before the next key */
}

int tuner_sum_grads(tuner *tu) {
    if (!tu->dp) return LR_OK;
    if (tu->nccl) return gpu_trn_allreduce(tu->gpu, 1.0f);
    int rc = tu->gpu ? gpu_trn_get(tu->gpu, NULL, NULL, NULL, tu->grads) : LR_OK;
    if (!rc) rc = comm_sum_f32(tu->dp, tu->grads, tu->n, 1.0);
    if (!rc && tu->gpu) rc = gpu_trn_put_grads(tu->gpu, tu->grads);
    return rc;
}

int tuner_zero_grad(tuner *tu) {
    if (tu->gpu) return gpu_trn_zero_grad(tu->gpu);
    memset(tu->grads, 0, tu->n * sizeof(float));
    return LR_OK;
}

/* tuner_update on the device: the same norm, clip and AdamW, the Adam step
 * counted here as adamw_step counts it */
static int update_gpu(tuner *tu, float lr, double *norm) {
    int finite = 1;
    adamw *o = &tu->opt;
    int rc = gpu_trn_update(tu->gpu, lr, o->beta1, o->beta2, o->eps, o->wd, o->t + 1, tu->clip, norm, &finite);
    if (rc) return rc;
    if (!isfinite(*norm)) return lr_err(LR_EINPUT, "gradient norm %g: not finite", *norm);
    o->t++;
    if (finite) return LR_OK;
    if ((rc = gpu_trn_get(tu->gpu, tu->params, NULL, NULL, NULL))) return rc;
    for (size_t i = 0; i < tu->n; i++)
        if (!isfinite(tu->params[i]))
            return lr_err(LR_EINPUT, "parameter %zu is %g after the AdamW update (lr %g, eps %g)", i, (double)tu->params[i],
                          (double)lr, (double)o->eps);
    return lr_err(LR_EINPUT, "a parameter is not finite after the AdamW update (lr %g, eps %g)", (double)lr, (double)o->eps);
}

int tuner_update(tuner *tu, float lr, double *norm) {
    if (tu->gpu) return update_gpu(tu, lr, norm);
    *norm = grad_clip(tu->grads, tu->n, tu->clip);
    if (!isfinite(*norm)) return lr_err(LR_EINPUT, "gradient norm %g: not finite", *norm);
    adamw_step(&tu->opt, tu->params, tu->grads, lr);
    for (size_t i = 0; i < tu->n; i++)
        if (!isfinite(tu->params[i]))
            return lr_err(LR_EINPUT, "parameter %zu is %g after the AdamW update (lr %g, eps %g)", i, (double)tu->params[i],
                          (double)lr, (double)tu->opt.eps);
    return LR_OK;
}

/* a loss row: trainer row `row` carries example `ex` (SFT: its token `tok`) */
typedef struct {
    int row, ex, tok;
} loss_row;

static int cmp_row(const void *a, const void *b) {
    const loss_row *x = a, *y = b;
    return x->row != y->row ? (x->row > y->row) - (x->row < y->row) : (x->ex > y->ex) - (x->ex < y->ex);
}

/* is a[0..na) a prefix of b[0..nb) or the other way round? */
static int prefix_related(const int *a, int na, const int *b, int nb) {
    int n = na < nb ? na : nb;
    return !memcmp(a, b, (size_t)n * sizeof(int));
}

/* run_call's trainer call on the device: the loss entries lr[0..nl) in
 * their order (by row, then example), the same dropout seed sequence, the
 * losses summed in the same order. A NaN entry loss is a target the
 * objective rejects: the CPU objective, run on zero logits, names it. */
static int call_gpu(tuner *tu, const tune_example *ex, const loss_row *lr, int nl, int N, const int *tok, const int *seq,
                    const int *qpos, double scale, double *loss) {
    int V = tu->m->cfg.V, sft = tu->objective == TUNE_SFT;
    int *row = xmalloc((size_t)(nl ? nl : 1) * sizeof(int));
    int32_t *tgt = NULL, *ids = NULL;
    float *w = NULL;
    int64_t *off = xmalloc(((size_t)nl + 1) * sizeof(int64_t));
    off[0] = 0;
    for (int k = 0; k < nl; k++) row[k] = lr[k].row, off[k + 1] = off[k] + (sft ? 0 : ex[lr[k].ex].nt);
    if (sft) {
        tgt = xmalloc((size_t)(nl ? nl : 1) * sizeof(int32_t));
        for (int k = 0; k < nl; k++) tgt[k] = lr[k].tok;
    } else {
        ids = xmalloc((size_t)(off[nl] ? off[nl] : 1) * sizeof(int32_t));
        w = xmalloc((size_t)(off[nl] ? off[nl] : 1) * sizeof(float));
        for (int k = 0; k < nl; k++) {
            const tune_example *e = &ex[lr[k].ex];
            for (int j = 0; j < e->nt; j++) ids[off[k] + j] = e->ids[j], w[off[k] + j] = e->w[j];
        }
    }
    gtrn_loss L = {sft ? GTRN_CE : GTRN_SOFTKL, nl, tu->vlim, (float)scale, row, off, ids, w, tgt};
    double *el = xmalloc((size_t)(nl ? nl : 1) * sizeof(double));
    int training = tu->dropout_on && tu->lo && tu->lo->dropout > 0.0f;
    uint64_t seed = tu->seed * 0x100000001b3ULL + (uint64_t)tu->calls++;
    int rc = gpu_trn_call(tu->gpu, N, tok, seq, qpos, training, seed, &L, el);
    if (!rc) tu->rows_fwd += N;
    for (int k = 0; k < nl && !rc; k++) {
        const tune_example *e = &ex[lr[k].ex];
        if (isnan(el[k])) {
            float *z = xcalloc((size_t)V, sizeof(float));
            double l0;
            rc = sft ? obj_ce(z, V, tu->vlim, lr[k].tok, 1.0f, tu->dz, &l0) : obj_softkl(z, V, tu->vlim, e->ids, e->w, e->nt, 1.0f, tu->dz, &l0);
            free(z);
            if (!rc) rc = lr_err(LR_EINPUT, "loss not finite");
            lr_err_prefix(rc, "example (problem %lld, step %d)", (long long)e->problem, e->step);
            break;
        }
        *loss += scale * el[k];
    }
    free(row), free(tgt), free(ids), free(w), free(off), free(el);
    return rc;
}

/* Runs one trainer call over groups g0..g1 (rows laid out group after
 * group), then the objective and the backward. */
static int run_call(tuner *tu, const tune_example *ex, const int *grp_rep, const int *ex_grp, int n, int g0, int g1,
                    double scale, double *loss) {
    const mcfg *c = &tu->m->cfg;
    size_t V = (size_t)c->V;
    int N = 0;
    int *off = xmalloc((size_t)(g1 - g0) * sizeof(int));
    for (int g = g0; g < g1; g++) off[g - g0] = N, N += ex[grp_rep[g]].ntok;
    int *tok = xmalloc((size_t)N * sizeof(int)), *seq = xmalloc((size_t)N * sizeof(int)), *qpos = NULL;
    for (int g = g0; g < g1; g++) {
        const tune_example *e = &ex[grp_rep[g]];
        memcpy(tok + off[g - g0], e->tokens, (size_t)e->ntok * sizeof(int));
        for (int i = 0; i < e->ntok; i++) seq[off[g - g0] + i] = g - g0;
        if (e->query_pos > 0) {
            if (!qpos) memset(qpos = xmalloc((size_t)N * sizeof(int)), -1, (size_t)N * sizeof(int));
            qpos[off[g - g0] + e->ntok - 1] = e->query_pos;
        }
    }
    /* the loss rows of every example of these groups */
    int nl = 0, cap = 16;
    loss_row *lr = xmalloc((size_t)cap * sizeof *lr);
    for (int i = 0; i < n; i++) {
        if (ex_grp[i] < g0 || ex_grp[i] >= g1) continue;
        int o = off[ex_grp[i] - g0];
        int first = tu->objective == TUNE_SFT ? ex[i].nprompt - 1 : ex[i].ntok - 1;
        for (int r = first; r <= ex[i].ntok - 1; r++) {
            if (tu->objective == TUNE_SFT && r == ex[i].ntok - 1) break; /* nothing after the last token */
            if (nl == cap) lr = xrealloc(lr, (size_t)(cap *= 2) * sizeof *lr);
            lr[nl++] = (loss_row){o + r, i, tu->objective == TUNE_SFT ? ex[i].tokens[r + 1] : -1};
        }
    }
    qsort(lr, (size_t)nl, sizeof *lr, cmp_row);
    int *want = xmalloc((size_t)(nl ? nl : 1) * sizeof(int)), nw = 0;
    for (int k = 0; k < nl; k++)
        if (!nw || want[nw - 1] != lr[k].row) want[nw++] = lr[k].row;
    int rc = LR_OK;
    if (nw > tu->max_rows) rc = lr_err(LR_EUSAGE, "tune: %d loss rows in one call, at most %d (--max-rows)", nw, tu->max_rows);
    if (tu->gpu) { /* the device runs the rest of the call */
        if (!rc) rc = call_gpu(tu, ex, lr, nl, N, tok, seq, qpos, scale, loss);
        goto out;
    }
    /* logits in chunks of at most ~32M floats (SFT: hundreds of rows of a
     * 151,936-wide vocabulary) */
    int chunk = (int)(tu->chunk_floats / V);
    if (chunk < 1) chunk = 1;
    if (chunk > nw) chunk = nw;
    if (!rc && chunk > tu->logits_rows) {
        tu->logits_rows = chunk;
        tu->logits = xrealloc(tu->logits, (size_t)chunk * V * sizeof(float));
        tu->dlogits = xrealloc(tu->dlogits, (size_t)chunk * V * sizeof(float));
    }
    if (!rc) {
        tu->t.training = tu->dropout_on && tu->lo && tu->lo->dropout > 0.0f;
        tu->t.drop_seed = tu->seed * 0x100000001b3ULL + (uint64_t)tu->calls++;
        tu->t.query_pos = qpos;
        rc = trn_forward(&tu->t, N, tok, seq, nw, want, NULL);
    }
    const model_weights *gw = tu->lo ? NULL : &tu->gw;
    if (!rc) tu->rows_fwd += N;
    for (int r0 = 0, k = 0, w = -1; r0 < nw && !rc; r0 += chunk) {
        int r1 = r0 + chunk < nw ? r0 + chunk : nw;
        trn_logits(&tu->t, r0, r1, tu->logits);
        memset(tu->dlogits, 0, (size_t)(r1 - r0) * V * sizeof(float));
        /* the loss rows of want[r0..r1): lr is sorted by row, w tracks want */
        for (; k < nl && !rc; k++) {
            if (w < 0 || want[w] != lr[k].row) w++;
            if (w >= r1) {
                w--; /* the next chunk's row: step back and leave */
                break;
            }
            const tune_example *e = &ex[lr[k].ex];
            const float *z = tu->logits + (size_t)(w - r0) * V;
            double l = 0.0;
            if (tu->objective == TUNE_SFT) rc = obj_ce(z, (int)V, tu->vlim, lr[k].tok, (float)scale, tu->dz, &l);
            else rc = obj_softkl(z, (int)V, tu->vlim, e->ids, e->w, e->nt, (float)scale, tu->dz, &l);
            if (rc) {
                lr_err_prefix(rc, "example (problem %lld, step %d)", (long long)e->problem, e->step);
                break;
            }
            *loss += scale * l;
            float *d = tu->dlogits + (size_t)(w - r0) * V;
            for (size_t a = 0; a < V; a++) d[a] += tu->dz[a];
        }
        if (!rc) trn_logits_backward(&tu->t, r0, r1, tu->dlogits, gw);
    }
    if (!rc) trn_backward(&tu->t, NULL, gw, tu->lo ? &tu->glo : NULL);
    tu->t.query_pos = NULL;
out:
    free(qpos);
    free(off);
    free(tok);
    free(seq);
    free(lr);
    free(want);
    return rc;
}

int tuner_accumulate(tuner *tu, const tune_example *ex, int n, double scale, double *loss) {
    /* groups: one sequence each; with packing, prefix-related soft-KL
     * contexts of one problem share the longest one */
    int *grp_rep = xmalloc((size_t)(n ? n : 1) * sizeof(int)), *ex_grp = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    int ng = 0, rc = LR_OK;
    for (int i = 0; i < n && !rc; i++) {
        if (ex[i].ntok < 1 || ex[i].ntok > tu->Tmax)
            rc = lr_err(LR_EINPUT, "example (problem %lld, step %d): %d tokens, need 1..%d (--max-len)",
                        (long long)ex[i].problem, ex[i].step, ex[i].ntok, tu->Tmax);
        else if (tu->objective == TUNE_SFT && (ex[i].nprompt < 1 || ex[i].nprompt >= ex[i].ntok))
            rc = lr_err(LR_EINPUT, "example (problem %lld): empty prompt or response", (long long)ex[i].problem);
        for (int j = 0; j < ex[i].ntok && !rc; j++)
            if (ex[i].tokens[j] < 0 || ex[i].tokens[j] >= tu->m->cfg.V)
                rc = lr_err(LR_EINPUT, "example (problem %lld, step %d): token %d at position %d is outside the model's vocabulary [0, %d)",
                            (long long)ex[i].problem, ex[i].step, ex[i].tokens[j], j, tu->m->cfg.V);
        if (rc) break;
        int g = -1;
        if (tu->pack && tu->objective == TUNE_SOFTKL && ex[i].query_pos <= 0)
            for (int k = 0; k < ng && g < 0; k++) {
                const tune_example *r = &ex[grp_rep[k]];
                if (r->query_pos <= 0 && r->problem == ex[i].problem && prefix_related(r->tokens, r->ntok, ex[i].tokens, ex[i].ntok)) g = k;
            }
        if (g < 0) grp_rep[g = ng++] = i;
        else if (ex[i].ntok > ex[grp_rep[g]].ntok) grp_rep[g] = i;
        ex_grp[i] = g;
    }
    /* calls: consecutive groups while rows and slots fit */
    for (int g0 = 0; g0 < ng && !rc;) {
        int g1 = g0, rows = 0;
        while (g1 < ng && g1 - g0 < tu->B && rows + ex[grp_rep[g1]].ntok <= tu->max_rows) rows += ex[grp_rep[g1++]].ntok;
        rc = run_call(tu, ex, grp_rep, ex_grp, n, g0, g1, scale, loss);
        g0 = g1;
    }
    if (!rc) tu->examples += n;
    free(grp_rep);
    free(ex_grp);
    return rc;
}
