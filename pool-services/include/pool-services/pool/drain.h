/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/pool/registry.h"

/*
 * Draining a pool: from the call on it refuses new leases (PS_E_DRAINING);
 * the leases it holds may still end. When they reach zero its engines are
 * stopped gracefully (SIGTERM, stop grace, SIGKILL), PID and handoff
 * files removed, and the pool is stopped: live false, ready false. At the
 * deadline the engines are stopped with the leases still held, which are
 * ended by force and counted in the outcome. A pool with no lease drains
 * at once. The pool stays registered (stopped) afterwards.
 */

typedef struct ps_drain_outcome {
        bool ok;                  /* false: the drain was cut short (stop) */
        bool force_stopped;       /* the deadline came with leases held    */
        uint32_t leases_left;     /* leases ended by force                 */
        int64_t duration_ms;
        const char *message;      /* "drained: engine stopped", ...        */
} ps_drain_outcome;

/* Called once, on the loop, never from inside ps_pool_drain(). The
 * outcome is borrowed for the call. The pool may be removed from here. */
typedef void (*ps_drain_done_fn)(const char *pool_id, const ps_drain_outcome *outcome,
                                 void *userdata);

/* What a drain request is told at once (the 202 body). */
typedef struct ps_drain_info {
        bool already_running;     /* a drain was running: this is that one */
        int64_t started_at;       /* epoch ms                              */
        int64_t deadline_at;      /* epoch ms                              */
        uint32_t active_leases;   /* when the call returned                */
} ps_drain_info;

/*
 * Starts draining every replica of the pool; deadline_ms from now (>= 0).
 * info (may be NULL) is filled on 0. A drain already running answers 0
 * with info->already_running set and keeps its own callback: done is not
 * called for that request.
 *   PS_E_NOT_FOUND   unknown pool
 *   PS_E_INVALID     deadline_ms < 0
 *   PS_E_CONFLICT    a reload is running ("pool x is reloading"), or
 *                    nothing runs to drain ("pool x is not running")
 */
int ps_pool_drain(ps_registry *reg, const char *pool_id, int64_t deadline_ms,
                  ps_drain_done_fn done, void *userdata, ps_drain_info *info,
                  char *err, size_t errlen);

/*
 * At start: a drain the state store kept goes on with its original
 * deadline (epoch ms; one already past stops the engines at once). The
 * outcome is only logged and counted. Errors as for ps_pool_drain().
 */
int ps_pool_drain_resume(ps_registry *reg, const char *pool_id, int64_t deadline_at,
                         char *err, size_t errlen);

/* Whether a drain is running on the pool. */
bool ps_pool_draining(ps_registry *reg, const char *pool_id);

/* {pool_id, draining: true, already_running, started_at, deadline_at,
 * active_leases}; NULL on OOM. */
json_t *ps_drain_info_to_json(const char *pool_id, const ps_drain_info *info);
