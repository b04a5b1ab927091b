/* launchlog: what a card makes of each kernel the real build launches
 * (LAUNCH in compat.h notes every launch here). With LR_GPU_LAUNCH_DIR set,
 * a process keeps, kernel by kernel, the launches' count and their largest
 * block and dynamic shared memory, and at exit asks the CUDA runtime what
 * the card gives that kernel: its registers, static shared memory and
 * local memory (cudaFuncGetAttributes) and the blocks a multiprocessor
 * holds at that block and shared memory
 * (cudaOccupancyMaxActiveBlocksPerMultiprocessor). It leaves them in a
 * file card.XXXXXX of its own there (a check's text, not a stream: one
 * line a kernel, "FILE NAME COUNT THREADS_MIN THREADS_MAX DYN_SMEM
 * REGISTERS STATIC_SMEM LOCAL_BYTES MAX_THREADS BLOCKS", -1 where the
 * runtime refused, after a "#device" line), which tests/cuda_resources.py
 * --card sets beside ptxas's report and NVIDIA's calculator: the check
 * tests/gpu/run.sh makes on a card of what cuda/resources reasons without
 * one. The emulated device keeps its own record (cuda/emu.cc,
 * LR_EMU_LAUNCH_DIR). Unset, a launch costs one load and a branch; set,
 * a lock and a search by the kernel's address (a graph's replays make no
 * note: their launches were noted at capture). */
#ifndef LR_CUDA_LAUNCHLOG_H
#define LR_CUDA_LAUNCHLOG_H

#include <cuda_runtime.h>

#include <stddef.h>

void lr_launch_note(const char *name, const char *file, const void *fn, dim3 block, size_t smem);

#endif
