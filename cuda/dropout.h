/* dropout: LoRA dropout on the device, the twin of ops_cpu.h's
 * counter-based dropout: element i is kept with probability 1 - p and
 * scaled by 1 / (1 - p), as decided by one splitmix64 draw (base/rng.h) of
 * the state key ^ i, so the mask is a function of (key, i) alone and the
 * same bits as on the CPU: a forward on one and a backward on the other
 * see the same mask. Keys as forward.h's fwd_lora_drop_key. Pointers are
 * device pointers, `stream` a cudaStream_t. */
#ifndef LR_CUDA_DROPOUT_H
#define LR_CUDA_DROPOUT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dropout_forward: out (n) = inp * the mask's factor; out may alias inp.
 * The backward uses it to regenerate the dropped-out input. */
void k_dropout(float *out, const float *inp, size_t n, float p, uint64_t key, void *stream);
/* dropout_backward: dinp (n) += dout * the mask's factor. */
void k_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t key, void *stream);

#ifdef __cplusplus
}
#endif

#endif
