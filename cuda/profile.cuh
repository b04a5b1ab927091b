/* profile: the CUDA forward's kernel time by kind (infer/gpu.h, gpu_prof),
 * from CUDA events on its stream. A call marks where each group of
 * launches of one kind begins (prof_start for its first mark, prof_mark
 * after, kind GPU_PROF_KINDS for its end); a mark of the kind already
 * running records nothing, so consecutive groups of one kind are one
 * segment. After the call's final synchronisation prof_collect adds the
 * device time between consecutive events to the earlier one's kind. The
 * forward holds no profiler (NULL) when the profile is off, and then calls
 * none of these: no event is recorded. Host code only. */
#ifndef LR_CUDA_PROFILE_CUH
#define LR_CUDA_PROFILE_CUH

#include "compat.h"

extern "C" {
#include "infer/gpu.h"
}

struct prof;

prof *prof_new(void);
void prof_free(prof *p);
/* Forgets the marks of an unfinished call, then marks kind. */
cudaError_t prof_start(prof *p, int kind, cudaStream_t st);
cudaError_t prof_mark(prof *p, int kind, cudaStream_t st);
/* Once the call's marks have completed (stream synchronised). */
cudaError_t prof_collect(prof *p);
const gpu_prof *prof_totals(const prof *p);

#endif
