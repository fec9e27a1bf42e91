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

/* Pool, replica and GPU gauges: the status as it is, nothing stored. */

static int compare_pools(const void *a, const void *b) {
        return strcmp((*(const ps_pool_status *const *) a)->pool_id,
                      (*(const ps_pool_status *const *) b)->pool_id);
}

static int compare_replicas(const void *a, const void *b) {
        return strcmp((*(const ps_replica_status *const *) a)->replica_id,
                      (*(const ps_replica_status *const *) b)->replica_id);
}

static int64_t device_index_of(const json_t *device) {
        return json_integer_value(json_object_get(device, "index"));
}

static int compare_devices(const void *a, const void *b) {
        int64_t x = device_index_of(*(const json_t *const *) a), y = device_index_of(*(const json_t *const *) b);

        return (x > y) - (x < y);
}

/* Sorts v[0..n) and drops duplicates (a duplicated series would make the
 * scrape invalid); the count kept. */
static size_t sort_unique(const void **v, size_t n, int (*compare)(const void *, const void *)) {
        size_t kept = 0;

        if (n == 0)
                return 0;
        qsort(v, n, sizeof(*v), compare);
        for (size_t i = 0; i < n; i++)
                if (kept == 0 || compare(&v[kept - 1], &v[i]) != 0)
                        v[kept++] = v[i];
        return kept;
}

/*
 * The objects of a JSON array that have an identifier (has_id), sorted,
 * without duplicates. *ret is NULL when there are none; -ENOMEM.
 */
static int sorted_objects(const json_t *array, bool (*has_id)(const json_t *),
                          int (*compare)(const void *, const void *),
                          const json_t ***ret, size_t *n_ret) {
        size_t n = 0, size = json_array_size(array);
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
        *ret = v;
        *n_ret = sort_unique((const void **) v, n, compare);
        return 0;
}

static bool device_has_id(const json_t *device) {
        return json_is_integer(json_object_get(device, "index"));
}

/* A pool's replicas sorted by id, without duplicates; -ENOMEM. */
static int sorted_replicas(const ps_pool_status *p, const ps_replica_status ***ret, size_t *n_ret) {
        const ps_replica_status **v = NULL;
        size_t n = 0;

        if (p->n_replicas && !(v = malloc(p->n_replicas * sizeof(*v))))
                return -ENOMEM;
        for (size_t i = 0; i < p->n_replicas; i++)
                if (p->replicas[i].replica_id)
                        v[n++] = &p->replicas[i];
        *ret = v;
        *n_ret = sort_unique((const void **) v, n, compare_replicas);
        return 0;
}

typedef enum gauge_kind {
        GAUGE_INT,              /* an integer as it is */
        GAUGE_MS,               /* milliseconds shown as seconds */
} gauge_kind;

typedef struct pool_gauge {
        const char *name;
        const char *help;
        gauge_kind kind;
        /* The pool's value; false when it has none (no series). */
        bool (*value)(const ps_pool_status *p, int64_t *v);
} pool_gauge;

static bool pool_ready(const ps_pool_status *p, int64_t *v) { *v = p->ready; return true; }
static bool pool_live(const ps_pool_status *p, int64_t *v) { *v = p->live; return true; }
static bool pool_draining(const ps_pool_status *p, int64_t *v) { *v = p->draining; return true; }
static bool pool_replicas(const ps_pool_status *p, int64_t *v) { *v = (int64_t) p->n_replicas; return true; }
static bool pool_slots(const ps_pool_status *p, int64_t *v) { *v = (int64_t) p->slots_total; return true; }
static bool pool_slots_free(const ps_pool_status *p, int64_t *v) { *v = (int64_t) p->slots_free; return true; }
static bool pool_leases(const ps_pool_status *p, int64_t *v) { *v = (int64_t) p->active_leases; return true; }

/* Without a replica there is no delay: 0. */
static bool pool_backoff(const ps_pool_status *p, int64_t *v) {
        *v = p->first ? p->backoff_ms : 0;
        return true;
}

static const char *breaker_state_of(const ps_pool_status *p) {
        return p->first ? p->first->breaker.state : NULL;
}

/* A pool without a replica has no breaker. */
static bool breaker_failures(const ps_pool_status *p, int64_t *v) {
        *v = p->first ? p->first->breaker.failures : 0;
        return breaker_state_of(p) != NULL;
}

/* In scrape order, after pool_state. */
static const pool_gauge pool_gauges[] = {
        { "pool_managerd_pool_ready", "1 when a replica of the pool is ready to serve.",
          GAUGE_INT, pool_ready },
        { "pool_managerd_pool_live", "1 when an engine of the pool is running.",
          GAUGE_INT, pool_live },
        { "pool_managerd_pool_draining", "1 while the pool drains.",
          GAUGE_INT, pool_draining },
        { "pool_managerd_pool_replicas", "Replicas registered in the pool.",
          GAUGE_INT, pool_replicas },
        { "pool_managerd_pool_slots", "Slots (concurrent requests) of the pool's replicas.",
          GAUGE_INT, pool_slots },
        { "pool_managerd_pool_slots_free", "Slots of ready replicas not held by a lease.",
          GAUGE_INT, pool_slots_free },
        { "pool_managerd_pool_active_leases", "Leases held on the pool.",
          GAUGE_INT, pool_leases },
        { "pool_managerd_backoff_delay_seconds", "The restart delay last chosen for the pool.",
          GAUGE_MS, pool_backoff },
};

/* After breaker_state. */
static const pool_gauge breaker_gauges[] = {
        { "pool_managerd_breaker_failures", "Failures the pool's breaker has counted towards opening.",
          GAUGE_INT, breaker_failures },
};

static void render_pool_gauge(ps_strbuf *o, const pool_gauge *g, const ps_pool_status *const *pools,
                              size_t n) {
        ps_expo_header(o, g->name, "gauge", g->help);
        for (size_t i = 0; i < n; i++) {
                const ps_expo_label l = { "pool_id", pools[i]->pool_id };
                int64_t v;

                if (!g->value(pools[i], &v))
                        continue;
                ps_expo_series(o, g->name, "", &l, 1);
                if (g->kind == GAUGE_MS)
                        ps_expo_ms_line(o, v);
                else
                        ps_expo_int_line(o, v);
        }
}

/*
 * A state set: one series per possible state, 1 for the current one and 0
 * for the rest; a state the set does not know ("removing") gets a series
 * of its own. labels[n] is free for the state.
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

static const char *pool_state_of(const ps_pool_status *p) {
        return p->state;
}

/* A state set per pool, from state_of (NULL: no series). */
static void render_pool_state_set(ps_strbuf *o, const char *name, const char *help,
                                  const char *(*state_of)(const ps_pool_status *p),
                                  const char *(*names)(unsigned i), unsigned n_names,
                                  const ps_pool_status *const *pools, size_t n) {
        ps_expo_label l[2];

        ps_expo_header(o, name, "gauge", help);
        for (size_t i = 0; i < n; i++) {
                const char *state = state_of(pools[i]);

                if (!state)
                        continue;
                l[0] = (ps_expo_label) { "pool_id", pools[i]->pool_id };
                render_state_set(o, name, state, names, n_names, l, 1);
        }
}

static void render_replica_states(ps_strbuf *o, const ps_pool_status *const *pools, size_t n) {
        static const char *const name = "pool_managerd_replica_state";
        ps_expo_label l[3];

        ps_expo_header(o, name, "gauge",
                       "Each replica's lifecycle state: 1 for the current state, 0 for the others.");
        for (size_t i = 0; i < n; i++) {
                const ps_replica_status **replicas;
                size_t n_replicas;

                if (sorted_replicas(pools[i], &replicas, &n_replicas) < 0) {
                        o->oom = true;
                        return;
                }
                for (size_t j = 0; j < n_replicas; j++) {
                        if (!replicas[j]->state)
                                continue;
                        l[0] = (ps_expo_label) { "pool_id", pools[i]->pool_id };
                        l[1] = (ps_expo_label) { "replica_id", replicas[j]->replica_id };
                        render_state_set(o, name, replicas[j]->state, lifecycle_state_name,
                                         PD_STATE_MAX, l, 2);
                }
                free(replicas);
        }
}

typedef struct replica_gauge {
        const char *name;
        const char *help;
        unsigned (*value)(const ps_replica_status *r);
} replica_gauge;

static unsigned replica_crashes(const ps_replica_status *r) { return r->crash_count; }
static unsigned replica_in_window(const ps_replica_status *r) { return r->restarts_in_window; }

/* In scrape order, after replica_state. */
static const replica_gauge replica_gauges[] = {
        { "pool_managerd_consecutive_crashes",
          "Failures of the replica since its last run that stayed ready for backoff.stable_reset_ms.",
          replica_crashes },
        { "pool_managerd_restarts_in_window",
          "Restarts of the replica the storm limiter counts in its window (storm.window_ms).",
          replica_in_window },
};

static void render_replica_gauge(ps_strbuf *o, const replica_gauge *g,
                                 const ps_pool_status *const *pools, size_t n) {
        ps_expo_label l[2];

        ps_expo_header(o, g->name, "gauge", g->help);
        for (size_t i = 0; i < n; i++) {
                const ps_replica_status **replicas;
                size_t n_replicas;

                if (sorted_replicas(pools[i], &replicas, &n_replicas) < 0) {
                        o->oom = true;
                        return;
                }
                for (size_t j = 0; j < n_replicas; j++) {
                        l[0] = (ps_expo_label) { "pool_id", pools[i]->pool_id };
                        l[1] = (ps_expo_label) { "replica_id", replicas[j]->replica_id };
                        ps_expo_series(o, g->name, "", l, 2);
                        ps_expo_u64_line(o, g->value(replicas[j]));
                }
                free(replicas);
        }
}

void ps_metrics_render_pool_gauges(ps_strbuf *o, const ps_pool_status *const *pools, size_t n) {
        render_pool_state_set(o, "pool_managerd_pool_state",
                              "The pool's lifecycle state: 1 for the current state, 0 for the others.",
                              pool_state_of, lifecycle_state_name, PD_STATE_MAX, pools, n);
        for (size_t i = 0; i < sizeof(pool_gauges) / sizeof(pool_gauges[0]); i++)
                render_pool_gauge(o, &pool_gauges[i], pools, n);
        render_pool_state_set(o, "pool_managerd_breaker_state",
                              "The pool's circuit breaker: 1 for the current state, 0 for the others.",
                              breaker_state_of, breaker_state_name, PD_BREAKER_STATE_MAX, pools, n);
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

int ps_metrics_sorted_pools(const ps_registry_status *status, const ps_pool_status ***ret,
                            size_t *n_ret) {
        const ps_pool_status **v = NULL;
        size_t n = 0;

        *ret = NULL;
        *n_ret = 0;
        if (!status || status->n_pools == 0)
                return 0;
        v = malloc(status->n_pools * sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < status->n_pools; i++)
                if (status->pools[i].pool_id)
                        v[n++] = &status->pools[i];
        *ret = v;
        *n_ret = sort_unique((const void **) v, n, compare_pools);
        return 0;
}
