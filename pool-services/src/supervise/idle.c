/* SPDX-License-Identifier: MIT */
/*
 * Waiting for an engine to have no request in flight (supervise/idle.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "supervise/idle.h"

#define IDLE_BODY_MAX (4u << 20)   /* vLLM's histograms make big scrapes */

struct ps_idle_watch {
        ps_prober *prober;
        ps_probe *fetch;               /* in flight, or NULL              */
        struct event *timer;           /* next reading, or the grace      */
        char *url;                     /* .../metrics                     */
        int64_t poll_ms, timeout_ms, grace_ms;
        bool counted;                  /* a count was read once           */
        bool in_grace;
        char detail[160];
        ps_idle_fn fn;
        void *userdata;
};

static const char *const in_flight_names[] = {
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
};

/* The sample of one line when its family is one of ours. */
static bool line_count(const char *line, size_t len, double *value) {
        for (size_t i = 0; i < sizeof(in_flight_names) / sizeof(in_flight_names[0]); i++) {
                size_t n = strlen(in_flight_names[i]);
                const char *at = line + n, *end = line + len;
                char num[64];
                char *stop;

                if (len <= n || memcmp(line, in_flight_names[i], n) != 0 ||
                    (*at != ' ' && *at != '{'))
                        continue;
                if (*at == '{') {
                        at = memchr(at, '}', (size_t) (end - at));
                        if (!at)
                                return false;
                        at++;
                }
                while (at < end && *at == ' ')
                        at++;
                n = 0;
                while (at < end && *at != ' ' && n + 1 < sizeof(num))
                        num[n++] = *at++;
                num[n] = '\0';
                *value = strtod(num, &stop);
                return n > 0 && *stop == '\0' && *value >= 0;
        }
        return false;
}

bool ps_idle_count_parse(const char *body, size_t len, double *count) {
        const char *at = body, *end = body + len;
        bool found = false;

        *count = 0;
        while (at < end) {
                const char *nl = memchr(at, '\n', (size_t) (end - at));
                size_t n = (size_t) ((nl ? nl : end) - at);
                double v;

                if (n > 0 && at[n - 1] == '\r')
                        n--;
                if (n > 0 && at[0] != '#' && line_count(at, n, &v)) {
                        *count += v;
                        found = true;
                }
                at = nl ? nl + 1 : end;
        }
        return found;
}

static void arm(ps_idle_watch *w, int64_t ms) {
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        evtimer_add(w->timer, &tv);
}

static void finish(ps_idle_watch *w, ps_idle_how how) {
        /* last: the callback may free the watch */
        w->fn(how, how == PS_IDLE_GRACE ? w->detail : NULL, w->userdata);
}

static void on_metrics(ps_probe_result result, long http_status, const char *detail,
                       const char *body, size_t body_len, void *userdata) {
        ps_idle_watch *w = userdata;
        double count = 0;

        w->fetch = NULL;
        if (result == PS_PROBE_OK && ps_idle_count_parse(body, body_len, &count)) {
                w->counted = true;
                if (count == 0) {
                        finish(w, PS_IDLE_COUNTED);
                        return;
                }
                arm(w, w->poll_ms);
                return;
        }
        if (w->counted) {
                arm(w, w->poll_ms);    /* it answered before: a bad moment */
                return;
        }
        if (result == PS_PROBE_OK)
                snprintf(w->detail, sizeof(w->detail), "no in-flight count in its /metrics");
        else if (http_status > 0)
                snprintf(w->detail, sizeof(w->detail), "its /metrics answered HTTP %ld", http_status);
        else
                snprintf(w->detail, sizeof(w->detail), "its /metrics: %s", detail ? detail : "no answer");
        w->in_grace = true;
        arm(w, w->grace_ms);
}

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        ps_idle_watch *w = userdata;

        (void) fd;
        (void) what;
        if (w->in_grace) {
                finish(w, PS_IDLE_GRACE);
                return;
        }
        if (ps_prober_fetch(w->prober, w->url, w->timeout_ms, IDLE_BODY_MAX, on_metrics, w,
                            &w->fetch) < 0) {
                w->fetch = NULL;
                on_metrics(PS_PROBE_FAILED, 0, strerror(ENOMEM), "", 0, w);
        }
}

ps_idle_watch *ps_idle_watch_new(struct event_base *base, ps_prober *prober,
                                 const ps_idle_options *opt, ps_idle_fn fn, void *userdata) {
        ps_idle_watch *w = calloc(1, sizeof(*w));
        size_t len = strlen(opt->url) + sizeof("/metrics");

        if (!w)
                return NULL;
        w->prober = prober;
        w->poll_ms = opt->poll_ms > 0 ? opt->poll_ms : 1000;
        w->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : 1000;
        w->grace_ms = opt->grace_ms > 0 ? opt->grace_ms : 0;
        w->fn = fn;
        w->userdata = userdata;
        w->url = malloc(len);
        w->timer = evtimer_new(base, on_timer, w);
        if (!w->url || !w->timer)
                return ps_idle_watch_free(w);
        snprintf(w->url, len, "%s/metrics", opt->url);
        arm(w, 0);                     /* the first reading, from the loop */
        return w;
}

ps_idle_watch *ps_idle_watch_free(ps_idle_watch *w) {
        if (!w)
                return NULL;
        if (w->fetch)
                ps_probe_cancel(w->fetch);
        if (w->timer)
                event_free(w->timer);
        free(w->url);
        free(w);
        return NULL;
}
