/* adamw: the optimizer step on the device (kernels.h k_grad_norm,
 * k_adamw). The CPU twin is lib/method/adamw.c (grad_clip, adamw_step),
 * itself torch.optim.AdamW and clip_grad_norm_; the element update is the
 * same float expression in the same order.
 *
 * The norm is a two-stage reduction with a fixed shape, so it is
 * deterministic (no atomics, the same sum tree every run): K_NORM_BLOCKS
 * blocks stride over g accumulating squares in double and write one partial
 * each; one block sums the partials and derives the clip factor. The factor
 * stays in device memory and the update kernel reads it, so clipping costs
 * no host round trip; as in grad_clip the gradient is multiplied by it in
 * float before the update (by 1.0f, exactly, when there is no clipping). */
#include "common.cuh"
#include "kernels.h"

#define NT 256 /* threads per block */

__global__ void __launch_bounds__(NT) norm_partial_kernel(const float *g, size_t n, double *work) {
    __shared__ double redd[32];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * NT + threadIdx.x; i < n; i += (size_t)NT * K_NORM_BLOCKS) {
        double x = g[i];
        s += x * x;
    }
    s = block_sum(s, redd);
    if (threadIdx.x == 0) work[blockIdx.x] = s;
}

__global__ void __launch_bounds__(NT) norm_final_kernel(const double *work, double max_norm, double *norm, float *coef) {
    __shared__ double redd[32];
    double s = 0.0;
    for (int b = threadIdx.x; b < K_NORM_BLOCKS; b += NT) s += work[b];
    s = block_sum(s, redd);
    if (threadIdx.x == 0) {
        double nm = sqrt(s);
        norm[0] = nm;
        coef[0] = max_norm > 0.0 && nm > max_norm ? (float)(max_norm / (nm + 1e-6)) : 1.0f;
    }
}

__global__ void __launch_bounds__(NT) adamw_kernel(float *p, float *m, float *v, const float *g, const float *coef, size_t n,
                                                   float beta1, float beta2, float eps, float wd, float decay, float step,
                                                   float bc2s) {
    const float c = coef ? coef[0] : 1.0f;
    for (size_t i = (size_t)blockIdx.x * NT + threadIdx.x; i < n; i += (size_t)NT * gridDim.x) {
        float gi = g[i] * c, pi = p[i], mi = m[i], vi = v[i];
        if (wd != 0.0f) pi *= decay;
        mi += (1.0f - beta1) * (gi - mi); /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        vi = beta2 * vi + (1.0f - beta2) * gi * gi;
        pi -= step * mi / (sqrtf(vi) / bc2s + eps);
        p[i] = pi, m[i] = mi, v[i] = vi;
    }
}

void k_grad_norm(const float *g, size_t n, double max_norm, double *work, double *norm, float *coef, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    LAUNCH(norm_partial_kernel, K_NORM_BLOCKS, NT, 0, s, g, n, work);
    LAUNCH(norm_final_kernel, 1, NT, 0, s, work, max_norm, norm, coef);
}

void k_adamw(float *p, float *m, float *v, const float *g, const float *coef, size_t n, float lr, float beta1,
             float beta2, float eps, float wd, long t, void *stream) {
    if (n == 0) return;
    /* the bias corrections in double on the host, as torch's python scalars
     * and adamw_step */
    double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    float step = (float)(lr / bc1), bc2s = (float)sqrt(bc2), decay = 1.0f - lr * wd;
    size_t nb = (n + NT - 1) / NT;
    unsigned blocks = (unsigned)(nb < 65536 ? nb : 65536);
    LAUNCH(adamw_kernel, blocks, NT, 0, (cudaStream_t)stream, p, m, v, g, coef, n, beta1, beta2, eps, wd, decay, step,
           bc2s);
}
