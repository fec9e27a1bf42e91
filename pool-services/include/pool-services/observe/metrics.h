/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/base/event.h"
#include "pool-services/pool/registry.h"

/*
 * Prometheus metrics of the node, in the text exposition format 0.0.4.
 *
 * Counters are fed from supervision events: the daemon's event sink hands
 * every event to ps_metrics_observe(). Gauges (pool state, slots, leases,
 * breaker state, backoff, each replica's crashes since a stable run and
 * restarts in the storm window, VRAM) are not stored: ps_metrics_render()
 * reads them from the registry's status and the device list passed in, so
 * a scrape always shows the registry as it is.
 *
 * A pool's counters live as long as the ps_metrics object: a pool that
 * leaves the registry keeps them (counters never go backwards), while its
 * gauges disappear with it. Every pool seen (in an event or a snapshot)
 * has its counters rendered, at 0 until something happens, so the series
 * exist before the first failure. docs/metrics.md lists every family.
 *
 * Single-threaded, like the rest of pool-services.
 */

typedef struct ps_metrics ps_metrics;

/* The Content-Type of what ps_metrics_render() returns. */
#define PS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* NULL on OOM. The build_info version is "unknown" until set. */
ps_metrics *ps_metrics_new(void);
/* Accepts NULL; returns NULL. */
ps_metrics *ps_metrics_free(ps_metrics *m);

/* The version label of pool_managerd_build_info (copied). 0, -EINVAL for
 * a NULL argument, -ENOMEM. */
int ps_metrics_set_version(ps_metrics *m, const char *version);

/*
 * Counts what the event says. Supervision events (spawned ... request_done)
 * also make their pool known; generic and http_request events and events
 * without a pool_id are ignored, so a request naming a pool that does not
 * exist adds no series. One generic event is counted: the handoff
 * watcher's PS_HANDOFF_IGNORED, by its "reason" field (one of
 * ps_handoff_refusal_to_string(); others are not counted), in the node's
 * pool_managerd_handoff_refusals_total, whatever pool the file named.
 * The event and its strings are borrowed for the call only. Never fails:
 * on OOM the event is not counted.
 */
void ps_metrics_observe(ps_metrics *m, const ps_event *event);

/* The node's pool_managerd_node_errors_total as {"fd_limit": 0,
 * "process_limit": 0, "disk_full": 0, "memory": 0, "runtime_dir": 2}
 * (every kind, at 0 until one happens), for GET /v2/node. Counted from
 * spawn_failed events with a "node_error" field. NULL on OOM. */
json_t *ps_metrics_node_errors(const ps_metrics *m);

/*
 * The whole scrape as a NUL-terminated string the caller frees; NULL on
 * OOM (or a NULL m).
 *
 * status: ps_registry_status_get()'s (borrowed; NULL: no pool gauges).
 * Not const m: pools in the status become known (their counters appear at
 * 0) and their replicas' driver_resets counts are folded into
 * pool_managerd_driver_resets_total.
 * devices: {"devices":[{index, uuid, name, vram_total_bytes,
 * vram_free_bytes}]} as ps_inventory_to_json() returns it (borrowed; NULL:
 * no GPU gauges). Fields of the wrong type are left out, not guessed.
 *
 * Output is deterministic: families in a fixed order, each with one HELP
 * and one TYPE line; series sorted by pool_id, then replica_id or label
 * value; devices by index.
 */
char *ps_metrics_render(ps_metrics *m, const ps_registry_status *status, const json_t *devices);

/*
 * The configuration file was loaded (the start) or re-loaded (SIGHUP): ok
 * or rejected, at wall_ms. Until the first call the two
 * pool_managerd_config_last_reload_* gauges are not rendered.
 */
void ps_metrics_config_loaded(ps_metrics *m, bool ok, int64_t wall_ms);

/*
 * A collector (below) of the standard process_* families of the calling
 * process: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds, read from
 * /proc at each scrape; userdata is unused. The daemon adds it.
 */
char *ps_metrics_process_collect(void *userdata);

/*
 * Families rendered elsewhere (the control plane, etcd) join the scrape
 * through collectors: each returns its families as text (the caller
 * frees; NULL on OOM makes the render fail), appended after the built-in
 * families in the order the collectors were added. Each family must
 * appear in one collector only. 0, -EINVAL, -ENOSPC (at most 8).
 * Remove a collector before freeing what its userdata points to.
 */
typedef char *(*ps_metrics_collect_fn)(void *userdata);

int ps_metrics_add_collector(ps_metrics *m, ps_metrics_collect_fn fn, void *userdata);
void ps_metrics_remove_collector(ps_metrics *m, ps_metrics_collect_fn fn, void *userdata);
