/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool-services/conf/preflight-hook.h"

#define GIB 1073741824ULL

static ps_inventory *gpus(const uint64_t *free_bytes, size_t n, ps_gpu_backend backend) {
        ps_gpu_device d[4];
        ps_inventory *inv = NULL;

        for (size_t i = 0; i < n; i++) {
                d[i] = (ps_gpu_device) { .index = (int) i, .vram_total_bytes = 80 * GIB,
                                         .vram_free_bytes = free_bytes[i] };
                snprintf(d[i].uuid, sizeof(d[i].uuid), "GPU-%zu", i);
        }
        assert_int_equal(ps_inventory_new(backend, d, n, &inv, NULL, 0), 0);
        return inv;
}

static int check(const ps_inventory *inv, bool require, uint64_t headroom,
                 const ps_preflight_request *req, char *err, size_t len) {
        ps_preflight_node node = { .inventory = inv, .require_gpu = require,
                                   .headroom_bytes = headroom };

        err[0] = '\0';
        return ps_preflight_check(&node, req, err, len);
}

static void test_vram_fits_and_does_not(void **state) {
        uint64_t free_bytes[] = { (uint64_t) (7.8 * GIB) };
        ps_inventory *inv = gpus(free_bytes, 1, PS_GPU_BACKEND_FAKE);
        ps_preflight_request req = { .pool_id = "llama-7b", .device_mask = "0",
                                     .vram_required_bytes = (uint64_t) (8.6 * GIB) };
        char err[256];

        (void) state;
        assert_int_equal(check(inv, true, GIB / 2, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient VRAM: need 9.1 GiB, free 7.8 GiB on GPU0");

        /* the headroom is part of the need */
        req.vram_required_bytes = 7 * GIB;
        assert_int_equal(check(inv, true, 0, &req, err, sizeof(err)), 0);
        assert_int_equal(check(inv, true, GIB, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient VRAM: need 8.0 GiB, free 7.8 GiB on GPU0");
        /* even with nothing declared and no model file, the headroom must fit */
        req.vram_required_bytes = 0;
        assert_int_equal(check(inv, true, 8 * GIB, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient VRAM: need 8.0 GiB, free 7.8 GiB on GPU0");
        ps_inventory_free(inv);
}

static void test_vram_estimated_from_the_model_file(void **state) {
        uint64_t free_bytes[] = { 8 * GIB };
        ps_inventory *inv = gpus(free_bytes, 1, PS_GPU_BACKEND_FAKE);
        char path[] = "/tmp/pm-model-XXXXXX";
        ps_preflight_request req = { .pool_id = "a", .device_mask = "GPU0", .model_path = path };
        uint64_t est = 0;
        char err[256];
        int fd = mkstemp(path);

        (void) state;
        assert_true(fd >= 0);
        /* sparse: 10 GiB of model without the disk space */
        assert_int_equal(ftruncate(fd, (off_t) (10 * GIB)), 0);
        close(fd);
        assert_int_equal(ps_preflight_estimate_vram(path, &est), 0);
        assert_int_equal(est, 12 * GIB);   /* PS_VRAM_OVERHEAD_PERCENT 120 */
        assert_int_equal(check(inv, true, 0, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient VRAM: need 12.0 GiB, free 8.0 GiB on GPU0");
        /* a declared figure wins over the estimate */
        req.vram_required_bytes = 6 * GIB;
        assert_int_equal(check(inv, true, 0, &req, err, sizeof(err)), 0);
        unlink(path);
        assert_int_equal(ps_preflight_estimate_vram(path, &est), -ENOENT);
        /* a model that is not a file here (the engine fetches it) is not measured */
        req.vram_required_bytes = 0;
        assert_int_equal(check(inv, true, 0, &req, err, sizeof(err)), 0);
        ps_inventory_free(inv);
}

static void test_vram_on_several_devices(void **state) {
        uint64_t free_bytes[] = { 20 * GIB, 8 * GIB };
        ps_inventory *inv = gpus(free_bytes, 2, PS_GPU_BACKEND_FAKE);
        ps_preflight_request req = { .pool_id = "a", .device_mask = "0,1",
                                     .vram_required_bytes = 20 * GIB };
        char err[256];

        (void) state;
        /* together: 20 + 2 x 1 of headroom against 28 */
        assert_int_equal(check(inv, true, GIB, &req, err, sizeof(err)), 0);
        req.vram_required_bytes = 27 * GIB;
        assert_int_equal(check(inv, true, GIB, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient VRAM: need 29.0 GiB, free 28.0 GiB on GPU0,GPU1");
        /* with a split, each device holds its share */
        req.vram_required_bytes = 20 * GIB;
        req.tensor_split = "0.5,0.5";
        assert_int_equal(check(inv, true, GIB, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient VRAM: need 11.0 GiB, free 8.0 GiB on GPU1 "
                            "(its share 0.5 of the split)");
        req.tensor_split = "0.7,0.3";
        assert_int_equal(check(inv, true, GIB, &req, err, sizeof(err)), 0);
        ps_inventory_free(inv);
}

static void test_host_ram(void **state) {
        uint64_t free_bytes[] = { 80 * GIB };
        ps_inventory *inv = gpus(free_bytes, 1, PS_GPU_BACKEND_FAKE);
        ps_preflight_request req = { .pool_id = "a", .device_mask = "0",
                                     .ram_required_bytes = 64 * GIB };
        ps_preflight_node node = { .inventory = inv, .require_gpu = true, .mem_known = true,
                                   .mem_available_bytes = (uint64_t) (31.2 * GIB) };
        char meminfo[] = "/tmp/pm-meminfo-XXXXXX";
        uint64_t avail = 0;
        char err[256];
        FILE *f;
        int fd;

        (void) state;
        assert_int_equal(ps_preflight_check(&node, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient host RAM: need 64.0 GiB, MemAvailable 31.2 GiB");
        req.ram_required_bytes = 16 * GIB;
        assert_int_equal(ps_preflight_check(&node, &req, err, sizeof(err)), 0);

        fd = mkstemp(meminfo);
        assert_true(fd >= 0);
        f = fdopen(fd, "w");
        fputs("MemTotal:       65536000 kB\nMemFree:         1000 kB\n"
              "MemAvailable:   32768000 kB\n", f);
        fclose(f);
        assert_int_equal(ps_preflight_mem_available(meminfo, &avail), 0);
        assert_int_equal(avail, 32768000ULL * 1024);
        unlink(meminfo);
        assert_int_equal(ps_preflight_mem_available(meminfo, &avail), -ENOENT);
        ps_inventory_free(inv);
}

static void test_gpu_only_enforcement(void **state) {
        uint64_t free_bytes[] = { 80 * GIB, 80 * GIB };
        ps_inventory *none = NULL, *two = gpus(free_bytes, 2, PS_GPU_BACKEND_CUDA);
        ps_preflight_request req = { .pool_id = "llama-7b", .device_mask = "0" };
        ps_cuda_result res = { .status = PS_CUDA_NO_LIBRARY,
                               .message = "libcuda.so.1 not found (no such file)" };
        char err[512];

        (void) state;
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_NONE, NULL, 0, &none, NULL, 0), 0);
        assert_int_equal(ps_inventory_apply_probe(none, &res, NULL), 0);
        assert_int_equal(check(none, true, 0, &req, err, sizeof(err)), PS_E_GPU_ONLY);
        assert_string_equal(err, "GPU-only enforcement: pool llama-7b needs GPU0, and this node "
                            "has no GPU (no CUDA: libcuda.so.1 not found (no such file)); no CPU "
                            "fallback is attempted");

        req.device_mask = "1,3";
        assert_int_equal(check(two, true, 0, &req, err, sizeof(err)), PS_E_GPU_ONLY);
        assert_string_equal(err, "GPU-only enforcement: pool llama-7b needs GPU3, which this node "
                            "does not have (it has GPU0,GPU1); no CPU fallback is attempted");
        /* without gpu.require: refused all the same, as a preflight failure */
        assert_int_equal(check(two, false, 0, &req, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "device_mask \"1,3\": 3 is not a known device");

        /* a CPU-only pool */
        req.device_mask = "none";
        assert_int_equal(check(two, true, 0, &req, err, sizeof(err)), PS_E_GPU_ONLY);
        assert_true(strncmp(err, "GPU-only enforcement: ", 22) == 0);
        assert_int_equal(check(none, false, 0, &req, err, sizeof(err)), 0);

        /* devices that stopped working */
        res = (ps_cuda_result) { .status = PS_CUDA_INIT_FAILED,
                                 .message = "cuInit failed: CUDA_ERROR_UNKNOWN (999)" };
        assert_int_equal(ps_inventory_apply_probe(two, &res, NULL), 0);
        req.device_mask = "0";
        assert_int_equal(check(two, true, 0, &req, err, sizeof(err)), PS_E_GPU_ONLY);
        assert_string_equal(err, "GPU-only enforcement: pool llama-7b needs GPU0, which cannot be "
                            "used now: the CUDA probe failed: cuInit failed: CUDA_ERROR_UNKNOWN (999)");
        ps_inventory_free(none);
        ps_inventory_free(two);
}

/* The hook as the daemon installs it: what the configured pool declares. */
static void test_hook_reads_the_pool_config(void **state) {
        ps_config *cfg = NULL;
        ps_engine_spec *spec = NULL;
        ps_preflight_source src;
        char err[512];

        (void) state;
        assert_int_equal(ps_config_load_string(
                "{\"gpu\": {\"backend\": \"fake\", \"headroom_bytes\": 0, \"devices\": ["
                " {\"index\": 0, \"vram_total_bytes\": 25769803776, \"vram_free_bytes\": 8589934592}]},"
                " \"pools\": [{\"id\": \"big\", \"engine\": \"llamacpp\", \"engine_version\": \"b1\","
                " \"binary\": \"/usr/bin/engine\", \"port\": 8081, \"device_mask\": \"0\","
                " \"vram_required_bytes\": 10737418240}]}", "/", &cfg, err, sizeof(err)), 0);
        src = (ps_preflight_source) { .config = cfg };
        assert_int_equal(ps_config_replica_spec(cfg, 0, 0, false, &spec, err, sizeof(err)), 0);
        assert_int_equal(ps_preflight_spec(spec, &src, err, sizeof(err)), PS_E_PREFLIGHT);
        assert_string_equal(err, "insufficient VRAM: need 10.0 GiB, free 8.0 GiB on GPU0");
        /* a pool the config does not know is checked from its spec alone */
        free(spec->pool_id);
        spec->pool_id = strdup("other");
        assert_int_equal(ps_preflight_spec(spec, &src, err, sizeof(err)), 0);
        ps_engine_spec_free(spec);
        ps_config_free(cfg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vram_fits_and_does_not),
                cmocka_unit_test(test_vram_estimated_from_the_model_file),
                cmocka_unit_test(test_vram_on_several_devices),
                cmocka_unit_test(test_host_ram),
                cmocka_unit_test(test_gpu_only_enforcement),
                cmocka_unit_test(test_hook_reads_the_pool_config),
        };

        return cmocka_run_group_tests_name("preflight", tests, NULL, NULL);
}
