/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A small caller-owned RNG (splitmix64). pool-domain never reads a global
 * RNG: callers seed one of these (from getrandom() in the daemon, from a
 * constant in tests) and pass it in, so every jittered result is
 * reproducible.
 */
typedef struct pd_rng {
        uint64_t state;
} pd_rng;

void pd_rng_seed(pd_rng *rng, uint64_t seed);
uint64_t pd_rng_next(pd_rng *rng);
/* Uniform double in [0, 1). */
double pd_rng_unit(pd_rng *rng);
/* Uniform double in [-1, 1). */
double pd_rng_signed_unit(pd_rng *rng);

#ifdef __cplusplus
}
#endif
