/* compact: see compact.h. */
#include "infer/compact.h"

#include <math.h>

double cd_logsumexp(const float *logits, int V) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)logits[i] - mx);
    return mx + log(s);
}

void cd_log_softmax(float *lp, const float *logits, int V) {
    double lse = cd_logsumexp(logits, V);
    for (int i = 0; i < V; i++) lp[i] = (float)((double)logits[i] - lse);
}

/* "a ranks below b": lower logit, or equal logit and higher id. */
static int below(const float *x, int32_t a, int32_t b) { return x[a] < x[b] || (x[a] == x[b] && a > b); }

/* Min-heap on rank: heap[0] is the lowest-ranked of the kept tokens. */
static void sift_down(const float *x, int32_t *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && below(x, h[l], h[m])) m = l;
        if (r < n && below(x, h[r], h[m])) m = r;
        if (m == i) return;
        int32_t t = h[i];
        h[i] = h[m], h[m] = t, i = m;
    }
}

int cd_select(const float *logits, int V, const cd_opts *o, int32_t *ids, float *lps, float *tail,
              int32_t *heap) {
    double lse = cd_logsumexp(logits, V);
    int cap = o->kmax < V ? o->kmax : V, n = 0;
    /* One pass keeping the kmax best: most tokens fail one comparison with
     * the heap's minimum, so this is O(V) in practice. */
    for (int32_t i = 0; i < V; i++) {
        if (n < cap) {
            heap[n++] = i;
            if (n == cap)
                for (int j = n / 2 - 1; j >= 0; j--) sift_down(logits, heap, n, j);
        } else if (below(logits, heap[0], i)) {
            heap[0] = i;
            sift_down(logits, heap, n, 0);
        }
    }
    /* Pop ascending into the tail of ids, giving descending order. */
    for (int m = n; m > 0; m--) {
        ids[m - 1] = heap[0];
        heap[0] = heap[m - 1];
        sift_down(logits, heap, m - 1, 0);
    }
    double covered = 0;
    int k = 0;
    while (k < n && (k < o->kmin || covered < o->mass)) {
        double lp = (double)logits[ids[k]] - lse;
        lps[k] = (float)lp;
        covered += exp(lp);
        k++;
    }
    double t = 1.0 - covered;
    *tail = (float)(t > 0 ? t : 0);
    return k;
}

void cd_gather(const float *logits, int V, const int32_t *ids, int k, float *lps, float *tail) {
    double lse = cd_logsumexp(logits, V), covered = 0;
    for (int j = 0; j < k; j++) {
        if (ids[j] < 0 || ids[j] >= V) {
            lps[j] = -INFINITY;
            continue;
        }
        double lp = (double)logits[ids[j]] - lse;
        lps[j] = (float)lp;
        covered += exp(lp);
    }
    double t = 1.0 - covered;
    *tail = (float)(t > 0 ? t : 0);
}
