/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "pool-domain/lease.h"

/* ---- slots ------------------------------------------------------------- */

static void test_slots_init_starts_with_every_slot_free(void **state) {
        pd_slots s = { .total = 9, .leased = 9 };

        (void) state;
        pd_slots_init(&s, 4);
        assert_int_equal(s.total, 4);
        assert_int_equal(s.leased, 0);
        assert_int_equal(pd_slots_free(&s), 4);
}

static void test_slots_acquire_until_full_then_no_slot(void **state) {
        pd_slots s;

        (void) state;
        pd_slots_init(&s, 2);
        assert_int_equal(pd_slots_acquire(&s), 0);
        assert_int_equal(pd_slots_acquire(&s), 0);
        assert_int_equal(pd_slots_free(&s), 0);
        assert_int_equal(pd_slots_acquire(&s), PD_E_NO_SLOT);
        assert_int_equal(s.leased, 2);
        assert_int_equal(s.total, 2);
}

static void test_slots_zero_total_refuses_acquire(void **state) {
        pd_slots s;

        (void) state;
        pd_slots_init(&s, 0);
        assert_int_equal(pd_slots_acquire(&s), PD_E_NO_SLOT);
        assert_int_equal(s.leased, 0);
}

static void test_slots_release_on_zero_is_not_leased(void **state) {
        pd_slots s;

        (void) state;
        pd_slots_init(&s, 3);
        assert_int_equal(pd_slots_release(&s), PD_E_NOT_LEASED);
        assert_int_equal(s.leased, 0);
        assert_int_equal(pd_slots_acquire(&s), 0);
        assert_int_equal(pd_slots_release(&s), 0);
        assert_int_equal(pd_slots_release(&s), PD_E_NOT_LEASED);
        assert_int_equal(s.leased, 0);
        assert_int_equal(s.total, 3);
}

static void test_slots_free_never_wraps_on_a_broken_struct(void **state) {
        pd_slots s = { .total = 1, .leased = 5 };

        (void) state;
        assert_int_equal(pd_slots_free(&s), 0);
}

static void test_slots_resize_grows_and_shrinks_to_leased(void **state) {
        pd_slots s;
        pd_error err;

        (void) state;
        pd_slots_init(&s, 2);
        assert_int_equal(pd_slots_acquire(&s), 0);
        assert_int_equal(pd_slots_acquire(&s), 0);
        assert_int_equal(pd_slots_resize(&s, 8, &err), 0);
        assert_int_equal(s.total, 8);
        assert_int_equal(pd_slots_free(&s), 6);
        assert_int_equal(pd_slots_resize(&s, 2, &err), 0);
        assert_int_equal(s.total, 2);
        assert_int_equal(s.leased, 2);
}

static void test_slots_resize_below_leased_is_refused(void **state) {
        pd_slots s;
        pd_error err;

        (void) state;
        pd_slots_init(&s, 4);
        for (int i = 0; i < 3; i++)
                assert_int_equal(pd_slots_acquire(&s), 0);
        assert_int_equal(pd_slots_resize(&s, 2, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "slots: cannot shrink to 2 while 3 are leased");
        assert_int_equal(s.total, 4);
        assert_int_equal(s.leased, 3);
        assert_int_equal(pd_slots_resize(&s, 0, NULL), PD_E_INVALID);
        assert_int_equal(s.total, 4);
}

static void test_slots_invariant_holds_over_random_walk(void **state) {
        pd_slots s;
        pd_rng rng;
        uint32_t model = 0, acquired = 0, refused = 0;

        (void) state;
        pd_rng_seed(&rng, 2024);
        pd_slots_init(&s, 7);
        for (int step = 0; step < 10000; step++) {
                uint64_t r = pd_rng_next(&rng);
                int rc;

                switch (r % 8) {
                case 0:
                        /* Now and then resize, sometimes below the leases. */
                        rc = pd_slots_resize(&s, (uint32_t) ((r >> 8) % 12), NULL);
                        assert_true(rc == 0 || rc == PD_E_INVALID);
                        break;
                case 1: case 2: case 3: case 4:
                        rc = pd_slots_acquire(&s);
                        if (rc == 0) {
                                model++;
                                acquired++;
                        } else {
                                assert_int_equal(rc, PD_E_NO_SLOT);
                                assert_int_equal(s.leased, s.total);
                                refused++;
                        }
                        break;
                default:
                        rc = pd_slots_release(&s);
                        if (rc == 0)
                                model--;
                        else {
                                assert_int_equal(rc, PD_E_NOT_LEASED);
                                assert_int_equal(model, 0);
                        }
                        break;
                }
                assert_true(s.leased <= s.total);
                assert_int_equal(s.leased, model);
                assert_int_equal(pd_slots_free(&s), s.total - s.leased);
        }
        /* The walk really visited both edges. */
        assert_true(acquired > 1000);
        assert_true(refused > 0);
}

/* ---- least-loaded pick ------------------------------------------------- */

static void test_pick_chooses_most_free_slots(void **state) {
        pd_slots r[3] = { { 4, 3 }, { 4, 1 }, { 8, 6 } };
        size_t out = 99;

        (void) state;
        assert_int_equal(pd_slots_pick_least_loaded(r, NULL, 3, &out), 0);
        assert_int_equal(out, 1);
}

static void test_pick_tie_goes_to_lowest_index(void **state) {
        pd_slots r[4] = { { 2, 2 }, { 4, 1 }, { 3, 0 }, { 5, 2 } };
        size_t out = 99;

        (void) state;
        assert_int_equal(pd_slots_pick_least_loaded(r, NULL, 4, &out), 0);
        assert_int_equal(out, 1);
}

static void test_pick_honours_eligible_mask(void **state) {
        pd_slots r[3] = { { 8, 0 }, { 4, 3 }, { 4, 2 } };
        bool eligible[3] = { false, true, true };
        size_t out = 99;

        (void) state;
        assert_int_equal(pd_slots_pick_least_loaded(r, eligible, 3, &out), 0);
        assert_int_equal(out, 2);
}

static void test_pick_none_free_is_no_slot(void **state) {
        pd_slots full[2] = { { 2, 2 }, { 1, 1 } };
        pd_slots r[2] = { { 8, 0 }, { 1, 1 } };
        bool eligible[2] = { false, true };
        size_t out = 99;

        (void) state;
        assert_int_equal(pd_slots_pick_least_loaded(full, NULL, 2, &out), PD_E_NO_SLOT);
        assert_int_equal(pd_slots_pick_least_loaded(r, eligible, 2, &out), PD_E_NO_SLOT);
        assert_int_equal(pd_slots_pick_least_loaded(r, NULL, 0, &out), PD_E_NO_SLOT);
        /* Refusal leaves the output alone. */
        assert_int_equal(out, 99);
}

/* ---- saturating arithmetic --------------------------------------------- */

static void test_sat_add_u32_stops_at_max(void **state) {
        (void) state;
        assert_true(pd_sat_add_u32(1, 2) == 3);
        assert_true(pd_sat_add_u32(UINT32_MAX - 1, 1) == UINT32_MAX);
        assert_true(pd_sat_add_u32(UINT32_MAX, 1) == UINT32_MAX);
        assert_true(pd_sat_add_u32(UINT32_MAX, UINT32_MAX) == UINT32_MAX);
        assert_true(pd_sat_add_u32(0, UINT32_MAX) == UINT32_MAX);
}

static void test_sat_sub_u32_stops_at_zero(void **state) {
        (void) state;
        assert_true(pd_sat_sub_u32(5, 3) == 2);
        assert_true(pd_sat_sub_u32(3, 3) == 0);
        assert_true(pd_sat_sub_u32(3, 5) == 0);
        assert_true(pd_sat_sub_u32(0, UINT32_MAX) == 0);
        assert_true(pd_sat_sub_u32(UINT32_MAX, 0) == UINT32_MAX);
}

static void test_sat_add_i64_stops_at_both_ends(void **state) {
        (void) state;
        assert_true(pd_sat_add_i64(2, -5) == -3);
        assert_true(pd_sat_add_i64(INT64_MAX - 1, 1) == INT64_MAX);
        assert_true(pd_sat_add_i64(INT64_MAX, 1) == INT64_MAX);
        assert_true(pd_sat_add_i64(INT64_MAX, INT64_MAX) == INT64_MAX);
        assert_true(pd_sat_add_i64(INT64_MIN + 1, -1) == INT64_MIN);
        assert_true(pd_sat_add_i64(INT64_MIN, -1) == INT64_MIN);
        assert_true(pd_sat_add_i64(INT64_MIN, INT64_MIN) == INT64_MIN);
        assert_true(pd_sat_add_i64(INT64_MAX, INT64_MIN) == -1);
        assert_true(pd_sat_add_i64(-1, INT64_MIN + 1) == INT64_MIN);
}

/* ---- expiry ------------------------------------------------------------ */

static void test_lease_expires_at_adds_ttl(void **state) {
        (void) state;
        assert_true(pd_lease_expires_at(1000, 600000) == 601000);
        assert_true(pd_lease_expires_at(1700000000000, 0) == 1700000000000);
}

static void test_lease_expires_at_saturates(void **state) {
        (void) state;
        assert_true(pd_lease_expires_at(INT64_MAX - 10, 600000) == INT64_MAX);
        assert_true(pd_lease_expires_at(1, INT64_MAX) == INT64_MAX);
}

static void test_lease_negative_ttl_expires_at_grant(void **state) {
        (void) state;
        assert_true(pd_lease_expires_at(5000, -1) == 5000);
        assert_true(pd_lease_expires_at(INT64_MIN, INT64_MIN) == INT64_MIN);
}

static void test_lease_is_expired_at_and_after_deadline(void **state) {
        (void) state;
        assert_false(pd_lease_is_expired(1000, 999));
        assert_true(pd_lease_is_expired(1000, 1000));
        assert_true(pd_lease_is_expired(1000, 1001));
        /* A saturated deadline never passes. */
        assert_false(pd_lease_is_expired(pd_lease_expires_at(INT64_MAX - 1, 5), INT64_MAX - 1));
}

/* ---- lease ids --------------------------------------------------------- */

static void test_lease_id_is_32_lowercase_hex(void **state) {
        pd_rng rng;
        char id[PD_LEASE_ID_LEN + 1];

        (void) state;
        pd_rng_seed(&rng, 1);
        for (int i = 0; i < 100; i++) {
                pd_lease_id_generate(&rng, id);
                assert_int_equal(strlen(id), PD_LEASE_ID_LEN);
                assert_int_equal(strspn(id, "0123456789abcdef"), PD_LEASE_ID_LEN);
                assert_int_equal(pd_lease_id_validate(id, NULL), 0);
        }
}

static void test_lease_id_is_two_rng_draws_in_hex(void **state) {
        pd_rng rng;
        char id[PD_LEASE_ID_LEN + 1];

        (void) state;
        pd_rng_seed(&rng, 0);
        pd_lease_id_generate(&rng, id);
        /* splitmix64(0)'s first two outputs. */
        assert_string_equal(id, "e220a8397b1dcdaf6e789e6aa1b965f4");
}

static void test_lease_id_same_seed_same_id(void **state) {
        pd_rng a, b;
        char x[PD_LEASE_ID_LEN + 1], y[PD_LEASE_ID_LEN + 1];

        (void) state;
        pd_rng_seed(&a, 77);
        pd_rng_seed(&b, 77);
        pd_lease_id_generate(&a, x);
        pd_lease_id_generate(&b, y);
        assert_string_equal(x, y);
}

static void test_lease_id_two_draws_differ(void **state) {
        pd_rng rng;
        char x[PD_LEASE_ID_LEN + 1], y[PD_LEASE_ID_LEN + 1];

        (void) state;
        pd_rng_seed(&rng, 77);
        pd_lease_id_generate(&rng, x);
        pd_lease_id_generate(&rng, y);
        assert_string_not_equal(x, y);
}

static void assert_lease_id_refused(const char *id, const char *msg) {
        pd_error err = { .msg = "untouched" };

        assert_int_equal(pd_lease_id_validate(id, &err), PD_E_INVALID);
        assert_string_equal(err.msg, msg);
}

static void test_lease_id_validate_refuses_wrong_length(void **state) {
        (void) state;
        assert_lease_id_refused("", "lease id: expected 32 lowercase hex digits, got 0 characters");
        assert_lease_id_refused("e220a8397b1dcdaf6e789e6aa1b965f",
                                "lease id: expected 32 lowercase hex digits, got 31 characters");
        assert_lease_id_refused("e220a8397b1dcdaf6e789e6aa1b965f40",
                                "lease id: expected 32 lowercase hex digits, got more than 32 characters");
}

static void test_lease_id_validate_refuses_uppercase(void **state) {
        (void) state;
        assert_lease_id_refused("E220a8397b1dcdaf6e789e6aa1b965f4",
                                "lease id: character 'E' at position 0 is not a lowercase hex digit");
}

static void test_lease_id_validate_refuses_non_hex(void **state) {
        (void) state;
        assert_lease_id_refused("e220a8397b1dcdaf6e789e6aa1b965fg",
                                "lease id: character 'g' at position 31 is not a lowercase hex digit");
        assert_lease_id_refused("e220a8397b1dcdaf/e789e6aa1b965f4",
                                "lease id: character '/' at position 16 is not a lowercase hex digit");
        assert_lease_id_refused("e220a8397b1dcdaf\xff" "e789e6aa1b965f4",
                                "lease id: character '\\xff' at position 16 is not a lowercase hex digit");
}

static void test_lease_id_validate_refuses_null(void **state) {
        (void) state;
        assert_lease_id_refused(NULL, "lease id: missing");
        assert_int_equal(pd_lease_id_validate(NULL, NULL), PD_E_INVALID);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_slots_init_starts_with_every_slot_free),
                cmocka_unit_test(test_slots_acquire_until_full_then_no_slot),
                cmocka_unit_test(test_slots_zero_total_refuses_acquire),
                cmocka_unit_test(test_slots_release_on_zero_is_not_leased),
                cmocka_unit_test(test_slots_free_never_wraps_on_a_broken_struct),
                cmocka_unit_test(test_slots_resize_grows_and_shrinks_to_leased),
                cmocka_unit_test(test_slots_resize_below_leased_is_refused),
                cmocka_unit_test(test_slots_invariant_holds_over_random_walk),
                cmocka_unit_test(test_pick_chooses_most_free_slots),
                cmocka_unit_test(test_pick_tie_goes_to_lowest_index),
                cmocka_unit_test(test_pick_honours_eligible_mask),
                cmocka_unit_test(test_pick_none_free_is_no_slot),
                cmocka_unit_test(test_sat_add_u32_stops_at_max),
                cmocka_unit_test(test_sat_sub_u32_stops_at_zero),
                cmocka_unit_test(test_sat_add_i64_stops_at_both_ends),
                cmocka_unit_test(test_lease_expires_at_adds_ttl),
                cmocka_unit_test(test_lease_expires_at_saturates),
                cmocka_unit_test(test_lease_negative_ttl_expires_at_grant),
                cmocka_unit_test(test_lease_is_expired_at_and_after_deadline),
                cmocka_unit_test(test_lease_id_is_32_lowercase_hex),
                cmocka_unit_test(test_lease_id_is_two_rng_draws_in_hex),
                cmocka_unit_test(test_lease_id_same_seed_same_id),
                cmocka_unit_test(test_lease_id_two_draws_differ),
                cmocka_unit_test(test_lease_id_validate_refuses_wrong_length),
                cmocka_unit_test(test_lease_id_validate_refuses_uppercase),
                cmocka_unit_test(test_lease_id_validate_refuses_non_hex),
                cmocka_unit_test(test_lease_id_validate_refuses_null),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
