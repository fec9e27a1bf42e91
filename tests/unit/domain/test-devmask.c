/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pool-domain/devmask.h"

#define GIB (UINT64_C(1) << 30)

#define UUID0 "GPU-8f2c1a4e-0000-1111-2222-333344445550"
#define UUID1 "GPU-8f2c1a4e-0000-1111-2222-333344445551"
#define UUID2 "GPU-8f2c1a4e-0000-1111-2222-333344445552"
#define UUID3 "GPU-8f2c1a4e-0000-1111-2222-333344445553"

/* Four devices with unequal VRAM, as a mixed node would report them. */
static const pd_device devices[] = {
        { .index = 0, .uuid = UUID0, .name = "NVIDIA RTX A5000", .pci_bus_id = "0000:01:00.0",
          .cc_major = 8, .cc_minor = 6, .vram_total_bytes = 24 * GIB, .vram_free_bytes = 23 * GIB },
        { .index = 1, .uuid = UUID1, .name = "NVIDIA RTX A5000", .pci_bus_id = "0000:21:00.0",
          .cc_major = 8, .cc_minor = 6, .vram_total_bytes = 24 * GIB, .vram_free_bytes = 23 * GIB },
        { .index = 2, .uuid = UUID2, .name = "NVIDIA RTX 3060", .pci_bus_id = "0000:41:00.0",
          .cc_major = 8, .cc_minor = 6, .vram_total_bytes = 12 * GIB, .vram_free_bytes = 11 * GIB },
        { .index = 3, .uuid = UUID3, .name = "NVIDIA A100-SXM4-80GB", .pci_bus_id = "0000:81:00.0",
          .cc_major = 8, .cc_minor = 0, .vram_total_bytes = 80 * GIB, .vram_free_bytes = 79 * GIB },
};

static const pd_inventory inv = { .devices = devices, .count = 4 };

static void assert_mask(const pd_devmask *m, const int *want, unsigned n) {
        assert_false(m->none);
        assert_int_equal(m->count, n);
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(m->index[i], want[i]);
}

static void assert_parses(const char *text, const pd_inventory *in, const int *want, unsigned n) {
        pd_devmask m;
        pd_error err = { .msg = "" };

        assert_int_equal(pd_devmask_parse(text, in, &m, &err), 0);
        assert_mask(&m, want, n);
}

static void assert_rejects(const char *text, const pd_inventory *in, int code, const char *msg) {
        pd_devmask m = { .count = 0 };
        pd_error err = { .msg = "" };

        assert_int_equal(pd_devmask_parse(text, in, &m, &err), code);
        assert_string_equal(err.msg, msg);
}

static void inventory_find_by_index(void **state) {
        (void) state;

        assert_ptr_equal(pd_inventory_find(&inv, 2), &devices[2]);
        assert_ptr_equal(pd_inventory_find(&inv, 0), &devices[0]);
        assert_null(pd_inventory_find(&inv, 4));
        assert_null(pd_inventory_find(&inv, -1));
        assert_null(pd_inventory_find(NULL, 0));
}

static void inventory_find_uuid_ignores_case(void **state) {
        (void) state;

        assert_ptr_equal(pd_inventory_find_uuid(&inv, UUID3), &devices[3]);
        assert_ptr_equal(pd_inventory_find_uuid(&inv, "gpu-8F2C1A4E-0000-1111-2222-333344445551"),
                         &devices[1]);
        /* A prefix of a UUID is not that UUID. */
        assert_null(pd_inventory_find_uuid(&inv, "GPU-8f2c1a4e"));
        assert_null(pd_inventory_find_uuid(&inv, NULL));
        assert_null(pd_inventory_find_uuid(NULL, UUID0));
}

static void parse_indexes(void **state) {
        (void) state;

        assert_parses("0,1", &inv, (const int[]) { 0, 1 }, 2);
        assert_parses("3", &inv, (const int[]) { 3 }, 1);
}

static void parse_gpu_prefix_any_case(void **state) {
        (void) state;

        assert_parses("GPU0,GPU1", &inv, (const int[]) { 0, 1 }, 2);
        assert_parses("gpu2", &inv, (const int[]) { 2 }, 1);
        assert_parses("Gpu3,gPU0", &inv, (const int[]) { 3, 0 }, 2);
}

static void parse_uuid_any_case(void **state) {
        (void) state;

        assert_parses(UUID2, &inv, (const int[]) { 2 }, 1);
        assert_parses("gpu-8F2C1A4E-0000-1111-2222-333344445553", &inv, (const int[]) { 3 }, 1);
}

static void parse_mixture(void **state) {
        (void) state;

        assert_parses(UUID3 ",1,gpu0", &inv, (const int[]) { 3, 1, 0 }, 3);
}

static void parse_spaces_around_commas(void **state) {
        (void) state;

        assert_parses("0, 1", &inv, (const int[]) { 0, 1 }, 2);
        assert_parses("  2 ,\t3  ", &inv, (const int[]) { 2, 3 }, 2);
}

static void parse_keeps_order(void **state) {
        (void) state;

        /* A tensor split follows the mask order, so "1,0" must stay 1,0. */
        assert_parses("1,0", &inv, (const int[]) { 1, 0 }, 2);
        assert_parses("3,0,2,1", &inv, (const int[]) { 3, 0, 2, 1 }, 4);
}

static void parse_none(void **state) {
        pd_devmask m = { .count = 7 };
        (void) state;

        assert_int_equal(pd_devmask_parse("none", &inv, &m, NULL), 0);
        assert_true(m.none);
        assert_int_equal(m.count, 0);

        m = (pd_devmask) { .count = 7 };
        assert_int_equal(pd_devmask_parse(" NONE ", NULL, &m, NULL), 0);
        assert_true(m.none);
        assert_int_equal(m.count, 0);
}

static void parse_rejects_none_with_devices(void **state) {
        (void) state;

        assert_rejects("none,0", &inv, PD_E_INVALID,
                       "none cannot be combined with devices in device mask \"none,0\"");
        assert_rejects("0, none", &inv, PD_E_INVALID,
                       "none cannot be combined with devices in device mask \"0, none\"");
        assert_rejects("none,none", NULL, PD_E_INVALID,
                       "none cannot be combined with devices in device mask \"none,none\"");
}

static void parse_rejects_empty_mask(void **state) {
        (void) state;

        assert_rejects("", &inv, PD_E_INVALID, "empty device mask");
        assert_rejects("   ", NULL, PD_E_INVALID, "empty device mask");
}

static void parse_rejects_empty_entry(void **state) {
        (void) state;

        assert_rejects("0,,1", &inv, PD_E_INVALID, "empty entry 2 in device mask \"0,,1\"");
        assert_rejects("0, ,1", &inv, PD_E_INVALID, "empty entry 2 in device mask \"0, ,1\"");
        assert_rejects(",0", &inv, PD_E_INVALID, "empty entry 1 in device mask \",0\"");
}

static void parse_rejects_trailing_comma(void **state) {
        (void) state;

        assert_rejects("0,1,", &inv, PD_E_INVALID, "empty entry 3 in device mask \"0,1,\"");
}

static void parse_rejects_duplicate(void **state) {
        (void) state;

        assert_rejects("0,0", &inv, PD_E_INVALID, "device 0 is listed twice (again as 0)");
        assert_rejects("0,GPU0", &inv, PD_E_INVALID, "device 0 is listed twice (again as GPU0)");
        assert_rejects("3," UUID3, &inv, PD_E_INVALID,
                       "device 3 is listed twice (again as " UUID3 ")");
        assert_rejects("5,gpu5", NULL, PD_E_INVALID, "device 5 is listed twice (again as gpu5)");
}

static void parse_rejects_unknown_index(void **state) {
        (void) state;

        assert_rejects("GPU7", &inv, PD_E_NOT_FOUND, "GPU7 is not a known device");
        assert_rejects("0,4", &inv, PD_E_NOT_FOUND, "4 is not a known device");
}

static void parse_rejects_unknown_uuid(void **state) {
        (void) state;

        assert_rejects("0,GPU-00000000-0000-0000-0000-000000000000", &inv, PD_E_NOT_FOUND,
                       "GPU-00000000-0000-0000-0000-000000000000 is not a known device");
        assert_rejects("GPU-8f2c1a4e", &inv, PD_E_NOT_FOUND, "GPU-8f2c1a4e is not a known device");
}

static void parse_rejects_non_device_tokens(void **state) {
        static const char *const bad[] = {
                "abc", "-1", "+1", "1.5", "0x1", "GPU", "GPU 1", "GPUx", "1e3", "0 1",
        };
        (void) state;

        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char want[PD_ERROR_MAX];

                snprintf(want, sizeof want,
                         "%s is not a device (expected an index, GPU<n>, GPU-<uuid> or none)",
                         bad[i]);
                assert_rejects(bad[i], &inv, PD_E_INVALID, want);
                assert_rejects(bad[i], NULL, PD_E_INVALID, want);
        }
}

static void parse_rejects_overflow(void **state) {
        (void) state;

        assert_rejects("99999999999999999999", &inv, PD_E_INVALID,
                       "99999999999999999999 is out of range");
        assert_rejects("GPU2147483648", &inv, PD_E_INVALID, "GPU2147483648 is out of range");
        assert_rejects("99999999999999999999", NULL, PD_E_INVALID,
                       "99999999999999999999 is out of range (device indexes are 0..63)");
}

static void parse_rejects_too_many_entries(void **state) {
        char text[PD_DEVICES_MAX * 4 + 8] = "";
        size_t len = 0;
        (void) state;

        /* 65 entries, the last one a repeat: the count is what is wrong. */
        for (int i = 0; i < PD_DEVICES_MAX; i++)
                len += (size_t) snprintf(text + len, sizeof text - len, "%d,", i);
        snprintf(text + len, sizeof text - len, "0");

        assert_rejects(text, NULL, PD_E_INVALID, "device mask has 65 entries, at most 64 allowed");
}

static void parse_accepts_max_entries_without_inventory(void **state) {
        char text[PD_DEVICES_MAX * 4] = "";
        size_t len = 0;
        pd_devmask m;
        (void) state;

        for (int i = PD_DEVICES_MAX - 1; i >= 0; i--)
                len += (size_t) snprintf(text + len, sizeof text - len, "%s%d",
                                         len > 0 ? "," : "", i);

        assert_int_equal(pd_devmask_parse(text, NULL, &m, NULL), 0);
        assert_int_equal(m.count, PD_DEVICES_MAX);
        assert_int_equal(m.index[0], PD_DEVICES_MAX - 1);
        assert_int_equal(m.index[PD_DEVICES_MAX - 1], 0);
}

static void parse_uuid_needs_inventory(void **state) {
        (void) state;

        assert_rejects("0," UUID1, NULL, PD_E_INVALID,
                       UUID1 " needs the GPU inventory to resolve");
}

static void parse_without_inventory_checks_syntax_only(void **state) {
        (void) state;

        /* Devices 7 and 63 are absent from the fake node, but no inventory
         * was given. */
        assert_parses("7,GPU63", NULL, (const int[]) { 7, 63 }, 2);
        assert_rejects("GPU64", NULL, PD_E_INVALID,
                       "GPU64 is out of range (device indexes are 0..63)");
}

static void parse_leaves_out_untouched_on_error(void **state) {
        pd_devmask m = { .count = 1, .index = { 2 } };
        (void) state;

        assert_int_equal(pd_devmask_parse("0,9", &inv, &m, NULL), PD_E_NOT_FOUND);
        assert_false(m.none);
        assert_int_equal(m.count, 1);
        assert_int_equal(m.index[0], 2);
}

static void parse_rejects_null_arguments(void **state) {
        pd_devmask m;
        (void) state;

        assert_int_equal(pd_devmask_parse(NULL, &inv, &m, NULL), -EINVAL);
        assert_int_equal(pd_devmask_parse("0", &inv, NULL, NULL), -EINVAL);
}

static void parse_names_long_token_without_overflowing(void **state) {
        char text[600];
        pd_devmask m;
        pd_error err;
        (void) state;

        memset(text, 'x', sizeof text - 1);
        text[sizeof text - 1] = '\0';

        assert_int_equal(pd_devmask_parse(text, &inv, &m, &err), PD_E_INVALID);
        assert_true(strlen(err.msg) < PD_ERROR_MAX);
        assert_true(strstr(err.msg, "xxxx is not a device") != NULL);
}

static void contains_finds_listed_devices_only(void **state) {
        pd_devmask m, none;
        (void) state;

        assert_int_equal(pd_devmask_parse("2,0", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_parse("none", &inv, &none, NULL), 0);

        assert_true(pd_devmask_contains(&m, 0));
        assert_true(pd_devmask_contains(&m, 2));
        assert_false(pd_devmask_contains(&m, 1));
        assert_false(pd_devmask_contains(&none, 0));
        assert_false(pd_devmask_contains(NULL, 0));
}

static void overlaps_reports_shared_device(void **state) {
        pd_devmask a, b;
        int shared = -1;
        (void) state;

        assert_int_equal(pd_devmask_parse("0,1", &inv, &a, NULL), 0);
        assert_int_equal(pd_devmask_parse("1,2", &inv, &b, NULL), 0);

        assert_true(pd_devmask_overlaps(&a, &b, &shared));
        assert_int_equal(shared, 1);
        assert_true(pd_devmask_overlaps(&b, &a, NULL));
}

static void overlaps_reports_first_shared_in_a_order(void **state) {
        pd_devmask a, b;
        int shared = -1;
        (void) state;

        assert_int_equal(pd_devmask_parse("3,2,1", &inv, &a, NULL), 0);
        assert_int_equal(pd_devmask_parse("1,2", &inv, &b, NULL), 0);

        assert_true(pd_devmask_overlaps(&a, &b, &shared));
        assert_int_equal(shared, 2);
}

static void overlaps_false_when_disjoint(void **state) {
        pd_devmask a, b;
        int shared = -1;
        (void) state;

        assert_int_equal(pd_devmask_parse("0,1", &inv, &a, NULL), 0);
        assert_int_equal(pd_devmask_parse("2,3", &inv, &b, NULL), 0);

        assert_false(pd_devmask_overlaps(&a, &b, &shared));
        assert_int_equal(shared, -1);
}

static void overlaps_none_never(void **state) {
        pd_devmask none, all;
        (void) state;

        assert_int_equal(pd_devmask_parse("none", &inv, &none, NULL), 0);
        assert_int_equal(pd_devmask_parse("0,1,2,3", &inv, &all, NULL), 0);

        assert_false(pd_devmask_overlaps(&none, &all, NULL));
        assert_false(pd_devmask_overlaps(&all, &none, NULL));
        assert_false(pd_devmask_overlaps(&none, &none, NULL));
}

static void format_canonical(void **state) {
        pd_devmask m;
        char buf[64];
        (void) state;

        assert_int_equal(pd_devmask_parse("GPU0, " UUID1, &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format(&m, buf, sizeof buf), 3);
        assert_string_equal(buf, "0,1");

        assert_int_equal(pd_devmask_parse("gpu3,2", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format(&m, buf, sizeof buf), 3);
        assert_string_equal(buf, "3,2");

        assert_int_equal(pd_devmask_parse("NONE", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format(&m, buf, sizeof buf), 4);
        assert_string_equal(buf, "none");
}

static void format_round_trips(void **state) {
        pd_devmask m, again;
        char buf[64];
        (void) state;

        assert_int_equal(pd_devmask_parse(UUID3 ", gpu1,0", &inv, &m, NULL), 0);
        assert_true(pd_devmask_format(&m, buf, sizeof buf) > 0);
        assert_int_equal(pd_devmask_parse(buf, &inv, &again, NULL), 0);
        assert_mask(&again, m.index, m.count);
}

static void format_small_buffer_is_enospc(void **state) {
        pd_devmask m;
        char buf[4];
        (void) state;

        assert_int_equal(pd_devmask_parse("0,1,2", &inv, &m, NULL), 0);

        /* "0,1,2" needs 6 bytes; a cut-off "0,1" would name other devices. */
        memset(buf, 'x', sizeof buf);
        assert_int_equal(pd_devmask_format(&m, buf, sizeof buf), -ENOSPC);
        assert_string_equal(buf, "");

        assert_int_equal(pd_devmask_parse("none", &inv, &m, NULL), 0);
        memset(buf, 'x', sizeof buf);
        assert_int_equal(pd_devmask_format(&m, buf, 4), -ENOSPC);
        assert_string_equal(buf, "");
        assert_int_equal(pd_devmask_format(&m, buf, 0), -ENOSPC);
}

static void format_exact_fit(void **state) {
        pd_devmask m;
        char buf[6];
        (void) state;

        assert_int_equal(pd_devmask_parse("0,1,2", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format(&m, buf, sizeof buf), 5);
        assert_string_equal(buf, "0,1,2");
}

static void format_rejects_invalid_mask(void **state) {
        pd_devmask empty = { .count = 0 };
        pd_devmask huge = { .count = PD_DEVICES_MAX + 1 };
        char buf[16];
        (void) state;

        assert_int_equal(pd_devmask_format(NULL, buf, sizeof buf), -EINVAL);
        assert_int_equal(pd_devmask_format(&empty, buf, sizeof buf), -EINVAL);
        assert_int_equal(pd_devmask_format(&huge, buf, sizeof buf), -EINVAL);
}

static void format_visible_none_is_empty(void **state) {
        pd_devmask m;
        char buf[16] = "junk";
        (void) state;

        assert_int_equal(pd_devmask_parse("none", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format_visible(&m, &inv, false, buf, sizeof buf), 0);
        assert_string_equal(buf, "");

        strcpy(buf, "junk");
        assert_int_equal(pd_devmask_format_visible(&m, &inv, true, buf, sizeof buf), 0);
        assert_string_equal(buf, "");
}

static void format_visible_by_index_in_mask_order(void **state) {
        pd_devmask m;
        char buf[16];
        (void) state;

        assert_int_equal(pd_devmask_parse("1,0", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format_visible(&m, &inv, false, buf, sizeof buf), 3);
        assert_string_equal(buf, "1,0");

        /* By index, the inventory is not needed. */
        assert_int_equal(pd_devmask_format_visible(&m, NULL, false, buf, sizeof buf), 3);
        assert_string_equal(buf, "1,0");
}

static void format_visible_by_uuid_in_mask_order(void **state) {
        pd_devmask m;
        char buf[128];
        (void) state;

        assert_int_equal(pd_devmask_parse("3,GPU1", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format_visible(&m, &inv, true, buf, sizeof buf),
                         (int) strlen(UUID3 "," UUID1));
        assert_string_equal(buf, UUID3 "," UUID1);
}

static void format_visible_by_uuid_needs_inventory(void **state) {
        pd_devmask m;
        char buf[128];
        (void) state;

        assert_int_equal(pd_devmask_parse("0", &inv, &m, NULL), 0);
        assert_int_equal(pd_devmask_format_visible(&m, NULL, true, buf, sizeof buf), -EINVAL);
}

static void format_visible_by_uuid_unknown_device_is_enoent(void **state) {
        pd_devmask m;
        char buf[128];
        (void) state;

        /* Parsed without the inventory, so device 9 was never checked. */
        assert_int_equal(pd_devmask_parse("0,9", NULL, &m, NULL), 0);
        assert_int_equal(pd_devmask_format_visible(&m, &inv, true, buf, sizeof buf), -ENOENT);
        assert_string_equal(buf, "");
}

static void format_visible_small_buffer_is_enospc(void **state) {
        pd_devmask m;
        char buf[48];
        (void) state;

        assert_int_equal(pd_devmask_parse("0,1", &inv, &m, NULL), 0);

        /* Room for one UUID but not two. */
        assert_int_equal(pd_devmask_format_visible(&m, &inv, true, buf, sizeof buf), -ENOSPC);
        assert_string_equal(buf, "");
        assert_int_equal(pd_devmask_format_visible(&m, &inv, false, buf, 3), -ENOSPC);
        assert_string_equal(buf, "");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(inventory_find_by_index),
                cmocka_unit_test(inventory_find_uuid_ignores_case),
                cmocka_unit_test(parse_indexes),
                cmocka_unit_test(parse_gpu_prefix_any_case),
                cmocka_unit_test(parse_uuid_any_case),
                cmocka_unit_test(parse_mixture),
                cmocka_unit_test(parse_spaces_around_commas),
                cmocka_unit_test(parse_keeps_order),
                cmocka_unit_test(parse_none),
                cmocka_unit_test(parse_rejects_none_with_devices),
                cmocka_unit_test(parse_rejects_empty_mask),
                cmocka_unit_test(parse_rejects_empty_entry),
                cmocka_unit_test(parse_rejects_trailing_comma),
                cmocka_unit_test(parse_rejects_duplicate),
                cmocka_unit_test(parse_rejects_unknown_index),
                cmocka_unit_test(parse_rejects_unknown_uuid),
                cmocka_unit_test(parse_rejects_non_device_tokens),
                cmocka_unit_test(parse_rejects_overflow),
                cmocka_unit_test(parse_rejects_too_many_entries),
                cmocka_unit_test(parse_accepts_max_entries_without_inventory),
                cmocka_unit_test(parse_uuid_needs_inventory),
                cmocka_unit_test(parse_without_inventory_checks_syntax_only),
                cmocka_unit_test(parse_leaves_out_untouched_on_error),
                cmocka_unit_test(parse_rejects_null_arguments),
                cmocka_unit_test(parse_names_long_token_without_overflowing),
                cmocka_unit_test(contains_finds_listed_devices_only),
                cmocka_unit_test(overlaps_reports_shared_device),
                cmocka_unit_test(overlaps_reports_first_shared_in_a_order),
                cmocka_unit_test(overlaps_false_when_disjoint),
                cmocka_unit_test(overlaps_none_never),
                cmocka_unit_test(format_canonical),
                cmocka_unit_test(format_round_trips),
                cmocka_unit_test(format_small_buffer_is_enospc),
                cmocka_unit_test(format_exact_fit),
                cmocka_unit_test(format_rejects_invalid_mask),
                cmocka_unit_test(format_visible_none_is_empty),
                cmocka_unit_test(format_visible_by_index_in_mask_order),
                cmocka_unit_test(format_visible_by_uuid_in_mask_order),
                cmocka_unit_test(format_visible_by_uuid_needs_inventory),
                cmocka_unit_test(format_visible_by_uuid_unknown_device_is_enoent),
                cmocka_unit_test(format_visible_small_buffer_is_enospc),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
