/* emu: an emulated CUDA device for testing the backend's kernels on a CPU.
 * The .cu files compile with g++ -DLR_CUDA_EMU against this header (see
 * compat.h) and link cuda/emu.cc instead of cudart and cuBLAS.
 *
 * Model of execution: a launch runs its blocks one after another; the
 * threads of a block are fibers (ucontext) on the calling thread, switched
 * only at __syncthreads() and warp-level operations, so shared memory
 * (`__shared__` is `static` here: one copy, blocks run one at a time) and
 * barriers behave as on a GPU. Divergent barriers, warp operations with
 * exited lanes or a partial mask, and barriers after some threads returned
 * abort with a message naming the kernel: code that is undefined on a GPU
 * fails loudly here. Device memory is host memory from malloc, so ASan sees
 * out-of-bounds accesses in kernels.
 *
 * cuBLAS: cublasGemmEx (column-major, OP_N/OP_T, bf16 or f32 operands,
 * f32 or bf16 output, f32 compute) via float32 OpenBLAS: the arithmetic a
 * real GEMM with f32 accumulation does, up to summation order. */
#ifndef LR_CUDA_EMU_H
#define LR_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};

/* The running fiber's coordinates; the scheduler sets them at every switch. */
extern uint3 emu_threadIdx, emu_blockIdx;
extern dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim
#define warpSize 32

void __syncthreads();
/* Exchanges `size` bytes of every lane of the calling warp: writes this
 * lane's bytes, waits for the warp, copies lane src_lane's bytes into out,
 * waits again. All 32 lanes must take part (mask 0xffffffff). */
void emu_warp_exchange(unsigned mask, const void *mine, void *out, size_t size, int src_lane);
int emu_lane();

template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    T out;
    int lane = emu_lane();
    emu_warp_exchange(mask, &v, &out, sizeof v, (lane & ~(width - 1)) | ((lane ^ lane_mask) & (width - 1)));
    return out;
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    T out;
    int lane = emu_lane();
    emu_warp_exchange(mask, &v, &out, sizeof v, (lane & ~(width - 1)) | (src & (width - 1)));
    return out;
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    T out;
    int lane = emu_lane(), base = lane & ~(width - 1), src = lane + (int)delta;
    emu_warp_exchange(mask, &v, &out, sizeof v, src < base + width ? src : lane);
    return out;
}

/* Atomics: fibers never switch inside one, so plain read-modify-write. */
template <class T> inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <class T> inline T atomicMax(T *p, T v) { T o = *p; if (v > o) *p = v; return o; }
template <class T> inline T atomicMin(T *p, T v) { T o = *p; if (v < o) *p = v; return o; }

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }

/* bf16 with CUDA's conversions (round to nearest even, NaN stays NaN). */
struct __nv_bfloat16 {
    uint16_t x;
};
__nv_bfloat16 __float2bfloat16(float f);
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }

/* Launch: blocks in order, each block's threads as fibers. smem bytes of
 * dynamic shared memory (DYN_SMEM) per block. */
void emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body, const char *name);
void *emu_dyn_smem();
#define LAUNCH(kernel, grid, block, smem, stream, ...)                                                        \
    ((void)(stream), emu_launch((grid), (block), (smem), [=]() { kernel(__VA_ARGS__); }, #kernel))
#define DYN_SMEM(T, name) T *name = reinterpret_cast<T *>(emu_dyn_smem())

/* ---- runtime API subset ---- */
typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevicePointer = 17,
} cudaError_t;
typedef enum {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int multiProcessorCount;
    int major, minor;
    size_t sharedMemPerBlockOptin;
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
template <class F> inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }

/* ---- cuBLAS subset ---- */
typedef struct emu_cublas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
/* C = alpha op(A) op(B) + beta C, column-major; alpha/beta point to float. */
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo);
const char *cublasGetStatusString(cublasStatus_t s);

#endif
