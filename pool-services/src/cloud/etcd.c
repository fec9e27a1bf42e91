/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "base/http-private.h"
#include "cloud/node-private.h"
#include "base/errfmt.h"
#include "pool-domain/backoff.h"
#include "pool-domain/rng.h"
#include "pool-services/cloud/etcd.h"

#define TIMEOUT_MIN_MS 500
#define TIMEOUT_MAX_MS 5000
#define RETRY_INITIAL_MS 250
#define LEASE_ID_MAX 32

typedef enum etcd_request {
        REQ_GRANT,
        REQ_KEEPALIVE,
        REQ_PUT,
        REQ_DELETE,
        REQ_REVOKE,
        REQ_MAX,
} etcd_request;

static const char *const request_names[REQ_MAX] = {
        [REQ_GRANT] = "grant",
        [REQ_KEEPALIVE] = "keepalive",
        [REQ_PUT] = "put",
        [REQ_DELETE] = "delete",
        [REQ_REVOKE] = "revoke",
};

static const char *const request_paths[REQ_MAX] = {
        [REQ_GRANT] = "/v3/lease/grant",
        [REQ_KEEPALIVE] = "/v3/lease/keepalive",
        [REQ_PUT] = "/v3/kv/put",
        [REQ_DELETE] = "/v3/kv/deleterange",
        [REQ_REVOKE] = "/v3/lease/revoke",
};

typedef struct kv {
        char *key;
        char *value;
} kv;

typedef struct kv_list {
        kv *items;
        size_t n, cap;
} kv_list;

struct ps_etcd {
        const ps_context *ctx;
        ps_registry *reg;
        ps_http *http;

        char **endpoints;
        size_t n_endpoints, endpoint;     /* the one in use */
        char *prefix;
        char *node_id, *machine_id, *address, *version;
        char **pools;
        size_t n_pools;
        bool pools_set;
        const ps_inventory *inventory;
        ps_etcd_trace_fn trace;
        void *trace_userdata;
        int64_t ttl_ms, keepalive_ms, timeout_ms;
        pd_backoff_policy retry_policy;
        pd_rng rng;

        bool started, stopping, stopped;
        char lease[LEASE_ID_MAX];         /* "" without a lease */
        bool keepalive_due;
        kv_list published;                /* what etcd holds under our lease */
        struct event *kick, *tick, *retry;
        bool retry_pending;
        ps_http_request *inflight;
        etcd_request inflight_kind;
        char *inflight_key, *inflight_value;

        unsigned failures;
        char *last_error;
        int64_t last_error_at, last_success_at;
        uint64_t requests[REQ_MAX][2];
        uint64_t grants;

        ps_done_fn done;
        void *done_userdata;
};

/* ---- small things -------------------------------------------------------------- */

char *ps_etcd_base64(const char *s) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t len = s ? strlen(s) : 0, o = 0;
        const unsigned char *in = (const unsigned char *) s;
        char *out = s ? malloc(4 * ((len + 2) / 3) + 1) : NULL;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i += 3) {
                unsigned v = (unsigned) in[i] << 16;

                if (i + 1 < len)
                        v |= (unsigned) in[i + 1] << 8;
                if (i + 2 < len)
                        v |= in[i + 2];
                out[o++] = tab[(v >> 18) & 63];
                out[o++] = tab[(v >> 12) & 63];
                out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
                out[o++] = i + 2 < len ? tab[v & 63] : '=';
        }
        out[o] = '\0';
        return out;
}

static void kv_list_clear(kv_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].key);
                free(l->items[i].value);
        }
        free(l->items);
        *l = (kv_list) { 0 };
}

/* Takes key and value (freed on failure). */
static int kv_list_add(kv_list *l, char *key, char *value) {
        if (!key || !value)
                goto oom;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 8;
                kv *n = realloc(l->items, cap * sizeof(*n));

                if (!n)
                        goto oom;
                l->items = n;
                l->cap = cap;
        }
        l->items[l->n++] = (kv) { key, value };
        return 0;
oom:
        free(key);
        free(value);
        return -ENOMEM;
}

static kv *kv_list_find(kv_list *l, const char *key) {
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->items[i].key, key) == 0)
                        return &l->items[i];
        return NULL;
}

static void kv_list_set(kv_list *l, const char *key, const char *value) {
        kv *e = kv_list_find(l, key);
        char *v = strdup(value);

        if (!v)
                return;           /* not remembered: put again next time */
        if (e) {
                free(e->value);
                e->value = v;
                return;
        }
        kv_list_add(l, strdup(key), v);
}

static void kv_list_remove(kv_list *l, const char *key) {
        kv *e = kv_list_find(l, key);

        if (!e)
                return;
        free(e->key);
        free(e->value);
        *e = l->items[--l->n];
}

static char *concat(const char *a, const char *b, const char *c, const char *d) {
        size_t len = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 1;
        char *s = malloc(len);

        if (s)
                snprintf(s, len, "%s%s%s%s", a, b, c, d);
        return s;
}

static char *dumps(json_t *doc) {
        char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

        json_decref(doc);
        return s;
}

static void emit(ps_etcd *e, ps_log_level level, const char *message, const char *request,
                 const char *error) {
        ps_field fields[4];
        size_t n = 0;
        ps_event ev = { .type = PS_EVENT_GENERIC, .level = level, .message = message };

        fields[n++] = PS_FIELD_STR("endpoint", e->endpoints[e->endpoint]);
        if (e->lease[0])
                fields[n++] = PS_FIELD_STR("lease_id", e->lease);
        if (request)
                fields[n++] = PS_FIELD_STR("request", request);
        if (error)
                fields[n++] = PS_FIELD_STR("error", error);
        ev.fields = fields;
        ev.n_fields = n;
        ps_event_emit(&e->ctx->sink, &ev);
}

static void trace(const ps_etcd *e, etcd_request kind, ps_etcd_trace_what what) {
        if (e->trace)
                e->trace(request_names[kind], what, e->trace_userdata);
}

/* ---- what should be there ---------------------------------------------------- */

static int desired(ps_etcd *e, kv_list *out) {
        ps_node_pools pools = { e->pools_set, (const char *const *) e->pools, e->n_pools };
        json_t *node, *status, *p;
        size_t i;
        int r;

        node = json_pack("{s:s, s:s, s:s, s:s, s:o*, s:o*}",
                         "node_id", e->node_id,
                         "machine_id", e->machine_id,
                         "address", e->address,
                         "version", e->version,
                         "capabilities", ps_node_capabilities(e->inventory),
                         "pools", ps_node_pool_ids(e->reg, &pools));
        r = kv_list_add(out, concat(e->prefix, "nodes/", e->node_id, ""), dumps(node));
        if (r < 0)
                return r;
        status = ps_node_pool_status(e->reg, e->inventory, &pools);
        if (!status)
                return -ENOMEM;
        json_array_foreach(status, i, p) {
                const char *id = json_string_value(json_object_get(p, "pool_id"));
                char *sub = concat(e->node_id, "/", id, "");

                json_object_set_new(p, "node_id", json_string(e->node_id));
                json_object_set_new(p, "address", json_string(e->address));
                r = sub ? kv_list_add(out, concat(e->prefix, "pools/", sub, ""),
                                      dumps(json_incref(p))) : -ENOMEM;
                free(sub);
                if (r < 0)
                        break;
        }
        json_decref(status);
        return r;
}

/* ---- requests ------------------------------------------------------------------ */

static void sync_now(ps_etcd *e);

static void on_reply(const ps_http_result *res, void *userdata);

static void send_request(ps_etcd *e, etcd_request kind, json_t *doc) {
        char *body = dumps(doc), *url;
        int r = -ENOMEM;

        url = concat(e->endpoints[e->endpoint], request_paths[kind], "", "");
        if (body && url)
                r = ps_http_start(e->http, "POST", url, body, NULL, e->timeout_ms, on_reply, e,
                                  &e->inflight);
        free(body);
        free(url);
        e->inflight_kind = kind;
        trace(e, kind, r < 0 ? PS_ETCD_FAILED : PS_ETCD_SENT);
        if (r < 0) {
                /* Tried again by the next tick. */
                e->inflight = NULL;
                e->failures++;
                if (kind == REQ_REVOKE && e->done) {
                        ps_done_fn done = e->done;

                        e->done = NULL;
                        e->stopped = true;
                        done(-ENOMEM, "etcd lease revocation failed: out of memory", e->done_userdata);
                }
        }
}

static void send_put(ps_etcd *e, const kv *item) {
        char *k = ps_etcd_base64(item->key), *v = ps_etcd_base64(item->value);

        free(e->inflight_key);
        free(e->inflight_value);
        e->inflight_key = strdup(item->key);
        e->inflight_value = strdup(item->value);
        if (k && v && e->inflight_key && e->inflight_value)
                send_request(e, REQ_PUT, json_pack("{s:s, s:s, s:s}", "key", k, "value", v,
                                                    "lease", e->lease));
        free(k);
        free(v);
}

static void send_delete(ps_etcd *e, const char *key) {
        char *k = ps_etcd_base64(key);

        free(e->inflight_key);
        free(e->inflight_value);
        e->inflight_key = strdup(key);
        e->inflight_value = NULL;
        if (k && e->inflight_key)
                send_request(e, REQ_DELETE, json_pack("{s:s}", "key", k));
        free(k);
}

/* One request at a time, most urgent first: a lease, its keepalive, then
 * the keys whose values differ, then the keys that should go. */
static void sync_now(ps_etcd *e) {
        kv_list want = { 0 };

        if (!e->started || e->stopping || e->inflight || e->retry_pending)
                return;
        if (!e->lease[0]) {
                send_request(e, REQ_GRANT, json_pack("{s:I}", "TTL",
                                                     (json_int_t) ((e->ttl_ms + 999) / 1000)));
                return;
        }
        if (e->keepalive_due) {
                send_request(e, REQ_KEEPALIVE, json_pack("{s:s}", "ID", e->lease));
                return;
        }
        if (desired(e, &want) < 0) {
                kv_list_clear(&want);
                return;           /* OOM: the next tick tries again */
        }
        for (size_t i = 0; i < want.n; i++) {
                kv *have = kv_list_find(&e->published, want.items[i].key);

                if (!have || strcmp(have->value, want.items[i].value) != 0) {
                        send_put(e, &want.items[i]);
                        kv_list_clear(&want);
                        return;
                }
        }
        for (size_t i = 0; i < e->published.n; i++)
                if (!kv_list_find(&want, e->published.items[i].key)) {
                        send_delete(e, e->published.items[i].key);
                        break;
                }
        kv_list_clear(&want);
}

static void lease_lost(ps_etcd *e, const char *why) {
        emit(e, PS_LOG_WARN, "etcd lease lost: granting a new one and publishing again", NULL, why);
        e->lease[0] = '\0';
        e->keepalive_due = false;
        kv_list_clear(&e->published);
}

static void failed(ps_etcd *e, etcd_request kind, const char *error) {
        int64_t delay;
        struct timeval tv;
        char *copy = strdup(error);

        e->requests[kind][0]++;
        trace(e, kind, PS_ETCD_FAILED);
        if (copy) {
                free(e->last_error);
                e->last_error = copy;
        }
        e->last_error_at = ps_clock_wall_ms(e->ctx->clock);
        e->failures++;
        emit(e, e->failures == 1 ? PS_LOG_WARN : PS_LOG_DEBUG, "etcd request failed",
             request_names[kind], error);
        /* The next endpoint may be up. */
        e->endpoint = (e->endpoint + 1) % e->n_endpoints;
        delay = pd_backoff_delay(&e->retry_policy, e->failures, PD_CRASH_EXIT_CODE, &e->rng);
        tv.tv_sec = delay / 1000;
        tv.tv_usec = (delay % 1000) * 1000;
        e->retry_pending = true;
        evtimer_add(e->retry, &tv);
}

static void succeeded(ps_etcd *e, etcd_request kind) {
        e->requests[kind][1]++;
        trace(e, kind, PS_ETCD_OK);
        e->last_success_at = ps_clock_wall_ms(e->ctx->clock);
        if (e->failures > 0)
                emit(e, PS_LOG_INFO, "etcd reachable again", request_names[kind], NULL);
        e->failures = 0;
}

/* int64 fields come back as strings. */
static int64_t int_field(const json_t *obj, const char *key, const char **str) {
        const json_t *v = json_object_get(obj, key);

        if (str)
                *str = json_string_value(v);
        if (json_is_integer(v))
                return json_integer_value(v);
        if (json_is_string(v))
                return strtoll(json_string_value(v), NULL, 10);
        return 0;
}

static void on_reply(const ps_http_result *res, void *userdata) {
        ps_etcd *e = userdata;
        etcd_request kind = e->inflight_kind;
        bool ok = res->transport_ok && res->status >= 200 && res->status <= 299;
        json_t *doc = res->body_len ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
        const char *etcd_error = json_string_value(json_object_get(doc, "error"));
        char error[320];
        const char *id;

        e->inflight = NULL;
        if (!ok && res->transport_ok)
                snprintf(error, sizeof(error), "HTTP %ld%s%.200s", res->status,
                         etcd_error ? ": " : "", etcd_error ? etcd_error : "");
        else
                snprintf(error, sizeof(error), "%s", res->error);

        if (kind == REQ_REVOKE) {
                ps_done_fn done = e->done;

                if (ok) {
                        succeeded(e, kind);
                } else {
                        e->requests[kind][0]++;
                        trace(e, kind, PS_ETCD_FAILED);
                }
                emit(e, ok ? PS_LOG_INFO : PS_LOG_WARN,
                     ok ? "etcd lease revoked" : "etcd lease revocation failed", NULL,
                     ok ? NULL : error);
                e->lease[0] = '\0';
                kv_list_clear(&e->published);
                e->stopped = true;
                e->done = NULL;
                json_decref(doc);
                if (done)
                        done(ok ? 0 : -EIO, ok ? "etcd lease revoked" : "etcd lease revocation failed",
                             e->done_userdata);
                return;
        }
        /* A lease lost while etcd was away, or with etcd's data: a new
         * one after the first retry delay (not at once: a gateway that
         * keeps saying so must not make us spin). */
        if (kind == REQ_PUT && etcd_error && strstr(etcd_error, "lease not found")) {
                lease_lost(e, etcd_error);
                failed(e, kind, error);
                goto out;
        }
        if (!ok) {
                failed(e, kind, error);
                goto out;
        }
        switch (kind) {
        case REQ_GRANT:
                int_field(doc, "ID", &id);
                if (!id || !id[0] || strlen(id) >= LEASE_ID_MAX || int_field(doc, "TTL", NULL) <= 0) {
                        failed(e, kind, "lease grant answered without an ID and TTL");
                        goto out;
                }
                succeeded(e, kind);
                snprintf(e->lease, sizeof(e->lease), "%s", id);
                kv_list_clear(&e->published);
                e->grants++;
                e->keepalive_due = false;
                emit(e, PS_LOG_INFO, "etcd lease granted", NULL, NULL);
                break;
        case REQ_KEEPALIVE:
                /* A reply without a TTL (or TTL 0): the lease is gone. */
                if (int_field(json_object_get(doc, "result"), "TTL", NULL) <= 0) {
                        lease_lost(e, "keepalive answered without a TTL");
                        failed(e, kind, "lease expired");
                        goto out;
                }
                succeeded(e, kind);
                e->keepalive_due = false;
                break;
        case REQ_PUT:
                succeeded(e, kind);
                if (e->inflight_key && e->inflight_value)
                        kv_list_set(&e->published, e->inflight_key, e->inflight_value);
                break;
        case REQ_DELETE:
                succeeded(e, kind);
                if (e->inflight_key)
                        kv_list_remove(&e->published, e->inflight_key);
                break;
        case REQ_REVOKE:
        case REQ_MAX:
                break;
        }
        sync_now(e);
out:
        json_decref(doc);
}

/* ---- timers -------------------------------------------------------------------- */

static void on_kick(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        sync_now(userdata);
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        ps_etcd *e = userdata;

        (void) fd;
        (void) what;
        if (e->lease[0])
                e->keepalive_due = true;
        sync_now(e);
}

static void on_retry(evutil_socket_t fd, short what, void *userdata) {
        ps_etcd *e = userdata;

        (void) fd;
        (void) what;
        e->retry_pending = false;
        sync_now(e);
}

/* ---- public API ------------------------------------------------------------------ */

static int check(const ps_etcd_config *cfg, char *err, size_t errlen) {
        if (!cfg->endpoints || cfg->n_endpoints == 0)
                return ps_errf(err, errlen, PS_E_INVALID, "etcd: endpoints are required");
        for (size_t i = 0; i < cfg->n_endpoints; i++)
                if (!cfg->endpoints[i] || !cfg->endpoints[i][0])
                        return ps_errf(err, errlen, PS_E_INVALID, "etcd: endpoints[%zu] is empty", i);
        if (!cfg->prefix || cfg->prefix[0] != '/')
                return ps_errf(err, errlen, PS_E_INVALID, "etcd: prefix must start with '/'");
        if (cfg->ttl_ms < 1000)
                return ps_errf(err, errlen, PS_E_INVALID, "etcd: ttl_ms must be >= 1000");
        if (!cfg->node_id || !cfg->node_id[0])
                return ps_errf(err, errlen, PS_E_INVALID, "etcd: node_id is required");
        return 0;
}

static char *strdup_or_empty(const char *s) {
        return strdup(s ? s : "");
}

int ps_etcd_new(const ps_context *ctx, ps_registry *reg, const ps_etcd_config *cfg,
                ps_etcd **ret, char *err, size_t errlen) {
        ps_etcd *e;
        bool oom = false;
        size_t plen;
        int r;

        if (!ctx || !ctx->base || !reg || !cfg || !ret)
                return -EINVAL;
        r = check(cfg, err, errlen);
        if (r)
                return r;
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->ctx = ctx;
        e->reg = reg;
        e->endpoints = calloc(cfg->n_endpoints, sizeof(*e->endpoints));
        for (size_t i = 0; e->endpoints && i < cfg->n_endpoints; i++) {
                size_t len;

                e->endpoints[i] = strdup(cfg->endpoints[i]);
                if (!e->endpoints[i]) {
                        oom = true;
                        break;
                }
                e->n_endpoints++;
                len = strlen(e->endpoints[i]);
                while (len > 0 && e->endpoints[i][len - 1] == '/')
                        e->endpoints[i][--len] = '\0';
        }
        plen = strlen(cfg->prefix);
        e->prefix = concat(cfg->prefix, cfg->prefix[plen - 1] == '/' ? "" : "/", "", "");
        e->node_id = strdup(cfg->node_id);
        e->machine_id = strdup_or_empty(cfg->machine_id && cfg->machine_id[0] ?
                                        cfg->machine_id : cfg->node_id);
        e->address = strdup_or_empty(cfg->address);
        e->version = strdup_or_empty(cfg->version);
        e->pools_set = cfg->pools_set;
        if (cfg->pools_set && cfg->n_pools > 0) {
                e->pools = calloc(cfg->n_pools, sizeof(*e->pools));
                for (size_t i = 0; e->pools && i < cfg->n_pools; i++)
                        if ((e->pools[e->n_pools] = strdup(cfg->pools[i])))
                                e->n_pools++;
                oom |= e->n_pools != cfg->n_pools;
        }
        e->inventory = cfg->inventory;
        e->trace = cfg->trace;
        e->trace_userdata = cfg->trace_userdata;
        e->ttl_ms = cfg->ttl_ms;
        e->keepalive_ms = cfg->keepalive_ms > 0 ? cfg->keepalive_ms : cfg->ttl_ms / 3;
        e->timeout_ms = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms :
                        e->keepalive_ms < TIMEOUT_MIN_MS ? TIMEOUT_MIN_MS :
                        e->keepalive_ms > TIMEOUT_MAX_MS ? TIMEOUT_MAX_MS : e->keepalive_ms;
        pd_backoff_policy_init(&e->retry_policy);
        e->retry_policy.initial_ms = RETRY_INITIAL_MS < e->keepalive_ms ? RETRY_INITIAL_MS :
                                     e->keepalive_ms;
        e->retry_policy.max_ms = e->keepalive_ms;
        pd_rng_seed(&e->rng, ctx->seed ^ 0x65746364ULL);
        e->http = ps_http_new(ctx->base);
        e->kick = evtimer_new(ctx->base, on_kick, e);
        e->tick = event_new(ctx->base, -1, EV_PERSIST, on_tick, e);
        e->retry = evtimer_new(ctx->base, on_retry, e);
        if (oom || !e->endpoints || !e->prefix || !e->node_id || !e->machine_id || !e->address ||
            !e->version || !e->http || !e->kick || !e->tick || !e->retry) {
                ps_etcd_free(e);
                return -ENOMEM;
        }
        *ret = e;
        return 0;
}

ps_etcd *ps_etcd_free(ps_etcd *e) {
        if (!e)
                return NULL;
        e->http = ps_http_free(e->http);
        if (e->kick)
                event_free(e->kick);
        if (e->tick)
                event_free(e->tick);
        if (e->retry)
                event_free(e->retry);
        for (size_t i = 0; i < e->n_endpoints; i++)
                free(e->endpoints[i]);
        free(e->endpoints);
        for (size_t i = 0; i < e->n_pools; i++)
                free(e->pools[i]);
        free(e->pools);
        free(e->prefix);
        free(e->node_id);
        free(e->machine_id);
        free(e->address);
        free(e->version);
        free(e->inflight_key);
        free(e->inflight_value);
        free(e->last_error);
        kv_list_clear(&e->published);
        free(e);
        return NULL;
}

int ps_etcd_start(ps_etcd *e) {
        struct timeval tv;

        if (!e)
                return -EINVAL;
        if (e->started)
                return PS_E_CONFLICT;
        e->started = true;
        tv.tv_sec = e->keepalive_ms / 1000;
        tv.tv_usec = (e->keepalive_ms % 1000) * 1000;
        if (event_add(e->tick, &tv) < 0)
                return -ENOMEM;
        ps_etcd_poke(e);
        return 0;
}

void ps_etcd_poke(ps_etcd *e) {
        struct timeval now = { 0, 0 };

        if (e && e->started && !e->stopping)
                evtimer_add(e->kick, &now);
}

void ps_etcd_stop(ps_etcd *e, int64_t timeout_ms, ps_done_fn done, void *userdata) {
        if (!e || e->stopping) {
                if (done)
                        done(0, "etcd not in use", userdata);
                return;
        }
        e->stopping = true;
        evtimer_del(e->kick);
        event_del(e->tick);
        evtimer_del(e->retry);
        e->retry_pending = false;
        ps_http_cancel(e->inflight);
        e->inflight = NULL;
        if (!e->lease[0]) {
                e->stopped = true;
                if (done)
                        done(0, "no etcd lease held", userdata);
                return;
        }
        e->done = done;
        e->done_userdata = userdata;
        if (timeout_ms > 0)
                e->timeout_ms = timeout_ms;
        send_request(e, REQ_REVOKE, json_pack("{s:s}", "ID", e->lease));
}

static const char *state_name(const ps_etcd *e) {
        if (e->stopped)
                return "stopped";
        if (e->stopping)
                return "revoking";
        if (!e->started)
                return "idle";
        if (e->retry_pending)
                return "retrying";
        if (!e->lease[0])
                return "granting";
        return "live";
}

json_t *ps_etcd_status(const ps_etcd *e) {
        uint64_t failures = 0;

        for (int k = 0; k < REQ_MAX; k++)
                failures += e->requests[k][0];
        return json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:o, s:o, s:o, s:I, s:I, s:I}",
                         "endpoint", e->endpoints[e->endpoint],
                         "prefix", e->prefix,
                         "state", state_name(e),
                         "lease_id", e->lease[0] ? json_string(e->lease) : json_null(),
                         "ttl_ms", (json_int_t) e->ttl_ms,
                         "keys", (json_int_t) e->published.n,
                         "last_error", e->last_error ? json_string(e->last_error) : json_null(),
                         "last_error_at", e->last_error_at ? json_integer(e->last_error_at) : json_null(),
                         "last_success_at", e->last_success_at ? json_integer(e->last_success_at) :
                                                                 json_null(),
                         "consecutive_failures", (json_int_t) e->failures,
                         "lease_grants", (json_int_t) e->grants,
                         "failures", (json_int_t) failures);
}

char *ps_etcd_render_metrics(const ps_etcd *e) {
        char *text = NULL;
        size_t len = 0;
        FILE *f;

        if (!e)
                return NULL;
        f = open_memstream(&text, &len);
        if (!f)
                return NULL;
        fputs("# HELP pool_managerd_etcd_lease_active Whether the node's snapshots are published "
              "under a live etcd lease (1) or not (0).\n"
              "# TYPE pool_managerd_etcd_lease_active gauge\n", f);
        fprintf(f, "pool_managerd_etcd_lease_active %d\n", e->lease[0] && !e->stopped ? 1 : 0);
        fputs("# HELP pool_managerd_etcd_requests_total Requests to etcd's JSON gateway, by "
              "request and result.\n"
              "# TYPE pool_managerd_etcd_requests_total counter\n", f);
        for (int k = 0; k < REQ_MAX; k++)
                for (int ok = 1; ok >= 0; ok--)
                        fprintf(f, "pool_managerd_etcd_requests_total{request=\"%s\",result=\"%s\"} %llu\n",
                                request_names[k], ok ? "ok" : "error",
                                (unsigned long long) e->requests[k][ok]);
        fputs("# HELP pool_managerd_etcd_lease_grants_total etcd leases granted to this node.\n"
              "# TYPE pool_managerd_etcd_lease_grants_total counter\n", f);
        fprintf(f, "pool_managerd_etcd_lease_grants_total %llu\n", (unsigned long long) e->grants);
        fputs("# HELP pool_managerd_etcd_consecutive_failures Failed etcd requests since the last "
              "success.\n"
              "# TYPE pool_managerd_etcd_consecutive_failures gauge\n", f);
        fprintf(f, "pool_managerd_etcd_consecutive_failures %u\n", e->failures);
        if (fclose(f) != 0) {
                free(text);
                return NULL;
        }
        return text;
}
