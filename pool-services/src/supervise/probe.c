/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <curl/curl.h>

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

struct ps_probe {
        ps_prober *prober;
        CURL *easy;
        ps_probe_fn fn;
        ps_fetch_fn fetch_fn;     /* a fetch keeps the body; fn is NULL */
        void *userdata;
        int64_t timeout_ms;
        ps_curl_body body;        /* kept for fetches only */
        bool completing;          /* in its callback: cancel is a no-op */
        ps_probe *prev, *next;
};

struct ps_prober {
        ps_curl_loop *loop;
        ps_probe *probes;         /* in flight */
        unsigned n_probes;
};

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

static void complete(void *priv, CURLcode code) {
        ps_probe *p = priv;
        char detail[PROBE_DETAIL_MAX];
        ps_probe_result result;
        long http_status;

        result = classify(p, code, detail, sizeof(detail), &http_status);
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
        if (!prober->loop) {
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

static int probe_start(ps_prober *prober, ps_probe *p, const char *url, ps_probe **ret) {
        int r;

        p->prober = prober;
        r = probe_setup(p, url);
        if (r < 0) {
                free(p);
                return r;
        }
        r = ps_curl_loop_add(prober->loop, p->easy);
        if (r < 0) {
                curl_easy_cleanup(p->easy);
                free(p);
                return r;
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
