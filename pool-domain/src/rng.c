/* SPDX-License-Identifier: MIT */
#include "pool-domain/rng.h"

/* splitmix64 (Steele, Lea, Flood 2014; constants as in Vigna's reference
 * code): every seed, 0 included, gives a full-period sequence, so callers
 * never have to avoid a bad seed. */

void pd_rng_seed(pd_rng *rng, uint64_t seed) {
        rng->state = seed;
}

uint64_t pd_rng_next(pd_rng *rng) {
        uint64_t z;

        rng->state += UINT64_C(0x9E3779B97F4A7C15);
        z = rng->state;
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

double pd_rng_unit(pd_rng *rng) {
        /* 53 bits fill a double's mantissa exactly, so the result is a
         * multiple of 2^-53 and can never round up to 1.0. */
        return (double) (pd_rng_next(rng) >> 11) * 0x1.0p-53;
}

double pd_rng_signed_unit(pd_rng *rng) {
        /* 2u - 1 is exact in binary floating point: [0,1) maps onto [-1,1). */
        return 2.0 * pd_rng_unit(rng) - 1.0;
}
