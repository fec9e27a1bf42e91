/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "pool-domain/error.h"
#include "pool-domain/rng.h"

#define DRAWS 200000

/* Reference values from Vigna's splitmix64.c seeded with 0: any change to
 * the constants or the mixing shows up here. */
static void test_rng_seed_zero_gives_reference_splitmix64_sequence(void **state) {
        pd_rng rng;

        (void) state;
        pd_rng_seed(&rng, 0);
        assert_true(pd_rng_next(&rng) == UINT64_C(0xE220A8397B1DCDAF));
        assert_true(pd_rng_next(&rng) == UINT64_C(0x6E789E6AA1B965F4));
        assert_true(pd_rng_next(&rng) == UINT64_C(0x06C45D188009454F));
}

static void test_rng_same_seed_gives_same_sequence(void **state) {
        pd_rng a, b;

        (void) state;
        pd_rng_seed(&a, 42);
        pd_rng_seed(&b, 42);
        for (int i = 0; i < 1000; i++)
                assert_true(pd_rng_next(&a) == pd_rng_next(&b));
}

static void test_rng_reseed_restarts_sequence(void **state) {
        pd_rng rng;
        uint64_t first[8];

        (void) state;
        pd_rng_seed(&rng, 7);
        for (int i = 0; i < 8; i++)
                first[i] = pd_rng_next(&rng);
        pd_rng_seed(&rng, 7);
        for (int i = 0; i < 8; i++)
                assert_true(pd_rng_next(&rng) == first[i]);
}

static void test_rng_different_seeds_give_different_sequences(void **state) {
        pd_rng a, b;
        int same = 0;

        (void) state;
        pd_rng_seed(&a, 1);
        pd_rng_seed(&b, 2);
        for (int i = 0; i < 100; i++)
                same += pd_rng_next(&a) == pd_rng_next(&b);
        assert_int_equal(same, 0);
}

static void test_rng_unit_is_top_53_bits_scaled(void **state) {
        pd_rng a, b;

        (void) state;
        pd_rng_seed(&a, 99);
        pd_rng_seed(&b, 99);
        for (int i = 0; i < 100; i++) {
                uint64_t raw = pd_rng_next(&a);
                double expect = (double) (raw >> 11) / 9007199254740992.0;

                assert_true(pd_rng_unit(&b) == expect);
        }
}

static void test_rng_unit_stays_in_zero_one_with_mean_half(void **state) {
        pd_rng rng;
        double sum = 0, lo = 1, hi = 0;

        (void) state;
        pd_rng_seed(&rng, 12345);
        for (int i = 0; i < DRAWS; i++) {
                double u = pd_rng_unit(&rng);

                assert_true(u >= 0.0);
                assert_true(u < 1.0);
                sum += u;
                lo = fmin(lo, u);
                hi = fmax(hi, u);
        }
        assert_true(fabs(sum / DRAWS - 0.5) < 0.005);
        /* Spread over the whole interval, not a corner of it. */
        assert_true(lo < 0.001);
        assert_true(hi > 0.999);
}

static void test_rng_signed_unit_stays_in_minus_one_one_with_mean_zero(void **state) {
        pd_rng rng;
        double sum = 0, lo = 1, hi = -1;

        (void) state;
        pd_rng_seed(&rng, 54321);
        for (int i = 0; i < DRAWS; i++) {
                double u = pd_rng_signed_unit(&rng);

                assert_true(u >= -1.0);
                assert_true(u < 1.0);
                sum += u;
                lo = fmin(lo, u);
                hi = fmax(hi, u);
        }
        assert_true(fabs(sum / DRAWS) < 0.01);
        assert_true(lo < -0.998);
        assert_true(hi > 0.998);
}

static void test_rng_signed_unit_is_twice_unit_minus_one(void **state) {
        pd_rng a, b;

        (void) state;
        pd_rng_seed(&a, 5);
        pd_rng_seed(&b, 5);
        for (int i = 0; i < 100; i++)
                assert_true(pd_rng_signed_unit(&a) == 2.0 * pd_rng_unit(&b) - 1.0);
}

static void test_error_set_formats_message_and_returns_invalid(void **state) {
        pd_error err;

        (void) state;
        assert_int_equal(pd_error_set(&err, "field %s: %d is out of range", "slots", -3),
                         PD_E_INVALID);
        assert_string_equal(err.msg, "field slots: -3 is out of range");
}

static void test_error_setc_returns_given_code(void **state) {
        pd_error err;

        (void) state;
        assert_int_equal(pd_error_setc(&err, PD_E_OVERLAP, "device %u in two masks", 3u),
                         PD_E_OVERLAP);
        assert_string_equal(err.msg, "device 3 in two masks");
        assert_int_equal(pd_error_setc(&err, -ENOMEM, "out of memory"), -ENOMEM);
        assert_string_equal(err.msg, "out of memory");
}

static void test_error_set_accepts_null_error(void **state) {
        (void) state;
        assert_int_equal(pd_error_set(NULL, "ignored %d", 1), PD_E_INVALID);
        assert_int_equal(pd_error_setc(NULL, PD_E_NO_SLOT, "ignored %d", 2), PD_E_NO_SLOT);
}

static void test_error_set_truncates_long_message_terminated(void **state) {
        pd_error err;
        char big[PD_ERROR_MAX * 2];

        (void) state;
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        pd_error_set(&err, "%s", big);
        assert_int_equal(strlen(err.msg), PD_ERROR_MAX - 1);
        assert_int_equal(err.msg[0], 'x');
}

static void test_error_code_to_string_names_every_code(void **state) {
        (void) state;
        assert_string_equal(pd_error_code_to_string(0), "ok");
        assert_string_equal(pd_error_code_to_string(PD_E_INVALID), "invalid");
        assert_string_equal(pd_error_code_to_string(PD_E_NOT_FOUND), "not_found");
        assert_string_equal(pd_error_code_to_string(PD_E_NO_SLOT), "no_slot");
        assert_string_equal(pd_error_code_to_string(PD_E_NOT_LEASED), "not_leased");
        assert_string_equal(pd_error_code_to_string(PD_E_OVERLAP), "overlap");
        assert_string_equal(pd_error_code_to_string(PD_E_INSUFFICIENT), "insufficient");
        assert_string_equal(pd_error_code_to_string(PD_E_TRANSITION), "transition");
        assert_string_equal(pd_error_code_to_string(PD_E_BREAKER_OPEN), "breaker_open");
}

static void test_error_code_to_string_handles_errno_and_unknown(void **state) {
        (void) state;
        assert_string_equal(pd_error_code_to_string(-EINVAL), "system");
        assert_string_equal(pd_error_code_to_string(PD_E_BREAKER_OPEN + 100), "unknown");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rng_seed_zero_gives_reference_splitmix64_sequence),
                cmocka_unit_test(test_rng_same_seed_gives_same_sequence),
                cmocka_unit_test(test_rng_reseed_restarts_sequence),
                cmocka_unit_test(test_rng_different_seeds_give_different_sequences),
                cmocka_unit_test(test_rng_unit_is_top_53_bits_scaled),
                cmocka_unit_test(test_rng_unit_stays_in_zero_one_with_mean_half),
                cmocka_unit_test(test_rng_signed_unit_stays_in_minus_one_one_with_mean_zero),
                cmocka_unit_test(test_rng_signed_unit_is_twice_unit_minus_one),
                cmocka_unit_test(test_error_set_formats_message_and_returns_invalid),
                cmocka_unit_test(test_error_setc_returns_given_code),
                cmocka_unit_test(test_error_set_accepts_null_error),
                cmocka_unit_test(test_error_set_truncates_long_message_terminated),
                cmocka_unit_test(test_error_code_to_string_names_every_code),
                cmocka_unit_test(test_error_code_to_string_handles_errno_and_unknown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
