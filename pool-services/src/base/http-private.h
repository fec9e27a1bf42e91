/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/*
 * A small HTTP client for the control plane and etcd: libcurl's multi
 * socket interface on the daemon's event_base, like the prober, but with
 * a method, a JSON body, a bearer token and the reply body kept. Nothing
 * blocks; callbacks never run inside the call that starts a request.
 *
 * Callers should give IP addresses: a host name may start curl's
 * resolver thread (it does not block the loop, but it is a thread).
 */
typedef struct ps_http ps_http;
typedef struct ps_http_request ps_http_request;

typedef struct ps_http_result {
        bool transport_ok;        /* an HTTP answer came back              */
        long status;              /* its status; 0 without one             */
        const char *body;         /* NUL-terminated, "" when none          */
        size_t body_len;
        const char *error;        /* "connection refused", "HTTP 503", ... */
} ps_http_result;

/* Everything in the result is borrowed for the callback only; the request
 * is freed right after it returns. */
typedef void (*ps_http_fn)(const ps_http_result *result, void *userdata);

ps_http *ps_http_new(struct event_base *base);
/* Cancels every request in flight without calling back. Not from a
 * callback. */
ps_http *ps_http_free(ps_http *http);

/*
 * Starts METHOD url with an optional JSON body (copied; NULL: none) and an
 * optional bearer token (NULL or "": no Authorization header), failing
 * after timeout_ms. 0 and *ret (may be NULL), or a negative errno.
 */
int ps_http_start(ps_http *http, const char *method, const char *url, const char *body,
                  const char *bearer, int64_t timeout_ms, ps_http_fn fn, void *userdata,
                  ps_http_request **ret);

/* Its callback will not run. NULL is a no-op. */
void ps_http_cancel(ps_http_request *req);

unsigned ps_http_in_flight(const ps_http *http);
