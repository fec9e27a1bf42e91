/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "base/strbuf.h"

struct event_base;

/*
 * libcurl's multi socket interface on our event_base (the pattern of curl's
 * docs/examples/hiperfifo.c), shared by the prober and the control-plane
 * HTTP client: curl says which sockets to watch and when to wake it, every
 * readiness and timeout goes back through curl_multi_socket_action(), and
 * finished transfers are collected with curl_multi_info_read() after each
 * call. Nothing blocks and no thread is started, as long as callers give IP
 * addresses (a host name may start curl's resolver thread).
 *
 * Re-entrancy: the done function runs only after curl_multi_socket_action()
 * has returned, so it may add transfers and remove others (removing a
 * handle also drops its queued completion). It must not free the loop.
 */
typedef struct ps_curl_loop ps_curl_loop;

/* A finished transfer: priv is its easy handle's CURLOPT_PRIVATE, code
 * curl's result. The handle is still on the loop: the callee removes it. */
typedef void (*ps_curl_done_fn)(void *priv, CURLcode code);

ps_curl_loop *ps_curl_loop_new(struct event_base *base, ps_curl_done_fn done);
/* Every handle must have been removed first. Not from the done function. */
ps_curl_loop *ps_curl_loop_free(ps_curl_loop *loop);

/* True while the done function may be running. */
bool ps_curl_loop_dispatching(const ps_curl_loop *loop);

/* Adding only arms curl's timer (at 0 ms, through the loop): the transfer,
 * and so the done function, happen after this call returns. 0, -ENOMEM or
 * -EIO. */
int ps_curl_loop_add(ps_curl_loop *loop, CURL *easy);
/* Takes the handle off the loop and frees it. */
void ps_curl_loop_remove(ps_curl_loop *loop, CURL *easy);

/* A reply body kept (or only counted) up to a limit. */
typedef struct ps_curl_body {
        ps_strbuf text;           /* NUL-terminated; s is NULL while empty or not kept */
        size_t len;               /* bytes received, kept or not */
        size_t max;               /* more fails the transfer (CURLE_WRITE_ERROR) */
        bool keep;                /* false: count the bytes, keep none */
        bool too_big;
} ps_curl_body;

void ps_curl_body_done(ps_curl_body *body);

/*
 * A new easy handle with what every transfer of ours sets: the URL, plain
 * HTTP(S) only (never file:// or anything else a bad setting might name;
 * redirects are not followed), no signals, timeout_ms for connecting and for
 * the whole transfer, the reply into body, and priv for the done function.
 * 0 and *ret, or -ENOMEM or -EINVAL.
 */
int ps_curl_easy_new(const char *url, int64_t timeout_ms, const char *user_agent,
                     ps_curl_body *body, void *priv, CURL **ret);

/* Why a transfer that ended in code (not CURLE_OK) failed: "connection
 * refused", "timed out after 2000 ms", or curl's words with the system
 * error. */
void ps_curl_describe_error(CURL *easy, CURLcode code, int64_t timeout_ms, char *buf,
                            size_t len);
