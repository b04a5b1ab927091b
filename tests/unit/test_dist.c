/* test_dist: the method's maths (lib/method/dist) against the NumPy
 * transcription of METHOD.md in tests/ref/dist_ref.py, through the golden
 * cases it wrote to tests/golden/dist_cases.txt (random, ties at the alpha
 * threshold, zero probabilities, one-token masks, very peaked and very flat
 * distributions, different vocabulary sizes), to 1e-6; then seeded property
 * tests of the compact form's documented bounds. */
#include "check.h"

#include "base/rng.h"
#include "method/dist.h"
#include "base/util.h"

#include <stdint.h>
#include <string.h>

static FILE *golden;
static char word[64];

static const char *next_word(void) {
    if (fscanf(golden, "%63s", word) != 1) {
        fprintf(stderr, "golden file ends early\n");
        exit(1);
    }
    return word;
}
static void expect_word(const char *w) {
    if (strcmp(next_word(), w)) {
        fprintf(stderr, "golden file: expected \"%s\", got \"%s\"\n", w, word);
        exit(1);
    }
}
static long next_long(void) { return strtol(next_word(), NULL, 10); }
static double next_double(void) { return strtod(next_word(), NULL); }
static float next_float(void) { return strtof(next_word(), NULL); }
static void read_floats(float *v, long n) { for (long i = 0; i < n; i++) v[i] = next_float(); }

/* One case: inputs, then the expected kl, err, mask, three targets. */
static int run_case(void) {
    if (fscanf(golden, "%63s", word) != 1 || strcmp(word, "case")) return 0;
    char name[64];
    snprintf(name, sizeof name, "%s", next_word());
    long VE = next_long(), VA = next_long();
    double alpha = next_double();
    int full = !strcmp(next_word(), "full");
    int64_t V = VE < VA ? VE : VA;
    float *lpe_row = NULL, *lpa_row = NULL;
    int32_t *ids = NULL;
    dist_step s;
    if (full) {
        lpe_row = xmalloc((size_t)VE * sizeof(float));
        lpa_row = xmalloc((size_t)VA * sizeof(float));
        expect_word("lpe"); read_floats(lpe_row, VE);
        expect_word("lpa"); read_floats(lpa_row, VA);
        ids = xmalloc((size_t)V * sizeof *ids);
        dist_iota(ids, V);
        s = dist_step_from_full(ids, lpe_row, lpa_row, V);
    } else {
        expect_word("k");
        int k = (int)next_long();
        expect_word("tails");
        float te = next_float(), ta = next_float();
        ids = xmalloc((size_t)k * sizeof *ids);
        lpe_row = xmalloc((size_t)k * sizeof(float));
        lpa_row = xmalloc((size_t)k * sizeof(float));
        expect_word("ids");
        for (int i = 0; i < k; i++) ids[i] = (int32_t)next_long();
        expect_word("lpe"); read_floats(lpe_row, k);
        expect_word("lpa"); read_floats(lpa_row, k);
        s = (dist_step){k, ids, lpe_row, lpa_row, te, ta};
    }
    int32_t *scr = xmalloc(DIST_CHECK_SCRATCH(s.k) * sizeof *scr);
    CHECKF(dist_check(&s, VE, scr) == NULL, "%s: %s", name, dist_check(&s, VE, scr));

    double err, kl = full ? dist_kl_full(lpe_row, lpa_row, V) : dist_kl_compact(&s, V, &err);
    if (full) {
        /* the compact path on a full row is the same computation */
        CHECK_CLOSE(dist_kl_compact(&s, V, &err), kl, 1e-9, 1e-9);
        CHECK(err == 0);
    }
    expect_word("kl");
    double want = next_double();
    CHECKF(fabs(kl - want) <= 1e-6 + 1e-6 * fabs(want), "%s: kl %.12g vs %.12g", name, kl, want);
    expect_word("err");
    want = next_double();
    CHECKF(fabs(err - want) <= 1e-6 + 1e-6 * fabs(want), "%s: err %.12g vs %.12g", name, err, want);

    int *sel = xmalloc((size_t)s.k * sizeof *sel);
    int32_t *tid = xmalloc((size_t)s.k * sizeof *tid);
    float *w = xmalloc((size_t)s.k * sizeof *w);
    int n = dist_mask(&s, V, alpha, sel);
    expect_word("mask");
    long wn = next_long();
    CHECKF(n == wn, "%s: mask size %d vs %ld", name, n, wn);
    int nt = dist_target(&s, V, alpha, DIST_CONTRAST, tid, w, sel);
    CHECK(nt == n);
    for (long j = 0; j < wn; j++) {
        long id = next_long();
        CHECKF(j >= nt || tid[j] == id, "%s: mask[%ld] %d vs %ld", name, j, tid[j], id);
    }
    static const char *kinds[2] = {"contrast", "expert"};
    for (int kd = 0; kd < 2; kd++) {
        nt = dist_target(&s, V, alpha, (dist_target_kind)kd, tid, w, sel);
        expect_word(kinds[kd]);
        wn = next_long();
        CHECKF(nt == wn, "%s: %s size %d vs %ld", name, kinds[kd], nt, wn);
        double sum = 0;
        for (long j = 0; j < wn; j++) {
            double x = next_double();
            if (j < nt) {
                CHECKF(fabs(w[j] - x) <= 1e-6, "%s: %s[%ld] %.9g vs %.9g", name, kinds[kd], j, w[j], x);
                sum += w[j];
            }
        }
        CHECKF(fabs(sum - 1) <= 1e-6, "%s: %s weights sum to %.9g", name, kinds[kd], sum);
    }
    nt = dist_target(&s, V, alpha, DIST_ONEHOT, tid, w, sel);
    expect_word("onehot");
    long oh = next_long();
    CHECKF(nt == 1 && tid[0] == oh && w[0] == 1.0f, "%s: onehot %d vs %ld", name, tid[0], oh);
    expect_word("end");
    free(lpe_row); free(lpa_row); free(ids); free(scr); free(sel); free(tid); free(w);
    return 1;
}

/* The selection block: per-step KL and the count kept at several betas. */
static void run_select(void) {
    /* run_case consumed the word "select" when it found no "case" */
    long n = next_long(), k = next_long(), V = next_long();
    int32_t ids[64];
    float le[64], la[64];
    double *kls = xmalloc((size_t)n * sizeof *kls);
    for (long i = 0; i < n; i++) {
        for (long j = 0; j < k; j++) ids[j] = (int32_t)next_long();
        read_floats(le, k);
        read_floats(la, k);
        float te = next_float(), ta = next_float();
        double want = next_double();
        dist_step s = {(int)k, ids, le, la, te, ta};
        kls[i] = dist_kl_compact(&s, V, NULL);
        CHECKF(fabs(kls[i] - want) <= 1e-6 + 1e-6 * fabs(want), "select step %ld: kl %.12g vs %.12g", i, kls[i], want);
    }
    int counts = 0;
    while (strcmp(next_word(), "end")) {
        double beta = next_double();
        long want = next_long(), got = 0;
        for (long i = 0; i < n; i++) got += kls[i] >= beta;
        CHECKF(got == want, "beta %g: kept %ld vs %ld", beta, got, want);
        counts++;
    }
    CHECK(counts >= 3);
    free(kls);
}

/* seeded, reproducible (base/rng.h) */
static uint64_t rng_state;
static double urand(void) { return rng_unit(&rng_state); }
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

static void log_softmax(float *lp, const double *z, int V) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < V; i++) s += exp(z[i] - mx);
    for (int i = 0; i < V; i++) lp[i] = (float)(z[i] - mx - log(s));
}

/* Property: for top-k listings of random full distributions, the compact KL
 * is a lower bound of the full KL and within the documented err of it; the
 * mask holds the argmax and grows as alpha falls; weights sum to 1. */
static void properties(void) {
    enum { V = 300 };
    static double z[V];
    static float le[V], la[V], ce[V], ca[V];
    static int32_t ids[V];
    static int sel[V];
    static float w[V];
    static int32_t tid[V];
    uint64_t seed = 42;
    CHECK_SEED(seed);
    rng_state = seed;
    for (int rep = 0; rep < 300; rep++) {
        double scale = 0.2 + 8 * urand(), gap = urand();
        for (int i = 0; i < V; i++) z[i] = nrand() * scale;
        log_softmax(le, z, V);
        for (int i = 0; i < V; i++) z[i] = z[i] * (1 - gap) + nrand() * scale * gap;
        log_softmax(la, z, V);
        double full = dist_kl_full(le, la, V);
        /* top-k by selection (V small) */
        int k = 1 + (int)(urand() * 20);
        char used[V] = {0};
        double te = 1, ta = 1;
        for (int j = 0; j < k; j++) {
            int b = -1;
            for (int i = 0; i < V; i++) if (!used[i] && (b < 0 || le[i] > le[b])) b = i;
            used[b] = 1;
            ids[j] = b; ce[j] = le[b]; ca[j] = la[b];
            te -= exp(le[b]); ta -= exp(la[b]);
        }
        dist_step s = {k, ids, ce, ca, (float)te, (float)ta};
        double err, lo = dist_kl_compact(&s, V, &err);
        CHECKF(lo <= full + 1e-6 && full <= lo + err + 1e-6, "rep %d: %g <= %g <= %g + %g", rep, lo, full, lo, err);
        int n1 = dist_mask(&s, V, 0.5, sel), n2 = dist_mask(&s, V, 0.2, sel), n3 = dist_mask(&s, V, 0.01, sel);
        CHECK(n1 >= 1 && n1 <= n2 && n2 <= n3);
        CHECK(sel[0] == 0 || ce[sel[0]] <= ce[0]);
        for (int kd = 0; kd < 3; kd++) {
            int n = dist_target(&s, V, 0.2, (dist_target_kind)kd, tid, w, sel);
            double sum = 0;
            for (int j = 0; j < n; j++) sum += w[j];
            CHECK(fabs(sum - 1) <= 1e-6);
            for (int j = 1; j < n; j++) CHECK(tid[j - 1] < tid[j]);
        }
        if (dist_mask_complete(&s, V, 0.2)) {
            /* the mask from the listing equals the mask of the full row */
            int32_t *all = xmalloc(V * sizeof *all);
            dist_iota(all, V);
            dist_step f = dist_step_from_full(all, le, la, V);
            int *fs = xmalloc(V * sizeof *fs);
            CHECK(dist_mask(&f, V, 0.2, fs) == n2);
            free(all); free(fs);
        }
    }
}

int main(int argc, char **argv) {
    char path[4096];
    const char *root = getenv("LR_ROOT");
    snprintf(path, sizeof path, "%s/tests/golden/dist_cases.txt", argc > 1 ? argv[1] : root ? root : ".");
    golden = fopen(path, "r");
    if (!golden) { fprintf(stderr, "cannot open %s\n", path); return 1; }
    int cases = 0;
    while (run_case()) cases++;
    CHECK(!strcmp(word, "select"));
    run_select();
    fclose(golden);
    fprintf(stderr, "%d golden cases\n", cases);
    CHECK(cases >= 100);
    properties();
    int32_t scr[DIST_CHECK_SCRATCH(2)], bad[2] = {3, 3};
    float z2[2] = {-1, -1};
    dist_step d = {2, bad, z2, z2, 0.1f, 0.1f};
    CHECK(dist_check(&d, 10, scr) != NULL); /* duplicate ids */
    bad[1] = 12;
    CHECK(dist_check(&d, 10, scr) != NULL); /* out of vocabulary */
    CHECK(dist_target_parse("onehot") == DIST_ONEHOT && dist_target_parse("x") == -1);
    /* the hashed distinct-id check of long lists (k > 16), ids sharing low bits */
    enum { K = 100 };
    int32_t lid[K], lscr[DIST_CHECK_SCRATCH(K)];
    float llp[K];
    for (int i = 0; i < K; i++) lid[i] = i * 1024, llp[i] = -5;
    dist_step ls = {K, lid, llp, llp, 0.1f, 0.1f};
    CHECK(dist_check(&ls, 0, lscr) == NULL);
    lid[97] = lid[3];
    CHECK(dist_check(&ls, 0, lscr) != NULL);
    CHECK_DONE();
}
