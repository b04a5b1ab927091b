/* dpnccl: see dpnccl.h. */
#include "check.cuh"
#include "dpnccl.h"

extern "C" {
#include "nn/gpu_train.h"
#include "base/util.h"
}

#include <string.h>

#if !defined(LR_CUDA_EMU) && __has_include(<nccl.h>)
#include <dlfcn.h>
#include <nccl.h>

/* the few NCCL entry points used, from dlopen */
static struct {
    int tried, ok;
    char why[256];
    ncclResult_t (*get_id)(ncclUniqueId *);
    ncclResult_t (*init_rank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*destroy)(ncclComm_t);
    const char *(*errstr)(ncclResult_t);
} nc;

template <class F> static int sym(void *h, const char *name, F *f) {
    void *p = dlsym(h, name);
    memcpy(f, &p, sizeof p); /* object pointer to function pointer, as POSIX allows */
    return p != NULL;
}

extern "C" int gpu_nccl_load(void) {
    if (!nc.tried) {
        nc.tried = 1;
        void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!h) snprintf(nc.why, sizeof nc.why, "cannot load libnccl.so.2: %s", dlerror());
        else if (!sym(h, "ncclGetUniqueId", &nc.get_id) || !sym(h, "ncclCommInitRank", &nc.init_rank) ||
                 !sym(h, "ncclAllReduce", &nc.all_reduce) || !sym(h, "ncclCommDestroy", &nc.destroy) ||
                 !sym(h, "ncclGetErrorString", &nc.errstr))
            snprintf(nc.why, sizeof nc.why, "libnccl.so.2 lacks an entry point: %s", dlerror());
        else nc.ok = 1;
    }
    return nc.ok ? LR_OK : lr_err(LR_EUSAGE, "no NCCL: %s", nc.why);
}

#define NC(call)                                                                                              \
    do {                                                                                                      \
        ncclResult_t r_ = (call);                                                                             \
        if (r_ != ncclSuccess) return lr_err(LR_EGPU, "nccl: %s: %s", #call, nc.errstr(r_));                 \
    } while (0)

extern "C" int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES]) {
    int rc = gpu_nccl_load();
    if (rc) return rc;
    static_assert(sizeof(ncclUniqueId) == GPU_NCCL_ID_BYTES, "NCCL's unique id size");
    ncclUniqueId u;
    NC(nc.get_id(&u));
    memcpy(id, &u, sizeof u);
    return LR_OK;
}

int dpnccl_join(void **comm, const unsigned char *id, int rank, int world) {
    int rc = gpu_nccl_load();
    if (rc) return rc;
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclComm_t c;
    NC(nc.init_rank(&c, world, u, rank));
    *comm = c;
    return LR_OK;
}

__global__ void scale_kernel(float *v, size_t n, float s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) v[i] *= s;
}

int dpnccl_sum(void *comm, float *dev, size_t n, float scale) {
    if (!comm) return lr_err(LR_EUSAGE, "nccl: no communicator (gpu_trn_nccl_join first)");
    NC(nc.all_reduce(dev, dev, n, ncclFloat32, ncclSum, (ncclComm_t)comm, 0));
    if (scale != 1.0f && n) {
        size_t blocks = (n + 255) / 256;
        scale_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256>>>(dev, n, scale);
        CK(cudaGetLastError());
    }
    return LR_OK;
}

void dpnccl_free(void *comm) {
    if (comm && nc.ok) nc.destroy((ncclComm_t)comm);
}

#else /* the emulated device, or no nccl.h when this was built */

extern "C" int gpu_nccl_load(void) {
#ifdef LR_CUDA_EMU
    return lr_err(LR_EUSAGE, "no NCCL on the emulated CUDA device");
#else
    return lr_err(LR_EUSAGE, "no NCCL: nccl.h was not found when this was built");
#endif
}
extern "C" int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES]) {
    (void)id;
    return gpu_nccl_load();
}
int dpnccl_join(void **comm, const unsigned char *id, int rank, int world) {
    (void)comm, (void)id, (void)rank, (void)world;
    return gpu_nccl_load();
}
int dpnccl_sum(void *comm, float *dev, size_t n, float scale) {
    (void)comm, (void)dev, (void)n, (void)scale;
    return gpu_nccl_load();
}
void dpnccl_free(void *comm) { (void)comm; }

#endif
