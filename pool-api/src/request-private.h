/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One request while its handler runs, and the ways to answer it. Every
 * error body is {"error": "<human message>", "code": "<MACHINE_CODE>"},
 * and the code decides the HTTP status through the one table in reply.c.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/http.h>
#include <jansson.h>

#include "pool-api/server.h"
#include "router-private.h"

/* docs/api.md lists every code with its status. */
typedef enum pa_code {
        PA_CODE_BAD_REQUEST,          /* 400 malformed path or query         */
        PA_CODE_INVALID_JSON,         /* 400 body is not a JSON object       */
        PA_CODE_INVALID_FIELD,        /* 400 a field is missing or wrong     */
        PA_CODE_UNAUTHORIZED,         /* 401 missing or wrong bearer token   */
        PA_CODE_BINARY_NOT_ALLOWED,   /* 403 outside engines.allow           */
        PA_CODE_MODEL_NOT_ALLOWED,    /* 403 a model outside models.allow    */
        PA_CODE_READ_ONLY,            /* 403 a change over TCP, no token     */
        PA_CODE_NOT_FOUND,            /* 404 no route                        */
        PA_CODE_POOL_NOT_FOUND,       /* 404 no such pool                    */
        PA_CODE_LEASE_NOT_FOUND,      /* 404 no such lease (or it ended)     */
        PA_CODE_METHOD_NOT_ALLOWED,   /* 405 route exists, method does not   */
        PA_CODE_CONFLICT,             /* 409 not possible in this state      */
        PA_CODE_NOT_RUNNING,          /* 409 nothing to act on               */
        PA_CODE_BREAKER_OPEN,         /* 409 the breaker refuses a start     */
        PA_CODE_DRAINING,             /* 409 the pool drains: no new leases  */
        PA_CODE_DRAIN_TIMEOUT,        /* 409 a reload's drain ran out        */
        PA_CODE_STAGE_FAILED,         /* 422 the new model cannot be staged  */
        PA_CODE_CONFIG_INVALID,       /* 422 a configuration reload refused  */
        PA_CODE_NO_FREE_SLOT,         /* 429 every slot is leased            */
        PA_CODE_INTERNAL,             /* 500                                 */
        PA_CODE_PRELOAD_FAILED,       /* 500 the engine did not come up      */
        PA_CODE_HEALTH_CHECK_FAILED,  /* 500 ... it never answered healthy   */
        PA_CODE_RELOAD_FAILED,        /* 500 the new engine failed; rolled back */
        PA_CODE_SERVICE_UNAVAILABLE,  /* 503 no backend wired                */
        PA_CODE_NOT_READY,            /* 503 no replica of the pool serves   */
        PA_CODE_GPU_ONLY,             /* 503 gpu.require and no GPU          */
        PA_CODE_PREFLIGHT_FAILED,     /* 503 a preflight check refused       */
        PA_CODE_MAX,
} pa_code;

/* "NOT_FOUND"...; NULL when out of range. */
const char *pa_code_to_string(pa_code code);
/* 404...; 500 when out of range. */
int pa_code_to_status(pa_code code);
/* The code for a pool-services outcome: PS_E_* (positive) or a negative
 * errno (INTERNAL). */
pa_code pa_code_from_services(int rc);

typedef struct pa_request {
        struct evhttp_request *req;     /* borrowed from evhttp; NULL once a
                                           deferred request's client is gone */
        pa_server *server;
        enum evhttp_cmd_type method;
        const char *raw_path;           /* as the client sent it           */
        const char *query;              /* raw query string, or NULL       */
        const char *correlation_id;     /* NULL when absent or unusable    */
        pa_params params;
        int64_t started_ms;             /* monotonic                       */
        int status;                     /* 0 until a reply has been sent   */
        bool deferred;                  /* pa_request_defer() took it over */
        struct pa_deferred *deferral;   /* the one that holds this copy     */
        bool local;                     /* came through the Unix socket    */
} pa_request;

/* What the routes serve (registry, inventory, config, metrics), or NULL
 * while the server is being freed. Members may be NULL. */
const pa_backend *pa_request_backend(const pa_request *r);
struct event_base *pa_request_base(const pa_request *r);

/* A request about to start an engine: when the daemon runs as root and
 * engines.user is not set, one warning line says the engine runs as root. */
void pa_request_warn_root_engines(const pa_request *r);
/* The snapshot cache and the stamp a body cached now gets; NULL when the
 * backend does not count events (no caching). */
struct pa_snapshot_cache;
struct pa_snapshot_stamp;
struct pa_snapshot_cache *pa_request_snapshots(const pa_request *r, struct pa_snapshot_stamp *stamp);

/*
 * Replies wait for the state store: while the turn's changes are not yet
 * committed, a reply (a read too) is kept until they are, so nothing the
 * API said is taken back by a crash. pa_request_hold() takes the reply
 * (content_type NULL: a 204) and says true when it will be sent after the
 * commit; false: send it now. pa_reply_send_now() sends without waiting.
 */
bool pa_request_hold(pa_request *r, int status, const char *content_type,
                     const char *body, size_t len);
void pa_reply_send_now(pa_request *r, int status, const char *content_type,
                       const char *body, size_t len);

/* Sends body (stolen, may be NULL: then a 500) as application/json. */
void pa_reply_json(pa_request *r, int status, json_t *body);

/* 204: no body. */
void pa_reply_no_content(pa_request *r);

/* Sends text (borrowed) with the given Content-Type. */
void pa_reply_text(pa_request *r, int status, const char *content_type,
                   const char *text, size_t len);

/* Sends the error body for code with a printf-style message. */
void pa_reply_error(pa_request *r, pa_code code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void pa_reply_errorv(pa_request *r, pa_code code, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

/*
 * A reply that waits (a preload that takes a minute) without blocking the
 * loop. pa_request_defer() takes the request over from its handler: the
 * handler returns without answering, and whoever holds the pa_deferred
 * answers later, exactly once, through pa_deferred_reply_*(), which also
 * frees it. The wait must be bounded by the caller (a preload is, by the
 * replica's startup timeout).
 *
 * The pa_deferred outlives both the client and the server: a client that
 * went away makes the reply a no-op, and after pa_server_free() the
 * deferred is an orphan whose reply only frees it (pa_deferred_backend()
 * says NULL then, so the callback must not touch the backend).
 *
 * NULL on OOM; the handler then still owns r and answers it.
 */
typedef struct pa_deferred pa_deferred;

pa_deferred *pa_request_defer(pa_request *r);
/* NULL once the server is gone. */
const pa_backend *pa_deferred_backend(const pa_deferred *d);
void pa_deferred_reply_json(pa_deferred *d, int status, json_t *body);
void pa_deferred_reply_error(pa_deferred *d, pa_code code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
