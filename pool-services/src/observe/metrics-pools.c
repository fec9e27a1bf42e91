/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/strbuf.h"
#include "observe/metrics-private.h"
#include "pool-domain/breaker.h"
#include "pool-domain/lifecycle.h"

/* Pool, replica and GPU gauges: the snapshot as it is, nothing stored. */

const char *ps_metrics_pool_id_of(const json_t *pool) {
        return json_string_value(json_object_get(pool, "pool_id"));
}

static int compare_pools(const void *a, const void *b) {
        return strcmp(ps_metrics_pool_id_of(*(const json_t *const *) a),
                      ps_metrics_pool_id_of(*(const json_t *const *) b));
}

static const char *replica_id_of(const json_t *replica) {
        return json_string_value(json_object_get(replica, "replica_id"));
}

static int compare_replicas(const void *a, const void *b) {
        return strcmp(replica_id_of(*(const json_t *const *) a), replica_id_of(*(const json_t *const *) b));
}

static int64_t device_index_of(const json_t *device) {
        return json_integer_value(json_object_get(device, "index"));
}

static int compare_devices(const void *a, const void *b) {
        int64_t x = device_index_of(*(const json_t *const *) a), y = device_index_of(*(const json_t *const *) b);

        return (x > y) - (x < y);
}

/*
 * The objects of array that have an identifier (has_id), sorted, without
 * duplicates: a duplicated series would make the scrape invalid. *ret is
 * NULL when there are none; -ENOMEM.
 */
static int sorted_objects(const json_t *array, bool (*has_id)(const json_t *),
                          int (*compare)(const void *, const void *),
                          const json_t ***ret, size_t *n_ret) {
        size_t n = 0, kept = 0, size = json_array_size(array);
        const json_t **v;

        *ret = NULL;
        *n_ret = 0;
        if (size == 0)
                return 0;
        v = malloc(size * sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < size; i++) {
                const json_t *item = json_array_get(array, i);

                if (json_is_object(item) && has_id(item))
                        v[n++] = item;
        }
        qsort(v, n, sizeof(*v), compare);
        for (size_t i = 0; i < n; i++)
                if (kept == 0 || compare(&v[kept - 1], &v[i]) != 0)
                        v[kept++] = v[i];
        *ret = v;
        *n_ret = kept;
        return 0;
}

static bool pool_has_id(const json_t *pool) {
        return ps_metrics_pool_id_of(pool) != NULL;
}

static bool replica_has_id(const json_t *replica) {
        return replica_id_of(replica) != NULL;
}

static bool device_has_id(const json_t *device) {
        return json_is_integer(json_object_get(device, "index"));
}

typedef enum gauge_kind {
        GAUGE_BOOL,             /* true 1, false 0 */
        GAUGE_INT,              /* an integer as it is */
        GAUGE_MS,               /* milliseconds shown as seconds; null 0 */
        GAUGE_COUNT,            /* the length of an array */
} gauge_kind;

typedef struct pool_gauge {
        const char *name;
        const char *help;
        const char *key;
        const char *subkey;     /* NULL, or key is an object holding it */
        gauge_kind kind;
} pool_gauge;

/* In scrape order, after pool_state. */
static const pool_gauge pool_gauges[] = {
        { "pool_managerd_pool_ready", "1 when a replica of the pool is ready to serve.",
          "ready", NULL, GAUGE_BOOL },
        { "pool_managerd_pool_live", "1 when an engine of the pool is running.",
          "live", NULL, GAUGE_BOOL },
        { "pool_managerd_pool_draining", "1 while the pool drains.",
          "draining", NULL, GAUGE_BOOL },
        { "pool_managerd_pool_replicas", "Replicas registered in the pool.",
          "replicas", NULL, GAUGE_COUNT },
        { "pool_managerd_pool_slots", "Slots (concurrent requests) of the pool's replicas.",
          "slots_total", NULL, GAUGE_INT },
        { "pool_managerd_pool_slots_free", "Slots of ready replicas not held by a lease.",
          "slots_free", NULL, GAUGE_INT },
        { "pool_managerd_pool_active_leases", "Leases held on the pool.",
          "active_leases", NULL, GAUGE_INT },
        { "pool_managerd_backoff_delay_seconds", "The restart delay last chosen for the pool.",
          "backoff_ms", NULL, GAUGE_MS },
};

/* After breaker_state. */
static const pool_gauge breaker_gauges[] = {
        { "pool_managerd_breaker_failures", "Failures the pool's breaker has counted towards opening.",
          "breaker", "failures", GAUGE_INT },
};

static void render_pool_gauge(ps_strbuf *o, const pool_gauge *g, const json_t *const *pools, size_t n) {
        ps_expo_header(o, g->name, "gauge", g->help);
        for (size_t i = 0; i < n; i++) {
                const ps_expo_label l = { "pool_id", ps_metrics_pool_id_of(pools[i]) };
                const json_t *v = json_object_get(pools[i], g->key);

                if (g->subkey)
                        v = json_object_get(v, g->subkey);
                switch (g->kind) {
                case GAUGE_BOOL:
                        if (!json_is_boolean(v))
                                continue;
                        ps_expo_series(o, g->name, "", &l, 1);
                        ps_expo_int_line(o, json_is_true(v) ? 1 : 0);
                        break;
                case GAUGE_INT:
                        if (!json_is_integer(v))
                                continue;
                        ps_expo_series(o, g->name, "", &l, 1);
                        ps_expo_int_line(o, json_integer_value(v));
                        break;
                case GAUGE_MS:
                        if (!json_is_integer(v) && !json_is_null(v))
                                continue;
                        ps_expo_series(o, g->name, "", &l, 1);
                        ps_expo_ms_line(o, json_integer_value(v));
                        break;
                case GAUGE_COUNT:
                        if (!json_is_array(v))
                                continue;
                        ps_expo_series(o, g->name, "", &l, 1);
                        ps_expo_u64_line(o, json_array_size(v));
                        break;
                }
        }
}

/*
 * A state set: one series per possible state, 1 for the current one and 0
 * for the rest; a state the set does not know gets a series of its own.
 * labels[n] is free for the state.
 */
static void render_state_set(ps_strbuf *o, const char *name, const char *state,
                             const char *(*names)(unsigned i), unsigned n_names,
                             ps_expo_label *labels, size_t n) {
        bool known = false;

        for (unsigned i = 0; i < n_names; i++) {
                const char *s = names(i);
                bool current = strcmp(s, state) == 0;

                known |= current;
                labels[n] = (ps_expo_label) { "state", s };
                ps_expo_series(o, name, "", labels, n + 1);
                ps_strbuf_str(o, current ? "1\n" : "0\n");
        }
        if (!known) {
                labels[n] = (ps_expo_label) { "state", state };
                ps_expo_series(o, name, "", labels, n + 1);
                ps_strbuf_str(o, "1\n");
        }
}

static const char *lifecycle_state_name(unsigned i) {
        return pd_state_to_string((pd_state) i);
}

static const char *breaker_state_name(unsigned i) {
        return pd_breaker_state_to_string((pd_breaker_state) i);
}

/* A state set per pool, from pools[i][key] (or [key][subkey]). */
static void render_pool_state_set(ps_strbuf *o, const char *name, const char *help, const char *key,
                                  const char *subkey, const char *(*names)(unsigned i), unsigned n_names,
                                  const json_t *const *pools, size_t n) {
        ps_expo_label l[2];

        ps_expo_header(o, name, "gauge", help);
        for (size_t i = 0; i < n; i++) {
                const json_t *v = json_object_get(pools[i], key);
                const char *state;

                if (subkey)
                        v = json_object_get(v, subkey);
                state = json_string_value(v);
                if (!state)
                        continue;
                l[0] = (ps_expo_label) { "pool_id", ps_metrics_pool_id_of(pools[i]) };
                render_state_set(o, name, state, names, n_names, l, 1);
        }
}

static void render_replica_states(ps_strbuf *o, const json_t *const *pools, size_t n) {
        static const char *const name = "pool_managerd_replica_state";
        ps_expo_label l[3];

        ps_expo_header(o, name, "gauge",
                       "Each replica's lifecycle state: 1 for the current state, 0 for the others.");
        for (size_t i = 0; i < n; i++) {
                const json_t **replicas;
                size_t n_replicas;

                if (sorted_objects(json_object_get(pools[i], "replicas"), replica_has_id,
                                   compare_replicas, &replicas, &n_replicas) < 0) {
                        o->oom = true;
                        return;
                }
                for (size_t j = 0; j < n_replicas; j++) {
                        const char *state = json_string_value(json_object_get(replicas[j], "state"));

                        if (!state)
                                continue;
                        l[0] = (ps_expo_label) { "pool_id", ps_metrics_pool_id_of(pools[i]) };
                        l[1] = (ps_expo_label) { "replica_id", replica_id_of(replicas[j]) };
                        render_state_set(o, name, state, lifecycle_state_name, PD_STATE_MAX, l, 2);
                }
                free(replicas);
        }
}

typedef struct replica_gauge {
        const char *name;
        const char *help;
        const char *key;        /* an integer of each replica's snapshot */
} replica_gauge;

/* In scrape order, after replica_state. */
static const replica_gauge replica_gauges[] = {
        { "pool_managerd_consecutive_crashes",
          "Failures of the replica since its last run that stayed ready for backoff.stable_reset_ms.",
          "crash_count" },
        { "pool_managerd_restarts_in_window",
          "Restarts of the replica the storm limiter counts in its window (storm.window_ms).",
          "restarts_in_window" },
};

static void render_replica_gauge(ps_strbuf *o, const replica_gauge *g, const json_t *const *pools, size_t n) {
        ps_expo_label l[2];

        ps_expo_header(o, g->name, "gauge", g->help);
        for (size_t i = 0; i < n; i++) {
                const json_t **replicas;
                size_t n_replicas;

                if (sorted_objects(json_object_get(pools[i], "replicas"), replica_has_id,
                                   compare_replicas, &replicas, &n_replicas) < 0) {
                        o->oom = true;
                        return;
                }
                for (size_t j = 0; j < n_replicas; j++) {
                        const json_t *v = json_object_get(replicas[j], g->key);

                        if (!json_is_integer(v))
                                continue;
                        l[0] = (ps_expo_label) { "pool_id", ps_metrics_pool_id_of(pools[i]) };
                        l[1] = (ps_expo_label) { "replica_id", replica_id_of(replicas[j]) };
                        ps_expo_series(o, g->name, "", l, 2);
                        ps_expo_int_line(o, json_integer_value(v));
                }
                free(replicas);
        }
}

void ps_metrics_render_pool_gauges(ps_strbuf *o, const json_t *const *pools, size_t n) {
        render_pool_state_set(o, "pool_managerd_pool_state",
                              "The pool's lifecycle state: 1 for the current state, 0 for the others.",
                              "state", NULL, lifecycle_state_name, PD_STATE_MAX, pools, n);
        for (size_t i = 0; i < sizeof(pool_gauges) / sizeof(pool_gauges[0]); i++)
                render_pool_gauge(o, &pool_gauges[i], pools, n);
        render_pool_state_set(o, "pool_managerd_breaker_state",
                              "The pool's circuit breaker: 1 for the current state, 0 for the others.",
                              "breaker", "state", breaker_state_name, PD_BREAKER_STATE_MAX, pools, n);
        for (size_t i = 0; i < sizeof(breaker_gauges) / sizeof(breaker_gauges[0]); i++)
                render_pool_gauge(o, &breaker_gauges[i], pools, n);
        render_replica_states(o, pools, n);
        for (size_t i = 0; i < sizeof(replica_gauges) / sizeof(replica_gauges[0]); i++)
                render_replica_gauge(o, &replica_gauges[i], pools, n);
}

void ps_metrics_render_devices(ps_strbuf *o, const json_t *devices_doc) {
        static const struct {
                const char *name;
                const char *help;
                const char *key;
        } vram[] = {
                { "pool_managerd_gpu_vram_total_bytes", "The device's memory.", "vram_total_bytes" },
                { "pool_managerd_gpu_vram_free_bytes", "The device's free memory at the last sample.",
                  "vram_free_bytes" },
        };
        const json_t **devices;
        size_t n;

        if (sorted_objects(json_object_get(devices_doc, "devices"), device_has_id, compare_devices,
                           &devices, &n) < 0) {
                o->oom = true;
                return;
        }
        ps_expo_header(o, "pool_managerd_gpu_info", "gauge",
                       "Always 1 for each GPU of the inventory; labels name it.");
        for (size_t i = 0; i < n; i++) {
                char index[32];
                const char *uuid = json_string_value(json_object_get(devices[i], "uuid"));
                const char *name = json_string_value(json_object_get(devices[i], "name"));

                snprintf(index, sizeof(index), "%" PRId64, device_index_of(devices[i]));
                const ps_expo_label l[] = {
                        { "device", index }, { "uuid", uuid ? uuid : "" }, { "name", name ? name : "" },
                };

                ps_expo_series(o, "pool_managerd_gpu_info", "", l, 3);
                ps_strbuf_str(o, "1\n");
        }
        for (size_t f = 0; f < sizeof(vram) / sizeof(vram[0]); f++) {
                ps_expo_header(o, vram[f].name, "gauge", vram[f].help);
                for (size_t i = 0; i < n; i++) {
                        char index[32];
                        const char *uuid = json_string_value(json_object_get(devices[i], "uuid"));
                        const json_t *v = json_object_get(devices[i], vram[f].key);

                        if (!json_is_integer(v))
                                continue;
                        snprintf(index, sizeof(index), "%" PRId64, device_index_of(devices[i]));
                        const ps_expo_label l[] = { { "device", index }, { "uuid", uuid ? uuid : "" } };

                        ps_expo_series(o, vram[f].name, "", l, 2);
                        ps_expo_int_line(o, json_integer_value(v));
                }
        }
        free(devices);
}

int ps_metrics_sorted_pools(const json_t *snapshot, const json_t ***ret, size_t *n_ret) {
        return sorted_objects(json_object_get(snapshot, "pools"), pool_has_id, compare_pools, ret, n_ret);
}
