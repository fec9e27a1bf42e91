/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "pool-domain/breaker.h"

#define OPEN_MS 300000
#define CLOSE_AFTER_MS 60000

static void fail_n(pd_breaker *b, const pd_breaker_policy *p, unsigned n, int64_t now_ms) {
        for (unsigned i = 0; i < n; i++)
                pd_breaker_record_failure(b, p, now_ms);
}

/* Opens the breaker at t, then takes the trial at the deadline. */
static int64_t open_and_take_trial(pd_breaker *b, const pd_breaker_policy *p, int64_t t) {
        fail_n(b, p, p->threshold, t);
        assert_int_equal(b->state, PD_BREAKER_OPEN);
        assert_true(pd_breaker_allow(b, p, b->open_until_ms));
        assert_int_equal(b->state, PD_BREAKER_HALF_OPEN);
        return b->open_until_ms;
}

static void assert_rejected(const pd_breaker_policy *p, const char *msg) {
        pd_error err = { .msg = "" };

        assert_int_equal(pd_breaker_policy_validate(p, &err), PD_E_INVALID);
        assert_string_equal(err.msg, msg);
}

static void test_policy_init_gives_design_defaults(void **state) {
        pd_breaker_policy p;

        (void) state;
        pd_breaker_policy_init(&p);
        assert_int_equal(p.threshold, 5);
        assert_int_equal(p.open_ms, 300000);
        assert_int_equal(p.close_after_ms, 60000);
        assert_false(p.separate_gpu_circuit);
        assert_int_equal(pd_breaker_policy_validate(&p, NULL), 0);
}

static void test_state_to_string_names_every_state(void **state) {
        (void) state;
        assert_string_equal(pd_breaker_state_to_string(PD_BREAKER_CLOSED), "closed");
        assert_string_equal(pd_breaker_state_to_string(PD_BREAKER_OPEN), "open");
        assert_string_equal(pd_breaker_state_to_string(PD_BREAKER_HALF_OPEN), "half_open");
        assert_null(pd_breaker_state_to_string(PD_BREAKER_STATE_MAX));
}

static void test_four_failures_stay_closed(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        for (int i = 0; i < 4; i++)
                assert_false(pd_breaker_record_failure(&b, &p, 1000 * i));
        assert_int_equal(b.state, PD_BREAKER_CLOSED);
        assert_int_equal(b.failures, 4);
        assert_int_equal(b.opens, 0);
        assert_true(pd_breaker_allow(&b, &p, 5000));
        assert_true(pd_breaker_allow(&b, &p, 5000));
}

static void test_fifth_failure_opens_until_timeout(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 4, 0);
        assert_true(pd_breaker_record_failure(&b, &p, 10000));
        assert_int_equal(b.state, PD_BREAKER_OPEN);
        assert_int_equal(b.opens, 1);
        assert_int_equal(b.failures, 5);
        assert_int_equal(b.open_until_ms, 10000 + OPEN_MS);
        assert_false(pd_breaker_allow(&b, &p, 10000));
        assert_false(pd_breaker_allow(&b, &p, 10000 + OPEN_MS - 1));
        assert_int_equal(b.state, PD_BREAKER_OPEN);
}

static void test_half_open_allows_exactly_one_trial(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 5, 0);
        assert_true(pd_breaker_allow(&b, &p, OPEN_MS));
        assert_int_equal(b.state, PD_BREAKER_HALF_OPEN);
        assert_true(b.trial_taken);
        assert_false(pd_breaker_allow(&b, &p, OPEN_MS));
        assert_false(pd_breaker_allow(&b, &p, OPEN_MS + 3600000));
}

static void test_half_open_reached_late_still_allows_one_trial(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 5, 0);
        assert_true(pd_breaker_allow(&b, &p, 10 * OPEN_MS));
        assert_false(pd_breaker_allow(&b, &p, 10 * OPEN_MS));
}

static void test_failed_trial_reopens_with_period_doubled(void **state) {
        pd_breaker_policy p;
        pd_breaker b;
        int64_t t;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        t = open_and_take_trial(&b, &p, 0);
        assert_true(pd_breaker_record_failure(&b, &p, t + 5000));
        assert_int_equal(b.state, PD_BREAKER_OPEN);
        assert_int_equal(b.opens, 2);
        assert_int_equal(b.open_period_ms, 600000);
        assert_int_equal(b.open_until_ms, t + 5000 + 600000);
        assert_false(pd_breaker_allow(&b, &p, t + 5000 + 599999));

        /* And again on the next failed trial. */
        t = b.open_until_ms;
        assert_true(pd_breaker_allow(&b, &p, t));
        assert_true(pd_breaker_record_failure(&b, &p, t));
        assert_int_equal(b.open_period_ms, 1200000);
        assert_int_equal(b.open_until_ms, t + 1200000);
        assert_int_equal(b.opens, 3);
}

static void test_open_period_is_capped(void **state) {
        pd_breaker_policy p;
        pd_breaker b;
        int64_t t;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        t = open_and_take_trial(&b, &p, 0);
        for (int i = 0; i < 40; i++) {
                assert_true(pd_breaker_record_failure(&b, &p, t));
                assert_true(b.open_period_ms <= PD_BREAKER_OPEN_MAX_MS);
                t = b.open_until_ms;
                assert_true(pd_breaker_allow(&b, &p, t));
        }
        assert_true(pd_breaker_record_failure(&b, &p, t));
        assert_int_equal(b.open_period_ms, PD_BREAKER_OPEN_MAX_MS);
        assert_int_equal(b.open_until_ms, t + PD_BREAKER_OPEN_MAX_MS);
}

static void test_stable_trial_closes_and_restores_period(void **state) {
        pd_breaker_policy p;
        pd_breaker b;
        int64_t t;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        t = open_and_take_trial(&b, &p, 0);
        /* A failed trial first, so there is a doubled period to restore. */
        pd_breaker_record_failure(&b, &p, t);
        t = b.open_until_ms;
        assert_true(pd_breaker_allow(&b, &p, t));

        assert_true(pd_breaker_record_running(&b, &p, t, t + CLOSE_AFTER_MS));
        assert_int_equal(b.state, PD_BREAKER_CLOSED);
        assert_int_equal(b.failures, 0);
        assert_true(pd_breaker_allow(&b, &p, t + CLOSE_AFTER_MS));

        t += CLOSE_AFTER_MS;
        fail_n(&b, &p, 4, t);
        assert_int_equal(b.state, PD_BREAKER_CLOSED);
        assert_true(pd_breaker_record_failure(&b, &p, t));
        assert_int_equal(b.open_until_ms, t + OPEN_MS);
}

static void test_short_trial_run_leaves_half_open(void **state) {
        pd_breaker_policy p;
        pd_breaker b;
        int64_t t;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        t = open_and_take_trial(&b, &p, 0);
        assert_false(pd_breaker_record_running(&b, &p, t, t + CLOSE_AFTER_MS - 1));
        assert_int_equal(b.state, PD_BREAKER_HALF_OPEN);
        assert_int_equal(b.failures, 5);
        assert_false(pd_breaker_allow(&b, &p, t + CLOSE_AFTER_MS - 1));
}

static void test_crash_after_ready_loop_still_opens(void **state) {
        pd_breaker_policy p;
        pd_breaker b;
        int64_t t = 0;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        for (int i = 0; i < 4; i++) {
                /* Ready after 10 s, crashes 20 s later: never stable. */
                assert_false(pd_breaker_record_running(&b, &p, t, t + 10000));
                assert_false(pd_breaker_record_failure(&b, &p, t + 30000));
                t += 40000;
        }
        assert_false(pd_breaker_record_running(&b, &p, t, t + 10000));
        assert_true(pd_breaker_record_failure(&b, &p, t + 30000));
        assert_int_equal(b.state, PD_BREAKER_OPEN);
}

static void test_stable_run_zeroes_failures_while_closed(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 4, 0);
        assert_true(pd_breaker_record_running(&b, &p, 1000, 1000 + CLOSE_AFTER_MS));
        assert_int_equal(b.failures, 0);
        fail_n(&b, &p, 4, 100000);
        assert_int_equal(b.state, PD_BREAKER_CLOSED);
        /* Nothing left to change. */
        pd_breaker_init(&b);
        assert_false(pd_breaker_record_running(&b, &p, 0, 10 * CLOSE_AFTER_MS));
}

static void test_record_running_ignores_clock_going_backwards(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 3, 0);
        assert_false(pd_breaker_record_running(&b, &p, 500000, 0));
        assert_false(pd_breaker_record_running(&b, &p, INT64_MAX, INT64_MIN));
        assert_int_equal(b.failures, 3);
        assert_true(pd_breaker_record_running(&b, &p, INT64_MIN, INT64_MAX));
}

static void test_failure_while_open_counts_but_keeps_deadline(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 5, 0);
        assert_false(pd_breaker_record_failure(&b, &p, 1000));
        assert_int_equal(b.failures, 6);
        assert_int_equal(b.opens, 1);
        assert_int_equal(b.open_until_ms, OPEN_MS);
}

static void test_failure_after_deadline_is_a_failed_trial(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 5, 0);
        /* An operator-forced restart failed after the timeout, before
         * anyone asked allow(): it was the trial. */
        assert_true(pd_breaker_record_failure(&b, &p, OPEN_MS + 1));
        assert_int_equal(b.state, PD_BREAKER_OPEN);
        assert_int_equal(b.open_until_ms, OPEN_MS + 1 + 2 * OPEN_MS);
}

static void test_advance_turns_half_open_once_at_the_deadline(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        assert_false(pd_breaker_advance(&b, 0));          /* closed stays */
        fail_n(&b, &p, 5, 0);
        assert_false(pd_breaker_advance(&b, OPEN_MS - 1));
        assert_int_equal(b.state, PD_BREAKER_OPEN);
        assert_true(pd_breaker_advance(&b, OPEN_MS));
        assert_int_equal(b.state, PD_BREAKER_HALF_OPEN);
        assert_int_equal(b.failures, 5);
        assert_false(b.trial_taken);
        assert_false(pd_breaker_advance(&b, OPEN_MS + 1));
        /* the turn leaves the trial to allow() */
        assert_true(pd_breaker_allow(&b, &p, OPEN_MS + 1));
        assert_false(pd_breaker_allow(&b, &p, OPEN_MS + 1));
}

static void test_advance_first_splits_a_late_failed_trial(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        fail_n(&b, &p, 5, 0);
        /* seen apart: open -> half_open, then half_open -> open */
        assert_true(pd_breaker_advance(&b, OPEN_MS + 1));
        assert_int_equal(b.state, PD_BREAKER_HALF_OPEN);
        assert_true(pd_breaker_record_failure(&b, &p, OPEN_MS + 1));
        assert_int_equal(b.state, PD_BREAKER_OPEN);
        assert_int_equal(b.failures, 6);
        assert_int_equal(b.open_until_ms, OPEN_MS + 1 + 2 * OPEN_MS);
}

static void test_reset_closes_and_zeroes(void **state) {
        pd_breaker_policy p;
        pd_breaker b;
        int64_t t;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        t = open_and_take_trial(&b, &p, 0);
        pd_breaker_record_failure(&b, &p, t);
        pd_breaker_reset(&b);
        assert_int_equal(b.state, PD_BREAKER_CLOSED);
        assert_int_equal(b.failures, 0);
        assert_int_equal(b.opens, 2);
        assert_true(pd_breaker_allow(&b, &p, t));
        assert_true(pd_breaker_allow(&b, &p, t));

        /* The doubled period is gone too. */
        fail_n(&b, &p, 4, t);
        assert_int_equal(b.state, PD_BREAKER_CLOSED);
        assert_true(pd_breaker_record_failure(&b, &p, t));
        assert_int_equal(b.open_until_ms, t + OPEN_MS);
}

static void test_trip_opens_at_once(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        pd_breaker_trip(&b, &p, 7000);
        assert_int_equal(b.state, PD_BREAKER_OPEN);
        assert_int_equal(b.opens, 1);
        assert_int_equal(b.failures, 0);
        assert_int_equal(b.open_until_ms, 7000 + OPEN_MS);
        assert_false(pd_breaker_allow(&b, &p, 7000));
        assert_true(pd_breaker_allow(&b, &p, 7000 + OPEN_MS));
}

static void test_trip_while_open_extends_without_new_open(void **state) {
        pd_breaker_policy p;
        pd_breaker b;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_init(&b);
        pd_breaker_trip(&b, &p, 0);
        pd_breaker_trip(&b, &p, 100000);
        assert_int_equal(b.opens, 1);
        assert_int_equal(b.open_until_ms, 100000 + OPEN_MS);
        /* An earlier deadline never shortens the open period. */
        pd_breaker_trip(&b, &p, 50000);
        assert_int_equal(b.open_until_ms, 100000 + OPEN_MS);
}

static void test_set_shared_counts_every_class_in_general(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;

        (void) state;
        pd_breaker_policy_init(&p);
        pd_breaker_set_init(&s);
        for (unsigned c = 0; c < PD_CRASH_CLASS_MAX; c++)
                assert_ptr_equal(pd_breaker_set_for(&s, &p, (pd_crash_class) c),
                                 &s.circuit[PD_CRASH_FAMILY_GENERAL]);

        assert_false(pd_breaker_set_record_failure(&s, &p, PD_CRASH_CUDA_ERROR, 0));
        assert_false(pd_breaker_set_record_failure(&s, &p, PD_CRASH_VRAM_OOM, 0));
        assert_false(pd_breaker_set_record_failure(&s, &p, PD_CRASH_DRIVER_ERROR, 0));
        assert_false(pd_breaker_set_record_failure(&s, &p, PD_CRASH_EXIT_CODE, 0));
        assert_true(pd_breaker_set_record_failure(&s, &p, PD_CRASH_SIGNAL, 0));
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].state, PD_BREAKER_OPEN);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GPU].failures, 0);
        assert_false(pd_breaker_set_allow(&s, &p, 1000));
}

static void test_set_separate_routes_gpu_classes(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;
        pd_breaker *gpu, *general;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        gpu = &s.circuit[PD_CRASH_FAMILY_GPU];
        general = &s.circuit[PD_CRASH_FAMILY_GENERAL];
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_CUDA_ERROR), gpu);
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_DRIVER_ERROR), gpu);
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_VRAM_OOM), gpu);
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_HOST_OOM), general);
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_EXIT_CODE), general);
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_SIGNAL), general);
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_HEALTH_TIMEOUT), general);
        assert_ptr_equal(pd_breaker_set_for(&s, &p, PD_CRASH_PREFLIGHT), general);
}

static void test_set_separate_gpu_circuit_opens_alone(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        for (int i = 0; i < 4; i++) {
                assert_false(pd_breaker_set_record_failure(&s, &p, PD_CRASH_CUDA_ERROR, 0));
                assert_false(pd_breaker_set_record_failure(&s, &p, PD_CRASH_EXIT_CODE, 0));
        }
        assert_true(pd_breaker_set_allow(&s, &p, 0));
        assert_true(pd_breaker_set_record_failure(&s, &p, PD_CRASH_VRAM_OOM, 1000));
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GPU].state, PD_BREAKER_OPEN);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].state, PD_BREAKER_CLOSED);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].failures, 4);
        assert_false(pd_breaker_set_allow(&s, &p, 2000));
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_OPEN);
        assert_int_equal(pd_breaker_set_open_until(&s), 1000 + OPEN_MS);
}

static void test_set_allow_keeps_trial_when_other_circuit_refuses(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;
        pd_breaker *gpu, *general;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        gpu = &s.circuit[PD_CRASH_FAMILY_GPU];
        general = &s.circuit[PD_CRASH_FAMILY_GENERAL];
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_CUDA_ERROR, 0);
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_EXIT_CODE, 100000);

        /* GPU is due, general is not: refused, GPU's trial kept. */
        assert_false(pd_breaker_set_allow(&s, &p, OPEN_MS));
        assert_int_equal(gpu->state, PD_BREAKER_HALF_OPEN);
        assert_false(gpu->trial_taken);
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_OPEN);
        assert_int_equal(pd_breaker_set_open_until(&s), 100000 + OPEN_MS);

        /* Both due: one restart is the trial of both, then no more. */
        assert_true(pd_breaker_set_allow(&s, &p, 100000 + OPEN_MS));
        assert_true(gpu->trial_taken);
        assert_true(general->trial_taken);
        assert_false(pd_breaker_set_allow(&s, &p, 100000 + OPEN_MS));
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_HALF_OPEN);
        assert_int_equal(pd_breaker_set_open_until(&s), 0);
}

static void test_set_allow_keeps_general_trial_when_gpu_refuses(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;
        pd_breaker *general;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        general = &s.circuit[PD_CRASH_FAMILY_GENERAL];
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_HOST_OOM, 0);
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_VRAM_OOM, 100000);

        assert_false(pd_breaker_set_allow(&s, &p, OPEN_MS));
        assert_int_equal(general->state, PD_BREAKER_HALF_OPEN);
        assert_false(general->trial_taken);
        assert_true(pd_breaker_set_allow(&s, &p, 100000 + OPEN_MS));
        assert_false(pd_breaker_set_allow(&s, &p, 100000 + OPEN_MS));
}

static void test_set_stable_run_closes_every_circuit(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;
        int64_t t = 100000 + OPEN_MS;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_DRIVER_ERROR, 0);
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_SIGNAL, 100000);
        assert_true(pd_breaker_set_allow(&s, &p, t));

        assert_false(pd_breaker_set_record_running(&s, &p, t, t + CLOSE_AFTER_MS - 1));
        assert_true(pd_breaker_set_record_running(&s, &p, t, t + CLOSE_AFTER_MS));
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_CLOSED);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GPU].failures, 0);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].failures, 0);
        assert_true(pd_breaker_set_allow(&s, &p, t + CLOSE_AFTER_MS));
}

static void test_set_reset_closes_every_circuit(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        for (int i = 0; i < 5; i++) {
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_VRAM_OOM, 0);
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_HOST_OOM, 0);
        }
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_OPEN);
        pd_breaker_set_reset(&s);
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_CLOSED);
        assert_int_equal(pd_breaker_set_open_until(&s), 0);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GPU].failures, 0);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].failures, 0);
        assert_true(pd_breaker_set_allow(&s, &p, 1));
}

static void test_set_state_reports_most_restrictive(void **state) {
        pd_breaker_set s;

        (void) state;
        pd_breaker_set_init(&s);
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_CLOSED);
        s.circuit[PD_CRASH_FAMILY_GPU].state = PD_BREAKER_HALF_OPEN;
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_HALF_OPEN);
        s.circuit[PD_CRASH_FAMILY_GENERAL].state = PD_BREAKER_OPEN;
        s.circuit[PD_CRASH_FAMILY_GENERAL].open_until_ms = 42;
        assert_int_equal(pd_breaker_set_state(&s), PD_BREAKER_OPEN);
        assert_int_equal(pd_breaker_set_open_until(&s), 42);
        s.circuit[PD_CRASH_FAMILY_GPU].state = PD_BREAKER_OPEN;
        s.circuit[PD_CRASH_FAMILY_GPU].open_until_ms = 99;
        assert_int_equal(pd_breaker_set_open_until(&s), 99);
}

static void test_set_advance_and_next_half_open(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        assert_int_equal(pd_breaker_set_next_half_open(&s), 0);
        assert_false(pd_breaker_set_advance(&s, 0));
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_EXIT_CODE, 100000);
        for (int i = 0; i < 5; i++)
                pd_breaker_set_record_failure(&s, &p, PD_CRASH_CUDA_ERROR, 0);
        /* the earliest deadline, where open_until is the latest */
        assert_int_equal(pd_breaker_set_next_half_open(&s), OPEN_MS);
        assert_int_equal(pd_breaker_set_open_until(&s), 100000 + OPEN_MS);
        assert_true(pd_breaker_set_advance(&s, OPEN_MS));
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GPU].state, PD_BREAKER_HALF_OPEN);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].state, PD_BREAKER_OPEN);
        assert_int_equal(pd_breaker_set_next_half_open(&s), 100000 + OPEN_MS);
        assert_false(pd_breaker_set_advance(&s, OPEN_MS + 1));
        assert_true(pd_breaker_set_advance(&s, 100000 + OPEN_MS));
        assert_int_equal(pd_breaker_set_next_half_open(&s), 0);
}

static void test_set_trip_opens_general_circuit(void **state) {
        pd_breaker_policy p;
        pd_breaker_set s;

        (void) state;
        pd_breaker_policy_init(&p);
        p.separate_gpu_circuit = true;
        pd_breaker_set_init(&s);
        pd_breaker_set_trip(&s, &p, 5000);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].state, PD_BREAKER_OPEN);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GENERAL].opens, 1);
        assert_int_equal(s.circuit[PD_CRASH_FAMILY_GPU].state, PD_BREAKER_CLOSED);
        assert_false(pd_breaker_set_allow(&s, &p, 5000));
        assert_int_equal(pd_breaker_set_open_until(&s), 5000 + OPEN_MS);
}

static void test_validate_rejects_zero_threshold(void **state) {
        pd_breaker_policy p;

        (void) state;
        pd_breaker_policy_init(&p);
        p.threshold = 0;
        assert_rejected(&p, "breaker.threshold: must be at least 1");
}

static void test_validate_rejects_bad_open_period(void **state) {
        pd_breaker_policy p;

        (void) state;
        pd_breaker_policy_init(&p);
        p.open_ms = 0;
        assert_rejected(&p, "breaker.open_ms: must be > 0, got 0");
        p.open_ms = -1;
        assert_rejected(&p, "breaker.open_ms: must be > 0, got -1");
        p.open_ms = PD_BREAKER_OPEN_MAX_MS + 1;
        assert_rejected(&p, "breaker.open_ms: must be at most 86400000, got 86400001");
        p.open_ms = PD_BREAKER_OPEN_MAX_MS;
        assert_int_equal(pd_breaker_policy_validate(&p, NULL), 0);
}

static void test_validate_rejects_bad_close_after(void **state) {
        pd_breaker_policy p;

        (void) state;
        pd_breaker_policy_init(&p);
        p.close_after_ms = 0;
        assert_rejected(&p, "breaker.close_after_ms: must be > 0, got 0");
        p.close_after_ms = -60000;
        assert_rejected(&p, "breaker.close_after_ms: must be > 0, got -60000");
}

static void test_validate_null_policy_is_einval(void **state) {
        (void) state;
        assert_int_equal(pd_breaker_policy_validate(NULL, NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_policy_init_gives_design_defaults),
                cmocka_unit_test(test_state_to_string_names_every_state),
                cmocka_unit_test(test_four_failures_stay_closed),
                cmocka_unit_test(test_fifth_failure_opens_until_timeout),
                cmocka_unit_test(test_half_open_allows_exactly_one_trial),
                cmocka_unit_test(test_half_open_reached_late_still_allows_one_trial),
                cmocka_unit_test(test_failed_trial_reopens_with_period_doubled),
                cmocka_unit_test(test_open_period_is_capped),
                cmocka_unit_test(test_stable_trial_closes_and_restores_period),
                cmocka_unit_test(test_short_trial_run_leaves_half_open),
                cmocka_unit_test(test_crash_after_ready_loop_still_opens),
                cmocka_unit_test(test_stable_run_zeroes_failures_while_closed),
                cmocka_unit_test(test_record_running_ignores_clock_going_backwards),
                cmocka_unit_test(test_failure_while_open_counts_but_keeps_deadline),
                cmocka_unit_test(test_failure_after_deadline_is_a_failed_trial),
                cmocka_unit_test(test_advance_turns_half_open_once_at_the_deadline),
                cmocka_unit_test(test_advance_first_splits_a_late_failed_trial),
                cmocka_unit_test(test_reset_closes_and_zeroes),
                cmocka_unit_test(test_trip_opens_at_once),
                cmocka_unit_test(test_trip_while_open_extends_without_new_open),
                cmocka_unit_test(test_set_shared_counts_every_class_in_general),
                cmocka_unit_test(test_set_separate_routes_gpu_classes),
                cmocka_unit_test(test_set_separate_gpu_circuit_opens_alone),
                cmocka_unit_test(test_set_allow_keeps_trial_when_other_circuit_refuses),
                cmocka_unit_test(test_set_allow_keeps_general_trial_when_gpu_refuses),
                cmocka_unit_test(test_set_stable_run_closes_every_circuit),
                cmocka_unit_test(test_set_reset_closes_every_circuit),
                cmocka_unit_test(test_set_state_reports_most_restrictive),
                cmocka_unit_test(test_set_advance_and_next_half_open),
                cmocka_unit_test(test_set_trip_opens_general_circuit),
                cmocka_unit_test(test_validate_rejects_zero_threshold),
                cmocka_unit_test(test_validate_rejects_bad_open_period),
                cmocka_unit_test(test_validate_rejects_bad_close_after),
                cmocka_unit_test(test_validate_null_policy_is_einval),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
