/* emu_selftest: kernels and host drivers that check the emulated device
 * (cuda/emu.cc) against serial computations; tests/unit/test_gpu_emu.c
 * calls them. Plain CUDA through compat.h, so nvcc compiles it too (and on
 * a GPU the first group would check the real device the same way).
 *
 * emu_selftest_<name>() returns the number of mismatches (0 = pass) after
 * printing each to stderr. emu_selftest_bad_<name>() launch kernels that
 * are undefined on a GPU; on the emulator they must abort naming the
 * kernel, so the test runs them in a child process. */
#include "compat.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(call)                                                                                              \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) {                                                                              \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));             \
            return 1000;                                                                                      \
        }                                                                                                     \
    } while (0)

namespace {

int bad(const char *what, long long i, double got, double want) {
    fprintf(stderr, "emu_selftest: %s [%lld]: got %.9g, want %.9g\n", what, i, got, want);
    return 1;
}

/* Deterministic pseudo-random numbers (xorshift). */
struct Rng {
    unsigned long long s;
    unsigned next() {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        return (unsigned)(s >> 32);
    }
    float uniform() { return (next() >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f; } // [-1, 1)
};

/* ---- block reduction through static shared memory and __syncthreads ---- */

// out[blockIdx.x] = sum of in[blockIdx.x * n .. + n), tree reduction; blockDim.x a power of two <= 1024.
__global__ void block_sum_kernel(const int *in, int n, long long *out) {
    __shared__ long long part[1024];
    const int *row = in + (size_t)blockIdx.x * n;
    long long s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += row[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
        if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

// out[b * 3 + 0..2] = __syncthreads_count/_and/_or over predicates that vary by block,
// each barrier twice in a row (the emulator double-buffers the counts).
__global__ void sync_count_kernel(int *out) {
    int t = threadIdx.x, b = blockIdx.x;
    int c = __syncthreads_count(t % (b + 2) == 0);
    int c2 = __syncthreads_count(t < b);
    int a = __syncthreads_and(t >= b);
    int o = __syncthreads_or(t == (int)blockDim.x - 1 - b);
    int o2 = __syncthreads_or(b == 3 && t == 5);
    if (t == 0) out[b * 5] = c, out[b * 5 + 1] = c2, out[b * 5 + 2] = a, out[b * 5 + 3] = o, out[b * 5 + 4] = o2;
}

/* ---- coordinates ---- */

// One record of 12 unsigned per thread: threadIdx, blockIdx, blockDim, gridDim.
__global__ void coords_kernel(unsigned *out) {
    unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned *r = out + 12 * ((size_t)b * blockDim.x * blockDim.y * blockDim.z + t);
    unsigned v[12] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y, blockIdx.z,
                      blockDim.x,  blockDim.y,  blockDim.z,  gridDim.x,  gridDim.y,  gridDim.z};
    __syncthreads(); // the coordinates must be this thread's again after switches to the others
    unsigned w[12] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y, blockIdx.z,
                      blockDim.x,  blockDim.y,  blockDim.z,  gridDim.x,  gridDim.y,  gridDim.z};
    for (int i = 0; i < 12; i++) r[i] = v[i] == w[i] ? v[i] : 0xdeadbeefu;
}

/* ---- dynamic shared memory ---- */

// out[b * 2n + i] = value written by the thread mirrored in the block, via dynamic smem of 2n floats.
__global__ void dyn_smem_kernel(float *out) {
    DYN_SMEM(float, sm);
    int n = blockDim.x, t = threadIdx.x;
    sm[t] = (float)(blockIdx.x * 1000 + t);
    sm[n + t] = -(float)(blockIdx.x * 1000 + t);
    __syncthreads();
    out[(size_t)blockIdx.x * 2 * n + t] = sm[n - 1 - t];
    out[(size_t)blockIdx.x * 2 * n + n + t] = sm[2 * n - 1 - t];
}

// Emulator only (a GPU leaves shared memory undefined): every block must see
// dynamic shared memory filled with 0xff bytes, whatever the last block wrote.
__global__ void smem_garbage_kernel(unsigned *out) {
    DYN_SMEM(unsigned, sm);
    out[blockIdx.x * blockDim.x + threadIdx.x] = sm[threadIdx.x];
    __syncthreads();
    sm[threadIdx.x] = 0;
}

// Writes the last float of 64 KiB of dynamic shared memory and reads it back: needs the opt-in above 48 KiB.
__global__ void big_smem_kernel(float *out) {
    DYN_SMEM(float, sm);
    sm[16383] = 7.0f;
    __syncthreads();
    out[threadIdx.x] = sm[16383];
}

/* ---- warp shuffles and votes ---- */

// Per thread (8 values): xor-sum, down-sum (lane 0 meaningful), broadcast lane 0,
// broadcast lane 7, inclusive up-scan, width-16 xor-sum, ballot(v > 0), any(v > 100).
__global__ void warp_kernel(const float *in, float *out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = in[i];
    float x = v;
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    float d = v;
    for (int o = 16; o > 0; o /= 2) d += __shfl_down_sync(0xffffffffu, d, o);
    float b0 = __shfl_sync(0xffffffffu, v, 0);
    float b7 = __shfl_sync(0xffffffffu, v, 7);
    float u = v;
    int lane = threadIdx.x % 32;
    for (int o = 1; o < 32; o *= 2) {
        float y = __shfl_up_sync(0xffffffffu, u, o);
        if (lane >= o) u += y;
    }
    float w = v;
    for (int o = 8; o > 0; o /= 2) w += __shfl_xor_sync(0xffffffffu, w, o, 16);
    unsigned bal = __ballot_sync(0xffffffffu, v > 0.0f);
    int any = __any_sync(0xffffffffu, v > 100.0f);
    __syncwarp();
    float *r = out + (size_t)i * 8;
    r[0] = x, r[1] = d, r[2] = b0, r[3] = b7, r[4] = u, r[5] = w, r[6] = (float)(bal & 0xffffu), r[7] = (float)any;
}

/* __match_any_sync on values with many repeats (a lane's mask of equal
 * lanes), and the bit counts that warp-aggregated atomics use with it. */
__global__ void match_kernel(const unsigned *in, unsigned *out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned v = in[i];
    unsigned m = __match_any_sync(0xffffffffu, v);
    unsigned long long w = (unsigned long long)v << 33 | 5u; /* the 64-bit form compares all bits */
    unsigned m64 = __match_any_sync(0xffffffffu, w);
    out[(size_t)i * 5] = m;
    out[(size_t)i * 5 + 1] = m64;
    out[(size_t)i * 5 + 2] = (unsigned)__popc(m);
    out[(size_t)i * 5 + 3] = (unsigned)__ffs((int)m);
    out[(size_t)i * 5 + 4] = (unsigned)__popcll(((unsigned long long)m << 32) | v);
}

/* ---- atomics ---- */

__global__ void atomics_kernel(const int *keys, int n, int *hist, int *maxv, float *fsum, int *cas_count) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&hist[keys[i] % 16], 1);
    atomicMax(maxv, keys[i]);
    atomicAdd(fsum, (float)(keys[i] % 7));
    // CAS loop increment: the count of successful CAS increments is n.
    int old = *cas_count, seen;
    while ((seen = atomicCAS(cas_count, old, old + 1)) != old) old = seen;
}

/* ---- bf16 conversions on the device side ---- */

__global__ void bf16_kernel(const float *in, unsigned short *bits, float *back, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    __nv_bfloat16 h = __float2bfloat16(in[i]);
    bits[i] = __bfloat16_as_ushort(h);
    back[i] = __bfloat162float(h);
}

/* ---- kernels that must abort on the emulator ---- */

__global__ void divergent_barrier_kernel(int *out) {
    if (threadIdx.x >= 40) return; // threads 40.. leave; the others wait for them
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void early_return_kernel(int *out) {
    if (threadIdx.x < 8) return; // threads 0..7 leave before the others reach the barrier
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void warp_exited_kernel(float *out, int lane) {
    if ((int)threadIdx.x % 32 == lane) return; // one lane per warp leaves
    float v = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
    out[threadIdx.x] = v;
}

__global__ void warp_vs_barrier_kernel(float *out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x % 32 < 16)
        v = __shfl_xor_sync(0xffffffffu, v, 1); // half of each warp shuffles...
    else
        __syncthreads(); // ...the other half waits at the block barrier
    out[threadIdx.x] = v;
}

__global__ void partial_mask_kernel(float *out) {
    float v = __shfl_xor_sync(0x0000ffffu, (float)threadIdx.x, 1);
    out[threadIdx.x] = v;
}

} // namespace

extern "C" int emu_selftest_block_reduce(void) {
    int fails = 0;
    const int blocks = 5, n = 3001; // n not a multiple of any block size
    std::vector<int> h((size_t)blocks * n);
    Rng r{12345};
    for (auto &x : h) x = (int)(r.next() % 2000001) - 1000000;
    int *din;
    long long *dout;
    CK(cudaMalloc((void **)&din, h.size() * sizeof(int)));
    CK(cudaMalloc((void **)&dout, blocks * sizeof(long long)));
    CK(cudaMemcpy(din, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice));
    for (int threads : {32, 64, 256, 1024}) {
        CK(cudaMemset(dout, 0, blocks * sizeof(long long)));
        LAUNCH(block_sum_kernel, dim3(blocks), dim3(threads), 0, (cudaStream_t)0, din, n, dout);
        CK(cudaGetLastError());
        long long got[blocks];
        CK(cudaMemcpy(got, dout, sizeof got, cudaMemcpyDeviceToHost));
        for (int b = 0; b < blocks; b++) {
            long long want = 0;
            for (int i = 0; i < n; i++) want += h[(size_t)b * n + i];
            if (got[b] != want) fails += bad("block_sum", threads * 100 + b, (double)got[b], (double)want);
        }
    }
    // __syncthreads_count/_and/_or on 4 blocks of 96 threads
    int *dc;
    CK(cudaMalloc((void **)&dc, 4 * 5 * sizeof(int)));
    LAUNCH(sync_count_kernel, dim3(4), dim3(96), 0, (cudaStream_t)0, dc);
    CK(cudaGetLastError());
    int hc[20];
    CK(cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost));
    CK(cudaFree(dc));
    for (int b = 0; b < 4; b++) {
        int want[5] = {(96 + b + 1) / (b + 2), b, b == 0, 1, b == 3};
        for (int i = 0; i < 5; i++)
            if (hc[b * 5 + i] != want[i]) fails += bad("__syncthreads_count/and/or", b * 5 + i, hc[b * 5 + i], want[i]);
    }
    CK(cudaFree(din));
    CK(cudaFree(dout));
    return fails;
}

extern "C" int emu_selftest_coords(void) {
    int fails = 0;
    dim3 grids[] = {dim3(3, 2, 2), dim3(1, 4), dim3(5)};
    dim3 blocks[] = {dim3(8, 4, 2), dim3(32, 3), dim3(7, 1, 3)};
    for (int c = 0; c < 3; c++) {
        dim3 g = grids[c], b = blocks[c];
        size_t nb = (size_t)g.x * g.y * g.z, nt = (size_t)b.x * b.y * b.z, n = nb * nt * 12;
        unsigned *d;
        CK(cudaMalloc((void **)&d, n * sizeof(unsigned)));
        LAUNCH(coords_kernel, g, b, 0, (cudaStream_t)0, d);
        CK(cudaGetLastError());
        std::vector<unsigned> h(n);
        CK(cudaMemcpy(h.data(), d, n * sizeof(unsigned), cudaMemcpyDeviceToHost));
        CK(cudaFree(d));
        for (unsigned bz = 0; bz < g.z; bz++)
            for (unsigned by = 0; by < g.y; by++)
                for (unsigned bx = 0; bx < g.x; bx++)
                    for (unsigned tz = 0; tz < b.z; tz++)
                        for (unsigned ty = 0; ty < b.y; ty++)
                            for (unsigned tx = 0; tx < b.x; tx++) {
                                size_t bi = bx + g.x * (by + g.y * bz), ti = tx + b.x * (ty + b.y * tz);
                                const unsigned *r = &h[12 * (bi * nt + ti)];
                                unsigned want[12] = {tx, ty, tz, bx, by, bz, b.x, b.y, b.z, g.x, g.y, g.z};
                                for (int i = 0; i < 12; i++)
                                    if (r[i] != want[i])
                                        fails += bad("coords", (long long)(12 * (bi * nt + ti) + i), r[i], want[i]);
                            }
    }
    return fails;
}

extern "C" int emu_selftest_dyn_smem(void) {
    int fails = 0;
    const int blocks = 3, n = 96;
    float *d;
    CK(cudaMalloc((void **)&d, (size_t)blocks * 2 * n * sizeof(float)));
    LAUNCH(dyn_smem_kernel, dim3(blocks), dim3(n), 2 * n * sizeof(float), (cudaStream_t)0, d);
    CK(cudaGetLastError());
    std::vector<float> h((size_t)blocks * 2 * n);
    CK(cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaFree(d));
    unsigned *g;
    CK(cudaMalloc((void **)&g, (size_t)blocks * n * sizeof(unsigned)));
    LAUNCH(smem_garbage_kernel, dim3(blocks), dim3(n), n * sizeof(unsigned), (cudaStream_t)0, g);
    CK(cudaGetLastError());
    std::vector<unsigned> hg((size_t)blocks * n);
    CK(cudaMemcpy(hg.data(), g, hg.size() * sizeof(unsigned), cudaMemcpyDeviceToHost));
    CK(cudaFree(g));
    for (size_t i = 0; i < hg.size(); i++)
        if (hg[i] != 0xffffffffu) fails += bad("dynamic smem garbage fill", (long long)i, hg[i], 0xffffffffu);
    /* above 48 KiB: refused without an opt-in, or with one too small; runs with one that covers it */
    float *o, ho = 0.0f;
    const size_t big = 65536;
    CK(cudaMalloc((void **)&o, 32 * sizeof(float)));
    CK(cudaMemset(o, 0, 32 * sizeof(float)));
    LAUNCH(big_smem_kernel, dim3(1), dim3(32), big, (cudaStream_t)0, o);
    cudaError_t e_none = cudaGetLastError();
    if (e_none != cudaErrorInvalidValue) fails += bad("64 KiB without an opt-in: error", 0, e_none, 1);
    if (cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232449) !=
        cudaErrorInvalidValue)
        fails += bad("an opt-in above 227 KiB accepted", 0, 1, 0);
    cudaGetLastError();
    CK(cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big - 4));
    LAUNCH(big_smem_kernel, dim3(1), dim3(32), big, (cudaStream_t)0, o);
    cudaError_t e_small = cudaGetLastError();
    CK(cudaMemcpy(&ho, o, sizeof ho, cudaMemcpyDeviceToHost));
    if (ho != 0.0f) fails += bad("a refused launch ran", 0, ho, 0.0f);
    CK(cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big));
    LAUNCH(big_smem_kernel, dim3(1), dim3(32), big, (cudaStream_t)0, o);
    cudaError_t e_ok = cudaGetLastError();
    CK(cudaMemcpy(&ho, o, sizeof ho, cudaMemcpyDeviceToHost));
    CK(cudaFree(o));
    if (e_small != cudaErrorInvalidValue) fails += bad("64 KiB with a 64 KiB - 4 opt-in: error", 0, e_small, 1);
    if (e_ok != cudaSuccess || ho != 7.0f) fails += bad("64 KiB with its opt-in", 0, ho, 7.0f);
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < n; t++) {
            float w = (float)(b * 1000 + (n - 1 - t));
            if (h[(size_t)b * 2 * n + t] != w) fails += bad("dyn_smem", b * 2 * n + t, h[(size_t)b * 2 * n + t], w);
            if (h[(size_t)b * 2 * n + n + t] != -w)
                fails += bad("dyn_smem", b * 2 * n + n + t, h[(size_t)b * 2 * n + n + t], -w);
        }
    return fails;
}

static int check_match(void);

extern "C" int emu_selftest_warp(void) {
    int fails = 0;
    const int blocks = 2, threads = 128, n = blocks * threads;
    std::vector<float> h(n);
    // Small integers keep every float sum exact, whatever the order.
    Rng r{777};
    for (auto &x : h) x = (float)((int)(r.next() % 201) - 100);
    float *din, *dout;
    CK(cudaMalloc((void **)&din, n * sizeof(float)));
    CK(cudaMalloc((void **)&dout, (size_t)n * 8 * sizeof(float)));
    CK(cudaMemcpy(din, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    LAUNCH(warp_kernel, dim3(blocks), dim3(threads), 0, (cudaStream_t)0, din, dout);
    CK(cudaGetLastError());
    std::vector<float> o((size_t)n * 8);
    CK(cudaMemcpy(o.data(), dout, o.size() * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaFree(din));
    CK(cudaFree(dout));
    for (int w0 = 0; w0 < n; w0 += 32) {
        float sum = 0, half[2] = {0, 0}, scan = 0;
        unsigned bal = 0;
        int any = 0;
        for (int l = 0; l < 32; l++) {
            sum += h[w0 + l];
            half[l / 16] += h[w0 + l];
            bal |= (unsigned)(h[w0 + l] > 0) << l;
            any |= h[w0 + l] > 100;
        }
        for (int l = 0; l < 32; l++) {
            const float *q = &o[(size_t)(w0 + l) * 8];
            scan += h[w0 + l];
            if (q[0] != sum) fails += bad("shfl_xor sum", w0 + l, q[0], sum);
            if (l == 0 && q[1] != sum) fails += bad("shfl_down sum", w0 + l, q[1], sum);
            if (q[2] != h[w0]) fails += bad("shfl broadcast 0", w0 + l, q[2], h[w0]);
            if (q[3] != h[w0 + 7]) fails += bad("shfl broadcast 7", w0 + l, q[3], h[w0 + 7]);
            if (q[4] != scan) fails += bad("shfl_up scan", w0 + l, q[4], scan);
            if (q[5] != half[l / 16]) fails += bad("shfl_xor width 16", w0 + l, q[5], half[l / 16]);
            if (q[6] != (float)(bal & 0xffffu)) fails += bad("ballot", w0 + l, q[6], (float)(bal & 0xffffu));
            if (q[7] != (float)any) fails += bad("any", w0 + l, q[7], any);
        }
    }
    return fails + check_match();
}

static int check_match(void) {
    int fails = 0;
    const int n = 128;
    std::vector<unsigned> h(n);
    Rng r{4242};
    for (int i = 0; i < n; i++) h[i] = i < 32 ? 7u : i < 64 ? (unsigned)(i % 3) : r.next() % 5;
    h[70] = 0xffffffffu; /* the all-ones value is a value like any other */
    unsigned *din, *dout;
    CK(cudaMalloc((void **)&din, n * sizeof(unsigned)));
    CK(cudaMalloc((void **)&dout, (size_t)n * 5 * sizeof(unsigned)));
    CK(cudaMemcpy(din, h.data(), n * sizeof(unsigned), cudaMemcpyHostToDevice));
    LAUNCH(match_kernel, dim3(2), dim3(64), 0, (cudaStream_t)0, din, dout);
    CK(cudaGetLastError());
    std::vector<unsigned> o((size_t)n * 5);
    CK(cudaMemcpy(o.data(), dout, o.size() * sizeof(unsigned), cudaMemcpyDeviceToHost));
    CK(cudaFree(din));
    CK(cudaFree(dout));
    for (int i = 0; i < n; i++) {
        int w0 = i & ~31;
        unsigned m = 0;
        for (int l = 0; l < 32; l++) m |= (unsigned)(h[w0 + l] == h[i]) << l;
        int pc = 0, ffs = 0;
        for (int b = 31; b >= 0; b--)
            if (m >> b & 1) pc++, ffs = b + 1;
        int pcll = pc;
        for (int b = 0; b < 32; b++) pcll += h[i] >> b & 1;
        const unsigned *q = &o[(size_t)i * 5];
        if (q[0] != m) fails += bad("match_any", i, q[0], m);
        if (q[1] != m) fails += bad("match_any 64-bit", i, q[1], m);
        if (q[2] != (unsigned)pc) fails += bad("popc", i, q[2], pc);
        if (q[3] != (unsigned)ffs) fails += bad("ffs", i, q[3], ffs);
        if (q[4] != (unsigned)pcll) fails += bad("popcll", i, q[4], pcll);
    }
    return fails;
}

extern "C" int emu_selftest_atomics(void) {
    int fails = 0;
    const int n = 5000;
    std::vector<int> keys(n);
    Rng r{99};
    for (auto &k : keys) k = (int)(r.next() % 100000);
    int *dk, *dh, *dm, *dc;
    float *df;
    CK(cudaMalloc((void **)&dk, n * sizeof(int)));
    CK(cudaMalloc((void **)&dh, 16 * sizeof(int)));
    CK(cudaMalloc((void **)&dm, sizeof(int)));
    CK(cudaMalloc((void **)&dc, sizeof(int)));
    CK(cudaMalloc((void **)&df, sizeof(float)));
    CK(cudaMemcpy(dk, keys.data(), n * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemset(dh, 0, 16 * sizeof(int)));
    CK(cudaMemset(dm, 0, sizeof(int)));
    CK(cudaMemset(dc, 0, sizeof(int)));
    CK(cudaMemset(df, 0, sizeof(float)));
    LAUNCH(atomics_kernel, dim3((n + 255) / 256), dim3(256), 0, (cudaStream_t)0, dk, n, dh, dm, df, dc);
    CK(cudaGetLastError());
    int hist[16], mx, cnt;
    float fs;
    CK(cudaMemcpy(hist, dh, sizeof hist, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&mx, dm, sizeof mx, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&cnt, dc, sizeof cnt, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&fs, df, sizeof fs, cudaMemcpyDeviceToHost));
    int want_hist[16] = {0}, want_max = 0;
    double want_fs = 0;
    for (int k : keys) want_hist[k % 16]++, want_max = k > want_max ? k : want_max, want_fs += k % 7;
    for (int i = 0; i < 16; i++)
        if (hist[i] != want_hist[i]) fails += bad("atomicAdd histogram", i, hist[i], want_hist[i]);
    if (mx != want_max) fails += bad("atomicMax", 0, mx, want_max);
    if (cnt != n) fails += bad("atomicCAS count", 0, cnt, n);
    if (fs != (float)want_fs) fails += bad("atomicAdd float", 0, fs, want_fs);
    CK(cudaFree(dk));
    CK(cudaFree(dh));
    CK(cudaFree(dm));
    CK(cudaFree(dc));
    CK(cudaFree(df));
    return fails;
}

extern "C" int emu_selftest_bf16(void) {
    int fails = 0;
    auto f = [](unsigned u) {
        float x;
        memcpy(&x, &u, 4);
        return x;
    };
    // input bits -> expected bf16 bits (round to nearest, ties to even)
    const unsigned cases[][2] = {
        {0x3f800000u, 0x3f80}, // 1.0 exact
        {0x3f808000u, 0x3f80}, // 1 + half an ulp, even below: down
        {0x3f818000u, 0x3f82}, // half an ulp above odd 0x3f81: up to even
        {0x3f808001u, 0x3f81}, // just above half: up
        {0x3f807fffu, 0x3f80}, // just below half: down
        {0xbf818000u, 0xbf82}, // negative tie to even
        {0x7f7fffffu, 0x7f80}, // FLT_MAX rounds to +inf
        {0xff7fffffu, 0xff80}, // -FLT_MAX to -inf
        {0x7f800000u, 0x7f80}, // +inf
        {0x80000000u, 0x8000}, // -0
        {0x00018000u, 0x0002}, // subnormal tie, odd below: up
        {0x00008000u, 0x0000}, // smallest tie, even below: down
        {0x7fc00000u, 0x7fff}, // quiet NaN -> canonical NaN
        {0x7f800001u, 0x7fff}, // signalling NaN -> quiet NaN
        {0xffc00001u, 0x7fff}, // negative NaN -> canonical NaN
    };
    const int n = sizeof cases / sizeof cases[0];
    float in[n];
    for (int i = 0; i < n; i++) in[i] = f(cases[i][0]);
    // host side
    for (int i = 0; i < n; i++) {
        unsigned short got = __bfloat16_as_ushort(__float2bfloat16(in[i]));
        if (got != cases[i][1]) fails += bad("float2bfloat16 host (bits)", i, got, cases[i][1]);
    }
    // device side, and back to float
    float *din, *dback;
    unsigned short *dbits;
    CK(cudaMalloc((void **)&din, sizeof in));
    CK(cudaMalloc((void **)&dback, sizeof in));
    CK(cudaMalloc((void **)&dbits, n * sizeof(unsigned short)));
    CK(cudaMemcpy(din, in, sizeof in, cudaMemcpyHostToDevice));
    LAUNCH(bf16_kernel, dim3(1), dim3(32), 0, (cudaStream_t)0, din, dbits, dback, n);
    CK(cudaGetLastError());
    unsigned short bits[n];
    float back[n];
    CK(cudaMemcpy(bits, dbits, sizeof bits, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(back, dback, sizeof back, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) {
        if (bits[i] != cases[i][1]) fails += bad("float2bfloat16 device (bits)", i, bits[i], cases[i][1]);
        float want = f((unsigned)cases[i][1] << 16);
        bool both_nan = std::isnan(back[i]) && std::isnan(want);
        if (!both_nan && memcmp(&back[i], &want, 4) != 0) fails += bad("bfloat162float", i, back[i], want);
    }
    CK(cudaFree(din));
    CK(cudaFree(dback));
    CK(cudaFree(dbits));
    return fails;
}

namespace {

/* One cublasGemmEx case against a double-precision triple loop on the same
 * (bf16-rounded) operands. */
int gemm_case(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int pad,
              cudaDataType abt, cudaDataType ct, float beta, Rng &r) {
    int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    int lda = ar + pad, ldb = br + pad, ldc = m + pad;
    size_t cs = ct == CUDA_R_16BF ? 2 : 4;
    std::vector<float> A((size_t)lda * ac), B((size_t)ldb * bc), C((size_t)ldc * n);
    auto round_if = [](float x, cudaDataType t) { return t == CUDA_R_16BF ? __bfloat162float(__float2bfloat16(x)) : x; };
    for (auto &x : A) x = round_if(r.uniform(), abt);
    for (auto &x : B) x = round_if(r.uniform(), abt);
    for (auto &x : C) x = beta == 0.0f ? NAN : round_if(r.uniform(), ct);
    // device images
    auto image = [](const std::vector<float> &v, cudaDataType t) {
        std::vector<unsigned char> out(v.size() * (t == CUDA_R_16BF ? 2 : 4));
        for (size_t i = 0; i < v.size(); i++)
            if (t == CUDA_R_16BF) {
                unsigned short b = __bfloat16_as_ushort(__float2bfloat16(v[i]));
                memcpy(&out[i * 2], &b, 2);
            } else
                memcpy(&out[i * 4], &v[i], 4);
        return out;
    };
    std::vector<unsigned char> hA = image(A, abt), hB = image(B, abt), hC = image(C, ct);
    void *dA, *dB, *dC;
    CK(cudaMalloc(&dA, hA.size()));
    CK(cudaMalloc(&dB, hB.size()));
    CK(cudaMalloc(&dC, hC.size()));
    CK(cudaMemcpy(dA, hA.data(), hA.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, hB.data(), hB.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dC, hC.data(), hC.size(), cudaMemcpyHostToDevice));
    float alpha = 0.75f;
    cublasStatus_t st = cublasGemmEx(h, ta, tb, m, n, k, &alpha, dA, abt, lda, dB, abt, ldb, &beta, dC, ct, ldc,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    std::vector<unsigned char> out(hC.size());
    CK(cudaMemcpy(out.data(), dC, out.size(), cudaMemcpyDeviceToHost));
    CK(cudaFree(dA));
    CK(cudaFree(dB));
    CK(cudaFree(dC));
    char what[160];
    snprintf(what, sizeof what, "gemm op%c%c m%d n%d k%d pad%d %s->%s beta%g", ta == CUBLAS_OP_N ? 'N' : 'T',
             tb == CUBLAS_OP_N ? 'N' : 'T', m, n, k, pad, abt == CUDA_R_16BF ? "bf16" : "f32",
             ct == CUDA_R_16BF ? "bf16" : "f32", beta);
    if (st != CUBLAS_STATUS_SUCCESS) return bad(what, -1, st, 0);
    int fails = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < ldc; i++) {
            size_t s = (size_t)j * ldc + i;
            float got;
            if (ct == CUDA_R_16BF) {
                unsigned short b;
                memcpy(&b, &out[s * 2], 2);
                got = __bfloat162float(__ushort_as_bfloat16(b));
            } else
                memcpy(&got, &out[s * 4], 4);
            if (i >= m) { // padding rows of C must be untouched
                if (memcmp(&out[s * cs], &hC[s * cs], cs) != 0) fails += bad(what, (long long)s, got, C[s]);
                continue;
            }
            double acc = 0;
            for (int p = 0; p < k; p++) {
                double a = ta == CUBLAS_OP_N ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                double b = tb == CUBLAS_OP_N ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
                acc += a * b;
            }
            double want = alpha * acc + (beta != 0.0f ? beta * (double)C[s] : 0.0);
            // f32 accumulation error, plus half a bf16 ulp when C is bf16.
            double tol = 1e-5 * (k + 2) + (ct == CUDA_R_16BF ? std::fabs(want) / 256.0 + 1e-6 : 0.0);
            if (!(std::fabs(got - want) <= tol)) fails += bad(what, (long long)s, got, want);
        }
    return fails;
}

} // namespace

extern "C" int emu_selftest_gemm(void) {
    int fails = 0;
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return bad("cublasCreate", 0, 1, 0);
    Rng r{4242};
    const cublasOperation_t ops[2] = {CUBLAS_OP_N, CUBLAS_OP_T};
    // m, n, k, extra leading dimension; k = 0 means C = beta C (C = 0 when beta is 0, even over NaN).
    const int shapes[][4] = {{5, 3, 7, 0}, {17, 9, 33, 3}, {1, 6, 4, 2}, {8, 1, 1, 0}, {4, 3, 0, 1}};
    for (auto ta : ops)
        for (auto tb : ops)
            for (auto &s : shapes)
                for (int types = 0; types < 3; types++)
                    for (float beta : {0.0f, 1.0f}) {
                        cudaDataType abt = types == 0 ? CUDA_R_32F : CUDA_R_16BF;
                        cudaDataType ct = types == 2 ? CUDA_R_16BF : CUDA_R_32F;
                        fails += gemm_case(h, ta, tb, s[0], s[1], s[2], s[3], abt, ct, beta, r);
                    }
    // Argument checks, as cuBLAS makes them.
    void *d;
    CK(cudaMalloc(&d, 4096));
    float one = 1.0f, zero = 0.0f;
    struct {
        cublasOperation_t ta, tb;
        int m, n, k, lda, ldb, ldc;
        cudaDataType at, bt, ct;
        cublasStatus_t want;
    } bads[] = {
        {CUBLAS_OP_N, CUBLAS_OP_N, -1, 2, 2, 2, 2, 2, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE},
        {CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, -1, 2, 2, 2, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE},
        {CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, 3, 3, 4, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE},
        {CUBLAS_OP_T, CUBLAS_OP_N, 4, 2, 3, 2, 3, 4, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE},
        {CUBLAS_OP_N, CUBLAS_OP_T, 4, 2, 3, 4, 1, 4, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE},
        {CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, 4, 3, 3, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE},
        {CUBLAS_OP_N, CUBLAS_OP_N, 0, 2, 3, 0, 3, 1, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE},
        {CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, 4, 3, 4, CUDA_R_32F, CUDA_R_32F, CUDA_R_16BF, CUBLAS_STATUS_NOT_SUPPORTED},
        {CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, 4, 3, 4, CUDA_R_16BF, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_NOT_SUPPORTED},
        {CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, 4, 3, 4, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_SUCCESS},
        {CUBLAS_OP_T, CUBLAS_OP_T, 4, 2, 3, 3, 2, 4, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_STATUS_SUCCESS},
        {CUBLAS_OP_N, CUBLAS_OP_N, 0, 0, 0, 1, 1, 1, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_STATUS_SUCCESS},
    };
    int i = 0;
    for (auto &c : bads) {
        cublasStatus_t st = cublasGemmEx(h, c.ta, c.tb, c.m, c.n, c.k, &one, d, c.at, c.lda, d, c.bt, c.ldb, &zero,
                                         d, c.ct, c.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != c.want) {
            fprintf(stderr, "emu_selftest: gemm argument case %d: %s, want %s\n", i, cublasGetStatusString(st),
                    cublasGetStatusString(c.want));
            fails++;
        }
        i++;
    }
    CK(cudaFree(d));
    cublasDestroy(h);
    return fails;
}

extern "C" int emu_selftest_runtime(void) {
    int fails = 0;
    int n = 0;
    CK(cudaGetDeviceCount(&n));
    if (n != 1) fails += bad("device count", 0, n, 1);
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    if (strcmp(p.name, "emulated CUDA device (CPU)") != 0) {
        fprintf(stderr, "emu_selftest: device name '%s'\n", p.name);
        fails++;
    }
    size_t fr = 0, tot = 0;
    CK(cudaMemGetInfo(&fr, &tot));
    if (!tot || fr > tot) fails += bad("cudaMemGetInfo", 0, (double)fr, (double)tot);
    // Fresh device memory is garbage (0xff bytes), not zeros.
    unsigned char *d, h[64];
    CK(cudaMalloc((void **)&d, 64));
    CK(cudaMemcpy(h, d, 64, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 64; i++)
        if (h[i] != 0xff) fails += bad("cudaMalloc garbage", i, h[i], 0xff);
    // Out-of-range and wrong-direction copies fail without touching memory; the error sticks until read.
    if (cudaMemcpy(d + 60, h, 8, cudaMemcpyHostToDevice) != cudaErrorInvalidValue) fails += bad("memcpy past end", 0, 1, 0);
    if (cudaPeekAtLastError() != cudaErrorInvalidValue) fails += bad("peek", 0, 1, 0);
    if (cudaPeekAtLastError() != cudaErrorInvalidValue) fails += bad("peek twice", 0, 1, 0);
    if (cudaGetLastError() != cudaErrorInvalidValue) fails += bad("get last", 0, 1, 0);
    if (cudaGetLastError() != cudaSuccess) fails += bad("get last resets", 0, 1, 0);
    if (cudaMemcpy(h, d, 8, cudaMemcpyHostToDevice) == cudaSuccess) fails += bad("memcpy wrong kind", 0, 1, 0);
    unsigned char *d3;
    CK(cudaMalloc((void **)&d3, 64));
    if (cudaMemcpy(d3, d, 8, cudaMemcpyHostToDevice) == cudaSuccess) fails += bad("memcpy device source as host", 0, 1, 0);
    if (cudaMemcpy(h, h + 8, 8, cudaMemcpyDeviceToHost) == cudaSuccess) fails += bad("memcpy host source as device", 0, 1, 0);
    CK(cudaMemcpy(d3, d, 8, cudaMemcpyDefault));
    if (cudaMemcpy(d3, d, 65, cudaMemcpyDefault) == cudaSuccess) fails += bad("memcpy default past end", 0, 1, 0);
    CK(cudaFree(d3));
    if (cudaMemcpy(h, d + 1, 64, cudaMemcpyDeviceToHost) == cudaSuccess) fails += bad("memcpy src past end", 0, 1, 0);
    if (cudaMemset(d + 32, 0, 33) == cudaSuccess) fails += bad("memset past end", 0, 1, 0);
    if (cudaMemset(h, 0, 8) == cudaSuccess) fails += bad("memset on host memory", 0, 1, 0);
    CK(cudaMemset(d + 32, 7, 32));
    CK(cudaMemcpy(h, d, 64, cudaMemcpyDeviceToHost));
    if (h[31] != 0xff || h[32] != 7 || h[63] != 7) fails += bad("memset range", 0, h[32], 7);
    unsigned char *d2;
    CK(cudaMalloc((void **)&d2, 64));
    CK(cudaMemcpy(d2, d + 16, 48, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy2D(d2, 8, d + 32, 4, 4, 4, cudaMemcpyDeviceToDevice)); // 4 rows of 4 bytes, pitched
    CK(cudaMemcpy(h, d2, 64, cudaMemcpyDeviceToHost));
    // d2 = d[16..64) then rows of 4 bytes of d[32..48) at pitch 8: bytes 0-3 are 7, 4-7 keep d[20..24) = 0xff.
    if (h[0] != 7 || h[3] != 7 || h[4] != 0xff || h[8] != 7 || h[12] != 0xff)
        fails += bad("memcpy2D", 0, h[4], 0xff);
    cudaGetLastError();
    if (cudaFree(h) != cudaErrorInvalidDevicePointer) fails += bad("cudaFree(host pointer)", 0, 1, 0);
    if (cudaFree(d + 1) != cudaErrorInvalidDevicePointer) fails += bad("cudaFree(interior pointer)", 0, 1, 0);
    CK(cudaFree(d));
    if (cudaFree(d) != cudaErrorInvalidDevicePointer) fails += bad("double cudaFree", 0, 1, 0);
    CK(cudaFree(d2));
    cudaGetLastError();
    // Streams and events.
    cudaStream_t s;
    cudaEvent_t e0, e1;
    CK(cudaStreamCreate(&s));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms = -1;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (!(ms >= 0 && ms < 1000)) fails += bad("event elapsed", 0, ms, 0);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaStreamDestroy(s));
    // A launch with too many threads does not run and reports an invalid configuration.
    int *cnt;
    CK(cudaMalloc((void **)&cnt, sizeof(int)));
    LAUNCH(divergent_barrier_kernel, dim3(1), dim3(2048), 0, (cudaStream_t)0, cnt);
    if (cudaGetLastError() != cudaErrorInvalidConfiguration) fails += bad("2048-thread launch", 0, 1, 0);
    LAUNCH(divergent_barrier_kernel, dim3(0), dim3(32), 0, (cudaStream_t)0, cnt);
    if (cudaGetLastError() != cudaErrorInvalidConfiguration) fails += bad("empty grid launch", 0, 1, 0);
    CK(cudaFree(cnt));
    return fails;
}

/* ---- CUDA graphs by stream capture ---- */

namespace {
// y = a x + y
__global__ void axpy_kernel(float *y, const float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
} // namespace

/* A capture of a launch, a device copy and a GEMM records without running;
 * each replay runs them on the device memory of that moment, with the
 * host arguments of the capture; a synchronising call or a launch on the
 * legacy stream inside a capture fails and invalidates it. */
extern "C" int emu_selftest_graph(void) {
    int fails = 0;
    const int n = 300;
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS || cublasSetStream(h, s) != CUBLAS_STATUS_SUCCESS)
        return bad("cublasCreate", 0, 1, 0);
    float *x, *y, *z, *one;
    CK(cudaMalloc((void **)&x, n * sizeof(float)));
    CK(cudaMalloc((void **)&y, n * sizeof(float)));
    CK(cudaMalloc((void **)&z, n * sizeof(float)));
    CK(cudaMalloc((void **)&one, sizeof(float)));
    std::vector<float> hx(n), hy(n, 1.0f), got(n);
    for (int i = 0; i < n; i++) hx[i] = 0.5f * i - 40;
    const float f1 = 1.0f;
    CK(cudaMemcpy(x, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(y, hy.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(one, &f1, sizeof f1, cudaMemcpyHostToDevice));
    cudaStreamCaptureStatus st;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    CK(cudaStreamIsCapturing(s, &st));
    if (st != cudaStreamCaptureStatusActive) fails += bad("capture status while capturing", 0, st, 1);
    float a = 2.0f, alpha = 3.0f, beta = 0.5f;
    LAUNCH(axpy_kernel, dim3((n + 127) / 128), dim3(128), 0, s, y, x, a, n);      // y = 2 x + y
    CK(cudaMemcpyAsync(z, y, n * sizeof(float), cudaMemcpyDeviceToDevice, s)); // z = y
    // y = 3 z 1 + 0.5 y: z as an (n x 1) matrix times the 1 x 1 matrix [1]
    if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, 1, 1, &alpha, z, CUDA_R_32F, n, one, CUDA_R_32F, 1, &beta, y,
                     CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
        fails += bad("cublasGemmEx in a capture", 0, 1, 0);
    a = 100.0f, alpha = 100.0f, beta = 100.0f; // the graph keeps the values of the capture
    cudaGraph_t graph = nullptr;
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaStreamIsCapturing(s, &st));
    if (st != cudaStreamCaptureStatusNone) fails += bad("capture status after", 0, st, 0);
    CK(cudaMemcpy(got.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (got[i] != 1.0f) fails += bad("y after the capture (nothing may run)", i, got[i], 1);
    cudaGraphExec_t exec = nullptr;
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphDestroy(graph)); // the executable graph stands on its own
    std::vector<double> want(n, 1.0);
    for (int rep = 0; rep < 3; rep++) {
        if (rep == 2) { // new inputs between replays: the graph reads device memory when it runs
            for (int i = 0; i < n; i++) hx[i] = -hx[i];
            CK(cudaMemcpy(x, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        }
        CK(cudaGraphLaunch(exec, s));
        for (int i = 0; i < n; i++) want[i] = 3.5 * (2.0 * hx[i] + want[i]);
    }
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(got.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (std::fabs(got[i] - want[i]) > 1e-5 * std::fabs(want[i]) + 1e-4) fails += bad("graph replays", i, got[i], want[i]);
    CK(cudaGraphExecDestroy(exec));
    // A synchronising call inside a capture fails and invalidates it.
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    LAUNCH(axpy_kernel, dim3((n + 127) / 128), dim3(128), 0, s, y, x, a, n);
    if (cudaStreamSynchronize(s) == cudaSuccess) fails += bad("cudaStreamSynchronize in a capture", 0, 0, 1);
    graph = nullptr;
    if (cudaStreamEndCapture(s, &graph) != cudaErrorStreamCaptureInvalidated || graph)
        fails += bad("end of an invalidated capture", 0, 0, 1);
    // So does a launch on the legacy stream, which would wait for the captured one.
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    LAUNCH(axpy_kernel, dim3((n + 127) / 128), dim3(128), 0, (cudaStream_t)0, y, x, a, n);
    if (cudaGetLastError() == cudaSuccess) fails += bad("legacy-stream launch in a capture", 0, 0, 1);
    graph = nullptr;
    if (cudaStreamEndCapture(s, &graph) == cudaSuccess || graph) fails += bad("end of an invalidated capture", 1, 0, 1);
    (void)cudaGetLastError();
    // After them, the stream runs plainly again: y unchanged by the failed captures, then y = 1 x + y.
    CK(cudaMemcpy(y, hy.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    LAUNCH(axpy_kernel, dim3((n + 127) / 128), dim3(128), 0, s, y, x, 1.0f, n);
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(got.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (got[i] != hx[i] + 1.0f) fails += bad("plain launch after failed captures", i, got[i], hx[i] + 1.0f);
    cublasDestroy(h);
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(z));
    CK(cudaFree(one));
    CK(cudaStreamDestroy(s));
    return fails;
}

/* ---- tensor cores (wmma): D = A B + C, 16 x 16 per warp, K = 32 ---- */
namespace {
namespace wm = nvcuda::wmma;

/* Warp w of the block computes output tile w of D (16 x 64, row-major)
 * from A (16 x 32, row-major, lda 40), B (32 x 64) given as its transpose
 * in bt (64 x 32, row-major: B column-major with ldm 40) and C (row-major
 * 64 wide), through shared memory; D goes out row-major (col = 0) or
 * column-major (col = 1, ldm 16 per tile). `assume` != 0 instead writes
 * the accumulator by a guessed row-major mapping (lane i owns row i / 2,
 * eight consecutive columns), which CUDA does not promise. */
__global__ void wmma_kernel(float *d, const __nv_bfloat16 *a, const __nv_bfloat16 *bt, const float *c, int col, int assume) {
    __shared__ __align__(32) __nv_bfloat16 As[16 * 40], Bs[64 * 40];
    __shared__ __align__(32) float Cs[16 * 64];
    for (int i = threadIdx.x; i < 16 * 40; i += blockDim.x) As[i] = a[i];
    for (int i = threadIdx.x; i < 64 * 40; i += blockDim.x) Bs[i] = bt[i];
    for (int i = threadIdx.x; i < 16 * 64; i += blockDim.x) Cs[i] = c[i];
    __syncthreads();
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    wm::fragment<wm::matrix_a, 16, 16, 16, __nv_bfloat16, wm::row_major> fa;
    wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, wm::col_major> fb;
    wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
    wm::load_matrix_sync(acc, Cs + w * 16, 64, wm::mem_row_major);
    for (int k = 0; k < 32; k += 16) {
        wm::load_matrix_sync(fa, As + k, 40);
        wm::load_matrix_sync(fb, Bs + w * 16 * 40 + k, 40);
        wm::mma_sync(acc, fa, fb, acc);
    }
    if (assume) {
        for (int i = 0; i < acc.num_elements; i++) d[(lane / 2) * 64 + w * 16 + (lane % 2) * 8 + i] = acc.x[i];
    } else if (col) {
        wm::store_matrix_sync(d + w * 256, acc, 16, wm::mem_col_major);
    } else {
        wm::store_matrix_sync(d + w * 16, acc, 64, wm::mem_row_major);
    }
}

/* Lanes 0-15 only (a partial warp) / a pointer 16 bytes off alignment. */
__global__ void wmma_bad_kernel(float *d, int which) {
    wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
    wm::fill_fragment(acc, 1.0f);
    if (which == 0) {
        if (threadIdx.x < 16) wm::store_matrix_sync(d, acc, 16, wm::mem_row_major);
    } else {
        wm::store_matrix_sync(d + 4, acc, 16, wm::mem_row_major);
    }
}
} // namespace

extern "C" int emu_selftest_wmma(void) {
    int fails = 0;
    Rng r{777};
    std::vector<__nv_bfloat16> a(16 * 40), bt(64 * 40);
    std::vector<float> c(16 * 64), d(16 * 64);
    for (auto &x : a) x = __float2bfloat16(r.uniform() * 4);
    for (auto &x : bt) x = __float2bfloat16(r.uniform());
    for (auto &x : c) x = r.uniform();
    __nv_bfloat16 *da, *db;
    float *dc, *dd;
    CK(cudaMalloc((void **)&da, a.size() * 2));
    CK(cudaMalloc((void **)&db, bt.size() * 2));
    CK(cudaMalloc((void **)&dc, c.size() * 4));
    CK(cudaMalloc((void **)&dd, d.size() * 4));
    CK(cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, bt.data(), bt.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice));
    for (int mode = 0; mode < 3; mode++) {
        int col = mode == 1, assume = mode == 2;
        CK(cudaMemset(dd, 0, d.size() * 4));
        LAUNCH(wmma_kernel, dim3(1), dim3(128), 0, (cudaStream_t)0, dd, (const __nv_bfloat16 *)da, (const __nv_bfloat16 *)db,
               (const float *)dc, col, assume);
        CK(cudaGetLastError());
        CK(cudaMemcpy(d.data(), dd, d.size() * 4, cudaMemcpyDeviceToHost));
        int wrong = 0;
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 64; j++) {
                double want = c[i * 64 + j];
                for (int k = 0; k < 32; k++)
                    want += (double)__bfloat162float(a[i * 40 + k]) * __bfloat162float(bt[j * 40 + k]);
                float got = col ? d[(j / 16) * 256 + (j % 16) * 16 + i] : d[i * 64 + j];
                bool ok = fabs(got - want) <= 1e-5 * (1 + fabs(want));
                if (!ok && !assume && wrong < 5) bad(col ? "wmma col-major store" : "wmma", i * 64 + j, got, want);
                wrong += !ok;
            }
        /* a guessed mapping must not pass by luck (on a card it might) */
        fails += assume ? wrong < 16 * 64 / 2 : wrong;
        if (assume && wrong < 16 * 64 / 2) bad("wmma with an assumed row-major mapping: values right", 0, 16 * 64 - wrong, 0);
    }
    CK(cudaFree(da));
    CK(cudaFree(db));
    CK(cudaFree(dc));
    CK(cudaFree(dd));
    return fails;
}

/* ---- asynchronous copies (cuda_pipeline.h): 16 bytes a thread per stage ----
 * Thread t copies 4 floats into each of three shared buffers A, B, D and
 * records, in ok[t * 8 + i], what it saw at each stage: a destination reads
 * NaN until the wait that completes its group (A after issue; B after
 * wait_prior(1), which completes only the older group A; D, issued but not
 * committed, after wait_prior(0)), and the data after it (B's zero-filled
 * half included); after a barrier its neighbour's copy too. `skip_wait`
 * returns with copies outstanding, which must abort. On a card the reads
 * before the waits are races: what they see is the emulator's poison. */
namespace {
__device__ inline int nan4(const float *p) { return p[0] != p[0] && p[1] != p[1] && p[2] != p[2] && p[3] != p[3]; }
__device__ inline int eq4(const float *p, const float *q, int n) { /* n values from q, the rest zeros */
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= p[i] == (i < n ? q[i] : 0.0f);
    return ok;
}
__global__ void pipeline_kernel(int *ok, const float *src, int skip_wait) {
    DYN_SMEM(float, sm);
    const int t = threadIdx.x, n = blockDim.x, zb = t % 2 ? 8 : 0; /* odd threads: B's last 8 bytes zero-filled */
    float *A = sm, *B = sm + 4 * n, *D = sm + 8 * n;
    const float *sa = src + 4 * t, *sb = src + 4 * (n + t), *sd = src + 4 * (2 * n + t);
    int *o = ok + 8 * t;
    __pipeline_memcpy_async(A + 4 * t, sa, 16);
    o[0] = nan4(A + 4 * t); /* issued, not waited: not visible */
    __pipeline_commit();
    __pipeline_memcpy_async(B + 4 * t, sb, 16, zb);
    __pipeline_commit();
    if (skip_wait) return;
    __pipeline_wait_prior(1); /* group A only */
    o[1] = eq4(A + 4 * t, sa, 4);
    o[2] = nan4(B + 4 * t);
    __pipeline_memcpy_async(D + 4 * t, sd, 16);
    __pipeline_wait_prior(0); /* B; D is not committed */
    o[3] = eq4(B + 4 * t, sb, 4 - zb / 4);
    o[4] = nan4(D + 4 * t);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    o[5] = eq4(D + 4 * t, sd, 4);
    __syncthreads(); /* every thread's copies completed before it: the neighbour's are visible */
    int u = (t + 1) % n;
    o[6] = eq4(A + 4 * u, src + 4 * u, 4) && eq4(D + 4 * u, src + 4 * (2 * n + u), 4);
    o[7] = 1;
}
} // namespace

extern "C" int emu_selftest_pipeline(void) {
    const int n = 64;
    std::vector<float> src(12 * n);
    Rng r{99};
    for (auto &x : src) x = r.uniform();
    float *ds;
    int *dok;
    CK(cudaMalloc((void **)&ds, src.size() * 4));
    CK(cudaMalloc((void **)&dok, 8 * n * sizeof(int)));
    CK(cudaMemcpy(ds, src.data(), src.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemset(dok, 0, 8 * n * sizeof(int)));
    LAUNCH(pipeline_kernel, dim3(1), dim3(n), 12 * n * 4, (cudaStream_t)0, dok, (const float *)ds, 0);
    CK(cudaGetLastError());
    std::vector<int> ok(8 * n);
    CK(cudaMemcpy(ok.data(), dok, ok.size() * sizeof(int), cudaMemcpyDeviceToHost));
    static const char *const what[8] = {"destination not NaN before the wait", "group A not completed by wait_prior(1)",
                                        "group B completed by wait_prior(1)", "group B (zero fill) wrong after wait_prior(0)",
                                        "an uncommitted copy completed by wait_prior(0)", "committed D not completed",
                                        "a neighbour's copy not visible after the barrier", "kernel did not finish"};
    int fails = 0;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < 8; i++)
            if (!ok[t * 8 + i] && fails++ < 8) fprintf(stderr, "emu_selftest: pipeline, thread %d: %s\n", t, what[i]);
    CK(cudaFree(ds));
    CK(cudaFree(dok));
    return fails;
}

/* LR_EMU_ORDER: a kernel with a race between threads (thread t reads what
 * thread t - 1 writes, no barrier between) and one between blocks (each
 * block takes a ticket from a counter earlier blocks bumped): the first
 * sees its neighbour's value only when lower threads run first, the second
 * numbers the blocks in the order they ran. Then the same after a barrier,
 * which must not depend on the order. */
namespace {
__global__ void order_kernel(int *seen, int *after, int *ticket, int *counter) {
    DYN_SMEM(int, a); /* 64 ints, 0xFF bytes at each block's start */
    int t = threadIdx.x;
    a[t] = t + 1;
    seen[blockIdx.x * 64 + t] = a[(t + 63) % 64]; /* racy: no barrier */
    __syncthreads();
    after[blockIdx.x * 64 + t] = a[(t + 63) % 64];
    if (t == 0) ticket[blockIdx.x] = (*counter)++; /* racy between blocks: no atomic, order-dependent */
}
} // namespace

extern "C" int emu_selftest_order(int reverse) {
    const int nb = 4, n = 64;
    int *d;
    CK(cudaMalloc((void **)&d, (2 * nb * n + nb + 1) * sizeof(int)));
    CK(cudaMemset(d, 0, (2 * nb * n + nb + 1) * sizeof(int)));
    LAUNCH(order_kernel, dim3(nb), dim3(n), n * sizeof(int), (cudaStream_t)0, d, d + nb * n, d + 2 * nb * n, d + 2 * nb * n + nb);
    CK(cudaGetLastError());
    std::vector<int> h(2 * nb * n + nb);
    CK(cudaMemcpy(h.data(), d, h.size() * sizeof(int), cudaMemcpyDeviceToHost));
    CK(cudaFree(d));
    int fails = 0;
    for (int b = 0; b < nb; b++) {
        int want_ticket = reverse ? nb - 1 - b : b;
        if (h[2 * nb * n + b] != want_ticket && fails++ < 8)
            fprintf(stderr, "emu_selftest: order %d: block %d ran as number %d, want %d\n", reverse, b,
                    h[2 * nb * n + b], want_ticket);
        for (int t = 0; t < n; t++) {
            int nb_t = (t + 63) % 64, ran_before = reverse ? nb_t > t : nb_t < t;
            int want = ran_before ? nb_t + 1 : -1; /* unwritten shared memory: 0xFF bytes */
            if (h[b * n + t] != want && fails++ < 8)
                fprintf(stderr, "emu_selftest: order %d: thread %d saw %d before the barrier, want %d\n", reverse, t,
                        h[b * n + t], want);
            if (h[nb * n + b * n + t] != nb_t + 1 && fails++ < 8)
                fprintf(stderr, "emu_selftest: order %d: thread %d saw %d after the barrier\n", reverse, t,
                        h[nb * n + b * n + t]);
        }
    }
    return fails;
}

/* Each of these must abort on the emulator (they return only if it did not). */
namespace {
int run_bad(int which) {
    float *d;
    CK(cudaMalloc((void **)&d, 4096));
    switch (which) {
    case 0: LAUNCH(divergent_barrier_kernel, dim3(2), dim3(64), 0, (cudaStream_t)0, (int *)d); break;
    case 1: LAUNCH(early_return_kernel, dim3(1), dim3(128), 0, (cudaStream_t)0, (int *)d); break;
    case 2: LAUNCH(warp_exited_kernel, dim3(1), dim3(64), 0, (cudaStream_t)0, d, 0); break;
    case 5: LAUNCH(warp_exited_kernel, dim3(1), dim3(64), 0, (cudaStream_t)0, d, 5); break;
    case 3: LAUNCH(warp_vs_barrier_kernel, dim3(1), dim3(64), 0, (cudaStream_t)0, d); break;
    case 4: LAUNCH(partial_mask_kernel, dim3(1), dim3(32), 0, (cudaStream_t)0, d); break;
    case 6: LAUNCH(wmma_bad_kernel, dim3(1), dim3(32), 0, (cudaStream_t)0, d, 0); break;
    case 7: LAUNCH(wmma_bad_kernel, dim3(1), dim3(32), 0, (cudaStream_t)0, d, 1); break;
    case 8: LAUNCH(pipeline_kernel, dim3(1), dim3(32), 12 * 32 * 4, (cudaStream_t)0, (int *)d + 512, (const float *)d, 1); break;
    case 9: { /* a host buffer where device memory belongs: an illegal address on a card */
        static float host[64];
        LAUNCH(dyn_smem_kernel, dim3(1), dim3(32), 64 * sizeof(float), (cudaStream_t)0, host);
        break;
    }
    }
    cudaDeviceSynchronize();
    CK(cudaFree(d));
    return 0;
}
} // namespace

extern "C" int emu_selftest_bad_divergent_barrier(void) { return run_bad(0); }
extern "C" int emu_selftest_bad_early_return(void) { return run_bad(1); }
extern "C" int emu_selftest_bad_warp_exited(void) { return run_bad(2); }
extern "C" int emu_selftest_bad_warp_exiting(void) { return run_bad(5); }
extern "C" int emu_selftest_bad_warp_vs_barrier(void) { return run_bad(3); }
extern "C" int emu_selftest_bad_partial_mask(void) { return run_bad(4); }
extern "C" int emu_selftest_bad_wmma_partial_warp(void) { return run_bad(6); }
extern "C" int emu_selftest_bad_wmma_misaligned(void) { return run_bad(7); }
extern "C" int emu_selftest_bad_pipeline_no_wait(void) { return run_bad(8); }
extern "C" int emu_selftest_bad_host_pointer(void) { return run_bad(9); }
