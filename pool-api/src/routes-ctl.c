/* SPDX-License-Identifier: MIT */
/*
 * The routes an operator's tools need beyond supervision itself (the
 * pool-managerctl CLI uses them): a pool's leases, starting a configured
 * pool again, and the configuration reload SIGHUP also triggers.
 * docs/api.md shows each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool-services/base/errors.h"
#include "pool-services/pool/lease.h"
#include "held-private.h"
#include "request-private.h"
#include "routes-private.h"

#define ERR_MAX 512

/* ---- GET /v2/pools/{id}/leases ------------------------------------------- */

static json_t *lease_json(const ps_lease *l) {
        return json_pack("{s:s, s:s, s:s, s:I, s:I}",
                         "lease_id", l->lease_id,
                         "replica_id", l->replica_id,
                         "url", l->url,
                         "granted_at", (json_int_t) l->granted_at,
                         "expires_at", (json_int_t) l->expires_at);
}

void pa_route_lease_list(pa_request *r) {
        ps_registry *reg;
        const char *id = pa_known_pool(r, &reg);
        ps_lease *list = NULL;
        json_t *leases;
        size_t n = 0;
        int rc;

        if (!id)
                return;
        rc = ps_lease_list(reg, id, &list, &n);
        if (rc != 0) {
                pa_reply_services_error(r, rc, rc == PS_E_NOT_FOUND ? "pool not found" : "");
                return;
        }
        leases = json_array();
        for (size_t i = 0; leases && i < n; i++)
                if (json_array_append_new(leases, lease_json(&list[i])) < 0)
                        leases = (json_decref(leases), NULL);
        free(list);
        pa_reply_json(r, 200, leases ? json_pack("{s:s, s:o}", "pool_id", id, "leases", leases)
                                     : NULL);
}

/* ---- POST /v2/pools/{id}/start ------------------------------------------- */

/* The answer is the snapshot at once; readiness shows in later ones. */
static void on_started(int rc, const char *message, void *userdata) {
        (void) rc;
        (void) message;
        (void) userdata;
}

/* Whether a replica of the pool has an engine or a start under way. */
static const char *pool_running(ps_registry *reg, const char *id) {
        ps_replica *rep;

        for (size_t i = 0; (rep = ps_registry_replica_at(reg, id, i)); i++)
                if (ps_replica_live(rep) || ps_replica_pid(rep) > 0 || ps_replica_external(rep) ||
                    (strcmp(ps_replica_state(rep), "stopped") != 0 &&
                     strcmp(ps_replica_state(rep), "empty") != 0 &&
                     strcmp(ps_replica_state(rep), "failed") != 0))
                        return ps_replica_state(rep);
        return NULL;
}

/*
 * Starts one configured replica: registered again when the pool was
 * removed, else given the configuration's spec (it rests, so it takes it).
 */
static int start_replica(ps_registry *reg, const ps_config_replica *c, char *err, size_t errlen) {
        ps_replica *rep = ps_registry_find(reg, c->spec->pool_id, c->spec->replica_id);
        int rc;

        if (!rep) {
                rc = ps_registry_add(reg, c->spec, c->policy, &rep, err, errlen);
                if (rc != 0)
                        return rc;
                return ps_replica_preload(rep, on_started, NULL, err, errlen);
        }
        return ps_replica_preload_spec(rep, c->spec, on_started, NULL, err, errlen);
}

/* Every configured replica of the pool; 0 when one start was accepted,
 * else the first refusal. */
static int start_configured(pa_request *r, ps_registry *reg, const ps_config *config,
                            const char *id, char *err, size_t errlen) {
        ps_config_replica *list = NULL;
        char one[ERR_MAX];
        size_t n = 0;
        int rc, first = 0;
        bool any = false;

        rc = ps_config_replicas(config, &list, &n, err, errlen);
        if (rc != 0)
                return rc;
        for (size_t i = 0; i < n; i++) {
                if (strcmp(list[i].spec->pool_id, id) != 0)
                        continue;
                one[0] = '\0';
                rc = start_replica(reg, &list[i], one, sizeof(one));
                if (rc == 0) {
                        ps_replica *rep = ps_registry_find(reg, id, list[i].spec->replica_id);

                        if (rep && r->correlation_id)
                                ps_replica_set_correlation_id(rep, r->correlation_id);
                        any = true;
                } else if (!first) {
                        first = rc;
                        snprintf(err, errlen, "%s", one);
                }
        }
        ps_config_replicas_free(list, n);
        return any ? 0 : first ? first : PS_E_NOT_FOUND;
}

void pa_route_start(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);
        ps_registry *reg = pa_need_registry(r);
        const char *id = reg ? pa_pool_param(r) : NULL;
        char err[ERR_MAX] = "";
        const char *state;
        int rc;

        if (!id)
                return;
        if (!b->config || !ps_config_find_pool(b->config, id)) {
                pa_reply_error(r, PA_CODE_POOL_NOT_FOUND,
                               "pool %s is not in the configuration: only configured pools can be "
                               "started (preload others)", id);
                return;
        }
        if (ps_registry_pool_removing(reg, id)) {
                pa_reply_error(r, PA_CODE_CONFLICT, "pool %s is being removed", id);
                return;
        }
        if ((state = pool_running(reg, id))) {
                pa_reply_error(r, PA_CODE_CONFLICT, "pool %s is already running (%s): restart "
                               "it, or stop it first", id, state);
                return;
        }
        pa_request_warn_root_engines(r);
        rc = start_configured(r, reg, b->config, id, err, sizeof(err));
        if (rc != 0) {
                pa_reply_services_error(r, rc, err[0] ? err : "cannot start the pool");
                return;
        }
        pa_held_set(reg, id, false);
        pa_reply_json(r, 202, pa_pool_snapshot_json(r, reg, id));
}

/* ---- POST /v2/config/reload ---------------------------------------------- */

void pa_route_config_reload(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);
        char err[ERR_MAX] = "";
        json_t *answer = NULL;
        int rc;

        if (!b || !b->reload_config) {
                pa_reply_error(r, PA_CODE_CONFLICT, "this daemon has no configuration file to reload");
                return;
        }
        rc = b->reload_config(b->reload_userdata, &answer, err, sizeof(err));
        if (rc == PS_E_INVALID) {
                pa_reply_error(r, PA_CODE_CONFIG_INVALID, "configuration reload rejected, nothing "
                               "changed: %s", err);
                return;
        }
        if (rc != 0) {
                pa_reply_services_error(r, rc, err);
                return;
        }
        /* Pools the file adds (again) or changes are to serve. */
        for (const char *const *k = (const char *const[]) { "added", "changed", NULL }; *k; k++) {
                const json_t *id;
                size_t i;

                json_array_foreach(json_object_get(answer, *k), i, id)
                        if (b->registry)
                                pa_held_set(b->registry, json_string_value(id), false);
        }
        pa_reply_json(r, 200, answer);
}
