/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "cloud/http-private.h"

/*
 * The multi socket pattern of lifecycle/probe.c (curl's hiperfifo.c): curl
 * says which sockets to watch and when to wake it, every readiness goes
 * back through curl_multi_socket_action(), and finished transfers are
 * collected with curl_multi_info_read() after each call. User callbacks
 * run only from drain(), after curl has returned.
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
        char *body;               /* what came back */
        size_t body_len, body_cap;
        bool body_too_big;
        int64_t timeout_ms;
        bool completing;
        ps_http_fn fn;
        void *userdata;
        ps_http_request *prev, *next;
};

typedef struct http_sock {
        short kind;
        struct event *ev;
        struct http_sock *prev, *next;
} http_sock;

struct ps_http {
        struct event_base *base;
        CURLM *multi;
        struct event *timer;
        ps_http_request *requests;
        unsigned n_requests;
        http_sock *socks;
        unsigned dispatching;
};

static void check_multi(ps_http *http, curl_socket_t fd, int action);

static void on_sock_event(evutil_socket_t fd, short what, void *userdata) {
        int action = 0;

        if (what & EV_READ)
                action |= CURL_CSELECT_IN;
        if (what & EV_WRITE)
                action |= CURL_CSELECT_OUT;
        check_multi(userdata, fd, action);
}

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        check_multi(userdata, CURL_SOCKET_TIMEOUT, 0);
}

static void sock_free(ps_http *http, http_sock *s) {
        if (!s)
                return;
        if (s->prev)
                s->prev->next = s->next;
        else
                http->socks = s->next;
        if (s->next)
                s->next->prev = s->prev;
        /* The fd number may be reused at once. */
        event_free(s->ev);
        free(s);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        ps_http *http = userp;
        http_sock *s = socketp;
        short kind;

        (void) easy;
        if (what == CURL_POLL_REMOVE) {
                sock_free(http, s);
                return 0;
        }
        kind = EV_PERSIST;
        if (what & CURL_POLL_IN)
                kind |= EV_READ;
        if (what & CURL_POLL_OUT)
                kind |= EV_WRITE;
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                s->ev = event_new(http->base, fd, kind, on_sock_event, http);
                if (!s->ev) {
                        free(s);
                        return -1;
                }
                s->kind = kind;
                s->next = http->socks;
                if (s->next)
                        s->next->prev = s;
                http->socks = s;
                if (curl_multi_assign(http->multi, fd, s) != CURLM_OK) {
                        sock_free(http, s);
                        return -1;
                }
        } else if (s->kind != kind) {
                event_del(s->ev);
                if (event_assign(s->ev, http->base, fd, kind, on_sock_event, http) < 0)
                        return -1;
                s->kind = kind;
        } else {
                return 0;
        }
        return event_add(s->ev, NULL) < 0 ? -1 : 0;
}

/* -1: delete the timer; 0: soon, through the loop (never re-enter curl). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        ps_http *http = userp;
        struct timeval tv;

        (void) multi;
        if (timeout_ms < 0) {
                evtimer_del(http->timer);
                return 0;
        }
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        return evtimer_add(http->timer, &tv) < 0 ? -1 : 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
        ps_http_request *req = userdata;
        size_t n = size * nmemb;

        if (n > HTTP_BODY_MAX - req->body_len) {
                req->body_too_big = true;
                return 0;
        }
        if (req->body_len + n + 1 > req->body_cap) {
                size_t cap = req->body_cap ? req->body_cap : 1024;
                char *b;

                while (cap < req->body_len + n + 1)
                        cap *= 2;
                b = realloc(req->body, cap);
                if (!b)
                        return 0;
                req->body = b;
                req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, data, n);
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return n;
}

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
                curl_multi_remove_handle(req->http->multi, req->easy);
                curl_easy_cleanup(req->easy);
                request_unlink(req);
        }
        curl_slist_free_all(req->headers);
        free(req->body_out);
        free(req->body);
        free(req);
}

static void describe(ps_http_request *req, CURLcode code, long status, char *buf, size_t len) {
        long os_errno = 0;

        if (code == CURLE_OK) {
                snprintf(buf, len, "HTTP %ld", status);
                return;
        }
        if (code == CURLE_OPERATION_TIMEDOUT) {
                snprintf(buf, len, "timed out after %lld ms", (long long) req->timeout_ms);
                return;
        }
        if (code == CURLE_WRITE_ERROR && req->body_too_big) {
                snprintf(buf, len, "reply body over %d bytes", HTTP_BODY_MAX);
                return;
        }
        curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &os_errno);
        if (code == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED)
                snprintf(buf, len, "connection refused");
        else if (os_errno != 0)
                snprintf(buf, len, "%s (%s)", curl_easy_strerror(code), strerror((int) os_errno));
        else
                snprintf(buf, len, "%s", curl_easy_strerror(code));
}

static void complete(ps_http_request *req, CURLcode code) {
        char error[HTTP_ERROR_MAX];
        ps_http_result res = { .body = "" };

        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &res.status);
        describe(req, code, res.status, error, sizeof(error));
        res.transport_ok = code == CURLE_OK;
        if (!res.transport_ok)
                res.status = 0;
        if (res.transport_ok && req->body) {
                res.body = req->body;
                res.body_len = req->body_len;
        }
        res.error = error;
        curl_multi_remove_handle(req->http->multi, req->easy);
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
        request_unlink(req);
        req->completing = true;
        req->fn(&res, req->userdata);
        request_destroy(req);
}

static void drain(ps_http *http) {
        CURLMsg *msg;
        int left;

        http->dispatching++;
        while ((msg = curl_multi_info_read(http->multi, &left))) {
                char *priv = NULL;
                CURLcode code;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                code = msg->data.result;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
                if (priv)
                        complete((ps_http_request *) (void *) priv, code);
        }
        http->dispatching--;
}

static void check_multi(ps_http *http, curl_socket_t fd, int action) {
        int running;

        curl_multi_socket_action(http->multi, fd, action, &running);
        drain(http);
}

ps_http *ps_http_new(struct event_base *base) {
        ps_http *http;

        if (!base)
                return NULL;
        http = calloc(1, sizeof(*http));
        if (!http)
                return NULL;
        /* curl counts its global users itself (7.88). */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                free(http);
                return NULL;
        }
        http->base = base;
        http->timer = evtimer_new(base, on_timer, http);
        http->multi = curl_multi_init();
        if (!http->timer || !http->multi ||
            curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http) != CURLM_OK ||
            curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http) != CURLM_OK)
                return ps_http_free(http);
        return http;
}

ps_http *ps_http_free(ps_http *http) {
        if (!http)
                return NULL;
        assert(http->dispatching == 0);
        while (http->requests)
                request_destroy(http->requests);
        if (http->multi)
                curl_multi_cleanup(http->multi);
        while (http->socks)
                sock_free(http, http->socks);
        if (http->timer)
                event_free(http->timer);
        free(http);
        curl_global_cleanup();
        return NULL;
}

static int setup(ps_http_request *req, const char *method, const char *url, const char *bearer) {
        long timeout = req->timeout_ms > LONG_MAX ? LONG_MAX : (long) req->timeout_ms;
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
        SET(CURLOPT_URL, url);
        SET(CURLOPT_PRIVATE, (void *) req);
        SET(CURLOPT_TIMEOUT_MS, timeout);
        SET(CURLOPT_CONNECTTIMEOUT_MS, timeout);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_USERAGENT, HTTP_USER_AGENT);
        SET(CURLOPT_HTTPHEADER, req->headers);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, (void *) req);
        SET(CURLOPT_CUSTOMREQUEST, method);
        if (req->body_out) {
                SET(CURLOPT_POSTFIELDS, req->body_out);
                SET(CURLOPT_POSTFIELDSIZE, (long) strlen(req->body_out));
        }
#if LIBCURL_VERSION_NUM >= 0x075500
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
        SET(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#undef SET
        if (rc == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        return rc == CURLE_OK ? 0 : -EINVAL;
}

int ps_http_start(ps_http *http, const char *method, const char *url, const char *body,
                  const char *bearer, int64_t timeout_ms, ps_http_fn fn, void *userdata,
                  ps_http_request **ret) {
        ps_http_request *req;
        CURLMcode mrc;
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
        req->body_out = body ? strdup(body) : NULL;
        req->easy = curl_easy_init();
        if (!req->easy || (body && !req->body_out)) {
                r = -ENOMEM;
                goto fail;
        }
        r = setup(req, method, url, bearer);
        if (r < 0)
                goto fail;
        mrc = curl_multi_add_handle(http->multi, req->easy);
        if (mrc != CURLM_OK) {
                r = mrc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
                goto fail;
        }
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
