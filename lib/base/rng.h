/* rng: the one random stream of the project, splitmix64 (Steele, Lea and
 * Flood 2014): 64-bit state, each draw adds the golden gamma and mixes.
 * Every seeded draw (model init, LoRA init, dropout, shuffles, sampling,
 * random selection) goes through rng_next, so one seed means one sequence
 * everywhere and the tests' goldens stay reproducible. */
#ifndef LR_RNG_H
#define LR_RNG_H

#include <stdint.h>

#define RNG_GAMMA 0x9e3779b97f4a7c15ULL

/* The next 64 random bits of the stream whose state is *s. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += RNG_GAMMA);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* A state derived from a seed and a stream number (a problem index, a
 * tensor): independent streams for the same seed, order-free. */
static inline uint64_t rng_stream(uint64_t seed, uint64_t stream) {
    uint64_t s = seed ^ (stream * RNG_GAMMA);
    return rng_next(&s);
}

#endif
