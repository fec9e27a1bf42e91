/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool-services/conf/config.h"
#include "pool-services/placement/inventory.h"

#define GIB 1073741824ULL

/* Two GPUs as the fake backend would have them, out of order. */
static const ps_gpu_device two[] = {
        { .index = 1, .uuid = "GPU-bbbb", .name = "Small", .cc_major = 8, .cc_minor = 6,
          .vram_total_bytes = 12 * GIB, .vram_free_bytes = 12 * GIB },
        { .index = 0, .uuid = "GPU-aaaa", .name = "Big", .pci_bus_id = "00000000:01:00.0",
          .cc_major = 8, .cc_minor = 9, .vram_total_bytes = 24 * GIB,
          .vram_free_bytes = 24 * GIB },
};

static ps_inventory *two_gpus(void) {
        ps_inventory *inv = NULL;
        char err[256];

        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_FAKE, two, 2, &inv, err, sizeof(err)), 0);
        return inv;
}

static void test_devices_in_index_order(void **state) {
        ps_inventory *inv = two_gpus();

        (void) state;
        assert_int_equal(ps_inventory_backend(inv), PS_GPU_BACKEND_FAKE);
        assert_int_equal(ps_inventory_count(inv), 2);
        assert_int_equal(ps_inventory_device(inv, 0)->index, 0);
        assert_string_equal(ps_inventory_device(inv, 0)->name, "Big");
        assert_int_equal(ps_inventory_device(inv, 1)->index, 1);
        assert_null(ps_inventory_device(inv, 2));
        assert_string_equal(ps_inventory_find(inv, 1)->uuid, "GPU-bbbb");
        assert_null(ps_inventory_find(inv, 2));
        ps_inventory_free(inv);
        assert_null(ps_inventory_free(NULL));
}

static void test_to_json(void **state) {
        ps_inventory *inv = two_gpus();
        json_t *got = ps_inventory_to_json(inv), *want;
        json_error_t jerr;

        (void) state;
        want = json_loads("{\"backend\": \"fake\", \"status\": \"ok\", \"reason\": null, \"devices\": ["
                          "{\"index\": 0, \"uuid\": \"GPU-aaaa\", \"name\": \"Big\","
                          " \"pci_bus_id\": \"00000000:01:00.0\", \"compute_capability\": \"8.9\","
                          " \"vram_total_bytes\": 25769803776, \"vram_free_bytes\": 25769803776},"
                          "{\"index\": 1, \"uuid\": \"GPU-bbbb\", \"name\": \"Small\","
                          " \"pci_bus_id\": null, \"compute_capability\": \"8.6\","
                          " \"vram_total_bytes\": 12884901888, \"vram_free_bytes\": 12884901888}]}",
                          0, &jerr);
        assert_non_null(want);
        if (!json_equal(got, want)) {
                char text[1024];

                size_t n = json_dumpb(got, text, sizeof(text) - 1, JSON_SORT_KEYS);

                text[n < sizeof(text) ? n : sizeof(text) - 1] = '\0';
                fail_msg("got %s", text);
        }
        json_decref(got);
        json_decref(want);
        ps_inventory_free(inv);
}

static ps_config *config_with(ps_gpu_backend backend) {
        ps_config *cfg = ps_config_new();

        assert_non_null(cfg);
        cfg->gpu.backend = backend;
        return cfg;
}

static void test_backends_from_config(void **state) {
        ps_inventory *inv = NULL;
        ps_config *cfg;
        json_t *j;
        char err[256];

        (void) state;
        /* LD_LIBRARY_PATH holds the fake libcuda.so.1; no device by default */
        unsetenv("FAKE_CUDA_DEVICES");
        /* auto: no devices, and says why */
        cfg = config_with(PS_GPU_BACKEND_AUTO);
        assert_int_equal(ps_inventory_from_config(&cfg->gpu, &inv, err, sizeof(err)), 0);
        assert_int_equal(ps_inventory_backend(inv), PS_GPU_BACKEND_NONE);
        assert_int_equal(ps_inventory_count(inv), 0);
        assert_string_equal(ps_inventory_problem(inv), "no CUDA: the driver sees no CUDA device");
        j = ps_inventory_to_json(inv);
        assert_string_equal(json_string_value(json_object_get(j, "backend")), "none");
        assert_string_equal(json_string_value(json_object_get(j, "status")), "no_devices");
        assert_string_equal(json_string_value(json_object_get(j, "reason")),
                            "no CUDA: the driver sees no CUDA device");
        assert_int_equal(json_array_size(json_object_get(j, "devices")), 0);
        json_decref(j);
        inv = ps_inventory_free(inv);
        ps_config_free(cfg);

        /* cuda: an error */
        cfg = config_with(PS_GPU_BACKEND_CUDA);
        assert_int_equal(ps_inventory_from_config(&cfg->gpu, &inv, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "backend \"cuda\": the driver sees no CUDA device");
        assert_null(inv);
        ps_config_free(cfg);

        /* none: nothing, no probe, no problem */
        cfg = config_with(PS_GPU_BACKEND_NONE);
        assert_int_equal(ps_inventory_from_config(&cfg->gpu, &inv, err, sizeof(err)), 0);
        assert_int_equal(ps_inventory_backend(inv), PS_GPU_BACKEND_NONE);
        assert_null(ps_inventory_problem(inv));
        inv = ps_inventory_free(inv);
        ps_config_free(cfg);

        /* auto and cuda with devices */
        setenv("FAKE_CUDA_DEVICES", "2", 1);
        for (int b = PS_GPU_BACKEND_AUTO; b <= PS_GPU_BACKEND_CUDA; b++) {
                cfg = config_with((ps_gpu_backend) b);
                assert_int_equal(ps_inventory_from_config(&cfg->gpu, &inv, err, sizeof(err)), 0);
                assert_int_equal(ps_inventory_backend(inv), PS_GPU_BACKEND_CUDA);
                assert_int_equal(ps_inventory_count(inv), 2);
                assert_string_equal(ps_inventory_device(inv, 1)->name, "Fake GPU 1");
                assert_null(ps_inventory_problem(inv));
                inv = ps_inventory_free(inv);
                ps_config_free(cfg);
        }
        unsetenv("FAKE_CUDA_DEVICES");

        /* fake: the configured devices (a config being loaded passes itself) */
        cfg = config_with(PS_GPU_BACKEND_FAKE);
        cfg->gpu.devices = (ps_gpu_device *) two;
        cfg->gpu.n_devices = 2;
        assert_int_equal(ps_inventory_from_config(&cfg->gpu, &inv, err, sizeof(err)), 0);
        cfg->gpu.devices = NULL;
        cfg->gpu.n_devices = 0;
        assert_int_equal(ps_inventory_backend(inv), PS_GPU_BACKEND_FAKE);
        assert_int_equal(ps_inventory_count(inv), 2);
        ps_inventory_free(inv);
        ps_config_free(cfg);
}

static void test_apply_probe(void **state) {
        ps_gpu_device now[2];
        ps_cuda_result ok = { .status = PS_CUDA_OK, .devices = now, .n_devices = 2 };
        ps_cuda_result bad = { .status = PS_CUDA_INIT_FAILED,
                               .message = "cuInit failed: CUDA_ERROR_UNKNOWN (999)" };
        ps_inventory_change c;
        ps_inventory *inv = NULL;
        char err[256];

        (void) state;
        memcpy(now, two, sizeof(two));
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_CUDA, two, 2, &inv, err, sizeof(err)), 0);

        /* the same devices: free VRAM follows */
        now[0].vram_free_bytes = 3 * GIB;   /* device 1 */
        assert_int_equal(ps_inventory_apply_probe(inv, &ok, &c), 0);
        assert_false(c.failed || c.recovered || c.devices_changed || c.was_failing);
        assert_int_equal(ps_inventory_find(inv, 1)->vram_free_bytes, 3 * GIB);
        assert_int_equal(ps_inventory_find(inv, 0)->vram_free_bytes, 24 * GIB);

        /* the driver fails after it worked: once */
        assert_int_equal(ps_inventory_apply_probe(inv, &bad, &c), 0);
        assert_true(c.failed);
        assert_int_equal(ps_inventory_count(inv), 2);
        assert_string_equal(ps_inventory_problem(inv),
                            "the CUDA probe failed: cuInit failed: CUDA_ERROR_UNKNOWN (999)");
        assert_int_equal(ps_inventory_apply_probe(inv, &bad, &c), 0);
        assert_false(c.failed);
        assert_true(c.was_failing);

        /* and recovers */
        assert_int_equal(ps_inventory_apply_probe(inv, &ok, &c), 0);
        assert_true(c.recovered);
        assert_null(ps_inventory_problem(inv));

        /* a device vanished */
        ok.n_devices = 1;
        assert_int_equal(ps_inventory_apply_probe(inv, &ok, &c), 0);
        assert_true(c.devices_changed);
        assert_int_equal(ps_inventory_count(inv), 1);
        assert_non_null(ps_inventory_find(inv, 1));
        assert_null(ps_inventory_find(inv, 0));
        ps_inventory_free(inv);
}

static void test_new_rejects_bad_devices(void **state) {
        ps_gpu_device d[2] = { { .index = 3 }, { .index = 3 } };
        ps_inventory *inv = NULL;
        char err[256];

        (void) state;
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_FAKE, d, 2, &inv, err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "device 3 is listed twice");
        assert_null(inv);
        d[1].index = 64;
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_FAKE, d, 2, &inv, err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "device index 64 is out of range (0..63)");
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_MAX, NULL, 0, &inv, err, sizeof(err)),
                         -EINVAL);
        /* empty is fine */
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_NONE, NULL, 0, &inv, err, sizeof(err)), 0);
        assert_int_equal(ps_inventory_count(inv), 0);
        ps_inventory_free(inv);
}

static void test_masks(void **state) {
        ps_inventory *inv = two_gpus();
        ps_device_mask m, n;
        char buf[64], err[256];
        int shared = -1;

        (void) state;
        assert_int_equal(ps_inventory_parse_mask(inv, "GPU1, GPU-AAAA", &m, err, sizeof(err)), 0);
        assert_false(m.none);
        assert_int_equal(m.count, 2);
        assert_int_equal(m.index[0], 1);
        assert_int_equal(m.index[1], 0);
        assert_int_equal(ps_device_mask_format(&m, buf, sizeof(buf)), 3);
        assert_string_equal(buf, "1,0");
        assert_int_equal(ps_device_mask_format_visible(&m, buf, sizeof(buf)), 3);
        assert_string_equal(buf, "1,0");
        assert_int_equal(ps_device_mask_format(&m, buf, 2), -ENOSPC);

        assert_int_equal(ps_inventory_parse_mask(inv, "0", &n, err, sizeof(err)), 0);
        assert_true(ps_device_mask_overlaps(&m, &n, &shared));
        assert_int_equal(shared, 0);

        assert_int_equal(ps_inventory_parse_mask(inv, "none", &n, err, sizeof(err)), 0);
        assert_true(n.none);
        assert_false(ps_device_mask_overlaps(&m, &n, NULL));
        assert_int_equal(ps_device_mask_format(&n, buf, sizeof(buf)), 4);
        assert_string_equal(buf, "none");
        assert_int_equal(ps_device_mask_format_visible(&n, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "");

        assert_int_equal(ps_inventory_parse_mask(inv, "GPU7", &n, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "GPU7 is not a known device");
        assert_int_equal(ps_inventory_parse_mask(inv, "", &n, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "empty device mask");
        assert_int_equal(ps_inventory_parse_mask(inv, "0,none", &n, err, sizeof(err)), PS_E_INVALID);

        /* without an inventory: syntax only */
        assert_int_equal(ps_inventory_parse_mask(NULL, "7", &n, err, sizeof(err)), 0);
        assert_int_equal(n.index[0], 7);
        ps_inventory_free(inv);
}

static void test_split_plans(void **state) {
        ps_inventory *inv = two_gpus();
        ps_device_mask m, none = { .none = true };
        char buf[64], err[256];

        (void) state;
        assert_int_equal(ps_inventory_parse_mask(inv, "0,1", &m, err, sizeof(err)), 0);
        assert_int_equal(ps_inventory_plan_split(inv, &m, "auto", 0, 0, buf, sizeof(buf),
                                                 err, sizeof(err)), 0);
        assert_string_equal(buf, "0.6667,0.3333");
        /* headroom comes off every device: 20 : 8 */
        assert_int_equal(ps_inventory_plan_split(inv, &m, "auto", 4 * GIB, 0, buf, sizeof(buf),
                                                 err, sizeof(err)), 0);
        assert_string_equal(buf, "0.7143,0.2857");
        /* explicit ratios, renormalised */
        assert_int_equal(ps_inventory_plan_split(inv, &m, "0.75,0.25", 0, 0, buf, sizeof(buf),
                                                 err, sizeof(err)), 0);
        assert_string_equal(buf, "0.75,0.25");
        assert_int_equal(ps_inventory_plan_split(inv, &m, "1", 0, 0, buf, sizeof(buf),
                                                 err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "mask has 2 devices, split gives 1");
        assert_int_equal(ps_inventory_plan_split(inv, &none, "auto", 0, 0, buf, sizeof(buf),
                                                 err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "a pool without devices cannot be split");
        /* 40 GiB do not fit in 36 */
        assert_int_equal(ps_inventory_plan_split(inv, &m, "auto", 0, 40 * GIB, buf, sizeof(buf),
                                                 err, sizeof(err)), PS_E_INVALID);
        assert_true(strlen(err) > 0);
        /* 36 GiB just fit */
        assert_int_equal(ps_inventory_plan_split(inv, &m, "auto", 0, 36 * GIB, buf, sizeof(buf),
                                                 err, sizeof(err)), 0);
        ps_inventory_free(inv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_devices_in_index_order),
                cmocka_unit_test(test_to_json),
                cmocka_unit_test(test_backends_from_config),
                cmocka_unit_test(test_apply_probe),
                cmocka_unit_test(test_new_rejects_bad_devices),
                cmocka_unit_test(test_masks),
                cmocka_unit_test(test_split_plans),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
