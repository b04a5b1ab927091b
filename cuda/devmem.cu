/* devmem: see devmem.h. */
#include "compat.h"
#include "devmem.h"

#include <stdio.h>

static int ck(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    fprintf(stderr, "cuda: %s: %s\n", what, cudaGetErrorString(e));
    return -1;
}

int dev_alloc(void **p, size_t n) {
    *p = NULL;
    return ck(cudaMalloc(p, n ? n : 1), "cudaMalloc");
}

void dev_free(void *p) {
    if (p) cudaFree(p);
}

int dev_upload(void **p, const void *host, size_t n) {
    if (dev_alloc(p, n)) return -1;
    if (n && ck(cudaMemcpy(*p, host, n, cudaMemcpyHostToDevice), "cudaMemcpy to the device")) {
        dev_free(*p);
        *p = NULL;
        return -1;
    }
    return 0;
}

int dev_zero(void *p, size_t n) { return n ? ck(cudaMemset(p, 0, n), "cudaMemset") : 0; }

int dev_download(void *host, const void *dev, size_t n) {
    return n ? ck(cudaMemcpy(host, dev, n, cudaMemcpyDeviceToHost), "cudaMemcpy from the device") : 0;
}
