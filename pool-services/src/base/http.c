/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "base/http-private.h"
#include "base/curl-loop.h"

/*
 * Requests run on a ps_curl_loop (base/curl-loop.h), like the prober's.
 * User callbacks run only after curl has returned.
 */

/* Control planes and etcd answer small JSON documents. */
#define HTTP_BODY_MAX (1024 * 1024)
#define HTTP_USER_AGENT "pool-managerd"
#define HTTP_ERROR_MAX 256

struct ps_http_request {
        ps_http *http;
        CURL *easy;
        struct curl_slist *headers;
        char *body_out;           /* what we send */
        ps_curl_body body;        /* what came back */
        int64_t timeout_ms;
        bool completing;
        ps_http_fn fn;
        void *userdata;
        ps_http_request *prev, *next;
};

struct ps_http {
        ps_curl_loop *loop;
        ps_http_request *requests;
        unsigned n_requests;
};

static void request_unlink(ps_http_request *req) {
        ps_http *http = req->http;

        if (req->prev)
                req->prev->next = req->next;
        else
                http->requests = req->next;
        if (req->next)
                req->next->prev = req->prev;
        req->prev = req->next = NULL;
        http->n_requests--;
}

static void request_destroy(ps_http_request *req) {
        if (req->easy) {
                ps_curl_loop_remove(req->http->loop, req->easy);
                request_unlink(req);
        }
        curl_slist_free_all(req->headers);
        free(req->body_out);
        ps_curl_body_done(&req->body);
        free(req);
}

static void describe(ps_http_request *req, CURLcode code, long status, char *buf, size_t len) {
        if (code == CURLE_OK)
                snprintf(buf, len, "HTTP %ld", status);
        else if (code == CURLE_WRITE_ERROR && req->body.too_big)
                snprintf(buf, len, "reply body over %d bytes", HTTP_BODY_MAX);
        else
                ps_curl_describe_error(req->easy, code, req->timeout_ms, buf, len);
}

static void complete(void *priv, CURLcode code) {
        ps_http_request *req = priv;
        char error[HTTP_ERROR_MAX];
        ps_http_result res = { .body = "" };

        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &res.status);
        describe(req, code, res.status, error, sizeof(error));
        res.transport_ok = code == CURLE_OK;
        if (!res.transport_ok)
                res.status = 0;
        if (res.transport_ok && req->body.text.s) {
                res.body = req->body.text.s;
                res.body_len = req->body.len;
        }
        res.error = error;
        ps_curl_loop_remove(req->http->loop, req->easy);
        req->easy = NULL;
        request_unlink(req);
        req->completing = true;
        req->fn(&res, req->userdata);
        request_destroy(req);
}

ps_http *ps_http_new(struct event_base *base) {
        ps_http *http;

        if (!base)
                return NULL;
        http = calloc(1, sizeof(*http));
        if (!http)
                return NULL;
        http->loop = ps_curl_loop_new(base, complete);
        if (!http->loop) {
                free(http);
                return NULL;
        }
        return http;
}

ps_http *ps_http_free(ps_http *http) {
        if (!http)
                return NULL;
        assert(!ps_curl_loop_dispatching(http->loop));
        while (http->requests)
                request_destroy(http->requests);
        ps_curl_loop_free(http->loop);
        free(http);
        return NULL;
}

static int setup(ps_http_request *req, const char *method, const char *bearer) {
        CURL *e = req->easy;
        CURLcode rc = CURLE_OK;
        struct curl_slist *h;

        h = curl_slist_append(NULL, "Accept: application/json");
        req->headers = h;
        if (h && req->body_out)
                h = curl_slist_append(req->headers, "Content-Type: application/json");
        /* "Expect: 100-continue" would cost a round trip per heartbeat. */
        if (h)
                h = curl_slist_append(req->headers, "Expect:");
        if (h && bearer && bearer[0]) {
                size_t len = strlen("Authorization: Bearer ") + strlen(bearer) + 1;
                char *line = malloc(len);

                if (line) {
                        snprintf(line, len, "Authorization: Bearer %s", bearer);
                        h = curl_slist_append(req->headers, line);
                        explicit_bzero(line, len);
                        free(line);
                } else {
                        h = NULL;
                }
        }
        if (!h)
                return -ENOMEM;

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
        SET(CURLOPT_HTTPHEADER, req->headers);
        SET(CURLOPT_CUSTOMREQUEST, method);
        if (req->body_out) {
                SET(CURLOPT_POSTFIELDS, req->body_out);
                SET(CURLOPT_POSTFIELDSIZE, (long) strlen(req->body_out));
        }
#undef SET
        if (rc == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        return rc == CURLE_OK ? 0 : -EINVAL;
}

int ps_http_start(ps_http *http, const char *method, const char *url, const char *body,
                  const char *bearer, int64_t timeout_ms, ps_http_fn fn, void *userdata,
                  ps_http_request **ret) {
        ps_http_request *req;
        int r;

        if (!http || !method || !url || !fn || timeout_ms <= 0)
                return -EINVAL;
        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->http = http;
        req->fn = fn;
        req->userdata = userdata;
        req->timeout_ms = timeout_ms;
        req->body.max = HTTP_BODY_MAX;
        req->body.keep = true;
        req->body_out = body ? strdup(body) : NULL;
        if (body && !req->body_out) {
                r = -ENOMEM;
                goto fail;
        }
        r = ps_curl_easy_new(url, timeout_ms, HTTP_USER_AGENT, &req->body, req, &req->easy);
        if (r < 0)
                goto fail;
        r = setup(req, method, bearer);
        if (r < 0)
                goto fail;
        r = ps_curl_loop_add(http->loop, req->easy);
        if (r < 0)
                goto fail;
        req->next = http->requests;
        if (req->next)
                req->next->prev = req;
        http->requests = req;
        http->n_requests++;
        if (ret)
                *ret = req;
        return 0;

fail:
        if (req->easy)
                curl_easy_cleanup(req->easy);
        req->easy = NULL;
        curl_slist_free_all(req->headers);
        free(req->body_out);
        free(req);
        return r;
}

void ps_http_cancel(ps_http_request *req) {
        if (!req || req->completing)
                return;
        request_destroy(req);
}

unsigned ps_http_in_flight(const ps_http *http) {
        return http ? http->n_requests : 0;
}
