/* SPDX-License-Identifier: MIT */
/*
 * One supervised replica with fake engines and a pinned clock: a preload
 * starts the spec's engine and answers once it is healthy; a crash
 * restarts it after the backoff the policy gives; repeated failures open
 * the breaker, which then refuses starts until it is reset; a stop
 * escalates to SIGKILL when the engine ignores SIGTERM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fake-node.h"
#include "pool-services/base/errors.h"
#include "pool-services/observe/status-json.h"
#include "pool-services/pool/lease.h"

static void test_preload_starts_the_spec_and_answers_when_healthy(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("llama", "r0", 0, 4), fake_policy(NULL));
        char port[16];
        fake_engine *e;

        assert_int_equal(fake_node_preload(n, r), 0);
        assert_string_equal(n->done_text, "ready");
        assert_string_equal(ps_replica_state(r), "ready");
        assert_true(ps_replica_ready(r));

        /* exactly the spec's argv, on its devices, and nothing adopted */
        assert_int_equal(fake_engines_spawned(), 1);
        assert_int_equal(fake_engines_adopt_tries(), 1);
        e = fake_engines_last();
        snprintf(port, sizeof(port), "%u", (unsigned) fake_engine_spec(e)->port);
        assert_string_equal(fake_engine_plan(e)->argv[0], "/opt/engines/llama-server");
        assert_true(fake_engine_has_arg(e, "--port", port));
        assert_true(fake_engine_has_arg(e, "-m", "/models/tiny.gguf"));
        assert_true(fake_engine_has_arg(e, "--parallel", "4"));
        assert_string_equal(fake_engine_env(e, "CUDA_VISIBLE_DEVICES"), "0");
        assert_true(fake_engine_requests(e) >= 1);

        /* the snapshot names this engine, with times from the clock */
        assert_int_equal(ps_replica_pid(r), fake_engine_pid(e));
        assert_int_equal(fake_snap_int(r, "pid"), fake_engine_pid(e));
        assert_int_equal(fake_snap_int(r, "started_at"), FAKE_WALL_START_MS);
        assert_int_equal(fake_snap_int(r, "ready_at"), FAKE_WALL_START_MS);
        assert_int_equal(fake_snap_int(r, "slots_free"), 4);
        fake_clock_advance(&n->clock, 90000);
        assert_int_equal(fake_snap_int(r, "uptime_s"), 90);
        assert_int_equal(fake_node_seen(n, "engine spawned"), 1);
        assert_int_equal(fake_node_seen(n, "ready"), 1);
}

/* The status struct says what the replica does, every field from where
 * it lives: the spec, the machine, the engine, the leases, the clock. */
static void test_status_is_filled_from_the_replica(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("llama", "r0", 0, 4), fake_policy(NULL));
        ps_replica_status s;
        ps_lease lease;
        char url[64];

        ps_replica_status_get(r, &s);
        assert_string_equal(s.pool_id, "llama");
        assert_string_equal(s.replica_id, "r0");
        assert_string_equal(s.state, "empty");
        assert_false(s.live || s.ready || s.draining || s.external);
        assert_int_equal(s.pid, 0);
        assert_int_equal(s.slots_total, 4);
        assert_int_equal(s.slots_free, 0);
        assert_null(s.last_error);
        assert_null(s.last_error_class);
        assert_int_equal(s.started_at, 0);
        assert_int_equal(s.ready_at, 0);
        assert_int_equal(s.next_restart_at, 0);
        assert_string_equal(s.breaker.state, "closed");
        assert_int_equal(s.breaker.open_until, 0);

        assert_int_equal(fake_node_preload(n, r), 0);
        assert_int_equal(ps_lease_acquire(n->reg, "llama", 0, &lease, NULL, 0), 0);
        fake_clock_advance(&n->clock, 90000);
        ps_replica_status_get(r, &s);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned) s.port);
        assert_string_equal(s.state, "ready");
        assert_true(s.live && s.ready);
        assert_false(s.draining || s.external);
        assert_int_equal(s.pid, fake_engine_pid(fake_engines_last()));
        assert_string_equal(s.url, url);
        assert_true(s.port > 0);
        assert_int_equal(s.home_port, s.port);
        assert_string_equal(s.engine, "llamacpp");
        assert_string_equal(s.engine_version, "b6000");
        assert_string_equal(s.model_id, "tiny.gguf");
        assert_string_equal(s.device_mask, "0");
        assert_int_equal(s.slots_total, 4);
        assert_int_equal(s.slots_free, 3);
        assert_int_equal(s.active_leases, 1);
        assert_int_equal(s.primary_leases, 1);
        assert_int_equal(s.surge_leases, 0);
        assert_int_equal(s.started_at, FAKE_WALL_START_MS);
        assert_int_equal(s.ready_at, FAKE_WALL_START_MS);
        assert_int_equal(s.uptime_s, 90);
        assert_int_equal(s.restart_count, 0);
        assert_int_equal(s.crash_count, 0);

        /* the JSON is that struct, rendered */
        {
                json_t *snap = ps_replica_snapshot(r), *mine = ps_replica_status_json(&s);

                assert_true(json_equal(snap, mine));
                json_decref(snap);
                json_decref(mine);
        }
}

static int loading(fake_engine *e, void *userdata, char *err, size_t errlen) {
        (void) userdata;
        (void) err;
        (void) errlen;
        fake_engine_set_health(e, 503);
        return 0;
}

static bool probed_thrice(fake_node *n, const void *arg) {
        (void) n;
        return fake_engine_requests(arg) >= 3;
}

static void test_not_ready_until_health_answers_200(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("slow", "r0", 0, 1), fake_policy(NULL));
        fake_engine *e;

        fake_engines_on_spawn(loading, NULL);
        assert_int_equal(fake_node_preload_start(n, r), 0);
        e = fake_node_wait_spawns(n, 1);
        /* loading the model: 503 to every probe */
        assert_true(fake_node_until(n, probed_thrice, e));
        assert_false(n->done);
        assert_string_equal(ps_replica_state(r), "preloading");
        assert_false(ps_replica_ready(r));
        fake_engine_set_health(e, 200);
        assert_true(fake_node_until(n, fake_flag_set, &n->done));
        assert_int_equal(n->done_rc, 0);
        assert_string_equal(ps_replica_state(r), "ready");
}

static void test_crash_restarts_after_backoff(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("crashy", "r0", 0, 1),
                                      fake_policy("{\"backoff\": {\"initial_ms\": 150}}"));
        fake_engine *first, *second;
        const char *err;

        assert_int_equal(fake_node_preload(n, r), 0);
        first = fake_engines_last();
        fake_engine_log(first, "CUDA error: an illegal memory access was encountered");
        fake_engine_exit(first, 1);
        fake_node_wait_state(n, r, "backoff");

        /* the decision, exactly: 150 ms scaled for a CUDA error (x2) */
        assert_int_equal(ps_replica_crash_count(r), 1);
        assert_false(ps_replica_ready(r));
        assert_int_equal(fake_snap_int(r, "backoff_ms"), 300);
        assert_int_equal(fake_snap_int(r, "next_restart_at"), FAKE_WALL_START_MS + 300);
        assert_string_equal(fake_snap_str(r, "last_error_class"), "cuda_error");
        err = fake_snap_str(r, "last_error");
        assert_non_null(err);
        assert_non_null(strstr(err, "illegal memory access"));
        assert_int_equal(fake_engines_spawned(), 1);

        /* the restart comes by itself and runs the same spec */
        second = fake_node_wait_spawns(n, 2);
        fake_node_wait_state(n, r, "ready");
        assert_int_equal(ps_replica_restart_count(r), 1);
        assert_int_equal(ps_replica_pid(r), fake_engine_pid(second));
        assert_true(fake_engine_pid(second) != fake_engine_pid(first));
        assert_true(fake_engine_has_arg(second, "-m", "/models/tiny.gguf"));
        assert_int_equal(fake_node_seen(n, "restart scheduled"), 1);
        assert_int_equal(fake_node_seen(n, "engine failed"), 1);
}

static int exit_at_once(fake_engine *e, void *userdata, char *err, size_t errlen) {
        (void) userdata;
        (void) err;
        (void) errlen;
        fake_engine_exit(e, 1);
        return 0;
}

static void test_breaker_opens_after_threshold_failures(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("broken", "r0", 0, 1),
                                      fake_policy("{\"backoff\": {\"initial_ms\": 10},"
                                                  " \"breaker\": {\"threshold\": 3}}"));
        char err[256];

        fake_engines_on_spawn(exit_at_once, NULL);
        assert_int_equal(fake_node_preload(n, r), PS_E_START_FAILED);
        fake_node_wait_state(n, r, "failed");
        assert_int_equal(fake_engines_spawned(), 3);
        assert_int_equal(ps_replica_crash_count(r), 3);
        /* the pinned clock makes the alert's numbers exact */
        assert_int_equal(fake_node_seen(n, "breaker opened after 3 consecutive failures; "
                                           "next trial in 300000 ms"), 1);
        assert_false(ps_replica_live(r));

        /* open: no restart comes by itself, and a start is refused */
        fake_node_run_for(n, 100);
        assert_int_equal(fake_engines_spawned(), 3);
        assert_int_equal(ps_replica_preload(r, NULL, NULL, err, sizeof(err)), PS_E_BREAKER_OPEN);
        assert_non_null(strstr(err, "circuit breaker is open"));
        {
                json_t *s = ps_replica_snapshot(r);
                json_t *b = json_object_get(s, "breaker");

                assert_string_equal(json_string_value(json_object_get(b, "state")), "open");
                assert_int_equal(json_integer_value(json_object_get(b, "failures")), 3);
                assert_int_equal(json_integer_value(json_object_get(b, "open_until")),
                                 FAKE_WALL_START_MS + 300000);
                json_decref(s);
        }
        {
                ps_replica_status s;

                ps_replica_status_get(r, &s);
                assert_string_equal(s.state, "failed");
                assert_string_equal(s.breaker.state, "open");
                assert_int_equal(s.breaker.failures, 3);
                assert_int_equal(s.breaker.open_until, FAKE_WALL_START_MS + 300000);
                assert_int_equal(s.crash_count, 3);
                assert_non_null(s.last_error);
                assert_string_equal(s.last_error_class, "exit_code");
                assert_int_equal(s.pid, 0);
        }

        /* the operator resets it once the engine is fixed */
        fake_engines_on_spawn(NULL, NULL);
        assert_int_equal(ps_replica_breaker_reset(r), 0);
        fake_node_wait_state(n, r, "ready");
        assert_int_equal(fake_engines_spawned(), 4);
}

static void test_stop_kills_an_engine_that_ignores_sigterm(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("stubborn", "r0", 0, 1),
                                      fake_policy("{\"stop_grace_ms\": 50}"));
        fake_engine *e;

        assert_int_equal(fake_node_preload(n, r), 0);
        e = fake_engines_last();
        fake_engine_ignore_term(e, true);
        assert_int_equal(ps_replica_stop(r, NULL, 0), 0);
        fake_node_wait_state(n, r, "stopped");
        assert_int_equal(fake_engine_signals(e, SIGTERM), 1);
        assert_int_equal(fake_engine_signals(e, SIGKILL), 1);
        assert_false(fake_engine_running(e));
        /* asked for: not a crash, and nothing restarts it */
        assert_int_equal(ps_replica_crash_count(r), 0);
        fake_node_run_for(n, 60);
        assert_int_equal(fake_engines_spawned(), 1);
        assert_int_equal(ps_replica_pid(r), 0);
}

static bool failed_twice(fake_node *n, const void *arg) {
        (void) n;
        (void) arg;
        return fake_engines_failed() >= 2;
}

static void test_spawn_failure_is_retried_with_its_message(void **state) {
        fake_node *n = *state;
        ps_engine_spec *spec = fake_spec("badflag", "r0", 0, 1);
        ps_replica *r;

        free(spec->flags[3]);
        spec->flags[3] = strdup("{model_pth}");       /* a typo in a template */
        assert_non_null(spec->flags[3]);
        r = fake_node_add(n, spec, fake_policy(NULL));
        assert_int_equal(fake_node_preload(n, r), PS_E_START_FAILED);
        assert_non_null(strstr(n->done_text, "model_pth"));
        assert_int_equal(fake_engines_spawned(), 0);
        assert_non_null(strstr(fake_snap_str(r, "last_error"), "model_pth"));
        /* tried again after the backoff, and refused again the same way */
        assert_true(fake_node_until(n, failed_twice, NULL));
        assert_int_equal(fake_engines_spawned(), 0);
        assert_true(ps_replica_restart_count(r) >= 1);
}

/* The first probe reached the engine: its answer takes a whole interval
 * (the clock moves on before the prober reads it). */
static bool first_probe_took_an_interval(fake_node *n, const void *arg) {
        fake_engine *e = fake_engines_last();

        if (!e || fake_engine_requests(e) < 1)
                return false;
        fake_clock_advance(&n->clock, *(const int64_t *) arg);
        return true;
}

static bool probed_again(fake_node *n, const void *arg) {
        (void) n;
        return fake_engine_requests(fake_engines_last()) >= *(const unsigned *) arg;
}

/* Probes keep their cadence from the send: when an answer took the
 * whole interval, the next probe goes out at once, so a hung engine is
 * caught after threshold x interval, not threshold x (interval + timeout). */
static void test_probe_cadence_counts_from_the_send(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("cadence", "r0", 0, 1),
                                      fake_policy("{\"health\": {\"interval_ms\": 600000}}"));
        const int64_t interval = 600000;
        const unsigned two = 2;

        assert_int_equal(fake_node_preload_start(n, r), 0);
        assert_true(fake_node_until(n, first_probe_took_an_interval, &interval));
        assert_true(fake_node_until(n, fake_flag_set, &n->done));
        assert_string_equal(ps_replica_state(r), "ready");
        /* due one interval after the first was sent: now, not in ten minutes */
        assert_true(fake_node_until(n, probed_again, &two));
}

#define T(f) cmocka_unit_test_setup_teardown(f, fake_node_setup, fake_node_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_preload_starts_the_spec_and_answers_when_healthy),
                T(test_status_is_filled_from_the_replica),
                T(test_not_ready_until_health_answers_200),
                T(test_crash_restarts_after_backoff),
                T(test_breaker_opens_after_threshold_failures),
                T(test_stop_kills_an_engine_that_ignores_sigterm),
                T(test_spawn_failure_is_retried_with_its_message),
                T(test_probe_cadence_counts_from_the_send),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
