/* objective: see objective.h. */
#include "method/objective.h"

#include <math.h>
#include <string.h>

#include "base/util.h"

/* log sum_{a < n} exp(z_a), in double */
static double logsumexp(const float *z, int n) {
    double mx = -INFINITY, s = 0.0;
    for (int a = 0; a < n; a++)
        if (z[a] > mx) mx = z[a];
    for (int a = 0; a < n; a++) s += exp((double)z[a] - mx);
    return mx + log(s);
}

int obj_softkl(const float *z, int V, int vlim, const int *ids, const float *w, int n, float scale, float *dz,
               double *loss) {
    if (vlim <= 0 || vlim > V) vlim = V;
    for (int j = 0; j < n; j++) {
        if (ids[j] < 0 || ids[j] >= V) return lr_err(LR_EINPUT, "target id %d outside the vocabulary [0, %d)", ids[j], V);
        if (!(w[j] >= 0.0f) || !isfinite(w[j])) return lr_err(LR_EINPUT, "target weight %g: not a finite weight >= 0", w[j]);
    }
    double lse = logsumexp(z, vlim), W = 0.0, kl = 0.0;
    for (int j = 0; j < n; j++) {
        if (ids[j] >= vlim) continue; /* dropped, as the reference does */
        W += w[j];
        if (w[j] > 0.0f) kl += (double)w[j] * (log((double)w[j]) - ((double)z[ids[j]] - lse));
    }
    *loss = kl;
    if (dz) {
        for (int a = 0; a < vlim; a++) dz[a] = (float)(scale * W * exp((double)z[a] - lse));
        for (int a = vlim; a < V; a++) dz[a] = 0.0f;
        for (int j = 0; j < n; j++)
            if (ids[j] < vlim) dz[ids[j]] -= scale * w[j];
    }
    return LR_OK;
}

int obj_ce(const float *z, int V, int vlim, int target, float scale, float *dz, double *loss) {
    if (vlim <= 0 || vlim > V) vlim = V;
    if (target < 0 || target >= V) return lr_err(LR_EINPUT, "target id %d outside the vocabulary [0, %d)", target, V);
    if (target >= vlim) {
        *loss = 0.0;
        if (dz) memset(dz, 0, (size_t)V * sizeof(float));
        return LR_OK;
    }
    double lse = logsumexp(z, vlim);
    *loss = lse - z[target];
    if (dz) {
        for (int a = 0; a < vlim; a++) dz[a] = (float)(scale * exp((double)z[a] - lse));
        for (int a = vlim; a < V; a++) dz[a] = 0.0f;
        dz[target] -= scale;
    }
    return LR_OK;
}
