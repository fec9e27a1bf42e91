/* SPDX-License-Identifier: MIT */
/*
 * The policy's `restart` key in the lifecycle: on-failure (the default)
 * restarts after failures only, always also after an exit 0 nobody asked
 * for, never after nothing -- the replica stays down until an operator
 * restarts it. A start the node failed (no descriptors, disk full, the
 * runtime directory) is no crash: retried after 1 s doubling to 30 s,
 * whatever the mode, without touching the breaker. Driven event by event
 * with a fake clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>

#include "pool-domain/lifecycle.h"

typedef struct fx {
        pd_lifecycle lc;
        pd_policy p;
        pd_rng rng;
        pd_actions out;
        int64_t now;
        int rc;
} fx;

static int setup(void **state) {
        fx *f = test_calloc(1, sizeof(*f));

        pd_lifecycle_init(&f->lc);
        pd_policy_init(&f->p);
        f->p.backoff.jitter = 0;
        pd_rng_seed(&f->rng, 42);
        f->now = 1000000;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        test_free(*state);
        return 0;
}

static void send(fx *f, pd_event ev) {
        f->rc = pd_lifecycle_step(&f->lc, &f->p, &ev, f->now, &f->rng, &f->out);
}

static void ev_simple(fx *f, pd_event_type type) {
        send(f, (pd_event) { .type = type, .instance = PD_INSTANCE_PRIMARY });
}

static void ev_exit_code(fx *f, int code) {
        send(f, (pd_event) { .type = PD_EV_EXITED, .instance = PD_INSTANCE_PRIMARY,
                             .exit = { .exited = true, .code = code } });
}

static const pd_action *find(const fx *f, pd_action_type type) {
        for (size_t i = 0; i < f->out.count; i++)
                if (f->out.item[i].type == type && f->out.item[i].instance == PD_INSTANCE_PRIMARY)
                        return &f->out.item[i];
        return NULL;
}

static const pd_action *restart_timer(const fx *f) {
        for (size_t i = 0; i < f->out.count; i++)
                if (f->out.item[i].type == PD_ACT_TIMER_ARM &&
                    f->out.item[i].timer == PD_TIMER_RESTART)
                        return &f->out.item[i];
        return NULL;
}

static void bring_up(fx *f) {
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        assert_int_equal(f->rc, 0);
        ev_simple(f, PD_EV_SPAWNED);
        f->now += 500;
        ev_simple(f, PD_EV_PROBE_OK);
        assert_int_equal(f->lc.state, PD_STATE_READY);
}

static void test_mode_names_round_trip(void **state) {
        static const char *const names[] = { "on-failure", "always", "never" };
        pd_restart_mode m = PD_RESTART_NEVER;

        (void) state;
        for (unsigned i = 0; i < PD_RESTART_MODE_MAX; i++) {
                assert_string_equal(pd_restart_mode_to_string((pd_restart_mode) i), names[i]);
                assert_int_equal(pd_restart_mode_from_string(names[i], &m), 0);
                assert_int_equal(m, i);
        }
        assert_null(pd_restart_mode_to_string(PD_RESTART_MODE_MAX));
        assert_int_equal(pd_restart_mode_from_string("on_failure", &m), PD_E_INVALID);
        assert_int_equal(pd_restart_mode_from_string("Always", &m), PD_E_INVALID);
        assert_int_equal(pd_restart_mode_from_string(NULL, &m), PD_E_INVALID);
}

static void test_default_is_on_failure_and_validated(void **state) {
        pd_policy p;
        pd_error err;

        (void) state;
        pd_policy_init(&p);
        assert_int_equal(p.restart, PD_RESTART_ON_FAILURE);
        assert_int_equal(pd_policy_validate(&p, &err), 0);
        p.restart = PD_RESTART_MODE_MAX;
        assert_int_not_equal(pd_policy_validate(&p, &err), 0);
        assert_non_null(strstr(err.msg, "restart"));
}

static void test_on_failure_unrequested_exit_zero_stays_stopped(void **state) {
        fx *f = *state;

        bring_up(f);
        ev_exit_code(f, 0);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_string_equal(f->lc.last_error, "exited with code 0 (not requested)");
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_GRACEFUL);
        assert_null(restart_timer(f));
        assert_null(find(f, PD_ACT_SPAWN));
}

static void test_always_restarts_after_exit_zero_with_the_backoff(void **state) {
        fx *f = *state;
        const pd_action *t;

        f->p.restart = PD_RESTART_ALWAYS;
        bring_up(f);
        ev_exit_code(f, 0);
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_string_equal(f->lc.last_error, "exited with code 0 (not requested)");
        t = restart_timer(f);
        assert_non_null(t);
        /* the same backoff as a crash: initial_ms first */
        assert_int_equal(t->at_ms - f->now, f->p.backoff.initial_ms);
        f->now = t->at_ms;
        send(f, (pd_event) { .type = PD_EV_TIMER, .timer = PD_TIMER_RESTART,
                             .instance = PD_INSTANCE_PRIMARY });
        assert_non_null(find(f, PD_ACT_SPAWN));
        assert_int_equal(f->lc.state, PD_STATE_PRELOADING);
        assert_int_equal(f->lc.restart_count, 1);
        /* and the delay grows like a crash's */
        ev_simple(f, PD_EV_SPAWNED);
        ev_simple(f, PD_EV_PROBE_OK);
        ev_exit_code(f, 0);
        t = restart_timer(f);
        assert_non_null(t);
        assert_int_equal(t->at_ms - f->now, (int64_t) (f->p.backoff.initial_ms * f->p.backoff.factor));
}

static void test_always_still_honours_a_requested_stop(void **state) {
        fx *f = *state;

        f->p.restart = PD_RESTART_ALWAYS;
        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_STOP });
        assert_non_null(find(f, PD_ACT_SIGNAL_TERM));
        ev_exit_code(f, 0);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_null(restart_timer(f));
        assert_string_equal(f->lc.last_error, "");
}

static void test_never_leaves_a_crash_down_until_an_operator_restart(void **state) {
        fx *f = *state;

        f->p.restart = PD_RESTART_NEVER;
        bring_up(f);
        ev_exit_code(f, 1);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_int_equal(f->lc.crash_count, 1);
        assert_string_equal(f->lc.last_error, "exited with code 1");
        assert_null(restart_timer(f));
        assert_null(find(f, PD_ACT_SPAWN));
        /* the operator brings it back */
        send(f, (pd_event) { .type = PD_EV_RESTART });
        assert_int_equal(f->rc, 0);
        assert_non_null(find(f, PD_ACT_SPAWN));
        assert_int_equal(f->lc.state, PD_STATE_PRELOADING);
}

static void test_never_fails_a_preload_without_retrying(void **state) {
        fx *f = *state;
        const pd_action *reply = NULL;

        f->p.restart = PD_RESTART_NEVER;
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_SPAWNED);
        ev_exit_code(f, 1);
        for (size_t i = 0; i < f->out.count; i++)
                if (f->out.item[i].type == PD_ACT_REPLY)
                        reply = &f->out.item[i];
        assert_non_null(reply);
        assert_int_equal(reply->outcome, PD_OUTCOME_CRASHED);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_null(restart_timer(f));
}

static void test_never_waits_for_a_failed_engine_to_exit(void **state) {
        fx *f = *state;

        f->p.restart = PD_RESTART_NEVER;
        f->p.health.failure_threshold = 1;
        bring_up(f);
        ev_simple(f, PD_EV_PROBE_FAILED);
        /* unhealthy: stopped, and down once it is gone */
        assert_non_null(find(f, PD_ACT_SIGNAL_TERM));
        assert_int_equal(f->lc.state, PD_STATE_STOPPING);
        send(f, (pd_event) { .type = PD_EV_EXITED, .instance = PD_INSTANCE_PRIMARY,
                             .exit = { .exited = false, .signo = SIGTERM } });
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_null(restart_timer(f));
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_HEALTH_TIMEOUT);
}

static void ev_node_error(fx *f) {
        send(f, (pd_event) { .type = PD_EV_SPAWN_FAILED, .instance = PD_INSTANCE_PRIMARY,
                             .cls = PD_CRASH_NODE_ERROR,
                             .detail = "runtime directory /run/pm is not writable" });
}

static void test_node_retry_delay_doubles_to_thirty_seconds(void **state) {
        static const int64_t want[] = { 1000, 1000, 2000, 4000, 8000, 16000, 30000, 30000 };

        (void) state;
        for (unsigned n = 0; n < sizeof(want) / sizeof(want[0]); n++)
                assert_int_equal(pd_node_retry_delay_ms(n), want[n]);
        assert_int_equal(pd_node_retry_delay_ms(1000), 30000);
}

static void test_node_error_retries_without_breaker_or_crash(void **state) {
        fx *f = *state;
        const pd_action *t, *reply = NULL;
        int64_t want = 1000;

        f->p.breaker.threshold = 2;
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_node_error(f);
        for (size_t i = 0; i < f->out.count; i++)
                if (f->out.item[i].type == PD_ACT_REPLY)
                        reply = &f->out.item[i];
        assert_non_null(reply);
        assert_int_equal(reply->outcome, PD_OUTCOME_SPAWN_FAILED);
        assert_string_equal(f->lc.last_error, "node error: runtime directory /run/pm is not writable");
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_NODE_ERROR);
        /* many more than the breaker's threshold: it stays closed */
        for (int i = 0; i < 8; i++) {
                t = restart_timer(f);
                assert_non_null(t);
                assert_int_equal(t->at_ms - f->now, want);
                assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
                assert_int_equal(f->lc.crash_count, 0);
                assert_int_equal(f->lc.node_errors, (unsigned) i + 1);
                assert_int_equal(pd_breaker_set_state(&f->lc.breakers), PD_BREAKER_CLOSED);
                assert_null(find(f, PD_ACT_ALERT));
                f->now = t->at_ms;
                send(f, (pd_event) { .type = PD_EV_TIMER, .timer = PD_TIMER_RESTART,
                                     .instance = PD_INSTANCE_PRIMARY });
                assert_non_null(find(f, PD_ACT_SPAWN));
                ev_node_error(f);
                want = want * 2 > 30000 ? 30000 : want * 2;
        }
        /* the node recovers: the engine starts, and the count is over */
        t = restart_timer(f);
        f->now = t->at_ms;
        send(f, (pd_event) { .type = PD_EV_TIMER, .timer = PD_TIMER_RESTART,
                             .instance = PD_INSTANCE_PRIMARY });
        ev_simple(f, PD_EV_SPAWNED);
        assert_int_equal(f->lc.node_errors, 0);
        ev_simple(f, PD_EV_PROBE_OK);
        assert_int_equal(f->lc.state, PD_STATE_READY);
}

static void test_node_error_retries_even_under_never(void **state) {
        fx *f = *state;

        f->p.restart = PD_RESTART_NEVER;
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_node_error(f);
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_non_null(restart_timer(f));
}

static void test_a_plain_spawn_failure_is_still_a_crash(void **state) {
        fx *f = *state;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        send(f, (pd_event) { .type = PD_EV_SPAWN_FAILED, .instance = PD_INSTANCE_PRIMARY,
                             .detail = "binary /x: No such file or directory" });
        assert_int_equal(f->lc.crash_count, 1);
        assert_int_equal(f->lc.node_errors, 0);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_PREFLIGHT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mode_names_round_trip),
                cmocka_unit_test(test_default_is_on_failure_and_validated),
                T(test_on_failure_unrequested_exit_zero_stays_stopped),
                T(test_always_restarts_after_exit_zero_with_the_backoff),
                T(test_always_still_honours_a_requested_stop),
                T(test_never_leaves_a_crash_down_until_an_operator_restart),
                T(test_never_fails_a_preload_without_retrying),
                T(test_never_waits_for_a_failed_engine_to_exit),
                cmocka_unit_test(test_node_retry_delay_doubles_to_thirty_seconds),
                T(test_node_error_retries_without_breaker_or_crash),
                T(test_node_error_retries_even_under_never),
                T(test_a_plain_spawn_failure_is_still_a_crash),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
