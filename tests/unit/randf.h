/* randf.h: the random float buffers of the kernel tests: urand, uniform
 * in [-1, 1) from a 64-bit LCG whose state a test seeds (randf_state),
 * frand (n of them times scale, malloc'd) and fcopy (a malloc'd copy). */
#ifndef LR_RANDF_H
#define LR_RANDF_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t randf_state = 1;
static inline double urand(void) { /* [-1, 1) */
    randf_state = randf_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(randf_state >> 11) / 4503599627370496.0 - 1.0;
}
static inline float *frand(size_t n, double scale) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(scale * urand());
    return p;
}
static inline float *fcopy(const float *x, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (n) memcpy(p, x, n * sizeof *p);
    return p;
}
#endif
