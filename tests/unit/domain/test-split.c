/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "pool-domain/split.h"

#define GIB (UINT64_C(1) << 30)
#define EPS 1e-9

/* cmocka's assert_float_equal() works in float, too coarse for ratios. */
#define assert_near(got, want, eps) assert_near_at((got), (want), (eps), __FILE__, __LINE__)

static void assert_near_at(double got, double want, double eps, const char *file, int line) {
        if (!(fabs(got - want) <= eps)) {
                print_error("%.17g is not within %g of %.17g\n", got, eps, want);
                _fail(file, line);
        }
}

static pd_split split_of(size_t n, const double *ratio) {
        pd_split s = { .count = n };

        for (size_t i = 0; i < n; i++)
                s.ratio[i] = ratio[i];
        return s;
}

static void assert_ratios(const pd_split *s, const double *want, size_t n) {
        assert_int_equal(s->count, n);
        for (size_t i = 0; i < n; i++)
                assert_near(s->ratio[i], want[i], EPS);
}

/* What every capped split must satisfy: sums to 1, nobody over its room. */
static void assert_fits(const pd_split *s, const uint64_t *usable, uint64_t required) {
        double sum = 0;

        for (size_t i = 0; i < s->count; i++) {
                assert_true(s->ratio[i] >= 0);
                /* Exactly, not within an epsilon: preflight multiplies back. */
                assert_true(s->ratio[i] * (double) required <= (double) usable[i]);
                sum += s->ratio[i];
        }
        assert_near(sum, 1.0, EPS);
}

static void assert_parse_rejects(const char *text, size_t expect, const char *msg) {
        pd_split s = { .count = 0 };
        pd_error err = { .msg = "" };

        assert_int_equal(pd_split_parse(text, expect, &s, &err), PD_E_INVALID);
        assert_string_equal(err.msg, msg);
        assert_int_equal(s.count, 0);
}

static void assert_formats(const double *ratio, size_t n, pd_split_style style,
                           const char *want) {
        pd_split s = split_of(n, ratio);
        char buf[128];

        assert_int_equal(pd_split_format(&s, style, buf, sizeof buf), (int) strlen(want));
        assert_string_equal(buf, want);
}

static void plan_auto_proportional_to_usable(void **state) {
        const uint64_t usable[] = { 24 * GIB, 8 * GIB };
        pd_split s;
        (void) state;

        assert_int_equal(pd_split_plan_auto(usable, 2, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.75, 0.25 }, 2);
}

static void plan_auto_three_devices(void **state) {
        const uint64_t usable[] = { 12 * GIB, 24 * GIB, 12 * GIB };
        const uint64_t odd[] = { 10 * GIB, 20 * GIB, 70 * GIB };
        pd_split s;
        (void) state;

        assert_int_equal(pd_split_plan_auto(usable, 3, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.25, 0.5, 0.25 }, 3);

        assert_int_equal(pd_split_plan_auto(odd, 3, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.1, 0.2, 0.7 }, 3);
}

static void plan_auto_zero_usable_gets_zero(void **state) {
        const uint64_t usable[] = { 24 * GIB, 0, 8 * GIB };
        pd_split s;
        (void) state;

        assert_int_equal(pd_split_plan_auto(usable, 3, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.75, 0.0, 0.25 }, 3);
}

static void plan_auto_rejects_all_zero(void **state) {
        const uint64_t usable[] = { 0, 0 };
        pd_split s = { .count = 0 };
        pd_error err = { .msg = "" };
        (void) state;

        assert_int_equal(pd_split_plan_auto(usable, 2, &s, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "none of the 2 devices has usable memory");
        assert_int_equal(s.count, 0);
}

static void plan_auto_rejects_bad_count(void **state) {
        uint64_t usable[PD_DEVICES_MAX + 1];
        pd_split s = { .count = 0 };
        pd_error err = { .msg = "" };
        (void) state;

        for (size_t i = 0; i < PD_DEVICES_MAX + 1; i++)
                usable[i] = GIB;

        assert_int_equal(pd_split_plan_auto(usable, 0, &s, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "no devices to split across");

        assert_int_equal(pd_split_plan_auto(usable, PD_DEVICES_MAX + 1, &s, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "65 devices to split across, at most 64 allowed");
        assert_int_equal(s.count, 0);

        /* The bound itself is fine. */
        assert_int_equal(pd_split_plan_auto(usable, PD_DEVICES_MAX, &s, &err), 0);
        assert_int_equal(s.count, PD_DEVICES_MAX);
        assert_near(s.ratio[PD_DEVICES_MAX - 1], 1.0 / PD_DEVICES_MAX, EPS);
}

static void parse_two_ratios(void **state) {
        pd_split s;
        (void) state;

        assert_int_equal(pd_split_parse("0.75,0.25", 2, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.75, 0.25 }, 2);
}

static void parse_any_count_with_spaces(void **state) {
        pd_split s;
        (void) state;

        assert_int_equal(pd_split_parse(" 0.5 , 0.25,0.25 ", 0, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.5, 0.25, 0.25 }, 3);

        assert_int_equal(pd_split_parse("1", 1, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 1.0 }, 1);
}

static void parse_renormalises_within_tolerance(void **state) {
        pd_split s;
        (void) state;

        /* Sums to 1.005: accepted, then scaled to sum to exactly 1. */
        assert_int_equal(pd_split_parse("0.5,0.505", 2, &s, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.5 / 1.005, 0.505 / 1.005 }, 2);
        assert_near(s.ratio[0] + s.ratio[1], 1.0, 1e-15);
}

static void parse_rejects_wrong_count(void **state) {
        (void) state;

        assert_parse_rejects("0.5,0.25,0.25", 2, "mask has 2 devices, split gives 3");
        assert_parse_rejects("0.5,0.5", 1, "mask has 1 device, split gives 2");
}

static void parse_rejects_too_many_entries(void **state) {
        char text[PD_DEVICES_MAX * 2 + 8] = "";
        (void) state;

        for (int i = 0; i < PD_DEVICES_MAX; i++)
                strcat(text, "1,");
        strcat(text, "1");

        assert_parse_rejects(text, 0, "split has 65 entries, at most 64 allowed");
}

static void parse_rejects_non_positive(void **state) {
        (void) state;

        assert_parse_rejects("0,1", 2, "split entry 0 is not positive");
        assert_parse_rejects("1.5,-0.5", 2, "split entry -0.5 is not positive");
}

static void parse_rejects_non_number(void **state) {
        (void) state;

        assert_parse_rejects("abc,0.5", 2, "split entry abc is not a number");
        assert_parse_rejects("0.5x,0.5", 2, "split entry 0.5x is not a number");
        assert_parse_rejects("0.5 0.5", 0, "split entry 0.5 0.5 is not a number");
        /* A decimal comma splits the entry instead: "0" and "75". */
        assert_parse_rejects("0,75", 2, "split entry 0 is not positive");
}

static void parse_rejects_empty_entry(void **state) {
        (void) state;

        assert_parse_rejects("", 0, "empty split");
        assert_parse_rejects("0.5,,0.5", 0, "empty entry 2 in split \"0.5,,0.5\"");
        assert_parse_rejects("0.5,0.5,", 0, "empty entry 3 in split \"0.5,0.5,\"");
}

static void parse_rejects_nan_and_inf(void **state) {
        (void) state;

        assert_parse_rejects("nan,0.5", 2, "split entry nan is not a finite number");
        assert_parse_rejects("0.5,inf", 2, "split entry inf is not a finite number");
        assert_parse_rejects("1e999,0.5", 2, "split entry 1e999 is not a finite number");
}

static void parse_rejects_bad_sum(void **state) {
        (void) state;

        assert_parse_rejects("0.6,0.6", 2, "ratios must sum to 1, got 1.2");
        assert_parse_rejects("0.5,0.25", 2, "ratios must sum to 1, got 0.75");
        assert_parse_rejects("3,1", 2, "ratios must sum to 1, got 4");
}

static void cap_moves_overflow_to_room(void **state) {
        const uint64_t usable[] = { 24 * GIB, 8 * GIB };
        pd_split s = split_of(2, (const double[]) { 0.5, 0.5 });
        (void) state;

        /* 12 GiB asked of the 8 GiB device: it keeps 8, the other takes 16. */
        assert_int_equal(pd_split_cap(&s, usable, 24 * GIB, NULL), 0);
        assert_ratios(&s, (const double[]) { 16.0 / 24, 8.0 / 24 }, 2);
        assert_fits(&s, usable, 24 * GIB);
}

static void cap_insufficient_names_numbers(void **state) {
        const uint64_t usable[] = { 24 * GIB, 8 * GIB };
        const uint64_t one[] = { 8 * GIB };
        pd_split s = split_of(2, (const double[]) { 0.75, 0.25 });
        pd_split single = split_of(1, (const double[]) { 1.0 });
        pd_error err = { .msg = "" };
        (void) state;

        assert_int_equal(pd_split_cap(&s, usable, 40 * GIB, &err), PD_E_INSUFFICIENT);
        assert_string_equal(err.msg, "need 40.0 GiB, usable 32.0 GiB across 2 devices");
        assert_ratios(&s, (const double[]) { 0.75, 0.25 }, 2);

        assert_int_equal(pd_split_cap(&single, one, 8 * GIB + GIB / 2, &err), PD_E_INSUFFICIENT);
        assert_string_equal(err.msg, "need 8.5 GiB, usable 8.0 GiB across 1 device");
}

static void cap_required_zero_unchanged(void **state) {
        const uint64_t usable[] = { 24 * GIB, 0 };
        pd_split s = split_of(2, (const double[]) { 0.5, 0.5 });
        pd_split before = s;
        (void) state;

        assert_int_equal(pd_split_cap(&s, usable, 0, NULL), 0);
        assert_memory_equal(&s, &before, sizeof s);
}

static void cap_within_bounds_unchanged(void **state) {
        const uint64_t usable[] = { 24 * GIB, 8 * GIB };
        pd_split s = split_of(2, (const double[]) { 0.6, 0.4 });
        pd_split before = s;
        (void) state;

        /* 12 GiB and 8 GiB: the small device is exactly full, not over. */
        assert_int_equal(pd_split_cap(&s, usable, 20 * GIB, NULL), 0);
        assert_memory_equal(&s, &before, sizeof s);
}

static void cap_exactly_full(void **state) {
        const uint64_t usable[] = { 8 * GIB, 16 * GIB, 40 * GIB };
        pd_split s = split_of(3, (const double[]) { 1.0 / 3, 1.0 / 3, 1.0 / 3 });
        (void) state;

        /* Required equals the total: every device ends at its limit. */
        assert_int_equal(pd_split_cap(&s, usable, 64 * GIB, NULL), 0);
        assert_ratios(&s, (const double[]) { 8.0 / 64, 16.0 / 64, 40.0 / 64 }, 3);
        assert_fits(&s, usable, 64 * GIB);
}

static void cap_overflow_does_not_push_another_over(void **state) {
        const uint64_t usable[] = { 10 * GIB, 31 * GIB, 100 * GIB };
        pd_split s = split_of(3, (const double[]) { 0.3, 0.3, 0.4 });
        (void) state;

        /*
         * Asked 30/30/40 of 10/31/100 GiB. Spreading device 0's 20 GiB
         * excess by ratio would give device 1 another 8.6 GiB, over its
         * 31; by room (1 vs 60 GiB) it gets 20/61 GiB.
         */
        assert_int_equal(pd_split_cap(&s, usable, 100 * GIB, NULL), 0);
        assert_ratios(&s, (const double[]) { 0.10, (30 + 20.0 / 61) / 100,
                                             (40 + 20.0 * 60 / 61) / 100 }, 3);
        assert_fits(&s, usable, 100 * GIB);
}

static void cap_several_over_at_once(void **state) {
        const uint64_t usable[] = { 4 * GIB, 6 * GIB, 30 * GIB, 40 * GIB };
        pd_split s = split_of(4, (const double[]) { 0.25, 0.25, 0.25, 0.25 });
        (void) state;

        /*
         * 10 GiB each of 4/6/30/40: 10 GiB excess, spread 20:30 over the
         * two with room.
         */
        assert_int_equal(pd_split_cap(&s, usable, 40 * GIB, NULL), 0);
        assert_ratios(&s, (const double[]) { 4.0 / 40, 6.0 / 40, 14.0 / 40, 16.0 / 40 }, 4);
        assert_fits(&s, usable, 40 * GIB);
}

static void cap_always_fits_when_room_suffices(void **state) {
        /* A deterministic sweep over shapes that stress the rounding. */
        static const uint64_t sizes[] = { 1, 3 * GIB / 7, 8 * GIB, 12 * GIB + 1, 24 * GIB,
                                          80 * GIB - 3 };
        static const double shapes[][4] = {
                { 0.25, 0.25, 0.25, 0.25 }, { 0.7, 0.1, 0.1, 0.1 }, { 0.01, 0.01, 0.01, 0.97 },
                { 0.4, 0.3, 0.2, 0.1 },     { 1.0 / 3, 1.0 / 3, 1.0 / 6, 1.0 / 6 },
        };
        const size_t nsizes = sizeof sizes / sizeof sizes[0];
        unsigned checked = 0;
        (void) state;

        for (size_t a = 0; a < nsizes; a++)
                for (size_t b = 0; b < nsizes; b++)
                        for (size_t c = 0; c < nsizes; c++)
                                for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
                                        const uint64_t usable[] = { sizes[a], sizes[b], sizes[c],
                                                                    24 * GIB };
                                        uint64_t total = usable[0] + usable[1] + usable[2] +
                                                         usable[3];
                                        pd_split s = split_of(4, shapes[sh]);

                                        /* Full, and then some slack. */
                                        assert_int_equal(pd_split_cap(&s, usable, total, NULL), 0);
                                        assert_fits(&s, usable, total);

                                        s = split_of(4, shapes[sh]);
                                        assert_int_equal(pd_split_cap(&s, usable, total / 10 * 9,
                                                                      NULL), 0);
                                        assert_fits(&s, usable, total / 10 * 9);
                                        checked++;
                                }
        assert_int_equal(checked, nsizes * nsizes * nsizes * 5);
}

static void cap_rejects_bad_arguments(void **state) {
        const uint64_t usable[] = { GIB };
        pd_split empty = { .count = 0 };
        pd_split negative = split_of(1, (const double[]) { -1.0 });
        (void) state;

        assert_int_equal(pd_split_cap(NULL, usable, GIB, NULL), -EINVAL);
        assert_int_equal(pd_split_cap(&empty, usable, GIB, NULL), -EINVAL);
        assert_int_equal(pd_split_cap(&negative, usable, GIB, NULL), -EINVAL);
}

static void format_fraction(void **state) {
        (void) state;

        assert_formats((const double[]) { 0.75, 0.25 }, 2, PD_SPLIT_STYLE_FRACTION, "0.75,0.25");
        assert_formats((const double[]) { 0.5, 0.5 }, 2, PD_SPLIT_STYLE_FRACTION, "0.5,0.5");
        assert_formats((const double[]) { 2.0 / 3, 1.0 / 3 }, 2, PD_SPLIT_STYLE_FRACTION,
                       "0.6667,0.3333");
        assert_formats((const double[]) { 0.1234, 0.8766 }, 2, PD_SPLIT_STYLE_FRACTION,
                       "0.1234,0.8766");
        assert_formats((const double[]) { 0.75, 0.0, 0.25 }, 3, PD_SPLIT_STYLE_FRACTION,
                       "0.75,0,0.25");
}

static void format_fraction_single_device(void **state) {
        (void) state;

        assert_formats((const double[]) { 1.0 }, 1, PD_SPLIT_STYLE_FRACTION, "1");
}

static void format_integer_smallest_by_percent(void **state) {
        (void) state;

        assert_formats((const double[]) { 0.5, 0.5 }, 2, PD_SPLIT_STYLE_INTEGER, "1,1");
        assert_formats((const double[]) { 0.6, 0.4 }, 2, PD_SPLIT_STYLE_INTEGER, "3,2");
        assert_formats((const double[]) { 0.75, 0.25 }, 2, PD_SPLIT_STYLE_INTEGER, "3,1");
        assert_formats((const double[]) { 0.3333, 0.6667 }, 2, PD_SPLIT_STYLE_INTEGER, "1,2");
        /* Smallest wins over familiar-looking: 7/19 and 12/19 are 37% and 63%. */
        assert_formats((const double[]) { 0.37, 0.63 }, 2, PD_SPLIT_STYLE_INTEGER, "7,12");
        assert_formats((const double[]) { 0.25, 0.0, 0.75 }, 3, PD_SPLIT_STYLE_INTEGER, "1,0,3");
        assert_formats((const double[]) { 1.0 / 3, 1.0 / 3, 1.0 / 3 }, 3, PD_SPLIT_STYLE_INTEGER,
                       "1,1,1");
        assert_formats((const double[]) { 1.0 }, 1, PD_SPLIT_STYLE_INTEGER, "1");
}

static void format_integer_falls_back_to_percents(void **state) {
        (void) state;

        /* No total up to 100 matches every share to half a percent, so
         * whole percents by largest remainder, summing to 100. */
        assert_formats((const double[]) { 0.405, 0.589, 0.005 }, 3, PD_SPLIT_STYLE_INTEGER,
                       "41,59,0");
}

static void format_small_buffer_is_enospc(void **state) {
        pd_split s = split_of(2, (const double[]) { 0.75, 0.25 });
        char buf[8];
        (void) state;

        memset(buf, 'x', sizeof buf);
        assert_int_equal(pd_split_format(&s, PD_SPLIT_STYLE_FRACTION, buf, sizeof buf), -ENOSPC);
        assert_string_equal(buf, "");

        memset(buf, 'x', sizeof buf);
        assert_int_equal(pd_split_format(&s, PD_SPLIT_STYLE_INTEGER, buf, 3), -ENOSPC);
        assert_string_equal(buf, "");

        assert_int_equal(pd_split_format(&s, PD_SPLIT_STYLE_INTEGER, buf, 4), 3);
        assert_string_equal(buf, "3,1");
}

static void format_rejects_bad_arguments(void **state) {
        pd_split s = split_of(2, (const double[]) { 0.75, 0.25 });
        pd_split empty = { .count = 0 };
        char buf[32];
        (void) state;

        assert_int_equal(pd_split_format(&s, PD_SPLIT_STYLE_MAX, buf, sizeof buf), -EINVAL);
        assert_int_equal(pd_split_format(&empty, PD_SPLIT_STYLE_FRACTION, buf, sizeof buf),
                         -EINVAL);
        assert_int_equal(pd_split_format(NULL, PD_SPLIT_STYLE_FRACTION, buf, sizeof buf), -EINVAL);
}

static void parse_format_round_trip(void **state) {
        pd_split s, again;
        char buf[64];
        (void) state;

        assert_int_equal(pd_split_parse("0.6,0.3,0.1", 3, &s, NULL), 0);
        assert_true(pd_split_format(&s, PD_SPLIT_STYLE_FRACTION, buf, sizeof buf) > 0);
        assert_string_equal(buf, "0.6,0.3,0.1");
        assert_int_equal(pd_split_parse(buf, 3, &again, NULL), 0);
        assert_ratios(&again, s.ratio, 3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(plan_auto_proportional_to_usable),
                cmocka_unit_test(plan_auto_three_devices),
                cmocka_unit_test(plan_auto_zero_usable_gets_zero),
                cmocka_unit_test(plan_auto_rejects_all_zero),
                cmocka_unit_test(plan_auto_rejects_bad_count),
                cmocka_unit_test(parse_two_ratios),
                cmocka_unit_test(parse_any_count_with_spaces),
                cmocka_unit_test(parse_renormalises_within_tolerance),
                cmocka_unit_test(parse_rejects_wrong_count),
                cmocka_unit_test(parse_rejects_too_many_entries),
                cmocka_unit_test(parse_rejects_non_positive),
                cmocka_unit_test(parse_rejects_non_number),
                cmocka_unit_test(parse_rejects_empty_entry),
                cmocka_unit_test(parse_rejects_nan_and_inf),
                cmocka_unit_test(parse_rejects_bad_sum),
                cmocka_unit_test(cap_moves_overflow_to_room),
                cmocka_unit_test(cap_insufficient_names_numbers),
                cmocka_unit_test(cap_required_zero_unchanged),
                cmocka_unit_test(cap_within_bounds_unchanged),
                cmocka_unit_test(cap_exactly_full),
                cmocka_unit_test(cap_overflow_does_not_push_another_over),
                cmocka_unit_test(cap_several_over_at_once),
                cmocka_unit_test(cap_always_fits_when_room_suffices),
                cmocka_unit_test(cap_rejects_bad_arguments),
                cmocka_unit_test(format_fraction),
                cmocka_unit_test(format_fraction_single_device),
                cmocka_unit_test(format_integer_smallest_by_percent),
                cmocka_unit_test(format_integer_falls_back_to_percents),
                cmocka_unit_test(format_small_buffer_is_enospc),
                cmocka_unit_test(format_rejects_bad_arguments),
                cmocka_unit_test(parse_format_round_trip),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
