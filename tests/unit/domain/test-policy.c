/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "pool-domain/policy.h"

static void assert_rejected(const pd_policy *p, const char *msg) {
        pd_error err = { .msg = "" };

        assert_int_equal(pd_policy_validate(p, &err), PD_E_INVALID);
        assert_string_equal(err.msg, msg);
}

static void test_init_gives_design_defaults(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        assert_int_equal(p.health.interval_ms, 1000);
        assert_int_equal(p.health.timeout_ms, 1000);
        assert_int_equal(p.health.startup_timeout_ms, 120000);
        assert_int_equal(p.health.stall_timeout_ms, 0);
        assert_int_equal(p.health.failure_threshold, 3);

        assert_int_equal(p.backoff.initial_ms, 1000);
        assert_true(p.backoff.factor == 2.0);
        assert_int_equal(p.backoff.min_ms, 0);
        assert_int_equal(p.backoff.max_ms, 60000);
        assert_true(p.backoff.jitter == 0.1);
        assert_int_equal(p.backoff.stable_reset_ms, 300000);
        assert_true(p.backoff.class_multiplier[PD_CRASH_CUDA_ERROR] == 2.0);
        assert_true(p.backoff.class_multiplier[PD_CRASH_EXIT_CODE] == 1.0);

        assert_int_equal(p.breaker.threshold, 5);
        assert_int_equal(p.breaker.open_ms, 300000);
        assert_int_equal(p.breaker.close_after_ms, 60000);
        assert_false(p.breaker.separate_gpu_circuit);

        assert_int_equal(p.storm.limit, 10);
        assert_int_equal(p.storm.window_ms, 60000);
        assert_int_equal(p.storm.burst_window_ms, 30000);
        assert_int_equal(p.storm.warn_above, 5);

        assert_int_equal(p.stop_grace_ms, 5000);
        assert_int_equal(p.lease_ttl_ms, 600000);
}

static void test_validate_accepts_defaults(void **state) {
        pd_policy p;
        pd_error err = { .msg = "untouched" };

        (void) state;
        pd_policy_init(&p);
        assert_int_equal(pd_policy_validate(&p, &err), 0);
        assert_string_equal(err.msg, "untouched");
}

static void test_validate_accepts_zero_timeouts_and_grace(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        p.health.timeout_ms = 0;
        p.health.startup_timeout_ms = 0;
        p.health.stall_timeout_ms = 0;
        p.stop_grace_ms = 0;
        assert_int_equal(pd_policy_validate(&p, NULL), 0);
}

static void test_validate_rejects_bad_health_interval(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        p.health.interval_ms = 0;
        assert_rejected(&p, "health.interval_ms: must be > 0, got 0");
        p.health.interval_ms = -1;
        assert_rejected(&p, "health.interval_ms: must be > 0, got -1");
}

static void test_validate_rejects_negative_health_timeouts(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        p.health.timeout_ms = -5;
        assert_rejected(&p, "health.timeout_ms: must be >= 0, got -5");

        pd_policy_init(&p);
        p.health.startup_timeout_ms = -1;
        assert_rejected(&p, "health.startup_timeout_ms: must be >= 0, got -1");

        pd_policy_init(&p);
        p.health.stall_timeout_ms = -1;
        assert_rejected(&p, "health.stall_timeout_ms: must be >= 0, got -1");
}

static void test_validate_rejects_zero_failure_threshold(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        p.health.failure_threshold = 0;
        assert_rejected(&p, "health.failure_threshold: must be at least 1");
}

static void test_validate_reports_nested_policy_fields(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        p.backoff.factor = 0.5;
        assert_rejected(&p, "backoff.factor: must be >= 1, got 0.5");

        pd_policy_init(&p);
        p.breaker.threshold = 0;
        assert_rejected(&p, "breaker.threshold: must be at least 1");

        pd_policy_init(&p);
        p.storm.window_ms = 0;
        assert_rejected(&p, "storm.window_ms: must be > 0, got 0");
}

static void test_validate_reports_first_bad_field(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        p.lease_ttl_ms = 0;
        p.storm.limit = 0;
        p.breaker.open_ms = 0;
        p.backoff.jitter = 2.0;
        p.health.timeout_ms = -5;
        assert_rejected(&p, "health.timeout_ms: must be >= 0, got -5");
        p.health.timeout_ms = 1000;
        assert_rejected(&p, "backoff.jitter: must be >= 0 and < 1, got 2");
        p.backoff.jitter = 0.1;
        assert_rejected(&p, "breaker.open_ms: must be > 0, got 0");
        p.breaker.open_ms = 300000;
        assert_rejected(&p, "storm.limit: must be between 1 and 64, got 0");
        p.storm.limit = 10;
        assert_rejected(&p, "lease_ttl_ms: must be > 0, got 0");
}

static void test_validate_rejects_bad_grace_and_ttl(void **state) {
        pd_policy p;

        (void) state;
        pd_policy_init(&p);
        p.stop_grace_ms = -1;
        assert_rejected(&p, "stop_grace_ms: must be >= 0, got -1");

        pd_policy_init(&p);
        p.lease_ttl_ms = -600000;
        assert_rejected(&p, "lease_ttl_ms: must be > 0, got -600000");
}

static void test_health_validate_on_its_own(void **state) {
        pd_health_policy h;
        pd_error err = { .msg = "" };

        (void) state;
        pd_health_policy_init(&h);
        assert_int_equal(pd_health_policy_validate(&h, &err), 0);
        h.failure_threshold = 0;
        assert_int_equal(pd_health_policy_validate(&h, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "health.failure_threshold: must be at least 1");
        assert_int_equal(pd_health_policy_validate(&h, NULL), PD_E_INVALID);
}

static void test_validate_null_policy_is_einval(void **state) {
        (void) state;
        assert_int_equal(pd_policy_validate(NULL, NULL), -EINVAL);
        assert_int_equal(pd_health_policy_validate(NULL, NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_init_gives_design_defaults),
                cmocka_unit_test(test_validate_accepts_defaults),
                cmocka_unit_test(test_validate_accepts_zero_timeouts_and_grace),
                cmocka_unit_test(test_validate_rejects_bad_health_interval),
                cmocka_unit_test(test_validate_rejects_negative_health_timeouts),
                cmocka_unit_test(test_validate_rejects_zero_failure_threshold),
                cmocka_unit_test(test_validate_reports_nested_policy_fields),
                cmocka_unit_test(test_validate_reports_first_bad_field),
                cmocka_unit_test(test_validate_rejects_bad_grace_and_ttl),
                cmocka_unit_test(test_health_validate_on_its_own),
                cmocka_unit_test(test_validate_null_policy_is_einval),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
