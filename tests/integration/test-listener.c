/* SPDX-License-Identifier: MIT */
/*
 * Ready means this engine serves: a 200 from the engine's port counts only
 * when the socket listening there is the engine's. Another process holding
 * the port before the start fails the start and is named; one that takes
 * it while the engine runs (a helper in another session, like
 * docker-proxy) keeps the replica from ready unless the pool says
 * health.verify_listener false.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/http.h>
#include <jansson.h>

#include "harness.h"
#include "pool-services/observe/status-json.h"

typedef th_node fx;      /* made by th_node_setup() */

static json_t *snap(const ps_replica *r) {
        json_t *s = ps_replica_snapshot(r);

        assert_non_null(s);
        return s;
}

static const char *snap_str(json_t *s, const char *key) {
        return json_string_value(json_object_get(s, key));
}

/* ---- a stranger answering 200 on the pool's port ------------------------- */

static void answer_ok(struct evhttp_request *req, void *userdata) {
        unsigned *requests = userdata;

        (*requests)++;
        evhttp_send_reply(req, 200, "OK", NULL);
}

static void test_port_held_by_another_process_fails_the_start(void **state) {
        fx *f = *state;
        struct evhttp *stranger = evhttp_new(f->base);
        uint16_t port = th_free_port();
        unsigned requests = 0;
        char want[128];
        ps_replica *r;
        json_t *s;

        assert_non_null(stranger);
        evhttp_set_gencb(stranger, answer_ok, &requests);
        assert_int_equal(evhttp_bind_socket(stranger, "127.0.0.1", port), 0);

        r = th_preload(f, th_add(f, th_fake_spec("taken", "r0", port, 1, NULL), th_policy(NULL)));
        assert_false(f->done_ok);
        snprintf(want, sizeof(want), "port %u on 127.0.0.1 is in use by pid %d (", (unsigned) port,
                 (int) getpid());
        assert_non_null(strstr(f->done_text, want));
        assert_non_null(strstr(f->done_text, "test-integration-listener"));
        assert_false(ps_replica_ready(r));
        assert_int_equal(th_node_seen(f, "engine spawned"), 0);
        assert_int_equal(requests, 0);
        s = snap(r);
        assert_string_equal(snap_str(s, "state"), "backoff");
        assert_non_null(strstr(snap_str(s, "last_error"), want));
        json_decref(s);
        th_node_stop_all(f);
        evhttp_free(stranger);
}

/* ---- a helper in another session takes the port after the start ----------- */

typedef struct proxied {
        char script[PATH_MAX];
        char pid_file[PATH_MAX];
} proxied;

/* An engine that serves through a process it starts in a session of its
 * own (docker run, whose port docker-proxy holds): a shell script that
 * starts the fake engine with setsid on the pool's port and sleeps. */
static ps_engine_spec *proxied_spec(fx *f, proxied *p, const char *pool_id) {
        ps_engine_spec *spec = th_fake_spec(pool_id, "r0", 0, 1, NULL);
        char text[2 * PATH_MAX + 256];

        snprintf(p->script, sizeof(p->script), "%s/%s-engine.sh", f->dir, pool_id);
        snprintf(p->pid_file, sizeof(p->pid_file), "%s/%s-proxy.pid", f->dir, pool_id);
        snprintf(text, sizeof(text),
                 "#!/bin/sh\n"
                 "/usr/bin/setsid %s --port %u --pid-file %s &\n"
                 "exec sleep 600\n",
                 spec->binary_path, (unsigned) spec->port, p->pid_file);
        th_write_file(p->script, text);
        assert_int_equal(chmod(p->script, 0755), 0);
        free(spec->binary_path);
        spec->binary_path = strdup(p->script);
        return spec;
}

static void proxy_kill(const proxied *p) {
        char *text = th_slurp(p->pid_file, NULL);

        assert_non_null(text);
        assert_true(atoi(text) > 1);
        assert_int_equal(kill(atoi(text), SIGKILL), 0);
        free(text);
}

typedef struct error_wait {
        const ps_replica *r;
        const char *part;
} error_wait;

static bool last_error_has(void *fixture, const void *arg) {
        const error_wait *w = arg;
        json_t *s = ps_replica_snapshot(w->r);
        const char *e = s ? snap_str(s, "last_error") : NULL;
        bool has = e && strstr(e, w->part);

        (void) fixture;
        json_decref(s);
        return has;
}

static void test_a_listener_outside_the_engine_is_not_readiness(void **state) {
        fx *f = *state;
        proxied p;
        ps_replica *r = th_add(f, proxied_spec(f, &p, "proxied"), th_policy(NULL));
        error_wait w = { r, "answers but no process of the engine listens on it (pid " };
        json_t *s;

        assert_int_equal(th_preload_start(f, r, NULL, 0), 0);
        assert_true(th_node_until(f, last_error_has, &w, TH_WAIT_MS));
        assert_false(ps_replica_ready(r));
        assert_false(f->done);
        s = snap(r);
        assert_string_equal(snap_str(s, "state"), "preloading");
        assert_non_null(strstr(snap_str(s, "last_error"), "--pid-file"));
        json_decref(s);
        /* Said once, not at every probe. */
        assert_int_equal(th_node_seen(f, "health probe not counted"), 1);
        th_node_stop_all(f);
        proxy_kill(&p);
}

static void test_verify_listener_false_takes_the_answer(void **state) {
        fx *f = *state;
        proxied p;
        ps_replica *r = th_add(f, proxied_spec(f, &p, "docker"),
                               th_policy("{\"health\": {\"verify_listener\": false}}"));

        th_preload(f, r);
        assert_true(f->done_ok);
        assert_true(ps_replica_ready(r));
        assert_int_equal(th_node_seen(f, "health probe not counted"), 0);
        th_node_stop_all(f);
        proxy_kill(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_port_held_by_another_process_fails_the_start,
                                                th_node_setup, th_node_teardown),
                cmocka_unit_test_setup_teardown(test_a_listener_outside_the_engine_is_not_readiness,
                                                th_node_setup, th_node_teardown),
                cmocka_unit_test_setup_teardown(test_verify_listener_false_takes_the_answer,
                                                th_node_setup, th_node_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
