/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "base/http-private.h"
#include "cloud/node-private.h"
#include "base/errfmt.h"
#include "pool-domain/backoff.h"
#include "pool-domain/rng.h"
#include "pool-services/cloud/control-plane.h"

#define DEFAULT_RETRY_INITIAL_MS 1000
#define TIMEOUT_MIN_MS 1000
#define TIMEOUT_MAX_MS 10000
/* A reply may stretch the next heartbeat, but not past a day. */
#define NEXT_HEARTBEAT_MAX_MS (24LL * 3600 * 1000)

typedef enum cp_state {
        CP_IDLE,
        CP_REGISTERING,
        CP_REGISTERED,
        CP_RETRYING,
        CP_DEREGISTERING,
        CP_DEREGISTERED,
        CP_STOPPED,
        CP_STATE_MAX,
} cp_state;

static const char *const state_names[CP_STATE_MAX] = {
        [CP_IDLE] = "idle",
        [CP_REGISTERING] = "registering",
        [CP_REGISTERED] = "registered",
        [CP_RETRYING] = "retrying",
        [CP_DEREGISTERING] = "deregistering",
        [CP_DEREGISTERED] = "deregistered",
        [CP_STOPPED] = "stopped",
};

typedef enum cp_request {
        REQ_REGISTER,
        REQ_HEARTBEAT,
        REQ_DEREGISTER,
        REQ_MAX,
} cp_request;

static const char *const request_names[REQ_MAX] = {
        [REQ_REGISTER] = "register",
        [REQ_HEARTBEAT] = "heartbeat",
        [REQ_DEREGISTER] = "deregister",
};

struct ps_control_plane {
        const ps_context *ctx;
        ps_registry *reg;
        ps_http *http;

        char *url;                /* without trailing '/' */
        char *node_id, *machine_id, *address, *token, *version;
        char **pools;
        size_t n_pools;
        bool pools_set;
        int64_t interval_ms, timeout_ms;
        bool register_on_startup;
        const ps_inventory *inventory;
        pd_backoff_policy retry;
        pd_rng rng;

        cp_state state;
        bool registered;          /* the control plane accepted us, no 404 since */
        bool ever_registered;
        cp_request next;          /* what the timer does */
        struct event *timer;
        ps_http_request *inflight;
        cp_request inflight_kind;

        unsigned failures;        /* consecutive */
        char *last_error;
        int64_t last_error_at, last_success_at, last_heartbeat_at, registered_at;
        int64_t next_attempt_at;  /* 0: none scheduled */
        uint64_t requests[REQ_MAX][2];   /* [kind][ok] */
        uint64_t reregistrations;

        ps_done_fn done;
        void *done_userdata;
};

static void emit(ps_control_plane *cp, ps_log_level level, const char *message,
                 const char *request, const char *error, int64_t retry_ms) {
        ps_field fields[4];
        size_t n = 0;
        ps_event ev = { .type = PS_EVENT_GENERIC, .level = level, .message = message };

        fields[n++] = PS_FIELD_STR("node_id", cp->node_id);
        if (request)
                fields[n++] = PS_FIELD_STR("request", request);
        if (error)
                fields[n++] = PS_FIELD_STR("error", error);
        if (retry_ms >= 0)
                fields[n++] = PS_FIELD_INT("retry_ms", retry_ms);
        ev.fields = fields;
        ev.n_fields = n;
        ps_event_emit(&cp->ctx->sink, &ev);
}

static int64_t now_wall(const ps_control_plane *cp) {
        return ps_clock_wall_ms(cp->ctx->clock);
}

static void arm(ps_control_plane *cp, cp_request what, int64_t delay_ms) {
        struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };

        cp->next = what;
        cp->next_attempt_at = now_wall(cp) + delay_ms;
        evtimer_add(cp->timer, &tv);
}

static void send_request(ps_control_plane *cp, cp_request kind);

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        ps_control_plane *cp = userdata;

        (void) fd;
        (void) what;
        cp->next_attempt_at = 0;
        send_request(cp, cp->next);
}

/* ---- replies -------------------------------------------------------------- */

static void succeeded(ps_control_plane *cp, cp_request kind) {
        cp->requests[kind][1]++;
        cp->last_success_at = now_wall(cp);
        if (cp->failures > 0 && kind != REQ_DEREGISTER)
                emit(cp, PS_LOG_INFO, "control plane reachable again", request_names[kind],
                     NULL, -1);
        cp->failures = 0;
}

/* Retries the same request after a delay doubling from retry_initial up
 * to one heartbeat interval. */
static void failed(ps_control_plane *cp, cp_request kind, const char *error) {
        int64_t delay;
        char *copy = strdup(error);

        cp->requests[kind][0]++;
        if (copy) {
                free(cp->last_error);
                cp->last_error = copy;
        }
        cp->last_error_at = now_wall(cp);
        cp->failures++;
        delay = pd_backoff_delay(&cp->retry, cp->failures, PD_CRASH_EXIT_CODE, &cp->rng);
        emit(cp, cp->failures == 1 ? PS_LOG_WARN : PS_LOG_DEBUG, "control plane request failed",
             request_names[kind], error, delay);
        cp->state = CP_RETRYING;
        arm(cp, kind, delay);
}

static int64_t next_heartbeat_delay(const ps_control_plane *cp, const ps_http_result *res) {
        json_t *doc = res->body_len ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
        json_t *next = json_object_get(doc, "next_heartbeat_ms");
        int64_t delay = cp->interval_ms;

        /* Relative milliseconds; anything else is ignored. */
        if (json_is_integer(next) && json_integer_value(next) > 0)
                delay = json_integer_value(next) < NEXT_HEARTBEAT_MAX_MS ?
                        json_integer_value(next) : NEXT_HEARTBEAT_MAX_MS;
        json_decref(doc);
        return delay;
}

static void describe_failure(const ps_http_result *res, char *buf, size_t len) {
        json_t *doc;
        const char *msg = NULL;

        if (!res->transport_ok) {
                snprintf(buf, len, "%s", res->error);
                return;
        }
        doc = res->body_len ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
        if (json_is_string(json_object_get(doc, "error")))
                msg = json_string_value(json_object_get(doc, "error"));
        if (msg)
                snprintf(buf, len, "HTTP %ld: %.200s", res->status, msg);
        else
                snprintf(buf, len, "HTTP %ld", res->status);
        json_decref(doc);
}

static void finish_stop(ps_control_plane *cp, bool ok, const char *message) {
        ps_done_fn done = cp->done;

        cp->state = ok ? CP_DEREGISTERED : CP_STOPPED;
        cp->done = NULL;
        if (done)
                done(ok ? 0 : -EIO, message, cp->done_userdata);
}

static void on_reply(const ps_http_result *res, void *userdata) {
        ps_control_plane *cp = userdata;
        cp_request kind = cp->inflight_kind;
        bool ok = res->transport_ok && res->status >= 200 && res->status <= 299;
        char error[320];

        cp->inflight = NULL;
        if (!ok)
                describe_failure(res, error, sizeof(error));
        switch (kind) {
        case REQ_REGISTER:
                if (!ok) {
                        failed(cp, kind, error);
                        return;
                }
                succeeded(cp, kind);
                cp->registered = cp->ever_registered = true;
                cp->registered_at = now_wall(cp);
                cp->state = CP_REGISTERED;
                emit(cp, PS_LOG_INFO, "registered with the control plane", NULL, NULL, -1);
                /* The first heartbeat follows at once, as the seed's does:
                 * the control plane learns the pools' state without waiting
                 * a whole interval. */
                arm(cp, REQ_HEARTBEAT, 0);
                return;
        case REQ_HEARTBEAT:
                if (res->transport_ok && res->status == 404) {
                        /* Forgotten (a restarted control plane): not a failure
                         * to back off from. */
                        cp->requests[kind][0]++;
                        cp->reregistrations++;
                        cp->registered = false;
                        emit(cp, PS_LOG_WARN, "control plane does not know this node: registering again",
                             NULL, NULL, -1);
                        send_request(cp, REQ_REGISTER);
                        return;
                }
                if (!ok) {
                        failed(cp, kind, error);
                        return;
                }
                succeeded(cp, kind);
                cp->registered = cp->ever_registered = true;
                cp->last_heartbeat_at = now_wall(cp);
                cp->state = CP_REGISTERED;
                arm(cp, REQ_HEARTBEAT, next_heartbeat_delay(cp, res));
                return;
        case REQ_DEREGISTER:
                /* 404: the control plane had already forgotten us. */
                if (ok || (res->transport_ok && res->status == 404)) {
                        succeeded(cp, kind);
                        cp->registered = false;
                        emit(cp, PS_LOG_INFO, "deregistered from the control plane", NULL, NULL, -1);
                        finish_stop(cp, true, "deregistered from the control plane");
                } else {
                        cp->requests[kind][0]++;
                        free(cp->last_error);
                        cp->last_error = strdup(error);
                        cp->last_error_at = now_wall(cp);
                        emit(cp, PS_LOG_WARN, "control plane request failed", "deregister", error, -1);
                        finish_stop(cp, false, "deregistration failed");
                }
                return;
        case REQ_MAX:
                break;
        }
}

/* ---- requests --------------------------------------------------------------- */

static json_t *register_body(ps_control_plane *cp) {
        return json_pack("{s:s, s:s, s:s, s:o*, s:o*, s:s}",
                         "node_id", cp->node_id,
                         "machine_id", cp->machine_id,
                         "address", cp->address,
                         "pools", ps_node_pool_ids(cp->reg, &(ps_node_pools) {
                                 cp->pools_set, (const char *const *) cp->pools, cp->n_pools }),
                         "capabilities", ps_node_capabilities(cp->inventory),
                         "version", cp->version);
}

/* "2026-12-06T15:11:04.824Z": RFC 3339 in UTC with milliseconds, as the
 * seed's heartbeat carries it. */
static void rfc3339(int64_t ms, char *buf, size_t len) {
        time_t secs = (time_t) (ms / 1000);
        struct tm tm;

        if (!gmtime_r(&secs, &tm)) {
                snprintf(buf, len, "1970-01-01T00:00:00.000Z");
                return;
        }
        if (strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0 || strlen(buf) + 6 > len) {
                snprintf(buf, len, "1970-01-01T00:00:00.000Z");
                return;
        }
        snprintf(buf + strlen(buf), len - strlen(buf), ".%03dZ", (int) (ms % 1000));
}

static json_t *heartbeat_body(ps_control_plane *cp) {
        int64_t now = now_wall(cp);
        char ts[40];

        rfc3339(now, ts, sizeof(ts));
        return json_pack("{s:s, s:I, s:o*}",
                         "timestamp", ts,
                         "timestamp_ms", (json_int_t) now,
                         "pools", ps_node_pool_status(cp->reg, cp->inventory, &(ps_node_pools) {
                                 cp->pools_set, (const char *const *) cp->pools, cp->n_pools }));
}

static void send_request(ps_control_plane *cp, cp_request kind) {
        char url[2048];
        json_t *doc = NULL;
        char *body = NULL;
        int r;

        if (kind == REQ_REGISTER)
                cp->state = CP_REGISTERING;
        if (kind != REQ_DEREGISTER) {
                doc = kind == REQ_REGISTER ? register_body(cp) : heartbeat_body(cp);
                body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
                json_decref(doc);
        }
        if (kind == REQ_REGISTER)
                snprintf(url, sizeof(url), "%s/v2/nodes/register", cp->url);
        else if (kind == REQ_HEARTBEAT)
                snprintf(url, sizeof(url), "%s/v2/nodes/%s/heartbeat", cp->url, cp->node_id);
        else
                snprintf(url, sizeof(url), "%s/v2/nodes/%s", cp->url, cp->node_id);
        r = (kind == REQ_DEREGISTER || body) ?
            ps_http_start(cp->http, kind == REQ_DEREGISTER ? "DELETE" : "POST", url, body,
                          cp->token, cp->timeout_ms, on_reply, cp, &cp->inflight) :
            -ENOMEM;
        free(body);
        if (r < 0) {
                if (kind == REQ_DEREGISTER) {
                        finish_stop(cp, false, "deregistration failed: out of memory");
                        return;
                }
                failed(cp, kind, strerror(-r));
                return;
        }
        cp->inflight_kind = kind;
}

/* ---- public API --------------------------------------------------------------- */

static char *dup_or_empty(const char *s) {
        return strdup(s ? s : "");
}

int ps_control_plane_new(const ps_context *ctx, ps_registry *reg,
                         const ps_control_plane_config *cfg, ps_control_plane **ret,
                         char *err, size_t errlen) {
        ps_control_plane *cp;
        size_t len;

        if (!ctx || !ctx->base || !reg || !cfg || !ret)
                return -EINVAL;
        if (!cfg->url || !cfg->url[0])
                return ps_errf(err, errlen, PS_E_INVALID, "control plane: url is required");
        if (!cfg->node_id || !cfg->node_id[0])
                return ps_errf(err, errlen, PS_E_INVALID, "control plane: node_id is required");
        if (!cfg->address || !cfg->address[0])
                return ps_errf(err, errlen, PS_E_INVALID, "control plane: address is required");
        if (cfg->heartbeat_interval_ms <= 0)
                return ps_errf(err, errlen, PS_E_INVALID,
                               "control plane: heartbeat_interval_ms must be > 0");
        cp = calloc(1, sizeof(*cp));
        if (!cp)
                return -ENOMEM;
        cp->ctx = ctx;
        cp->reg = reg;
        cp->url = strdup(cfg->url);
        cp->node_id = strdup(cfg->node_id);
        cp->machine_id = dup_or_empty(cfg->machine_id && cfg->machine_id[0] ?
                                      cfg->machine_id : cfg->node_id);
        cp->address = strdup(cfg->address);
        cp->token = cfg->token && cfg->token[0] ? strdup(cfg->token) : NULL;
        cp->version = dup_or_empty(cfg->version);
        cp->pools_set = cfg->pools_set;
        cp->interval_ms = cfg->heartbeat_interval_ms;
        cp->timeout_ms = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms :
                         cp->interval_ms < TIMEOUT_MIN_MS ? TIMEOUT_MIN_MS :
                         cp->interval_ms > TIMEOUT_MAX_MS ? TIMEOUT_MAX_MS : cp->interval_ms;
        cp->register_on_startup = cfg->register_on_startup;
        cp->inventory = cfg->inventory;
        pd_backoff_policy_init(&cp->retry);
        cp->retry.initial_ms = cfg->retry_initial_ms > 0 ? cfg->retry_initial_ms :
                               DEFAULT_RETRY_INITIAL_MS;
        if (cp->retry.initial_ms > cp->interval_ms)
                cp->retry.initial_ms = cp->interval_ms;
        cp->retry.max_ms = cp->interval_ms;
        pd_rng_seed(&cp->rng, ctx->seed ^ 0x636f6e74726f6cULL);
        cp->timer = evtimer_new(ctx->base, on_timer, cp);
        cp->http = ps_http_new(ctx->base);
        if (cfg->pools_set && cfg->n_pools > 0) {
                cp->pools = calloc(cfg->n_pools, sizeof(*cp->pools));
                for (size_t i = 0; cp->pools && i < cfg->n_pools; i++) {
                        cp->pools[i] = strdup(cfg->pools[i]);
                        if (cp->pools[i])
                                cp->n_pools++;
                }
        }
        if (!cp->url || !cp->node_id || !cp->machine_id || !cp->address || !cp->version ||
            (cfg->token && cfg->token[0] && !cp->token) || !cp->timer || !cp->http ||
            (cfg->pools_set && cp->n_pools != cfg->n_pools)) {
                ps_control_plane_free(cp);
                return -ENOMEM;
        }
        len = strlen(cp->url);
        while (len > 0 && cp->url[len - 1] == '/')
                cp->url[--len] = '\0';
        *ret = cp;
        return 0;
}

ps_control_plane *ps_control_plane_free(ps_control_plane *cp) {
        if (!cp)
                return NULL;
        cp->http = ps_http_free(cp->http);
        if (cp->timer)
                event_free(cp->timer);
        free(cp->url);
        free(cp->node_id);
        free(cp->machine_id);
        free(cp->address);
        if (cp->token) {
                explicit_bzero(cp->token, strlen(cp->token));
                free(cp->token);
        }
        free(cp->version);
        for (size_t i = 0; i < cp->n_pools; i++)
                free(cp->pools[i]);
        free(cp->pools);
        free(cp->last_error);
        free(cp);
        return NULL;
}

int ps_control_plane_start(ps_control_plane *cp) {
        if (!cp)
                return -EINVAL;
        if (cp->state != CP_IDLE)
                return PS_E_CONFLICT;
        cp->state = cp->register_on_startup ? CP_REGISTERING : CP_REGISTERED;
        arm(cp, cp->register_on_startup ? REQ_REGISTER : REQ_HEARTBEAT, 0);
        return 0;
}

void ps_control_plane_stop(ps_control_plane *cp, int64_t timeout_ms,
                           ps_done_fn done, void *userdata) {
        bool send;

        if (!cp) {
                if (done)
                        done(0, "no control plane", userdata);
                return;
        }
        evtimer_del(cp->timer);
        cp->next_attempt_at = 0;
        ps_http_cancel(cp->inflight);
        cp->inflight = NULL;
        /* Tell the control plane when it may think we are there. */
        send = cp->ever_registered || !cp->register_on_startup;
        if (cp->state == CP_IDLE || cp->state == CP_DEREGISTERED || cp->state == CP_STOPPED ||
            !send) {
                cp->state = CP_STOPPED;
                if (done)
                        done(0, "not registered with the control plane", userdata);
                return;
        }
        cp->done = done;
        cp->done_userdata = userdata;
        cp->state = CP_DEREGISTERING;
        if (timeout_ms > 0)
                cp->timeout_ms = timeout_ms;
        send_request(cp, REQ_DEREGISTER);
}

const char *ps_control_plane_state(const ps_control_plane *cp) {
        return cp ? state_names[cp->state] : "idle";
}

bool ps_control_plane_registered(const ps_control_plane *cp) {
        return cp && cp->registered;
}

static json_t *time_or_null(int64_t ms) {
        return ms > 0 ? json_integer(ms) : json_null();
}

json_t *ps_control_plane_status(const ps_control_plane *cp) {
        uint64_t heartbeats = cp->requests[REQ_HEARTBEAT][1];
        uint64_t failures = cp->requests[REQ_REGISTER][0] + cp->requests[REQ_HEARTBEAT][0] +
                            cp->requests[REQ_DEREGISTER][0];

        return json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I,"
                         " s:I, s:I}",
                         "url", cp->url,
                         "node_id", cp->node_id,
                         "state", state_names[cp->state],
                         "registered", cp->registered,
                         "last_error", cp->last_error ? json_string(cp->last_error) : json_null(),
                         "last_error_at", time_or_null(cp->last_error_at),
                         "last_success_at", time_or_null(cp->last_success_at),
                         "last_heartbeat_at", time_or_null(cp->last_heartbeat_at),
                         "registered_at", time_or_null(cp->registered_at),
                         "next_attempt_at", time_or_null(cp->next_attempt_at),
                         "consecutive_failures", (json_int_t) cp->failures,
                         "heartbeat_interval_ms", (json_int_t) cp->interval_ms,
                         "registrations", (json_int_t) cp->requests[REQ_REGISTER][1],
                         "reregistrations", (json_int_t) cp->reregistrations,
                         "heartbeats", (json_int_t) heartbeats,
                         "failures", (json_int_t) failures);
}

char *ps_control_plane_render_metrics(const ps_control_plane *cp) {
        char *text = NULL;
        size_t len = 0;
        FILE *f;

        if (!cp)
                return NULL;
        f = open_memstream(&text, &len);
        if (!f)
                return NULL;
        fputs("# HELP pool_managerd_control_plane_registered Whether the control plane has "
              "accepted this node (1) or not (0).\n"
              "# TYPE pool_managerd_control_plane_registered gauge\n", f);
        fprintf(f, "pool_managerd_control_plane_registered %d\n", cp->registered ? 1 : 0);
        fputs("# HELP pool_managerd_control_plane_requests_total Requests to the control plane, "
              "by request and result.\n"
              "# TYPE pool_managerd_control_plane_requests_total counter\n", f);
        for (int k = 0; k < REQ_MAX; k++)
                for (int ok = 1; ok >= 0; ok--)
                        fprintf(f, "pool_managerd_control_plane_requests_total"
                                   "{request=\"%s\",result=\"%s\"} %llu\n",
                                request_names[k], ok ? "ok" : "error",
                                (unsigned long long) cp->requests[k][ok]);
        fputs("# HELP pool_managerd_control_plane_reregistrations_total Registrations again after "
              "a heartbeat was answered 404.\n"
              "# TYPE pool_managerd_control_plane_reregistrations_total counter\n", f);
        fprintf(f, "pool_managerd_control_plane_reregistrations_total %llu\n",
                (unsigned long long) cp->reregistrations);
        fputs("# HELP pool_managerd_control_plane_consecutive_failures Failed control plane "
              "requests since the last success.\n"
              "# TYPE pool_managerd_control_plane_consecutive_failures gauge\n", f);
        fprintf(f, "pool_managerd_control_plane_consecutive_failures %u\n", cp->failures);
        fputs("# HELP pool_managerd_control_plane_last_success_timestamp_seconds When the control "
              "plane last answered a request successfully (0: never).\n"
              "# TYPE pool_managerd_control_plane_last_success_timestamp_seconds gauge\n", f);
        fprintf(f, "pool_managerd_control_plane_last_success_timestamp_seconds %lld.%03lld\n",
                (long long) (cp->last_success_at / 1000), (long long) (cp->last_success_at % 1000));
        if (fclose(f) != 0) {
                free(text);
                return NULL;
        }
        return text;
}
