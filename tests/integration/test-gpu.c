/* SPDX-License-Identifier: MIT */
/*
 * GPUs and supervision together: a preflight refusal fails a start like a
 * spawn failure and is retried with backoff; the CUDA probe (the fake
 * libcuda.so.1 through LD_LIBRARY_PATH, its answers in FAKE_CUDA_FILE)
 * re-sampled on the loop; a probe that fails after it worked resets the
 * replicas on the GPUs, which come back once it works again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool-services/observe/status-json.h"
#include "pool-services/observe/gpu-monitor.h"
#include "pool-services/placement/preflight.h"
#include "harness.h"

#define MIB (1024ULL * 1024)

typedef struct fx {
        th_node node;
        char cuda_file[PATH_MAX];
        ps_inventory *inv;
        unsigned preflight_calls;
} fx;

static bool run_until(fx *f, th_cond *cond, const void *arg) {
        return th_loop_until(f->node.base, cond, f, arg, TH_WAIT_MS);
}

static void write_cuda_file(fx *f, const char *line) {
        FILE *out = fopen(f->cuda_file, "w");

        assert_non_null(out);
        fprintf(out, "%s\n", line);
        fclose(out);
}

/* The node's devices, checked like the daemon's hook does. */
static int preflight(const ps_engine_spec *spec, void *userdata, char *err, size_t errlen) {
        fx *f = userdata;
        ps_preflight_node node = { .inventory = f->inv, .require_gpu = true };
        ps_preflight_request req = { .pool_id = spec->pool_id, .device_mask = spec->device_mask,
                                     .vram_required_bytes = 8000 * MIB };

        f->preflight_calls++;
        return ps_preflight_check(&node, &req, err, errlen);
}

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));
        ps_cuda_options o = { .nvml_library = "" };
        ps_cuda_result res;
        char err[256];

        assert_non_null(f);
        th_node_init(&f->node, &(th_node_options) { .name = "gpu", .seed = 7,
                                                    .preflight = preflight, .preflight_userdata = f });
        snprintf(f->cuda_file, sizeof(f->cuda_file), "%s/cuda", f->node.dir);
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_TOTAL_MIB", "24576", 1);
        setenv("FAKE_CUDA_FILE", f->cuda_file, 1);
        write_cuda_file(f, "20000");
        assert_int_equal(ps_cuda_discover(&o, &res), 0);
        assert_int_equal(res.status, PS_CUDA_OK);
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_CUDA, res.devices, res.n_devices,
                                          &f->inv, err, sizeof(err)), 0);
        ps_cuda_result_clear(&res);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        th_node_stop_all(&f->node);
        th_node_clear(&f->node);
        ps_inventory_free(f->inv);
        free(f);
        return 0;
}

/* Replica r0 of pool_id: the fake engine with one slot on device 0. */
static ps_replica *add_fake_engine(fx *f, const char *pool_id) {
        return th_add(&f->node, th_fake_spec(pool_id, "r0", 0, 1, NULL),
                      th_policy("{\"health\": {\"timeout_ms\": 500, \"startup_timeout_ms\": 10000},"
                                " \"backoff\": {\"max_ms\": 200}}"));
}

static bool in_state(void *fixture, const void *arg) {
        fx *f = fixture;
        ps_replica *r = ps_registry_find(f->node.reg, "p", "r0");

        return strcmp(ps_replica_state(r), arg) == 0;
}

static bool free_is(void *fixture, const void *arg) {
        fx *f = fixture;

        return ps_inventory_find(f->inv, 0)->vram_free_bytes == *(const uint64_t *) arg;
}

static bool calls_at_least(void *fixture, const void *arg) {
        fx *f = fixture;

        return f->preflight_calls >= *(const unsigned *) arg;
}

static const char *last_error(fx *f) {
        static char buf[512];
        json_t *snap = ps_replica_snapshot(ps_registry_find(f->node.reg, "p", "r0"));
        const char *e = json_string_value(json_object_get(snap, "last_error"));

        snprintf(buf, sizeof(buf), "%s", e ? e : "");
        json_decref(snap);
        return buf;
}

static json_int_t driver_resets(fx *f) {
        json_t *snap = ps_replica_snapshot(ps_registry_find(f->node.reg, "p", "r0"));
        json_int_t n = json_integer_value(json_object_get(snap, "driver_resets"));

        json_decref(snap);
        return n;
}

static void test_preflight_refusal_fails_the_start_and_retries(void **state) {
        fx *f = *state;
        ps_replica *r;
        unsigned want = 3;

        /* 4000 MiB free against 8000 MiB needed */
        write_cuda_file(f, "4000");
        {
                ps_cuda_options o = { .nvml_library = "" };
                ps_cuda_result res;

                assert_int_equal(ps_cuda_discover(&o, &res), 0);
                assert_int_equal(ps_inventory_apply_probe(f->inv, &res, NULL), 0);
                ps_cuda_result_clear(&res);
        }
        r = add_fake_engine(f, "p");
        th_preload(&f->node, r);
        assert_false(f->node.done_ok);
        if (!strstr(f->node.done_text, "insufficient VRAM: need 7.8 GiB, free 3.9 GiB on GPU0"))
                fail_msg("preload answer: %s", f->node.done_text);
        assert_string_equal(last_error(f), "preflight failed: insufficient VRAM: need 7.8 GiB, "
                            "free 3.9 GiB on GPU0");
        assert_false(ps_replica_ready(r));
        assert_int_equal(ps_replica_pid(r), 0);   /* nothing was spawned */
        /* the restart policy retries, and preflight is asked again each time */
        run_until(f, calls_at_least, &want);
        assert_true(f->preflight_calls >= want);
        assert_false(ps_replica_ready(r));
        assert_int_equal(ps_replica_pid(r), 0);
}

static void test_driver_failure_resets_replicas_until_it_works_again(void **state) {
        fx *f = *state;
        ps_cuda_options o = { .nvml_library = "", .timeout_ms = 10000 };
        ps_gpu_monitor *m = ps_gpu_monitor_new(f->node.base, f->inv, f->node.reg, &o, 0,
                                               (ps_event_sink) { .fn = NULL });
        ps_replica *r = add_fake_engine(f, "p");

        assert_non_null(m);
        th_preload(&f->node, r);
        if (!f->node.done_ok)
                fail_msg("preload: %s", f->node.done_text);
        assert_true(ps_replica_ready(r));
        assert_int_equal(driver_resets(f), 0);

        /* a sample on the loop: free VRAM follows */
        write_cuda_file(f, "12000");
        assert_int_equal(ps_gpu_monitor_sample_now(m), 0);
        run_until(f, free_is, &(uint64_t) { 12000 * MIB });
        assert_int_equal(ps_inventory_find(f->inv, 0)->vram_free_bytes, 12000 * MIB);

        /* the driver breaks */
        write_cuda_file(f, "error 999");
        assert_int_equal(ps_gpu_monitor_sample_now(m), 0);
        run_until(f, in_state, (char []) { "backoff" });
        assert_false(ps_replica_ready(r));
        assert_int_equal(driver_resets(f), 1);
        assert_non_null(ps_inventory_problem(f->inv));
        /* restarts are refused while it is broken */
        f->preflight_calls = 0;
        {
                unsigned want = 1;

                run_until(f, calls_at_least, &want);
        }
        assert_false(ps_replica_ready(r));
        if (!strstr(last_error(f), "GPU-only enforcement: pool p needs GPU0, which cannot be used "
                                    "now: the CUDA probe failed: cuInit failed: CUDA_ERROR_UNKNOWN (999)"))
                fail_msg("last_error: %s", last_error(f));

        /* and it comes back */
        write_cuda_file(f, "20000");
        assert_int_equal(ps_gpu_monitor_sample_now(m), 0);
        run_until(f, in_state, (char []) { "ready" });
        assert_true(ps_replica_ready(r));
        assert_null(ps_inventory_problem(f->inv));
        assert_int_equal(driver_resets(f), 1);
        ps_gpu_monitor_free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_preflight_refusal_fails_the_start_and_retries,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_driver_failure_resets_replicas_until_it_works_again,
                                                setup, teardown),
        };

        return cmocka_run_group_tests_name("gpu", tests, NULL, NULL);
}
