/* SPDX-License-Identifier: MIT */
/*
 * Reloading a pool on fake engines: drain-first stops the old engine
 * before the new one starts and leaves the replica on the new spec; a new
 * engine that never becomes healthy is killed and the old spec started
 * again, with the failure and its reason in the answer; a surge whose
 * arguments do not take {port} cannot put a second engine beside the
 * first and runs drain-first instead, saying why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake-node.h"
#include "pool-services/base/errors.h"
#include "pool-services/pool/drain.h"
#include "pool-services/pool/reload.h"
#include "supervise/idle.h"

typedef struct reload_fx {
        fake_node node;
        ps_replica *r;
        /* the reload's answer */
        bool done;
        int rc;
        char message[768];
        json_t *result;
        /* per spawn: how many engines of the replica ran beside it */
        size_t beside[16];
} reload_fx;

static int teardown(void **state) {
        reload_fx *f = *state;

        json_decref(f->result);
        fake_node_clear(&f->node);
        free(f);
        return 0;
}

static reload_fx *fx_new(void **state, ps_engine_spec *spec, const char *policy) {
        reload_fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        *state = f;
        fake_node_init(&f->node, "reload");
        f->r = fake_node_add(&f->node, spec, fake_policy(policy));
        assert_int_equal(fake_node_preload(&f->node, f->r), 0);
        return f;
}

static void on_reloaded(int rc, const char *message, const json_t *result, void *userdata) {
        reload_fx *f = userdata;

        f->done = true;
        f->rc = rc;
        snprintf(f->message, sizeof(f->message), "%s", message ? message : "");
        f->result = result ? json_deep_copy(result) : NULL;
}

/* Records how many engines of the replica ran when each one started (it
 * is not counted yet); the model "broken.gguf" loads forever (503). */
static int on_spawn(fake_engine *e, void *userdata, char *err, size_t errlen) {
        reload_fx *f = userdata;
        const ps_engine_spec *s = fake_engine_spec(e);
        size_t i = fake_engines_spawned();

        (void) err;
        (void) errlen;
        if (i < sizeof(f->beside) / sizeof(f->beside[0]))
                f->beside[i] = fake_engines_running(s->pool_id, s->replica_id);
        if (s->model_id && strcmp(s->model_id, "broken.gguf") == 0)
                fake_engine_set_health(e, 503);
        if (s->model_id && strcmp(s->model_id, "crash.gguf") == 0) {
                fake_engine_set_health(e, 503);
                fake_engine_exit(e, 3);
        }
        return 0;
}

static bool one_engine(fake_node *n, const void *arg) {
        const reload_fx *f = arg;

        (void) n;
        return fake_engines_running(ps_replica_pool_id(f->r), ps_replica_id(f->r)) == 1;
}

/* The last engine answered more requests than *arg. */
static bool engine_asked_again(fake_node *n, const void *arg) {
        (void) n;
        return fake_engine_requests(fake_engines_last()) > *(const unsigned *) arg;
}

static const char *result_str(const reload_fx *f, const char *key) {
        return json_string_value(json_object_get(f->result, key));
}

static void test_drain_first_swaps_the_spec(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", 0, 1), NULL);
        fake_engine *old = fake_engines_last(), *now;
        ps_reload_request req = {
                .model_ref = "qwen2.5-7b-instruct",
                .engine_version = "b7000",
                .drain_deadline_ms = 5000,
                .strategy = PS_RELOAD_DRAIN_FIRST,
        };
        char err[256];

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, err,
                                        sizeof(err)), 0);
        assert_false(f->done);                 /* answered from the loop only */
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_int_equal(f->rc, 0);
        assert_string_equal(f->message, "reloaded (drain-first): 1 replica");

        /* the old engine was stopped before the new one started */
        assert_int_equal(fake_engines_spawned(), 2);
        assert_int_equal(fake_engine_signals(old, SIGTERM), 1);
        assert_false(fake_engine_running(old));
        assert_int_equal(f->beside[1], 0);
        now = fake_engines_last();
        assert_true(fake_engine_has_arg(now, "-m", "qwen2.5-7b-instruct"));
        assert_string_equal(fake_engine_spec(now)->engine_version, "b7000");

        /* and the replica says so */
        assert_string_equal(ps_replica_state(f->r), "ready");
        assert_int_equal(ps_replica_pid(f->r), fake_engine_pid(now));
        assert_string_equal(fake_snap_str(f->r, "model_id"), "qwen2.5-7b-instruct");
        assert_string_equal(fake_snap_str(f->r, "engine_version"), "b7000");
        assert_string_equal(result_str(f, "model_id"), "qwen2.5-7b-instruct");
        assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(f->result, "previous"), "model_id")),
                            "tiny.gguf");
        assert_true(json_is_null(json_object_get(f->result, "surge_fallback")));

        /* the same again is nothing to do: no engine is touched */
        f->done = false;
        f->result = (json_decref(f->result), NULL);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_int_equal(f->rc, 0);
        assert_true(json_is_true(json_object_get(f->result, "noop")));
        assert_int_equal(fake_engines_spawned(), 2);
}

static void test_failed_new_engine_rolls_back(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", 0, 1),
                              "{\"health\": {\"startup_timeout_ms\": 100}}");
        ps_reload_request req = {
                .model_ref = "broken.gguf",
                .drain_deadline_ms = 5000,
                .strategy = PS_RELOAD_DRAIN_FIRST,
        };
        fake_engine *broken, *back;

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_int_equal(f->rc, PS_E_RELOAD_FAILED);
        assert_string_equal(result_str(f, "reason"), "health");
        assert_non_null(strstr(f->message, "startup timeout"));

        /* old, broken, old again: the broken one was stopped */
        assert_int_equal(fake_engines_spawned(), 3);
        broken = fake_engines_at(1);
        back = fake_engines_at(2);
        assert_true(fake_engine_has_arg(broken, "-m", "broken.gguf"));
        assert_false(fake_engine_running(broken));
        assert_true(fake_engine_signals(broken, SIGTERM) >= 1);
        assert_true(fake_engine_has_arg(back, "-m", "/models/tiny.gguf"));
        assert_int_equal(f->beside[2], 0);

        /* the pool serves the old model as before */
        fake_node_wait_state(&f->node, f->r, "ready");
        assert_int_equal(ps_replica_pid(f->r), fake_engine_pid(back));
        assert_string_equal(fake_snap_str(f->r, "model_id"), "tiny.gguf");
        assert_string_equal(fake_snap_str(f->r, "engine_version"), "b6000");
        assert_false(ps_pool_reloading(f->node.reg, "chat"));
}

static void test_surge_without_port_variable_runs_drain_first(void **state) {
        ps_engine_spec *spec = fake_spec("chat", "r0", 0, 1);
        char port[16];
        reload_fx *f;
        ps_reload_request req = {
                .model_ref = "qwen2.5-7b-instruct",
                .drain_deadline_ms = 5000,
                .strategy = PS_RELOAD_SURGE,
        };
        const char *why;

        /* a literal port, as a PreparedEngine without "--port" would give */
        snprintf(port, sizeof(port), "%u", (unsigned) spec->port);
        free(spec->flags[1]);
        spec->flags[1] = strdup(port);
        assert_non_null(spec->flags[1]);
        f = fx_new(state, spec, NULL);

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_int_equal(f->rc, 0);
        assert_string_equal(result_str(f, "strategy"), "drain-first");
        why = result_str(f, "surge_fallback");
        assert_non_null(why);
        assert_non_null(strstr(why, "replica r0 has no port variable"));
        assert_int_equal(fake_node_seen(&f->node, "surge reload runs drain-first"), 1);

        /* one engine at a time, on the one port */
        assert_int_equal(fake_engines_spawned(), 2);
        assert_int_equal(f->beside[1], 0);
        assert_true(fake_engine_has_arg(fake_engines_last(), "--port", port));
        assert_int_equal(fake_engine_signals(fake_engines_at(0), SIGTERM), 1);
        assert_string_equal(fake_snap_str(f->r, "model_id"), "qwen2.5-7b-instruct");
}

static void test_surge_starts_beside_and_keeps_serving(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        fake_engine *old = fake_engines_last(), *now;
        ps_reload_request req = {
                .model_ref = "qwen2.5-7b-instruct",
                .drain_deadline_ms = 5000,
                .strategy = PS_RELOAD_SURGE,
        };
        char spare[16];

        fake_engines_on_spawn(on_spawn, f);
        snprintf(spare, sizeof(spare), "%u", (unsigned) fake_engine_spec(old)->port + 1);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_int_equal(f->rc, 0);
        assert_string_equal(result_str(f, "strategy"), "surge");

        /* the new engine came up on the spare port while the old one ran */
        assert_int_equal(fake_engines_spawned(), 2);
        now = fake_engines_last();
        assert_int_equal(f->beside[1], 1);
        assert_true(fake_engine_has_arg(now, "--port", spare));
        /* the old one goes once its /metrics says nothing is in flight */
        assert_true(fake_node_until(&f->node, one_engine, f));
        assert_false(fake_engine_running(old));
        assert_true(fake_engine_metrics_reads(old) >= 1);
        assert_int_equal(ps_replica_pid(f->r), fake_engine_pid(now));
        assert_non_null(strstr(fake_snap_str(f->r, "url"), spare));
}

/* ---- ports follow the engine --------------------------------------------------- */

/* Reloads the pool onto model with strategy and runs the loop until the
 * answer and the retirement of an old engine are through; the answer's rc. */
static int reload_to(reload_fx *f, const char *model, ps_reload_strategy strategy) {
        ps_reload_request req = {
                .model_ref = model,
                .drain_deadline_ms = 5000,
                .strategy = strategy,
        };

        f->done = false;
        f->result = (json_decref(f->result), NULL);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        fake_node_wait_state(&f->node, f->r, "ready");
        assert_true(fake_node_until(&f->node, one_engine, f));
        return f->rc;
}

/* What a configuration reload hands the pool: the configured spec (on the
 * home port) with `slots` changed, drain-first. */
static int reload_config_slots(reload_fx *f, const ps_engine_spec *configured, uint32_t slots) {
        ps_engine_spec *spec = ps_engine_spec_copy(configured);
        const ps_engine_spec *const specs[] = { spec };
        char err[256];

        assert_non_null(spec);
        spec->slots = slots;
        f->done = false;
        f->result = (json_decref(f->result), NULL);
        if (ps_pool_reload_specs(f->node.reg, "chat", specs, 1, PS_RELOAD_DRAIN_FIRST, 5000,
                                 on_reloaded, f, err, sizeof(err)) != 0)
                fail_msg("reload refused: %s", err);
        ps_engine_spec_free(spec);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        fake_node_wait_state(&f->node, f->r, "ready");
        assert_true(fake_node_until(&f->node, one_engine, f));
        return f->rc;
}

/* The replica's url, pid and probes are those of the one engine that runs. */
static void assert_follows_engine(reload_fx *f) {
        fake_engine *e = fake_engines_last();
        char port[16];
        unsigned probes;

        assert_true(fake_engine_running(e));
        assert_int_equal(fake_engines_running("chat", "r0"), 1);
        assert_int_equal(ps_replica_pid(f->r), fake_engine_pid(e));
        snprintf(port, sizeof(port), ":%u", (unsigned) fake_engine_spec(e)->port);
        assert_true(fake_engine_has_arg(e, "--port", port + 1));
        assert_non_null(strstr(fake_snap_str(f->r, "url"), port));
        /* and the prober keeps asking it */
        probes = fake_engine_requests(e);
        assert_true(fake_node_until(&f->node, engine_asked_again, &probes));
}

static void test_config_reload_after_surge_follows_the_spare_port(void **state) {
        ps_engine_spec *configured = fake_spec("chat", "r0", fake_free_port(true), 1);
        reload_fx *f;
        uint16_t home = configured->port;

        /* a model the engine resolves itself: nothing to stage */
        free(configured->model_path);
        configured->model_path = NULL;
        f = fx_new(state, ps_engine_spec_copy(configured), NULL);

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(reload_to(f, "qwen2.5-7b-instruct", PS_RELOAD_SURGE), 0);
        assert_int_equal(fake_engine_spec(fake_engines_last())->port, home + 1);

        /* SIGHUP: only slots changed; the engine goes on from the spare port */
        assert_int_equal(reload_config_slots(f, configured, 2), 0);
        assert_string_equal(f->message, "reloaded (drain-first): 1 replica");
        assert_int_equal(fake_engines_spawned(), 3);
        assert_int_equal(fake_engine_spec(fake_engines_last())->port, home + 1);
        assert_true(fake_engine_has_arg(fake_engines_last(), "--parallel", "2"));
        assert_follows_engine(f);
        ps_engine_spec_free(configured);
}

static void test_surge_then_surge_goes_home(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        uint16_t home = fake_engine_spec(fake_engines_last())->port;

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(reload_to(f, "qwen2.5-7b-instruct", PS_RELOAD_SURGE), 0);
        assert_int_equal(reload_to(f, "mistral-7b", PS_RELOAD_SURGE), 0);
        assert_int_equal(fake_engines_spawned(), 3);
        assert_int_equal(fake_engine_spec(fake_engines_last())->port, home);
        assert_string_equal(fake_snap_str(f->r, "model_id"), "mistral-7b");
        assert_follows_engine(f);
}

static void test_surge_then_drain_first_stays_on_the_spare_port(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        ps_engine_spec *configured;
        uint16_t home = fake_engine_spec(fake_engines_last())->port;

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(reload_to(f, "qwen2.5-7b-instruct", PS_RELOAD_SURGE), 0);
        assert_int_equal(reload_to(f, "mistral-7b", PS_RELOAD_DRAIN_FIRST), 0);
        assert_int_equal(fake_engines_spawned(), 3);
        assert_int_equal(fake_engine_spec(fake_engines_last())->port, home + 1);
        assert_follows_engine(f);
        /* and a configuration reload after both still finds it */
        configured = ps_engine_spec_copy(fake_engine_spec(fake_engines_at(0)));
        assert_non_null(configured);
        free(configured->model_path);
        configured->model_path = NULL;
        assert_int_equal(reload_config_slots(f, configured, 3), 0);
        ps_engine_spec_free(configured);
        assert_int_equal(fake_engine_spec(fake_engines_last())->port, home + 1);
        assert_follows_engine(f);
}

static void test_drain_first_then_surge_moves_to_the_spare_port(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        uint16_t home = fake_engine_spec(fake_engines_last())->port;

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(reload_to(f, "qwen2.5-7b-instruct", PS_RELOAD_DRAIN_FIRST), 0);
        assert_int_equal(fake_engine_spec(fake_engines_last())->port, home);
        assert_int_equal(reload_to(f, "mistral-7b", PS_RELOAD_SURGE), 0);
        assert_int_equal(fake_engine_spec(fake_engines_last())->port, home + 1);
        assert_follows_engine(f);
}

/* ---- the old engine of a surge finishes its requests ----------------------- */

/* The engine was asked for its in-flight count at least *arg times. */
static bool metrics_read(fake_node *n, const void *arg) {
        const fake_engine *const *e = arg;

        (void) n;
        return fake_engine_metrics_reads(e[0]) >= (unsigned) (uintptr_t) e[1];
}

static void wait_metrics_reads(reload_fx *f, fake_engine *e, unsigned reads) {
        const void *arg[] = { e, (const void *) (uintptr_t) reads };

        assert_true(fake_node_until(&f->node, metrics_read, arg));
}

static bool engine_stopped(fake_node *n, const void *arg) {
        (void) n;
        return !fake_engine_running(arg);
}

static void surge_start(reload_fx *f, int64_t deadline_ms) {
        ps_reload_request req = {
                .model_ref = "qwen2.5-7b-instruct",
                .drain_deadline_ms = deadline_ms,
                .strategy = PS_RELOAD_SURGE,
        };

        fake_engines_on_spawn(on_spawn, f);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_int_equal(f->rc, 0);
}

/* Clients that route by /v1/replicasets hold no lease: the old engine is
 * out of rotation at once, but stopped only when its own count of requests
 * in flight is 0 -- llama-server leaves them unanswered after SIGTERM. */
static void test_surge_retires_the_old_engine_once_idle(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        fake_engine *old = fake_engines_last();

        fake_engine_set_in_flight(old, 2);
        surge_start(f, 60000);
        /* the new engine serves; the old one is asked, and asked again */
        assert_int_equal(ps_replica_pid(f->r), fake_engine_pid(fake_engines_last()));
        wait_metrics_reads(f, old, 3);
        assert_true(fake_engine_running(old));
        assert_int_equal(fake_engine_signals(old, SIGTERM), 0);

        fake_engine_set_in_flight(old, 0);
        assert_true(fake_node_until(&f->node, engine_stopped, old));
        assert_int_equal(fake_engine_signals(old, SIGTERM), 1);
        assert_int_equal(fake_node_seen(&f->node, "engine has no request in flight"), 1);
}

/* Busy past drain_deadline_ms: stopped then, whatever it still runs. */
static void test_surge_retire_is_bounded_by_the_deadline(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        fake_engine *old = fake_engines_last();

        fake_engine_set_in_flight(old, 1);
        surge_start(f, 50);
        assert_true(fake_node_until(&f->node, engine_stopped, old));
        assert_int_equal(fake_engine_signals(old, SIGTERM), 1);
        assert_int_equal(fake_node_seen(&f->node, "engine has no request in flight"), 0);
}

/* Without a count (llama-server without --metrics answers 501), the old
 * engine stays out of rotation for reload.retire_grace_ms, then goes. */
static void test_surge_without_count_waits_the_grace(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1),
                              "{\"reload\": {\"retire_grace_ms\": 60000}}");
        fake_engine *old = fake_engines_last();

        fake_engine_set_in_flight(old, -1);
        surge_start(f, 60000);
        wait_metrics_reads(f, old, 1);
        fake_node_run_for(&f->node, 100);
        assert_true(fake_engine_running(old));
        assert_int_equal(fake_engine_signals(old, SIGTERM), 0);
        assert_int_equal(fake_engine_metrics_reads(old), 1);   /* asked once */
}

static void test_surge_without_count_stops_after_the_grace(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1),
                              "{\"reload\": {\"retire_grace_ms\": 20}}");
        fake_engine *old = fake_engines_last();

        fake_engine_set_in_flight(old, -1);
        surge_start(f, 60000);
        assert_true(fake_node_until(&f->node, engine_stopped, old));
        assert_int_equal(fake_engine_signals(old, SIGTERM), 1);
        assert_int_equal(fake_node_seen(&f->node,
                                        "engine shows no in-flight count: retire grace over"), 1);
}

/* The in-flight count as llama-server and vLLM show it. */
static void test_in_flight_count_of_each_engine(void **state) {
        static const char llama[] =
                "# HELP llamacpp:requests_processing Number of requests processing.\n"
                "# TYPE llamacpp:requests_processing gauge\n"
                "llamacpp:requests_processing 3\n"
                "llamacpp:requests_deferred 2\n"
                "llamacpp:kv_cache_usage_ratio 0.5\n";
        static const char vllm[] =
                "# TYPE vllm:num_requests_running gauge\r\n"
                "vllm:num_requests_running{engine=\"0\",model_name=\"q\"} 1.0\r\n"
                "vllm:num_requests_running{engine=\"1\",model_name=\"q\"} 2.0\r\n"
                "vllm:num_requests_waiting{engine=\"0\",model_name=\"q\"} 0.0\r\n"
                "vllm:num_requests_waiting_by_reason{reason=\"capacity\"} 7.0\r\n";
        static const char none[] = "# TYPE llamacpp:prompt_tokens_total counter\n"
                                   "llamacpp:prompt_tokens_total 12\n";
        double n = -1;

        (void) state;
        assert_true(ps_idle_count_parse(llama, strlen(llama), &n));
        assert_true(n == 5);
        assert_true(ps_idle_count_parse(vllm, strlen(vllm), &n));
        assert_true(n == 3);
        assert_false(ps_idle_count_parse(none, strlen(none), &n));
        assert_false(ps_idle_count_parse("{\"status\":\"ok\"}", 15, &n));
}

/* ---- the replica around a surge ------------------------------------------------ */

static void test_surge_is_ready_at_promotion(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        fake_engine *old = fake_engines_last();
        ps_reload_request again = { .model_ref = "mistral-7b", .strategy = PS_RELOAD_SURGE };
        char err[256];

        fake_engine_set_in_flight(old, 1);
        fake_clock_advance(&f->node.clock, 1000);
        surge_start(f, 60000);
        wait_metrics_reads(f, old, 2);
        /* the new engine serves: ready, since the promotion, said once */
        assert_true(fake_engine_running(old));
        assert_string_equal(ps_replica_state(f->r), "ready");
        assert_string_equal(fake_snap_str(f->r, "state"), "ready");
        assert_int_equal(fake_snap_int(f->r, "ready_at"), FAKE_WALL_START_MS + 1000);
        assert_int_equal(fake_node_seen(&f->node, "ready"), 2);

        /* the old engine still leaves: another reload or a drain waits */
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &again, on_reloaded, f, err, sizeof(err)),
                         PS_E_CONFLICT);
        assert_string_equal(err, "pool chat replica r0 is still retiring its previous engine "
                                 "(surge reload): reload again once it has stopped");
        assert_int_equal(ps_pool_drain(f->node.reg, "chat", 1000, NULL, NULL, NULL, err, sizeof(err)),
                         PS_E_CONFLICT);
        assert_non_null(strstr(err, "is still retiring its previous engine"));

        /* once it has gone, nothing new is said */
        fake_clock_advance(&f->node.clock, 1000);
        fake_engine_set_in_flight(old, 0);
        assert_true(fake_node_until(&f->node, engine_stopped, old));
        fake_node_wait_state(&f->node, f->r, "ready");
        assert_int_equal(fake_snap_int(f->r, "ready_at"), FAKE_WALL_START_MS + 1000);
        assert_int_equal(fake_node_seen(&f->node, "ready"), 2);
}

/* The old engine served throughout a surge that failed: its ready_at
 * stays, and no "ready" line pretends it came up again. */
static void test_failed_surge_keeps_ready_at(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1),
                              "{\"health\": {\"startup_timeout_ms\": 100}}");
        int pid = ps_replica_pid(f->r);
        ps_reload_request req = {
                .model_ref = "broken.gguf",
                .drain_deadline_ms = 5000,
                .strategy = PS_RELOAD_SURGE,
        };

        fake_engines_on_spawn(on_spawn, f);
        fake_clock_advance(&f->node.clock, 5000);
        assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_int_equal(f->rc, PS_E_RELOAD_FAILED);
        assert_string_equal(result_str(f, "reason"), "health");
        assert_int_equal(ps_replica_pid(f->r), pid);
        assert_string_equal(ps_replica_state(f->r), "ready");
        assert_int_equal(fake_snap_int(f->r, "ready_at"), FAKE_WALL_START_MS);
        assert_int_equal(fake_node_seen(&f->node, "ready"), 1);
}

/* A new engine that exits while it loads failed by its exit, not a
 * health check. */
static void test_new_engine_exit_is_classified_by_its_exit(void **state) {
        reload_fx *f = fx_new(state, fake_spec("chat", "r0", fake_free_port(true), 1), NULL);
        ps_reload_request req = { .model_ref = "crash.gguf", .drain_deadline_ms = 5000 };

        fake_engines_on_spawn(on_spawn, f);
        for (int i = 0; i < PS_RELOAD_STRATEGY_MAX; i++) {
                req.strategy = (ps_reload_strategy) i;
                f->done = false;
                f->result = (json_decref(f->result), NULL);
                assert_int_equal(ps_pool_reload(f->node.reg, "chat", &req, on_reloaded, f, NULL, 0), 0);
                assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
                assert_int_equal(f->rc, PS_E_RELOAD_FAILED);
                assert_string_equal(result_str(f, "reason"), "exit_code");
                fake_node_wait_state(&f->node, f->r, "ready");
        }
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_drain_first_swaps_the_spec),
                T(test_failed_new_engine_rolls_back),
                T(test_surge_without_port_variable_runs_drain_first),
                T(test_surge_starts_beside_and_keeps_serving),
                cmocka_unit_test(test_in_flight_count_of_each_engine),
                T(test_surge_retires_the_old_engine_once_idle),
                T(test_surge_retire_is_bounded_by_the_deadline),
                T(test_surge_without_count_waits_the_grace),
                T(test_surge_without_count_stops_after_the_grace),
                T(test_surge_is_ready_at_promotion),
                T(test_failed_surge_keeps_ready_at),
                T(test_new_engine_exit_is_classified_by_its_exit),
                T(test_config_reload_after_surge_follows_the_spare_port),
                T(test_surge_then_surge_goes_home),
                T(test_surge_then_drain_first_stays_on_the_spare_port),
                T(test_drain_first_then_surge_moves_to_the_spare_port),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
