/* dropout: see dropout.h. */
#include "common.cuh"
#include "dropout.h"

/* ops_cpu.c's dropout_factor: rng_unit of the state key ^ i (splitmix64,
 * base/rng.h: keep the two identical), compared in double as there. */
static __device__ __forceinline__ float drop_factor(uint64_t key, size_t i, float p) {
    uint64_t z = (key ^ (uint64_t)i) + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    double u = (double)(z >> 11) * (1.0 / 9007199254740992.0);
    return u < (double)p ? 0.0f : 1.0f / (1.0f - p);
}

__global__ void dropout_kernel(float *out, const float *inp, size_t n, float p, uint64_t key) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = inp[i] * drop_factor(key, i, p);
}

__global__ void dropout_backward_kernel(float *dinp, const float *dout, size_t n, float p, uint64_t key) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dinp[i] += dout[i] * drop_factor(key, i, p);
}

void k_dropout(float *out, const float *inp, size_t n, float p, uint64_t key, void *stream) {
    if (n) LAUNCH(dropout_kernel, cdiv(n, 256), 256, 0, (cudaStream_t)stream, out, inp, n, p, key);
}

void k_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t key, void *stream) {
    if (n) LAUNCH(dropout_backward_kernel, cdiv(n, 256), 256, 0, (cudaStream_t)stream, dinp, dout, n, p, key);
}
