/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Serialized pool snapshots, so a GET that polls a pool costs a lookup
 * instead of building and dumping the JSON again.
 *
 * An entry is valid for one "stamp": the count of supervision events the
 * daemon has seen (every state change, exit, lease and readiness change
 * emits one), the count of changing API requests, and the wall-clock
 * second. A state change therefore shows in the very next GET; what
 * changes without an event (uptime_s, last_heartbeat, sampled VRAM,
 * performance hints) is at most one second old.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct pa_snapshot_stamp {
        uint64_t events;
        uint64_t requests;
        int64_t second;
} pa_snapshot_stamp;

typedef struct pa_snapshot_cache pa_snapshot_cache;

pa_snapshot_cache *pa_snapshot_cache_new(void);
pa_snapshot_cache *pa_snapshot_cache_free(pa_snapshot_cache *cache);

/* The body cached for key at this stamp (borrowed until the next put), or
 * NULL. */
const char *pa_snapshot_cache_get(const pa_snapshot_cache *cache, const char *key,
                                  const pa_snapshot_stamp *stamp, size_t *len);
/* Keeps body (stolen; freed with free()) for key at stamp. */
void pa_snapshot_cache_put(pa_snapshot_cache *cache, const char *key,
                           const pa_snapshot_stamp *stamp, char *body, size_t len);
