/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>

#include "pool-domain/backoff.h"

/* The exact sequences docs/supervision.md documents, without jitter. */
static pd_backoff_policy policy_nojitter(void) {
        pd_backoff_policy p;

        pd_backoff_policy_init(&p);
        p.jitter = 0.0;
        return p;
}

static void assert_rejected(const pd_backoff_policy *p, const char *msg) {
        pd_error err = { .msg = "" };

        assert_int_equal(pd_backoff_policy_validate(p, &err), PD_E_INVALID);
        assert_string_equal(err.msg, msg);
}

static void test_policy_init_gives_design_defaults(void **state) {
        pd_backoff_policy p;
        pd_error err = { .msg = "" };

        (void) state;
        pd_backoff_policy_init(&p);
        assert_int_equal(p.initial_ms, 1000);
        assert_true(p.factor == 2.0);
        assert_int_equal(p.min_ms, 0);
        assert_int_equal(p.max_ms, 60000);
        assert_true(p.jitter == 0.1);
        assert_int_equal(p.stable_reset_ms, 300000);
        for (unsigned i = 0; i < PD_CRASH_CLASS_MAX; i++)
                assert_true(p.class_multiplier[i] == (i == PD_CRASH_CUDA_ERROR ? 2.0 : 1.0));
        assert_int_equal(pd_backoff_policy_validate(&p, &err), 0);
}

static void test_delay_doubles_and_caps_at_seventh_crash(void **state) {
        static const int64_t want[] = {
                1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000,
        };
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        for (unsigned n = 1; n <= 10; n++)
                assert_int_equal(pd_backoff_delay(&p, n, PD_CRASH_EXIT_CODE, NULL), want[n - 1]);
}

static void test_delay_treats_crash_zero_as_first(void **state) {
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        assert_int_equal(pd_backoff_delay(&p, 0, PD_CRASH_EXIT_CODE, NULL), 1000);
}

static void test_delay_never_below_min(void **state) {
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        p.min_ms = 1500;
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_EXIT_CODE, NULL), 1500);
        assert_int_equal(pd_backoff_delay(&p, 2, PD_CRASH_EXIT_CODE, NULL), 2000);
}

static void test_delay_cuda_error_doubles_by_default(void **state) {
        static const int64_t want[] = { 2000, 4000, 8000, 16000, 32000, 60000, 60000 };
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        for (unsigned n = 1; n <= 7; n++)
                assert_int_equal(pd_backoff_delay(&p, n, PD_CRASH_CUDA_ERROR, NULL), want[n - 1]);
        /* Only cuda_error is multiplied by default. */
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_VRAM_OOM, NULL), 1000);
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_DRIVER_ERROR, NULL), 1000);
}

static void test_delay_applies_multiplier_before_cap_and_min_after(void **state) {
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        p.class_multiplier[PD_CRASH_SIGNAL] = 100.0;
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_SIGNAL, NULL), 60000);

        p.class_multiplier[PD_CRASH_SIGNAL] = 0.5;
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_SIGNAL, NULL), 500);
        assert_int_equal(pd_backoff_delay(&p, 3, PD_CRASH_SIGNAL, NULL), 2000);
        p.min_ms = 800;
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_SIGNAL, NULL), 800);
}

static void test_delay_huge_crash_count_stays_at_cap(void **state) {
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        /* 2^(n-1) is inf in double long before these. */
        assert_int_equal(pd_backoff_delay(&p, 1100, PD_CRASH_EXIT_CODE, NULL), 60000);
        assert_int_equal(pd_backoff_delay(&p, UINT_MAX, PD_CRASH_EXIT_CODE, NULL), 60000);
        assert_int_equal(pd_backoff_delay(&p, UINT_MAX, PD_CRASH_CUDA_ERROR, NULL), 60000);

        p.factor = 1.0000001;
        assert_int_equal(pd_backoff_delay(&p, UINT_MAX, PD_CRASH_EXIT_CODE, NULL), 60000);
        assert_int_equal(pd_backoff_delay(&p, 2, PD_CRASH_EXIT_CODE, NULL), 1000);
}

static void test_delay_huge_max_never_overflows(void **state) {
        pd_backoff_policy p = policy_nojitter();
        pd_rng rng;

        (void) state;
        p.max_ms = INT64_MAX;
        assert_int_equal(pd_backoff_delay(&p, UINT_MAX, PD_CRASH_EXIT_CODE, NULL), INT64_MAX);
        assert_int_equal(pd_backoff_delay(&p, 11, PD_CRASH_EXIT_CODE, NULL), 1024000);

        p.jitter = 0.5;
        pd_rng_seed(&rng, 7);
        for (int i = 0; i < 1000; i++) {
                int64_t d = pd_backoff_delay(&p, UINT_MAX, PD_CRASH_CUDA_ERROR, &rng);

                assert_true(d > INT64_MAX / 4);
        }
}

static void test_delay_factor_one_is_constant(void **state) {
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        p.factor = 1.0;
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_EXIT_CODE, NULL), 1000);
        assert_int_equal(pd_backoff_delay(&p, 50, PD_CRASH_EXIT_CODE, NULL), 1000);
        assert_int_equal(pd_backoff_delay(&p, UINT_MAX, PD_CRASH_EXIT_CODE, NULL), 1000);
}

static void test_delay_jitter_stays_within_ten_percent(void **state) {
        pd_backoff_policy exact = policy_nojitter();
        pd_backoff_policy p;
        pd_rng rng;

        (void) state;
        pd_backoff_policy_init(&p);
        pd_rng_seed(&rng, 42);
        for (unsigned n = 1; n <= 10; n++) {
                int64_t base = pd_backoff_delay(&exact, n, PD_CRASH_EXIT_CODE, NULL);
                int64_t lo = INT64_MAX, hi = INT64_MIN;

                for (int i = 0; i < 5000; i++) {
                        int64_t d = pd_backoff_delay(&p, n, PD_CRASH_EXIT_CODE, &rng);

                        assert_true(d >= base - base / 10);
                        assert_true(d <= base + base / 10);
                        assert_true(d <= p.max_ms);
                        if (d < lo)
                                lo = d;
                        if (d > hi)
                                hi = d;
                }
                /* The draws spread over most of the band, below the base
                 * and (where the cap leaves room) above it. */
                assert_true(lo < hi);
                assert_true(lo < base - base / 20);
                if (base < p.max_ms)
                        assert_true(hi > base + base / 20);
        }
}

static void test_delay_jitter_never_exceeds_max(void **state) {
        pd_backoff_policy p;
        pd_rng rng;
        int below = 0;

        (void) state;
        pd_backoff_policy_init(&p);
        pd_rng_seed(&rng, 1);
        for (int i = 0; i < 5000; i++) {
                int64_t d = pd_backoff_delay(&p, 9, PD_CRASH_EXIT_CODE, &rng);

                assert_true(d <= 60000);
                assert_true(d >= 54000);
                if (d < 60000)
                        below++;
        }
        assert_true(below > 0);
}

static void test_delay_jitter_respects_min(void **state) {
        pd_backoff_policy p;
        pd_rng rng;

        (void) state;
        pd_backoff_policy_init(&p);
        p.min_ms = 1000;
        pd_rng_seed(&rng, 3);
        for (int i = 0; i < 2000; i++)
                assert_true(pd_backoff_delay(&p, 1, PD_CRASH_EXIT_CODE, &rng) >= 1000);
}

static void test_delay_jitter_is_reproducible_from_seed(void **state) {
        pd_backoff_policy p;
        pd_rng a, b;

        (void) state;
        pd_backoff_policy_init(&p);
        pd_rng_seed(&a, 99);
        pd_rng_seed(&b, 99);
        for (int i = 0; i < 100; i++)
                assert_int_equal(pd_backoff_delay(&p, 3, PD_CRASH_EXIT_CODE, &a),
                                 pd_backoff_delay(&p, 3, PD_CRASH_EXIT_CODE, &b));
}

static void test_delay_without_rng_has_no_jitter(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        assert_int_equal(pd_backoff_delay(&p, 2, PD_CRASH_EXIT_CODE, NULL), 2000);
}

static void test_on_crash_counts_and_remembers_delay(void **state) {
        pd_backoff_policy p = policy_nojitter();
        pd_backoff b;

        (void) state;
        pd_backoff_init(&b);
        assert_int_equal(b.crashes, 0);
        assert_int_equal(pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL), 1000);
        assert_int_equal(pd_backoff_on_crash(&b, &p, PD_CRASH_SIGNAL, NULL), 2000);
        assert_int_equal(pd_backoff_on_crash(&b, &p, PD_CRASH_CUDA_ERROR, NULL), 8000);
        assert_int_equal(b.crashes, 3);
        assert_int_equal(b.last_delay_ms, 8000);
}

static void test_on_crash_saturates_count(void **state) {
        pd_backoff_policy p = policy_nojitter();
        pd_backoff b = { .crashes = UINT_MAX };

        (void) state;
        assert_int_equal(pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL), 60000);
        assert_int_equal(b.crashes, UINT_MAX);
}

static void test_on_running_resets_after_stable_run(void **state) {
        pd_backoff_policy p = policy_nojitter();
        pd_backoff b;

        (void) state;
        pd_backoff_init(&b);
        for (int i = 0; i < 4; i++)
                pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL);

        assert_false(pd_backoff_on_running(&b, &p, 1000, 1000 + 299999));
        assert_int_equal(b.crashes, 4);
        assert_int_equal(pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL), 16000);

        assert_true(pd_backoff_on_running(&b, &p, 1000, 1000 + 300000));
        assert_int_equal(b.crashes, 0);
        assert_int_equal(pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL), 1000);
}

static void test_on_running_without_crashes_reports_no_reset(void **state) {
        pd_backoff_policy p = policy_nojitter();
        pd_backoff b;

        (void) state;
        pd_backoff_init(&b);
        assert_false(pd_backoff_on_running(&b, &p, 0, 1000000));
}

static void test_on_running_ignores_clock_going_backwards(void **state) {
        pd_backoff_policy p = policy_nojitter();
        pd_backoff b;

        (void) state;
        pd_backoff_init(&b);
        pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL);
        assert_false(pd_backoff_on_running(&b, &p, 500000, 0));
        assert_false(pd_backoff_on_running(&b, &p, INT64_MAX, INT64_MIN));
        assert_int_equal(b.crashes, 1);
        /* Far-apart timestamps must not overflow the subtraction. */
        assert_true(pd_backoff_on_running(&b, &p, INT64_MIN, INT64_MAX));
}

static void test_reset_returns_to_initial(void **state) {
        pd_backoff_policy p = policy_nojitter();
        pd_backoff b;

        (void) state;
        pd_backoff_init(&b);
        for (int i = 0; i < 8; i++)
                pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL);
        pd_backoff_reset(&b);
        assert_int_equal(b.crashes, 0);
        assert_int_equal(b.last_delay_ms, 0);
        assert_int_equal(pd_backoff_on_crash(&b, &p, PD_CRASH_EXIT_CODE, NULL), 1000);
}

static void test_validate_accepts_boundaries(void **state) {
        pd_backoff_policy p = policy_nojitter();

        (void) state;
        p.factor = 1.0;
        p.min_ms = 60000;
        p.jitter = 0.999;
        assert_int_equal(pd_backoff_policy_validate(&p, NULL), 0);
}

static void test_validate_rejects_bad_initial(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        p.initial_ms = -1000;
        assert_rejected(&p, "backoff.initial_ms: must be >= 0, got -1000");
}

static void test_zero_initial_restarts_at_once(void **state) {
        pd_backoff_policy p;
        pd_error err;

        (void) state;
        pd_backoff_policy_init(&p);
        p.initial_ms = 0;
        p.jitter = 0;
        assert_int_equal(pd_backoff_policy_validate(&p, &err), 0);
        assert_int_equal(pd_backoff_delay(&p, 1, PD_CRASH_EXIT_CODE, NULL), 0);
        assert_int_equal(pd_backoff_delay(&p, 9, PD_CRASH_CUDA_ERROR, NULL), 0);
        p.min_ms = 10;
        assert_int_equal(pd_backoff_delay(&p, 3, PD_CRASH_EXIT_CODE, NULL), 10);
}

static void test_validate_rejects_bad_factor(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        p.factor = 0.5;
        assert_rejected(&p, "backoff.factor: must be >= 1, got 0.5");
        p.factor = NAN;
        assert_rejected(&p, "backoff.factor: must be >= 1, got nan");
        p.factor = INFINITY;
        assert_rejected(&p, "backoff.factor: must be >= 1, got inf");
}

static void test_validate_rejects_bad_min_and_max(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        p.min_ms = -1;
        assert_rejected(&p, "backoff.min_ms: must be >= 0, got -1");

        pd_backoff_policy_init(&p);
        p.max_ms = 0;
        assert_rejected(&p, "backoff.max_ms: must be > 0, got 0");

        pd_backoff_policy_init(&p);
        p.min_ms = 60001;
        assert_rejected(&p, "backoff.min_ms: must not exceed max_ms (60000), got 60001");
}

static void test_validate_rejects_bad_jitter(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        p.jitter = 1.0;
        assert_rejected(&p, "backoff.jitter: must be >= 0 and < 1, got 1");
        p.jitter = -0.1;
        assert_rejected(&p, "backoff.jitter: must be >= 0 and < 1, got -0.1");
        p.jitter = NAN;
        assert_rejected(&p, "backoff.jitter: must be >= 0 and < 1, got nan");
}

static void test_validate_rejects_bad_stable_reset(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        p.stable_reset_ms = 0;
        assert_rejected(&p, "backoff.stable_reset_ms: must be > 0, got 0");
        p.stable_reset_ms = -5;
        assert_rejected(&p, "backoff.stable_reset_ms: must be > 0, got -5");
}

static void test_validate_rejects_bad_multiplier(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        p.class_multiplier[PD_CRASH_CUDA_ERROR] = 0.0;
        assert_rejected(&p, "backoff.class_multipliers.cuda_error: must be a finite number > 0, got 0");
        p.class_multiplier[PD_CRASH_CUDA_ERROR] = 2.0;
        p.class_multiplier[PD_CRASH_HOST_OOM] = -1.0;
        assert_rejected(&p, "backoff.class_multipliers.host_oom: must be a finite number > 0, got -1");
        p.class_multiplier[PD_CRASH_HOST_OOM] = INFINITY;
        assert_rejected(&p, "backoff.class_multipliers.host_oom: must be a finite number > 0, got inf");
        p.class_multiplier[PD_CRASH_HOST_OOM] = NAN;
        assert_rejected(&p, "backoff.class_multipliers.host_oom: must be a finite number > 0, got nan");
}

static void test_validate_null_policy_is_einval(void **state) {
        pd_error err;

        (void) state;
        assert_int_equal(pd_backoff_policy_validate(NULL, &err), -EINVAL);
}

static void test_validate_without_error_struct_still_rejects(void **state) {
        pd_backoff_policy p;

        (void) state;
        pd_backoff_policy_init(&p);
        p.factor = 0.9;
        assert_int_equal(pd_backoff_policy_validate(&p, NULL), PD_E_INVALID);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_policy_init_gives_design_defaults),
                cmocka_unit_test(test_delay_doubles_and_caps_at_seventh_crash),
                cmocka_unit_test(test_delay_treats_crash_zero_as_first),
                cmocka_unit_test(test_delay_never_below_min),
                cmocka_unit_test(test_delay_cuda_error_doubles_by_default),
                cmocka_unit_test(test_delay_applies_multiplier_before_cap_and_min_after),
                cmocka_unit_test(test_delay_huge_crash_count_stays_at_cap),
                cmocka_unit_test(test_delay_huge_max_never_overflows),
                cmocka_unit_test(test_delay_factor_one_is_constant),
                cmocka_unit_test(test_delay_jitter_stays_within_ten_percent),
                cmocka_unit_test(test_delay_jitter_never_exceeds_max),
                cmocka_unit_test(test_delay_jitter_respects_min),
                cmocka_unit_test(test_delay_jitter_is_reproducible_from_seed),
                cmocka_unit_test(test_delay_without_rng_has_no_jitter),
                cmocka_unit_test(test_on_crash_counts_and_remembers_delay),
                cmocka_unit_test(test_on_crash_saturates_count),
                cmocka_unit_test(test_on_running_resets_after_stable_run),
                cmocka_unit_test(test_on_running_without_crashes_reports_no_reset),
                cmocka_unit_test(test_on_running_ignores_clock_going_backwards),
                cmocka_unit_test(test_reset_returns_to_initial),
                cmocka_unit_test(test_validate_accepts_boundaries),
                cmocka_unit_test(test_validate_rejects_bad_initial),
                cmocka_unit_test(test_zero_initial_restarts_at_once),
                cmocka_unit_test(test_validate_rejects_bad_factor),
                cmocka_unit_test(test_validate_rejects_bad_min_and_max),
                cmocka_unit_test(test_validate_rejects_bad_jitter),
                cmocka_unit_test(test_validate_rejects_bad_stable_reset),
                cmocka_unit_test(test_validate_rejects_bad_multiplier),
                cmocka_unit_test(test_validate_null_policy_is_einval),
                cmocka_unit_test(test_validate_without_error_struct_still_rejects),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
