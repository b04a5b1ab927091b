/* The training kernels (cuda/kernels.h, "training") against their CPU twins
 * on the emulated device, as test_gpu_kernels.c does for the forward:
 * k_softkl / k_ce against obj_softkl / obj_ce (lib/method/objective.c),
 * k_grad_norm + k_adamw against grad_clip + adamw_step (lib/method/
 * adamw.c). Shapes: V not a multiple of the 512-thread block (300, 1000),
 * Qwen's 151,936-wide rows (151,643 kept), one row and several.
 *
 * Tolerances: the kernels compute the same double / float expressions as
 * the CPU, so they differ only by the rounding of exp and log and by the
 * order of one double sum over the row: losses within 1e-12 relative,
 * gradients within 1e-6 of the row's largest gradient and within 2.5e-7
 * (two float ulps) of their own value above 1e-3 of it: the double sum's
 * last bits may move a rounding.
 * The optimizer's state within 1e-6 relative: on the emulated device the
 * float expression is the CPU's, bit for bit; nvcc may fuse its multiplies
 * and adds (one rounding fewer per step). */
#include "check.h"

#include "../../cuda/kernels.h"
#include "method/adamw.h"
#include "method/objective.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cuda/emu.cc: this test hands host buffers to the launchers directly */
void emu_allow_host_pointers(int on);

static uint64_t rng = 20240611;
static double urand(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}
static int irand(int n) { return (int)((urand() + 1.0) * 0.5 * n) % n; }

static float *logits(int R, int V) {
    float *z = malloc((size_t)R * V * sizeof *z);
    for (int r = 0; r < R; r++) {
        double sharp = r % 3 == 0 ? 2 : r % 3 == 1 ? 8 : 20; /* near-flat to peaked */
        for (int a = 0; a < V; a++) z[(size_t)r * V + a] = (float)(sharp * urand());
    }
    return z;
}

/* a sparse target of n distinct ids in [0, V): mostly the row's top
 * logits region, some above vlim when vlim < V, one zero weight, weights
 * summing to `total` */
static void target(int V, int vlim, int n, double total, int32_t *ids, float *w) {
    double s = 0;
    for (int j = 0; j < n; j++) {
        int id, dup;
        do {
            id = j == 1 && vlim < V ? vlim + irand(V - vlim) : irand(V);
            dup = 0;
            for (int i = 0; i < j; i++) dup |= ids[i] == id;
        } while (dup);
        ids[j] = id;
        w[j] = j == 2 ? 0.0f : (float)(urand() + 1.5);
        s += w[j];
    }
    for (int j = 0; j < n; j++) w[j] = (float)(w[j] * total / s);
}

/* A row's gradient error: max |a - b| over max |b|, or, when larger, the
 * largest relative error |a - b| / |b| of the entries above 1e-3 of the
 * maximum scaled by 4 (so that 2.5e-7, two float ulps per entry, reads as
 * 1e-6): a float exp instead of a double one (1e-6 per entry) is seen. */
static double row_err(const float *a, const float *b, int V) {
    double e = check_rel_err(a, b, (size_t)V), mx = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, fabs(b[i]));
    for (int i = 0; i < V; i++)
        if (fabs(b[i]) > 1e-3 * mx) e = fmax(e, 4 * fabs((double)a[i] - b[i]) / fabs(b[i]));
    return e;
}

static void test_softkl(int V, int R, int vlim, int per) {
    float *z = logits(R, V), *dev = malloc((size_t)R * V * sizeof *dev), *dz = malloc((size_t)V * sizeof *dz);
    int64_t *off = malloc((size_t)(R + 1) * sizeof *off);
    int32_t *ids = malloc((size_t)R * per * sizeof *ids);
    float *w = malloc((size_t)R * per * sizeof *w);
    double *loss = malloc((size_t)R * sizeof *loss);
    off[0] = 0;
    for (int r = 0; r < R; r++) {
        int n = r == R - 1 && R > 1 ? 1 : per; /* a row with one target */
        target(V, vlim, n, r % 2 ? 1.0 : 0.7, ids + off[r], w + off[r]);
        off[r + 1] = off[r] + n;
    }
    memcpy(dev, z, (size_t)R * V * sizeof *z);
    const float scale = 0.37f;
    k_softkl(dev, R, V, vlim, ids, w, off, scale, loss, NULL);
    double dl = 0, dg = 0;
    int zero_above = 1;
    for (int r = 0; r < R; r++) {
        double l;
        int n = (int)(off[r + 1] - off[r]);
        CHECK(obj_softkl(z + (size_t)r * V, V, vlim, ids + off[r], w + off[r], n, scale, dz, &l) == 0);
        dl = fmax(dl, fabs(loss[r] - l) / (1e-12 + fabs(l)));
        dg = fmax(dg, row_err(dev + (size_t)r * V, dz, V));
        for (int a = vlim; a < V; a++) zero_above &= dev[(size_t)r * V + a] == 0.0f;
    }
    fprintf(stderr, "softkl V %d R %d vlim %d: loss rel err %.3g, dlogits rel err %.3g\n", V, R, vlim, dl, dg);
    CHECKF(dl < 1e-12, "softkl V %d R %d vlim %d: loss rel err %g", V, R, vlim, dl);
    CHECKF(dg < 1e-6, "softkl V %d R %d vlim %d: dlogits rel err %g", V, R, vlim, dg);
    CHECKF(zero_above, "softkl V %d vlim %d: gradient above vlim", V, vlim);
    free(z), free(dev), free(dz), free(off), free(ids), free(w), free(loss);
}

/* rows whose target obj_softkl rejects: NaN loss, zero gradient, and the
 * good row between them untouched by its neighbours */
static void test_softkl_bad(void) {
    const int V = 300, R = 3;
    float *z = logits(R, V), *dz = malloc((size_t)V * sizeof *dz);
    int32_t ids[6] = {5, V, 7, 8, 9, 10};
    float w[6] = {0.5f, 0.5f, 0.3f, 0.7f, -0.1f, 0.2f};
    int64_t off[4] = {0, 2, 4, 6};
    double loss[3], l;
    float *orig = malloc((size_t)R * V * sizeof *orig);
    memcpy(orig, z, (size_t)R * V * sizeof *z);
    k_softkl(z, R, V, V, ids, w, off, 1.0f, loss, NULL);
    CHECK(obj_softkl(orig, V, V, ids, w, 2, 1.0f, dz, &l) != 0);
    CHECK(obj_softkl(orig + 2 * V, V, V, ids + 4, w + 4, 2, 1.0f, dz, &l) != 0);
    CHECK(isnan(loss[0]) && isnan(loss[2]));
    int zero = 1;
    for (int a = 0; a < V; a++) zero &= z[a] == 0.0f && z[2 * V + a] == 0.0f;
    CHECK(zero);
    CHECK(obj_softkl(orig + V, V, V, ids + 2, w + 2, 2, 1.0f, dz, &l) == 0);
    CHECK_CLOSE(loss[1], l, 1e-12, 1e-12);
    CHECK(row_err(z + V, dz, V) < 1e-6);
    free(z), free(dz), free(orig);
}

static void test_ce(int V, int R, int vlim) {
    float *z = logits(R, V), *dev = malloc((size_t)R * V * sizeof *dev), *dz = malloc((size_t)V * sizeof *dz);
    int32_t *t = malloc((size_t)R * sizeof *t);
    double *loss = malloc((size_t)R * sizeof *loss);
    for (int r = 0; r < R; r++) t[r] = irand(vlim);
    if (R > 2 && vlim < V) t[1] = vlim + irand(V - vlim); /* dropped: loss 0, no gradient */
    if (R > 3) t[3] = 0, t[2] = vlim - 1;                 /* the ends of the kept range */
    memcpy(dev, z, (size_t)R * V * sizeof *z);
    const float scale = 1.0f / 3;
    k_ce(dev, R, V, vlim, t, scale, loss, NULL);
    double dl = 0, dg = 0;
    for (int r = 0; r < R; r++) {
        double l;
        CHECK(obj_ce(z + (size_t)r * V, V, vlim, t[r], scale, dz, &l) == 0);
        dl = fmax(dl, fabs(loss[r] - l) / (1e-12 + fabs(l)));
        dg = fmax(dg, row_err(dev + (size_t)r * V, dz, V));
    }
    fprintf(stderr, "ce V %d R %d vlim %d: loss rel err %.3g, dlogits rel err %.3g\n", V, R, vlim, dl, dg);
    CHECKF(dl < 1e-12, "ce V %d R %d vlim %d: loss rel err %g", V, R, vlim, dl);
    CHECKF(dg < 1e-6, "ce V %d R %d vlim %d: dlogits rel err %g", V, R, vlim, dg);
    /* outside the vocabulary: NaN, zero gradient (obj_ce rejects it) */
    int32_t bad = V;
    memcpy(dev, z, (size_t)V * sizeof *z);
    k_ce(dev, 1, V, vlim, &bad, scale, loss, NULL);
    double l;
    CHECK(obj_ce(z, V, vlim, bad, scale, dz, &l) != 0);
    CHECK(isnan(loss[0]));
    int zero = 1;
    for (int a = 0; a < V; a++) zero &= dev[a] == 0.0f;
    CHECK(zero);
    free(z), free(dev), free(dz), free(t), free(loss);
}

/* `steps` updates from random gradients, clip on both sides of the norm */
static void test_adamw(size_t n, float wd, double max_norm, int steps) {
    float *p = malloc(n * sizeof *p), *pd = malloc(n * sizeof *pd), *g = malloc(n * sizeof *g);
    float *md = calloc(n, sizeof *md), *vd = calloc(n, sizeof *vd), coef;
    double work[K_NORM_BLOCKS], norm;
    for (size_t i = 0; i < n; i++) p[i] = pd[i] = (float)(0.1 * urand());
    adamw o;
    adamw_init(&o, n, 1e-3f, 0.9f, 0.999f, 1e-8f, wd);
    double dnorm = 0, dcoef = 0;
    int clipped = 0;
    for (int s = 1; s <= steps; s++) {
        double gs = s % 2 ? 1e-4 : 1.0; /* small and large norms */
        for (size_t i = 0; i < n; i++) g[i] = (float)(gs * urand());
        const float lr = 1e-3f * (float)(steps - s + 1) / (float)steps;
        k_grad_norm(g, n, max_norm, work, &norm, &coef, NULL);
        k_adamw(pd, md, vd, g, &coef, n, lr, o.beta1, o.beta2, o.eps, o.wd, s, NULL);
        double cn = grad_clip(g, n, max_norm);
        float cc = max_norm > 0 && cn > max_norm ? (float)(max_norm / (cn + 1e-6)) : 1.0f;
        clipped += cc != 1.0f;
        adamw_step(&o, p, g, lr);
        dnorm = fmax(dnorm, fabs(norm - cn) / cn);
        dcoef = fmax(dcoef, fabs(coef - cc) / cc);
    }
    CHECKF(dnorm < 1e-12 && dcoef < 1e-7, "adamw n %zu: norm rel err %g, clip factor %g", n, dnorm, dcoef);
    CHECKF(max_norm <= 0 ? clipped == 0 : clipped > 0 && clipped < steps, "adamw n %zu: %d of %d steps clipped", n,
           clipped, steps);
    double ep = check_rel_err(pd, p, n), em = check_rel_err(md, o.m, n), ev = check_rel_err(vd, o.v, n);
    fprintf(stderr, "adamw n %zu wd %g clip %g: norm %.3g coef %.3g p %.3g m %.3g v %.3g (rel err)\n", n, wd,
            max_norm, dnorm, dcoef, ep, em, ev);
    CHECKF(ep < 1e-6 && em < 1e-6 && ev < 1e-6, "adamw n %zu wd %g: p %g m %g v %g", n, wd, ep, em, ev);
    adamw_free(&o);
    free(p), free(pd), free(g), free(md), free(vd);
}

int main(void) {
    emu_allow_host_pointers(1);
    CHECK_SEED(rng);
    test_softkl(300, 1, 300, 5);
    test_softkl(1000, 5, 900, 40);
    test_softkl(151936, 2, 151643, 64);
    test_softkl_bad();
    test_ce(300, 1, 300);
    test_ce(1000, 6, 950);
    test_ce(151936, 1, 151643);
    test_adamw(1000, 0.0f, 1.0, 6);
    test_adamw(70001, 0.01f, 1.0, 6);   /* not a multiple of the blocks' stride */
    test_adamw(300000, 0.0f, 0.0, 3);   /* no clipping */
    CHECK_DONE();
}
