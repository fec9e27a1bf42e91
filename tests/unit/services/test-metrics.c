/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pool-services/base/event.h"
#include "pool-services/cloud/handoff-watch.h"
#include "pool-services/observe/metrics.h"
#include "pool-services/supervise/replica.h"
#include "observe-event.h"
#include "status-fixture.h"

/* ---- helpers ------------------------------------------------------------ */

#define EVENT(m, type_, pool, ...) EVENT_OF(m, type_, pool, "r0", __VA_ARGS__)
/* An event about the whole pool (drains and reloads are counted so). */
#define POOL_EVENT(m, type_, pool, ...) EVENT_OF(m, type_, pool, NULL, __VA_ARGS__)

#define EVENT_OF OBSERVE_EVENT

/* fd_limit, process_limit, disk_full, memory, runtime_dir */
#define NODE_ERROR_KINDS 5

static void event_bare(ps_metrics *m, ps_event_type type, const char *pool_id) {
        const ps_event ev = { .type = type, .pool_id = pool_id, .replica_id = "r0", .message = "test" };

        ps_metrics_observe(m, &ev);
}

static json_t *load(const char *text) {
        json_error_t error;
        json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &error);

        if (!j)
                fail_msg("fixture: %s at line %d: %s", error.text, error.line, text);
        return j;
}

/* A pool as the registry's status shows it, in the API's JSON shape
 * (status-fixture.h); fields that a test changes are arguments. */
static json_t *pool_json(const char *pool_id, const char *state, bool ready, int slots,
                         int slots_free, int leases, int backoff_ms, const char *breaker) {
        json_t *p = json_pack("{s:s, s:s, s:b, s:b, s:b, s:i, s:i, s:i, s:i, s:i, s:i,"
                              " s:{s:s, s:i, s:i, s:n}, s:[{s:s, s:s}]}",
                              "pool_id", pool_id, "state", state, "live", ready, "ready", ready,
                              "draining", 0, "slots_total", slots, "slots_free", slots_free,
                              "active_leases", leases, "restart_count", 0, "crash_count", 0,
                              "backoff_ms", backoff_ms,
                              "breaker", "state", breaker, "failures", 0, "opens", 0, "open_until",
                              "replicas", "replica_id", "r0", "state", state);

        assert_non_null(p);
        return p;
}

static json_t *snapshot_of(json_t *pool, ...) {
        json_t *pools = json_array();
        va_list ap;

        assert_non_null(pools);
        va_start(ap, pool);
        for (json_t *p = pool; p; p = va_arg(ap, json_t *))
                assert_int_equal(json_array_append_new(pools, p), 0);
        va_end(ap);
        return json_pack("{s:o}", "pools", pools);
}

/* Renders the status a snapshot-shaped fixture describes. */
static char *render(ps_metrics *m, const json_t *snapshot, const json_t *devices) {
        ps_registry_status *status = status_fixture(snapshot);
        char *text = ps_metrics_render(m, status, devices);

        status_fixture_free(status);

        assert_non_null(text);
        return text;
}

/* Is line one whole line of text? */
static bool has_line(const char *text, const char *line) {
        size_t n = strlen(line);

        for (const char *p = text; (p = strstr(p, line)); p++)
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return true;
        return false;
}

#define assert_line(text, line)                                                \
        do {                                                                   \
                if (!has_line((text), (line)))                                 \
                        fail_msg("missing line: %s\n--- output ---\n%s", (line), (text)); \
        } while (0)

#define assert_no_line(text, line)                                             \
        do {                                                                   \
                if (has_line((text), (line)))                                  \
                        fail_msg("unexpected line: %s", (line));               \
        } while (0)

/* Lines that start with prefix. */
static size_t count_prefix(const char *text, const char *prefix) {
        size_t n = 0, len = strlen(prefix);

        for (const char *p = text; *p;) {
                if (strncmp(p, prefix, len) == 0)
                        n++;
                p = strchr(p, '\n');
                if (!p)
                        break;
                p++;
        }
        return n;
}

/* Byte offset of a whole line; fails when absent. */
static size_t line_at(const char *text, const char *line) {
        size_t n = strlen(line);

        for (const char *p = text; (p = strstr(p, line)); p++)
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return (size_t) (p - text);
        fail_msg("missing line: %s", line);
        return 0;
}

/*
 * The exposition rules: every family has exactly one HELP and one TYPE
 * line, in that order, and all its samples follow them before the next
 * family. Returns the number of families.
 */
static size_t check_structure(const char *text) {
        char family[256] = "", kind[32] = "", name[256];
        char (*seen)[256] = NULL;
        size_t n_seen = 0;
        const char *p = text;

        assert_true(text[0] != '\0');
        assert_int_equal(text[strlen(text) - 1], '\n');
        while (*p) {
                const char *end = strchr(p, '\n');
                size_t len = (size_t) (end - p);

                assert_non_null(end);
                assert_true(len > 0);
                if (strncmp(p, "# HELP ", 7) == 0) {
                        assert_int_equal(sscanf(p + 7, "%255s", family), 1);
                        for (size_t i = 0; i < n_seen; i++)
                                if (strcmp(seen[i], family) == 0)
                                        fail_msg("family %s appears twice", family);
                        seen = realloc(seen, (n_seen + 1) * sizeof(*seen));
                        assert_non_null(seen);
                        memcpy(seen[n_seen++], family, sizeof(family));
                        /* TYPE right after HELP */
                        assert_int_equal(strncmp(end + 1, "# TYPE ", 7), 0);
                        assert_int_equal(sscanf(end + 8, "%255s %31s", name, kind), 2);
                        assert_string_equal(name, family);
                        end = strchr(end + 1, '\n');
                } else {
                        size_t k = strcspn(p, "{ ");
                        size_t f = strlen(family);

                        assert_true(p[0] != '#');
                        assert_true(k < sizeof(name));
                        memcpy(name, p, k);
                        name[k] = '\0';
                        if (strcmp(name, family) != 0) {
                                bool part = strcmp(kind, "histogram") == 0 && strncmp(name, family, f) == 0 &&
                                            (strcmp(name + f, "_bucket") == 0 || strcmp(name + f, "_sum") == 0 ||
                                             strcmp(name + f, "_count") == 0);

                                if (!part)
                                        fail_msg("sample %s outside its family %s", name, family);
                        }
                }
                p = end + 1;
        }
        free(seen);
        return n_seen;
}

/* ---- tests -------------------------------------------------------------- */

static void test_null_arguments(void **state) {
        (void) state;
        assert_null(ps_metrics_free(NULL));
        ps_metrics_observe(NULL, NULL);
        assert_null(ps_metrics_render(NULL, NULL, NULL));
        assert_int_equal(ps_metrics_set_version(NULL, "1"), -EINVAL);

        ps_metrics *m = ps_metrics_new();
        assert_non_null(m);
        assert_int_equal(ps_metrics_set_version(m, NULL), -EINVAL);
        ps_metrics_observe(m, NULL);
        assert_null(ps_metrics_free(m));
}

static void test_empty_node(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *snap = load("{\"pools\": []}");
        char *text;

        (void) state;
        text = render(m, snap, NULL);
        assert_line(text, "pool_managerd_build_info{version=\"unknown\"} 1");
        assert_line(text, "# TYPE pool_managerd_build_info gauge");
        assert_line(text, "# TYPE pool_managerd_engine_crashes_total counter");
        assert_line(text, "# TYPE pool_managerd_engine_startup_seconds histogram");
        assert_line(text, "# TYPE pool_managerd_gpu_vram_free_bytes gauge");
        /* every family is there, without pools: only build_info and the
         * node's handoff refusals and node errors (each at 0) have samples */
        assert_int_equal(count_prefix(text, "pool_managerd_"), 1 + PS_HANDOFF_REFUSAL_MAX + NODE_ERROR_KINDS);
        assert_line(text, "pool_managerd_handoff_refusals_total{reason=\"managed_pool\"} 0");
        assert_int_equal(check_structure(text), 45);
        free(text);

        assert_int_equal(ps_metrics_set_version(m, "1.2.3"), 0);
        text = render(m, NULL, NULL);
        assert_line(text, "pool_managerd_build_info{version=\"1.2.3\"} 1");
        free(text);
        json_decref(snap);
        ps_metrics_free(m);
}

static void test_counters_from_events(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *snap = snapshot_of(pool_json("a", "ready", true, 4, 4, 0, 0, "closed"), NULL);
        char *text;

        (void) state;
        EVENT(m, PS_EVENT_ENGINE_SPAWNED, "a", PS_FIELD_INT("pid", 10));
        EVENT(m, PS_EVENT_SPAWN_FAILED, "a", PS_FIELD_STR("error", "ENOENT"));
        EVENT(m, PS_EVENT_ENGINE_EXITED, "a", PS_FIELD_STR("signal", "SIGSEGV"), PS_FIELD_BOOL("expected", false));
        EVENT(m, PS_EVENT_ENGINE_EXITED, "a", PS_FIELD_INT("exit_code", 0), PS_FIELD_BOOL("expected", false));
        EVENT(m, PS_EVENT_ENGINE_EXITED, "a", PS_FIELD_INT("exit_code", 0), PS_FIELD_BOOL("expected", false));
        EVENT(m, PS_EVENT_ENGINE_EXITED, "a", PS_FIELD_INT("exit_code", 0), PS_FIELD_BOOL("expected", true));
        EVENT(m, PS_EVENT_ENGINE_EXITED, "a", PS_FIELD_INT("exit_code", 1), PS_FIELD_BOOL("expected", false));
        /* without the field it says nothing */
        EVENT(m, PS_EVENT_ENGINE_EXITED, "a", PS_FIELD_INT("exit_code", 0));
        EVENT(m, PS_EVENT_ENGINE_FAILED, "a", PS_FIELD_STR("class", "signal"));
        EVENT(m, PS_EVENT_ENGINE_FAILED, "a", PS_FIELD_STR("class", "signal"));
        EVENT(m, PS_EVENT_ENGINE_FAILED, "a", PS_FIELD_STR("class", "vram_oom"));
        EVENT(m, PS_EVENT_RESTART_SCHEDULED, "a", PS_FIELD_INT("backoff_ms", 1000), PS_FIELD_INT("next_restart_at", 5));
        EVENT(m, PS_EVENT_RESTART_SCHEDULED, "a", PS_FIELD_INT("backoff_ms", 2000), PS_FIELD_INT("next_restart_at", 6));
        EVENT(m, PS_EVENT_READY, "a", PS_FIELD_INT("startup_ms", 1200));
        EVENT(m, PS_EVENT_STATE_CHANGED, "a", PS_FIELD_STR("from", "ready"), PS_FIELD_STR("state", "draining"));
        EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "storm_warning"));
        EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "throttled"));
        EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "storm"), PS_FIELD_STR("storm", "oom_storm"));
        EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "breaker_opened"));
        EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "breaker_closed"));
        EVENT(m, PS_EVENT_PROBE_FAILED, "a", PS_FIELD_STR("detail", "timeout"));
        EVENT(m, PS_EVENT_PROBE_FAILED, "a", PS_FIELD_STR("detail", "timeout"));
        EVENT(m, PS_EVENT_ENGINE_LOG_ERROR, "a", PS_FIELD_STR("class", "cuda_error"));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "preload"), PS_FIELD_BOOL("ok", true));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "preload"), PS_FIELD_BOOL("ok", false));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "preload"), PS_FIELD_BOOL("ok", false));
        POOL_EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "drain"), PS_FIELD_BOOL("ok", true),
              PS_FIELD_BOOL("force_stopped", false));
        POOL_EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "reload"), PS_FIELD_BOOL("ok", false),
                   PS_FIELD_STR("reason", "drain_timeout"));
        POOL_EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "drain"), PS_FIELD_BOOL("ok", true),
                   PS_FIELD_BOOL("force_stopped", true));
        /* a replica's own answer to a drain or reload is not counted again */
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "drain"), PS_FIELD_BOOL("ok", true));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "reload"), PS_FIELD_BOOL("ok", true));
        EVENT(m, PS_EVENT_LEASE, "a", PS_FIELD_STR("lease", "granted"));
        EVENT(m, PS_EVENT_LEASE, "a", PS_FIELD_STR("lease", "granted"));
        EVENT(m, PS_EVENT_LEASE, "a", PS_FIELD_STR("lease", "released"));
        EVENT(m, PS_EVENT_LEASE, "a", PS_FIELD_STR("lease", "expired"));
        EVENT(m, PS_EVENT_LEASE, "a", PS_FIELD_STR("lease", "dropped"), PS_FIELD_INT("leases", 3));
        EVENT(m, PS_EVENT_LEASE, "a", PS_FIELD_STR("lease", "refused"), PS_FIELD_STR("reason", "no_slot"));
        text = render(m, snap, NULL);

        assert_line(text, "pool_managerd_engine_spawns_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_spawn_failures_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"a\",reason=\"signal\"} 2");
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"a\",reason=\"vram_oom\"} 1");
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"a\",reason=\"exit_code\"} 0");
        assert_line(text, "pool_managerd_engine_exits_total{pool_id=\"a\",kind=\"unrequested\"} 2");
        assert_line(text, "pool_managerd_engine_exits_total{pool_id=\"a\",kind=\"requested\"} 1");
        assert_line(text, "pool_managerd_engine_exits_total{pool_id=\"a\",kind=\"failed\"} 2");
        assert_line(text, "pool_managerd_restarts_scheduled_total{pool_id=\"a\"} 2");
        assert_line(text, "pool_managerd_ready_transitions_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_storm_warnings_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_restarts_throttled_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_restart_storms_total{pool_id=\"a\",kind=\"oom_storm\"} 1");
        assert_line(text, "pool_managerd_restart_storms_total{pool_id=\"a\",kind=\"crash_storm\"} 0");
        assert_line(text, "pool_managerd_breaker_opens_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_probe_failures_total{pool_id=\"a\"} 2");
        assert_line(text, "pool_managerd_engine_log_errors_total{pool_id=\"a\",class=\"cuda_error\"} 1");
        assert_line(text, "pool_managerd_engine_log_errors_total{pool_id=\"a\",class=\"vram_oom\"} 0");
        assert_line(text, "pool_managerd_preloads_total{pool_id=\"a\",outcome=\"success\"} 1");
        assert_line(text, "pool_managerd_preloads_total{pool_id=\"a\",outcome=\"failure\"} 2");
        assert_line(text, "pool_managerd_drains_total{pool_id=\"a\",outcome=\"drained\"} 1");
        assert_line(text, "pool_managerd_drains_total{pool_id=\"a\",outcome=\"force_stopped\"} 1");
        assert_line(text, "pool_managerd_drains_total{pool_id=\"a\",outcome=\"failure\"} 0");
        assert_line(text, "pool_managerd_reloads_total{pool_id=\"a\",outcome=\"failure\"} 1");
        assert_line(text, "pool_managerd_reloads_total{pool_id=\"a\",outcome=\"success\"} 0");
        assert_line(text, "pool_managerd_reload_failures_total{pool_id=\"a\",reason=\"drain_timeout\"} 1");
        assert_line(text, "pool_managerd_reload_failures_total{pool_id=\"a\",reason=\"health\"} 0");
        assert_line(text, "pool_managerd_leases_granted_total{pool_id=\"a\"} 2");
        assert_line(text, "pool_managerd_leases_released_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_leases_expired_total{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_leases_dropped_total{pool_id=\"a\"} 3");
        assert_line(text, "pool_managerd_lease_refusals_total{pool_id=\"a\",reason=\"no_slot\"} 1");
        assert_line(text, "pool_managerd_lease_refusals_total{pool_id=\"a\",reason=\"draining\"} 0");
        assert_line(text, "pool_managerd_driver_resets_total{pool_id=\"a\"} 0");
        /* no duration in the events: no request histogram series */
        assert_int_equal(count_prefix(text, "pool_managerd_request_duration_seconds"), 0);
        check_structure(text);
        free(text);
        json_decref(snap);
        ps_metrics_free(m);
}

/* A pool known only from the snapshot shows every counter at 0. */
static void test_known_pool_starts_at_zero(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *snap = snapshot_of(pool_json("fresh", "empty", false, 0, 0, 0, 0, "closed"), NULL);
        char *text;

        (void) state;
        text = render(m, snap, NULL);
        assert_line(text, "pool_managerd_preloads_total{pool_id=\"fresh\",outcome=\"failure\"} 0");
        assert_line(text, "pool_managerd_preloads_total{pool_id=\"fresh\",outcome=\"success\"} 0");
        assert_line(text, "pool_managerd_ready_transitions_total{pool_id=\"fresh\"} 0");
        /* an exit 0 is no crash: no graceful series */
        assert_null(strstr(text, "reason=\"graceful\""));
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"fresh\",reason=\"exit_code\"} 0");
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"fresh\",reason=\"preflight\"} 0");
        assert_int_equal(count_prefix(text, "pool_managerd_engine_crashes_total{pool_id=\"fresh\""), 10);
        assert_int_equal(count_prefix(text, "pool_managerd_restart_storms_total{pool_id=\"fresh\""), 7);
        assert_int_equal(count_prefix(text, "pool_managerd_engine_exits_total{pool_id=\"fresh\""), 3);
        assert_int_equal(count_prefix(text, "pool_managerd_engine_log_errors_total{pool_id=\"fresh\""), 3);
        assert_line(text, "pool_managerd_restart_storms_total{pool_id=\"fresh\",kind=\"preflight_storm\"} 0");
        assert_line(text, "pool_managerd_probe_failures_total{pool_id=\"fresh\"} 0");
        assert_line(text, "pool_managerd_engine_startup_seconds_count{pool_id=\"fresh\"} 0");
        free(text);
        json_decref(snap);
        ps_metrics_free(m);
}

static void test_help_type_once_with_many_pools(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *pools = json_array();
        json_t *snap;
        char id[32], *text, line[128];

        (void) state;
        for (int i = 0; i < 40; i++) {
                snprintf(id, sizeof(id), "pool-%02d", i);
                assert_int_equal(json_array_append_new(pools, pool_json(id, "ready", true, 2, 1, 1, 0, "closed")), 0);
                EVENT(m, PS_EVENT_ENGINE_FAILED, id, PS_FIELD_STR("class", "signal"));
                EVENT(m, PS_EVENT_READY, id, PS_FIELD_INT("startup_ms", 100 * i));
                POOL_EVENT(m, PS_EVENT_REQUEST_DONE, id, PS_FIELD_STR("request", "drain"), PS_FIELD_BOOL("ok", true),
                      PS_FIELD_INT("duration_ms", 10 * i));
        }
        snap = json_pack("{s:o}", "pools", pools);
        text = render(m, snap, NULL);
        assert_int_equal(check_structure(text), 45);
        assert_int_equal(count_prefix(text, "# HELP pool_managerd_engine_crashes_total "), 1);
        assert_int_equal(count_prefix(text, "# TYPE pool_managerd_engine_crashes_total "), 1);
        assert_int_equal(count_prefix(text, "# TYPE pool_managerd_pool_ready "), 1);
        assert_int_equal(count_prefix(text, "pool_managerd_pool_ready{"), 40);
        assert_int_equal(count_prefix(text, "pool_managerd_engine_crashes_total{"), 40 * 10);
        snprintf(line, sizeof(line), "pool_managerd_engine_crashes_total{pool_id=\"pool-39\",reason=\"signal\"} 1");
        assert_line(text, line);
        free(text);
        json_decref(snap);
        ps_metrics_free(m);
}

static void test_label_escaping(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *snap = load("{\"pools\": [{\"pool_id\": \"a\", \"state\": \"ready\", \"replicas\": ["
                            "{\"replica_id\": \"r \\\"q\\\" \\\\ \\n\", \"state\": \"ready\"}]}]}");
        char *text;

        (void) state;
        assert_int_equal(ps_metrics_set_version(m, "v\"1\\\n"), 0);
        EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "storm"), PS_FIELD_STR("storm", "x\"y\\z\nw"));
        text = render(m, snap, NULL);
        assert_line(text, "pool_managerd_build_info{version=\"v\\\"1\\\\\\n\"} 1");
        assert_line(text, "pool_managerd_restart_storms_total{pool_id=\"a\",kind=\"x\\\"y\\\\z\\nw\"} 1");
        assert_line(text, "pool_managerd_replica_state{pool_id=\"a\",replica_id=\"r \\\"q\\\" \\\\ \\n\",state=\"ready\"} 1");
        check_structure(text);
        free(text);
        json_decref(snap);
        ps_metrics_free(m);
}

static void test_counters_survive_pool_removal(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *both = snapshot_of(pool_json("a", "ready", true, 4, 2, 2, 0, "closed"),
                                   pool_json("b", "ready", true, 1, 1, 0, 0, "closed"), NULL);
        json_t *only_b = snapshot_of(pool_json("b", "ready", true, 1, 1, 0, 0, "closed"), NULL);
        char *text;

        (void) state;
        text = render(m, both, NULL);
        assert_line(text, "pool_managerd_pool_active_leases{pool_id=\"a\"} 2");
        free(text);
        EVENT(m, PS_EVENT_ENGINE_FAILED, "a", PS_FIELD_STR("class", "exit_code"));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "preload"), PS_FIELD_BOOL("ok", true));

        text = render(m, only_b, NULL);
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"a\",reason=\"exit_code\"} 1");
        assert_line(text, "pool_managerd_preloads_total{pool_id=\"a\",outcome=\"success\"} 1");
        assert_line(text, "pool_managerd_ready_transitions_total{pool_id=\"a\"} 0");
        assert_line(text, "pool_managerd_engine_startup_seconds_count{pool_id=\"a\"} 0");
        /* its gauges are gone */
        assert_int_equal(count_prefix(text, "pool_managerd_pool_ready{pool_id=\"a\"}"), 0);
        assert_int_equal(count_prefix(text, "pool_managerd_pool_state{pool_id=\"a\""), 0);
        assert_int_equal(count_prefix(text, "pool_managerd_breaker_state{pool_id=\"a\""), 0);
        assert_int_equal(count_prefix(text, "pool_managerd_pool_active_leases{pool_id=\"a\"}"), 0);
        assert_line(text, "pool_managerd_pool_ready{pool_id=\"b\"} 1");
        free(text);

        /* a pool that existed only in a snapshot keeps its zeros too */
        text = render(m, NULL, NULL);
        assert_line(text, "pool_managerd_probe_failures_total{pool_id=\"b\"} 0");
        assert_int_equal(count_prefix(text, "pool_managerd_pool_ready{"), 0);
        free(text);
        json_decref(both);
        json_decref(only_b);
        ps_metrics_free(m);
}

static void test_gauges_follow_snapshot(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *before = snapshot_of(pool_json("a", "ready", true, 4, 3, 1, 0, "closed"), NULL);
        json_t *after = snapshot_of(pool_json("a", "backoff", false, 4, 0, 0, 1500, "open"), NULL);
        char *text;

        (void) state;
        text = render(m, before, NULL);
        assert_line(text, "pool_managerd_pool_ready{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_pool_live{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_pool_draining{pool_id=\"a\"} 0");
        assert_line(text, "pool_managerd_pool_replicas{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_pool_slots{pool_id=\"a\"} 4");
        assert_line(text, "pool_managerd_pool_slots_free{pool_id=\"a\"} 3");
        assert_line(text, "pool_managerd_pool_active_leases{pool_id=\"a\"} 1");
        assert_line(text, "pool_managerd_backoff_delay_seconds{pool_id=\"a\"} 0");
        assert_line(text, "pool_managerd_breaker_failures{pool_id=\"a\"} 0");
        assert_line(text, "pool_managerd_pool_state{pool_id=\"a\",state=\"ready\"} 1");
        assert_line(text, "pool_managerd_pool_state{pool_id=\"a\",state=\"backoff\"} 0");
        assert_int_equal(count_prefix(text, "pool_managerd_pool_state{pool_id=\"a\""), 9);
        assert_line(text, "pool_managerd_breaker_state{pool_id=\"a\",state=\"closed\"} 1");
        assert_line(text, "pool_managerd_breaker_state{pool_id=\"a\",state=\"open\"} 0");
        assert_line(text, "pool_managerd_breaker_state{pool_id=\"a\",state=\"half_open\"} 0");
        assert_line(text, "pool_managerd_replica_state{pool_id=\"a\",replica_id=\"r0\",state=\"ready\"} 1");
        free(text);

        text = render(m, after, NULL);
        assert_line(text, "pool_managerd_pool_ready{pool_id=\"a\"} 0");
        assert_line(text, "pool_managerd_pool_slots_free{pool_id=\"a\"} 0");
        assert_line(text, "pool_managerd_pool_active_leases{pool_id=\"a\"} 0");
        assert_line(text, "pool_managerd_backoff_delay_seconds{pool_id=\"a\"} 1.5");
        assert_line(text, "pool_managerd_pool_state{pool_id=\"a\",state=\"ready\"} 0");
        assert_line(text, "pool_managerd_pool_state{pool_id=\"a\",state=\"backoff\"} 1");
        assert_line(text, "pool_managerd_breaker_state{pool_id=\"a\",state=\"closed\"} 0");
        assert_line(text, "pool_managerd_breaker_state{pool_id=\"a\",state=\"open\"} 1");
        free(text);
        json_decref(before);
        json_decref(after);
        ps_metrics_free(m);
}

static void test_replica_crash_and_window_gauges(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *snap = load("{\"pools\": ["
                            "{\"pool_id\": \"b\", \"state\": \"backoff\", \"crash_count\": 2,"
                            " \"restarts_in_window\": 4, \"replicas\": ["
                            " {\"replica_id\": \"r1\", \"state\": \"backoff\", \"crash_count\": 2,"
                            "  \"restart_count\": 9, \"restarts_in_window\": 3},"
                            " {\"replica_id\": \"r0\", \"state\": \"ready\", \"crash_count\": 0,"
                            "  \"restart_count\": 1, \"restarts_in_window\": 1}]},"
                            "{\"pool_id\": \"a\", \"state\": \"ready\", \"replicas\": ["
                            " {\"replica_id\": \"r0\", \"state\": \"ready\", \"crash_count\": 0,"
                            "  \"restarts_in_window\": 0}]}]}");
        char *text;

        (void) state;
        /* the breaker's transition line is a generic event: not an open */
        EVENT(m, PS_EVENT_GENERIC, "b", PS_FIELD_STR("old_state", "closed"),
              PS_FIELD_STR("new_state", "open"), PS_FIELD_INT("failure_count", 5));
        text = render(m, snap, NULL);
        assert_line(text, "# TYPE pool_managerd_consecutive_crashes gauge");
        assert_line(text, "# TYPE pool_managerd_restarts_in_window gauge");
        assert_line(text, "pool_managerd_consecutive_crashes{pool_id=\"b\",replica_id=\"r1\"} 2");
        assert_line(text, "pool_managerd_consecutive_crashes{pool_id=\"b\",replica_id=\"r0\"} 0");
        assert_line(text, "pool_managerd_restarts_in_window{pool_id=\"b\",replica_id=\"r1\"} 3");
        assert_line(text, "pool_managerd_restarts_in_window{pool_id=\"b\",replica_id=\"r0\"} 1");
        assert_line(text, "pool_managerd_restarts_in_window{pool_id=\"a\",replica_id=\"r0\"} 0");
        /* per replica only, sorted */
        assert_int_equal(count_prefix(text, "pool_managerd_consecutive_crashes{"), 3);
        assert_int_equal(count_prefix(text, "pool_managerd_restarts_in_window{"), 3);
        assert_true(line_at(text, "pool_managerd_consecutive_crashes{pool_id=\"a\",replica_id=\"r0\"} 0") <
                    line_at(text, "pool_managerd_consecutive_crashes{pool_id=\"b\",replica_id=\"r0\"} 0"));
        assert_true(line_at(text, "pool_managerd_restarts_in_window{pool_id=\"b\",replica_id=\"r0\"} 1") <
                    line_at(text, "pool_managerd_restarts_in_window{pool_id=\"b\",replica_id=\"r1\"} 3"));
        /* right after the replica states */
        assert_true(line_at(text, "# HELP pool_managerd_replica_state Each replica's lifecycle state: "
                                  "1 for the current state, 0 for the others.") <
                    line_at(text, "# TYPE pool_managerd_consecutive_crashes gauge"));
        assert_true(line_at(text, "# TYPE pool_managerd_consecutive_crashes gauge") <
                    line_at(text, "# TYPE pool_managerd_restarts_in_window gauge"));
        assert_line(text, "pool_managerd_breaker_opens_total{pool_id=\"b\"} 0");
        check_structure(text);
        free(text);
        json_decref(snap);
        ps_metrics_free(m);
}

static void test_output_is_sorted(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *snap = load("{\"pools\": ["
                            "{\"pool_id\": \"b\", \"state\": \"ready\", \"ready\": true, \"replicas\": ["
                            " {\"replica_id\": \"r2\", \"state\": \"ready\"}, {\"replica_id\": \"r1\", \"state\": \"failed\"}]},"
                            "{\"pool_id\": \"a\", \"state\": \"ready\", \"ready\": true, \"replicas\": []}]}");
        char *text, *again;

        (void) state;
        EVENT(m, PS_EVENT_PROBE_FAILED, "c", PS_FIELD_STR("detail", "x"));
        EVENT(m, PS_EVENT_PROBE_FAILED, "b", PS_FIELD_STR("detail", "x"));
        text = render(m, snap, NULL);
        assert_true(line_at(text, "pool_managerd_probe_failures_total{pool_id=\"a\"} 0") <
                    line_at(text, "pool_managerd_probe_failures_total{pool_id=\"b\"} 1"));
        assert_true(line_at(text, "pool_managerd_probe_failures_total{pool_id=\"b\"} 1") <
                    line_at(text, "pool_managerd_probe_failures_total{pool_id=\"c\"} 1"));
        assert_true(line_at(text, "pool_managerd_pool_ready{pool_id=\"a\"} 1") <
                    line_at(text, "pool_managerd_pool_ready{pool_id=\"b\"} 1"));
        assert_true(line_at(text, "pool_managerd_replica_state{pool_id=\"b\",replica_id=\"r1\",state=\"failed\"} 1") <
                    line_at(text, "pool_managerd_replica_state{pool_id=\"b\",replica_id=\"r2\",state=\"ready\"} 1"));
        /* the same state renders the same bytes */
        again = render(m, snap, NULL);
        assert_string_equal(text, again);
        free(again);
        free(text);
        json_decref(snap);
        ps_metrics_free(m);
}

static void test_startup_histogram(void **state) {
        ps_metrics *m = ps_metrics_new();
        char *text;

        (void) state;
        EVENT(m, PS_EVENT_READY, "a", PS_FIELD_INT("startup_ms", 100));
        EVENT(m, PS_EVENT_READY, "a", PS_FIELD_INT("startup_ms", 2300));
        EVENT(m, PS_EVENT_READY, "a", PS_FIELD_INT("startup_ms", 900000));
        event_bare(m, PS_EVENT_READY, "a");     /* no startup_ms: counted, not observed */
        text = render(m, NULL, NULL);
        assert_line(text, "pool_managerd_ready_transitions_total{pool_id=\"a\"} 4");
        assert_line(text, "pool_managerd_engine_startup_seconds_bucket{pool_id=\"a\",le=\"0.1\"} 1");
        assert_line(text, "pool_managerd_engine_startup_seconds_bucket{pool_id=\"a\",le=\"0.5\"} 1");
        assert_line(text, "pool_managerd_engine_startup_seconds_bucket{pool_id=\"a\",le=\"2.5\"} 2");
        assert_line(text, "pool_managerd_engine_startup_seconds_bucket{pool_id=\"a\",le=\"600\"} 2");
        assert_line(text, "pool_managerd_engine_startup_seconds_bucket{pool_id=\"a\",le=\"+Inf\"} 3");
        assert_line(text, "pool_managerd_engine_startup_seconds_sum{pool_id=\"a\"} 902.4");
        assert_line(text, "pool_managerd_engine_startup_seconds_count{pool_id=\"a\"} 3");
        assert_int_equal(count_prefix(text, "pool_managerd_engine_startup_seconds_bucket{pool_id=\"a\""), 12);
        check_structure(text);
        free(text);
        ps_metrics_free(m);
}

static void test_request_duration_histogram(void **state) {
        ps_metrics *m = ps_metrics_new();
        char *text;

        (void) state;
        POOL_EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "drain"), PS_FIELD_BOOL("ok", true),
              PS_FIELD_INT("duration_ms", 4500));
        POOL_EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "drain"), PS_FIELD_BOOL("ok", false),
              PS_FIELD_INT("duration_ms", 30000));
        text = render(m, NULL, NULL);
        assert_line(text, "pool_managerd_drains_total{pool_id=\"a\",outcome=\"drained\"} 1");
        assert_line(text, "pool_managerd_drains_total{pool_id=\"a\",outcome=\"failure\"} 1");
        assert_line(text, "pool_managerd_request_duration_seconds_bucket{pool_id=\"a\",request=\"drain\",le=\"1\"} 0");
        assert_line(text, "pool_managerd_request_duration_seconds_bucket{pool_id=\"a\",request=\"drain\",le=\"5\"} 1");
        assert_line(text, "pool_managerd_request_duration_seconds_bucket{pool_id=\"a\",request=\"drain\",le=\"30\"} 2");
        assert_line(text, "pool_managerd_request_duration_seconds_bucket{pool_id=\"a\",request=\"drain\",le=\"+Inf\"} 2");
        assert_line(text, "pool_managerd_request_duration_seconds_sum{pool_id=\"a\",request=\"drain\"} 34.5");
        assert_line(text, "pool_managerd_request_duration_seconds_count{pool_id=\"a\",request=\"drain\"} 2");
        /* requests without durations have no series */
        assert_int_equal(count_prefix(text, "pool_managerd_request_duration_seconds_count{pool_id=\"a\",request=\"reload\""), 0);
        check_structure(text);
        free(text);
        ps_metrics_free(m);
}

static void test_devices(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *devices = load("{\"backend\": \"fake\", \"devices\": ["
                               "{\"index\": 1, \"uuid\": \"GPU-b\", \"name\": \"Fake B\","
                               " \"vram_total_bytes\": 25769803776, \"vram_free_bytes\": 1073741824},"
                               "{\"index\": 0, \"uuid\": \"GPU-a\", \"name\": \"Fake A\","
                               " \"vram_total_bytes\": 85899345920, \"vram_free_bytes\": \"lots\"}]}");
        char *text;

        (void) state;
        text = render(m, NULL, devices);
        assert_line(text, "pool_managerd_gpu_info{device=\"0\",uuid=\"GPU-a\",name=\"Fake A\"} 1");
        assert_line(text, "pool_managerd_gpu_vram_total_bytes{device=\"0\",uuid=\"GPU-a\"} 85899345920");
        assert_line(text, "pool_managerd_gpu_vram_total_bytes{device=\"1\",uuid=\"GPU-b\"} 25769803776");
        assert_line(text, "pool_managerd_gpu_vram_free_bytes{device=\"1\",uuid=\"GPU-b\"} 1073741824");
        /* a field of the wrong type is left out, not guessed */
        assert_int_equal(count_prefix(text, "pool_managerd_gpu_vram_free_bytes{device=\"0\""), 0);
        assert_true(line_at(text, "pool_managerd_gpu_vram_total_bytes{device=\"0\",uuid=\"GPU-a\"} 85899345920") <
                    line_at(text, "pool_managerd_gpu_vram_total_bytes{device=\"1\",uuid=\"GPU-b\"} 25769803776"));
        check_structure(text);
        free(text);
        json_decref(devices);
        ps_metrics_free(m);
}

static void test_driver_resets_from_snapshot(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *one = load("{\"pools\": [{\"pool_id\": \"a\", \"replicas\": ["
                           "{\"replica_id\": \"r0\", \"driver_resets\": 1}]}]}");
        json_t *three = load("{\"pools\": [{\"pool_id\": \"a\", \"replicas\": ["
                             "{\"replica_id\": \"r0\", \"driver_resets\": 3}]}]}");
        json_t *by_replica = load("{\"pools\": [{\"pool_id\": \"a\", \"replicas\": ["
                                  "{\"replica_id\": \"r0\", \"driver_resets\": 2},"
                                  "{\"replica_id\": \"r1\", \"driver_resets\": 1}]}]}");
        json_t *none = load("{\"pools\": [{\"pool_id\": \"a\"}]}");
        char *text;

        (void) state;
        text = render(m, one, NULL);
        assert_line(text, "pool_managerd_driver_resets_total{pool_id=\"a\"} 1");
        free(text);
        text = render(m, three, NULL);
        assert_line(text, "pool_managerd_driver_resets_total{pool_id=\"a\"} 3");
        free(text);
        /* the pool was removed and added back: its count began again */
        text = render(m, one, NULL);
        assert_line(text, "pool_managerd_driver_resets_total{pool_id=\"a\"} 4");
        free(text);
        text = render(m, none, NULL);
        assert_line(text, "pool_managerd_driver_resets_total{pool_id=\"a\"} 4");
        free(text);
        /* summed over the replicas; a pool without replicas has no count */
        text = render(m, by_replica, NULL);
        assert_line(text, "pool_managerd_driver_resets_total{pool_id=\"a\"} 6");
        free(text);
        json_decref(one);
        json_decref(three);
        json_decref(by_replica);
        json_decref(none);
        ps_metrics_free(m);
}

static void test_ignored_events(void **state) {
        ps_metrics *m = ps_metrics_new();
        char *text;

        (void) state;
        event_bare(m, PS_EVENT_GENERIC, "ghost");
        event_bare(m, PS_EVENT_HTTP_REQUEST, "ghost");
        event_bare(m, PS_EVENT_TYPE_MAX, "ghost");
        event_bare(m, PS_EVENT_PROBE_FAILED, NULL);
        text = render(m, NULL, NULL);
        /* build_info, handoff refusals and node errors at 0 */
        assert_int_equal(count_prefix(text, "pool_managerd_"), 1 + PS_HANDOFF_REFUSAL_MAX + NODE_ERROR_KINDS);
        free(text);

        /* fields that are missing or not understood count nothing */
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "none"), PS_FIELD_BOOL("ok", true));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "preload"), PS_FIELD_STR("ok", "maybe"));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_STR("request", "preload"));
        EVENT(m, PS_EVENT_REQUEST_DONE, "a", PS_FIELD_INT("request", 1), PS_FIELD_BOOL("ok", true));
        EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "something_new"));
        event_bare(m, PS_EVENT_ALERT, "a");
        /* a failure without a class is still a failure */
        event_bare(m, PS_EVENT_ENGINE_FAILED, "a");
        EVENT(m, PS_EVENT_ENGINE_FAILED, "a", PS_FIELD_STR("class", NULL));
        text = render(m, NULL, NULL);
        assert_line(text, "pool_managerd_preloads_total{pool_id=\"a\",outcome=\"success\"} 0");
        assert_line(text, "pool_managerd_preloads_total{pool_id=\"a\",outcome=\"failure\"} 0");
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"a\",reason=\"unknown\"} 2");
        assert_line(text, "pool_managerd_breaker_opens_total{pool_id=\"a\"} 0");
        check_structure(text);
        free(text);
        ps_metrics_free(m);
}

static void test_node_errors(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *j;
        char *text;

        (void) state;
        EVENT(m, PS_EVENT_SPAWN_FAILED, "a", PS_FIELD_STR("error", "runtime directory"),
              PS_FIELD_STR("node_error", "runtime_dir"));
        EVENT(m, PS_EVENT_SPAWN_FAILED, "b", PS_FIELD_STR("node_error", "runtime_dir"));
        EVENT(m, PS_EVENT_SPAWN_FAILED, "a", PS_FIELD_STR("node_error", "fd_limit"));
        /* an engine's own spawn failure, and kinds the domain does not name */
        EVENT(m, PS_EVENT_SPAWN_FAILED, "a", PS_FIELD_STR("error", "binary /x: No such file"),
              PS_FIELD_STR("node_error", NULL));
        EVENT(m, PS_EVENT_SPAWN_FAILED, "a", PS_FIELD_STR("node_error", "cosmic_ray"));
        text = render(m, NULL, NULL);
        assert_line(text, "# TYPE pool_managerd_node_errors_total counter");
        assert_line(text, "pool_managerd_node_errors_total{kind=\"runtime_dir\"} 2");
        assert_line(text, "pool_managerd_node_errors_total{kind=\"fd_limit\"} 1");
        assert_line(text, "pool_managerd_node_errors_total{kind=\"disk_full\"} 0");
        assert_int_equal(count_prefix(text, "pool_managerd_node_errors_total{"), NODE_ERROR_KINDS);
        /* still each pool's spawn failures */
        assert_line(text, "pool_managerd_spawn_failures_total{pool_id=\"a\"} 4");
        check_structure(text);
        free(text);

        j = ps_metrics_node_errors(m);
        assert_non_null(j);
        assert_int_equal(json_object_size(j), NODE_ERROR_KINDS);
        assert_int_equal(json_integer_value(json_object_get(j, "runtime_dir")), 2);
        assert_int_equal(json_integer_value(json_object_get(j, "fd_limit")), 1);
        assert_int_equal(json_integer_value(json_object_get(j, "memory")), 0);
        json_decref(j);
        ps_metrics_free(m);
}

static void test_label_values_are_bounded(void **state) {
        ps_metrics *m = ps_metrics_new();
        char kind[32], *text;

        (void) state;
        for (int i = 0; i < 50; i++) {
                snprintf(kind, sizeof(kind), "kind-%02d", i);
                EVENT(m, PS_EVENT_ALERT, "a", PS_FIELD_STR("alert", "storm"), PS_FIELD_STR("storm", kind));
        }
        text = render(m, NULL, NULL);
        /* 7 kinds preset, 25 new ones, then "other" */
        assert_int_equal(count_prefix(text, "pool_managerd_restart_storms_total{pool_id=\"a\""), 33);
        assert_line(text, "pool_managerd_restart_storms_total{pool_id=\"a\",kind=\"kind-00\"} 1");
        assert_line(text, "pool_managerd_restart_storms_total{pool_id=\"a\",kind=\"other\"} 25");
        check_structure(text);
        free(text);
        ps_metrics_free(m);
}

/* What a status cannot say wrong (a pool listed twice, a state the set
 * does not know) and a device list that is not one. */
static void test_odd_status(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *snap = load("{\"pools\": ["
                            "{\"pool_id\": \"a\", \"state\": \"removing\", \"breaker\": {\"state\": \"sideways\"},"
                            " \"replicas\": [{\"replica_id\": \"r0\", \"state\": \"stopped\"}]},"
                            "{\"state\": \"ready\"},"
                            "{\"pool_id\": \"a\", \"state\": \"ready\"}]}");
        json_t *not_a_snapshot = load("[1, 2]");
        char *text;

        (void) state;
        text = render(m, snap, not_a_snapshot);
        assert_int_equal(count_prefix(text, "pool_managerd_gpu_info{"), 0);
        /* an unknown state still shows, beside the known ones at 0 */
        assert_line(text, "pool_managerd_pool_state{pool_id=\"a\",state=\"removing\"} 1");
        assert_line(text, "pool_managerd_pool_state{pool_id=\"a\",state=\"ready\"} 0");
        assert_line(text, "pool_managerd_breaker_state{pool_id=\"a\",state=\"sideways\"} 1");
        assert_line(text, "pool_managerd_breaker_state{pool_id=\"a\",state=\"closed\"} 0");
        /* the pool listed twice shows once; one without an id not at all */
        assert_int_equal(count_prefix(text, "pool_managerd_probe_failures_total{"), 1);
        assert_int_equal(count_prefix(text, "pool_managerd_pool_ready{"), 1);
        check_structure(text);
        free(text);
        json_decref(snap);
        json_decref(not_a_snapshot);
        ps_metrics_free(m);
}

/* The watcher's event for a refused handoff file. */
static void handoff_ignored(ps_metrics *m, const char *message, const char *pool_id,
                            const char *reason) {
        const ps_field fields[] = {
                PS_FIELD_STR("file", "x.json"),
                PS_FIELD_STR("reason", reason),
                PS_FIELD_STR("error", "why"),
        };
        const ps_event ev = {
                .type = PS_EVENT_GENERIC,
                .level = PS_LOG_WARN,
                .pool_id = pool_id,
                .message = message,
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        ps_metrics_observe(m, &ev);
}

static void test_handoff_refusals(void **state) {
        ps_metrics *m = ps_metrics_new();
        char *text;

        (void) state;
        handoff_ignored(m, PS_HANDOFF_IGNORED, NULL, "url");
        handoff_ignored(m, PS_HANDOFF_IGNORED, NULL, "url");
        /* the pool a file names is the file's word: no series for it */
        handoff_ignored(m, PS_HANDOFF_IGNORED, "ghost", "managed_pool");
        /* only the fixed reasons, only this message */
        handoff_ignored(m, PS_HANDOFF_IGNORED, NULL, "made-up");
        handoff_ignored(m, PS_HANDOFF_IGNORED, NULL, NULL);
        handoff_ignored(m, "something else", NULL, "slots");
        text = render(m, NULL, NULL);
        assert_line(text, "# TYPE pool_managerd_handoff_refusals_total counter");
        assert_line(text, "pool_managerd_handoff_refusals_total{reason=\"url\"} 2");
        assert_line(text, "pool_managerd_handoff_refusals_total{reason=\"managed_pool\"} 1");
        assert_line(text, "pool_managerd_handoff_refusals_total{reason=\"slots\"} 0");
        for (unsigned i = 0; i < PS_HANDOFF_REFUSAL_MAX; i++) {
                char line[128];

                snprintf(line, sizeof(line), "pool_managerd_handoff_refusals_total{reason=\"%s\"} ",
                         ps_handoff_refusal_to_string((ps_handoff_refusal) i));
                assert_int_equal(count_prefix(text, line), 1);
        }
        assert_int_equal(count_prefix(text, "pool_managerd_handoff_refusals_total{"),
                         PS_HANDOFF_REFUSAL_MAX);
        assert_null(strstr(text, "ghost"));
        assert_null(strstr(text, "made-up"));
        check_structure(text);
        free(text);
        ps_metrics_free(m);
}

static char *collect_a(void *userdata) {
        (*(int *) userdata)++;
        return strdup("# HELP extra_a A.\n# TYPE extra_a gauge\nextra_a 1\n");
}

static char *collect_b(void *userdata) {
        (void) userdata;
        return strdup("# HELP extra_b B.\n# TYPE extra_b gauge\nextra_b 2\n");
}

static void test_collectors_append_in_order(void **state) {
        ps_metrics *m = ps_metrics_new();
        int calls = 0;
        char *text;

        (void) state;
        assert_int_equal(ps_metrics_add_collector(m, collect_a, &calls), 0);
        assert_int_equal(ps_metrics_add_collector(m, collect_b, NULL), 0);
        text = ps_metrics_render(m, NULL, NULL);
        assert_non_null(text);
        assert_int_equal(calls, 1);
        assert_non_null(strstr(text, "\nextra_a 1\n# HELP extra_b B.\n"));
        assert_string_equal(text + strlen(text) - strlen("extra_b 2\n"), "extra_b 2\n");
        free(text);

        ps_metrics_remove_collector(m, collect_a, &calls);
        text = ps_metrics_render(m, NULL, NULL);
        assert_null(strstr(text, "extra_a"));
        assert_non_null(strstr(text, "extra_b 2"));
        assert_int_equal(calls, 1);
        free(text);
        ps_metrics_free(m);
}

/* engine_crashes_total never counts an exit 0, whatever class it came with. */
static void test_graceful_is_no_crash(void **state) {
        ps_metrics *m = ps_metrics_new();
        char *text;

        (void) state;
        EVENT(m, PS_EVENT_ENGINE_FAILED, "g", PS_FIELD_STR("class", "graceful"));
        EVENT(m, PS_EVENT_ENGINE_FAILED, "g", PS_FIELD_STR("class", "exit_code"));
        text = render(m, NULL, NULL);
        assert_null(strstr(text, "reason=\"graceful\""));
        assert_line(text, "pool_managerd_engine_crashes_total{pool_id=\"g\",reason=\"exit_code\"} 1");
        free(text);
        ps_metrics_free(m);
}

/* A restart an operator asked for is not one after a failure. */
static void test_manual_restarts_apart(void **state) {
        ps_metrics *m = ps_metrics_new();
        char *text;

        (void) state;
        EVENT(m, PS_EVENT_GENERIC, "r", PS_FIELD_STR("state", "ready"));
        EVENT(m, PS_EVENT_RESTART_SCHEDULED, "r", PS_FIELD_INT("backoff_ms", 100));
        text = render(m, NULL, NULL);
        assert_line(text, "pool_managerd_manual_restarts_total{pool_id=\"r\"} 0");
        free(text);
        ps_metrics_observe(m, &(ps_event) { .type = PS_EVENT_GENERIC, .level = PS_LOG_INFO,
                                            .message = PS_REPLICA_RESTART_REQUESTED, .pool_id = "r" });
        /* the operator's restart goes through backoff too: not a second count */
        EVENT(m, PS_EVENT_RESTART_SCHEDULED, "r", PS_FIELD_STR("requested_by", "operator"));
        text = render(m, NULL, NULL);
        assert_line(text, "pool_managerd_manual_restarts_total{pool_id=\"r\"} 1");
        assert_line(text, "pool_managerd_restarts_scheduled_total{pool_id=\"r\"} 1");
        free(text);
        ps_metrics_free(m);
}

/* The configuration's last load, and the inventory's health. */
static void test_config_and_inventory_gauges(void **state) {
        ps_metrics *m = ps_metrics_new();
        json_t *ok = load("{\"status\": \"ok\", \"devices\": []}");
        json_t *failing = load("{\"status\": \"failing\", \"devices\": []}");
        char *text;

        (void) state;
        text = render(m, NULL, NULL);
        assert_null(strstr(text, "pool_managerd_config_last_reload"));
        assert_null(strstr(text, "pool_managerd_gpu_inventory_ok"));
        free(text);

        ps_metrics_config_loaded(m, true, INT64_C(1795521600500));
        text = render(m, NULL, ok);
        assert_line(text, "pool_managerd_config_last_reload_successful 1");
        assert_line(text, "pool_managerd_config_last_reload_success_timestamp_seconds 1795521600.5");
        assert_line(text, "# TYPE pool_managerd_gpu_inventory_ok gauge");
        assert_line(text, "pool_managerd_gpu_inventory_ok 1");
        free(text);

        /* a rejected reload keeps the time of the last good one */
        ps_metrics_config_loaded(m, false, INT64_C(1795521700000));
        text = render(m, NULL, failing);
        assert_line(text, "pool_managerd_config_last_reload_successful 0");
        assert_line(text, "pool_managerd_config_last_reload_success_timestamp_seconds 1795521600.5");
        assert_line(text, "pool_managerd_gpu_inventory_ok 0");
        free(text);
        json_decref(ok);
        json_decref(failing);
        ps_metrics_free(m);
}

/* The process_* collector: every family once, with plausible values. */
static void test_process_collector(void **state) {
        char *text = ps_metrics_process_collect(NULL);
        const char *families[] = {
                "process_cpu_seconds_total counter", "process_resident_memory_bytes gauge",
                "process_open_fds gauge", "process_max_fds gauge", "process_start_time_seconds gauge",
        };
        const char *p;

        (void) state;
        assert_non_null(text);
        for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
                char line[96];

                snprintf(line, sizeof(line), "# TYPE %s", families[i]);
                assert_line(text, line);
        }
        p = strstr(text, "\nprocess_open_fds ");
        assert_non_null(p);
        assert_true(strtol(p + strlen("\nprocess_open_fds "), NULL, 10) >= 3);
        p = strstr(text, "\nprocess_resident_memory_bytes ");
        assert_non_null(p);
        assert_true(strtoll(p + strlen("\nprocess_resident_memory_bytes "), NULL, 10) > 100000);
        p = strstr(text, "\nprocess_start_time_seconds ");
        assert_non_null(p);
        /* after 2020, and not in the future of the wall clock */
        assert_true(strtod(p + strlen("\nprocess_start_time_seconds "), NULL) > 1.6e9);
        assert_true(strtod(p + strlen("\nprocess_start_time_seconds "), NULL) <= (double) time(NULL) + 1);
        free(text);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_null_arguments),
                cmocka_unit_test(test_empty_node),
                cmocka_unit_test(test_counters_from_events),
                cmocka_unit_test(test_known_pool_starts_at_zero),
                cmocka_unit_test(test_help_type_once_with_many_pools),
                cmocka_unit_test(test_label_escaping),
                cmocka_unit_test(test_counters_survive_pool_removal),
                cmocka_unit_test(test_gauges_follow_snapshot),
                cmocka_unit_test(test_replica_crash_and_window_gauges),
                cmocka_unit_test(test_output_is_sorted),
                cmocka_unit_test(test_startup_histogram),
                cmocka_unit_test(test_request_duration_histogram),
                cmocka_unit_test(test_devices),
                cmocka_unit_test(test_driver_resets_from_snapshot),
                cmocka_unit_test(test_ignored_events),
                cmocka_unit_test(test_node_errors),
                cmocka_unit_test(test_label_values_are_bounded),
                cmocka_unit_test(test_odd_status),
                cmocka_unit_test(test_collectors_append_in_order),
                cmocka_unit_test(test_graceful_is_no_crash),
                cmocka_unit_test(test_manual_restarts_apart),
                cmocka_unit_test(test_config_and_inventory_gauges),
                cmocka_unit_test(test_process_collector),
                cmocka_unit_test(test_handoff_refusals),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
