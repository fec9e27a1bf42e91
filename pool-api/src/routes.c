/* SPDX-License-Identifier: MIT */
/*
 * The routes of the control API. Each handler checks its input, calls
 * pool-services, and answers through reply.c; docs/api.md shows every one
 * with examples.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "pm-config.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/placement/inventory.h"
#include "pool-services/conf/prepared.h"
#include "pool-services/observe/status-json.h"
#include "pool-services/pool/store.h"
#include "held-private.h"
#include "request-private.h"
#include "snapshot-cache-private.h"
#include "routes-private.h"

#define ERR_MAX 512

/* Answers at once whatever else the daemon is doing: supervisors and
 * load balancers poll it. */
static void route_health(pa_request *r) {
        pa_reply_json(r, 200, json_pack("{s:s, s:s}", "status", "ok", "version", PM_VERSION));
}

/*
 * Whether the operator put the pool out of service (a drain, a stop, a
 * DELETE): /ready does not wait for it.
 */
static bool ready_excused(const ps_registry *reg, const ps_pool_status *p) {
        if (p->draining || strcmp(p->state, "removing") == 0)
                return true;
        /* Stopped by a drain, not by a failure (restart "never") or an
         * engine's own exit. */
        return pa_held(reg, p->pool_id) &&
               (strcmp(p->state, "stopping") == 0 || strcmp(p->state, "stopped") == 0);
}

/*
 * GET /ready: 200 when every pool the node holds is ready, leaving out
 * those the operator drained, stopped or removed (an empty node is
 * ready); else 503 naming the others in "missing". For load balancers
 * and service managers: no token needed.
 */
static void route_ready(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);
        ps_registry_status status;
        json_t *missing;

        if (!b || !b->registry) {
                pa_reply_error(r, PA_CODE_SERVICE_UNAVAILABLE, "no pools are served here");
                return;
        }
        if (ps_registry_status_get(b->registry, &status) < 0) {
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return;
        }
        missing = json_array();
        for (size_t i = 0; missing && i < status.n_pools; i++) {
                const ps_pool_status *p = &status.pools[i];

                if (!p->ready && !ready_excused(b->registry, p) &&
                    json_array_append_new(missing, json_string(p->pool_id)) < 0)
                        missing = (json_decref(missing), NULL);
        }
        if (!missing) {
                ps_registry_status_done(&status);
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return;
        }
        pa_reply_json(r, json_array_size(missing) ? 503 : 200,
                      json_pack("{s:b, s:I, s:o}", "ready", json_array_size(missing) == 0,
                                "pools", (json_int_t) status.n_pools, "missing", missing));
        ps_registry_status_done(&status);
}

/* ---- shared checks --------------------------------------------------------- */

ps_registry *pa_need_registry(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);

        if (!b || !b->registry) {
                pa_reply_error(r, PA_CODE_SERVICE_UNAVAILABLE, "no pools are served here");
                return NULL;
        }
        return b->registry;
}

const char *pa_pool_param(pa_request *r) {
        const char *id = pa_params_get(&r->params, "id");
        char err[ERR_MAX];

        if (!id || ps_id_check(id, "pool id", err, sizeof(err)) != 0) {
                pa_reply_error(r, PA_CODE_BAD_REQUEST, "%s", id ? err : "no pool id");
                return NULL;
        }
        return id;
}

const char *pa_known_pool(pa_request *r, ps_registry **ret) {
        const char *id = pa_pool_param(r);

        if (!id || !(*ret = pa_need_registry(r)))
                return NULL;
        if (!ps_registry_has_pool(*ret, id)) {
                pa_reply_error(r, PA_CODE_POOL_NOT_FOUND, "pool %s not found", id);
                return NULL;
        }
        return id;
}

void pa_reply_services_error(pa_request *r, int rc, const char *err) {
        if (rc == -ENOMEM)
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
        else if (rc < 0)
                pa_reply_error(r, PA_CODE_INTERNAL, "%s", err[0] ? err : strerror(-rc));
        else
                pa_reply_error(r, pa_code_from_services(rc), "%s", err);
}

json_t *pa_read_body(pa_request *r, bool optional) {
        struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
        size_t len = evbuffer_get_length(in);
        const char *text;
        json_error_t jerr;
        json_t *body;

        if (len == 0) {
                if (optional)
                        return json_object();
                pa_reply_error(r, PA_CODE_INVALID_JSON, "the body is empty; a JSON object is expected");
                return NULL;
        }
        text = (const char *) evbuffer_pullup(in, -1);
        if (!text) {
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return NULL;
        }
        body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!body) {
                pa_reply_error(r, PA_CODE_INVALID_JSON, "malformed JSON at line %d column %d: %s",
                               jerr.line, jerr.column, jerr.text);
                return NULL;
        }
        if (!json_is_object(body)) {
                json_decref(body);
                pa_reply_error(r, PA_CODE_INVALID_JSON, "the body must be a JSON object");
                return NULL;
        }
        return body;
}

/* ?name=true|false|1|0; *ret untouched when absent. -1 with a 400 sent. */
static int query_bool(pa_request *r, const char *name, bool *ret) {
        struct evkeyvalq q = { 0 };
        const char *v;
        int rc = 0;

        if (!r->query || !*r->query)
                return 0;
        if (evhttp_parse_query_str(r->query, &q) < 0) {
                pa_reply_error(r, PA_CODE_BAD_REQUEST, "malformed query string");
                return -1;
        }
        v = evhttp_find_header(&q, name);
        if (v) {
                if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
                        *ret = true;
                } else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
                        *ret = false;
                } else {
                        pa_reply_error(r, PA_CODE_BAD_REQUEST,
                                       "query %s: must be true or false, got \"%.40s\"", name, v);
                        rc = -1;
                }
        }
        evhttp_clear_headers(&q);
        return rc;
}

/* ---- pools ----------------------------------------------------------------- */

/* Fills a pool snapshot's "devices" with the inventory's entries for the
 * pool's mask (all: ps_inventory_to_json()'s "devices"). */
static void add_devices(json_t *pool, const ps_pool_status *p, const ps_inventory *inv,
                        const json_t *all) {
        const char *text = p->first ? p->first->device_mask : NULL;
        json_t *devices = json_object_get(pool, "devices");
        ps_device_mask mask;
        const json_t *d;
        size_t i;

        if (!text || !json_is_array(devices) ||
            ps_inventory_parse_mask(inv, text, &mask, NULL, 0) != 0)
                return;
        for (unsigned m = 0; m < mask.count; m++)
                json_array_foreach(all, i, d)
                        if (json_integer_value(json_object_get(d, "index")) == mask.index[m])
                                json_array_append(devices, (json_t *) d);
}

/* A pool's snapshot with what placement decided for it: its devices, and
 * the split its config planned across them (null when none). */
static json_t *pool_json(const ps_pool_status *p, const pa_backend *b, const json_t *all) {
        const ps_pool_config *pc = ps_config_find_pool(b->config, p->pool_id);
        json_t *pool = ps_pool_status_json(p);

        if (!pool)
                return NULL;
        if (b->inventory)
                add_devices(pool, p, b->inventory, all);
        json_object_set_new(pool, "tensor_split",
                            pc && pc->tensor_split ? json_string(pc->tensor_split) : json_null());
        return pool;
}

/* {"pools": [...]} with each pool's placement; NULL on OOM. */
static json_t *pools_json(const ps_registry *reg, const pa_backend *b, const json_t *all) {
        ps_registry_status status;
        json_t *pools;

        if (ps_registry_status_get(reg, &status) < 0)
                return NULL;
        pools = json_array();
        for (size_t i = 0; pools && i < status.n_pools; i++)
                if (json_array_append_new(pools, pool_json(&status.pools[i], b, all)) < 0)
                        pools = (json_decref(pools), NULL);
        ps_registry_status_done(&status);
        return json_pack("{s:o}", "pools", pools);
}

/* One pool's snapshot (key: its id; NULL when unknown), or the list
 * (key ""), with placement and the engines' performance hints. */
static json_t *snapshot_json(pa_request *r, const ps_registry *reg, const char *key) {
        const pa_backend *b = pa_request_backend(r);
        json_t *inv = b->inventory ? ps_inventory_to_json(b->inventory) : NULL;
        const json_t *all = json_object_get(inv, "devices");
        ps_pool_status p;
        json_t *snap = NULL;

        if (!key[0])
                snap = pools_json(reg, b, all);
        else if (ps_registry_pool_status_get(reg, key, &p) == 0) {
                snap = pool_json(&p, b, all);
                ps_pool_status_done(&p);
        }
        json_decref(inv);
        /* perf_tokens_per_s, first_token_ms where engines expose them */
        if (snap && b->engine_metrics)
                ps_engine_metrics_annotate(b->engine_metrics, snap);
        return snap;
}

json_t *pa_pool_snapshot_json(pa_request *r, const ps_registry *reg, const char *pool_id) {
        return snapshot_json(r, reg, pool_id);
}

/*
 * Answers a snapshot, from the cache when nothing has happened since it
 * was built (snapshot-cache-private.h). key: the pool id, or "" for the
 * list.
 */
static void reply_snapshot(pa_request *r, ps_registry *reg, const char *key) {
        pa_snapshot_stamp stamp;
        pa_snapshot_cache *cache = pa_request_snapshots(r, &stamp);
        const char *cached;
        json_t *snap;
        size_t len;
        char *text;

        if (cache && (cached = pa_snapshot_cache_get(cache, key, &stamp, &len))) {
                pa_reply_text(r, 200, "application/json", cached, len);
                return;
        }
        snap = snapshot_json(r, reg, key);
        if (!cache) {
                pa_reply_json(r, 200, snap);
                return;
        }
        text = snap ? json_dumps(snap, JSON_COMPACT) : NULL;
        json_decref(snap);
        if (!text) {
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return;
        }
        len = strlen(text);
        pa_reply_text(r, 200, "application/json", text, len);
        pa_snapshot_cache_put(cache, key, &stamp, text, len);
}

static void route_pools(pa_request *r) {
        ps_registry *reg = pa_need_registry(r);

        if (reg)
                reply_snapshot(r, reg, "");
}

static void route_pool(pa_request *r) {
        ps_registry *reg;
        const char *id = pa_known_pool(r, &reg);

        if (id)
                reply_snapshot(r, reg, id);
}

/*
 * POST .../status: the llama-orch orchestrator's status query, which
 * sends {}. A query, not a change: the body may be empty or any JSON
 * object (its fields are ignored, as a serde client ignores ours);
 * anything else is a 400. The answer is the GET's.
 */
static void route_pool_status_post(pa_request *r) {
        ps_registry *reg;
        const char *id = pa_known_pool(r, &reg);
        json_t *body;

        if (!id || !(body = pa_read_body(r, true)))
                return;
        json_decref(body);
        reply_snapshot(r, reg, id);
}

static json_t *opt_str(const char *s) {
        return s ? json_string(s) : json_null();
}

/* One entry of /v1/replicasets; with its state when all are listed. */
static json_t *replicaset_json(const ps_pool_status *pool, const ps_replica_status *rep, bool all) {
        json_t *item = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:o}",
                                 "pool_id", pool->pool_id,
                                 "replica_id", rep->replica_id,
                                 "url", rep->url,
                                 "slots_total", (json_int_t) rep->slots_total,
                                 "slots_free", (json_int_t) rep->slots_free,
                                 "engine", opt_str(rep->engine),
                                 "engine_version", opt_str(rep->engine_version),
                                 "model_id", opt_str(rep->model_id),
                                 "model_digest", opt_str(rep->model_digest),
                                 "device_mask", opt_str(rep->device_mask));

        if (item && all && json_object_set_new(item, "state", json_string(rep->state)) < 0)
                item = (json_decref(item), NULL);
        return item;
}

/* Flat list of the replicas an orchestrator may send work to. */
static void route_replicasets(pa_request *r) {
        ps_registry *reg = pa_need_registry(r);
        ps_registry_status status;
        json_t *list;
        bool all = false;

        if (!reg || query_bool(r, "all", &all) < 0)
                return;
        if (ps_registry_status_get(reg, &status) < 0) {
                pa_reply_json(r, 200, NULL);
                return;
        }
        list = json_array();
        for (size_t i = 0; list && i < status.n_pools; i++) {
                const ps_pool_status *pool = &status.pools[i];

                for (size_t j = 0; list && j < pool->n_replicas; j++) {
                        const ps_replica_status *rep = &pool->replicas[j];

                        if (!all && !rep->ready)
                                continue;
                        if (json_array_append_new(list, replicaset_json(pool, rep, all)) < 0)
                                list = (json_decref(list), NULL);
                }
        }
        ps_registry_status_done(&status);
        pa_reply_json(r, 200, list ? json_pack("{s:o}", "replicasets", list) : NULL);
}

/* ---- preload --------------------------------------------------------------- */

/* What a waiting preload needs to answer. */
typedef struct preload_wait {
        pa_deferred *reply;
        char *pool_id;
        char *replica_id;
} preload_wait;

static void preload_wait_free(preload_wait *w) {
        free(w->pool_id);
        free(w->replica_id);
        free(w);
}

static json_t *preload_success(const pa_backend *b, const preload_wait *w) {
        ps_replica *rep = b->registry ? ps_registry_find(b->registry, w->pool_id, w->replica_id) : NULL;
        char path[4096], dir[4096];

        if (!b->config || ps_config_handoff_dir(b->config, dir, sizeof(dir)) != 0 ||
            ps_handoff_path(dir, w->pool_id, w->replica_id, path, sizeof(path)) < 0)
                path[0] = '\0';
        return json_pack("{s:s, s:s, s:I, s:s?}", "pool_id", w->pool_id,
                         "replica_id", w->replica_id,
                         "pid", (json_int_t) (rep ? ps_replica_pid(rep) : 0),
                         "handoff_path", path[0] ? path : NULL);
}

pa_code pa_preload_failure(int rc, const char *message, char *buf, size_t len) {
        pa_code code = pa_code_from_services(rc);

        snprintf(buf, len, "%s%s", code == PA_CODE_PRELOAD_FAILED ? "preload failed: " : "",
                 message ? message : "");
        return code;
}

json_t *pa_preload_unwrap(json_t *body, char *err, size_t errlen) {
        json_t *prepared = json_object_get(body, "prepared");
        const char *key;
        json_t *v;

        if (!prepared)
                return body;
        json_object_foreach(body, key, v) {
                if (strcmp(key, "prepared") != 0) {
                        snprintf(err, errlen,
                                 "unknown field \"%.80s\": a body with \"prepared\" has no other field",
                                 key);
                        return NULL;
                }
        }
        if (!json_is_object(prepared)) {
                snprintf(err, errlen, "prepared: must be an object (a PreparedEngine)");
                return NULL;
        }
        return prepared;
}

/* The replica is ready, or has failed (a retry is scheduled by then). */
static void on_preload_done(int rc, const char *message, void *userdata) {
        preload_wait *w = userdata;
        const pa_backend *b = pa_deferred_backend(w->reply);
        char shown[ERR_MAX];
        pa_code code;

        if (!b) {
                pa_deferred_reply_error(w->reply, PA_CODE_SERVICE_UNAVAILABLE, "shutting down");
        } else if (rc == 0) {
                pa_deferred_reply_json(w->reply, 200, preload_success(b, w));
        } else {
                code = pa_preload_failure(rc, message, shown, sizeof(shown));
                pa_deferred_reply_error(w->reply, code, "%s", shown);
        }
        preload_wait_free(w);
}

/*
 * A new replica is registered with the spec (*ret_spec NULL: nothing more
 * to set); one that exists and rests (stopped, never started) is found,
 * and takes the spec only once its start is accepted (*ret_spec = spec);
 * one that runs is a 409.
 */
static int preload_replica(ps_registry *reg, const pa_backend *b, const ps_engine_spec *spec,
                           ps_replica **ret, const ps_engine_spec **ret_spec,
                           char *err, size_t errlen) {
        ps_replica *rep = ps_registry_find(reg, spec->pool_id, spec->replica_id);

        *ret_spec = NULL;
        if (!rep)
                return ps_registry_add(reg, spec, ps_prepared_engine_policy(b->config, spec->pool_id),
                                       ret, err, errlen);
        *ret = rep;
        *ret_spec = spec;
        if (ps_replica_ready(rep) || ps_replica_pid(rep) > 0)
                return snprintf(err, errlen, "pool %s replica %s is already running",
                                spec->pool_id, spec->replica_id), PS_E_CONFLICT;
        return 0;
}

static void route_preload(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);
        ps_registry *reg = pa_need_registry(r);
        const char *id = reg ? pa_pool_param(r) : NULL;
        const ps_engine_spec *new_spec = NULL;
        ps_engine_spec *spec = NULL;
        ps_replica *rep = NULL;
        preload_wait *w = NULL;
        char err[ERR_MAX] = "";
        json_t *body, *prepared;
        int rc;

        if (!id || !(body = pa_read_body(r, false)))
                return;
        if (!(prepared = pa_preload_unwrap(body, err, sizeof(err)))) {
                json_decref(body);
                pa_reply_error(r, PA_CODE_INVALID_FIELD, "%s", err);
                return;
        }
        if (!b->config) {
                json_decref(body);
                pa_reply_error(r, PA_CODE_SERVICE_UNAVAILABLE, "no configuration to check engines against");
                return;
        }
        rc = ps_prepared_engine_parse(prepared, id, b->config, &spec, err, sizeof(err));
        json_decref(body);
        if (rc != 0) {
                if (rc > 0)
                        pa_reply_error(r, pa_code_from_services(rc), "%s", err);
                else
                        pa_reply_services_error(r, rc, err);
                return;
        }
        if (ps_registry_pool_removing(reg, id)) {
                ps_engine_spec_free(spec);
                pa_reply_error(r, PA_CODE_CONFLICT, "pool %s is being removed", id);
                return;
        }
        /* A pool announced by handoff files belongs to their writer: mixing
         * our engines into it would hand its leases to replicas nobody
         * supervises (and theirs to ours). */
        for (size_t i = 0; ps_registry_replica_at(reg, id, i); i++)
                if (ps_replica_external(ps_registry_replica_at(reg, id, i))) {
                        ps_engine_spec_free(spec);
                        pa_reply_error(r, PA_CODE_CONFLICT, "pool %s is announced by handoff "
                                       "files (replica %s): preload it under another id", id,
                                       ps_replica_id(ps_registry_replica_at(reg, id, i)));
                        return;
                }

        rc = preload_replica(reg, b, spec, &rep, &new_spec, err, sizeof(err));
        w = rc == 0 ? calloc(1, sizeof(*w)) : NULL;
        if (rc == 0 && w) {
                w->pool_id = strdup(spec->pool_id);
                w->replica_id = strdup(spec->replica_id);
        }
        if (rc != 0) {
                ps_engine_spec_free(spec);
                pa_reply_services_error(r, rc, err);
                return;
        }
        if (!w || !w->pool_id || !w->replica_id || !(w->reply = pa_request_defer(r))) {
                if (w)
                        preload_wait_free(w);
                ps_engine_spec_free(spec);
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return;
        }
        if (r->correlation_id)
                ps_replica_set_correlation_id(rep, r->correlation_id);
        pa_request_warn_root_engines(r);
        pa_held_set(reg, id, false);
        /* From here the answer comes from on_preload_done, exactly once. */
        rc = ps_replica_preload_spec(rep, new_spec, on_preload_done, w, err, sizeof(err));
        ps_engine_spec_free(spec);
        if (rc != 0) {
                pa_deferred_reply_error(w->reply, rc > 0 ? pa_code_from_services(rc) : PA_CODE_INTERNAL,
                                        "%s", err[0] ? err : "cannot start the engine");
                preload_wait_free(w);
        }
}

/* ---- control --------------------------------------------------------------- */

/* Runs fn on every managed replica of the pool. The pool took the request
 * when one replica did; when none did, the first refusal is the answer.
 * starts: fn may start an engine. */
static void for_each_replica(pa_request *r, int (*fn)(ps_replica *, char *, size_t), int status,
                             bool starts) {
        ps_registry *reg;
        const char *id = pa_known_pool(r, &reg);
        char err[ERR_MAX] = "", first_err[ERR_MAX] = "";
        int first = 0;
        bool any = false;
        ps_replica *rep;

        if (!id)
                return;
        if (starts)
                pa_request_warn_root_engines(r);
        for (size_t i = 0; (rep = ps_registry_replica_at(reg, id, i)); i++) {
                int rc;

                if (ps_replica_external(rep))
                        continue;
                if (r->correlation_id)
                        ps_replica_set_correlation_id(rep, r->correlation_id);
                rc = fn(rep, err, sizeof(err));
                if (rc == 0) {
                        any = true;
                } else if (!first) {
                        first = rc;
                        memcpy(first_err, err, sizeof(err));
                }
        }
        if (!any && first) {
                pa_reply_services_error(r, first, first_err);
                return;
        }
        if (!any) {
                pa_reply_error(r, PA_CODE_CONFLICT,
                               "pool %s has only external replicas, which it does not supervise", id);
                return;
        }
        pa_held_set(reg, id, false);
        /* The shape of GET /v2/pools/{id}: devices and split included. */
        pa_reply_json(r, status, snapshot_json(r, reg, id));
}

static int breaker_reset(ps_replica *rep, char *err, size_t errlen) {
        (void) err;
        (void) errlen;
        return ps_replica_breaker_reset(rep);
}

/* A failed replica restarts once its breaker is closed. */
static void route_breaker_reset(pa_request *r) {
        for_each_replica(r, breaker_reset, 200, true);
}

static void route_restart(pa_request *r) {
        for_each_replica(r, ps_replica_restart, 202, true);
}

static void route_delete(pa_request *r) {
        ps_replica *rep;
        ps_registry *reg;
        const char *id = pa_known_pool(r, &reg);
        char err[ERR_MAX] = "";
        int rc;

        if (!id)
                return;
        for (size_t i = 0; r->correlation_id && (rep = ps_registry_replica_at(reg, id, i)); i++)
                ps_replica_set_correlation_id(rep, r->correlation_id);
        rc = ps_registry_forget_pool(reg, id, err, sizeof(err));
        if (rc != 0) {
                pa_reply_services_error(r, rc, err);
                return;
        }
        pa_reply_json(r, 202, json_pack("{s:s, s:s}", "pool_id", id, "state", "removing"));
}

/* ---- devices and metrics --------------------------------------------------- */

/* The node: its profile and, in the cloud, registration and etcd state. */
static void route_node(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);
        json_t *status = b && b->node_status ? b->node_status(b->node_userdata) : NULL;
        ps_store *store = b && b->registry ? ps_store_of(b->registry) : NULL;

        if (!status)
                status = json_pack("{s:s}", "profile", "home");
        /* null: --no-state-store, nothing is kept across a restart */
        if (status)
                json_object_set_new(status, "state_store", store ? ps_store_status(store) : json_null());
        pa_reply_json(r, 200, status);
}

static void route_devices(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);

        if (!b || !b->inventory) {
                pa_reply_json(r, 200, json_pack("{s:s, s:[]}", "backend", "none", "devices"));
                return;
        }
        pa_reply_json(r, 200, ps_inventory_to_json(b->inventory));
}

static void route_metrics(pa_request *r) {
        const pa_backend *b = pa_request_backend(r);
        struct evbuffer *all;
        ps_registry_status status = { 0 };
        json_t *devices;
        unsigned char *body;
        char *text = NULL;

        if (!b || !b->metrics) {
                pa_reply_error(r, PA_CODE_SERVICE_UNAVAILABLE, "metrics are not collected here");
                return;
        }
        devices = b->inventory ? ps_inventory_to_json(b->inventory) : NULL;
        if (!b->registry || ps_registry_status_get(b->registry, &status) == 0)
                text = ps_metrics_render(b->metrics, b->registry ? &status : NULL, devices);
        ps_registry_status_done(&status);
        json_decref(devices);
        /* Ours first, then what the engines said (cached, never fetched
         * here). */
        all = evbuffer_new();
        if (!text || !all || evbuffer_add(all, text, strlen(text)) < 0 ||
            (b->engine_metrics && ps_engine_metrics_render(b->engine_metrics, all) < 0) ||
            !(body = evbuffer_pullup(all, -1))) {
                free(text);
                if (all)
                        evbuffer_free(all);
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return;
        }
        pa_reply_text(r, 200, PS_METRICS_CONTENT_TYPE, (const char *) body, evbuffer_get_length(all));
        evbuffer_free(all);
        free(text);
}

const pa_route pa_routes[] = {
        { EVHTTP_REQ_GET, "/health", route_health },
        { EVHTTP_REQ_GET, "/ready", route_ready },
        { EVHTTP_REQ_GET, "/metrics", route_metrics },
        { EVHTTP_REQ_GET, "/v2/devices", route_devices },
        { EVHTTP_REQ_GET, "/v2/node", route_node },
        { EVHTTP_REQ_GET, "/v1/replicasets", route_replicasets },
        { EVHTTP_REQ_GET, "/v2/pools", route_pools },
        { EVHTTP_REQ_GET, "/v2/pools/{id}", route_pool },
        { EVHTTP_REQ_DELETE, "/v2/pools/{id}", route_delete },
        { EVHTTP_REQ_GET, "/v2/pools/{id}/health", route_pool },
        { EVHTTP_REQ_GET, "/pools/{id}/status", route_pool },
        { EVHTTP_REQ_POST, "/pools/{id}/status", route_pool_status_post },
        { EVHTTP_REQ_GET, "/v2/pools/{id}/status", route_pool },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/status", route_pool_status_post },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/preload", route_preload },
        { EVHTTP_REQ_POST, "/pools/{id}/preload", route_preload },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/breaker/reset", route_breaker_reset },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/restart", route_restart },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/drain", pa_route_drain },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/reload", pa_route_reload },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/leases", pa_route_lease_acquire },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/leases/{lease_id}/renew", pa_route_lease_renew },
        { EVHTTP_REQ_DELETE, "/v2/pools/{id}/leases/{lease_id}", pa_route_lease_release },
        /* routes-ctl.c: what pool-managerctl needs beyond the above */
        { EVHTTP_REQ_GET, "/v2/pools/{id}/leases", pa_route_lease_list },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/start", pa_route_start },
        { EVHTTP_REQ_POST, "/v2/config/reload", pa_route_config_reload },
        { EVHTTP_REQ_GET, "/v2/pools/{id}/replicas/{replica}/logs", pa_route_logs },
};

const size_t pa_n_routes = sizeof(pa_routes) / sizeof(pa_routes[0]);
