/* smem_optin: a kernel's opt-in to more than 48 KiB of dynamic shared
 * memory (cudaFuncAttributeMaxDynamicSharedMemorySize), shared by the
 * tensor-core attention launchers (attention_tc.cu, attention_tc_train.cu).
 * The attribute belongs to the device current at the call, so a process
 * that moves to another device opts in again there; the most opted in so
 * far is remembered per device so that a launch does not set it every
 * time. */
#ifndef LR_SMEM_OPTIN_CUH
#define LR_SMEM_OPTIN_CUH
#include "common.cuh"

#define SMEM_OPTIN_DEVS 64 /* devices whose opt-in is remembered; past them every call sets it */

/* Kernel f may use `bytes` of dynamic shared memory on the current device.
 * opted: f's own record (a static array of SMEM_OPTIN_DEVS sizes, zero at
 * first), one per kernel. A failed opt-in is not remembered: the next
 * call tries again. */
template <class F> static inline void smem_optin(F f, size_t bytes, size_t *opted) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) dev = SMEM_OPTIN_DEVS;
    if ((dev >= SMEM_OPTIN_DEVS || bytes > opted[dev]) &&
        cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) == cudaSuccess &&
        dev < SMEM_OPTIN_DEVS)
        opted[dev] = bytes;
}
#endif
