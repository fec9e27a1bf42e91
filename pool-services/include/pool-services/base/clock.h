/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

/*
 * The clock services read time through. Nothing in pool-services calls
 * clock_gettime() directly: a test hands in a clock whose functions return
 * pinned values, so log timestamps, deadlines and backoff are exact.
 */
typedef struct ps_clock {
        /* Milliseconds since the Unix epoch (CLOCK_REALTIME): for timestamps
         * people read, never for measuring intervals. */
        int64_t (*wall_ms)(void *userdata);
        /* Milliseconds on CLOCK_MONOTONIC: only differences mean anything. */
        int64_t (*mono_ms)(void *userdata);
        void *userdata;
} ps_clock;

/* The real clock. Static storage: never freed. */
const ps_clock *ps_clock_system(void);

/* Read a clock; a NULL clock is the system clock. */
int64_t ps_clock_wall_ms(const ps_clock *clock);
int64_t ps_clock_mono_ms(const ps_clock *clock);
