/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "pool-services/probe.h"

/*
 * libcurl's multi_socket interface on our event_base (the pattern of curl's
 * docs/examples/hiperfifo.c): curl tells us which sockets to watch and when
 * to wake it; we hand every readiness and timeout back with
 * curl_multi_socket_action() and then collect finished transfers with
 * curl_multi_info_read(). Nothing blocks and no thread is started, as long
 * as callers probe IP addresses (a host name may start curl's resolver
 * thread; the daemon builds probe URLs from the engine's bind address).
 *
 * Re-entrancy: user callbacks run only from drain(), after
 * curl_multi_socket_action() has returned, so they may start probes
 * (curl_multi_add_handle) and cancel others (curl_multi_remove_handle,
 * which also drops that handle's queued completion message). They must not
 * free the prober. A probe is off the in-flight list and its easy handle
 * is gone by the time its callback runs; cancelling it there is a no-op.
 */

/* A health answer is a few bytes; an engine that streams more is not
 * healthy, and we do not let it make us read forever. */
#define PROBE_BODY_MAX (64 * 1024)
#define PROBE_USER_AGENT "pool-managerd-probe"
#define PROBE_DETAIL_MAX 256

struct ps_probe {
        ps_prober *prober;
        CURL *easy;
        ps_probe_fn fn;
        ps_fetch_fn fetch_fn;     /* a fetch keeps the body; fn is NULL */
        void *userdata;
        int64_t timeout_ms;
        size_t body_bytes;
        size_t body_max;
        char *body;               /* fetches only; NUL-terminated */
        bool body_too_big;
        bool body_oom;
        bool completing;          /* in its callback: cancel is a no-op */
        ps_probe *prev, *next;
};

/* One per socket curl asked us to watch, attached with curl_multi_assign(). */
typedef struct probe_sock {
        short kind;
        struct event *ev;
        struct probe_sock *prev, *next;
} probe_sock;

struct ps_prober {
        struct event_base *base;
        CURLM *multi;
        struct event *timer;
        ps_probe *probes;         /* in flight */
        unsigned n_probes;
        probe_sock *socks;
        unsigned dispatching;     /* > 0 while user callbacks may run */
};

/* curl_global_init/cleanup are process-wide and not thread-safe in curl
 * 7.88; the daemon is single-threaded. Counting users lets the last
 * ps_prober_free() release curl's globals, so leak checkers stay quiet. */
static unsigned curl_users;

static const char *const probe_result_table[PS_PROBE_RESULT_MAX] = {
        [PS_PROBE_OK]      = "ok",
        [PS_PROBE_FAILED]  = "failed",
        [PS_PROBE_TIMEOUT] = "timeout",
};

const char *ps_probe_result_to_string(ps_probe_result r) {
        if ((unsigned) r >= PS_PROBE_RESULT_MAX)
                return NULL;
        return probe_result_table[r];
}

/* ---- curl's requests: sockets and the timer ------------------------------ */

static void check_multi(ps_prober *prober, curl_socket_t fd, int action);

static void on_sock_event(evutil_socket_t fd, short what, void *userdata) {
        ps_prober *prober = userdata;
        int action = 0;

        /* The probe_sock may be freed inside socket_action: use only fd. */
        if (what & EV_READ)
                action |= CURL_CSELECT_IN;
        if (what & EV_WRITE)
                action |= CURL_CSELECT_OUT;
        check_multi(prober, fd, action);
}

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        check_multi(userdata, CURL_SOCKET_TIMEOUT, 0);
}

static void sock_free(ps_prober *prober, probe_sock *s) {
        if (!s)
                return;
        if (s->prev)
                s->prev->next = s->next;
        else
                prober->socks = s->next;
        if (s->next)
                s->next->prev = s->prev;
        /* The fd may be reused at once for another socket: the event must go
         * now, not when curl next mentions the number. */
        event_free(s->ev);
        free(s);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        ps_prober *prober = userp;
        probe_sock *s = socketp;
        short kind;

        (void) easy;
        if (what == CURL_POLL_REMOVE) {
                /* curl forgets the socket (and our pointer) after this. */
                sock_free(prober, s);
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
                s->ev = event_new(prober->base, fd, kind, on_sock_event, prober);
                if (!s->ev) {
                        free(s);
                        return -1;
                }
                s->kind = kind;
                s->next = prober->socks;
                if (s->next)
                        s->next->prev = s;
                prober->socks = s;
                if (curl_multi_assign(prober->multi, fd, s) != CURLM_OK) {
                        sock_free(prober, s);
                        return -1;
                }
        } else if (s->kind != kind) {
                event_del(s->ev);
                if (event_assign(s->ev, prober->base, fd, kind, on_sock_event, prober) < 0)
                        return -1;
                s->kind = kind;
        } else {
                return 0;
        }
        return event_add(s->ev, NULL) < 0 ? -1 : 0;
}

/* -1 deletes the timer; 0 means "as soon as possible", which must still go
 * through the loop: calling curl back from here would re-enter it. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        ps_prober *prober = userp;
        struct timeval tv;

        (void) multi;
        if (timeout_ms < 0) {
                evtimer_del(prober->timer);
                return 0;
        }
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        return evtimer_add(prober->timer, &tv) < 0 ? -1 : 0;
}

/* ---- probes --------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
        ps_probe *p = userdata;
        size_t n = size * nmemb;

        if (n > p->body_max - p->body_bytes) {
                p->body_too_big = true;
                return 0;         /* anything but n aborts the transfer */
        }
        if (p->fetch_fn) {
                char *grown = realloc(p->body, p->body_bytes + n + 1);

                if (!grown) {
                        p->body_oom = true;
                        return 0;
                }
                p->body = grown;
                memcpy(p->body + p->body_bytes, data, n);
                p->body[p->body_bytes + n] = '\0';
        }
        p->body_bytes += n;
        return n;
}

static void probe_unlink(ps_probe *p) {
        ps_prober *prober = p->prober;

        if (p->prev)
                p->prev->next = p->next;
        else
                prober->probes = p->next;
        if (p->next)
                p->next->prev = p->prev;
        p->prev = p->next = NULL;
        prober->n_probes--;
}

static void probe_free(ps_probe *p) {
        free(p->body);
        free(p);
}

/* Takes the probe off curl and off the list; frees nothing else. */
static void probe_detach(ps_probe *p) {
        curl_multi_remove_handle(p->prober->multi, p->easy);
        curl_easy_cleanup(p->easy);
        p->easy = NULL;
        probe_unlink(p);
}

static ps_probe_result classify(ps_probe *p, CURLcode code, char *detail, size_t size,
                                long *http_status) {
        long status = 0;
        long os_errno = 0;

        curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
        *http_status = status;

        if (code == CURLE_OK) {
                snprintf(detail, size, "HTTP %ld", status);
                return status >= 200 && status <= 299 ? PS_PROBE_OK : PS_PROBE_FAILED;
        }
        if (code == CURLE_OPERATION_TIMEDOUT) {
                snprintf(detail, size, "timed out after %lld ms", (long long) p->timeout_ms);
                return PS_PROBE_TIMEOUT;
        }
        if (code == CURLE_WRITE_ERROR && p->body_too_big) {
                snprintf(detail, size, "HTTP %ld with a body over %zu bytes", status,
                         p->body_max);
                return PS_PROBE_FAILED;
        }
        if (code == CURLE_WRITE_ERROR && p->body_oom) {
                snprintf(detail, size, "out of memory reading the body");
                return PS_PROBE_FAILED;
        }

        curl_easy_getinfo(p->easy, CURLINFO_OS_ERRNO, &os_errno);
        if (code == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED)
                snprintf(detail, size, "connection refused");
        else if (os_errno != 0)
                snprintf(detail, size, "%s (%s)", curl_easy_strerror(code),
                         strerror((int) os_errno));
        else
                snprintf(detail, size, "%s", curl_easy_strerror(code));
        return PS_PROBE_FAILED;
}

static void complete(ps_probe *p, CURLcode code) {
        char detail[PROBE_DETAIL_MAX];
        ps_probe_result result;
        long http_status;

        result = classify(p, code, detail, sizeof(detail), &http_status);
        probe_detach(p);
        p->completing = true;
        if (p->fetch_fn)
                p->fetch_fn(result, http_status, detail,
                            result == PS_PROBE_OK && p->body ? p->body : "",
                            result == PS_PROBE_OK ? p->body_bytes : 0, p->userdata);
        else
                p->fn(result, http_status, detail, p->userdata);
        probe_free(p);
}

/* Every completed transfer, after every socket_action: a finished probe
 * left in curl's queue would never call back. */
static void drain(ps_prober *prober) {
        CURLMsg *msg;
        int left;

        prober->dispatching++;
        while ((msg = curl_multi_info_read(prober->multi, &left))) {
                char *priv = NULL;
                CURLcode code;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                /* msg dies with curl_multi_remove_handle(): copy first. */
                code = msg->data.result;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
                if (priv)
                        complete((ps_probe *) (void *) priv, code);
        }
        prober->dispatching--;
}

static void check_multi(ps_prober *prober, curl_socket_t fd, int action) {
        int running;

        curl_multi_socket_action(prober->multi, fd, action, &running);
        drain(prober);
}

/* ---- public API ------------------------------------------------------------ */

ps_prober *ps_prober_new(struct event_base *base) {
        ps_prober *prober;

        if (!base)
                return NULL;
        prober = calloc(1, sizeof(*prober));
        if (!prober)
                return NULL;
        if (curl_users == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                free(prober);
                return NULL;
        }
        curl_users++;

        prober->base = base;
        prober->timer = evtimer_new(base, on_timer, prober);
        if (!prober->timer)
                goto fail;
        prober->multi = curl_multi_init();
        if (!prober->multi)
                goto fail;
        if (curl_multi_setopt(prober->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(prober->multi, CURLMOPT_SOCKETDATA, prober) != CURLM_OK ||
            curl_multi_setopt(prober->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(prober->multi, CURLMOPT_TIMERDATA, prober) != CURLM_OK)
                goto fail;
        return prober;

fail:
        return ps_prober_free(prober);
}

ps_prober *ps_prober_free(ps_prober *prober) {
        if (!prober)
                return NULL;
        /* Freeing the prober from one of its own callbacks would pull the
         * multi handle out from under drain(). */
        assert(prober->dispatching == 0);

        while (prober->probes) {
                ps_probe *p = prober->probes;

                probe_detach(p);
                probe_free(p);
        }
        /* curl_multi_cleanup may still close sockets and move the timer: the
         * callbacks' state stays valid until it returns. */
        if (prober->multi)
                curl_multi_cleanup(prober->multi);
        while (prober->socks)
                sock_free(prober, prober->socks);
        if (prober->timer)
                event_free(prober->timer);
        free(prober);

        if (--curl_users == 0)
                curl_global_cleanup();
        return NULL;
}

static int curl_to_errno(CURLcode code) {
        return code == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

static int probe_setup(ps_probe *p, const char *url) {
        long timeout = p->timeout_ms > LONG_MAX ? LONG_MAX : (long) p->timeout_ms;
        CURL *e = p->easy;
        CURLcode rc = CURLE_OK;

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
        SET(CURLOPT_URL, url);
        SET(CURLOPT_PRIVATE, (void *) p);
        SET(CURLOPT_TIMEOUT_MS, timeout);
        SET(CURLOPT_CONNECTTIMEOUT_MS, timeout);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_NOPROXY, "*");
        SET(CURLOPT_FORBID_REUSE, 1L);
        SET(CURLOPT_FRESH_CONNECT, 1L);
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        SET(CURLOPT_USERAGENT, PROBE_USER_AGENT);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, (void *) p);
        SET(CURLOPT_HTTPGET, 1L);
        /* A health URL is plain HTTP(S); never file:// or anything else a
         * bad spec might name. Redirects are not followed (a 3xx fails). */
#if LIBCURL_VERSION_NUM >= 0x075500
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
        SET(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#undef SET
        return rc == CURLE_OK ? 0 : curl_to_errno(rc);
}

static int probe_start(ps_prober *prober, ps_probe *p, const char *url, ps_probe **ret) {
        CURLMcode mrc;
        int r;

        p->prober = prober;
        p->easy = curl_easy_init();
        if (!p->easy) {
                free(p);
                return -ENOMEM;
        }
        r = probe_setup(p, url);
        if (r < 0) {
                curl_easy_cleanup(p->easy);
                free(p);
                return r;
        }
        /* Adding only arms curl's timer (at 0 ms, through the loop): the
         * transfer, and so the callback, happen after this call returns. */
        mrc = curl_multi_add_handle(prober->multi, p->easy);
        if (mrc != CURLM_OK) {
                curl_easy_cleanup(p->easy);
                free(p);
                return mrc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
        }
        p->next = prober->probes;
        if (p->next)
                p->next->prev = p;
        prober->probes = p;
        prober->n_probes++;

        if (ret)
                *ret = p;
        return 0;
}

int ps_prober_get(ps_prober *prober, const char *url, int64_t timeout_ms,
                  ps_probe_fn fn, void *userdata, ps_probe **ret) {
        ps_probe *p;

        if (!prober || !url || !fn || timeout_ms <= 0)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->fn = fn;
        p->userdata = userdata;
        p->timeout_ms = timeout_ms;
        p->body_max = PROBE_BODY_MAX;
        return probe_start(prober, p, url, ret);
}

int ps_prober_fetch(ps_prober *prober, const char *url, int64_t timeout_ms, size_t body_max,
                    ps_fetch_fn fn, void *userdata, ps_probe **ret) {
        ps_probe *p;

        if (!prober || !url || !fn || timeout_ms <= 0 || body_max == 0 || body_max >= SIZE_MAX / 2)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->fetch_fn = fn;
        p->userdata = userdata;
        p->timeout_ms = timeout_ms;
        p->body_max = body_max;
        return probe_start(prober, p, url, ret);
}

void ps_probe_cancel(ps_probe *probe) {
        if (!probe || probe->completing)
                return;
        probe_detach(probe);
        probe_free(probe);
}

unsigned ps_prober_in_flight(const ps_prober *prober) {
        return prober ? prober->n_probes : 0;
}
