/* The trainer's tensor-core attention (cuda/attention_tc_train.cu), the
 * backward (backward.h k_attention_backward_tc) against the float32 one
 * (k_attention_backward, itself checked against the CPU by
 * test_gpu_backward) and the forward (train_forward.h k_attention_tc_f32)
 * against k_attention_f32 (the float32 trainer's, which test_gpu_trainer
 * checks against the CPU through the losses and gradients), on the
 * emulated device, over the rows the trainer packs: several slots of different
 * lengths with their rows interleaved, one slot longer than a key tile
 * (64), a cache whose last key tile is partial (Tmax 80), query-only rows,
 * N = 1.
 *
 * Bound, from bf16 (u = 2^-9): the tensor-core kernel rounds q, dout and
 * the cache to bf16 before its products, and P and dS before theirs. The
 * first part alone is measured here: the float32 reference run on inputs
 * rounded to bf16 moves by e_in from its run on the inputs themselves
 * (max |diff| / max |ref| per tensor, a few u at these shapes). Rounding P
 * and dS is one more relative u on each term of a sum of the same terms,
 * so the kernel's error e_tc is of the same order as e_in; it must stay
 * under TC_MULT * e_in. A wrong mask, a missing scale or a wrong operand
 * moves results by O(1) relative, far past that. The stats (lse, delta)
 * are bounded likewise against the reference's own stats. Rows no query
 * reaches must come back bit for bit. The forward is bounded the same way
 * (it rounds q, the cache and P); its lse sums P unrounded, so it must be
 * the reference's on the bf16 inputs to 1e-5 as the backward's stats are.
 * The backward runs twice: on its own (two passes over the keys, lse and
 * delta recomputed), and in one pass from the forward's lse and its output
 * rounded to bf16 (as the trainer keeps it), delta = dO . O; the latter
 * under the same 3 e_in against the float32 reference, delta included
 * (O carries the forward's bf16 error, so no 1e-5 for it). */
#include "check.h"
#include "randf.h"

#include "../../cuda/backward.h"
#include "../../cuda/devmem.h"
#include "../../cuda/train_forward.h"
#include "io/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TC_MULT 3.0

static float *fround(const float *x, size_t n) { /* x rounded to bf16 */
    float *p = fcopy(x, n);
    for (size_t i = 0; i < n; i++) p[i] = st_bf16_to_f32(st_f32_to_bf16(x[i]));
    return p;
}

static void *up(const void *h, size_t bytes) {
    void *d;
    if (dev_upload(&d, h, bytes ? bytes : 1)) exit(2);
    return d;
}
static void down(void *h, void *d, size_t bytes) {
    if (dev_download(h, d, bytes ? bytes : 1)) exit(2);
    dev_free(d);
}


typedef struct {
    float *dq, *dk, *dv, *stats;
} grads;

/* One backward from the same starting gradients; tc: the tensor-core one,
 * in one pass from the forward's lse and bf16 output o16 (N * NH, and N x
 * NH*HD) unless lse is NULL */
static grads run(int tc, const float *lse, const uint16_t *o16, const float *q, const float *go, const float *kc,
                 const float *vc, const float *dq0, const float *dk0, const float *dv0, const int *seq, const int *pos,
                 int N, int NH, int NKV, int HD, int B, int Tmax) {
    size_t nq = (size_t)N * NH * HD, csz = (size_t)B * NKV * Tmax * HD, ns = (size_t)2 * N * NH;
    grads g = {fcopy(dq0, nq), fcopy(dk0, csz), fcopy(dv0, csz), calloc(ns, sizeof(float))};
    float *ddq = up(g.dq, nq * 4), *ddk = up(g.dk, csz * 4), *ddv = up(g.dv, csz * 4), *dst = up(g.stats, ns * 4);
    float *dgo = up(go, nq * 4), *dqq = up(q, nq * 4), *dkc = up(kc, csz * 4), *dvc = up(vc, csz * 4);
    int *dpos = up(pos, (size_t)N * 4), *dseq = up(seq, (size_t)N * 4);
    int rc;
    if (tc) {
        attb_tile *tiles = malloc((size_t)N * sizeof *tiles);
        int *rows = malloc((size_t)N * sizeof *rows), *sfirst = malloc((size_t)(B + 1) * sizeof *sfirst);
        int nt = attb_tc_tiles(tiles, rows, sfirst, seq, pos, N, B, NH / NKV);
        void *dt = up(tiles, (size_t)nt * sizeof *tiles), *dr = up(rows, (size_t)N * 4), *dsf = up(sfirst, (size_t)(B + 1) * 4);
        float *dl = lse ? up(lse, (size_t)N * NH * 4) : NULL;
        uint16_t *dob = lse ? up(o16, nq * 2) : NULL;
        rc = k_attention_backward_tc(ddq, ddk, ddv, dst, dl, dob, dgo, dqq, dkc, dvc, dpos, dt, nt, dr, dsf, N, NH, NKV,
                                     HD, B, Tmax, NULL);
        dev_free(dt), dev_free(dr), dev_free(dsf), dev_free(dl), dev_free(dob);
        free(tiles), free(rows), free(sfirst);
    } else
        rc = k_attention_backward(ddq, ddk, ddv, dst, dgo, dqq, dkc, dvc, dseq, dpos, N, NH, NKV, HD, B, Tmax, NULL);
    CHECKF(rc == 0, "attention backward%s NH %d NKV %d HD %d: rc %d", tc ? " tc" : "", NH, NKV, HD, rc);
    down(g.dq, ddq, nq * 4), down(g.dk, ddk, csz * 4), down(g.dv, ddv, csz * 4), down(g.stats, dst, ns * 4);
    dev_free(dgo), dev_free(dqq), dev_free(dkc), dev_free(dvc), dev_free(dpos), dev_free(dseq);
    return g;
}
/* The forward's output (N, NH*HD), from a random start it must overwrite;
 * tc with lse: its lse too (N * NH, likewise) */
static float *fwd(int tc, float *lse, const float *q, const float *kc, const float *vc, const int *seq, const int *pos, int N, int NH,
                  int NKV, int HD, int B, int Tmax) {
    size_t nq = (size_t)N * NH * HD, csz = (size_t)B * NKV * Tmax * HD;
    float *out = frand(nq, 100);
    float *dout = up(out, nq * 4), *dqq = up(q, nq * 4), *dkc = up(kc, csz * 4), *dvc = up(vc, csz * 4);
    int *dpos = up(pos, (size_t)N * 4), *dseq = up(seq, (size_t)N * 4), rc = 0;
    if (tc) {
        attb_tile *tiles = malloc((size_t)N * sizeof *tiles);
        int *rows = malloc((size_t)N * sizeof *rows), *sfirst = malloc((size_t)(B + 1) * sizeof *sfirst);
        int nt = attb_tc_tiles(tiles, rows, sfirst, seq, pos, N, B, NH / NKV);
        void *dt = up(tiles, (size_t)nt * sizeof *tiles), *dr = up(rows, (size_t)N * 4);
        float *dl = NULL;
        if (lse) {
            float *r = frand((size_t)N * NH, 100);
            dl = up(r, (size_t)N * NH * 4);
            free(r);
        }
        rc = k_attention_tc_f32(dout, dl, dqq, dkc, dvc, dpos, dt, nt, dr, N, NH, NKV, HD, Tmax, NULL);
        if (lse) down(lse, dl, (size_t)N * NH * 4);
        dev_free(dt), dev_free(dr);
        free(tiles), free(rows), free(sfirst);
    } else
        k_attention_f32(dout, dqq, dkc, dvc, dseq, dpos, N, NH, NKV, HD, Tmax, NULL);
    CHECKF(rc == 0, "attention forward tc NH %d NKV %d HD %d: rc %d", NH, NKV, HD, rc);
    down(out, dout, nq * 4);
    dev_free(dqq), dev_free(dkc), dev_free(dvc), dev_free(dpos), dev_free(dseq);
    return out;
}

static void grads_free(grads *g) { free(g->dq), free(g->dk), free(g->dv), free(g->stats); }

/* Slot 0: `long0` rows (70: more than one key tile), interleaved with slot 1's
 * 6 rows; slot 2: 10 rows, then a query-only row (attending to the same
 * keys as the row before it); slot 1 a seventh row after them; slot 3 one
 * row at Tmax - 1 (80 keys: a full tile and a partial one). single: N = 1. */
static void test_case(int NH, int NKV, int HD, int long0, int single) {
    int B = 4, Tmax = 80, QD = NH * HD;
    int seq[128], pos[128], N = 0, n1 = 0;
    if (single) {
        seq[N] = 2, pos[N++] = 37;
    } else {
        for (int t = 0; t < long0; t++) {
            seq[N] = 0, pos[N++] = t;
            if (t % 5 == 2 && n1 < 6) seq[N] = 1, pos[N++] = n1++;
        }
        for (int t = 0; t < 10; t++) seq[N] = 2, pos[N++] = t;
        seq[N] = 2, pos[N++] = 9; /* query-only: pos the slot's last row's */
        seq[N] = 1, pos[N++] = n1;
        seq[N] = 3, pos[N++] = Tmax - 1;
    }
    size_t nq = (size_t)N * QD, csz = (size_t)B * NKV * Tmax * HD;
    float *q = frand(nq, 3), *go = frand(nq, 1), *kc = frand(csz, 1), *vc = frand(csz, 1);
    float *dq0 = frand(nq, 1), *dk0 = frand(csz, 1), *dv0 = frand(csz, 1);
    float *qb = fround(q, nq), *gob = fround(go, nq), *kcb = fround(kc, csz), *vcb = fround(vc, csz);
    clock_t c0 = clock();
    grads r = run(0, NULL, NULL, q, go, kc, vc, dq0, dk0, dv0, seq, pos, N, NH, NKV, HD, B, Tmax);
    grads rb = run(0, NULL, NULL, qb, gob, kcb, vcb, dq0, dk0, dv0, seq, pos, N, NH, NKV, HD, B, Tmax);
    clock_t c1 = clock();
    grads t = run(1, NULL, NULL, q, go, kc, vc, dq0, dk0, dv0, seq, pos, N, NH, NKV, HD, B, Tmax);
    clock_t c2 = clock();
    size_t ns = (size_t)N * NH;
    double in[5] = {check_delta_err(rb.dq, r.dq, dq0, nq), check_delta_err(rb.dk, r.dk, dk0, csz), check_delta_err(rb.dv, r.dv, dv0, csz),
                    check_rel_err(rb.stats, r.stats, ns), check_rel_err(rb.stats + ns, r.stats + ns, ns)};
    double tc[5] = {check_delta_err(t.dq, r.dq, dq0, nq), check_delta_err(t.dk, r.dk, dk0, csz), check_delta_err(t.dv, r.dv, dv0, csz),
                    check_rel_err(t.stats, r.stats, ns), check_rel_err(t.stats + ns, r.stats + ns, ns)};
    const char *name[5] = {"dq", "dk", "dv", "lse", "delta"};
    fprintf(stderr, "attention tc NH %d NKV %d HD %d N %d (%.1f s fma, %.1f s tc):", NH, NKV, HD, N,
            (double)(c1 - c0) / CLOCKS_PER_SEC / 2, (double)(c2 - c1) / CLOCKS_PER_SEC);
    for (int i = 0; i < 5; i++) fprintf(stderr, " %s %.2e (in %.2e)", name[i], tc[i], in[i]);
    fprintf(stderr, "\n");
    for (int i = 0; i < 5; i++)
        CHECKF(tc[i] <= TC_MULT * in[i] && in[i] < 0.05, "attention tc NH %d NKV %d HD %d N %d: %s %g, bf16 inputs move it by %g",
               NH, NKV, HD, N, name[i], tc[i], in[i]);
    /* the stats against the reference's on the same bf16 inputs: both
     * exact products summed in float, so float32 rounding apart */
    double sb = check_rel_err(t.stats, rb.stats, ns), db = check_rel_err(t.stats + ns, rb.stats + ns, ns);
    CHECKF(sb < 1e-5 && db < 1e-5, "attention tc NH %d NKV %d HD %d N %d: stats vs bf16 inputs: lse %g delta %g", NH,
           NKV, HD, N, sb, db);
    /* rows no query reaches: untouched, as in the reference */
    size_t bad = 0;
    for (size_t i = 0; i < csz; i++)
        if (r.dk[i] == dk0[i] && r.dv[i] == dv0[i]) bad += t.dk[i] != dk0[i] || t.dv[i] != dv0[i];
    CHECKF(bad == 0, "attention tc NH %d NKV %d HD %d: %zu unreached cache values changed", NH, NKV, HD, bad);
    grads_free(&t);
    /* the forward, with its lse */
    float *o = fwd(0, NULL, q, kc, vc, seq, pos, N, NH, NKV, HD, B, Tmax);
    float *ob = fwd(0, NULL, qb, kcb, vcb, seq, pos, N, NH, NKV, HD, B, Tmax);
    float *lse = malloc(ns * sizeof *lse), *ot = fwd(1, lse, q, kc, vc, seq, pos, N, NH, NKV, HD, B, Tmax);
    double fin = check_rel_err(ob, o, nq), ftc = check_rel_err(ot, o, nq);
    double fl = check_rel_err(lse, r.stats, ns), flb = check_rel_err(lse, rb.stats, ns);
    fprintf(stderr, "attention forward tc NH %d NKV %d HD %d N %d: out %.2e (in %.2e) lse %.2e (in %.2e; %.2e vs bf16 inputs)\n",
            NH, NKV, HD, N, ftc, fin, fl, in[3], flb);
    CHECKF(ftc <= TC_MULT * fin && fin < 0.05, "attention forward tc NH %d NKV %d HD %d N %d: %g, bf16 inputs move it by %g",
           NH, NKV, HD, N, ftc, fin);
    /* its lse sums P unrounded: the reference's on the same bf16 inputs, float32 rounding apart */
    CHECKF(flb < 1e-5 && fl <= TC_MULT * in[3], "attention forward tc NH %d NKV %d HD %d N %d: lse %g (%g vs bf16 inputs)",
           NH, NKV, HD, N, fl, flb);
    /* delta = dO . O from the forward's O: float32 or rounded to bf16 (the
     * trainer keeps the latter), against the reference's sum_t p_t dp_t */
    uint16_t *o16 = malloc(nq * sizeof *o16);
    float *df = malloc(ns * sizeof *df), *dh = malloc(ns * sizeof *dh);
    for (size_t i = 0; i < nq; i++) o16[i] = st_f32_to_bf16(ot[i]);
    for (size_t i = 0; i < ns; i++) {
        double a = 0.0, b = 0.0;
        for (int d = 0; d < HD; d++) {
            size_t at = i * HD + d; /* (n, h) at n * NH + h: row n's head h */
            a += (double)go[at] * ot[at], b += (double)go[at] * st_bf16_to_f32(o16[i * HD + d]);
        }
        df[i] = (float)a, dh[i] = (float)b;
    }
    /* the one-pass backward from them */
    clock_t c3 = clock();
    grads u = run(1, lse, o16, q, go, kc, vc, dq0, dk0, dv0, seq, pos, N, NH, NKV, HD, B, Tmax);
    clock_t c4 = clock();
    double one[5] = {check_delta_err(u.dq, r.dq, dq0, nq), check_delta_err(u.dk, r.dk, dk0, csz), check_delta_err(u.dv, r.dv, dv0, csz),
                     check_rel_err(u.stats, r.stats, ns), check_rel_err(u.stats + ns, r.stats + ns, ns)};
    fprintf(stderr, "attention tc one pass NH %d NKV %d HD %d N %d (%.1f s): delta from O f32 %.2e, bf16 %.2e;", NH, NKV,
            HD, N, (double)(c4 - c3) / CLOCKS_PER_SEC, check_rel_err(df, r.stats + ns, ns), check_rel_err(dh, r.stats + ns, ns));
    for (int i = 0; i < 5; i++) fprintf(stderr, " %s %.2e", name[i], one[i]);
    fprintf(stderr, "\n");
    for (int i = 0; i < 5; i++)
        CHECKF(one[i] <= TC_MULT * in[i], "attention tc one pass NH %d NKV %d HD %d N %d: %s %g, bf16 inputs move it by %g",
               NH, NKV, HD, N, name[i], one[i], in[i]);
    CHECKF(check_rel_err(u.stats, lse, ns) == 0.0, "attention tc one pass NH %d NKV %d HD %d N %d: stats' lse is not the forward's",
           NH, NKV, HD, N);
    bad = 0;
    for (size_t i = 0; i < csz; i++)
        if (r.dk[i] == dk0[i] && r.dv[i] == dv0[i]) bad += u.dk[i] != dk0[i] || u.dv[i] != dv0[i];
    CHECKF(bad == 0, "attention tc one pass NH %d NKV %d HD %d: %zu unreached cache values changed", NH, NKV, HD, bad);
    grads_free(&r), grads_free(&rb), grads_free(&u);
    free(lse), free(o16), free(df), free(dh);
    free(o), free(ob), free(ot);
    free(q), free(go), free(kc), free(vc), free(dq0), free(dk0), free(dv0), free(qb), free(gob), free(kcb), free(vcb);
}

/* The host's tiles: every row once, a tile's rows of its slot in position
 * order, at most 64 / G of them, last their largest position */
static void test_tiles(void) {
    int seq[] = {1, 0, 1, 1, 0, 2, 1, 1, 1}, pos[] = {0, 0, 1, 2, 1, 0, 4, 3, 3}, N = 9, B = 4, G = 16; /* 4 rows a tile */
    attb_tile tiles[9];
    int rows[9], sfirst[5], seen[9] = {0};
    int nt = attb_tc_tiles(tiles, rows, sfirst, seq, pos, N, B, G);
    CHECK(nt == 4 && sfirst[0] == 0 && sfirst[1] == 1 && sfirst[2] == 3 && sfirst[3] == 4 && sfirst[4] == 4);
    for (int i = 0; i < nt; i++) {
        const attb_tile *t = &tiles[i];
        CHECK(t->n >= 1 && t->n <= 4 && i >= sfirst[t->slot] && i < sfirst[t->slot + 1]);
        for (int j = 0; j < t->n; j++) {
            int n = rows[t->first + j];
            seen[n]++;
            CHECK(seq[n] == t->slot && pos[n] <= t->last && (j == 0 || pos[rows[t->first + j - 1]] <= pos[n]));
        }
        CHECK(pos[rows[t->first + t->n - 1]] == t->last);
    }
    for (int n = 0; n < N; n++) CHECK(seen[n] == 1);
}

static void test_limits(void) {
    CHECK(attb_tc_serves(12, 2, 128) && attb_tc_serves(14, 2, 64) && attb_tc_serves(4, 2, 64));
    CHECK(!attb_tc_serves(6, 6, 12) && !attb_tc_serves(2, 1, 144) && !attb_tc_serves(3, 2, 64) &&
          !attb_tc_serves(130, 2, 64));
    CHECK(attb_tc_smem(128) <= 227 * 1024); /* sm_90's opt-in a block */
    float x = 0;
    int s = 0;
    attb_tile t = {0, 1, 0, 0};
    CHECK(k_attention_backward_tc(&x, &x, &x, &x, NULL, NULL, &x, &x, &x, &x, &s, &t, 1, &s, &s, 1, 2, 1, 12, 1, 8, NULL) == -1);
    CHECK(k_attention_backward_tc(&x, &x, &x, &x, &x, NULL, &x, &x, &x, &x, &s, &t, 1, &s, &s, 1, 2, 1, 16, 1, 8, NULL) ==
          -1); /* lse without o */
    CHECK(k_attention_tc_f32(&x, NULL, &x, &x, &x, &s, &t, 1, &s, 1, 2, 1, 12, 8, NULL) == -1);
}

int main(void) {
    randf_state = 20261202;
    CHECK_SEED(randf_state);
    test_tiles();
    test_limits();
    test_case(12, 2, 128, 40, 0); /* 6:1 at HD 128, Qwen2.5-Math-1.5B's shape */
    test_case(4, 2, 64, 70, 0);   /* 2:1: 32 rows a tile, slot 0 over two key tiles */
    test_case(14, 2, 64, 30, 0);  /* 7:1, Qwen2.5-0.5B's */
    test_case(12, 2, 128, 0, 1);  /* N = 1 */
    CHECK_DONE();
}
