/* emu: an emulated CUDA device for testing the backend's kernels on a CPU.
 * The .cu files compile with g++ -DLR_CUDA_EMU against this header (see
 * compat.h) and link cuda/emu.cc instead of cudart and cuBLAS.
 *
 * What is emulated:
 * - Launches run their blocks one after another (x fastest, then y, z); the
 *   threads of a block are fibers on the calling host thread, switched only
 *   at __syncthreads() and warp operations (shuffles, votes, __syncwarp),
 *   so `__shared__` (`static` here: one copy, blocks run one at a time),
 *   dynamic shared memory (DYN_SMEM; filled with 0xFF bytes before every
 *   block, i.e. NaN floats, -1 ints, to expose reads before writes) and
 *   barriers behave as on a GPU.
 * - Warp operations: shuffles, votes, __match_any_sync, __syncwarp; __popc,
 *   __popcll, __ffs as on the device.
 * - Strict checks abort with one stderr line naming kernel, block and
 *   thread: a __syncthreads() reached after threads of the block returned
 *   or while lanes of the caller's warp wait at a warp operation, a thread
 *   returning while others wait at a barrier, a warp operation with a mask
 *   other than 0xffffffff, with exited lanes or in a block whose size is no
 *   multiple of 32, and any deadlock (no fiber can run, some unfinished).
 * - Launch configuration limits (block <= 1024 threads, 1024 x 1024 x 64,
 *   grid y,z <= 65535, dynamic shared memory <= 227 KiB): a bad launch does
 *   not run and sets cudaErrorInvalidConfiguration, as on a GPU. Above
 *   48 KiB of dynamic shared memory the kernel needs an opt-in
 *   (cudaFuncSetAttribute(MaxDynamicSharedMemorySize) at least that
 *   large, at most 227 KiB), else the launch does not run and sets
 *   cudaErrorInvalidValue, as on a GPU.
 * - Device memory is host memory from malloc, filled with 0xFF bytes like
 *   uninitialised device memory; a registry of live allocations makes
 *   cudaFree/cudaMemcpy/cudaMemset/cublasGemmEx reject pointers or ranges
 *   outside them, and ASan sees out-of-bounds accesses in kernels.
 * - CUDA graphs by stream capture (see the section below): a captured
 *   stream records launches, copies and GEMMs with their arguments, and
 *   cudaGraphLaunch replays them; calls that would synchronise with an
 *   open capture fail and invalidate it.
 * - tensor cores through nvcuda::wmma, bf16 16x16x16 with float
 *   accumulators, warp-collective, in a scrambled fragment mapping (see
 *   its section below);
 * - asynchronous global-to-shared copies through cuda_pipeline.h's
 *   primitives (__pipeline_memcpy_async, __pipeline_commit,
 *   __pipeline_wait_prior; see their section below), made to expose
 *   reading a copy's destination before the wait that completes it;
 * - cuBLAS: cublasGemmEx (column-major, OP_N/OP_T, bf16 or f32 operands,
 *   f32 or bf16 output, f32 compute, cuBLAS's support matrix and argument
 *   checks) via float32 OpenBLAS: the arithmetic a real GEMM with f32
 *   accumulation does, up to summation order.
 *
 * - LR_EMU_ORDER=reverse runs the blocks last first and starts (and
 *   releases from each barrier) a block's threads highest first, so a
 *   kernel that depends on the default order (a thread reading another's
 *   write without a barrier, a block reading an earlier block's output)
 *   gives other results in one of the two orders (tests/run.sh runs the
 *   sanitizer build in reverse).
 *
 * What is NOT emulated (bugs of these kinds pass here and fail on a GPU):
 * - no concurrency between blocks or between fibers except at the switch
 *   points: memory-ordering and __threadfence bugs are not caught, nor a
 *   race both orders resolve alike; atomics are plain read-modify-write;
 * - warp-synchronous code that relies on lockstep execution without
 *   __syncwarp/shuffles (e.g. volatile shared-memory warp reductions) runs
 *   here as if it were correct; threads reaching different __syncthreads()
 *   call sites (or lanes different shuffle call sites) are matched as one
 *   barrier, as hardware does, though CUDA calls it undefined;
 * - `__shared__` variables keep their values from the previous block (on a
 *   GPU they are undefined), static shared memory sizes are not limited,
 *   and a kernel may read host memory through a pointer it finds in memory
 *   or in a structure argument (pointer arguments themselves are checked:
 *   emu_check_args), which a GPU cannot;
 * - streams and events are synchronous (events read the wall clock), so a
 *   host buffer overwritten before its asynchronous copy has run passes
 *   here; emu_pageable_async_copies() counts the asynchronous copies whose
 *   host side is pageable (not from cudaMallocHost), which a GPU performs
 *   synchronously through a staging buffer;
 * - one host thread at a time may launch (a second concurrent launch aborts);
 * - wmma: only bf16 16x16x16 with float accumulators; mma_sync's float
 *   summation order (k order after C) is not a tensor core's, which rounds
 *   inside its adder tree, so results differ by float rounding; a lane's
 *   own x[] reads pass here for any mapping-independent use (scaling every
 *   element), as on a card;
 * - asynchronous copies: only the cuda_pipeline.h primitives, into dynamic
 *   shared memory (not cuda::memcpy_async, cooperative_groups or
 *   barrier-completed copies); a copy completes at its thread's wait, so
 *   another thread that reads it after that wait but without a barrier in
 *   between passes here (the scheduler runs a thread until it blocks, so
 *   a reader usually runs before the copying threads wait, and fails);
 * - __nv_bfloat16 converts to and from float like CUDA's, but has no
 *   arithmetic operators: a + b computes in float (CUDA rounds each bf16
 *   operation); read its bits with __bfloat16_as_ushort, not .x (which
 *   CUDA's type does not expose). */
#ifndef LR_CUDA_EMU_H
#define LR_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
/* The 16-byte vector types, aligned as CUDA's: a misaligned float4/uint4
 * access faults on a card; here the UBSan build reports it (alignment
 * check), the plain build does not. */
struct __align__(16) float4 {
    float x, y, z, w;
};
struct __align__(16) uint4 {
    unsigned x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

/* The running fiber's coordinates; the scheduler sets them at every switch. */
extern uint3 emu_threadIdx, emu_blockIdx;
extern dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim
#define warpSize 32

void __syncthreads();
int __syncthreads_count(int pred);
inline int __syncthreads_and(int pred) { return __syncthreads_count(pred) == (int)(blockDim.x * blockDim.y * blockDim.z); }
inline int __syncthreads_or(int pred) { return __syncthreads_count(pred) != 0; }
/* Exchanges `size` bytes (at most 64) of every lane of the calling warp:
 * writes this lane's bytes, waits for the warp, copies lane src_lane's
 * bytes into out. All 32 lanes must take part (mask 0xffffffff). With
 * size 0 it is a plain warp barrier (__syncwarp). */
void emu_warp_exchange(unsigned mask, const void *mine, void *out, size_t size, int src_lane);
/* The same, copying every lane's bytes: out[lane * size ...] for lanes 0..31. */
void emu_warp_allgather(unsigned mask, const void *mine, void *out, size_t size);
int emu_lane();

inline void __syncwarp(unsigned mask = 0xffffffffu) { emu_warp_exchange(mask, nullptr, nullptr, 0, emu_lane()); }
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
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    T out;
    int lane = emu_lane(), base = lane & ~(width - 1), src = lane - (int)delta;
    emu_warp_exchange(mask, &v, &out, sizeof v, src >= base ? src : lane);
    return out;
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    int all[32], mine = pred != 0;
    emu_warp_allgather(mask, &mine, all, sizeof mine);
    unsigned b = 0;
    for (int i = 0; i < 32; i++) b |= (unsigned)all[i] << i;
    return b;
}
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == 0xffffffffu; }
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline unsigned __activemask() { return 0xffffffffu; }
/* The lanes of the warp holding the same value as this lane (sm_70+). */
template <class T> inline unsigned __match_any_sync(unsigned mask, T v) {
    T all[32];
    emu_warp_allgather(mask, &v, all, sizeof v);
    unsigned m = 0;
    for (int i = 0; i < 32; i++) m |= (unsigned)(all[i] == v) << i;
    return m;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); } /* 1 + the lowest set bit, 0 for none */

/* Atomics: fibers never switch inside one, so plain read-modify-write. */
template <class T> inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <class T> inline T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; }
template <class T> inline T atomicMax(T *p, T v) { T o = *p; if (v > o) *p = v; return o; }
template <class T> inline T atomicMin(T *p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <class T> inline T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
template <class T> inline T atomicCAS(T *p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
template <class T> inline T atomicOr(T *p, T v) { T o = *p; *p = o | v; return o; }
template <class T> inline T atomicAnd(T *p, T v) { T o = *p; *p = o & v; return o; }
template <class T> inline T __ldg(const T *p) { return *p; }

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }

/* bf16 with CUDA's conversions (round to nearest even, NaN becomes the
 * canonical quiet NaN 0x7fff, as cvt.rn.bf16.f32 does). Like CUDA's type it
 * converts implicitly to and from float. */
struct __nv_bfloat16 {
    uint16_t x;
    __nv_bfloat16() = default;
    inline __nv_bfloat16(float f);
    operator float() const { return __uint_as_float((unsigned)x << 16); }
};
inline __nv_bfloat16 __float2bfloat16(float f) {
    unsigned u = __float_as_uint(f);
    __nv_bfloat16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u)
        h.x = 0x7fff;
    else
        h.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return h;
}
inline __nv_bfloat16::__nv_bfloat16(float f) : x(__float2bfloat16(f).x) {}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
    __nv_bfloat16 h;
    h.x = u;
    return h;
}

typedef struct emu_stream *cudaStream_t;

/* Launch: blocks in order, each block's threads as fibers. smem bytes of
 * dynamic shared memory (DYN_SMEM) per block. A bad configuration does not
 * run and sets cudaErrorInvalidConfiguration (see cudaGetLastError). On a
 * stream being captured (cudaStreamBeginCapture) the launch does not run:
 * it is recorded, its arguments as they are now, for cudaGraphLaunch. */
void emu_launch(cudaStream_t s, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body,
                const char *name, const char *file, const void *fn);
void *emu_dyn_smem();
/* The kernel with its arguments evaluated and copied now, as a launch
 * copies them (a captured launch runs later: an argument like *ptr must not
 * be read then). */
template <class F, class... A> inline std::function<void()> emu_bind(F f, A... args) {
    return [=]() { f(args...); };
}
/* A kernel's pointer arguments must be device memory (cudaMalloc, or
 * cudaMallocHost's pinned memory, which a card maps), NULL, or one past
 * such an allocation's end: a host pointer that works here is an illegal
 * address on a card. Checked at every launch; a bad one aborts with one
 * line naming the kernel and the argument. Pointers inside structures
 * passed by value are not seen. */
bool emu_kernel_ptr_ok(const void *p);
/* on: host pointers pass too, for the kernel tests that hand their host
 * buffers to the launchers directly (the emulator shares one memory);
 * everything else, the tools and the tests of whole forwards and trainers
 * included, runs with the check */
extern "C" void emu_allow_host_pointers(int on);
[[noreturn]] void emu_bad_kernel_ptr(const char *kernel, int arg, const void *p);
template <class T> inline void emu_check_arg(const char *, int, T) {}
template <class T> inline void emu_check_arg(const char *kernel, int arg, T *p) {
    if (p && !emu_kernel_ptr_ok((const void *)p)) emu_bad_kernel_ptr(kernel, arg, (const void *)p);
}
template <class... A> inline void emu_check_args(const char *kernel, A... args) {
    int i = 0;
    (emu_check_arg(kernel, i++, args), ...);
}
#define LAUNCH(kernel, grid, block, smem, stream, ...)                                                        \
    (emu_check_args(#kernel, __VA_ARGS__),                                                                    \
     emu_launch((cudaStream_t)(stream), (grid), (block), (smem), emu_bind(kernel, __VA_ARGS__), #kernel,         \
                __FILE__, reinterpret_cast<const void *>(kernel)))
#define DYN_SMEM(T, name) T *name = reinterpret_cast<T *>(emu_dyn_smem())

/* ---- tensor cores: nvcuda::wmma (mma.h), bf16 16x16x16, float accumulate ----
 * Fragments hold 8 elements a lane (num_elements, x[]) like CUDA's, in a
 * scrambled element-to-lane mapping (a different bijection for matrix_a,
 * matrix_b and accumulator, none of them row-major): CUDA leaves the mapping
 * unspecified, so a kernel that assumes one (indexing x[] by row or column,
 * or reusing an accumulator as a matrix_a) computes garbage here as it
 * might on a card. load_matrix_sync, store_matrix_sync and mma_sync are
 * warp-collective like the shuffles (all 32 lanes, the same pointer and
 * ldm in every lane, else abort); a pointer that is not 32-byte aligned or
 * an ldm that is no multiple of 16 bytes aborts, as CUDA requires them.
 * Loads and stores move data after the warp has met, so a lane reading what
 * another lane stored needs a __syncwarp() (or __syncthreads()) in between,
 * as on a card. mma_sync: D = A B + C, each product exact in float, summed
 * in float in k order after C. */
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use> struct emu_use;
template <> struct emu_use<matrix_a> { enum { id = 0 }; };
template <> struct emu_use<matrix_b> { enum { id = 1 }; };
template <> struct emu_use<accumulator> { enum { id = 2 }; };
template <class L> struct emu_layout;
template <> struct emu_layout<row_major> { enum { col = 0 }; };
template <> struct emu_layout<col_major> { enum { col = 1 }; };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "emu: only 16x16x16 wmma fragments are emulated");
    static_assert(emu_use<Use>::id == 2 ? (std::is_same<T, float>::value && std::is_same<Layout, void>::value)
                                        : (std::is_same<T, __nv_bfloat16>::value && !std::is_same<Layout, void>::value),
                  "emu: only bf16 row/col-major matrix_a/b and float accumulator fragments are emulated");
    enum { num_elements = 8 };
    T x[8];
};
} // namespace wmma
} // namespace nvcuda
/* use: 0 matrix_a, 1 matrix_b, 2 accumulator; esize 2 (bf16) or 4 (float) */
void emu_wmma_load(int use, void *x, const void *p, size_t esize, unsigned ldm, int col_major);
void emu_wmma_store(void *p, const float *x, unsigned ldm, int col_major);
void emu_wmma_mma(float *d, const __nv_bfloat16 *a, const __nv_bfloat16 *b, const float *c);
namespace nvcuda {
namespace wmma {
template <class Use, class T, class L> inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, T v) {
    for (int i = 0; i < 8; i++) f.x[i] = v;
}
template <class Use, class L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, L> &f, const __nv_bfloat16 *p, unsigned ldm) {
    emu_wmma_load(emu_use<Use>::id, f.x, p, sizeof *p, ldm, emu_layout<L>::col);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t l) {
    emu_wmma_load(2, f.x, p, sizeof *p, ldm, l == mem_col_major);
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
    emu_wmma_store(p, f.x, ldm, l == mem_col_major);
}
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c) {
    emu_wmma_mma(d.x, a.x, b.x, c.x);
}
} // namespace wmma
} // namespace nvcuda

/* ---- asynchronous copies: cuda_pipeline.h's primitives (sm_80+ cp.async) ----
 * Per thread, as on a card: __pipeline_memcpy_async queues a copy of
 * size_and_align bytes (4, 8 or 16; both pointers aligned to it; the last
 * zfill bytes zeros instead of source bytes, so zfill = size reads
 * nothing), __pipeline_commit closes the thread's queued copies into a
 * group, __pipeline_wait_prior(n) completes every committed group but the
 * newest n. To expose the bugs this pattern invites, the destination is
 * filled with 0xFF bytes (NaN) when the copy is issued and written only by
 * the wait that covers it: reading it earlier, computing on a buffer still
 * in flight, waiting for the wrong count or not at all gives NaN; another
 * thread sees the data only once the copying thread has waited (a barrier
 * after the waits orders that, as on a card). Aborts (one stderr line):
 * a bad size, zfill or alignment, a destination outside the block's
 * dynamic shared memory, a source inside it, and a thread returning with
 * copies no wait completed. The source is read at issue. */
void __pipeline_memcpy_async(void *dst_shared, const void *src_global, size_t size_and_align, size_t zfill = 0);
void __pipeline_commit();
void __pipeline_wait_prior(size_t prior);

/* ---- runtime API subset ---- */
typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906,
} cudaError_t;
typedef enum {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;
typedef struct emu_event *cudaEvent_t;
struct cudaUUID_t {
    char bytes[16];
};
struct cudaDeviceProp {
    char name[256];
    cudaUUID_t uuid;
    size_t totalGlobalMem;
    int multiProcessorCount;
    int major, minor;
    size_t sharedMemPerBlockOptin;
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum { cudaStreamDefault = 0, cudaStreamNonBlocking = 1 };
enum { cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2 };

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaMalloc(void **p, size_t n);
template <class T> inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
extern "C" size_t emu_pageable_async_copies(void); /* see the NOT emulated list */
extern "C" size_t emu_events_recorded(void);       /* cudaEventRecord calls so far */
/* launches of kernel `name` (as LAUNCH spells it, e.g. "attention_tc_kernel") that ran so far, graph replays included */
extern "C" size_t emu_kernel_launches(const char *name);
template <class T> inline cudaError_t cudaMallocHost(T **p, size_t n) { return cudaMallocHost((void **)p, n); }
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s = 0);
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind k);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                              size_t height, cudaMemcpyKind k, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
/* Records a kernel's dynamic shared memory opt-in; a launch asking for more
 * than 48 KiB without one that covers it fails (cudaErrorInvalidValue). */
cudaError_t emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v);
template <class F> inline cudaError_t cudaFuncSetAttribute(F f, cudaFuncAttribute a, int v) {
    return emu_func_set_attribute(reinterpret_cast<const void *>(f), a, v);
}

/* ---- CUDA graphs by stream capture ----
 * Between cudaStreamBeginCapture and cudaStreamEndCapture the stream's
 * kernel launches, cudaMemcpyAsync/cudaMemsetAsync and cublasGemmEx calls
 * are checked as usual but recorded instead of run, with the argument
 * values of that moment (device memory is read when the graph runs); a
 * cudaGraphExec_t from cudaGraphInstantiate runs them in order on every
 * cudaGraphLaunch. While any capture is open, a call that would
 * synchronise with it fails with cudaErrorStreamCaptureUnsupported and
 * invalidates it, as in CUDA's global and thread-local capture modes:
 * cudaMalloc/cudaFree/cudaMallocHost/cudaFreeHost, cudaMemcpy/cudaMemset
 * (and the 2D copy), stream, event and device synchronisation; so does a
 * launch or asynchronous copy on the legacy stream 0
 * (cudaErrorStreamCaptureImplicit) and, stricter than CUDA, which records
 * event nodes, cudaEventRecord on the captured stream. cudaStreamEndCapture
 * of an invalidated capture returns cudaErrorStreamCaptureInvalidated and
 * no graph. Not emulated: several streams joined into one capture (events
 * between streams), graph updates, child graphs. */
typedef struct emu_graph *cudaGraph_t;
typedef struct emu_graph_exec *cudaGraphExec_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
};
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
extern "C" size_t emu_graph_launches(void); /* cudaGraphLaunch calls that ran a graph, so far */

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
/* A user workspace: must be device memory of at least n bytes (unused here:
 * the emulated GEMM needs none). */
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *workspace, size_t n);
/* C = alpha op(A) op(B) + beta C, column-major; alpha/beta point to float
 * (host pointers, read at the call, or at capture when the handle's stream
 * is being captured). Types as cuBLAS supports them with COMPUTE_32F: A and B
 * both CUDA_R_32F with C CUDA_R_32F, or both CUDA_R_16BF with C CUDA_R_16BF
 * or CUDA_R_32F; anything else is CUBLAS_STATUS_NOT_SUPPORTED. A, B and C
 * must lie inside live cudaMalloc/cudaMallocHost allocations (else the
 * emulator aborts: on a GPU it would be an illegal address). */
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo);
const char *cublasGetStatusString(cublasStatus_t s);

#endif
