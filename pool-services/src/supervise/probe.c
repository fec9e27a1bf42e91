/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "base/curl-loop.h"
#include "pool-services/supervise/probe.h"

/*
 * Probes run on a ps_curl_loop (base/curl-loop.h): nothing blocks and no
 * thread is started, as long as callers probe IP addresses (the daemon
 * builds probe URLs from the engine's bind address).
 *
 * Re-entrancy: user callbacks run only after curl_multi_socket_action()
 * has returned, so they may start probes and cancel others. They must not
 * free the prober. A probe is off the in-flight list and its easy handle
 * is gone by the time its callback runs; cancelling it there is a no-op.
 */

/* A health answer is a few bytes; an engine that streams more is not
 * healthy, and we do not let it make us read forever. */
#define PROBE_BODY_MAX (64 * 1024)
#define PROBE_USER_AGENT "pool-managerd-probe"
#define PROBE_DETAIL_MAX 256

/*
 * A stalled loop is not a slow engine. While probes are in flight a tick
 * runs every PROBE_TICK_MS; a gap over PROBE_STALL_MS between two ticks
 * means the daemon itself did not run (a thousand spawns in one turn, a
 * machine swapping), and the answer may be sitting unread in the socket.
 * A probe that times out across such a gap is sent again with a fresh
 * timeout, up to PROBE_STALL_RETRIES times, instead of being reported: a
 * timeout always counts from a send the loop was awake for.
 */
#define PROBE_TICK_MS 50
#define PROBE_STALL_MS 250
#define PROBE_STALL_RETRIES 3

struct ps_probe {
        ps_prober *prober;
        CURL *easy;
        ps_probe_fn fn;
        ps_fetch_fn fetch_fn;     /* a fetch keeps the body; fn is NULL */
        void *userdata;
        int64_t timeout_ms;
        char *url;                /* to send it again after a stall */
        uint64_t stalls_at_send;  /* the prober's stall count when sent */
        unsigned stall_retries;
        ps_curl_body body;        /* kept for fetches only */
        bool completing;          /* in its callback: cancel is a no-op */
        ps_probe *prev, *next;
};

struct ps_prober {
        ps_curl_loop *loop;
        ps_probe *probes;         /* in flight */
        unsigned n_probes;
        struct event *tick;       /* runs while probes are in flight */
        int64_t last_tick_ms;
        uint64_t stalls;          /* loop stalls seen */
};

static int64_t mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Counts a stall when the loop was away longer than PROBE_STALL_MS. */
static void note_loop(ps_prober *prober) {
        int64_t now = mono_ms();

        if (now - prober->last_tick_ms > PROBE_STALL_MS)
                prober->stalls++;
        prober->last_tick_ms = now;
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        ps_prober *prober = userdata;

        (void) fd;
        (void) what;
        note_loop(prober);
        if (prober->n_probes == 0)
                evtimer_del(prober->tick);
}

static void tick_start(ps_prober *prober) {
        struct timeval tv = { .tv_sec = 0, .tv_usec = PROBE_TICK_MS * 1000 };

        if (evtimer_pending(prober->tick, NULL))
                return;
        prober->last_tick_ms = mono_ms();
        evtimer_add(prober->tick, &tv);
}

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

/* ---- probes --------------------------------------------------------------- */

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
        ps_curl_body_done(&p->body);
        free(p->url);
        free(p);
}

/* Takes the probe off curl and off the list; frees nothing else. */
static void probe_detach(ps_probe *p) {
        ps_curl_loop_remove(p->prober->loop, p->easy);
        p->easy = NULL;
        probe_unlink(p);
}

static ps_probe_result classify(ps_probe *p, CURLcode code, char *detail, size_t size,
                                long *http_status) {
        long status = 0;

        curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
        *http_status = status;

        if (code == CURLE_OK) {
                snprintf(detail, size, "HTTP %ld", status);
                return status >= 200 && status <= 299 ? PS_PROBE_OK : PS_PROBE_FAILED;
        }
        if (code == CURLE_WRITE_ERROR && p->body.too_big) {
                snprintf(detail, size, "HTTP %ld with a body over %zu bytes", status,
                         p->body.max);
                return PS_PROBE_FAILED;
        }
        if (code == CURLE_WRITE_ERROR && p->body.text.oom) {
                snprintf(detail, size, "out of memory reading the body");
                return PS_PROBE_FAILED;
        }
        ps_curl_describe_error(p->easy, code, p->timeout_ms, detail, size);
        return code == CURLE_OPERATION_TIMEDOUT ? PS_PROBE_TIMEOUT : PS_PROBE_FAILED;
}

static int probe_setup(ps_probe *p, const char *url);
static void probe_link(ps_prober *prober, ps_probe *p);

/* A timeout across a loop stall: the same probe again, timed afresh. */
static bool resend_after_stall(ps_probe *p) {
        ps_prober *prober = p->prober;

        note_loop(prober);
        if (prober->stalls == p->stalls_at_send || p->stall_retries >= PROBE_STALL_RETRIES)
                return false;
        probe_detach(p);
        p->prober = prober;
        p->stall_retries++;
        p->stalls_at_send = prober->stalls;
        ps_curl_body_done(&p->body);
        p->body.too_big = false;
        if (probe_setup(p, p->url) < 0 || ps_curl_loop_add(prober->loop, p->easy) < 0) {
                if (p->easy)
                        curl_easy_cleanup(p->easy);
                p->easy = NULL;
                return false;
        }
        probe_link(prober, p);
        return true;
}

static void complete(void *priv, CURLcode code) {
        ps_probe *p = priv;
        char detail[PROBE_DETAIL_MAX];
        ps_probe_result result;
        long http_status;

        if (code == CURLE_OPERATION_TIMEDOUT && resend_after_stall(p))
                return;
        result = classify(p, code, detail, sizeof(detail), &http_status);
        if (p->easy)
                probe_detach(p);
        p->completing = true;
        if (p->fetch_fn)
                p->fetch_fn(result, http_status, detail,
                            result == PS_PROBE_OK && p->body.text.s ? p->body.text.s : "",
                            result == PS_PROBE_OK ? p->body.len : 0, p->userdata);
        else
                p->fn(result, http_status, detail, p->userdata);
        probe_free(p);
}

/* ---- public API ------------------------------------------------------------ */

ps_prober *ps_prober_new(struct event_base *base) {
        ps_prober *prober;

        if (!base)
                return NULL;
        prober = calloc(1, sizeof(*prober));
        if (!prober)
                return NULL;
        prober->loop = ps_curl_loop_new(base, complete);
        prober->tick = event_new(base, -1, EV_PERSIST, on_tick, prober);
        if (!prober->loop || !prober->tick) {
                ps_curl_loop_free(prober->loop);
                if (prober->tick)
                        event_free(prober->tick);
                free(prober);
                return NULL;
        }
        return prober;
}

ps_prober *ps_prober_free(ps_prober *prober) {
        if (!prober)
                return NULL;
        /* Freeing the prober from one of its own callbacks would pull the
         * multi handle out from under the loop. */
        assert(!ps_curl_loop_dispatching(prober->loop));

        while (prober->probes) {
                ps_probe *p = prober->probes;

                probe_detach(p);
                probe_free(p);
        }
        ps_curl_loop_free(prober->loop);
        event_free(prober->tick);
        free(prober);
        return NULL;
}

static int probe_setup(ps_probe *p, const char *url) {
        CURL *e;
        CURLcode rc = CURLE_OK;
        int r;

        r = ps_curl_easy_new(url, p->timeout_ms, PROBE_USER_AGENT, &p->body, p, &p->easy);
        if (r < 0)
                return r;
        e = p->easy;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
        SET(CURLOPT_NOPROXY, "*");
        SET(CURLOPT_FORBID_REUSE, 1L);
        SET(CURLOPT_FRESH_CONNECT, 1L);
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        SET(CURLOPT_HTTPGET, 1L);
#undef SET
        if (rc == CURLE_OK)
                return 0;
        curl_easy_cleanup(p->easy);
        p->easy = NULL;
        return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

static void probe_link(ps_prober *prober, ps_probe *p) {
        p->next = prober->probes;
        if (p->next)
                p->next->prev = p;
        prober->probes = p;
        prober->n_probes++;
        tick_start(prober);
}

static int probe_start(ps_prober *prober, ps_probe *p, const char *url, ps_probe **ret) {
        int r;

        p->prober = prober;
        r = probe_setup(p, url);
        if (r < 0) {
                free(p);
                return r;
        }
        p->url = strdup(url);
        r = p->url ? ps_curl_loop_add(prober->loop, p->easy) : -ENOMEM;
        if (r < 0) {
                curl_easy_cleanup(p->easy);
                free(p->url);
                free(p);
                return r;
        }
        probe_link(prober, p);
        p->stalls_at_send = prober->stalls;
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
        p->body.max = PROBE_BODY_MAX;
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
        p->body.max = body_max;
        p->body.keep = true;
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
