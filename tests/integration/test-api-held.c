/* SPDX-License-Identifier: MIT */
/*
 * The API never says what a crash could take back: a reply sent while the
 * state store has changes not yet committed (a read too) waits for their
 * commit. The server runs on a loop with the daemon's three priorities; a
 * timer of the default priority that fires every turn keeps the store's
 * commit (the lowest priority) from running, so only the store's fallback
 * timer commits, long after the request was answered or not. And while
 * the daemon is starting, only /health answers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "harness.h"
#include "pool-api/server.h"
#include "pool-services/pool/store.h"

/* The fallback commit: far beyond a loopback request on a loaded machine. */
#define FALLBACK_MS 3000

typedef struct held_fx {
        struct event_base *base;
        struct event *spinner;          /* keeps the commit from its turn */
        char dir[64];
        ps_context ctx;
        ps_registry *reg;
        ps_store *store;
        pa_server *server;
        struct evhttp_connection *conn;
        bool answered;
        int status;
        bool pending_at_answer;         /* the store had uncommitted changes */
        char body[256];
} held_fx;

static void on_spin(evutil_socket_t fd, short what, void *userdata) {
        held_fx *f = userdata;
        struct timeval now = { 0, 0 };

        (void) fd;
        (void) what;
        if (!f->answered)
                evtimer_add(f->spinner, &now);
}

static int setup(void **state) {
        held_fx *f = calloc(1, sizeof(*f));
        ps_store_options so = { .commit_wait_max_ms = FALLBACK_MS };
        pa_server_config sc;
        char path[128], err[512] = "", moved[256];
        pa_error perr = { .msg = "" };

        memset(&sc, 0, sizeof(sc));

        assert_non_null(f);
        f->base = event_base_new();
        assert_non_null(f->base);
        assert_int_equal(event_base_priority_init(f->base, 3), 0);
        th_tmpdir(f->dir, sizeof(f->dir), "api-held");
        f->ctx = (ps_context) { .base = f->base, .runtime_dir = f->dir, .seed = 7 };
        f->reg = ps_registry_new(&f->ctx);
        assert_non_null(f->reg);

        snprintf(path, sizeof(path), "%s/state.db", f->dir);
        so.path = path;
        if (ps_store_open(f->base, &so, &f->store, moved, sizeof(moved), err, sizeof(err)) != 0)
                fail_msg("state store: %s", err);
        assert_int_equal(ps_store_attach(f->store, f->reg), 0);

        assert_int_equal(pa_bind_addr_parse("127.0.0.1:0", &sc.bind, &perr), 0);
        sc.backend.registry = f->reg;
        f->server = pa_server_new(f->base, &sc, &perr);
        if (!f->server)
                fail_msg("server: %s", perr.msg);
        f->conn = evhttp_connection_base_new(f->base, NULL, "127.0.0.1",
                                             pa_bind_addr_port(pa_server_address(f->server)));
        assert_non_null(f->conn);
        f->spinner = evtimer_new(f->base, on_spin, f);
        assert_non_null(f->spinner);
        assert_int_equal(event_priority_set(f->spinner, 1), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        held_fx *f = *state;

        event_free(f->spinner);
        evhttp_connection_free(f->conn);
        pa_server_free(f->server);
        ps_registry_free(f->reg);
        ps_store_free(f->store);
        event_base_free(f->base);
        th_rmtree(f->dir);
        free(f);
        return 0;
}

static void on_answer(struct evhttp_request *req, void *userdata) {
        held_fx *f = userdata;
        struct evbuffer *in = req ? evhttp_request_get_input_buffer(req) : NULL;
        size_t n = in ? evbuffer_get_length(in) : 0;

        f->answered = true;
        event_base_loopbreak(f->base);
        f->status = req ? evhttp_request_get_response_code(req) : 0;
        f->pending_at_answer = ps_store_pending(f->store);
        if (n >= sizeof(f->body))
                n = sizeof(f->body) - 1;
        if (in)
                evbuffer_copyout(in, f->body, n);
        f->body[n] = '\0';
}

static void on_deadline(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        event_base_loopbreak(userdata);
}

/*
 * Runs the loop, the spinner turning, until the answer or ms pass. Not
 * th_loop_until(): EVLOOP_ONCE returns only once nothing is active, and
 * the starved commit always is.
 */
static void spin(held_fx *f, int64_t ms) {
        struct timeval now = { 0, 0 }, tv = { ms / 1000, (ms % 1000) * 1000 };
        struct event *deadline = evtimer_new(f->base, on_deadline, f->base);

        assert_non_null(deadline);
        assert_int_equal(event_priority_set(deadline, 0), 0);
        evtimer_add(deadline, &tv);
        evtimer_add(f->spinner, &now);
        event_base_dispatch(f->base);
        evtimer_del(f->spinner);
        event_free(deadline);
}

/* GET path with the spinner turning; runs the loop until answered. */
static void get(held_fx *f, const char *path) {
        struct evhttp_request *req = evhttp_request_new(on_answer, f);

        assert_non_null(req);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
        assert_int_equal(evhttp_make_request(f->conn, req, EVHTTP_REQ_GET, path), 0);
        f->answered = false;
        spin(f, TH_WAIT_MS);
        assert_true(f->answered);
}

/* A change waits in the turn's transaction: the read that could show it
 * is answered only once it is on disk. */
static void test_read_waits_for_commit(void **state) {
        held_fx *f = *state;

        assert_int_equal(ps_store_put_drain(f->store, "p", 123), 0);
        assert_true(ps_store_pending(f->store));
        get(f, "/v2/pools");
        assert_int_equal(f->status, 200);
        assert_false(f->pending_at_answer);
        assert_non_null(strstr(f->body, "pools"));
}

static uint64_t commits_of(ps_store *s) {
        json_t *st = ps_store_status(s);
        uint64_t n = (uint64_t) json_integer_value(json_object_get(st, "commits"));

        json_decref(st);
        return n;
}

/* Nothing pending: answered at once, in the spinner's turns, with no
 * commit waited for. */
static void test_read_without_changes(void **state) {
        held_fx *f = *state;
        uint64_t commits;

        assert_int_equal(ps_store_commit(f->store), 0);
        assert_false(ps_store_pending(f->store));
        commits = commits_of(f->store);
        get(f, "/v2/pools");
        assert_int_equal(f->status, 200);
        assert_false(f->pending_at_answer);
        assert_int_equal(commits_of(f->store), commits);
}

/* An error reply waits as well: a 404 says the pool is unknown, which a
 * change in the same turn may have made true. */
static void test_error_waits_for_commit(void **state) {
        held_fx *f = *state;

        assert_int_equal(ps_store_put_drain(f->store, "q", 9), 0);
        get(f, "/v2/pools/nope");
        assert_int_equal(f->status, 404);
        assert_false(f->pending_at_answer);
        assert_non_null(strstr(f->body, "NOT_FOUND"));
}

/* The server goes away while a reply waits: nothing leaks, nothing is
 * answered twice (AddressSanitizer has the last word). */
static void test_server_freed_while_held(void **state) {
        held_fx *f = *state;
        struct evhttp_request *req = evhttp_request_new(on_answer, f);

        assert_non_null(req);
        assert_int_equal(ps_store_put_drain(f->store, "r", 1), 0);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
        assert_int_equal(evhttp_make_request(f->conn, req, EVHTTP_REQ_GET, "/v2/pools"), 0);
        /* long enough for the request to arrive and be held */
        spin(f, 300);
        assert_false(f->answered);
        assert_true(ps_store_pending(f->store));
        f->server = pa_server_free(f->server);
        assert_int_equal(ps_store_commit(f->store), 0);
        th_loop_for(f->base, 50);
}

/* While the daemon registers its configured pools, only /health answers:
 * a configured pool is not "not found" and a half-known node not "ready". */
static void test_starting_answers_only_health(void **state) {
        held_fx *f = *state;
        static const char *const refused[] = { "/v2/pools", "/ready", "/metrics", "/v2/pools/a" };

        assert_int_equal(ps_store_commit(f->store), 0);
        pa_server_set_starting(f->server, true);
        get(f, "/health");
        assert_int_equal(f->status, 200);
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                get(f, refused[i]);
                assert_int_equal(f->status, 503);
                assert_non_null(strstr(f->body, "the daemon is starting"));
        }
        pa_server_set_starting(f->server, false);
        get(f, "/ready");
        assert_int_equal(f->status, 200);
        get(f, "/v2/pools");
        assert_int_equal(f->status, 200);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_read_waits_for_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_without_changes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_waits_for_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_server_freed_while_held, setup, teardown),
                cmocka_unit_test_setup_teardown(test_starting_answers_only_health, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
