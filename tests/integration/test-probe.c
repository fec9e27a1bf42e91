/* SPDX-License-Identifier: MIT */
/*
 * Health probes against tiny evhttp servers living on the same event_base
 * as the prober: if a probe ever blocked the loop, the server could not
 * answer and the test would time out. Servers bind 127.0.0.1 port 0 and the
 * real port is read back. The loop runs until a condition holds or a
 * generous deadline passes; nothing sleeps for a fixed time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "pool-services/supervise/probe.h"
#include "harness.h"

#define MAX_HELD 64
#define MAX_OUTCOMES 64
#define SLOW_MS 300
#define BIG_BODY (100 * 1024)

typedef struct fx fx;

/* A reply the /slow handler sends after SLOW_MS. */
typedef struct slow_reply {
        fx *f;
        struct evhttp_request *req;
        struct event *timer;
        bool sent;
} slow_reply;

typedef struct outcome {
        fx *f;
        unsigned calls;
        ps_probe_result result;
        long status;
        char detail[256];
        int64_t at_ms;
        ps_probe *probe;
        /* what the callback does besides recording */
        const char *then_get;     /* start a probe to this path */
        struct outcome *then_out;
        struct outcome *then_cancel;
        bool cancel_self;
} outcome;

struct fx {
        struct event_base *base;
        struct evhttp *http;
        uint16_t port;
        unsigned requests;
        struct evhttp_request *held[MAX_HELD];      /* /hang: never answered */
        size_t n_held;
        slow_reply slow[MAX_HELD];
        size_t n_slow;
        ps_prober *prober;
        bool in_get;
        outcome out[MAX_OUTCOMES];
};

/* ---- the server --------------------------------------------------------- */

static void reply(struct evhttp_request *req, int code, const char *reason, size_t body_len) {
        struct evbuffer *body = evbuffer_new();

        assert_non_null(body);
        if (body_len == 0) {
                evbuffer_add_printf(body, "{\"status\":\"%s\"}", reason);
        } else {
                char *big = malloc(body_len);

                assert_non_null(big);
                memset(big, 'x', body_len);
                evbuffer_add(body, big, body_len);
                free(big);
        }
        evhttp_send_reply(req, code, reason, body);
        evbuffer_free(body);
}

static void on_slow_timer(evutil_socket_t fd, short what, void *userdata) {
        slow_reply *s = userdata;

        (void) fd;
        (void) what;
        s->sent = true;
        reply(s->req, 200, "ok", 0);
}

static void on_request(struct evhttp_request *req, void *userdata) {
        fx *f = userdata;
        const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

        f->requests++;
        if (strcmp(path, "/ok") == 0) {
                reply(req, 200, "ok", 0);
        } else if (strcmp(path, "/busy") == 0) {
                reply(req, 503, "Service Unavailable", 0);
        } else if (strcmp(path, "/big") == 0) {
                reply(req, 200, "ok", BIG_BODY);
        } else if (strcmp(path, "/hang") == 0) {
                assert_true(f->n_held < MAX_HELD);
                f->held[f->n_held++] = req;
        } else if (strcmp(path, "/slow") == 0) {
                slow_reply *s;
                struct timeval tv = { 0, SLOW_MS * 1000 };

                assert_true(f->n_slow < MAX_HELD);
                s = &f->slow[f->n_slow++];
                s->f = f;
                s->req = req;
                s->timer = evtimer_new(f->base, on_slow_timer, s);
                assert_non_null(s->timer);
                evtimer_add(s->timer, &tv);
        } else {
                reply(req, 404, "Not Found", 0);
        }
}

static uint16_t bound_port(struct evhttp_bound_socket *bs) {
        struct sockaddr_in sin;
        socklen_t len = sizeof(sin);

        assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *) &sin, &len), 0);
        return ntohs(sin.sin_port);
}

/* ---- fixture -------------------------------------------------------------- */

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));
        struct evhttp_bound_socket *bs;

        assert_non_null(f);
        f->base = event_base_new();
        assert_non_null(f->base);
        f->http = evhttp_new(f->base);
        assert_non_null(f->http);
        evhttp_set_gencb(f->http, on_request, f);
        bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
        assert_non_null(bs);
        f->port = bound_port(bs);
        f->prober = ps_prober_new(f->base);
        assert_non_null(f->prober);
        for (size_t i = 0; i < MAX_OUTCOMES; i++)
                f->out[i].f = f;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        ps_prober_free(f->prober);
        /* Answering frees a request evhttp has already detached from its
         * closed connection; the others go with evhttp_free. */
        for (size_t i = 0; i < f->n_held; i++)
                reply(f->held[i], 200, "late", 0);
        for (size_t i = 0; i < f->n_slow; i++) {
                event_free(f->slow[i].timer);
                if (!f->slow[i].sent)
                        reply(f->slow[i].req, 200, "late", 0);
        }
        evhttp_free(f->http);
        event_base_free(f->base);
        free(f);
        return 0;
}

/* ---- driving the loop ----------------------------------------------------- */

static bool loop_until(fx *f, th_cond *cond, const void *arg) {
        return th_loop_until(f->base, cond, f, arg, TH_WAIT_MS);
}

static bool called(void *fixture, const void *arg) {
        (void) fixture;
        return ((const outcome *) arg)->calls > 0;
}

static bool all_called(void *fixture, const void *arg) {
        const fx *f = fixture;
        size_t n = *(const size_t *) arg;

        for (size_t i = 0; i < n; i++)
                if (f->out[i].calls == 0)
                        return false;
        return true;
}

static bool first_two_any(void *fixture, const void *arg) {
        const fx *f = fixture;

        (void) arg;
        return f->out[0].calls > 0 || f->out[1].calls > 0;
}

static bool requests_at_least(void *fixture, const void *arg) {
        const fx *f = fixture;

        return f->requests >= *(const unsigned *) arg;
}

/* ---- probes --------------------------------------------------------------- */

static void on_probe(ps_probe_result result, long http_status, const char *detail,
                     void *userdata);

static int get_url(fx *f, const char *url, int64_t timeout_ms, outcome *o) {
        int r;

        f->in_get = true;
        r = ps_prober_get(f->prober, url, timeout_ms, on_probe, o, &o->probe);
        f->in_get = false;
        return r;
}

static int get_path(fx *f, const char *path, int64_t timeout_ms, outcome *o) {
        char url[128];

        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned) f->port, path);
        return get_url(f, url, timeout_ms, o);
}

static void on_probe(ps_probe_result result, long http_status, const char *detail,
                     void *userdata) {
        outcome *o = userdata;
        fx *f = o->f;

        assert_false(f->in_get);
        assert_non_null(detail);
        o->calls++;
        o->result = result;
        o->status = http_status;
        snprintf(o->detail, sizeof(o->detail), "%s", detail);
        o->at_ms = th_now_ms();
        if (o->cancel_self)
                ps_probe_cancel(o->probe);
        o->probe = NULL;
        if (o->then_cancel) {
                ps_probe_cancel(o->then_cancel->probe);
                o->then_cancel->probe = NULL;
        }
        if (o->then_get)
                assert_int_equal(get_path(f, o->then_get, 2000, o->then_out), 0);
}

static void expect(const outcome *o, ps_probe_result result, long status, const char *detail) {
        assert_int_equal(o->calls, 1);
        assert_int_equal(o->result, result);
        assert_int_equal(o->status, status);
        assert_string_equal(o->detail, detail);
}

static void test_result_names(void **state) {
        (void) state;
        assert_string_equal(ps_probe_result_to_string(PS_PROBE_OK), "ok");
        assert_string_equal(ps_probe_result_to_string(PS_PROBE_FAILED), "failed");
        assert_string_equal(ps_probe_result_to_string(PS_PROBE_TIMEOUT), "timeout");
        assert_null(ps_probe_result_to_string(PS_PROBE_RESULT_MAX));
}

static void test_ok(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_path(f, "/ok", 2000, o), 0);
        assert_non_null(o->probe);
        assert_int_equal(ps_prober_in_flight(f->prober), 1);
        assert_int_equal(o->calls, 0);
        assert_true(loop_until(f, called, o));
        expect(o, PS_PROBE_OK, 200, "HTTP 200");
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
        assert_int_equal(f->requests, 1);
}

static void test_http_503(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_path(f, "/busy", 2000, o), 0);
        assert_true(loop_until(f, called, o));
        expect(o, PS_PROBE_FAILED, 503, "HTTP 503");
}

static void test_http_404(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_path(f, "/nope", 2000, o), 0);
        assert_true(loop_until(f, called, o));
        expect(o, PS_PROBE_FAILED, 404, "HTTP 404");
}

static void test_timeout(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];
        int64_t start = th_now_ms();

        assert_int_equal(get_path(f, "/hang", 200, o), 0);
        assert_true(loop_until(f, called, o));
        expect(o, PS_PROBE_TIMEOUT, 0, "timed out after 200 ms");
        assert_true(o->at_ms - start >= 190);
        assert_true(o->at_ms - start < 5000);
        assert_int_equal(f->n_held, 1);
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
}

static void test_refused(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];
        char url[64];

        snprintf(url, sizeof(url), "http://127.0.0.1:%u/health", (unsigned) th_free_port());
        assert_int_equal(get_url(f, url, 2000, o), 0);
        assert_true(loop_until(f, called, o));
        assert_int_equal(o->calls, 1);
        assert_int_equal(o->result, PS_PROBE_FAILED);
        assert_int_equal(o->status, 0);
        assert_non_null(strstr(o->detail, "refused"));
}

static void test_big_body(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_path(f, "/big", 2000, o), 0);
        assert_true(loop_until(f, called, o));
        assert_int_equal(o->calls, 1);
        assert_int_equal(o->result, PS_PROBE_FAILED);
        assert_int_equal(o->status, 200);
        assert_non_null(strstr(o->detail, "65536 bytes"));
}

/* Errors curl finds only once the transfer runs still arrive through the
 * loop, never inside ps_prober_get. */
static void test_bad_url(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_url(f, "file:///etc/passwd", 2000, o), 0);
        assert_int_equal(o->calls, 0);
        assert_true(loop_until(f, called, o));
        assert_int_equal(o->calls, 1);
        assert_int_equal(o->result, PS_PROBE_FAILED);
        assert_int_equal(o->status, 0);
        assert_string_not_equal(o->detail, "");
}

static void test_invalid_arguments(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];
        ps_probe *p = NULL;

        assert_int_equal(ps_prober_get(NULL, "http://127.0.0.1:1/", 100, on_probe, o, &p), -EINVAL);
        assert_int_equal(ps_prober_get(f->prober, NULL, 100, on_probe, o, &p), -EINVAL);
        assert_int_equal(ps_prober_get(f->prober, "http://127.0.0.1:1/", 100, NULL, o, &p), -EINVAL);
        assert_int_equal(ps_prober_get(f->prober, "http://127.0.0.1:1/", 0, on_probe, o, &p), -EINVAL);
        assert_null(p);
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
        assert_null(ps_prober_new(NULL));
        assert_null(ps_prober_free(NULL));
        ps_probe_cancel(NULL);
        assert_int_equal(ps_prober_in_flight(NULL), 0);
}

static void test_ret_may_be_null(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];
        char url[64];

        snprintf(url, sizeof(url), "http://127.0.0.1:%u/ok", (unsigned) f->port);
        assert_int_equal(ps_prober_get(f->prober, url, 2000, on_probe, o, NULL), 0);
        assert_true(loop_until(f, called, o));
        expect(o, PS_PROBE_OK, 200, "HTTP 200");
}

static void test_cancel_before_loop(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_path(f, "/ok", 200, o), 0);
        ps_probe_cancel(o->probe);
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
        th_loop_for(f->base, 400);
        assert_int_equal(o->calls, 0);
}

/* Cancelled with its connection open and the request at the server; a
 * later probe reuses the freed descriptor number. */
static void test_cancel_in_flight(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0], *next = &f->out[1];
        unsigned one = 1;

        assert_int_equal(get_path(f, "/hang", 300, o), 0);
        assert_true(loop_until(f, requests_at_least, &one));
        assert_int_equal(ps_prober_in_flight(f->prober), 1);
        ps_probe_cancel(o->probe);
        assert_int_equal(ps_prober_in_flight(f->prober), 0);

        assert_int_equal(get_path(f, "/ok", 2000, next), 0);
        assert_true(loop_until(f, called, next));
        expect(next, PS_PROBE_OK, 200, "HTTP 200");
        th_loop_for(f->base, 500);
        assert_int_equal(o->calls, 0);
}

static void test_fifty_at_once(void **state) {
        fx *f = *state;
        size_t n = 50;

        for (size_t i = 0; i < n; i++)
                assert_int_equal(get_path(f, i % 5 == 4 ? "/busy" : "/ok", 5000, &f->out[i]), 0);
        assert_int_equal(ps_prober_in_flight(f->prober), n);
        assert_true(loop_until(f, all_called, &n));
        for (size_t i = 0; i < n; i++) {
                if (i % 5 == 4)
                        expect(&f->out[i], PS_PROBE_FAILED, 503, "HTTP 503");
                else
                        expect(&f->out[i], PS_PROBE_OK, 200, "HTTP 200");
        }
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
        assert_int_equal(f->requests, n);
}

static void test_probe_from_callback(void **state) {
        fx *f = *state;
        outcome *first = &f->out[0], *second = &f->out[1];

        first->then_get = "/busy";
        first->then_out = second;
        assert_int_equal(get_path(f, "/ok", 2000, first), 0);
        assert_true(loop_until(f, called, first));
        expect(first, PS_PROBE_OK, 200, "HTTP 200");
        assert_int_equal(second->calls, 0);
        assert_int_equal(ps_prober_in_flight(f->prober), 1);
        assert_true(loop_until(f, called, second));
        expect(second, PS_PROBE_FAILED, 503, "HTTP 503");
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
}

static void test_cancel_from_callback(void **state) {
        fx *f = *state;
        outcome *a = &f->out[0], *b = &f->out[1];

        a->then_cancel = b;
        assert_int_equal(get_path(f, "/hang", 300, b), 0);
        assert_int_equal(get_path(f, "/ok", 2000, a), 0);
        assert_true(loop_until(f, called, a));
        expect(a, PS_PROBE_OK, 200, "HTTP 200");
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
        th_loop_for(f->base, 500);
        assert_int_equal(b->calls, 0);
}

/* Both finish in the same pass of the loop (same timeout, same timer): the
 * first callback cancels the second, whose completion is already queued. */
static void test_cancel_queued_completion(void **state) {
        fx *f = *state;
        outcome *a = &f->out[0], *b = &f->out[1];
        char url[64];

        snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", (unsigned) th_free_port());
        assert_int_equal(get_url(f, url, 2000, a), 0);
        assert_int_equal(get_url(f, url, 2000, b), 0);
        a->then_cancel = b;
        b->then_cancel = a;
        assert_true(loop_until(f, first_two_any, NULL));
        th_loop_for(f->base, 200);
        assert_int_equal(a->calls + b->calls, 1);
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
}

static void test_cancel_self_in_callback(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        o->cancel_self = true;
        assert_int_equal(get_path(f, "/ok", 2000, o), 0);
        assert_true(loop_until(f, called, o));
        expect(o, PS_PROBE_OK, 200, "HTTP 200");
        assert_int_equal(ps_prober_in_flight(f->prober), 0);
}

static void test_free_with_probes_in_flight(void **state) {
        fx *f = *state;
        unsigned n = 10;

        for (unsigned i = 0; i < n; i++)
                assert_int_equal(get_path(f, i % 2 ? "/hang" : "/slow", 5000, &f->out[i]), 0);
        assert_int_equal(ps_prober_in_flight(f->prober), n);
        assert_true(loop_until(f, requests_at_least, &n));
        f->prober = ps_prober_free(f->prober);
        assert_null(f->prober);
        /* The slow replies go out to closed connections. */
        th_loop_for(f->base, SLOW_MS + 100);
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(f->out[i].calls, 0);
}

static void on_zero_timer(evutil_socket_t fd, short what, void *userdata) {
        int64_t *fired = userdata;

        (void) fd;
        (void) what;
        *fired = th_now_ms();
}

static void test_loop_not_blocked(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];
        struct timeval zero = { 0, 0 };
        int64_t fired = 0, start;
        unsigned one = 1;
        struct event *tick = evtimer_new(f->base, on_zero_timer, &fired);

        assert_non_null(tick);
        assert_int_equal(get_path(f, "/slow", 2000, o), 0);
        assert_true(loop_until(f, requests_at_least, &one));
        start = th_now_ms();
        evtimer_add(tick, &zero);
        assert_true(loop_until(f, called, o));
        event_free(tick);
        expect(o, PS_PROBE_OK, 200, "HTTP 200");
        assert_true(fired != 0);
        assert_true(fired < o->at_ms);
        assert_true(fired - start < 100);
        assert_true(o->at_ms - start >= SLOW_MS - 100);
}

/* The daemon busy elsewhere between two turns, longer than the timeout,
 * after the engine got the request. */
static void stall_loop_once(fx *f) {
        unsigned one = 1;

        assert_true(loop_until(f, requests_at_least, &one));
        usleep(600 * 1000);
}

/* The loop stalled past the probe's timeout while the engine's answer
 * waited in the socket: that is no failure of the engine. */
static void test_loop_stall_is_not_a_timeout(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_path(f, "/ok", 150, o), 0);
        stall_loop_once(f);
        assert_true(loop_until(f, called, o));
        expect(o, PS_PROBE_OK, 200, "HTTP 200");
}

/* A stall does not hide a hang: the probe sent again times out too. */
static void test_hang_after_stall_still_times_out(void **state) {
        fx *f = *state;
        outcome *o = &f->out[0];

        assert_int_equal(get_path(f, "/hang", 150, o), 0);
        stall_loop_once(f);
        assert_true(loop_until(f, called, o));
        assert_int_equal(o->result, PS_PROBE_TIMEOUT);
}

/* Two probers share curl's global state: freeing one leaves the other working. */
static void test_two_probers(void **state) {
        fx *f = *state;
        ps_prober *other = ps_prober_new(f->base);
        outcome *a = &f->out[0], *b = &f->out[1];
        char url[64];

        assert_non_null(other);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/ok", (unsigned) f->port);
        assert_int_equal(ps_prober_get(other, url, 2000, on_probe, a, &a->probe), 0);
        assert_int_equal(get_path(f, "/hang", 2000, b), 0);
        assert_int_equal(ps_prober_in_flight(other), 1);
        assert_int_equal(ps_prober_in_flight(f->prober), 1);
        assert_true(loop_until(f, called, a));
        expect(a, PS_PROBE_OK, 200, "HTTP 200");
        assert_null(ps_prober_free(other));

        ps_probe_cancel(b->probe);
        assert_int_equal(get_path(f, "/ok", 2000, b), 0);
        assert_true(loop_until(f, called, b));
        expect(b, PS_PROBE_OK, 200, "HTTP 200");
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                cmocka_unit_test(test_result_names),
                T(test_loop_stall_is_not_a_timeout),
                T(test_hang_after_stall_still_times_out),
                T(test_ok),
                T(test_http_503),
                T(test_http_404),
                T(test_timeout),
                T(test_refused),
                T(test_big_body),
                T(test_bad_url),
                T(test_invalid_arguments),
                T(test_ret_may_be_null),
                T(test_cancel_before_loop),
                T(test_cancel_in_flight),
                T(test_fifty_at_once),
                T(test_probe_from_callback),
                T(test_cancel_from_callback),
                T(test_cancel_queued_completion),
                T(test_cancel_self_in_callback),
                T(test_free_with_probes_in_flight),
                T(test_loop_not_blocked),
                T(test_two_probers),
#undef T
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
