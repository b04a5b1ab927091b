/* occupancy: blocks an H100/H200 multiprocessor holds, by NVIDIA's own
 * occupancy calculator (cuda_occupancy.h, header-only, host code: the
 * arithmetic cudaOccupancyMaxActiveBlocksPerMultiprocessor does on a
 * card), for tests/cuda_resources.py.
 *
 * stdin: one launch a line, "THREADS REGISTERS STATIC_SMEM DYNAMIC_SMEM"
 * stdout: a line each, "BLOCKS REG_LIMIT SMEM_LIMIT WARP_LIMIT BLOCK_LIMIT"
 *         (blocks an SM by each limit alone; BLOCKS 0: cannot launch)
 * exit 2 on a malformed line or a calculator error, naming the line. */
#include <cuda_occupancy.h>

#include <cstdio>

int main() {
    cudaOccDeviceProp p; /* sm_90: H100 and H200 share the multiprocessor */
    p.computeMajor = 9, p.computeMinor = 0;
    p.maxThreadsPerBlock = 1024, p.maxThreadsPerMultiprocessor = 2048;
    p.regsPerBlock = 65536, p.regsPerMultiprocessor = 65536, p.warpSize = 32;
    p.sharedMemPerBlock = 49152, p.sharedMemPerMultiprocessor = 233472;
    p.sharedMemPerBlockOptin = 232448, p.reservedSharedMemPerBlock = 1024;
    p.numSms = 132;
    cudaOccDeviceState st;
    char line[256];
    for (int n = 1; fgets(line, sizeof line, stdin); n++) {
        int threads, regs;
        size_t smem, dyn;
        if (sscanf(line, "%d %d %zu %zu", &threads, &regs, &smem, &dyn) != 4) {
            fprintf(stderr, "occupancy: stdin line %d: want THREADS REGISTERS STATIC_SMEM DYNAMIC_SMEM\n", n);
            return 2;
        }
        cudaOccFuncAttributes a;
        a.maxThreadsPerBlock = 1024; /* the launch bounds are in the register count already */
        a.numRegs = regs, a.sharedSizeBytes = smem;
        a.partitionedGCConfig = PARTITIONED_GC_OFF;
        a.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN; /* the launchers opt in (cuda/smem_optin.cuh) */
        a.maxDynamicSharedSizeBytes = dyn;
        a.numBlockBarriers = 1;
        cudaOccResult r;
        cudaOccError e = cudaOccMaxActiveBlocksPerMultiprocessor(&r, &p, &a, &st, threads, dyn);
        if (e != CUDA_OCC_SUCCESS) {
            fprintf(stderr, "occupancy: stdin line %d: calculator error %d\n", n, (int)e);
            return 2;
        }
        printf("%d %d %d %d %d\n", r.activeBlocksPerMultiprocessor, r.blockLimitRegs, r.blockLimitSharedMem,
               r.blockLimitWarps, r.blockLimitBlocks);
    }
    return 0;
}
