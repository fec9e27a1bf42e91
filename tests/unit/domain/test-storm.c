/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "pool-domain/storm.h"

static pd_storm_verdict admit(pd_storm *s, const pd_storm_policy *p, int64_t now_ms,
                              pd_crash_class cls) {
        pd_storm_verdict v;

        memset(&v, 0xa5, sizeof(v));
        pd_storm_admit(s, p, now_ms, cls, &v);
        return v;
}

/* Ten restarts at t = 0..9 s, the classes given in order; returns the last
 * verdict (the one that reports the storm). */
static pd_storm_verdict admit_ten(pd_storm *s, const pd_storm_policy *p,
                                  const pd_crash_class cls[10]) {
        pd_storm_verdict v = { .run_at_ms = 0 };

        for (int i = 0; i < 10; i++)
                v = admit(s, p, i * 1000, cls[i]);
        return v;
}

static void assert_rejected(const pd_storm_policy *p, const char *msg) {
        pd_error err = { .msg = "" };

        assert_int_equal(pd_storm_policy_validate(p, &err), PD_E_INVALID);
        assert_string_equal(err.msg, msg);
}

static void test_policy_init_gives_design_defaults(void **state) {
        pd_storm_policy p;

        (void) state;
        pd_storm_policy_init(&p);
        assert_int_equal(p.limit, 10);
        assert_int_equal(p.window_ms, 60000);
        assert_int_equal(p.burst_window_ms, 30000);
        assert_int_equal(p.warn_above, 5);
        assert_int_equal(pd_storm_policy_validate(&p, NULL), 0);
}

static void test_kind_to_string_names_every_kind(void **state) {
        (void) state;
        assert_string_equal(pd_storm_kind_to_string(PD_STORM_CRASH), "crash_storm");
        assert_string_equal(pd_storm_kind_to_string(PD_STORM_SIGNAL), "signal_storm");
        assert_string_equal(pd_storm_kind_to_string(PD_STORM_OOM), "oom_storm");
        assert_string_equal(pd_storm_kind_to_string(PD_STORM_CUDA), "cuda_storm");
        assert_string_equal(pd_storm_kind_to_string(PD_STORM_DRIVER), "driver_storm");
        assert_string_equal(pd_storm_kind_to_string(PD_STORM_TIMEOUT), "timeout_storm");
        assert_string_equal(pd_storm_kind_to_string(PD_STORM_PREFLIGHT), "preflight_storm");
        assert_null(pd_storm_kind_to_string(PD_STORM_KIND_MAX));
}

static void test_kind_hint_is_concrete_per_kind(void **state) {
        (void) state;
        for (unsigned k = 0; k < PD_STORM_KIND_MAX; k++) {
                const char *hint = pd_storm_kind_hint((pd_storm_kind) k);

                assert_non_null(hint);
                assert_true(strlen(hint) > 40);
                for (unsigned j = 0; j < k; j++)
                        assert_string_not_equal(hint, pd_storm_kind_hint((pd_storm_kind) j));
        }
        assert_non_null(strstr(pd_storm_kind_hint(PD_STORM_OOM), "context size"));
        assert_non_null(strstr(pd_storm_kind_hint(PD_STORM_OOM), "VRAM"));
        assert_non_null(strstr(pd_storm_kind_hint(PD_STORM_DRIVER), "Xid"));
        assert_non_null(strstr(pd_storm_kind_hint(PD_STORM_TIMEOUT), "startup_timeout_ms"));
        assert_null(pd_storm_kind_hint(PD_STORM_KIND_MAX));
}

static void test_kind_for_class_maps_every_class(void **state) {
        (void) state;
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_EXIT_CODE), PD_STORM_CRASH);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_GRACEFUL), PD_STORM_CRASH);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_SIGNAL), PD_STORM_SIGNAL);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_VRAM_OOM), PD_STORM_OOM);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_HOST_OOM), PD_STORM_OOM);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_CUDA_ERROR), PD_STORM_CUDA);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_DRIVER_ERROR), PD_STORM_DRIVER);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_HEALTH_TIMEOUT), PD_STORM_TIMEOUT);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_STARTUP_TIMEOUT), PD_STORM_TIMEOUT);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_STALL_TIMEOUT), PD_STORM_TIMEOUT);
        assert_int_equal(pd_storm_kind_for_class(PD_CRASH_PREFLIGHT), PD_STORM_PREFLIGHT);
}

static void test_ten_in_window_run_and_eleventh_waits_for_oldest(void **state) {
        static const int64_t at[] = { 0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 37000, 38000 };
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        for (unsigned i = 0; i < 10; i++) {
                v = admit(&s, &p, at[i], PD_CRASH_EXIT_CODE);
                assert_int_equal(v.run_at_ms, at[i]);
                assert_false(v.delayed);
                assert_false(v.storm);
                assert_false(v.overridden);
                assert_int_equal(v.in_window, i + 1);
        }
        v = admit(&s, &p, 39000, PD_CRASH_EXIT_CODE);
        assert_int_equal(v.run_at_ms, 60000);
        assert_true(v.delayed);
        assert_false(v.storm);
        assert_false(v.overridden);
        assert_int_equal(v.in_window, 11);
        assert_true(v.warn);
        assert_int_equal(s.storms, 0);
}

static void test_sixth_restart_in_window_warns(void **state) {
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        for (int i = 0; i < 5; i++) {
                v = admit(&s, &p, i * 10000, PD_CRASH_EXIT_CODE);
                assert_false(v.warn);
        }
        assert_int_equal(v.in_window, 5);
        v = admit(&s, &p, 50000, PD_CRASH_EXIT_CODE);
        assert_int_equal(v.in_window, 6);
        assert_true(v.warn);
        assert_false(v.delayed);
        assert_false(v.storm);
        /* Two have left the window by 70 s: back to five, no warning. */
        v = admit(&s, &p, 70000, PD_CRASH_EXIT_CODE);
        assert_int_equal(v.in_window, 5);
        assert_false(v.warn);
}

static void test_ten_within_burst_is_a_storm(void **state) {
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        for (int i = 0; i < 9; i++) {
                v = admit(&s, &p, i * 1000, PD_CRASH_EXIT_CODE);
                assert_false(v.storm);
        }
        assert_int_equal(s.storms, 0);
        v = admit(&s, &p, 9000, PD_CRASH_EXIT_CODE);
        assert_true(v.storm);
        assert_false(v.delayed);
        assert_int_equal(v.run_at_ms, 9000);
        assert_int_equal(v.kind, PD_STORM_CRASH);
        assert_int_equal(s.storms, 1);
}

static void test_burst_window_edge_is_exclusive(void **state) {
        static const int64_t at[] = { 0, 22000, 23000, 24000, 25000, 26000, 27000, 28000, 29000 };
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);

        /* Ten restarts spanning exactly 30 s: not "within" 30 s. */
        pd_storm_init(&s);
        for (unsigned i = 0; i < 9; i++)
                admit(&s, &p, at[i], PD_CRASH_EXIT_CODE);
        v = admit(&s, &p, 30000, PD_CRASH_EXIT_CODE);
        assert_false(v.storm);
        assert_int_equal(s.storms, 0);

        pd_storm_init(&s);
        for (unsigned i = 0; i < 9; i++)
                admit(&s, &p, at[i], PD_CRASH_EXIT_CODE);
        v = admit(&s, &p, 29999, PD_CRASH_EXIT_CODE);
        assert_true(v.storm);
        assert_int_equal(s.storms, 1);
}

static void test_storm_kind_follows_dominant_class(void **state) {
        static const pd_crash_class mostly_oom[10] = {
                PD_CRASH_VRAM_OOM, PD_CRASH_EXIT_CODE, PD_CRASH_VRAM_OOM, PD_CRASH_VRAM_OOM,
                PD_CRASH_EXIT_CODE, PD_CRASH_VRAM_OOM, PD_CRASH_EXIT_CODE, PD_CRASH_VRAM_OOM,
                PD_CRASH_EXIT_CODE, PD_CRASH_VRAM_OOM,
        };
        static const pd_crash_class mostly_signal[10] = {
                PD_CRASH_SIGNAL, PD_CRASH_SIGNAL, PD_CRASH_SIGNAL, PD_CRASH_SIGNAL,
                PD_CRASH_SIGNAL, PD_CRASH_SIGNAL, PD_CRASH_VRAM_OOM, PD_CRASH_VRAM_OOM,
                PD_CRASH_CUDA_ERROR, PD_CRASH_CUDA_ERROR,
        };
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);

        pd_storm_init(&s);
        v = admit_ten(&s, &p, mostly_oom);
        assert_true(v.storm);
        assert_int_equal(v.kind, PD_STORM_OOM);
        assert_string_equal(pd_storm_kind_to_string(v.kind), "oom_storm");

        pd_storm_init(&s);
        v = admit_ten(&s, &p, mostly_signal);
        assert_true(v.storm);
        assert_int_equal(v.kind, PD_STORM_SIGNAL);
}

static void test_storm_kind_counts_host_and_vram_oom_together(void **state) {
        static const pd_crash_class cls[10] = {
                PD_CRASH_SIGNAL, PD_CRASH_SIGNAL, PD_CRASH_SIGNAL, PD_CRASH_SIGNAL,
                PD_CRASH_VRAM_OOM, PD_CRASH_VRAM_OOM, PD_CRASH_VRAM_OOM,
                PD_CRASH_HOST_OOM, PD_CRASH_HOST_OOM, PD_CRASH_HOST_OOM,
        };
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        v = admit_ten(&s, &p, cls);
        assert_true(v.storm);
        assert_int_equal(v.kind, PD_STORM_OOM);
}

static void test_storm_kind_tie_goes_to_more_specific_kind(void **state) {
        static const pd_crash_class cuda_signal[10] = {
                PD_CRASH_SIGNAL, PD_CRASH_CUDA_ERROR, PD_CRASH_SIGNAL, PD_CRASH_CUDA_ERROR,
                PD_CRASH_SIGNAL, PD_CRASH_CUDA_ERROR, PD_CRASH_SIGNAL, PD_CRASH_CUDA_ERROR,
                PD_CRASH_SIGNAL, PD_CRASH_CUDA_ERROR,
        };
        static const pd_crash_class driver_oom[10] = {
                PD_CRASH_DRIVER_ERROR, PD_CRASH_DRIVER_ERROR, PD_CRASH_DRIVER_ERROR,
                PD_CRASH_DRIVER_ERROR, PD_CRASH_DRIVER_ERROR, PD_CRASH_HOST_OOM,
                PD_CRASH_HOST_OOM, PD_CRASH_HOST_OOM, PD_CRASH_HOST_OOM, PD_CRASH_HOST_OOM,
        };
        static const pd_crash_class exit_timeout[10] = {
                PD_CRASH_EXIT_CODE, PD_CRASH_EXIT_CODE, PD_CRASH_EXIT_CODE, PD_CRASH_EXIT_CODE,
                PD_CRASH_EXIT_CODE, PD_CRASH_STARTUP_TIMEOUT, PD_CRASH_HEALTH_TIMEOUT,
                PD_CRASH_STALL_TIMEOUT, PD_CRASH_STARTUP_TIMEOUT, PD_CRASH_STARTUP_TIMEOUT,
        };
        pd_storm_policy p;
        pd_storm s;

        (void) state;
        pd_storm_policy_init(&p);

        /* Order: oom > driver > cuda > preflight > timeout > signal > crash,
         * whatever order the restarts came in. */
        pd_storm_init(&s);
        assert_int_equal(admit_ten(&s, &p, cuda_signal).kind, PD_STORM_CUDA);
        pd_storm_init(&s);
        assert_int_equal(admit_ten(&s, &p, driver_oom).kind, PD_STORM_OOM);
        pd_storm_init(&s);
        assert_int_equal(admit_ten(&s, &p, exit_timeout).kind, PD_STORM_TIMEOUT);
}

static void test_allow_once_runs_now_and_keeps_window(void **state) {
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        for (int i = 0; i < 10; i++)
                admit(&s, &p, i * 1000, PD_CRASH_EXIT_CODE);
        assert_int_equal(s.storms, 1);

        pd_storm_allow_once(&s);
        v = admit(&s, &p, 10000, PD_CRASH_EXIT_CODE);
        assert_int_equal(v.run_at_ms, 10000);
        assert_false(v.delayed);
        assert_true(v.overridden);
        assert_false(v.storm);
        assert_true(v.warn);
        assert_int_equal(v.in_window, 11);
        assert_int_equal(s.storms, 1);
        assert_int_equal(pd_storm_in_window(&s, &p, 10000), 11);

        /* Consumed: the next one waits for the restart at 1 s to leave. */
        v = admit(&s, &p, 11000, PD_CRASH_EXIT_CODE);
        assert_false(v.overridden);
        assert_true(v.delayed);
        assert_int_equal(v.run_at_ms, 61000);
}

static void test_allow_once_is_consumed_even_when_not_needed(void **state) {
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        pd_storm_allow_once(&s);
        assert_true(s.override);
        v = admit(&s, &p, 0, PD_CRASH_EXIT_CODE);
        assert_true(v.overridden);
        assert_false(s.override);
        v = admit(&s, &p, 1000, PD_CRASH_EXIT_CODE);
        assert_false(v.overridden);
}

static void test_restarts_leave_window_after_window_ms(void **state) {
        pd_storm_policy p;
        pd_storm s;
        pd_storm saved;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        for (int i = 0; i < 10; i++)
                admit(&s, &p, i * 1000, PD_CRASH_EXIT_CODE);
        saved = s;

        /* The one at 0 still counts at 59.999 s ... */
        assert_int_equal(pd_storm_in_window(&s, &p, 59999), 10);
        v = admit(&s, &p, 59999, PD_CRASH_EXIT_CODE);
        assert_true(v.delayed);
        assert_int_equal(v.run_at_ms, 60000);

        /* ... and has left at 60 s. */
        s = saved;
        assert_int_equal(pd_storm_in_window(&s, &p, 60000), 9);
        v = admit(&s, &p, 60000, PD_CRASH_EXIT_CODE);
        assert_false(v.delayed);
        assert_int_equal(v.run_at_ms, 60000);
        assert_int_equal(v.in_window, 10);
        assert_false(v.storm);
        assert_int_equal(pd_storm_in_window(&s, &p, 200000), 0);
}

static void test_scheduled_restarts_count_in_window(void **state) {
        static const int64_t at[] = { 0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 37000, 38000 };
        pd_storm_policy p;
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        for (unsigned i = 0; i < 10; i++)
                admit(&s, &p, at[i], PD_CRASH_EXIT_CODE);
        v = admit(&s, &p, 39000, PD_CRASH_EXIT_CODE);
        assert_int_equal(v.run_at_ms, 60000);

        assert_int_equal(pd_storm_in_window(&s, &p, 39000), 11);
        /* The next waits behind the scheduled one: 1 s must leave first. */
        v = admit(&s, &p, 40000, PD_CRASH_EXIT_CODE);
        assert_int_equal(v.run_at_ms, 61000);
        assert_int_equal(v.in_window, 12);
        /* At 100 s only the two scheduled ones remain. */
        assert_int_equal(pd_storm_in_window(&s, &p, 100000), 2);
}

static void test_queued_restarts_keep_limit_per_window(void **state) {
        pd_storm_policy p = { .limit = 3, .window_ms = 10000, .burst_window_ms = 5000,
                              .warn_above = 2 };
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        assert_int_equal(pd_storm_policy_validate(&p, NULL), 0);
        pd_storm_init(&s);
        /* Far more than the ring holds, all requested at once: they run
         * three per window, in order. */
        for (int i = 0; i < 200; i++) {
                v = admit(&s, &p, 0, PD_CRASH_EXIT_CODE);
                assert_int_equal(v.run_at_ms, (int64_t) (i / 3) * 10000);
        }
}

static void test_out_of_range_limit_never_overruns_ring(void **state) {
        pd_storm_policy p = { .limit = 1000, .window_ms = 60000, .burst_window_ms = 30000,
                              .warn_above = 5 };
        pd_storm s;
        pd_storm_verdict v;

        (void) state;
        pd_storm_init(&s);
        for (int i = 0; i < 300; i++)
                v = admit(&s, &p, i, PD_CRASH_EXIT_CODE);
        assert_true(s.count <= PD_STORM_LIMIT_MAX);
        assert_true(v.delayed);

        p.limit = 0;
        pd_storm_init(&s);
        v = admit(&s, &p, 0, PD_CRASH_EXIT_CODE);
        assert_false(v.delayed);
        v = admit(&s, &p, 0, PD_CRASH_EXIT_CODE);
        assert_int_equal(v.run_at_ms, 60000);
}

static void test_admit_accepts_null_verdict(void **state) {
        pd_storm_policy p;
        pd_storm s;

        (void) state;
        pd_storm_policy_init(&p);
        pd_storm_init(&s);
        pd_storm_admit(&s, &p, 0, PD_CRASH_EXIT_CODE, NULL);
        assert_int_equal(pd_storm_in_window(&s, &p, 0), 1);
}

static void test_validate_rejects_bad_limit(void **state) {
        pd_storm_policy p;

        (void) state;
        pd_storm_policy_init(&p);
        p.limit = 0;
        assert_rejected(&p, "storm.limit: must be between 1 and 64, got 0");
        p.limit = PD_STORM_LIMIT_MAX + 1;
        assert_rejected(&p, "storm.limit: must be between 1 and 64, got 65");
        p.limit = PD_STORM_LIMIT_MAX;
        p.warn_above = PD_STORM_LIMIT_MAX - 1;
        assert_int_equal(pd_storm_policy_validate(&p, NULL), 0);
}

static void test_validate_rejects_bad_windows(void **state) {
        pd_storm_policy p;

        (void) state;
        pd_storm_policy_init(&p);
        p.window_ms = 0;
        assert_rejected(&p, "storm.window_ms: must be > 0, got 0");
        p.window_ms = -60000;
        assert_rejected(&p, "storm.window_ms: must be > 0, got -60000");

        pd_storm_policy_init(&p);
        p.burst_window_ms = 0;
        assert_rejected(&p, "storm.burst_window_ms: must be > 0, got 0");
        p.burst_window_ms = 60001;
        assert_rejected(&p, "storm.burst_window_ms: must not exceed window_ms (60000), got 60001");
        p.burst_window_ms = 60000;
        assert_int_equal(pd_storm_policy_validate(&p, NULL), 0);
}

static void test_validate_rejects_warn_at_or_above_limit(void **state) {
        pd_storm_policy p;

        (void) state;
        pd_storm_policy_init(&p);
        p.warn_above = 10;
        assert_rejected(&p, "storm.warn_above: must be below limit (10), got 10");
        p.warn_above = 9;
        assert_int_equal(pd_storm_policy_validate(&p, NULL), 0);
        p.warn_above = 0;
        assert_int_equal(pd_storm_policy_validate(&p, NULL), 0);
}

static void test_validate_null_policy_is_einval(void **state) {
        (void) state;
        assert_int_equal(pd_storm_policy_validate(NULL, NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_policy_init_gives_design_defaults),
                cmocka_unit_test(test_kind_to_string_names_every_kind),
                cmocka_unit_test(test_kind_hint_is_concrete_per_kind),
                cmocka_unit_test(test_kind_for_class_maps_every_class),
                cmocka_unit_test(test_ten_in_window_run_and_eleventh_waits_for_oldest),
                cmocka_unit_test(test_sixth_restart_in_window_warns),
                cmocka_unit_test(test_ten_within_burst_is_a_storm),
                cmocka_unit_test(test_burst_window_edge_is_exclusive),
                cmocka_unit_test(test_storm_kind_follows_dominant_class),
                cmocka_unit_test(test_storm_kind_counts_host_and_vram_oom_together),
                cmocka_unit_test(test_storm_kind_tie_goes_to_more_specific_kind),
                cmocka_unit_test(test_allow_once_runs_now_and_keeps_window),
                cmocka_unit_test(test_allow_once_is_consumed_even_when_not_needed),
                cmocka_unit_test(test_restarts_leave_window_after_window_ms),
                cmocka_unit_test(test_scheduled_restarts_count_in_window),
                cmocka_unit_test(test_queued_restarts_keep_limit_per_window),
                cmocka_unit_test(test_out_of_range_limit_never_overruns_ring),
                cmocka_unit_test(test_admit_accepts_null_verdict),
                cmocka_unit_test(test_validate_rejects_bad_limit),
                cmocka_unit_test(test_validate_rejects_bad_windows),
                cmocka_unit_test(test_validate_rejects_warn_at_or_above_limit),
                cmocka_unit_test(test_validate_null_policy_is_einval),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
