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

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool-services/observe/status-json.h"
#include "pool-services/cloud/handoff-doc.h"
#include "harness.h"
#include "pool-services/pool/reload.h"

typedef th_node fx;      /* made by th_node_setup() */

/* The fake engine as replica r0 with two slots, given further arguments
 * (NULL-terminated). */
static ps_engine_spec *fake_spec(const char *pool_id, const char *first, ...) {
        ps_engine_spec *s;
        va_list ap;

        va_start(ap, first);
        s = th_fake_spec_va(pool_id, "r0", 0, 2, first, ap);
        va_end(ap);
        return s;
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

/* ---- tests ------------------------------------------------------------- */

static void test_preload_spawns_probes_and_writes_files(void **state) {
        fx *f = *state;
        ps_replica *r = th_add(f, fake_spec("alpha", "--load-ms", "300", NULL), th_policy(NULL));
        char path[PATH_MAX], *text;
        json_t *s, *handoff;
        json_error_t jerr;
        int pid;

        assert_int_equal(th_preload_start(f, r, NULL, 0), 0);
        /* while it loads: spawned, PID file there, not ready */
        assert_int_equal(strcmp(ps_replica_state(r), "preloading"), 0);
        pid = ps_replica_pid(r);
        assert_true(pid > 0);
        snprintf(path, sizeof(path), "%s/alpha_r0.pid", f->dir);
        text = th_slurp(path, NULL);
        assert_int_equal(atoi(text), pid);
        free(text);
        assert_false(ps_replica_ready(r));

        th_node_until(f, th_flag_set, &f->done, TH_WAIT_MS);
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
        text = th_slurp(path, NULL);
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
        r = th_preload(f, th_add(f, spec, th_policy(NULL)));
        assert_false(f->done_ok);
        assert_non_null(strstr(f->done_text, "/nonexistent/llama-server"));
        snprintf(path, sizeof(path), "%s/ghost_r0.pid", f->dir);
        assert_false(th_file_exists(path));
        s = snap(r);
        assert_string_equal(snap_str(s, "state"), "backoff");
        assert_string_equal(snap_str(s, "last_error_class"), "preflight");
        assert_true(snap_int(s, "next_restart_at") > 0);
        json_decref(s);
}

static void test_startup_timeout_kills_and_schedules_retry(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("slow", "--never-ready", NULL),
                                            th_policy("{\"health\": {\"startup_timeout_ms\": 400}}")));
        json_t *s;

        assert_false(f->done_ok);
        assert_non_null(strstr(f->done_text, "startup timeout"));
        s = snap(r);
        assert_string_equal(snap_str(s, "state"), "backoff");
        assert_string_equal(snap_str(s, "last_error_class"), "startup_timeout");
        assert_false(json_is_true(json_object_get(s, "ready")));
        json_decref(s);
        assert_true(th_node_seen(f, "stopping engine") >= 1);
        th_wait_state(f, "slow", "r0", "preloading");   /* the retry */
        assert_int_equal(ps_replica_restart_count(r), 1);
}

static void test_stalled_load_fails_before_the_startup_timeout(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("stall", "--never-ready", NULL),
                                            th_policy("{\"health\": {\"stall_timeout_ms\": 400,"
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
        ps_replica *r = th_preload(f, th_add(f, fake_spec("busy", "--load-ms", "1500",
                                                          "--log-progress-ms", "100", NULL),
                                            th_policy("{\"health\": {\"stall_timeout_ms\": 600}}")));

        /* 1.5 s of loading, far past the stall timeout, but printing */
        assert_true(f->done_ok);
        assert_true(ps_replica_ready(r));
}

static void test_early_exit_reports_last_log_line(void **state) {
        fx *f = *state;

        th_preload(f, th_add(f, fake_spec("nomodel", "-m", "/nonexistent/model.gguf", NULL),
                             th_policy(NULL)));
        assert_false(f->done_ok);
        assert_non_null(strstr(f->done_text, "exited with code 1"));
        assert_non_null(strstr(f->done_text, "failed to open GGUF file"));
}

static void test_sigsegv_crash_named_and_restarted(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("segv", "--signal-after-ms", "300",
                                                          "--signal", "SEGV", NULL),
                                            th_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        th_wait_state(f, "segv", "r0", "backoff");
        s = snap(r);
        assert_non_null(strstr(snap_str(s, "last_error"), "SIGSEGV"));
        assert_string_equal(snap_str(s, "last_error_class"), "signal");
        assert_int_equal(snap_int(s, "crash_count"), 1);
        assert_int_equal(snap_int(s, "backoff_ms"), 50);
        json_decref(s);
        th_wait_state(f, "segv", "r0", "ready");
        assert_int_equal(ps_replica_restart_count(r), 1);
        assert_true(th_node_seen(f, "engine failed") >= 1);
        assert_true(th_node_seen(f, "restart scheduled") >= 1);
}

static void test_exit_zero_is_not_restarted(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("done", "--exit-after-ms", "300",
                                                          "--exit-code", "0", NULL),
                                            th_policy(NULL)));

        assert_true(f->done_ok);
        th_wait_state(f, "done", "r0", "stopped");
        assert_int_equal(ps_replica_crash_count(r), 0);
        assert_int_equal(ps_replica_restart_count(r), 0);
}

/* /proc/<pid>/stat's state is 'T': the process is stopped. */
static bool process_stopped(void *fixture, const void *arg) {
        char path[64], buf[512], *close;
        pid_t pid = *(const pid_t *) arg;
        FILE *fp;
        size_t n;

        (void) fixture;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fp = fopen(path, "re");
        if (!fp)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        close = strrchr(buf, ')');
        return close && close[1] == ' ' && close[2] == 'T';
}

static void test_stopped_engine_ends_on_sigterm_not_the_grace(void **state) {
        fx *f = *state;
        /* a grace far past every wait here: only SIGTERM can end it in time */
        ps_replica *r = th_preload(f, th_add(f, fake_spec("frozen", NULL),
                                            th_policy("{\"stop_grace_ms\": 600000,"
                                                      " \"health\": {\"interval_ms\": 600000}}")));
        pid_t pid;

        assert_true(f->done_ok);
        pid = ps_replica_pid(r);
        assert_true(pid > 1);
        assert_int_equal(kill(pid, SIGSTOP), 0);
        assert_true(th_node_until(f, process_stopped, &pid, TH_WAIT_MS));
        assert_int_equal(ps_replica_stop(r, NULL, 0), 0);
        th_wait_state(f, "frozen", "r0", "stopped");
        assert_int_equal(th_node_seen(f, "stop grace over: killing engine"), 0);
        assert_int_equal(ps_replica_crash_count(r), 0);
}

static void test_cuda_error_line_is_cuda_error_with_double_backoff(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("cuda", "--cuda-error-after-ms", "300", NULL),
                                            th_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        th_wait_state(f, "cuda", "r0", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "cuda_error");
        assert_int_equal(snap_int(s, "backoff_ms"), 100);   /* 50 x 2 */
        json_decref(s);
}

static void test_vram_oom_exit_is_vram_oom(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("oom", "--cuda-oom-after-ms", "300", NULL),
                                            th_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        th_wait_state(f, "oom", "r0", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "vram_oom");
        json_decref(s);
}

static void test_unhealthy_engine_is_restarted(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("sick", "--unhealthy-after-ms", "300", NULL),
                                            th_policy(NULL)));
        json_t *s;

        assert_true(f->done_ok);
        th_wait_state(f, "sick", "r0", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "health_timeout");
        assert_non_null(strstr(snap_str(s, "last_error"), "3 consecutive"));
        json_decref(s);
}

static void test_hung_engine_times_out(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("hung", "--hang-after-ms", "300", NULL),
                                            th_policy("{\"health\": {\"timeout_ms\": 100}}")));
        json_t *s;

        assert_true(f->done_ok);
        th_wait_state(f, "hung", "r0", "backoff");
        s = snap(r);
        assert_string_equal(snap_str(s, "last_error_class"), "health_timeout");
        assert_non_null(strstr(snap_str(s, "last_error"), "timed out"));
        json_decref(s);
}

static bool backoff_seen(void *fixture, const void *arg) {
        fx *f = fixture;
        json_int_t *seq = (json_int_t *) arg;      /* filled in while waiting */
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
        th_preload(f, th_add(f, fake_spec("loop", "--exit-after-ms", "20", "--exit-code", "3",
                                          "--never-ready", NULL),
                             th_policy("{\"breaker\": {\"threshold\": 10}}")));
        assert_false(f->done_ok);
        th_node_until(f, backoff_seen, seq, TH_WAIT_MS);
        assert_int_equal(seq[0], 50);
        assert_int_equal(seq[1], 100);
        assert_int_equal(seq[2], 200);
        assert_int_equal(seq[3], 400);
}

static void test_breaker_opens_then_half_opens(void **state) {
        fx *f = *state;
        ps_replica *r;
        json_t *s, *b;

        r = th_preload(f, th_add(f, fake_spec("brk", "--exit-after-ms", "20", "--exit-code", "3",
                                              "--never-ready", NULL),
                                 th_policy("{\"breaker\": {\"threshold\": 2, \"open_ms\": 500}}")));
        th_wait_state(f, "brk", "r0", "failed");
        s = snap(r);
        b = json_object_get(s, "breaker");
        assert_string_equal(json_string_value(json_object_get(b, "state")), "open");
        assert_int_equal(json_integer_value(json_object_get(b, "opens")), 1);
        assert_true(json_is_integer(json_object_get(b, "open_until")));
        json_decref(s);
        assert_true(th_node_seen(f, "breaker opened") >= 1);

        /* the open period ends: exactly one trial */
        th_wait_state(f, "brk", "r0", "preloading");
        s = snap(r);
        b = json_object_get(s, "breaker");
        assert_string_equal(json_string_value(json_object_get(b, "state")), "half_open");
        json_decref(s);
        /* the trial fails: open again, period doubled */
        th_wait_state(f, "brk", "r0", "failed");
}

/* What the breaker lines said, and where the trial spawns fell among them:
 * "open>half_open/2", "spawned". The log lines the daemon would write
 * for the transitions are kept as well. */
typedef struct breaker_log {
        char seen[32][48];
        size_t n;
        ps_logger *logger;
        char *text;
        size_t len;
        FILE *out;
} breaker_log;

static const ps_field *event_field(const ps_event *ev, const char *key) {
        for (size_t i = 0; i < ev->n_fields; i++)
                if (ev->fields[i].key && strcmp(ev->fields[i].key, key) == 0)
                        return &ev->fields[i];
        return NULL;
}

static void keep_breaker_lines(const ps_event *ev, void *userdata) {
        breaker_log *b = userdata;
        const ps_field *from, *to, *count;

        if (b->n == sizeof(b->seen) / sizeof(b->seen[0]))
                return;
        if (strcmp(ev->message, "engine spawned") == 0) {
                snprintf(b->seen[b->n++], sizeof(b->seen[0]), "spawned");
                return;
        }
        if (strcmp(ev->message, "breaker transition") != 0)
                return;
        from = event_field(ev, "old_state");
        to = event_field(ev, "new_state");
        count = event_field(ev, "failure_count");
        assert_non_null(from);
        assert_non_null(to);
        assert_non_null(count);
        assert_int_equal(count->type, PS_FIELD_TYPE_INTEGER);
        assert_string_equal(ev->pool_id, "trans");
        assert_string_equal(ev->replica_id, "r0");
        snprintf(b->seen[b->n++], sizeof(b->seen[0]), "%s>%s/%lld", from->str, to->str,
                 (long long) count->integer);
        assert_int_equal(ps_logger_log_event(b->logger, ev), 0);
}

static bool trial_failed(void *fixture, const void *arg) {
        const breaker_log *b = arg;

        (void) fixture;
        for (size_t i = 0; i < b->n; i++)
                if (strncmp(b->seen[i], "half_open>open/", 15) == 0)
                        return true;
        return false;
}

static void test_breaker_transitions_are_logged_one_line_each(void **state) {
        fx *f = *state;
        breaker_log b = { .n = 0 };
        size_t i = 0;

        b.out = open_memstream(&b.text, &b.len);
        assert_non_null(b.out);
        b.logger = ps_logger_new(b.out, PS_LOG_DEBUG, NULL);
        assert_non_null(b.logger);
        f->also = (ps_event_sink) { .fn = keep_breaker_lines, .userdata = &b };
        th_preload(f, th_add(f, fake_spec("trans", "--exit-after-ms", "20", "--exit-code", "3",
                                          "--never-ready", NULL),
                             th_policy("{\"breaker\": {\"threshold\": 2, \"open_ms\": 300}}")));
        th_node_until(f, trial_failed, &b, TH_WAIT_MS);
        f->also = (ps_event_sink) { 0 };

        /* two spawns, the second failure opens it */
        assert_true(b.n >= 6);
        assert_string_equal(b.seen[i++], "spawned");
        assert_string_equal(b.seen[i++], "spawned");
        assert_string_equal(b.seen[i++], "closed>open/2");
        /* the period ends: the turn is logged before the trial starts */
        assert_string_equal(b.seen[i++], "open>half_open/2");
        assert_string_equal(b.seen[i++], "spawned");
        assert_string_equal(b.seen[i++], "half_open>open/3");

        ps_logger_free(b.logger);
        fclose(b.out);
        assert_non_null(strstr(b.text, "\"msg\":\"breaker transition\",\"pool_id\":\"trans\","
                                       "\"replica_id\":\"r0\",\"old_state\":\"open\","
                                       "\"new_state\":\"half_open\",\"failure_count\":2"));
        free(b.text);
}

static bool crashes_back_to_zero(void *fixture, const void *arg) {
        fx *f = fixture;
        ps_replica *r = ps_registry_find(f->reg, arg, "r0");

        return r && ps_replica_ready(r) && ps_replica_crash_count(r) == 0;
}

static void test_stable_run_zeroes_crash_count_keeps_restart_count(void **state) {
        fx *f = *state;
        uint16_t port = th_free_port();
        ps_replica *r;
        ps_engine_spec *healthy;
        json_t *s, *pool;

        /* crashes once it served for a while; the window is far longer
         * than the test */
        r = th_preload(f, th_add(f, th_fake_spec("stable", "r0", port, 2, "--exit-after-ms", "300",
                                                "--exit-code", "3", NULL),
                                 th_policy("{\"backoff\": {\"stable_reset_ms\": 400},"
                                           " \"storm\": {\"window_ms\": 3600000}}")));
        assert_true(f->done_ok);
        th_wait_state(f, "stable", "r0", "backoff");
        assert_int_equal(ps_replica_crash_count(r), 1);
        s = snap(r);
        assert_int_equal(snap_int(s, "restarts_in_window"), 1);    /* the one scheduled */
        json_decref(s);

        /* the restart runs an engine that stays up */
        healthy = th_fake_spec("stable", "r0", port, 2, NULL);
        assert_int_equal(ps_replica_set_spec(r, healthy, NULL, 0), 0);
        ps_engine_spec_free(healthy);
        th_wait_state(f, "stable", "r0", "ready");
        assert_int_equal(ps_replica_crash_count(r), 1);
        th_node_until(f, crashes_back_to_zero, "stable", TH_WAIT_MS);
        assert_int_equal(ps_replica_crash_count(r), 0);
        assert_int_equal(ps_replica_restart_count(r), 1);

        s = snap(r);
        assert_int_equal(snap_int(s, "crash_count"), 0);
        assert_int_equal(snap_int(s, "restart_count"), 1);
        assert_int_equal(snap_int(s, "restarts_in_window"), 1);
        json_decref(s);
        pool = ps_registry_pool_snapshot(f->reg, "stable");
        assert_non_null(pool);
        assert_int_equal(snap_int(pool, "crash_count"), 0);
        assert_int_equal(snap_int(pool, "restart_count"), 1);
        assert_int_equal(snap_int(pool, "restarts_in_window"), 1);
        json_decref(pool);
}

static void test_restarts_in_window_summed_per_pool(void **state) {
        fx *f = *state;
        const char *pol = "{\"breaker\": {\"threshold\": 100}, \"storm\": {\"window_ms\": 3600000}}";
        ps_replica *a, *b;
        json_t *s, *pool, *replicas;
        json_int_t sum = 0;

        a = th_add(f, th_fake_spec("win", "r0", 0, 1, "--exit-after-ms", "20", "--exit-code", "3",
                                   "--never-ready", NULL), th_policy(pol));
        b = th_add(f, th_fake_spec("win", "r1", 0, 1, NULL), th_policy(pol));
        th_preload(f, b);
        assert_true(f->done_ok);
        th_preload(f, a);
        assert_false(f->done_ok);
        th_wait_state(f, "win", "r0", "backoff");

        s = snap(a);
        assert_int_equal(snap_int(s, "restarts_in_window"), (json_int_t) ps_replica_crash_count(a));
        assert_true(snap_int(s, "restarts_in_window") >= 1);
        json_decref(s);
        s = snap(b);
        assert_int_equal(snap_int(s, "restarts_in_window"), 0);
        json_decref(s);

        pool = ps_registry_pool_snapshot(f->reg, "win");
        assert_non_null(pool);
        replicas = json_object_get(pool, "replicas");
        assert_int_equal(json_array_size(replicas), 2);
        for (size_t i = 0; i < json_array_size(replicas); i++) {
                json_t *v = json_object_get(json_array_get(replicas, i), "restarts_in_window");

                assert_true(json_is_integer(v));
                sum += json_integer_value(v);
        }
        assert_true(sum >= 1);
        assert_int_equal(snap_int(pool, "restarts_in_window"), sum);
        json_decref(pool);
}

static void test_storm_opens_breaker_with_alert(void **state) {
        fx *f = *state;

        th_preload(f, th_add(f, fake_spec("storm", "--exit-after-ms", "10", "--exit-code", "3",
                                          "--never-ready", NULL),
                             th_policy("{\"backoff\": {\"initial_ms\": 10, \"max_ms\": 10},"
                                       " \"breaker\": {\"threshold\": 100},"
                                       " \"storm\": {\"limit\": 4, \"window_ms\": 20000,"
                                       " \"burst_window_ms\": 10000, \"warn_above\": 2}}")));
        th_wait_state(f, "storm", "r0", "failed");
        assert_true(th_node_seen(f, "restart storm") >= 1);
}

static void test_sigterm_ignored_means_sigkill_after_grace(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("stubborn", "--ignore-sigterm", NULL),
                                            th_policy("{\"stop_grace_ms\": 300}")));
        char path[PATH_MAX];
        int pid = ps_replica_pid(r);

        assert_true(f->done_ok);
        assert_int_equal(ps_replica_stop(r, NULL, 0), 0);
        assert_string_equal(ps_replica_state(r), "stopping");
        th_wait_state(f, "stubborn", "r0", "stopped");
        assert_true(th_node_seen(f, "stop grace over") >= 1);
        assert_int_equal(ps_replica_crash_count(r), 0);
        assert_int_equal(kill(pid, 0), -1);
        snprintf(path, sizeof(path), "%s/stubborn_r0.pid", f->dir);
        assert_false(th_file_exists(path));
        snprintf(path, sizeof(path), "%s/engines/stubborn_r0.json", f->dir);
        assert_false(th_file_exists(path));
}

static void test_stop_without_engine_says_so(void **state) {
        fx *f = *state;
        ps_replica *r = th_add(f, fake_spec("idle", NULL), th_policy(NULL));
        char err[256];

        assert_int_equal(ps_replica_stop(r, err, sizeof(err)), PS_E_NOT_RUNNING);
        assert_non_null(strstr(err, "has no engine to stop"));
}

static void test_preload_twice_is_a_conflict(void **state) {
        fx *f = *state;
        ps_replica *r = th_preload(f, th_add(f, fake_spec("twice", NULL), th_policy(NULL)));
        char err[256];

        assert_true(f->done_ok);
        assert_int_equal(th_preload_start(f, r, err, sizeof(err)), PS_E_CONFLICT);
        assert_non_null(strstr(err, "already running"));
}

static void test_manual_restart_and_breaker_reset(void **state) {
        fx *f = *state;
        ps_replica *r;

        r = th_preload(f, th_add(f, fake_spec("manual", "--exit-after-ms", "20", "--exit-code", "3",
                                              "--never-ready", NULL),
                                 th_policy("{\"breaker\": {\"threshold\": 1, \"open_ms\": 60000}}")));
        th_wait_state(f, "manual", "r0", "failed");
        assert_int_equal(ps_replica_restart(r, NULL, 0), 0);     /* past the open breaker */
        assert_string_equal(ps_replica_state(r), "preloading");
        th_wait_state(f, "manual", "r0", "failed");
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

/* ---- the answers: typed, whatever the engine says ---------------------- */

/* A model path that an engine refusing it repeats in its last log line:
 * the words of every other outcome, none of them true. */
#define MISLEADING_MODEL "/nonexistent/health check failed: preflight failed: GPU-only " \
                         "enforcement; drain timeout; staging failed; rollback failed; stopped.gguf"

typedef struct reload_answer {
        bool done;
        int rc;
        char reason[64];
        char message[512];
} reload_answer;

static void on_reloaded(int rc, const char *message, const json_t *result, void *userdata) {
        reload_answer *a = userdata;
        const char *reason = json_string_value(json_object_get(result, "reason"));

        a->done = true;
        a->rc = rc;
        snprintf(a->reason, sizeof(a->reason), "%s", reason ? reason : "");
        snprintf(a->message, sizeof(a->message), "%s", message ? message : "");
}

static void test_answers_are_codes_not_words(void **state) {
        fx *f = *state;
        const char *flags[] = { "--port", "{port}", "-m", MISLEADING_MODEL };
        ps_reload_request req = { .flags = flags, .n_flags = 4, .drain_deadline_ms = 5000 };
        reload_answer answer = { 0 };
        char model[PATH_MAX], err[256];
        ps_engine_spec *spec;

        /* preloads: the engine's words are shown, the code is what happened */
        th_preload(f, th_add(f, fake_spec("words", "-m", MISLEADING_MODEL, NULL), th_policy(NULL)));
        assert_false(f->done_ok);
        assert_int_equal(f->done_rc, PS_E_START_FAILED);
        assert_non_null(strstr(f->done_text, "exited with code 1"));
        assert_non_null(strstr(f->done_text, "drain timeout"));

        th_preload(f, th_add(f, fake_spec("late", "--never-ready", NULL),
                             th_policy("{\"health\": {\"startup_timeout_ms\": 300}}")));
        assert_int_equal(f->done_rc, PS_E_HEALTH_CHECK);

        spec = fake_spec("nobinary", NULL);
        free(spec->binary_path);
        spec->binary_path = strdup("/nonexistent/health check failed");
        th_preload(f, th_add(f, spec, th_policy(NULL)));
        assert_int_equal(f->done_rc, PS_E_START_FAILED);

        /* a reload whose new engine says the same words is rolled back: its
         * reason is how that engine exited, not a drain timeout, a staging
         * failure or a health check */
        th_preload(f, th_add(f, fake_spec("rw", NULL), th_policy(NULL)));
        assert_int_equal(f->done_rc, 0);
        snprintf(model, sizeof(model), "%s/model-b.gguf", f->dir);
        th_write_file(model, "model b");
        req.model_path = model;
        if (ps_pool_reload(f->reg, "rw", &req, on_reloaded, &answer, err, sizeof(err)) != 0)
                fail_msg("reload: %s", err);
        th_node_until(f, th_flag_set, &answer.done, TH_WAIT_MS);
        assert_true(answer.done);
        assert_int_equal(answer.rc, PS_E_RELOAD_FAILED);
        assert_string_equal(answer.reason, "exit_code");
        assert_non_null(strstr(answer.message, "drain timeout"));
        assert_non_null(strstr(answer.message, "exited with code 1"));
        th_wait_state(f, "rw", "r0", "ready");
}

#define T(name) cmocka_unit_test_setup_teardown(name, th_node_setup, th_node_teardown)

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
                T(test_stopped_engine_ends_on_sigterm_not_the_grace),
                T(test_cuda_error_line_is_cuda_error_with_double_backoff),
                T(test_vram_oom_exit_is_vram_oom),
                T(test_unhealthy_engine_is_restarted),
                T(test_hung_engine_times_out),
                T(test_backoff_sequence_doubles),
                T(test_breaker_opens_then_half_opens),
                T(test_breaker_transitions_are_logged_one_line_each),
                T(test_stable_run_zeroes_crash_count_keeps_restart_count),
                T(test_restarts_in_window_summed_per_pool),
                T(test_storm_opens_breaker_with_alert),
                T(test_sigterm_ignored_means_sigkill_after_grace),
                T(test_stop_without_engine_says_so),
                T(test_preload_twice_is_a_conflict),
                T(test_manual_restart_and_breaker_reset),
                T(test_register_ready_from_handoff),
                T(test_answers_are_codes_not_words),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
