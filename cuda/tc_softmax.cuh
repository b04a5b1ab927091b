/* tc_softmax.cuh: the online-softmax step between a tensor-core attention
 * kernel's two products (S = Q K^T, then O += P V), shared by the
 * inference kernel (attention_tc.cu) and the trainer's forward
 * (attention_tc_train.cu) so that both round P the same way. */
#ifndef LR_TC_SOFTMAX_CUH
#define LR_TC_SOFTMAX_CUH
#include "common.cuh"

/* One query row over one key tile, by the row's two lanes (h = 0, 1: keys
 * h, h + 2, ... of the nk scored, key k0 + c visible while <= last_key;
 * the two lanes must be neighbours, lanes 2i and 2i + 1, and the whole
 * warp calls it). srow: the row's scores S (float, unscaled); prow: P =
 * exp(S scale - m) rounded to bf16, the operand P V needs, 0 where masked;
 * orow: the row's O, rescaled by exp(m_old - m); *m, *l: the running max
 * and the sum of the rounded P, so the output O / l is a convex combination
 * of V rows. A row that sees no key yet keeps m = -inf and P = 0.
 * *lx, unless lx is NULL: the running sum of P unrounded, so that m +
 * log(*lx) is the row's log-sum-exp as the float32 reference has it (the
 * trainer's forward hands it to the backward, whose P = exp(s - lse) is
 * unrounded). */
static __device__ __forceinline__ void tc_softmax_step(const float *srow, bf16 *prow, float *orow, int h, int nk,
                                                       int k0, int last_key, float scale, int HD, float *m, float *l,
                                                       float *lx) {
    float mt = -INFINITY;
    for (int c = h; c < nk; c += 2)
        if (k0 + c <= last_key) mt = fmaxf(mt, srow[c] * scale);
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    const float mn = fmaxf(*m, mt);
    float corr = 1.0f, psum = 0.0f, xsum = 0.0f;
    if (mn > -INFINITY) {
        corr = expf(*m - mn); /* m = -inf (the first visible tile): 0, and O and l are 0 */
        for (int c = h; c < nk; c += 2) {
            float e = k0 + c <= last_key ? expf(srow[c] * scale - mn) : 0.0f;
            bf16 p = f2bf(e);
            prow[c] = p;
            psum += bf2f(p), xsum += e;
        }
        *m = mn;
    } else {
        for (int c = h; c < nk; c += 2) prow[c] = f2bf(0.0f);
    }
    psum += __shfl_xor_sync(0xffffffffu, psum, 1);
    *l = *l * corr + psum;
    if (lx) { /* warp-uniform */
        xsum += __shfl_xor_sync(0xffffffffu, xsum, 1);
        *lx = *lx * corr + xsum;
    }
    for (int d = h; d < HD; d += 2) orow[d] *= corr;
}
#endif
