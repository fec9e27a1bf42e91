/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/placement/inventory.h"
#include "pool-services/pool/registry.h"

/*
 * Registration with the control plane (the cloud profile), on the event
 * loop through libcurl multi; nothing here ever blocks.
 *
 *   POST   {url}/v2/nodes/register        {node_id, machine_id, address,
 *                                          pools, capabilities, version}
 *   POST   {url}/v2/nodes/{id}/heartbeat  {timestamp, pools: [{pool_id,
 *                                          ready, draining, slots_free,
 *                                          slots_total, vram_free_bytes,
 *                                          engine, ...}]}
 *   DELETE {url}/v2/nodes/{id}            on a clean shutdown
 *
 * Heartbeats go every heartbeat interval, or after the reply's
 * "next_heartbeat_ms" (relative) when it gives one. A control plane that
 * is down, slow (requests time out) or answers errors is retried with a
 * doubling delay capped at one heartbeat interval; a heartbeat answered
 * 404 means the control plane forgot the node: it registers again at
 * once. One request at a time: a slow control plane never piles them up.
 *
 * Outcomes are reported through the context's sink (generic events,
 * "control plane ..." messages; the first failure of a streak at warn,
 * the rest at debug) and are visible in ps_control_plane_status() and
 * ps_control_plane_render_metrics().
 */
typedef struct ps_control_plane ps_control_plane;

typedef struct ps_control_plane_config {
        const char *url;               /* http(s)://host:port[/base]        */
        const char *node_id;
        const char *machine_id;
        const char *address;           /* URL the control plane reaches us at */
        const char *token;             /* bearer; NULL or "": none. Never logged */
        const char *version;           /* the daemon's                      */
        const char *const *pools;      /* advertised ids when pools_set     */
        size_t n_pools;
        bool pools_set;                /* false: every pool of the registry */
        int64_t heartbeat_interval_ms; /* > 0                               */
        int64_t retry_initial_ms;      /* first retry delay; 0: 1000 (capped at the interval) */
        int64_t request_timeout_ms;    /* 0: the interval, within 1..10 s   */
        bool register_on_startup;      /* false: heartbeat first, register on 404 */
        const ps_inventory *inventory; /* GPUs and VRAM; may be NULL        */
} ps_control_plane_config;

/*
 * Everything in cfg is copied. ctx and reg are borrowed and must outlive
 * the object. PS_E_INVALID naming the missing field (url, node_id,
 * address, heartbeat_interval_ms), -ENOMEM.
 */
int ps_control_plane_new(const ps_context *ctx, ps_registry *reg,
                         const ps_control_plane_config *cfg, ps_control_plane **ret,
                         char *err, size_t errlen);
/* Cancels whatever is in flight; no deregistration (use stop first). */
ps_control_plane *ps_control_plane_free(ps_control_plane *cp);

/* Registers (or, without register_on_startup, heartbeats) on the next
 * loop turn. 0, or PS_E_CONFLICT when already started. */
int ps_control_plane_start(ps_control_plane *cp);

/*
 * Stops heartbeats and, when the node was registered, sends the DELETE,
 * waiting at most timeout_ms for it. done runs once (ok: the control plane
 * acknowledged it; a node never registered counts as ok) -- at once, from
 * inside this call, when there is nothing to send.
 */
void ps_control_plane_stop(ps_control_plane *cp, int64_t timeout_ms,
                           ps_done_fn done, void *userdata);

/* "idle", "registering", "registered", "retrying", "deregistering",
 * "deregistered", "stopped". */
const char *ps_control_plane_state(const ps_control_plane *cp);
bool ps_control_plane_registered(const ps_control_plane *cp);

/*
 * For a status route: {url, node_id, state, registered, last_error (null
 * when none), last_error_at, last_success_at, last_heartbeat_at,
 * registered_at, next_attempt_at (epoch ms or null), consecutive_failures,
 * heartbeat_interval_ms, registrations, reregistrations, heartbeats,
 * failures}. The token is never in it. NULL on OOM.
 */
json_t *ps_control_plane_status(const ps_control_plane *cp);

/* Its Prometheus families (docs/metrics.md), to append to a scrape; the
 * caller frees. NULL on OOM. */
char *ps_control_plane_render_metrics(const ps_control_plane *cp);
