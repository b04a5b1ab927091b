/* check: what the backend's host code (forward.cu, train.cu) shares: the
 * CUDA runtime error check (a failed call returns LR_EGPU from the
 * enclosing function with one message naming the call) and its
 * environment switches. */
#ifndef LR_CUDA_CHECK_CUH
#define LR_CUDA_CHECK_CUH

#include "compat.h"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "base/util.h"
}

/* the device gpu_select_device chose (0 unless it was called) */
extern int lr_cuda_dev;

#define CK(call)                                                                                              \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) return lr_err(LR_EGPU, "cuda: %s: %s", #call, cudaGetErrorString(e_));          \
    } while (0)

/* An environment switch (LR_GPU_PROFILE, LR_GPU_GRAPHS, LR_GPU_TCATT): on
 * when set to anything but "0", dflt when unset or empty. */
static inline int env_on(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? strcmp(v, "0") != 0 : dflt;
}

#endif
