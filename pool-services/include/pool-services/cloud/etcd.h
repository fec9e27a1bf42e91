/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/placement/inventory.h"
#include "pool-services/pool/registry.h"

/*
 * The fleet registry: this node and the status of its pools, published
 * into etcd through its v3 JSON gateway (libcurl multi on the loop):
 *
 *   {prefix}nodes/{node_id}            {node_id, machine_id, address,
 *                                       version, capabilities, pools}
 *   {prefix}pools/{node_id}/{pool_id}  {node_id, address, pool_id, state,
 *                                       ready, draining, slots_free,
 *                                       slots_total, vram_free_bytes,
 *                                       engine, engine_version}
 *
 * Every key is attached to one lease (TTL ttl_ms, rounded up to seconds)
 * that is kept alive every keepalive_ms, so a node that dies vanishes
 * from the prefix when the lease runs out, and any number of watchers of
 * the prefix see the fleet. A keepalive answered without a TTL, or a put
 * answered "lease not found" (etcd lost its data, or the lease expired
 * while etcd was unreachable), gets a new lease and puts every key again.
 * Keys are put when their value changes: ps_etcd_poke() says "look now";
 * every keepalive tick looks too. Pools that leave the registry have
 * their key deleted. Unreachable etcd: retries with a doubling delay
 * capped at keepalive_ms, trying the next endpoint each time.
 */
typedef struct ps_etcd ps_etcd;

/* What a trace callback is told about one request. */
typedef enum ps_etcd_trace_what {
        PS_ETCD_SENT,     /* handed to curl                                 */
        PS_ETCD_OK,       /* answered and accepted                          */
        PS_ETCD_FAILED,   /* refused, timed out, an error, a lost lease     */
} ps_etcd_trace_what;

/* request: "grant", "keepalive", "put", "delete" or "revoke". Runs on the
 * loop, inside the publisher: it must not call back into it. */
typedef void (*ps_etcd_trace_fn)(const char *request, ps_etcd_trace_what what, void *userdata);

typedef struct ps_etcd_config {
        const char *const *endpoints;  /* "http://127.0.0.1:2379", ...     */
        size_t n_endpoints;
        const char *prefix;            /* "/pool-managerd/"; '/' appended when missing */
        int64_t ttl_ms;                /* >= 1000                          */
        int64_t keepalive_ms;          /* 0: ttl_ms / 3                    */
        int64_t request_timeout_ms;    /* 0: keepalive_ms, within 0.5..5 s */
        const char *node_id;
        const char *machine_id;        /* NULL or "": the node id          */
        const char *address;
        const char *version;
        const char *const *pools;      /* advertised ids when pools_set    */
        size_t n_pools;
        bool pools_set;
        const ps_inventory *inventory; /* may be NULL                      */
        /* Optional: told of every request sent and how it ended, so a
         * measurement can time them (bench/etcd-nodes.c). NULL: none. */
        ps_etcd_trace_fn trace;
        void *trace_userdata;
} ps_etcd_config;

/* cfg is copied; ctx and reg are borrowed. PS_E_INVALID naming the field,
 * -ENOMEM. */
int ps_etcd_new(const ps_context *ctx, ps_registry *reg, const ps_etcd_config *cfg,
                ps_etcd **ret, char *err, size_t errlen);
/* Cancels what is in flight; the lease is left to expire (stop revokes). */
ps_etcd *ps_etcd_free(ps_etcd *etcd);

/* Grants the lease and publishes, from the next loop turn on. */
int ps_etcd_start(ps_etcd *etcd);
/* Pool state may have changed: publish what differs, soon. */
void ps_etcd_poke(ps_etcd *etcd);

/* Stops publishing and revokes the lease (its keys vanish at once),
 * waiting at most timeout_ms. done runs once; at once, from inside this
 * call, when no lease is held. */
void ps_etcd_stop(ps_etcd *etcd, int64_t timeout_ms, ps_done_fn done, void *userdata);

/* {endpoint, prefix, state, lease_id (string or null), ttl_ms, keys,
 * last_error, last_error_at, last_success_at, consecutive_failures,
 * lease_grants}. NULL on OOM. */
json_t *ps_etcd_status(const ps_etcd *etcd);
/* Its Prometheus families (docs/metrics.md); the caller frees. */
char *ps_etcd_render_metrics(const ps_etcd *etcd);

/* etcd's JSON API carries keys and values in base64: s (NUL-terminated)
 * encoded, for callers that build their own requests; free() it. NULL on
 * OOM or a NULL s. */
char *ps_etcd_base64(const char *s);
