/* Finite-difference checks of every backward op against its forward op in
 * ops_cpu: loss = sum_i R_i out_i (accumulated in double, R random), the
 * analytic gradient from x_backward against central differences, per
 * tensor: max |fd - an| / max |an| < 1e-3. */
#include "nn/backward.h"
#include "check.h"

#include "base/rng.h"
#include "nn/ops_cpu.h"

#include <stdint.h>
#include <string.h>

static uint64_t rng = 12345;
static float urand(void) { return (float)((rng_next(&rng) >> 40) * (2.0 / 16777216.0) - 1.0); } /* [-1, 1) */
static float *rnd(long n, float scale) {
    float *p = malloc(n * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}
static float *zeros(long n) { return calloc(n, sizeof(float)); }

/* the op under test, as a closure over its tensors */
typedef struct op_ctx op_ctx;
struct op_ctx {
    void (*fwd)(op_ctx *);
    float *out, *R; // (nout)
    long nout;
    float *t[6];    /* tensors the forward reads */
    int ia[4];      /* ints: N, C, ... */
    const int *ip[3];
    float fa[2];
};
static double loss_of(op_ctx *c) {
    c->fwd(c);
    double s = 0.0;
    for (long i = 0; i < c->nout; i++) s += (double)c->R[i] * c->out[i];
    return s;
}

/* Checks an (n floats) against central differences of the loss wrt x.
 * h relative to the value scale; float32 roundoff in the forward is the
 * noise floor, hence h = 1e-2 (truncation error is O(h^2)). */
static void check_grad(const char *what, op_ctx *c, float *x, const float *an, long n) {
    double maxerr = 0.0, maxan = 0.0;
    const float h = 1e-2f;
    for (long i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = loss_of(c);
        x[i] = x0 - h;
        double lm = loss_of(c);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * h);
        double e = fabs(fd - an[i]);
        if (e > maxerr) maxerr = e;
        if (fabs(an[i]) > maxan) maxan = fabs(an[i]);
    }
    double rel = maxerr / (maxan > 1e-12 ? maxan : 1e-12);
    fprintf(stderr, "%-22s n=%-5ld max|an|=%.3g  rel err %.2e\n", what, n, maxan, rel);
    CHECKF(rel < 1e-3 && maxan > 1e-6, "%s: relative error %.3g", what, rel);
}

static void f_emb(op_ctx *c) { embedding_forward(c->out, c->ip[0], c->t[0], c->ia[0], c->ia[1]); }
static void f_rms(op_ctx *c) { rmsnorm_forward(c->out, c->t[2], c->t[0], c->t[1], c->ia[0], c->ia[1], 1e-6f); }
static void f_mm(op_ctx *c) { matmul_forward(c->out, c->t[0], c->t[1], c->ia[0], c->ia[1], c->ia[2]); }
static void f_bias(op_ctx *c) {
    memcpy(c->out, c->t[1], c->nout * sizeof(float));
    bias_forward(c->out, c->t[0], c->ia[0], c->ia[1]);
}
static void f_rope(op_ctx *c) { rope_forward(c->out, c->t[0], c->ip[0], c->ia[0], c->ia[1], c->ia[2], c->fa[0]); }
static void f_att(op_ctx *c) {
    attention_forward(c->out, c->t[0], c->t[1], c->t[2], c->ip[0], c->ip[1], c->ia[0], c->ia[1], c->ia[2], c->ia[3], 6, 1);
}
static void f_swi(op_ctx *c) { swiglu_forward(c->out, c->t[0], c->t[1], c->nout); }

int main(void) {
    CHECK_SEED(rng);
    {   /* embedding */
        int N = 5, C = 4, V = 7, tok[5] = {3, 1, 3, 6, 0};
        op_ctx c = {.fwd = f_emb, .nout = N * C, .ia = {N, C}, .ip = {tok}};
        c.out = zeros(N * C), c.R = rnd(N * C, 1), c.t[0] = rnd(V * C, 1);
        float *dw = zeros(V * C);
        embedding_backward(dw, c.R, tok, N, C);
        check_grad("embedding dwte", &c, c.t[0], dw, V * C);
        free(c.out), free(c.R), free(c.t[0]), free(dw);
    }
    {   /* rmsnorm */
        int N = 3, C = 8;
        op_ctx c = {.fwd = f_rms, .nout = N * C, .ia = {N, C}};
        c.out = zeros(N * C), c.R = rnd(N * C, 1), c.t[0] = rnd(N * C, 1), c.t[1] = rnd(C, 1), c.t[2] = zeros(N);
        for (int i = 0; i < C; i++) c.t[1][i] += 1.0f;
        f_rms(&c);
        float *dx = zeros(N * C), *dw = zeros(C);
        rmsnorm_backward(dx, dw, c.R, c.t[0], c.t[1], c.t[2], N, C);
        check_grad("rmsnorm dinp", &c, c.t[0], dx, N * C);
        check_grad("rmsnorm dw", &c, c.t[1], dw, C);
        free(c.out), free(c.R), free(c.t[0]), free(c.t[1]), free(c.t[2]), free(dx), free(dw);
    }
    for (int N = 1; N <= 3; N += 2) { /* matmul (N == 1 goes through sgemv) */
        int IC = 6, OC = 5;
        op_ctx c = {.fwd = f_mm, .nout = N * OC, .ia = {N, IC, OC}};
        c.out = zeros(N * OC), c.R = rnd(N * OC, 1), c.t[0] = rnd(N * IC, 1), c.t[1] = rnd(OC * IC, 1);
        float *dx = zeros(N * IC), *dw = zeros(OC * IC);
        matmul_backward(dx, dw, c.R, c.t[0], c.t[1], N, IC, OC);
        check_grad("matmul dinp", &c, c.t[0], dx, N * IC);
        check_grad("matmul dw", &c, c.t[1], dw, OC * IC);
        free(c.out), free(c.R), free(c.t[0]), free(c.t[1]), free(dx), free(dw);
    }
    {   /* bias */
        int N = 3, OC = 4;
        op_ctx c = {.fwd = f_bias, .nout = N * OC, .ia = {N, OC}};
        c.out = zeros(N * OC), c.R = rnd(N * OC, 1), c.t[0] = rnd(OC, 1), c.t[1] = rnd(N * OC, 1);
        float *db = zeros(OC);
        bias_backward(db, c.R, N, OC);
        check_grad("bias dbias", &c, c.t[0], db, OC);
        free(c.out), free(c.R), free(c.t[0]), free(c.t[1]), free(db);
    }
    {   /* rope, also in place on the gradient */
        int N = 3, H = 2, HD = 8, pos[3] = {0, 5, 17};
        op_ctx c = {.fwd = f_rope, .nout = N * H * HD, .ia = {N, H, HD}, .ip = {pos}, .fa = {10000.0f}};
        c.out = zeros(c.nout), c.R = rnd(c.nout, 1), c.t[0] = rnd(c.nout, 1);
        float *dx = zeros(c.nout);
        memcpy(dx, c.R, c.nout * sizeof(float));
        rope_backward(dx, dx, pos, N, H, HD, 10000.0f);
        check_grad("rope dinp", &c, c.t[0], dx, c.nout);
        free(c.out), free(c.R), free(c.t[0]), free(dx);
    }
    {   /* attention: two slots, GQA 2, rows out of order across slots */
        int N = 7, NH = 4, NKV = 2, HD = 4, Tmax = 6;
        int seq[7] = {0, 0, 1, 0, 1, 1, 0}, pos[7] = {0, 1, 0, 2, 1, 2, 3};
        long ncache = 2L * NKV * Tmax * HD;
        op_ctx c = {.fwd = f_att, .nout = (long)N * NH * HD, .ia = {N, NH, NKV, HD}, .ip = {seq, pos}};
        c.out = zeros(c.nout), c.R = rnd(c.nout, 1), c.t[0] = rnd(c.nout, 1.5f), c.t[1] = rnd(ncache, 1.5f),
        c.t[2] = rnd(ncache, 1);
        float *dq = zeros(c.nout), *dk = zeros(ncache), *dv = zeros(ncache);
        attention_backward(dq, dk, dv, c.R, c.t[0], c.t[1], c.t[2], seq, pos, N, NH, NKV, HD, Tmax, 1);

        check_grad("attention dq", &c, c.t[0], dq, c.nout);
        check_grad("attention dk (cache)", &c, c.t[1], dk, ncache);
        check_grad("attention dv (cache)", &c, c.t[2], dv, ncache);
        free(c.out), free(c.R), free(c.t[0]), free(c.t[1]), free(c.t[2]), free(dq), free(dk), free(dv);
    }
    {   /* attention_backward with threads: bit-identical to one thread (a
         * size large enough for the threads to start) */
        int N = 96, NH = 4, NKV = 2, HD = 16, Tmax = 48, seq[96], pos[96];
        for (int n = 0; n < N; n++) seq[n] = n % 2, pos[n] = n / 2;
        long nq = (long)N * NH * HD, nc = 2L * NKV * Tmax * HD;
        float *g = rnd(nq, 1), *q = rnd(nq, 1), *k = rnd(nc, 1), *v = rnd(nc, 1);
        float *dq[2] = {zeros(nq), zeros(nq)}, *dk[2] = {zeros(nc), zeros(nc)}, *dv[2] = {zeros(nc), zeros(nc)};
        for (int i = 0; i < 2; i++)
            attention_backward(dq[i], dk[i], dv[i], g, q, k, v, seq, pos, N, NH, NKV, HD, Tmax, i ? 3 : 1);
        CHECK(!memcmp(dq[0], dq[1], nq * sizeof(float)) && !memcmp(dk[0], dk[1], nc * sizeof(float)) &&
              !memcmp(dv[0], dv[1], nc * sizeof(float)));
        free(g), free(q), free(k), free(v);
        for (int i = 0; i < 2; i++) free(dq[i]), free(dk[i]), free(dv[i]);
    }
    {   /* swiglu */
        long n = 12;
        op_ctx c = {.fwd = f_swi, .nout = n};
        c.out = zeros(n), c.R = rnd(n, 1), c.t[0] = rnd(n, 3), c.t[1] = rnd(n, 1);
        float *dg = zeros(n), *du = zeros(n);
        swiglu_backward(dg, du, c.R, c.t[0], c.t[1], n);
        check_grad("swiglu dgate", &c, c.t[0], dg, n);
        check_grad("swiglu dup", &c, c.t[1], du, n);
        free(c.out), free(c.R), free(c.t[0]), free(c.t[1]), free(dg), free(du);
    }
    CHECK_DONE();
}
