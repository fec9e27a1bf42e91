/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "base/curl-loop.h"

/* One per socket curl asked us to watch, attached with curl_multi_assign(). */
typedef struct curl_sock {
        short kind;
        struct event *ev;
        struct curl_sock *prev, *next;
} curl_sock;

struct ps_curl_loop {
        struct event_base *base;
        CURLM *multi;
        struct event *timer;
        curl_sock *socks;
        ps_curl_done_fn done;
        unsigned dispatching;     /* > 0 while done may run */
};

/* ---- curl's requests: sockets and the timer ------------------------------ */

static void check_multi(ps_curl_loop *loop, curl_socket_t fd, int action);

static void on_sock_event(evutil_socket_t fd, short what, void *userdata) {
        int action = 0;

        /* The curl_sock may be freed inside socket_action: use only fd. */
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

static void sock_free(ps_curl_loop *loop, curl_sock *s) {
        if (!s)
                return;
        if (s->prev)
                s->prev->next = s->next;
        else
                loop->socks = s->next;
        if (s->next)
                s->next->prev = s->prev;
        /* The fd may be reused at once for another socket: the event must go
         * now, not when curl next mentions the number. */
        event_free(s->ev);
        free(s);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        ps_curl_loop *loop = userp;
        curl_sock *s = socketp;
        short kind;

        (void) easy;
        if (what == CURL_POLL_REMOVE) {
                /* curl forgets the socket (and our pointer) after this. */
                sock_free(loop, s);
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
                s->ev = event_new(loop->base, fd, kind, on_sock_event, loop);
                if (!s->ev) {
                        free(s);
                        return -1;
                }
                s->kind = kind;
                s->next = loop->socks;
                if (s->next)
                        s->next->prev = s;
                loop->socks = s;
                if (curl_multi_assign(loop->multi, fd, s) != CURLM_OK) {
                        sock_free(loop, s);
                        return -1;
                }
        } else if (s->kind != kind) {
                event_del(s->ev);
                if (event_assign(s->ev, loop->base, fd, kind, on_sock_event, loop) < 0)
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
        ps_curl_loop *loop = userp;
        struct timeval tv;

        (void) multi;
        if (timeout_ms < 0) {
                evtimer_del(loop->timer);
                return 0;
        }
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        return evtimer_add(loop->timer, &tv) < 0 ? -1 : 0;
}

/* Every completed transfer, after every socket_action: a finished one left
 * in curl's queue would never call back. */
static void drain(ps_curl_loop *loop) {
        CURLMsg *msg;
        int left;

        loop->dispatching++;
        while ((msg = curl_multi_info_read(loop->multi, &left))) {
                char *priv = NULL;
                CURLcode code;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                /* msg dies with curl_multi_remove_handle(): copy first. */
                code = msg->data.result;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
                if (priv)
                        loop->done(priv, code);
        }
        loop->dispatching--;
}

static void check_multi(ps_curl_loop *loop, curl_socket_t fd, int action) {
        int running;

        curl_multi_socket_action(loop->multi, fd, action, &running);
        drain(loop);
}

/* ---- the loop -------------------------------------------------------------- */

ps_curl_loop *ps_curl_loop_new(struct event_base *base, ps_curl_done_fn done) {
        ps_curl_loop *loop;

        if (!base || !done)
                return NULL;
        loop = calloc(1, sizeof(*loop));
        if (!loop)
                return NULL;
        /* curl counts its global users itself, so the last free releases
         * its globals and leak checkers stay quiet. Process-wide: the
         * daemon is single-threaded. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                free(loop);
                return NULL;
        }
        loop->base = base;
        loop->done = done;
        loop->timer = evtimer_new(base, on_timer, loop);
        loop->multi = curl_multi_init();
        if (!loop->timer || !loop->multi ||
            curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop) != CURLM_OK ||
            curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop) != CURLM_OK)
                return ps_curl_loop_free(loop);
        return loop;
}

ps_curl_loop *ps_curl_loop_free(ps_curl_loop *loop) {
        if (!loop)
                return NULL;
        /* Freeing the loop from the done function would pull the multi
         * handle out from under drain(). */
        assert(loop->dispatching == 0);
        /* curl_multi_cleanup may still close sockets and move the timer: the
         * callbacks' state stays valid until it returns. */
        if (loop->multi)
                curl_multi_cleanup(loop->multi);
        while (loop->socks)
                sock_free(loop, loop->socks);
        if (loop->timer)
                event_free(loop->timer);
        free(loop);
        curl_global_cleanup();
        return NULL;
}

bool ps_curl_loop_dispatching(const ps_curl_loop *loop) {
        return loop && loop->dispatching > 0;
}

int ps_curl_loop_add(ps_curl_loop *loop, CURL *easy) {
        CURLMcode mrc = curl_multi_add_handle(loop->multi, easy);

        if (mrc == CURLM_OK)
                return 0;
        return mrc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

void ps_curl_loop_remove(ps_curl_loop *loop, CURL *easy) {
        curl_multi_remove_handle(loop->multi, easy);
        curl_easy_cleanup(easy);
}

/* ---- transfers ------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
        ps_curl_body *body = userdata;
        size_t n = size * nmemb;

        if (n > body->max - body->len) {
                body->too_big = true;
                return 0;         /* anything but n aborts the transfer */
        }
        if (body->keep) {
                ps_strbuf_add(&body->text, data, n);
                if (body->text.oom)
                        return 0;
        }
        body->len += n;
        return n;
}

void ps_curl_body_done(ps_curl_body *body) {
        free(body->text.s);
        body->text = (ps_strbuf) { 0 };
        body->len = 0;
}

int ps_curl_easy_new(const char *url, int64_t timeout_ms, const char *user_agent,
                     ps_curl_body *body, void *priv, CURL **ret) {
        long timeout = timeout_ms > LONG_MAX ? LONG_MAX : (long) timeout_ms;
        CURLcode rc = CURLE_OK;
        CURL *e = curl_easy_init();

        if (!e)
                return -ENOMEM;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
        SET(CURLOPT_URL, url);
        SET(CURLOPT_PRIVATE, priv);
        SET(CURLOPT_TIMEOUT_MS, timeout);
        SET(CURLOPT_CONNECTTIMEOUT_MS, timeout);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_USERAGENT, user_agent);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, (void *) body);
#if LIBCURL_VERSION_NUM >= 0x075500
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
        SET(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#undef SET
        if (rc != CURLE_OK) {
                curl_easy_cleanup(e);
                return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
        }
        *ret = e;
        return 0;
}

void ps_curl_describe_error(CURL *easy, CURLcode code, int64_t timeout_ms, char *buf,
                            size_t len) {
        long os_errno = 0;

        if (code == CURLE_OPERATION_TIMEDOUT) {
                snprintf(buf, len, "timed out after %lld ms", (long long) timeout_ms);
                return;
        }
        curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
        if (code == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED)
                snprintf(buf, len, "connection refused");
        else if (os_errno != 0)
                snprintf(buf, len, "%s (%s)", curl_easy_strerror(code), strerror((int) os_errno));
        else
                snprintf(buf, len, "%s", curl_easy_strerror(code));
}
