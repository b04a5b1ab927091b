/* devmem: device memory for C callers of the backend's launchers (the
 * launchers take device pointers; cuBLAS, and the emulated device's
 * cublasGemmEx, insist that its operands lie in device allocations).
 * Sizes in bytes. Each returns 0, or -1 after one stderr line naming the
 * CUDA call and its error. */
#ifndef LR_CUDA_DEVMEM_H
#define LR_CUDA_DEVMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* *p = n bytes of device memory (n 0: one byte), contents undefined. */
int dev_alloc(void **p, size_t n);
void dev_free(void *p);
/* *p = a device copy of n bytes of host memory. */
int dev_upload(void **p, const void *host, size_t n);
/* n bytes of device memory at p set to zero. */
int dev_zero(void *p, size_t n);
/* n bytes from device to host (synchronous: the device's work queued
 * before it is done when it returns). */
int dev_download(void *host, const void *dev, size_t n);

#ifdef __cplusplus
}
#endif

#endif
