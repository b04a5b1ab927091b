/* The device sampler (k_sample, cuda/sample.cu) on the emulated device:
 *   1. the same token as the host sampler (sample.c smp_draw_u) for the same
 *      uniform, over many random rows and settings: random logits, logits
 *      with many exact ties (and -0 next to +0), peaked rows whose tail
 *      underflows, vocabularies from 5 to Qwen's 151936, uniforms 0 and
 *      1 - 2^-53. A disagreement is allowed only as a rounding case at a
 *      cumulative boundary: u times the kept mass lies within 1e-12 of it
 *      of the device token's interval of the host's cumulative
 *      distribution (underflowed tokens have empty intervals right there).
 *      Such cases are counted and must stay rare;
 *   2. the distribution: 20,000 device draws of one small row per setting
 *      against the probabilities of transformers' warpers (temperature,
 *      top-k, top-p as its TopK/TopPLogitsWarper define them, written here
 *      independently of both samplers): no removed token drawn and a
 *      chi-square statistic under its 1e-5 quantile, which a cut off by one
 *      token exceeds many times over. */
#include "check.h"

#include "../../cuda/kernels.h"
#include "base/rng.h"
#include "infer/sample.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cuda/emu.cc: this test hands host buffers to the launchers directly */
void emu_allow_host_pointers(int on);

static uint64_t rng = 20261201;

/* ---- 1. agreement with the host sampler ---- */

enum { PLAIN, TIES, PEAKED };

static void fill_row(float *x, int V, int kind) {
    for (int i = 0; i < V; i++) {
        double r = 2 * rng_unit(&rng) - 1;
        if (kind == PLAIN) x[i] = (float)(4 * r);
        else if (kind == TIES) x[i] = (float)(floor(3 * r) / 2); /* 6 distinct values; 0 comes as -0 and +0 */
        else x[i] = (float)(60 * r);
        if (kind == TIES && x[i] == 0 && (i & 1)) x[i] = -0.0f;
    }
}

static int agree_counts[2]; /* boundary cases, unexplained disagreements */

static const float *cmp_row;
static int by_prob(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (cmp_row[i] != cmp_row[j]) return cmp_row[i] > cmp_row[j] ? -1 : 1;
    return i - j;
}

/* Is token d a rounding case of drawing u from row under o: does u times
 * the kept mass lie within 1e-12 of that mass of d's interval of the
 * cumulative distribution (in the host's order)? Zero-width intervals of
 * underflowed tokens next to u count too. */
static int at_boundary(const float *row, int V, const smp_opts *o, double u, int d) {
    double *pr = malloc((size_t)V * sizeof *pr), mx = -INFINITY, z = 0;
    int *order = malloc((size_t)V * sizeof *order), n = V;
    for (int i = 0; i < V; i++) mx = fmax(mx, row[i] / o->temperature), order[i] = i;
    for (int i = 0; i < V; i++) z += pr[i] = exp(row[i] / o->temperature - mx);
    if (o->top_p < 1 || (o->top_k > 0 && o->top_k < V)) {
        cmp_row = row;
        qsort(order, V, sizeof *order, by_prob);
        if (o->top_k > 0 && o->top_k < V) {
            n = o->top_k, z = 0;
            for (int j = 0; j < n; j++) z += pr[order[j]];
        }
        if (o->top_p < 1) {
            double c = 0;
            int m = 0;
            while (m < n && c < o->top_p * z) c += pr[order[m++]];
            n = m, z = c;
        }
    }
    double c = 0, ut = u * z, tol = 1e-12 * z;
    int hit = 0;
    for (int j = 0; j < n && !hit; j++) {
        double lo = c;
        c += pr[order[j]];
        hit = order[j] == d && lo - tol <= ut && ut <= c + tol;
    }
    free(pr), free(order);
    return hit;
}

static void agree_case(int V, int G, int kind, double t, int k, double p) {
    float *x = calloc((size_t)G * V, sizeof *x);
    double *u = calloc((size_t)G, sizeof *u);
    int32_t *out = malloc((size_t)G * sizeof *out);
    for (int g = 0; g < G; g++) {
        fill_row(x + (size_t)g * V, V, kind);
        u[g] = g == 0 ? 0.0 : g == 1 ? 1.0 - 1.0 / 9007199254740992.0 : rng_unit(&rng);
    }
    k_sample(x, G, V, u, t, k, p, out, NULL);
    smp_opts o = {.temperature = t, .top_p = p, .top_k = k};
    smp_scratch s;
    smp_init(&s, V);
    int boundary = 0, wrong = 0;
    for (int g = 0; g < G; g++) {
        const float *row = x + (size_t)g * V;
        int h = smp_draw_u(row, &o, u[g], &s);
        if (out[g] == h) continue;
        if (out[g] >= 0 && out[g] < V && at_boundary(row, V, &o, u[g], out[g])) boundary++;
        else {
            if (wrong < 3)
                fprintf(stderr, "V %d kind %d t %g k %d p %g row %d u %.17g: device %d, host %d\n", V, kind, t, k, p,
                        g, u[g], out[g], h);
            wrong++;
        }
    }
    agree_counts[0] += boundary, agree_counts[1] += wrong;
    CHECKF(wrong == 0, "V %d kind %d t %g k %d p %g: %d of %d rows drew another token", V, kind, t, k, p, wrong, G);
    smp_free(&s);
    free(x), free(u), free(out);
}

static void test_agreement(void) {
    const double ts[] = {0.3, 0.8, 1.0, 2.0};
    const double ps[] = {1.0, 0.95, 0.6, 0.2, 1e-9};
    int rows = 0;
    for (int vi = 0; vi < 3; vi++) {
        int V = (int[]){5, 40, 700}[vi];
        const int ks[] = {0, 1, 3, 20, V - 1, V, V + 5};
        for (int kind = PLAIN; kind <= PEAKED; kind++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
                    agree_case(V, 24, kind, ts[(ki + pi) % 4], ks[ki], ps[pi]);
                    rows += 24;
                }
    }
    /* Qwen2.5's vocabulary, fewer rows */
    for (int kind = PLAIN; kind <= PEAKED; kind++) {
        agree_case(151936, 3, kind, 0.8, 0, 1.0), agree_case(151936, 3, kind, 0.7, 20, 0.95);
        agree_case(151936, 3, kind, 1.0, 0, 0.9), agree_case(151936, 3, kind, 1.0, 1000, 1.0);
        rows += 12;
    }
    /* NaN and inf rows draw nothing */
    float bad[2 * 8] = {0};
    bad[3] = NAN, bad[8 + 5] = INFINITY;
    double u2[2] = {0.5, 0.5};
    int32_t o2[2] = {7, 7};
    k_sample(bad, 2, 8, u2, 1.0, 0, 0.9, o2, NULL);
    CHECK(o2[0] == -1 && o2[1] == -1);
    fprintf(stderr, "agreement: %d rows, %d boundary cases, %d other disagreements\n", rows, agree_counts[0],
            agree_counts[1]);
    CHECKF(agree_counts[0] * 1000 <= rows, "%d boundary cases in %d rows: more than rounding explains",
           agree_counts[0], rows);
}

/* ---- 2. the distribution ---- */

#define SV 12

/* transformers' probabilities for logits x under (t, k, p): scores / t;
 * TopK removes scores below the k-th largest; TopP sorts ascending and
 * removes tokens while their cumulative probability is <= 1 - top_p,
 * always keeping the last; softmax of the rest. */
static void reference(const float *x, double t, int k, double top_p, double *prob) {
    double s[SV];
    for (int i = 0; i < SV; i++) s[i] = x[i] / t;
    if (k > 0 && k < SV) {
        double kth, d[SV];
        memcpy(d, s, sizeof d);
        for (int i = 0; i < k; i++) /* partial selection, descending */
            for (int j = i + 1; j < SV; j++)
                if (d[j] > d[i]) { double w = d[i]; d[i] = d[j]; d[j] = w; }
        kth = d[k - 1];
        for (int i = 0; i < SV; i++)
            if (s[i] < kth) s[i] = -INFINITY;
    }
    if (top_p < 1) {
        double mx = -INFINITY, z = 0, q[SV];
        int idx[SV], remove[SV] = {0};
        for (int i = 0; i < SV; i++) mx = fmax(mx, s[i]), idx[i] = i;
        for (int i = 0; i < SV; i++) z += q[i] = isinf(s[i]) ? 0 : exp(s[i] - mx);
        for (int i = 0; i < SV; i++) /* ascending */
            for (int j = i + 1; j < SV; j++)
                if (s[idx[j]] < s[idx[i]]) { int w = idx[i]; idx[i] = idx[j]; idx[j] = w; }
        double cum = 0;
        for (int j = 0; j < SV; j++) {
            cum += q[idx[j]] / z;
            if (cum <= 1 - top_p) remove[idx[j]] = 1;
        }
        remove[idx[SV - 1]] = 0;
        for (int i = 0; i < SV; i++)
            if (remove[i]) s[i] = -INFINITY;
    }
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < SV; i++) mx = fmax(mx, s[i]);
    for (int i = 0; i < SV; i++) z += prob[i] = isinf(s[i]) ? 0 : exp(s[i] - mx);
    for (int i = 0; i < SV; i++) prob[i] /= z;
}

/* The chi-square distribution's upper quantile for df degrees of freedom at
 * normal deviate zq (Wilson and Hilferty 1931). */
static double chi2_quantile(int df, double zq) {
    double a = 2.0 / (9.0 * df);
    return df * pow(1 - a + zq * sqrt(a), 3);
}

static void distribution_case(const float *x, double t, int k, double p) {
    enum { N = 20000 };
    float *rows = calloc((size_t)N * SV, sizeof *rows);
    double *u = calloc(N, sizeof *u);
    int32_t *out = malloc(N * sizeof *out);
    uint64_t stream = rng_stream(7, (uint64_t)(k * 1000 + (int)(p * 100) + (int)(t * 10)));
    for (int n = 0; n < N; n++) memcpy(rows + (size_t)n * SV, x, SV * sizeof *x), u[n] = rng_unit(&stream);
    k_sample(rows, N, SV, u, t, k, p, out, NULL);
    double prob[SV], chi2 = 0;
    long count[SV] = {0}, removed = 0;
    int kept = 0;
    reference(x, t, k, p, prob);
    for (int n = 0; n < N; n++) {
        CHECK(out[n] >= 0 && out[n] < SV);
        if (out[n] >= 0 && out[n] < SV) count[out[n]]++;
    }
    for (int i = 0; i < SV; i++) {
        if (prob[i] == 0) { removed += count[i]; continue; }
        double e = prob[i] * N;
        chi2 += (count[i] - e) * (count[i] - e) / e;
        kept++;
    }
    double bound = kept > 1 ? chi2_quantile(kept - 1, 4.265) : 0; /* 1e-5 */
    fprintf(stderr, "distribution t %g k %d p %g: %d kept, chi2 %.2f (bound %.2f), %ld removed drawn\n", t, k, p, kept,
            chi2, bound, removed);
    CHECKF(removed == 0, "t %g k %d p %g: %ld draws of removed tokens", t, k, p, removed);
    CHECKF(chi2 <= bound, "t %g k %d p %g: chi-square %.2f above %.2f with %d degrees of freedom", t, k, p, chi2, bound,
           kept - 1);
    free(rows), free(u), free(out);
}

static void test_distribution(void) {
    /* no ties, probability order far from id order, and every cut below
     * falls next to a token of a few percent */
    const float x[SV] = {0.3f, 2.0f, -0.9f, 1.1f, -0.2f, 1.6f, 0.1f, -1.4f, 0.8f, 1.3f, -0.5f, 0.6f};
    distribution_case(x, 0.8, 0, 1.0);  /* temperature alone: id order */
    distribution_case(x, 1.0, 5, 1.0);  /* top-k */
    distribution_case(x, 0.8, 0, 0.9);  /* top-p */
    distribution_case(x, 1.2, 8, 0.75); /* top-k then top-p */
    distribution_case(x, 1.0, 0, 0.5);
}

int main(void) {
    emu_allow_host_pointers(1);
    CHECK_SEED(rng);
    test_agreement();
    test_distribution();
    CHECK_DONE();
}
