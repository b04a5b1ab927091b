/* sample: see sample.h. */
#include "infer/sample.h"

#include "base/rng.h"
#include "base/util.h"

#include <math.h>
#include <stdlib.h>

void smp_init(smp_scratch *s, int V) {
    s->V = V;
    s->order = xmalloc((size_t)V * sizeof *s->order);
    s->pr = xmalloc((size_t)V * sizeof *s->pr);
}

void smp_free(smp_scratch *s) {
    free(s->order), free(s->pr);
    s->order = NULL, s->pr = NULL;
}

/* Most probable first (larger logit), ties by lower id: a total order, so
 * qsort's result does not depend on its algorithm. */
static int by_logit_desc(const void *a, const void *b, void *arg) {
    const float *row = arg;
    int i = *(const int *)a, j = *(const int *)b;
    if (row[i] != row[j]) return row[i] > row[j] ? -1 : 1;
    return i - j;
}

int smp_draw(const float *row, const smp_opts *o, uint64_t *rng, smp_scratch *s) {
    return smp_draw_u(row, o, rng_unit(rng), s);
}

int smp_draw_u(const float *row, const smp_opts *o, double unit, smp_scratch *s) {
    int V = s->V;
    double *pr = s->pr, t = o->temperature, mx = -INFINITY, z = 0;
    int *order = s->order;
    for (int i = 0; i < V; i++) mx = fmax(mx, row[i] / t);
    for (int i = 0; i < V; i++) z += pr[i] = exp(row[i] / t - mx);
    int n = V, sorted = o->top_p < 1 || (o->top_k > 0 && o->top_k < V);
    if (sorted) {
        for (int i = 0; i < V; i++) order[i] = i;
        qsort_r(order, V, sizeof *order, by_logit_desc, (void *)row);
        if (o->top_k > 0 && o->top_k < V) {
            n = o->top_k;
            z = 0;
            for (int j = 0; j < n; j++) z += pr[order[j]];
        }
        if (o->top_p < 1) {
            double c = 0;
            int m = 0;
            while (m < n && c < o->top_p * z) c += pr[order[m++]];
            n = m, z = c;
        }
    }
    double u = unit * z, c = 0;
    for (int j = 0; j < n; j++) {
        int i = sorted ? order[j] : j;
        c += pr[i];
        if (u < c) return i;
    }
    return sorted ? order[n - 1] : V - 1;
}
