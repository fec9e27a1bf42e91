/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A registry status written as JSON, for tests of what renders a status
 * (the metrics): the fixture reads like the API's snapshot, and becomes
 * the ps_registry_status that ps_registry_status_get() would fill. Keys a
 * fixture leaves out are 0, false or NULL. A pool's first replica holds
 * its breaker ("breaker" of the pool object) when it has replicas; its
 * totals are the fixture's own, its driver_resets its replicas' sum.
 *
 * The status borrows the fixture's strings: free it (status_fixture_free)
 * before the JSON.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "pool-services/pool/registry.h"

static inline const char *status_fixture_str(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

static inline int64_t status_fixture_int(const json_t *o, const char *key) {
        return json_integer_value(json_object_get(o, key));
}

static inline bool status_fixture_bool(const json_t *o, const char *key) {
        return json_is_true(json_object_get(o, key));
}

static inline void status_fixture_replica(const json_t *o, ps_replica_status *r) {
        r->replica_id = status_fixture_str(o, "replica_id");
        r->state = status_fixture_str(o, "state");
        r->ready = status_fixture_bool(o, "ready");
        r->crash_count = (unsigned) status_fixture_int(o, "crash_count");
        r->restart_count = (unsigned) status_fixture_int(o, "restart_count");
        r->restarts_in_window = (unsigned) status_fixture_int(o, "restarts_in_window");
        r->driver_resets = (unsigned) status_fixture_int(o, "driver_resets");
}

static inline void status_fixture_pool(const json_t *o, ps_pool_status *p) {
        const json_t *replicas = json_object_get(o, "replicas");
        const json_t *breaker = json_object_get(o, "breaker");

        p->pool_id = status_fixture_str(o, "pool_id");
        p->state = status_fixture_str(o, "state");
        p->live = status_fixture_bool(o, "live");
        p->ready = status_fixture_bool(o, "ready");
        p->draining = status_fixture_bool(o, "draining");
        p->slots_total = (uint64_t) status_fixture_int(o, "slots_total");
        p->slots_free = (uint64_t) status_fixture_int(o, "slots_free");
        p->active_leases = (uint64_t) status_fixture_int(o, "active_leases");
        p->restart_count = (uint64_t) status_fixture_int(o, "restart_count");
        p->crash_count = (uint64_t) status_fixture_int(o, "crash_count");
        p->backoff_ms = status_fixture_int(o, "backoff_ms");
        p->n_replicas = json_array_size(replicas);
        p->replicas = p->n_replicas ? calloc(p->n_replicas, sizeof(*p->replicas)) : NULL;
        if (p->n_replicas && !p->replicas)
                abort();
        for (size_t i = 0; i < p->n_replicas; i++) {
                status_fixture_replica(json_array_get(replicas, i), &p->replicas[i]);
                p->driver_resets += p->replicas[i].driver_resets;
        }
        if (p->n_replicas) {
                p->first = &p->replicas[0];
                p->replicas[0].breaker = (ps_breaker_status) {
                        .state = status_fixture_str(breaker, "state"),
                        .failures = (unsigned) status_fixture_int(breaker, "failures"),
                        .opens = (unsigned) status_fixture_int(breaker, "opens"),
                        .open_until = status_fixture_int(breaker, "open_until"),
                };
        }
}

/* {"pools": [...]} as a status; NULL for NULL. */
static inline ps_registry_status *status_fixture(const json_t *doc) {
        const json_t *pools = json_object_get(doc, "pools");
        ps_registry_status *s;

        if (!doc)
                return NULL;
        s = calloc(1, sizeof(*s));
        if (!s)
                abort();
        s->n_pools = json_array_size(pools);
        s->pools = s->n_pools ? calloc(s->n_pools, sizeof(*s->pools)) : NULL;
        if (s->n_pools && !s->pools)
                abort();
        for (size_t i = 0; i < s->n_pools; i++)
                status_fixture_pool(json_array_get(pools, i), &s->pools[i]);
        return s;
}

static inline void status_fixture_free(ps_registry_status *s) {
        if (!s)
                return;
        ps_registry_status_done(s);
        free(s);
}
