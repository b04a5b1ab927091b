/* gpu: the C interface of the CUDA backend (cuda/). Three builds provide it:
 *   the .cu files compiled by nvcc       the real backend (bin/ when nvcc exists)
 *   the same files by g++ + emu.h        the same source on an emulated GPU
 *                                       (cuda/emu.h): tests run the kernels on
 *                                       the CPU, under ASan too
 *   cuda/none.c                         no backend: gpu_device_count() is 0
 * Everything here returns LR_* codes with lr_err messages. */
#ifndef LR_GPU_H
#define LR_GPU_H

#include "infer/rows.h"
#include "model/model.h"

#include <stddef.h>

/* "cuda", "emulated" or "none". */
const char *gpu_backend(void);
/* Usable devices (0 without a backend, a driver or a GPU); the first one's
 * name into name[n] (or why there is none). */
int gpu_device_count(char *name, size_t n);

/* Makes device (local_rank mod the devices this process sees) the one
 * every later gpu_fwd_init / gpu_trn_init uses: data-parallel ranks of one
 * node each on their own card (LOCAL_RANK). *dev = its index. Returns 0, or
 * LR_EGPU when there is no device. */
int gpu_select_device(int local_rank, int *dev);

typedef struct gpu_fwd gpu_fwd;

/* Uploads the model as bf16 (from m's float32 weights when loaded, else
 * straight from its safetensors mmap, see model_open) and sizes a bf16 KV
 * cache of B slots x Tmax positions and activations for max_tokens rows. */
int gpu_fwd_init(gpu_fwd **g, const model *m, int B, int Tmax, int max_tokens, int kmax);
/* eng_run's contract (engine.h). */
int gpu_fwd_run(gpu_fwd *g, int N, const int *tokens, const int *seq, const unsigned char *want, const eng_req *q,
                eng_res *r);
void gpu_fwd_reset(gpu_fwd *g, int b);
void gpu_fwd_free(gpu_fwd *g);

/* Largest kmax the device selection supports (larger lists: use cpu). */
#define GPU_KMAX_LIMIT 1024

#endif
