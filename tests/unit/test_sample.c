/* sample.h against the definition of transformers' sampling warpers,
 * written here independently: scores / temperature; top-k removes scores
 * below the k-th largest; top-p sorts ascending and removes the tokens whose
 * cumulative probability is <= 1 - top_p; softmax of what is left. Many
 * seeded draws must reproduce those probabilities (|freq - p| within 5
 * standard errors), never draw a removed token, and top-k 1 is greedy. */
#include "check.h"
#include "infer/sample.h"

#include <stdlib.h>
#include <string.h>

#define V 7

/* transformers' probabilities for logits x under (t, k, p) */
static void reference(const float *x, double t, int k, double top_p, double *prob) {
    double s[V];
    for (int i = 0; i < V; i++) s[i] = x[i] / t;
    if (k > 0 && k < V) {
        double sorted[V];
        memcpy(sorted, s, sizeof s);
        for (int i = 0; i < V; i++)     /* descending */
            for (int j = i + 1; j < V; j++)
                if (sorted[j] > sorted[i]) { double z = sorted[i]; sorted[i] = sorted[j]; sorted[j] = z; }
        for (int i = 0; i < V; i++)
            if (s[i] < sorted[k - 1]) s[i] = -INFINITY;
    }
    if (top_p < 1) {
        double mx = -INFINITY, z = 0, q[V];
        for (int i = 0; i < V; i++) mx = fmax(mx, s[i]);
        for (int i = 0; i < V; i++) z += q[i] = exp(s[i] - mx);
        int idx[V];
        for (int i = 0; i < V; i++) idx[i] = i;
        for (int i = 0; i < V; i++)     /* ascending by score */
            for (int j = i + 1; j < V; j++)
                if (s[idx[j]] < s[idx[i]]) { int w = idx[i]; idx[i] = idx[j]; idx[j] = w; }
        double cum = 0;
        int remove[V] = {0};
        for (int j = 0; j < V; j++) {
            cum += q[idx[j]] / z;
            if (cum <= 1 - top_p) remove[idx[j]] = 1;
        }
        remove[idx[V - 1]] = 0;         /* min_tokens_to_keep = 1 */
        for (int i = 0; i < V; i++)
            if (remove[i]) s[i] = -INFINITY;
    }
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, s[i]);
    for (int i = 0; i < V; i++) z += prob[i] = isinf(s[i]) ? 0 : exp(s[i] - mx);
    for (int i = 0; i < V; i++) prob[i] /= z;
}

static void check_case(const float *x, double t, int k, double p, uint64_t seed) {
    smp_opts o = {.temperature = t, .top_p = p, .top_k = k};
    smp_scratch s;
    smp_init(&s, V);
    enum { N = 200000 };
    long count[V] = {0};
    uint64_t rng = seed;
    for (int n = 0; n < N; n++) {
        int i = smp_draw(x, &o, &rng, &s);
        CHECK(i >= 0 && i < V);
        if (i >= 0 && i < V) count[i]++;
    }
    double prob[V];
    reference(x, t, k, p, prob);
    for (int i = 0; i < V; i++) {
        double f = (double)count[i] / N, se = sqrt(prob[i] * (1 - prob[i]) / N);
        if (prob[i] == 0) CHECKF(count[i] == 0, "t %g k %d p %g: token %d removed yet drawn %ld times", t, k, p, i, count[i]);
        else CHECKF(fabs(f - prob[i]) <= 5 * se + 1e-12, "t %g k %d p %g: token %d freq %.5f vs %.5f", t, k, p, i, f, prob[i]);
    }
    smp_free(&s);
}

int main(void) {
    const float x[V] = {1.3f, -0.4f, 2.1f, 0.2f, -1.7f, 1.9f, 0.05f};
    uint64_t seed = 20261201;
    CHECK_SEED(seed);
    check_case(x, 1.0, 0, 1.0, seed);      /* plain softmax */
    check_case(x, 0.7, 0, 1.0, seed + 1);  /* temperature */
    check_case(x, 1.5, 3, 1.0, seed + 2);  /* top-k */
    check_case(x, 1.0, 0, 0.8, seed + 3);  /* top-p */
    check_case(x, 0.9, 4, 0.7, seed + 4);  /* top-k then top-p */
    check_case(x, 1.0, 50, 0.95, seed + 5); /* k past V is off */
    /* top-k 1 is greedy, whatever the temperature, and still one draw */
    smp_opts g = {.temperature = 3.0, .top_p = 1, .top_k = 1};
    smp_scratch s;
    smp_init(&s, V);
    uint64_t a = seed;
    for (int n = 0; n < 1000; n++) CHECK(smp_draw(x, &g, &a, &s) == 2);
    /* the same stream gives the same tokens (problems do not depend on batching) */
    smp_opts o = {.temperature = 1.0, .top_p = 0.9, .top_k = 0};
    uint64_t r1 = 77, r2 = 77;
    int same = 1;
    for (int n = 0; n < 1000; n++) same &= smp_draw(x, &o, &r1, &s) == smp_draw(x, &o, &r2, &s);
    CHECK(same && r1 == r2);
    smp_free(&s);
    CHECK_DONE();
}
