/* kljoin: the expert/amateur join and KL selection on streams written here.
 * Every step lists the whole vocabulary with zero tails, so each step's KL
 * is the formula of METHOD.md step 6 evaluated directly below,
 *   sum_a (pE(a) + eps) log((pE(a) + eps) / (pA(a) + eps)),
 * and the selection, counts, histogram quantiles and the two controls
 * (lowest, random) are checked against those values. */
#include "check.h"
#include "tpath.h"
#include "method/kljoin.h"
#include "io/stream.h"
#include "base/rng.h"
#include "base/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { V = 4, NP = 6, T = 7, PL = 2, NSTEP = NP * (T - 1) };

static float lpE[NP][T][V], lpA[NP][T][V];
static int32_t tok[NP][T];
static double want_kl[NP][T];

/* Random log-softmax rows, and the formula's KL from the stored floats. */
static void make_data(void) {
    uint64_t s = 12345;
    for (int p = 0; p < NP; p++)
        for (int t = 0; t < T; t++) {
            for (int side = 0; side < 2; side++) {
                float *lp = side ? lpA[p][t] : lpE[p][t];
                double z[V], m = -1e9, sum = 0;
                for (int a = 0; a < V; a++) {
                    z[a] = 2.4 * ((double)(rng_next(&s) >> 11) / 9007199254740992.0) - 1.2;
                    if (z[a] > m) m = z[a];
                }
                for (int a = 0; a < V; a++) sum += exp(z[a] - m);
                for (int a = 0; a < V; a++) lp[a] = (float)(z[a] - m - log(sum));
            }
            tok[p][t] = (int32_t)(rng_next(&s) % V);
            double kl = 0;
            for (int a = 0; a < V; a++) {
                double pe = exp((double)lpE[p][t][a]) + 1e-12, pa = exp((double)lpA[p][t][a]) + 1e-12;
                kl += pe * log(pe / pa);
            }
            want_kl[p][t] = kl;
        }
}

/* One dist stream: the expert's (top_lp) or the amateur's following it
 * (ref_lp on the same ids). skip: a problem left out (-1: none); bad_tok: a
 * problem whose token 3 differs (-1: none). */
static void write_stream(const char *path, int amateur, int skip, int bad_tok) {
    static char *argv[] = {"test_kljoin"};
    lrs_header h;
    lrs_header_init(&h, "dist", 1, "test_kljoin", 1, argv);
    h.model.name = amateur ? "amateur" : "expert";
    h.model.hash = amateur ? "a1" : "e1";
    h.model.vocab = V;
    h.tokenizer.name = "tok";
    h.tokenizer.hash = "t0";
    h.tokenizer.vocab = V;
    lrs_writer *w;
    CHECK(lrs_open_write(&w, path, &h, NULL, NULL) == 0);
    for (int p = 0; p < NP; p++) {
        if (p == skip) continue;
        int32_t prompt[PL] = {1, (int32_t)p}, ks[T], ids[T * V], tk[T];
        float lp[T * V], tail[T];
        for (int t = 0; t < T; t++) {
            ks[t] = V, tail[t] = 0, tk[t] = tok[p][t];
            for (int a = 0; a < V; a++) {
                ids[t * V + a] = (int32_t)(V - 1 - a); /* any order: the ids say which is which */
                lp[t * V + a] = (amateur ? lpA : lpE)[p][t][V - 1 - a];
            }
        }
        if (p == bad_tok) tk[3] = (tk[3] + 1) % V;
        msgpack_packer *pk = lrs_pk(w);
        char id[32];
        snprintf(id, sizeof id, "toy/train:%d", p);
        msgpack_pack_map(pk, amateur ? 11 : 9);
        lrs_pack_cstr(pk, "id"); lrs_pack_cstr(pk, id);
        lrs_pack_cstr(pk, "idx"); msgpack_pack_int64(pk, p);
        lrs_pack_cstr(pk, "prompt"); lrs_pack_i32s(pk, prompt, PL);
        lrs_pack_cstr(pk, "tokens"); lrs_pack_i32s(pk, tk, T);
        lrs_pack_cstr(pk, "finish"); lrs_pack_cstr(pk, "length");
        lrs_pack_cstr(pk, "k"); lrs_pack_i32s(pk, ks, T);
        lrs_pack_cstr(pk, "top_ids"); lrs_pack_i32s(pk, ids, T * V);
        lrs_pack_cstr(pk, "top_lp"); lrs_pack_f32s(pk, lp, T * V);
        lrs_pack_cstr(pk, "tail"); lrs_pack_f32s(pk, tail, T);
        if (amateur) {
            lrs_pack_cstr(pk, "ref_lp"); lrs_pack_f32s(pk, lp, T * V);
            lrs_pack_cstr(pk, "ref_tail"); lrs_pack_f32s(pk, tail, T);
        }
        CHECK(lrs_record_done(w) == 0);
    }
    CHECK(lrs_close(w) == 0);
}

typedef struct {
    int64_t idx, step;
    double kl;
} got_step;

/* Reads a kl stream back, checking each record's context and token. */
static int read_kl(const char *path, got_step *g) {
    lrs_reader *r;
    int n = 0, rc = lrs_open_read(&r, path, "kl");
    CHECK(rc == 0);
    if (rc) return 0;
    const msgpack_object *rec;
    int32_t *ctx = NULL;
    size_t cap = 0, nctx;
    while (lrs_next(r, &rec) == 1 && n < NSTEP) {
        int64_t tokv, plen;
        CHECK(lrs_get_int(r, rec, "idx", &g[n].idx) == 0 && lrs_get_int(r, rec, "step", &g[n].step) == 0);
        CHECK(lrs_get_f64(r, rec, "kl", &g[n].kl) == 0);
        CHECK(lrs_get_int(r, rec, "token", &tokv) == 0 && lrs_get_int(r, rec, "prompt_len", &plen) == 0);
        CHECK(lrs_get_i32s(r, rec, "context", &ctx, &cap, &nctx) == 0);
        int p = (int)g[n].idx, t = (int)g[n].step, ok = plen == PL && nctx == (size_t)(PL + t) && tokv == tok[p][t];
        for (int j = 0; ok && j < t; j++) ok = ctx[PL + j] == tok[p][j];
        CHECKF(ok && ctx[1] == p, "problem %d step %d: context or token", p, t);
        n++;
    }
    free(ctx);
    lrs_close_read(r);
    return n;
}

static klj_opts opts(const char *e, const char *a, const char *out) {
    static char *argv[] = {"test_kljoin"};
    return (klj_opts){.expert = e, .amateur = a, .out = out, .beta = 0.4, .select = KLJ_KL, .seed = 1,
                      .zstd_level = 1, .argc = 1, .argv = argv};
}

static int cmp_kl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    const char *t = getenv("LR_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s", t ? t : "/tmp");
    make_data();
    char E[600], A[600];
    snprintf(E, sizeof E, "%s", tpath("e.lrs"));
    snprintf(A, sizeof A, "%s", tpath("a.lrs"));
    write_stream(E, 0, -1, -1);
    write_stream(A, 1, -1, -1);
    double sorted[NSTEP], kmax = 0;
    int nsel = 0;
    for (int p = 0, i = 0; p < NP; p++)
        for (int s = 1; s < T; s++, i++) {
            sorted[i] = want_kl[p][s];
            nsel += want_kl[p][s] >= 0.4;
            if (want_kl[p][s] > kmax) kmax = want_kl[p][s];
        }
    qsort(sorted, NSTEP, sizeof *sorted, cmp_kl);
    CHECKF(nsel > 3 && nsel < NSTEP - 3, "%d of %d steps above beta: the data do not test selection", nsel, NSTEP);

    /* KL selection: exactly the steps t >= 1 with KL >= beta, in stream order */
    klj_opts o = opts(E, A, tpath("kl.lrs"));
    klj_stats st;
    CHECK(klj_run(&o, &st) == 0);
    CHECK(st.problems == NP && st.steps == NSTEP && st.kept == (uint64_t)nsel && st.exact == 0 && st.undecided == 0);
    CHECK_CLOSE(st.kl_max, kmax, 1e-9, 1e-9);
    got_step g[NSTEP];
    int n = read_kl(o.out, g), i = 0;
    CHECK(n == nsel);
    for (int p = 0; p < NP; p++)
        for (int s = 1; s < T; s++)
            if (want_kl[p][s] >= 0.4 && i < n) {
                CHECKF(g[i].idx == p && g[i].step == s, "record %d: problem %lld step %lld, want %d %d", i,
                       (long long)g[i].idx, (long long)g[i].step, p, s);
                CHECK_CLOSE(g[i].kl, want_kl[p][s], 1e-9, 1e-9);
                i++;
            }
    uint64_t hs = 0, hk = 0;
    for (int b = 0; b < KLJ_HN; b++) hs += st.hist_seen[b], hk += st.hist_kept[b];
    CHECK(hs == NSTEP && hk == (uint64_t)nsel);
    /* quantiles: the upper edge of the bin holding the order statistic */
    double med = sorted[(int)ceil(0.5 * NSTEP) - 1], q50 = klj_quantile(&st, 0.5), q100 = klj_quantile(&st, 1.0);
    CHECKF(q50 >= med && q50 <= med + KLJ_HBIN + 1e-12, "p50 %g, median %g", q50, med);
    CHECKF(q100 >= kmax && q100 <= kmax + KLJ_HBIN + 1e-12, "p100 %g, max %g", q100, kmax);
    /* the TSV histogram holds every step once */
    FILE *f = fopen(tpath("hist.tsv"), "w+");
    CHECK(f != NULL);
    if (f) {
        klj_write_hist(&st, f);
        rewind(f);
        char line[256];
        uint64_t rows_s = 0, rows_k = 0;
        CHECK(fgets(line, sizeof line, f) && !strcmp(line, "kl_lo\tkl_hi\tsteps\tkept\n"));
        double lo, hi;
        unsigned long long a, b;
        while (fgets(line, sizeof line, f) && sscanf(line, "%lf\t%lf\t%llu\t%llu", &lo, &hi, &a, &b) == 4) {
            CHECK_CLOSE(hi - lo, 0.05, 1e-9, 0);
            rows_s += a, rows_k += b;
        }
        CHECK(rows_s == NSTEP && rows_k == (uint64_t)nsel && hi >= kmax);
        fclose(f);
    }
    klj_stats_free(&st);

    /* beta 0 keeps every step t >= 1 */
    o.beta = 0;
    CHECK(klj_run(&o, &st) == 0 && st.kept == NSTEP && read_kl(o.out, g) == NSTEP);
    klj_stats_free(&st);
    o.beta = 0.4;

    /* lowest: as many steps as KL selection keeps, the lowest KL ones */
    o.select = KLJ_LOWEST;
    o.out = tpath("low.lrs");
    CHECK(klj_run(&o, &st) == 0 && st.kept == (uint64_t)nsel);
    CHECK_CLOSE(st.kl_max, kmax, 1e-9, 1e-9); /* the first pass's statistics */
    n = read_kl(o.out, g);
    CHECK(n == nsel);
    for (int k = 0; k < n; k++) CHECKF(g[k].kl <= sorted[nsel - 1] + 1e-12, "lowest kept KL %g", g[k].kl);
    for (int k = 1; k < n; k++) CHECK(g[k].idx > g[k - 1].idx || (g[k].idx == g[k - 1].idx && g[k].step > g[k - 1].step));
    klj_stats_free(&st);

    /* random: as many distinct steps, the same ones for the same seed */
    o.select = KLJ_RANDOM;
    o.seed = 7;
    got_step g2[NSTEP];
    CHECK(klj_run(&o, &st) == 0 && st.kept == (uint64_t)nsel);
    klj_stats_free(&st);
    n = read_kl(o.out, g);
    o.out = tpath("rand2.lrs");
    CHECK(klj_run(&o, &st) == 0);
    klj_stats_free(&st);
    CHECK(n == nsel && read_kl(o.out, g2) == n);
    int same = 1, above = 0;
    for (int k = 0; k < n; k++) {
        same &= g[k].idx == g2[k].idx && g[k].step == g2[k].step;
        above += g[k].kl >= 0.4;
        if (k) CHECK(g[k].idx > g[k - 1].idx || (g[k].idx == g[k - 1].idx && g[k].step > g[k - 1].step));
    }
    CHECK(same);
    fprintf(stderr, "random: %d of %d drawn steps have KL >= beta\n", above, n);

    /* the two-pass modes need files */
    o.expert = "-";
    CHECK(klj_run(&o, &st) == LR_EUSAGE && strstr(lr_errmsg(), "reads the inputs twice"));
    klj_stats_free(&st);

    /* a problem missing from the amateur: refused, or counted with allow_missing */
    char M[600];
    snprintf(M, sizeof M, "%s", tpath("a_miss.lrs"));
    write_stream(M, 1, 2, -1);
    o = opts(E, M, tpath("miss.lrs"));
    CHECK(klj_run(&o, &st) == LR_EINPUT && strstr(lr_errmsg(), "problem 2"));
    CHECK(access(o.out, F_OK) != 0); /* no partial output under the final name */
    klj_stats_free(&st);
    o.allow_missing = 1;
    CHECK(klj_run(&o, &st) == 0 && st.problems == NP - 1 && st.only_expert == 1 && st.only_amateur == 0);
    CHECK(st.steps == (NP - 1) * (T - 1));
    klj_stats_free(&st);
    char EM[600]; /* and one missing from the expert */
    snprintf(EM, sizeof EM, "%s", tpath("e_miss.lrs"));
    write_stream(EM, 0, 4, -1);
    o = opts(EM, A, tpath("miss2.lrs"));
    o.allow_missing = 1;
    CHECK(klj_run(&o, &st) == 0 && st.problems == NP - 1 && st.only_expert == 0 && st.only_amateur == 1);
    klj_stats_free(&st);

    /* an amateur that did not follow the expert's tokens */
    snprintf(M, sizeof M, "%s", tpath("a_tok.lrs"));
    write_stream(M, 1, -1, 4);
    o = opts(E, M, tpath("tok.lrs"));
    CHECK(klj_run(&o, &st) == LR_EINPUT && strstr(lr_errmsg(), "field \"tokens\"") && strstr(lr_errmsg(), "at step 3"));
    CHECK(access(o.out, F_OK) != 0);
    klj_stats_free(&st);

    klj_select sel;
    CHECK(klj_select_from_name("lowest", &sel) == 0 && sel == KLJ_LOWEST && !strcmp(klj_select_name(sel), "lowest"));
    CHECK(klj_select_from_name("kl", &sel) == 0 && sel == KLJ_KL);
    CHECK(klj_select_from_name("highest", &sel) == -1);
    CHECK_DONE();
}
