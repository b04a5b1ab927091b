/* profile: kernel time by kind from CUDA events on a stream, for the
 * forward (infer/gpu.h gpu_prof) and the trainer (nn/gpu_train.h
 * gtrn_prof), each with its own kinds 0 .. nkinds - 1. A call marks where each group of
 * launches of one kind begins (prof_start for its first mark, prof_mark
 * after, a kind >= nkinds for its end); a mark of the kind already
 * running records nothing, so consecutive groups of one kind are one
 * segment. After the call's final synchronisation prof_collect adds the
 * device time between consecutive events to the earlier one's kind. The
 * forward holds no profiler (NULL) when the profile is off, and then calls
 * none of these: no event is recorded. Host code only. */
#ifndef LR_CUDA_PROFILE_CUH
#define LR_CUDA_PROFILE_CUH

#include "compat.h"

struct prof;

prof *prof_new(int nkinds);
void prof_free(prof *p);
/* Forgets the marks of an unfinished call, then marks kind. */
cudaError_t prof_start(prof *p, int kind, cudaStream_t st);
cudaError_t prof_mark(prof *p, int kind, cudaStream_t st);
/* Once the call's marks have completed (stream synchronised). */
cudaError_t prof_collect(prof *p);
/* The totals so far: ms[0 .. nkinds - 1] by kind, the calls' first-to-last
 * event spans summed, the calls collected and the events recorded. */
void prof_read(const prof *p, double *ms, double *total_ms, long *calls, long *events);

#endif
