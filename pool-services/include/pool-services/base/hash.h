/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * FNV-1a, 64 bits: the one hash of the project's tables (string maps,
 * caches, jitter seeds). Not for anything an attacker must not collide.
 * Start from PS_FNV1A_INIT; chain calls to hash several parts.
 */
#define PS_FNV1A_INIT 1469598103934665603ULL

static inline uint64_t ps_fnv1a(uint64_t h, const void *data, size_t n) {
        const unsigned char *p = data;

        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ULL;
        return h;
}

static inline uint64_t ps_fnv1a_str(uint64_t h, const char *s) {
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return h;
}
