/* SPDX-License-Identifier: MIT */
/*
 * CUDA discovery through the real dlopen path: the fake libcuda.so.1 from
 * tests/helpers is found through LD_LIBRARY_PATH (set by meson), and its
 * answers are chosen through the environment, which each probe child
 * inherits. NVML is switched off so that a real one on the machine cannot
 * change the answers.
 *
 *   test-integration-cuda              the full fake library
 *   test-integration-cuda --old-driver the one without cuDeviceTotalMem_v2
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "pool-services/placement/cuda.h"

#define MIB (1024ULL * 1024)
/* Generous: only the hang test waits this long, and it must. */
#define HANG_TIMEOUT_MS 1500

static const char *const fake_vars[] = {
        "FAKE_CUDA_DEVICES", "FAKE_CUDA_NAMES", "FAKE_CUDA_TOTAL_MIB", "FAKE_CUDA_FREE_MIB",
        "FAKE_CUDA_CC", "FAKE_CUDA_INIT_ERROR", "FAKE_CUDA_HANG", "FAKE_CUDA_CRASH",
        "FAKE_CUDA_FILE",
};

static int reset_env(void **state) {
        (void) state;
        for (size_t i = 0; i < sizeof(fake_vars) / sizeof(fake_vars[0]); i++)
                unsetenv(fake_vars[i]);
        return 0;
}

static const ps_cuda_options no_nvml = { .nvml_library = "", .timeout_ms = 20000 };

static ps_cuda_result discover(const ps_cuda_options *o) {
        ps_cuda_result r;

        assert_int_equal(ps_cuda_discover(o, &r), 0);
        return r;
}

static void assert_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle))
                fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

static void test_devices_found(void **state) {
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "2", 1);
        setenv("FAKE_CUDA_NAMES", "NVIDIA Fake 80GB,NVIDIA Fake 24GB", 1);
        setenv("FAKE_CUDA_TOTAL_MIB", "81920,24576", 1);
        setenv("FAKE_CUDA_FREE_MIB", "80000,20000", 1);
        setenv("FAKE_CUDA_CC", "9.0", 1);
        r = discover(&no_nvml);
        assert_int_equal(r.status, PS_CUDA_OK);
        assert_string_equal(r.message, "");
        assert_int_equal(r.n_devices, 2);
        assert_int_equal(r.driver_version, 12040);
        assert_string_equal(r.free_source, "cuda");

        assert_int_equal(r.devices[0].index, 0);
        assert_string_equal(r.devices[0].name, "NVIDIA Fake 80GB");
        assert_string_equal(r.devices[0].uuid, "GPU-face0000-1234-5678-9abc-def000000000");
        assert_string_equal(r.devices[0].pci_bus_id, "0000:01:00.0");
        assert_int_equal(r.devices[0].cc_major, 9);
        assert_int_equal(r.devices[0].cc_minor, 0);
        assert_int_equal(r.devices[0].vram_total_bytes, 81920 * MIB);
        assert_int_equal(r.devices[0].vram_free_bytes, 80000 * MIB);

        assert_int_equal(r.devices[1].index, 1);
        assert_string_equal(r.devices[1].name, "NVIDIA Fake 24GB");
        assert_string_equal(r.devices[1].uuid, "GPU-face0000-1234-5678-9abc-def000000001");
        assert_string_equal(r.devices[1].pci_bus_id, "0000:02:00.0");
        assert_int_equal(r.devices[1].vram_total_bytes, 24576 * MIB);
        assert_int_equal(r.devices[1].vram_free_bytes, 20000 * MIB);
        ps_cuda_result_clear(&r);
        assert_null(r.devices);
}

static void test_no_devices(void **state) {
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "0", 1);
        r = discover(&no_nvml);
        assert_int_equal(r.status, PS_CUDA_NO_DEVICES);
        assert_int_equal(r.n_devices, 0);
        assert_contains(r.message, "no CUDA device");
        ps_cuda_result_clear(&r);
}

static void test_init_no_device_error_is_no_devices(void **state) {
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_INIT_ERROR", "100", 1);
        r = discover(&no_nvml);
        assert_int_equal(r.status, PS_CUDA_NO_DEVICES);
        assert_contains(r.message, "CUDA_ERROR_NO_DEVICE (100)");
        ps_cuda_result_clear(&r);
}

static void test_init_failing_names_the_error(void **state) {
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_INIT_ERROR", "999", 1);
        r = discover(&no_nvml);
        assert_int_equal(r.status, PS_CUDA_INIT_FAILED);
        assert_string_equal(r.message, "cuInit failed: CUDA_ERROR_UNKNOWN (999)");
        assert_int_equal(r.n_devices, 0);
        ps_cuda_result_clear(&r);
}

static void test_version_mismatch(void **state) {
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_INIT_ERROR", "803", 1);
        r = discover(&no_nvml);
        assert_int_equal(r.status, PS_CUDA_VERSION_MISMATCH);
        assert_contains(r.message, "cuInit failed: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (803)");
        assert_contains(r.message, "different versions");
        ps_cuda_result_clear(&r);
}

static void test_library_not_found(void **state) {
        ps_cuda_options o = no_nvml;
        ps_cuda_result r;

        (void) state;
        o.library = "libcuda-not-installed.so.1";
        r = discover(&o);
        assert_int_equal(r.status, PS_CUDA_NO_LIBRARY);
        assert_contains(r.message, "libcuda-not-installed.so.1 not found");
        ps_cuda_result_clear(&r);
}

static void test_hang_times_out(void **state) {
        ps_cuda_options o = no_nvml;
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_HANG", "init", 1);
        o.timeout_ms = HANG_TIMEOUT_MS;
        r = discover(&o);
        assert_int_equal(r.status, PS_CUDA_TIMEOUT);
        assert_string_equal(r.message, "the CUDA probe did not answer within 1500 ms and was "
                            "killed: the driver may be hung");
        ps_cuda_result_clear(&r);
}

static void test_crash_names_the_signal(void **state) {
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_CRASH", "init", 1);
        r = discover(&no_nvml);
        assert_int_equal(r.status, PS_CUDA_CRASHED);
        assert_string_equal(r.message, "the CUDA probe crashed: killed by SIGABRT");
        ps_cuda_result_clear(&r);
}

/* ---- on a loop that keeps running ---------------------------------------- */

typedef struct loop_fx {
        struct event_base *base;
        int ticks_before_result;
        bool have_result;
        ps_cuda_status status;
} loop_fx;

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        loop_fx *f = userdata;

        (void) fd;
        (void) what;
        if (!f->have_result)
                f->ticks_before_result++;
}

static void on_result(const ps_cuda_result *r, void *userdata) {
        loop_fx *f = userdata;

        f->have_result = true;
        f->status = r->status;
        event_base_loopbreak(f->base);
}

static void test_hanging_probe_does_not_block_the_loop(void **state) {
        loop_fx f = { .base = event_base_new() };
        ps_cuda_options o = no_nvml;
        ps_cuda_probe *p = NULL;
        struct event *tick;
        struct timeval every = { 0, 20000 };

        (void) state;
        assert_non_null(f.base);
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_HANG", "init", 1);
        o.timeout_ms = HANG_TIMEOUT_MS;
        tick = event_new(f.base, -1, EV_PERSIST, on_tick, &f);
        assert_int_equal(event_add(tick, &every), 0);
        assert_int_equal(ps_cuda_probe_start(f.base, &o, on_result, &f, &p), 0);
        while (!f.have_result)
                assert_true(event_base_dispatch(f.base) >= 0);
        assert_int_equal(f.status, PS_CUDA_TIMEOUT);
        /* the loop ran its timer all along while the child hung */
        assert_true(f.ticks_before_result > 0);
        ps_cuda_probe_free(p);
        event_free(tick);
        event_base_free(f.base);
}

static void test_free_kills_a_running_probe(void **state) {
        struct event_base *base = event_base_new();
        loop_fx f = { .base = base };
        ps_cuda_probe *p = NULL;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_HANG", "init", 1);
        assert_int_equal(ps_cuda_probe_start(base, &no_nvml, on_result, &f, &p), 0);
        assert_null(ps_cuda_probe_free(p));
        /* The killed child is reaped from the loop once it is gone (never
         * waited for); then nothing is left to run, and no callback came. */
        for (int i = 0; i < 2000 && event_base_loop(base, EVLOOP_NONBLOCK) == 0; i++)
                usleep(10 * 1000);
        assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
        assert_false(f.have_result);
        event_base_free(base);
}

static void test_missing_symbol_is_named(void **state) {
        ps_cuda_result r;

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        r = discover(&no_nvml);
        assert_int_equal(r.status, PS_CUDA_MISSING_SYMBOL);
        assert_string_equal(r.message, "libcuda.so.1 has no symbol cuDeviceTotalMem_v2: the "
                            "driver is older than this program needs");
        ps_cuda_result_clear(&r);
}

int main(int argc, char *argv[]) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_devices_found, reset_env),
                cmocka_unit_test_setup(test_no_devices, reset_env),
                cmocka_unit_test_setup(test_init_no_device_error_is_no_devices, reset_env),
                cmocka_unit_test_setup(test_init_failing_names_the_error, reset_env),
                cmocka_unit_test_setup(test_version_mismatch, reset_env),
                cmocka_unit_test_setup(test_library_not_found, reset_env),
                cmocka_unit_test_setup(test_hang_times_out, reset_env),
                cmocka_unit_test_setup(test_crash_names_the_signal, reset_env),
                cmocka_unit_test_setup(test_hanging_probe_does_not_block_the_loop, reset_env),
                cmocka_unit_test_setup(test_free_kills_a_running_probe, reset_env),
        };
        const struct CMUnitTest old_driver[] = {
                cmocka_unit_test_setup(test_missing_symbol_is_named, reset_env),
        };

        if (argc > 1 && strcmp(argv[1], "--old-driver") == 0)
                return cmocka_run_group_tests_name("cuda, old driver", old_driver, NULL, NULL);
        return cmocka_run_group_tests_name("cuda", tests, NULL, NULL);
}
