/* SPDX-License-Identifier: MIT */
/*
 * Routes that admit work to a pool and change it under load: leases,
 * drain and reload (docs/api.md).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool-services/pool/drain.h"
#include "pool-services/pool/lease.h"
#include "pool-services/pool/reload.h"
#include "pool-services/pool/store.h"
#include "request-private.h"
#include "held-private.h"
#include "routes-private.h"

#define ERR_MAX 512
/* A drain without a deadline gets a minute, like a reload's drain. */
#define DRAIN_DEADLINE_DEFAULT_MS 60000
/* A day: longer is a mistake, not a lease. */
#define TTL_MAX_MS (24LL * 3600 * 1000)

/*
 * An optional integer field of the body in [min, max]; *ret keeps its
 * default when absent. -1 with a 400 sent.
 */
static int body_int(pa_request *r, const json_t *body, const char *key, int64_t min,
                    int64_t max, int64_t *ret) {
        const json_t *v = json_object_get(body, key);

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_integer(v)) {
                pa_reply_error(r, PA_CODE_INVALID_FIELD, "%s: must be an integer", key);
                return -1;
        }
        if (json_integer_value(v) < min || json_integer_value(v) > max) {
                pa_reply_error(r, PA_CODE_INVALID_FIELD, "%s: must be between %lld and %lld, got %lld",
                               key, (long long) min, (long long) max,
                               (long long) json_integer_value(v));
                return -1;
        }
        *ret = json_integer_value(v);
        return 0;
}

/* Refuses keys other than the allowed ones (NULL-terminated). -1 with a
 * 400 sent. */
static int only_keys(pa_request *r, const json_t *body, const char *const *allowed) {
        const char *key;
        json_t *v;

        json_object_foreach((json_t *) body, key, v) {
                bool known = false;

                for (size_t i = 0; allowed[i] && !known; i++)
                        known = strcmp(key, allowed[i]) == 0;
                if (!known) {
                        pa_reply_error(r, PA_CODE_INVALID_FIELD, "unknown field \"%.80s\"", key);
                        return -1;
                }
        }
        return 0;
}

/* ---- replies held until the state store commits ---------------------------- */

typedef struct held_reply {
        pa_deferred *reply;
        int status;
        json_t *body;                   /* NULL: no content */
} held_reply;

static void on_committed(int rc, void *userdata) {
        held_reply *h = userdata;

        if (rc == 0)
                pa_deferred_reply_json(h->reply, h->status, h->body);
        else {
                json_decref(h->body);
                pa_deferred_reply_error(h->reply, PA_CODE_INTERNAL,
                                        "the change was made but the state store could not record it: %s",
                                        strerror(-rc));
        }
        free(h);
}

/*
 * Answers a change once the state store has committed it (the loop
 * turn's one transaction): a lease or a drain acknowledged is one a
 * restarted daemon still knows. Without a store, at once. Takes body.
 */
static void reply_committed(pa_request *r, ps_registry *reg, int status, json_t *body) {
        ps_store *store = ps_store_of(reg);
        held_reply *h = store ? calloc(1, sizeof(*h)) : NULL;

        if (h && (h->reply = pa_request_defer(r))) {
                h->status = status;
                h->body = body;
                if (ps_store_after_commit(store, on_committed, h) == 0)
                        return;
                pa_deferred_reply_error(h->reply, PA_CODE_INTERNAL, "out of memory");
                json_decref(body);
                free(h);
                return;
        }
        free(h);
        if (body)
                pa_reply_json(r, status, body);
        else
                pa_reply_no_content(r);
}

/* The optional {ttl_ms} of a lease request; 0 means the pool's TTL. */
static int lease_ttl(pa_request *r, int64_t *ttl_ms) {
        static const char *const keys[] = { "ttl_ms", NULL };
        json_t *body = pa_read_body(r, true);
        int rc;

        *ttl_ms = 0;
        if (!body)
                return -1;
        rc = only_keys(r, body, keys);
        if (rc == 0)
                rc = body_int(r, body, "ttl_ms", 1, TTL_MAX_MS, ttl_ms);
        json_decref(body);
        return rc;
}

/* The {lease_id} of the path, or NULL with a 400 sent. */
static const char *lease_param(pa_request *r) {
        const char *id = pa_params_get(&r->params, "lease_id");
        size_t n = id ? strlen(id) : 0;

        for (size_t i = 0; i < n; i++)
                if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
                        n = 0;
        if (n != PS_LEASE_ID_LEN) {
                pa_reply_error(r, PA_CODE_BAD_REQUEST,
                               "lease id must be %d lowercase hex digits", PS_LEASE_ID_LEN);
                return NULL;
        }
        return id;
}

/* A lease call failed: PS_E_NOT_FOUND here is the lease (the pool was
 * found before). */
static void reply_lease_error(pa_request *r, int rc, const char *err) {
        if (rc == PS_E_NOT_FOUND)
                pa_reply_error(r, PA_CODE_LEASE_NOT_FOUND, "%s", err);
        else
                pa_reply_services_error(r, rc, err);
}

void pa_route_lease_acquire(pa_request *r) {
        ps_registry *reg;
        const char *pool_id = pa_known_pool(r, &reg);
        char err[ERR_MAX] = "";
        ps_lease lease;
        int64_t ttl_ms;
        int rc;

        if (!pool_id || lease_ttl(r, &ttl_ms) < 0)
                return;
        rc = ps_lease_acquire(reg, pool_id, ttl_ms, &lease, err, sizeof(err));
        if (rc != 0) {
                pa_reply_services_error(r, rc, err);
                return;
        }
        reply_committed(r, reg, 201, ps_lease_to_json(&lease, pool_id));
}

void pa_route_lease_renew(pa_request *r) {
        ps_registry *reg;
        const char *pool_id = pa_known_pool(r, &reg);
        const char *lease_id = pool_id ? lease_param(r) : NULL;
        char err[ERR_MAX] = "";
        ps_lease lease;
        int64_t ttl_ms;
        int rc;

        if (!lease_id || lease_ttl(r, &ttl_ms) < 0)
                return;
        rc = ps_lease_renew(reg, pool_id, lease_id, ttl_ms, &lease, err, sizeof(err));
        if (rc != 0) {
                reply_lease_error(r, rc, err);
                return;
        }
        reply_committed(r, reg, 200, ps_lease_to_json(&lease, pool_id));
}

void pa_route_lease_release(pa_request *r) {
        ps_registry *reg;
        const char *pool_id = pa_known_pool(r, &reg);
        const char *lease_id = pool_id ? lease_param(r) : NULL;
        char err[ERR_MAX] = "";
        int rc;

        if (!lease_id)
                return;
        rc = ps_lease_release(reg, pool_id, lease_id, err, sizeof(err));
        if (rc != 0) {
                reply_lease_error(r, rc, err);
                return;
        }
        reply_committed(r, reg, 204, NULL);
}

void pa_route_drain(pa_request *r) {
        static const char *const keys[] = { "deadline_ms", NULL };
        ps_registry *reg;
        const char *pool_id = pa_known_pool(r, &reg);
        int64_t deadline_ms = DRAIN_DEADLINE_DEFAULT_MS;
        char err[ERR_MAX] = "";
        ps_drain_info info;
        json_t *body;
        int rc;

        if (!pool_id || !(body = pa_read_body(r, true)))
                return;
        rc = only_keys(r, body, keys);
        if (rc == 0)
                rc = body_int(r, body, "deadline_ms", 0, TTL_MAX_MS, &deadline_ms);
        json_decref(body);
        if (rc < 0)
                return;
        /* The outcome is logged and counted by pool-services; nobody waits. */
        rc = ps_pool_drain(reg, pool_id, deadline_ms, NULL, NULL, &info, err, sizeof(err));
        if (rc != 0) {
                pa_reply_services_error(r, rc, err);
                return;
        }
        /* Taken out of service: /ready does not wait for it. */
        pa_held_set(reg, pool_id, true);
        reply_committed(r, reg, 202, ps_drain_info_to_json(pool_id, &info));
}

/* ---- reload ---------------------------------------------------------------- */

static void on_reload_done(int rc, const char *message, const json_t *result, void *userdata) {
        pa_deferred *reply = userdata;

        if (rc == 0)
                pa_deferred_reply_json(reply, 200, json_deep_copy(result));
        else if (rc > 0)
                pa_deferred_reply_error(reply, pa_code_from_services(rc), "%s", message);
        else
                pa_deferred_reply_error(reply, PA_CODE_INTERNAL, "%s", message ? message : "reload failed");
}

/* A non-empty string without NUL bytes. */
static bool is_text(const json_t *v) {
        return json_is_string(v) && json_string_length(v) > 0 &&
               json_string_length(v) == strlen(json_string_value(v));
}

/* An optional string field; NULL when absent. -1 with a 400 sent. */
static int body_string(pa_request *r, const json_t *body, const char *key, const char **ret) {
        const json_t *v = json_object_get(body, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!is_text(v)) {
                pa_reply_error(r, PA_CODE_INVALID_FIELD, "%s: must be a non-empty string", key);
                return -1;
        }
        *ret = json_string_value(v);
        return 0;
}

int pa_reload_model(const json_t *body, const char **model_path, const char **model_ref,
                    char *err, size_t errlen) {
        static const char *const keys[] = { "model_path", "model_ref", "new_model_ref" };
        const char *value[3] = { NULL, NULL, NULL };
        unsigned given = 0;

        *model_path = *model_ref = NULL;
        for (size_t i = 0; i < 3; i++) {
                const json_t *v = json_object_get(body, keys[i]);

                if (!v || json_is_null(v))
                        continue;
                if (!is_text(v)) {
                        snprintf(err, errlen, "%s: must be a non-empty string", keys[i]);
                        return -1;
                }
                if (i > 0 && strpbrk(json_string_value(v), " \t\r\n")) {
                        snprintf(err, errlen, "%s: must be a reference without spaces", keys[i]);
                        return -1;
                }
                value[i] = json_string_value(v);
                given++;
        }
        if (given != 1) {
                snprintf(err, errlen,
                         "exactly one of model_path, model_ref and new_model_ref is required, got %u",
                         given);
                return -1;
        }
        *model_path = value[0];
        *model_ref = value[1] ? value[1] : value[2];
        return 0;
}

/* The request's fields, borrowed from body (flags: *flags, freed by the
 * caller). -1 with a 400 sent. */
static int reload_request(pa_request *r, const json_t *body, ps_reload_request *req,
                          const char ***flags) {
        static const char *const keys[] = {
                "model_path", "model_ref", "new_model_ref", "engine_version", "flags",
                "drain_deadline_ms", "strategy", "sha256", NULL,
        };
        const char *strategy = NULL;
        const json_t *jflags = json_object_get(body, "flags");
        char model_err[ERR_MAX] = "";
        size_t i;
        json_t *v;

        *req = (ps_reload_request) { .drain_deadline_ms = -1, .strategy = PS_RELOAD_DRAIN_FIRST };
        *flags = NULL;
        if (only_keys(r, body, keys) < 0)
                return -1;
        if (pa_reload_model(body, &req->model_path, &req->model_ref, model_err,
                            sizeof(model_err)) < 0) {
                pa_reply_error(r, PA_CODE_INVALID_FIELD, "%s", model_err);
                return -1;
        }
        if (body_string(r, body, "engine_version", &req->engine_version) < 0 ||
            body_string(r, body, "strategy", &strategy) < 0 ||
            body_string(r, body, "sha256", &req->sha256) < 0 ||
            body_int(r, body, "drain_deadline_ms", 0, TTL_MAX_MS, &req->drain_deadline_ms) < 0)
                return -1;
        /* A model path is the caller's: inside models.allow, or refused
         * before anything opens, hashes or stats it. A missing file inside
         * is left to staging, which answers STAGE_FAILED. */
        if (req->model_path) {
                const ps_config *config = pa_request_backend(r)->config;
                char err[ERR_MAX] = "";
                int rc = config ? ps_config_model_allowed(config, req->model_path, NULL, err,
                                                          sizeof(err))
                                : PS_E_MODEL_FORBIDDEN;

                if (rc != 0 && rc != PS_E_NOT_FOUND) {
                        if (!config)
                                snprintf(err, sizeof(err), "no configuration to check models against");
                        if (rc > 0)
                                pa_reply_error(r, pa_code_from_services(rc), "%s", err);
                        else
                                pa_reply_services_error(r, rc, err);
                        return -1;
                }
        }
        if (strategy && ps_reload_strategy_from_string(strategy, &req->strategy) != 0) {
                pa_reply_error(r, PA_CODE_INVALID_FIELD,
                               "strategy: must be \"drain-first\" or \"surge\", got \"%.40s\"", strategy);
                return -1;
        }
        if (!jflags || json_is_null(jflags))
                return 0;
        if (!json_is_array(jflags)) {
                pa_reply_error(r, PA_CODE_INVALID_FIELD, "flags: must be an array of strings");
                return -1;
        }
        *flags = calloc(json_array_size(jflags) + 1, sizeof(**flags));
        if (!*flags) {
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return -1;
        }
        json_array_foreach(jflags, i, v) {
                if (!json_is_string(v) || json_string_length(v) != strlen(json_string_value(v))) {
                        pa_reply_error(r, PA_CODE_INVALID_FIELD, "flags[%zu]: must be a string", i);
                        return -1;
                }
                (*flags)[i] = json_string_value(v);
        }
        req->flags = *flags;
        req->n_flags = json_array_size(jflags);
        return 0;
}

/*
 * Answered when the reload has finished: 200 with what runs now, or the
 * error after rollback. The wait never blocks the loop.
 */
void pa_route_reload(pa_request *r) {
        ps_registry *reg;
        const char *pool_id = pa_known_pool(r, &reg);
        const char **flags = NULL;
        char err[ERR_MAX] = "";
        ps_reload_request req;
        pa_deferred *reply;
        json_t *body;
        int rc;

        if (!pool_id || !(body = pa_read_body(r, false)))
                return;
        if (reload_request(r, body, &req, &flags) < 0) {
                free(flags);
                json_decref(body);
                return;
        }
        reply = pa_request_defer(r);
        if (!reply) {
                free(flags);
                json_decref(body);
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return;
        }
        pa_request_warn_root_engines(r);
        /* done is never called from inside the call: on a refusal the
         * answer is ours to give. */
        rc = ps_pool_reload(reg, pool_id, &req, on_reload_done, reply, err, sizeof(err));
        free(flags);
        json_decref(body);
        if (rc != 0)
                pa_deferred_reply_error(reply, rc > 0 ? pa_code_from_services(rc) : PA_CODE_INTERNAL,
                                        "%s", err[0] ? err : "cannot reload");
}
