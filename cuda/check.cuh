/* check: the CUDA runtime error check shared by the backend's host code
 * (forward.cu, train.cu): a failed call returns LR_EGPU from the enclosing
 * function with one message naming the call. */
#ifndef LR_CUDA_CHECK_CUH
#define LR_CUDA_CHECK_CUH

#include "compat.h"

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

#endif
