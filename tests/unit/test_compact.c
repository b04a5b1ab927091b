/* compact: top-mass selection against a plain full sort, tails, gather. */
#include "check.h"
#include "infer/compact.h"

#include <stdlib.h>
#include <string.h>

static const float *cmp_x;
static int by_rank(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (cmp_x[i] != cmp_x[j]) return cmp_x[i] > cmp_x[j] ? -1 : 1;
    return i - j;
}

int main(void) {
    uint64_t seed = 7;
    CHECK_SEED(seed);
    srand((unsigned)seed);
    int Vs[] = {1, 5, 300, 5000};
    for (int vi = 0; vi < 4; vi++)
        for (int trial = 0; trial < 40; trial++) {
            int V = Vs[vi];
            float *x = malloc(V * sizeof *x);
            float scale = trial % 4 == 0 ? 0.01f : trial % 4 == 1 ? 1.0f : trial % 4 == 2 ? 8.0f : 30.0f;
            for (int i = 0; i < V; i++) x[i] = scale * ((float)rand() / RAND_MAX - 0.5f);
            if (trial % 5 == 0 && V > 3) x[1] = x[2] = x[3]; /* ties */
            cd_opts o = {.mass = trial % 2 ? 0.9 : 0.99999, .kmax = 1 + trial * 7, .kmin = 1};
            int32_t *ids = malloc((o.kmax + 1) * sizeof *ids), *heap = malloc((o.kmax + 1) * sizeof *heap);
            float *lps = malloc((o.kmax + 1) * sizeof *lps), tail;
            int k = cd_select(x, V, &o, ids, lps, &tail, heap);
            /* reference: sort everything */
            int32_t *ord = malloc(V * sizeof *ord);
            for (int i = 0; i < V; i++) ord[i] = i;
            cmp_x = x;
            qsort(ord, V, sizeof *ord, by_rank);
            float *lp = malloc(V * sizeof *lp);
            cd_log_softmax(lp, x, V);
            double covered = 0;
            int kref = 0;
            int cap = o.kmax < V ? o.kmax : V;
            while (kref < cap && (kref < o.kmin || covered < o.mass)) covered += exp((double)lp[ord[kref++]]);
            CHECKF(k == kref, "V=%d trial=%d k=%d kref=%d", V, trial, k, kref);
            for (int j = 0; j < k && j < kref; j++) {
                CHECKF(ids[j] == ord[j], "V=%d trial=%d pos %d: %d vs %d", V, trial, j, ids[j], ord[j]);
                CHECK_CLOSE(lps[j], lp[ord[j]], 1e-6, 1e-6);
            }
            double rest = 0;
            for (int j = kref; j < V; j++) rest += exp((double)lp[ord[j]]);
            CHECK_CLOSE(tail, rest, 1e-6, 1e-4);
            /* gather the same ids: same lps and tail; an id beyond V is -inf */
            float g[512], gt;
            int32_t gids[512];
            memcpy(gids, ids, k * sizeof *ids);
            gids[k] = V + 3;
            cd_gather(x, V, gids, k + 1, g, &gt);
            for (int j = 0; j < k; j++) CHECK_CLOSE(g[j], lps[j], 1e-7, 0);
            CHECK(isinf(g[k]) && g[k] < 0);
            CHECK_CLOSE(gt, tail, 1e-7, 0);
            free(x), free(ids), free(heap), free(lps), free(ord), free(lp);
        }
    CHECK_DONE();
}
