/* compat: what the backend's .cu files include instead of CUDA's headers,
 * so that one source compiles two ways:
 *   nvcc                 -> the real CUDA runtime, cuBLAS and bf16 types;
 *   g++ -DLR_CUDA_EMU    -> cuda/emu.h, the same names on an emulated GPU
 *                           (kernels run as CPU fibers, cuBLAS as OpenBLAS),
 *                           which is how the kernels are tested without a GPU.
 * Kernels therefore use only what emu.h provides, launch through LAUNCH()
 * instead of <<<>>>, and declare dynamic shared memory with DYN_SMEM(). */
#ifndef LR_CUDA_COMPAT_H
#define LR_CUDA_COMPAT_H

#ifdef LR_CUDA_EMU
#include "emu.h"
/* device code calls these unqualified, as CUDA allows */
using std::isfinite;
using std::isinf;
using std::isnan;
#else
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "launchlog.h"

/* kernel<<<grid, block, smem, stream>>>(args...), noted for
 * LR_GPU_LAUNCH_DIR (launchlog.h) */
#define LAUNCH(kernel, grid, block, smem, stream, ...)                                                        \
    (lr_launch_note(#kernel, __FILE__, reinterpret_cast<const void *>(kernel), dim3(block), (size_t)(smem)),  \
     kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__))
/* T *name = this block's dynamic shared memory */
#define DYN_SMEM(T, name)                                                                                     \
    extern __shared__ __align__(16) unsigned char lr_dyn_smem_[];                                             \
    T *name = reinterpret_cast<T *>(lr_dyn_smem_)
#endif

#endif
