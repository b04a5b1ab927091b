/* loss: the training losses over whole vocabulary rows on the device
 * (kernels.h k_softkl, k_ce). The CPU twin is lib/method/objective.c
 * (obj_softkl, obj_ce); these kernels follow it operation for operation so
 * that the two agree to the rounding of exp and the order of one sum.
 *
 * One block per row, two passes over the row:
 *   1. the log-sum-exp over the first vlim logits: each thread keeps a
 *      running max (float, exact) and a sum of exp(z - max) in double,
 *      rescaled when its max grows; the block combines them in double.
 *      Double, as objective.c and compact.cu do: a float sum over 151,936
 *      terms loses about 1e-4 relative, which is the size of the small
 *      probabilities whose gradients matter;
 *   2. the gradient written over the logits in place (a second (rows, V)
 *      buffer is 600 KB a row at Qwen's vocabulary). Everything the loss
 *      reads from the row (the target logits) is read before the barrier
 *      that ends pass 1, so overwriting is safe.
 * The sparse target's -scale * w_j are added after a second barrier, one
 * thread per target id. Ids are distinct (the objective's contract), so
 * the atomics never collide and the result is deterministic.
 *
 * A target id outside [0, V) or a weight that is negative or not finite
 * (what obj_softkl rejects with LR_EINPUT) makes the row's loss NaN and its
 * gradient zero: the caller checks the losses, and a bad row contributes
 * nothing to the weights meanwhile. */
#include "common.cuh"
#include "kernels.h"

#define LT 512 /* threads per row */

/* log sum_{a < n} exp(z_a) over the block, in double; every thread gets it */
static __device__ double row_lse(const float *z, int n, double *redd, float *redf) {
    float m = -INFINITY;
    double s = 0.0;
    for (int a = threadIdx.x; a < n; a += LT) {
        float v = z[a];
        if (v > m) s = s * exp((double)m - (double)v) + 1.0, m = v;
        else s += exp((double)v - (double)m);
    }
    const float mx = block_max(m, redf, -INFINITY);
    s = block_sum(m > -INFINITY ? s * exp((double)m - (double)mx) : 0.0, redd);
    return (double)mx + log(s);
}

/* z[a] = scale * W * softmax(z)_a for a < vlim, 0 above: pass 2 */
static __device__ void row_grad(float *z, int V, int vlim, double lse, double sw) {
    for (int a = threadIdx.x; a < V; a += LT) z[a] = a < vlim ? (float)(sw * exp((double)z[a] - lse)) : 0.0f;
}

static __device__ void row_zero(float *z, int V) {
    for (int a = threadIdx.x; a < V; a += LT) z[a] = 0.0f;
}

__global__ void __launch_bounds__(LT) softkl_kernel(float *logits, int V, int vlim, const int32_t *ids, const float *w,
                                                    const int64_t *off, float scale, double *loss) {
    __shared__ double redd[32];
    __shared__ float redf[32];
    __shared__ int redi[32];
    const int r = blockIdx.x;
    float *z = logits + (size_t)r * V;
    const int64_t o = off[r];
    const int n = (int)(off[r + 1] - o);
    /* validation first, block-uniform */
    int bad = 0;
    for (int j = threadIdx.x; j < n; j += LT) {
        int id = ids[o + j];
        float wj = w[o + j];
        if (id < 0 || id >= V || !(wj >= 0.0f) || !isfinite(wj)) bad = 1;
    }
    bad = block_sum(bad, redi);
    if (bad) {
        row_zero(z, V);
        if (threadIdx.x == 0) loss[r] = NAN;
        return;
    }
    /* the kept weight W and the KL's terms, read before anything is written */
    double W = 0.0, kl = 0.0;
    const double lse = row_lse(z, vlim, redd, redf);
    for (int j = threadIdx.x; j < n; j += LT) {
        int id = ids[o + j];
        float wj = w[o + j];
        if (id >= vlim) continue; /* dropped, as the reference does */
        W += wj;
        if (wj > 0.0f) kl += (double)wj * (log((double)wj) - ((double)z[id] - lse));
    }
    W = block_sum(W, redd);
    kl = block_sum(kl, redd);
    if (threadIdx.x == 0) loss[r] = kl;
    row_grad(z, V, vlim, lse, scale * W);
    __syncthreads();
    for (int j = threadIdx.x; j < n; j += LT) {
        int id = ids[o + j];
        if (id < vlim) atomicAdd(&z[id], -(scale * w[o + j]));
    }
}

__global__ void __launch_bounds__(LT) ce_kernel(float *logits, int V, int vlim, const int32_t *target, float scale,
                                                double *loss) {
    __shared__ double redd[32];
    __shared__ float redf[32];
    const int r = blockIdx.x, t = target[r];
    float *z = logits + (size_t)r * V;
    if (t < 0 || t >= V || t >= vlim) { /* block-uniform */
        row_zero(z, V);
        if (threadIdx.x == 0) loss[r] = t < 0 || t >= V ? NAN : 0.0;
        return;
    }
    const float zt = z[t]; /* before the barriers of row_lse, hence before any write */
    const double lse = row_lse(z, vlim, redd, redf);
    if (threadIdx.x == 0) loss[r] = lse - zt;
    row_grad(z, V, vlim, lse, (double)scale);
    __syncthreads();
    if (threadIdx.x == 0) z[t] -= scale;
}

void k_softkl(float *logits, int R, int V, int vlim, const int32_t *ids, const float *w, const int64_t *off, float scale,
              double *loss, void *stream) {
    if (vlim <= 0 || vlim > V) vlim = V;
    if (R > 0) LAUNCH(softkl_kernel, R, LT, 0, (cudaStream_t)stream, logits, V, vlim, ids, w, off, scale, loss);
}

void k_ce(float *logits, int R, int V, int vlim, const int32_t *target, float scale, double *loss, void *stream) {
    if (vlim <= 0 || vlim > V) vlim = V;
    if (R > 0) LAUNCH(ce_kernel, R, LT, 0, (cudaStream_t)stream, logits, V, vlim, target, scale, loss);
}
