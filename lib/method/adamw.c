/* adamw: see adamw.h. */
#include "method/adamw.h"

#include <math.h>
#include <stdlib.h>

#include "base/util.h"

void adamw_init(adamw *o, size_t n, float lr, float beta1, float beta2, float eps, float wd) {
    *o = (adamw){lr, beta1, beta2, eps, wd, n, 0, xcalloc(n ? n : 1, sizeof(float)), xcalloc(n ? n : 1, sizeof(float))};
}

void adamw_free(adamw *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void adamw_step(adamw *o, float *p, const float *g, float lr) {
    o->t++;
    /* torch computes the bias corrections in float64 python scalars */
    double bc1 = 1.0 - pow(o->beta1, (double)o->t), bc2 = 1.0 - pow(o->beta2, (double)o->t);
    float step = (float)(lr / bc1), bc2s = (float)sqrt(bc2);
    float decay = 1.0f - lr * o->wd;
    for (size_t i = 0; i < o->n; i++) {
        if (o->wd != 0.0f) p[i] *= decay;
        o->m[i] += (1.0f - o->beta1) * (g[i] - o->m[i]); /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        o->v[i] = o->beta2 * o->v[i] + (1.0f - o->beta2) * g[i] * g[i];
        p[i] -= step * o->m[i] / (sqrtf(o->v[i]) / bc2s + o->eps);
    }
}

double grad_norm(const float *g, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

double grad_clip(float *g, size_t n, double max_norm) {
    double norm = grad_norm(g, n);
    if (max_norm > 0.0 && norm > max_norm) {
        float c = (float)(max_norm / (norm + 1e-6));
        for (size_t i = 0; i < n; i++) g[i] *= c;
    }
    return norm;
}

float lr_linear(float lr, long step, long total, long warmup) {
    if (step < warmup) return lr * (float)step / (float)(warmup > 1 ? warmup : 1);
    double f = (double)(total - step) / (double)(total - warmup > 1 ? total - warmup : 1);
    return f > 0.0 ? (float)(lr * f) : 0.0f;
}
