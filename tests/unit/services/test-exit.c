/* SPDX-License-Identifier: MIT */
/*
 * How a replica reads an engine's end: last_error names the cause the
 * engine logged, not its generic last line, and without its log prefix;
 * an exit 0 nobody asked for is said, and the policy's `restart` decides
 * what follows an exit. A start the node fails (its runtime directory)
 * is a node error: retried, counted, never a crash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-node.h"
#include "pool-services/observe/status-json.h"
#include "pool-services/base/errors.h"
#include "pool-services/observe/metrics.h"

static void test_last_error_names_the_cause_not_the_exit_line(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("cut", "r0", 0, 1),
                                      fake_policy("{\"backoff\": {\"initial_ms\": 10000}}"));
        fake_engine *e;

        assert_int_equal(fake_node_preload(n, r), 0);
        e = fake_engines_last();
        /* what llama-server writes on a truncated GGUF, then exit 1 */
        fake_engine_log(e, "0.00.010.100 I llama_model_loader: loaded meta data with 31 key-value pairs");
        fake_engine_log(e, "0.00.012.300 E llama_model_load: error loading model: tensor "
                           "'blk.3.ffn_up.weight' data is not within the file bounds, model is "
                           "corrupted or incomplete");
        fake_engine_log(e, "0.00.012.310 E llama_model_load_from_file_impl: failed to load model");
        fake_engine_log(e, "0.00.013.200 E srv    load_model: failed to load model, '/models/tiny.gguf'");
        fake_engine_log(e, "0.00.013.368 E main: exiting due to model loading error");
        fake_engine_exit(e, 1);
        fake_node_wait_state(n, r, "backoff");
        assert_string_equal(fake_snap_str(r, "last_error"),
                            "exited with code 1: llama_model_load: error loading model: tensor "
                            "'blk.3.ffn_up.weight' data is not within the file bounds, model is "
                            "corrupted or incomplete");
}

static void test_last_error_strips_the_prefix_of_a_plain_last_line(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("plain", "r0", 0, 1),
                                      fake_policy("{\"backoff\": {\"initial_ms\": 10000}}"));
        fake_engine *e;

        assert_int_equal(fake_node_preload(n, r), 0);
        e = fake_engines_last();
        fake_engine_log(e, "0.00.013.100 I srv  update_slots: all slots are idle");
        fake_engine_log(e, "0.00.013.368 W srv  operator(): giving up");
        fake_engine_exit(e, 3);
        fake_node_wait_state(n, r, "backoff");
        assert_string_equal(fake_snap_str(r, "last_error"), "exited with code 3: srv  operator(): giving up");
}

static void test_unrequested_exit_zero_is_said_and_not_restarted(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("quits", "r0", 0, 1), fake_policy(NULL));

        assert_int_equal(fake_node_preload(n, r), 0);
        fake_engine_exit(fake_engines_last(), 0);
        fake_node_wait_state(n, r, "stopped");
        assert_string_equal(fake_snap_str(r, "last_error"), "exited with code 0 (not requested)");
        assert_string_equal(fake_snap_str(r, "last_error_class"), "graceful");
        fake_node_run_for(n, 60);
        assert_int_equal(fake_engines_spawned(), 1);
}

static void test_restart_always_restarts_after_exit_zero(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("always", "r0", 0, 1),
                                      fake_policy("{\"restart\": \"always\"}"));

        assert_int_equal(fake_node_preload(n, r), 0);
        fake_engine_exit(fake_engines_last(), 0);
        fake_node_wait_state(n, r, "backoff");
        assert_string_equal(fake_snap_str(r, "last_error"), "exited with code 0 (not requested)");
        assert_int_equal(fake_snap_int(r, "backoff_ms"), 20);
        fake_node_wait_spawns(n, 2);
        fake_node_wait_state(n, r, "ready");
        assert_int_equal(ps_replica_restart_count(r), 1);
}

static void test_restart_never_leaves_a_crash_down_until_restarted(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("never", "r0", 0, 1),
                                      fake_policy("{\"restart\": \"never\"}"));

        assert_int_equal(fake_node_preload(n, r), 0);
        fake_engine_exit(fake_engines_last(), 1);
        fake_node_wait_state(n, r, "stopped");
        assert_string_equal(fake_snap_str(r, "last_error"), "exited with code 1");
        /* the backoff would have restarted it within 20 ms */
        fake_node_run_for(n, 100);
        assert_int_equal(fake_engines_spawned(), 1);
        assert_string_equal(ps_replica_state(r), "stopped");
        /* an operator brings it back */
        assert_int_equal(ps_replica_restart(r, NULL, 0), 0);
        fake_node_wait_spawns(n, 2);
        fake_node_wait_state(n, r, "ready");
}

/* The node's events also reach a metrics object, as in the daemon. */
typedef struct tee {
        ps_event_sink inner;
        ps_metrics *metrics;
} tee;

static void tee_event(const ps_event *ev, void *userdata) {
        tee *t = userdata;

        ps_metrics_observe(t->metrics, ev);
        ps_event_emit(&t->inner, ev);
}

static bool runtime_dir_failed_twice(fake_node *n, const void *arg) {
        (void) arg;
        return fake_node_seen(n, "cannot use the runtime directory") >= 2;
}

static void test_unwritable_runtime_dir_is_a_node_error(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("nodir", "r0", 0, 1),
                                      fake_policy("{\"breaker\": {\"threshold\": 1}}"));
        tee t = { .inner = n->ctx.sink, .metrics = ps_metrics_new() };
        json_t *errors, *snap, *b;
        const char *err;

        assert_non_null(t.metrics);
        n->ctx.sink = (ps_event_sink) { .fn = tee_event, .userdata = &t };
        /* read-only to its owner; and to root too, once its file-system
         * uid is not the owner's (no CAP_DAC_OVERRIDE then) */
        assert_int_equal(chmod(n->dir, 0500), 0);
        (void) setfsuid(65534);
        assert_int_equal(fake_node_preload(n, r), PS_E_START_FAILED);
        assert_true(fake_node_until(n, runtime_dir_failed_twice, NULL));
        (void) setfsuid(geteuid());
        assert_int_equal(chmod(n->dir, 0700), 0);

        /* not a crash: nothing counted against the engine, the breaker
         * (threshold 1) closed, a retry on the node's own schedule */
        err = fake_snap_str(r, "last_error");
        assert_non_null(err);
        assert_non_null(strstr(err, "node error: "));
        assert_non_null(strstr(err, n->dir));
        assert_string_equal(fake_snap_str(r, "last_error_class"), "node_error");
        assert_int_equal(ps_replica_crash_count(r), 0);
        assert_string_equal(ps_replica_state(r), "backoff");
        assert_int_equal(fake_snap_int(r, "backoff_ms"), 2000);
        snap = ps_replica_snapshot(r);
        b = json_object_get(snap, "breaker");
        assert_non_null(b);
        assert_string_equal(json_string_value(json_object_get(b, "state")), "closed");
        json_decref(snap);
        assert_int_equal(fake_engines_spawned(), 0);
        assert_int_equal(fake_node_seen(n, "engine failed"), 0);
        errors = ps_metrics_node_errors(t.metrics);
        assert_int_equal(json_integer_value(json_object_get(errors, "runtime_dir")), 2);
        json_decref(errors);

        /* the node is fine again: the next start runs */
        assert_int_equal(ps_replica_restart(r, NULL, 0), 0);
        fake_node_wait_state(n, r, "ready");
        assert_int_equal(fake_engines_spawned(), 1);
        n->ctx.sink = t.inner;
        ps_metrics_free(t.metrics);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fake_node_setup, fake_node_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_last_error_names_the_cause_not_the_exit_line),
                T(test_last_error_strips_the_prefix_of_a_plain_last_line),
                T(test_unrequested_exit_zero_is_said_and_not_restarted),
                T(test_restart_always_restarts_after_exit_zero),
                T(test_restart_never_leaves_a_crash_down_until_restarted),
                T(test_unwritable_runtime_dir_is_a_node_error),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
