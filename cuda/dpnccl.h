/* dpnccl: NCCL for the device trainer's data parallelism (the gpu_nccl_*
 * and gpu_trn_allreduce entries of nn/gpu_train.h). Only the real CUDA
 * build has it, and only where nccl.h was found at build time; the library
 * itself is opened at run time (dlopen libnccl.so.2), so neither the build
 * nor a single-GPU run needs NCCL installed. Elsewhere (the emulated
 * device, no nccl.h, no libnccl.so.2) every entry returns LR_EUSAGE saying
 * why, and the caller falls back to the host (TCP) all-reduce. */
#ifndef LR_CUDA_DPNCCL_H
#define LR_CUDA_DPNCCL_H

#include <stddef.h>

/* *comm = this rank's NCCL communicator on the current device. */
int dpnccl_join(void **comm, const unsigned char *id, int rank, int world);
/* dev[0..n) (device float32) = scale * the sum over the ranks, in place. */
int dpnccl_sum(void *comm, float *dev, size_t n, float scale);
void dpnccl_free(void *comm);

#endif
