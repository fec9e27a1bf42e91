/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct event_base;

/*
 * HTTP health probes through libcurl's multi interface, driven by the event
 * loop's sockets and timers (never curl_easy_perform). One prober serves
 * every engine of the daemon.
 */
typedef struct ps_prober ps_prober;
typedef struct ps_probe ps_probe;

typedef enum ps_probe_result {
        PS_PROBE_OK,              /* 2xx                                    */
        PS_PROBE_FAILED,          /* other status, refused, reset, ...       */
        PS_PROBE_TIMEOUT,         /* no complete answer within the timeout   */
        PS_PROBE_RESULT_MAX,
} ps_probe_result;

const char *ps_probe_result_to_string(ps_probe_result r);

/* detail: "HTTP 503", "connection refused", "timed out after 1000 ms";
 * borrowed for the callback. The probe object is freed right after the
 * callback returns. */
typedef void (*ps_probe_fn)(ps_probe_result result, long http_status,
                            const char *detail, void *userdata);

ps_prober *ps_prober_new(struct event_base *base);
/* Cancels every probe in flight without calling their callbacks. */
ps_prober *ps_prober_free(ps_prober *prober);

/*
 * Starts GET url with a total timeout. No proxy, no signals, no connection
 * reuse (a restarted engine must not be judged by a stale keep-alive
 * socket). 0 and *ret (may be NULL when the caller never cancels), or a
 * negative errno. The callback never runs inside this call.
 */
int ps_prober_get(ps_prober *prober, const char *url, int64_t timeout_ms,
                  ps_probe_fn fn, void *userdata, ps_probe **ret);

/*
 * The same transfer, keeping the body: a 2xx answer's body (at most
 * body_max bytes; a longer one fails the fetch with "... a body over N
 * bytes") reaches the callback NUL-terminated, borrowed for the call.
 * Other results get "" and 0. Used to scrape engines' /metrics.
 */
typedef void (*ps_fetch_fn)(ps_probe_result result, long http_status, const char *detail,
                            const char *body, size_t body_len, void *userdata);

int ps_prober_fetch(ps_prober *prober, const char *url, int64_t timeout_ms, size_t body_max,
                    ps_fetch_fn fn, void *userdata, ps_probe **ret);

/* Cancels a probe in flight: its callback will not run. */
void ps_probe_cancel(ps_probe *probe);

/* Probes in flight (for tests and metrics). */
unsigned ps_prober_in_flight(const ps_prober *prober);
