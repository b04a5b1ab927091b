/* common: small device helpers shared by the backend's .cu files (each .cu
 * is compiled on its own, without relocatable device code, so helpers are
 * inline here). */
#ifndef LR_CUDA_COMMON_CUH
#define LR_CUDA_COMMON_CUH

#include "compat.h"

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ float bf2f(bf16 h) { return __bfloat162float(h); }
static __device__ __forceinline__ bf16 f2bf(float f) { return __float2bfloat16(f); }

template <class T> static __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <class T> static __device__ __forceinline__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        T w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

/* Block-wide sum / max, result in every thread. blockDim.x is a multiple
 * of 32 and at most 1024; `red` is 32 entries of shared scratch, reusable
 * right after the call returns (the trailing barrier sees to it). */
template <class T> static __device__ T block_sum(T v, T *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) red[w] = v;
    __syncthreads();
    T s = lane < nw ? red[lane] : T(0);
    s = warp_sum(s);
    __syncthreads();
    return s;
}
template <class T> static __device__ T block_max(T v, T *red, T lowest) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) red[w] = v;
    __syncthreads();
    T s = lane < nw ? red[lane] : lowest;
    s = warp_max(s);
    __syncthreads();
    return s;
}

/* Exclusive prefix sum of f over the block (Hillis-Steele); buf is
 * blockDim.x ints of shared scratch. With total, *total gets the block's
 * sum. Every thread of the block calls it. */
static __device__ inline int block_exscan(int f, int *buf, int *total) {
    buf[threadIdx.x] = f;
    __syncthreads();
    for (int o = 1; o < (int)blockDim.x; o <<= 1) {
        int v = threadIdx.x >= (unsigned)o ? buf[threadIdx.x - o] : 0;
        __syncthreads();
        buf[threadIdx.x] += v;
        __syncthreads();
    }
    int incl = buf[threadIdx.x];
    if (total) *total = buf[blockDim.x - 1];
    __syncthreads();
    return incl - f;
}

static inline unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

#endif
