/* none: the gpu.h interface of a build without the CUDA backend (no nvcc
 * when it was built, or a sanitizer build): no device, and every other
 * entry point refuses with a message saying why. */
#include "infer/gpu.h"
#include "base/util.h"

#include <stdio.h>

const char *gpu_backend(void) { return "none"; }

int gpu_device_count(char *name, size_t n) {
    if (name && n) snprintf(name, n, "this build has no CUDA backend (nvcc was not found when it was built)");
    return 0;
}

int gpu_fwd_init(gpu_fwd **g, const model *m, int B, int Tmax, int max_tokens, int kmax) {
    (void)m, (void)B, (void)Tmax, (void)max_tokens, (void)kmax;
    *g = NULL;
    return lr_err(LR_EUSAGE, "--device cuda: this build has no CUDA backend (rebuild where nvcc is installed)");
}

int gpu_fwd_run(gpu_fwd *g, int N, const int *tokens, const int *seq, const unsigned char *want, const eng_req *q,
                eng_res *r) {
    (void)g, (void)N, (void)tokens, (void)seq, (void)want, (void)q, (void)r;
    return lr_err(LR_EUSAGE, "no CUDA backend in this build");
}

void gpu_fwd_reset(gpu_fwd *g, int b) { (void)g, (void)b; }
void gpu_fwd_free(gpu_fwd *g) { (void)g; }
