/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "pool-domain/lifecycle.h"

/*
 * The lifecycle is driven event by event with a fake clock: every test
 * states the time, the event, and the actions the machine must ask for.
 */

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
        f->p.backoff.jitter = 0;     /* exact sequences */
        pd_rng_seed(&f->rng, 42);
        f->now = 1000000;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        test_free(*state);
        return 0;
}

static pd_actions *send(fx *f, pd_event ev) {
        f->rc = pd_lifecycle_step(&f->lc, &f->p, &ev, f->now, &f->rng, &f->out);
        return &f->out;
}

static pd_actions *ev_simple(fx *f, pd_event_type type, pd_instance_id inst) {
        return send(f, (pd_event) { .type = type, .instance = inst });
}

static pd_actions *ev_timer(fx *f, pd_timer t, pd_instance_id inst) {
        return send(f, (pd_event) { .type = PD_EV_TIMER, .timer = t, .instance = inst });
}

static pd_actions *ev_exit_code(fx *f, pd_instance_id inst, int code) {
        return send(f, (pd_event) { .type = PD_EV_EXITED, .instance = inst,
                                    .exit = { .exited = true, .code = code } });
}

static pd_actions *ev_exit_signal(fx *f, pd_instance_id inst, int signo) {
        return send(f, (pd_event) { .type = PD_EV_EXITED, .instance = inst,
                                    .exit = { .exited = false, .signo = signo } });
}

static const pd_action *find(const pd_actions *out, pd_action_type type,
                             pd_instance_id inst) {
        for (size_t i = 0; i < out->count; i++)
                if (out->item[i].type == type && out->item[i].instance == inst)
                        return &out->item[i];
        return NULL;
}

static const pd_action *find_timer(const pd_actions *out, pd_action_type type,
                                   pd_timer t, pd_instance_id inst) {
        for (size_t i = 0; i < out->count; i++)
                if (out->item[i].type == type && out->item[i].timer == t &&
                    out->item[i].instance == inst)
                        return &out->item[i];
        return NULL;
}

static bool has(const pd_actions *out, pd_action_type type) {
        for (size_t i = 0; i < out->count; i++)
                if (out->item[i].type == type)
                        return true;
        return false;
}

static const pd_action *find_reply(const pd_actions *out, pd_reply r) {
        for (size_t i = 0; i < out->count; i++)
                if (out->item[i].type == PD_ACT_REPLY && out->item[i].reply == r)
                        return &out->item[i];
        return NULL;
}

static const pd_action *find_alert(const pd_actions *out, pd_alert al) {
        for (size_t i = 0; i < out->count; i++)
                if (out->item[i].type == PD_ACT_ALERT && out->item[i].alert == al)
                        return &out->item[i];
        return NULL;
}

/* The breaker transitions among the actions, in order, as
 * "general:open>half_open/5" strings; returns how many. */
static size_t transitions(const pd_actions *out, char seen[][64], size_t max) {
        size_t n = 0;

        for (size_t i = 0; i < out->count && n < max; i++) {
                const pd_action *a = &out->item[i];

                if (a->type != PD_ACT_BREAKER_TRANSITION)
                        continue;
                snprintf(seen[n++], 64, "%s:%s>%s/%u", pd_crash_family_to_string(a->circuit),
                         pd_breaker_state_to_string(a->breaker_from),
                         pd_breaker_state_to_string(a->breaker_to), a->failures);
        }
        return n;
}

/* PRELOAD, SPAWNED, PROBE_OK: the common way to a ready primary. */
static void bring_up(fx *f) {
        const pd_action *a;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        assert_int_equal(f->rc, 0);
        a = find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->spec, PD_SPEC_CURRENT);
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        f->now += 500;
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.state, PD_STATE_READY);
}

/* A ready primary crashes with exit code 1; returns the restart time. */
static int64_t crash_ready(fx *f) {
        const pd_action *a;

        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        return a ? a->at_ms : -1;
}

/* ---- preload ---------------------------------------------------------- */

static void test_preload_ready_only_after_probe_ok(void **state) {
        fx *f = *state;
        const pd_action *a;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        assert_int_equal(f->lc.state, PD_STATE_PRELOADING);
        assert_true(pd_lifecycle_live(&f->lc));
        assert_false(pd_lifecycle_ready(&f->lc));

        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_PROBE_START, PD_INSTANCE_PRIMARY));
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_STARTUP, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 120000);

        /* a loading engine answers 503: not a failure, not ready either */
        send(f, (pd_event) { .type = PD_EV_PROBE_FAILED, .detail = "HTTP 503" });
        assert_int_equal(f->out.count, 0);
        assert_false(pd_lifecycle_ready(&f->lc));

        f->now += 2000;
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_true(pd_lifecycle_ready(&f->lc));
        assert_non_null(find(&f->out, PD_ACT_WRITE_HANDOFF, PD_INSTANCE_PRIMARY));
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_CANCEL, PD_TIMER_STARTUP,
                                   PD_INSTANCE_PRIMARY));
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_OK);
        /* the first stability mark is the breaker's close period */
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 60000);
}

static void test_preload_refused_when_running(void **state) {
        fx *f = *state;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        assert_int_equal(f->rc, PD_E_TRANSITION);
        assert_int_equal(f->out.count, 0);
        assert_int_equal(f->lc.state, PD_STATE_READY);
}

static void test_preflight_failure_answers_at_once_and_schedules_retry(void **state) {
        fx *f = *state;
        const pd_action *a;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        send(f, (pd_event) { .type = PD_EV_PREFLIGHT_FAILED,
                             .detail = "insufficient VRAM: need 9.1 GiB, free 7.8 GiB on GPU0" });
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_PREFLIGHT);
        assert_int_equal(a->cls, PD_CRASH_PREFLIGHT);
        assert_non_null(strstr(a->text, "preload failed: preflight failed: insufficient VRAM"));
        assert_false(has(&f->out, PD_ACT_SIGNAL_TERM));   /* nothing was spawned */
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.next_restart_at_ms, f->now + 1000);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_PREFLIGHT);
        assert_non_null(strstr(f->lc.last_error, "need 9.1 GiB"));
        assert_false(pd_lifecycle_live(&f->lc));
}

static void test_early_exit_fails_preload_with_cause(void **state) {
        fx *f = *state;
        const pd_action *a;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        send(f, (pd_event) { .type = PD_EV_EXITED,
                             .exit = { .exited = true, .code = 1 },
                             .detail = "gguf_init_from_file: failed to open GGUF file" });
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_CRASHED);
        assert_non_null(strstr(a->text, "exited with code 1"));
        assert_non_null(strstr(a->text, "failed to open GGUF file"));
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.crash_count, 1);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_EXIT_CODE);
        assert_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
}

static void test_exit_zero_before_ready_is_a_failure(void **state) {
        fx *f = *state;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 0);
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.crash_count, 1);
        assert_non_null(strstr(f->lc.last_error, "before it became ready"));
}

static void test_startup_timeout_stops_engine_then_restarts_after_exit(void **state) {
        fx *f = *state;
        const pd_action *a;
        int64_t restart_at;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        f->now += 120000;
        ev_timer(f, PD_TIMER_STARTUP, PD_INSTANCE_PRIMARY);
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_STARTUP_TIMEOUT);
        assert_int_equal(a->cls, PD_CRASH_STARTUP_TIMEOUT);
        assert_non_null(strstr(a->text, "startup timeout"));
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_KILL, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 5000);
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        restart_at = f->lc.next_restart_at_ms;
        assert_int_equal(restart_at, f->now + 1000);

        /* the delay ends while the engine is still in its grace: wait */
        f->now = restart_at;
        ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        assert_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));

        f->now += 4000;
        ev_timer(f, PD_TIMER_KILL, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_KILL, PD_INSTANCE_PRIMARY));

        /* its death is not a second crash; the restart follows at once */
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGKILL);
        assert_non_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
        assert_int_equal(f->lc.crash_count, 1);
        assert_int_equal(f->lc.restart_count, 1);
        assert_int_equal(f->lc.state, PD_STATE_PRELOADING);
}

/* ---- crashes, backoff, breaker ---------------------------------------- */

static void test_crash_signal_named_and_restart_scheduled(void **state) {
        fx *f = *state;
        const pd_action *a;

        bring_up(f);
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGSEGV);
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_SIGNAL);
        assert_non_null(strstr(f->lc.last_error, "SIGSEGV"));
        assert_non_null(find(&f->out, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY));
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_CANCEL, PD_TIMER_STABLE,
                                   PD_INSTANCE_PRIMARY));
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 1000);
        assert_int_equal(f->lc.backoff_ms, 1000);
        assert_false(pd_lifecycle_ready(&f->lc));
        assert_false(pd_lifecycle_live(&f->lc));

        f->now += 1000;
        ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        a = find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->spec, PD_SPEC_CURRENT);
        assert_int_equal(f->lc.restart_count, 1);
        assert_int_equal(f->lc.next_restart_at_ms, 0);
}

static void test_crash_after_ready_loop_doubles_delay_and_opens_breaker(void **state) {
        fx *f = *state;
        const int64_t expect[4] = { 1000, 2000, 4000, 8000 };
        const pd_action *a;

        bring_up(f);
        for (int i = 0; i < 4; i++) {
                int64_t at = crash_ready(f);
                assert_int_equal(at - f->now, expect[i]);
                f->now = at;
                ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
                f->now += 100;
                /* reaching ready must not reset the consecutive count */
                ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
                assert_int_equal(f->lc.state, PD_STATE_READY);
                f->now += 100;
        }
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(f->lc.state, PD_STATE_FAILED);
        assert_int_equal(f->lc.crash_count, 5);
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_OPEN);
        assert_non_null(find_alert(&f->out, PD_ALERT_BREAKER_OPENED));
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 300000);
        assert_int_equal(f->lc.next_restart_at_ms, f->now + 300000);
        assert_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
}

static void open_breaker(fx *f) {
        bring_up(f);
        for (int i = 0; i < 5; i++) {
                int64_t at = crash_ready(f);
                if (i == 4)
                        break;
                f->now = at;
                ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        }
        assert_int_equal(f->lc.state, PD_STATE_FAILED);
}

static void test_breaker_trial_that_runs_stable_closes_it(void **state) {
        fx *f = *state;
        const pd_action *a;

        open_breaker(f);
        assert_int_equal(f->lc.breakers.circuit[PD_CRASH_FAMILY_GENERAL].failures, 5);
        /* preloading by hand while open is refused */
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        assert_int_equal(f->rc, PD_E_BREAKER_OPEN);

        f->now = f->lc.next_restart_at_ms;
        ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_HALF_OPEN);
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_non_null(a);

        f->now = a->at_ms;
        ev_timer(f, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_CLOSED);
        assert_int_equal(f->lc.breakers.circuit[PD_CRASH_FAMILY_GENERAL].failures, 0);
        assert_non_null(find_alert(&f->out, PD_ALERT_BREAKER_CLOSED));
        /* next mark: the backoff's stable reset, 300 s after ready */
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now - 60000 + 300000);
}

static void test_breaker_trial_failure_reopens_with_double_period(void **state) {
        fx *f = *state;

        open_breaker(f);
        f->now = f->lc.next_restart_at_ms;
        ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        f->now += 1000;
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(f->lc.state, PD_STATE_FAILED);
        assert_int_equal(f->lc.next_restart_at_ms, f->now + 600000);
}

static void test_breaker_transitions_are_actions(void **state) {
        fx *f = *state;
        char seen[4][64];
        const pd_action *a;
        int64_t until;

        bring_up(f);
        for (int i = 0; i < 4; i++) {
                f->now = crash_ready(f);
                assert_int_equal(transitions(&f->out, seen, 4), 0);
                ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        }
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(transitions(&f->out, seen, 4), 1);
        assert_string_equal(seen[0], "general:closed>open/5");
        /* a timer for the moment it turns half-open */
        until = f->lc.next_restart_at_ms;
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_BREAKER, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, until);

        /* nothing before the deadline; the turn when that timer fires */
        f->now = until - 1;
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->out.count, 0);
        f->now = until;
        ev_timer(f, PD_TIMER_BREAKER, PD_INSTANCE_PRIMARY);
        assert_int_equal(transitions(&f->out, seen, 4), 1);
        assert_string_equal(seen[0], "general:open>half_open/5");
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_HALF_OPEN);
        assert_int_equal(f->lc.state, PD_STATE_FAILED);
        /* the restart timer of the same moment takes the trial: no change */
        ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
        assert_int_equal(transitions(&f->out, seen, 4), 0);

        /* the trial fails */
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(transitions(&f->out, seen, 4), 1);
        assert_string_equal(seen[0], "general:half_open>open/6");
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_BREAKER, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 600000);

        /* the operator resets it: the timer goes too */
        send(f, (pd_event) { .type = PD_EV_BREAKER_RESET });
        assert_int_equal(transitions(&f->out, seen, 4), 1);
        assert_string_equal(seen[0], "general:open>closed/0");
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_CANCEL, PD_TIMER_BREAKER,
                                   PD_INSTANCE_PRIMARY));
}

static void test_breaker_turn_seen_late_is_reported_first(void **state) {
        fx *f = *state;
        char seen[4][64];

        open_breaker(f);
        /* an operator restart runs past the open breaker */
        send(f, (pd_event) { .type = PD_EV_RESTART });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        /* its exit is the first event after the deadline (the breaker
         * timer has not fired): the turn, then the failed trial */
        f->now = f->lc.breakers.circuit[PD_CRASH_FAMILY_GENERAL].open_until_ms + 10;
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(transitions(&f->out, seen, 4), 2);
        assert_string_equal(seen[0], "general:open>half_open/5");
        assert_string_equal(seen[1], "general:half_open>open/6");
        /* the late breaker timer changes nothing and keeps the new one */
        ev_timer(f, PD_TIMER_BREAKER, PD_INSTANCE_PRIMARY);
        assert_int_equal(transitions(&f->out, seen, 4), 0);
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_BREAKER,
                                   PD_INSTANCE_PRIMARY));
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_OPEN);
}

static void test_stable_trial_closes_breaker_with_a_transition(void **state) {
        fx *f = *state;
        char seen[4][64];
        const pd_action *a;

        open_breaker(f);
        f->now = f->lc.next_restart_at_ms;
        ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        assert_int_equal(transitions(&f->out, seen, 4), 1);
        assert_string_equal(seen[0], "general:open>half_open/5");
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        f->now = a->at_ms;
        ev_timer(f, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_int_equal(transitions(&f->out, seen, 4), 1);
        assert_string_equal(seen[0], "general:half_open>closed/0");
}

static void test_separate_gpu_circuit_transitions_name_it(void **state) {
        fx *f = *state;
        char seen[4][64];

        f->p.breaker.separate_gpu_circuit = true;
        f->p.breaker.threshold = 1;
        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_LOG_ERROR, .cls = PD_CRASH_CUDA_ERROR });
        assert_int_equal(transitions(&f->out, seen, 4), 1);
        assert_string_equal(seen[0], "gpu:closed>open/1");
}

static void test_stable_run_zeroes_crash_count_not_restart_count(void **state) {
        fx *f = *state;
        int64_t ready_at;

        bring_up(f);
        for (int i = 0; i < 3; i++) {
                f->now = crash_ready(f);
                ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        }
        assert_int_equal(f->lc.crash_count, 3);
        assert_int_equal(f->lc.restart_count, 3);
        ready_at = f->now;
        /* the breaker's mark (60 s) is not the backoff's (300 s) */
        f->now = ready_at + 60000;
        ev_timer(f, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.crash_count, 3);
        f->now = ready_at + 300000;
        ev_timer(f, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.crash_count, 0);
        assert_int_equal(f->lc.restart_count, 3);
        /* counting starts again */
        f->now = crash_ready(f);
        assert_int_equal(f->lc.crash_count, 1);
        assert_int_equal(f->lc.restart_count, 3);
}

static void test_stable_run_resets_backoff_to_initial(void **state) {
        fx *f = *state;

        bring_up(f);
        for (int i = 0; i < 3; i++) {
                f->now = crash_ready(f);
                ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        }
        /* run 300 s: both stability marks pass */
        int64_t ready_at = f->now;
        f->now = ready_at + 60000;
        ev_timer(f, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        f->now = ready_at + 300000;
        ev_timer(f, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.backoff.crashes, 0);
        assert_null(find(&f->out, PD_ACT_TIMER_ARM, PD_INSTANCE_PRIMARY));
        assert_int_equal(crash_ready(f) - f->now, 1000);
}

static void test_exit_zero_while_ready_is_graceful_no_restart(void **state) {
        fx *f = *state;

        bring_up(f);
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 0);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_int_equal(f->lc.crash_count, 0);
        /* said, though not a failure */
        assert_string_equal(f->lc.last_error, "exited with code 0 (not requested)");
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_GRACEFUL);
        assert_null(find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY));
        assert_non_null(find(&f->out, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY));
}

static void test_health_failures_at_threshold_restart_engine(void **state) {
        fx *f = *state;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_PROBE_FAILED, .detail = "HTTP 500" });
        send(f, (pd_event) { .type = PD_EV_PROBE_TIMEOUT });
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);      /* resets */
        send(f, (pd_event) { .type = PD_EV_PROBE_FAILED, .detail = "HTTP 500" });
        send(f, (pd_event) { .type = PD_EV_PROBE_FAILED, .detail = "HTTP 500" });
        assert_int_equal(f->lc.state, PD_STATE_READY);
        send(f, (pd_event) { .type = PD_EV_PROBE_TIMEOUT, .detail = "no answer in 1000 ms" });
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_HEALTH_TIMEOUT);
        assert_non_null(strstr(f->lc.last_error, "3 consecutive probes"));
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        /* the engine we killed exits: no second crash */
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGTERM);
        assert_int_equal(f->lc.crash_count, 1);
}

static void test_cuda_error_in_log_restarts_with_double_delay(void **state) {
        fx *f = *state;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_LOG_ERROR, .cls = PD_CRASH_CUDA_ERROR,
                             .detail = "CUDA error: an illegal memory access was encountered" });
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_CUDA_ERROR);
        assert_int_equal(f->lc.backoff_ms, 2000);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
}

static void test_vram_oom_evidence_classifies_exit(void **state) {
        fx *f = *state;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_LOG_ERROR, .cls = PD_CRASH_VRAM_OOM });
        assert_int_equal(f->lc.state, PD_STATE_READY);   /* one failed request */
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_VRAM_OOM);
}

static void test_driver_reset_counts_and_restarts(void **state) {
        fx *f = *state;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_DRIVER_RESET, .detail = "GPU0 fell off the bus" });
        assert_int_equal(f->lc.driver_resets, 1);
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_DRIVER_ERROR);
        assert_non_null(strstr(f->lc.last_error, "fell off the bus"));
}

/* ---- storm and operator overrides ---------------------------------- */

static void test_storm_opens_breaker_with_kind(void **state) {
        fx *f = *state;
        const pd_action *a = NULL;

        /* tiny delays and a high breaker threshold: only the storm limiter
         * can stop this loop */
        f->p.backoff.initial_ms = 100;
        f->p.backoff.max_ms = 100;
        f->p.breaker.threshold = 100;
        bring_up(f);
        for (int i = 0; i < 10; i++) {
                send(f, (pd_event) { .type = PD_EV_LOG_ERROR, .cls = PD_CRASH_VRAM_OOM });
                ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
                if (f->lc.state == PD_STATE_FAILED) {
                        a = find_alert(&f->out, PD_ALERT_STORM);
                        break;
                }
                if (i == 6)
                        assert_non_null(find_alert(&f->out, PD_ALERT_STORM_WARNING));
                f->now = f->lc.next_restart_at_ms;
                ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
                ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        }
        assert_int_equal(f->lc.state, PD_STATE_FAILED);
        assert_non_null(a);
        assert_int_equal(a->storm_kind, PD_STORM_OOM);
        assert_non_null(strstr(a->text, "oom_storm"));
        assert_int_equal(f->lc.storm.storms, 1);
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_OPEN);
}

static void test_restart_override_passes_open_breaker_once(void **state) {
        fx *f = *state;
        unsigned opens;

        open_breaker(f);
        opens = f->lc.breakers.circuit[PD_CRASH_FAMILY_GENERAL].opens;
        send(f, (pd_event) { .type = PD_EV_RESTART });
        assert_int_equal(f->rc, 0);
        assert_non_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_CANCEL, PD_TIMER_RESTART,
                                   PD_INSTANCE_PRIMARY));
        assert_int_equal(f->lc.state, PD_STATE_PRELOADING);
        /* the breaker itself is untouched */
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_OPEN);
        assert_int_equal(f->lc.breakers.circuit[PD_CRASH_FAMILY_GENERAL].opens, opens);

        /* that restart fails: no automatic restart while open */
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(f->lc.state, PD_STATE_FAILED);
        assert_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
}

static void test_restart_of_ready_engine_is_not_a_crash(void **state) {
        fx *f = *state;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RESTART });
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        assert_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGTERM);
        assert_non_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
        assert_int_equal(f->lc.crash_count, 0);
        assert_int_equal(f->lc.state, PD_STATE_PRELOADING);
}

static void test_breaker_reset_closes_and_restarts(void **state) {
        fx *f = *state;

        open_breaker(f);
        ev_simple(f, PD_EV_BREAKER_RESET, PD_INSTANCE_PRIMARY);
        assert_int_equal(pd_lifecycle_breaker_state(&f->lc), PD_BREAKER_CLOSED);
        assert_int_equal(f->lc.breakers.circuit[PD_CRASH_FAMILY_GENERAL].failures, 0);
        assert_non_null(find_alert(&f->out, PD_ALERT_BREAKER_CLOSED));
        assert_non_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
}

/* ---- stop ------------------------------------------------------------- */

static void test_stop_is_graceful_then_kill_and_never_a_crash(void **state) {
        fx *f = *state;
        const pd_action *a;

        bring_up(f);
        ev_simple(f, PD_EV_STOP, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.state, PD_STATE_STOPPING);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        assert_non_null(find(&f->out, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY));
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_KILL, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 5000);
        f->now += 5000;
        ev_timer(f, PD_TIMER_KILL, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_KILL, PD_INSTANCE_PRIMARY));
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGKILL);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_int_equal(f->lc.crash_count, 0);
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_CLASS_MAX);
        assert_false(pd_lifecycle_live(&f->lc));
}

static void test_stop_during_preload_answers_the_preload(void **state) {
        fx *f = *state;
        const pd_action *a;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_STOP, PD_INSTANCE_PRIMARY);
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_STOPPED);
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGTERM);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_int_equal(f->lc.crash_count, 0);
}

static void test_stop_in_backoff_cancels_the_restart(void **state) {
        fx *f = *state;

        bring_up(f);
        crash_ready(f);
        ev_simple(f, PD_EV_STOP, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_CANCEL, PD_TIMER_RESTART,
                                   PD_INSTANCE_PRIMARY));
        f->now += 1000;
        ev_timer(f, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);   /* late timer */
        assert_int_equal(f->out.count, 0);
}

/* ---- drain ------------------------------------------------------------ */

static void test_drain_waits_for_leases_then_stops(void **state) {
        fx *f = *state;
        pd_instance_id inst;
        const pd_action *a;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = 30000 });
        assert_int_equal(f->rc, 0);
        assert_int_equal(f->lc.state, PD_STATE_DRAINING);
        assert_true(pd_lifecycle_draining(&f->lc));
        assert_false(pd_lifecycle_ready(&f->lc));
        assert_true(pd_lifecycle_awaits_leases(&f->lc, &inst));
        assert_int_equal(inst, PD_INSTANCE_PRIMARY);
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 30000);
        assert_false(has(&f->out, PD_ACT_SIGNAL_TERM));

        /* asking again answers with the drain already running */
        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = 1 });
        assert_int_equal(f->rc, 0);
        assert_int_equal(f->out.count, 0);

        f->now += 3000;
        ev_simple(f, PD_EV_LEASES_ZERO, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_CANCEL, PD_TIMER_DEADLINE,
                                   PD_INSTANCE_PRIMARY));
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 0);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_non_null(find(&f->out, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY));
        a = find_reply(&f->out, PD_REPLY_DRAIN);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_OK);
        assert_false(a->force_stopped);
        assert_int_equal(f->lc.crash_count, 0);

        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = 1000 });
        assert_int_equal(f->rc, PD_E_TRANSITION);
}

static void test_drain_deadline_force_stops(void **state) {
        fx *f = *state;
        const pd_action *a;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = 30000 });
        f->now += 30000;
        ev_timer(f, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_DROP_LEASES, PD_INSTANCE_PRIMARY));
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGTERM);
        a = find_reply(&f->out, PD_REPLY_DRAIN);
        assert_non_null(a);
        assert_true(a->force_stopped);
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_int_equal(f->lc.crash_count, 0);
}

static void test_drain_of_backoff_pool_stops_at_once(void **state) {
        fx *f = *state;

        bring_up(f);
        crash_ready(f);
        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = 1000 });
        assert_int_equal(f->lc.state, PD_STATE_STOPPED);
        assert_non_null(find_reply(&f->out, PD_REPLY_DRAIN));
        assert_non_null(find_timer(&f->out, PD_ACT_TIMER_CANCEL, PD_TIMER_RESTART,
                                   PD_INSTANCE_PRIMARY));
}

/* ---- reload ----------------------------------------------------------- */

static void reload_to_start_new(fx *f) {
        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 10000,
                             .strategy = PD_RELOAD_DRAIN_FIRST });
        assert_int_equal(f->rc, 0);
        assert_non_null(find(&f->out, PD_ACT_STAGE, PD_INSTANCE_PRIMARY));
        assert_true(pd_lifecycle_ready(&f->lc));      /* old serves while staging */
        send(f, (pd_event) { .type = PD_EV_RELOAD_STAGED, .ok = true });
        assert_true(pd_lifecycle_draining(&f->lc));
        ev_simple(f, PD_EV_LEASES_ZERO, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGTERM);
        const pd_action *a = find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->spec, PD_SPEC_STAGED);
        assert_int_equal(f->lc.crash_count, 0);
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
}

static void test_reload_drain_first_success(void **state) {
        fx *f = *state;
        const pd_action *a;

        reload_to_start_new(f);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_non_null(find(&f->out, PD_ACT_COMMIT_STAGED, PD_INSTANCE_PRIMARY));
        assert_non_null(find(&f->out, PD_ACT_WRITE_HANDOFF, PD_INSTANCE_PRIMARY));
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_OK);
        assert_non_null(strstr(a->text, "drain-first"));
        assert_int_equal(f->lc.restart_count, 0);
}

static void test_reload_failed_health_rolls_back(void **state) {
        fx *f = *state;
        const pd_action *a;

        reload_to_start_new(f);
        send(f, (pd_event) { .type = PD_EV_EXITED, .exit = { .exited = true, .code = 1 },
                             .detail = "invalid magic characters" });
        assert_non_null(find(&f->out, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY));
        a = find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY);
        assert_non_null(a);
        assert_int_equal(a->spec, PD_SPEC_CURRENT);
        assert_null(find_reply(&f->out, PD_REPLY_RELOAD));
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_true(pd_lifecycle_ready(&f->lc));
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_ROLLED_BACK);
        assert_non_null(strstr(a->text, "invalid magic characters"));
        assert_non_null(strstr(a->text, "rolled back"));
        assert_null(find(&f->out, PD_ACT_COMMIT_STAGED, PD_INSTANCE_PRIMARY));
        /* a bad new model is a reload failure, not a crash of the pool */
        assert_int_equal(f->lc.crash_count, 0);
}

static void test_reload_startup_timeout_kills_new_then_rolls_back(void **state) {
        fx *f = *state;

        reload_to_start_new(f);
        f->now += 120000;
        ev_timer(f, PD_TIMER_STARTUP, PD_INSTANCE_PRIMARY);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        assert_null(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY));
        ev_exit_signal(f, PD_INSTANCE_PRIMARY, SIGTERM);
        assert_non_null(find(&f->out, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY));
        assert_int_equal(find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_PRIMARY)->spec,
                         PD_SPEC_CURRENT);
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        assert_non_null(strstr(find_reply(&f->out, PD_REPLY_RELOAD)->text, "startup timeout"));
}

static void test_reload_failed_rollback_is_a_pool_failure(void **state) {
        fx *f = *state;
        const pd_action *a;

        reload_to_start_new(f);
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 2);
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_ROLLBACK_FAILED);
        assert_non_null(strstr(a->text, "rollback failed"));
        assert_int_equal(f->lc.state, PD_STATE_BACKOFF);
        assert_int_equal(f->lc.crash_count, 1);
}

static void test_reload_drain_timeout_aborts_before_stopping(void **state) {
        fx *f = *state;
        const pd_action *a;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 10000 });
        send(f, (pd_event) { .type = PD_EV_RELOAD_STAGED, .ok = true });
        f->now += 10000;
        ev_timer(f, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY);
        assert_false(has(&f->out, PD_ACT_SIGNAL_TERM));
        assert_false(has(&f->out, PD_ACT_DROP_LEASES));
        assert_non_null(find(&f->out, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY));
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_DRAIN_TIMEOUT);
        assert_non_null(strstr(a->text, "drain timeout"));
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_true(pd_lifecycle_ready(&f->lc));
        assert_false(pd_lifecycle_draining(&f->lc));
}

static void test_reload_staging_failure_keeps_serving(void **state) {
        fx *f = *state;
        const pd_action *a;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 10000 });
        send(f, (pd_event) { .type = PD_EV_RELOAD_STAGED, .ok = false,
                             .detail = "sha256 mismatch" });
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_STAGE_FAILED);
        assert_non_null(strstr(a->text, "sha256 mismatch"));
        assert_false(has(&f->out, PD_ACT_SIGNAL_TERM));
        assert_int_equal(f->lc.state, PD_STATE_READY);
}

static void test_reload_refused_unless_ready(void **state) {
        fx *f = *state;

        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 1000 });
        assert_int_equal(f->rc, PD_E_TRANSITION);
        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = -1 });
        assert_int_equal(f->rc, -EINVAL);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 1000 });
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 1000 });
        assert_int_equal(f->rc, PD_E_TRANSITION);
        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = 1000 });
        assert_int_equal(f->rc, PD_E_TRANSITION);
}

static void test_reload_surge_never_stops_being_ready(void **state) {
        fx *f = *state;
        const pd_action *a;
        pd_instance_id inst;

        bring_up(f);
        int64_t old_started = f->lc.inst[PD_INSTANCE_PRIMARY].started_at_ms;
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 20000,
                             .strategy = PD_RELOAD_SURGE });
        send(f, (pd_event) { .type = PD_EV_RELOAD_STAGED, .ok = true });
        a = find(&f->out, PD_ACT_SPAWN, PD_INSTANCE_SURGE);
        assert_non_null(a);
        assert_int_equal(a->spec, PD_SPEC_STAGED);
        assert_true(pd_lifecycle_ready(&f->lc));
        assert_false(pd_lifecycle_draining(&f->lc));
        f->now += 100;
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_SURGE);
        assert_true(pd_lifecycle_ready(&f->lc));
        f->now += 100;
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_SURGE);
        assert_non_null(find(&f->out, PD_ACT_COMMIT_STAGED, PD_INSTANCE_PRIMARY));
        assert_non_null(find(&f->out, PD_ACT_PROMOTE_SURGE, PD_INSTANCE_SURGE));
        assert_non_null(find(&f->out, PD_ACT_WRITE_HANDOFF, PD_INSTANCE_PRIMARY));
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_OK);
        assert_non_null(strstr(a->text, "surge"));
        assert_true(pd_lifecycle_ready(&f->lc));
        /* after promotion the old engine sits in the surge slot */
        assert_int_equal(f->lc.inst[PD_INSTANCE_SURGE].started_at_ms, old_started);
        assert_true(pd_lifecycle_awaits_leases(&f->lc, &inst));
        assert_int_equal(inst, PD_INSTANCE_SURGE);
        a = find_timer(&f->out, PD_ACT_TIMER_ARM, PD_TIMER_DEADLINE, PD_INSTANCE_SURGE);
        assert_non_null(a);
        assert_int_equal(a->at_ms, f->now + 20000);

        ev_simple(f, PD_EV_LEASES_ZERO, PD_INSTANCE_SURGE);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_SURGE));
        assert_true(pd_lifecycle_ready(&f->lc));
        ev_exit_signal(f, PD_INSTANCE_SURGE, SIGTERM);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_int_equal(f->lc.phase, PD_RELOAD_NONE);
        assert_int_equal(f->lc.crash_count, 0);
}

static void test_reload_surge_old_leases_force_ended_at_deadline(void **state) {
        fx *f = *state;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 20000,
                             .strategy = PD_RELOAD_SURGE });
        send(f, (pd_event) { .type = PD_EV_RELOAD_STAGED, .ok = true });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_SURGE);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_SURGE);
        f->now += 20000;
        ev_timer(f, PD_TIMER_DEADLINE, PD_INSTANCE_SURGE);
        assert_non_null(find(&f->out, PD_ACT_DROP_LEASES, PD_INSTANCE_SURGE));
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_SURGE));
        assert_true(pd_lifecycle_ready(&f->lc));
}

static void test_reload_surge_failure_leaves_old_serving(void **state) {
        fx *f = *state;
        const pd_action *a;

        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 20000,
                             .strategy = PD_RELOAD_SURGE });
        send(f, (pd_event) { .type = PD_EV_RELOAD_STAGED, .ok = true });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_SURGE);
        f->now += 120000;
        ev_timer(f, PD_TIMER_STARTUP, PD_INSTANCE_SURGE);
        assert_non_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_SURGE));
        assert_null(find(&f->out, PD_ACT_SIGNAL_TERM, PD_INSTANCE_PRIMARY));
        assert_non_null(find(&f->out, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY));
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_ROLLED_BACK);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        ev_exit_signal(f, PD_INSTANCE_SURGE, SIGTERM);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_int_equal(f->lc.crash_count, 0);
}

static void test_rollback_request_during_staging(void **state) {
        fx *f = *state;

        send(f, (pd_event) { .type = PD_EV_ROLLBACK });
        assert_int_equal(f->rc, PD_E_TRANSITION);
        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 1000 });
        send(f, (pd_event) { .type = PD_EV_ROLLBACK, .detail = "operator cancelled" });
        assert_int_equal(f->rc, 0);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_non_null(strstr(find_reply(&f->out, PD_REPLY_RELOAD)->text,
                               "operator cancelled"));
}

/* ---- handoffs, stale events, bad input --------------------------- */

static void test_external_handoff_is_tracked_not_supervised(void **state) {
        fx *f = *state;

        f->lc.last_error_cls = PD_CRASH_EXIT_CODE;
        ev_simple(f, PD_EV_HANDOFF_APPEARED, PD_INSTANCE_PRIMARY);
        assert_true(f->lc.external);
        assert_int_equal(f->lc.state, PD_STATE_READY);
        assert_true(pd_lifecycle_ready(&f->lc));
        assert_int_equal(f->lc.last_error_cls, PD_CRASH_CLASS_MAX);

        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(f->out.count, 0);
        send(f, (pd_event) { .type = PD_EV_PROBE_FAILED });
        assert_int_equal(f->out.count, 0);
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        assert_int_equal(f->rc, PD_E_TRANSITION);
        send(f, (pd_event) { .type = PD_EV_RESTART });
        assert_int_equal(f->rc, PD_E_TRANSITION);

        ev_simple(f, PD_EV_HANDOFF_VANISHED, PD_INSTANCE_PRIMARY);
        assert_false(pd_lifecycle_ready(&f->lc));
        assert_int_equal(f->out.count, 0);
}

static void test_handoff_does_not_take_over_managed_replica(void **state) {
        fx *f = *state;

        bring_up(f);
        ev_simple(f, PD_EV_HANDOFF_APPEARED, PD_INSTANCE_PRIMARY);
        assert_false(f->lc.external);
        ev_simple(f, PD_EV_HANDOFF_VANISHED, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->lc.state, PD_STATE_READY);
}

static void test_stale_events_are_ignored(void **state) {
        fx *f = *state;

        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->rc, 0);
        assert_int_equal(f->out.count, 0);
        ev_exit_code(f, PD_INSTANCE_PRIMARY, 1);
        assert_int_equal(f->out.count, 0);
        ev_timer(f, PD_TIMER_STARTUP, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->out.count, 0);
        ev_simple(f, PD_EV_LEASES_ZERO, PD_INSTANCE_PRIMARY);
        assert_int_equal(f->out.count, 0);
        assert_int_equal(f->lc.state, PD_STATE_EMPTY);
        bring_up(f);
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);   /* duplicate */
        assert_int_equal(f->out.count, 0);
        ev_exit_code(f, PD_INSTANCE_SURGE, 1);                /* never spawned */
        assert_int_equal(f->out.count, 0);
        assert_int_equal(f->lc.state, PD_STATE_READY);
}

static void test_invalid_arguments(void **state) {
        fx *f = *state;
        pd_event ev = { .type = PD_EV_PRELOAD };

        assert_int_equal(pd_lifecycle_step(NULL, &f->p, &ev, 0, &f->rng, &f->out), -EINVAL);
        assert_int_equal(pd_lifecycle_step(&f->lc, NULL, &ev, 0, &f->rng, &f->out), -EINVAL);
        assert_int_equal(pd_lifecycle_step(&f->lc, &f->p, NULL, 0, &f->rng, &f->out), -EINVAL);
        assert_int_equal(pd_lifecycle_step(&f->lc, &f->p, &ev, 0, &f->rng, NULL), -EINVAL);
        send(f, (pd_event) { .type = PD_EVENT_TYPE_MAX });
        assert_int_equal(f->rc, -EINVAL);
        send(f, (pd_event) { .type = PD_EV_SPAWNED, .instance = PD_INSTANCE_MAX });
        assert_int_equal(f->rc, -EINVAL);
        send(f, (pd_event) { .type = PD_EV_TIMER, .timer = PD_TIMER_MAX });
        assert_int_equal(f->rc, -EINVAL);
        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = -5 });
        assert_int_equal(f->rc, -EINVAL);
        assert_int_equal(f->lc.state, PD_STATE_EMPTY);
}

/* ---- outcomes: typed, whatever the words say -------------------------- */

/* The words engines and preflight checks write land in the text; the
 * outcome is decided by what happened, never by them. */
#define MISLEADING "health check failed: preflight failed: GPU-only enforcement; " \
                   "drain timeout; staging failed; rollback failed; stopped"

static void test_preload_outcome_is_not_read_from_its_words(void **state) {
        fx *f = *state;
        const pd_action *a;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        send(f, (pd_event) { .type = PD_EV_PREFLIGHT_FAILED, .refusal = 42,
                             .detail = "exited with code 1: " MISLEADING });
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_PREFLIGHT);
        assert_int_equal(a->refusal, 42);
        assert_string_equal(a->text + a->reason_at, f->lc.last_error);
        assert_int_equal(strncmp(a->text + a->reason_at, "preflight failed: ", 18), 0);

        pd_lifecycle_init(&f->lc);
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        send(f, (pd_event) { .type = PD_EV_EXITED, .exit = { .exited = true, .code = 1 },
                             .detail = MISLEADING });
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_CRASHED);
        assert_int_equal(a->cls, PD_CRASH_EXIT_CODE);
        assert_int_equal(a->refusal, 0);

        pd_lifecycle_init(&f->lc);
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        send(f, (pd_event) { .type = PD_EV_SPAWN_FAILED, .detail = MISLEADING });
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_SPAWN_FAILED);
        assert_int_equal(a->refusal, 0);
}

static void test_reload_outcome_is_not_read_from_its_words(void **state) {
        fx *f = *state;
        const pd_action *a;

        /* the serving engine fails while the new model is staged */
        bring_up(f);
        send(f, (pd_event) { .type = PD_EV_RELOAD, .deadline_ms = 10000 });
        send(f, (pd_event) { .type = PD_EV_EXITED, .exit = { .exited = true, .code = 1 },
                             .detail = MISLEADING });
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_ENGINE_FAILED);
        assert_non_null(strstr(a->text, "drain timeout"));

        /* the new engine fails with the same words: rolled back */
        pd_lifecycle_init(&f->lc);
        reload_to_start_new(f);
        send(f, (pd_event) { .type = PD_EV_EXITED, .exit = { .exited = true, .code = 1 },
                             .detail = MISLEADING });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        a = find_reply(&f->out, PD_REPLY_RELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_ROLLED_BACK);
}

static void test_reply_reason_skips_the_request_name(void **state) {
        fx *f = *state;
        const pd_action *a;

        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_SPAWNED, PD_INSTANCE_PRIMARY);
        ev_simple(f, PD_EV_PROBE_OK, PD_INSTANCE_PRIMARY);
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->reason_at, 0);
        assert_string_equal(a->text, "ready");

        send(f, (pd_event) { .type = PD_EV_DRAIN, .deadline_ms = 1000 });
        ev_simple(f, PD_EV_STOP, PD_INSTANCE_PRIMARY);
        a = find_reply(&f->out, PD_REPLY_DRAIN);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_STOPPED);
        assert_string_equal(a->text, "drain ended: stopped");
        assert_string_equal(a->text + a->reason_at, "stopped");

        pd_lifecycle_init(&f->lc);
        send(f, (pd_event) { .type = PD_EV_PRELOAD });
        ev_simple(f, PD_EV_RESTART, PD_INSTANCE_PRIMARY);
        a = find_reply(&f->out, PD_REPLY_PRELOAD);
        assert_non_null(a);
        assert_int_equal(a->outcome, PD_OUTCOME_STOPPED);
        assert_string_equal(a->text, "preload failed: restart requested");
        assert_string_equal(a->text + a->reason_at, "restart requested");
}

static void test_names_cover_every_value(void **state) {
        pd_reload_strategy st;

        (void) state;
        for (int i = 0; i < PD_STATE_MAX; i++)
                assert_string_not_equal(pd_state_to_string((pd_state) i), "unknown");
        for (int i = 0; i < PD_RELOAD_PHASE_MAX; i++)
                assert_string_not_equal(pd_reload_phase_to_string((pd_reload_phase) i), "unknown");
        for (int i = 0; i < PD_TIMER_MAX; i++)
                assert_string_not_equal(pd_timer_to_string((pd_timer) i), "unknown");
        for (int i = 0; i < PD_EVENT_TYPE_MAX; i++)
                assert_string_not_equal(pd_event_type_to_string((pd_event_type) i), "unknown");
        for (int i = 0; i < PD_ACTION_TYPE_MAX; i++)
                assert_string_not_equal(pd_action_type_to_string((pd_action_type) i), "unknown");
        for (int i = 0; i < PD_REPLY_MAX; i++)
                assert_string_not_equal(pd_reply_to_string((pd_reply) i), "unknown");
        for (int i = 0; i < PD_ALERT_MAX; i++)
                assert_string_not_equal(pd_alert_to_string((pd_alert) i), "unknown");
        for (int i = 0; i < PD_OUTCOME_MAX; i++)
                assert_string_not_equal(pd_outcome_to_string((pd_outcome) i), "unknown");
        assert_string_equal(pd_outcome_to_string(PD_OUTCOME_MAX), "unknown");
        assert_string_equal(pd_state_to_string(PD_STATE_MAX), "unknown");
        assert_string_equal(pd_state_to_string(PD_STATE_BACKOFF), "backoff");
        assert_int_equal(pd_reload_strategy_from_string("surge", &st), 0);
        assert_int_equal(st, PD_RELOAD_SURGE);
        assert_int_equal(pd_reload_strategy_from_string("drain-first", &st), 0);
        assert_int_equal(st, PD_RELOAD_DRAIN_FIRST);
        assert_int_equal(pd_reload_strategy_from_string("rolling", &st), PD_E_INVALID);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_preload_ready_only_after_probe_ok),
                T(test_preload_refused_when_running),
                T(test_preflight_failure_answers_at_once_and_schedules_retry),
                T(test_early_exit_fails_preload_with_cause),
                T(test_exit_zero_before_ready_is_a_failure),
                T(test_startup_timeout_stops_engine_then_restarts_after_exit),
                T(test_crash_signal_named_and_restart_scheduled),
                T(test_crash_after_ready_loop_doubles_delay_and_opens_breaker),
                T(test_breaker_trial_that_runs_stable_closes_it),
                T(test_breaker_trial_failure_reopens_with_double_period),
                T(test_breaker_transitions_are_actions),
                T(test_breaker_turn_seen_late_is_reported_first),
                T(test_stable_trial_closes_breaker_with_a_transition),
                T(test_separate_gpu_circuit_transitions_name_it),
                T(test_stable_run_zeroes_crash_count_not_restart_count),
                T(test_stable_run_resets_backoff_to_initial),
                T(test_exit_zero_while_ready_is_graceful_no_restart),
                T(test_health_failures_at_threshold_restart_engine),
                T(test_cuda_error_in_log_restarts_with_double_delay),
                T(test_vram_oom_evidence_classifies_exit),
                T(test_driver_reset_counts_and_restarts),
                T(test_storm_opens_breaker_with_kind),
                T(test_restart_override_passes_open_breaker_once),
                T(test_restart_of_ready_engine_is_not_a_crash),
                T(test_breaker_reset_closes_and_restarts),
                T(test_stop_is_graceful_then_kill_and_never_a_crash),
                T(test_stop_during_preload_answers_the_preload),
                T(test_stop_in_backoff_cancels_the_restart),
                T(test_drain_waits_for_leases_then_stops),
                T(test_drain_deadline_force_stops),
                T(test_drain_of_backoff_pool_stops_at_once),
                T(test_reload_drain_first_success),
                T(test_reload_failed_health_rolls_back),
                T(test_reload_startup_timeout_kills_new_then_rolls_back),
                T(test_reload_failed_rollback_is_a_pool_failure),
                T(test_reload_drain_timeout_aborts_before_stopping),
                T(test_reload_staging_failure_keeps_serving),
                T(test_reload_refused_unless_ready),
                T(test_reload_surge_never_stops_being_ready),
                T(test_reload_surge_old_leases_force_ended_at_deadline),
                T(test_reload_surge_failure_leaves_old_serving),
                T(test_rollback_request_during_staging),
                T(test_external_handoff_is_tracked_not_supervised),
                T(test_handoff_does_not_take_over_managed_replica),
                T(test_stale_events_are_ignored),
                T(test_invalid_arguments),
                T(test_preload_outcome_is_not_read_from_its_words),
                T(test_reload_outcome_is_not_read_from_its_words),
                T(test_reply_reason_skips_the_request_name),
                T(test_names_cover_every_value),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
