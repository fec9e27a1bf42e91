/* SPDX-License-Identifier: MIT */
/*
 * Status structs rendered as the JSON the API and the control plane see.
 * The key order is part of the output: clients diff snapshots, and the
 * tests compare them whole.
 */
#include <stdint.h>

#include <jansson.h>

#include "pool-services/observe/status-json.h"

static json_t *opt_str(const char *s) {
        return s ? json_string(s) : json_null();
}

/* An epoch-milliseconds time; null when there is none. */
static json_t *opt_time(int64_t wall_ms) {
        return wall_ms > 0 ? json_integer(wall_ms) : json_null();
}

static json_t *breaker_json(const ps_breaker_status *b) {
        return json_pack("{s:s, s:I, s:I, s:o}",
                         "state", b->state,
                         "failures", (json_int_t) b->failures,
                         "opens", (json_int_t) b->opens,
                         "open_until", opt_time(b->open_until));
}

json_t *ps_replica_status_json(const ps_replica_status *s) {
        json_t *j;

        j = json_pack("{s:s, s:s, s:b, s:b, s:b, s:b, s:I, s:s, s:o, s:o, s:o, s:o, s:o,"
                      " s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:o,"
                      " s:o, s:o, s:o, s:I}",
                      "replica_id", s->replica_id,
                      "state", s->state,
                      "live", s->live,
                      "ready", s->ready,
                      "draining", s->draining,
                      "external", s->external,
                      "pid", (json_int_t) s->pid,
                      "url", s->url,
                      "engine", opt_str(s->engine),
                      "engine_version", opt_str(s->engine_version),
                      "model_id", opt_str(s->model_id),
                      "model_digest", opt_str(s->model_digest),
                      "device_mask", opt_str(s->device_mask),
                      "slots_total", (json_int_t) s->slots_total,
                      "slots_free", (json_int_t) s->slots_free,
                      "active_leases", (json_int_t) s->active_leases,
                      "last_error", opt_str(s->last_error),
                      "last_error_class", opt_str(s->last_error_class),
                      "last_error_at", opt_time(s->last_error_at),
                      "last_heartbeat", opt_time(s->last_heartbeat),
                      "restart_count", (json_int_t) s->restart_count,
                      "crash_count", (json_int_t) s->crash_count,
                      "restarts_in_window", (json_int_t) s->restarts_in_window,
                      "backoff_ms", (json_int_t) s->backoff_ms,
                      "next_restart_at", opt_time(s->next_restart_at),
                      "breaker", breaker_json(&s->breaker),
                      "started_at", opt_time(s->started_at),
                      "ready_at", opt_time(s->ready_at),
                      "uptime_s", (json_int_t) s->uptime_s);
        if (j && json_object_set_new(j, "driver_resets", json_integer(s->driver_resets)) < 0)
                j = (json_decref(j), NULL);
        /* the leases of a surge's old engine, still retiring beside it */
        if (j && json_object_set_new(j, "retiring_leases", json_integer(s->retiring_leases)) < 0)
                j = (json_decref(j), NULL);
        return j;
}

static json_t *replicas_json(const ps_pool_status *s) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < s->n_replicas; i++)
                if (json_array_append_new(a, ps_replica_status_json(&s->replicas[i])) < 0)
                        a = (json_decref(a), NULL);
        return a;
}

json_t *ps_pool_status_json(const ps_pool_status *s) {
        const ps_replica_status *f = s->first;

        return json_pack("{s:s, s:s, s:b, s:b, s:b, s:o, s:o, s:o, s:o, s:o, s:o,"
                         " s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:[]}",
                         "pool_id", s->pool_id,
                         "state", s->state,
                         "live", s->live,
                         "ready", s->ready,
                         "draining", s->draining,
                         "last_error", opt_str(s->last_error),
                         "engine", f ? opt_str(f->engine) : json_null(),
                         "engine_version", f ? opt_str(f->engine_version) : json_null(),
                         "model_id", f ? opt_str(f->model_id) : json_null(),
                         "model_digest", f ? opt_str(f->model_digest) : json_null(),
                         "device_mask", f ? opt_str(f->device_mask) : json_null(),
                         "slots_total", (json_int_t) s->slots_total,
                         "slots_free", (json_int_t) s->slots_free,
                         "active_leases", (json_int_t) s->active_leases,
                         "restart_count", (json_int_t) s->restart_count,
                         "crash_count", (json_int_t) s->crash_count,
                         "restarts_in_window", (json_int_t) s->restarts_in_window,
                         "backoff_ms", f ? json_integer(s->backoff_ms) : json_null(),
                         "next_restart_at", opt_time(s->next_restart_at),
                         "breaker", f ? breaker_json(&f->breaker) : json_null(),
                         "pid", f ? json_integer(f->pid) : json_null(),
                         "url", f ? json_string(f->url) : json_null(),
                         "replicas", replicas_json(s),
                         "devices");
}

json_t *ps_registry_status_json(const ps_registry_status *s) {
        json_t *pools = json_array();

        for (size_t i = 0; pools && i < s->n_pools; i++)
                if (json_array_append_new(pools, ps_pool_status_json(&s->pools[i])) < 0)
                        pools = (json_decref(pools), NULL);
        return json_pack("{s:o}", "pools", pools);
}

json_t *ps_replica_snapshot(const ps_replica *r) {
        ps_replica_status s;

        ps_replica_status_get(r, &s);
        return ps_replica_status_json(&s);
}

json_t *ps_registry_pool_snapshot(const ps_registry *reg, const char *pool_id) {
        ps_pool_status s;
        json_t *j;

        if (ps_registry_pool_status_get(reg, pool_id, &s) != 0)
                return NULL;
        j = ps_pool_status_json(&s);
        ps_pool_status_done(&s);
        return j;
}

json_t *ps_registry_snapshot(const ps_registry *reg) {
        ps_registry_status s;
        json_t *j;

        if (ps_registry_status_get(reg, &s) != 0)
                return NULL;
        j = ps_registry_status_json(&s);
        ps_registry_status_done(&s);
        return j;
}
