/* SPDX-License-Identifier: MIT */
/*
 * Supervision end to end inside pool-services: the registry starts real
 * fake-engine processes (tests/helpers/fake-engine), probes them over HTTP,
 * watches their pidfds and logs, and applies the pool-domain policies with
 * short timings. Waits are on the event loop with generous bounds; nothing
 * sleeps for a fixed time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "pool-services/probe.h"
#include "pool-services/registry.h"

#define WAIT_MS 15000

typedef struct fx {
        struct event_base *base;
        struct event *tick;
        ps_prober *prober;
        ps_registry *reg;
        ps_context ctx;
        char dir[64];
        /* what the sink saw */
        char messages[512][64];
        size_t n_messages;
        /* preload answer */
        bool done;
        bool done_ok;
        char done_text[512];
} fx;

static const char *fake_engine(void) {
        const char *p = getenv("FAKE_ENGINE");

        return p ? p : "tests/helpers/fake-engine";
}

static void on_event(const ps_event *ev, void *userdata) {
        fx *f = userdata;

        if (f->n_messages < sizeof(f->messages) / sizeof(f->messages[0]))
                snprintf(f->messages[f->n_messages++], sizeof(f->messages[0]), "%s", ev->message);
        if (getenv("TEST_VERBOSE")) {
                fprintf(stderr, "event: %s", ev->message);
                for (size_t i = 0; i < ev->n_fields; i++)
                        if (ev->fields[i].type == PS_FIELD_TYPE_STRING && ev->fields[i].str)
                                fprintf(stderr, " %s=%s", ev->fields[i].key, ev->fields[i].str);
                fprintf(stderr, "\n");
        }
}

static size_t seen(const fx *f, const char *prefix) {
        size_t n = 0;

        for (size_t i = 0; i < f->n_messages; i++)
                if (strncmp(f->messages[i], prefix, strlen(prefix)) == 0)
                        n++;
        return n;
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        (void) userdata;
}

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));
        struct timeval tv = { 0, 10000 };

        snprintf(f->dir, sizeof(f->dir), "/tmp/pm-supervise-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->base = event_base_new();
        f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
        event_add(f->tick, &tv);
        f->prober = ps_prober_new(f->base);
        f->ctx = (ps_context) {
                .base = f->base,
                .sink = { .fn = on_event, .userdata = f },
                .prober = f->prober,
                .runtime_dir = f->dir,
                .seed = 7,
        };
        f->reg = ps_registry_new(&f->ctx);
        assert_non_null(f->reg);
        *state = f;
        return 0;
}

static bool all_stopped;

static void on_all_stopped(bool ok, const char *text, void *userdata) {
        (void) ok;
        (void) text;
        (void) userdata;
        all_stopped = true;
}

static void run_until(fx *f, bool (*cond)(fx *f, void *arg), void *arg, int64_t ms);

static bool flag_set(fx *f, void *arg) {
        (void) f;
        return *(bool *) arg;
}

static int teardown(void **state) {
        fx *f = *state;
        char cmd[PATH_MAX + 16];

        all_stopped = false;
        ps_registry_stop_all(f->reg, on_all_stopped, NULL);
        run_until(f, flag_set, &all_stopped, WAIT_MS);
        ps_registry_free(f->reg);
        ps_prober_free(f->prober);
        event_free(f->tick);
        event_base_free(f->base);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", f->dir);
        free(f);
        return 0;
}

static int64_t mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_until(fx *f, bool (*cond)(fx *f, void *arg), void *arg, int64_t ms) {
        int64_t deadline = mono_ms() + ms;

        while (!cond(f, arg) && mono_ms() < deadline)
                event_base_loop(f->base, EVLOOP_ONCE);
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

/* A spec running the fake engine with extra arguments (NULL-terminated). */
static ps_engine_spec *fake_spec(const char *pool_id, const char *first, ...) {
        ps_engine_spec *s = ps_engine_spec_new();
        const char *args[32];
        size_t n = 0;
        char port[16];
        va_list ap;

        s->port = free_port();
        snprintf(port, sizeof(port), "%u", (unsigned) s->port);
        args[n++] = "--port";
        args[n++] = port;
        va_start(ap, first);
        for (const char *a = first; a && n < 30; a = va_arg(ap, const char *))
                args[n++] = a;
        va_end(ap);
        s->binary_path = realpath(fake_engine(), NULL);
        assert_non_null(s->binary_path);
        s->flags = calloc(n, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                s->flags[i] = strdup(args[i]);
        s->n_flags = n;
        s->host = strdup("127.0.0.1");
        s->pool_id = strdup(pool_id);
        s->replica_id = strdup("r0");
        s->engine = strdup("llamacpp");
        s->engine_version = strdup("b6000");
        s->model_id = strdup("tiny");
        s->device_mask = strdup("0");
        s->cuda_visible_devices = strdup("0");
        s->slots = 2;
        return s;
}

/* A policy with short timings, changed further by `json`. */
static ps_policy *fast_policy(const char *json) {
        ps_policy *p = ps_policy_new();
        json_error_t jerr;
        json_t *base = json_loads("{\"health\": {\"interval_ms\": 50, \"timeout_ms\": 200,"
                                  " \"startup_timeout_ms\": 5000},"
                                  " \"backoff\": {\"initial_ms\": 50, \"max_ms\": 400, \"jitter\": 0},"
                                  " \"stop_grace_ms\": 500}", 0, &jerr);
        char err[256];

        assert_int_equal(ps_policy_apply_json(p, base, "test", err, sizeof(err)), 0);
        json_decref(base);
        if (json) {
                json_t *extra = json_loads(json, 0, &jerr);

                assert_non_null(extra);
                if (ps_policy_apply_json(p, extra, "test", err, sizeof(err)) != 0)
                        fail_msg("policy: %s", err);
                json_decref(extra);
        }
        return p;
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
        const char **want = arg;
        ps_replica *r = ps_registry_find(f->reg, want[0], "r0");

        return r && strcmp(ps_replica_state(r), want[1]) == 0;
}

static void wait_state(fx *f, const char *pool_id, const char *state) {
        const char *want[2] = { pool_id, state };
        ps_replica *r;

        run_until(f, in_state, want, WAIT_MS);
        r = ps_registry_find(f->reg, pool_id, "r0");
        assert_non_null(r);
        if (strcmp(ps_replica_state(r), state) != 0)
                fail_msg("pool %s: state %s, expected %s", pool_id, ps_replica_state(r), state);
}

static ps_replica *add(fx *f, ps_engine_spec *spec, ps_policy *pol) {
        ps_replica *r = NULL;
        char err[256];

        if (ps_registry_add(f->reg, spec, pol, &r, err, sizeof(err)) != 0)
                fail_msg("add: %s", err);
        ps_engine_spec_free(spec);
        ps_policy_free(pol);
        return r;
}

static ps_replica *preload(fx *f, ps_replica *r) {
        char err[256];

        f->done = false;
        if (ps_replica_preload(r, on_done, f, err, sizeof(err)) != 0)
                fail_msg("preload: %s", err);
        run_until(f, preload_answered, NULL, WAIT_MS);
        assert_true(f->done);
        return r;
}

static json_t *snap(const ps_replica *r) {
        json_t *s = ps_replica_snapshot(r);

        assert_non_null(s);
        return s;
}

static const char *snap_str(json_t *s, const char *key) {
        return json_string_value(json_object_get(s, key));
}

static json_int_t snap_int(json_t *s, const char *key) {
        return json_integer_value(json_object_get(s, key));
}

static bool file_exists(const char *path) {
        struct stat st;

        return stat(path, &st) == 0;
}

static char *slurp(const char *path) {
        FILE *fp = fopen(path, "r");
        char *buf = calloc(1, 1 << 16);

        if (fp) {
                size_t n = fread(buf, 1, (1 << 16) - 1, fp);
                buf[n] = '\0';
                fclose(fp);
        }
        return buf;
}

/* ---- tests ------------------------------------------------------------- */

static void test_preload_spawns_probes_and_writes_files(void **state) {
        fx *f = *state;
        ps_replica *r = add(f, fake_spec("alpha", "--load-ms", "300", NULL), fast_policy(NULL));
        char path[PATH_MAX], *text;
        json_t *s, *handoff;
        json_error_t jerr;
        int pid;

        f->done = false;
        assert_int_equal(ps_replica_preload(r, on_done, f, NULL, 0), 0);
        /* while it loads: spawned, PID file there, not ready */
        assert_int_equal(strcmp(ps_replica_state(r), "preloading"), 0);
        pid = ps_replica_pid(r);
        assert_true(pid > 0);
        snprintf(path, sizeof(path), "%s/alpha_r0.pid", f->dir);
        text = slurp(path);
        assert_int_equal(atoi(text), pid);
        free(text);
        assert_false(ps_replica_ready(r));

        run_until(f, preload_answered, NULL, WAIT_MS);
        assert_true(f->done_ok);
        assert_true(ps_replica_ready(r));
        s = snap(r);
        assert_string_equal(snap_str(s, "state"), "ready");
        assert_string_equal(snap_str(s, "engine_version"), "b6000");
        assert_int_equal(snap_int(s, "pid"), pid);
        assert_true(snap_int(s, "ready_at") > 0);
        assert_int_equal(snap_int(s, "slots_free"), 2);
        json_decref(s);

        snprintf(path, sizeof(path), "%s/engines/alpha_r0.json", f->dir);
        handoff = json_load_file(path, 0, &jerr);
        assert_non_null(handoff);
        assert_string_equal(json_string_value(json_object_get(handoff, "managed_by")), "pool-managerd");
        assert_string_equal(json_string_value(json_object_get(handoff, "pool_id")), "alpha");
        assert_string_equal(json_string_value(json_object_get(handoff, "engine_version")), "b6000");
        assert_int_equal(json_integer_value(json_object_get(handoff, "pid")), pid);
        assert_int_equal(json_integer_value(json_object_get(handoff, "slots_total")), 2);
        json_decref(handoff);

        snprintf(path, sizeof(path), "%s/engine-alpha_r0.log", f->dir);
        text = slurp(path);
        assert_non_null(strstr(text, "CUDA_VISIBLE_DEVICES=0"));
        free(text);
}

static void test_missing_binary_fails_without_leftovers(void **state) {
        fx *f = *state;
        ps_engine_spec *spec = fake_spec("ghost", NULL);
        char path[PATH_MAX];
        ps_replica *r;
        json_t *s;

        free(spec->binary_path);
        spec->binary_path = strdup("/nonexistent/llama-server");
        r = preload(f, add(f, spec, fast_policy(NULL)));
        assert_false(f->done_ok);
        assert_non_null(strstr(f->done_text, "/nonexistent/llama-server"));
        snprintf(path, sizeof(path), "%s/ghost_r0.pid", f->dir);
        assert_false(file_exists(path));
        s = snap(r);
        assert_string_equal(snap_str(s, "state"), "backoff");
        assert_string_equal(snap_str(s, "last_error_class"), "preflight");
        assert_true(snap_int(s, "next_restart_at") > 0);
        json_decref(s);
}

static void test_startup_timeout_kills_and_schedules_retry(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("slow", "--never-ready", NULL),
                                      fast_policy("{\"health\": {\"startup_timeout_ms\": 400}}")));
        json_t *s;

        assert_false(f->done_ok);
        assert_non_null(strstr(f->done_text, "startup timeout"));
        s = snap(r);
        assert_string_equal(snap_str(s, "state"), "backoff");
        assert_string_equal(snap_str(s, "last_error_class"), "startup_timeout");
        assert_false(json_is_true(json_object_get(s, "ready")));
        json_decref(s);
        assert_true(seen(f, "stopping engine") >= 1);
        wait_state(f, "slow", "preloading");   /* the retry */
        assert_int_equal(ps_replica_restart_count(r), 1);
}

static void test_stalled_load_fails_before_the_startup_timeout(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("stall", "--never-ready", NULL),
                                      fast_policy("{\"health\": {\"stall_timeout_ms\": 400,"
                                                  " \"startup_timeout_ms\": 60000}}")));
        json_t *s;

        assert_false(f->done_ok);
        assert_non_null(strstr(f->done_text, "stalled"));
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "stall_timeout");
        json_decref(s);
}

static void test_load_that_shows_progress_is_not_stalled(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("busy", "--load-ms", "1500",
                                                    "--log-progress-ms", "100", NULL),
                                      fast_policy("{\"health\": {\"stall_timeout_ms\": 600}}")));

        /* 1.5 s of loading, far past the stall timeout, but printing */
        assert_true(f->done_ok);
        assert_true(ps_replica_ready(r));
}

static void test_early_exit_reports_last_log_line(void **state) {
        fx *f = *state;

        preload(f, add(f, fake_spec("nomodel", "-m", "/nonexistent/model.gguf", NULL), fast_policy(NULL)));
        assert_false(f->done_ok);
        assert_non_null(strstr(f->done_text, "exited with code 1"));
        assert_non_null(strstr(f->done_text, "failed to open GGUF file"));
}

static void test_sigsegv_crash_named_and_restarted(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("segv", "--signal-after-ms", "300",
                                                    "--signal", "SEGV", NULL),
                                      fast_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        wait_state(f, "segv", "backoff");
        s = snap(r);
        assert_non_null(strstr(snap_str(s, "last_error"), "SIGSEGV"));
        assert_string_equal(snap_str(s, "last_error_class"), "signal");
        assert_int_equal(snap_int(s, "crash_count"), 1);
        assert_int_equal(snap_int(s, "backoff_ms"), 50);
        json_decref(s);
        wait_state(f, "segv", "ready");
        assert_int_equal(ps_replica_restart_count(r), 1);
        assert_true(seen(f, "engine failed") >= 1);
        assert_true(seen(f, "restart scheduled") >= 1);
}

static void test_exit_zero_is_not_restarted(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("done", "--exit-after-ms", "300",
                                                    "--exit-code", "0", NULL),
                                      fast_policy(NULL)));

        assert_true(f->done_ok);
        wait_state(f, "done", "stopped");
        assert_int_equal(ps_replica_crash_count(r), 0);
        assert_int_equal(ps_replica_restart_count(r), 0);
}

static void test_cuda_error_line_is_cuda_error_with_double_backoff(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("cuda", "--cuda-error-after-ms", "300", NULL),
                                      fast_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        wait_state(f, "cuda", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "cuda_error");
        assert_int_equal(snap_int(s, "backoff_ms"), 100);   /* 50 x 2 */
        json_decref(s);
}

static void test_vram_oom_exit_is_vram_oom(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("oom", "--cuda-oom-after-ms", "300", NULL),
                                      fast_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        wait_state(f, "oom", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "vram_oom");
        json_decref(s);
}

static void test_unhealthy_engine_is_restarted(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("sick", "--unhealthy-after-ms", "300", NULL),
                                      fast_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        wait_state(f, "sick", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "health_timeout");
        assert_non_null(strstr(snap_str(s, "last_error"), "3 consecutive"));
        json_decref(s);
}

static void test_hung_engine_times_out(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("hung", "--hang-after-ms", "300", NULL),
                                      fast_policy("{\"health\": {\"timeout_ms\": 100}}")));
        json_t *s;

        assert_true(f->done_ok);
        wait_state(f, "hung", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "health_timeout");
        assert_non_null(strstr(snap_str(s, "last_error"), "timed out"));
        json_decref(s);
}

static bool backoff_seen(fx *f, void *arg) {
        json_int_t *seq = arg;
        ps_replica *r = ps_registry_find(f->reg, "loop", "r0");
        json_t *s = ps_replica_snapshot(r);
        json_int_t b = json_integer_value(json_object_get(s, "backoff_ms"));
        unsigned crashes = ps_replica_crash_count(r);

        json_decref(s);
        if (crashes >= 1 && crashes <= 4)
                seq[crashes - 1] = b;
        return crashes >= 4;
}

static void test_backoff_sequence_doubles(void **state) {
        fx *f = *state;
        json_int_t seq[4] = { 0 };

        /* crash before ready, every time */
        preload(f, add(f, fake_spec("loop", "--exit-after-ms", "20", "--exit-code", "3",
                                    "--never-ready", NULL),
                       fast_policy("{\"breaker\": {\"threshold\": 10}}")));
        assert_false(f->done_ok);
        run_until(f, backoff_seen, seq, WAIT_MS);
        assert_int_equal(seq[0], 50);
        assert_int_equal(seq[1], 100);
        assert_int_equal(seq[2], 200);
        assert_int_equal(seq[3], 400);
}

static void test_breaker_opens_then_half_opens(void **state) {
        fx *f = *state;
        ps_replica *r;
        json_t *s, *b;

        r = preload(f, add(f, fake_spec("brk", "--exit-after-ms", "20", "--exit-code", "3",
                                        "--never-ready", NULL),
                           fast_policy("{\"breaker\": {\"threshold\": 2, \"open_ms\": 500}}")));
        wait_state(f, "brk", "failed");
        s = snap(r);
        b = json_object_get(s, "breaker");
        assert_string_equal(json_string_value(json_object_get(b, "state")), "open");
        assert_int_equal(json_integer_value(json_object_get(b, "opens")), 1);
        assert_true(json_is_integer(json_object_get(b, "open_until")));
        json_decref(s);
        assert_true(seen(f, "breaker opened") >= 1);

        /* the open period ends: exactly one trial */
        wait_state(f, "brk", "preloading");
        s = snap(r);
        b = json_object_get(s, "breaker");
        assert_string_equal(json_string_value(json_object_get(b, "state")), "half_open");
        json_decref(s);
        /* the trial fails: open again, period doubled */
        wait_state(f, "brk", "failed");
}

static void test_storm_opens_breaker_with_alert(void **state) {
        fx *f = *state;

        preload(f, add(f, fake_spec("storm", "--exit-after-ms", "10", "--exit-code", "3",
                                    "--never-ready", NULL),
                       fast_policy("{\"backoff\": {\"initial_ms\": 10, \"max_ms\": 10},"
                                   " \"breaker\": {\"threshold\": 100},"
                                   " \"storm\": {\"limit\": 4, \"window_ms\": 20000,"
                                   " \"burst_window_ms\": 10000, \"warn_above\": 2}}")));
        wait_state(f, "storm", "failed");
        assert_true(seen(f, "restart storm") >= 1);
}

static void test_sigterm_ignored_means_sigkill_after_grace(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("stubborn", "--ignore-sigterm", NULL),
                                      fast_policy("{\"stop_grace_ms\": 300}")));
        char path[PATH_MAX];
        int pid = ps_replica_pid(r);

        assert_true(f->done_ok);
        assert_int_equal(ps_replica_stop(r, NULL, 0), 0);
        assert_string_equal(ps_replica_state(r), "stopping");
        wait_state(f, "stubborn", "stopped");
        assert_true(seen(f, "stop grace over") >= 1);
        assert_int_equal(ps_replica_crash_count(r), 0);
        assert_int_equal(kill(pid, 0), -1);
        snprintf(path, sizeof(path), "%s/stubborn_r0.pid", f->dir);
        assert_false(file_exists(path));
        snprintf(path, sizeof(path), "%s/engines/stubborn_r0.json", f->dir);
        assert_false(file_exists(path));
}

static void test_stop_without_engine_says_so(void **state) {
        fx *f = *state;
        ps_replica *r = add(f, fake_spec("idle", NULL), fast_policy(NULL));
        char err[256];

        assert_int_equal(ps_replica_stop(r, err, sizeof(err)), PS_E_NOT_RUNNING);
        assert_non_null(strstr(err, "has no engine to stop"));
}

static void test_preload_twice_is_a_conflict(void **state) {
        fx *f = *state;
        ps_replica *r = preload(f, add(f, fake_spec("twice", NULL), fast_policy(NULL)));
        char err[256];

        assert_true(f->done_ok);
        assert_int_equal(ps_replica_preload(r, on_done, f, err, sizeof(err)), PS_E_CONFLICT);
        assert_non_null(strstr(err, "already running"));
}

static void test_manual_restart_and_breaker_reset(void **state) {
        fx *f = *state;
        ps_replica *r;

        r = preload(f, add(f, fake_spec("manual", "--exit-after-ms", "20", "--exit-code", "3",
                                        "--never-ready", NULL),
                           fast_policy("{\"breaker\": {\"threshold\": 1, \"open_ms\": 60000}}")));
        wait_state(f, "manual", "failed");
        assert_int_equal(ps_replica_restart(r, NULL, 0), 0);     /* past the open breaker */
        assert_string_equal(ps_replica_state(r), "preloading");
        wait_state(f, "manual", "failed");
        assert_int_equal(ps_replica_breaker_reset(r), 0);
        assert_string_equal(ps_replica_state(r), "preloading");
}

static void test_register_ready_from_handoff(void **state) {
        fx *f = *state;
        json_error_t jerr;
        json_t *doc = json_loads("{\"pool_id\": \"ext\", \"replica_id\": \"r0\","
                                 " \"engine_version\": \"v1\", \"url\": \"http://10.0.0.5:8000\","
                                 " \"slots_total\": 4, \"slots_free\": 3}", 0, &jerr);
        ps_replica *r;
        json_t *s;
        char err[256];

        assert_int_equal(ps_registry_register_ready_from_handoff(f->reg, doc, err, sizeof(err)), 0);
        json_decref(doc);
        r = ps_registry_find(f->reg, "ext", "r0");
        assert_non_null(r);
        assert_true(ps_replica_ready(r));
        assert_true(ps_replica_live(r));
        assert_true(ps_replica_external(r));
        s = snap(r);
        assert_string_equal(snap_str(s, "url"), "http://10.0.0.5:8000");
        assert_int_equal(snap_int(s, "slots_total"), 4);
        assert_int_equal(snap_int(s, "slots_free"), 3);
        assert_true(json_is_null(json_object_get(s, "device_mask")));   /* stays unset */
        assert_true(json_is_null(json_object_get(s, "last_error")));
        assert_true(snap_int(s, "last_heartbeat") > 0);
        json_decref(s);

        doc = json_loads("{\"pool_id\": \"ext\", \"replica_id\": \"r1\"}", 0, &jerr);
        assert_int_equal(ps_registry_register_ready_from_handoff(f->reg, doc, err, sizeof(err)),
                         PS_E_INVALID);
        assert_non_null(strstr(err, "engine_version"));
        json_decref(doc);

        assert_int_equal(ps_registry_unregister_handoff(f->reg, "ext", "r0"), 0);
        assert_false(ps_replica_ready(r));
        assert_int_equal(ps_registry_active_leases(f->reg, "nope"), 0);
        assert_null(ps_registry_pool_snapshot(f->reg, "nope"));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_preload_spawns_probes_and_writes_files),
                T(test_missing_binary_fails_without_leftovers),
                T(test_startup_timeout_kills_and_schedules_retry),
                T(test_stalled_load_fails_before_the_startup_timeout),
                T(test_load_that_shows_progress_is_not_stalled),
                T(test_early_exit_reports_last_log_line),
                T(test_sigsegv_crash_named_and_restarted),
                T(test_exit_zero_is_not_restarted),
                T(test_cuda_error_line_is_cuda_error_with_double_backoff),
                T(test_vram_oom_exit_is_vram_oom),
                T(test_unhealthy_engine_is_restarted),
                T(test_hung_engine_times_out),
                T(test_backoff_sequence_doubles),
                T(test_breaker_opens_then_half_opens),
                T(test_storm_opens_breaker_with_alert),
                T(test_sigterm_ignored_means_sigkill_after_grace),
                T(test_stop_without_engine_says_so),
                T(test_preload_twice_is_a_conflict),
                T(test_manual_restart_and_breaker_reset),
                T(test_register_ready_from_handoff),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
