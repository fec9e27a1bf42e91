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

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "pool-services/gpu-monitor.h"
#include "pool-services/preflight.h"
#include "pool-services/probe.h"
#include "pool-services/registry.h"

#define WAIT_MS 20000
#define MIB (1024ULL * 1024)

typedef struct fx {
        struct event_base *base;
        char dir[64];
        char cuda_file[PATH_MAX];
        ps_prober *prober;
        ps_context ctx;
        ps_registry *reg;
        ps_inventory *inv;
        struct event *tick;
        unsigned preflight_calls;
        bool refuse;
        bool done, done_ok;
        char done_text[512];
} fx;

static int64_t mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        (void) userdata;
}

static void run_until(fx *f, bool (*cond)(fx *f, void *arg), void *arg) {
        int64_t deadline = mono_ms() + WAIT_MS;

        while (!cond(f, arg) && mono_ms() < deadline)
                event_base_loop(f->base, EVLOOP_ONCE);
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
        struct timeval tv = { 0, 10000 };
        char err[256];

        snprintf(f->dir, sizeof(f->dir), "/tmp/pm-gpu-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->cuda_file, sizeof(f->cuda_file), "%s/cuda", f->dir);
        setenv("FAKE_CUDA_DEVICES", "1", 1);
        setenv("FAKE_CUDA_TOTAL_MIB", "24576", 1);
        setenv("FAKE_CUDA_FILE", f->cuda_file, 1);
        write_cuda_file(f, "20000");
        assert_int_equal(ps_cuda_discover(&o, &res), 0);
        assert_int_equal(res.status, PS_CUDA_OK);
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_CUDA, res.devices, res.n_devices,
                                          &f->inv, err, sizeof(err)), 0);
        ps_cuda_result_clear(&res);

        f->base = event_base_new();
        f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
        event_add(f->tick, &tv);
        f->prober = ps_prober_new(f->base);
        f->ctx = (ps_context) {
                .base = f->base,
                .prober = f->prober,
                .runtime_dir = f->dir,
                .seed = 7,
                .preflight = preflight,
                .preflight_userdata = f,
        };
        f->reg = ps_registry_new(&f->ctx);
        assert_non_null(f->reg);
        *state = f;
        return 0;
}

static bool flag_set(fx *f, void *arg) {
        (void) f;
        return *(bool *) arg;
}

static bool all_stopped;

static void on_all_stopped(bool ok, const char *text, void *userdata) {
        (void) ok;
        (void) text;
        (void) userdata;
        all_stopped = true;
}

static int teardown(void **state) {
        fx *f = *state;
        char cmd[PATH_MAX + 16];

        all_stopped = false;
        ps_registry_stop_all(f->reg, on_all_stopped, NULL);
        run_until(f, flag_set, &all_stopped);
        ps_registry_free(f->reg);
        ps_prober_free(f->prober);
        ps_inventory_free(f->inv);
        event_free(f->tick);
        event_base_free(f->base);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", f->dir);
        free(f);
        return 0;
}

static uint16_t free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        close(fd);
        return ntohs(a.sin_port);
}

static ps_replica *add_fake_engine(fx *f, const char *pool_id) {
        ps_engine_spec *s = ps_engine_spec_new();
        ps_policy *pol = ps_policy_new();
        json_t *fast = json_loads("{\"health\": {\"interval_ms\": 50, \"timeout_ms\": 500,"
                                  " \"startup_timeout_ms\": 10000},"
                                  " \"backoff\": {\"initial_ms\": 50, \"max_ms\": 200, \"jitter\": 0},"
                                  " \"stop_grace_ms\": 500}", 0, NULL);
        const char *engine = getenv("FAKE_ENGINE");
        ps_replica *r = NULL;
        char port[16], err[256];

        assert_non_null(engine);
        assert_int_equal(ps_policy_apply_json(pol, fast, "test", err, sizeof(err)), 0);
        json_decref(fast);
        s->port = free_port();
        snprintf(port, sizeof(port), "%u", (unsigned) s->port);
        s->binary_path = realpath(engine, NULL);
        s->flags = calloc(2, sizeof(char *));
        s->flags[0] = strdup("--port");
        s->flags[1] = strdup(port);
        s->n_flags = 2;
        s->host = strdup("127.0.0.1");
        s->pool_id = strdup(pool_id);
        s->replica_id = strdup("r0");
        s->engine = strdup("llamacpp");
        s->engine_version = strdup("b6000");
        s->device_mask = strdup("0");
        s->slots = 1;
        assert_int_equal(ps_registry_add(f->reg, s, pol, &r, err, sizeof(err)), 0);
        ps_engine_spec_free(s);
        ps_policy_free(pol);
        return r;
}

static void on_done(bool ok, const char *text, void *userdata) {
        fx *f = userdata;

        f->done = true;
        f->done_ok = ok;
        snprintf(f->done_text, sizeof(f->done_text), "%s", text);
}

static bool preload_answered(fx *f, void *arg) {
        (void) arg;
        return f->done;
}

static bool in_state(fx *f, void *arg) {
        ps_replica *r = ps_registry_find(f->reg, "p", "r0");

        return strcmp(ps_replica_state(r), arg) == 0;
}

static bool free_is(fx *f, void *arg) {
        return ps_inventory_find(f->inv, 0)->vram_free_bytes == *(uint64_t *) arg;
}

static bool calls_at_least(fx *f, void *arg) {
        return f->preflight_calls >= *(unsigned *) arg;
}

static const char *last_error(fx *f) {
        static char buf[512];
        json_t *snap = ps_replica_snapshot(ps_registry_find(f->reg, "p", "r0"));
        const char *e = json_string_value(json_object_get(snap, "last_error"));

        snprintf(buf, sizeof(buf), "%s", e ? e : "");
        json_decref(snap);
        return buf;
}

static json_int_t driver_resets(fx *f) {
        json_t *snap = ps_replica_snapshot(ps_registry_find(f->reg, "p", "r0"));
        json_int_t n = json_integer_value(json_object_get(snap, "driver_resets"));

        json_decref(snap);
        return n;
}

static void test_preflight_refusal_fails_the_start_and_retries(void **state) {
        fx *f = *state;
        ps_replica *r;
        unsigned want = 3;
        char err[256];

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
        assert_int_equal(ps_replica_preload(r, on_done, f, err, sizeof(err)), 0);
        run_until(f, preload_answered, NULL);
        assert_true(f->done);
        assert_false(f->done_ok);
        if (!strstr(f->done_text, "insufficient VRAM: need 7.8 GiB, free 3.9 GiB on GPU0"))
                fail_msg("preload answer: %s", f->done_text);
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
        ps_gpu_monitor *m = ps_gpu_monitor_new(f->base, f->inv, f->reg, &o, 0,
                                               (ps_event_sink) { .fn = NULL });
        ps_replica *r = add_fake_engine(f, "p");
        char err[256];

        assert_non_null(m);
        assert_int_equal(ps_replica_preload(r, on_done, f, err, sizeof(err)), 0);
        run_until(f, preload_answered, NULL);
        if (!f->done_ok)
                fail_msg("preload: %s", f->done_text);
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
