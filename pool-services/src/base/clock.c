/* SPDX-License-Identifier: MIT */
#include <time.h>

#include "pool-services/base/clock.h"

static int64_t timespec_to_ms(const struct timespec *ts) {
        return (int64_t) ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

static int64_t system_wall_ms(void *userdata) {
        struct timespec ts;

        (void) userdata;
        /* Cannot fail for CLOCK_REALTIME with a valid pointer. */
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return timespec_to_ms(&ts);
}

static int64_t system_mono_ms(void *userdata) {
        struct timespec ts;

        (void) userdata;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return timespec_to_ms(&ts);
}

static const ps_clock system_clock = {
        .wall_ms = system_wall_ms,
        .mono_ms = system_mono_ms,
        .userdata = NULL,
};

const ps_clock *ps_clock_system(void) {
        return &system_clock;
}

int64_t ps_clock_wall_ms(const ps_clock *clock) {
        if (!clock)
                clock = &system_clock;
        return clock->wall_ms(clock->userdata);
}

int64_t ps_clock_mono_ms(const ps_clock *clock) {
        if (!clock)
                clock = &system_clock;
        return clock->mono_ms(clock->userdata);
}
