/* SPDX-License-Identifier: MIT */
/*
 * The status structs rendered as the API's JSON, byte for byte: the keys
 * in their order, nulls where a value is missing, times only when there
 * is one. And the handoff document read into the registry's claim.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool-services/cloud/handoff-doc.h"
#include "pool-services/observe/status-json.h"

/* j as the API writes it (compact, in insertion order); takes j. */
static void assert_json_text(json_t *j, const char *want) {
        char *text;

        assert_non_null(j);
        text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_non_null(text);
        if (strcmp(text, want) != 0)
                fail_msg("got  %s\nwant %s", text, want);
        free(text);
        json_decref(j);
}

/* A replica at rest: nothing started, nothing known. */
static ps_replica_status idle_replica(void) {
        ps_replica_status s = {
                .pool_id = "p", .replica_id = "r0", .state = "empty",
                .url = "http://127.0.0.1:8081", .slots_total = 1,
                .breaker = { .state = "closed" },
        };

        return s;
}

/* A replica at rest as JSON: its id, pid and engine (JSON text) vary. */
#define IDLE_REPLICA_FMT                                                                \
        "{\"replica_id\":\"%s\",\"state\":\"empty\",\"live\":false,\"ready\":false,"          \
        "\"draining\":false,\"external\":false,\"pid\":%d,\"url\":\"http://127.0.0.1:8081\","  \
        "\"engine\":%s,\"engine_version\":null,\"model_id\":null,\"model_digest\":null,"       \
        "\"device_mask\":null,\"slots_total\":1,\"slots_free\":0,\"active_leases\":0,"        \
        "\"last_error\":null,\"last_error_class\":null,\"last_error_at\":null,"               \
        "\"last_heartbeat\":null,\"restart_count\":0,\"crash_count\":0,"                      \
        "\"restarts_in_window\":0,\"backoff_ms\":0,\"next_restart_at\":null,"                 \
        "\"breaker\":{\"state\":\"closed\",\"failures\":0,\"opens\":0,\"open_until\":null},"  \
        "\"started_at\":null,\"ready_at\":null,\"uptime_s\":0,\"driver_resets\":0,\"retiring_leases\":0}"

static void test_idle_replica(void **state) {
        ps_replica_status s = idle_replica();
        char want[2048];

        (void) state;
        snprintf(want, sizeof(want), IDLE_REPLICA_FMT, "r0", 0, "null");
        assert_json_text(ps_replica_status_json(&s), want);
}

static void test_busy_replica(void **state) {
        ps_replica_status s = {
                .pool_id = "p", .replica_id = "r1", .state = "backoff", .live = false,
                .pid = 0, .url = "http://127.0.0.1:9000", .engine = "llamacpp",
                .engine_version = "b6000", .model_id = "tiny", .model_digest = "sha256:ab",
                .device_mask = "0,1", .slots_total = 4, .slots_free = 0, .active_leases = 2,
                .last_error = "exited with code 134", .last_error_class = "exit_code",
                .last_error_at = 1700000001000, .restart_count = 3, .crash_count = 2,
                .restarts_in_window = 2, .driver_resets = 1, .backoff_ms = 1500,
                .next_restart_at = 1700000002500,
                .breaker = { .state = "open", .failures = 5, .opens = 1, .open_until = 1700000300000 },
                .started_at = -5, .ready_at = 0, .uptime_s = 0,
        };

        (void) state;
        assert_json_text(ps_replica_status_json(&s),
                "{\"replica_id\":\"r1\",\"state\":\"backoff\",\"live\":false,\"ready\":false,"
                "\"draining\":false,\"external\":false,\"pid\":0,\"url\":\"http://127.0.0.1:9000\","
                "\"engine\":\"llamacpp\",\"engine_version\":\"b6000\",\"model_id\":\"tiny\","
                "\"model_digest\":\"sha256:ab\",\"device_mask\":\"0,1\",\"slots_total\":4,"
                "\"slots_free\":0,\"active_leases\":2,\"last_error\":\"exited with code 134\","
                "\"last_error_class\":\"exit_code\",\"last_error_at\":1700000001000,"
                "\"last_heartbeat\":null,\"restart_count\":3,\"crash_count\":2,"
                "\"restarts_in_window\":2,\"backoff_ms\":1500,\"next_restart_at\":1700000002500,"
                "\"breaker\":{\"state\":\"open\",\"failures\":5,\"opens\":1,\"open_until\":1700000300000},"
                "\"started_at\":null,\"ready_at\":null,\"uptime_s\":0,\"driver_resets\":1,\"retiring_leases\":0}");
}

/* A pool without replicas: the repeated fields are null. */
static void test_pool_without_replicas(void **state) {
        ps_pool_status p = { .pool_id = "p", .state = "removing" };
        ps_registry_status all = { .pools = &p, .n_pools = 1 };
        ps_registry_status none = { 0 };
        const char *want =
                "{\"pool_id\":\"p\",\"state\":\"removing\",\"live\":false,\"ready\":false,"
                "\"draining\":false,\"last_error\":null,\"engine\":null,\"engine_version\":null,"
                "\"model_id\":null,\"model_digest\":null,\"device_mask\":null,\"slots_total\":0,"
                "\"slots_free\":0,\"active_leases\":0,\"restart_count\":0,\"crash_count\":0,"
                "\"restarts_in_window\":0,\"backoff_ms\":null,\"next_restart_at\":null,"
                "\"breaker\":null,\"pid\":null,\"url\":null,\"replicas\":[],\"devices\":[]}";
        char wrapped[1024];

        (void) state;
        assert_json_text(ps_pool_status_json(&p), want);
        snprintf(wrapped, sizeof(wrapped), "{\"pools\":[%s]}", want);
        assert_json_text(ps_registry_status_json(&all), wrapped);
        assert_json_text(ps_registry_status_json(&none), "{\"pools\":[]}");
}

/* The pool repeats its first replica's engine, breaker, pid and url. */
static void test_pool_repeats_its_first_replica(void **state) {
        ps_replica_status r[2] = { idle_replica(), idle_replica() };
        ps_pool_status p = {
                .pool_id = "p", .state = "ready", .live = true, .ready = true,
                .last_error = "boom", .slots_total = 2, .slots_free = 1, .active_leases = 0,
                .restart_count = 1, .crash_count = 1, .restarts_in_window = 1,
                .backoff_ms = 40, .next_restart_at = 1700000000040,
                .first = &r[0], .replicas = r, .n_replicas = 2,
        };
        char want[8192], r0[2048], r1[2048];

        (void) state;
        r[0].engine = "llamacpp";
        r[0].pid = 42;
        r[1].replica_id = "r1";
        snprintf(r0, sizeof(r0), IDLE_REPLICA_FMT, "r0", 42, "\"llamacpp\"");
        snprintf(r1, sizeof(r1), IDLE_REPLICA_FMT, "r1", 0, "null");
        snprintf(want, sizeof(want),
                 "{\"pool_id\":\"p\",\"state\":\"ready\",\"live\":true,\"ready\":true,"
                 "\"draining\":false,\"last_error\":\"boom\",\"engine\":\"llamacpp\","
                 "\"engine_version\":null,\"model_id\":null,\"model_digest\":null,"
                 "\"device_mask\":null,\"slots_total\":2,\"slots_free\":1,\"active_leases\":0,"
                 "\"restart_count\":1,\"crash_count\":1,\"restarts_in_window\":1,"
                 "\"backoff_ms\":40,\"next_restart_at\":1700000000040,"
                 "\"breaker\":{\"state\":\"closed\",\"failures\":0,\"opens\":0,\"open_until\":null},"
                 "\"pid\":42,\"url\":\"http://127.0.0.1:8081\",\"replicas\":[%s,%s],\"devices\":[]}",
                 r0, r1);
        assert_json_text(ps_pool_status_json(&p), want);
}

static json_t *load(const char *text) {
        json_error_t error;
        json_t *j = json_loads(text, 0, &error);

        if (!j)
                fail_msg("fixture: %s: %s", error.text, text);
        return j;
}

static void test_handoff_claim_from_json(void **state) {
        json_t *doc = load("{\"pool_id\": \"p\", \"replica_id\": \"r0\", \"engine_version\": \"v1\","
                           " \"url\": \"http://h:1\", \"slots\": 4, \"model\": {\"id\": \"m\"},"
                           " \"extra\": true}");
        ps_handoff_claim c;
        char err[256];

        (void) state;
        assert_int_equal(ps_handoff_claim_from_json(doc, &c, err, sizeof(err)), 0);
        assert_string_equal(c.pool_id, "p");
        assert_string_equal(c.replica_id, "r0");
        assert_string_equal(c.engine_version, "v1");
        assert_string_equal(c.url, "http://h:1");
        assert_string_equal(c.model_id, "m");
        assert_null(c.engine);
        assert_null(c.device_mask);
        /* llama-orch's "slots" when there is no slots_total */
        assert_int_equal(c.slots, 4);
        assert_false(c.has_slots_free);
        json_decref(doc);

        doc = load("{\"pool_id\": \"p\", \"replica_id\": \"r0\", \"engine_version\": \"v1\"}");
        assert_int_equal(ps_handoff_claim_from_json(doc, &c, err, sizeof(err)), 0);
        assert_int_equal(c.slots, 1);
        json_decref(doc);

        doc = load("{\"pool_id\": \"p\", \"replica_id\": \"r0\", \"engine_version\": \"v1\","
                   " \"slots\": 2, \"slots_total\": 3}");
        assert_int_equal(ps_handoff_claim_from_json(doc, &c, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "handoff slots: 2 disagrees with slots_total 3");
        json_decref(doc);

        doc = load("{\"pool_id\": \"p\", \"replica_id\": \"r0\", \"engine_version\": \"v1\","
                   " \"url\": 7}");
        assert_int_equal(ps_handoff_claim_from_json(doc, &c, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "handoff url: must be a string");
        json_decref(doc);

        doc = load("[]");
        assert_int_equal(ps_handoff_claim_from_json(doc, &c, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "handoff: must be a JSON object");
        json_decref(doc);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_idle_replica),
                cmocka_unit_test(test_busy_replica),
                cmocka_unit_test(test_pool_without_replicas),
                cmocka_unit_test(test_pool_repeats_its_first_replica),
                cmocka_unit_test(test_handoff_claim_from_json),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
